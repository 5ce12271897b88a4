package workloads

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// JobReconciler runs one job kind. It is a function of observed state: pods are listed from the
// API server (not the cache) and have deterministic names, and every child is created only if
// absent, so a restarted or duplicated controller never makes a second pod for a replica.
type JobReconciler struct {
	Client   client.Client
	Reader   client.Reader // uncached reads: the API server is the truth about pods
	Scheme   *runtime.Scheme
	Recorder record.EventRecorder
	NewJob   func() Job
	Now      func() time.Time
}

// ReconcileEnv is what a custom reconcile (BeamJob) gets besides the reconciler.
type ReconcileEnv struct {
	Ctx    context.Context
	Result ctrl.Result
}

// +kubebuilder:rbac:groups=batch.tensorstack.dev,resources=genericjobs;pytorchtrainingjobs;tensorflowtrainingjobs;xgboosttrainingjobs;mpijobs;colossalaijobs;deepspeedjobs;beamjobs,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=batch.tensorstack.dev,resources=genericjobs/status;pytorchtrainingjobs/status;tensorflowtrainingjobs/status;xgboosttrainingjobs/status;mpijobs/status;colossalaijobs/status;deepspeedjobs/status;beamjobs/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=pods;services;configmaps,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;create
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=scheduler.tensorstack.dev,resources=podgroups,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=batch,resources=jobs,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=flinkoperator.k8s.io,resources=flinkclusters,verbs=get;list;watch;create;update;patch;delete

// Reconcile brings one job one step closer to its spec.
func (r *JobReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	job := r.NewJob()
	obj := job.Object()
	if err := r.Client.Get(ctx, req.NamespacedName, obj); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if obj.GetDeletionTimestamp() != nil {
		return ctrl.Result{}, nil // owner references let the garbage collector take the children
	}
	if bad := undecodable(job); bad != nil {
		// Reported and skipped: nothing is created or deleted for a spec we cannot read.
		return ctrl.Result{}, r.reportUndecodable(ctx, job, bad)
	}
	if cr, ok := job.(JobWithCustomReconcile); ok {
		env := &ReconcileEnv{Ctx: ctx}
		err := cr.Reconcile(r, env)
		return r.result(ctx, env.Result, err)
	}
	res, err := r.reconcile(ctx, job)
	return r.result(ctx, res, err)
}

// undecodable returns the first template of the job that is not valid as stored (see
// batch.PodTemplate), or nil.
func undecodable(job Job) *batch.TemplateRef {
	for _, t := range batch.Templates(job.Object()) {
		if t.DecodeError() != "" {
			return &t
		}
	}
	return nil
}

// reportUndecodable says on the job why it does not run: ReplicaFailure=True (InvalidTemplate)
// with the decoding error, and a Warning event when that is new.
func (r *JobReconciler) reportUndecodable(ctx context.Context, job Job, t *batch.TemplateRef) error {
	st := job.Status()
	orig := st.DeepCopy()
	msg := fmt.Sprintf("%s is not a valid template: %s; nothing is created until it is fixed", t.Path, t.DecodeError())
	cs := &conditionSetter{st: st, now: r.now()}
	cs.set(batch.JobConditionReplicaFailure, corev1.ConditionTrue, ReasonInvalidTemplate, msg)
	if st.Phase == "" {
		st.Phase = batch.JobPending
	}
	log.FromContext(ctx).Info("job has an undecodable template; skipped", "path", t.Path, "err", t.DecodeError())
	if err := r.writeStatus(ctx, job, orig, false); err != nil {
		return err
	}
	r.emit(job, cs.changed)
	return nil
}

// result turns write conflicts (a stale cache) into a quiet retry.
func (r *JobReconciler) result(ctx context.Context, res ctrl.Result, err error) (ctrl.Result, error) {
	if apierrors.IsConflict(err) {
		log.FromContext(ctx).V(1).Info("conflict, retrying", "err", err)
		return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
	}
	return res, err
}

func (r *JobReconciler) now() metav1.Time {
	if r.Now != nil {
		return metav1.NewTime(r.Now())
	}
	return metav1.Now()
}

