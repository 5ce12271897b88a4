// Package topology is the T9kTopology scheduler plugin: whole-gang placement into the smallest
// topology domain that fits, and the choice of the exact GPUs (and RDMA NICs) of each pod by their
// interconnect. The algorithms are pkg/topology's; this package feeds them from the scheduler's
// informers and turns their answers into framework results.
//
//   - PreFilter: the first member of a gang (groupstate) to arrive plans the whole gang once on the
//     current state — domain, node and GPUs per member — and holds those GPUs; every member then
//     returns PreFilterResult{NodeNames: {its node}}, so the framework evaluates one node per pod,
//     not thousands. A gang that cannot be placed under its PodGroup's topologyPolicy is
//     unschedulable with the planner's reason.
//   - Filter: a planned pod fits only its planned node; others need enough free GPUs in our cache.
//   - Score: the interconnect quality of the best GPU set each node can offer, then how full of
//     GPUs the node would be (GPU bin-packing among equally good nodes).
//   - PostFilter, Reserve/Unreserve: take or return the GPUs in the cache; a member that fails
//     (Filter, Reserve, Permit, Bind) or is deleted drops its gang's plan in that cycle, so a plan
//     never holds GPUs for members that cannot come.
//   - Bind: bind a GPU pod with its choice (device.tensorstack.dev/gpus and /nics) as annotations
//     on the Binding, which the apiserver copies onto the pod in the same write; the device-agent
//     honours them and the cache is rebuilt from them after a restart. Other pods are left to
//     DefaultBinder. The shipped profiles put T9kTopology first at bind.
//   - PreBind: only when another plugin binds first (a profile without T9kTopology at bind),
//     write the choice with a patch of its own, one more write per pod.
package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/apis/config"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
	"github.com/tensorstack/t9k/pkg/plugins/placement"
	"github.com/tensorstack/t9k/pkg/topology"
)

// Name is the plugin's name in KubeSchedulerConfiguration.
const Name = "T9kTopology"

const stateKey fwk.StateKey = Name

// Topology implements the plugin.
type Topology struct {
	handle   framework.Handle
	groups   *groupstate.State
	cache    *gpuCache
	args     config.T9kTopologyArgs
	resource v1.ResourceName
	nicRes   v1.ResourceName

	binderOnce sync.Once
	binder     bool // T9kTopology is the profile's first Bind plugin

	res *reservations
	// place checks every gang plan with the profile's own filters (pkg/plugins/placement).
	place *placement.Engine
	// prios tells PreFilter whether a plain pod could preempt anything (the State's count, which
	// Reserve and Unreserve keep exact for our pods), and frees what the snapshot's nodes have
	// free (see narrow.go).
	prios *groupstate.Priorities
	frees freeMemo
	// bindSlots bounds the Binding requests in flight. A gang's members are let through Permit
	// together, so hundreds of binds can start at once; kube-apiserver takes 100 streams per
	// HTTP/2 connection, and past that the client dials more connections (a TLS handshake each,
	// dropped again when idle). In a 5000-node gang backlog, with PodGroup events already cut
	// (groupstate's conditionEvent), this bound took the scheduler from 52 sockets and 2275
	// goroutines at its peak to 3 and 1467, and peak RSS from 292 to 277 MiB.
	bindSlots chan struct{}
	// synced: the cache and the gang state have seen every node and pod the scheduler's informers
	// listed at start.
	synced []toolscache.InformerSynced
}

// maxBindsInFlight leaves room under the apiserver's 100 streams per connection for the
// scheduler's other requests (status patches, events, PodGroup writes share the connection).
const maxBindsInFlight = 64

var (
	_ framework.PreFilterPlugin  = &Topology{}
	_ framework.FilterPlugin     = &Topology{}
	_ framework.PostFilterPlugin = &Topology{}
	_ framework.ScorePlugin      = &Topology{}
	_ framework.ReservePlugin    = &Topology{}
	_ framework.PreBindPlugin    = &Topology{}
	_ framework.BindPlugin       = &Topology{}
)

// cycle is what PreFilter learned for the rest of the pod's scheduling cycle.
type cycle struct {
	gpus, nics int
	gang       string       // "" for a pod placed on its own
	node       string       // the planned node of a gang member
	own        *reservation // the reservation of the pod's own group, if it holds one
}

func (c *cycle) Clone() fwk.StateData { return c }

