package groupstate

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	fwk "k8s.io/kube-scheduler/framework"
)

// Fitter answers "can these pods all run at once?" on a copy of the scheduler's snapshot: it
// places pods one by one (best fit on the pod's largest request) and keeps what it placed. It
// checks resources, pod slots, node unschedulable, taints, the pod's required node affinity and
// the queue's nodeSelector, which is what decides gangs in practice; the real Filter plugins still
// run for every member, so a gang this optimistically admits and Filter then refuses is released
// as a whole.
type Fitter struct {
	nodes []*room
	s     *State
	// short are the resources the last failed Place found no node with enough of.
	short []v1.ResourceName
}

// Short returns the resources the last failed placement lacked (nil when it failed for another
// reason, such as no eligible node).
func (f *Fitter) Short() []v1.ResourceName { return f.short }

type room struct {
	node *v1.Node
	free Res
	pods int64
}

// NewFitter copies the free room of nodes. Pods for which gone returns true are treated as
// already removed (victims being evicted, or preemption candidates).
func (s *State) NewFitter(nodes []fwk.NodeInfo, gone func(*v1.Pod) bool) *Fitter {
	f := &Fitter{nodes: make([]*room, 0, len(nodes)), s: s}
	for _, ni := range nodes {
		n := ni.Node()
		if n == nil {
			continue
		}
		alloc, req := ni.GetAllocatable(), ni.GetRequested()
		r := &room{node: n, free: Res{
			v1.ResourceCPU:              alloc.GetMilliCPU() - req.GetMilliCPU(),
			v1.ResourceMemory:           alloc.GetMemory() - req.GetMemory(),
			v1.ResourceEphemeralStorage: alloc.GetEphemeralStorage() - req.GetEphemeralStorage(),
		}, pods: int64(alloc.GetAllowedPodNumber() - len(ni.GetPods()))}
		used := req.GetScalarResources()
		for name, v := range alloc.GetScalarResources() {
			r.free[name] = v - used[name]
		}
		if gone != nil {
			for _, pi := range ni.GetPods() {
				if p := pi.GetPod(); gone(p) {
					r.free.Add(PodRequests(p))
					r.pods++
				}
			}
		}
		f.nodes = append(f.nodes, r)
	}
	return f
}

// Eligible says whether pod may run on n at all by the rules the Fitter applies (unschedulable,
// its queue's nodeSelector, taints, required node affinity), so that other plugins planning for the
// pod (the topology planner) leave out the same nodes.
func (s *State) Eligible(pod *v1.Pod, n *v1.Node) bool {
	ok, _ := eligibleOn(pod, s.queueFor(pod), n)
	return ok
}

// eligibleOn says whether pod may run on n at all, and if not, why (a short phrase for counting).
func eligibleOn(pod *v1.Pod, q *QueueInfo, n *v1.Node) (bool, string) {
	if n.Spec.Unschedulable {
		return false, "unschedulable"
	}
	if q != nil && q.NodeSelector != nil && !q.NodeSelector.Matches(labels.Set(n.Labels)) {
		return false, fmt.Sprintf("not matching queue %s's nodeSelector", q.Queue.Name)
	}
	if _, bad := corev1helpers.FindMatchingUntoleratedTaint(n.Spec.Taints, pod.Spec.Tolerations, func(t *v1.Taint) bool {
		return t.Effect == v1.TaintEffectNoSchedule || t.Effect == v1.TaintEffectNoExecute
	}); bad {
		return false, "with an untolerated taint"
	}
	if ok, _ := nodeaffinity.GetRequiredNodeAffinity(pod).Match(n); !ok {
		return false, "not matching the pod's node selector/affinity"
	}
	return true, ""
}

// primary is the resource a pod's placement is packed on: its largest extended resource (GPUs),
// else cpu.
func primary(req Res) v1.ResourceName {
	best, bestV := v1.ResourceCPU, int64(0)
	for name, v := range req {
		if name == v1.ResourceCPU || name == v1.ResourceMemory || name == v1.ResourceEphemeralStorage {
			continue
		}
		if v > bestV || (v == bestV && name < best) {
			best, bestV = name, v
		}
	}
	return best
}

// Place puts one pod on the best-fitting eligible node and keeps it there. On failure it returns
// a reason a person can act on.
func (f *Fitter) Place(m Member) (string, string) {
	q := f.s.queueFor(m.Pod)
	prim := primary(m.Requests)
	var best *room
	excluded := map[string]int{}
	eligible := 0
	maxFree := Res{}
	for _, r := range f.nodes {
		if ok, why := eligibleOn(m.Pod, q, r.node); !ok {
			excluded[why]++
			continue
		}
		eligible++
		fits := r.pods >= 1
		for name, v := range m.Requests {
			if v == 0 {
				continue
			}
			if r.free[name] > maxFree[name] {
				maxFree[name] = r.free[name]
			}
			if r.free[name] < v {
				fits = false
			}
		}
		if fits && (best == nil || r.free[prim] < best.free[prim]) {
			best = r
		}
	}
	if best != nil {
		best.free.Sub(m.Requests)
		best.pods--
		return best.node.Name, ""
	}
	if eligible == 0 {
		parts := make([]string, 0, len(excluded))
		for _, why := range sortedKeys(excluded) {
			parts = append(parts, fmt.Sprintf("%d %s", excluded[why], why))
		}
		return "", fmt.Sprintf("no eligible node (%s)", strings.Join(parts, ", "))
	}
	var short []string
	f.short = nil
	for _, name := range sortedKeys(m.Requests) {
		if v := m.Requests[name]; v > 0 && maxFree[name] < v {
			f.short = append(f.short, name)
			short = append(short, fmt.Sprintf("needs %s %s, the most free on one of %d eligible nodes is %s",
				Format(name, v), name, eligible, Format(name, max(maxFree[name], 0))))
		}
	}
	if len(short) == 0 {
		return "", fmt.Sprintf("no eligible node has room for all of {%s} at once", m.Requests)
	}
	return "", strings.Join(short, "; ")
}

// PlaceAll places every member or reports the first that does not fit, with how far it got.
// Members are placed largest first so that small ones do not fragment the room big ones need.
func (f *Fitter) PlaceAll(ms []Member) (map[string]string, string) {
	order := make([]int, len(ms))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		ra, rb := ms[order[a]].Requests, ms[order[b]].Requests
		pa, pb := ra[primary(ra)], rb[primary(rb)]
		if pa != pb {
			return pa > pb
		}
		return ra[v1.ResourceCPU] > rb[v1.ResourceCPU]
	})
	plan := make(map[string]string, len(ms))
	for n, i := range order {
		node, why := f.Place(ms[i])
		if node == "" {
			// No member's name: the same failure reads the same whichever member observed it,
			// so the PodGroup's condition is written once.
			return plan, fmt.Sprintf("%d of %d pods placed; the next %s", n, len(ms), why)
		}
		plan[ms[i].Pod.Name] = node
	}
	return plan, ""
}

func (s *State) queueFor(pod *v1.Pod) *QueueInfo {
	key, ok := KeyOf(pod)
	if !ok {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.queues[nsName{s.queueNS, s.queueOfLocked(&podEntry{pod: pod, key: key})}]
}
