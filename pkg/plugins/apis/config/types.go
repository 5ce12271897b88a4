// Package config holds the internal types of the arguments of t9k's scheduler plugins, registered
// in the kube-scheduler's config group so that KubeSchedulerConfiguration pluginConfig.args decode
// into them (the scheduler-plugins apis/config pattern). Versioned types live in ./v1.
package config

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
)

// T9kGangArgs configures the T9kGang plugin.
type T9kGangArgs struct {
	metav1.TypeMeta

	// ScheduleTimeoutSeconds is how long placed members wait in Permit for the rest of their
	// gang before the whole gang is released. A PodGroup's spec.scheduleTimeoutSeconds wins.
	ScheduleTimeoutSeconds int64
}

// T9kQueueArgs configures the T9kQueue plugin.
type T9kQueueArgs struct {
	metav1.TypeMeta

	// QueueNamespace is where Queue objects live (the scheduler's namespace).
	QueueNamespace string
	// Preemption lets a pending gang evict whole gangs of lower-priority preemptible queues.
	Preemption bool
}

// SchemeGroupVersion is the internal version of the kube-scheduler config group.
var SchemeGroupVersion = schedconfig.SchemeGroupVersion

func init() {
	// Registering into the scheduler's own builder puts our kinds into every scheme it builds,
	// including the plugin-args conversion scheme it creates lazily at config load.
	schedconfig.SchemeBuilder.Register(func(s *runtime.Scheme) error {
		s.AddKnownTypes(SchemeGroupVersion, &T9kGangArgs{}, &T9kQueueArgs{})
		return nil
	})
}

// MaxScheduleTimeoutSeconds bounds the Permit wait (a day) so a typo cannot park GPUs for weeks.
const MaxScheduleTimeoutSeconds = 86400

// ValidateT9kGangArgs rejects args a scheduler cannot run with.
func ValidateT9kGangArgs(a *T9kGangArgs) error {
	if a.ScheduleTimeoutSeconds < 1 || a.ScheduleTimeoutSeconds > MaxScheduleTimeoutSeconds {
		return fmt.Errorf("T9kGang args: scheduleTimeoutSeconds must be in [1, %d], got %d", MaxScheduleTimeoutSeconds, a.ScheduleTimeoutSeconds)
	}
	return nil
}

// ValidateT9kQueueArgs rejects args a scheduler cannot run with.
func ValidateT9kQueueArgs(a *T9kQueueArgs) error {
	if a.QueueNamespace == "" {
		return fmt.Errorf("T9kQueue args: queueNamespace must not be empty")
	}
	return nil
}

// DeepCopyObject implements runtime.Object.
func (a *T9kGangArgs) DeepCopyObject() runtime.Object { c := *a; return &c }

// DeepCopyObject implements runtime.Object.
func (a *T9kQueueArgs) DeepCopyObject() runtime.Object { c := *a; return &c }
