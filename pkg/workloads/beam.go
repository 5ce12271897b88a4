package workloads

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// FlinkClusterGVK is the Flink operator's cluster kind, which BeamJob creates without importing
// the operator's API (it may not even be installed).
var FlinkClusterGVK = schema.GroupVersionKind{Group: "flinkoperator.k8s.io", Version: "v1beta1", Kind: "FlinkCluster"}

// Reasons of BeamJob's conditions.
const (
	ReasonFlinkCRDMissing = "FlinkClusterCRDNotFound"
	ReasonClusterRunning  = "ClusterRunning"
	ReasonClusterStarting = "ClusterStarting"
	ReasonJobRunning      = "JobRunning"
)

// beamJob adapts BeamJob, which is not replica groups: it creates a FlinkCluster and, once that
// runs, a batch Job that submits the pipeline to it, and follows the Job.
type beamJob struct{ *batch.BeamJob }

func newBeamJob() Job { return beamJob{&batch.BeamJob{}} }

func (j beamJob) Object() client.Object                                 { return j.BeamJob }
func (j beamJob) GVK() schema.GroupVersionKind                          { return batch.GroupVersion.WithKind("BeamJob") }
func (j beamJob) Common() *batch.CommonJobSpec                          { return &j.Spec.CommonJobSpec }
func (j beamJob) Status() *batch.JobStatus                              { return &j.BeamJob.Status.JobStatus }
func (j beamJob) Replicas() []Replicas                                  { return nil }
func (j beamJob) OwnedTypes() []client.Object                           { return []client.Object{&batchv1.Job{}} }
func (j beamJob) MutatePod(*Cluster, *corev1.Pod, *Replicas, int) error { return nil }
func (j beamJob) Outcome(*Cluster, *View) Outcome                       { return Outcome{} }

func (j beamJob) clusterName() string { return j.Name + "-flinkcluster" }
func (j beamJob) submitName() string  { return j.Name + "-batchjob" }

// flinkMaster is the Flink operator's JobManager Service and REST port.
func (j beamJob) flinkMaster() string { return j.clusterName() + "-jobmanager:8081" }

func (j beamJob) Reconcile(r *JobReconciler, env *ReconcileEnv) error {
	ctx := env.Ctx
	orig := j.BeamJob.Status.DeepCopy()
	st := &j.BeamJob.Status
	now := r.now()
	if st.StartTime == nil {
		st.StartTime = &now
	}
	if st.Phase == "" {
		st.Phase = batch.JobInitializing
	}
	cs := &conditionSetter{st: &st.JobStatus, now: now}
	finished := st.Phase == batch.JobSucceeded || st.Phase == batch.JobFailed
	write := func() error {
		if err := r.writeBeamStatus(ctx, j, orig); err != nil {
			return err
		}
		r.emit(j, cs.changed)
		return nil
	}

	fc := &unstructured.Unstructured{}
	fc.SetGroupVersionKind(FlinkClusterGVK)
	err := r.Client.Get(ctx, client.ObjectKey{Namespace: j.Namespace, Name: j.clusterName()}, fc)
	switch {
	case meta.IsNoMatchError(err) || isNoKind(err):
		cs.set(batch.JobConditionClusterRunning, corev1.ConditionFalse, ReasonFlinkCRDMissing,
			"The FlinkCluster CRD (flinkoperator.k8s.io/v1beta1) is not installed: install the Flink operator to run BeamJobs.")
		env.Result = ctrl.Result{RequeueAfter: time.Minute}
		return write()
	case apierrors.IsNotFound(err):
		if finished {
			return nil // cleaned up
		}
		if err := r.apply(ctx, j, j.flinkCluster()); err != nil {
			return fmt.Errorf("flink cluster: %w", err)
		}
		cs.set(batch.JobConditionClusterRunning, corev1.ConditionFalse, ReasonClusterStarting, "The Flink cluster is being created.")
		env.Result = ctrl.Result{RequeueAfter: 5 * time.Second}
		return write()
	case err != nil:
		return err
	}

	state, _, _ := unstructured.NestedString(fc.Object, "status", "state")
	if finished {
		if j.Spec.RunPolicy != nil && j.Spec.RunPolicy.CleanUpCluster {
			return client.IgnoreNotFound(r.Client.Delete(ctx, fc))
		}
		return nil
	}
	if state != "Running" {
		cs.set(batch.JobConditionClusterRunning, corev1.ConditionFalse, ReasonClusterStarting,
			fmt.Sprintf("The Flink cluster is %s.", strings.ToLower(orDefault(state, "starting"))))
		env.Result = ctrl.Result{RequeueAfter: 5 * time.Second} // FlinkCluster is not watched
		return write()
	}
	cs.set(batch.JobConditionClusterRunning, corev1.ConditionTrue, ReasonClusterRunning, "The Flink cluster is running.")

	submit := &batchv1.Job{}
	err = r.Client.Get(ctx, client.ObjectKey{Namespace: j.Namespace, Name: j.submitName()}, submit)
	if apierrors.IsNotFound(err) {
		if err := r.apply(ctx, j, j.submitJob()); err != nil {
			return fmt.Errorf("submit job: %w", err)
		}
		st.Phase = batch.JobRunning
		return write()
	} else if err != nil {
		return err
	}
	st.SubmitJobStatus = []batch.DependentPhase{{Phase: jobPhase(submit), Reference: batch.DependentReference{Name: submit.Name, UID: submit.UID}}}
	switch jobPhase(submit) {
	case "Succeeded":
		st.Phase = batch.JobSucceeded
		cs.set(batch.JobConditionJobRunning, corev1.ConditionFalse, ReasonSucceeded, MessageSucceeded)
		cs.set(batch.JobConditionCompleted, corev1.ConditionTrue, ReasonSucceeded, MessageSucceeded)
	case "Failed":
		st.Phase = batch.JobFailed
		msg := fmt.Sprintf("BeamJob %s has failed: the submit job %s failed", j.Name, submit.Name)
		cs.set(batch.JobConditionJobRunning, corev1.ConditionFalse, ReasonFailed, msg)
		cs.set(batch.JobConditionFailed, corev1.ConditionTrue, ReasonFailed, msg)
		cs.set(batch.JobConditionCompleted, corev1.ConditionTrue, ReasonFailed, msg)
	default:
		st.Phase = batch.JobRunning
		cs.set(batch.JobConditionJobRunning, corev1.ConditionTrue, ReasonJobRunning, "The pipeline is being submitted and run.")
	}
	if (st.Phase == batch.JobSucceeded || st.Phase == batch.JobFailed) && st.CompletionTime == nil {
		st.CompletionTime = &now
		env.Result = ctrl.Result{Requeue: true} // clean up next
	}
	return write()
}

