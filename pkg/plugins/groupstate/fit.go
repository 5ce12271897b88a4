package groupstate

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
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
//
// It runs once per gang attempt over every node, so it is kept to flat slices: free room only
// for the resources the placed pods ask for (a column added the first time one is asked for), and
// each node's eligibility computed once per set of scheduling constraints (a gang's members
// share their template), not once per member.
type Fitter struct {
	s     *State
	nodes []room
	// dims are the resources tracked, by column.
	dims    []v1.ResourceName
	dimOf   map[v1.ResourceName]int
	gone    []Res // per node: what pods treated as removed request (nil if none)
	elig    []*eligibility
	short   []v1.ResourceName // the resources the last failed Place found no node with enough of
	scratch []int64
	// caps, when set, limits how many members Place may put on a node (what the scheduler's
	// filters refused, see pkg/plugins/placement); placed counts them per node.
	caps   map[string]int
	placed []int
}

// Short returns the resources the last failed placement lacked (nil when it failed for another
// reason, such as no eligible node).
func (f *Fitter) Short() []v1.ResourceName { return f.short }

type room struct {
	ni   fwk.NodeInfo
	node *v1.Node
	free []int64 // by Fitter.dims
	pods int64
}

// eligibility is which nodes pods with one set of scheduling constraints may use.
type eligibility struct {
	pod   *v1.Pod // the first pod seen with these constraints
	queue *QueueInfo
	ok    []bool
	why   []string // why not, per node ("" when ok)
	n     int      // eligible nodes
}

// NewFitter copies the free room of nodes. Pods for which gone returns true are treated as
// already removed (victims being evicted, or preemption candidates).
func (s *State) NewFitter(nodes []fwk.NodeInfo, gone func(*v1.Pod) bool) *Fitter {
	f := &Fitter{nodes: make([]room, 0, len(nodes)), s: s, dimOf: map[v1.ResourceName]int{}}
	for _, ni := range nodes {
		n := ni.Node()
		if n == nil {
			continue
		}
		r := room{ni: ni, node: n, pods: int64(ni.GetAllocatable().GetAllowedPodNumber() - len(ni.GetPods()))}
		var g Res
		if gone != nil {
			for _, pi := range ni.GetPods() {
				if p := pi.GetPod(); gone(p) {
					if g == nil {
						g = Res{}
					}
					g.Add(PodRequests(p))
					r.pods++
				}
			}
		}
		if g != nil && f.gone == nil {
			f.gone = make([]Res, len(nodes))
		}
		if f.gone != nil {
			f.gone[len(f.nodes)] = g
		}
		f.nodes = append(f.nodes, r)
	}
	// One backing array for the usual columns (cpu, memory, one device); a fifth reallocates.
	const dims = 4
	backing := make([]int64, len(f.nodes)*dims)
	for i := range f.nodes {
		f.nodes[i].free = backing[i*dims : i*dims : (i+1)*dims]
	}
	return f
}

// dim returns the column of a resource, filling it in for every node the first time.
func (f *Fitter) dim(name v1.ResourceName) int {
	if d, ok := f.dimOf[name]; ok {
		return d
	}
	d := len(f.dims)
	f.dims = append(f.dims, name)
	f.dimOf[name] = d
	for i := range f.nodes {
		r := &f.nodes[i]
		alloc, req := r.ni.GetAllocatable(), r.ni.GetRequested()
		var v int64
		switch name {
		case v1.ResourceCPU:
			v = alloc.GetMilliCPU() - req.GetMilliCPU()
		case v1.ResourceMemory:
			v = alloc.GetMemory() - req.GetMemory()
		case v1.ResourceEphemeralStorage:
			v = alloc.GetEphemeralStorage() - req.GetEphemeralStorage()
		default:
			if a, ok := alloc.GetScalarResources()[name]; ok {
				v = a - req.GetScalarResources()[name]
			}
		}
		if f.gone != nil && f.gone[i] != nil {
			v += f.gone[i][name]
		}
		r.free = append(r.free, v)
	}
	return d
}