func (r *JobReconciler) reconcile(ctx context.Context, job Job) (ctrl.Result, error) {
	st := job.Status()
	orig := st.DeepCopy()
	c := clusterOf(job)
	rp := runPolicyOf(job)
	pods, err := r.listPods(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}
	v, extra := NewView(c, pods)
	counts := countsFrom(st)
	now := r.now()

	// The TensorBoard outlives the job's pods: its logs are still worth reading once it finished.
	tbChanged, err := r.reconcileTensorBoard(ctx, job)
	if err != nil {
		return ctrl.Result{}, err
	}

	if st.Phase == batch.JobSucceeded || st.Phase == batch.JobFailed {
		// Finished: only clean up and keep tasks/aggregate current.
		again, err := r.cleanUp(ctx, job, v, rp, false)
		if err != nil {
			return ctrl.Result{}, err
		}
		// Surplus pods of a finished job have nobody left to tell.
		if _, err := r.removeSurplus(ctx, job, c, v, extra, now.Time, true); err != nil {
			return ctrl.Result{}, err
		}
		st.Tasks = buildTasks(c, v, orig, counts)
		st.Aggregate = aggregate(st.Tasks)
		return ctrl.Result{RequeueAfter: again}, r.writeStatus(ctx, job, orig, tbChanged)
	}

	// A child someone else holds (a job of another kind with this name) is reported on the status
	// like a pod the apiserver refuses, and nothing more is created.
	var conflict *NameConflictError
	childErr := r.ensureChildren(ctx, job, c)
	if childErr != nil && !errors.As(childErr, &conflict) {
		return ctrl.Result{}, childErr
	}

	paused := pauseEnabled(job)
	var out Outcome
	var requeue time.Duration
	if !paused {
		planRestarts(c, v, st, rp, &counts, corev1.PodFailed)
		out = job.Outcome(c, v)
		if !out.Done && rp.ActiveDeadlineSeconds != nil && st.StartTime != nil {
			deadline := st.StartTime.Add(time.Duration(*rp.ActiveDeadlineSeconds) * time.Second)
			if left := deadline.Sub(now.Time); left <= 0 {
				out = Outcome{Done: true, Failed: true, Reason: ReasonDeadlineExceeded, Message: fmt.Sprintf(
					"%s %s has failed: it ran longer than activeDeadlineSeconds (%ds)", c.Kind, c.Name, *rp.ActiveDeadlineSeconds)}
			} else {
				requeue = left
			}
		}
		if !out.Done {
			planRestarts(c, v, st, rp, &counts, corev1.PodSucceeded)
		}
	}

	// Missing pods are created before the status is written, so that a pod the apiserver refuses
	// is reported in this very status (ReplicaFailure=True, FailedCreatePod) rather than hidden
	// behind "All pods are running normally".
	var createErr error
	switch {
	case out.Done || paused:
	case childErr != nil:
		createErr = childErr
	default:
		createErr = r.createMissing(ctx, job, c, v)
	}
	transitions := updateStatus(st, c, v, counts, out, paused, now, createErr)
	scheduled := r.mirrorPodGroup(ctx, job, st, now)
	if rp.ActiveDeadlineSeconds != nil && requeue == 0 && !out.Done {
		requeue = time.Duration(*rp.ActiveDeadlineSeconds) * time.Second
	}
	// Status first: a restart's count must be durable before the pod it counts disappears.
	if err := r.writeStatus(ctx, job, orig, tbChanged); err != nil {
		return ctrl.Result{}, err
	}
	r.emit(job, transitions)
	r.emitScheduled(job, scheduled)
	// Replicas the spec no longer has (elastic scale-down); the kind's objects (hostfiles) were
	// written above, before any of them goes. Nobody is left to tell once the job is finished or
	// paused.
	wait, err := r.removeSurplus(ctx, job, c, v, extra, now.Time, out.Done || paused)
	if err != nil {
		return ctrl.Result{}, err
	}
	if wait > 0 && (requeue == 0 || wait < requeue) {
		requeue = wait
	}
	if createErr != nil {
		return ctrl.Result{}, createErr
	}

	switch {
	case out.Done:
		// A deadline deletes the job's unfinished pods whatever the clean-up policy: bounding the
		// job's resources is what the deadline is for.
		again, err := r.cleanUp(ctx, job, v, rp, out.Reason == ReasonDeadlineExceeded)
		return ctrl.Result{RequeueAfter: again}, err
	case paused:
		for _, s := range v.All() {
			if s.Pod != nil {
				if err := r.deletePod(ctx, job, s.Pod, "Paused"); err != nil {
					return ctrl.Result{}, err
				}
			}
		}
		return ctrl.Result{}, nil
	}

	for _, s := range v.All() {
		if s.Restarting {
			if err := r.deletePod(ctx, job, s.Pod, "Restarting"); err != nil {
				return ctrl.Result{}, err
			}
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// scaleDownAckTimeout bounds how long running surplus pods wait for the acknowledgement of a
// JobWithScaleDownAck: the kubelet alone may take a minute or more to refresh a mounted
// ConfigMap, and the program then waits for its new members and restarts.
const scaleDownAckTimeout = 5 * time.Minute

// removeSurplus deletes the pods of replicas the spec no longer has (elastic scale-down). Their
// deletion never counts as a restart or a failure: surplus pods are outside the view that
// planRestarts and the status judge. For a JobWithScaleDownAck, running ones wait for its
// acknowledgement unless force (see there). It returns how long they may still wait (0: none).
func (r *JobReconciler) removeSurplus(ctx context.Context, job Job, c *Cluster, v *View, extra []*corev1.Pod, now time.Time, force bool) (time.Duration, error) {
	var running []*corev1.Pod
	for _, p := range extra {
		if p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning {
			running = append(running, p)
			continue
		}
		// Not running: no program runs there, so nobody uses it.
		if err := r.deletePod(ctx, job, p, "ScaledDown"); err != nil {
			return 0, err
		}
	}
	if len(running) == 0 {
		return 0, nil
	}
	if a, ok := job.(JobWithScaleDownAck); ok && !force {
		if ack, ok := a.ScaleDownAck(c); ok {
			wait, err := r.awaitScaleDownAck(ctx, job, ack, v, running, now)
			if err != nil || wait > 0 {
				return wait, err
			}
		}
	}
	for _, p := range running {
		if err := r.deletePod(ctx, job, p, "ScaledDown"); err != nil {
			return 0, err
		}
	}
	return 0, nil
}

// awaitScaleDownAck returns how long the running surplus pods must still wait for the
// acknowledgement (0: delete them now), with an event when they go after one or despite none.
func (r *JobReconciler) awaitScaleDownAck(ctx context.Context, job Job, ack ScaleDownAck, v *View, pods []*corev1.Pod, now time.Time) (time.Duration, error) {
	obj := job.Object()
	// From the API server, not the cache: the stamp was written moments ago, and an older one
	// could be mistaken as acknowledged already.
	var cm corev1.ConfigMap
	var stamp time.Time
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: ack.ConfigMap}, &cm)
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return 0, fmt.Errorf("configmap %s: %w", ack.ConfigMap, err)
	case checkOwner(job, &cm, "configmap") == nil:
		stamp, _ = time.Parse(time.RFC3339, cm.Annotations[AnnotationUpdatedAt])
	}
	acker := v.Slot(ack.Type, ack.Index)
	verdict, wait := scaleDownVerdict(acker, stamp, now)
	names := make([]string, len(pods))
	for i, p := range pods {
		names[i] = p.Name
	}
	surplus := strings.Join(names, ", ")
	switch verdict {
	case ackWait:
		log.FromContext(ctx).V(1).Info("surplus pods wait for the scale-down to be acknowledged",
			"pods", surplus, "replica", acker.Name, "updated", stamp, "timeout", wait)
		return wait, nil
	case ackDone:
		r.Recorder.Eventf(obj, corev1.EventTypeNormal, "ScaleDownAcknowledged",
			"%s runs on the members of the updated ConfigMap %s (ready since %s): deleting surplus pods %s",
			acker.Name, ack.ConfigMap, readySince(acker.Pod).UTC().Format(time.RFC3339), surplus)
	case ackTimeout:
		why := fmt.Sprintf("did not acknowledge the update of ConfigMap %s at %s within %s", ack.ConfigMap, stamp.Format(time.RFC3339), scaleDownAckTimeout)
		if stamp.IsZero() {
			why = fmt.Sprintf("cannot acknowledge: ConfigMap %s has no %s annotation", ack.ConfigMap, AnnotationUpdatedAt)
		}
		r.Recorder.Eventf(obj, corev1.EventTypeWarning, "ScaleDownNotAcknowledged",
			"%s %s: deleting surplus pods %s anyway; its program may fail", acker.Name, why, surplus)
	}
	return 0, nil
}

