package groupstate

import (
	"slices"
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
)

func pod(name, group, queue, role string, gpus int64, node string) *v1.Pod {
	l := map[string]string{}
	if group != "" {
		l[v1beta1.LabelGroupName] = group
	}
	if queue != "" {
		l[v1beta1.LabelQueue] = queue
	}
	if role != "" {
		l[v1beta1.LabelRole] = role
	}
	req := v1.ResourceList{v1.ResourceCPU: resource.MustParse("1"), "nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI)}
	return &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID(name), Labels: l},
		Spec:       v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c", Resources: v1.ResourceRequirements{Requests: req}}}},
	}
}

func podGroup(name, queue string, min int32, roles ...v1beta1.PodGroupRole) *v1beta1.PodGroup {
	return &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("pg-" + name)},
		Spec: v1beta1.PodGroupSpec{MinMember: min, Queue: queue, Roles: roles}}
}

// leaving marks a pod as being deleted.
func leaving(p *v1.Pod) *v1.Pod {
	p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
	return p
}

func names(ms []Member) string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Pod.Name)
	}
	return strings.Join(out, ",")
}

func TestGangMembersQuorumAndToPlace(t *testing.T) {
	for _, tc := range []struct {
		name        string
		min         int32
		roles       []v1beta1.PodGroupRole
		pods        []*v1.Pod
		first       string
		wantMembers string // ShortOfMembers ("" = enough)
		wantQuorum  string // ShortOfQuorum
		wantToPlace string
	}{
		{name: "too few members", min: 3, pods: []*v1.Pod{pod("a", "g", "q", "", 1, ""), pod("b", "g", "q", "", 1, "")},
			first: "a", wantMembers: "2 of minMember 3 member pods exist", wantQuorum: "0 of minMember 3", wantToPlace: "a,b"},
		{name: "all pending", min: 2, pods: []*v1.Pod{pod("a", "g", "q", "", 1, ""), pod("b", "g", "q", "", 1, ""), pod("c", "g", "q", "", 1, "")},
			first: "c", wantQuorum: "0 of minMember 2", wantToPlace: "c,a"},
		{name: "running member counts", min: 2, pods: []*v1.Pod{pod("a", "g", "q", "", 1, "n1"), pod("b", "g", "q", "", 1, "")},
			first: "b", wantQuorum: "1 of minMember 2", wantToPlace: "b"},
		{name: "member being deleted does not count", min: 2, pods: []*v1.Pod{leaving(pod("a", "g", "q", "", 1, "n1")), pod("b", "g", "q", "", 1, "")},
			first: "b", wantMembers: "1 of minMember 2 member pods exist", wantQuorum: "0 of minMember 2", wantToPlace: "b"},
		{name: "quorum met", min: 2, pods: []*v1.Pod{pod("a", "g", "q", "", 1, "n1"), pod("b", "g", "q", "", 1, "n2")},
			wantToPlace: ""},
		{name: "role minimum picks its members first", min: 3,
			roles: []v1beta1.PodGroupRole{{Name: "ps", MinMember: 1}, {Name: "worker", MinMember: 2}},
			pods:  []*v1.Pod{pod("a", "g", "q", "worker", 1, ""), pod("b", "g", "q", "worker", 1, ""), pod("c", "g", "q", "worker", 1, ""), pod("z", "g", "q", "ps", 0, "")},
			first: "a", wantQuorum: "0 of minMember 3 member pods placed; role ps: 0 of 1; role worker: 0 of 2", wantToPlace: "a,z,b"},
		{name: "missing role member", min: 2,
			roles: []v1beta1.PodGroupRole{{Name: "ps", MinMember: 1}},
			pods:  []*v1.Pod{pod("a", "g", "q", "worker", 1, ""), pod("b", "g", "q", "worker", 1, "")},
			first: "a", wantMembers: "2 of minMember 2 member pods exist; role ps: 0 of 1", wantQuorum: "role ps: 0 of 1", wantToPlace: "a,b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			s.UpsertPodGroup(podGroup("g", "q", tc.min, tc.roles...))
			var first *v1.Pod
			for _, p := range tc.pods {
				s.UpsertPod(p)
				if p.Name == tc.first {
					first = p
				}
			}
			g, ok := s.Gang(tc.pods[0])
			if !ok {
				t.Fatal("no gang")
			}
			if got := g.ShortOfMembers(); !strings.Contains(got, tc.wantMembers) || (tc.wantMembers == "") != (got == "") {
				t.Errorf("ShortOfMembers = %q, want %q", got, tc.wantMembers)
			}
			if got := g.ShortOfQuorum(); !strings.Contains(got, tc.wantQuorum) || (tc.wantQuorum == "") != (got == "") {
				t.Errorf("ShortOfQuorum = %q, want %q", got, tc.wantQuorum)
			}
			if got := names(g.ToPlace(first)); got != tc.wantToPlace {
				t.Errorf("ToPlace = %q, want %q", got, tc.wantToPlace)
			}
		})
	}
}

