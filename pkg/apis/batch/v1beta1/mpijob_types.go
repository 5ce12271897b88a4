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

// MPIJobSpec is an OpenMPI job: workers run sshd, a launcher runs mpirun over them. Two shapes are
// accepted because both are in use: the 2024 one (worker, mca, mpiHome) and the 2025 one
// (replicaSpecs + mpiConfig); set exactly one of worker and replicaSpecs.
// +kubebuilder:validation:XValidation:rule="has(self.worker) != has(self.replicaSpecs)",message="set exactly one of worker (2024 shape) and replicaSpecs (2025 shape)"
// +kubebuilder:validation:XValidation:rule="!has(self.replicaSpecs) || (!has(self.mca) && !has(self.mpiHome))",message="mca and mpiHome belong to the 2024 shape; with replicaSpecs use mpiConfig.mca and mpiConfig.home"
// +kubebuilder:validation:XValidation:rule="!has(self.worker) || !has(self.mpiConfig)",message="mpiConfig belongs to the 2025 shape; with worker use mca, mpiHome, worker.cmd and worker.extraMPIArgs"
// +kubebuilder:validation:XValidation:rule="!has(self.replicaSpecs) || self.replicaSpecs.all(r, r.type in ['worker', 'launcher'])",message="MPIJob replicaSpecs[].type must be worker or launcher"
// +kubebuilder:validation:XValidation:rule="!has(self.replicaSpecs) || self.replicaSpecs.exists(r, r.type == 'worker')",message="MPIJob replicaSpecs must contain a worker entry"
// +kubebuilder:validation:XValidation:rule="!has(self.replicaSpecs) || self.replicaSpecs.all(r, r.type != 'launcher' || !has(r.replicas) || r.replicas <= 1)",message="MPIJob has at most one launcher replica"
type MPIJobSpec struct {
	CommonJobSpec `json:",inline"`

	// ReplicaSpecs (2025 shape) lists worker and, optionally, launcher; the controller supplies a
	// default launcher, so "template: {}" is enough for it.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=2
	// +optional
	ReplicaSpecs []ReplicaSpec `json:"replicaSpecs,omitempty"`
	// MPIConfig (2025 shape) is how the launcher calls mpirun.
	// +optional
	MPIConfig *MPIConfig `json:"mpiConfig,omitempty"`

	// Worker (2024 shape) describes the workers and the command the launcher runs.
	// +optional
	Worker *MPIWorker `json:"worker,omitempty"`
	// MCA (2024 shape) are OpenMPI MCA parameters, e.g. btl: ^openib.
	// +optional
	MCA map[string]string `json:"mca,omitempty"`
	// MPIHome (2024 shape) is the OpenMPI installation directory in the image.
	// +optional
	MPIHome string `json:"mpiHome,omitempty"`

	// +optional
	SSH *MPISSHConfig `json:"ssh,omitempty"`
	// +optional
	RunPolicy *WorkerRunPolicy `json:"runPolicy,omitempty"`
}

// MPIConfig is the 2025 description of the mpirun call.
type MPIConfig struct {
	// MCA are OpenMPI MCA parameters, e.g. btl: ^openib.
	// +optional
	MCA map[string]string `json:"mca,omitempty"`
	// Home is the OpenMPI installation directory in the image.
	// +optional
	Home string `json:"home,omitempty"`
	// ExtraArgs are further mpirun arguments.
	// +optional
	ExtraArgs []string `json:"extraArgs,omitempty"`
	// Script is the program and its arguments that mpirun starts.
	// +optional
	Script []string `json:"script,omitempty"`
}

// MPIWorker is the 2024 description of the workers. The worker container must be named mpi-worker;
// its command is ignored because sshd runs there.
type MPIWorker struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// ProcessesPerWorker is the number of MPI processes (slots) per worker. Unset: the worker's
	// GPUs, else 1. The hostfile never offers fewer slots than the processes per node extraMPIArgs
	// ask for (-N, --npernode, --map-by ppr:N:node); the 2025 shape's hostfile follows the same
	// rules from mpiConfig.extraArgs and the worker's GPUs.
	// +kubebuilder:validation:Minimum=1
	// +optional
	ProcessesPerWorker *int32 `json:"processesPerWorker,omitempty"`
	// +optional
	ProcessRecovery *ProcessRecovery `json:"processRecovery,omitempty"`
	// ExtraMPIArgs are further mpirun arguments.
	// +optional
	ExtraMPIArgs []string `json:"extraMPIArgs,omitempty"`
	// Cmd is what the launcher runs under mpirun once all workers are ready.
	// +optional
	Cmd []string `json:"cmd,omitempty"`
	// Template is the worker pod template (schema left open; see ReplicaSpec.Template).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Template PodTemplate `json:"template,omitempty"`
}

// ProcessRecovery lets mpirun restart failed processes (OpenMPI --enable-recovery).
type ProcessRecovery struct {
	// Enable is spelled so in every manual and manifest (not "enabled").
	// +optional
	Enable bool `json:"enable,omitempty"`
	// +kubebuilder:validation:Minimum=0
	// +optional
	Limit *int32 `json:"limit,omitempty"`
}

// MPISSHConfig says where ssh keys are mounted and where sshd is in the worker image.
type MPISSHConfig struct {
	// +kubebuilder:default=/root/.ssh
	// +optional
	SSHAuthMountPath string `json:"sshAuthMountPath,omitempty"`
	// +optional
	SSHDPath string `json:"sshdPath,omitempty"`
}

// MPIJob runs an OpenMPI program (Horovod included) across worker pods.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=mj,categories=t9k
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Scheduling",type=string,JSONPath=`.status.conditions[?(@.type=="Scheduled")].message`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.scheduler.t9kScheduler.queue`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type MPIJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec MPIJobSpec `json:"spec"`
	// +optional
	Status JobStatus `json:"status,omitempty"`
}

// MPIJobList is a list of MPIJobs.
// +kubebuilder:object:root=true
type MPIJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []MPIJob `json:"items"`
}