// ackVerdict is what becomes of running surplus pods.
type ackVerdict int

const (
	ackWait    ackVerdict = iota // not acknowledged yet
	ackDone                      // acknowledged: delete
	ackNobody                    // nobody to tell (the replica is not running or cannot signal): delete
	ackTimeout                   // not acknowledged in time, or no stamp to judge by: delete with a warning
)

// scaleDownVerdict judges the acknowledging replica against the time its ConfigMap was last
// written (stamp; zero: unknown), and says how long to wait otherwise. Both times have the API's
// one-second precision, so the Ready transition must be strictly later than the stamp: one in the
// same second may have come before the write. A real acknowledgement always is later: the
// relaunch keeps the replica unready for at least 5 seconds after the kubelet refreshed the file.
func scaleDownVerdict(acker *Slot, stamp, now time.Time) (ackVerdict, time.Duration) {
	if acker == nil || acker.Pod == nil || acker.Pod.DeletionTimestamp != nil || acker.Phase() != corev1.PodRunning {
		return ackNobody, 0
	}
	// A pod without a readiness probe (built before the protocol, or in debug mode) never signals.
	if !hasReadinessProbe(acker.Pod, acker.MainContainer) {
		return ackNobody, 0
	}
	if stamp.IsZero() {
		return ackTimeout, 0
	}
	stamp = stamp.Truncate(time.Second)
	if since := readySince(acker.Pod); !since.IsZero() && since.Truncate(time.Second).After(stamp) {
		return ackDone, 0
	}
	left := stamp.Add(scaleDownAckTimeout).Sub(now)
	if left <= 0 {
		return ackTimeout, 0
	}
	return ackWait, left
}

