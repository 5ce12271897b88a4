package workloads

import (
	"context"
	"fmt"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// ensureChildren creates the job's PodGroup (with the t9k scheduler), its headless Service and
// the kind's own objects.
func (r *JobReconciler) ensureChildren(ctx context.Context, job Job, c *Cluster) error {
	if err := r.ensurePodGroup(ctx, job, c); err != nil {
		return err
	}
	if err := r.apply(ctx, job, headlessService(c)); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if o, ok := job.(JobWithObjects); ok {
		objs, err := o.Objects(c)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if err := r.apply(ctx, job, obj); err != nil {
				return fmt.Errorf("%T %s: %w", obj, obj.GetName(), err)
			}
		}
	}
	return nil
}

// ensurePodGroup creates or updates the job's PodGroup when the job uses the t9k scheduler.
func (r *JobReconciler) ensurePodGroup(ctx context.Context, job Job, c *Cluster) error {
	pg, err := podGroupFor(job, c)
	if err != nil {
		r.Recorder.Eventf(job.Object(), corev1.EventTypeWarning, "InvalidTopologyPolicy", "%v", err)
		return nil
	}
	if pg == nil {
		return nil
	}
	if err := r.apply(ctx, job, pg); err != nil {
		return fmt.Errorf("pod group: %w", err)
	}
	return nil
}

// headlessService gives every pod the DNS name <hostname>.<service>: members find each other by
// name before they are ready (rendezvous happens before readiness).
func headlessService(c *Cluster) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: c.Service},
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			Selector:                 map[string]string{LabelOwnerName: c.Name, LabelOwnerKind: c.Kind},
			PublishNotReadyAddresses: true,
		},
	}
}

// podGroupFor is the job's PodGroup, or nil without the t9k scheduler. minMember is every replica
// (elastic: minReplicas of the elastic type), except gated types, which start only after the
// others run; roles give each counted type its share.
func podGroupFor(job Job, c *Cluster) (*schedv1.PodGroup, error) {
	s := job.Common().Scheduler
	if s == nil || s.T9kScheduler == nil {
		return nil, nil
	}
	gate, _ := job.(JobWithStartGate)
	var el *batch.ElasticConfig
	elasticType := ""
	if e, ok := job.(JobWithElastic); ok && e.Elastic() != nil && e.Elastic().Enabled {
		el, elasticType = e.Elastic(), e.ElasticType()
	}
	pg := &schedv1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: c.Name},
		Spec:       schedv1.PodGroupSpec{Queue: queueOf(s.T9kScheduler), Priority: s.T9kScheduler.Priority},
	}
	for _, g := range c.Replicas {
		if gate != nil && gate.Gated(g.Type) {
			continue
		}
		n := g.Count
		if g.Type == elasticType && el.MinReplicas != nil && *el.MinReplicas < n {
			n = *el.MinReplicas
		}
		if n == 0 {
			continue
		}
		pg.Spec.MinMember += n
		pg.Spec.Roles = append(pg.Spec.Roles, schedv1.PodGroupRole{Name: g.Type, MinMember: n})
	}
	if pg.Spec.MinMember == 0 {
		return nil, nil
	}
	if a := job.Object().GetAnnotations()[schedv1.AnnotationTopologyPolicy]; a != "" {
		tp, err := schedv1.ParseTopologyPolicy(a)
		if err != nil {
			return pg, err
		}
		pg.Spec.TopologyPolicy = &tp
	}
	return pg, nil
}

// apply creates obj (owned by the job, in its namespace, with its labels) if absent. Existing
// PodGroups and ConfigMaps are brought to the desired spec/data; other kinds are left as found.
func (r *JobReconciler) apply(ctx context.Context, job Job, obj client.Object) error {
	owner := job.Object()
	obj.SetNamespace(owner.GetNamespace())
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range ownerLabels(job.GVK().Kind, owner.GetName()) {
		labels[k] = v
	}
	obj.SetLabels(labels)
	if err := ctrl.SetControllerReference(owner, obj, r.Scheme); err != nil {
		return err
	}
	have := obj.DeepCopyObject().(client.Object)
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(obj), have); apierrors.IsNotFound(err) {
		if cm, ok := obj.(*corev1.ConfigMap); ok {
			r.stampUpdated(cm)
		}
		if err := r.Client.Create(ctx, obj); !apierrors.IsAlreadyExists(err) {
			return err
		}
		return nil // a stale cache; the next reconcile compares
	} else if err != nil {
		return err
	}
	if err := checkOwner(job, have, kindOf(obj)); err != nil {
		return err
	}
	switch want := obj.(type) {
	case *schedv1.PodGroup:
		have := have.(*schedv1.PodGroup)
		if !equality.Semantic.DeepEqual(have.Spec, want.Spec) {
			have.Spec = want.Spec
			return r.Client.Update(ctx, have)
		}
	case *appsv1.Deployment:
		// tensorboardSpec.suspend scales the TensorBoard to zero and back.
		have := have.(*appsv1.Deployment)
		if !equality.Semantic.DeepEqual(have.Spec.Replicas, want.Spec.Replicas) {
			have.Spec.Replicas = want.Spec.Replicas
			return r.Client.Update(ctx, have)
		}
	case *corev1.ConfigMap:
		have := have.(*corev1.ConfigMap)
		if !equality.Semantic.DeepEqual(have.Data, want.Data) {
			have.Data = want.Data
			r.stampUpdated(have)
			return r.Client.Update(ctx, have)
		}
	}
	return nil
}

// stampUpdated records on a ConfigMap when its data is written (AnnotationUpdatedAt): the
// reference a scale-down's acknowledgement must come after (JobWithScaleDownAck).
func (r *JobReconciler) stampUpdated(cm *corev1.ConfigMap) {
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[AnnotationUpdatedAt] = r.now().UTC().Format(time.RFC3339)
}

// NameConflictError: a child the job needs exists and belongs to something else, typically a job
// of another kind with the same name in the namespace (their children's names would be the same).
// Nothing of the other's is touched; the job reports it (ReplicaFailure=True, NameConflict).
type NameConflictError struct {
	Kind, Name string
	// Holder is "<Kind> <name>" of the object's controller, or "" for an object nobody controls.
	Holder string
	Job    string
}

func (e *NameConflictError) Error() string {
	holder := "is not this job's"
	if e.Holder != "" {
		holder = "belongs to " + e.Holder
	}
	return fmt.Sprintf("%s %s already exists and %s: %s cannot use that name; jobs of different kinds in one namespace need different names",
		e.Kind, e.Name, holder, e.Job)
}

// checkOwner returns a NameConflictError when have is not controlled by the job.
func checkOwner(job Job, have client.Object, kind string) error {
	owner := job.Object()
	ref := metav1.GetControllerOf(have)
	if ref != nil && ref.UID == owner.GetUID() {
		return nil
	}
	e := &NameConflictError{Kind: kind, Name: have.GetName(), Job: job.GVK().Kind + " " + owner.GetName()}
	if ref != nil {
		e.Holder = ref.Kind + " " + ref.Name
	}
	return e
}

// kindOf names an object's kind for messages.
func kindOf(obj client.Object) string {
	switch obj.(type) {
	case *corev1.Pod:
		return "pod"
	case *corev1.Service:
		return "service"
	case *corev1.ConfigMap:
		return "configmap"
	case *corev1.Secret:
		return "secret"
	case *schedv1.PodGroup:
		return "podgroup"
	case *appsv1.Deployment:
		return "deployment"
	}
	if k := obj.GetObjectKind().GroupVersionKind().Kind; k != "" {
		return strings.ToLower(k)
	}
	return "object"
}
