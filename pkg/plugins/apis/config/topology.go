package config

import (
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
)

// T9kTopologyArgs configures the T9kTopology plugin.
type T9kTopologyArgs struct {
	metav1.TypeMeta

	// Levels are the node labels naming topology domains, innermost first.
	Levels []string
	// GPUResource is the extended resource whose devices the plugin places.
	GPUResource string
	// NICResource is the RDMA resource; a pod requesting it also gets the NICs nearest its GPUs.
	NICResource string
	// PlanTTLSeconds bounds how long a gang plan holds GPUs for members that have not come to
	// claim them.
	PlanTTLSeconds int64
	// ReserveAfterSeconds: a gang that could not be placed for this long gets a reservation (0:
	// never). PodGroups and Queues override it with scheduler.tensorstack.dev/reserve-after-seconds.
	ReserveAfterSeconds int64
	// MaxReservationsPerQueue bounds the reservations held at once per queue.
	MaxReservationsPerQueue int32
}

// PlanTTL is PlanTTLSeconds as a duration.
func (a *T9kTopologyArgs) PlanTTL() time.Duration {
	return time.Duration(a.PlanTTLSeconds) * time.Second
}

func init() {
	schedconfig.SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(SchemeGroupVersion, &T9kTopologyArgs{})
		return nil
	})
}

// ValidateT9kTopologyArgs rejects args a scheduler cannot run with.
func ValidateT9kTopologyArgs(a *T9kTopologyArgs) error {
	seen := map[string]bool{}
	for _, l := range a.Levels {
		if l == "" || seen[l] {
			return fmt.Errorf("T9kTopology args: levels must be distinct non-empty label keys, got %q", a.Levels)
		}
		seen[l] = true
	}
	if a.GPUResource == "" {
		return fmt.Errorf("T9kTopology args: gpuResource must not be empty")
	}
	if a.PlanTTLSeconds < 1 || a.PlanTTLSeconds > MaxScheduleTimeoutSeconds {
		return fmt.Errorf("T9kTopology args: planTTLSeconds must be in [1, %d], got %d", MaxScheduleTimeoutSeconds, a.PlanTTLSeconds)
	}
	if a.ReserveAfterSeconds < 0 {
		return fmt.Errorf("T9kTopology args: reserveAfterSeconds must be >= 0 (0 turns reservations off), got %d", a.ReserveAfterSeconds)
	}
	if a.MaxReservationsPerQueue < 1 {
		return fmt.Errorf("T9kTopology args: maxReservationsPerQueue must be >= 1, got %d", a.MaxReservationsPerQueue)
	}
	return nil
}

// DeepCopyObject implements runtime.Object.
func (a *T9kTopologyArgs) DeepCopyObject() runtime.Object {
	c := *a
	c.Levels = append([]string(nil), a.Levels...)
	return &c
}
