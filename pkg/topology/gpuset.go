package topology

import (
	"fmt"
	"math/bits"
	"sort"
	"strings"
	"sync"
)

// MaxGPUsPerNode bounds the GPUs of one node: GPU sets are uint64 bit masks.
const MaxGPUsPerNode = 64

// PCIeLevel is the PCIe distance between two devices, as `nvidia-smi topo -m` and NCCL name it.
// Smaller is closer; PCIeUnknown ranks below PCIeSYS.
type PCIeLevel uint8

const (
	PCIeUnknown PCIeLevel = iota
	PCIePIX               // at most one PCIe switch between them
	PCIePXB               // several PCIe switches, no host bridge
	PCIePHB               // through a PCIe host bridge (same root complex)
	PCIeNODE              // across root complexes of one NUMA node
	PCIeSYS               // across NUMA nodes (SMP interconnect)
)

var pcieNames = [...]string{"UNKNOWN", "PIX", "PXB", "PHB", "NODE", "SYS"}

func (l PCIeLevel) String() string {
	if int(l) < len(pcieNames) {
		return pcieNames[l]
	}
	return fmt.Sprintf("PCIeLevel(%d)", l)
}

// ParsePCIeLevel parses PIX, PXB, PHB, NODE or SYS (case-insensitive); anything else is PCIeUnknown.
func ParsePCIeLevel(s string) PCIeLevel {
	for i, n := range pcieNames {
		if strings.EqualFold(s, n) {
			return PCIeLevel(i)
		}
	}
	return PCIeUnknown
}

// Points is the level's score on go-gpuallocator's scale (PIX 50 … SYS 10, unknown 0), so our
// PCIe sums read the same as its pair scores.
func (l PCIeLevel) Points() int {
	if l == PCIeUnknown || l > PCIeSYS {
		return 0
	}
	return 10 * int(PCIeSYS+1-l)
}

// GPUSpec describes one GPU of a node; its index is its position in GPUTopologySpec.GPUs.
type GPUSpec struct {
	// NVSwitchDomain names the NVSwitch fabric the GPU's NVLinks end in ("" = none). NVML reports
	// the remote end of such links as SWITCH, not as a GPU; every pair of GPUs in one domain has
	// min(NVSwitchLinks_a, NVSwitchLinks_b) links' worth of bandwidth.
	NVSwitchDomain string
	// NVSwitchLinks is the number of the GPU's active NVLinks into the NVSwitch domain.
	NVSwitchLinks int
	// NVLinks counts direct GPU-to-GPU NVLinks (bridges), by peer index.
	NVLinks map[int]int
	// PCIe is the level to every GPU by index (self ignored). Nil: NODE within a NUMA node, else SYS.
	PCIe []PCIeLevel
	// NUMA node of the GPU (-1 unknown).
	NUMA int
}

// NICSpec describes one RDMA NIC of a node.
type NICSpec struct {
	Name string
	// PCIe is the level from the NIC to every GPU by index.
	PCIe []PCIeLevel
}

// GPUTopologySpec is the interconnect of one node as the device agent reports it.
type GPUTopologySpec struct {
	GPUs []GPUSpec
	NICs []NICSpec
}

// GPUTopology is the compiled, immutable form of a GPUTopologySpec. Nodes of the same model share
// one value.
type GPUTopology struct {
	n        int
	nv       []int32 // n*n effective NVLinks between GPUs (switch + bridges)
	pcie     []int32 // n*n PCIe points between GPUs
	nicLevel [][]PCIeLevel
	nicNames []string

	// scores memoises Score by free mask and request: a scheduler scores the same few shapes on
	// thousands of nodes of one model per pod (see Share), and a node's free mask takes few values.
	scoresMu sync.RWMutex
	scores   map[scoreKey]scored
}

type scoreKey struct {
	free       uint64
	gpus, nics int32
}

type scored struct {
	q  Quality
	ok bool
}

// maxMemoScores bounds the memo of one topology (about 80 bytes an entry): every free mask and
// request of an 8-GPU node with up to 8 NICs is about 23000.
const maxMemoScores = 1 << 15

