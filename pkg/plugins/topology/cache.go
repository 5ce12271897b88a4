package topology

import (
	"fmt"
	"math/bits"
	"sort"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/topology"
)

// allocation is the GPUs one pod (or one planned gang member not yet reserved) holds on a node.
type allocation struct {
	node string
	gpus []int
	nics []int
}

// nodeState is what the cache knows about one node.
type nodeState struct {
	node    *v1.Node
	devices *devicesView // nil without NodeDevices
	gpus    int
}

// topo is the node's GPU interconnect, nil without one.
func (st *nodeState) topo() *topology.GPUTopology {
	if st.devices == nil {
		return nil
	}
	return st.devices.topo
}

// gangPlan is a whole-gang placement made at the first member's PreFilter. Its GPUs are taken in
// the cluster at once under placeholder owners, so no other pod can take them while the other
// members come through their scheduling cycles; each member's Reserve turns its placeholder into
// its own allocation.
type gangPlan struct {
	// byPod maps a member to its placement; members are matched to placements when planned.
	byPod   map[types.UID]topology.Placement
	created time.Time
	domain  topology.DomainInfo
}

// gpuCache mirrors the cluster's GPUs for planning: the domain tree with free GPUs per domain, each
// node's GPU interconnect, which pod holds which GPUs, and the live gang plans. It is fed by
// informers (nodes, NodeDevices, pods) and by the plugin's Reserve/Unreserve. All methods lock.
type gpuCache struct {
	// mu is a RWMutex because Filter and Score run for many nodes in parallel and only read.
	mu       sync.RWMutex
	resource v1.ResourceName
	cluster  *topology.Cluster
	nodes    map[string]*nodeState
	// owners: GPUs held by bound or reserved pods, and placeholders of planned members.
	owners map[types.UID]allocation
	plans  map[string]*gangPlan
	// oldestPlan is no later than the creation of every plan in plans (exact after expirePlans
	// scans them, earlier once the oldest is dropped), so that expirePlans, called in every GPU
	// pod's PreFilter, looks at one time instead of every plan (hundreds of fully claimed plans
	// live out their TTL in a busy cluster).
	oldestPlan time.Time
	// podsOn are the GPU pods bound to each node, kept so that a node or NodeDevices arriving
	// after its pods (informers deliver in no particular order) recounts them.
	podsOn  map[string]map[types.UID]*v1.Pod
	podNode map[types.UID]string
}

func newGPUCache(levels []string, resource v1.ResourceName) *gpuCache {
	return &gpuCache{
		resource: resource,
		cluster:  topology.NewCluster(levels, nil),
		nodes:    map[string]*nodeState{},
		owners:   map[types.UID]allocation{},
		plans:    map[string]*gangPlan{},
		podsOn:   map[string]map[types.UID]*v1.Pod{},
		podNode:  map[types.UID]string{},
	}
}

// placeholderUID names the GPUs a plan holds for a member until its Reserve.
func placeholderUID(pod types.UID) types.UID { return "plan:" + pod }

// upsertNode records a node add or update.
func (c *gpuCache) upsertNode(n *v1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.nodes[n.Name]
	if st == nil {
		st = &nodeState{}
		c.nodes[n.Name] = st
	}
	st.node = n
	c.syncNodeLocked(n.Name, st)
}

func (c *gpuCache) deleteNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.nodes[name]; st != nil {
		st.node = nil
		if st.devices == nil {
			delete(c.nodes, name)
		}
	}
	c.cluster.RemoveNode(name)
}

// upsertDevices records the NodeDevices of a node (named after it).
func (c *gpuCache) upsertDevices(v *devicesView) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.nodes[v.Name]
	if st == nil {
		st = &nodeState{}
		c.nodes[v.Name] = st
	}
	st.devices = v
	if st.node != nil {
		c.syncNodeLocked(v.Name, st)
	}
}

func (c *gpuCache) deleteDevices(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.nodes[name]
	if st == nil {
		return
	}
	st.devices = nil
	if st.node == nil {
		delete(c.nodes, name)
		return
	}
	c.syncNodeLocked(name, st)
}

