package queuestatus

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// DefaultQueueNamespace is where Queues live (the scheduler's namespace).
const DefaultQueueNamespace = "t9k-system"

var (
	indexMu sync.Mutex
	indexed = map[client.FieldIndexer]bool{}
)

// Prepare registers our API groups with the manager's scheme and the membership indexes with its
// cache, once per manager; every package of this area calls it from its Setup.
func Prepare(ctx context.Context, mgr ctrl.Manager) error {
	indexMu.Lock()
	defer indexMu.Unlock()
	if indexed[mgr.GetFieldIndexer()] {
		return nil
	}
	for _, add := range []func(*runtime.Scheme) error{schedv1beta1.AddToScheme, batchv1beta1.AddToScheme} {
		if err := add(mgr.GetScheme()); err != nil {
			return err
		}
	}
	if err := SetupIndexes(ctx, mgr.GetFieldIndexer()); err != nil {
		return err
	}
	indexed[mgr.GetFieldIndexer()] = true
	return nil
}

// +kubebuilder:rbac:groups=scheduler.tensorstack.dev,resources=queues;podgroups,verbs=get;list;watch
// +kubebuilder:rbac:groups=scheduler.tensorstack.dev,resources=queues/status;podgroups/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Setup adds the Queue and PodGroup status controllers. queueNamespace is where Queues live.
func Setup(mgr ctrl.Manager, queueNamespace string) error {
	if err := Prepare(context.Background(), mgr); err != nil {
		return err
	}
	if queueNamespace == "" {
		queueNamespace = DefaultQueueNamespace
	}
	c := mgr.GetClient()
	qr := &queueReconciler{c: c, ns: queueNamespace}
	if err := ctrl.NewControllerManagedBy(mgr).Named("queue-status").
		For(&schedv1beta1.Queue{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, o client.Object) []reconcile.Request {
			return QueueRequests(ctx, c, queueNamespace, o.(*corev1.Pod))
		})).
		Watches(&schedv1beta1.PodGroup{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: queueNamespace, Name: GroupQueue(o.(*schedv1beta1.PodGroup))}}}
		})).
		Complete(qr); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).Named("podgroup-status").
		For(&schedv1beta1.PodGroup{}).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(_ context.Context, o client.Object) []reconcile.Request {
			if g := o.GetLabels()[schedv1beta1.LabelGroupName]; g != "" {
				return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: g}}}
			}
			return nil
		})).
		Complete(&groupReconciler{c: c})
}

// QueueRequests maps a pod to the queues whose status or limits it affects: the one of its label
// and the one of its PodGroup (they differ only for a mislabelled pod).
func QueueRequests(ctx context.Context, r client.Reader, queueNamespace string, p *corev1.Pod) []reconcile.Request {
	names := map[string]bool{}
	if q := p.Labels[schedv1beta1.LabelQueue]; q != "" {
		names[q] = true
	}
	if q, err := QueueOf(ctx, r, p); err == nil && q != "" {
		names[q] = true
	}
	out := make([]reconcile.Request, 0, len(names))
	for n := range names {
		out = append(out, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: queueNamespace, Name: n}})
	}
	return out
}

type queueReconciler struct {
	c  client.Client
	ns string
}

func (r *queueReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != r.ns {
		return ctrl.Result{}, nil // a Queue outside the scheduler's namespace is not a queue
	}
	var q schedv1beta1.Queue
	if err := r.c.Get(ctx, req.NamespacedName, &q); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	m, err := QueuePods(ctx, r.c, q.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	st := QueueStatus(&q, m)
	if len(st.Allocated) == 0 {
		st.Allocated = nil
	}
	if equality.Semantic.DeepEqual(st, q.Status) {
		return ctrl.Result{}, nil
	}
	// A whole-status update (all of it is ours): a merge patch of the changes would leave out the
	// zero counts the schema requires when the stored status has none yet. A conflict requeues.
	q.Status = st
	err = r.c.Status().Update(ctx, &q)
	if apierrors.IsConflict(err) {
		return ctrl.Result{Requeue: true}, nil
	}
	return ctrl.Result{}, client.IgnoreNotFound(err)
}

type groupReconciler struct{ c client.Client }

func (r *groupReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pg schedv1beta1.PodGroup
	if err := r.c.Get(ctx, req.NamespacedName, &pg); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	pods, err := GroupPods(ctx, r.c, pg.Namespace, pg.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	st := GroupCounts(*pg.Status.DeepCopy(), pods)
	if len(st.Allocated) == 0 {
		st.Allocated = nil
	}
	if equality.Semantic.DeepEqual(st, pg.Status) {
		return ctrl.Result{}, nil
	}
	// A merge patch of the changed fields only: the scheduler's conditions are never sent, so a
	// condition it wrote after our cache was filled is not overwritten.
	base := pg.DeepCopy()
	pg.Status = st
	err = r.c.Status().Patch(ctx, &pg, client.MergeFrom(base))
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, err
}
