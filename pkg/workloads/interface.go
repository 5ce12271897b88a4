// Package workloads runs the eight TensorStack job kinds as pods, services and pod groups.
//
// One generic reconciler (reconciler.go) does everything the kinds share: pods named
// <job>-<type>-<index>, the headless Service, the PodGroup, restarts and backoff, the deadline,
// clean-up, debug and pause/resume, elastic replica counts, status and events. Each kind is a small
// adapter (one file per kind) that implements the required Job interface and, where it differs,
// the optional capability interfaces below, which the reconciler discovers by type assertion (the
// Kueue jobframework model).
package workloads

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// Job is what every kind adapter implements.
type Job interface {
	// Object is the API object the adapter wraps; the reconciler reads into it and updates its status.
	Object() client.Object
	// GVK is the kind's group/version/kind (owner references, labels, messages).
	GVK() schema.GroupVersionKind
	// Common returns runMode and scheduler.
	Common() *batch.CommonJobSpec
	// Status is the kind's shared status block, updated in place.
	Status() *batch.JobStatus
	// Replicas lists the replica groups in order. Elastic counts are applied by the reconciler.
	Replicas() []Replicas
	// MutatePod adds what the kind injects (env, command, volumes) to a pod built from the
	// template. It runs before debug/resume overrides replace the main container's command.
	MutatePod(c *Cluster, pod *corev1.Pod, r *Replicas, index int) error
	// Outcome says whether the job has finished, from the observed replicas.
	Outcome(c *Cluster, v *View) Outcome
}

// Replicas is one replica group of a job.
type Replicas struct {
	Type  string
	Count int32
	// Template points into the job's spec (or is derived from it); its DecodeError says when the
	// stored template is not a valid PodTemplateSpec.
	Template *batch.PodTemplate
	Restart  RestartRule
	// Singleton names the one pod <job>-<type> without an index (MPI and ColossalAI launchers).
	Singleton bool
	// MainContainer is the name of the container the kind drives (its command is replaced by
	// debug/resume/launcher commands); unnamed containers get it (index 0) or <name>-<i>.
	MainContainer string
}

// RestartRule is a replica group's restart policy in the one form the reconciler understands.
type RestartRule struct {
	Policy batch.RestartPolicyType
	// Limit caps the restarts of the whole replica group (tasks[].restartCount); nil: no cap of its
	// own (backoffLimit may still apply).
	Limit *int32
}

// Outcome is a kind's verdict on a job.
type Outcome struct {
	Done    bool
	Failed  bool
	Reason  string
	Message string
}

// RunPolicy is the lifetime policy, unified over the three shapes the kinds use.
type RunPolicy struct {
	// BackoffLimit caps restarts summed over all replicas; nil: no cap.
	BackoffLimit          *int32
	ActiveDeadlineSeconds *int64
	CleanUpPolicy         batch.CleanUpPolicy
	// CleanUpTypes are replica types whose pods are all deleted once the job finishes
	// (MPI/ColossalAI cleanUpWorkers).
	CleanUpTypes []string
}

// JobWithRunPolicy is implemented by kinds with backoffLimit, a deadline or a clean-up policy.
type JobWithRunPolicy interface {
	RunPolicy() RunPolicy
}

// JobWithObjects is implemented by kinds that need more children than pods, the headless Service
// and the PodGroup: ConfigMaps, Secrets, per-replica Services. Objects are created if absent;
// ConfigMaps are also kept up to date (hostfiles follow elastic scaling). The reconciler sets the
// namespace, owner reference and labels.
type JobWithObjects interface {
	Objects(c *Cluster) ([]client.Object, error)
}

// JobWithStartGate is implemented by kinds whose pods of some type may only start once others are
// ready (the MPI and ColossalAI launchers wait for the workers' sshd). Gated types do not count
// towards the PodGroup's minMember, or the gang could never form.
type JobWithStartGate interface {
	Gated(replicaType string) bool
	ReadyToStart(replicaType string, v *View) bool
}

// JobWithDebugCommand gives the kind's own no-op for debug mode (sshd for ssh-based workers);
// without it, or when it returns nil, debug mode runs "sleep inf".
type JobWithDebugCommand interface {
	DebugCommand(replicaType string) []string
}

// JobWithElastic is implemented by kinds that can run a varying number of replicas of one type.
type JobWithElastic interface {
	Elastic() *batch.ElasticConfig
	// ElasticType is the replica type whose count follows elastic.expectedReplicas.
	ElasticType() string
}

// JobWithScaleDownAck is implemented by elastic kinds whose running program must learn of a
// smaller membership before the surplus pods go: DeepSpeed's launcher on worker-0 holds ssh
// sessions to every worker of its hostfile, and a worker deleted under it fails the launcher (a
// restart, counted against backoffLimit). The protocol, run by the reconciler (removeSurplus):
//
//  1. The kind's objects are written first: the ConfigMap now lists fewer members, and apply
//     stamps it with AnnotationUpdatedAt.
//  2. The program in the acknowledging replica sees the new ConfigMap (mounted as a directory, so
//     the kubelet refreshes it), restarts itself on the new members, and signals that through its
//     readiness probe: Ready goes False while it relaunches and True once it runs again.
//  3. Running surplus pods are deleted once that replica's Ready condition turned True after the
//     stamp; at once when it is not running or has no readiness probe (nobody to tell); and after
//     scaleDownAckTimeout in any case, with a Warning event.
//
// Surplus pods that are not running hold no part of the program and are deleted at once.
type JobWithScaleDownAck interface {
	// ScaleDownAck names the ConfigMap that tells the acknowledging replica the membership, and
	// that replica; ok is false when the job does not run the protocol (elastic disabled, no
	// launcher, debug mode).
	ScaleDownAck(c *Cluster) (ack ScaleDownAck, ok bool)
}

// ScaleDownAck is where a JobWithScaleDownAck is told of and acknowledges a scale-down.
type ScaleDownAck struct {
	ConfigMap string
	Type      string
	Index     int
}

// JobWithCustomReconcile is implemented by kinds that are not replica groups at all (BeamJob);
// the reconciler hands them the whole job.
type JobWithCustomReconcile interface {
	Reconcile(r *JobReconciler, env *ReconcileEnv) error
}

// Labels and annotations the controllers set.
const (
	LabelOwnerName     = "tensorstack.dev/owner-name"
	LabelOwnerKind     = "tensorstack.dev/owner-kind"
	LabelComponent     = "tensorstack.dev/component"
	LabelComponentType = "tensorstack.dev/component-type"
	LabelReplicaType   = "batch.tensorstack.dev/replica-type"
	LabelReplicaIndex  = "batch.tensorstack.dev/replica-index"
	// AnnotationStoppedAt is set on a pod of a finished job that had not finished when the job
	// did, with the time the controller set its spec.activeDeadlineSeconds to stop it (RFC 3339).
	AnnotationStoppedAt = "batch.tensorstack.dev/stopped-at"
	// AnnotationUpdatedAt is set on the ConfigMaps the controllers write (hostfiles), with the
	// time their data was last written (RFC 3339, the controller's clock); see
	// JobWithScaleDownAck.
	AnnotationUpdatedAt = "batch.tensorstack.dev/updated-at"
)
