// Package placement is the gang placement engine the t9k plugins share: a proposer (the topology
// planner for GPU gangs, groupstate's fitter for the others) suggests a node per member from what
// it models, and the engine checks the proposal with the profile's own PreFilter and Filter
// plugins before it is offered — each member on its proposed node, with the members checked
// before it assumed on theirs, the technique of the framework's preemption dry run (NodeInfo
// clones, RunPreFilterExtensionAddPod, RunFilterPlugins). Host ports, inter-pod (anti-)affinity,
// topology spread, volumes, DRA and any out-of-tree filter are decided by the plugins that own
// them; whole-gang code re-implements none of them.
//
// A refused member caps its node at the members of the gang it already accepted (0: the node is
// out) and the proposer is asked again within the caps: each pass lowers the cap of every node
// that refused, so the passes end. A refusal no sibling can have caused (none was assumed
// anywhere yet) belongs to the member and the node: the member is then filtered on every node
// once, and every node that refuses it is out, in the same pass. Refusals are remembered per gang
// with the refused node's generation, so a later attempt (another member's cycle) starts from them
// while that node is unchanged.
package placement

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

// runner is the part of the profile's framework a check runs. The handle a plugin is built with
// is its profile's framework, which has these.
type runner interface {
	RunPreFilterPlugins(ctx context.Context, cs fwk.CycleState, pod *v1.Pod) (*framework.PreFilterResult, *fwk.Status, sets.Set[string])
	RunPreFilterExtensionAddPod(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, add fwk.PodInfo, ni fwk.NodeInfo) *fwk.Status
	RunFilterPlugins(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, ni fwk.NodeInfo) *fwk.Status
}

// MaxPasses bounds the propose-and-check passes of one attempt. Each pass lowers a refused node's
// cap and the first sibling-independent refusal rules out every refusing node at once, so the
// shapes seen in practice (one member per node: ports, anti-affinity, spread) take two or three
// passes; a gang still refused after this many fails its attempt with the filters' reason, and its
// next attempt resumes from the remembered refusals.
const MaxPasses = 12

// Proposal is a node per member (by UID), in the order the members are to be checked.
type Proposal struct {
	Members []*v1.Pod
	Nodes   []string
}

// Refused is a gang that the profile's filters refused: no proposal they accept within the caps,
// or a member that fits no node at all (Status: its own PreFilter's verdict).
type Refused struct {
	Reason string
	Status *fwk.Status
}

func (e *Refused) Error() string { return e.Reason }

// Engine checks gangs' proposals and remembers what the filters refused. Safe for concurrent use.
type Engine struct {
	h       framework.Handle
	run     runner // nil when the handle is no framework (unit tests): proposals pass unchecked
	mu      sync.Mutex
	refused map[string]*gangRefusals
}

// engines: one per profile (framework handle), shared by the profile's plugins.
var engines sync.Map

// For returns the engine of the profile h belongs to.
func For(h framework.Handle) *Engine {
	if h == nil {
		return New(nil)
	}
	if e, ok := engines.Load(h); ok {
		return e.(*Engine)
	}
	e, _ := engines.LoadOrStore(h, New(h))
	return e.(*Engine)
}

// New returns an engine for a profile (For shares one among its plugins).
func New(h framework.Handle) *Engine {
	e := &Engine{h: h, refused: map[string]*gangRefusals{}}
	if r, ok := h.(runner); ok && h != nil {
		e.run = r
	}
	registerMetrics()
	return e
}

// refusal is one node the profile's filters refused a member of a gang on.
type refusal struct {
	node   string
	keep   int   // members of the gang the node accepted before refusing (its cap)
	gen    int64 // the node's generation when refused: the refusal holds while it is unchanged
	plugin string
	reason string
	member string
}

// anyGeneration marks a refusal learnt from a member's own cycle (Learn): the gang's own members
// leaving the node change its generation at once, so it holds until the gang's proposal is
// accepted or its refusals expire.
const anyGeneration = -1 << 63

type gangRefusals struct {
	at    time.Time
	nodes map[string]refusal
}

// caps returns the gang's caps, keeping only the refusals of nodes whose generation is unchanged.
// Members of a gang share their template in practice, so what one member was refused holds for
// the others.
func (e *Engine) caps(key string, gen func(string) int64) (map[string]int, []refusal) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.refused[key]
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

