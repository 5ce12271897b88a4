package admission

import (
	"context"
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/queuestatus"
)

// ShapesConfigMap is the name of the ConfigMap (in the queue namespace) holding resource-shape
// profiles, and ShapesKey its key.
const (
	ShapesConfigMap = "resource-shapes"
	ShapesKey       = "config.yaml"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// Validator answers the admission reviews of pods, PodGroups and T9k jobs.
type Validator struct {
	Cache          client.Reader // queues, PodGroups, pods, namespaces (indexed; see queuestatus)
	Direct         client.Reader // the resource-shapes ConfigMap, read only when a queue names a profile
	Decoder        admission.Decoder
	QueueNamespace string
	// TopologyLevels are the scheduler's topology levels; a Required policy at another level is
	// refused. Empty: not checked here (the scheduler then reports it on the PodGroup).
	TopologyLevels []string
}

// newJob returns an empty object of a T9k job kind.
func newJob(kind string) client.Object {
	switch kind {
	case "GenericJob":
		return &batchv1beta1.GenericJob{}
	case "PyTorchTrainingJob":
		return &batchv1beta1.PyTorchTrainingJob{}
	case "TensorFlowTrainingJob":
		return &batchv1beta1.TensorFlowTrainingJob{}
	case "XGBoostTrainingJob":
		return &batchv1beta1.XGBoostTrainingJob{}
	case "MPIJob":
		return &batchv1beta1.MPIJob{}
	case "ColossalAIJob":
		return &batchv1beta1.ColossalAIJob{}
	case "DeepSpeedJob":
		return &batchv1beta1.DeepSpeedJob{}
	case "BeamJob":
		return &batchv1beta1.BeamJob{}
	}
	return nil
}

// Handle implements admission.Handler.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	in := Input{Kind: req.Kind.Kind, QueueNamespace: v.QueueNamespace,
		Resource: schema.GroupResource{Group: req.Resource.Group, Resource: req.Resource.Resource}}
	name := req.Name
	switch {
	case req.Kind.Group == "" && req.Kind.Kind == "Pod":
		var pod corev1.Pod
		if err := v.Decoder.Decode(req, &pod); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if pod.Spec.SchedulerName != schedv1beta1.SchedulerName {
			return admission.Allowed("")
		}
		pod.Namespace = req.Namespace
		q, err := queuestatus.QueueOf(ctx, v.Cache, &pod)
		if err != nil {
			return admission.Errored(http.StatusInternalServerError, err)
		}
		if q == "" {
			return admission.Allowed("not in a queue")
		}
		if name == "" {
			name = pod.GenerateName
		}
		in.QueueName = q
		in.Replicas = []Replica{{Name: name, Count: 1, Spec: &pod.Spec}}
	case req.Kind.Group == schedv1beta1.GroupVersion.Group && req.Kind.Kind == "PodGroup":
		var pg schedv1beta1.PodGroup
		if err := v.Decoder.Decode(req, &pg); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if tp := pg.Spec.TopologyPolicy; tp != nil && specChanged(req) {
			if errs := v.validateLevel(field.NewPath("spec", "topologyPolicy", "level"), *tp); len(errs) > 0 {
				return invalid(req, errs)
			}
		}
		if req.Operation != admissionv1.Create {
			return admission.Allowed("")
		}
		in.QueueName = queuestatus.GroupQueue(&pg)
	case req.Kind.Group == batchv1beta1.GroupVersion.Group && newJob(req.Kind.Kind) != nil:
		obj := newJob(req.Kind.Kind)
		if err := v.Decoder.Decode(req, obj); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if specChanged(req) {
			errs, err := v.validateJob(req, obj)
			if err != nil {
				return admission.Errored(http.StatusInternalServerError, err)
			}
			if len(errs) > 0 {
				klog.FromContext(ctx).V(2).Info("invalid", "kind", req.Kind.Kind, "namespace", req.Namespace, "name", name, "errors", len(errs))
				return invalid(req, errs)
			}
		}
		if req.Operation != admissionv1.Create {
			return admission.Allowed("")
		}
		q, reps, ok := JobReplicas(obj)
		if !ok {
			return admission.Allowed("does not use the t9k scheduler")
		}
		in.QueueName, in.Replicas = q, reps
	default:
		return admission.Allowed("not a kind this webhook checks")
	}

	if err := v.gather(ctx, req.Namespace, &in); err != nil {
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if err := Check(in); err != nil {
		klog.FromContext(ctx).V(2).Info("rejected", "kind", req.Kind.Kind, "namespace", req.Namespace, "name", name, "reason", err.Error())
		return admission.Denied(err.Error())
	}
	return admission.Allowed("")
}

// gather fills the queue, namespace, allocation and shape of in.
func (v *Validator) gather(ctx context.Context, namespace string, in *Input) error {
	var q schedv1beta1.Queue
	err := v.get(ctx, types.NamespacedName{Namespace: v.QueueNamespace, Name: in.QueueName}, &q)
	if apierrors.IsNotFound(err) {
		return nil // Check reports it
	}
	if err != nil {
		return err
	}
	in.Queue = &q
	var ns corev1.Namespace
	if err := v.get(ctx, types.NamespacedName{Name: namespace}, &ns); err != nil {
		return err
	}
	in.Namespace = &ns
	if len(in.Replicas) == 0 {
		return nil
	}
	m, err := queuestatus.QueuePods(ctx, v.Cache, q.Name)
	if err != nil {
		return err
	}
	in.Allocated = queuestatus.Allocated(m.Pods, false)
	if q.Spec.ResourceShapeProfile != "" {
		in.Shape, in.ShapeError = v.profile(ctx, q.Spec.ResourceShapeProfile, q.Name)
	}
	return nil
}

// get reads from the cache, and from the apiserver when the cache has not seen the object yet:
// `kubectl apply -f dir/` creates a Queue or Namespace and, milliseconds later, what uses it.
func (v *Validator) get(ctx context.Context, key types.NamespacedName, obj client.Object) error {
	err := v.Cache.Get(ctx, key, obj)
	if apierrors.IsNotFound(err) {
		err = v.Direct.Get(ctx, key, obj)
	}
	return err
}

// profile reads one resource-shape profile. A profile the queue names but the ConfigMap lacks is
// an admin's mistake; rejecting with a message that says so beats silently lifting the limit.
func (v *Validator) profile(ctx context.Context, name, queue string) (*Profile, error) {
	var cm corev1.ConfigMap
	where := fmt.Sprintf("ConfigMap %s/%s", v.QueueNamespace, ShapesConfigMap)
	if err := v.Direct.Get(ctx, types.NamespacedName{Namespace: v.QueueNamespace, Name: ShapesConfigMap}, &cm); err != nil {
		return nil, fmt.Errorf("queue %q uses resource shape profile %q, but %s cannot be read: %v", queue, name, where, err)
	}
	var cfg ShapeConfig
	if err := yaml.Unmarshal([]byte(cm.Data[ShapesKey]), &cfg); err != nil {
		return nil, fmt.Errorf("queue %q uses resource shape profile %q, but %s key %s is not valid: %v", queue, name, where, ShapesKey, err)
	}
	for i := range cfg.Profiles {
		if cfg.Profiles[i].Name == name {
			return &cfg.Profiles[i], nil
		}
	}
	return nil, fmt.Errorf("queue %q uses resource shape profile %q, which %s does not define", queue, name, where)
}
