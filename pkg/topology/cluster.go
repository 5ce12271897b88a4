package topology

import (
	"fmt"
	"math/bits"
	"strings"
)

// Resources are scalar amounts by name (e.g. "cpu" in millicores, "memory" in bytes). Only the
// names given to NewCluster are tracked; others are ignored.
type Resources map[string]int64

// NodeSpec is one node as the adapter sees it.
type NodeSpec struct {
	Name string
	// Labels of the node; only the cluster's level keys are read.
	Labels map[string]string
	// Topology of the node's GPUs; nil means GPUCount GPUs without interconnect information
	// (then the lowest free indices are taken).
	Topology *GPUTopology
	GPUCount int
	// UsedGPUs are indices already in use or unhealthy.
	UsedGPUs []int
	// Allocatable and Requested scalar resources (Requested = sum over pods already on the node).
	Allocatable Resources
	Requested   Resources
}

// DomainInfo describes one topology domain.
type DomainInfo struct {
	Level     int    // index into the cluster's levels; Levels() length for the whole cluster
	LevelName string // the label key, or "cluster"
	Name      string // human name: "block=b1", "node=n7" (a node lacking the label), "" (cluster)
	Key       string // unique path key, outermost first
	Nodes     int
	FreeGPUs  int
	TotalGPUs int
	// MaxFreeOnNode is the most free GPUs on any one node of the domain.
	MaxFreeOnNode int
}

// Cluster is the domain tree with per-domain free capacity kept incrementally. Every update costs
// O(levels); a Cluster is not safe for concurrent use.
type Cluster struct {
	levels  []string
	scalars []string
	nodes   map[string]*node
	byKey   []map[string]*domain // per level (root at len(levels))
	list    [][]*domain          // per level, for iteration in O(domains)
	root    *domain
	histLen int // length of every domain's histogram: max GPUs per node + 1
	scratch packState
}

type node struct {
	name    string
	topo    *GPUTopology
	nGPU    int
	free    uint64
	scalarA []int64 // allocatable
	scalarF []int64 // free
	leaf    *domain
	pos     int // index in leaf.nodes
}

type domain struct {
	level  int
	key    string
	name   string
	parent *domain
	kids   []*domain // level > 0
	nodes  []*node   // level == 0
	pos    int       // index in parent.kids
	lpos   int       // index in Cluster.list[level]
	nNodes int
	free   int
	total  int
	hist   []int32 // hist[f] = nodes with f free GPUs
}

// NewCluster makes an empty cluster. levels are node label keys, innermost first (e.g.
// nvidia.com/gpu.clique, network.topology.nvidia.com/block, …/spine, topology.kubernetes.io/zone);
// scalars are the resource names to track besides GPUs.
func NewCluster(levels []string, scalars []string) *Cluster {
	c := &Cluster{
		levels:  append([]string(nil), levels...),
		scalars: append([]string(nil), scalars...),
		nodes:   map[string]*node{},
		histLen: 9,
	}
	L := len(levels)
	c.byKey = make([]map[string]*domain, L+1)
	c.list = make([][]*domain, L+1)
	for i := range c.byKey {
		c.byKey[i] = map[string]*domain{}
	}
	c.root = &domain{level: L, hist: make([]int32, c.histLen)}
	c.byKey[L][""] = c.root
	c.list[L] = []*domain{c.root}
	return c
}

// Levels returns the level label keys, innermost first.
func (c *Cluster) Levels() []string { return append([]string(nil), c.levels...) }

// LevelIndex returns the index of a level label key, or -1.
func (c *Cluster) LevelIndex(key string) int {
	for i, l := range c.levels {
		if l == key {
			return i
		}
	}
	return -1
}

// NumNodes is the number of nodes.
func (c *Cluster) NumNodes() int { return len(c.nodes) }

// domainKeys derives a node's domain at every level. A level whose label is missing takes the
// node's domain one level in (the node itself at the innermost level): a lone node is its own
// domain, and a GB200 clique whose nodes lack a block label still stays one domain. Keys carry the
// whole path from the outermost level, so inconsistent labels split domains instead of breaking
// the tree.
func (c *Cluster) domainKeys(name string, labels map[string]string) (local, keys []string) {
	L := len(c.levels)
	local, keys = make([]string, L), make([]string, L)
	for l := 0; l < L; l++ {
		if v, ok := labels[c.levels[l]]; ok && v != "" {
			local[l] = shortLevel(c.levels[l]) + "=" + v
		} else if l == 0 {
			local[l] = "node=" + name
		} else {
			local[l] = local[l-1]
		}
	}
	for l := L - 1; l >= 0; l-- {
		if l == L-1 {
			keys[l] = local[l]
		} else {
			keys[l] = keys[l+1] + "/" + local[l]
		}
	}
	return local, keys
}