// New builds the plugin and starts feeding its cache from the scheduler's informers.
func New(ctx context.Context, obj runtime.Object, h framework.Handle) (framework.Plugin, error) {
	args, ok := obj.(*config.T9kTopologyArgs)
	if !ok {
		return nil, fmt.Errorf("%s: want args of type T9kTopologyArgs, got %T", Name, obj)
	}
	if err := config.ValidateT9kTopologyArgs(args); err != nil {
		return nil, err
	}
	groups, err := groupstate.For(ctx, h)
	if err != nil {
		return nil, err
	}
	p := &Topology{handle: h, groups: groups, args: *args,
		resource: v1.ResourceName(args.GPUResource), nicRes: v1.ResourceName(args.NICResource),
		bindSlots: make(chan struct{}, maxBindsInFlight)}
	p.cache = newGPUCache(args.Levels, p.resource)
	p.res = newReservations()
	p.place = placement.For(h)
	p.prios = groups.Priorities()
	// Our PreFilter plans GPU gangs as a whole: T9kGang need not fit them over every node again.
	groups.SetPlanner(p.resource)
	if err := p.watch(ctx); err != nil {
		return nil, err
	}
	registerMetrics()
	p.restoreReservations()
	go p.expirePlansEvery(ctx, args.PlanTTL()/2)
	go p.tendReservations(ctx)
	return p, nil
}

// expirePlansEvery drops unclaimed plans even while no gang member is being scheduled (PreFilter
// also expires them). Plans are dropped as soon as a member fails (PostFilter, Unreserve) or is
// deleted; this is the backstop for anything else.
func (p *Topology) expirePlansEvery(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		for _, key := range p.cache.expirePlans(p.args.PlanTTL()) {
			klog.FromContext(ctx).V(4).Info("dropped an unclaimed gang plan", "gang", key)
		}
		p.place.Expire(p.args.PlanTTL())
	}, every)
}

// Name returns the plugin name.
func (p *Topology) Name() string { return Name }

// watch wires nodes and pods (the scheduler's informers) and NodeDevices (a cache of our own) into
// the GPU cache.
func (p *Topology) watch(ctx context.Context) error {
	nodes := p.handle.SharedInformerFactory().Core().V1().Nodes().Informer()
	nodeReg, err := nodes.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: func(o any) { p.onNode(o, false) },
		UpdateFunc: func(old, o any) {
			if !p.nodeChanged(old, o) {
				return // a heartbeat: restating the node would take the cache's lock for nothing
			}
			p.onNode(o, false)
		},
		DeleteFunc: func(o any) { p.onNode(o, true) },
	})
	if err != nil {
		return err
	}
	pods := p.handle.SharedInformerFactory().Core().V1().Pods().Informer()
	podReg, err := pods.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onPod(o, false) },
		UpdateFunc: func(_, o any) { p.onPod(o, false) },
		DeleteFunc: func(o any) { p.onPod(o, true) },
	})
	if err != nil {
		return err
	}
	p.synced = []toolscache.InformerSynced{nodeReg.HasSynced, podReg.HasSynced, p.groups.MembersSynced}
	inf, err := newDevicesInformer(p.handle.KubeConfig())
	if err != nil {
		return err
	}
	if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p.onDevices(o, false) },
		UpdateFunc: func(_, o any) { p.onDevices(o, false) },
		DeleteFunc: func(o any) { p.onDevices(o, true) },
	}); err != nil {
		return err
	}
	go inf.RunWithContext(ctx)
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !toolscache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		return errors.New("NodeDevices informer did not sync within a minute (is the device.tensorstack.dev CRD installed?)")
	}
	return nil
}

func unwrap(o any) any {
	if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		return d.Obj
	}
	return o
}

func (p *Topology) onNode(o any, deleted bool) {
	n, ok := unwrap(o).(*v1.Node)
	if !ok {
		return
	}
	if deleted {
		p.cache.deleteNode(n.Name)
		return
	}
	p.cache.upsertNode(n)
}

// nodeChanged tells whether an update changes what the cache reads of a node: its labels (the
// topology domains) and the GPUs it offers.
func (p *Topology) nodeChanged(old, cur any) bool {
	a, ok1 := old.(*v1.Node)
	b, ok2 := cur.(*v1.Node)
	if !ok1 || !ok2 {
		return true
	}
	qa, qb := a.Status.Allocatable[p.resource], b.Status.Allocatable[p.resource]
	return qa.Cmp(qb) != 0 || !maps.Equal(a.Labels, b.Labels)
}