func isNoKind(err error) bool {
	return err != nil && strings.Contains(err.Error(), "no matches for kind")
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func jobPhase(j *batchv1.Job) string {
	for _, c := range j.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return "Succeeded"
		case batchv1.JobFailed:
			return "Failed"
		}
	}
	if j.Status.Active > 0 {
		return "Running"
	}
	return "Pending"
}

// flinkCluster is the FlinkCluster from the job's template.
func (j beamJob) flinkCluster() *unstructured.Unstructured {
	fc := &unstructured.Unstructured{Object: map[string]any{}}
	spec := map[string]any{}
	if len(j.Spec.FlinkClusterTemplate.Spec.Raw) > 0 {
		_ = json.Unmarshal(j.Spec.FlinkClusterTemplate.Spec.Raw, &spec) // the CRD's schema made it an object
	}
	fc.Object["spec"] = spec
	fc.SetGroupVersionKind(FlinkClusterGVK)
	fc.SetName(j.clusterName())
	fc.SetLabels(j.Spec.FlinkClusterTemplate.ObjectMeta.Labels)
	fc.SetAnnotations(j.Spec.FlinkClusterTemplate.ObjectMeta.Annotations)
	return fc
}

// submitJob is the batch Job from jobTemplate, pointed at the cluster: FLINK_MASTER in its env
// and, unless the user gave them, Beam's --runner=FlinkRunner and --flink_master arguments.
func (j beamJob) submitJob() *batchv1.Job {
	t := j.Spec.JobTemplate.DeepCopy()
	job := &batchv1.Job{ObjectMeta: t.ObjectMeta, Spec: t.Spec}
	job.ResourceVersion, job.UID = "", ""
	job.Name = j.submitName()
	pod := &corev1.Pod{Spec: job.Spec.Template.Spec}
	addEnv(pod, env("FLINK_MASTER", j.flinkMaster()))
	if len(pod.Spec.Containers) > 0 {
		c := &pod.Spec.Containers[0]
		all := strings.Join(append(append([]string(nil), c.Command...), c.Args...), " ")
		if !strings.Contains(all, "--runner") {
			c.Args = append(c.Args, "--runner=FlinkRunner")
		}
		if !strings.Contains(all, "--flink_master") {
			c.Args = append(c.Args, "--flink_master="+j.flinkMaster())
		}
	}
	job.Spec.Template.Spec = pod.Spec
	return job
}

func (r *JobReconciler) writeBeamStatus(ctx context.Context, j beamJob, orig *batch.BeamJobStatus) error {
	if equality.Semantic.DeepEqual(orig, &j.BeamJob.Status) {
		return nil
	}
	return r.Client.Status().Update(ctx, j.BeamJob)
}
