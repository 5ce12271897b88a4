package topology

import (
	"fmt"
	"math/bits"
	"math/rand"
	"reflect"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompileTopology(t *testing.T) {
	h := mustTopo(t, dgxH100Spec(map[int]int{3: 6}))
	if got := h.NVLinks(0, 7); got != 18 {
		t.Errorf("DGX H100 NVLinks(0,7) = %d, want 18 (NVSwitch pair)", got)
	}
	if got := h.NVLinks(3, 7); got != 6 {
		t.Errorf("degraded GPU3: NVLinks(3,7) = %d, want min(6,18) = 6", got)
	}
	if h.PCIePoints(0, 1) != PCIeNODE.Points() || h.PCIePoints(0, 4) != PCIeSYS.Points() {
		t.Errorf("DGX H100 PCIe points (0,1)=%d (0,4)=%d", h.PCIePoints(0, 1), h.PCIePoints(0, 4))
	}
	b := mustTopo(t, pcieA100BridgedSpec())
	if b.NVLinks(0, 1) != 12 || b.NVLinks(1, 0) != 12 || b.NVLinks(1, 2) != 0 {
		t.Errorf("bridged A100 NVLinks: (0,1)=%d (1,0)=%d (1,2)=%d", b.NVLinks(0, 1), b.NVLinks(1, 0), b.NVLinks(1, 2))
	}
	l := mustTopo(t, l40sSpec())
	for i := 0; i < 8; i++ {
		for j := 0; j < 8; j++ {
			if l.NVLinks(i, j) != 0 {
				t.Fatalf("L40S has NVLink %d-%d", i, j)
			}
			if l.PCIePoints(i, j) != l.PCIePoints(j, i) {
				t.Fatalf("PCIe not symmetric at %d,%d", i, j)
			}
		}
	}
	// Missing PCIe matrix: derived from NUMA.
	d := mustTopo(t, GPUTopologySpec{GPUs: []GPUSpec{{NUMA: 0}, {NUMA: 0}, {NUMA: 1}}})
	if d.PCIePoints(0, 1) != PCIeNODE.Points() || d.PCIePoints(0, 2) != PCIeSYS.Points() {
		t.Errorf("NUMA fallback: %d %d", d.PCIePoints(0, 1), d.PCIePoints(0, 2))
	}
	if _, err := NewGPUTopology(GPUTopologySpec{GPUs: []GPUSpec{{NVLinks: map[int]int{5: 2}}}}); err == nil {
		t.Error("bad NVLink peer accepted")
	}
	if _, err := NewGPUTopology(GPUTopologySpec{GPUs: make([]GPUSpec, 65)}); err == nil {
		t.Error("65 GPUs accepted")
	}
	if ParsePCIeLevel("pxb") != PCIePXB || ParsePCIeLevel("nope") != PCIeUnknown || PCIePHB.String() != "PHB" {
		t.Error("PCIe level parsing")
	}
}

func TestChoose(t *testing.T) {
	all := maskOfFirst(8)
	cases := []struct {
		name     string
		spec     GPUTopologySpec
		free     uint64
		req      GPURequest
		wantGPUs []int
		wantNICs []int
		wantOK   bool
	}{
		{"dgxh100 4 of 8 stay on one socket", dgxH100Spec(nil), all, GPURequest{GPUs: 4}, []int{0, 1, 2, 3}, nil, true},
		{"dgxh100 4 GPUs with their 4 PIX NICs", dgxH100Spec(nil), maskOf(2, 3, 4, 5, 6, 7), GPURequest{GPUs: 4, NICs: 4}, []int{4, 5, 6, 7}, []int{4, 5, 6, 7}, true},
		{"dgxh100 keep the socket of three whole", dgxH100Spec(nil), maskOf(0, 1, 4, 5, 6), GPURequest{GPUs: 2}, []int{0, 1}, nil, true},
		{"dgxh100 avoid degraded GPU", dgxH100Spec(map[int]int{0: 6}), maskOf(0, 1, 4, 5), GPURequest{GPUs: 2}, []int{4, 5}, nil, true},
		{"hgxa100 2 GPUs on one PCIe tree", hgxA100Spec(nil), maskOf(1, 2, 3, 5), GPURequest{GPUs: 2}, []int{2, 3}, nil, true},
		{"hgxa100 NIC on the pair's tree", hgxA100Spec(nil), maskOf(4, 5, 6, 7), GPURequest{GPUs: 2, NICs: 1}, []int{4, 5}, []int{2}, true},
		{"bridged pair beats PIX pair", pcieA100BridgedSpec(), maskOf(1, 2, 3, 5, 6, 7), GPURequest{GPUs: 2}, []int{2, 3}, nil, true},
		{"bridged: single GPU leaves the pair whole", pcieA100BridgedSpec(), maskOf(0, 1, 2), GPURequest{GPUs: 1}, []int{2}, nil, true},
		{"bridged: 3 GPUs take one pair plus the stray", pcieA100BridgedSpec(), maskOf(0, 1, 2, 4, 5), GPURequest{GPUs: 3}, []int{0, 1, 2}, nil, true},
		{"bridged: 4 GPUs take two whole pairs on one socket", pcieA100BridgedSpec(), maskOf(1, 2, 3, 4, 5, 6, 7), GPURequest{GPUs: 4}, []int{4, 5, 6, 7}, nil, true},
		// Both sockets offer a PIX pair; socket 0's leftovers (PXB) are worth more than socket 1's (NODE).
		{"l40s PIX pair from the weaker socket", l40sSpec(), all, GPURequest{GPUs: 2}, []int{4, 5}, nil, true},
		{"l40s 4 on one socket under one switch tree", l40sSpec(), all, GPURequest{GPUs: 4}, []int{0, 1, 2, 3}, nil, true},
		{"l40s without NIC: smallest of equal pairs", l40sSpec(), maskOf(2, 3, 6, 7), GPURequest{GPUs: 2}, []int{2, 3}, nil, true},
		{"l40s with NIC: the pair beside a NIC", l40sSpec(), maskOf(2, 3, 6, 7), GPURequest{GPUs: 2, NICs: 1}, []int{6, 7}, []int{1}, true},
		{"gb200 tray 2 on one Grace", gb200TraySpec(), maskOfFirst(4), GPURequest{GPUs: 2, NICs: 2}, []int{0, 1}, []int{0, 1}, true},
		{"too few free", dgxH100Spec(nil), maskOf(1, 2), GPURequest{GPUs: 3}, nil, nil, false},
		{"zero GPUs", dgxH100Spec(nil), all, GPURequest{GPUs: 0}, []int{}, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			topo := mustTopo(t, tc.spec)
			c, ok := topo.Choose(tc.free, tc.req)
			if ok != tc.wantOK {
				t.Fatalf("ok = %v, want %v", ok, tc.wantOK)
			}
			if !ok {
				return
			}
			if !reflect.DeepEqual(c.GPUs, tc.wantGPUs) {
				t.Errorf("GPUs = %v, want %v (quality %+v)", c.GPUs, tc.wantGPUs, c.Quality)
			}
			if !reflect.DeepEqual(c.NICs, tc.wantNICs) {
				t.Errorf("NICs = %v, want %v", c.NICs, tc.wantNICs)
			}
			if q := topo.SetQuality(tc.free, c.GPUs, tc.req.NICs); q != c.Quality {
				t.Errorf("SetQuality = %+v, Choose says %+v", q, c.Quality)
			}
			for _, g := range c.GPUs {
				if tc.free&(1<<uint(g)) == 0 {
					t.Errorf("chose busy GPU %d", g)
				}
			}
		})
	}
}

