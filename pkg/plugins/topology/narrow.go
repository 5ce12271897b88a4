package topology

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"
)

// minNodesToNarrow: below this many nodes the framework filters every node anyway (kube-
// scheduler's minFeasibleNodesToFind), so narrowing would save nothing and only change the
// failure message.
const minNodesToNarrow = 100

// gpuCandidates returns the nodes whose snapshot shows n of res free, and how many there are: a
// superset of what Filter accepts (the cache also counts plans, and NodeResourcesFit nominated
// pods), so a count of 0 is every node's verdict. The
// set is built only while it stays within limit nodes (nil beyond: the framework's own sampling
// finds feasible nodes quickly when they are that common); the count is exact up to limit+1.
func gpuCandidates(nodes []fwk.NodeInfo, res v1.ResourceName, n, limit int) (sets.Set[string], int) {
	var fit sets.Set[string]
	count := 0
	for _, ni := range nodes {
		if !snapshotHas(ni, res, n) {
			continue
		}
		count++
		if count > limit {
			return nil, count
		}
		if fit == nil {
			fit = sets.New[string]()
		}
		fit.Insert(ni.Node().Name)
	}
	return fit, count
}

// narrowLimit is the most candidates PreFilter hands the framework as a PreFilterResult: a
// quarter of the cluster. With more nodes free the framework's sampling (percentageOfNodesToScore)
// finds enough of them within a few of its steps.
func narrowLimit(nodes int) int { return nodes / 4 }

// priorities counts the pods that hold a node (bound, or reserved by this scheduler) by priority,
// so that PreFilter can tell in O(1) whether any pod could be a preemption victim of a pod.
// Reserve and Unreserve keep it exact for this scheduler's own pods (the snapshot counts a pod as
// soon as it is assumed); pods bound by others come through the pod informer.
type priorities struct {
	mu    sync.Mutex
	byUID map[types.UID]int32
	count map[int32]int
}

func newPriorities() *priorities {
	return &priorities{byUID: map[types.UID]int32{}, count: map[int32]int{}}
}

// hold counts pod as holding a node.
func (p *priorities) hold(pod *v1.Pod) {
	prio := corev1helpers.PodPriority(pod)
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.byUID[pod.UID]; ok {
		if old == prio {
			return
		}
		p.dropLocked(pod.UID, old)
	}
	p.byUID[pod.UID] = prio
	p.count[prio]++
}

// release stops counting pod.
func (p *priorities) release(uid types.UID) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if old, ok := p.byUID[uid]; ok {
		p.dropLocked(uid, old)
	}
}

func (p *priorities) dropLocked(uid types.UID, prio int32) {
	delete(p.byUID, uid)
	if p.count[prio]--; p.count[prio] <= 0 {
		delete(p.count, prio)
	}
}

// observe follows a pod from the informer: counted while bound and not finished.
func (p *priorities) observe(pod *v1.Pod, deleted bool) {
	if deleted || pod.Spec.NodeName == "" || pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		if deleted || pod.Spec.NodeName != "" {
			p.release(pod.UID)
		}
		return
	}
	p.hold(pod)
}

// mayPreempt reports whether PriorityClass preemption could find a victim for pod: it may
// preempt, and some pod holding a node has a lower priority. When it cannot, nodes without the
// GPUs are no candidates for anything and may be left out of the pod's cycle.
func (p *priorities) mayPreempt(pod *v1.Pod) bool {
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == v1.PreemptNever {
		return false
	}
	prio := corev1helpers.PodPriority(pod)
	p.mu.Lock()
	defer p.mu.Unlock()
	for q := range p.count {
		if q < prio {
			return true
		}
	}
	return false
}
