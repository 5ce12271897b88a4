package topology

// A gang's plan is only as good as the scheduler's own filters say it is. The planner proposes
// domains, nodes and GPUs from what it models (GPUs, domains, CPU and memory, the queue's and the
// pods' node rules); before a plan is offered, every member is run through the profile's own
// PreFilter and Filter plugins on its planned node, with the plan's members checked before it
// assumed on their nodes — the technique of the framework's preemption dry run (NodeInfo clones,
// RunPreFilterExtensionAddPod, RunFilterPlugins). Host ports, inter-pod (anti-)affinity, topology
// spread, volumes, DRA and any out-of-tree filter are thus decided by the plugins that own them;
// nothing here re-implements one.
//
// A refused member caps its node at the members of the gang it already accepted (0: the node is
// out), and the gang is planned again with the caps: each pass lowers the cap of every node that
// refused, so the passes end. A refusal that no sibling can have caused (none was assumed
// anywhere yet) is a property of the member and the node: the member is then filtered on every
// node once, and every node that refuses it is out, in the same pass. Refusals are remembered per
// gang with the refused node's generation, so a later attempt (another member's cycle) starts from
// them while that node is unchanged.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
	"github.com/tensorstack/t9k/pkg/topology"
)

// filterRunner is the part of the profile's framework a plan check runs. The handle a plugin is
// built with is its profile's framework, which has these.
type filterRunner interface {
	RunPreFilterPlugins(ctx context.Context, cs fwk.CycleState, pod *v1.Pod) (*framework.PreFilterResult, *fwk.Status, sets.Set[string])
	RunPreFilterExtensionAddPod(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, add fwk.PodInfo, ni fwk.NodeInfo) *fwk.Status
	RunFilterPlugins(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, ni fwk.NodeInfo) *fwk.Status
}

// maxPlanPasses bounds the plan-and-check passes of one attempt. Each pass lowers a refused
// node's cap and the first sibling-independent refusal rules out every refusing node at once, so
// the shapes seen in practice (one member per node: ports, anti-affinity, spread) take two or
// three passes; a gang still refused after this many fails its attempt with the filters' reason,
// and its next attempt resumes from the remembered refusals.
const maxPlanPasses = 12

// refusal is one node the profile's filters refused a member of a gang on.
type refusal struct {
	node   string
	keep   int   // members of the gang the node accepted before refusing (its cap)
	gen    int64 // the node's generation when refused: the refusal holds while it is unchanged
	plugin string
	reason string
	member string
}

// anyGeneration marks a refusal learnt from a member's own cycle (see learn): the gang's own
// members leaving the node change its generation at once, so it holds until the gang's plan is
// accepted or its refusals expire.
const anyGeneration = -1 << 63

// refusals remembers the nodes the filters refused each gang's members on.
type refusals struct {
	mu    sync.Mutex
	gangs map[string]*gangRefusals
}

type gangRefusals struct {
	at    time.Time
	nodes map[string]refusal
}

func newRefusals() *refusals { return &refusals{gangs: map[string]*gangRefusals{}} }

// caps returns the gang's caps, keeping only the refusals of nodes whose generation is unchanged
// (gen returns -1 for a node that is gone). Members of a gang share their template in practice, so
// what one member was refused holds for the others.
func (r *refusals) caps(key string, gen func(string) int64) (map[string]int, []refusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.gangs[key]
	if g == nil {
		return nil, nil
	}
	caps := make(map[string]int, len(g.nodes))
	var kept []refusal
	for name, rf := range g.nodes {
		if rf.gen != anyGeneration && gen(name) != rf.gen {
			delete(g.nodes, name)
			continue
		}
		caps[name] = rf.keep
		kept = append(kept, rf)
	}
	return caps, kept
}

// add records refusals of a gang's members.
func (r *refusals) add(key string, rs ...refusal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	g := r.gangs[key]
	if g == nil {
		g = &gangRefusals{nodes: map[string]refusal{}}
		r.gangs[key] = g
	}
	g.at = time.Now()
	for _, rf := range rs {
		if old, ok := g.nodes[rf.node]; !ok || rf.keep < old.keep || rf.gen != old.gen {
			g.nodes[rf.node] = rf
		}
	}
}

// forget drops a gang's refusals (its plan was accepted, or it is gone).
func (r *refusals) forget(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.gangs, key)
}

// expire drops what gangs not refused for maxAge remembered (gangs that went away).
func (r *refusals) expire(maxAge time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, g := range r.gangs {
		if time.Since(g.at) > maxAge {
			delete(r.gangs, key)
		}
	}
}