// syncNodeLocked (re)states the node in the cluster: its GPU count is the allocatable of the GPU
// resource (NodeDevices may list GPUs the kubelet does not offer, e.g. unhealthy ones, which are
// marked used), plus every GPU held by an owner on it.
func (c *gpuCache) syncNodeLocked(name string, st *nodeState) {
	q := st.node.Status.Allocatable[c.resource]
	st.gpus = int(q.Value())
	topo := st.topo()
	if topo != nil && topo.NumGPUs() < st.gpus {
		topo = nil // the devices object is behind the kubelet's view; plan without interconnect
	}
	n := st.gpus
	if topo != nil {
		n = topo.NumGPUs()
	}
	var used []int
	if topo != nil {
		for _, pos := range st.devices.unhealthy {
			if pos < n {
				used = append(used, pos)
			}
		}
	}
	for _, a := range c.owners {
		if a.node == name {
			used = append(used, a.gpus...)
		}
	}
	used = dedupe(used)
	// GPUs beyond what the kubelet offers are not ours to give.
	for i := n - 1; topo != nil && len(used) < n-st.gpus && i >= 0; i-- {
		if !contains(used, i) {
			used = append(used, i)
		}
	}
	_ = c.cluster.SetNode(topology.NodeSpec{
		Name: name, Labels: st.node.Labels, Topology: topo, GPUCount: n, UsedGPUs: used,
	})
	for _, pod := range c.podsOn[name] {
		c.observePodLocked(pod)
	}
}

// podGPUs is the number of GPUs a pod asks for (limits win, as for extended resources).
func podGPUs(pod *v1.Pod, res v1.ResourceName) int {
	total := 0
	for _, ctr := range pod.Spec.Containers {
		q, ok := ctr.Resources.Limits[res]
		if !ok {
			q = ctr.Resources.Requests[res]
		}
		total += int(q.Value())
	}
	for _, ctr := range pod.Spec.InitContainers {
		q, ok := ctr.Resources.Limits[res]
		if !ok {
			q = ctr.Resources.Requests[res]
		}
		if int(q.Value()) > total {
			total = int(q.Value())
		}
	}
	return total
}

// observePod records an assigned pod from the informer: a pod bound with our annotation holds
// exactly those GPUs (this is how the cache is rebuilt after a restart); a pod bound without one
// (another scheduler, or before PreBind's patch is seen) holds its count of the lowest free GPUs so
// capacity stays right. A terminal pod holds nothing.
func (c *gpuCache) observePod(pod *v1.Pod) {
	if pod.Spec.NodeName == "" {
		return
	}
	if pod.Status.Phase == v1.PodSucceeded || pod.Status.Phase == v1.PodFailed {
		c.forgetPod(pod.UID)
		return
	}
	if podGPUs(pod, c.resource) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observePodLocked(pod)
}

func (c *gpuCache) observePodLocked(pod *v1.Pod) {
	want := podGPUs(pod, c.resource)
	node := pod.Spec.NodeName
	if old, ok := c.podNode[pod.UID]; ok && old != node {
		delete(c.podsOn[old], pod.UID)
	}
	if c.podsOn[node] == nil {
		c.podsOn[node] = map[types.UID]*v1.Pod{}
	}
	c.podsOn[node][pod.UID], c.podNode[pod.UID] = pod, node
	annotated := c.annotatedLocked(pod)
	if have, ok := c.owners[pod.UID]; ok && have.node == node && (annotated == nil || equalInts(annotated, have.gpus)) {
		return
	}
	c.releaseLocked(pod.UID)
	free, ok := c.cluster.FreeGPUs(node)
	if !ok {
		return // counted when the node arrives
	}
	gpus := annotated
	for _, g := range gpus {
		if !contains(free, g) {
			gpus = nil // claimed GPUs already taken: count capacity, not indices
			break
		}
	}
	if gpus == nil {
		if len(free) < want {
			return // overcommitted node: nothing sensible to hold
		}
		gpus = free[:want]
	}
	if err := c.cluster.Allocate(node, gpus, nil); err == nil {
		c.owners[pod.UID] = allocation{node: node, gpus: gpus}
	}
}

