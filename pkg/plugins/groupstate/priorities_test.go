package groupstate

import (
	"testing"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// A pod may preempt only while some pod holding a node has a lower priority; the count follows
// Reserve, Unreserve and the informer, and a pod that never preempts never may.
func TestPrioritiesMayPreempt(t *testing.T) {
	pod := func(uid string, prio int32, node string) *v1.Pod {
		return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: uid, Namespace: "ns", UID: types.UID(uid)},
			Spec: v1.PodSpec{NodeName: node, Priority: &prio}}
	}
	pr := NewPriorities()
	high := pod("high", 100, "")
	require.False(t, pr.MayPreempt(high), "nothing holds a node")
	low := pod("low", 10, "")
	pr.Hold(low) // Reserve
	require.True(t, pr.MayPreempt(high))
	require.False(t, pr.MayPreempt(pod("peer", 10, "")), "equal priority is no victim")
	never := high.DeepCopy()
	never.Spec.PreemptionPolicy = ptr.To(v1.PreemptNever)
	require.False(t, never.Spec.PreemptionPolicy == nil)
	require.False(t, pr.MayPreempt(never))
	pr.Release(low.UID) // Unreserve
	require.False(t, pr.MayPreempt(high))

	bound := pod("low", 10, "n0")
	pr.Observe(bound, false)
	pr.Observe(bound, false) // an update counts once
	require.True(t, pr.MayPreempt(high))
	pending := pod("other", 1, "")
	pr.Observe(pending, false) // not on a node: not counted
	pr.Observe(pod("low", 10, "n0"), true)
	require.False(t, pr.MayPreempt(high), "deleted")
	pr.Observe(bound, false)
	done := bound.DeepCopy()
	done.Status.Phase = v1.PodSucceeded
	pr.Observe(done, false)
	require.False(t, pr.MayPreempt(high), "finished")
	// A reserved pod's informer updates while it is still unbound do not drop it.
	pr.Hold(low)
	pr.Observe(low, false)
	require.True(t, pr.MayPreempt(high))
}
