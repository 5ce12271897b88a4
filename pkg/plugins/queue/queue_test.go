package queue

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/gang"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

var t0 = time.Unix(1_000_000, 0)

func mkPod(ns, name, group, queue string, gpus int64, created time.Duration) *v1.Pod {
	l := map[string]string{}
	if group != "" {
		l[v1beta1.LabelGroupName] = group
	}
	if queue != "" {
		l[v1beta1.LabelQueue] = queue
	}
	req := v1.ResourceList{v1.ResourceCPU: resource.MustParse("1"), "nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI)}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: types.UID(ns + "/" + name), Labels: l, CreationTimestamp: metav1.NewTime(t0.Add(created))},
		Spec:       v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: req}}}},
	}
}

func mkQueue(name string, prio int32, edit func(*v1beta1.QueueSpec)) *v1beta1.Queue {
	q := &v1beta1.Queue{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: groupstate.DefaultQueueNamespace}, Spec: v1beta1.QueueSpec{
		Priority:          prio,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}},
	}}
	if edit != nil {
		edit(&q.Spec)
	}
	return q
}

func mkGroup(ns, name, queue string, min, prio int32, created time.Duration) *v1beta1.PodGroup {
	return &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, CreationTimestamp: metav1.NewTime(t0.Add(created))},
		Spec: v1beta1.PodGroupSpec{MinMember: min, Queue: queue, Priority: prio}}
}

func gpuQuota(n int64) func(*v1beta1.QueueSpec) {
	return func(s *v1beta1.QueueSpec) {
		s.Quota = &v1beta1.QueueQuota{Requests: v1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(n, resource.DecimalSI)}}
	}
}

func queued(p *v1.Pod) fwk.QueuedPodInfo {
	pi, _ := framework.NewPodInfo(p)
	return &framework.QueuedPodInfo{PodInfo: pi}
}

func newPlugin(t testing.TB, namespaces ...*v1.Namespace) (*Queue, *groupstate.State) {
	st := groupstate.New()
	nsInf := informers.NewSharedInformerFactory(fake.NewClientset(), 0).Core().V1().Namespaces()
	for _, n := range namespaces {
		if err := nsInf.Informer().GetStore().Add(n); err != nil {
			t.Fatal(err)
		}
	}
	return NewWithState(nil, st, nsInf.Lister(), true), st
}

func ns(name string, lbls map[string]string) *v1.Namespace {
	return &v1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}
}

