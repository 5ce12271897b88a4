package topology

import (
	"fmt"
	"math/bits"
	"slices"
	"sort"
	"strings"
)

// PolicyMode is how strictly a gang must stay inside one topology domain.
type PolicyMode int

const (
	// PolicyNone: anywhere in the cluster (nodes still chosen best-fit).
	PolicyNone PolicyMode = iota
	// PolicyPreferred: the smallest domain that fits, climbing levels up to the whole cluster.
	PolicyPreferred
	// PolicyRequired: one domain of Policy.Level (or a smaller one inside it), else unschedulable.
	PolicyRequired
)

// Policy is a gang's topology policy. Level is a level label key (PolicyRequired only).
type Policy struct {
	Mode  PolicyMode
	Level string
}

// MemberGroup is a set of gang members with identical requests (e.g. all workers).
type MemberGroup struct {
	Name      string
	Count     int
	GPUs      int // per pod
	NICs      int // RDMA NICs per pod (0: none)
	Resources Resources
}

// Gang is what the planner places as a whole.
type Gang struct {
	Groups []MemberGroup
	Policy Policy
	// Exclude, if set, rules nodes out (taints, affinity, nodes being drained: whatever the
	// adapter's filters reject for every member). Domain screening does not see it, so heavy use
	// costs extra packing attempts, not correctness.
	Exclude func(node string) bool
	// MaxMembers, if set, caps how many members of this gang a listed node may take (0 rules it
	// out): what the scheduler's own filters refused when an earlier plan put more there (host
	// ports, pod anti-affinity, topology spread among the members). Unlisted nodes are uncapped.
	MaxMembers map[string]int
	// Near names nodes the gang's members already run on (members placed beyond its quorum, as
	// an elastic job grows): the smallest domain around them that fits comes first, at any level
	// the policy allows, before the usual choice.
	Near []string
}

// Placement is one member's place.
type Placement struct {
	Group   int // index into Gang.Groups
	Ordinal int // member number within its group
	Node    string
	GPUs    []int // GPU indices on the node, ascending
	NICs    []int // NIC indices on the node, best first
	Quality Quality
}

// Plan is a whole-gang placement against one state of the Cluster.
type Plan struct {
	Domain DomainInfo // the chosen domain, before the plan takes anything
	// GPUsLeft is the domain's free GPUs after the plan: the best-fit objective.
	GPUsLeft int
	// Placements, grouped by group and ordinal: Placements[i] for group g ordinal o is at
	// offset(g)+o.
	Placements []Placement
}

// UnschedulableError says why a gang cannot be placed.
type UnschedulableError struct{ Reason string }

func (e *UnschedulableError) Error() string { return e.Reason }

// Plan places a gang as a whole without changing the cluster; apply it with Apply (or Allocate
// per member).
//
// Objective. Candidate domains are those of levels 0..top (PolicyPreferred; then the whole
// cluster), 0..Level (PolicyRequired) or the whole cluster alone (PolicyNone). A domain is
// feasible when the node packing below finds a node for every member. The plan takes the feasible
// domain minimising, lexicographically,
//
//	(level, free GPUs of the domain − GPUs of the gang, domain key)
//
// i.e. the smallest level that fits, then best fit (least capacity left over, so large holes stay
// whole for large gangs), then a stable tie-break.
//
// Packing inside the domain: groups by GPUs per pod, largest first; each pod goes to the node with
// the fewest free GPUs that still fit it (best fit; several members may share a node), nodes with
// equal free GPUs taken in locality order (children of each domain by free GPUs descending, so a
// gang that must span sub-domains fills the emptiest ones and spreads over few). CPU-only members
// go best fit too, i.e. to nodes with no free GPUs first. GPUs on the node come from
// GPUTopology.Choose against the node's free set minus what earlier members of the plan took.
// The packing is exact for gangs whose GPU members all ask the same count (any number of CPU-only
// members) when scalar resources do not bind; otherwise it is a greedy best-fit-decreasing.
//
// Cost: O(domains·G) histogram checks (G = max GPUs per node) plus, for each domain tried,
// O(nodes of the domain + pods·(G + log nodes)) and the per-pod GPU choice.
func (c *Cluster) Plan(g Gang) (*Plan, error) {
	need, err := c.summarize(g)
	if err != nil {
		return nil, err
	}
	tryLevels, reqLevel, err := c.levelsFor(g.Policy)
	if err != nil {
		return nil, err
	}
	var cands []*domain
	var packFail string
	if p := c.planNear(g, need, tryLevels); p != nil {
		return p, nil
	}
	for _, l := range tryLevels {
		cands = c.candidates(cands[:0], l, need, nil)
		for _, d := range cands {
			p, why := c.pack(d, g, need)
			if p != nil {
				return p, nil
			}
			if packFail == "" {
				packFail = fmt.Sprintf("%s has %d free GPUs but %s", c.domainName(d), d.free, why)
			}
		}
	}
	return nil, &UnschedulableError{Reason: c.failReason(g, need, reqLevel, packFail)}
}

