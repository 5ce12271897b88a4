package workloads

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// Slot is one replica as observed: its pod, if any, and what the reconciler decided about it.
type Slot struct {
	Type  string
	Index int
	Name  string
	Pod   *corev1.Pod
	// MainContainer names the container whose exit code speaks for the pod.
	MainContainer string
	// Restarting: the pod finished and the restart policy recreates it.
	Restarting bool
	// Exhausted: the pod failed and will not be recreated (policy or limits).
	Exhausted bool
	// Created: this reconcile created the pod (Pod is still nil: not observed yet).
	Created bool
}

// Phase is the pod's phase, "" when there is no pod.
func (s *Slot) Phase() corev1.PodPhase {
	if s.Pod == nil {
		return ""
	}
	return s.Pod.Status.Phase
}

func (s *Slot) Succeeded() bool { return s.Phase() == corev1.PodSucceeded }
func (s *Slot) Failed() bool    { return s.Phase() == corev1.PodFailed }
func (s *Slot) Finished() bool  { return s.Succeeded() || s.Failed() }

// Ready is true for a running pod whose readiness (if it reports any) is true.
func (s *Slot) Ready() bool {
	if s.Phase() != corev1.PodRunning {
		return false
	}
	for _, c := range s.Pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return true
}

// ExitCode is the exit code that explains the pod's end: the main container's if it terminated,
// else the first non-zero one. ok is false when no container reports one (evicted, node lost).
func (s *Slot) ExitCode() (code int32, ok bool) {
	if s.Pod == nil {
		return 0, false
	}
	return podExitCode(s.Pod, s.MainContainer)
}

func podExitCode(pod *corev1.Pod, main string) (int32, bool) {
	var first *int32
	for i := range pod.Status.ContainerStatuses {
		cs := &pod.Status.ContainerStatuses[i]
		t := cs.State.Terminated
		if t == nil {
			t = cs.LastTerminationState.Terminated
		}
		if t == nil {
			continue
		}
		if cs.Name == main {
			return t.ExitCode, true
		}
		if first == nil && t.ExitCode != 0 {
			code := t.ExitCode
			first = &code
		}
	}
	if first != nil {
		return *first, true
	}
	return 0, false
}

// View is the observed state of every replica of a job, in the order of its replica groups.
type View struct {
	byType map[string][]*Slot
	all    []*Slot
}

// NewView places pods into the job's slots; pods outside the slots (elastic scale-down, removed
// types) are returned separately.
func NewView(c *Cluster, pods []*corev1.Pod) (*View, []*corev1.Pod) {
	v := &View{byType: map[string][]*Slot{}}
	byName := map[string]*Slot{}
	for _, g := range c.Replicas {
		for i := 0; i < int(g.Count); i++ {
			s := &Slot{Type: g.Type, Index: i, Name: c.PodName(g.Type, i), MainContainer: g.MainContainer}
			v.byType[g.Type] = append(v.byType[g.Type], s)
			v.all = append(v.all, s)
			byName[s.Name] = s
		}
	}
	var extra []*corev1.Pod
	for _, p := range pods {
		if s, ok := byName[p.Name]; ok {
			s.Pod = p
		} else {
			extra = append(extra, p)
		}
	}
	return v, extra
}

// Slot returns one replica, or nil.
func (v *View) Slot(replicaType string, index int) *Slot {
	ss := v.byType[replicaType]
	if index < 0 || index >= len(ss) {
		return nil
	}
	return ss[index]
}

// Type returns the replicas of one type.
func (v *View) Type(replicaType string) []*Slot { return v.byType[replicaType] }

// All returns every replica in order.
func (v *View) All() []*Slot { return v.all }

// FirstExhausted is the first replica that failed for good, or nil.
func (v *View) FirstExhausted() *Slot {
	for _, s := range v.all {
		if s.Exhausted {
			return s
		}
	}
	return nil
}

// failedMessage is the manuals' failure text: "<Kind> <name> has failed: <pod> failed with exit
// code 137".
func failedMessage(c *Cluster, s *Slot) string {
	if code, ok := s.ExitCode(); ok {
		return fmt.Sprintf("%s %s has failed: %s failed with exit code %d", c.Kind, c.Name, s.Name, code)
	}
	reason := "failed"
	if s.Pod != nil && s.Pod.Status.Reason != "" {
		reason = "failed: " + s.Pod.Status.Reason
	}
	return fmt.Sprintf("%s %s has failed: %s %s", c.Kind, c.Name, s.Name, reason)
}

// Succeeded and failed outcomes with the manuals' reasons and messages.
const (
	ReasonSucceeded        = "Succeeded"
	ReasonFailed           = "Failed"
	ReasonDeadlineExceeded = "DeadlineExceeded"
	MessageSucceeded       = "The job has finished successfully."
)

func succeeded() Outcome {
	return Outcome{Done: true, Reason: ReasonSucceeded, Message: MessageSucceeded}
}

func failed(msg string) Outcome {
	return Outcome{Done: true, Failed: true, Reason: ReasonFailed, Message: msg}
}

// decidedBy is the rule of the kinds with one deciding replica (PyTorch master, TF chief, XGBoost
// master, MPI/ColossalAI launcher, DeepSpeed worker-0): the job succeeds when that replica
// succeeds and fails as soon as any replica has failed for good.
func decidedBy(c *Cluster, v *View, replicaType string, index int) Outcome {
	if s := v.FirstExhausted(); s != nil {
		return failed(failedMessage(c, s))
	}
	if s := v.Slot(replicaType, index); s != nil && s.Succeeded() {
		return succeeded()
	}
	return Outcome{}
}