func TestNodeScoreOrdersNodes(t *testing.T) {
	h := mustTopo(t, dgxH100Spec(nil))
	a := mustTopo(t, hgxA100Spec(nil))
	b := mustTopo(t, pcieA100BridgedSpec())
	l := mustTopo(t, l40sSpec())
	score := func(topo *GPUTopology, free uint64) int64 {
		q, ok := topo.Score(free, GPURequest{GPUs: 2})
		if !ok {
			t.Fatal("no set")
		}
		return q.NodeScore()
	}
	all := maskOfFirst(8)
	sh, sa, sb, sl := score(h, all), score(a, all), score(b, all), score(l, all)
	if !(sh > sa && sa > sb && sb > sl) {
		t.Errorf("want H100 > A100 SXM > A100 bridged > L40S, got %d %d %d %d", sh, sa, sb, sl)
	}
	// A bridged node whose free GPUs are all strays offers less than one with a whole pair.
	if score(b, maskOf(0, 2, 4, 6)) >= score(b, maskOf(0, 1, 4)) {
		t.Error("strays scored at least as high as a whole bridged pair")
	}
}

func TestChooseGreedyOnLargeNode(t *testing.T) {
	// 24 GPUs in three NVSwitch domains of 8: C(24,8) is past ExactSearchLimit, so Choose is greedy;
	// it must still take one whole domain.
	var s GPUTopologySpec
	for i := 0; i < 24; i++ {
		s.GPUs = append(s.GPUs, GPUSpec{NVSwitchDomain: fmt.Sprint(i / 8), NVSwitchLinks: 18, NUMA: i / 12})
	}
	topo := mustTopo(t, s)
	free := maskOfFirst(24) &^ maskOf(0, 9)
	if binomial(22, 8) <= ExactSearchLimit {
		t.Fatal("test does not exercise the greedy path")
	}
	c, ok := topo.Choose(free, GPURequest{GPUs: 8})
	if !ok || len(c.GPUs) != 8 {
		t.Fatalf("got %v %v", c.GPUs, ok)
	}
	for _, g := range c.GPUs {
		if g/8 != 2 {
			t.Fatalf("greedy set %v spans NVSwitch domains; want 16..23", c.GPUs)
		}
	}
	if c.Quality.NVLinks != 18*28 {
		t.Errorf("NVLinks %d, want %d", c.Quality.NVLinks, 18*28)
	}
}

