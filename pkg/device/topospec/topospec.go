/*
Copyright 2026 The t9k Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package topospec turns a NodeDevices inventory into pkg/topology input. It is apart from
// pkg/device so that the scheduler can use it without linking NVML.
package topospec

import (
	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/topology"
)

// FromInventory turns a NodeDevices inventory into the input of pkg/topology. GPU i of the spec is
// gpus[i] (NodeDevices lists GPUs by index, but indices can have gaps when a GPU fell off the bus, so
// callers map positions back through gpus[i].Index). NICs are one entry per ibdev name, ordered by
// name; a multi-port device counts once.
//
// GPU-to-GPU PCIe levels are not stored in NodeDevices; they are derived from what is: the same PCIe
// switch is PIX, the same root complex PHB (it may really be PXB when the GPUs share a root port
// behind two switches; PHB is the safe under-estimate), otherwise left to pkg/topology's NUMA rule
// (NODE within a NUMA node, SYS across).
func FromInventory(gpus []v1.GPU, nics []v1.NIC) topology.GPUTopologySpec {
	pos := make(map[int32]int, len(gpus))
	for i, g := range gpus {
		pos[g.Index] = i
	}
	spec := topology.GPUTopologySpec{GPUs: make([]topology.GPUSpec, len(gpus))}
	for i, g := range gpus {
		gs := topology.GPUSpec{NUMA: int(g.NUMANode), PCIe: make([]topology.PCIeLevel, len(gpus))}
		if nv := g.NVLink; nv != nil {
			if nv.NVSwitchDomain != "" {
				gs.NVSwitchDomain, gs.NVSwitchLinks = nv.NVSwitchDomain, int(nv.ActiveLinks)
			}
			for _, p := range nv.Peers {
				j, ok := pos[p.Index]
				if !ok || j == i || p.Via != v1.NVLinkViaBridge {
					continue // NVSwitch peers are implied by the shared domain
				}
				if gs.NVLinks == nil {
					gs.NVLinks = map[int]int{}
				}
				gs.NVLinks[j] = int(p.Links)
			}
		}
		for j, h := range gpus {
			switch {
			case i == j:
			case g.PCIeSwitch != "" && g.PCIeSwitch == h.PCIeSwitch:
				gs.PCIe[j] = topology.PCIePIX
			case g.PCIeRoot != "" && g.PCIeRoot == h.PCIeRoot:
				gs.PCIe[j] = topology.PCIePHB
			}
		}
		spec.GPUs[i] = gs
	}
	seen := map[string]bool{}
	for _, n := range nics {
		if seen[n.Name] {
			continue
		}
		seen[n.Name] = true
		ns := topology.NICSpec{Name: n.Name, PCIe: make([]topology.PCIeLevel, len(gpus))}
		for i, g := range gpus {
			for _, l := range g.NICs {
				if l.NIC == n.Name {
					ns.PCIe[i] = topology.ParsePCIeLevel(string(l.Level))
				}
			}
		}
		spec.NICs = append(spec.NICs, ns)
	}
	return spec
}