// planNear places the gang in the smallest domain holding one of its Near nodes, if one fits.
func (c *Cluster) planNear(g Gang, need demand, tryLevels []int) *Plan {
	if len(g.Near) == 0 {
		return nil
	}
	near := map[*domain]bool{}
	for _, name := range g.Near {
		if n := c.nodes[name]; n != nil {
			for d := n.leaf; d != nil; d = d.parent {
				near[d] = true
			}
		}
	}
	if len(near) == 0 {
		return nil
	}
	levels := tryLevels
	if len(tryLevels) == 1 && tryLevels[0] == len(c.levels) {
		// No policy: the gang may go anywhere, and near its members is still the better place.
		levels = make([]int, 0, len(c.levels)+1)
		for l := 0; l <= len(c.levels); l++ {
			levels = append(levels, l)
		}
	}
	var cands []*domain
	for _, l := range levels {
		cands = c.candidates(cands[:0], l, need, near)
		for _, d := range cands {
			if p, _ := c.pack(d, g, need); p != nil {
				return p
			}
		}
	}
	return nil
}

// candidates appends the domains of level l that may fit the demand (and are in only, when set),
// best fit first: fewest free GPUs, then key.
func (c *Cluster) candidates(out []*domain, l int, need demand, only map[*domain]bool) []*domain {
	for _, d := range c.list[l] {
		if (only == nil || only[d]) && need.quickFit(d) {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].free != out[j].free {
			return out[i].free < out[j].free
		}
		return out[i].key < out[j].key
	})
	return out
}

// levelsFor lists the levels whose domains a gang of this policy may use, innermost first (the
// whole cluster is level len(levels)), and the Required level's index (-1 for other modes).
func (c *Cluster) levelsFor(p Policy) (levels []int, reqLevel int, err error) {
	L := len(c.levels)
	reqLevel = -1
	switch p.Mode {
	case PolicyNone:
		levels = []int{L}
	case PolicyPreferred:
		for l := 0; l <= L; l++ {
			levels = append(levels, l)
		}
	case PolicyRequired:
		reqLevel = c.LevelIndex(p.Level)
		if reqLevel < 0 {
			return nil, -1, fmt.Errorf("unknown topology level %q (levels: %s)", p.Level, strings.Join(c.levels, ", "))
		}
		for l := 0; l <= reqLevel; l++ {
			levels = append(levels, l)
		}
	default:
		return nil, -1, fmt.Errorf("unknown policy mode %d", p.Mode)
	}
	return levels, reqLevel, nil
}

// Apply allocates every placement of a plan, all or nothing.
func (c *Cluster) Apply(g Gang, p *Plan) error {
	for i, pl := range p.Placements {
		if err := c.Allocate(pl.Node, pl.GPUs, g.Groups[pl.Group].Resources); err != nil {
			for _, done := range p.Placements[:i] {
				_ = c.Release(done.Node, done.GPUs, g.Groups[done.Group].Resources)
			}
			return err
		}
	}
	return nil
}

type demand struct {
	pods, gpus int
	// thresholds: for each distinct GPUs-per-pod value g > 0, how many pods ask g or more. A node
	// with f free GPUs holds at most ⌊f/g⌋ of them, so podSlots(g) >= count is necessary (and,
	// with a single GPU size and no binding scalars, sufficient).
	thresh []struct{ g, count int }
	desc   string
}

