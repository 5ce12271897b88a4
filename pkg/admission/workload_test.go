package admission

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// TestJobReplicasChargesBeamJobsFlinkCluster: admission counts the job manager, the task managers
// and the submit pods.
func TestJobReplicasChargesBeamJobsFlinkCluster(t *testing.T) {
	j := &batchv1beta1.BeamJob{}
	j.Spec.Scheduler = &batchv1beta1.SchedulePolicy{T9kScheduler: &batchv1beta1.T9kScheduler{Queue: "q"}}
	j.Spec.FlinkClusterTemplate.Spec = runtime.RawExtension{Raw: []byte(
		`{"jobManager":{"resources":{"limits":{"cpu":"500m"}}},"taskManager":{"replicas":2,"resources":{"requests":{"cpu":"1"}}}}`)}
	j.Spec.JobTemplate.Spec.Template.Spec.Containers = []corev1.Container{{Name: "submit",
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}}}
	q, reps, ok := JobReplicas(j)
	if !ok || q != "q" || len(reps) != 3 {
		t.Fatalf("%q %v %+v", q, ok, reps)
	}
	got := totalRequests(reps)[corev1.ResourceCPU]
	if got.Cmp(resource.MustParse("2750m")) != 0 {
		t.Errorf("cpu asked %s, want 2750m (0.5 + 2 × 1 + 0.25)", got.String())
	}
}
