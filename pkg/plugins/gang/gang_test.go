package gang

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

func member(name, group string, gpus int64) *v1.Pod {
	req := v1.ResourceList{"nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI)}
	return &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name), Labels: map[string]string{v1beta1.LabelGroupName: group}},
		Spec: v1.PodSpec{Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: req}}}}}
}

func nodes(n int, gpus int64) []fwk.NodeInfo {
	var out []fwk.NodeInfo
	for i := range n {
		ni := framework.NewNodeInfo()
		ni.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("n%d", i)}, Status: v1.NodeStatus{Allocatable: v1.ResourceList{
			v1.ResourcePods: resource.MustParse("110"), "nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI)}}})
		out = append(out, ni)
	}
	return out
}

func setup(min int32, pods ...*v1.Pod) (*Gang, *groupstate.State) {
	st := groupstate.New()
	pg := &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns"}, Spec: v1beta1.PodGroupSpec{MinMember: min, Queue: "q"}}
	st.UpsertPodGroup(pg)
	for _, p := range pods {
		st.UpsertPod(p)
	}
	return NewWithState(nil, st, time.Minute), st
}

func TestPreEnqueueHoldsUntilMinMember(t *testing.T) {
	a, b := member("a", "g", 1), member("b", "g", 1)
	g, st := setup(3, a, b)
	s := g.PreEnqueue(context.Background(), a)
	if s.Code() != fwk.UnschedulableAndUnresolvable || !strings.Contains(s.Message(), "2 of minMember 3") {
		t.Fatalf("PreEnqueue with 2 of 3 = %v", s)
	}
	c := st.Condition(groupstate.GroupKey{Namespace: "ns", Name: "g"}, v1beta1.PodGroupConditionSufficientMember)
	if c == nil || c.Reason != v1beta1.ReasonInsufficientMemberPod {
		t.Fatalf("SufficientGroupMember = %+v", c)
	}
	st.UpsertPod(member("c", "g", 1))
	if s := g.PreEnqueue(context.Background(), a); !s.IsSuccess() {
		t.Fatalf("PreEnqueue with 3 of 3 = %v", s)
	}
	if s := g.PreEnqueue(context.Background(), member("x", "missing", 1)); s.IsSuccess() {
		t.Fatal("a pod of a missing PodGroup was admitted")
	}
}

func TestPreFilterChecksTheWholeGang(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gpus    int64
		nodes   int
		wantErr string
	}{
		{name: "fits", gpus: 8, nodes: 3},
		{name: "third member has no room", gpus: 8, nodes: 2, wantErr: "cannot place the 3 pods the gang needs at once ({nvidia.com/gpu=24} in all): 2 of 3 pods placed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b, c := member("a", "g", tc.gpus), member("b", "g", tc.gpus), member("c", "g", tc.gpus)
			g, _ := setup(3, a, b, c)
			_, s := g.PreFilter(context.Background(), framework.NewCycleState(), a, nodes(tc.nodes, 8))
			if tc.wantErr == "" {
				if !s.IsSuccess() {
					t.Fatal(s)
				}
				return
			}
			if s.Code() != fwk.Unschedulable || !strings.Contains(s.Message(), tc.wantErr) {
				t.Fatalf("PreFilter = %v", s)
			}
		})
	}
}

func TestPreFilterLeavesRoomForAHalfPlacedGang(t *testing.T) {
	a0, a1 := member("a0", "a", 8), member("a1", "a", 8)
	b0, b1 := member("b0", "b", 8), member("b1", "b", 8)
	g, st := setup(2)
	for _, name := range []string{"a", "b"} {
		st.UpsertPodGroup(&v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}, Spec: v1beta1.PodGroupSpec{MinMember: 2, Queue: "q"}})
	}
	for _, p := range []*v1.Pod{a0, a1, b0, b1} {
		st.UpsertPod(p)
	}
	ns := nodes(3, 8)
	st.Assume(a0, "n0") // a0 waits in Permit on n0; the snapshot has it there
	ns[0].AddPodInfo(mustPodInfo(a0))
	// b would fit in n1+n2, but a1 needs one of them: b must not start.
	if _, s := g.PreFilter(context.Background(), framework.NewCycleState(), b0, ns); s.IsSuccess() {
		t.Fatal("gang b started while gang a was half placed")
	}
}