func (c *Cluster) summarize(g Gang) (demand, error) {
	var d demand
	sizes := map[int]int{}
	var parts []string
	for i, m := range g.Groups {
		if m.Count < 0 || m.GPUs < 0 || m.NICs < 0 {
			return d, fmt.Errorf("group %d (%s): negative count or request", i, m.Name)
		}
		if m.GPUs > MaxGPUsPerNode {
			return d, &UnschedulableError{Reason: fmt.Sprintf("group %s asks %d GPUs per pod; no node has more than %d", m.Name, m.GPUs, MaxGPUsPerNode)}
		}
		if m.Count == 0 {
			continue
		}
		d.pods += m.Count
		d.gpus += m.Count * m.GPUs
		if m.GPUs > 0 {
			sizes[m.GPUs] += m.Count
			parts = append(parts, fmt.Sprintf("%d pods x %d", m.Count, m.GPUs))
		}
	}
	if d.pods == 0 {
		return d, fmt.Errorf("empty gang")
	}
	for s := range sizes {
		n := 0
		for t, k := range sizes {
			if t >= s {
				n += k
			}
		}
		d.thresh = append(d.thresh, struct{ g, count int }{s, n})
	}
	sort.Slice(d.thresh, func(i, j int) bool { return d.thresh[i].g > d.thresh[j].g })
	d.desc = fmt.Sprintf("%d GPUs", d.gpus)
	if len(parts) > 0 {
		d.desc += " (" + strings.Join(parts, " + ") + ")"
	}
	return d, nil
}

func (n *demand) quickFit(d *domain) bool {
	if d.nNodes == 0 || d.free < n.gpus {
		return false
	}
	for _, t := range n.thresh {
		if d.podSlots(t.g) < t.count {
			return false
		}
	}
	return true
}

func (c *Cluster) domainName(d *domain) string {
	if d.level == len(c.levels) {
		return "the cluster"
	}
	lvl := shortLevel(c.levels[d.level])
	if strings.HasPrefix(d.name, lvl+"=") {
		return lvl + " " + strings.TrimPrefix(d.name, lvl+"=")
	}
	return lvl + " of " + strings.Replace(d.name, "=", " ", 1)
}

// failReason explains, for a person, why no domain fits.
func (c *Cluster) failReason(g Gang, need demand, reqLevel int, packFail string) string {
	where := "in the cluster"
	lvl := len(c.levels)
	if reqLevel >= 0 {
		lvl = reqLevel
		where = "in one " + shortLevel(c.levels[reqLevel])
	}
	if packFail != "" {
		return fmt.Sprintf("needs %s %s; %s", need.desc, where, packFail)
	}
	// The domain with the most free GPUs at the outermost level tried, and what blocks it.
	var best *domain
	for _, d := range c.list[lvl] {
		if best == nil || d.free > best.free || (d.free == best.free && d.key < best.key) {
			best = d
		}
	}
	if best == nil || best.nNodes == 0 {
		return fmt.Sprintf("needs %s %s; there are no nodes", need.desc, where)
	}
	subject := "the cluster"
	if reqLevel >= 0 {
		lv := shortLevel(c.levels[reqLevel])
		subject = "best " + lv + " " + strings.TrimPrefix(c.domainName(best), lv+" ")
	}
	if best.free < need.gpus {
		if reqLevel < 0 {
			return fmt.Sprintf("needs %s; the cluster has %d free", need.desc, best.free)
		}
		return fmt.Sprintf("needs %s %s; %s has %d free", need.desc, where, subject, best.free)
	}
	for _, t := range need.thresh {
		if s := best.podSlots(t.g); s < t.count {
			return fmt.Sprintf("needs %s %s; %s has %d free GPUs but room for only %d of the %d pods needing %d+ GPUs on one node",
				need.desc, where, subject, best.free, s, t.count, t.g)
		}
	}
	return fmt.Sprintf("needs %s %s; no domain fits", need.desc, where)
}

