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

// DeepSpeedJobSpec is a DeepSpeed job: every worker runs sshd and worker-0 also runs the deepspeed
// launcher, which reaches the others over pdsh. The paths /root/.ssh, /t9k/hostfile,
// /root/.deepspeed_env and, in elastic jobs, /t9k/config (the hostfile's ConfigMap, which
// /t9k/hostfile then links to) in the worker container are reserved.
type DeepSpeedJobSpec struct {
	CommonJobSpec `json:",inline"`
	Worker        DeepSpeedWorker `json:"worker"`
	// Config is how the launcher starts the program; a debug-mode job may leave it out.
	// +optional
	Config *DeepSpeedConfig `json:"config,omitempty"`
	// Elastic runs expectedReplicas workers (within minReplicas and maxReplicas). When the count
	// changes, worker-0 restarts the launcher on the new hosts once they answer on ssh (the
	// program resumes from its checkpoint); the workers of a scale-down are removed once worker-0
	// is ready again (it is not ready while it relaunches), or after 5 minutes.
	// +optional
	Elastic *ElasticConfig `json:"elastic,omitempty"`
	// DisableCustomEnv stops the copy of the container's env into /root/.deepspeed_env, from where
	// deepspeed hands it to the processes on the other workers.
	// +optional
	DisableCustomEnv bool `json:"disableCustomEnv,omitempty"`
	// +optional
	RunPolicy *TrainingRunPolicy `json:"runPolicy,omitempty"`
}

// DeepSpeedWorker describes the workers, the only replica type of a DeepSpeedJob. The training
// container is the one named worker, else the first.
type DeepSpeedWorker struct {
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +kubebuilder:validation:Enum=Always;OnFailure;Never;ExitCode
	// +kubebuilder:default=OnFailure
	// +optional
	RestartPolicy RestartPolicyType `json:"restartPolicy,omitempty"`
	// Template is the worker pod template (schema left open; see ReplicaSpec.Template).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Template PodTemplate `json:"template,omitempty"`
}

// DeepSpeedAutotune selects DeepSpeed's autotuning.
// +kubebuilder:validation:Enum=none;tune;run
type DeepSpeedAutotune string

const (
	DeepSpeedAutotuneNone DeepSpeedAutotune = "none"
	DeepSpeedAutotuneTune DeepSpeedAutotune = "tune"
	DeepSpeedAutotuneRun  DeepSpeedAutotune = "run"
)

// DeepSpeedConfig builds the deepspeed command line. Flags it owns must not be repeated in
// otherArgs: --no_local_rank (localRank), --autotuning (autotune), --module and --no_python (run).
type DeepSpeedConfig struct {
	// CustomCommand, when set, is run instead; only slotsPerWorker still applies.
	// +optional
	CustomCommand string `json:"customCommand,omitempty"`
	// SlotsPerWorker is the number of processes per worker, normally its GPU count.
	// +kubebuilder:validation:Minimum=1
	// +optional
	SlotsPerWorker *int32 `json:"slotsPerWorker,omitempty"`
	// LocalRank passes --local_rank to the program; false adds --no_local_rank.
	// +kubebuilder:default=true
	// +optional
	LocalRank *bool `json:"localRank,omitempty"`
	// +kubebuilder:default=none
	// +optional
	Autotune DeepSpeedAutotune `json:"autotune,omitempty"`
	// +optional
	Run *DeepSpeedRun `json:"run,omitempty"`
	// OtherArgs are further deepspeed launcher arguments. Only the pdsh launcher is supported.
	// +kubebuilder:validation:MaxItems=128
	// +kubebuilder:validation:items:MaxLength=4096
	// +kubebuilder:validation:XValidation:rule="!self.exists(a, ['--no_local_rank', '--autotuning', '--module', '--no_python'].exists(f, a == f || a.startsWith(f + '=')))",message="otherArgs must not contain --no_local_rank, --autotuning, --module or --no_python: set config.localRank, config.autotune or config.run instead"
	// +optional
	OtherArgs []string `json:"otherArgs,omitempty"`
}

// DeepSpeedRun is the program to start: a Python script, a Python module, or an executable.
// Exactly one is present; it may be an empty list (real debug-mode jobs say "python: []"), which
// is why the fields have no omitempty: a Go round trip must not turn [] into absent.
// +kubebuilder:validation:XValidation:rule="[has(self.python), has(self.module), has(self.exec)].filter(x, x).size() == 1",message="config.run must set exactly one of python, module and exec"
type DeepSpeedRun struct {
	// Python is a script and its arguments.
	// +optional
	Python []string `json:"python"`
	// Module is a Python module and its arguments (deepspeed --module).
	// +optional
	Module []string `json:"module"`
	// Exec is an executable and its arguments (deepspeed --no_python).
	// +optional
	Exec []string `json:"exec"`
}

// DeepSpeedJob runs DeepSpeed training across worker pods.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=dj,categories=t9k
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Scheduling",type=string,JSONPath=`.status.conditions[?(@.type=="Scheduled")].message`
// +kubebuilder:printcolumn:name="Queue",type=string,JSONPath=`.spec.scheduler.t9kScheduler.queue`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type DeepSpeedJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec DeepSpeedJobSpec `json:"spec"`
	// +optional
	Status JobStatus `json:"status,omitempty"`
}

// DeepSpeedJobList is a list of DeepSpeedJobs.
// +kubebuilder:object:root=true
type DeepSpeedJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []DeepSpeedJob `json:"items"`
}
