package localcluster

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tensorstack/t9k/pkg/device/fixtures"
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
	// LabelFixtureIndex picks the instance of the fixture, e.g. the GB200 tray (trays 18k..18k+17
	// are rack k, whose NVLink clique the device-agent publishes).
	LabelFixtureIndex = "device.tensorstack.dev/fixture-index"
	// LabelSimulated marks nodes created by the local cluster.
	LabelSimulated = "local.tensorstack.dev/simulated"
	// AnnotationKwok makes kwok play the kubelet for a node.
	AnnotationKwok = "kwok.x-k8s.io/node"

	ResourceGPU = corev1.ResourceName("nvidia.com/gpu")
)

// ResourceRDMA is the shared RDMA resource of k8s-rdma-shared-dev-plugin (its example name), the
// T9kTopology plugin's default nicResource: a pod requesting it also gets the NICs nearest its GPUs.
const ResourceRDMA = corev1.ResourceName("rdma/hca_shared_devices_a")

// Machine describes the hardware of a simulated node.
type Machine struct {
	Fixture  string // device-agent fixture name, e.g. dgx-h100
	Product  string // GFD product label
	GPUs     int
	CPU      string
	Memory   string
	MemoryMB int // per GPU, for the GFD label
	// RDMA is how many pods may share the node's RDMA NICs (the plugin's rdmaHcaMax); 0 for a
	// machine without RDMA NICs.
	RDMA int
	// CliqueSize is the most machines that share one multi-node NVLink domain (GB200 NVL72: 18
	// trays); 0 for machines whose NVLink ends at the node.
	CliqueSize int
}

// rdmaHcaMax is k8s-rdma-shared-dev-plugin's example rdmaHcaMax: how many pods share the HCAs.
const rdmaHcaMax = 1000

// The machine kinds of the device-agent's fixtures (pkg/device/fixtures), with the GPUs, CPUs and
// memory of the vendor's machine. Every fixture has RDMA NICs (InfiniBand or RoCE).
var (
	// DGXH100 is the default machine: 8× H100 SXM on NVSwitch, 2×56-core CPUs, 2 TiB.
	DGXH100 = Machine{Fixture: "dgx-h100", Product: "NVIDIA-H100-80GB-HBM3", GPUs: 8, CPU: "224", Memory: "2Ti", MemoryMB: 81559, RDMA: rdmaHcaMax}
	// HGXA100 is 8× A100 SXM4 80GB on NVSwitch (the DGX A100 layout), 2×64-core CPUs, 2 TiB.
	HGXA100 = Machine{Fixture: "hgx-a100", Product: "NVIDIA-A100-SXM4-80GB", GPUs: 8, CPU: "256", Memory: "2Ti", MemoryMB: 81920, RDMA: rdmaHcaMax}
	// PCIeA100Bridged is 8× A100 80GB PCIe joined in pairs by NVLink bridges, 2×32-core CPUs, 1 TiB.
	PCIeA100Bridged = Machine{Fixture: "pcie-a100-bridged", Product: "NVIDIA-A100-80GB-PCIe", GPUs: 8, CPU: "128", Memory: "1Ti", MemoryMB: 81920, RDMA: rdmaHcaMax}
	// PCIeL40S is 8× L40S, two per PCIe switch and no NVLink, 2×48-core CPUs, 1 TiB.
	PCIeL40S = Machine{Fixture: "pcie-l40s", Product: "NVIDIA-L40S", GPUs: 8, CPU: "192", Memory: "1Ti", MemoryMB: 46068, RDMA: rdmaHcaMax}
	// GB200NVL72 is one compute tray of a GB200 NVL72 rack: 4 GB200 GPUs, 2 Grace CPUs of 72
	// cores with 480 GiB each; 18 trays share the rack's NVLink domain (a clique).
	GB200NVL72 = Machine{Fixture: "gb200-nvl72", Product: "NVIDIA-GB200", GPUs: 4, CPU: "144", Memory: "960Gi", MemoryMB: 189471, RDMA: rdmaHcaMax, CliqueSize: fixtures.TraysPerRack}
)

// Machines are the machine kinds a cluster file may name, by fixture name.
var Machines = map[string]Machine{}

func init() {
	for _, m := range []Machine{DGXH100, HGXA100, PCIeA100Bridged, PCIeL40S, GB200NVL72} {
		Machines[m.Fixture] = m
	}
}

// MachineKinds lists the names of Machines, sorted.
func MachineKinds() []string {
	names := make([]string, 0, len(Machines))
	for n := range Machines {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

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
				nodes = append(nodes, newNode(fmt.Sprintf("s%d-b%d-n%d", sp, block, n), m, map[string]string{
					LabelBlock: fmt.Sprintf("block-%d", block),
					LabelSpine: fmt.Sprintf("spine-%d", sp),
					LabelZone:  s.Zone,
				}))
			}
		}
	}
	return nodes
}

// Layout is the cluster the spec describes, with the scheduler's default four levels (no node
// is in a clique: each of these machines is its own NVLink domain).
func (s Spec) Layout() *Layout {
	return &Layout{Levels: append([]Level(nil), AllLevels...), Nodes: s.Nodes()}
}

// newNode is a kwok node of machine m with the given topology labels (and any others).
func newNode(name string, m Machine, topology map[string]string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(m.CPU),
		corev1.ResourceMemory: resource.MustParse(m.Memory),
		corev1.ResourcePods:   resource.MustParse("110"),
		ResourceGPU:           *resource.NewQuantity(int64(m.GPUs), resource.DecimalSI),
	}
	if m.RDMA > 0 {
		capacity[ResourceRDMA] = *resource.NewQuantity(int64(m.RDMA), resource.DecimalSI)
	}
	labels := map[string]string{
		corev1.LabelHostname:     name,
		corev1.LabelOSStable:     "linux",
		corev1.LabelArchStable:   "amd64",
		LabelFixture:             m.Fixture,
		LabelSimulated:           "true",
		"nvidia.com/gpu.product": m.Product,
		"nvidia.com/gpu.count":   fmt.Sprint(m.GPUs),
		"nvidia.com/gpu.memory":  fmt.Sprint(m.MemoryMB),
		"type":                   "kwok",
	}
	for k, v := range topology {
		labels[k] = v
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      labels,
			Annotations: map[string]string{AnnotationKwok: "fake"},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity.DeepCopy()},
	}
}