// hasReadinessProbe: the pod's main container (the one named main, else the first) has one.
func hasReadinessProbe(p *corev1.Pod, main string) bool {
	cs := p.Spec.Containers
	for i := range cs {
		if cs[i].Name == main {
			return cs[i].ReadinessProbe != nil
		}
	}
	return len(cs) > 0 && cs[0].ReadinessProbe != nil
}

// readySince is when a pod last became Ready, zero when it is not ready.
func readySince(p *corev1.Pod) time.Time {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Time
		}
	}
	return time.Time{}
}

// emitScheduled records an event for a change of the Scheduled condition (nil: none): Warning
// with the PodGroup's reason while it cannot be placed, Normal once it is.
func (r *JobReconciler) emitScheduled(job Job, t *Transition) {
	if t == nil {
		return
	}
	typ, reason := corev1.EventTypeWarning, t.Reason
	if t.Status == corev1.ConditionTrue {
		typ, reason = corev1.EventTypeNormal, "Scheduled"
	}
	r.Recorder.Event(job.Object(), typ, reason, t.Message)
}

// mirrorPodGroup copies the GroupScheduled condition of the job's PodGroup into the job's
// Scheduled condition, so that the job says why it waits ("needs 72 GPUs (9 pods x 8) in one
// spine; best spine spine-0 has 64 free") where its user looks: kubectl get (column SCHEDULING),
// its conditions and its events. It returns the condition when it changed (for an event).
func (r *JobReconciler) mirrorPodGroup(ctx context.Context, job Job, st *batch.JobStatus, now metav1.Time) *Transition {
	if s := job.Common().Scheduler; s == nil || s.T9kScheduler == nil {
		return nil
	}
	obj := job.Object()
	var pg schedv1.PodGroup
	if err := r.Client.Get(ctx, client.ObjectKey{Namespace: obj.GetNamespace(), Name: obj.GetName()}, &pg); err != nil {
		return nil
	}
	if ref := metav1.GetControllerOf(&pg); ref == nil || ref.UID != obj.GetUID() {
		return nil
	}
	c := meta.FindStatusCondition(pg.Status.Conditions, schedv1.PodGroupConditionScheduled)
	if c == nil {
		return nil
	}
	status := corev1.ConditionStatus(c.Status)
	for _, have := range st.Conditions {
		if have.Type == batch.JobConditionScheduled && have.Status == status && have.Reason == c.Reason && have.Message == c.Message {
			return nil
		}
	}
	cs := &conditionSetter{st: st, now: now}
	cs.set(batch.JobConditionScheduled, status, c.Reason, c.Message)
	return &Transition{Type: batch.JobConditionScheduled, Status: status, Reason: c.Reason, Message: c.Message}
}

// clusterOf applies elastic scaling to the kind's replica groups.
func clusterOf(job Job) *Cluster {
	groups := job.Replicas()
	if e, ok := job.(JobWithElastic); ok {
		if el := e.Elastic(); el != nil && el.Enabled {
			for i := range groups {
				if groups[i].Type == e.ElasticType() {
					groups[i].Count = elasticCount(el, groups[i].Count)
				}
			}
		}
	}
	obj := job.Object()
	return NewCluster(job.GVK().Kind, obj.GetName(), obj.GetNamespace(), groups)
}