func mustPodInfo(p *v1.Pod) fwk.PodInfo {
	pi, err := framework.NewPodInfo(p)
	if err != nil {
		panic(err)
	}
	return pi
}

func TestPermitWaitsForQuorumWithTheGroupTimeout(t *testing.T) {
	a, b := member("a", "g", 1), member("b", "g", 1)
	g, st := setup(2, a, b)
	st.Assume(a, "n0")
	s, wait := g.Permit(context.Background(), framework.NewCycleState(), a, "n0")
	if s.Code() != fwk.Wait || !strings.Contains(s.Message(), "waiting for the gang's quorum") || wait <= 59*time.Second || wait > time.Minute {
		t.Fatalf("Permit with 1 of 2 = %v, %s; want Wait for the group's 1m timeout", s, wait)
	}
	// Still short of quorum, now with the PodGroup's own 5s timeout: Wait, for at most 5s from the
	// attempt's start (and not Success, nor a zero wait).
	pg := &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "ns"}, Spec: v1beta1.PodGroupSpec{MinMember: 2, ScheduleTimeoutSeconds: ptr.To[int32](5)}}
	st.UpsertPodGroup(pg)
	if s, wait := g.Permit(context.Background(), framework.NewCycleState(), a, "n0"); s.Code() != fwk.Wait || wait <= 4*time.Second || wait > 5*time.Second {
		t.Fatalf("Permit with 1 of 2 and a 5s PodGroup timeout = %v, %s; want Wait, 4s < wait <= 5s", s, wait)
	}
	// Once the quorum is placed: Success with no wait.
	st.Assume(b, "n1")
	if s, wait := g.Permit(context.Background(), framework.NewCycleState(), b, "n1"); s.Code() != fwk.Success || wait != 0 {
		t.Fatalf("Permit at quorum = %v, %s; want Success, no wait", s, wait)
	}
	// A running member counts towards the quorum: a restarted worker rejoins alone.
	st.Forget(b)
	running := a.DeepCopy()
	running.Spec.NodeName, running.ResourceVersion = "n0", "9"
	st.UpsertPod(running)
	st.Assume(b, "n1")
	if s, wait := g.Permit(context.Background(), framework.NewCycleState(), b, "n1"); s.Code() != fwk.Success || wait != 0 {
		t.Fatalf("Permit with a running sibling = %v, %s; want Success, no wait", s, wait)
	}
}

// BenchmarkFailingGangAttempt is one failing attempt of a 64-member gang of 8-GPU pods on 5000
// 8-GPU nodes of which only 50 are free: every member goes through PreFilter once (as after an
// event that requeues the gang), and every one is turned away. Before the fit was remembered per
// cluster state each member redid it: 2.4–4.7 s, 93 MB, 963k allocs per attempt on this machine.
func BenchmarkFailingGangAttempt(b *testing.B) {
	const nNodes, free, members = 5000, 50, 64
	ns := nodes(nNodes, 8)
	for i := free; i < nNodes; i++ {
		busy := member(fmt.Sprintf("busy-%d", i), "", 8)
		busy.Labels = nil
		busy.Spec.NodeName = ns[i].Node().Name
		ns[i].(*framework.NodeInfo).AddPod(busy)
	}
	var pods []*v1.Pod
	for i := range members {
		pods = append(pods, member(fmt.Sprintf("m%02d", i), "g", 8))
	}
	g, _ := setup(members, pods...)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	first := ns[0].Node()
	for b.Loop() {
		// The event that requeued the gang changed a node (a new generation): no fit is reused
		// from the previous iteration.
		ns[0].(*framework.NodeInfo).SetNode(first)
		for _, p := range pods {
			cs := framework.NewCycleState()
			if _, s := g.PreFilter(ctx, cs, p, ns); s.Code() != fwk.Unschedulable {
				b.Fatalf("PreFilter = %v, want Unschedulable", s)
			}
		}
	}
}

