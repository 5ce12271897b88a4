package integration

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/topology"
)

// Issue 15: no gang waits forever behind a stream of small pods.

const (
	// Small pods run 4 to 8 s (by their number), so they do not end in waves.
	smallRuntime = 8 * time.Second
	blockLabel   = "network.topology.nvidia.com/block"
)

// runtimeOf is how long the stand-in kubelet runs a small pod: its expected-runtime annotation
// if it has one, else 4–8 s by its number.
func runtimeOf(p *corev1.Pod) time.Duration {
	if d, err := time.ParseDuration(p.Annotations[topology.AnnotationExpectedRuntime]); err == nil {
		return d
	}
	var n int
	_, _ = fmt.Sscanf(p.Name, "small-%d", &n)
	return 4*time.Second + time.Duration(n%5)*time.Second
}

// starvationEnv: 2 blocks × 2 nodes × 8 GPUs, a stand-in kubelet that runs each small (1-GPU,
// ungrouped) pod for smallRuntime and keeps gang members running, and a producer that keeps
// small pods pending so that every freed GPU has a taker.
type starvationEnv struct {
	*gangEnv
	made atomic.Int32
	// short, when set, makes every other small pod declare (and take) this run time.
	short          time.Duration
	onReserved     atomic.Int32 // small pods bound to a reserved node after the reservation
	reservedNodes  sync.Map     // node name -> true, once the gang holds a reservation
	reservationSet atomic.Bool
	since          atomic.Int64 // the reservation's status.reservation.since, Unix seconds
}

// markReserved records the reservation's nodes and time for runSmallPods' count.
func (e *starvationEnv) markReserved(r *v1beta1.PodGroupReservation) {
	for _, n := range r.Nodes {
		e.reservedNodes.Store(n.Name, true)
	}
	e.since.Store(r.Since.Unix())
	e.reservationSet.Store(true)
}

// boundAfterReservation: the pod was bound (PodScheduled True) after the reservation was made;
// times have second granularity, so a bind in the reservation's own second does not count.
func (e *starvationEnv) boundAfterReservation(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionTrue {
			return c.LastTransitionTime.Unix() > e.since.Load()
		}
	}
	return false
}