func (e *Engine) add(key string, rs ...refusal) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.refused[key]
	if g == nil {
		g = &gangRefusals{nodes: map[string]refusal{}}
		e.refused[key] = g
	}
	g.at = time.Now()
	for _, rf := range rs {
		if old, ok := g.nodes[rf.node]; !ok || rf.keep < old.keep || rf.gen != old.gen {
			g.nodes[rf.node] = rf
		}
		Refusals.WithLabelValues(rf.plugin).Inc()
	}
}

// Forget drops a gang's refusals (its proposal was accepted, or it is gone).
func (e *Engine) Forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.refused, key)
}

// Expire drops what gangs not refused for maxAge remembered (gangs that went away).
func (e *Engine) Expire(maxAge time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for key, g := range e.refused {
		if time.Since(g.at) > maxAge {
			delete(e.refused, key)
		}
	}
}

// Learn records that a member failed the profile's filters on its proposed node in its own cycle,
// which the check let through: the check's assumed siblings are an approximation
// (RunPreFilterExtensionAddPod keeps, for instance, only PodTopologySpread's two least loaded
// domains exact). The node is capped at keep, the gang's members already placed there.
func (e *Engine) Learn(key, member, node string, keep int, st *fwk.Status, own sets.Set[string]) {
	if st == nil || !st.IsRejected() || own.Has(st.Plugin()) {
		return
	}
	e.add(key, refusal{node: node, keep: keep, gen: anyGeneration, plugin: st.Plugin(), reason: st.Message(), member: member})
}

// Propose makes a proposal for the gang within caps (nodes listed take at most that many of its
// members), or returns why none exists.
type Propose func(caps map[string]int) (*Proposal, error)

// Options are a proposer's hooks.
type Options struct {
	// Drop undoes what the last proposal holds (a plan's GPUs), before the next pass.
	Drop func()
	// Sweepable says whether the proposer could give the member the node at all, so a sweep of
	// every node filters only those (nil: every node).
	Sweepable func(pod *v1.Pod, node string) bool
}

// Place asks for proposals and checks each with the profile's filters until one passes, which it
// returns; a proposal that fails leaves nothing held (Options.Drop). The error is the proposer's
// (with what the filters refused appended), or *Refused.
func (e *Engine) Place(ctx context.Context, key string, propose Propose, o Options) (*Proposal, error) {
	if e.run == nil {
		return propose(nil)
	}
	lister := e.h.SnapshotSharedLister().NodeInfos()
	gen := func(name string) int64 {
		ni, err := lister.Get(name)
		if err != nil {
			return -1
		}
		return ni.GetGeneration()
	}
	caps, known := e.caps(key, gen)
	for pass := 1; ; pass++ {
		prop, err := propose(caps)
		if err != nil {
			if len(known) > 0 {
				return nil, fmt.Errorf("%w; %s", err, describe(known))
			}
			return nil, err
		}
		refs, err := e.check(ctx, prop, caps, o.Sweepable)
		if err != nil {
			if o.Drop != nil {
				o.Drop()
			}
			return nil, err
		}
		if len(refs) == 0 {
			e.Forget(key)
			return prop, nil
		}
		if o.Drop != nil {
			o.Drop()
		}
		for i := range refs {
			refs[i].gen = gen(refs[i].node)
		}
		e.add(key, refs...)
		if caps == nil {
			caps = map[string]int{}
		}
		for _, rf := range refs {
			if old, ok := caps[rf.node]; !ok || rf.keep < old {
				caps[rf.node] = rf.keep
			}
		}
		known = append(known, refs...)
		if pass >= MaxPasses {
			return nil, &Refused{Reason: fmt.Sprintf("no placement the scheduler's filters accept after %d tries; %s", pass, describe(known))}
		}
	}
}

// IsRefused returns the *Refused in err's chain, if any.
func IsRefused(err error) (*Refused, bool) {
	var r *Refused
	ok := errors.As(err, &r)
	return r, ok
}

// Code is the status a gang refused with err should get: a member's own PreFilter verdict when
// that is what refused it (UnschedulableAndUnresolvable for a missing PVC, say), else
// Unschedulable.
func Code(err error) fwk.Code {
	if r, ok := IsRefused(err); ok && r.Status != nil {
		return r.Status.Code()
	}
	return fwk.Unschedulable
}

