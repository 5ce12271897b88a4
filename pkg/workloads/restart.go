package workloads

import (
	corev1 "k8s.io/api/core/v1"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// retryableExitCodes are the exit codes the ExitCode policy restarts on: SIGINT (130), SIGKILL
// (137, OOM kills included), SIGTERM (143), and 138, which a program exits with to ask for a
// restart.
var retryableExitCodes = map[int32]bool{130: true, 137: true, 138: true, 143: true}

// wantsRestart says whether a policy recreates a pod that ended in phase with the given exit code.
// A failed pod with no exit code (evicted, its node lost) is the infrastructure's failure, which
// ExitCode treats as retryable.
func wantsRestart(p batch.RestartPolicyType, phase corev1.PodPhase, code int32, known bool) bool {
	switch p {
	case batch.RestartPolicyAlways:
		return phase == corev1.PodFailed || phase == corev1.PodSucceeded
	case batch.RestartPolicyOnFailure:
		return phase == corev1.PodFailed
	case batch.RestartPolicyExitCode:
		return phase == corev1.PodFailed && (!known || retryableExitCodes[code])
	}
	return false
}

// restartCounts are the restarts recorded in status: per replica type and in total.
type restartCounts struct {
	perType map[string]int32
	total   int32
}

func countsFrom(st *batch.JobStatus) restartCounts {
	c := restartCounts{perType: map[string]int32{}, total: st.BackoffCount}
	for _, t := range st.Tasks {
		c.perType[string(t.Type)] = t.RestartCount
	}
	return c
}

// alreadyCounted reports whether status already recorded the restart of this very pod: the
// reconciler writes the count (with the pod's UID and phase Deleted) before deleting the pod, so
// that a crash between the two neither loses nor repeats a count.
func alreadyCounted(st *batch.JobStatus, s *Slot) bool {
	for _, t := range st.Tasks {
		if string(t.Type) != s.Type {
			continue
		}
		for _, r := range t.Replicas {
			if r.Name == s.Name {
				return r.UID == s.Pod.UID && r.Phase == batch.ReplicaDeleted
			}
		}
	}
	return false
}

// planRestarts marks the slots whose pod ended in phase as Restarting or Exhausted, counting new
// restarts into counts. Limits: the group's own Limit on its restart count, and backoffLimit on
// the total.
func planRestarts(c *Cluster, v *View, st *batch.JobStatus, rp RunPolicy, counts *restartCounts, phase corev1.PodPhase) {
	for _, s := range v.All() {
		// A pod being deleted (pause, scale-down, a restart in flight) is not judged again.
		if s.Phase() != phase || s.Restarting || s.Exhausted || s.Pod.DeletionTimestamp != nil {
			continue
		}
		g := c.Group(s.Type)
		code, known := s.ExitCode()
		if !wantsRestart(g.Restart.Policy, phase, code, known) {
			s.Exhausted = phase == corev1.PodFailed
			continue
		}
		if alreadyCounted(st, s) {
			s.Restarting = true
			continue
		}
		if g.Restart.Limit != nil && counts.perType[s.Type] >= *g.Restart.Limit ||
			rp.BackoffLimit != nil && counts.total >= *rp.BackoffLimit {
			s.Exhausted = phase == corev1.PodFailed
			continue
		}
		s.Restarting = true
		counts.perType[s.Type]++
		counts.total++
	}
}