// BenchmarkGangFitAttempt is the first member's PreFilter of a 64 × 8-GPU gang that fits, at 5000
// nodes of which half are busy: the whole-gang fit runs once per attempt (a node changed since the
// last one), so its cost is per gang, not per member.
func BenchmarkGangFitAttempt(b *testing.B) {
	const nNodes, members = 5000, 64
	ns := nodes(nNodes, 8)
	for i, ni := range ns {
		n := ni.Node().DeepCopy()
		n.Status.Allocatable[v1.ResourceCPU] = resource.MustParse("128")
		n.Status.Allocatable[v1.ResourceMemory] = resource.MustParse("1Ti")
		ni.(*framework.NodeInfo).SetNode(n)
		if i%2 == 1 {
			busy := member(fmt.Sprintf("busy-%d", i), "", 8)
			busy.Labels = nil
			busy.Spec.NodeName = n.Name
			ni.(*framework.NodeInfo).AddPod(busy)
		}
	}
	var pods []*v1.Pod
	for i := range members {
		p := member(fmt.Sprintf("m%02d", i), "g", 8)
		p.Spec.Containers[0].Resources.Requests[v1.ResourceCPU] = resource.MustParse("16")
		p.Spec.Containers[0].Resources.Requests[v1.ResourceMemory] = resource.MustParse("64Gi")
		pods = append(pods, p)
	}
	g, _ := setup(members, pods...)
	ctx := context.Background()
	first := ns[0].Node()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ns[0].(*framework.NodeInfo).SetNode(first)
		if _, s := g.PreFilter(ctx, framework.NewCycleState(), pods[0], ns); !s.IsSuccess() {
			b.Fatalf("PreFilter = %v, want success", s)
		}
	}
}

// Issue 32, finding 1: a member that completes the quorum and then fails at Reserve (another
// plugin's, e.g. T9kTopology's GPUs in a lagging cache) never reached Permit: nothing was let go,
// so it is no bind failure (which would, after the timeout, delete the gang's running members).
// The same Unreserve after Permit is one.
func TestReserveFailureOfTheQuorumMemberIsNoBindFailure(t *testing.T) {
	key := groupstate.GroupKey{Namespace: "ns", Name: "g"}
	for _, tc := range []struct {
		name       string
		permitted  bool
		bindFailed bool
	}{
		{name: "failed at Reserve", permitted: false, bindFailed: false},
		{name: "failed at Bind", permitted: true, bindFailed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := member("a", "g", 1), member("b", "g", 1)
			g, st := setup(2, a, b)
			ctx := context.Background()
			csA := framework.NewCycleState()
			if s := g.Reserve(ctx, csA, a, "n0"); !s.IsSuccess() {
				t.Fatal(s)
			}
			if s, _ := g.Permit(ctx, csA, a, "n0"); s.Code() != fwk.Wait {
				t.Fatalf("Permit of the first member = %v", s)
			}
			csB := framework.NewCycleState()
			if s := g.Reserve(ctx, csB, b, "n1"); !s.IsSuccess() {
				t.Fatal(s)
			}
			if tc.permitted {
				if s, _ := g.Permit(ctx, csB, b, "n1"); !s.IsSuccess() {
					t.Fatalf("Permit of the quorum member = %v", s)
				}
			}
			g.Unreserve(ctx, csB, b, "n1")
			c := st.Condition(key, v1beta1.PodGroupConditionScheduled)
			got := c != nil && c.Reason == v1beta1.ReasonBindFailed
			if got != tc.bindFailed {
				t.Fatalf("treated as a bind failure: %v, want %v (GroupScheduled %+v)", got, tc.bindFailed, c)
			}
			g.mu.Lock()
			repairing := g.repairing[key]
			g.mu.Unlock()
			if repairing != tc.bindFailed {
				t.Fatalf("release of the gang's placed members scheduled: %v, want %v", repairing, tc.bindFailed)
			}
		})
	}
}