// NewGPUTopology validates and compiles spec.
func NewGPUTopology(spec GPUTopologySpec) (*GPUTopology, error) {
	n := len(spec.GPUs)
	if n > MaxGPUsPerNode {
		return nil, fmt.Errorf("%d GPUs on one node; at most %d supported", n, MaxGPUsPerNode)
	}
	t := &GPUTopology{n: n, nv: make([]int32, n*n), pcie: make([]int32, n*n)}
	for i, g := range spec.GPUs {
		if g.PCIe != nil && len(g.PCIe) != n {
			return nil, fmt.Errorf("GPU %d: PCIe has %d levels for %d GPUs", i, len(g.PCIe), n)
		}
		for peer, links := range g.NVLinks {
			if peer < 0 || peer >= n || peer == i || links < 0 {
				return nil, fmt.Errorf("GPU %d: bad NVLink peer %d (%d links)", i, peer, links)
			}
		}
	}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			if i == j {
				continue
			}
			a, b := spec.GPUs[i], spec.GPUs[j]
			// Bridges are reported from both ends; trust the larger count if they disagree.
			links := max(a.NVLinks[j], b.NVLinks[i])
			if a.NVSwitchDomain != "" && a.NVSwitchDomain == b.NVSwitchDomain {
				links += max(0, min(a.NVSwitchLinks, b.NVSwitchLinks))
			}
			t.nv[i*n+j] = int32(links)
			t.pcie[i*n+j] = int32(gpuPairLevel(a, b, i, j).Points())
		}
	}
	for k, nic := range spec.NICs {
		if len(nic.PCIe) != n {
			return nil, fmt.Errorf("NIC %d (%s): PCIe has %d levels for %d GPUs", k, nic.Name, len(nic.PCIe), n)
		}
		t.nicLevel = append(t.nicLevel, append([]PCIeLevel(nil), nic.PCIe...))
		t.nicNames = append(t.nicNames, nic.Name)
	}
	return t, nil
}

// PairLevel is the PCIe level between GPUs i and j of spec as NewGPUTopology reads it: the closer
// of the two GPUs' reports, else NODE or SYS by NUMA node.
func PairLevel(spec GPUTopologySpec, i, j int) PCIeLevel {
	return gpuPairLevel(spec.GPUs[i], spec.GPUs[j], i, j)
}

func gpuPairLevel(a, b GPUSpec, i, j int) PCIeLevel {
	// Take the closer of the two reports so the matrix is symmetric.
	la, lb := PCIeUnknown, PCIeUnknown
	if a.PCIe != nil {
		la = a.PCIe[j]
	}
	if b.PCIe != nil {
		lb = b.PCIe[i]
	}
	switch {
	case la == PCIeUnknown:
		la = lb
	case lb != PCIeUnknown:
		la = min(la, lb)
	}
	if la == PCIeUnknown && a.NUMA >= 0 && b.NUMA >= 0 {
		if a.NUMA == b.NUMA {
			return PCIeNODE
		}
		return PCIeSYS
	}
	return la
}

// NumGPUs is the number of GPUs.
func (t *GPUTopology) NumGPUs() int { return t.n }

// NumNICs is the number of RDMA NICs.
func (t *GPUTopology) NumNICs() int { return len(t.nicNames) }

// NICName returns the name of NIC i.
func (t *GPUTopology) NICName(i int) string { return t.nicNames[i] }

// NVLinks is the effective NVLink count between GPUs i and j (NVSwitch and bridges together).
func (t *GPUTopology) NVLinks(i, j int) int { return int(t.nv[i*t.n+j]) }

// PCIePoints is the PCIe score between GPUs i and j (see PCIeLevel.Points).
func (t *GPUTopology) PCIePoints(i, j int) int { return int(t.pcie[i*t.n+j]) }

// AllGPUs is the mask of every GPU of the node.
func (t *GPUTopology) AllGPUs() uint64 { return maskOfFirst(t.n) }

func maskOfFirst(n int) uint64 {
	if n >= 64 {
		return ^uint64(0)
	}
	return 1<<uint(n) - 1
}

// Quality ranks a GPU set on one node. Compare orders it lexicographically, field by field:
//
//  1. NVLinks: Σ over unordered pairs {a,b} of the set of effective NVLinks(a,b) — the set's NVLink
//     bandwidth (links of one node run at one speed).
//  2. PCIe:    Σ over pairs of PCIe points (PIX 50, PXB 40, PHB 30, NODE 20, SYS 10).
//  3. NIC:     only when NICs are wanted: Σ over the chosen NICs of the points of each NIC's best
//     level to any GPU of the set.
//  4. LeftNVLinks, LeftPCIe: the same two sums over the free GPUs that remain after taking the set.
//     Maximising them (given 1–3) minimises the links cut between the set and the rest, so the set
//     comes out of loosely attached GPUs and leaves bridged pairs and switch groups whole.
//
// Remaining ties go to the set whose sorted index list is lexicographically smallest.
type Quality struct {
	NVLinks, PCIe, NIC    int
	LeftNVLinks, LeftPCIe int
}