// eligibilityOf returns the eligibility of pod's constraints, computing it on first use.
func (f *Fitter) eligibilityOf(pod *v1.Pod) *eligibility {
	q := f.s.queueFor(pod)
	for _, e := range f.elig {
		if e.queue == q && sameConstraints(e.pod, pod) {
			return e
		}
	}
	e := &eligibility{pod: pod, queue: q, ok: make([]bool, len(f.nodes)), why: make([]string, len(f.nodes))}
	rules := rulesFor(pod, q)
	for i := range f.nodes {
		e.ok[i], e.why[i] = rules.check(f.nodes[i].node)
		if e.ok[i] {
			e.n++
		}
	}
	f.elig = append(f.elig, e)
	return e
}

// sameConstraints: the fields nodeRules reads from the pod are equal.
func sameConstraints(a, b *v1.Pod) bool {
	return a == b || (maps.Equal(a.Spec.NodeSelector, b.Spec.NodeSelector) &&
		equality.Semantic.DeepEqual(a.Spec.Tolerations, b.Spec.Tolerations) &&
		equality.Semantic.DeepEqual(a.Spec.Affinity, b.Spec.Affinity))
}

// Eligible says whether pod may run on n at all by the rules the Fitter applies (unschedulable,
// its queue's nodeSelector, taints, required node affinity), so that other plugins planning for the
// pod (the topology planner) leave out the same nodes.
func (s *State) Eligible(pod *v1.Pod, n *v1.Node) bool {
	ok, _ := rulesFor(pod, s.queueFor(pod)).check(n)
	return ok
}

// FitWhole checks that the members to place fit on the nodes all at once, after what other
// gangs have in flight (a gang half placed keeps its room: taking it would deadlock both), and
// returns why not ("" when they fit). A failure is remembered with the cluster state it saw
// (FitVersion), so the gang's other members fail at once until something changes; what the gang
// lacked is kept for the hints (SetShort).
func (s *State) FitWhole(key GroupKey, toPlace []Member, nodes []fwk.NodeInfo) string {
	inFlight := s.InFlight(key)
	ver := s.FitVersionOf(key, toPlace, nodes, inFlight)
	if msg, ok := s.FitFailure(key, ver); ok {
		return msg
	}
	_, msg := s.FitPlan(key, toPlace, nodes, inFlight, nil)
	s.SetFitFailure(key, ver, msg)
	return msg
}

// FitVersionOf is the state a whole-gang fit of these members on these nodes depends on;
// inFlight is InFlight(key), which the caller hands FitPlan too.
func (s *State) FitVersionOf(key GroupKey, toPlace []Member, nodes []fwk.NodeInfo, inFlight []Member) FitVersion {
	ver := FitVersion{Nodes: len(nodes), InFlight: len(inFlight), Members: len(toPlace)}
	if len(toPlace) > 0 {
		ver.QueueGeneration, ver.PodGroupGeneration = s.specGenerations(key, toPlace[0].Pod)
	}
	for _, ni := range nodes {
		ver.MaxGeneration = max(ver.MaxGeneration, ni.GetGeneration())
	}
	return ver
}

// FitPlan places the members on the nodes all at once, after what other gangs have in flight
// (InFlight(key)), with at most caps[node] members on a listed node, and returns each member's
// node (in toPlace's order), or why they do not fit. Uncached: FitWhole caches.
func (s *State) FitPlan(key GroupKey, toPlace []Member, nodes []fwk.NodeInfo, inFlight []Member, caps map[string]int) ([]string, string) {
	f := s.NewFitter(nodes, nil)
	for _, m := range inFlight {
		f.Place(m)
	}
	if caps != nil {
		f.caps, f.placed = caps, make([]int, len(f.nodes))
	}
	plan, why := f.PlaceAll(toPlace)
	s.SetShort(key, f.Short())
	if why != "" {
		return nil, fmt.Sprintf("cannot place the %d pods the gang needs at once ({%s} in all): %s", len(toPlace), Requests(toPlace), why)
	}
	out := make([]string, len(toPlace))
	for i, m := range toPlace {
		out[i] = plan[m.Pod.Name]
	}
	return out, ""
}

// EligibleFunc is Eligible for many nodes: what depends only on the pod (its queue, its required
// node affinity) is worked out once.
func (s *State) EligibleFunc(pod *v1.Pod) func(n *v1.Node) bool {
	rules := rulesFor(pod, s.queueFor(pod))
	return func(n *v1.Node) bool {
		ok, _ := rules.check(n)
		return ok
	}
}

