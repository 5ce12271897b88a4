package groupstate

import (
	"sync"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

func hintPod(name, group, node string, phase v1.PodPhase) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name), Labels: map[string]string{}},
		Spec: v1.PodSpec{NodeName: node}, Status: v1.PodStatus{Phase: phase}}
	if group != "" {
		p.Labels[v1beta1.LabelGroupName] = group
	}
	return p
}

func TestPodChangeMayHelp(t *testing.T) {
	pending := hintPod("g-0", "g", "", v1.PodPending)
	withCondition := func(p *v1.Pod) *v1.Pod {
		p = p.DeepCopy()
		p.Status.Conditions = []v1.PodCondition{{Type: v1.PodScheduled, Status: v1.ConditionFalse, Message: "0/3 nodes"}}
		return p
	}
	relabeled := func(p *v1.Pod) *v1.Pod { p = p.DeepCopy(); p.Labels["x"] = "y"; return p }
	for _, tc := range []struct {
		name     string
		old, new *v1.Pod
		want     fwk.QueueingHint
	}{
		{"assigned pod deleted", hintPod("x", "", "n1", v1.PodRunning), nil, fwk.Queue},
		{"pending pod deleted", hintPod("x", "", "", v1.PodPending), nil, fwk.QueueSkip},
		{"finished pod deleted", hintPod("x", "", "n1", v1.PodSucceeded), nil, fwk.QueueSkip},
		{"member added", nil, hintPod("g-1", "g", "", v1.PodPending), fwk.Queue},
		{"other pod added", nil, hintPod("x", "", "", v1.PodPending), fwk.QueueSkip},
		{"assigned pod finished", hintPod("x", "", "n1", v1.PodRunning), hintPod("x", "", "n1", v1.PodSucceeded), fwk.Queue},
		{"scheduler's condition on a sibling", hintPod("g-1", "g", "", v1.PodPending), withCondition(hintPod("g-1", "g", "", v1.PodPending)), fwk.QueueSkip},
		{"condition on another pod", hintPod("x", "", "", v1.PodPending), withCondition(hintPod("x", "", "", v1.PodPending)), fwk.QueueSkip},
		{"sibling relabeled", hintPod("g-1", "g", "", v1.PodPending), relabeled(hintPod("g-1", "g", "", v1.PodPending)), fwk.Queue},
		{"another pod bound", hintPod("x", "", "", v1.PodPending), hintPod("x", "", "n1", v1.PodPending), fwk.QueueSkip},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var oldObj, newObj any
			if tc.old != nil {
				oldObj = tc.old
			}
			if tc.new != nil {
				newObj = tc.new
			}
			got, err := New().PodChangeMayHelp(klog.Background(), pending, oldObj, newObj)
			if err != nil || got != tc.want {
				t.Errorf("hint = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

func TestNodeChangeMayHelp(t *testing.T) {
	node := &v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "b"}},
		Status: v1.NodeStatus{Allocatable: v1.ResourceList{"nvidia.com/gpu": resource.MustParse("8")}}}
	heartbeat := node.DeepCopy()
	heartbeat.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	grown := node.DeepCopy()
	grown.Status.Allocatable["nvidia.com/gpu"] = resource.MustParse("16")
	relabeled := node.DeepCopy()
	relabeled.Labels["a"] = "c"
	uncordoned := node.DeepCopy()
	uncordoned.Spec.Unschedulable = true
	cpuOnly := node.DeepCopy()
	cpuOnly.Status.Allocatable = v1.ResourceList{v1.ResourceCPU: resource.MustParse("64")}
	cpuRelabeled := cpuOnly.DeepCopy()
	cpuRelabeled.Labels["a"] = "c"
	gpuPod := pod("p", "g", "", "", 8, "")
	for name, tc := range map[string]struct {
		old, new *v1.Node
		pod      *v1.Pod
		want     fwk.QueueingHint
	}{
		"added":                        {nil, node, nil, fwk.Queue},
		"heartbeat":                    {node, heartbeat, nil, fwk.QueueSkip},
		"allocatable":                  {node, grown, nil, fwk.Queue},
		"labels":                       {node, relabeled, nil, fwk.Queue},
		"cordon":                       {node, uncordoned, nil, fwk.Queue},
		"GPU pod, GPU node relabeled":  {node, relabeled, gpuPod, fwk.Queue},
		"GPU pod, CPU node relabeled":  {cpuOnly, cpuRelabeled, gpuPod, fwk.QueueSkip},
		"GPU pod, CPU node added":      {nil, cpuOnly, gpuPod, fwk.QueueSkip},
		"GPU pod, node gains its GPUs": {cpuOnly, node, gpuPod, fwk.Queue},
	} {
		var oldObj any
		if tc.old != nil {
			oldObj = tc.old
		}
		p := tc.pod
		if p == nil {
			p = &v1.Pod{}
		}
		got, err := NodeChangeMayHelp(klog.Background(), p, oldObj, tc.new)
		if err != nil || got != tc.want {
			t.Errorf("%s: hint = %v, %v; want %v", name, got, err, tc.want)
		}
	}
}

func TestPodGroupSpecChanged(t *testing.T) {
	pg := func(name string, min int64, cond string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"minMember": min}}}
		u.SetNamespace("ns")
		u.SetName(name)
		if cond != "" {
			u.Object["status"] = map[string]any{"conditions": []any{map[string]any{"type": cond}}}
		}
		return u
	}
	pending := hintPod("g-0", "g", "", v1.PodPending)
	for name, tc := range map[string]struct {
		old, new *unstructured.Unstructured
		want     fwk.QueueingHint
	}{
		"own group created":       {nil, pg("g", 2, ""), fwk.Queue},
		"own group status write":  {pg("g", 2, ""), pg("g", 2, "GroupScheduled"), fwk.QueueSkip},
		"own group minMember":     {pg("g", 2, ""), pg("g", 1, ""), fwk.Queue},
		"another group's changes": {pg("h", 2, ""), pg("h", 1, ""), fwk.QueueSkip},
	} {
		var oldObj any
		if tc.old != nil {
			oldObj = tc.old
		}
		got, err := New().PodGroupSpecChanged(klog.Background(), pending, oldObj, tc.new)
		if err != nil || got != tc.want {
			t.Errorf("%s: hint = %v, %v; want %v", name, got, err, tc.want)
		}
	}
}