// refusedError is a gang that the profile's filters refused: the planner found no place the
// filters accept, or a member fits no node at all (status from its PreFilter).
type refusedError struct {
	reason string
	status *fwk.Status // a member's own PreFilter verdict, when that is what refused it
}

func (e *refusedError) Error() string { return e.reason }

// planChecked plans the gang and checks the plan with the profile's filters, planning again
// around refused nodes until a plan passes (see the top of this file). The returned plan holds
// its GPUs, as planGang's does.
func (p *Topology) planChecked(ctx context.Context, key string, members []groupstate.Member, reqs []memberReq,
	policy topology.Policy, exclude func(string) bool) (*gangPlan, error) {
	runner, ok := p.handle.(filterRunner)
	if !ok || p.handle == nil {
		return p.cache.planGang(key, reqs, policy, exclude, nil)
	}
	pods := make(map[types.UID]*v1.Pod, len(members))
	for _, m := range members {
		pods[m.Pod.UID] = m.Pod
	}
	lister := p.handle.SnapshotSharedLister().NodeInfos()
	gen := func(name string) int64 {
		ni, err := lister.Get(name)
		if err != nil {
			return -1
		}
		return ni.GetGeneration()
	}
	caps, known := p.refused.caps(key, gen)
	for pass := 1; ; pass++ {
		plan, err := p.cache.planGang(key, reqs, policy, exclude, caps)
		if err != nil {
			var unsched *topology.UnschedulableError
			if errors.As(err, &unsched) && len(known) > 0 {
				return nil, &refusedError{reason: unsched.Reason + "; " + describeRefusals(known)}
			}
			return nil, err
		}
		refs, fatal, err := p.checkPlan(ctx, runner, plan, reqs, pods, caps)
		if err != nil || fatal != nil {
			p.cache.dropPlan(key)
			if fatal != nil {
				return nil, fatal
			}
			return nil, err
		}
		if len(refs) == 0 {
			p.refused.forget(key)
			return plan, nil
		}
		p.cache.dropPlan(key)
		for i := range refs {
			refs[i].gen = gen(refs[i].node)
			planRefusals.WithLabelValues(refs[i].plugin).Inc()
		}
		p.refused.add(key, refs...)
		if caps == nil {
			caps = map[string]int{}
		}
		for _, rf := range refs {
			if old, ok := caps[rf.node]; !ok || rf.keep < old {
				caps[rf.node] = rf.keep
			}
		}
		known = append(known, refs...)
		if pass >= maxPlanPasses {
			return nil, &refusedError{reason: fmt.Sprintf("no plan the scheduler's filters accept after %d tries; %s", pass, describeRefusals(known))}
		}
	}
}

// describeRefusals says which filters refused how many nodes, and the last refusal in full.
func describeRefusals(rs []refusal) string {
	byPlugin := map[string]sets.Set[string]{}
	for _, rf := range rs {
		if byPlugin[rf.plugin] == nil {
			byPlugin[rf.plugin] = sets.New[string]()
		}
		byPlugin[rf.plugin].Insert(rf.node)
	}
	parts := make([]string, 0, len(byPlugin))
	for _, name := range sets.List(sets.KeySet(byPlugin)) {
		parts = append(parts, fmt.Sprintf("%s on %d", name, byPlugin[name].Len()))
	}
	last := rs[len(rs)-1]
	return fmt.Sprintf("filters refused members on some nodes (%s); e.g. member %s on %s: %s",
		strings.Join(parts, ", "), last.member, last.node, last.reason)
}