func quotaQueue(name string, prio int32, gpus string) *v1beta1.Queue {
	q := &v1beta1.Queue{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: DefaultQueueNamespace}, Spec: v1beta1.QueueSpec{Priority: prio}}
	if gpus != "" {
		q.Spec.Quota = &v1beta1.QueueQuota{Requests: v1.ResourceList{"nvidia.com/gpu": resource.MustParse(gpus), v1.ResourceCPU: resource.MustParse("100")}}
	}
	return q
}

func TestUsageFollowsReserveBindAndDelete(t *testing.T) {
	s := New()
	s.UpsertQueue(quotaQueue("q", 1, "16"))
	s.UpsertPodGroup(podGroup("g", "q", 2))
	a, b := pod("a", "g", "", "", 4, ""), pod("b", "g", "", "", 4, "")
	s.UpsertPod(a)
	s.UpsertPod(b)
	gpu := func() int64 { return s.Usage("q")["nvidia.com/gpu"] }
	if gpu() != 0 {
		t.Fatalf("usage before placement = %d", gpu())
	}
	s.Assume(a, "n1")
	s.Assume(a, "n1") // idempotent
	if gpu() != 4 || s.DRS("q") != 0.25 {
		t.Fatalf("after reserve: usage %d, DRS %v; want 4, 0.25", gpu(), s.DRS("q"))
	}
	s.Forget(a)
	if gpu() != 0 {
		t.Fatalf("after unreserve: usage %d", gpu())
	}
	s.Assume(a, "n1")
	bound := a.DeepCopy()
	bound.Spec.NodeName, bound.ResourceVersion = "n1", "2"
	s.UpsertPod(bound) // the informer catches up: still counted once
	if gpu() != 4 {
		t.Fatalf("after bind: usage %d", gpu())
	}
	done := bound.DeepCopy()
	done.Status.Phase = v1.PodSucceeded
	s.UpsertPod(done)
	if gpu() != 0 {
		t.Fatalf("after the pod finished: usage %d", gpu())
	}
}

func TestSortInfo(t *testing.T) {
	s := New()
	s.UpsertQueue(quotaQueue("hi", 50, "8"))
	s.UpsertQueue(quotaQueue("lo", 10, ""))
	pg := podGroup("g", "hi", 1)
	pg.Spec.Priority = 7
	pg.CreationTimestamp = metav1.NewTime(time.Unix(100, 0))
	s.UpsertPodGroup(pg)
	running := pod("r", "", "hi", "", 2, "n1")
	s.UpsertPod(running)
	enq := time.Unix(500, 0)
	got := s.SortInfo(pod("m", "g", "", "", 1, ""), enq)
	want := SortInfo{QueuePriority: 50, DRS: 0.25, Priority: 7, Since: time.Unix(100, 0), Size: 1, Key: GroupKey{Namespace: "ns", Name: "g"}}
	if got != want {
		t.Errorf("SortInfo = %+v, want %+v", got, want)
	}
	if got := s.SortInfo(pod("x", "", "lo", "", 1, ""), enq); got.QueuePriority != 10 || !got.Key.Pod || !got.Since.Equal(enq) {
		t.Errorf("virtual group SortInfo = %+v (Since must be the pod's queue time)", got)
	}
	// A failed attempt moves the gang's Since to the failure; an earlier failure does not move it
	// before its creation.
	s.UpsertPod(pod("m", "g", "", "", 1, ""))
	s.now = func() time.Time { return time.Unix(700, 0) }
	s.MarkFailed(GroupKey{Namespace: "ns", Name: "g"})
	if got := s.SortInfo(pod("m", "g", "", "", 1, ""), enq); !got.Since.Equal(time.Unix(700, 0)) {
		t.Errorf("after a failure at 700 Since = %v", got.Since.Unix())
	}
	s.now = func() time.Time { return time.Unix(50, 0) }
	s.MarkFailed(GroupKey{Namespace: "ns", Name: "g"})
	if got := s.SortInfo(pod("m", "g", "", "", 1, ""), enq); !got.Since.Equal(time.Unix(100, 0)) {
		t.Errorf("a failure before creation moved Since to %v", got.Since.Unix())
	}
}

