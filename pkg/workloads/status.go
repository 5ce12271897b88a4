package workloads

import (
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// Condition messages and reasons. The manuals give those of Initialized, ReplicaFailure and
// the finished states; the others are ours, in the same style.
const (
	MessageInitialized   = "The job has been initialized successfully."
	MessagePodsNormal    = "All pods are running normally."
	MessageRunning       = "All pods of the job are running."
	MessagePaused        = "The job has been paused."
	MessageResumed       = "The job has been resumed."
	ReasonErrorInPod     = "ErrorInPod"
	ReasonPaused         = "Paused"
	ReasonResumed        = "Resumed"
	ReasonAllPodsRunning = "AllPodsRunning"
	// ReasonInvalidTemplate: a stored pod template does not decode (see batch.PodTemplate).
	ReasonInvalidTemplate = "InvalidTemplate"
	// ReasonFailedCreatePod: the apiserver refused a pod the controller built (LimitRange,
	// ResourceQuota, Pod Security, a template the webhook could not know was wrong).
	ReasonFailedCreatePod = "FailedCreatePod"
	ReasonPodsNotCreated  = "PodsNotCreated"
	// ReasonNameConflict: a child the job needs (pod, Service, PodGroup, ConfigMap, Secret)
	// exists and belongs to something else, typically a job of another kind with the same name.
	ReasonNameConflict = "NameConflict"
)

// replicaPhase is a pod's phase as the job reports it: Pending before scheduling is Creating.
func replicaPhase(p *corev1.Pod) batch.ReplicaPhase {
	switch p.Status.Phase {
	case corev1.PodPending, "":
		if p.Spec.NodeName == "" {
			return batch.ReplicaCreating
		}
		return batch.ReplicaPending
	case corev1.PodRunning:
		return batch.ReplicaRunning
	case corev1.PodSucceeded:
		return batch.ReplicaSucceeded
	case corev1.PodFailed:
		return batch.ReplicaFailed
	}
	return batch.ReplicaUnknown
}

func containerStatuses(p *corev1.Pod) []batch.ContainerStatus {
	var out []batch.ContainerStatus
	for _, cs := range p.Status.ContainerStatuses {
		c := batch.ContainerStatus{Name: cs.Name}
		switch {
		case cs.State.Terminated != nil:
			code := cs.State.Terminated.ExitCode
			c.State, c.ExitCode = "Terminated", &code
		case cs.State.Running != nil:
			c.State = "Running"
		default:
			c.State = "Waiting"
		}
		out = append(out, c)
	}
	return out
}

// buildTasks lists every replica with its pod's name, UID and phase. A replica whose pod is being
// restarted keeps the old pod's UID with phase Deleted (see alreadyCounted); one whose pod is gone
// keeps its last UID with phase Deleted; one not yet created has only its name.
func buildTasks(c *Cluster, v *View, prev *batch.JobStatus, counts restartCounts) []batch.TaskStatus {
	prevUID := map[string]batch.ReplicaStatus{}
	for _, t := range prev.Tasks {
		for _, r := range t.Replicas {
			prevUID[r.Name] = r
		}
	}
	tasks := make([]batch.TaskStatus, 0, len(c.Replicas))
	for _, g := range c.Replicas {
		t := batch.TaskStatus{Type: batch.ReplicaType(g.Type), RestartCount: counts.perType[g.Type]}
		for _, s := range v.Type(g.Type) {
			r := batch.ReplicaStatus{Name: s.Name}
			switch {
			case s.Pod != nil && s.Restarting:
				r.UID, r.Phase, r.Containers = s.Pod.UID, batch.ReplicaDeleted, containerStatuses(s.Pod)
			case s.Pod != nil:
				r.UID, r.Phase, r.Containers = s.Pod.UID, replicaPhase(s.Pod), containerStatuses(s.Pod)
			case prevUID[s.Name].UID != "":
				r.UID, r.Phase = prevUID[s.Name].UID, batch.ReplicaDeleted
			}
			t.Replicas = append(t.Replicas, r)
		}
		tasks = append(tasks, t)
	}
	return tasks
}

func aggregate(tasks []batch.TaskStatus) *batch.Aggregate {
	a := &batch.Aggregate{}
	for _, t := range tasks {
		for _, r := range t.Replicas {
			switch r.Phase {
			case batch.ReplicaCreating:
				a.Creating++
			case batch.ReplicaPending:
				a.Pending++
			case batch.ReplicaRunning:
				a.Running++
			case batch.ReplicaSucceeded:
				a.Succeeded++
			case batch.ReplicaFailed:
				a.Failed++
			case batch.ReplicaUnknown:
				a.Unknown++
			case batch.ReplicaDeleted:
				a.Deleted++
			}
		}
	}
	return a
}

// nextPhase is the job's phase. Once Running, a job stays Running while single pods restart;
// after a pause it is Resuming until every pod runs again.
func nextPhase(prev batch.JobPhase, paused bool, out Outcome, v *View) batch.JobPhase {
	switch {
	case out.Done && out.Failed:
		return batch.JobFailed
	case out.Done:
		return batch.JobSucceeded
	case paused:
		return batch.JobPaused
	case allRunning(v):
		return batch.JobRunning
	case prev == batch.JobPaused || prev == batch.JobResuming:
		return batch.JobResuming
	case prev == batch.JobRunning:
		return batch.JobRunning
	}
	return batch.JobPending
}

// allRunning: every replica's pod runs (or already succeeded), and at least one runs.
func allRunning(v *View) bool {
	running := false
	for _, s := range v.All() {
		switch s.Phase() {
		case corev1.PodRunning:
			running = true
		case corev1.PodSucceeded:
		default:
			return false
		}
	}
	return running
}

// Transition is a condition that changed, for an event.
type Transition struct {
	Type    batch.JobConditionType
	Status  corev1.ConditionStatus
	Reason  string
	Message string
}

// conditionSetter sets conditions on a status and remembers which changed.
type conditionSetter struct {
	st      *batch.JobStatus
	now     metav1.Time
	changed []Transition
}

func (cs *conditionSetter) set(t batch.JobConditionType, status corev1.ConditionStatus, reason, message string) {
	for i := range cs.st.Conditions {
		c := &cs.st.Conditions[i]
		if c.Type != t {
			continue
		}
		if c.Status == status && c.Reason == reason && c.Message == message {
			return
		}
		if c.Status != status {
			c.LastTransitionTime = cs.now
			cs.changed = append(cs.changed, Transition{t, status, reason, message})
		}
		c.Status, c.Reason, c.Message = status, reason, message
		return
	}
	cs.st.Conditions = append(cs.st.Conditions, batch.JobCondition{
		Type: t, Status: status, Reason: reason, Message: message, LastTransitionTime: cs.now})
	cs.changed = append(cs.changed, Transition{t, status, reason, message})
}

func (cs *conditionSetter) get(t batch.JobConditionType) *batch.JobCondition {
	for i := range cs.st.Conditions {
		if cs.st.Conditions[i].Type == t {
			return &cs.st.Conditions[i]
		}
	}
	return nil
}

// updateStatus fills phase, tasks, aggregate and conditions from what the reconciler observed
// and decided, and returns the conditions that changed.
// createErr is the apiserver's refusal of a pod this reconcile tried to create, if any.
func updateStatus(st *batch.JobStatus, c *Cluster, v *View, counts restartCounts, out Outcome, paused bool, now metav1.Time, createErr error) []Transition {
	prev := st.DeepCopy()
	st.Tasks = buildTasks(c, v, prev, counts)
	st.Aggregate = aggregate(st.Tasks)
	st.BackoffCount = counts.total
	st.Phase = nextPhase(prev.Phase, paused, out, v)
	if st.StartTime == nil {
		st.StartTime = &now
	}

	cs := &conditionSetter{st: st, now: now}
	cs.set(batch.JobConditionInitialized, corev1.ConditionTrue, "", MessageInitialized)
	switch s := firstFailedPod(v); {
	case s != nil:
		cs.set(batch.JobConditionReplicaFailure, corev1.ConditionTrue, ReasonErrorInPod, podErrorMessage(s))
	case createErr != nil:
		reason := ReasonFailedCreatePod
		var conflict *NameConflictError
		if errors.As(createErr, &conflict) {
			reason = ReasonNameConflict
		}
		cs.set(batch.JobConditionReplicaFailure, corev1.ConditionTrue, reason, createErr.Error())
	case out.Done || paused:
		// Pods are gone on purpose; keep what the condition last said.
		if cs.get(batch.JobConditionReplicaFailure) == nil {
			cs.set(batch.JobConditionReplicaFailure, corev1.ConditionFalse, "", MessagePodsNormal)
		}
	default:
		if missing, total := missingPods(v); missing > 0 {
			cs.set(batch.JobConditionReplicaFailure, corev1.ConditionFalse, ReasonPodsNotCreated,
				fmt.Sprintf("%d of %d pods are not created yet.", missing, total))
		} else {
			cs.set(batch.JobConditionReplicaFailure, corev1.ConditionFalse, "", MessagePodsNormal)
		}
	}
	switch {
	case out.Done && !out.Failed:
		cs.set(batch.JobConditionRunning, corev1.ConditionFalse, out.Reason, out.Message)
		cs.set(batch.JobConditionFailed, corev1.ConditionFalse, out.Reason, out.Message)
		cs.set(batch.JobConditionCompleted, corev1.ConditionTrue, out.Reason, out.Message)
	case out.Done:
		cs.set(batch.JobConditionRunning, corev1.ConditionFalse, out.Reason, out.Message)
		cs.set(batch.JobConditionFailed, corev1.ConditionTrue, out.Reason, out.Message)
		cs.set(batch.JobConditionCompleted, corev1.ConditionTrue, out.Reason, out.Message)
	case paused:
		cs.set(batch.JobConditionPaused, corev1.ConditionTrue, ReasonPaused, MessagePaused)
		if cs.get(batch.JobConditionRunning) != nil {
			cs.set(batch.JobConditionRunning, corev1.ConditionFalse, ReasonPaused, MessagePaused)
		}
	default:
		if p := cs.get(batch.JobConditionPaused); p != nil && p.Status == corev1.ConditionTrue {
			cs.set(batch.JobConditionPaused, corev1.ConditionFalse, ReasonResumed, MessageResumed)
		}
		if st.Phase == batch.JobRunning {
			cs.set(batch.JobConditionRunning, corev1.ConditionTrue, ReasonAllPodsRunning, MessageRunning)
		}
	}
	if out.Done && st.CompletionTime == nil {
		st.CompletionTime = &now
	}
	return cs.changed
}

// missingPods counts the replicas that have no pod.
func missingPods(v *View) (missing, total int) {
	for _, s := range v.All() {
		if s.Pod == nil && !s.Created {
			missing++
		}
	}
	return missing, len(v.All())
}

func firstFailedPod(v *View) *Slot {
	for _, s := range v.All() {
		if s.Failed() {
			return s
		}
	}
	return nil
}

// podErrorMessage is the manuals' "Pod[<pod>] exited with error code 127".
func podErrorMessage(s *Slot) string {
	if code, ok := s.ExitCode(); ok {
		return fmt.Sprintf("Pod[%s] exited with error code %d", s.Name, code)
	}
	return fmt.Sprintf("Pod[%s] failed: %s", s.Name, s.Pod.Status.Reason)
}
