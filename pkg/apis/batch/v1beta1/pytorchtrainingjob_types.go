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
	"k8s.io/apimachinery/pkg/util/intstr"
)

// PyTorchReplicaSpec adds the elastic scaling weight to a training replica group.
type PyTorchReplicaSpec struct {
	TrainingReplicaSpec `json:",inline"`
	// ScalingWeight weighs this type when an elastic job scales.
	// +kubebuilder:validation:Minimum=0
	// +optional
	ScalingWeight *int32 `json:"scalingWeight,omitempty"`
}

// TorchrunConfig starts the training program with torchrun, which then sets LOCAL_RANK, RANK and
// WORLD_SIZE; the container's command is replaced by torchrun <options> <args...>.
// +kubebuilder:validation:XValidation:rule="!has(self.enable) || !has(self.enabled) || self.enable == self.enabled",message="torchrunConfig.enable is the old spelling of torchrunConfig.enabled; when both are set they must agree"
type TorchrunConfig struct {
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// Enable is the pre-2024 spelling of Enabled; it counts only when Enabled is unset.
	// +optional
	Enable *bool `json:"enable,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	MaxRestarts *int32 `json:"maxRestarts,omitempty"`
	// ProcPerNode is the number of processes per replica, or "gpu" for one per GPU of the replica.
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:Pattern=`^([1-9][0-9]*|gpu)$`
	// +optional
	ProcPerNode *intstr.IntOrString `json:"procPerNode,omitempty"`
	// +kubebuilder:validation:Enum=c10d;etcd;etcd-v2
	// +kubebuilder:default=c10d
	// +optional
	RdzvBackend string `json:"rdzvBackend,omitempty"`
	// ExtraOptions are passed to torchrun as they are.
	// +optional
	ExtraOptions []string `json:"extraOptions,omitempty"`
	// MinNodes is the old way to give the minimum number of replicas of an elastic job; prefer
	// elastic.minReplicas.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinNodes *int32 `json:"minNodes,omitempty"`
}

// IsEnabled reads Enabled, falling back to the old spelling Enable.
func (c *TorchrunConfig) IsEnabled() bool {
	switch {
	case c == nil:
		return false
	case c.Enabled != nil:
		return *c.Enabled
	case c.Enable != nil:
		return *c.Enable
	}
	return false
}

// PyTorchTrainingJobSpec is a distributed PyTorch job. The first training replica (master, else
// the first listed) is the rendezvous master and decides success.
// +kubebuilder:validation:XValidation:rule="self.replicaSpecs.all(r, r.type in ['master', 'worker', 'node', 'ps'])",message="PyTorchTrainingJob replicaSpecs[].type must be one of master, worker, node, ps"
// +kubebuilder:validation:XValidation:rule="!has(self.elastic) || !has(self.elastic.enabled) || !self.elastic.enabled || (has(self.torchrunConfig) && ((has(self.torchrunConfig.enabled) && self.torchrunConfig.enabled) || (!has(self.torchrunConfig.enabled) && has(self.torchrunConfig.enable) && self.torchrunConfig.enable)))",message="elastic.enabled needs torchrunConfig.enabled: only torchrun can run elastic jobs"
type PyTorchTrainingJobSpec struct {
	CommonJobSpec `json:",inline"`
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=4
	ReplicaSpecs []PyTorchReplicaSpec `json:"replicaSpecs"`
	// +optional
	TorchrunConfig *TorchrunConfig `json:"torchrunConfig,omitempty"`
	// +optional
	Elastic *ElasticConfig `json:"elastic,omitempty"`
	// +optional
	RunPolicy *TrainingRunPolicy `json:"runPolicy,omitempty"`
	// +optional
	TensorboardSpec *TensorBoardSpec `json:"tensorboardSpec,omitempty"`
}

// PyTorchTrainingJob runs distributed PyTorch training (DDP, parameter server, torchrun, elastic).
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=pj,categories=t9k
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Scheduling",type=string,JSONPath=`.status.conditions[?(@.type=="Scheduled")].message`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.scheduler.t9kScheduler.queue`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PyTorchTrainingJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec PyTorchTrainingJobSpec `json:"spec"`
	// +optional
	Status TrainingJobStatus `json:"status,omitempty"`
}

// PyTorchTrainingJobList is a list of PyTorchTrainingJobs.
// +kubebuilder:object:root=true
type PyTorchTrainingJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PyTorchTrainingJob `json:"items"`
}
