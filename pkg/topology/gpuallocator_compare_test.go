package topology_test

import (
	"fmt"
	"math/bits"
	"testing"

	"github.com/tensorstack/t9k/pkg/topology"
	"github.com/tensorstack/t9k/pkg/topology/baseline"
)

// Comparison with NVIDIA go-gpuallocator v0.6.0 (pkg/topology/baseline) on every free set and
// every size of real machine shapes.

type fixture struct {
	name     string
	spec     topology.GPUTopologySpec
	nvswitch bool
}

func compareFixtures() []fixture {
	return []fixture{
		{"DGX H100", topology.DGXH100Spec(nil), true},
		{"DGX H100, GPU1 at 6 of 18 links", topology.DGXH100Spec(map[int]int{1: 6}), true},
		{"HGX A100", topology.HGXA100Spec(nil), true},
		{"HGX A100, GPU2 at 4 of 12 links", topology.HGXA100Spec(map[int]int{2: 4}), true},
		{"8x A100 PCIe, NVLink bridges in pairs", topology.PCIeA100BridgedSpec(), false},
		{"8x L40S PCIe, no NVLink", topology.L40SSpec(), false},
		{"GB200 NVL72 tray", topology.GB200TraySpec(), true},
	}
}

func TestCompareWithGoGPUAllocator(t *testing.T) {
	for _, fx := range compareFixtures() {
		t.Run(fx.name, func(t *testing.T) {
			topo := topology.MustTopo(t, fx.spec)
			theirs, err := baseline.New(fx.spec)
			if err != nil {
				t.Fatal(err)
			}
			n := topo.NumGPUs()
			// What each side believes about NVLink.
			seenPairs, truePairs := 0, 0
			for i := 0; i < n; i++ {
				for j := i + 1; j < n; j++ {
					seen := theirs.SeenNVLinks(i, j)
					if topo.NVLinks(i, j) > 0 {
						truePairs++
					}
					if seen > 0 {
						seenPairs++
					}
					if !fx.nvswitch && seen != topo.NVLinks(i, j) {
						t.Fatalf("bridge fixture: go-gpuallocator sees %d links %d-%d, we count %d", seen, i, j, topo.NVLinks(i, j))
					}
				}
			}
			if fx.nvswitch && (seenPairs != 0 || truePairs != n*(n-1)/2) {
				t.Fatalf("NVSwitch fixture: go-gpuallocator sees NVLink on %d pairs, we on %d of %d", seenPairs, truePairs, n*(n-1)/2)
			}
			// Every free set and every size.
			cases, better := 0, 0
			var example string
			for free := uint64(1); free <= topo.AllGPUs(); free++ {
				for k := 1; k <= bits.OnesCount64(free); k++ {
					ts := theirs.Allocate(free, k)
					ours, ok := topo.Choose(free, topology.GPURequest{GPUs: k})
					if !ok || len(ts) != k {
						t.Fatalf("free %b k %d: ours %v theirs %v", free, k, ours.GPUs, ts)
					}
					cases++
					so, st := baseline.Score(topo, ours.GPUs), baseline.Score(topo, ts)
					if so < st {
						t.Fatalf("free %v k %d: ours %v scores %d < go-gpuallocator %v %d", topology.MaskIndices(free), k, ours.GPUs, so, ts, st)
					}
					if so > st {
						better++
						if example == "" {
							example = fmt.Sprintf("free %v k=%d: ours %v (%d) vs go-gpuallocator %v (%d)", topology.MaskIndices(free), k, ours.GPUs, so, ts, st)
						}
					}
				}
			}
			t.Logf("%s: %d cases, ours >= go-gpuallocator in all, strictly better in %d; NVLink pairs seen by go-gpuallocator %d, by us %d. e.g. %s",
				fx.name, cases, better, seenPairs, truePairs, example)
		})
	}
}

// TestStrictlyBetterOnDegradedNVSwitch pins the case the NVSwitch blind spot costs: with GPU1's
// fabric degraded, go-gpuallocator (seeing only PCIe) takes {0,1}; we take {4,5}.
func TestStrictlyBetterOnDegradedNVSwitch(t *testing.T) {
	spec := topology.DGXH100Spec(map[int]int{1: 6})
	topo := topology.MustTopo(t, spec)
	theirs, err := baseline.New(spec)
	if err != nil {
		t.Fatal(err)
	}
	ts := theirs.Allocate(topology.MaskOf(0, 1, 4, 5), 2)
	ours, _ := topo.Choose(topology.MaskOf(0, 1, 4, 5), topology.GPURequest{GPUs: 2})
	if fmt.Sprint(ours.GPUs) != "[4 5]" || fmt.Sprint(ts) != "[0 1]" {
		t.Fatalf("ours %v theirs %v", ours.GPUs, ts)
	}
	if so, st := baseline.Score(topo, ours.GPUs), baseline.Score(topo, ts); so <= st {
		t.Fatalf("ours %d not above theirs %d", so, st)
	}
}
