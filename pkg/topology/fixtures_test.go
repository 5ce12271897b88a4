package topology

import (
	"fmt"
	"testing"
)

// Fixtures of real machine shapes, as a device agent would report them.

func numaSplit(n, perNUMA int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i / perNUMA
	}
	return out
}

// pcieMatrix builds a symmetric level matrix: level(i,j) from f, self = unknown.
func pcieMatrix(n int, f func(i, j int) PCIeLevel) [][]PCIeLevel {
	m := make([][]PCIeLevel, n)
	for i := range m {
		m[i] = make([]PCIeLevel, n)
		for j := range m[i] {
			if i != j {
				m[i][j] = f(i, j)
			}
		}
	}
	return m
}

func sameNUMA(numa []int) func(i, j int) PCIeLevel {
	return func(i, j int) PCIeLevel {
		if numa[i] == numa[j] {
			return PCIeNODE
		}
		return PCIeSYS
	}
}

// dgxH100Spec: 8 H100 SXM in one NVSwitch domain (18 links each), 4 GPUs per socket, and 8
// ConnectX-7 NICs, NIC i behind the PCIe switch of GPU i. linksOf overrides active links per GPU
// (degraded fabric).
func dgxH100Spec(linksOf map[int]int) GPUTopologySpec {
	numa := numaSplit(8, 4)
	pm := pcieMatrix(8, sameNUMA(numa))
	var s GPUTopologySpec
	for i := 0; i < 8; i++ {
		links := 18
		if l, ok := linksOf[i]; ok {
			links = l
		}
		s.GPUs = append(s.GPUs, GPUSpec{NVSwitchDomain: "nvsw", NVSwitchLinks: links, PCIe: pm[i], NUMA: numa[i]})
	}
	for k := 0; k < 8; k++ {
		lv := make([]PCIeLevel, 8)
		for g := range lv {
			switch {
			case g == k:
				lv[g] = PCIePIX
			case numa[g] == numa[k]:
				lv[g] = PCIeNODE
			default:
				lv[g] = PCIeSYS
			}
		}
		s.NICs = append(s.NICs, NICSpec{Name: fmt.Sprintf("mlx5_%d", k), PCIe: lv})
	}
	return s
}

// hgxA100Spec: 8 A100 SXM4 in one NVSwitch domain (12 links each); GPU pairs (0,1),(2,3),… share
// a PCIe switch tree (PXB); 4 NICs, NIC p on pair p's tree.
func hgxA100Spec(linksOf map[int]int) GPUTopologySpec {
	numa := numaSplit(8, 4)
	pm := pcieMatrix(8, func(i, j int) PCIeLevel {
		if i/2 == j/2 {
			return PCIePXB
		}
		return sameNUMA(numa)(i, j)
	})
	var s GPUTopologySpec
	for i := 0; i < 8; i++ {
		links := 12
		if l, ok := linksOf[i]; ok {
			links = l
		}
		s.GPUs = append(s.GPUs, GPUSpec{NVSwitchDomain: "nvsw", NVSwitchLinks: links, PCIe: pm[i], NUMA: numa[i]})
	}
	for p := 0; p < 4; p++ {
		lv := make([]PCIeLevel, 8)
		for g := range lv {
			switch {
			case g/2 == p:
				lv[g] = PCIePXB
			case numa[g] == numa[2*p]:
				lv[g] = PCIeNODE
			default:
				lv[g] = PCIeSYS
			}
		}
		s.NICs = append(s.NICs, NICSpec{Name: fmt.Sprintf("mlx5_%d", p), PCIe: lv})
	}
	return s
}

// pcieA100BridgedSpec: 8 A100 PCIe with NVLink bridges (NV12) on (0,1),(2,3),(4,5),(6,7).
// PCIe: GPUs 1,2 share a switch (PIX) and 5,6 too — adjacent cards of different bridge pairs —
// the rest of a socket is NODE, across sockets SYS. Bridges and PCIe disagree on purpose.
func pcieA100BridgedSpec() GPUTopologySpec {
	numa := numaSplit(8, 4)
	pm := pcieMatrix(8, func(i, j int) PCIeLevel {
		if (i == 1 && j == 2) || (i == 2 && j == 1) || (i == 5 && j == 6) || (i == 6 && j == 5) {
			return PCIePIX
		}
		return sameNUMA(numa)(i, j)
	})
	var s GPUTopologySpec
	for i := 0; i < 8; i++ {
		s.GPUs = append(s.GPUs, GPUSpec{NVLinks: map[int]int{i ^ 1: 12}, PCIe: pm[i], NUMA: numa[i]})
	}
	return s
}

// l40sSpec: 8 L40S, no NVLink, 2 NUMA nodes. Socket 0: two switches {0,1},{2,3} below one
// upstream switch (PXB between them). Socket 1: {4,5} and {6,7} on different root complexes (NODE).
// Two NICs: nic0 on switch {0,1}, nic1 on switch {6,7}.
func l40sSpec() GPUTopologySpec {
	numa := numaSplit(8, 4)
	lvl := func(i, j int) PCIeLevel {
		switch {
		case i/2 == j/2:
			return PCIePIX
		case numa[i] != numa[j]:
			return PCIeSYS
		case numa[i] == 0:
			return PCIePXB
		default:
			return PCIeNODE
		}
	}
	pm := pcieMatrix(8, lvl)
	var s GPUTopologySpec
	for i := 0; i < 8; i++ {
		s.GPUs = append(s.GPUs, GPUSpec{PCIe: pm[i], NUMA: numa[i]})
	}
	nic := func(name string, at int) NICSpec {
		lv := make([]PCIeLevel, 8)
		for g := range lv {
			if g == at {
				lv[g] = PCIePIX
			} else {
				lv[g] = lvl(g, at)
			}
		}
		return NICSpec{Name: name, PCIe: lv}
	}
	s.NICs = []NICSpec{nic("mlx5_0", 0), nic("mlx5_1", 6)}
	return s
}

// gb200TraySpec: one GB200 NVL72 compute tray: 4 B200 GPUs, 18 NVLinks each into the rack-wide
// NVLink domain (the clique), two Grace CPUs with two GPUs each, one NIC per GPU.
func gb200TraySpec() GPUTopologySpec {
	numa := numaSplit(4, 2)
	pm := pcieMatrix(4, sameNUMA(numa))
	var s GPUTopologySpec
	for i := 0; i < 4; i++ {
		s.GPUs = append(s.GPUs, GPUSpec{NVSwitchDomain: "clique-0", NVSwitchLinks: 18, PCIe: pm[i], NUMA: numa[i]})
	}
	for k := 0; k < 4; k++ {
		lv := make([]PCIeLevel, 4)
		for g := range lv {
			switch {
			case g == k:
				lv[g] = PCIePIX
			case numa[g] == numa[k]:
				lv[g] = PCIeNODE
			default:
				lv[g] = PCIeSYS
			}
		}
		s.NICs = append(s.NICs, NICSpec{Name: fmt.Sprintf("mlx5_%d", k), PCIe: lv})
	}
	return s
}

func mustTopo(t testing.TB, s GPUTopologySpec) *GPUTopology {
	t.Helper()
	topo, err := NewGPUTopology(s)
	if err != nil {
		t.Fatal(err)
	}
	return topo
}

func maskOf(idx ...int) uint64 {
	var m uint64
	for _, i := range idx {
		m |= 1 << uint(i)
	}
	return m
}