// shortLevel is the last path element of a label key: "network.topology.nvidia.com/block" →
// "block", for messages.
func shortLevel(key string) string {
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		return key[i+1:]
	}
	return key
}

// SetNode adds a node or replaces it (a replacement is a remove and an add). O(levels).
func (c *Cluster) SetNode(s NodeSpec) error {
	if s.Name == "" {
		return fmt.Errorf("node without a name")
	}
	n := &node{name: s.Name, topo: s.Topology, nGPU: s.GPUCount}
	if s.Topology != nil {
		n.nGPU = s.Topology.NumGPUs()
	}
	if n.nGPU < 0 || n.nGPU > MaxGPUsPerNode {
		return fmt.Errorf("node %s: %d GPUs; at most %d supported", s.Name, n.nGPU, MaxGPUsPerNode)
	}
	n.free = maskOfFirst(n.nGPU)
	for _, g := range s.UsedGPUs {
		if g < 0 || g >= n.nGPU {
			return fmt.Errorf("node %s: used GPU %d out of range [0,%d)", s.Name, g, n.nGPU)
		}
		n.free &^= 1 << uint(g)
	}
	n.scalarA = make([]int64, len(c.scalars))
	n.scalarF = make([]int64, len(c.scalars))
	for i, r := range c.scalars {
		n.scalarA[i] = s.Allocatable[r]
		n.scalarF[i] = s.Allocatable[r] - s.Requested[r]
	}
	if _, ok := c.nodes[s.Name]; ok {
		c.RemoveNode(s.Name)
	}
	if n.nGPU+1 > c.histLen {
		c.growHist(n.nGPU + 1)
	}
	local, keys := c.domainKeys(s.Name, s.Labels)
	parent := c.root
	for l := len(c.levels) - 1; l >= 0; l-- {
		d := c.byKey[l][keys[l]]
		if d == nil {
			d = &domain{level: l, key: keys[l], name: local[l], parent: parent,
				pos: len(parent.kids), lpos: len(c.list[l]), hist: make([]int32, c.histLen)}
			parent.kids = append(parent.kids, d)
			c.byKey[l][keys[l]] = d
			c.list[l] = append(c.list[l], d)
		}
		parent = d
	}
	n.leaf, n.pos = parent, len(parent.nodes)
	parent.nodes = append(parent.nodes, n)
	c.nodes[s.Name] = n
	f := bits.OnesCount64(n.free)
	for d := n.leaf; d != nil; d = d.parent {
		d.nNodes++
		d.total += n.nGPU
		d.free += f
		d.hist[f]++
	}
	return nil
}

func (c *Cluster) growHist(l int) {
	c.histLen = l
	for _, lst := range c.list {
		for _, d := range lst {
			h := make([]int32, l)
			copy(h, d.hist)
			d.hist = h
		}
	}
}

// RemoveNode removes a node; empty domains disappear. O(levels).
func (c *Cluster) RemoveNode(name string) {
	n := c.nodes[name]
	if n == nil {
		return
	}
	delete(c.nodes, name)
	f := bits.OnesCount64(n.free)
	for d := n.leaf; d != nil; d = d.parent {
		d.nNodes--
		d.total -= n.nGPU
		d.free -= f
		d.hist[f]--
	}
	leaf := n.leaf
	last := leaf.nodes[len(leaf.nodes)-1]
	leaf.nodes[n.pos], last.pos = last, n.pos
	leaf.nodes = leaf.nodes[:len(leaf.nodes)-1]
	for d := leaf; d != c.root && d.nNodes == 0; d = d.parent {
		p := d.parent
		lk := p.kids[len(p.kids)-1]
		p.kids[d.pos], lk.pos = lk, d.pos
		p.kids = p.kids[:len(p.kids)-1]
		lst := c.list[d.level]
		ll := lst[len(lst)-1]
		lst[d.lpos], ll.lpos = ll, d.lpos
		c.list[d.level] = lst[:len(lst)-1]
		delete(c.byKey[d.level], d.key)
	}
}