func (p *Topology) onDevices(o any, deleted bool) {
	v, ok := unwrap(o).(*devicesView)
	if !ok {
		return
	}
	if deleted {
		p.cache.deleteDevices(v.Name)
		return
	}
	p.cache.upsertDevices(v)
}

func (p *Topology) onPod(o any, deleted bool) {
	pod, ok := unwrap(o).(*v1.Pod)
	if !ok {
		return
	}
	if deleted {
		p.cache.forgetPod(pod.UID)
		// A pending member deleted: its gang's plan would hold GPUs for a member that will never
		// claim them (gpusFreed requeues the pods those GPUs can help).
		p.cache.dropPlansOf(pod.UID)
		return
	}
	p.cache.observePod(pod)
}

// PreFilter plans a gang on its first member's arrival and narrows every member to its node.
func (p *Topology) PreFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	if groupstate.PlanCheck(cs) {
		return nil, fwk.NewStatus(fwk.Skip) // the plan being checked holds this member's GPUs
	}
	c := &cycle{gpus: podGPUs(pod, p.resource), nics: podGPUs(pod, p.nicRes)}
	cs.Write(stateKey, c)
	if st := p.checkLevel(cs, pod); st != nil {
		return nil, st
	}
	if c.gpus == 0 {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if key, ok := groupstate.KeyOf(pod); ok {
		c.own = p.res.get(key) // once per cycle, not per node in Filter
	}
	for _, key := range p.cache.expirePlans(p.args.PlanTTL()) {
		klog.FromContext(ctx).V(4).Info("dropped an unclaimed gang plan", "gang", key)
	}
	gang, ok := p.groups.Gang(pod)
	if !ok || gang.MinMember <= 1 && len(gang.Members) <= 1 {
		// A pod of its own: Filter and Score pick its node. In a saturated cluster no node has
		// the GPUs most pending pods ask for, and filtering every node is the dearest way to
		// learn it (at 5000 nodes it was most of the scheduler's time, and pods waited in the
		// active queue behind those attempts). The nodes' own counts answer at once, with the
		// verdict NodeResourcesFit would give every node; Unschedulable leaves preemption on.
		//
		// When only a few nodes have the GPUs, the framework would still run every filter plugin
		// on every node to find them (at 5000 nodes, most of a successful attempt's time). Hand it
		// those nodes, unless PriorityClass preemption could use the others: it only considers
		// nodes inside a PreFilterResult. A pod of a group keeps every node for queue preemption.
		// Where the nodes may not be narrowed, the scan stops at the first node with the GPUs.
		limit := 0
		if !ok && len(nodes) >= minNodesToNarrow && !p.prios.MayPreempt(pod) {
			limit = narrowLimit(len(nodes))
		}
		fit, count := gpuCandidates(nodes, p.resource, c.gpus, limit, &p.frees)
		if count == 0 {
			return nil, fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("%d Insufficient %s", len(nodes), p.resource))
		}
		if fit != nil {
			return &framework.PreFilterResult{NodeNames: fit}, nil
		}
		return nil, nil
	}
	c.gang = gang.Key.String()
	if groupstate.PendingRecorded(cs) {
		// An earlier PreFilter (queue or gang rules) already turned this gang away in this cycle
		// and said why; planning now would only hold GPUs for a gang that is not going anywhere.
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if node, ok := p.cache.placement(c.gang, pod.UID); ok {
		c.node = node
		return &framework.PreFilterResult{NodeNames: nodeSet(node)}, nil
	}
	members := gang.ToPlace(pod)
	reqs := make([]memberReq, 0, len(members))
	for _, m := range members {
		if g := podGPUs(m.Pod, p.resource); g > 0 {
			reqs = append(reqs, memberReq{uid: m.Pod.UID, gpus: g, nics: podGPUs(m.Pod, p.nicRes)})
		}
	}
	policy := p.policyOf(gang.TopologyPolicy)
	exclude := p.excludeReserved(gang, p.res.get(gang.Key), p.excluded(pod, nodes))
	// Members beyond the quorum (an elastic job growing) join their running siblings' domain.
	var near []string
	for _, m := range gang.Members {
		if m.Node != "" {
			near = append(near, m.Node)
		}
	}
	plan, err := p.planChecked(ctx, c.gang, members, reqs, policy, exclude, near)
	if err != nil {
		if refused, ok := placement.IsRefused(err); ok {
			// The scheduler's own filters refused every plan (or a member outright): their
			// reason, which no resource count explains.
			p.groups.RecordPending(cs, gang.Key, schedv1beta1.ReasonUnschedulable, refused.Reason)
			return nil, fwk.NewStatus(placement.Code(err), refused.Reason)
		}
		var unsched *topology.UnschedulableError
		if errors.As(err, &unsched) {
			if msg := p.groups.FitWhole(gang.Key, members, nodes); msg != "" {
				// The gang does not fit even ignoring topology (T9kGang left this fit to us): the
				// resource reason, which names what is short, as T9kGang would have given it.
				p.groups.RecordPending(cs, gang.Key, schedv1beta1.ReasonUnschedulable, msg)
				return nil, fwk.NewStatus(fwk.Unschedulable, msg)
			}
			// It fits but not in one domain: GPUs coming free (on a node with room for a
			// member) are what can help; T9kGang's hint reads this.
			p.groups.SetShort(gang.Key, []v1.ResourceName{p.resource, v1.ResourceCPU, v1.ResourceMemory})
			// The planner's reason is the one a person can act on ("needs 40 GPUs (5 pods x 8) in
			// one block; best block b1 has 32 free"): put it on the PodGroup before a generic one.
			// A Required level that no domain can satisfy is not for preemption to fix (its victim
			// search does not know domains); a plain shortage of GPUs is.
			// err.Error() is the planner's reason with what the filters refused, if anything.
			if policy.Mode == topology.PolicyRequired {
				p.groups.RecordPending(cs, gang.Key, schedv1beta1.ReasonTopologyUnsatisfiable, err.Error())
				return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, err.Error())
			}
			p.groups.RecordPending(cs, gang.Key, schedv1beta1.ReasonUnschedulable, err.Error())
			return nil, fwk.NewStatus(fwk.Unschedulable, err.Error())
		}
		return nil, fwk.AsStatus(err)
	}
	placed, ok := plan.byPod[pod.UID]
	if !ok {
		return nil, fwk.NewStatus(fwk.Error, "gang plan has no place for this member")
	}
	klog.FromContext(ctx).V(3).Info("planned gang", "gang", c.gang, "domain", plan.domain.Name, "members", len(reqs))
	c.node = placed.Node
	return &framework.PreFilterResult{NodeNames: nodeSet(placed.Node)}, nil
}