// packState is the scratch state of one packing attempt: the domain's nodes in locality order,
// their free GPU masks and scalars as the plan consumes them, and per free-count min-heaps of
// positions (best fit = lowest free count that fits; equal counts in locality order). The Cluster
// keeps one and reuses its slices: a gang without a topology policy is packed over every node of
// the cluster, and fresh slices per attempt were most of what the scheduler allocated in a backlog
// of gangs at 5000 nodes.
type packState struct {
	nodes   []*node
	free    []uint64
	left    []int // members each position may still take (-1: no cap)
	scalars map[int][]int64
	buckets [][]int
	kids    []*domain // appendLocalityOrder's stack of sorted children
}

// reset empties the scratch for a packing attempt with histLen buckets.
func (ps *packState) reset(histLen int) {
	clear(ps.nodes) // drop references to nodes the cluster may since have removed
	ps.nodes, ps.free = ps.nodes[:0], ps.free[:0]
	if ps.scalars == nil {
		ps.scalars = map[int][]int64{}
	}
	clear(ps.scalars)
	for len(ps.buckets) < histLen {
		ps.buckets = append(ps.buckets, nil)
	}
	ps.buckets = ps.buckets[:histLen]
	for f := range ps.buckets {
		ps.buckets[f] = ps.buckets[f][:0]
	}
}

// minGPUs is the fewest GPUs any member of g asks (0 when one asks none): nodes with fewer free
// GPUs can take no member, so packing leaves them out.
func minGPUs(g Gang) int {
	m := -1
	for _, grp := range g.Groups {
		if grp.Count > 0 && (m < 0 || grp.GPUs < m) {
			m = grp.GPUs
		}
	}
	return max(m, 0)
}

func (c *Cluster) pack(d *domain, g Gang, need demand) (*Plan, string) {
	ps := &c.scratch
	ps.reset(len(d.hist))
	ps.nodes = ps.appendLocalityOrder(ps.nodes, d, minGPUs(g))
	if g.Exclude != nil || len(g.MaxMembers) > 0 {
		kept := ps.nodes[:0]
		for _, n := range ps.nodes {
			if capped, ok := g.MaxMembers[n.name]; (!ok || capped > 0) && (g.Exclude == nil || !g.Exclude(n.name)) {
				kept = append(kept, n)
			}
		}
		ps.nodes = kept
	}
	ps.free = slices.Grow(ps.free, len(ps.nodes))[:len(ps.nodes)]
	ps.left = slices.Grow(ps.left, len(ps.nodes))[:len(ps.nodes)]
	for i, n := range ps.nodes {
		ps.free[i] = n.free
		ps.left[i] = -1
		if capped, ok := g.MaxMembers[n.name]; ok {
			ps.left[i] = capped
		}
		f := bits.OnesCount64(n.free)
		ps.buckets[f] = append(ps.buckets[f], i) // ascending positions: already a heap
	}
	order := make([]int, len(g.Groups))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return g.Groups[order[a]].GPUs > g.Groups[order[b]].GPUs })
	offsets := make([]int, len(g.Groups))
	total := 0
	for i, m := range g.Groups {
		offsets[i] = total
		total += m.Count
	}
	plan := &Plan{Domain: c.info(d), GPUsLeft: d.free - need.gpus, Placements: make([]Placement, total)}
	for _, gi := range order {
		m := g.Groups[gi]
		want := c.scalarVec(m.Resources)
		for o := 0; o < m.Count; o++ {
			pos, f := ps.take(m.GPUs, want)
			if pos < 0 {
				return nil, fmt.Sprintf("no node left for member %d of %d of group %q (%d GPUs)", o+1, m.Count, m.Name, m.GPUs)
			}
			n := ps.nodes[pos]
			var pl Placement
			if n.topo != nil {
				ch, _ := n.topo.Choose(ps.free[pos], GPURequest{GPUs: m.GPUs, NICs: m.NICs})
				pl.GPUs, pl.NICs, pl.Quality = ch.GPUs, ch.NICs, ch.Quality
			} else {
				pl.GPUs, _ = firstFree(ps.free[pos], m.GPUs)
			}
			for _, x := range pl.GPUs {
				ps.free[pos] &^= 1 << uint(x)
			}
			ps.consume(pos, want)
			if ps.left[pos] > 0 {
				ps.left[pos]--
			}
			if ps.left[pos] != 0 { // a node at its cap takes no more members of this gang
				heapPush(&ps.buckets[f-m.GPUs], pos)
			}
			pl.Group, pl.Ordinal, pl.Node = gi, o, n.name
			plan.Placements[offsets[gi]+o] = pl
		}
	}
	return plan, ""
}

