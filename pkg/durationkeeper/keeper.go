// Package durationkeeper stops workloads whose pods outlive their queue's maxDuration, as
// TensorStack's Duration Keeper did: through the top-most owner it knows how to stop (a T9k job is
// paused, a Deployment/StatefulSet/ReplicaSet scaled to 0, a batch Job suspended), or by deleting
// a pod nothing known owns. DaemonSet pods and pods at or above a priority threshold are spared.
package durationkeeper

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/queuestatus"
)

// ReasonMaxDurationExceeded is the reason of the Warning event on the stopped object.
const ReasonMaxDurationExceeded = "MaxDurationExceeded"

// Options are the duration keeper's flags.
type Options struct {
	Enabled        bool
	QueueNamespace string
	// PriorityThreshold spares pods whose priority is at least this: a PriorityClass name or an
	// integer.
	PriorityThreshold string
	// Resync re-examines every queue with a maxDuration at least this often, in case an event was
	// missed; expiries themselves are timed exactly.
	Resync time.Duration
}

// AddFlags registers the duration keeper's flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "enable-duration-keeper", true, "Stop workloads whose pods outlive their queue's maxDuration.")
	fs.StringVar(&o.PriorityThreshold, "duration-keeper-priority-threshold", "system-cluster-critical", "Pods with a priority at or above this (a PriorityClass name or an integer) are never stopped.")
	fs.DurationVar(&o.Resync, "duration-keeper-resync", 5*time.Minute, "Longest time between two looks at a queue with a maxDuration.")
}

// Well-known values, used when the PriorityClass cannot be read.
var systemPriorities = map[string]int32{"system-cluster-critical": 2000000000, "system-node-critical": 2000001000}

// +kubebuilder:rbac:groups=scheduler.tensorstack.dev,resources=queues,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=apps,resources=deployments;statefulsets;replicasets,verbs=get;patch
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;patch
// +kubebuilder:rbac:groups=batch.tensorstack.dev,resources=genericjobs;pytorchtrainingjobs;tensorflowtrainingjobs;xgboosttrainingjobs;mpijobs;colossalaijobs;deepspeedjobs;beamjobs,verbs=get;patch
// +kubebuilder:rbac:groups=scheduling.k8s.io,resources=priorityclasses,verbs=get

// Setup adds the duration keeper, a controller of Queues woken by new pods and by the next expiry.
func Setup(mgr ctrl.Manager, o Options) error {
	if !o.Enabled {
		return nil
	}
	if err := queuestatus.Prepare(context.Background(), mgr); err != nil {
		return err
	}
	if o.QueueNamespace == "" {
		o.QueueNamespace = queuestatus.DefaultQueueNamespace
	}
	if o.Resync <= 0 {
		o.Resync = 5 * time.Minute
	}
	k := &Keeper{Cache: mgr.GetClient(), Direct: mgr.GetAPIReader(), Writer: mgr.GetClient(),
		Recorder: mgr.GetEventRecorderFor("duration-keeper"), Options: o, Now: time.Now}
	onlyCreate := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return true },
		UpdateFunc:  func(event.UpdateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
	}
	c := mgr.GetClient()
	return ctrl.NewControllerManagedBy(mgr).Named("duration-keeper").
		For(&schedv1beta1.Queue{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Pod{}, handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, obj client.Object) []reconcile.Request {
			return queuestatus.QueueRequests(ctx, c, o.QueueNamespace, obj.(*corev1.Pod))
		}), builder.WithPredicates(onlyCreate)).
		Complete(k)
}

// Keeper is the duration keeper's reconciler.
type Keeper struct {
	Cache    client.Reader // queues and pods (indexed)
	Direct   client.Reader // owners and PriorityClasses, read rarely: not worth informers
	Writer   client.Client
	Recorder record.EventRecorder
	Options  Options
	Now      func() time.Time
}

// Reconcile stops the owners of the queue's expired pods and asks to be called again at the next
// expiry.
func (k *Keeper) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	if req.Namespace != k.Options.QueueNamespace {
		return ctrl.Result{}, nil
	}
	log := klog.FromContext(ctx)
	var q schedv1beta1.Queue
	if err := k.Cache.Get(ctx, req.NamespacedName, &q); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	max, err := ParseMaxDuration(q.Spec.MaxDuration)
	if err != nil || max == 0 {
		return ctrl.Result{}, nil // the CRD pattern rejects bad values; nothing to keep
	}
	m, err := queuestatus.QueuePods(ctx, k.Cache, q.Name)
	if err != nil {
		return ctrl.Result{}, err
	}
	now := k.Now()
	next := k.Options.Resync
	threshold, thresholdKnown := int32(0), false
	for i := range m.Pods {
		p := &m.Pods[i]
		if queuestatus.Terminated(p) || p.DeletionTimestamp != nil {
			continue
		}
		age := now.Sub(p.CreationTimestamp.Time)
		if age < max {
			next = min(next, max-age)
			continue
		}
		if isDaemonSetPod(p) {
			continue
		}
		if !thresholdKnown {
			threshold = k.threshold(ctx)
			thresholdKnown = true
		}
		if p.Spec.Priority != nil && *p.Spec.Priority >= threshold {
			continue
		}
		if err := k.stop(ctx, &q, p, age, max); err != nil {
			log.Error(err, "stopping an expired pod's workload", "pod", klog.KObj(p), "queue", q.Name)
			next = min(next, 10*time.Second)
		}
	}
	return ctrl.Result{RequeueAfter: next + 100*time.Millisecond}, nil
}