// checkLevel keeps a gang whose Required level is not one of the configured levels pending, with
// a reason that names the level and the levels there are (GPU gangs and CPU-only gangs alike):
// nothing a person can do about the cluster would help it.
func (p *Topology) checkLevel(cs fwk.CycleState, pod *v1.Pod) *fwk.Status {
	key, ok := groupstate.KeyOf(pod)
	if !ok || key.Pod {
		return nil
	}
	gang, _ := p.groups.Gang(pod)
	tp := gang.TopologyPolicy
	if tp == nil || tp.Mode != schedv1beta1.TopologyRequired || slices.Contains(p.args.Levels, tp.Level) {
		return nil
	}
	msg := fmt.Sprintf("unknown topology level %q; configured levels: %s", tp.Level, strings.Join(p.args.Levels, ", "))
	p.groups.RecordPending(cs, key, schedv1beta1.ReasonUnknownTopologyLevel, msg)
	return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
}

// excluded returns the nodes the gang must not be planned on: those the pod may not use at all
// (its queue's nodeSelector, taints, node affinity, cordoned: the gang plugin's rules) and those
// without the CPU and memory one member asks for. Members of one gang share their template in
// practice, so the first member speaks for all; the real Filter plugins still check each one.
// One pass over the snapshot's slice, keeping only the (usually few) excluded names: the planner
// asks about every node of the domains it packs, all of them for a gang without a policy.
func (p *Topology) excluded(pod *v1.Pod, nodes []fwk.NodeInfo) func(string) bool {
	req := groupstate.PodRequests(pod)
	cpu, mem := req[v1.ResourceCPU], req[v1.ResourceMemory]
	eligible := p.groups.EligibleFunc(pod)
	out := make(map[string]bool)
	for _, ni := range nodes {
		n := ni.Node()
		if n == nil {
			continue
		}
		alloc, used := ni.GetAllocatable(), ni.GetRequested()
		if alloc.GetMilliCPU()-used.GetMilliCPU() < cpu || alloc.GetMemory()-used.GetMemory() < mem || !eligible(n) {
			out[n.Name] = true
		}
	}
	if len(out) == 0 {
		return nil
	}
	return func(name string) bool { return out[name] }
}