// appendLocalityOrder lists a domain's nodes depth first, children with more free GPUs first,
// leaving out nodes (and whole domains) with fewer than minFree free GPUs; the relative order of
// the nodes listed does not depend on minFree.
func (ps *packState) appendLocalityOrder(out []*node, d *domain, minFree int) []*node {
	if !d.hasFree(minFree) {
		return out
	}
	if d.level == 0 {
		if minFree == 0 {
			return append(out, d.nodes...)
		}
		for _, n := range d.nodes {
			if bits.OnesCount64(n.free) >= minFree {
				out = append(out, n)
			}
		}
		return out
	}
	// The children are sorted on a stack shared by the recursion: deeper calls append past them
	// (a reallocation leaves this call's view of them intact) and truncate back when done.
	base := len(ps.kids)
	ps.kids = append(ps.kids, d.kids...)
	kids := ps.kids[base:]
	sort.Slice(kids, func(i, j int) bool {
		if kids[i].free != kids[j].free {
			return kids[i].free > kids[j].free
		}
		return kids[i].key < kids[j].key
	})
	for _, k := range kids {
		out = ps.appendLocalityOrder(out, k, minFree)
	}
	clear(ps.kids[base:])
	ps.kids = ps.kids[:base]
	return out
}

// hasFree says whether some node of d has at least f free GPUs.
func (d *domain) hasFree(f int) bool {
	for ; f < len(d.hist); f++ {
		if d.hist[f] > 0 {
			return true
		}
	}
	return false
}

func (c *Cluster) scalarVec(r Resources) []int64 {
	if len(c.scalars) == 0 {
		return nil
	}
	v := make([]int64, len(c.scalars))
	any := false
	for i, name := range c.scalars {
		v[i] = r[name]
		any = any || v[i] != 0
	}
	if !any {
		return nil
	}
	return v
}

func (ps *packState) fits(pos int, want []int64) bool {
	if want == nil {
		return true
	}
	have := ps.scalars[pos]
	if have == nil {
		have = ps.nodes[pos].scalarF
	}
	for i, w := range want {
		if have[i] < w {
			return false
		}
	}
	return true
}

func (ps *packState) consume(pos int, want []int64) {
	if want == nil {
		return
	}
	have := ps.scalars[pos]
	if have == nil {
		have = append([]int64(nil), ps.nodes[pos].scalarF...)
		ps.scalars[pos] = have
	}
	for i, w := range want {
		have[i] -= w
	}
}

// take pops the best-fit node for a pod of g GPUs: the lowest free count ≥ g, the first node in
// locality order whose scalars fit. Returns the position and its free count before the pod.
func (ps *packState) take(g int, want []int64) (int, int) {
	for f := g; f < len(ps.buckets); f++ {
		var skipped []int
		found := -1
		for len(ps.buckets[f]) > 0 {
			p := heapPop(&ps.buckets[f])
			if ps.fits(p, want) {
				found = p
				break
			}
			skipped = append(skipped, p)
		}
		for _, p := range skipped {
			heapPush(&ps.buckets[f], p)
		}
		if found >= 0 {
			return found, f
		}
	}
	return -1, 0
}

func heapPush(h *[]int, x int) {
	a := append(*h, x)
	i := len(a) - 1
	for i > 0 {
		p := (i - 1) / 2
		if a[p] <= a[i] {
			break
		}
		a[p], a[i] = a[i], a[p]
		i = p
	}
	*h = a
}

func heapPop(h *[]int) int {
	a := *h
	top := a[0]
	last := len(a) - 1
	a[0] = a[last]
	a = a[:last]
	i := 0
	for {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(a) && a[l] < a[m] {
			m = l
		}
		if r < len(a) && a[r] < a[m] {
			m = r
		}
		if m == i {
			break
		}
		a[i], a[m] = a[m], a[i]
		i = m
	}
	*h = a
	return top
}
