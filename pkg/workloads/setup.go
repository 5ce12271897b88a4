package workloads

import (
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// Kinds lists the adapters of every job kind the controllers run.
var Kinds = []func() Job{
	newGenericJob,
	newPyTorchJob,
	newDeepSpeedJob,
	newMPIJob,
	newTensorFlowJob,
	newXGBoostJob,
	newColossalAIJob,
	newBeamJob,
}

// JobWithOwnedTypes names further child types whose changes should wake the kind's controller.
type JobWithOwnedTypes interface {
	OwnedTypes() []client.Object
}

// SetupWithManager adds one controller per job kind to the manager.
func SetupWithManager(mgr ctrl.Manager) error {
	for _, newJob := range Kinds {
		if err := setupKind(mgr, newJob); err != nil {
			return err
		}
	}
	return nil
}

func setupKind(mgr ctrl.Manager, newJob func() Job) error {
	sample := newJob()
	kind := sample.GVK().Kind
	r := &JobReconciler{
		Client:   mgr.GetClient(),
		Reader:   mgr.GetAPIReader(),
		Scheme:   mgr.GetScheme(),
		Recorder: mgr.GetEventRecorderFor(strings.ToLower(kind) + "-controller"),
		NewJob:   newJob,
	}
	b := ctrl.NewControllerManagedBy(mgr).
		Named(strings.ToLower(kind)).
		For(sample.Object()).
		Owns(&corev1.Pod{}).
		Owns(&corev1.Service{}).
		Owns(&schedv1.PodGroup{})
	if _, ok := sample.(JobWithTensorBoard); ok {
		b = b.Owns(&appsv1.Deployment{}) // the TensorBoard
	}
	if o, ok := sample.(JobWithOwnedTypes); ok {
		for _, t := range o.OwnedTypes() {
			b = b.Owns(t)
		}
	}
	return b.Complete(r)
}
