package admission

import (
	"context"
	"net/http"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// The mutating webhook of the controllers: it puts the Flink operator's pods of a BeamJob on the
// t9k scheduler. The FlinkCluster API has podLabels, through which the BeamJob controller gives
// those pods the job's owner, PodGroup, queue and role labels, but no schedulerName
// (batchSchedulerName accepts only Volcano); without this webhook they would go to the default
// scheduler while the job's PodGroup counts them and its queue is charged for them.
const (
	FlinkPodWebhook = "flinkpods.mutation.batch.tensorstack.dev"
	FlinkPodPath    = "/mutate-flink-pods"
)

// flinkPodSelector picks, by their labels alone, the pods the webhook changes: a BeamJob's job and
// task managers (the replica types the BeamJob controller writes into the FlinkCluster's
// podLabels) in a PodGroup (set only when the job asked for the t9k scheduler). No other pod,
// Flink's own included, ever reaches the webhook, so it can fail closed.
func flinkPodSelector() *metav1.LabelSelector {
	return &metav1.LabelSelector{
		MatchLabels: map[string]string{workloads.LabelOwnerKind: "BeamJob"},
		MatchExpressions: []metav1.LabelSelectorRequirement{
			{Key: workloads.LabelReplicaType, Operator: metav1.LabelSelectorOpIn, Values: []string{workloads.BeamJobManager, workloads.BeamTaskManager}},
			{Key: schedv1beta1.LabelGroupName, Operator: metav1.LabelSelectorOpExists},
		},
	}
}

// FlinkPodPatch is the JSON patch that puts pod on the t9k scheduler, or nil when pod is not a
// BeamJob's Flink pod in a PodGroup (the webhook's objectSelector, checked again here) or already
// is on it.
func FlinkPodPatch(pod *corev1.Pod) []jsonpatch.JsonPatchOperation {
	sel, err := metav1.LabelSelectorAsSelector(flinkPodSelector())
	if err != nil || !sel.Matches(labels.Set(pod.Labels)) || pod.Labels[schedv1beta1.LabelGroupName] == "" {
		return nil
	}
	if pod.Spec.SchedulerName == schedv1beta1.SchedulerName {
		return nil
	}
	// "add" sets the member whether or not it is there (the apiserver has defaulted it to
	// default-scheduler before admission; Volcano's batchSchedulerName would have set "volcano").
	return []jsonpatch.JsonPatchOperation{{Operation: "add", Path: "/spec/schedulerName", Value: schedv1beta1.SchedulerName}}
}

// FlinkPodMutator answers the mutating webhook's reviews (pods, on CREATE).
type FlinkPodMutator struct {
	Decoder admission.Decoder
}

// Handle implements admission.Handler.
func (m *FlinkPodMutator) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create {
		return admission.Allowed("not a pod being created")
	}
	var pod corev1.Pod
	if err := m.Decoder.Decode(req, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err)
	}
	patch := FlinkPodPatch(&pod)
	if patch == nil {
		return admission.Allowed("")
	}
	return admission.Patched("a BeamJob's Flink pod goes to the t9k scheduler", patch...)
}

// MutatingWebhookConfiguration is the controllers' MutatingWebhookConfiguration: the Flink pod
// webhook, on pod CREATE, for the pods flinkPodSelector picks, in every namespace but the kube-*
// ones. It is not limited by --webhook-namespace-selector, which says whose workloads are
// checked: a Flink pod of a BeamJob on the t9k scheduler needs its schedulerName wherever it
// runs, or its gang never forms.
func MutatingWebhookConfiguration(name string, cc ClientConfig, ca []byte) *admissionregv1.MutatingWebhookConfiguration {
	return &admissionregv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "t9k-controllers"}},
		Webhooks: []admissionregv1.MutatingWebhook{{
			Name:                    FlinkPodWebhook,
			ClientConfig:            cc(FlinkPodPath, ca),
			FailurePolicy:           ptr.To(admissionregv1.Fail),
			MatchPolicy:             ptr.To(admissionregv1.Equivalent),
			SideEffects:             ptr.To(admissionregv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](10),
			ReinvocationPolicy:      ptr.To(admissionregv1.NeverReinvocationPolicy),
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{kubeNamespacesOut()}},
			ObjectSelector:          flinkPodSelector(),
			Rules: []admissionregv1.RuleWithOperations{{
				Operations: []admissionregv1.OperationType{admissionregv1.Create},
				Rule: admissionregv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"},
					Resources: []string{"pods"}, Scope: ptr.To(admissionregv1.NamespacedScope)},
			}},
		}},
	}
}