func newStarvationEnv(t *testing.T, queueEdit func(*v1beta1.QueueSpec)) *starvationEnv {
	e := &starvationEnv{gangEnv: newGangEnv(t, 0, 8)}
	for i := range 4 {
		n := readyNode(fmt.Sprintf("node-%d", i), 8)
		n.Labels[blockLabel] = fmt.Sprintf("b%d", i/2)
		_, err := e.kc.CoreV1().Nodes().Create(e.ctx, n, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	e.queue("default", 0, queueEdit)
	go e.runSmallPods()
	return e
}

// runSmallPods is the kubelet of this test: a bound small pod runs smallRuntime, then succeeds.
func (e *starvationEnv) runSmallPods() {
	seen := map[types.UID]bool{}
	for e.ctx.Err() == nil {
		pods, err := e.kc.CoreV1().Pods("default").List(e.ctx, metav1.ListOptions{})
		if err == nil {
			for i := range pods.Items {
				p := &pods.Items[i]
				if p.Spec.NodeName == "" || p.Labels[v1beta1.LabelGroupName] != "" {
					continue
				}
				switch p.Status.Phase {
				case corev1.PodPending, "":
					if e.reservationSet.Load() && !seen[p.UID] && e.boundAfterReservation(p) {
						if _, ok := e.reservedNodes.Load(p.Spec.NodeName); ok {
							e.onReserved.Add(1)
						}
					}
					seen[p.UID] = true
					p.Status.Phase = corev1.PodRunning
					p.Status.StartTime = ptrTime(metav1.Now())
					_, _ = e.kc.CoreV1().Pods("default").UpdateStatus(e.ctx, p, metav1.UpdateOptions{})
				case corev1.PodRunning:
					if p.Status.StartTime != nil && time.Since(p.Status.StartTime.Time) >= runtimeOf(p) {
						p.Status.Phase = corev1.PodSucceeded
						_, _ = e.kc.CoreV1().Pods("default").UpdateStatus(e.ctx, p, metav1.UpdateOptions{})
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func ptrTime(t metav1.Time) *metav1.Time { return &t }

// produce keeps about `pending` small pods waiting until ctx ends.
func (e *starvationEnv) produce(ctx context.Context, pending int) {
	sel := metav1.ListOptions{LabelSelector: labels.Set{v1beta1.LabelQueue: "default"}.String()}
	for ctx.Err() == nil {
		pods, err := e.kc.CoreV1().Pods("default").List(ctx, sel)
		if err == nil {
			waiting := 0
			for _, p := range pods.Items {
				if p.Spec.NodeName == "" && p.Labels[v1beta1.LabelGroupName] == "" {
					waiting++
				}
			}
			for ; waiting < pending; waiting++ {
				n := e.made.Add(1)
				p := gangPod("default", fmt.Sprintf("small-%d", n), "", "default", 1)
				if e.short > 0 && n%2 == 0 {
					p.Annotations = map[string]string{topology.AnnotationExpectedRuntime: e.short.String()}
				}
				_, _ = e.kc.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// fillAndSubmit fills the cluster with small pods, then submits the 2 × 8-GPU gang "big" with the
// given reservation threshold (annotation; "0" turns reservations off for it).
func (e *starvationEnv) fillAndSubmit(ctx context.Context, reserveAfter string) time.Time {
	go e.produce(ctx, 12)
	require.Eventually(e.t, func() bool {
		pods, err := e.kc.CoreV1().Pods("default").List(e.ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		bound := 0
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded {
				bound++
			}
		}
		return bound >= 32
	}, 60*time.Second, 200*time.Millisecond, "the small pods never filled the cluster")
	submitted := time.Now()
	e.gang("default", "big", "default", 2, 2, 8, func(pg *v1beta1.PodGroup) {
		pg.Annotations = map[string]string{topology.AnnotationReserveAfter: reserveAfter}
		pg.Spec.TopologyPolicy = &v1beta1.TopologyPolicy{Mode: v1beta1.TopologyPreferred}
	})
	return submitted
}

func (e *starvationEnv) reservation() *v1beta1.PodGroupReservation {
	var pg v1beta1.PodGroup
	if err := e.c.Get(e.ctx, types.NamespacedName{Namespace: "default", Name: "big"}, &pg); err != nil {
		return nil
	}
	return pg.Status.Reservation
}

// With a 5 s threshold the gang gets a reservation, the reserved block drains, and the gang binds
// within threshold + the small pods' run time + slack, in one block, while small pods keep
// arriving. A scheduler restart in between keeps the reservation (it lives in the PodGroup's
// status): small pods do not flood the draining nodes.
func TestReservationEndsStarvation(t *testing.T) {
	e := newStarvationEnv(t, nil)
	before := snapshotMetrics(t)
	stop := startScheduler(t, e.cp)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	submitted := e.fillAndSubmit(ctx, "5")

	require.Eventually(t, func() bool { return e.reservation() != nil }, 30*time.Second, 200*time.Millisecond, "no reservation was made")
	r := e.reservation()
	e.markReserved(r)
	t.Logf("reservation after %s: %+v", time.Since(submitted).Round(100*time.Millisecond), *r)
	require.Len(t, r.Nodes, 2)
	note := e.waitEvent("default", "big", v1beta1.ReasonReservationHeld, "reserved block=")
	t.Logf("event: %s", note)

	// Restart the scheduler while the block drains.
	stop()
	startScheduler(t, e.cp)

	deadline := 5*time.Second + smallRuntime + 20*time.Second
	e.waitBound("default", "big", 2, deadline)
	took := time.Since(submitted)
	_, nodes := e.bound("default", "big")
	t.Logf("gang bound %s after submission on %v; %d small pods created; %d small pods placed on reserved nodes after the reservation",
		took.Round(100*time.Millisecond), nodes, e.made.Load(), e.onReserved.Load())
	blocks := map[string]bool{}
	for _, n := range nodes {
		node, err := e.kc.CoreV1().Nodes().Get(e.ctx, n, metav1.GetOptions{})
		require.NoError(t, err)
		blocks[node.Labels[blockLabel]] = true
	}
	require.Len(t, blocks, 1, "gang spread over blocks: %v", nodes)
	require.Zero(t, e.onReserved.Load(), "small pods without a run-time bound were placed on reserved GPUs")
	c := e.waitCondition("default", "big", v1beta1.PodGroupConditionReserved, v1beta1.ReasonReservationReleased, "the gang is placed")
	t.Logf("Reserved: %s", c.Message)
	// The restarted scheduler kept the reservation it found in the PodGroup's status: it neither
	// released it nor reserved again.
	require.Len(t, e.eventNotes("default", "big", v1beta1.ReasonReservationHeld), 1, "the gang was reserved again")
	for _, n := range e.eventNotes("default", "big", v1beta1.ReasonReservationReleased) {
		require.Contains(t, n, "the gang is placed", "the reservation was released before the gang was placed")
	}
	require.Eventually(t, func() bool { return e.reservation() == nil }, 10*time.Second, 200*time.Millisecond, "status.reservation stayed after the gang was placed")

	after := snapshotMetrics(t)
	requireDelta(t, before, after, "t9k_scheduler_reserved_gang_wait_seconds{}", 1)
	require.Equal(t, before["t9k_scheduler_reservations_active{}"], after["t9k_scheduler_reservations_active{}"], "reservations_active did not come back down")
	idle := after["t9k_scheduler_reservation_idle_gpu_seconds_total{}"] - before["t9k_scheduler_reservation_idle_gpu_seconds_total{}"]
	require.Positive(t, idle, "no GPU-seconds counted as idled by draining")
	t.Logf("GPU-seconds idled by draining: %.0f", idle)
}

// Without a reservation (threshold 0 for this gang) the same stream starves the gang.
func TestWithoutReservationTheGangStarves(t *testing.T) {
	e := newStarvationEnv(t, nil)
	startScheduler(t, e.cp)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	e.fillAndSubmit(ctx, "0")
	time.Sleep(5*time.Second + smallRuntime + 20*time.Second)
	b, _ := e.bound("default", "big")
	require.Zero(t, b, "the gang was placed without a reservation: this test no longer shows the starvation it guards against")
	require.Nil(t, e.reservation())
	t.Logf("after %s of small pods (%d created) the gang has %d of 2 members bound", 5*time.Second+smallRuntime+20*time.Second, e.made.Load(), b)
}

// Backfill: the queue's maxDuration (10 s) bounds every small pod, and every other one declares a
// 2 s run time. Pods that will end before the reservation could be satisfied (before the last
// bound of the pods it waits for) keep using the reserved GPUs; the gang still binds on schedule.
func TestReservationBackfillsBoundedPods(t *testing.T) {
	e := newStarvationEnv(t, func(q *v1beta1.QueueSpec) { q.MaxDuration = "10s" })
	e.short = 2 * time.Second
	startScheduler(t, e.cp)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	submitted := e.fillAndSubmit(ctx, "5")
	require.Eventually(t, func() bool { return e.reservation() != nil }, 30*time.Second, 200*time.Millisecond, "no reservation was made")
	e.markReserved(e.reservation())
	e.waitBound("default", "big", 2, 5*time.Second+10*time.Second+20*time.Second)
	t.Logf("gang bound %s after submission; %d small pods backfilled onto reserved nodes", time.Since(submitted).Round(100*time.Millisecond), e.onReserved.Load())
	require.Positive(t, e.onReserved.Load(), "no bounded small pod used the reserved GPUs while they drained")
}