// annotatedLocked returns the topology positions of the GPUs the pod's annotation names, nil when
// it has none (or one that does not parse or names GPUs the node lacks).
func (c *gpuCache) annotatedLocked(pod *v1.Pod) []int {
	ann, err := devicev1beta1.ParseGPUAnnotation(pod.Annotations[devicev1beta1.AnnotationGPUs])
	if err != nil || len(ann) == 0 {
		return nil
	}
	out := make([]int, 0, len(ann))
	for _, g := range ann {
		pos := c.positionLocked(pod.Spec.NodeName, int(g.Index))
		if pos < 0 {
			return nil
		}
		out = append(out, pos)
	}
	return dedupe(out)
}

// positionLocked maps a device index on a node to the topology position (identity without
// NodeDevices).
func (c *gpuCache) positionLocked(node string, index int) int {
	if st := c.nodes[node]; st != nil && st.topo() != nil {
		for pos, ix := range st.devices.index {
			if ix == index {
				return pos
			}
		}
		return -1
	}
	return index
}

func (c *gpuCache) forgetPod(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseLocked(uid)
	if node, ok := c.podNode[uid]; ok {
		delete(c.podNode, uid)
		delete(c.podsOn[node], uid)
		if len(c.podsOn[node]) == 0 {
			delete(c.podsOn, node)
		}
	}
}

func (c *gpuCache) releaseLocked(uid types.UID) {
	a, ok := c.owners[uid]
	if !ok {
		return
	}
	delete(c.owners, uid)
	_ = c.cluster.Release(a.node, a.gpus, nil)
}

// reserve gives pod the GPUs of its planned placement (turning the placeholder into its own) or,
// without a plan, the best set on node. It returns the allocation made.
func (c *gpuCache) reserve(pod *v1.Pod, node string, want, wantNICs int) (allocation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.owners[pod.UID]; ok {
		if a.node == node {
			return a, nil
		}
		c.releaseLocked(pod.UID)
	}
	if ph, ok := c.owners[placeholderUID(pod.UID)]; ok && ph.node == node {
		delete(c.owners, placeholderUID(pod.UID))
		c.owners[pod.UID] = ph
		return ph, nil
	}
	c.releaseLocked(placeholderUID(pod.UID))
	st := c.nodes[node]
	free, ok := c.cluster.FreeGPUs(node)
	if st == nil || !ok || len(free) < want {
		return allocation{}, fmt.Errorf("node %s has %d free %s, pod needs %d", node, len(free), c.resource, want)
	}
	a := allocation{node: node, gpus: free[:want]}
	if st.topo() != nil {
		if ch, ok := st.topo().Choose(maskOf(free), topology.GPURequest{GPUs: want, NICs: wantNICs}); ok {
			a.gpus, a.nics = ch.GPUs, ch.NICs
		}
	}
	if err := c.cluster.Allocate(node, a.gpus, nil); err != nil {
		return allocation{}, err
	}
	c.owners[pod.UID] = a
	return a, nil
}

// held returns the GPUs a pod holds.
func (c *gpuCache) held(uid types.UID) (allocation, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	a, ok := c.owners[uid]
	return a, ok
}

// freeOn returns the node's free GPU count, false for a node the cache does not know.
func (c *gpuCache) freeOn(node string) (int, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	free, ok := c.cluster.FreeMask(node)
	return bits.OnesCount64(free), ok
}

// reap forgets the bound pods on node that alive says are gone. The scheduler requeues a pod on
// a deletion as soon as its own handler has run, which may be before this cache's handler has:
// reading the informer's store (updated before any handler runs) closes that gap, so the retry
// does not fail on GPUs that are in fact free.
func (c *gpuCache) reap(node string, alive func(*v1.Pod) bool) {
	c.mu.RLock()
	var gone []types.UID
	for uid, pod := range c.podsOn[node] {
		if !alive(pod) {
			gone = append(gone, uid)
		}
	}
	c.mu.RUnlock()
	for _, uid := range gone {
		c.forgetPod(uid)
	}
}

