package topology

import (
	"context"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/apis/config"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
	"github.com/tensorstack/t9k/pkg/topology"
)

func reservationSetup(t *testing.T) (*Topology, groupstate.GroupKey) {
	t.Helper()
	st := groupstate.New()
	for _, q := range []*schedv1beta1.Queue{
		{ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: groupstate.DefaultQueueNamespace}, Spec: schedv1beta1.QueueSpec{Priority: 10}},
		{ObjectMeta: metav1.ObjectMeta{Name: "hi", Namespace: groupstate.DefaultQueueNamespace}, Spec: schedv1beta1.QueueSpec{Priority: 50}},
	} {
		st.UpsertQueue(q)
	}
	p := &Topology{groups: st, cache: newGPUCache(levels, gpuRes), resource: gpuRes, res: newReservations(), prios: groupstate.NewPriorities(),
		args: config.T9kTopologyArgs{ReserveAfterSeconds: 1, MaxReservationsPerQueue: 1}}
	for _, n := range []string{"n0", "n1"} {
		p.cache.upsertNode(testNode(n, "b0", "s0", 8))
	}
	p.cache.upsertNode(testNode("n2", "b1", "s0", 8))
	key := groupstate.GroupKey{Namespace: "ns", Name: "big"}
	p.res.add(&reservation{key: key, queue: "q", rank: rank{10, 0}, domain: "block=b0", need: map[string]int{"n0": 8}, since: time.Now()})
	return p, key
}

func queuePod(name, queue string, gpus int, runtime string) *v1.Pod {
	pod := gpuPod(name, types.UID("uid-"+name), "", gpus, "")
	pod.Labels = map[string]string{schedv1beta1.LabelQueue: queue}
	pod.CreationTimestamp = metav1.Now()
	if runtime != "" {
		pod.Annotations = map[string]string{AnnotationExpectedRuntime: runtime}
	}
	return pod
}

// Who may take reserved GPUs: the gang itself, pods of a higher rank, pods that fit beside what
// the gang needs, and pods bound to end before the last pod the reservation waits for.
func TestReservationBlocksEqualRankUnlessBoundToEndInTime(t *testing.T) {
	p, key := reservationSetup(t)
	// A pod on n0 that the reservation waits for, declared to run 60 s from now.
	running := queuePod("running", "q", 8, "60s")
	running.Spec.NodeName = "n0"
	running.Status.StartTime = &metav1.Time{Time: time.Now()}
	p.cache.observePod(running)

	member := queuePod("big-0", "q", 8, "")
	member.Labels[schedv1beta1.LabelGroupName] = key.Name
	for _, tc := range []struct {
		name  string
		pod   *v1.Pod
		node  string
		free  int
		block bool
	}{
		{"equal rank, no bound", queuePod("s", "q", 1, ""), "n0", 8, true},
		{"equal rank on an unreserved node", queuePod("s", "q", 1, ""), "n2", 8, false},
		{"higher queue priority", queuePod("h", "hi", 1, ""), "n0", 8, false},
		{"the reserved gang's own member", member, "n0", 8, false},
		{"backfill: ends before the 60 s pod", queuePod("b", "q", 1, "10s"), "n0", 8, false},
		{"no backfill: ends after it", queuePod("l", "q", 1, "120s"), "n0", 8, true},
	} {
		why := p.blockedByReservation(tc.pod, tc.node, podGPUs(tc.pod, gpuRes), tc.free)
		if (why != "") != tc.block {
			t.Errorf("%s: blocked = %q, want blocked %v", tc.name, why, tc.block)
		}
		if tc.block && !strings.Contains(why, "reserved for gang ns/big") {
			t.Errorf("%s: reason %q does not name the gang", tc.name, why)
		}
	}
	// A reservation that needs only part of a node leaves the rest usable.
	p.res.remove(key)
	p.res.add(&reservation{key: key, queue: "q", rank: rank{10, 0}, need: map[string]int{"n1": 4}, since: time.Now()})
	if why := p.blockedByReservation(queuePod("s", "q", 4, ""), "n1", 4, 8); why != "" {
		t.Errorf("a pod fitting beside a 4-GPU reservation was blocked: %s", why)
	}
	if why := p.blockedByReservation(queuePod("s", "q", 5, ""), "n1", 5, 8); why == "" {
		t.Error("a pod eating into a 4-GPU reservation was allowed")
	}
}

// maybeReserve: only after the threshold, at most maxReservationsPerQueue per queue, and the
// PodGroup annotation overrides the args (0 turns it off).
func TestMaybeReserveThresholdAndPerQueueLimit(t *testing.T) {
	p, held := reservationSetup(t)
	gangOf := func(name string, age time.Duration, ann string) *groupstate.Gang {
		pg := &schedv1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", CreationTimestamp: metav1.NewTime(time.Now().Add(-age))},
			Spec: schedv1beta1.PodGroupSpec{MinMember: 1, Queue: "q"}}
		if ann != "" {
			pg.Annotations = map[string]string{AnnotationReserveAfter: ann}
		}
		p.groups.UpsertPodGroup(pg)
		return &groupstate.Gang{Key: groupstate.GroupKey{Namespace: "ns", Name: name}, PodGroup: pg, Queue: "q", Created: pg.CreationTimestamp.Time}
	}
	tg := topology.Gang{Groups: []topology.MemberGroup{{Name: "w", Count: 2, GPUs: 8}}, Policy: topology.Policy{Mode: topology.PolicyPreferred}}
	ctx := context.Background()
	if r := p.maybeReserve(ctx, gangOf("second", time.Hour, ""), tg); r != nil {
		t.Fatalf("a second reservation in queue q while %s holds one: %v", held, r)
	}
	p.res.remove(held)
	if r := p.maybeReserve(ctx, gangOf("young", 0, "3600"), tg); r != nil {
		t.Fatalf("reserved for a gang younger than its threshold: %v", r)
	}
	if r := p.maybeReserve(ctx, gangOf("off", time.Hour, "0"), tg); r != nil {
		t.Fatalf("reserved for a gang whose annotation turns reservations off: %v", r)
	}
	r := p.maybeReserve(ctx, gangOf("old", time.Hour, ""), tg)
	if r == nil || r.domain != "block=b0" || len(r.need) != 2 {
		t.Fatalf("reservation for an old gang = %v, want both nodes of block b0", r)
	}
}