func nodeInfo(name string, gpus int64, lbls map[string]string, pods ...*v1.Pod) fwk.NodeInfo {
	n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}, Status: v1.NodeStatus{Allocatable: v1.ResourceList{
		v1.ResourceCPU: resource.MustParse("8"), v1.ResourceMemory: resource.MustParse("64Gi"), v1.ResourcePods: resource.MustParse("110"),
		"nvidia.com/gpu": *resource.NewQuantity(gpus, resource.DecimalSI)}}}
	ni := framework.NewNodeInfo(pods...)
	ni.SetNode(n)
	return ni
}

func TestFitterPlacesWholeGangOrSaysWhy(t *testing.T) {
	s := New()
	q := quotaQueue("a100", 1, "")
	q.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"gpu": "a100"}}
	s.UpsertQueue(q)
	a100 := map[string]string{"gpu": "a100"}
	busy := pod("busy", "", "", "", 6, "n1")
	nodes := []fwk.NodeInfo{nodeInfo("n1", 8, a100, busy), nodeInfo("n2", 8, a100), nodeInfo("n3", 8, nil)}
	member := func(name string, gpus int64, queue string) Member {
		p := pod(name, "", queue, "", gpus, "")
		return Member{Pod: p, Requests: PodRequests(p)}
	}
	for _, tc := range []struct {
		name    string
		members []Member
		gone    func(*v1.Pod) bool
		wantErr string
	}{
		{name: "fits on three nodes", members: []Member{member("a", 8, ""), member("b", 8, ""), member("c", 2, "")}},
		{name: "one too many", members: []Member{member("a", 8, ""), member("b", 8, ""), member("c", 4, "")},
			wantErr: "2 of 3 pods placed; the next needs 4 nvidia.com/gpu, the most free on one of 3 eligible nodes is 2"},
		{name: "queue nodeSelector", members: []Member{member("a", 8, "a100"), member("b", 8, "a100")},
			wantErr: "1 of 2 pods placed; the next needs 8 nvidia.com/gpu, the most free on one of 2 eligible nodes is 2"},
		{name: "evicting busy makes room", members: []Member{member("a", 8, "a100"), member("b", 8, "a100")},
			gone: func(p *v1.Pod) bool { return p.Name == "busy" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, why := s.NewFitter(nodes, tc.gone).PlaceAll(tc.members)
			if why != tc.wantErr {
				t.Errorf("PlaceAll: %q, want %q", why, tc.wantErr)
			}
		})
	}
}

