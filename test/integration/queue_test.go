package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// The queue order decides who gets room only one gang fits in: pods are created before the
// scheduler starts, so all are in the active queue at once and QueueSort alone picks.
func TestQueuePriorityOrder(t *testing.T) {
	e := newGangEnv(t, 2, 8)
	e.queue("low", 10, nil)
	e.queue("high", 50, nil)
	e.gang("default", "older-low", "low", 2, 2, 8, nil) // older: age alone would pick it
	waitPastSecond(e.created("default", "older-low"))
	e.gang("default", "newer-high", "high", 2, 2, 8, nil)
	s := e.sample("default", "older-low", "newer-high")
	startScheduler(t, e.cp)

	e.waitBound("default", "newer-high", 2, 60*time.Second)
	c := e.waitCondition("default", "older-low", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonUnschedulable, "needs 8 nvidia.com/gpu", "most free on one of 2 eligible nodes is 0")
	t.Logf("older-low: %s", c.Message)
	samples := s.finish()
	requireNeverBound(t, samples["older-low"], "older-low")
}

// Same priority: the queue with the lower dominant resource share goes first.
func TestQueueDRSOrder(t *testing.T) {
	e := newGangEnv(t, 3, 8)
	quota := func(gpus int64) func(*v1beta1.QueueSpec) {
		return func(s *v1beta1.QueueSpec) {
			s.Quota = &v1beta1.QueueQuota{Requests: corev1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI)}}
		}
	}
	e.queue("busy", 10, quota(32))
	e.queue("idle", 10, quota(32))
	// busy already runs 8 GPUs (share 8/32); idle runs nothing (share 0).
	running := gangPod("default", "busy-running", "", "busy", 8)
	running.Spec.NodeName = "node-0"
	_, err := e.kc.CoreV1().Pods("default").Create(e.ctx, running, metav1.CreateOptions{})
	require.NoError(t, err)
	e.gang("default", "from-busy", "busy", 2, 2, 8, nil) // older
	waitPastSecond(e.created("default", "from-busy"))
	e.gang("default", "from-idle", "idle", 2, 2, 8, nil)
	s := e.sample("default", "from-busy", "from-idle")
	startScheduler(t, e.cp)

	e.waitBound("default", "from-idle", 2, 60*time.Second)
	e.waitCondition("default", "from-busy", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonUnschedulable, "needs 8 nvidia.com/gpu")
	requireNeverBound(t, s.finish()["from-busy"], "from-busy")
}

// A closed queue schedules nothing new; opening it lets the gang in.
func TestQueueClosed(t *testing.T) {
	e := newGangEnv(t, 2, 8)
	e.queue("shut", 10, func(s *v1beta1.QueueSpec) { s.Closed = true })
	startScheduler(t, e.cp)
	e.gang("default", "g", "shut", 2, 2, 4, nil)
	c := e.waitCondition("default", "g", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonQueueClosed, "queue shut is closed")
	t.Logf("g: %s", c.Message)
	w := e.sample("default", "g")
	time.Sleep(time.Second)
	requireNeverBound(t, w.finish()["g"], "g")

	var q v1beta1.Queue
	require.NoError(t, e.c.Get(e.ctx, types.NamespacedName{Namespace: "t9k-system", Name: "shut"}, &q))
	q.Spec.Closed = false
	require.NoError(t, e.c.Update(e.ctx, &q))
	e.waitBound("default", "g", 2, 60*time.Second)
}

// quota.requests caps what the queue's running pods request; the reason gives the numbers.
func TestQueueQuotaExhausted(t *testing.T) {
	e := newGangEnv(t, 3, 8)
	e.queue("small", 10, func(s *v1beta1.QueueSpec) {
		s.Quota = &v1beta1.QueueQuota{Requests: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("12")}}
	})
	startScheduler(t, e.cp)
	e.gang("default", "first", "small", 1, 1, 8, nil)
	e.waitBound("default", "first", 1, 60*time.Second)
	e.gang("default", "second", "small", 2, 2, 4, nil)
	c := e.waitCondition("default", "second", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonQueueQuotaExceeded,
		"queue small quota: needs 8 nvidia.com/gpu, 4 left (quota 12, allocated 8)")
	t.Logf("second: %s", c.Message)
	n, _ := e.bound("default", "second")
	require.Zero(t, n)

	e.finish("default", "first")
	e.waitBound("default", "second", 2, 60*time.Second)
}

// namespaceSelector admits only matching namespaces; unset admits none.
func TestQueueNamespaceSelector(t *testing.T) {
	e := newGangEnv(t, 2, 8)
	e.namespace("team-a", map[string]string{"team": "a"})
	e.namespace("team-b", map[string]string{"team": "b"})
	e.queue("team-a-only", 10, func(s *v1beta1.QueueSpec) {
		s.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	})
	e.queue("private", 10, func(s *v1beta1.QueueSpec) { s.NamespaceSelector = nil })
	startScheduler(t, e.cp)

	e.gang("team-b", "wrong-ns", "team-a-only", 1, 1, 1, nil)
	e.gang("team-a", "unset", "private", 1, 1, 1, nil)
	e.gang("team-a", "right-ns", "team-a-only", 1, 1, 1, nil)
	e.waitBound("team-a", "right-ns", 1, 60*time.Second)
	c := e.waitCondition("team-b", "wrong-ns", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonNamespaceNotAllowed,
		"namespace team-b may not use queue team-a-only", "team=a")
	t.Logf("wrong-ns: %s", c.Message)
	c = e.waitCondition("team-a", "unset", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonNamespaceNotAllowed,
		"namespaceSelector is unset, which admits no namespace")
	t.Logf("unset: %s", c.Message)
	for _, g := range [][2]string{{"team-b", "wrong-ns"}, {"team-a", "unset"}} {
		n, _ := e.bound(g[0], g[1])
		require.Zero(t, n, "%s/%s bound", g[0], g[1])
	}
}

