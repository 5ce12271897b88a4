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

// ColossalAIJobSpec is a ColossalAI job: workers run sshd, a launcher starts torchrun on each of
// them. Both shapes in use are accepted: 2024 (launcher + worker) and 2025 (replicaSpecs +
// torchConfig); set exactly one of worker and replicaSpecs. Failed pods are not restarted, since
// colossalai's launcher cannot re-admit them.
// +kubebuilder:validation:XValidation:rule="has(self.worker) != has(self.replicaSpecs)",message="set exactly one of worker (2024 shape) and replicaSpecs (2025 shape)"
// +kubebuilder:validation:XValidation:rule="!has(self.replicaSpecs) || !has(self.launcher)",message="launcher belongs to the 2024 shape; with replicaSpecs add a replicaSpecs entry of type launcher"
// +kubebuilder:validation:XValidation:rule="!has(self.worker) || !has(self.torchConfig)",message="torchConfig belongs to the 2025 shape; with worker use worker.procPerWorker, worker.command and worker.torchArgs"
// +kubebuilder:validation:XValidation:rule="!has(self.replicaSpecs) || self.replicaSpecs.all(r, r.type in ['worker', 'launcher'])",message="ColossalAIJob replicaSpecs[].type must be worker or launcher"
// +kubebuilder:validation:XValidation:rule="!has(self.replicaSpecs) || self.replicaSpecs.exists(r, r.type == 'worker')",message="ColossalAIJob replicaSpecs must contain a worker entry"
// +kubebuilder:validation:XValidation:rule="!has(self.replicaSpecs) || self.replicaSpecs.all(r, r.type != 'launcher' || !has(r.replicas) || r.replicas <= 1)",message="ColossalAIJob has at most one launcher replica"
type ColossalAIJobSpec struct {
	CommonJobSpec `json:",inline"`

	// ReplicaSpecs (2025 shape) lists worker and, optionally, launcher.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=2
	// +optional
	ReplicaSpecs []ReplicaSpec `json:"replicaSpecs,omitempty"`
	// TorchConfig (2025 shape) is how the launcher calls torchrun on the workers.
	// +optional
	TorchConfig *TorchConfig `json:"torchConfig,omitempty"`

	// Launcher (2024 shape) is the launcher container; workers cd to its workingDir first.
	// +optional
	Launcher *ColossalAILauncher `json:"launcher,omitempty"`
	// Worker (2024 shape) describes the workers and the program they run.
	// +optional
	Worker *ColossalAIWorker `json:"worker,omitempty"`

	// +optional
	SSH *ColossalAISSHConfig `json:"ssh,omitempty"`
	// +optional
	RunPolicy *WorkerRunPolicy `json:"runPolicy,omitempty"`
}

// TorchConfig is the 2025 description of the torchrun call.
type TorchConfig struct {
	// ProcPerWorker is the number of processes per worker.
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1
	// +optional
	ProcPerWorker *int32 `json:"procPerWorker,omitempty"`
	// Script is the training program and its arguments.
	// +optional
	Script []string `json:"script,omitempty"`
	// ExtraArgs are further torchrun arguments ("--max_restarts=3", or "--rdzv_backend" "c10d"). Those
	// colossalai run takes itself (--master_port, --num_nodes, ...) are given to it; the others reach
	// torchrun through colossalai run's --extra_launch_args.
	// +optional
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// ColossalAILauncher is the 2024 launcher container.
type ColossalAILauncher struct {
	// +optional
	Image string `json:"image,omitempty"`
	// +optional
	WorkingDir string `json:"workingDir,omitempty"`
	// +optional
	Env []corev1.EnvVar `json:"env,omitempty"`
	// +optional
	Resources corev1.ResourceRequirements `json:"resources,omitempty"`
}

// ColossalAIWorker is the 2024 description of the workers. The worker container must be named
// worker; its command is ignored because sshd runs there.
type ColossalAIWorker struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:default=1
	// +optional
	ProcPerWorker *int32 `json:"procPerWorker,omitempty"`
	// Command is the training program and its arguments.
	// +optional
	Command []string `json:"command,omitempty"`
	// TorchArgs are further torchrun arguments ("--max_restarts=3", or "--rdzv_backend" "c10d"). Those
	// colossalai run takes itself (--master_port, --num_nodes, ...) are given to it; the others reach
	// torchrun through colossalai run's --extra_launch_args.
	// +optional
	TorchArgs []string `json:"torchArgs,omitempty"`
	// Template is the worker pod template (schema left open; see ReplicaSpec.Template).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Template PodTemplate `json:"template,omitempty"`
}

// ColossalAISSHConfig says where ssh keys are mounted and where sshd is in the worker image.
type ColossalAISSHConfig struct {
	// +kubebuilder:default=/root/.ssh
	// +optional
	AuthMountPath string `json:"authMountPath,omitempty"`
	// +optional
	SSHDPath string `json:"sshdPath,omitempty"`
}

// ColossalAIJob runs ColossalAI training across worker pods.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=caij,categories=t9k
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Scheduling",type=string,JSONPath=`.status.conditions[?(@.type=="Scheduled")].message`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.scheduler.t9kScheduler.queue`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type ColossalAIJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec ColossalAIJobSpec `json:"spec"`
	// +optional
	Status JobStatus `json:"status,omitempty"`
}

// ColossalAIJobList is a list of ColossalAIJobs.
// +kubebuilder:object:root=true
type ColossalAIJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []ColossalAIJob `json:"items"`
}
