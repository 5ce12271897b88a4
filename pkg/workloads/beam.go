package workloads

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
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
func (j beamJob) OwnedTypes() []client.Object                           { return []client.Object{&batchv1.Job{}} }
func (j beamJob) MutatePod(*Cluster, *corev1.Pod, *Replicas, int) error { return nil }
func (j beamJob) Outcome(*Cluster, *View) Outcome                       { return Outcome{} }

// BeamJob's replica types: the Flink cluster's job and task managers (pods the Flink operator
// makes from the FlinkCluster) and the submit Job's pods. They label the pods
// (batch.tensorstack.dev/replica-type, and scheduler.tensorstack.dev/role with the t9k scheduler)
// and name the entries of status.tasks.
const (
	BeamJobManager  = "jobmanager"
	BeamTaskManager = "taskmanager"
	BeamSubmitter   = "submitter"
)

// Replicas are the Flink cluster's job manager and task managers (pods the Flink operator makes
// from the FlinkCluster, which carry the job's labels through podLabels and get schedulerName
// t9k-scheduler from the controllers' mutating webhook, see admission.FlinkPodWebhook) and the
// submit Job's pods (its parallelism, at most its completions).
//
// The job's gang is the cluster: the PodGroup's minMember is the job manager plus the task
// managers (roles jobmanager and taskmanager). The submitter is gated (Gated): its Job is created
// only once the cluster runs, so counting it would hold the Flink pods at the gang's gate for
// ever; its pods join the running group as the MPI launcher's do. Admission charges the queue for
// all three (admission.JobReplicas, from BeamClusterPods and the submit template).
//
// One job manager is counted whatever jobManager.replicas says: the operator accepts only 1, and
// its job manager StatefulSet starts pods one by one (OrderedReady), so a second one could never
// be there when the gang is placed. The task managers' StatefulSet (or Deployment) creates them
// all at once (podManagementPolicy Parallel); taskManager.replicas defaults to 3, the operator's
// default.
func (j beamJob) Replicas() []Replicas {
	spec := j.Spec.JobTemplate.Spec
	n := deref32(spec.Parallelism, 1)
	if c := deref32(spec.Completions, n); c < n {
		n = c
	}
	main := ""
	if cs := spec.Template.Spec.Containers; len(cs) > 0 {
		main = cs[0].Name
	}
	out := []Replicas{}
	for _, p := range BeamClusterPods(j.BeamJob) {
		out = append(out, Replicas{Type: p.Type, Count: p.Count, MainContainer: p.Type})
	}
	return append(out, Replicas{Type: BeamSubmitter, Count: n, MainContainer: main})
}

// Gated: the submit pods start once the Flink cluster runs, and are not counted in minMember.
func (beamJob) Gated(replicaType string) bool { return replicaType == BeamSubmitter }

// ReadyToStart is not consulted: BeamJob's Reconcile, not the generic one, creates the submit Job
// once the FlinkCluster reports Running.
func (beamJob) ReadyToStart(string, *View) bool { return true }

// FlinkPods is one kind of pod the Flink operator makes for a BeamJob's cluster.
type FlinkPods struct {
	Type  string // BeamJobManager or BeamTaskManager
	Count int32
	// Spec has the containers as the operator builds them, for their requests: the main
	// container (the template's resources, else the operator's defaults), its sidecars and
	// init containers.
	Spec *corev1.PodSpec
}

// flinkDefaultResources are the operator's resources for a job or task manager whose template
// gives none (flinkoperator.k8s.io/v1beta1 defaulting).
var flinkDefaultResources = corev1.ResourceRequirements{
	Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("200m"), corev1.ResourceMemory: resource.MustParse("512Mi")},
	Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("2Gi")},
}