func TestLessOrdersQueuesDRSGroupsAge(t *testing.T) {
	q, st := newPlugin(t)
	st.UpsertQueue(mkQueue("hi", 50, gpuQuota(100)))
	st.UpsertQueue(mkQueue("busy", 10, gpuQuota(10)))
	st.UpsertQueue(mkQueue("idle", 10, gpuQuota(10)))
	// busy runs 5 of 10 GPUs: share 0.5; idle runs 1: share 0.1.
	st.UpsertPod(withNode(mkPod("a", "busy-run", "", "busy", 5, 0), "n1"))
	st.UpsertPod(withNode(mkPod("a", "idle-run", "", "idle", 1, 0), "n1"))
	for _, g := range []*v1beta1.PodGroup{
		mkGroup("a", "hi-old", "hi", 2, 0, 0),
		mkGroup("a", "busy-old", "busy", 2, 0, 0),
		mkGroup("a", "idle-new-p0", "idle", 2, 0, 5*time.Second),
		mkGroup("a", "idle-new-p9", "idle", 2, 9, 9*time.Second),
		mkGroup("a", "idle-old-p0", "idle", 2, 0, time.Second),
	} {
		st.UpsertPodGroup(g)
	}
	var pods []fwk.QueuedPodInfo
	// Members of one group are created far apart in time; they must still come out adjacent.
	for i, g := range []string{"busy-old", "idle-new-p0", "hi-old", "idle-new-p9", "idle-old-p0"} {
		for m := range 2 {
			pods = append(pods, queued(mkPod("a", fmt.Sprintf("%s-%d", g, m), g, "", 1, time.Duration(10*m+i)*time.Hour)))
		}
	}
	pods = append(pods, queued(mkPod("a", "plain", "", "", 1, 0)))
	sort.SliceStable(pods, func(i, j int) bool { return q.Less(pods[i], pods[j]) })
	var got []string
	for _, p := range pods {
		got = append(got, p.GetPodInfo().GetPod().Name)
	}
	want := "hi-old-0 hi-old-1 idle-new-p9-0 idle-new-p9-1 idle-old-p0-0 idle-old-p0-1 idle-new-p0-0 idle-new-p0-1 busy-old-0 busy-old-1 plain"
	if strings.Join(got, " ") != want {
		t.Errorf("order:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

// Groups created in the same second (creation times have 1 s resolution, so nothing says which
// came first) go largest first; an earlier second still wins over size.
func TestLessTiesInOneSecondGoLargestFirst(t *testing.T) {
	q, st := newPlugin(t)
	st.UpsertQueue(mkQueue("q", 10, nil))
	for _, g := range []*v1beta1.PodGroup{
		mkGroup("a", "a-small", "q", 2, 0, time.Second),
		mkGroup("a", "b-large", "q", 64, 0, time.Second),
		mkGroup("a", "c-mid", "q", 8, 0, time.Second),
		mkGroup("a", "z-earlier-small", "q", 2, 0, 0),
	} {
		st.UpsertPodGroup(g)
	}
	var pods []fwk.QueuedPodInfo
	for _, g := range []string{"a-small", "b-large", "c-mid", "z-earlier-small"} {
		pods = append(pods, queued(mkPod("a", g+"-0", g, "", 8, 0)))
	}
	sort.SliceStable(pods, func(i, j int) bool { return q.Less(pods[i], pods[j]) })
	var got []string
	for _, p := range pods {
		got = append(got, p.GetPodInfo().GetPod().Name)
	}
	if want := "z-earlier-small-0 b-large-0 c-mid-0 a-small-0"; strings.Join(got, " ") != want {
		t.Errorf("order:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func withNode(p *v1.Pod, node string) *v1.Pod {
	p.Spec.NodeName = node
	return p
}

func TestPreFilterQueueRules(t *testing.T) {
	for _, tc := range []struct {
		name       string
		queue      *v1beta1.Queue
		namespace  string
		running    int64 // GPUs already bound in the queue
		gangSize   int
		wantReason string
		wantMsg    string
	}{
		{name: "admitted", queue: mkQueue("q", 1, gpuQuota(16)), namespace: "team-a", gangSize: 2},
		{name: "missing queue", queue: mkQueue("other", 1, nil), namespace: "team-a", gangSize: 1,
			wantReason: v1beta1.ReasonQueueNotFound, wantMsg: "queue q does not exist"},
		{name: "closed", queue: mkQueue("q", 1, func(s *v1beta1.QueueSpec) { s.Closed = true }), namespace: "team-a", gangSize: 1,
			wantReason: v1beta1.ReasonQueueClosed, wantMsg: "queue q is closed"},
		{name: "namespace not selected", queue: mkQueue("q", 1, nil), namespace: "team-b", gangSize: 1,
			wantReason: v1beta1.ReasonNamespaceNotAllowed, wantMsg: "namespace team-b may not use queue q: its labels do not match the queue's namespaceSelector (team=a)"},
		{name: "empty namespaceSelector admits none", queue: mkQueue("q", 1, func(s *v1beta1.QueueSpec) { s.NamespaceSelector = &metav1.LabelSelector{} }),
			namespace: "team-a", gangSize: 1, wantReason: v1beta1.ReasonNamespaceNotAllowed, wantMsg: "unset, which admits no namespace"},
		{name: "quota for the whole gang", queue: mkQueue("q", 1, gpuQuota(16)), namespace: "team-a", running: 4, gangSize: 2,
			wantReason: v1beta1.ReasonQueueQuotaExceeded, wantMsg: "queue q quota: needs 16 nvidia.com/gpu, 12 left (quota 16, allocated 4)"},
		{name: "old spec.requests quota", queue: mkQueue("q", 1, func(s *v1beta1.QueueSpec) {
			s.Requests = v1.ResourceList{"nvidia.com/gpu": resource.MustParse("4")}
		}), namespace: "team-a", gangSize: 1, wantReason: v1beta1.ReasonQueueQuotaExceeded, wantMsg: "needs 8 nvidia.com/gpu, 4 left"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, st := newPlugin(t, ns("team-a", map[string]string{"team": "a"}), ns("team-b", map[string]string{"team": "b"}))
			st.UpsertQueue(tc.queue)
			if tc.running > 0 {
				st.UpsertPod(withNode(mkPod(tc.namespace, "running", "", "q", tc.running, 0), "n1"))
			}
			st.UpsertPodGroup(mkGroup(tc.namespace, "g", "q", int32(tc.gangSize), 0, 0))
			var first *v1.Pod
			for i := range tc.gangSize {
				p := mkPod(tc.namespace, fmt.Sprintf("g-%d", i), "g", "q", 8, 0)
				st.UpsertPod(p)
				first = p
			}
			cs := framework.NewCycleState()
			_, status := q.PreFilter(context.Background(), cs, first, nil)
			if tc.wantReason == "" {
				if !status.IsSuccess() {
					t.Fatalf("PreFilter: %v", status)
				}
				return
			}
			if status.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(status.Message(), tc.wantMsg) {
				t.Fatalf("PreFilter = %v %q, want UnschedulableAndUnresolvable with %q", status.Code(), status.Message(), tc.wantMsg)
			}
			c := st.Condition(groupstate.GroupKey{Namespace: tc.namespace, Name: "g"}, v1beta1.PodGroupConditionScheduled)
			if c == nil || c.Reason != tc.wantReason || c.Status != metav1.ConditionFalse {
				t.Fatalf("GroupScheduled = %+v, want False/%s", c, tc.wantReason)
			}
			if !groupstate.PendingRecorded(cs) || !readCycle(cs).blocked {
				t.Error("a queue rule must mark the cycle so preemption is not tried")
			}
		})
	}
}

func TestCandidatesRespectQueuesAndOrder(t *testing.T) {
	q, st := newPlugin(t)
	st.UpsertQueue(mkQueue("high", 50, nil))
	st.UpsertQueue(mkQueue("low", 10, nil))
	st.UpsertQueue(mkQueue("same", 50, nil))
	st.UpsertQueue(mkQueue("protected", 1, func(s *v1beta1.QueueSpec) { s.Preemptible = ptr.To(false) }))
	groups := []struct {
		name, queue string
		prio        int32
		gpus        int64
	}{{"big-p0", "low", 0, 8}, {"small-p0", "low", 0, 2}, {"small-p5", "low", 5, 1}, {"peer", "same", 0, 1}, {"safe", "protected", 0, 1}}
	for _, g := range groups {
		st.UpsertPodGroup(mkGroup("a", g.name, g.queue, 1, g.prio, 0))
		st.UpsertPod(withNode(mkPod("a", g.name+"-0", g.name, "", g.gpus, 0), "n1"))
	}
	half := mkPod("a", "half-0", "half", "", 1, 0)
	st.UpsertPodGroup(mkGroup("a", "half", "low", 2, 0, 0))
	st.UpsertPod(half)
	st.Assume(half, "n2") // reserved, not bound: never a victim
	// One of two bound members already being deleted: the gang is going, never a victim.
	st.UpsertPodGroup(mkGroup("a", "going", "low", 2, 0, 0))
	st.UpsertPod(withNode(mkPod("a", "going-0", "going", "", 1, 0), "n1"))
	going := withNode(mkPod("a", "going-1", "going", "", 1, 0), "n1")
	going.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	st.UpsertPod(going)
	var got []string
	for _, v := range q.candidates(groupstate.GroupKey{Namespace: "a", Name: "pending"}, 50) {
		got = append(got, v.gang.Key.Name)
	}
	if want := "small-p0 big-p0 small-p5"; strings.Join(got, " ") != want {
		t.Errorf("candidates = %q, want %q", strings.Join(got, " "), want)
	}
}

// BenchmarkQueueSortAndPreFilter measures the per-pod hot path with 1000 pending pods (100 gangs
// of 10 in 5 queues) on 100 nodes: sorting the whole queue, and the queue + gang PreFilter of a
// gang's first member (which plans the whole gang on the snapshot).
func BenchmarkQueueSortAndPreFilter(b *testing.B) {
	q, st := newPlugin(b, ns("team-a", map[string]string{"team": "a"}))
	for i := range 5 {
		st.UpsertQueue(mkQueue(fmt.Sprintf("q%d", i), int32(i%3), gpuQuota(10000)))
	}
	var pods []fwk.QueuedPodInfo
	var firsts []*v1.Pod
	for g := range 100 {
		name := fmt.Sprintf("g%03d", g)
		st.UpsertPodGroup(mkGroup("team-a", name, fmt.Sprintf("q%d", g%5), 10, int32(g%7), time.Duration(g)*time.Second))
		for m := range 10 {
			p := mkPod("team-a", fmt.Sprintf("%s-%d", name, m), name, "", 1, time.Duration(g*10+m)*time.Millisecond)
			st.UpsertPod(p)
			pods = append(pods, queued(p))
			if m == 0 {
				firsts = append(firsts, p)
			}
		}
	}
	var nodes []fwk.NodeInfo
	for i := range 100 {
		n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%03d", i)}, Status: v1.NodeStatus{Allocatable: v1.ResourceList{
			v1.ResourceCPU: resource.MustParse("64"), v1.ResourceMemory: resource.MustParse("512Gi"), v1.ResourcePods: resource.MustParse("110"),
			"nvidia.com/gpu": resource.MustParse("8")}}}
		ni := framework.NewNodeInfo()
		ni.SetNode(n)
		nodes = append(nodes, ni)
	}
	g := gang.NewWithState(nil, st, time.Minute)

	b.Run("QueueSort/1000pods", func(b *testing.B) {
		b.ReportAllocs()
		work := make([]fwk.QueuedPodInfo, len(pods))
		for b.Loop() {
			copy(work, pods)
			sort.Slice(work, func(i, j int) bool { return q.Less(work[i], work[j]) })
		}
	})
	b.Run("Less", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			q.Less(pods[i%1000], pods[(i*7+3)%1000])
			i++
		}
	})
	b.Run("PreFilter/gangOf10on100nodes", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p := firsts[i%len(firsts)]
			cs := framework.NewCycleState()
			if _, s := q.PreFilter(context.Background(), cs, p, nodes); !s.IsSuccess() {
				b.Fatal(s)
			}
			if _, s := g.PreFilter(context.Background(), cs, p, nodes); !s.IsSuccess() {
				b.Fatal(s)
			}
			i++
		}
	})
}