// Compare returns -1, 0 or +1 as q is worse than, equal to or better than o.
func (q Quality) Compare(o Quality) int {
	for _, d := range [...]int{
		q.NVLinks - o.NVLinks, q.PCIe - o.PCIe, q.NIC - o.NIC,
		q.LeftNVLinks - o.LeftNVLinks, q.LeftPCIe - o.LeftPCIe,
	} {
		if d != 0 {
			if d > 0 {
				return 1
			}
			return -1
		}
	}
	return 0
}

// NodeScore turns the set part of q (NVLinks, PCIe, NIC; not the leftover terms, which grow with a
// node's free GPUs and would work against bin packing) into one number ordered like Compare, for
// a Score plugin to normalise across nodes. Sums stay below 2^20 for 64-GPU nodes.
func (q Quality) NodeScore() int64 {
	return int64(q.NVLinks)<<40 | int64(q.PCIe)<<20 | int64(q.NIC)
}

// GPURequest is what one pod asks of one node.
type GPURequest struct {
	GPUs int // number of GPUs
	NICs int // RDMA NICs wanted (0: none)
}

// GPUChoice is the set chosen for one pod.
type GPUChoice struct {
	GPUs    []int // ascending GPU indices
	NICs    []int // NIC indices, best first
	Quality Quality
}

// ExactSearchLimit: when C(free, k) is at most this, Choose enumerates every k-subset (exact
// optimum of Quality); beyond it (only nodes with more than ~16 GPUs), a greedy search.
const ExactSearchLimit = 20000

// Choose picks the best req.GPUs GPUs among free (a bit mask of GPU indices) by Quality, and the
// req.NICs NICs closest to them. ok is false when fewer GPUs are free than asked.
//
// Cost: C(m,k)·k for m free GPUs (at most 70·4 steps on an 8-GPU node) plus O(NICs·k) per
// candidate when NICs are wanted.
func (t *GPUTopology) Choose(free uint64, req GPURequest) (GPUChoice, bool) {
	free &= t.AllGPUs()
	m, k := bits.OnesCount64(free), req.GPUs
	if k < 0 || k > m {
		return GPUChoice{}, false
	}
	s := searcher{t: t, k: k, wantNICs: min(req.NICs, len(t.nicNames))}
	for f := free; f != 0; f &= f - 1 {
		s.idx[s.m] = bits.TrailingZeros64(f)
		s.m++
	}
	// Degree of every free GPU towards the other free GPUs, for the leftover terms.
	for p := 0; p < s.m; p++ {
		x := s.idx[p]
		for q := 0; q < s.m; q++ {
			y := s.idx[q]
			s.degNV[p] += int(t.nv[x*t.n+y])
			s.degPC[p] += int(t.pcie[x*t.n+y])
		}
		s.totNV += s.degNV[p]
		s.totPC += s.degPC[p]
	}
	s.totNV /= 2
	s.totPC /= 2
	if binomial(m, k) <= ExactSearchLimit {
		s.dfs(0, 0, 0, 0, 0, 0)
	} else {
		s.greedy()
	}
	c := GPUChoice{GPUs: make([]int, k), Quality: s.best}
	copy(c.GPUs, s.bestSet[:k])
	if s.wantNICs > 0 {
		c.NICs = t.nicsFor(c.GPUs, s.wantNICs)
	}
	return c, true
}

// Score is the Quality of the set Choose would take, without building the result. Answers are
// memoised (the topology is immutable, so they never go stale).
func (t *GPUTopology) Score(free uint64, req GPURequest) (Quality, bool) {
	k := scoreKey{free: free & t.AllGPUs(), gpus: int32(req.GPUs), nics: int32(min(req.NICs, len(t.nicNames)))}
	t.scoresMu.RLock()
	r, hit := t.scores[k]
	t.scoresMu.RUnlock()
	if hit {
		return r.q, r.ok
	}
	c, ok := t.Choose(free, req)
	t.scoresMu.Lock()
	if t.scores == nil {
		t.scores = map[scoreKey]scored{}
	}
	if len(t.scores) < maxMemoScores {
		t.scores[k] = scored{c.Quality, ok}
	}
	t.scoresMu.Unlock()
	return c.Quality, ok
}