// Members PreEnqueue held are activated exactly when their gate opens: a role completed by a pod
// beyond minMember opens it (issue 20, item 7); pods that are not held, or whose gate is still
// shut, are never activated; and ReleaseHeld lets a held pod go whose opening event was missed
// (item 9: the scheduler's periodic flush skips pods a PreEnqueue plugin holds).
func TestHeldMembersReleasedWhenTheGateOpens(t *testing.T) {
	s := New()
	var activated []string
	s.activate = func(pods map[string]*v1.Pod) {
		for k := range pods {
			activated = append(activated, k)
		}
	}
	take := func() string {
		defer func() { activated = nil }()
		slices.Sort(activated)
		return strings.Join(activated, ",")
	}
	s.UpsertPodGroup(podGroup("g", "q", 2, v1beta1.PodGroupRole{Name: "master", MinMember: 1}, v1beta1.PodGroupRole{Name: "worker", MinMember: 1}))
	take()
	w0, w1 := pod("w0", "g", "q", "worker", 1, ""), pod("w1", "g", "q", "worker", 1, "")
	s.UpsertPod(w0)
	s.Hold(w0)
	s.UpsertPod(w1)
	s.Hold(w1)
	if got := take(); got != "" {
		t.Fatalf("activated %q while the master role is missing", got)
	}
	other := pod("x", "other", "q", "", 1, "")
	s.UpsertPodGroup(podGroup("other", "q", 3))
	take()
	s.UpsertPod(other)
	s.Hold(other)
	// The third pod (beyond minMember 2) completes the roles: both held workers go, not the
	// new master (never held) and not the other gang's pod (its gate is still shut).
	s.UpsertPod(pod("m", "g", "q", "master", 1, ""))
	if got, want := take(), "ns/w0,ns/w1"; got != want {
		t.Fatalf("activated %q, want %q", got, want)
	}
	s.UpsertPod(pod("m", "g", "q", "master", 1, "")) // nothing is held any more
	if got := take(); got != "" {
		t.Fatalf("activated %q with nothing held", got)
	}

	// A missed event: the other gang's members arrive while activation is switched off (as if the
	// scheduler's informer ran PreEnqueue before this state saw them). The sweep lets the held pod go.
	act := s.activate
	s.activate = nil
	s.UpsertPod(pod("y", "other", "q", "", 1, ""))
	s.UpsertPod(pod("z", "other", "q", "", 1, ""))
	s.activate = act
	if got := take(); got != "" {
		t.Fatalf("activated %q with activation off", got)
	}
	s.ReleaseHeld()
	if got, want := take(), "ns/x"; got != want {
		t.Fatalf("ReleaseHeld activated %q, want %q", got, want)
	}
	s.ReleaseHeld()
	if got := take(); got != "" {
		t.Fatalf("a second ReleaseHeld activated %q", got)
	}
	// A held pod deleted is forgotten.
	s.UpsertPodGroup(podGroup("gone", "q", 2))
	take()
	g0 := pod("g0", "gone", "q", "", 1, "")
	s.UpsertPod(g0)
	s.Hold(g0)
	s.DeletePod(g0)
	s.UpsertPod(pod("g1", "gone", "q", "", 1, ""))
	s.UpsertPod(pod("g2", "gone", "q", "", 1, ""))
	if got := take(); got != "" {
		t.Fatalf("activated %q: a deleted pod stayed held", got)
	}

	// Members held before this state saw their PodGroup (its cache lagged the pod informer) were
	// held for its absence: when it arrives they go back through PreEnqueue even though the gang
	// is still short, so PreEnqueue records what they wait for. Once held again for members, a
	// status-only update of the PodGroup does not move them.
	l0, l1 := pod("l0", "late", "q", "", 1, ""), pod("l1", "late", "q", "", 1, "")
	s.UpsertPod(l0)
	s.Hold(l0)
	s.UpsertPod(l1)
	s.Hold(l1)
	late := podGroup("late", "q", 3)
	s.UpsertPodGroup(late)
	if got, want := take(), "ns/l0,ns/l1"; got != want {
		t.Fatalf("the PodGroup's arrival activated %q, want %q", got, want)
	}
	s.Hold(l0)
	s.Hold(l1)
	withStatus := late.DeepCopy()
	withStatus.Status.Conditions = []metav1.Condition{{Type: v1beta1.PodGroupConditionSufficientMember, Status: metav1.ConditionFalse}}
	s.UpsertPodGroup(withStatus)
	if got := take(); got != "" {
		t.Fatalf("a status-only update activated %q", got)
	}
}