// A pod leaving wakes a gang only when it held what the gang lacked.
func TestPodLeavingWakesOnlyWhatItFrees(t *testing.T) {
	s := New()
	pending := hintPod("g-0", "g", "", v1.PodPending)
	s.UpsertPod(pending)
	cpuPod := hintPod("cpu", "", "n1", v1.PodRunning)
	cpuPod.Spec.Containers = []v1.Container{{Resources: v1.ResourceRequirements{Requests: v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}}}}
	gpuPod := cpuPod.DeepCopy()
	gpuPod.Name, gpuPod.UID = "gpu", "gpu"
	gpuPod.Spec.Containers[0].Resources.Requests["nvidia.com/gpu"] = resource.MustParse("8")

	hint := func(leaving *v1.Pod) fwk.QueueingHint {
		h, err := s.PodChangeMayHelp(klog.Background(), pending, leaving, nil)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	if hint(cpuPod) != fwk.Queue {
		t.Error("shortage unknown: any assigned pod leaving may help")
	}
	s.SetShort(GroupKey{Namespace: "ns", Name: "g"}, []v1.ResourceName{"nvidia.com/gpu"})
	if hint(cpuPod) != fwk.QueueSkip {
		t.Error("a CPU-only pod leaving woke a gang short of GPUs")
	}
	if hint(gpuPod) != fwk.Queue {
		t.Error("a GPU pod leaving did not wake a gang short of GPUs")
	}
}

