// Package v1 holds the versioned (kubescheduler.config.k8s.io/v1) arguments of t9k's scheduler
// plugins, their defaults and their conversion to the internal types in the parent package.
package v1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	schedv1 "k8s.io/kube-scheduler/config/v1"
	"k8s.io/utils/ptr"

	"github.com/tensorstack/t9k/pkg/plugins/apis/config"
)

// T9kGangArgs configures the T9kGang plugin.
type T9kGangArgs struct {
	metav1.TypeMeta `json:",inline"`

	// ScheduleTimeoutSeconds is how long placed members wait for the rest of their gang before
	// the whole gang is released. Default 60; a PodGroup's spec.scheduleTimeoutSeconds wins.
	ScheduleTimeoutSeconds *int64 `json:"scheduleTimeoutSeconds,omitempty"`
}

// T9kQueueArgs configures the T9kQueue plugin.
type T9kQueueArgs struct {
	metav1.TypeMeta `json:",inline"`

	// QueueNamespace is where Queue objects live. Default t9k-system.
	QueueNamespace *string `json:"queueNamespace,omitempty"`
	// Preemption lets a pending gang evict whole gangs of lower-priority preemptible queues.
	// Default true.
	Preemption *bool `json:"preemption,omitempty"`
}

// Defaults.
const (
	DefaultScheduleTimeoutSeconds = 60
	DefaultQueueNamespace         = "t9k-system"
)

// SetDefaults_T9kGangArgs fills unset fields.
func SetDefaults_T9kGangArgs(a *T9kGangArgs) { //nolint:revive // the scheme's naming convention
	if a.ScheduleTimeoutSeconds == nil {
		a.ScheduleTimeoutSeconds = ptr.To[int64](DefaultScheduleTimeoutSeconds)
	}
}

// SetDefaults_T9kQueueArgs fills unset fields.
func SetDefaults_T9kQueueArgs(a *T9kQueueArgs) { //nolint:revive // the scheme's naming convention
	if a.QueueNamespace == nil {
		a.QueueNamespace = ptr.To(DefaultQueueNamespace)
	}
	if a.Preemption == nil {
		a.Preemption = ptr.To(true)
	}
}

// SchemeGroupVersion is kubescheduler.config.k8s.io/v1.
var SchemeGroupVersion = schedv1.SchemeGroupVersion

func init() {
	schedv1.SchemeBuilder.Register(addToScheme)
}

func addToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(SchemeGroupVersion, &T9kGangArgs{}, &T9kQueueArgs{})
	s.AddTypeDefaultingFunc(&T9kGangArgs{}, func(o any) { SetDefaults_T9kGangArgs(o.(*T9kGangArgs)) })
	s.AddTypeDefaultingFunc(&T9kQueueArgs{}, func(o any) { SetDefaults_T9kQueueArgs(o.(*T9kQueueArgs)) })
	for _, err := range []error{
		s.AddConversionFunc((*T9kGangArgs)(nil), (*config.T9kGangArgs)(nil), func(a, b any, _ conversion.Scope) error {
			in, out := a.(*T9kGangArgs), b.(*config.T9kGangArgs)
			out.ScheduleTimeoutSeconds = ptr.Deref(in.ScheduleTimeoutSeconds, DefaultScheduleTimeoutSeconds)
			return nil
		}),
		s.AddConversionFunc((*config.T9kGangArgs)(nil), (*T9kGangArgs)(nil), func(a, b any, _ conversion.Scope) error {
			in, out := a.(*config.T9kGangArgs), b.(*T9kGangArgs)
			out.ScheduleTimeoutSeconds = ptr.To(in.ScheduleTimeoutSeconds)
			return nil
		}),
		s.AddConversionFunc((*T9kQueueArgs)(nil), (*config.T9kQueueArgs)(nil), func(a, b any, _ conversion.Scope) error {
			in, out := a.(*T9kQueueArgs), b.(*config.T9kQueueArgs)
			out.QueueNamespace = ptr.Deref(in.QueueNamespace, DefaultQueueNamespace)
			out.Preemption = ptr.Deref(in.Preemption, true)
			return nil
		}),
		s.AddConversionFunc((*config.T9kQueueArgs)(nil), (*T9kQueueArgs)(nil), func(a, b any, _ conversion.Scope) error {
			in, out := a.(*config.T9kQueueArgs), b.(*T9kQueueArgs)
			out.QueueNamespace, out.Preemption = ptr.To(in.QueueNamespace), ptr.To(in.Preemption)
			return nil
		}),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// DeepCopyObject implements runtime.Object.
func (a *T9kGangArgs) DeepCopyObject() runtime.Object {
	c := *a
	if a.ScheduleTimeoutSeconds != nil {
		c.ScheduleTimeoutSeconds = ptr.To(*a.ScheduleTimeoutSeconds)
	}
	return &c
}

// DeepCopyObject implements runtime.Object.
func (a *T9kQueueArgs) DeepCopyObject() runtime.Object {
	c := *a
	if a.QueueNamespace != nil {
		c.QueueNamespace = ptr.To(*a.QueueNamespace)
	}
	if a.Preemption != nil {
		c.Preemption = ptr.To(*a.Preemption)
	}
	return &c
}
