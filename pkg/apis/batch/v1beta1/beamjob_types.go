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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// BeamJobSpec runs an Apache Beam pipeline: the controller creates a Flink cluster, then a batch
// Job that submits the pipeline to it.
type BeamJobSpec struct {
	CommonJobSpec `json:",inline"`
	// FlinkClusterTemplate is the FlinkCluster (flinkoperator.k8s.io) to create.
	FlinkClusterTemplate FlinkClusterTemplateSpec `json:"flinkClusterTemplate"`
	// JobTemplate is the batch Job that submits the pipeline. Its schema is left open like the pod
	// templates (see ReplicaSpec.Template).
	// +kubebuilder:validation:Schemaless
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	JobTemplate JobTemplate `json:"jobTemplate"`
	// +optional
	RunPolicy *BeamRunPolicy `json:"runPolicy,omitempty"`
}

// FlinkClusterTemplateSpec is a FlinkCluster's metadata and spec. The spec belongs to the Flink
// operator's API, so it is kept opaque rather than copied (and left to drift) here.
type FlinkClusterTemplateSpec struct {
	// ObjectMeta holds the FlinkCluster's labels and annotations; other metadata is kept but not
	// used (the controller names the cluster).
	// +kubebuilder:pruning:PreserveUnknownFields
	// +optional
	ObjectMeta TemplateMeta `json:"metadata,omitempty"`
	// Spec is a flinkoperator.k8s.io FlinkClusterSpec (flinkVersion, image, jobManager,
	// taskManager, flinkProperties, ...).
	// +kubebuilder:validation:Type=object
	// +kubebuilder:pruning:PreserveUnknownFields
	Spec runtime.RawExtension `json:"spec"`
}

// TemplateMeta is the metadata of a template: typed labels and annotations, so that nothing
// stored can fail to decode.
type TemplateMeta struct {
	// +optional
	Labels map[string]string `json:"labels,omitempty"`
	// +optional
	Annotations map[string]string `json:"annotations,omitempty"`
}

// BeamRunPolicy is BeamJob's run policy.
type BeamRunPolicy struct {
	// CleanUpCluster deletes the Flink cluster once the job finishes.
	// +optional
	CleanUpCluster bool `json:"cleanUpCluster,omitempty"`
}

// BeamJobStatus adds the Flink cluster's and the submit Job's state. Its tasks (and aggregate)
// list the pods of three replica types, found by the labels the controller gives them: the Flink
// cluster's jobmanager and taskmanager pods and the submit Job's submitter pods. The submitter is
// also the replica type of runMode.debug.replicaSpecs and pause.resumeSpecs: debug mode replaces
// the submit container's program only; pause deletes the submit Job and the Flink cluster (their
// pods with them) and resuming creates both again. With spec.scheduler the PodGroup counts the
// submitter pods, which the t9k scheduler places; the Flink operator's API has no schedulerName
// for its pods, which carry the PodGroup and queue labels but go to the default scheduler.
type BeamJobStatus struct {
	JobStatus `json:",inline"`
	// JobURL is the platform's Flink dashboard path of the pipeline:
	// /t9k/flink-cluster/<cluster>/namespace/<namespace>/#/job/<flink job id>/overview/ once the
	// FlinkCluster reports the Flink job's ID, else the cluster's #/overview/.
	// +optional
	JobURL string `json:"jobURL,omitempty"`
	// FlinkClusterStatus lists the job manager and task manager pods with their phases.
	// +optional
	FlinkClusterStatus *FlinkClusterStatus `json:"flinkClusterStatus,omitempty"`
	// SubmitJobStatus is the state of the submit Job(s).
	// +optional
	SubmitJobStatus []DependentPhase `json:"jobStatus,omitempty"`
}

// FlinkClusterStatus is the state of the Flink cluster's parts.
type FlinkClusterStatus struct {
	// +optional
	JobManagerStatus []DependentPhase `json:"jobManagerStatus,omitempty"`
	// +optional
	TaskManagerStatus []DependentPhase `json:"taskManagerStatus,omitempty"`
}

// DependentPhase is the phase of one object the job created.
type DependentPhase struct {
	// +optional
	Phase string `json:"phase,omitempty"`
	// +optional
	Reference DependentReference `json:"reference,omitempty"`
}

// DependentReference names an object the job created.
type DependentReference struct {
	// +optional
	Name string `json:"name,omitempty"`
	// +optional
	UID types.UID `json:"uid,omitempty"`
}

// BeamJob runs an Apache Beam pipeline on a Flink cluster it creates.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=bj,categories=t9k
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type BeamJob struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec BeamJobSpec `json:"spec"`
	// +optional
	Status BeamJobStatus `json:"status,omitempty"`
}

// BeamJobList is a list of BeamJobs.
// +kubebuilder:object:root=true
type BeamJobList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []BeamJob `json:"items"`
}
