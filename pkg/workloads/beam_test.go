package workloads

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

func testBeamJob() beamJob {
	j := &batch.BeamJob{ObjectMeta: metav1.ObjectMeta{Name: "bj", Namespace: "ns"}}
	j.Spec.FlinkClusterTemplate.Spec = runtime.RawExtension{Raw: []byte(
		`{"image":{"name":"flink"},"taskManager":{"replicas":2,"podLabels":{"team":"data"}}}`)}
	j.Spec.JobTemplate.Spec.Template.Spec.Containers = []corev1.Container{{
		Name: "submit", Image: "beam", Command: []string{"python", "-m", "wc"},
		ReadinessProbe: &corev1.Probe{}}}
	return beamJob{j}
}

func TestBeamReplicasCountSubmitPods(t *testing.T) {
	for _, tc := range []struct {
		parallelism, completions *int32
		want                     int32
	}{
		{nil, nil, 1},
		{ptr.To[int32](3), nil, 3},
		{ptr.To[int32](3), ptr.To[int32](2), 2},
	} {
		j := testBeamJob()
		j.Spec.JobTemplate.Spec.Parallelism, j.Spec.JobTemplate.Spec.Completions = tc.parallelism, tc.completions
		rs := j.Replicas()
		if len(rs) != 3 || rs[2].Type != BeamSubmitter || rs[2].Count != tc.want || rs[2].MainContainer != "submit" {
			t.Errorf("%v/%v: %+v, want the submitter group of %d last", tc.parallelism, tc.completions, rs, tc.want)
		}
	}
}

// TestBeamReplicasCountTheFlinkCluster: the job manager (one) and the task managers
// (taskManager.replicas, the operator's default 3 when unset) are replica groups, with the
// template's resources or the operator's defaults, sidecars and init containers included.
func TestBeamReplicasCountTheFlinkCluster(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		jm, tm     int32
	}{
		{"replicas given", `{"jobManager":{"replicas":1},"taskManager":{"replicas":2}}`, 1, 2},
		{"operator defaults", `{"image":{"name":"flink"}}`, 1, 3},
		{"no template", ``, 1, 3},
		{"no task managers", `{"taskManager":{"replicas":0}}`, 1, 0},
		{"one job manager counted", `{"jobManager":{"replicas":2},"taskManager":{"replicas":4}}`, 1, 4},
		{"a field of another shape", `{"jobManager":"x","taskManager":{"replicas":5}}`, 1, 5},
	} {
		j := testBeamJob()
		j.Spec.FlinkClusterTemplate.Spec = runtime.RawExtension{Raw: []byte(tc.spec)}
		rs := j.Replicas()
		if len(rs) != 3 || rs[0].Type != BeamJobManager || rs[0].Count != tc.jm || rs[1].Type != BeamTaskManager || rs[1].Count != tc.tm {
			t.Errorf("%s: %+v, want %d job manager(s), %d task managers", tc.name, rs, tc.jm, tc.tm)
		}
	}

	j := testBeamJob()
	j.Spec.FlinkClusterTemplate.Spec = runtime.RawExtension{Raw: []byte(`{
		"jobManager":{"resources":{"limits":{"cpu":"500m","memory":"1Gi"}},"sidecars":[{"name":"log","resources":{"requests":{"cpu":"100m"}}}]},
		"taskManager":{"replicas":2,"initContainers":[{"name":"fetch"}]}}`)}
	pods := BeamClusterPods(j.BeamJob)
	jm, tm := pods[0].Spec, pods[1].Spec
	if len(jm.Containers) != 2 || jm.Containers[0].Name != BeamJobManager || jm.Containers[0].Resources.Limits.Cpu().String() != "500m" ||
		jm.Containers[1].Name != "log" || jm.Containers[1].Resources.Requests.Cpu().String() != "100m" {
		t.Errorf("job manager pod %+v", jm)
	}
	if len(tm.Containers) != 1 || tm.Containers[0].Name != BeamTaskManager || !reflect.DeepEqual(tm.Containers[0].Resources, flinkDefaultResources) ||
		len(tm.InitContainers) != 1 || tm.InitContainers[0].Name != "fetch" {
		t.Errorf("task manager pod %+v, want the operator's default resources", tm)
	}
}

