package topology_test

import (
	"math"
	"testing"

	"github.com/tensorstack/t9k/pkg/topology"
	"github.com/tensorstack/t9k/pkg/topology/baseline"
)

// TestRingYardstickOnFixtures pins baseline.RingBandwidth on the fixture machines the comparison
// tests use, with expectations worked out by hand from the machines' descriptions (see
// fixtures_test.go) and the yardstick's figures: NVLink 25 GB/s per link (NVLink5: 50), PCIe PIX 25,
// PXB 20, PHB 15, NODE 12, SYS 8. A ring of k GPUs has k hops.
func TestRingYardstickOnFixtures(t *testing.T) {
	inf := math.Inf(1)
	type want struct {
		gpus          []int
		bottle, total float64
	}
	for _, tc := range []struct {
		name  string
		spec  topology.GPUTopologySpec
		rates baseline.Rates
		cases []want
	}{
		{"DGX H100: every pair NV18 through the NVSwitches, 18×25 = 450", topology.DGXH100Spec(nil), baseline.NVLink4Rates, []want{
			{[]int{3}, inf, 0},
			{[]int{0, 1}, 450, 900},
			{[]int{0, 4}, 450, 900}, // across sockets, still NVSwitch
			{[]int{0, 1, 2, 3}, 450, 1800},
			{[]int{0, 2, 5, 7}, 450, 1800},
			{[]int{0, 1, 2, 3, 4, 5, 6, 7}, 450, 3600},
		}},
		{"DGX H100, GPU1 at 6 of 18 links: its pairs 6×25 = 150", topology.DGXH100Spec(map[int]int{1: 6}), baseline.NVLink4Rates, []want{
			{[]int{0, 1}, 150, 300},
			{[]int{4, 5}, 450, 900},
			{[]int{0, 1, 2, 3}, 150, 150 + 150 + 450 + 450}, // GPU1's two hops are degraded
			{[]int{0, 2, 3, 4}, 450, 1800},
			{[]int{0, 1, 2, 3, 4, 5, 6, 7}, 150, 2*150 + 6*450},
		}},
		{"HGX A100, GPU2 at 4 of 12 links: 12×25 = 300, GPU2's pairs 4×25 = 100", topology.HGXA100Spec(map[int]int{2: 4}), baseline.NVLink4Rates, []want{
			{[]int{0, 1}, 300, 600},
			{[]int{2, 3}, 100, 200},
			{[]int{0, 1, 2}, 100, 300 + 100 + 100},
			{[]int{4, 5, 6, 7}, 300, 1200},
		}},
		{"8x A100 PCIe, NV12 bridges on (0,1),(2,3),(4,5),(6,7); PIX (1,2),(5,6); NODE/SYS", topology.PCIeA100BridgedSpec(), baseline.NVLink4Rates, []want{
			{[]int{0, 1}, 300, 600},
			{[]int{6, 7}, 300, 600},
			{[]int{1, 2}, 25, 50},                        // PIX, no bridge
			{[]int{0, 2}, 12, 24},                        // NODE
			{[]int{0, 4}, 8, 16},                         // SYS
			{[]int{0, 1, 2}, 12, 300 + 25 + 12},          // 0-1-2-0
			{[]int{1, 2, 3}, 12, 25 + 300 + 12},          // 1-2-3-1
			{[]int{0, 1, 2, 3}, 12, 300 + 25 + 300 + 12}, // 0-1-2-3-0: two crossings, one PIX
			{[]int{4, 5, 6, 7}, 12, 300 + 25 + 300 + 12},
			{[]int{0, 1, 4, 5}, 8, 300 + 8 + 300 + 8},
			{[]int{0, 2, 4, 6}, 8, 12 + 8 + 12 + 8}, // four strays
			{[]int{0, 1, 2, 3, 4, 5, 6, 7}, 8, 2*(300+25+300) + 2*8},
		}},
		{"8x L40S: PIX in pairs, PXB on socket 0, NODE on socket 1, SYS across", topology.L40SSpec(), baseline.NVLink4Rates, []want{
			{[]int{0, 1}, 25, 50},
			{[]int{0, 2}, 20, 40},
			{[]int{4, 6}, 12, 24},
			{[]int{0, 4}, 8, 16},
			{[]int{0, 1, 2}, 20, 25 + 20 + 20},
			{[]int{0, 1, 2, 3}, 20, 25 + 20 + 25 + 20},
			{[]int{4, 5, 6, 7}, 12, 25 + 12 + 25 + 12},
			{[]int{2, 3, 4, 5}, 8, 25 + 8 + 25 + 8},
			{[]int{0, 1, 2, 3, 4, 5, 6, 7}, 8, (25 + 20 + 25) + 8 + (25 + 12 + 25) + 8},
		}},
		{"GB200 NVL72 tray: NVLink5, 18×50 = 900", topology.GB200TraySpec(), baseline.NVLink5Rates, []want{
			{[]int{0, 1}, 900, 1800},
			{[]int{0, 1, 2, 3}, 900, 3600},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, w := range tc.cases {
				b, s := tc.rates.RingBandwidth(tc.spec, w.gpus)
				if b != w.bottle || s != w.total {
					t.Errorf("%v: ring (%v, %v), want (%v, %v)", w.gpus, b, s, w.bottle, w.total)
				}
			}
		})
	}
	// The default rates are NVLink4's: on the GB200 tray every NVLink hop halves.
	if b, s := baseline.RingBandwidth(topology.GB200TraySpec(), []int{0, 1, 2, 3}); b != 450 || s != 1800 {
		t.Errorf("GB200 with default rates: (%v, %v), want (450, 1800)", b, s)
	}
}
