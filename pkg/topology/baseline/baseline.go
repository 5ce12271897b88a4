// Package baseline is NVIDIA go-gpuallocator (v0.6.0, what k8s-device-plugin's
// GetPreferredAllocation uses) as the yardstick for pkg/topology's GPU sets. It renders a
// topology.GPUTopologySpec as NVML would report it — common PCIe ancestors, and for every active
// NVLink the remote PCI address: the peer GPU for a bridge, the NVSwitch (FFFFFFFF:FF:FF.0) on
// NVSwitch machines — and lets go-gpuallocator build its own device list from that mock, so its
// view of a machine is exactly the one it would have on real hardware. RingBandwidth (ring.go) is
// the yardstick both sides' sets are judged by: the bottleneck bandwidth of the best ring over a
// set, read from the spec, independent of t9k's own objective. Tests and the scheduler benchmark
// use this package; the scheduler does not.
package baseline

import (
	"fmt"
	"math/bits"
	"sort"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-gpuallocator/gpuallocator"
	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/tensorstack/t9k/pkg/topology"
)

// Allocator is go-gpuallocator's best-effort policy on one machine.
type Allocator struct {
	devs   []*gpuallocator.Device
	policy gpuallocator.Policy
}

// New builds go-gpuallocator's device list for the machine described by spec.
func New(spec topology.GPUTopologySpec) (*Allocator, error) {
	devs, err := gpuallocator.NewDevices(gpuallocator.WithNvmlLib(MockNVML(spec)))
	if err != nil {
		return nil, fmt.Errorf("go-gpuallocator devices: %w", err)
	}
	return &Allocator{devs: devs, policy: gpuallocator.NewBestEffortPolicy()}, nil
}

// Allocate returns, ascending, the k GPU indices go-gpuallocator picks among free (a bit mask of
// GPU indices); nil when fewer than k are free. It can return fewer than k: go-gpuallocator pads
// the free GPUs with nil devices up to a multiple of k to partition them, and v0.6.0 can answer
// with a padded set (when it outscores every whole set of its best partition); the padding is
// dropped here, so callers see a short set (a pod given the wrong number of GPUs) rather than a
// nil device.
func (a *Allocator) Allocate(free uint64, k int) []int {
	var avail []*gpuallocator.Device
	for f := free; f != 0; f &= f - 1 {
		if i := bits.TrailingZeros64(f); i < len(a.devs) {
			avail = append(avail, a.devs[i])
		}
	}
	if k <= 0 || k > len(avail) {
		return nil
	}
	var set []int
	for _, d := range a.policy.Allocate(avail, nil, k) {
		if d != nil {
			set = append(set, d.Index)
		}
	}
	sort.Ints(set)
	return set
}

// SeenNVLinks is the number of NVLinks go-gpuallocator believes join GPUs i and j.
func (a *Allocator) SeenNVLinks(i, j int) int {
	for _, l := range a.devs[i].Links[j] {
		name := l.Type.String()
		if w, ok := strings.CutSuffix(name, "NVLINKLinks"); ok {
			return nvlinkWords[w]
		}
		if name == "SingleNVLINKLink" {
			return 1
		}
	}
	return 0
}

var nvlinkWords = map[string]int{"Single": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5, "Six": 6,
	"Seven": 7, "Eight": 8, "Nine": 9, "Ten": 10, "Eleven": 11, "Twelve": 12, "Thirteen": 13,
	"Fourteen": 14, "Fifteen": 15, "Sixteen": 16, "Seventeen": 17, "Eighteen": 18}

const switchBusID = "FFFFFFFF:FF:FF.0"

func gpuBusID(i int) string { return fmt.Sprintf("00000000:%02X:00.0", 0x10+i) }

func pciInfo(bus string) nvml.PciInfo {
	var p nvml.PciInfo
	for i, ch := range bus {
		p.BusId[i] = int8(ch)
	}
	return p
}

func nvmlLevel(l topology.PCIeLevel) nvml.GpuTopologyLevel {
	switch l {
	case topology.PCIePIX:
		return nvml.TOPOLOGY_SINGLE
	case topology.PCIePXB:
		return nvml.TOPOLOGY_MULTIPLE
	case topology.PCIePHB:
		return nvml.TOPOLOGY_HOSTBRIDGE
	case topology.PCIeNODE:
		return nvml.TOPOLOGY_NODE
	}
	return nvml.TOPOLOGY_SYSTEM
}

// MockNVML renders spec as NVML would report it.
func MockNVML(s topology.GPUTopologySpec) nvml.Interface {
	n := len(s.GPUs)
	devs := make([]nvml.Device, n)
	for i := range s.GPUs {
		var remotes []string // one entry per active NVLink
		for l := 0; l < s.GPUs[i].NVSwitchLinks && s.GPUs[i].NVSwitchDomain != ""; l++ {
			remotes = append(remotes, switchBusID)
		}
		peers := make([]int, 0, len(s.GPUs[i].NVLinks))
		for p := range s.GPUs[i].NVLinks {
			peers = append(peers, p)
		}
		sort.Ints(peers)
		for _, p := range peers {
			for l := 0; l < s.GPUs[i].NVLinks[p]; l++ {
				remotes = append(remotes, gpuBusID(p))
			}
		}
		devs[i] = &mock.Device{
			GetNameFunc:    func() (string, nvml.Return) { return "Mock GPU", nvml.SUCCESS },
			GetUUIDFunc:    func() (string, nvml.Return) { return fmt.Sprint("GPU-", i), nvml.SUCCESS },
			GetPciInfoFunc: func() (nvml.PciInfo, nvml.Return) { return pciInfo(gpuBusID(i)), nvml.SUCCESS },
			GetTopologyCommonAncestorFunc: func(o nvml.Device) (nvml.GpuTopologyLevel, nvml.Return) {
				// go-nvlib passes wrapped devices: identify the peer by UUID.
				u, _ := o.GetUUID()
				j, _ := strconv.Atoi(strings.TrimPrefix(u, "GPU-"))
				return nvmlLevel(topology.PairLevel(s, i, j)), nvml.SUCCESS
			},
			GetNvLinkStateFunc: func(l int) (nvml.EnableState, nvml.Return) {
				if len(remotes) == 0 {
					return 0, nvml.ERROR_NOT_SUPPORTED
				}
				if l >= len(remotes) {
					return 0, nvml.ERROR_INVALID_ARGUMENT
				}
				return nvml.FEATURE_ENABLED, nvml.SUCCESS
			},
			GetNvLinkRemotePciInfoFunc: func(l int) (nvml.PciInfo, nvml.Return) {
				if l >= len(remotes) {
					return nvml.PciInfo{}, nvml.ERROR_INVALID_ARGUMENT
				}
				return pciInfo(remotes[l]), nvml.SUCCESS
			},
		}
	}
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
		DeviceGetCountFunc: func() (int, nvml.Return) { return n, nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= n {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devs[i], nvml.SUCCESS
		},
	}
}