// policyOf maps the PodGroup's policy to the planner's; unset is None.
func (p *Topology) policyOf(tp *schedv1beta1.TopologyPolicy) topology.Policy {
	if tp == nil {
		return topology.Policy{Mode: topology.PolicyNone}
	}
	switch tp.Mode {
	case schedv1beta1.TopologyPreferred:
		return topology.Policy{Mode: topology.PolicyPreferred}
	case schedv1beta1.TopologyRequired:
		return topology.Policy{Mode: topology.PolicyRequired, Level: tp.Level}
	}
	return topology.Policy{Mode: topology.PolicyNone}
}

func nodeSet(n string) sets.Set[string] { return sets.New(n) }

// PreFilterExtensions is not needed: our Filter reads the GPU cache, not the cycle's pod set.
func (p *Topology) PreFilterExtensions() framework.PreFilterExtensions { return nil }

func readCycle(cs fwk.CycleState) *cycle {
	d, err := cs.Read(stateKey)
	if err != nil {
		return nil
	}
	c, _ := d.(*cycle)
	return c
}

// Filter keeps a planned member to its node and every GPU pod to nodes with enough free GPUs.
func (p *Topology) Filter(_ context.Context, cs fwk.CycleState, pod *v1.Pod, ni fwk.NodeInfo) *fwk.Status {
	c := readCycle(cs)
	if c == nil || c.gpus == 0 {
		return nil
	}
	name := ni.Node().Name
	if c.node != "" {
		if name != c.node {
			return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "not the node planned for this gang member")
		}
		return nil // the plan holds the GPUs
	}
	// NodeResourcesFit's verdict on the GPUs, from the node's snapshot, before anything else: the
	// profiles run this Filter first, so on a node without the GPUs (most nodes of a saturated
	// cluster) the framework stops here, where NodeResourcesFit would check every resource of the
	// pod (a third of the scheduler's time at 5000 nodes). Preemption's dry runs and nominated
	// pods change the snapshot, so they are seen as NodeResourcesFit sees them.
	snapFree := snapshotFree(ni, p.resource)
	if snapFree < int64(c.gpus) {
		return fwk.NewStatus(fwk.Unschedulable, "Insufficient "+string(p.resource))
	}
	// Where the snapshot shows more GPUs free than the cache, the cache lags (see lagging).
	free, ok := p.cache.freeOn(name)
	if ok && free < c.gpus && snapFree > int64(free) {
		p.cache.reap(name, p.alive)
		free, ok = p.cache.freeOn(name)
	}
	// Only when the node's snapshot shows more GPUs free than the cache (a dry run removed
	// victims, or the cache lags) is the slower per-pod count worth it: a node simply full (most
	// nodes under GPU packing) is answered from the cache alone.
	if ok && free < c.gpus && snapFree > int64(free) {
		// A preemption dry run (DefaultPreemption for plain pods) removes its victims from its
		// copy of the node, not from this cache: count their GPUs as free too. Reserve picks the
		// real GPUs from the cache, once the victims are gone.
		present := make(map[types.UID]bool, len(ni.GetPods()))
		for _, pi := range ni.GetPods() {
			present[pi.GetPod().UID] = true
		}
		free, ok = p.cache.freeOnWithout(name, present)
	}
	if !ok || free < c.gpus {
		return fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("node has %d free %s with a usable topology, pod needs %d", free, p.resource, c.gpus))
	}
	if why := p.blockedByReservation(pod, name, c.gpus, free); why != "" {
		return fwk.NewStatus(fwk.Unschedulable, why)
	}
	if c.own != nil {
		if _, in := c.own.need[name]; !in {
			return fwk.NewStatus(fwk.Unschedulable, "the pod waits for its reservation on "+c.own.describeDomain())
		}
	}
	return nil
}