// freeOnWithout is freeOn plus the GPUs of bound pods on the node that present does not list:
// pods a preemption dry run has removed from its copy of the node.
func (c *gpuCache) freeOnWithout(node string, present map[types.UID]bool) (int, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	free, ok := c.cluster.FreeMask(node)
	if !ok {
		return 0, false
	}
	n := bits.OnesCount64(free)
	for uid := range c.podsOn[node] {
		if a, held := c.owners[uid]; held && a.node == node && !present[uid] {
			n += len(a.gpus)
		}
	}
	return n, true
}

// score rates a node for a pod of want GPUs: the interconnect quality of the best set it can offer
// now, and, in the low fullnessBits, how full of GPUs the node would be with the pod (so that
// among nodes of equal quality the fullest wins, and whole nodes stay free for whole-node pods and
// gangs). 0 when it cannot hold the pod.
func (c *gpuCache) score(node string, want, wantNICs int) int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st := c.nodes[node]
	free, ok := c.cluster.FreeMask(node)
	nfree := bits.OnesCount64(free)
	if st == nil || !ok || nfree < want || st.gpus <= 0 {
		return 0
	}
	var quality int64
	if st.topo() != nil {
		q, ok := st.topo().Score(free, topology.GPURequest{GPUs: want, NICs: wantNICs})
		if !ok {
			return 0
		}
		quality = q.NodeScore()
	}
	used := st.gpus - (nfree - want)
	return quality<<fullnessBits | int64(max(1, used*fullnessMax/st.gpus))
}

// fullnessBits hold a node's GPU fullness after placement, 0..fullnessMax, under the quality.
const (
	fullnessBits = 4
	fullnessMax  = 1<<fullnessBits - 1
)

// normalize maps raw scores (see score) to [0, max]: quality first, then fullness. Nodes offering
// the best quality get the upper half, ordered by fullness; the others the lower half, ordered by
// quality alone, so a better-connected GPU set always wins over packing.
func normalize(raw []int64, max int64) []int64 {
	var best int64
	for _, s := range raw {
		best = maxOf(best, s>>fullnessBits)
	}
	out := make([]int64, len(raw))
	half := max / 2
	for i, s := range raw {
		q, full := s>>fullnessBits, s&fullnessMax
		switch {
		case s == 0:
			out[i] = 0
		case q == best:
			out[i] = half + (max-half)*full/fullnessMax
		default:
			out[i] = (half - 1) * q / best
		}
	}
	return out
}

func maxOf(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

// reservation chooses a reservation for a gang on the current state (pkg/topology Reserve).
func (c *gpuCache) reservation(g topology.Gang) (*topology.Reservation, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cluster.Reserve(g, nil)
}

// podsOnNode returns the GPU pods the cache counts on a node.
func (c *gpuCache) podsOnNode(node string) []*v1.Pod {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]*v1.Pod, 0, len(c.podsOn[node]))
	for _, p := range c.podsOn[node] {
		out = append(out, p)
	}
	return out
}

// describe renders an allocation for the pod annotations: "0:GPU-…,3:GPU-…" and NIC names.
func (c *gpuCache) describe(a allocation) (gpus, nics string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st := c.nodes[a.node]
	refs := make([]devicev1beta1.GPURef, len(a.gpus))
	for i, pos := range a.gpus {
		refs[i].Index = int32(pos)
		if st != nil && st.topo() != nil && pos < len(st.devices.uuids) {
			refs[i].Index, refs[i].UUID = int32(st.devices.index[pos]), st.devices.uuids[pos]
		}
	}
	gpus = devicev1beta1.FormatGPUAnnotation(refs)
	for i, n := range a.nics {
		if st != nil && st.devices != nil && n < len(st.devices.nics) {
			if i > 0 {
				nics += ","
			}
			nics += st.devices.nics[n]
		}
	}
	return gpus, nics
}

func maskOf(idx []int) uint64 {
	var m uint64
	for _, i := range idx {
		m |= 1 << uint(i)
	}
	return m
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func dedupe(s []int) []int {
	sort.Ints(s)
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