// SetQuality evaluates a given set (GPU indices) against a free mask, by the same definition that
// Choose maximises. Tests and callers use it to compare with other allocators.
func (t *GPUTopology) SetQuality(free uint64, set []int, wantNICs int) Quality {
	var q Quality
	var in uint64
	for _, x := range set {
		in |= 1 << uint(x)
	}
	left := (free &^ in) & t.AllGPUs()
	q.NVLinks, q.PCIe = t.pairSums(in)
	q.LeftNVLinks, q.LeftPCIe = t.pairSums(left)
	if w := min(wantNICs, len(t.nicNames)); w > 0 {
		for _, nic := range t.nicsFor(set, w) {
			q.NIC += t.nicBest(nic, set).Points()
		}
	}
	return q
}

func (t *GPUTopology) pairSums(set uint64) (nv, pc int) {
	for a := set; a != 0; a &= a - 1 {
		i := bits.TrailingZeros64(a)
		for b := a & (a - 1); b != 0; b &= b - 1 {
			j := bits.TrailingZeros64(b)
			nv += int(t.nv[i*t.n+j])
			pc += int(t.pcie[i*t.n+j])
		}
	}
	return nv, pc
}

// nicBest is the closest level from NIC nic to any GPU of set.
func (t *GPUTopology) nicBest(nic int, set []int) PCIeLevel {
	best := PCIeUnknown
	for _, g := range set {
		l := t.nicLevel[nic][g]
		if l != PCIeUnknown && (best == PCIeUnknown || l < best) {
			best = l
		}
	}
	return best
}

// nicsFor ranks NICs by their best level to the set, then by how many GPUs of the set sit at that
// level (a NIC close to several of the pod's GPUs serves more of them), then by index.
func (t *GPUTopology) nicsFor(set []int, want int) []int {
	type r struct{ nic, pts, at int }
	rs := make([]r, len(t.nicNames))
	for i := range rs {
		b := t.nicBest(i, set)
		at := 0
		for _, g := range set {
			if t.nicLevel[i][g] == b {
				at++
			}
		}
		rs[i] = r{i, b.Points(), at}
	}
	sort.SliceStable(rs, func(a, b int) bool {
		if rs[a].pts != rs[b].pts {
			return rs[a].pts > rs[b].pts
		}
		return rs[a].at > rs[b].at
	})
	out := make([]int, min(want, len(rs)))
	for i := range out {
		out[i] = rs[i].nic
	}
	return out
}

type searcher struct {
	t        *GPUTopology
	k, m     int
	wantNICs int
	idx      [MaxGPUsPerNode]int // free GPU indices, ascending
	degNV    [MaxGPUsPerNode]int // by position in idx
	degPC    [MaxGPUsPerNode]int
	totNV    int
	totPC    int
	chosen   [MaxGPUsPerNode]int
	best     Quality
	bestSet  [MaxGPUsPerNode]int
	found    bool
}

// dfs enumerates k-subsets of idx in lexicographic order, carrying the pair sums and degree sums
// incrementally; a strictly better leaf replaces the best, so ties keep the smallest set.
func (s *searcher) dfs(start, depth, nv, pc, dnv, dpc int) {
	if depth == s.k {
		s.leaf(nv, pc, dnv, dpc)
		return
	}
	n := s.t.n
	for p := start; p <= s.m-(s.k-depth); p++ {
		x := s.idx[p]
		anv, apc := 0, 0
		for q := 0; q < depth; q++ {
			y := s.chosen[q]
			anv += int(s.t.nv[x*n+y])
			apc += int(s.t.pcie[x*n+y])
		}
		s.chosen[depth] = x
		s.dfs(p+1, depth+1, nv+anv, pc+apc, dnv+s.degNV[p], dpc+s.degPC[p])
	}
}

func (s *searcher) leaf(nv, pc, dnv, dpc int) {
	// Leftover sums: total = in(S) + in(L) + cut, Σ_{i∈S} deg(i) = 2·in(S) + cut.
	q := Quality{NVLinks: nv, PCIe: pc, LeftNVLinks: s.totNV + nv - dnv, LeftPCIe: s.totPC + pc - dpc}
	if s.wantNICs > 0 {
		q.NIC = s.nicScore()
	}
	if !s.found || q.Compare(s.best) > 0 {
		s.found, s.best = true, q
		copy(s.bestSet[:s.k], s.chosen[:s.k])
	}
}