// PostFilter runs when this pod fit no node: a gang member that failed on its planned node (a
// filter the planner does not model: host ports, inter-pod affinity, volumes) drops its gang's
// plan in this very cycle, so the GPUs held for the members still to come are free for others at
// once; the next attempt plans afresh. Configured first among PostFilter plugins, so a preemption
// plugin cannot end the chain before it. It never makes the pod schedulable itself.
func (p *Topology) PostFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, m framework.NodeToStatusReader) (*framework.PostFilterResult, *fwk.Status) {
	c := readCycle(cs)
	if c != nil && c.gang != "" {
		if c.node != "" && m != nil {
			p.learn(pod, c.gang, c.node, m.Get(c.node))
		}
		p.cache.dropPlan(c.gang)
	}
	if c != nil && c.gpus > 0 {
		p.considerReservation(ctx, pod)
	}
	return nil, fwk.NewStatus(fwk.Unschedulable)
}

// considerReservation gives a gang (or a queue's single pod) that could not be placed a
// reservation once it has waited long enough (see reserve.go). Plain pods (no queue) never get
// one: they keep kube-scheduler's behaviour.
func (p *Topology) considerReservation(ctx context.Context, pod *v1.Pod) {
	gang, ok := p.groups.Gang(pod)
	if !ok || p.res.get(gang.Key) != nil || p.handle == nil || !p.dueReservation(gang) {
		return
	}
	members := gang.ToPlace(pod)
	tg := topology.Gang{Policy: p.policyOf(gang.TopologyPolicy)}
	for _, m := range members {
		if g := podGPUs(m.Pod, p.resource); g > 0 {
			tg.Groups = append(tg.Groups, topology.MemberGroup{Name: m.Pod.Name, Count: 1, GPUs: g})
		}
	}
	if len(tg.Groups) == 0 {
		return
	}
	nodes, err := p.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return
	}
	tg.Exclude = p.excluded(pod, nodes)
	if r := p.maybeReserve(ctx, gang, tg); r != nil {
		klog.FromContext(ctx).V(4).Info("Gang holds a reservation", "gang", gang.Key, "reservation", r.String())
	}
}

// Score rates the interconnect of the best GPU set the node can offer, and the node's fullness.
func (p *Topology) Score(_ context.Context, cs fwk.CycleState, _ *v1.Pod, ni fwk.NodeInfo) (int64, *fwk.Status) {
	c := readCycle(cs)
	if c == nil || c.gpus == 0 || c.node != "" {
		return 0, nil
	}
	return p.cache.score(ni.Node().Name, c.gpus, c.nics), nil
}

// ScoreExtensions normalises raw scores to the framework's range.
func (p *Topology) ScoreExtensions() framework.ScoreExtensions { return p }

// NormalizeScore maps raw scores to [0, MaxNodeScore]: best interconnect first, then the fullest
// node (bin-packing GPUs, so fewer fragments are left that no pending shape fits).
func (p *Topology) NormalizeScore(_ context.Context, _ fwk.CycleState, _ *v1.Pod, scores framework.NodeScoreList) *fwk.Status {
	raw := make([]int64, len(scores))
	for i := range scores {
		raw[i] = scores[i].Score
	}
	for i, s := range normalize(raw, framework.MaxNodeScore) {
		scores[i].Score = s
	}
	return nil
}

// Reserve takes the pod's GPUs in the cache: its planned set, or the best set on the node.
func (p *Topology) Reserve(_ context.Context, cs fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	p.prios.Hold(pod) // every pod: any of them may be a later pod's preemption victim
	c := readCycle(cs)
	if c == nil || c.gpus == 0 {
		return nil
	}
	if free, ok := p.cache.freeOn(node); ok && free < c.gpus && p.handle != nil {
		if ni, err := p.handle.SnapshotSharedLister().NodeInfos().Get(node); err == nil && p.lagging(ni, free) {
			p.cache.reap(node, p.alive)
		}
	}
	if _, err := p.cache.reserve(pod, node, c.gpus, c.nics); err != nil {
		if c.gang != "" {
			p.cache.dropPlan(c.gang)
		}
		return fwk.NewStatus(fwk.Unschedulable, err.Error())
	}
	return nil
}

// lagging says whether the scheduler's snapshot of a node shows more GPUs free than this cache
// does: a GPU pod's deletion the scheduler has handled and this cache not yet (see reap).
func (p *Topology) lagging(ni fwk.NodeInfo, cacheFree int) bool {
	return snapshotFree(ni, p.resource) > int64(cacheFree)
}

