package baseline

import (
	"math"
	"math/rand"
	"testing"

	"github.com/tensorstack/t9k/pkg/topology"
)

// The ring yardstick on small hand-made machines; the fixture machines are in
// pkg/topology/ring_yardstick_test.go.

func TestHopBandwidth(t *testing.T) {
	P := func(ls ...topology.PCIeLevel) []topology.PCIeLevel { return ls }
	U := topology.PCIeUnknown
	spec := topology.GPUTopologySpec{GPUs: []topology.GPUSpec{
		// 0: bridge to 1 (reported only by 0: counts), switch domain "a" with 6 links, PCIe PIX to 2.
		{NVLinks: map[int]int{1: 4}, NVSwitchDomain: "a", NVSwitchLinks: 6, PCIe: P(U, U, topology.PCIePIX, U, U), NUMA: 0},
		// 1: the other end reports 2 links: the larger count (4) wins.
		{NVLinks: map[int]int{0: 2}, NUMA: 0},
		// 2: reports SYS to 0, but 0 reports PIX: the closer report wins.
		{PCIe: P(topology.PCIeSYS, U, U, U, U), NUMA: 1},
		// 3: domain "a" with 18 links: min(6, 18) with GPU 0; no PCIe matrix, NUMA unknown.
		{NVSwitchDomain: "a", NVSwitchLinks: 18, NUMA: -1},
		// 4: domain "b": no NVLink to 3; NUMA 0 like 0 and 1.
		{NVSwitchDomain: "b", NVSwitchLinks: 18, NUMA: 0},
	}}
	r := NVLink4Rates
	for _, tc := range []struct {
		a, b int
		want float64
	}{
		{0, 1, 4 * 25}, // bridge, the larger of the two reports
		{1, 0, 4 * 25}, // symmetric
		{0, 3, 6 * 25}, // NVSwitch: min(6, 18) links
		{3, 0, 6 * 25}, // symmetric
		{0, 2, 25},     // PIX: the closer of PIX and SYS
		{2, 0, 25},     // symmetric
		{1, 4, 12},     // no reports, one NUMA node: NODE
		{0, 4, 12},     // different NVSwitch domains, one NUMA node: NODE
		{1, 2, 8},      // no reports, two NUMA nodes: SYS
		{2, 4, 8},      // NUMA 1 and 0: SYS
		{3, 4, 8},      // different NVSwitch domains, NUMA unknown: SYS
		{1, 3, 8},      // nothing known: SYS
	} {
		if got := r.HopBandwidth(spec, tc.a, tc.b); got != tc.want {
			t.Errorf("HopBandwidth(%d,%d) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
	if got := NVLink5Rates.HopBandwidth(spec, 0, 3); got != 6*50 {
		t.Errorf("NVLink5 hop 0-3 = %v, want 300", got)
	}
	// Bridge plus switch links add up.
	both := topology.GPUTopologySpec{GPUs: []topology.GPUSpec{
		{NVLinks: map[int]int{1: 2}, NVSwitchDomain: "a", NVSwitchLinks: 4},
		{NVLinks: map[int]int{0: 2}, NVSwitchDomain: "a", NVSwitchLinks: 4},
	}}
	if got := r.HopBandwidth(both, 0, 1); got != 6*25 {
		t.Errorf("bridge + switch = %v, want 150", got)
	}
}

func TestRingBandwidthSmall(t *testing.T) {
	// A line 0 -NV4- 1 -NV2- 2 -NV4- 3, everything else PCIe: PIX between 0 and 3, SYS otherwise.
	P := func(ls ...topology.PCIeLevel) []topology.PCIeLevel { return ls }
	X, S, U := topology.PCIePIX, topology.PCIeSYS, topology.PCIeUnknown
	spec := topology.GPUTopologySpec{GPUs: []topology.GPUSpec{
		{NVLinks: map[int]int{1: 4}, PCIe: P(U, S, S, X)},
		{NVLinks: map[int]int{0: 4, 2: 2}, PCIe: P(S, U, S, S)},
		{NVLinks: map[int]int{1: 2, 3: 4}, PCIe: P(S, S, U, S)},
		{NVLinks: map[int]int{2: 4}, PCIe: P(X, S, S, U)},
	}}
	inf := math.Inf(1)
	for _, tc := range []struct {
		gpus          []int
		bottle, total float64
	}{
		{nil, inf, 0},
		{[]int{2}, inf, 0},
		{[]int{0, 1}, 100, 200},                      // two hops over one pair
		{[]int{1, 2}, 50, 100},                       // NV2
		{[]int{0, 3}, 25, 50},                        // PIX
		{[]int{0, 2}, 8, 16},                         // SYS
		{[]int{0, 1, 2}, 8, 100 + 50 + 8},            // 0-1-2-0: closing hop 2-0 is SYS
		{[]int{0, 1, 2, 3}, 25, 100 + 50 + 100 + 25}, // 0-1-2-3-0: closes over PIX
		{[]int{3, 2, 1, 0}, 25, 275},                 // order of the input does not matter
		{[]int{0, 1, 3}, 8, 100 + 8 + 25},            // 0-1-3-0: 1-3 SYS; any order has it
	} {
		b, s := NVLink4Rates.RingBandwidth(spec, tc.gpus)
		if b != tc.bottle || s != tc.total {
			t.Errorf("RingBandwidth(%v) = (%v, %v), want (%v, %v)", tc.gpus, b, s, tc.bottle, tc.total)
		}
	}
	if b, s := RingBandwidth(spec, []int{0, 1, 2, 3}); b != 25 || s != 275 {
		t.Errorf("RingBandwidth (NVLink4 rates) = (%v, %v)", b, s)
	}
	for _, bad := range [][]int{{0, 0}, {0, 4}, {-1}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RingBandwidth(%v) did not panic", bad)
				}
			}()
			RingBandwidth(spec, bad)
		}()
	}
}

