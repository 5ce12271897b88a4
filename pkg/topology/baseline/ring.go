package baseline

import (
	"fmt"
	"math"

	"github.com/tensorstack/t9k/pkg/topology"
)

// Rates are the per-hop bandwidths, in GB/s per direction, the ring yardstick uses.
type Rates struct {
	// NVLink is the bandwidth of one NVLink, one direction.
	NVLink float64
	// PCIe paths, by nvidia-smi's names: PIX at most one PCIe switch between the GPUs, PXB several
	// switches but no host bridge, PHB through a host bridge, NODE across root complexes of one
	// NUMA node, SYS across NUMA nodes. An unknown level counts as SYS (the worst path).
	PIX, PXB, PHB, NODE, SYS float64
}

// PCIe figures shared by every generation's Rates. They are this yardstick's assumptions, chosen
// to be monotone in distance and no faster than one NVLink: ~25 GB/s is what a PCIe Gen4 x16 link
// (32 GB/s raw per direction) delivers GPU to GPU under one switch; each step further up the
// tree costs bandwidth (PXB 20, PHB 15); peer traffic between root complexes of one socket (NODE
// 12) and across the socket interconnect (SYS 8) is slower still, as NCCL's own model has it
// (NCCL src/graph/topo.h: PCI_BW 12 GB/s for a Gen3 x16 link, BDW_QPI_BW 6 and SKL_QPI_BW 10 GB/s
// for the socket interconnect).
const (
	RatePIX  = 25
	RatePXB  = 20
	RatePHB  = 15
	RateNODE = 12
	RateSYS  = 8
)

// Per-link NVLink bandwidth, one direction. NVIDIA quotes per-GPU totals, bidirectional: V100
// (NVLink2) 6 links 300 GB/s, A100 (NVLink3) 12 links 600 GB/s, H100 (NVLink4) 18 links 900 GB/s
// — 50 GB/s per link both ways, 25 GB/s each way — and B200/GB200 (NVLink5) 18 links 1.8 TB/s,
// 50 GB/s each way (https://www.nvidia.com/en-us/data-center/nvlink/; A100 and H100 Tensor Core
// GPU architecture whitepapers). These are nominal figures; NCCL's model (src/graph/topo.h,
// SM80_NVLINK_BW 20, SM90_NVLINK_BW 20.6, SM100_NVLINK_BW 40.1 GB/s) discounts them alike.
const (
	RateNVLink4 = 25 // NVLink2, NVLink3 and NVLink4 alike
	RateNVLink5 = 50
)

var (
	// NVLink4Rates fit V100, A100 and H100 machines (and machines without NVLink).
	NVLink4Rates = Rates{NVLink: RateNVLink4, PIX: RatePIX, PXB: RatePXB, PHB: RatePHB, NODE: RateNODE, SYS: RateSYS}
	// NVLink5Rates fit B200 and GB200 machines.
	NVLink5Rates = Rates{NVLink: RateNVLink5, PIX: RatePIX, PXB: RatePXB, PHB: RatePHB, NODE: RateNODE, SYS: RateSYS}
)

// RingBandwidth is the ring yardstick: an objective for a GPU set that neither t9k's chooser nor
// go-gpuallocator optimises, read straight from the machine description the way a reader of
// `nvidia-smi topo -m` would judge it. It returns the bottleneck and total bandwidth (GB/s) of the
// best ring over the GPU indices gpus of spec; compare two results with CompareRings.
//
// A collective over k GPUs (NCCL all-reduce, all-gather) runs as a ring: every GPU sends to the
// next, and the ring goes as fast as its slowest hop. So a set S of k GPUs is worth the bottleneck
// bandwidth of its best ring — the cyclic order of S that maximises the smallest per-hop
// bandwidth — and, among rings with the same bottleneck, the one with the largest sum of hop
// bandwidths (the secondary key, for ties). A hop's bandwidth (GB/s, one direction) between GPUs
// a and b is (Rates.HopBandwidth):
//
//   - NVLink, if any: the number of links × the per-link bandwidth of the generation. Direct
//     links (bridges) are GPUSpec.NVLinks (a bridge listed by either end counts; if the two ends
//     disagree, the larger count). Inside one NVSwitch domain (same non-empty NVSwitchDomain)
//     every pair has min(NVSwitchLinks of a, of b) links' worth. Both kinds add up.
//   - otherwise PCIe, by the path between them: the closer of the two GPUs' PCIe reports; with
//     neither, NODE on one NUMA node and SYS across (or when a NUMA node is unknown). The figures
//     are in Rates: PIX 25, PXB 20, PHB 15, NODE 12, SYS 8 GB/s.
//
// It reads only the raw GPUTopologySpec and calls nothing of pkg/topology's (no compiled
// GPUTopology, no Quality or Compare, no PCIe points, no PairLevel), so it can judge the chooser
// without sharing its objective. It is a yardstick for tests and benchmarks, not NCCL's model.
//
// This function uses NVLink4Rates (25 GB/s per NVLink): GPUTopologySpec does not say which NVLink
// generation a machine has, and within one machine the generation scales every NVLink hop alike,
// so it only matters where NVLink and PCIe hops meet; use NVLink5Rates.RingBandwidth for B200 and
// GB200. See Rates.RingBandwidth for the details (two GPUs, one GPU, cost, panics).
func RingBandwidth(spec topology.GPUTopologySpec, gpus []int) (bottleneck, total float64) {
	return NVLink4Rates.RingBandwidth(spec, gpus)
}