// Within equal queue priority, share and priority, a gang is ordered by when it last entered the
// queue: its creation until an attempt fails, then the failure. A gang that keeps failing goes
// behind the pods that were already waiting, so they are tried; pods arriving after its failure
// still come after it (it is not starved by them either).
func TestLessPutsAFailingGangBehindPodsWaitingSinceItFailed(t *testing.T) {
	q, st := newPlugin(t)
	st.UpsertQueue(mkQueue("q", 10, nil))
	st.UpsertPodGroup(mkGroup("a", "big", "q", 2, 0, 0))
	big := []*v1.Pod{mkPod("a", "big-0", "big", "", 8, 0), mkPod("a", "big-1", "big", "", 8, 0)}
	for _, p := range big {
		st.UpsertPod(p)
	}
	at := func(p *v1.Pod, ts time.Time) fwk.QueuedPodInfo {
		pi, _ := framework.NewPodInfo(p)
		return &framework.QueuedPodInfo{PodInfo: pi, Timestamp: ts}
	}
	waiting := at(mkPod("a", "small-early", "", "q", 1, time.Hour), time.Now())
	gang := at(big[0], time.Now())
	if !q.Less(gang, waiting) {
		t.Fatal("a gang that never failed must keep its place (created before the small pod)")
	}
	time.Sleep(10 * time.Millisecond)
	st.MarkFailed(groupstate.GroupKey{Namespace: "a", Name: "big"})
	if q.Less(gang, waiting) || !q.Less(waiting, gang) {
		t.Error("after its failed attempt the gang still goes before a pod that waited since before the failure")
	}
	time.Sleep(10 * time.Millisecond)
	late := at(mkPod("a", "small-late", "", "q", 1, 2*time.Hour), time.Now())
	if !q.Less(gang, late) {
		t.Error("a pod that arrived after the gang's failure went before the gang")
	}
	// Both members move together, whatever their own queue timestamps: the gang stays adjacent.
	other := at(big[1], time.Now().Add(-time.Hour))
	if !q.Less(waiting, other) || !q.Less(other, late) {
		t.Error("the gang's second member is not ordered with the first")
	}
}

