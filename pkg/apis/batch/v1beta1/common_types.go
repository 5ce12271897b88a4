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
	"k8s.io/apimachinery/pkg/types"
)

// ReplicaType names a group of identical replicas ("worker", "master", "launcher", ...). It becomes
// part of pod names (<job>-<type>-<index>) and the value of the scheduler.tensorstack.dev/role label,
// hence a DNS label.
// +kubebuilder:validation:MinLength=1
// +kubebuilder:validation:MaxLength=63
// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
type ReplicaType string

// RestartPolicyType says when the controller recreates a failed replica. The controller always sets
// the pod's own restartPolicy to Never and restarts pods itself, so that restarts are counted.
type RestartPolicyType string

const (
	RestartPolicyAlways    RestartPolicyType = "Always"
	RestartPolicyOnFailure RestartPolicyType = "OnFailure"
	RestartPolicyNever     RestartPolicyType = "Never"
	// RestartPolicyExitCode restarts only on retryable exit codes: 130, 137, 143 (signals) and 138,
	// which a program exits with to ask for a restart.
	RestartPolicyExitCode RestartPolicyType = "ExitCode"
)

// RestartPolicy is the struct form used by GenericJob and the 2025 MPIJob/ColossalAIJob replicaSpecs.
type RestartPolicy struct {
	// Policy is Never, OnFailure or Always (ExitCode exists only in the string form).
	// +kubebuilder:validation:Enum=Never;OnFailure;Always
	// +kubebuilder:default=OnFailure
	// +optional
	Policy RestartPolicyType `json:"policy,omitempty"`
	// Limit caps the restarts of this replica type, summed over its replicas (what
	// status.tasks[].restartCount counts, as backoffLimit caps the sum over the whole job); 0
	// means no restart.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=0
	// +optional
	Limit *int32 `json:"limit,omitempty"`
}

// ReplicaSpec is a group of replicas with the struct-form restart policy (GenericJob and the 2025
// shapes of MPIJob and ColossalAIJob).
type ReplicaSpec struct {
	// Type names the group; each kind restricts the names it accepts.
	Type ReplicaType `json:"type"`
	// Replicas is the number of pods of this type.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// +optional
	RestartPolicy *RestartPolicy `json:"restartPolicy,omitempty"`
	// Template is the pod template of this type. Its schema is left open in the CRD on purpose:
	// the public manuals show templates whose containers have no name (the controller names them),
	// which the typed core/v1 schema would reject. The apiserver still validates every Pod built
	// from it.
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Template PodTemplate `json:"template,omitempty"`
}

// TrainingReplicaSpec is a group of replicas with the string-form restart policy
// (TensorFlowTrainingJob, XGBoostTrainingJob; PyTorchTrainingJob extends it).
type TrainingReplicaSpec struct {
	// Type names the group; each kind restricts the names it accepts.
	Type ReplicaType `json:"type"`
	// Replicas is the number of pods of this type.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=1
	// +optional
	Replicas *int32 `json:"replicas,omitempty"`
	// RestartPolicy is Always, OnFailure, Never or ExitCode. Restarts count against
	// runPolicy.backoffLimit, summed over all replicas.
	// +kubebuilder:validation:Enum=Always;OnFailure;Never;ExitCode
	// +kubebuilder:default=OnFailure
	// +optional
	RestartPolicy RestartPolicyType `json:"restartPolicy,omitempty"`
	// Template is the pod template of this type (schema left open; see ReplicaSpec.Template).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	Template PodTemplate `json:"template,omitempty"`
}

// CommonJobSpec holds the fields every job kind has, so that one generic reconciler can read them.
type CommonJobSpec struct {
	// RunMode switches the job between immediate (the default), debug and pause.
	// +optional
	RunMode *RunMode `json:"runMode,omitempty"`
	// Scheduler opts the job into the t9k scheduler. Without it the pods go to the default
	// kube-scheduler and no PodGroup is created.
	// +optional
	Scheduler *SchedulePolicy `json:"scheduler,omitempty"`
}

// RunMode selects how a job runs. With neither debug nor pause enabled it runs immediately.
type RunMode struct {
	// +optional
	Debug *DebugMode `json:"debug,omitempty"`
	// +optional
	Pause *PauseMode `json:"pause,omitempty"`
}

// DebugMode creates the pods but replaces their programs with a no-op (sleep, or sshd for the
// ssh-based kinds) so that a person can exec in and run things by hand.
// +kubebuilder:validation:XValidation:rule="!has(self.enable) || !has(self.enabled) || self.enable == self.enabled",message="debug.enable is the old spelling of debug.enabled; when both are set they must agree"
type DebugMode struct {
	// +optional
	Enabled *bool `json:"enabled,omitempty"`
	// Enable is the pre-2024 spelling of Enabled, still found in real manifests; it counts only
	// when Enabled is unset.
	// +optional
	Enable *bool `json:"enable,omitempty"`
	// ReplicaSpecs overrides the debug behaviour per replica type.
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	// +optional
	ReplicaSpecs []ReplicaDebugSet `json:"replicaSpecs,omitempty"`
}

