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

// GenericJobSpec runs arbitrary replica types and decides success and failure by rules.
// +kubebuilder:validation:XValidation:rule="!has(self.successRules) || self.successRules.all(r, r.all(t, self.replicaSpecs.exists(s, s.type == t)))",message="successRules may only name replica types listed in replicaSpecs"
// +kubebuilder:validation:XValidation:rule="!has(self.failureRules) || self.failureRules.all(r, r.all(t, self.replicaSpecs.exists(s, s.type == t)))",message="failureRules may only name replica types listed in replicaSpecs"
type GenericJobSpec struct {
	CommonJobSpec `json:",inline"`
	// ReplicaSpecs lists the replica types; any DNS-label type name is allowed.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=32
	ReplicaSpecs []ReplicaSpec `json:"replicaSpecs"`
	// SuccessRules: the job succeeds once every replica named by any one rule has succeeded.
	// +kubebuilder:validation:MaxItems=64
	// +optional
	SuccessRules []FinishRule `json:"successRules,omitempty"`
	// FailureRules: the job fails once every replica named by any one rule has failed (or
	// exhausted its restarts).
	// +kubebuilder:validation:MaxItems=64
	// +optional
	FailureRules []FinishRule `json:"failureRules,omitempty"`
	// Service, when set, gets every replica a Service named <job>-<type>-<rank>.
	// +optional
	Service *ServiceOption `json:"service,omitempty"`
	// +kubebuilder:default=None
	// +optional
	CleanUpPolicy CleanUpPolicy `json:"cleanUpPolicy,omitempty"`
}

// FinishRule maps replica types to replica indices, e.g. {"master": [0], "worker": [0, 1]}.
// +kubebuilder:validation:MaxProperties=32
type FinishRule map[string][]int32

// ServiceOption describes the per-replica Services of a GenericJob.
type ServiceOption struct {
	// +kubebuilder:validation:MaxItems=32
	Ports []corev1.ServicePort `json:"ports"`
}

// GenericJob runs a set of replica types the user defines, with substitution variables such as
// $(rank) and $(service.<type>[<rank>].host) in commands, for frameworks without a dedicated kind.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=gj,categories=t9k
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Scheduling",type=string,JSONPath=`.status.conditions[?(@.type=="Scheduled")].message`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.scheduler.t9kScheduler.queue`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type GenericJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec GenericJobSpec `json:"spec"`
	// +optional
	Status JobStatus `json:"status,omitempty"`
}

// GenericJobList is a list of GenericJobs.
// +kubebuilder:object:root=true
type GenericJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []GenericJob `json:"items"`
}