// elasticCount is expectedReplicas (else the spec's count) clamped into [min, max].
func elasticCount(el *batch.ElasticConfig, specCount int32) int32 {
	n := specCount
	if el.ExpectedReplicas != nil {
		n = *el.ExpectedReplicas
	}
	if el.MaxReplicas != nil && n > *el.MaxReplicas {
		n = *el.MaxReplicas
	}
	if el.MinReplicas != nil && n < *el.MinReplicas {
		n = *el.MinReplicas
	}
	return n
}

func runPolicyOf(job Job) RunPolicy {
	if p, ok := job.(JobWithRunPolicy); ok {
		return p.RunPolicy()
	}
	return RunPolicy{}
}

// listPods returns the job's pods from the API server, those it controls only.
func (r *JobReconciler) listPods(ctx context.Context, job Job) ([]*corev1.Pod, error) {
	obj := job.Object()
	var list corev1.PodList
	if err := r.Reader.List(ctx, &list, client.InNamespace(obj.GetNamespace()),
		client.MatchingLabels{LabelOwnerName: obj.GetName(), LabelOwnerKind: job.GVK().Kind}); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	var out []*corev1.Pod
	for i := range list.Items {
		if ref := metav1.GetControllerOf(&list.Items[i]); ref != nil && ref.UID == obj.GetUID() {
			out = append(out, &list.Items[i])
		}
	}
	return out, nil
}

// createMissing creates the pod of every replica that has none (and whose start gate, if the
// kind has one, is open). It returns the first refusal.
func (r *JobReconciler) createMissing(ctx context.Context, job Job, c *Cluster, v *View) error {
	gate, _ := job.(JobWithStartGate)
	for _, s := range v.All() {
		if s.Pod != nil || gate != nil && gate.Gated(s.Type) && !gate.ReadyToStart(s.Type, v) {
			continue
		}
		if err := r.createPod(ctx, job, c, s); err != nil {
			return err
		}
		s.Created = true
	}
	return nil
}

func (r *JobReconciler) createPod(ctx context.Context, job Job, c *Cluster, s *Slot) error {
	pod, err := buildPod(job, c, c.Group(s.Type), s.Index)
	if err != nil {
		r.Recorder.Eventf(job.Object(), corev1.EventTypeWarning, ReasonFailedCreatePod, "Building pod %s: %v", s.Name, err)
		return fmt.Errorf("building pod %s: %w", s.Name, err)
	}
	if err := ctrl.SetControllerReference(job.Object(), pod, r.Scheme); err != nil {
		return err
	}
	if err := r.Client.Create(ctx, pod); err != nil {
		if apierrors.IsAlreadyExists(err) {
			// Made by an earlier reconcile we have not observed yet, or someone else's.
			have := &corev1.Pod{}
			if err := r.Reader.Get(ctx, client.ObjectKeyFromObject(pod), have); err != nil {
				return client.IgnoreNotFound(err)
			}
			return checkOwner(job, have, "pod")
		}
		r.Recorder.Eventf(job.Object(), corev1.EventTypeWarning, ReasonFailedCreatePod, "Error creating pod %s: %v", s.Name, err)
		return fmt.Errorf("creating pod %s: %w", s.Name, err)
	}
	r.Recorder.Eventf(job.Object(), corev1.EventTypeNormal, "SuccessfulCreatePod", "Created pod: %s", pod.Name)
	return nil
}

// deletePod deletes exactly the pod observed (UID precondition), never a successor of the same
// name.
func (r *JobReconciler) deletePod(ctx context.Context, job Job, pod *corev1.Pod, why string) error {
	if pod.DeletionTimestamp != nil {
		return nil
	}
	uid := pod.UID
	err := r.Client.Delete(ctx, pod, client.Preconditions{UID: &uid})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	if err != nil {
		return err
	}
	r.Recorder.Eventf(job.Object(), corev1.EventTypeNormal, "SuccessfulDeletePod", "Deleted pod %s (%s)", pod.Name, why)
	return nil
}