// IsEnabled reads Enabled, falling back to the old spelling Enable.
func (d *DebugMode) IsEnabled() bool {
	switch {
	case d == nil:
		return false
	case d.Enabled != nil:
		return *d.Enabled
	case d.Enable != nil:
		return *d.Enable
	}
	return false
}

// ReplicaDebugSet is the debug behaviour of one replica type.
type ReplicaDebugSet struct {
	Type ReplicaType `json:"type"`
	// SkipInitContainer leaves out the template's init containers.
	// +optional
	SkipInitContainer bool `json:"skipInitContainer,omitempty"`
	// Command replaces the container command; default: the kind's no-op, ["sleep", "inf"], or sshd
	// for the workers of ssh-based kinds (MPI, DeepSpeed).
	// +optional
	Command []string `json:"command,omitempty"`
}

// PauseMode deletes the job's pods (graceful termination) while enabled; disabling it resumes the
// job. The Duration Keeper pauses jobs this way when they outlive their queue's maxDuration.
type PauseMode struct {
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// ResumeSpecs says how each replica type restarts on resume; fixed at creation because the
	// controller must be able to rely on it at any later resume.
	// +kubebuilder:validation:XValidation:rule="self == oldSelf",message="resumeSpecs cannot be changed after creation"
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=16
	// +optional
	ResumeSpecs []ResumeSpec `json:"resumeSpecs,omitempty"`
}

// ResumeSpec is how one replica type restarts after a pause; command and args default to the
// immediate-mode ones.
type ResumeSpec struct {
	Type ReplicaType `json:"type"`
	// +optional
	SkipInitContainer bool `json:"skipInitContainer,omitempty"`
	// +optional
	Command []string `json:"command,omitempty"`
	// +optional
	Args []string `json:"args,omitempty"`
}

// SchedulePolicy picks the scheduler of a job's pods.
type SchedulePolicy struct {
	// +optional
	T9kScheduler *T9kScheduler `json:"t9kScheduler,omitempty"`
}

// T9kScheduler places the job's pods, as one PodGroup, into a Queue.
type T9kScheduler struct {
	// Queue names the Queue (in the scheduler's namespace) the job's PodGroup joins.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:default=default
	// +optional
	Queue string `json:"queue,omitempty"`
	// Priority orders PodGroups inside the queue: higher first, ties by age.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:validation:Maximum=100
	// +kubebuilder:default=0
	// +optional
	Priority int32 `json:"priority,omitempty"`
}

// CleanUpPolicy says which pods to delete when a job finishes: None (the default) keeps every pod,
// Unfinished deletes those that were Pending, Running or Unknown, All deletes every pod. Whatever
// the policy, a finished job holds no GPUs: a pod it keeps that is still running when the job
// finishes (an sshd worker, a parameter server, a replica no rule waited for) is stopped in place,
// its spec.activeDeadlineSeconds set so that the kubelet kills it (phase Failed, reason
// DeadlineExceeded) and its logs stay; one that has not stopped 10 s after its termination grace
// period is deleted, and one never scheduled is deleted at once. Finished pods still count against
// a project's object-count quota, hence All.
// +kubebuilder:validation:Enum=None;All;Unfinished
type CleanUpPolicy string

const (
	CleanUpPolicyNone CleanUpPolicy = "None"
	CleanUpPolicyAll  CleanUpPolicy = "All"
	// CleanUpPolicyUnfinished deletes only Pending, Running and Unknown pods.
	CleanUpPolicyUnfinished CleanUpPolicy = "Unfinished"
)