// RingBandwidth returns, for the GPU indices gpus of spec, the bottleneck (smallest hop) bandwidth
// of the best ring over them and that ring's total (sum over its k hops), in GB/s. The best ring
// maximises the bottleneck, then the total. Two GPUs make a ring of two hops over the same pair
// (bottleneck b, total 2b). One GPU (or none) has no hop to wait for: bottleneck +Inf, total 0,
// the same for every choice.
//
// It tries every cyclic order ((k−1)! with the first GPU fixed, pruned once a partial ring falls
// below the best bottleneck): fine for a node's GPUs (k ≤ 8 takes at most 5040 orders); it refuses
// k > 12. It panics on an index out of range or a GPU listed twice.
func (r Rates) RingBandwidth(spec topology.GPUTopologySpec, gpus []int) (bottleneck, total float64) {
	k := len(gpus)
	seen := map[int]bool{}
	for _, g := range gpus {
		if g < 0 || g >= len(spec.GPUs) || seen[g] {
			panic(fmt.Sprintf("baseline.RingBandwidth: bad GPU set %v for %d GPUs", gpus, len(spec.GPUs)))
		}
		seen[g] = true
	}
	if k > 12 {
		panic(fmt.Sprintf("baseline.RingBandwidth: %d GPUs is too many to try every ring", k))
	}
	if k <= 1 {
		return math.Inf(1), 0
	}
	bw := make([][]float64, k)
	for a := range bw {
		bw[a] = make([]float64, k)
		for b := range bw[a] {
			if a != b {
				bw[a][b] = r.HopBandwidth(spec, gpus[a], gpus[b])
			}
		}
	}
	// Depth-first over orders starting at position 0.
	order := make([]int, 0, k)
	used := make([]bool, k)
	bestMin, bestSum := math.Inf(-1), math.Inf(-1)
	var rec func(curMin, curSum float64)
	rec = func(curMin, curSum float64) {
		if curMin < bestMin {
			return // the bottleneck can only drop further
		}
		if len(order) == k {
			last := bw[order[k-1]][order[0]]
			m, s := min(curMin, last), curSum+last
			if m > bestMin || (m == bestMin && s > bestSum) {
				bestMin, bestSum = m, s
			}
			return
		}
		prev := order[len(order)-1]
		for x := 1; x < k; x++ {
			if used[x] {
				continue
			}
			used[x] = true
			order = append(order, x)
			h := bw[prev][x]
			rec(min(curMin, h), curSum+h)
			order = order[:len(order)-1]
			used[x] = false
		}
	}
	used[0] = true
	order = append(order, 0)
	rec(math.Inf(1), 0)
	return bestMin, bestSum
}

// CompareRings orders two results of RingBandwidth: -1, 0 or +1 as (b1, t1) is worse than, equal to
// or better than (b2, t2) — bottleneck first, then total.
func CompareRings(b1, t1, b2, t2 float64) int {
	switch {
	case b1 != b2:
		if b1 > b2 {
			return 1
		}
		return -1
	case t1 != t2:
		if t1 > t2 {
			return 1
		}
		return -1
	}
	return 0
}

// HopBandwidth is the bandwidth (GB/s, one direction) of one ring hop between GPUs a and b of spec
// (a != b): NVLink if the pair has any, else the PCIe figure of their path.
func (r Rates) HopBandwidth(spec topology.GPUTopologySpec, a, b int) float64 {
	ga, gb := spec.GPUs[a], spec.GPUs[b]
	links := max(ga.NVLinks[b], gb.NVLinks[a], 0)
	if ga.NVSwitchDomain != "" && ga.NVSwitchDomain == gb.NVSwitchDomain {
		links += max(min(ga.NVSwitchLinks, gb.NVSwitchLinks), 0)
	}
	if links > 0 {
		return float64(links) * r.NVLink
	}
	return r.pcie(pathLevel(ga, gb, a, b))
}

// pathLevel reads the PCIe path between GPUs a and b (spec entries ga, gb) from their reports.
func pathLevel(ga, gb topology.GPUSpec, a, b int) topology.PCIeLevel {
	known := func(l topology.PCIeLevel) bool { return l >= topology.PCIePIX && l <= topology.PCIeSYS }
	level := topology.PCIeUnknown
	if ga.PCIe != nil && b < len(ga.PCIe) && known(ga.PCIe[b]) {
		level = ga.PCIe[b]
	}
	if gb.PCIe != nil && a < len(gb.PCIe) && known(gb.PCIe[a]) && (level == topology.PCIeUnknown || gb.PCIe[a] < level) {
		level = gb.PCIe[a]
	}
	if level != topology.PCIeUnknown {
		return level
	}
	if ga.NUMA >= 0 && ga.NUMA == gb.NUMA {
		return topology.PCIeNODE
	}
	return topology.PCIeSYS
}

func (r Rates) pcie(l topology.PCIeLevel) float64 {
	switch l {
	case topology.PCIePIX:
		return r.PIX
	case topology.PCIePXB:
		return r.PXB
	case topology.PCIePHB:
		return r.PHB
	case topology.PCIeNODE:
		return r.NODE
	}
	return r.SYS
}