// cleanUp releases what a finished job holds. The clean-up policy (cleanUpPolicy, cleanUpWorkers)
// says which pods are deleted (all unfinished ones when deleteUnfinished: the deadline). Every
// other pod that has not finished is stopped, whatever the policy, because a finished job holds
// no GPUs and no quota (the sshd workers of the launcher kinds and TensorFlow's parameter servers
// never finish by themselves): see stopPod. It returns when to look again at stopped pods.
func (r *JobReconciler) cleanUp(ctx context.Context, job Job, v *View, rp RunPolicy, deleteUnfinished bool) (time.Duration, error) {
	cleanTypes := map[string]bool{}
	for _, t := range rp.CleanUpTypes {
		cleanTypes[t] = true
	}
	var again time.Duration
	for _, s := range v.All() {
		if s.Pod == nil || s.Pod.DeletionTimestamp != nil {
			continue
		}
		del := cleanTypes[s.Type]
		switch rp.CleanUpPolicy {
		case batch.CleanUpPolicyAll:
			del = true
		case batch.CleanUpPolicyUnfinished:
			del = del || !s.Finished()
		}
		if deleteUnfinished && !s.Finished() {
			del = true
		}
		switch {
		case del:
			if err := r.deletePod(ctx, job, s.Pod, "CleanUp"); err != nil {
				return 0, err
			}
		case s.Finished():
		case s.Pod.Spec.NodeName == "" && (s.Phase() == corev1.PodPending || s.Phase() == ""):
			// Never started: nothing of it is worth keeping, and it must not start now.
			if err := r.deletePod(ctx, job, s.Pod, "JobFinished"); err != nil {
				return 0, err
			}
		default:
			d, err := r.stopPod(ctx, job, s.Pod)
			if err != nil {
				return 0, err
			}
			if d > 0 && (again == 0 || d < again) {
				again = d
			}
		}
	}
	return again, nil
}

// stopMargin is how long after its termination grace period a stopped pod may still be
// unfinished before it is deleted.
const stopMargin = 10 * time.Second

// stopPod stops a running pod of a finished job in place: spec.activeDeadlineSeconds is set to 1
// (the one spec field of a pod that may be set on a running pod), so the kubelet kills its
// containers and marks it Failed (reason DeadlineExceeded). The pod, its status and its logs stay
// for the clean-up policy to keep. A pod that is still not finished stopMargin after its
// termination grace period (its node is gone, or nothing there honours the deadline) is deleted.
// It returns when to look at the pod again.
func (r *JobReconciler) stopPod(ctx context.Context, job Job, pod *corev1.Pod) (time.Duration, error) {
	grace := stopMargin
	if g := pod.Spec.TerminationGracePeriodSeconds; g != nil && *g > 0 {
		grace += time.Duration(*g) * time.Second
	} else if g == nil {
		grace += corev1.DefaultTerminationGracePeriodSeconds * time.Second
	}
	now := r.now().Time
	if at, ok := pod.Annotations[AnnotationStoppedAt]; ok {
		t, err := time.Parse(time.RFC3339, at)
		if err != nil || now.Sub(t) >= grace {
			return 0, r.deletePod(ctx, job, pod, "NotStopped")
		}
		return grace - now.Sub(t) + time.Second, nil
	}
	patch := client.MergeFromWithOptions(pod.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[AnnotationStoppedAt] = now.UTC().Format(time.RFC3339)
	if d := pod.Spec.ActiveDeadlineSeconds; d == nil || *d > 1 {
		one := int64(1)
		pod.Spec.ActiveDeadlineSeconds = &one
	}
	err := r.Client.Patch(ctx, pod, patch)
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return time.Second, nil // changed meanwhile: look again
	}
	if err != nil {
		return 0, fmt.Errorf("stopping pod %s: %w", pod.Name, err)
	}
	r.Recorder.Eventf(job.Object(), corev1.EventTypeNormal, "StoppedPod",
		"Stopping pod %s: the job has finished (its spec.activeDeadlineSeconds is set; the pod is kept unless the clean-up policy deletes it)", pod.Name)
	return grace + time.Second, nil
}

// writeStatus updates the job's status when its shared block differs from orig or when more
// (status.tensorboard) changed.
func (r *JobReconciler) writeStatus(ctx context.Context, job Job, orig *batch.JobStatus, more bool) error {
	if !more && equality.Semantic.DeepEqual(orig, job.Status()) {
		return nil
	}
	return r.Client.Status().Update(ctx, job.Object())
}

// emit records an event for every condition that changed.
func (r *JobReconciler) emit(job Job, ts []Transition) {
	for _, t := range ts {
		typ := corev1.EventTypeNormal
		if t.Status == corev1.ConditionTrue && (t.Type == batch.JobConditionFailed || t.Type == batch.JobConditionReplicaFailure) {
			typ = corev1.EventTypeWarning
		}
		reason := string(t.Type) + string(t.Status)
		if t.Reason != "" {
			reason = string(t.Type) + t.Reason
		}
		r.Recorder.Event(job.Object(), typ, reason, t.Message)
	}
}
