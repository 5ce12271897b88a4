package workloads

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

func viewWith(phases ...corev1.PodPhase) (*Cluster, *View) {
	c := NewCluster("GenericJob", "j", "ns", []Replicas{{Type: "worker", Count: int32(len(phases))}})
	var pods []*corev1.Pod
	for i, ph := range phases {
		if ph == "" {
			continue
		}
		p := &corev1.Pod{}
		p.Name, p.UID, p.Status.Phase = c.PodName("worker", i), "uid", ph
		pods = append(pods, p)
	}
	v, _ := NewView(c, pods)
	return c, v
}

func TestNextPhase(t *testing.T) {
	R, S, P := corev1.PodRunning, corev1.PodSucceeded, corev1.PodPending
	for _, tc := range []struct {
		name   string
		prev   batch.JobPhase
		paused bool
		out    Outcome
		pods   []corev1.PodPhase
		want   batch.JobPhase
	}{
		{"new", "", false, Outcome{}, []corev1.PodPhase{"", ""}, batch.JobPending},
		{"some pending", batch.JobPending, false, Outcome{}, []corev1.PodPhase{R, P}, batch.JobPending},
		{"all running", batch.JobPending, false, Outcome{}, []corev1.PodPhase{R, R}, batch.JobRunning},
		{"running and succeeded", batch.JobPending, false, Outcome{}, []corev1.PodPhase{R, S}, batch.JobRunning},
		{"restart keeps running", batch.JobRunning, false, Outcome{}, []corev1.PodPhase{R, ""}, batch.JobRunning},
		{"paused", batch.JobRunning, true, Outcome{}, []corev1.PodPhase{R, R}, batch.JobPaused},
		{"resuming", batch.JobPaused, false, Outcome{}, []corev1.PodPhase{P, ""}, batch.JobResuming},
		{"resumed", batch.JobResuming, false, Outcome{}, []corev1.PodPhase{R, R}, batch.JobRunning},
		{"succeeded", batch.JobRunning, false, succeeded(), []corev1.PodPhase{S, R}, batch.JobSucceeded},
		{"failed", batch.JobRunning, false, failed("x"), []corev1.PodPhase{R, R}, batch.JobFailed},
	} {
		_, v := viewWith(tc.pods...)
		if got := nextPhase(tc.prev, tc.paused, tc.out, v); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestUpdateStatusConditions(t *testing.T) {
	c, v := viewWith(corev1.PodRunning, corev1.PodFailed)
	v.All()[1].Pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 127}}}}
	st := &batch.JobStatus{Phase: batch.JobRunning}
	now := metav1.Now()
	ts := updateStatus(st, c, v, restartCounts{perType: map[string]int32{}}, failed("The job is failed with rule: {\"worker\":[\"1\"]}"), false, now, nil)
	want := map[batch.JobConditionType]batch.JobCondition{
		batch.JobConditionInitialized:    {Status: corev1.ConditionTrue, Message: MessageInitialized},
		batch.JobConditionReplicaFailure: {Status: corev1.ConditionTrue, Reason: ReasonErrorInPod, Message: "Pod[j-worker-1] exited with error code 127"},
		batch.JobConditionFailed:         {Status: corev1.ConditionTrue, Reason: ReasonFailed, Message: "The job is failed with rule: {\"worker\":[\"1\"]}"},
		batch.JobConditionCompleted:      {Status: corev1.ConditionTrue, Reason: ReasonFailed, Message: "The job is failed with rule: {\"worker\":[\"1\"]}"},
		batch.JobConditionRunning:        {Status: corev1.ConditionFalse, Reason: ReasonFailed, Message: "The job is failed with rule: {\"worker\":[\"1\"]}"},
	}
	if len(st.Conditions) != len(want) {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	for _, got := range st.Conditions {
		w := want[got.Type]
		if got.Status != w.Status || got.Reason != w.Reason || got.Message != w.Message {
			t.Errorf("%s: %+v, want %+v", got.Type, got, w)
		}
	}
	if len(ts) != len(want) || st.Phase != batch.JobFailed || st.CompletionTime == nil {
		t.Errorf("transitions %d phase %s completion %v", len(ts), st.Phase, st.CompletionTime)
	}
	if a := st.Aggregate; a.Running != 1 || a.Failed != 1 {
		t.Errorf("aggregate %+v", a)
	}
	// Unchanged input: no transitions.
	if ts := updateStatus(st, c, v, restartCounts{perType: map[string]int32{}}, failed("The job is failed with rule: {\"worker\":[\"1\"]}"), false, now, nil); len(ts) != 0 {
		t.Errorf("second update changed %v", ts)
	}
}

func TestReplicaPhase(t *testing.T) {
	p := &corev1.Pod{}
	p.Status.Phase = corev1.PodPending
	if replicaPhase(p) != batch.ReplicaCreating {
		t.Error("unscheduled pending pod should be Creating")
	}
	p.Spec.NodeName = "n"
	if replicaPhase(p) != batch.ReplicaPending {
		t.Error("scheduled pending pod should be Pending")
	}
}