// BeamClusterPods returns the job and task manager pods of a BeamJob's Flink cluster, read from
// flinkClusterTemplate.spec (what does not parse counts as unset): one job manager (see
// Replicas) and taskManager.replicas task managers (default 3; none when 0).
func BeamClusterPods(j *batch.BeamJob) []FlinkPods {
	var spec struct {
		JobManager  flinkComponent `json:"jobManager"`
		TaskManager flinkComponent `json:"taskManager"`
	}
	if raw := j.Spec.FlinkClusterTemplate.Spec.Raw; len(raw) > 0 {
		if json.Unmarshal(raw, &spec) != nil {
			// A field of another shape: read what can be read, field by field.
			var m map[string]json.RawMessage
			_ = json.Unmarshal(raw, &m)
			_ = json.Unmarshal(m["jobManager"], &spec.JobManager)
			_ = json.Unmarshal(m["taskManager"], &spec.TaskManager)
		}
	}
	tm := int32(3)
	if spec.TaskManager.Replicas != nil {
		tm = max(*spec.TaskManager.Replicas, 0)
	}
	return []FlinkPods{
		{Type: BeamJobManager, Count: 1, Spec: spec.JobManager.podSpec(BeamJobManager)},
		{Type: BeamTaskManager, Count: tm, Spec: spec.TaskManager.podSpec(BeamTaskManager)},
	}
}

// flinkComponent is what BeamClusterPods reads of a FlinkCluster's jobManager or taskManager.
type flinkComponent struct {
	Replicas       *int32                      `json:"replicas"`
	Resources      corev1.ResourceRequirements `json:"resources"`
	Sidecars       []corev1.Container          `json:"sidecars"`
	InitContainers []corev1.Container          `json:"initContainers"`
}

func (c flinkComponent) podSpec(name string) *corev1.PodSpec {
	res := c.Resources
	if len(res.Requests) == 0 && len(res.Limits) == 0 {
		res = *flinkDefaultResources.DeepCopy()
	}
	return &corev1.PodSpec{
		InitContainers: c.InitContainers,
		Containers:     append([]corev1.Container{{Name: name, Resources: res}}, c.Sidecars...),
	}
}

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
	pods, err := r.beamPods(ctx, j)
	if err != nil {
		return err
	}
	j.observe(pods, orig)
	if !finished {
		if err := r.ensurePodGroup(ctx, j, clusterOf(j)); err != nil {
			return err
		}
	}
	scheduled := r.mirrorPodGroup(ctx, j, &st.JobStatus, now)
	write := func() error {
		if err := r.writeBeamStatus(ctx, j, orig); err != nil {
			return err
		}
		r.emit(j, cs.changed)
		r.emitScheduled(j, scheduled)
		return nil
	}
	// resume: the job was paused and no longer is; its cluster and submit Job come back.
	resume := func() {
		if p := cs.get(batch.JobConditionPaused); p != nil && p.Status == corev1.ConditionTrue {
			cs.set(batch.JobConditionPaused, corev1.ConditionFalse, ReasonResumed, MessageResumed)
			st.Phase = batch.JobResuming
		}
	}

	fc := &unstructured.Unstructured{}
	fc.SetGroupVersionKind(FlinkClusterGVK)
	err = r.Client.Get(ctx, client.ObjectKey{Namespace: j.Namespace, Name: j.clusterName()}, fc)
	switch {
	case meta.IsNoMatchError(err) || isNoKind(err):
		cs.set(batch.JobConditionClusterRunning, corev1.ConditionFalse, ReasonFlinkCRDMissing,
			"The FlinkCluster CRD (flinkoperator.k8s.io/v1beta1) is not installed: install the Flink operator to run BeamJobs.")
		env.Result = ctrl.Result{RequeueAfter: time.Minute}
		return write()
	case apierrors.IsNotFound(err):
		if finished {
			return write() // cleaned up
		}
		if pauseEnabled(j) {
			return j.pause(r, env, cs, nil, write)
		}
		resume()
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
	st.JobURL = j.jobURL(fc)
	if finished {
		if j.Spec.RunPolicy != nil && j.Spec.RunPolicy.CleanUpCluster && fc.GetDeletionTimestamp() == nil {
			if err := client.IgnoreNotFound(r.Client.Delete(ctx, fc)); err != nil {
				return err
			}
		}
		return write()
	}
	if pauseEnabled(j) {
		return j.pause(r, env, cs, fc, write)
	}
	resume()
	if fc.GetDeletionTimestamp() != nil {
		// The cluster of before a pause is still going away; a new one follows.
		cs.set(batch.JobConditionClusterRunning, corev1.ConditionFalse, ReasonClusterStarting, "The previous Flink cluster is being deleted.")
		env.Result = ctrl.Result{RequeueAfter: 5 * time.Second}
		return write()
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
	if err == nil && submit.DeletionTimestamp != nil {
		env.Result = ctrl.Result{RequeueAfter: 5 * time.Second} // the submit Job of before a pause
		return write()
	}
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
		// The Flink operator's pods are not watched: look at them (tasks, flinkClusterStatus) again.
		env.Result = ctrl.Result{RequeueAfter: 10 * time.Second}
	}
	if (st.Phase == batch.JobSucceeded || st.Phase == batch.JobFailed) && st.CompletionTime == nil {
		st.CompletionTime = &now
		env.Result = ctrl.Result{Requeue: true} // clean up next
	}
	return write()
}