// TrainingRunPolicy bounds a training job's lifetime and retries (PyTorch, TensorFlow, XGBoost,
// DeepSpeed).
type TrainingRunPolicy struct {
	// ActiveDeadlineSeconds fails the job this long after it started.
	// +kubebuilder:validation:Minimum=1
	// +optional
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`
	// BackoffLimit is the number of restarts, summed over all replicas, before the job fails.
	// +kubebuilder:validation:Minimum=0
	// +kubebuilder:default=3
	// +optional
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
	// +kubebuilder:default=None
	// +optional
	CleanUpPolicy CleanUpPolicy `json:"cleanUpPolicy,omitempty"`
}

// WorkerRunPolicy is the run policy of the launcher/worker kinds (MPIJob, ColossalAIJob).
type WorkerRunPolicy struct {
	// CleanUpWorkers deletes the worker pods once the job finishes; the launcher, which holds the
	// logs that tell whether training worked, is kept. Without it the workers are kept but
	// stopped (see CleanUpPolicy): a finished job holds no GPUs.
	// +optional
	CleanUpWorkers bool `json:"cleanUpWorkers,omitempty"`
}

// ElasticConfig lets a PyTorch (torchrun) or DeepSpeed job run with a varying number of workers.
// +kubebuilder:validation:XValidation:rule="!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",message="elastic.minReplicas must not exceed elastic.maxReplicas"
// +kubebuilder:validation:XValidation:rule="!has(self.expectedReplicas) || ((!has(self.minReplicas) || self.minReplicas <= self.expectedReplicas) && (!has(self.maxReplicas) || self.expectedReplicas <= self.maxReplicas))",message="elastic.expectedReplicas must lie within [minReplicas, maxReplicas]"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.maxReplicas) || (has(self.maxReplicas) && self.maxReplicas == oldSelf.maxReplicas)",message="elastic.maxReplicas is immutable"
type ElasticConfig struct {
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// MinReplicas is also the PodGroup's minMember: the job starts once this many fit.
	// +kubebuilder:validation:Minimum=1
	// +optional
	MinReplicas *int32 `json:"minReplicas,omitempty"`
	// +kubebuilder:validation:Minimum=1
	// +optional
	MaxReplicas *int32 `json:"maxReplicas,omitempty"`
	// ExpectedReplicas may be changed while the job runs, by a person or an autoscaler.
	// +kubebuilder:validation:Minimum=1
	// +optional
	ExpectedReplicas *int32 `json:"expectedReplicas,omitempty"`
}

// TensorBoardSpec asks for a TensorBoard (tensorstack.dev/v1beta1) beside a PyTorch or TensorFlow job.
type TensorBoardSpec struct {
	// TrainingLogFilesets lists t9k://pvc/<pvc>/<subpath> or t9k://minio/<secret>/<bucket>/<subpath>
	// URLs; superseded by logDir.
	// +optional
	TrainingLogFilesets []string `json:"trainingLogFilesets,omitempty"`
	// +optional
	LogDir *TensorBoardLogDir `json:"logDir,omitempty"`
	// +optional
	Image string `json:"image,omitempty"`
	// +optional
	Suspend bool `json:"suspend,omitempty"`
	// +optional
	Scheduler *SchedulePolicy `json:"scheduler,omitempty"`
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
}

// TensorBoardLogDir says where TensorBoard reads logs from.
type TensorBoardLogDir struct {
	// +optional
	PVC []PVCPaths `json:"pvc,omitempty"`
	// +optional
	S3 *S3Paths `json:"s3,omitempty"`
	// +optional
	HTTP *HTTPPaths `json:"http,omitempty"`
}

// PVCPaths are paths inside one PersistentVolumeClaim.
type PVCPaths struct {
	Name string `json:"name"`
	// +optional
	SubPath []string `json:"subPath,omitempty"`
}

// S3Paths are S3 URIs read with the credentials in a Secret.
type S3Paths struct {
	SecretRef corev1.LocalObjectReference `json:"secretRef"`
	// +optional
	URI []string `json:"uri,omitempty"`
}

// HTTPPaths are plain HTTP URLs.
type HTTPPaths struct {
	// +optional
	URL []string `json:"url,omitempty"`
}

// JobPhase is the coarse state of a job.
// +kubebuilder:validation:Enum=Pending;Initializing;Running;Paused;Resuming;Succeeded;Failed;Unknown
type JobPhase string

const (
	JobPending JobPhase = "Pending"
	// JobInitializing is BeamJob's first phase, while its Flink cluster comes up.
	JobInitializing JobPhase = "Initializing"
	JobRunning      JobPhase = "Running"
	JobPaused       JobPhase = "Paused"
	JobResuming     JobPhase = "Resuming"
	JobSucceeded    JobPhase = "Succeeded"
	JobFailed       JobPhase = "Failed"
	JobUnknown      JobPhase = "Unknown"
)

// JobConditionType is the type of a job condition.
type JobConditionType string

const (
	JobConditionInitialized    JobConditionType = "Initialized"
	JobConditionRunning        JobConditionType = "Running"
	JobConditionReplicaFailure JobConditionType = "ReplicaFailure"
	// JobConditionCompleted is True once the job finished, whether it succeeded or failed.
	JobConditionCompleted JobConditionType = "Completed"
	JobConditionFailed    JobConditionType = "Failed"
	JobConditionPaused    JobConditionType = "Paused"
	// JobConditionScheduled mirrors the GroupScheduled condition of the job's PodGroup (jobs with
	// spec.scheduler.t9kScheduler): status, reason and message as the scheduler wrote them, e.g.
	// False, TopologyUnsatisfiable, "needs 72 GPUs (9 pods x 8) in one spine; best spine spine-0
	// has 64 free". `kubectl get` shows its message (column SCHEDULING).
	JobConditionScheduled JobConditionType = "Scheduled"
	// BeamJob's conditions.
	JobConditionClusterRunning JobConditionType = "ClusterRunning"
	JobConditionJobRunning     JobConditionType = "JobRunning"
)

// JobCondition is one observation about a job.
type JobCondition struct {
	Type   JobConditionType       `json:"type"`
	Status corev1.ConditionStatus `json:"status"`
	// +optional
	LastTransitionTime metav1.Time `json:"lastTransitionTime,omitempty"`
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Message string `json:"message,omitempty"`
}

// ReplicaPhase is a PodPhase plus Creating (created, not yet scheduled) and Deleted.
type ReplicaPhase string

const (
	ReplicaCreating  ReplicaPhase = "Creating"
	ReplicaPending   ReplicaPhase = "Pending"
	ReplicaRunning   ReplicaPhase = "Running"
	ReplicaSucceeded ReplicaPhase = "Succeeded"
	ReplicaFailed    ReplicaPhase = "Failed"
	ReplicaUnknown   ReplicaPhase = "Unknown"
	ReplicaDeleted   ReplicaPhase = "Deleted"
)

// TaskStatus is the state of one replica type. Clients find pod names here rather than computing
// them: the controller may add a suffix to the job name.
type TaskStatus struct {
	Type ReplicaType `json:"type"`
	// +optional
	RestartCount int32 `json:"restartCount,omitempty"`
	// +optional
	Replicas []ReplicaStatus `json:"replicas,omitempty"`
}

// ReplicaStatus is the state of one replica pod.
type ReplicaStatus struct {
	// Name is the pod's name.
	Name string `json:"name"`
	// +optional
	UID types.UID `json:"uid,omitempty"`
	// +optional
	Phase ReplicaPhase `json:"phase,omitempty"`
	// +optional
	Containers []ContainerStatus `json:"containers,omitempty"`
}

// ContainerStatus is the short state of one container of a replica.
type ContainerStatus struct {
	Name string `json:"name"`
	// State is Waiting, Running or Terminated.
	// +optional
	State string `json:"state,omitempty"`
	// +optional
	ExitCode *int32 `json:"exitCode,omitempty"`
}

// Aggregate counts a job's replica pods by phase.
type Aggregate struct {
	// Creating counts pods created but not yet scheduled.
	Creating  int32 `json:"creating"`
	Pending   int32 `json:"pending"`
	Running   int32 `json:"running"`
	Succeeded int32 `json:"succeeded"`
	Failed    int32 `json:"failed"`
	Unknown   int32 `json:"unknown"`
	Deleted   int32 `json:"deleted"`
}

// JobStatus is the status every job kind reports.
type JobStatus struct {
	// +optional
	Phase JobPhase `json:"phase,omitempty"`
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []JobCondition `json:"conditions,omitempty"`
	// +optional
	Tasks []TaskStatus `json:"tasks,omitempty"`
	// +optional
	Aggregate *Aggregate `json:"aggregate,omitempty"`
	// BackoffCount is the number of restarts performed, summed over all replicas.
	// +optional
	BackoffCount int32 `json:"backoffCount,omitempty"`
	// StartTime is when the controller first acted on the job; runPolicy.activeDeadlineSeconds
	// counts from here.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// CompletionTime is when the job reached Succeeded or Failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// DependentStatus reports an object the job created beside its pods (its TensorBoard).
type DependentStatus struct {
	// +optional
	Type string `json:"type,omitempty"`
	// +optional
	Action string `json:"action,omitempty"`
	// +optional
	Dependent *corev1.ObjectReference `json:"dependent,omitempty"`
	// +optional
	Ready bool `json:"ready,omitempty"`
	// +optional
	Reason string `json:"reason,omitempty"`
	// +optional
	Note string `json:"note,omitempty"`
	// Phase is the dependent's state: Pending (not ready yet), Running (ready), Suspended
	// (tensorboardSpec.suspend: scaled to zero) or Failed (it cannot be created as asked).
	// +optional
	Phase string `json:"phase,omitempty"`
	// URL is where the dependent serves, inside the cluster (its Service).
	// +optional
	URL string `json:"url,omitempty"`
}

// TrainingJobStatus adds the TensorBoard side-car's status (PyTorch and TensorFlow).
type TrainingJobStatus struct {
	JobStatus `json:",inline"`
	// +optional
	Tensorboard *DependentStatus `json:"tensorboard,omitempty"`
}