// The best ring is not the input order and not the greedy one: on a 4-cycle of fast links with
// slow diagonals, only the cycle order avoids the diagonals.
func TestRingBandwidthFindsTheCycle(t *testing.T) {
	spec := topology.GPUTopologySpec{GPUs: []topology.GPUSpec{
		{NVLinks: map[int]int{1: 1, 3: 3}, NUMA: 0},
		{NVLinks: map[int]int{0: 1, 2: 2}, NUMA: 0},
		{NVLinks: map[int]int{1: 2, 3: 2}, NUMA: 0},
		{NVLinks: map[int]int{2: 2, 0: 3}, NUMA: 0},
	}}
	// Diagonals 0-2 and 1-3 are NODE (12); the cycle 0-1-2-3-0 has hops 25, 50, 50, 75.
	if b, s := RingBandwidth(spec, []int{0, 2, 1, 3}); b != 25 || s != 200 {
		t.Errorf("got (%v, %v), want (25, 200)", b, s)
	}
}

func TestCompareRings(t *testing.T) {
	inf := math.Inf(1)
	for _, tc := range []struct {
		b1, t1, b2, t2 float64
		want           int
	}{
		{25, 50, 8, 1000, 1}, {8, 1000, 25, 50, -1}, {25, 60, 25, 50, 1}, {25, 50, 25, 60, -1},
		{25, 50, 25, 50, 0}, {inf, 0, inf, 0, 0}, {inf, 0, 450, 900, 1},
	} {
		if got := CompareRings(tc.b1, tc.t1, tc.b2, tc.t2); got != tc.want {
			t.Errorf("CompareRings(%v,%v,%v,%v) = %d, want %d", tc.b1, tc.t1, tc.b2, tc.t2, got, tc.want)
		}
	}
}

// The pruned search equals a plain one: every permutation (no fixed start), every hop evaluated.
func TestRingBandwidthMatchesPlainEnumeration(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	levels := []topology.PCIeLevel{topology.PCIeUnknown, topology.PCIePIX, topology.PCIePXB, topology.PCIePHB, topology.PCIeNODE, topology.PCIeSYS}
	for it := 0; it < 300; it++ {
		n := 1 + r.Intn(7)
		spec := topology.GPUTopologySpec{GPUs: make([]topology.GPUSpec, n)}
		for i := range spec.GPUs {
			g := &spec.GPUs[i]
			g.NUMA = r.Intn(3) - 1
			g.NVLinks = map[int]int{}
			if r.Intn(2) == 0 {
				g.NVSwitchDomain, g.NVSwitchLinks = []string{"a", "b"}[r.Intn(2)], r.Intn(4)
			}
			g.PCIe = make([]topology.PCIeLevel, n)
			for j := range g.PCIe {
				g.PCIe[j] = levels[r.Intn(len(levels))]
			}
		}
		for b := r.Intn(n + 1); b > 0; b-- {
			i, j := r.Intn(n), r.Intn(n)
			if i != j {
				spec.GPUs[i].NVLinks[j] = r.Intn(3)
			}
		}
		set := r.Perm(n)[:1+r.Intn(n)]
		gotB, gotT := NVLink4Rates.RingBandwidth(spec, set)
		wantB, wantT := math.Inf(-1), math.Inf(-1)
		if len(set) == 1 {
			wantB, wantT = math.Inf(1), 0
		}
		var perm func(p []int, k int)
		perm = func(p []int, k int) {
			if k == len(p) {
				if len(p) < 2 {
					return
				}
				b, s := math.Inf(1), 0.0
				for i := range p {
					h := NVLink4Rates.HopBandwidth(spec, p[i], p[(i+1)%len(p)])
					b, s = min(b, h), s+h
				}
				if b > wantB || (b == wantB && s > wantT) {
					wantB, wantT = b, s
				}
				return
			}
			for i := k; i < len(p); i++ {
				p[k], p[i] = p[i], p[k]
				perm(p, k+1)
				p[k], p[i] = p[i], p[k]
			}
		}
		perm(append([]int(nil), set...), 0)
		if gotB != wantB || gotT != wantT {
			t.Fatalf("it %d: set %v on %+v: got (%v, %v), plain enumeration (%v, %v)", it, set, spec, gotB, gotT, wantB, wantT)
		}
	}
}
