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

// TensorFlowTrainingJobSpec is a distributed TensorFlow job; the controller injects TF_CONFIG and
// the training container must be named tensorflow. The chief (else worker 0) decides success.
// +kubebuilder:validation:XValidation:rule="self.replicaSpecs.all(r, r.type in ['chief', 'worker', 'ps', 'evaluator'])",message="TensorFlowTrainingJob replicaSpecs[].type must be one of chief, worker, ps, evaluator"
type TensorFlowTrainingJobSpec struct {
	CommonJobSpec `json:",inline"`
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	ReplicaSpecs []TrainingReplicaSpec `json:"replicaSpecs"`
	// +optional
	RunPolicy *TrainingRunPolicy `json:"runPolicy,omitempty"`
	// +optional
	TensorboardSpec *TensorBoardSpec `json:"tensorboardSpec,omitempty"`
}

// TensorFlowTrainingJob runs distributed TensorFlow training (MultiWorkerMirrored or parameter
// server).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tj,categories=t9k
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Scheduling",type=string,JSONPath=`.status.conditions[?(@.type=="Scheduled")].message`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.scheduler.t9kScheduler.queue`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TensorFlowTrainingJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec TensorFlowTrainingJobSpec `json:"spec"`
	// +optional
	Status TrainingJobStatus `json:"status,omitempty"`
}

// TensorFlowTrainingJobList is a list of TensorFlowTrainingJobs.
// +kubebuilder:object:root=true
type TensorFlowTrainingJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TensorFlowTrainingJob `json:"items"`
}