// nicScore: Σ of the best wantNICs NICs' points to the current set (a counting sort on 6 levels).
func (s *searcher) nicScore() int {
	var count [int(PCIeSYS) + 1]int
	set := s.chosen[:s.k]
	for nic := range s.t.nicLevel {
		count[s.t.nicBest(nic, set)]++
	}
	score, left := 0, s.wantNICs
	for l := PCIePIX; l <= PCIeSYS && left > 0; l++ {
		take := min(left, count[l])
		score += take * l.Points()
		left -= take
	}
	return score
}

// greedy is the fallback for very large nodes: from every seed GPU, repeatedly add the GPU with the
// best marginal (NVLinks, PCIe) gain, preferring GPUs with fewer links to the rest; keep the best
// completed set by Quality. O(m²·k²). Not exact.
func (s *searcher) greedy() {
	n := s.t.n
	s.found = false
	for seed := 0; seed < s.m; seed++ {
		var in [MaxGPUsPerNode]bool
		var cur [MaxGPUsPerNode]int
		in[seed], cur[0] = true, s.idx[seed]
		nv, pc, dnv, dpc := 0, 0, s.degNV[seed], s.degPC[seed]
		for depth := 1; depth < s.k; depth++ {
			bp, bnv, bpc := -1, 0, 0
			for p := 0; p < s.m; p++ {
				if in[p] {
					continue
				}
				x, anv, apc := s.idx[p], 0, 0
				for q := 0; q < depth; q++ {
					anv += int(s.t.nv[x*n+cur[q]])
					apc += int(s.t.pcie[x*n+cur[q]])
				}
				if bp < 0 || anv > bnv || (anv == bnv && (apc > bpc ||
					(apc == bpc && s.degNV[p]+s.degPC[p] < s.degNV[bp]+s.degPC[bp]))) {
					bp, bnv, bpc = p, anv, apc
				}
			}
			in[bp], cur[depth] = true, s.idx[bp]
			nv, pc, dnv, dpc = nv+bnv, pc+bpc, dnv+s.degNV[bp], dpc+s.degPC[bp]
		}
		copy(s.chosen[:s.k], cur[:s.k])
		sort.Ints(s.chosen[:s.k])
		s.leaf(nv, pc, dnv, dpc)
	}
}

func binomial(n, k int) int {
	if k < 0 || k > n {
		return 0
	}
	k = min(k, n-k)
	r := 1
	for i := 1; i <= k; i++ {
		r = r * (n - k + i) / i
		if r > 1<<40 {
			return r
		}
	}
	return r
}

// firstFree takes the k lowest free indices: the choice on nodes without topology information.
func firstFree(free uint64, k int) ([]int, bool) {
	if bits.OnesCount64(free) < k {
		return nil, false
	}
	out := make([]int, 0, k)
	for f := free; len(out) < k; f &= f - 1 {
		out = append(out, bits.TrailingZeros64(f))
	}
	return out, true
}

// shared holds one GPUTopology per distinct interconnect seen by Share.
var shared = struct {
	sync.Mutex
	byKey map[string]*GPUTopology
}{byKey: map[string]*GPUTopology{}}

// maxShared bounds Share's registry: a cluster has a handful of node models; past this many
// distinct ones (a bug feeding unique topologies), values are no longer shared.
const maxShared = 1024

// Share returns the GPUTopology equal to t that an earlier call returned, else registers and
// returns t: nodes of one model then share one value, its memory and its Score memo.
func Share(t *GPUTopology) *GPUTopology {
	if t == nil {
		return nil
	}
	k := t.key()
	shared.Lock()
	defer shared.Unlock()
	if s, ok := shared.byKey[k]; ok {
		return s
	}
	if len(shared.byKey) < maxShared {
		shared.byKey[k] = t
	}
	return t
}

// key encodes everything that makes two topologies differ.
func (t *GPUTopology) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d|%v|%v|", t.n, t.nv, t.pcie)
	for i, name := range t.nicNames {
		fmt.Fprintf(&b, "%q:%v;", name, t.nicLevel[i])
	}
	return b.String()
}