// snapshotFree is how much of res the scheduler's snapshot of the node shows free.
func snapshotFree(ni fwk.NodeInfo, res v1.ResourceName) int64 {
	return ni.GetAllocatable().GetScalarResources()[res] - ni.GetRequested().GetScalarResources()[res]
}

// alive says whether the informer's store still has this pod, not finished.
func (p *Topology) alive(pod *v1.Pod) bool {
	if p.handle == nil {
		return true
	}
	cur, err := p.handle.SharedInformerFactory().Core().V1().Pods().Lister().Pods(pod.Namespace).Get(pod.Name)
	return err == nil && cur.UID == pod.UID && cur.Status.Phase != v1.PodSucceeded && cur.Status.Phase != v1.PodFailed
}

// Unreserve returns the pod's GPUs; a member failing after its gang was planned drops the plan so
// the gang is planned afresh on its next attempt.
func (p *Topology) Unreserve(_ context.Context, cs fwk.CycleState, pod *v1.Pod, _ string) {
	p.prios.Release(pod.UID)
	p.cache.forgetPod(pod.UID)
	if c := readCycle(cs); c != nil && c.gang != "" {
		p.cache.dropPlan(c.gang)
	}
}

// binds reports whether this plugin is the profile's first Bind plugin, so GPU pods reach Bind
// here. Asked at the first PreBind: the framework lists its plugins only once all are built.
func (p *Topology) binds() bool {
	p.binderOnce.Do(func() {
		if l, ok := p.handle.(interface{ ListPlugins() *schedconfig.Plugins }); ok {
			en := l.ListPlugins().Bind.Enabled
			p.binder = len(en) > 0 && en[0].Name == Name
		}
	})
	return p.binder
}

// PreBindPreFlight says whether PreBind has work: only for pods holding GPUs when another plugin
// binds.
func (p *Topology) PreBindPreFlight(_ context.Context, cs fwk.CycleState, _ *v1.Pod, _ string) *fwk.Status {
	if c := readCycle(cs); c == nil || c.gpus == 0 || p.binds() {
		return fwk.NewStatus(fwk.Skip)
	}
	return nil
}

// choice returns the annotations naming the GPUs and NICs reserved for the pod on node.
func (p *Topology) choice(pod *v1.Pod, node string) (map[string]string, *fwk.Status) {
	a, ok := p.cache.held(pod.UID)
	if !ok || a.node != node {
		return nil, fwk.NewStatus(fwk.Error, "no GPUs reserved for the pod on "+node)
	}
	gpus, nics := p.cache.describe(a)
	return map[string]string{devicev1beta1.AnnotationGPUs: gpus, devicev1beta1.AnnotationNICs: nics}, nil
}

// PreBind writes the chosen GPUs (index:UUID) and NICs on the pod before another plugin binds it,
// so the device-agent hands exactly those to the container.
func (p *Topology) PreBind(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	c := readCycle(cs)
	if c == nil || c.gpus == 0 || p.binds() {
		return nil
	}
	ann, st := p.choice(pod, node)
	if st != nil {
		return st
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": ann}})
	if err != nil {
		return fwk.AsStatus(err)
	}
	_, err = p.handle.ClientSet().CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fwk.AsStatus(fmt.Errorf("annotating GPUs: %w", err))
	}
	return nil
}

// Bind binds a GPU pod with its GPU and NIC choice as annotations of the Binding: one write, where
// a patch and a bind would be two. Pods without GPUs are skipped for DefaultBinder.
func (p *Topology) Bind(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	c := readCycle(cs)
	if c == nil || c.gpus == 0 {
		return fwk.NewStatus(fwk.Skip)
	}
	ann, st := p.choice(pod, node)
	if st != nil {
		return st
	}
	b := &v1.Binding{
		ObjectMeta: metav1.ObjectMeta{Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, Annotations: ann},
		Target:     v1.ObjectReference{Kind: "Node", Name: node},
	}
	select {
	case p.bindSlots <- struct{}{}:
		defer func() { <-p.bindSlots }()
	case <-ctx.Done():
		return fwk.AsStatus(ctx.Err())
	}
	if err := p.handle.ClientSet().CoreV1().Pods(pod.Namespace).Bind(ctx, b, metav1.CreateOptions{}); err != nil {
		return fwk.AsStatus(fmt.Errorf("binding with GPUs %s: %w", ann[devicev1beta1.AnnotationGPUs], err))
	}
	return nil
}