// Allocate takes GPUs (indices) and scalar resources on a node. It fails, changing nothing, if a
// GPU is not free. Scalars may go negative (the caller's accounting wins). O(levels).
func (c *Cluster) Allocate(name string, gpus []int, res Resources) error {
	return c.update(name, gpus, res, true)
}

// Release gives back what Allocate took. O(levels).
func (c *Cluster) Release(name string, gpus []int, res Resources) error {
	return c.update(name, gpus, res, false)
}

func (c *Cluster) update(name string, gpus []int, res Resources, take bool) error {
	n := c.nodes[name]
	if n == nil {
		return fmt.Errorf("unknown node %s", name)
	}
	var m uint64
	for _, g := range gpus {
		if g < 0 || g >= n.nGPU {
			return fmt.Errorf("node %s: GPU %d out of range [0,%d)", name, g, n.nGPU)
		}
		m |= 1 << uint(g)
	}
	newFree := n.free
	if take {
		if n.free&m != m {
			return fmt.Errorf("node %s: GPUs %v not free", name, maskIndices(m&^n.free))
		}
		newFree &^= m
	} else {
		if n.free&m != 0 {
			return fmt.Errorf("node %s: GPUs %v already free", name, maskIndices(m&n.free))
		}
		newFree |= m
	}
	sign := int64(1)
	if take {
		sign = -1
	}
	for i, r := range c.scalars {
		n.scalarF[i] += sign * res[r]
	}
	c.setFree(n, newFree)
	return nil
}

func (c *Cluster) setFree(n *node, free uint64) {
	a, b := bits.OnesCount64(n.free), bits.OnesCount64(free)
	n.free = free
	if a == b {
		return
	}
	for d := n.leaf; d != nil; d = d.parent {
		d.free += b - a
		d.hist[a]--
		d.hist[b]++
	}
}

func maskIndices(m uint64) []int {
	var out []int
	for ; m != 0; m &= m - 1 {
		out = append(out, bits.TrailingZeros64(m))
	}
	return out
}

// FreeGPUs returns the free GPU indices of a node.
func (c *Cluster) FreeGPUs(name string) ([]int, bool) {
	n := c.nodes[name]
	if n == nil {
		return nil, false
	}
	return maskIndices(n.free), true
}

// FreeMask is FreeGPUs as a bit mask, without allocating (Filter and Score ask per node).
func (c *Cluster) FreeMask(name string) (uint64, bool) {
	n := c.nodes[name]
	if n == nil {
		return 0, false
	}
	return n.free, true
}

// NodeDomain returns the domain of a node at a level (len(Levels()) for the whole cluster).
func (c *Cluster) NodeDomain(name string, level int) (DomainInfo, bool) {
	n := c.nodes[name]
	if n == nil || level < 0 || level > len(c.levels) {
		return DomainInfo{}, false
	}
	d := n.leaf
	for d.level < level {
		d = d.parent
	}
	return c.info(d), true
}

// Domains lists the domains of a level, in no particular order.
func (c *Cluster) Domains(level int) []DomainInfo {
	if level < 0 || level > len(c.levels) {
		return nil
	}
	out := make([]DomainInfo, 0, len(c.list[level]))
	for _, d := range c.list[level] {
		out = append(out, c.info(d))
	}
	return out
}

func (c *Cluster) levelName(l int) string {
	if l == len(c.levels) {
		return "cluster"
	}
	return c.levels[l]
}

func (c *Cluster) info(d *domain) DomainInfo {
	di := DomainInfo{Level: d.level, LevelName: c.levelName(d.level), Name: d.name, Key: d.key,
		Nodes: d.nNodes, FreeGPUs: d.free, TotalGPUs: d.total}
	for f := len(d.hist) - 1; f >= 0; f-- {
		if d.hist[f] > 0 {
			di.MaxFreeOnNode = f
			break
		}
	}
	return di
}

// podSlots is how many pods of g GPUs the domain's nodes could hold: Σ_f hist[f]·⌊f/g⌋. O(G).
func (d *domain) podSlots(g int) int {
	s := 0
	for f := g; f < len(d.hist); f++ {
		s += int(d.hist[f]) * (f / g)
	}
	return s
}