// A hint that retries a pod applies the change first: the State's own informers may deliver it
// after the scheduler's, and the retried pod must be judged by what woke it.
func TestHintsApplyTheChangeTheyRetryFor(t *testing.T) {
	s := New()
	s.UpsertQueue(quotaQueue("q", 10, "8"))
	running := pod("r", "", "q", "", 8, "n1")
	s.UpsertPod(running)
	pending := pod("p", "", "q", "", 8, "")
	if got := s.SortInfo(pending, time.Now()).DRS; got != 1 {
		t.Fatalf("share with 8 of 8 GPUs in use = %v", got)
	}
	if h, err := s.QueuePodChangeMayHelp(klog.Background(), pending, running, nil); err != nil || h != fwk.Queue {
		t.Fatalf("hint on the queue's pod leaving = %v, %v", h, err)
	}
	if got := s.SortInfo(pending, time.Now()).DRS; got != 0 {
		t.Errorf("share after the hint = %v, want 0: the quota must be free before the retry", got)
	}

	pg := podGroup("g", "q", 2)
	pg.Generation = 1
	s.UpsertPodGroup(pg)
	member := pod("g-0", "g", "", "", 1, "")
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(pg)
	if err != nil {
		t.Fatal(err)
	}
	oldU := &unstructured.Unstructured{Object: u}
	newU := oldU.DeepCopy()
	newU.Object["spec"].(map[string]any)["minMember"] = int64(1)
	newU.SetGeneration(2)
	if h, err := s.PodGroupSpecChanged(klog.Background(), member, oldU, newU); err != nil || h != fwk.Queue {
		t.Fatalf("hint on minMember 2 -> 1 = %v, %v", h, err)
	}
	if g, _ := s.Gang(member); g.MinMember != 1 {
		t.Errorf("minMember after the hint = %d, want 1", g.MinMember)
	}
	// The State's own cache then delivers the old generation late: it must not undo the hint.
	s.UpsertPodGroup(pg)
	if g, _ := s.Gang(member); g.MinMember != 1 {
		t.Errorf("minMember after a stale update = %d, want 1", g.MinMember)
	}
}

// The scheduler calls hints with its scheduling queue locked, and Activate takes that lock: a
// hint whose update opens a PreEnqueue gate must activate only after it returned. (Calling
// Activate from inside the hint deadlocked the scheduler in the 5000-node stream.)
func TestHintsNeverActivateWhileTheQueueIsLocked(t *testing.T) {
	s := New()
	queueLock, activated := lockedActivate(s)
	held := pod("m0", "g", "q", "", 1, "")
	s.UpsertPod(held)
	s.Hold(held) // no PodGroup yet: the gate is shut
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(podGroup("g", "q", 1))
	if err != nil {
		t.Fatal(err)
	}
	returned := make(chan fwk.QueueingHint)
	go func() {
		queueLock.Lock()
		defer queueLock.Unlock()
		h, _ := s.PodGroupSpecChanged(klog.Background(), held, nil, &unstructured.Unstructured{Object: u})
		returned <- h
	}()
	select {
	case h := <-returned:
		if h != fwk.Queue {
			t.Fatalf("hint on the gang's PodGroup created = %v", h)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the hint blocked: it activated while the scheduler's queue was locked")
	}
	awaitActivated(t, activated, "ns/m0", "the held member was never activated once its gate opened")
}

// lockedActivate makes s activate as the scheduler does: Activate takes the scheduling queue's
// lock, which the returned mutex plays. Activated pods' keys arrive on the channel.
func lockedActivate(s *State) (*sync.Mutex, <-chan string) {
	var queueLock sync.Mutex
	activated := make(chan string, 10)
	s.activate = func(pods map[string]*v1.Pod) {
		queueLock.Lock()
		defer queueLock.Unlock()
		for k := range pods {
			activated <- k
		}
	}
	return &queueLock, activated
}

// awaitActivated fails unless the next activation, within 5 s, is of want.
func awaitActivated(t *testing.T, activated <-chan string, want, never string) {
	t.Helper()
	select {
	case k := <-activated:
		if k != want {
			t.Fatalf("activated %q, want %q", k, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatal(never)
	}
}
