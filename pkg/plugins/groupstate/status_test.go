package groupstate

import (
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// A gang's way to being placed (members arriving one by one, then "Scheduling") changes its
// conditions without an event each; being placed, failing and the explicit events do make one.
func TestConditionEvents(t *testing.T) {
	s := New()
	rec := events.NewFakeRecorder(100)
	s.status = &statusWriter{recorder: rec, queue: workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[GroupKey]())}
	defer s.status.queue.ShutDown()
	s.UpsertPodGroup(podGroup("g", "q", 3))
	key := GroupKey{Namespace: "ns", Name: "g"}
	sufficient, scheduled := v1beta1.PodGroupConditionSufficientMember, v1beta1.PodGroupConditionScheduled

	for _, msg := range []string{"1 of minMember 3", "2 of minMember 3"} {
		s.SetCondition(key, sufficient, metav1.ConditionFalse, v1beta1.ReasonInsufficientMemberPod, msg)
		s.SetCondition(key, scheduled, metav1.ConditionFalse, v1beta1.ReasonInsufficientMemberPod, msg)
	}
	s.SetCondition(key, sufficient, metav1.ConditionTrue, v1beta1.ReasonSufficientMemberPods, "PodGroup has enough member pods")
	s.SetCondition(key, scheduled, metav1.ConditionFalse, v1beta1.ReasonScheduling, "every member exists")
	s.SetCondition(key, scheduled, metav1.ConditionFalse, v1beta1.ReasonUnschedulable, "needs 24 GPUs")
	s.SetCondition(key, scheduled, metav1.ConditionFalse, v1beta1.ReasonUnschedulable, "needs 24 GPUs") // unchanged
	s.SetCondition(key, scheduled, metav1.ConditionTrue, v1beta1.ReasonPodGroupScheduled, "all placed")
	s.Event(key, "Warning", v1beta1.ReasonBindFailed, "member g-1")

	var got []string
	for len(rec.Events) > 0 {
		got = append(got, <-rec.Events)
	}
	require.Equal(t, []string{
		"Warning Unschedulable needs 24 GPUs",
		"Normal PodGroupScheduled all placed",
		"Warning BindFailed member g-1",
	}, got)
	// The conditions themselves are all kept for the status.
	require.Equal(t, v1beta1.ReasonSufficientMemberPods, s.Condition(key, sufficient).Reason)
	require.Equal(t, 1, s.status.queue.Len())
}
