/*
Copyright 2026 The t9k Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package v1beta1

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodGroupSpec is a gang: none of its pods is bound until minMember of them can start together.
type PodGroupSpec struct {
	// MinMember is the gang size: pods wait until this many have joined the group and can all be
	// placed at once. Failed pods do not count.
	// +kubebuilder:validation:Minimum=1
	MinMember int32 `json:"minMember"`
	// Roles adds a minimum per role (the pod label scheduler.tensorstack.dev/role).
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	// +optional
	Roles []PodGroupRole `json:"roles,omitempty"`
	// Queue names the Queue, in the scheduler's namespace, the group belongs to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:default=default
	// +optional
	Queue string `json:"queue,omitempty"`
	// Priority orders groups inside the queue: higher first, ties go to the older group.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=0
	// +optional
	Priority int32 `json:"priority,omitempty"`
	// TopologyPolicy says how tightly the group must be packed in the cluster's topology. Unset
	// means None.
	// +optional
	TopologyPolicy *TopologyPolicy `json:"topologyPolicy,omitempty"`
	// ScheduleTimeoutSeconds overrides, for this group, how long the scheduler holds the members
	// it has placed while waiting for the rest of the quorum; when it runs out every placed member
	// is released. Unset means the scheduler's default (T9kGang args scheduleTimeoutSeconds).
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=86400
	// +optional
	ScheduleTimeoutSeconds *int32 `json:"scheduleTimeoutSeconds,omitempty"`
}

// PodGroupRole is the minimum number of members of one role.
type PodGroupRole struct {
	// Name is the value of the members' scheduler.tensorstack.dev/role label.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	Name string `json:"name"`
	// +kubebuilder:validation:Minimum=0
	MinMember int32 `json:"minMember"`
}

// TopologyMode is how strictly a group is kept inside one topology domain.
//
// Topology levels are node labels the scheduler is configured with, innermost first, for example
// nvidia.com/gpu.clique (one NVLink domain), network.topology.nvidia.com/block,
// network.topology.nvidia.com/spine, topology.kubernetes.io/zone. A domain of a level is the set
// of nodes sharing one value of its label; kubernetes.io/hostname is the single-node level.
// +kubebuilder:validation:Enum=None;Preferred;Required
type TopologyMode string

const (
	// TopologyNone places each member wherever it fits best on its own.
	TopologyNone TopologyMode = "None"
	// TopologyPreferred packs the whole group into the smallest topology domain that fits it:
	// it tries one node, then one domain of the innermost level, and climbs level by level; when
	// no single domain of any level fits, the group is spread over the cluster rather than kept
	// waiting.
	TopologyPreferred TopologyMode = "Preferred"
	// TopologyRequired places the group inside one domain of Level (or a smaller domain within
	// it); if no such domain has room, the group stays pending with reason TopologyUnsatisfiable
	// instead of being spread.
	TopologyRequired TopologyMode = "Required"
)

// TopologyPolicy is how a PodGroup is packed into the cluster's topology.
// +kubebuilder:validation:XValidation:rule="self.mode != 'Required' || has(self.level)",message="topologyPolicy.level is required when mode is Required"
// +kubebuilder:validation:XValidation:rule="self.mode == 'Required' || !has(self.level)",message="topologyPolicy.level may only be set when mode is Required"
type TopologyPolicy struct {
	// Mode is None, Preferred or Required.
	// +kubebuilder:default=None
	// +optional
	Mode TopologyMode `json:"mode,omitempty"`
	// Level is the node label key of the topology level the group must fit in, e.g.
	// nvidia.com/gpu.clique. Required mode only. A level the scheduler is not configured with
	// keeps the group pending with reason UnknownTopologyLevel.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=317
	// +kubebuilder:validation:Pattern=`^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`
	// +optional
	Level string `json:"level,omitempty"`
}

// String renders the policy in the AnnotationTopologyPolicy format.
func (p TopologyPolicy) String() string {
	switch p.Mode {
	case "":
		return string(TopologyNone)
	case TopologyRequired:
		return string(TopologyRequired) + ":" + p.Level
	}
	return string(p.Mode)
}

// ParseTopologyPolicy reads the AnnotationTopologyPolicy format: "None", "Preferred" or
// "Required:<level>".
func ParseTopologyPolicy(s string) (TopologyPolicy, error) {
	mode, level, hasLevel := strings.Cut(strings.TrimSpace(s), ":")
	switch TopologyMode(mode) {
	case TopologyNone, TopologyPreferred:
		if hasLevel {
			return TopologyPolicy{}, fmt.Errorf("topology policy %q: only Required takes a level", s)
		}
		return TopologyPolicy{Mode: TopologyMode(mode)}, nil
	case TopologyRequired:
		if level == "" {
			return TopologyPolicy{}, fmt.Errorf("topology policy %q: Required needs a level, as in Required:nvidia.com/gpu.clique", s)
		}
		return TopologyPolicy{Mode: TopologyRequired, Level: level}, nil
	}
	return TopologyPolicy{}, fmt.Errorf("topology policy %q: want None, Preferred or Required:<level>", s)
}

// PodGroup condition types and reasons. The reasons of a False GroupScheduled tell a person what to
// change; the message carries the details (which resource, which queue, which level).
const (
	PodGroupConditionScheduled = "GroupScheduled"
	ReasonPodGroupScheduled    = "PodGroupScheduled"
	// ReasonUnschedulable: the cluster has no room for minMember pods at once right now.
	ReasonUnschedulable = "Unschedulable"
	// ReasonQueueNotFound: spec.queue names no Queue.
	ReasonQueueNotFound = "QueueNotFound"
	// ReasonQueueClosed (shared with the Queue condition): the group's Queue is closed.
	// ReasonQueueQuotaExceeded: the group would take its Queue over quota.
	ReasonQueueQuotaExceeded = "QueueQuotaExceeded"
	// ReasonTopologyUnsatisfiable: no domain of the Required level has room for the group.
	ReasonTopologyUnsatisfiable = "TopologyUnsatisfiable"
	// ReasonUnknownTopologyLevel: the Required level is not a level the scheduler knows.
	ReasonUnknownTopologyLevel = "UnknownTopologyLevel"
	// ReasonNamespaceNotAllowed: the group's namespace does not match its Queue's
	// namespaceSelector.
	ReasonNamespaceNotAllowed = "NamespaceNotAllowed"
	// ReasonPermitTimeout: some members were placed but the quorum was not reached within the
	// schedule timeout; every placed member was released.
	ReasonPermitTimeout = "PermitTimeout"
	// ReasonScheduling: every member exists and the scheduler is placing them (replaces a stale
	// InsufficientMemberPod, so the two conditions never contradict each other).
	ReasonScheduling = "Scheduling"
	// ReasonPreempting: the scheduler evicted lower-priority gangs to make room for the group
	// and waits for them to terminate.
	ReasonPreempting = "Preempting"
	// ReasonPreempted (an event on the victim's PodGroup): its pods were evicted for a gang of a
	// higher-priority queue.
	ReasonPreempted = "Preempted"
	// ReasonBindFailed: a member's binding failed after the gang's quorum was let go; the
	// scheduler retries it, and releases the bound members if the gang is not whole in time.
	ReasonBindFailed = "BindFailed"
	// ReasonPartialGangReleased: the gang stayed short of its quorum after a member's binding
	// failed, for longer than its schedule timeout; the scheduler deleted the members it had
	// bound, so a partial gang holds nothing (the job's controller recreates them).
	ReasonPartialGangReleased = "PartialGangReleased"

	// PodGroupConditionReserved: True while the gang holds a reservation (status.reservation):
	// where, and what it waits for.
	PodGroupConditionReserved = "Reserved"
	// ReasonReservationHeld / ReasonReservationReleased: the Reserved condition's reasons (and
	// events when a reservation is made and released).
	ReasonReservationHeld     = "ReservationHeld"
	ReasonReservationReleased = "ReservationReleased"

	PodGroupConditionSufficientMember = "SufficientGroupMember"
	ReasonSufficientMemberPods        = "SufficientMemberPods"
	ReasonInsufficientMemberPod       = "InsufficientMemberPod"
)

// PodGroupStatus is the group's scheduling state and its members by phase.
type PodGroupStatus struct {
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Allocated is the sum of requests of the members bound to nodes.
	// +optional
	Allocated corev1.ResourceList `json:"allocated,omitempty"`
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// +optional
	Running int32 `json:"running,omitempty"`
	// +optional
	Succeeded int32 `json:"succeeded,omitempty"`
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// +optional
	Unknown int32 `json:"unknown,omitempty"`
	// Reservation, set by the scheduler, is where a gang that waited too long is being given
	// GPUs: pods of equal or lower priority stop taking them, so they drain to the gang. Kept here
	// so that a restarted scheduler keeps it.
	// +optional
	Reservation *PodGroupReservation `json:"reservation,omitempty"`
}

// PodGroupReservation is a gang's claim on GPUs that are still draining.
type PodGroupReservation struct {
	// Domain is the topology domain reserved ("block=b1"), empty for the whole cluster.
	// +optional
	Domain string `json:"domain,omitempty"`
	// Nodes are the reserved nodes and how many GPUs the gang takes on each.
	// +listType=map
	// +listMapKey=name
	Nodes []ReservedNode `json:"nodes"`
	// Since is when the reservation was made.
	Since metav1.Time `json:"since"`
}

// ReservedNode is one node of a reservation.
type ReservedNode struct {
	Name string `json:"name"`
	GPUs int32  `json:"gpus"`
}

// PodGroup is a gang of pods (label scheduler.tensorstack.dev/group-name) scheduled all together
// or not at all. T9k job controllers create one per job, named after it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:categories=t9k
// +kubebuilder:printcolumn:name="MinMember",type=integer,JSONPath=`.spec.minMember`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.queue`
// +kubebuilder:printcolumn:name="Scheduled",type=string,JSONPath=`.status.conditions[?(@.type=="GroupScheduled")].status`
// +kubebuilder:printcolumn:name="Running",type=integer,JSONPath=`.status.running`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="GroupScheduled")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PodGroup struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec PodGroupSpec `json:"spec"`
	// +optional
	Status PodGroupStatus `json:"status,omitempty"`
}

// PodGroupList is a list of PodGroups.
// +kubebuilder:object:root=true
type PodGroupList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PodGroup `json:"items"`
}
