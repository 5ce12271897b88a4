package admission

import (
	"context"
	"encoding/json"
	"maps"
	"reflect"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

func flinkPod(labels map[string]string, scheduler string) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "wc-flinkcluster-taskmanager-0", Namespace: "ns", Labels: labels},
		Spec:       corev1.PodSpec{SchedulerName: scheduler, Containers: []corev1.Container{{Name: "taskmanager", Image: "flink"}}},
	}
}

// t9kFlinkLabels are the labels a t9k BeamJob's FlinkCluster gives its pods (podLabels), with the
// operator's own.
func t9kFlinkLabels(role string) map[string]string {
	return map[string]string{"app": "flink", "cluster": "wc-flinkcluster", "component": role,
		workloads.LabelOwnerName: "wc", workloads.LabelOwnerKind: "BeamJob", workloads.LabelReplicaType: role,
		schedv1beta1.LabelGroupName: "wc", schedv1beta1.LabelQueue: "q", schedv1beta1.LabelRole: role}
}

func TestFlinkPodPatch(t *testing.T) {
	set := []jsonpatch.JsonPatchOperation{{Operation: "add", Path: "/spec/schedulerName", Value: schedv1beta1.SchedulerName}}
	without := func(l map[string]string, k string) map[string]string {
		l = maps.Clone(l)
		delete(l, k)
		return l
	}
	with := func(l map[string]string, k, v string) map[string]string {
		l = maps.Clone(l)
		l[k] = v
		return l
	}
	for _, tc := range []struct {
		name      string
		labels    map[string]string
		scheduler string
		want      []jsonpatch.JsonPatchOperation
	}{
		{"job manager", t9kFlinkLabels(workloads.BeamJobManager), corev1.DefaultSchedulerName, set},
		{"task manager", t9kFlinkLabels(workloads.BeamTaskManager), corev1.DefaultSchedulerName, set},
		{"no scheduler name yet", t9kFlinkLabels(workloads.BeamTaskManager), "", set},
		{"volcano (batchSchedulerName)", t9kFlinkLabels(workloads.BeamTaskManager), "volcano", set},
		{"already on the t9k scheduler", t9kFlinkLabels(workloads.BeamTaskManager), schedv1beta1.SchedulerName, nil},
		{"the operator's own cluster", map[string]string{"app": "flink", "cluster": "x", "component": "taskmanager"}, corev1.DefaultSchedulerName, nil},
		{"a BeamJob without the t9k scheduler", without(t9kFlinkLabels(workloads.BeamTaskManager), schedv1beta1.LabelGroupName), corev1.DefaultSchedulerName, nil},
		{"an empty group name", with(t9kFlinkLabels(workloads.BeamTaskManager), schedv1beta1.LabelGroupName, ""), corev1.DefaultSchedulerName, nil},
		{"the submit pods (they carry their schedulerName)", t9kFlinkLabels(workloads.BeamSubmitter), corev1.DefaultSchedulerName, nil},
		{"another kind's pod", with(t9kFlinkLabels(workloads.BeamTaskManager), workloads.LabelOwnerKind, "GenericJob"), corev1.DefaultSchedulerName, nil},
		{"no labels", nil, corev1.DefaultSchedulerName, nil},
	} {
		if got := FlinkPodPatch(flinkPod(tc.labels, tc.scheduler)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestFlinkPodMutatorHandle: the review's answer is the patch, which applied gives the pod its
// schedulerName and nothing else.
func TestFlinkPodMutatorHandle(t *testing.T) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	m := &FlinkPodMutator{Decoder: admission.NewDecoder(s)}
	review := func(p *corev1.Pod) admission.Response {
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		return m.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Operation: admissionv1.Create,
			Object: runtime.RawExtension{Raw: raw}}})
	}
	pod := flinkPod(t9kFlinkLabels(workloads.BeamJobManager), corev1.DefaultSchedulerName)
	r := review(pod)
	if !r.Allowed || len(r.Patches) != 1 || r.Patches[0].Path != "/spec/schedulerName" || r.Patches[0].Value != schedv1beta1.SchedulerName {
		t.Fatalf("response %+v", r)
	}
	if r := review(flinkPod(map[string]string{"app": "flink"}, corev1.DefaultSchedulerName)); !r.Allowed || len(r.Patches) != 0 {
		t.Errorf("a pod of no t9k BeamJob: %+v", r)
	}
}

// TestMutatingWebhookConfigurationSelectsFlinkPodsOnly: the objectSelector the apiserver applies
// is the one FlinkPodPatch checks.
func TestMutatingWebhookConfigurationSelectsFlinkPodsOnly(t *testing.T) {
	c := MutatingWebhookConfiguration("t9k-controllers", URLClient("127.0.0.1:9443"), []byte("ca"))
	if len(c.Webhooks) != 1 {
		t.Fatalf("webhooks %+v", c.Webhooks)
	}
	w := c.Webhooks[0]
	if w.Name != FlinkPodWebhook || *w.ClientConfig.URL != "https://127.0.0.1:9443"+FlinkPodPath || string(w.ClientConfig.CABundle) != "ca" {
		t.Errorf("webhook %s at %v", w.Name, w.ClientConfig)
	}
	if !reflect.DeepEqual(w.ObjectSelector, flinkPodSelector()) || w.NamespaceSelector == nil || len(w.NamespaceSelector.MatchExpressions) != 1 {
		t.Errorf("selectors %v %v", w.ObjectSelector, w.NamespaceSelector)
	}
}
