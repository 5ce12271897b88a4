package localcluster

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node labels naming topology levels, innermost first (NVIDIA GFD and topograph conventions). The
// scheduler's topology plugin takes this list as its default.
const (
	LabelClique = "nvidia.com/gpu.clique"
	LabelBlock  = "network.topology.nvidia.com/block"
	LabelSpine  = "network.topology.nvidia.com/spine"
	LabelZone   = "topology.kubernetes.io/zone"

	// LabelFixture names the simulated machine a node is (read by device-agent --simulate-nodes).
	LabelFixture = "device.tensorstack.dev/fixture"
	// LabelSimulated marks nodes created by the local cluster.
	LabelSimulated = "local.tensorstack.dev/simulated"
	// AnnotationKwok makes kwok play the kubelet for a node.
	AnnotationKwok = "kwok.x-k8s.io/node"

	ResourceGPU = corev1.ResourceName("nvidia.com/gpu")
)

// Machine describes the hardware of every simulated node.
type Machine struct {
	Fixture  string // device-agent fixture name, e.g. dgx-h100
	Product  string // GFD product label
	GPUs     int
	CPU      string
	Memory   string
	MemoryMB int // per GPU, for the GFD label
}

// DGXH100 is the default machine: 8× H100 SXM on NVSwitch, 2×56-core CPUs, 2 TiB.
var DGXH100 = Machine{Fixture: "dgx-h100", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, CPU: "224", Memory: "2Ti", MemoryMB: 81559}

// PCIeA100Bridged is 8× A100 80GB PCIe joined in pairs by NVLink bridges, 2×32-core CPUs, 1 TiB.
var PCIeA100Bridged = Machine{Fixture: "pcie-a100-bridged", Product: "NVIDIA-A100-80GB-PCIe", GPUs: 8, CPU: "128", Memory: "1Ti", MemoryMB: 81920}

// PCIeL40S is 8× L40S, two per PCIe switch and no NVLink, 2×48-core CPUs, 1 TiB.
var PCIeL40S = Machine{Fixture: "pcie-l40s", Product: "NVIDIA-L40S", GPUs: 8, CPU: "192", Memory: "1Ti", MemoryMB: 46068}

// Spec is the shape of the simulated cluster: spines × blocks per spine × nodes per block.
type Spec struct {
	Zone           string
	Spines         int
	BlocksPerSpine int
	NodesPerBlock  int
	Machine        Machine
	// BlockMachines, when set, makes a mixed cluster: the nodes of block b (numbered across the
	// cluster) are BlockMachines[b % len]. Machine is then unused.
	BlockMachines []Machine
}

// MachineOf is the machine of block b.
func (s Spec) MachineOf(block int) Machine {
	if len(s.BlockMachines) > 0 {
		return s.BlockMachines[block%len(s.BlockMachines)]
	}
	return s.Machine
}

// DefaultSpec is 2 spines × 2 blocks × 4 nodes × 8 GPUs = 16 nodes, 128 GPUs.
func DefaultSpec() Spec {
	return Spec{Zone: "zone-a", Spines: 2, BlocksPerSpine: 2, NodesPerBlock: 4, Machine: DGXH100}
}

// Validate rejects shapes that cannot make a cluster.
func (s Spec) Validate() error {
	if s.Spines < 1 || s.BlocksPerSpine < 1 || s.NodesPerBlock < 1 {
		return fmt.Errorf("cluster shape %dx%dx%d: every level needs at least 1", s.Spines, s.BlocksPerSpine, s.NodesPerBlock)
	}
	machines := s.BlockMachines
	if len(machines) == 0 {
		machines = []Machine{s.Machine}
	}
	for _, m := range machines {
		if m.GPUs < 0 {
			return fmt.Errorf("gpus per node must not be negative, got %d", m.GPUs)
		}
		for _, q := range []string{m.CPU, m.Memory} {
			if _, err := resource.ParseQuantity(q); err != nil {
				return fmt.Errorf("machine quantity %q: %w", q, err)
			}
		}
	}
	return nil
}

// NodeCount is the number of nodes the spec describes.
func (s Spec) NodeCount() int { return s.Spines * s.BlocksPerSpine * s.NodesPerBlock }

// Nodes returns the Node objects of the spec, named s<spine>-b<block>-n<node> with blocks numbered
// across the cluster so a block name is unique on its own.
func (s Spec) Nodes() []*corev1.Node {
	nodes := make([]*corev1.Node, 0, s.NodeCount())
	for sp := 0; sp < s.Spines; sp++ {
		for b := 0; b < s.BlocksPerSpine; b++ {
			block := sp*s.BlocksPerSpine + b
			m := s.MachineOf(block)
			for n := 0; n < s.NodesPerBlock; n++ {
				name := fmt.Sprintf("s%d-b%d-n%d", sp, block, n)
				capacity := corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse(m.CPU),
					corev1.ResourceMemory: resource.MustParse(m.Memory),
					corev1.ResourcePods:   resource.MustParse("110"),
					ResourceGPU:           *resource.NewQuantity(int64(m.GPUs), resource.DecimalSI),
				}
				nodes = append(nodes, &corev1.Node{
					ObjectMeta: metav1.ObjectMeta{
						Name: name,
						Labels: map[string]string{
							corev1.LabelHostname:     name,
							corev1.LabelOSStable:     "linux",
							corev1.LabelArchStable:   "amd64",
							LabelBlock:               fmt.Sprintf("block-%d", block),
							LabelSpine:               fmt.Sprintf("spine-%d", sp),
							LabelZone:                s.Zone,
							LabelFixture:             m.Fixture,
							LabelSimulated:           "true",
							"nvidia.com/gpu.product": m.Product,
							"nvidia.com/gpu.count":   fmt.Sprint(m.GPUs),
							"nvidia.com/gpu.memory":  fmt.Sprint(m.MemoryMB),
							"type":                   "kwok",
						},
						Annotations: map[string]string{AnnotationKwok: "fake"},
					},
					Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity.DeepCopy()},
				})
			}
		}
	}
	return nodes
}
