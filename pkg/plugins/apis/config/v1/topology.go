package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	schedv1 "k8s.io/kube-scheduler/config/v1"
	"k8s.io/utils/ptr"

	"github.com/tensorstack/t9k/pkg/plugins/apis/config"
)

// T9kTopologyArgs configures the T9kTopology plugin.
type T9kTopologyArgs struct {
	metav1.TypeMeta `json:",inline"`

	// Levels are the node labels naming topology domains, innermost first. Default:
	// nvidia.com/gpu.clique, network.topology.nvidia.com/block, network.topology.nvidia.com/spine,
	// topology.kubernetes.io/zone (GFD and topograph conventions).
	Levels []string `json:"levels,omitempty"`
	// GPUResource is the extended resource whose devices are placed. Default nvidia.com/gpu.
	GPUResource *string `json:"gpuResource,omitempty"`
	// NICResource is the RDMA resource: a pod requesting it also gets the NICs nearest to its
	// GPUs. Default rdma/hca_shared_devices_a (k8s-rdma-shared-dev-plugin's example name).
	NICResource *string `json:"nicResource,omitempty"`
	// PlanTTLSeconds bounds how long a gang plan holds GPUs for members that have not claimed
	// them. Default 60.
	PlanTTLSeconds *int64 `json:"planTTLSeconds,omitempty"`
	// ReserveAfterSeconds: a gang (or a queue's single pod) that could not be placed for this
	// long gets a reservation: the GPUs of the domain where it fits soonest stop going to pods of
	// equal or lower priority, so they drain to it. 0 turns reservations off. PodGroups and Queues
	// override it with the annotation scheduler.tensorstack.dev/reserve-after-seconds. Default 300.
	ReserveAfterSeconds *int64 `json:"reserveAfterSeconds,omitempty"`
	// MaxReservationsPerQueue bounds the reservations held at once per queue, so reservations
	// cannot starve the cluster themselves. Default 1.
	MaxReservationsPerQueue *int32 `json:"maxReservationsPerQueue,omitempty"`
}

// DefaultReserveAfterSeconds is how long a gang waits before it gets a reservation by default.
const DefaultReserveAfterSeconds = 300

// DefaultLevels are the topology levels when none are configured.
var DefaultLevels = []string{
	"nvidia.com/gpu.clique",
	"network.topology.nvidia.com/block",
	"network.topology.nvidia.com/spine",
	"topology.kubernetes.io/zone",
}

// SetDefaults_T9kTopologyArgs fills unset fields.
func SetDefaults_T9kTopologyArgs(a *T9kTopologyArgs) { //nolint:revive // the scheme's naming convention
	if a.Levels == nil {
		a.Levels = append([]string(nil), DefaultLevels...)
	}
	if a.GPUResource == nil {
		a.GPUResource = ptr.To("nvidia.com/gpu")
	}
	if a.NICResource == nil {
		a.NICResource = ptr.To("rdma/hca_shared_devices_a")
	}
	if a.PlanTTLSeconds == nil {
		a.PlanTTLSeconds = ptr.To[int64](DefaultScheduleTimeoutSeconds)
	}
	if a.ReserveAfterSeconds == nil {
		a.ReserveAfterSeconds = ptr.To[int64](DefaultReserveAfterSeconds)
	}
	if a.MaxReservationsPerQueue == nil {
		a.MaxReservationsPerQueue = ptr.To[int32](1)
	}
}

func init() {
	schedv1.SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(SchemeGroupVersion, &T9kTopologyArgs{})
		s.AddTypeDefaultingFunc(&T9kTopologyArgs{}, func(o any) { SetDefaults_T9kTopologyArgs(o.(*T9kTopologyArgs)) })
		if err := s.AddConversionFunc((*T9kTopologyArgs)(nil), (*config.T9kTopologyArgs)(nil), func(a, b any, _ conversion.Scope) error {
			in, out := a.(*T9kTopologyArgs), b.(*config.T9kTopologyArgs)
			d := *in
			SetDefaults_T9kTopologyArgs(&d)
			out.Levels = append([]string(nil), d.Levels...)
			out.GPUResource, out.NICResource, out.PlanTTLSeconds = *d.GPUResource, *d.NICResource, *d.PlanTTLSeconds
			out.ReserveAfterSeconds, out.MaxReservationsPerQueue = *d.ReserveAfterSeconds, *d.MaxReservationsPerQueue
			return nil
		}); err != nil {
			return err
		}
		return s.AddConversionFunc((*config.T9kTopologyArgs)(nil), (*T9kTopologyArgs)(nil), func(a, b any, _ conversion.Scope) error {
			in, out := a.(*config.T9kTopologyArgs), b.(*T9kTopologyArgs)
			out.Levels = append([]string(nil), in.Levels...)
			out.GPUResource, out.NICResource, out.PlanTTLSeconds = ptr.To(in.GPUResource), ptr.To(in.NICResource), ptr.To(in.PlanTTLSeconds)
			out.ReserveAfterSeconds, out.MaxReservationsPerQueue = ptr.To(in.ReserveAfterSeconds), ptr.To(in.MaxReservationsPerQueue)
			return nil
		})
	})
}

// DeepCopyObject implements runtime.Object.
func (a *T9kTopologyArgs) DeepCopyObject() runtime.Object {
	c := *a
	c.Levels = append([]string(nil), a.Levels...)
	if a.GPUResource != nil {
		c.GPUResource = ptr.To(*a.GPUResource)
	}
	if a.NICResource != nil {
		c.NICResource = ptr.To(*a.NICResource)
	}
	if a.PlanTTLSeconds != nil {
		c.PlanTTLSeconds = ptr.To(*a.PlanTTLSeconds)
	}
	if a.ReserveAfterSeconds != nil {
		c.ReserveAfterSeconds = ptr.To(*a.ReserveAfterSeconds)
	}
	if a.MaxReservationsPerQueue != nil {
		c.MaxReservationsPerQueue = ptr.To(*a.MaxReservationsPerQueue)
	}
	return &c
}