// The event that opens a gang's gate may reach this state between PreEnqueue's read of the gang
// and its Hold: the pod was not held yet, so that event let nothing go. Hold checks the gate again
// and lets the pod go itself, after PreEnqueue returned (PreEnqueue runs with the scheduling queue
// locked, and Activate takes that lock); with the gate still shut it lets nothing go.
func TestHoldAfterTheGateOpenedLetsThePodGo(t *testing.T) {
	s := New()
	queueLock, got := lockedActivate(s)
	s.UpsertPodGroup(podGroup("g", "q", 2))
	a := pod("a", "g", "q", "", 1, "")
	s.UpsertPod(a)
	if g, _ := s.Gang(a); g.ShortOfMembers() == "" {
		t.Fatal("a gang of one member of two is not short")
	}
	s.UpsertPod(pod("b", "g", "q", "", 1, "")) // the opening event, before PreEnqueue holds a
	held := make(chan struct{})
	go func() { // PreEnqueue, under the queue's lock
		queueLock.Lock()
		defer queueLock.Unlock()
		s.Hold(a)
		close(held)
	}()
	select {
	case <-held:
	case <-time.After(5 * time.Second):
		t.Fatal("Hold blocked: it activated while the scheduler's queue was locked")
	}
	awaitActivated(t, got, "ns/a", "a held after its gate opened was never let go")

	s.UpsertPodGroup(podGroup("h", "q", 3))
	c := pod("c", "h", "q", "", 1, "")
	s.UpsertPod(c)
	s.Hold(c)
	s.ReleaseHeld() // nor does the sweep
	select {
	case k := <-got:
		t.Fatalf("activated %q with its gate shut", k)
	case <-time.After(200 * time.Millisecond):
	}
}

// PreemptibleBelow: only a preemptible queue of lower priority that runs pods is a candidate.
func TestPreemptibleBelow(t *testing.T) {
	s := New()
	lo := quotaQueue("lo", 1, "")
	s.UpsertQueue(lo)
	fixed := quotaQueue("fixed", 1, "")
	fixed.Spec.Preemptible = ptr.To(false)
	s.UpsertQueue(fixed)
	s.UpsertPod(pod("f", "", "fixed", "", 1, "n1"))
	if s.PreemptibleBelow(5) {
		t.Error("candidate found while the only lower queue with pods is not preemptible")
	}
	r := pod("r", "", "lo", "", 1, "n1")
	s.UpsertPod(r)
	if !s.PreemptibleBelow(5) {
		t.Error("a preemptible lower queue with a running pod is no candidate")
	}
	if s.PreemptibleBelow(1) {
		t.Error("a queue of equal priority counted as a candidate")
	}
	s.DeletePod(r)
	if s.PreemptibleBelow(5) {
		t.Error("a preemptible lower queue with no pods left is still a candidate")
	}
}

// EligibleFunc, which works out the pod's side once, answers as Eligible does for every node.
func TestEligibleFuncAgreesWithEligible(t *testing.T) {
	s := New()
	sel := quotaQueue("sel", 1, "")
	sel.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "a"}}
	s.UpsertQueue(sel)
	s.UpsertQueue(quotaQueue("any", 1, ""))
	var nodes []*v1.Node
	for _, pool := range []string{"a", "b", ""} {
		for _, taint := range []string{"", "gpu"} {
			for _, cordoned := range []bool{false, true} {
				n := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: pool + taint, Labels: map[string]string{}}, Spec: v1.NodeSpec{Unschedulable: cordoned}}
				if pool != "" {
					n.Labels["pool"] = pool
				}
				if taint != "" {
					n.Spec.Taints = []v1.Taint{{Key: taint, Effect: v1.TaintEffectNoSchedule}}
				}
				nodes = append(nodes, n)
			}
		}
	}
	var pods []*v1.Pod
	for _, q := range []string{"sel", "any"} {
		plain := pod("p-"+q, "", q, "", 1, "")
		tolerant := pod("t-"+q, "", q, "", 1, "")
		tolerant.Spec.Tolerations = []v1.Toleration{{Key: "gpu", Operator: v1.TolerationOpExists}}
		pinned := pod("n-"+q, "", q, "", 1, "")
		pinned.Spec.NodeSelector = map[string]string{"pool": "b"}
		pods = append(pods, plain, tolerant, pinned)
	}
	for _, p := range pods {
		f := s.EligibleFunc(p)
		for _, n := range nodes {
			if got, want := f(n), s.Eligible(p, n); got != want {
				t.Errorf("pod %s on node %q (cordoned %v): EligibleFunc %v, Eligible %v", p.Name, n.Name, n.Spec.Unschedulable, got, want)
			}
		}
	}
}