// --- property test: Choose equals brute force over all k-subsets, by Choose's own objective ---
//
// This checks the search, not the choice: that Choose (incremental sums, leftover terms, greedy
// cut-off) finds exactly the set its documented Quality ranks first. Whether that set is a good
// one is judged against an objective Choose does not share — the ring yardstick,
// baseline.RingBandwidth — in ring_prop_test.go (random machines) and
// gpuallocator_compare_test.go (fixture machines, against go-gpuallocator).

func randomSpec(r *rand.Rand, n int) GPUTopologySpec {
	var s GPUTopologySpec
	numa := make([]int, n)
	for i := range numa {
		numa[i] = r.Intn(2)
	}
	lv := pcieMatrix(n, func(i, j int) PCIeLevel { return PCIeLevel(r.Intn(6)) })
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			lv[i][j] = lv[j][i]
		}
	}
	for i := 0; i < n; i++ {
		g := GPUSpec{NUMA: numa[i], NVLinks: map[int]int{}}
		if r.Intn(2) == 0 {
			g.PCIe = lv[i]
		}
		if r.Intn(3) > 0 {
			g.NVSwitchDomain = []string{"", "a", "b"}[r.Intn(3)]
			g.NVSwitchLinks = r.Intn(19)
		}
		s.GPUs = append(s.GPUs, g)
	}
	for b := r.Intn(n); b > 0; b-- {
		i, j := r.Intn(n), r.Intn(n)
		if i != j {
			l := 1 + r.Intn(12)
			s.GPUs[i].NVLinks[j] = l
			s.GPUs[j].NVLinks[i] = l
		}
	}
	for k := r.Intn(4); k > 0; k-- {
		nic := NICSpec{Name: fmt.Sprint("nic", k), PCIe: make([]PCIeLevel, n)}
		for g := range nic.PCIe {
			nic.PCIe[g] = PCIeLevel(r.Intn(6))
		}
		s.NICs = append(s.NICs, nic)
	}
	return s
}

// refQuality computes Quality straight from the spec, independently of the compiled topology (but
// by Quality's definition, which is Choose's objective: agreement here says nothing about quality).
func refQuality(s GPUTopologySpec, free uint64, set []int, wantNICs int) Quality {
	links := func(i, j int) int {
		a, b := s.GPUs[i], s.GPUs[j]
		l := max(a.NVLinks[j], b.NVLinks[i])
		if a.NVSwitchDomain != "" && a.NVSwitchDomain == b.NVSwitchDomain {
			l += min(a.NVSwitchLinks, b.NVSwitchLinks)
		}
		return l
	}
	level := func(i, j int) PCIeLevel {
		var cands []PCIeLevel
		if s.GPUs[i].PCIe != nil && s.GPUs[i].PCIe[j] != PCIeUnknown {
			cands = append(cands, s.GPUs[i].PCIe[j])
		}
		if s.GPUs[j].PCIe != nil && s.GPUs[j].PCIe[i] != PCIeUnknown {
			cands = append(cands, s.GPUs[j].PCIe[i])
		}
		if len(cands) == 0 {
			if s.GPUs[i].NUMA == s.GPUs[j].NUMA {
				return PCIeNODE
			}
			return PCIeSYS
		}
		sort.Slice(cands, func(a, b int) bool { return cands[a] < cands[b] })
		return cands[0]
	}
	sums := func(xs []int) (nv, pc int) {
		for a := 0; a < len(xs); a++ {
			for b := a + 1; b < len(xs); b++ {
				nv += links(xs[a], xs[b])
				pc += level(xs[a], xs[b]).Points()
			}
		}
		return
	}
	var q Quality
	q.NVLinks, q.PCIe = sums(set)
	var left []int
	in := map[int]bool{}
	for _, x := range set {
		in[x] = true
	}
	for g := 0; g < len(s.GPUs); g++ {
		if free&(1<<uint(g)) != 0 && !in[g] {
			left = append(left, g)
		}
	}
	q.LeftNVLinks, q.LeftPCIe = sums(left)
	if wantNICs > 0 && len(set) > 0 {
		var pts []int
		for _, nic := range s.NICs {
			best := 0
			for _, g := range set {
				best = max(best, nic.PCIe[g].Points())
			}
			pts = append(pts, best)
		}
		sort.Sort(sort.Reverse(sort.IntSlice(pts)))
		for i := 0; i < wantNICs && i < len(pts); i++ {
			q.NIC += pts[i]
		}
	}
	return q
}

func TestChooseMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	for it := 0; it < 3000; it++ {
		n := 1 + r.Intn(8)
		spec := randomSpec(r, n)
		topo := mustTopo(t, spec)
		free := r.Uint64() & maskOfFirst(n)
		m := bits.OnesCount64(free)
		k := r.Intn(m + 1)
		nics := r.Intn(3)
		var idx []int
		for g := 0; g < n; g++ {
			if free&(1<<uint(g)) != 0 {
				idx = append(idx, g)
			}
		}
		// Brute force: every k-subset in lexicographic order; keep the first strict maximum.
		var best []int
		var bestQ Quality
		var rec func(start int, cur []int)
		rec = func(start int, cur []int) {
			if len(cur) == k {
				q := refQuality(spec, free, cur, nics)
				if best == nil || q.Compare(bestQ) > 0 {
					best, bestQ = append([]int{}, cur...), q
				}
				return
			}
			for p := start; p < len(idx); p++ {
				rec(p+1, append(cur, idx[p]))
			}
		}
		rec(0, []int{})
		c, ok := topo.Choose(free, GPURequest{GPUs: k, NICs: nics})
		if !ok {
			t.Fatalf("iteration %d: Choose failed with %d free, k=%d", it, m, k)
		}
		if !reflect.DeepEqual(c.GPUs, best) || c.Quality != bestQ {
			t.Fatalf("iteration %d (n=%d free=%b k=%d nics=%d): Choose %v %+v, brute force %v %+v",
				it, n, free, k, nics, c.GPUs, c.Quality, best, bestQ)
		}
		if nics > 0 && k > 0 && len(c.NICs) != min(nics, len(spec.NICs)) {
			t.Fatalf("iteration %d: %d NICs, want %d", it, len(c.NICs), min(nics, len(spec.NICs)))
		}
	}
}

// Score answers from its memo exactly what Choose computes, for any mask and request, asked once
// or again; masks differing only in bits past the node's GPUs share an answer.
func TestScoreMemoMatchesChoose(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	topos := []*GPUTopology{mustTopo(t, dgxH100Spec(nil)), mustTopo(t, pcieA100BridgedSpec()), mustTopo(t, l40sSpec())}
	for it := 0; it < 4000; it++ {
		topo := topos[r.Intn(len(topos))]
		free := r.Uint64()
		req := GPURequest{GPUs: r.Intn(10), NICs: r.Intn(3)}
		c, okC := topo.Choose(free, req)
		for range 2 {
			q, ok := topo.Score(free, req)
			require.Equal(t, okC, ok, "iteration %d", it)
			require.Equal(t, c.Quality, q, "iteration %d: free=%b req=%+v", it, free, req)
		}
	}
}

// Share hands every node of one model the same value, and keeps different models apart.
func TestShareByModel(t *testing.T) {
	a1, a2 := mustTopo(t, dgxH100Spec(nil)), mustTopo(t, dgxH100Spec(nil))
	b := mustTopo(t, l40sSpec())
	require.NotSame(t, a1, a2)
	require.Same(t, Share(a1), Share(a2))
	require.Same(t, Share(a1), Share(a1))
	require.NotSame(t, Share(a1), Share(b))
	// The same GPUs with other NIC names are another model.
	spec := dgxH100Spec(nil)
	require.NotEmpty(t, spec.NICs)
	spec.NICs = append([]NICSpec(nil), spec.NICs...)
	spec.NICs[0].Name += "-other"
	require.NotSame(t, Share(a1), Share(mustTopo(t, spec)))
	require.Nil(t, Share(nil))
}