// nodeRules decides whether a pod may run on a node at all: not cordoned, matching its queue's
// nodeSelector, its taints tolerated, matching its required node affinity. The pod's side is
// worked out once, for checking many nodes.
type nodeRules struct {
	pod      *v1.Pod
	queue    *QueueInfo
	aff      nodeaffinity.RequiredNodeAffinity
	hasAff   bool
	queueWhy string
}

func rulesFor(pod *v1.Pod, q *QueueInfo) *nodeRules {
	r := &nodeRules{pod: pod, queue: q, aff: nodeaffinity.GetRequiredNodeAffinity(pod),
		hasAff: len(pod.Spec.NodeSelector) > 0 || (pod.Spec.Affinity != nil && pod.Spec.Affinity.NodeAffinity != nil)}
	if q != nil && q.NodeSelector != nil {
		r.queueWhy = fmt.Sprintf("not matching queue %s's nodeSelector", q.Queue.Name)
	}
	return r
}

// check says whether the pod may run on n at all, and if not, why (a short phrase for counting).
func (r *nodeRules) check(n *v1.Node) (bool, string) {
	if n.Spec.Unschedulable {
		return false, "unschedulable"
	}
	if r.queueWhy != "" && !r.queue.NodeSelector.Matches(labels.Set(n.Labels)) {
		return false, r.queueWhy
	}
	if _, bad := corev1helpers.FindMatchingUntoleratedTaint(n.Spec.Taints, r.pod.Spec.Tolerations, func(t *v1.Taint) bool {
		return t.Effect == v1.TaintEffectNoSchedule || t.Effect == v1.TaintEffectNoExecute
	}); bad {
		return false, "with an untolerated taint"
	}
	if r.hasAff {
		if ok, _ := r.aff.Match(n); !ok {
			return false, "not matching the pod's node selector/affinity"
		}
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
	e := f.eligibilityOf(m.Pod)
	prim := f.dim(primary(m.Requests))
	// The pod's requests as a column vector; zero requests are left out.
	type want struct {
		d int
		v int64
	}
	wants := make([]want, 0, len(m.Requests))
	for _, name := range sortedKeys(m.Requests) {
		if v := m.Requests[name]; v != 0 {
			wants = append(wants, want{f.dim(name), v})
		}
	}
	f.scratch = slices.Grow(f.scratch[:0], len(f.dims))[:len(f.dims)]
	clear(f.scratch)
	maxFree := f.scratch
	best, capped := -1, 0
	for i := range f.nodes {
		if !e.ok[i] {
			continue
		}
		r := &f.nodes[i]
		if f.caps != nil {
			if c, ok := f.caps[r.node.Name]; ok && f.placed[i] >= c {
				capped++
				continue
			}
		}
		fits := r.pods >= 1
		for _, w := range wants {
			fr := r.free[w.d]
			if fr > maxFree[w.d] {
				maxFree[w.d] = fr
			}
			if fr < w.v {
				fits = false
			}
		}
		if fits && (best < 0 || r.free[prim] < f.nodes[best].free[prim]) {
			best = i
		}
	}
	if best >= 0 {
		r := &f.nodes[best]
		for _, w := range wants {
			r.free[w.d] -= w.v
		}
		r.pods--
		if f.placed != nil {
			f.placed[best]++
		}
		return r.node.Name, ""
	}
	if e.n == 0 {
		excluded := map[string]int{}
		for _, why := range e.why {
			excluded[why]++
		}
		parts := make([]string, 0, len(excluded))
		for _, why := range sortedKeys(excluded) {
			parts = append(parts, fmt.Sprintf("%d %s", excluded[why], why))
		}
		return "", fmt.Sprintf("no eligible node (%s)", strings.Join(parts, ", "))
	}
	if capped == e.n {
		return "", fmt.Sprintf("every one of %d eligible nodes has as many of the gang's members as the scheduler's filters allow", e.n)
	}
	var short []string
	f.short = nil
	for _, w := range wants {
		if name := f.dims[w.d]; w.v > 0 && maxFree[w.d] < w.v {
			f.short = append(f.short, name)
			short = append(short, fmt.Sprintf("needs %s %s, the most free on one of %d eligible nodes is %s",
				Format(name, w.v), name, e.n-capped, Format(name, max(maxFree[w.d], 0))))
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