// describe says which filters refused how many nodes, and the last refusal in full.
func describe(rs []refusal) string {
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

// check runs each proposed member through the profile's PreFilter and Filter plugins on its
// node, with the members checked before it assumed where the proposal put them. It returns the
// refusals (a refused member is not assumed), or *Refused when a member's own PreFilter refuses
// it everywhere (a missing PVC, say): no proposal can help that.
func (e *Engine) check(ctx context.Context, prop *Proposal, caps map[string]int, sweepable func(*v1.Pod, string) bool) ([]refusal, error) {
	lister := e.h.SnapshotSharedLister().NodeInfos()
	clones := map[string]fwk.NodeInfo{} // proposed nodes with the accepted members added
	closed := map[string]bool{}         // nodes that refused a member: they take no more this pass
	type placed struct {
		info fwk.PodInfo
		node string
	}
	var accepted []placed
	var refs []refusal
	swept := false
	for i, pod := range prop.Members {
		node := prop.Nodes[i]
		if closed[node] {
			continue // placed again by the next proposal, within this node's cap
		}
		cs := framework.NewCycleState()
		groupstate.MarkPlanCheck(cs)
		res, st, _ := e.run.RunPreFilterPlugins(ctx, cs, pod)
		if !st.IsSuccess() {
			if st.IsRejected() {
				return nil, &Refused{Reason: fmt.Sprintf("member %s: %s", pod.Name, st.Message()), Status: st}
			}
			return nil, st.AsError()
		}
		keep := 0
		for _, a := range accepted {
			if a.node == node {
				keep++
			}
		}
		if res != nil && !res.AllNodes() && !res.NodeNames.Has(node) {
			refs = append(refs, refusal{node: node, plugin: "PreFilter", member: pod.Name,
				reason: "the member's PreFilter result leaves this node out"})
			closed[node] = true
			continue
		}
		for _, a := range accepted {
			if st := e.run.RunPreFilterExtensionAddPod(ctx, cs, pod, a.info, clones[a.node]); !st.IsSuccess() {
				return nil, st.AsError()
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
		if st := e.run.RunFilterPlugins(ctx, cs, pod, ni); !st.IsSuccess() {
			if !st.IsRejected() {
				return nil, st.AsError()
			}
			refs = append(refs, refusal{node: node, keep: keep, plugin: st.Plugin(), reason: st.Message(), member: pod.Name})
			closed[node] = true
			if len(accepted) == 0 && !swept {
				// Nothing of the gang is assumed anywhere: this refusal is the member's and the
				// node's alone. Filter the member everywhere once, so one pass rules out every node
				// that refuses it, not one node per pass.
				swept = true
				refs = append(refs, e.sweep(ctx, cs, pod, caps, clones, sweepable)...)
			}
			continue
		}
		cp := *pod
		cp.Spec.NodeName = node
		info, err := framework.NewPodInfo(&cp)
		if err != nil {
			return nil, err
		}
		ni.AddPodInfo(info)
		clones[node] = ni
		accepted = append(accepted, placed{info: info, node: node})
	}
	return refs, nil
}

// sweep filters one member on every node the proposer could give it and not already ruled out,
// and returns a refusal (cap 0) for each node that refuses it. Run in parallel, as the framework
// filters nodes.
func (e *Engine) sweep(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, caps map[string]int,
	skip map[string]fwk.NodeInfo, sweepable func(*v1.Pod, string) bool) []refusal {
	nodes, err := e.h.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return nil
	}
	out := make([]*refusal, len(nodes))
	e.h.Parallelizer().Until(ctx, len(nodes), func(i int) {
		ni := nodes[i]
		n := ni.Node()
		if n == nil || skip[n.Name] != nil {
			return
		}
		if c, ok := caps[n.Name]; ok && c == 0 {
			return
		}
		if sweepable != nil && !sweepable(pod, n.Name) {
			return
		}
		if st := e.run.RunFilterPlugins(ctx, cs, pod, ni); !st.IsSuccess() && st.IsRejected() {
			out[i] = &refusal{node: n.Name, plugin: st.Plugin(), reason: st.Message(), member: pod.Name}
		}
	}, "T9kPlacementSweep")
	var refs []refusal
	for _, rf := range out {
		if rf != nil {
			refs = append(refs, *rf)
		}
	}
	return refs
}
