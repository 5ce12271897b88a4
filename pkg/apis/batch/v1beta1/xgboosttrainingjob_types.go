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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// XGBoostTrainingJobSpec is a distributed XGBoost job. The master's outcome is the job's; the
// controller, not the schema, requires a master, because the manuals show worker-only snippets.
// +kubebuilder:validation:XValidation:rule="self.replicaSpecs.all(r, r.type in ['master', 'worker'])",message="XGBoostTrainingJob replicaSpecs[].type must be master or worker"
type XGBoostTrainingJobSpec struct {
	CommonJobSpec `json:",inline"`
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=2
	ReplicaSpecs []TrainingReplicaSpec `json:"replicaSpecs"`
	// +optional
	RunPolicy *TrainingRunPolicy `json:"runPolicy,omitempty"`
}

// XGBoostTrainingJob runs distributed XGBoost training (rabit).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=xj,categories=t9k
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Scheduling",type=string,JSONPath=`.status.conditions[?(@.type=="Scheduled")].message`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.scheduler.t9kScheduler.queue`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type XGBoostTrainingJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec XGBoostTrainingJobSpec `json:"spec"`
	// +optional
	Status JobStatus `json:"status,omitempty"`
}

// XGBoostTrainingJobList is a list of XGBoostTrainingJobs.
// +kubebuilder:object:root=true
type XGBoostTrainingJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []XGBoostTrainingJob `json:"items"`
}