// nodeSelector keeps the queue's pods on its nodes; the reason names the selector.
func TestQueueNodeSelector(t *testing.T) {
	e := newGangEnv(t, 3, 8)
	e.queue("a100", 10, func(s *v1beta1.QueueSpec) {
		s.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"nvidia.com/gpu.product": "A100"}}
	})
	startScheduler(t, e.cp)
	e.gang("default", "g", "a100", 2, 2, 4, nil)
	c := e.waitCondition("default", "g", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonUnschedulable, "3 not matching queue a100's nodeSelector")
	t.Logf("g: %s", c.Message)

	n, err := e.kc.CoreV1().Nodes().Get(e.ctx, "node-2", metav1.GetOptions{})
	require.NoError(t, err)
	n.Labels["nvidia.com/gpu.product"] = "A100"
	_, err = e.kc.CoreV1().Nodes().Update(e.ctx, n, metav1.UpdateOptions{})
	require.NoError(t, err)
	e.waitBound("default", "g", 2, 60*time.Second)
	_, nodes := e.bound("default", "g")
	require.Equal(t, []string{"node-2", "node-2"}, nodes)
}

// A high-priority gang evicts a whole lower-priority preemptible gang and nothing else; a
// non-preemptible queue is never touched.
func TestPreemptWholeGang(t *testing.T) {
	e := newGangEnv(t, 4, 8)
	e.queue("protected", 5, func(s *v1beta1.QueueSpec) { s.Preemptible = ptr.To(false) })
	e.queue("low", 10, nil)
	e.queue("high", 50, nil)
	before := snapshotMetrics(t)
	startScheduler(t, e.cp)
	e.gang("default", "keep", "protected", 2, 2, 8, nil)
	e.waitBound("default", "keep", 2, 60*time.Second)
	e.gang("default", "victim", "low", 2, 2, 8, nil)
	e.waitBound("default", "victim", 2, 60*time.Second)
	e.gang("default", "cpu-only", "low", 1, 1, 0, nil) // low priority too, but evicting it frees no GPU
	e.waitBound("default", "cpu-only", 1, 60*time.Second)

	s := e.sample("default", "keep", "victim", "cpu-only", "urgent")
	e.gang("default", "urgent", "high", 2, 2, 8, nil)
	e.waitBound("default", "urgent", 2, 60*time.Second)
	e.waitEvent("default", "victim", v1beta1.ReasonPreempted, "2 pods evicted for gang default/urgent of queue high")
	e.waitEvent("default", "urgent", v1beta1.ReasonPreempting, "preempting 2 pods (16 GPUs) of default/victim")
	// The reads above are not the sampler's: let it see urgent whole before it stops (CI once
	// stopped it while the list that would have seen it was still in flight).
	s.waitFor(t, "urgent", 2, 10*time.Second)
	samples := s.finish()
	for _, g := range []string{"keep", "cpu-only"} {
		for _, smp := range samples[g] {
			require.Equal(t, map[string]int{"keep": 2, "cpu-only": 1}[g], smp.bound, "%s lost pods", g)
		}
	}
	requireAllOrNothing(t, samples["urgent"], 2, "urgent")
	// The victim went as a whole: it never sat half evicted beyond the eviction burst.
	requireAllOrNothing(t, samples["victim"], 2, "victim")
	n, _ := e.bound("default", "victim")
	require.Zero(t, n)
	requireMetrics(t, before, snapshotMetrics(t))
}

// requireMetrics checks what the scheduler exposed (the same registry, in process) for
// TestPreemptWholeGang: this test's changes only, with their labels.
func requireMetrics(t *testing.T, before, after metrics) {
	t.Helper()
	// victim's two pods, for the queue-priority reason; nothing else was evicted.
	requireDelta(t, before, after, `t9k_scheduler_preemption_victims_total{reason="QueuePriority"}`, 2)
	require.Len(t, after.seriesOf("t9k_scheduler_preemption_victims_total"), 1, "%v", after.seriesOf("t9k_scheduler_preemption_victims_total"))
	// keep, victim, cpu-only and urgent each reached their quorum once.
	requireDelta(t, before, after, "t9k_scheduler_gang_time_to_quorum_seconds{}", 4)
	// What is bound now: keep (protected) and urgent (high), 16 GPUs each; victim's are gone.
	gpu := func(q string) string {
		return fmt.Sprintf(`t9k_scheduler_queue_allocated{queue=%q,resource="nvidia.com/gpu",unit="integer"}`, q)
	}
	require.Equal(t, 16.0, after[gpu("protected")], "%v", after.seriesOf("t9k_scheduler_queue_allocated"))
	require.Equal(t, 16.0, after[gpu("high")], "%v", after.seriesOf("t9k_scheduler_queue_allocated"))
	require.Zero(t, after[gpu("low")], "%v", after.seriesOf("t9k_scheduler_queue_allocated"))
	var nodeGPUs float64
	for k, v := range after {
		if strings.HasPrefix(k, "T9kScheduler_node_resource_requests{") && strings.Contains(k, `resource="nvidia.com/gpu"`) {
			nodeGPUs += v
		}
	}
	require.Equal(t, 32.0, nodeGPUs, "GPU requests over all nodes: %v", after.seriesOf("T9kScheduler_node_resource_requests"))
}