// checkPlan runs each planned member through the profile's PreFilter and Filter plugins on its
// node, with the members checked before it assumed where the plan put them. It returns the
// refusals (a refused member is not assumed), or fatal when a member's own PreFilter refuses it
// everywhere (a missing PVC, say): no plan can help that.
func (p *Topology) checkPlan(ctx context.Context, runner filterRunner, plan *gangPlan, reqs []memberReq,
	pods map[types.UID]*v1.Pod, caps map[string]int) ([]refusal, *refusedError, error) {
	lister := p.handle.SnapshotSharedLister().NodeInfos()
	clones := map[string]fwk.NodeInfo{} // planned nodes with the accepted members added
	closed := map[string]bool{}         // nodes that refused a member: they take no more this pass
	type placed struct {
		info fwk.PodInfo
		node string
	}
	var accepted []placed
	var refs []refusal
	swept := false
	for _, r := range reqs {
		pl, ok := plan.byPod[r.uid]
		pod := pods[r.uid]
		if !ok || pod == nil {
			continue
		}
		node := pl.Node
		if closed[node] {
			continue // re-placed by the next plan, around this node's cap
		}
		cs := framework.NewCycleState()
		groupstate.MarkPlanCheck(cs)
		res, st, _ := runner.RunPreFilterPlugins(ctx, cs, pod)
		if !st.IsSuccess() {
			if st.IsRejected() {
				return nil, &refusedError{reason: fmt.Sprintf("member %s: %s", pod.Name, st.Message()), status: st}, nil
			}
			return nil, nil, st.AsError()
		}
		keep := 0
		for _, a := range accepted {
			if a.node == node {
				keep++
			}
		}
		if res != nil && !res.AllNodes() && !res.NodeNames.Has(node) {
			refs = append(refs, refusal{node: node, keep: 0, plugin: "PreFilter", member: pod.Name,
				reason: "the member's PreFilter result leaves this node out"})
			closed[node] = true
			continue
		}
		for _, a := range accepted {
			if st := runner.RunPreFilterExtensionAddPod(ctx, cs, pod, a.info, clones[a.node]); !st.IsSuccess() {
				return nil, nil, st.AsError()
			}
		}
		ni := clones[node]
		if ni == nil {
			base, err := lister.Get(node)
			if err != nil {
				refs = append(refs, refusal{node: node, plugin: "NodeGone", member: pod.Name, reason: err.Error()})
				closed[node] = true
				continue
			}
			ni = base.Snapshot()
		}
		if st := runner.RunFilterPlugins(ctx, cs, pod, ni); !st.IsSuccess() {
			if !st.IsRejected() {
				return nil, nil, st.AsError()
			}
			refs = append(refs, refusal{node: node, keep: keep, plugin: st.Plugin(), reason: st.Message(), member: pod.Name})
			closed[node] = true
			if len(accepted) == 0 && !swept {
				// Nothing of the gang is assumed anywhere: this refusal is the member's and the
				// node's alone. Filter the member everywhere once, so one pass rules out every node
				// that refuses it, not one node per pass.
				swept = true
				refs = append(refs, p.sweep(ctx, runner, cs, pod, r.gpus, caps, clones)...)
			}
			continue
		}
		cp := *pod
		cp.Spec.NodeName = node
		info, err := framework.NewPodInfo(&cp)
		if err != nil {
			return nil, nil, err
		}
		ni.AddPodInfo(info)
		clones[node] = ni
		accepted = append(accepted, placed{info: info, node: node})
	}
	return refs, nil, nil
}

// sweep filters one member on every node the planner could give it (enough free GPUs, not ruled
// out) and returns a refusal (cap 0) for each node that refuses it. Run in parallel, as the
// framework filters nodes.
func (p *Topology) sweep(ctx context.Context, runner filterRunner, cs fwk.CycleState, pod *v1.Pod, gpus int,
	caps map[string]int, skip map[string]fwk.NodeInfo) []refusal {
	nodes, err := p.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return nil
	}
	out := make([]*refusal, len(nodes))
	p.handle.Parallelizer().Until(ctx, len(nodes), func(i int) {
		ni := nodes[i]
		n := ni.Node()
		if n == nil || skip[n.Name] != nil {
			return
		}
		if c, ok := caps[n.Name]; ok && c == 0 {
			return
		}
		if free, ok := p.cache.freeOn(n.Name); !ok || free < gpus {
			return
		}
		if st := runner.RunFilterPlugins(ctx, cs, pod, ni); !st.IsSuccess() && st.IsRejected() {
			out[i] = &refusal{node: n.Name, plugin: st.Plugin(), reason: st.Message(), member: pod.Name}
		}
	}, Name)
	var refs []refusal
	for _, rf := range out {
		if rf != nil {
			refs = append(refs, *rf)
		}
	}
	return refs
}

// learn records that a planned member failed the profile's filters on its planned node in its own
// cycle, which the plan check let through: the check's assumed siblings are an approximation
// (RunPreFilterExtensionAddPod keeps, for instance, only PodTopologySpread's two least loaded
// domains exact). The node is capped at the gang's members already placed there.
func (p *Topology) learn(pod *v1.Pod, gangKey, node string, st *fwk.Status) {
	gang, ok := p.groups.Gang(pod)
	if !ok || st == nil || !st.IsRejected() || st.Plugin() == Name {
		return
	}
	keep := 0
	for _, m := range gang.Members {
		if m.Node == node && m.Pod.UID != pod.UID {
			keep++
		}
	}
	p.refused.add(gangKey, refusal{node: node, keep: keep, gen: anyGeneration, plugin: st.Plugin(), reason: st.Message(), member: pod.Name})
	planRefusals.WithLabelValues(st.Plugin()).Inc()
}
