package admission

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	admissionregv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// Webhook names (they appear in every rejection: `admission webhook "<name>" denied the request`)
// and the paths they are served on.
const (
	PodWebhook      = "pods.admission.scheduler.tensorstack.dev"
	PodGroupWebhook = "podgroups.admission.scheduler.tensorstack.dev"
	JobWebhook      = "jobs.admission.batch.tensorstack.dev"
	PodPath         = "/validate-pods"
	PodGroupPath    = "/validate-podgroups"
	JobPath         = "/validate-jobs"

	annotationSpecHash = "tensorstack.dev/webhook-spec-hash"
)

// JobResources are the plural names of the eight job kinds.
var JobResources = []string{"genericjobs", "pytorchtrainingjobs", "tensorflowtrainingjobs", "xgboosttrainingjobs",
	"mpijobs", "colossalaijobs", "deepspeedjobs", "beamjobs"}

// ClientConfig tells the apiserver how to reach one webhook path.
type ClientConfig func(path string, caBundle []byte) admissionregv1.WebhookClientConfig

// URLClient reaches the webhook at https://host:port (the local cluster: apiserver and controllers
// on one machine).
func URLClient(hostPort string) ClientConfig {
	return func(path string, ca []byte) admissionregv1.WebhookClientConfig {
		return admissionregv1.WebhookClientConfig{URL: ptr.To("https://" + hostPort + path), CABundle: ca}
	}
}

// ServiceClient reaches the webhook through a Service (in a real cluster).
func ServiceClient(namespace, name string, port int32) ClientConfig {
	return func(path string, ca []byte) admissionregv1.WebhookClientConfig {
		return admissionregv1.WebhookClientConfig{CABundle: ca, Service: &admissionregv1.ServiceReference{
			Namespace: namespace, Name: name, Path: ptr.To(path), Port: ptr.To(port)}}
	}
}

// WebhookConfiguration is the ValidatingWebhookConfiguration the controllers keep in place.
// Pods are checked on CREATE (admission is about new work entering a queue), and only those meant
// for the t9k scheduler (a matchCondition spares the webhook, and its Fail policy, every other
// pod). Jobs and PodGroups are checked on CREATE and UPDATE, every one of them: their templates
// are schemaless in the CRDs, so the webhook is what keeps an invalid template out of storage.
// nsSelector picks the namespaces; the kube-* ones are always left out so that a stopped webhook
// can never block the cluster's own pods.
func WebhookConfiguration(name string, cc ClientConfig, ca []byte, nsSelector *metav1.LabelSelector) *admissionregv1.ValidatingWebhookConfiguration {
	sel := nsSelector.DeepCopy()
	if sel == nil {
		sel = &metav1.LabelSelector{}
	}
	sel.MatchExpressions = append(sel.MatchExpressions, kubeNamespacesOut())
	hook := func(name, path, group string, resources []string, ops []admissionregv1.OperationType, cond *admissionregv1.MatchCondition) admissionregv1.ValidatingWebhook {
		w := admissionregv1.ValidatingWebhook{
			Name:                    name,
			ClientConfig:            cc(path, ca),
			FailurePolicy:           ptr.To(admissionregv1.Fail),
			MatchPolicy:             ptr.To(admissionregv1.Equivalent),
			SideEffects:             ptr.To(admissionregv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](10),
			NamespaceSelector:       sel,
			Rules: []admissionregv1.RuleWithOperations{{
				Operations: ops,
				Rule: admissionregv1.Rule{APIGroups: []string{group}, APIVersions: []string{"v1", "v1beta1"},
					Resources: resources, Scope: ptr.To(admissionregv1.NamespacedScope)},
			}},
		}
		if cond != nil {
			w.MatchConditions = []admissionregv1.MatchCondition{*cond}
		}
		return w
	}
	create := []admissionregv1.OperationType{admissionregv1.Create}
	createUpdate := []admissionregv1.OperationType{admissionregv1.Create, admissionregv1.Update}
	return &admissionregv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app.kubernetes.io/name": "t9k-controllers"}},
		Webhooks: []admissionregv1.ValidatingWebhook{
			hook(PodWebhook, PodPath, "", []string{"pods"}, create, &admissionregv1.MatchCondition{
				Name: "t9k-scheduler", Expression: fmt.Sprintf("object.spec.schedulerName == '%s'", schedv1beta1.SchedulerName)}),
			hook(PodGroupWebhook, PodGroupPath, schedv1beta1.GroupVersion.Group, []string{"podgroups"}, createUpdate, nil),
			hook(JobWebhook, JobPath, batchv1beta1.GroupVersion.Group, JobResources, createUpdate, nil),
		},
	}
}

// kubeNamespacesOut leaves the kube-* namespaces out of every webhook, so that a stopped webhook
// can never block the cluster's own pods.
func kubeNamespacesOut() metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn,
		Values: []string{"kube-system", "kube-public", "kube-node-lease"}}
}

// EnsureWebhookConfiguration creates want or, when its webhooks differ from what was last
// written (compared by a hash kept in an annotation, since the apiserver defaults fields), replaces
// them.
func EnsureWebhookConfiguration(ctx context.Context, r client.Reader, w client.Writer, want *admissionregv1.ValidatingWebhookConfiguration) error {
	return ensureConfig(ctx, r, w, want, want.Webhooks, &admissionregv1.ValidatingWebhookConfiguration{},
		func(have client.Object) {
			have.(*admissionregv1.ValidatingWebhookConfiguration).Webhooks = want.Webhooks
		})
}

// EnsureMutatingWebhookConfiguration is EnsureWebhookConfiguration for the mutating one.
func EnsureMutatingWebhookConfiguration(ctx context.Context, r client.Reader, w client.Writer, want *admissionregv1.MutatingWebhookConfiguration) error {
	return ensureConfig(ctx, r, w, want, want.Webhooks, &admissionregv1.MutatingWebhookConfiguration{},
		func(have client.Object) { have.(*admissionregv1.MutatingWebhookConfiguration).Webhooks = want.Webhooks })
}

// ensureConfig creates want, or sets the webhooks of have (read into) with setHooks when hooks'
// hash is not the one last written.
func ensureConfig(ctx context.Context, r client.Reader, w client.Writer, want client.Object, hooks any, have client.Object, setHooks func(client.Object)) error {
	raw, err := json.Marshal(hooks)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(raw)
	hash := hex.EncodeToString(sum[:])
	setHash := func(o client.Object) {
		a := o.GetAnnotations()
		if a == nil {
			a = map[string]string{}
		}
		a[annotationSpecHash] = hash
		o.SetAnnotations(a)
	}
	want = want.DeepCopyObject().(client.Object)
	setHash(want)
	err = r.Get(ctx, types.NamespacedName{Name: want.GetName()}, have)
	if apierrors.IsNotFound(err) {
		return w.Create(ctx, want)
	}
	if err != nil {
		return err
	}
	if have.GetAnnotations()[annotationSpecHash] == hash {
		return nil
	}
	setHooks(have)
	setHash(have)
	return w.Update(ctx, have)
}
