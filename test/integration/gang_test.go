package integration

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// Two gangs that each fit alone but not together: exactly one binds fully, the other binds
// nothing; when the first finishes, the second binds fully. No partial gang at any sample.
func TestGangTwoGangsAllOrNothing(t *testing.T) {
	e := newGangEnv(t, 3, 8)
	e.queue("default", 0, nil)
	s := e.sample("default", "a", "b")
	startScheduler(t, e.cp)
	e.gang("default", "a", "default", 2, 2, 8, nil)
	e.gang("default", "b", "default", 2, 2, 8, nil)

	// One of them gets the room; which one is the queue's business (a is older).
	e.waitBound("default", "a", 2, 60*time.Second)
	c := e.waitCondition("default", "b", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonUnschedulable, "needs 8 nvidia.com/gpu")
	t.Logf("b pending: %s", c.Message)
	time.Sleep(2 * time.Second) // b must stay at zero, not creep in
	if n, _ := e.bound("default", "b"); n != 0 {
		t.Fatalf("gang b has %d pods bound while a runs", n)
	}
	e.waitCondition("default", "a", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonPodGroupScheduled)

	e.finish("default", "a")
	e.waitBound("default", "b", 2, 60*time.Second)
	e.waitCondition("default", "b", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonPodGroupScheduled)

	samples := s.finish()
	requireAllOrNothing(t, samples["a"], 2, "a")
	d := requireAllOrNothing(t, samples["b"], 2, "b")
	t.Logf("%d samples; b partly bound for at most %s while its binds were in flight", len(samples["b"]), d)
	// b binds only after a finished: while a held the room, no sample saw b bound.
	var aFull, bFirst time.Time
	for _, smp := range samples["a"] {
		if smp.bound == 2 && aFull.IsZero() {
			aFull = smp.at
		}
	}
	for _, smp := range samples["b"] {
		if smp.bound > 0 {
			bFirst = smp.at
			break
		}
	}
	// The sampler may stop before it sees b bound (waitBound reads the apiserver itself); what
	// must hold is that no sample saw b bound before a was.
	require.False(t, aFull.IsZero(), "no sample saw a fully bound")
	require.True(t, bFirst.IsZero() || bFirst.After(aFull), "b bound before a ran")
}

// 6 of minMember 10: all pending with the reason; add 4: all 10 bind.
func TestGangWaitsForMinMember(t *testing.T) {
	e := newGangEnv(t, 3, 8)
	e.queue("default", 0, nil)
	startScheduler(t, e.cp)
	e.gang("default", "big", "default", 10, 6, 2, nil)

	c := e.waitCondition("default", "big", v1beta1.PodGroupConditionSufficientMember, v1beta1.ReasonInsufficientMemberPod, "6 of minMember 10")
	t.Logf("SufficientGroupMember: %s", c.Message)
	e.waitCondition("default", "big", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonInsufficientMemberPod, "waiting for more")
	time.Sleep(2 * time.Second)
	n, _ := e.bound("default", "big")
	require.Zero(t, n, "pods bound before the group had minMember members")

	s := e.sample("default", "big")
	e.members("default", "big", "default", 6, 4, 2, nil)
	e.waitBound("default", "big", 10, 60*time.Second)
	e.waitCondition("default", "big", v1beta1.PodGroupConditionSufficientMember, v1beta1.ReasonSufficientMemberPods)
	e.waitCondition("default", "big", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonPodGroupScheduled)
	requireAllOrNothing(t, s.finish()["big"], 10, "big")
}

// Placed members wait for a member that never comes (its scheduling gate is never lifted); at the
// PodGroup's timeout every reservation is released and another gang takes the room. "next" needs
// all three nodes, so it can only bind once every reservation of "slow" is gone.
func TestGangPermitTimeoutReleasesReservations(t *testing.T) {
	e := newGangEnv(t, 3, 8)
	e.queue("default", 0, nil)
	s := e.sample("default", "slow", "next")
	startScheduler(t, e.cp)

	e.gang("default", "slow", "default", 3, 2, 8, func(pg *v1beta1.PodGroup) { pg.Spec.ScheduleTimeoutSeconds = ptr.To[int32](3) })
	e.members("default", "slow", "default", 2, 1, 8, func(p *corev1.Pod) {
		p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/never"}}
	})
	time.Sleep(time.Second) // let slow reserve
	e.gang("default", "next", "default", 3, 3, 8, nil)

	note := e.waitEvent("default", "slow", v1beta1.ReasonPermitTimeout, "within 3s", "released all")
	t.Logf("slow: %s", note)
	e.waitBound("default", "next", 3, 60*time.Second)
	samples := s.finish()
	requireNeverBound(t, samples["slow"], "slow")
	requireAllOrNothing(t, samples["next"], 3, "next")
}