// pause stops a BeamJob as the other kinds are stopped (runMode.pause.enabled, which the Duration
// Keeper also sets): its pods are deleted, here by deleting the submit Job (its pods with it) and
// the Flink cluster (the operator's pods with it). Resuming creates both again: the pipeline
// starts over, as a resumed replica of the other kinds does.
func (j beamJob) pause(r *JobReconciler, env *ReconcileEnv, cs *conditionSetter, fc *unstructured.Unstructured, write func() error) error {
	ctx := env.Ctx
	submit := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: j.Namespace, Name: j.submitName()}}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(submit), submit); err == nil {
		if checkOwner(j, submit, "job") == nil && submit.DeletionTimestamp == nil {
			if err := r.Client.Delete(ctx, submit, client.PropagationPolicy(metav1.DeletePropagationBackground)); client.IgnoreNotFound(err) != nil {
				return err
			}
		}
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	if fc != nil && fc.GetDeletionTimestamp() == nil && checkOwner(j, fc, "flinkcluster") == nil {
		if err := client.IgnoreNotFound(r.Client.Delete(ctx, fc)); err != nil {
			return err
		}
	}
	st := &j.BeamJob.Status
	st.Phase = batch.JobPaused
	st.SubmitJobStatus = nil
	cs.set(batch.JobConditionPaused, corev1.ConditionTrue, ReasonPaused, MessagePaused)
	cs.set(batch.JobConditionClusterRunning, corev1.ConditionFalse, ReasonPaused, MessagePaused)
	if cs.get(batch.JobConditionJobRunning) != nil {
		cs.set(batch.JobConditionJobRunning, corev1.ConditionFalse, ReasonPaused, MessagePaused)
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

// podLabels are the labels of the job's pods of one replica type: the owner labels the
// controller finds them by, the replica type, and with the t9k scheduler the PodGroup, queue and
// role labels.
func (j beamJob) podLabels(replicaType string) map[string]string {
	l := ownerLabels(j.GVK().Kind, j.Name)
	l[LabelReplicaType] = replicaType
	maps.Copy(l, schedulerLabels(j, j.Name, replicaType))
	return l
}

// flinkCluster is the FlinkCluster from the job's template; the job and task managers' pods get
// the job's pod labels (spec.jobManager.podLabels, spec.taskManager.podLabels, the user's kept).
func (j beamJob) flinkCluster() *unstructured.Unstructured {
	fc := &unstructured.Unstructured{Object: map[string]any{}}
	spec := map[string]any{}
	if len(j.Spec.FlinkClusterTemplate.Spec.Raw) > 0 {
		_ = json.Unmarshal(j.Spec.FlinkClusterTemplate.Spec.Raw, &spec) // the CRD's schema made it an object
	}
	for field, typ := range map[string]string{"jobManager": BeamJobManager, "taskManager": BeamTaskManager} {
		m, _ := spec[field].(map[string]any)
		if m == nil {
			m = map[string]any{}
			spec[field] = m
		}
		labels, _ := m["podLabels"].(map[string]any)
		if labels == nil {
			labels = map[string]any{}
			m["podLabels"] = labels
		}
		for k, v := range j.podLabels(typ) {
			labels[k] = v
		}
	}
	fc.Object["spec"] = spec
	fc.SetGroupVersionKind(FlinkClusterGVK)
	fc.SetName(j.clusterName())
	fc.SetLabels(j.Spec.FlinkClusterTemplate.ObjectMeta.Labels)
	fc.SetAnnotations(j.Spec.FlinkClusterTemplate.ObjectMeta.Annotations)
	return fc
}

// submitJob is the batch Job from jobTemplate, pointed at the cluster: FLINK_MASTER in its env
// and, unless the user gave them, Beam's --runner=FlinkRunner and --flink_master arguments. Its
// pods carry the job's pod labels and, with the t9k scheduler, its schedulerName; in debug mode
// their main container runs the debug command (runMode.debug, replica type submitter) instead.
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
	var g Replicas
	for _, r := range j.Replicas() {
		if r.Type == BeamSubmitter {
			g = r
		}
	}
	nameContainers(pod, g.MainContainer)
	applyRunMode(j, pod, &g)
	if schedulerLabels(j, j.Name, BeamSubmitter) != nil {
		pod.Spec.SchedulerName = schedv1.SchedulerName
	}
	if job.Spec.Template.Labels == nil {
		job.Spec.Template.Labels = map[string]string{}
	}
	maps.Copy(job.Spec.Template.Labels, j.podLabels(BeamSubmitter))
	job.Spec.Template.Spec = pod.Spec
	return job
}

// jobURL is the pipeline's page on the platform's Flink dashboard: the job's own page once the
// FlinkCluster reports a Flink job ID (status.components.job.id), else the cluster's overview
// (a session cluster, which BeamJob creates, reports none).
func (j beamJob) jobURL(fc *unstructured.Unstructured) string {
	base := fmt.Sprintf("/t9k/flink-cluster/%s/namespace/%s/#/", j.clusterName(), j.Namespace)
	if id, _, _ := unstructured.NestedString(fc.Object, "status", "components", "job", "id"); id != "" {
		return base + "job/" + id + "/overview/"
	}
	return base + "overview/"
}

// beamPods lists the job's pods by their labels: the Flink operator's (owned by its StatefulSets)
// and the submit Job's (owned by the Job).
func (r *JobReconciler) beamPods(ctx context.Context, j beamJob) ([]*corev1.Pod, error) {
	var list corev1.PodList
	if err := r.Reader.List(ctx, &list, client.InNamespace(j.Namespace),
		client.MatchingLabels{LabelOwnerName: j.Name, LabelOwnerKind: j.GVK().Kind}); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	out := make([]*corev1.Pod, 0, len(list.Items))
	for i := range list.Items {
		out = append(out, &list.Items[i])
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

// observe sets tasks, aggregate and flinkClusterStatus from the job's pods. A replica listed
// before whose pod is gone stays, with phase Deleted.
func (j beamJob) observe(pods []*corev1.Pod, prev *batch.BeamJobStatus) {
	st := &j.BeamJob.Status
	seen := map[string]bool{}
	byType := map[string][]batch.ReplicaStatus{}
	for _, p := range pods {
		typ := p.Labels[LabelReplicaType]
		if typ != BeamJobManager && typ != BeamTaskManager && typ != BeamSubmitter {
			continue
		}
		seen[p.Name] = true
		byType[typ] = append(byType[typ], batch.ReplicaStatus{
			Name: p.Name, UID: p.UID, Phase: replicaPhase(p), Containers: containerStatuses(p)})
	}
	for _, t := range prev.Tasks {
		for _, r := range t.Replicas {
			if !seen[r.Name] && r.UID != "" {
				byType[string(t.Type)] = append(byType[string(t.Type)],
					batch.ReplicaStatus{Name: r.Name, UID: r.UID, Phase: batch.ReplicaDeleted})
			}
		}
	}
	st.Tasks = nil
	for _, typ := range []string{BeamJobManager, BeamTaskManager, BeamSubmitter} {
		rs := byType[typ]
		sort.Slice(rs, func(a, b int) bool { return rs[a].Name < rs[b].Name })
		st.Tasks = append(st.Tasks, batch.TaskStatus{Type: batch.ReplicaType(typ), Replicas: rs})
	}
	st.Aggregate = aggregate(st.Tasks)
	dependents := func(typ string) []batch.DependentPhase {
		var out []batch.DependentPhase
		for _, r := range byType[typ] {
			out = append(out, batch.DependentPhase{Phase: string(r.Phase), Reference: batch.DependentReference{Name: r.Name, UID: r.UID}})
		}
		return out
	}
	st.FlinkClusterStatus = nil
	if jm, tm := dependents(BeamJobManager), dependents(BeamTaskManager); jm != nil || tm != nil {
		st.FlinkClusterStatus = &batch.FlinkClusterStatus{JobManagerStatus: jm, TaskManagerStatus: tm}
	}
}

func (r *JobReconciler) writeBeamStatus(ctx context.Context, j beamJob, orig *batch.BeamJobStatus) error {
	if equality.Semantic.DeepEqual(orig, &j.BeamJob.Status) {
		return nil
	}
	return r.Client.Status().Update(ctx, j.BeamJob)
}
