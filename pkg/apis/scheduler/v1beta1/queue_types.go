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
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// QueueSpec is a queue's quota, rank and admission rules.
// +kubebuilder:validation:XValidation:rule="!has(self.requests) || !has(self.quota)",message="spec.requests is the pre-2023 spelling of spec.quota.requests; set only one"
type QueueSpec struct {
	// Quota caps what the queue's workloads may request in total.
	// +optional
	Quota *QueueQuota `json:"quota,omitempty"`
	// Requests is the pre-2023 place of quota.requests, still found in manifests; it counts only
	// when quota is unset.
	// +optional
	Requests corev1.ResourceList `json:"requests,omitempty"`
	// Priority ranks queues: a higher one is served first and may preempt pods of lower,
	// preemptible queues. Ties are broken by the lower dominant resource share.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=0
	// +optional
	Priority int32 `json:"priority,omitempty"`
	// Preemptible false protects the queue's pods from preemption; unset means true.
	// +optional
	Preemptible *bool `json:"preemptible,omitempty"`
	// Closed rejects new workloads for the queue and stops allocating to it.
	// +optional
	Closed bool `json:"closed,omitempty"`
	// MaxDuration is the longest a pod of the queue may live (now - creationTimestamp) before
	// the Duration Keeper stops its owner, e.g. "2h", "1d2h30m", "1w"; units y, w, d, h, m, s, ms.
	// "0" means no limit.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:Pattern=`^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$`
	// +optional
	MaxDuration string `json:"maxDuration,omitempty"`
	// ResourceShapeProfile names a profile in ConfigMap t9k-system/resource-shapes; workloads
	// larger than its shape are rejected.
	// +optional
	ResourceShapeProfile string `json:"resourceShapeProfile,omitempty"`
	// NodeSelector restricts the nodes the queue's pods may use; nil means all nodes.
	// +optional
	NodeSelector *metav1.LabelSelector `json:"nodeSelector,omitempty"`
	// NamespaceSelector says which namespaces may use the queue; nil or empty matches none, so
	// that a new queue is private until an admin opens it.
	// +optional
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// QueueQuota bounds the sum of the resources.requests of the queue's workloads; it is checked when
// a workload is created, which is rejected if allocated + request > quota.
type QueueQuota struct {
	// +optional
	Requests corev1.ResourceList `json:"requests,omitempty"`
}

// IsPreemptible applies the default: a queue is preemptible unless it says otherwise.
func (s *QueueSpec) IsPreemptible() bool { return s.Preemptible == nil || *s.Preemptible }

// QuotaRequests is quota.requests, or the old spec.requests when quota is unset.
func (s *QueueSpec) QuotaRequests() corev1.ResourceList {
	if s.Quota != nil {
		return s.Quota.Requests
	}
	return s.Requests
}

// Queue condition types and reasons.
const (
	// QueueConditionClosed mirrors spec.closed once the scheduler has acted on it.
	QueueConditionClosed = "QueueClosed"
	ReasonQueueOpen      = "QueueOpen"
	ReasonQueueClosed    = "QueueClosed"

	// QueueConditionResourcePressure is True when allocation exceeds 90% of the quota in some
	// resource.
	QueueConditionResourcePressure   = "ResourcePressure"
	ReasonQueueHasResourcePressure   = "QueueHasResourcePressure"
	ReasonQueueNoResourcePressure    = "QueueHasNoResourcePressure"
	ResourcePressureThresholdPercent = 90
)

// QueueStatus is what the queue holds now.
type QueueStatus struct {
	// Allocated is the sum of requests of the queue's running pods.
	// +optional
	Allocated corev1.ResourceList `json:"allocated,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// +optional
	PodGroups QueuePodGroups `json:"podGroups,omitempty"`
	// +optional
	Pods PodCounts `json:"pods,omitempty"`
}

// QueuePodGroups counts the queue's PodGroups.
type QueuePodGroups struct {
	// Total includes the virtual groups of pods that joined the queue without a PodGroup.
	Total int32 `json:"total"`
}

// PodCounts counts pods by phase.
type PodCounts struct {
	Pending   int32 `json:"pending"`
	Running   int32 `json:"running"`
	Succeeded int32 `json:"succeeded"`
	Failed    int32 `json:"failed"`
	Unknown   int32 `json:"unknown"`
}

// Queue is a share of the cluster: a quota, a priority and the namespaces and nodes it may use.
// Queues live in the scheduler's namespace (t9k-system).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=q,categories=t9k
// +kubebuilder:printcolumn:name="Priority",type=integer,JSONPath=`.spec.priority`
// +kubebuilder:printcolumn:name="Closed",type=boolean,JSONPath=`.spec.closed`
// +kubebuilder:printcolumn:name="PodGroups",type=integer,JSONPath=`.status.podGroups.total`
// +kubebuilder:printcolumn:name="Running",type=integer,JSONPath=`.status.pods.running`,priority=1
// +kubebuilder:printcolumn:name="Pending",type=integer,JSONPath=`.status.pods.pending`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type Queue struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +optional
	Spec QueueSpec `json:"spec,omitempty"`
	// +optional
	Status QueueStatus `json:"status,omitempty"`
}

// QueueList is a list of Queues.
// +kubebuilder:object:root=true
type QueueList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Queue `json:"items"`
}