// Issue 32, finding 3: with room in the queue's quota for one gang and a half (24 GPUs, gangs of
// 16), a second gang of the queue is not admitted while the first is half placed (its first member
// was admitted for its whole quorum; counting only what is reserved, 8 + 16 fit), and the first
// gang's later members still are.
func TestQuotaHeldForAGangBeingPlaced(t *testing.T) {
	q, st := newPlugin(t, ns("team-a", map[string]string{"team": "a"}))
	st.UpsertQueue(mkQueue("q", 1, gpuQuota(24)))
	for _, g := range []string{"a", "b"} {
		st.UpsertPodGroup(mkGroup("team-a", g, "q", 2, 0, 0))
		for i := range 2 {
			st.UpsertPod(mkPod("team-a", fmt.Sprintf("%s-%d", g, i), g, "q", 8, 0))
		}
	}
	pod := func(name string) *v1.Pod { return mkPod("team-a", name, name[:1], "q", 8, 0) }
	ctx := context.Background()
	if _, s := q.PreFilter(ctx, framework.NewCycleState(), pod("a-0"), nil); !s.IsSuccess() {
		t.Fatalf("first member of a: %v", s)
	}
	st.Assume(pod("a-0"), "n0") // a-0 reserved, waiting in Permit for a-1
	_, s := q.PreFilter(ctx, framework.NewCycleState(), pod("b-0"), nil)
	if s.IsSuccess() || !strings.Contains(s.Message(), "8 more held for gangs being placed") {
		t.Fatalf("gang b admitted into the room gang a is being placed in: %v", s)
	}
	if _, s := q.PreFilter(ctx, framework.NewCycleState(), pod("a-1"), nil); !s.IsSuccess() {
		t.Fatalf("the second member of the gang being placed: %v", s)
	}
	st.Assume(pod("a-1"), "n1")
	st.Forget(pod("a-0")) // the attempt fails: a's members are released
	st.Forget(pod("a-1"))
	st.ResetAttempt(groupstate.GroupKey{Namespace: "team-a", Name: "a"})
	if _, s := q.PreFilter(ctx, framework.NewCycleState(), pod("b-0"), nil); !s.IsSuccess() {
		t.Fatalf("gang b once a's attempt ended: %v", s)
	}
}