// A timed-out gang's backoff is a PreEnqueue gate: its members are held from the start of the
// backoff, no event or sweep lets them go before it ends, and its end activates them all.
func TestBackOffHoldsMembersUntilItEnds(t *testing.T) {
	s := New()
	now := time.Now()
	s.now = func() time.Time { return now }
	var activated []string
	s.activate = func(pods map[string]*v1.Pod) {
		for k := range pods {
			activated = append(activated, k)
		}
	}
	s.UpsertPodGroup(podGroup("g", "q", 2))
	a, b := pod("a", "g", "q", "", 1, ""), pod("b", "g", "q", "", 1, "")
	s.UpsertPod(a)
	s.UpsertPod(b)
	activated = nil

	key, _ := KeyOf(a)
	s.BackOff(key, now.Add(10*time.Second), []*v1.Pod{a, b})
	s.UpsertPod(pod("c", "g", "q", "", 1, "")) // an event that would open a held member's gate
	s.ReleaseHeld()
	if len(activated) != 0 {
		t.Fatalf("activated %v during the backoff", activated)
	}

	now = now.Add(10 * time.Second)
	s.EndBackOff(key)
	slices.Sort(activated)
	if got := strings.Join(activated, ","); got != "ns/a,ns/b" {
		t.Fatalf("EndBackOff activated %q, want ns/a,ns/b", got)
	}
}

// Issue 32, finding 5: the state follows a pod's group label when it changes (the pod leaves its
// old gang and that queue's usage), ignores an older version of a pod replayed after a newer one
// (a hint replays the version its event carried), and keeps no usage key for a queue no pod
// counts against.
func TestPodVersionsAndLabelChanges(t *testing.T) {
	s := New()
	s.UpsertQueue(quotaQueue("q1", 1, "16"))
	s.UpsertQueue(quotaQueue("q2", 1, "16"))
	s.UpsertPodGroup(podGroup("g1", "q1", 1))
	s.UpsertPodGroup(podGroup("g2", "q2", 1))
	gpu := func(q string) int64 { return s.Usage(q)["nvidia.com/gpu"] }

	unbound := pod("a", "g1", "", "", 4, "")
	unbound.ResourceVersion = "10"
	s.UpsertPod(unbound)
	bound := unbound.DeepCopy()
	bound.Spec.NodeName, bound.ResourceVersion = "n1", "11"
	s.UpsertPod(bound)
	s.UpsertPod(unbound) // replayed by a hint after the informer delivered the bind
	if gpu("q1") != 4 {
		t.Fatalf("q1 usage after a replayed unbound version = %d, want 4", gpu("q1"))
	}

	moved := bound.DeepCopy()
	moved.Labels[v1beta1.LabelGroupName], moved.ResourceVersion = "g2", "12"
	s.UpsertPod(moved)
	if g1 := s.GangByKey(GroupKey{Namespace: "ns", Name: "g1"}); len(g1.Members) != 0 {
		t.Fatalf("g1 still has %s after the pod moved to g2", names(g1.Members))
	}
	if g2 := s.GangByKey(GroupKey{Namespace: "ns", Name: "g2"}); names(g2.Members) != "a" {
		t.Fatalf("g2 members = %q, want a", names(g2.Members))
	}
	if gpu("q1") != 0 || gpu("q2") != 4 {
		t.Fatalf("usage q1 %d, q2 %d after the move; want 0, 4", gpu("q1"), gpu("q2"))
	}
	s.mu.RLock()
	_, kept := s.usage["q1"]
	s.mu.RUnlock()
	if kept {
		t.Fatal("queue q1 keeps a usage entry with nothing counted")
	}
}