func TestBeamPodsJoinTheScheduler(t *testing.T) {
	j := testBeamJob()
	j.Spec.Scheduler = &batch.SchedulePolicy{T9kScheduler: &batch.T9kScheduler{Queue: "q"}}
	labels := func(role string) map[string]string {
		return map[string]string{
			LabelOwnerName: "bj", LabelOwnerKind: "BeamJob", LabelComponent: "beamjob", LabelComponentType: "user",
			LabelReplicaType: role, schedv1.LabelGroupName: "bj", schedv1.LabelQueue: "q", schedv1.LabelRole: role,
		}
	}

	fc := j.flinkCluster()
	spec := fc.Object["spec"].(map[string]any)
	jm := spec["jobManager"].(map[string]any)["podLabels"].(map[string]any)
	tm := spec["taskManager"].(map[string]any)["podLabels"].(map[string]any)
	for k, v := range labels(BeamJobManager) {
		if jm[k] != v {
			t.Errorf("jobManager.podLabels[%s] = %v, want %s", k, jm[k], v)
		}
	}
	for k, v := range labels(BeamTaskManager) {
		if tm[k] != v {
			t.Errorf("taskManager.podLabels[%s] = %v, want %s", k, tm[k], v)
		}
	}
	if tm["team"] != "data" || spec["taskManager"].(map[string]any)["replicas"] != float64(2) {
		t.Errorf("the template's own taskManager fields are lost: %v", spec["taskManager"])
	}

	sj := j.submitJob()
	if sj.Spec.Template.Spec.SchedulerName != schedv1.SchedulerName {
		t.Errorf("submit pods' schedulerName %q", sj.Spec.Template.Spec.SchedulerName)
	}
	if !reflect.DeepEqual(sj.Spec.Template.Labels, labels(BeamSubmitter)) {
		t.Errorf("submit pods' labels %v", sj.Spec.Template.Labels)
	}

	// The gang is the Flink cluster: the submit pods, which start once it runs, join later.
	pg, err := podGroupFor(j, clusterOf(j))
	if err != nil || pg == nil || pg.Spec.MinMember != 3 || pg.Spec.Queue != "q" ||
		!reflect.DeepEqual(pg.Spec.Roles, []schedv1.PodGroupRole{{Name: BeamJobManager, MinMember: 1}, {Name: BeamTaskManager, MinMember: 2}}) {
		t.Errorf("pod group %+v %v", pg, err)
	}
}

func TestBeamWithoutSchedulerAndInDebug(t *testing.T) {
	j := testBeamJob()
	j.Spec.RunMode = &batch.RunMode{Debug: &batch.DebugMode{Enabled: ptr.To(true)}}
	sj := j.submitJob()
	c := sj.Spec.Template.Spec.Containers[0]
	if !reflect.DeepEqual(c.Command, defaultDebugCommand) || len(c.Args) != 0 || c.ReadinessProbe != nil {
		t.Errorf("debug submit container %v %v probe %v", c.Command, c.Args, c.ReadinessProbe)
	}
	if sj.Spec.Template.Spec.SchedulerName != "" || sj.Spec.Template.Labels[schedv1.LabelQueue] != "" {
		t.Errorf("without spec.scheduler the submit pods joined the t9k scheduler: %v", sj.Spec.Template)
	}
	if pg, _ := podGroupFor(j, clusterOf(j)); pg != nil {
		t.Errorf("pod group without spec.scheduler: %+v", pg)
	}

	j.Spec.RunMode.Debug.ReplicaSpecs = []batch.ReplicaDebugSet{{Type: BeamSubmitter, Command: []string{"sleep", "1d"}}}
	if c := j.submitJob().Spec.Template.Spec.Containers[0]; !reflect.DeepEqual(c.Command, []string{"sleep", "1d"}) {
		t.Errorf("debug replicaSpecs[submitter].command ignored: %v", c.Command)
	}
}

func TestBeamObserve(t *testing.T) {
	j := testBeamJob()
	pod := func(name, typ string, phase corev1.PodPhase, node string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, UID: k8stypes.UID("u-" + name),
			Labels: map[string]string{LabelReplicaType: typ}}}
		p.Status.Phase, p.Spec.NodeName = phase, node
		return p
	}
	prev := &batch.BeamJobStatus{JobStatus: batch.JobStatus{Tasks: []batch.TaskStatus{
		{Type: BeamSubmitter, Replicas: []batch.ReplicaStatus{{Name: "bj-batchjob-old", UID: "u-old", Phase: batch.ReplicaFailed}}}}}}
	j.observe([]*corev1.Pod{
		pod("bj-flinkcluster-jobmanager-0", BeamJobManager, corev1.PodRunning, "n"),
		pod("bj-flinkcluster-taskmanager-0", BeamTaskManager, corev1.PodPending, "n"),
		pod("bj-flinkcluster-taskmanager-1", BeamTaskManager, corev1.PodPending, ""),
		pod("bj-batchjob-abcde", BeamSubmitter, corev1.PodSucceeded, "n"),
		pod("other", "", corev1.PodRunning, "n"),
	}, prev)
	st := j.BeamJob.Status
	if want := (&batch.Aggregate{Running: 1, Pending: 1, Creating: 1, Succeeded: 1, Deleted: 1}); !reflect.DeepEqual(st.Aggregate, want) {
		t.Errorf("aggregate %+v, want %+v", st.Aggregate, want)
	}
	if len(st.Tasks) != 3 || len(st.Tasks[2].Replicas) != 2 || st.Tasks[2].Replicas[1].Name != "bj-batchjob-old" ||
		st.Tasks[2].Replicas[1].Phase != batch.ReplicaDeleted {
		t.Errorf("tasks %+v", st.Tasks)
	}
	f := st.FlinkClusterStatus
	if f == nil || len(f.JobManagerStatus) != 1 || f.JobManagerStatus[0].Phase != "Running" ||
		f.JobManagerStatus[0].Reference.UID != "u-bj-flinkcluster-jobmanager-0" ||
		len(f.TaskManagerStatus) != 2 || f.TaskManagerStatus[1].Phase != "Creating" {
		t.Errorf("flinkClusterStatus %+v", f)
	}
}