func isDaemonSetPod(p *corev1.Pod) bool {
	ref := metav1.GetControllerOf(p)
	return ref != nil && ref.Kind == "DaemonSet" && groupOf(ref.APIVersion) == "apps"
}

// threshold resolves Options.PriorityThreshold; an unreadable one spares nothing extra but the
// system classes' well-known values.
func (k *Keeper) threshold(ctx context.Context) int32 {
	s := k.Options.PriorityThreshold
	if s == "" {
		return math.MaxInt32
	}
	if n, err := strconv.ParseInt(s, 10, 32); err == nil {
		return int32(n)
	}
	var pc schedulingv1.PriorityClass
	if err := k.Direct.Get(ctx, types.NamespacedName{Name: s}, &pc); err == nil {
		return pc.Value
	}
	if v, ok := systemPriorities[s]; ok {
		return v
	}
	klog.FromContext(ctx).Info("duration keeper: priority threshold class not found; sparing only system-cluster-critical and above", "class", s)
	return systemPriorities["system-cluster-critical"]
}

func groupOf(apiVersion string) string {
	gv, _ := schema.ParseGroupVersion(apiVersion)
	return gv.Group
}

// stoppable kinds, and how to stop each: the merge patch, plus the field that says it is already
// stopped.
type stopAction struct {
	patch   string
	stopped func(u *unstructured.Unstructured) bool
	what    string
}

var (
	scaleToZero = stopAction{patch: `{"spec":{"replicas":0}}`, what: "Set spec.replicas to 0",
		stopped: func(u *unstructured.Unstructured) bool {
			n, found, _ := unstructured.NestedInt64(u.Object, "spec", "replicas")
			return found && n == 0
		}}
	suspend = stopAction{patch: `{"spec":{"suspend":true}}`, what: "Set spec.suspend to true",
		stopped: func(u *unstructured.Unstructured) bool {
			b, _, _ := unstructured.NestedBool(u.Object, "spec", "suspend")
			return b
		}}
	pause = stopAction{patch: `{"spec":{"runMode":{"pause":{"enabled":true}}}}`, what: "Set spec.runMode.pause.enabled to true",
		stopped: func(u *unstructured.Unstructured) bool {
			b, _, _ := unstructured.NestedBool(u.Object, "spec", "runMode", "pause", "enabled")
			return b
		}}
)

func actionFor(gk schema.GroupKind) (stopAction, bool) {
	switch {
	case gk.Group == "apps" && slices.Contains([]string{"Deployment", "StatefulSet", "ReplicaSet"}, gk.Kind):
		return scaleToZero, true
	case gk.Group == "batch" && gk.Kind == "Job":
		return suspend, true
	case gk.Group == batchv1beta1.GroupVersion.Group && slices.Contains(jobKinds, gk.Kind):
		return pause, true
	}
	return stopAction{}, false
}

var jobKinds = []string{"GenericJob", "PyTorchTrainingJob", "TensorFlowTrainingJob", "XGBoostTrainingJob",
	"MPIJob", "ColossalAIJob", "DeepSpeedJob", "BeamJob"}

// stop acts on the top-most owner of p that it knows how to stop, climbing controller references
// (pod → ReplicaSet → Deployment) while the owner is a kind it can stop; with none, it deletes p.
func (k *Keeper) stop(ctx context.Context, q *schedv1beta1.Queue, p *corev1.Pod, age, max time.Duration) error {
	lived := fmt.Sprintf("lived %s, longer than maxDuration %s of queue %s", age.Round(time.Second), q.Spec.MaxDuration, q.Name)
	var target *unstructured.Unstructured
	var action stopAction
	ref := metav1.GetControllerOf(p)
	for depth := 0; ref != nil && depth < 8; depth++ {
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil {
			break
		}
		a, ok := actionFor(gv.WithKind(ref.Kind).GroupKind())
		if !ok {
			break
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(gv.WithKind(ref.Kind))
		if err := k.Direct.Get(ctx, types.NamespacedName{Namespace: p.Namespace, Name: ref.Name}, u); err != nil {
			if apierrors.IsNotFound(err) {
				break // an owner being deleted: its children go with it
			}
			return err
		}
		if u.GetUID() != ref.UID {
			break
		}
		target, action = u, a
		ref = metav1.GetControllerOf(u)
	}
	if target == nil {
		if err := k.Writer.Delete(ctx, p, client.Preconditions{UID: &p.UID}); err != nil {
			return client.IgnoreNotFound(err)
		}
		k.Recorder.Eventf(p, corev1.EventTypeWarning, ReasonMaxDurationExceeded, "Deleted the pod because it %s", lived)
		return nil
	}
	if action.stopped(target) {
		return nil // already stopped; its pods are on their way out
	}
	if err := k.Writer.Patch(ctx, target, client.RawPatch(types.MergePatchType, []byte(action.patch))); err != nil {
		return client.IgnoreNotFound(err)
	}
	k.Recorder.Eventf(target, corev1.EventTypeWarning, ReasonMaxDurationExceeded, "%s because its pod %s %s", action.what, p.Name, lived)
	klog.FromContext(ctx).Info("stopped a workload that outlived its queue's maxDuration",
		"kind", target.GetKind(), "object", klog.KObj(target), "pod", p.Name, "queue", q.Name)
	return nil
}
