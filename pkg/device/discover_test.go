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

package device_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
)

// The expected objects below are written by hand from the vendors' published layouts (see each
// table's comment), in the shape of nvidia-smi topo -m, and assembled into a NodeDevicesStatus by
// expectedStatus. Only GPU UUIDs are read back from the fixture: they are names, not topology.

type gpuRow struct {
	bus, root, pcieSwitch string
	numa                  int32
	cpus                  string
}

type machine struct {
	fixture     string
	product     string
	memMiB      int64
	driver      v1.DriverInfo
	gpus        []gpuRow
	migCapable  bool
	nvlinkV     int32
	activeLinks int32
	nvswitch    string // NVSwitchDomain; "" for bridges
	clique      string
	// gpuMatrix is GPU×GPU as nvidia-smi topo -m prints it (NV# for NVLink, anything else for PCIe).
	gpuMatrix string
	nics      []v1.NIC
	// nicMatrix is GPU×NIC, NICs in the order of nics.
	nicMatrix string
}

func rows(m string) [][]string {
	var out [][]string
	for _, line := range strings.Split(strings.TrimSpace(m), "\n") {
		out = append(out, strings.Fields(line))
	}
	return out
}

func expectedStatus(t *testing.T, m machine, uuids []string) v1.NodeDevicesStatus {
	t.Helper()
	st := v1.NodeDevicesStatus{
		Fixture: m.fixture, Driver: m.driver, GPUCount: int32(len(m.gpus)), GPUProduct: m.product,
		GPUMemoryMiB: m.memMiB, Clique: m.clique, NICCount: int32(len(m.nics)), NICs: m.nics,
		Conditions: []metav1.Condition{{Type: v1.ConditionNVMLAvailable, Status: metav1.ConditionTrue, Reason: v1.ReasonNVMLReady, Message: "NVML initialised"}},
	}
	gm, nm := rows(m.gpuMatrix), rows(m.nicMatrix)
	require.Len(t, gm, len(m.gpus))
	require.Len(t, nm, len(m.gpus))
	for i, r := range m.gpus {
		g := v1.GPU{Index: int32(i), UUID: uuids[i], Product: m.product, MemoryMiB: m.memMiB, PCIBusID: r.bus,
			NUMANode: r.numa, CPUAffinity: r.cpus, PCIeRoot: r.root, PCIeSwitch: r.pcieSwitch, Clique: m.clique,
			Health: v1.GPUHealth{Healthy: true}}
		if m.migCapable {
			g.MIG = &v1.GPUMIG{Mode: v1.MIGDisabled}
		}
		if m.activeLinks > 0 {
			g.NVLink = &v1.GPUNVLink{Version: m.nvlinkV, ActiveLinks: m.activeLinks, NVSwitchDomain: m.nvswitch}
			require.Len(t, gm[i], len(m.gpus))
			for j, cell := range gm[i] {
				if !strings.HasPrefix(cell, "NV") {
					continue
				}
				var n int32
				_, err := fmt.Sscanf(cell, "NV%d", &n)
				require.NoError(t, err)
				via := v1.NVLinkViaBridge
				if m.nvswitch != "" {
					via = v1.NVLinkViaNVSwitch
				}
				g.NVLink.Peers = append(g.NVLink.Peers, v1.NVLinkPeer{Index: int32(j), Links: n, Via: via})
			}
		}
		require.Len(t, nm[i], len(m.nics))
		for k, cell := range nm[i] {
			g.NICs = append(g.NICs, v1.GPUNICLevel{NIC: m.nics[k].Name, Level: v1.PCIeLevel(cell)})
		}
		st.GPUs = append(st.GPUs, g)
	}
	return st
}

func ib(name, netdev, bus, root, sw string, numa int32, rate string, gbps int32) v1.NIC {
	return v1.NIC{Name: name, Port: 1, NetDev: netdev, LinkLayer: v1.LinkLayerInfiniBand, State: "ACTIVE", Rate: rate,
		RateGbps: gbps, PCIBusID: bus, NUMANode: numa, PCIeRoot: root, PCIeSwitch: sw}
}

func eth(name, netdev, bus, root, sw string, numa int32, rate string, gbps int32) v1.NIC {
	n := ib(name, netdev, bus, root, sw, numa, rate, gbps)
	n.LinkLayer = v1.LinkLayerEthernet
	return n
}

const (
	ndr = "400 Gb/sec (4X NDR)"
	hdr = "200 Gb/sec (4X HDR)"
)

var driver550 = v1.DriverInfo{DriverVersion: "550.54.15", CUDADriverVersion: "12.4", NVMLVersion: "12.550.54.15"}

// DGX H100 User Guide: NVSwitch (NV18 everywhere), GPUs 0-3 on CPU 0, 4-7 on CPU 1; Table 6 pairs
// GPU0..7 with mlx5_0, 3, 4, 5, 6, 9, 10, 11 (ibp24s0, ibp64s0, ibp79s0, ibp94s0, ibp154s0, ibp192s0,
// ibp206s0, ibp220s0), each on the GPU's PCIe switch; the GPU is 3 buses after its NIC. GPU bus ids
// 1b, 43, 52, 61, 9d, c3, d1, df and 81559 MiB are what nvidia-smi prints on a DGX H100.
var dgxH100 = machine{
	fixture: "dgx-h100", product: "NVIDIA-H100-80GB-HBM3", memMiB: 81559, driver: driver550, migCapable: true,
	nvlinkV: 4, activeLinks: 18, nvswitch: "node",
	gpus: []gpuRow{
		{"0000:1b:00.0", "pci0000:15", "0000:16:00.0", 0, "0-55,112-167"},
		{"0000:43:00.0", "pci0000:3d", "0000:3e:00.0", 0, "0-55,112-167"},
		{"0000:52:00.0", "pci0000:4c", "0000:4d:00.0", 0, "0-55,112-167"},
		{"0000:61:00.0", "pci0000:5b", "0000:5c:00.0", 0, "0-55,112-167"},
		{"0000:9d:00.0", "pci0000:97", "0000:98:00.0", 1, "56-111,168-223"},
		{"0000:c3:00.0", "pci0000:bd", "0000:be:00.0", 1, "56-111,168-223"},
		{"0000:d1:00.0", "pci0000:cb", "0000:cc:00.0", 1, "56-111,168-223"},
		{"0000:df:00.0", "pci0000:d9", "0000:da:00.0", 1, "56-111,168-223"},
	},
	gpuMatrix: `
X    NV18 NV18 NV18 NV18 NV18 NV18 NV18
NV18 X    NV18 NV18 NV18 NV18 NV18 NV18
NV18 NV18 X    NV18 NV18 NV18 NV18 NV18
NV18 NV18 NV18 X    NV18 NV18 NV18 NV18
NV18 NV18 NV18 NV18 X    NV18 NV18 NV18
NV18 NV18 NV18 NV18 NV18 X    NV18 NV18
NV18 NV18 NV18 NV18 NV18 NV18 X    NV18
NV18 NV18 NV18 NV18 NV18 NV18 NV18 X`,
	nics: []v1.NIC{
		ib("mlx5_0", "ibp24s0", "0000:18:00.0", "pci0000:15", "0000:16:00.0", 0, ndr, 400),
		eth("mlx5_1", "enp41s0f0np0", "0000:29:00.0", "pci0000:26", "", 0, hdr, 200),
		eth("mlx5_2", "enp41s0f1np1", "0000:29:00.1", "pci0000:26", "", 0, hdr, 200),
		ib("mlx5_3", "ibp64s0", "0000:40:00.0", "pci0000:3d", "0000:3e:00.0", 0, ndr, 400),
		ib("mlx5_4", "ibp79s0", "0000:4f:00.0", "pci0000:4c", "0000:4d:00.0", 0, ndr, 400),
		ib("mlx5_5", "ibp94s0", "0000:5e:00.0", "pci0000:5b", "0000:5c:00.0", 0, ndr, 400),
		ib("mlx5_6", "ibp154s0", "0000:9a:00.0", "pci0000:97", "0000:98:00.0", 1, ndr, 400),
		eth("mlx5_7", "enp170s0f0np0", "0000:aa:00.0", "pci0000:a7", "", 1, hdr, 200),
		eth("mlx5_8", "enp170s0f1np1", "0000:aa:00.1", "pci0000:a7", "", 1, hdr, 200),
		ib("mlx5_9", "ibp192s0", "0000:c0:00.0", "pci0000:bd", "0000:be:00.0", 1, ndr, 400),
		ib("mlx5_10", "ibp206s0", "0000:ce:00.0", "pci0000:cb", "0000:cc:00.0", 1, ndr, 400),
		ib("mlx5_11", "ibp220s0", "0000:dc:00.0", "pci0000:d9", "0000:da:00.0", 1, ndr, 400),
	},
	//   mlx5_0 1    2    3    4    5    6    7    8    9    10   11
	nicMatrix: `
PIX  NODE NODE NODE NODE NODE SYS  SYS  SYS  SYS  SYS  SYS
NODE NODE NODE PIX  NODE NODE SYS  SYS  SYS  SYS  SYS  SYS
NODE NODE NODE NODE PIX  NODE SYS  SYS  SYS  SYS  SYS  SYS
NODE NODE NODE NODE NODE PIX  SYS  SYS  SYS  SYS  SYS  SYS
SYS  SYS  SYS  SYS  SYS  SYS  PIX  NODE NODE NODE NODE NODE
SYS  SYS  SYS  SYS  SYS  SYS  NODE NODE NODE PIX  NODE NODE
SYS  SYS  SYS  SYS  SYS  SYS  NODE NODE NODE NODE PIX  NODE
SYS  SYS  SYS  SYS  SYS  SYS  NODE NODE NODE NODE NODE PIX`,
}

// DGX A100 (NPS4), nvidia-smi topo -m as published for a DGX A100: NV12 everywhere (six NVSwitches);
// GPU0/1 NUMA 3 (48-63,176-191) PXB to mlx5_0/1, GPU2/3 NUMA 1 PXB to mlx5_2/3, GPU4/5 NUMA 7 PXB to
// mlx5_6/7, GPU6/7 NUMA 5 PXB to mlx5_8/9; the storage ports mlx5_4/5 and mlx5_10/11 are SYS to all.
var hgxA100 = machine{
	fixture: "hgx-a100", product: "NVIDIA-A100-SXM4-80GB", memMiB: 81920, driver: driver550, migCapable: true,
	nvlinkV: 3, activeLinks: 12, nvswitch: "node",
	gpus: []gpuRow{
		{"0000:07:00.0", "pci0000:00", "0000:05:00.0", 3, "48-63,176-191"},
		{"0000:0f:00.0", "pci0000:00", "0000:0d:00.0", 3, "48-63,176-191"},
		{"0000:47:00.0", "pci0000:40", "0000:45:00.0", 1, "16-31,144-159"},
		{"0000:4e:00.0", "pci0000:40", "0000:4c:00.0", 1, "16-31,144-159"},
		{"0000:87:00.0", "pci0000:80", "0000:85:00.0", 7, "112-127,240-255"},
		{"0000:90:00.0", "pci0000:80", "0000:8e:00.0", 7, "112-127,240-255"},
		{"0000:b7:00.0", "pci0000:a0", "0000:b5:00.0", 5, "80-95,208-223"},
		{"0000:bd:00.0", "pci0000:a0", "0000:bb:00.0", 5, "80-95,208-223"},
	},
	gpuMatrix: `
X    NV12 NV12 NV12 NV12 NV12 NV12 NV12
NV12 X    NV12 NV12 NV12 NV12 NV12 NV12
NV12 NV12 X    NV12 NV12 NV12 NV12 NV12
NV12 NV12 NV12 X    NV12 NV12 NV12 NV12
NV12 NV12 NV12 NV12 X    NV12 NV12 NV12
NV12 NV12 NV12 NV12 NV12 X    NV12 NV12
NV12 NV12 NV12 NV12 NV12 NV12 X    NV12
NV12 NV12 NV12 NV12 NV12 NV12 NV12 X`,
	nics: []v1.NIC{
		ib("mlx5_0", "ibp12s0", "0000:0c:00.0", "pci0000:00", "0000:0a:00.0", 3, hdr, 200),
		ib("mlx5_1", "ibp18s0", "0000:12:00.0", "pci0000:00", "0000:10:00.0", 3, hdr, 200),
		ib("mlx5_2", "ibp75s0", "0000:4b:00.0", "pci0000:40", "0000:49:00.0", 1, hdr, 200),
		ib("mlx5_3", "ibp84s0", "0000:54:00.0", "pci0000:40", "0000:52:00.0", 1, hdr, 200),
		eth("mlx5_4", "enp97s0f0np0", "0000:61:00.0", "pci0000:60", "", 2, hdr, 200),
		eth("mlx5_5", "enp97s0f1np1", "0000:61:00.1", "pci0000:60", "", 2, hdr, 200),
		ib("mlx5_6", "ibp141s0", "0000:8d:00.0", "pci0000:80", "0000:8b:00.0", 7, hdr, 200),
		ib("mlx5_7", "ibp148s0", "0000:94:00.0", "pci0000:80", "0000:92:00.0", 7, hdr, 200),
		ib("mlx5_8", "ibp186s0", "0000:ba:00.0", "pci0000:a0", "0000:b8:00.0", 5, hdr, 200),
		ib("mlx5_9", "ibp204s0", "0000:cc:00.0", "pci0000:a0", "0000:ca:00.0", 5, hdr, 200),
		eth("mlx5_10", "enp225s0f0np0", "0000:e1:00.0", "pci0000:e0", "", 6, hdr, 200),
		eth("mlx5_11", "enp225s0f1np1", "0000:e1:00.1", "pci0000:e0", "", 6, hdr, 200),
	},
	//   mlx5_0 1  2   3   4   5   6   7   8   9   10  11
	nicMatrix: `
PXB PXB SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS
PXB PXB SYS SYS SYS SYS SYS SYS SYS SYS SYS SYS
SYS SYS PXB PXB SYS SYS SYS SYS SYS SYS SYS SYS
SYS SYS PXB PXB SYS SYS SYS SYS SYS SYS SYS SYS
SYS SYS SYS SYS SYS SYS PXB PXB SYS SYS SYS SYS
SYS SYS SYS SYS SYS SYS PXB PXB SYS SYS SYS SYS
SYS SYS SYS SYS SYS SYS SYS SYS PXB PXB SYS SYS
SYS SYS SYS SYS SYS SYS SYS SYS PXB PXB SYS SYS`,
}

// 2-8-5 PCIe server: no NVLink (topo -m shows only PCIe levels), no MIG on L40S; four PCIe switches
// with two GPUs and one RoCE NIC each, two switches per socket.
var pcieL40S = machine{
	fixture: "pcie-l40s", product: "NVIDIA-L40S", memMiB: 46068, driver: driver550,
	gpus: []gpuRow{
		{"0000:18:00.0", "pci0000:15", "0000:16:00.0", 0, "0-47,96-143"},
		{"0000:19:00.0", "pci0000:15", "0000:16:00.0", 0, "0-47,96-143"},
		{"0000:3b:00.0", "pci0000:38", "0000:39:00.0", 0, "0-47,96-143"},
		{"0000:3c:00.0", "pci0000:38", "0000:39:00.0", 0, "0-47,96-143"},
		{"0000:9a:00.0", "pci0000:97", "0000:98:00.0", 1, "48-95,144-191"},
		{"0000:9b:00.0", "pci0000:97", "0000:98:00.0", 1, "48-95,144-191"},
		{"0000:bb:00.0", "pci0000:b8", "0000:b9:00.0", 1, "48-95,144-191"},
		{"0000:bc:00.0", "pci0000:b8", "0000:b9:00.0", 1, "48-95,144-191"},
	},
	gpuMatrix: `
X    PIX  NODE NODE SYS  SYS  SYS  SYS
PIX  X    NODE NODE SYS  SYS  SYS  SYS
NODE NODE X    PIX  SYS  SYS  SYS  SYS
NODE NODE PIX  X    SYS  SYS  SYS  SYS
SYS  SYS  SYS  SYS  X    PIX  NODE NODE
SYS  SYS  SYS  SYS  PIX  X    NODE NODE
SYS  SYS  SYS  SYS  NODE NODE X    PIX
SYS  SYS  SYS  SYS  NODE NODE PIX  X`,
	nics: []v1.NIC{
		eth("mlx5_0", "enp26s0np0", "0000:1a:00.0", "pci0000:15", "0000:16:00.0", 0, ndr, 400),
		eth("mlx5_1", "enp61s0np0", "0000:3d:00.0", "pci0000:38", "0000:39:00.0", 0, ndr, 400),
		eth("mlx5_2", "enp156s0np0", "0000:9c:00.0", "pci0000:97", "0000:98:00.0", 1, ndr, 400),
		eth("mlx5_3", "enp189s0np0", "0000:bd:00.0", "pci0000:b8", "0000:b9:00.0", 1, ndr, 400),
	},
	nicMatrix: `
PIX  NODE SYS  SYS
PIX  NODE SYS  SYS
NODE PIX  SYS  SYS
NODE PIX  SYS  SYS
SYS  SYS  PIX  NODE
SYS  SYS  PIX  NODE
SYS  SYS  NODE PIX
SYS  SYS  NODE PIX`,
}

// A100 PCIe with NVLink bridges in pairs: NV12 inside a pair, PCIe outside; each GPU on its own root port.
var pcieA100Bridged = machine{
	fixture: "pcie-a100-bridged", product: "NVIDIA-A100-80GB-PCIe", memMiB: 81920, driver: driver550, migCapable: true,
	nvlinkV: 3, activeLinks: 12,
	gpus: []gpuRow{
		{"0000:17:00.0", "pci0000:16", "", 0, "0-31,64-95"},
		{"0000:31:00.0", "pci0000:30", "", 0, "0-31,64-95"},
		{"0000:4b:00.0", "pci0000:4a", "", 0, "0-31,64-95"},
		{"0000:65:00.0", "pci0000:64", "", 0, "0-31,64-95"},
		{"0000:98:00.0", "pci0000:97", "", 1, "32-63,96-127"},
		{"0000:b1:00.0", "pci0000:b0", "", 1, "32-63,96-127"},
		{"0000:ca:00.0", "pci0000:c9", "", 1, "32-63,96-127"},
		{"0000:e3:00.0", "pci0000:e2", "", 1, "32-63,96-127"},
	},
	gpuMatrix: `
X    NV12 NODE NODE SYS  SYS  SYS  SYS
NV12 X    NODE NODE SYS  SYS  SYS  SYS
NODE NODE X    NV12 SYS  SYS  SYS  SYS
NODE NODE NV12 X    SYS  SYS  SYS  SYS
SYS  SYS  SYS  SYS  X    NV12 NODE NODE
SYS  SYS  SYS  SYS  NV12 X    NODE NODE
SYS  SYS  SYS  SYS  NODE NODE X    NV12
SYS  SYS  SYS  SYS  NODE NODE NV12 X`,
	nics: []v1.NIC{
		ib("mlx5_0", "ibp42s0", "0000:2a:00.0", "pci0000:29", "", 0, hdr, 200),
		ib("mlx5_1", "ibp170s0", "0000:aa:00.0", "pci0000:a9", "", 1, hdr, 200),
	},
	nicMatrix: `
NODE SYS
NODE SYS
NODE SYS
NODE SYS
SYS  NODE
SYS  NODE
SYS  NODE
SYS  NODE`,
}

// GB200 NVL72 compute tray: 4 GPUs (two per Grace, 72 cores each), one PCI domain per GPU, 18 NVLink5
// links per GPU into the rack's NVLink switches, one fabric clique for the rack's 18 trays.
func gb200Tray(clique string) machine {
	return machine{
		fixture: "gb200-nvl72", product: "NVIDIA-GB200", memMiB: 189471, migCapable: true,
		driver:  v1.DriverInfo{DriverVersion: "570.124.06", CUDADriverVersion: "12.8", NVMLVersion: "12.570.124.06"},
		nvlinkV: 5, activeLinks: 18, nvswitch: clique, clique: clique,
		gpus: []gpuRow{
			{"0008:01:00.0", "pci0008:00", "", 0, "0-71"},
			{"0009:01:00.0", "pci0009:00", "", 0, "0-71"},
			{"0018:01:00.0", "pci0018:00", "", 1, "72-143"},
			{"0019:01:00.0", "pci0019:00", "", 1, "72-143"},
		},
		gpuMatrix: `
X    NV18 NV18 NV18
NV18 X    NV18 NV18
NV18 NV18 X    NV18
NV18 NV18 NV18 X`,
		nics: []v1.NIC{
			ib("mlx5_0", "ibp3s0", "0000:03:00.0", "pci0000:00", "0000:01:00.0", 0, ndr, 400),
			ib("mlx5_1", "ibP2p3s0", "0002:03:00.0", "pci0002:00", "0002:01:00.0", 0, ndr, 400),
			ib("mlx5_2", "ibP16p3s0", "0010:03:00.0", "pci0010:00", "0010:01:00.0", 1, ndr, 400),
			ib("mlx5_3", "ibP18p3s0", "0012:03:00.0", "pci0012:00", "0012:01:00.0", 1, ndr, 400),
		},
		nicMatrix: `
NODE NODE SYS  SYS
NODE NODE SYS  SYS
SYS  SYS  NODE NODE
SYS  SYS  NODE NODE`,
	}
}

// discover runs the real discovery code against a fixture.
func discover(t *testing.T, m *fixtures.Machine) (v1.NodeDevicesStatus, *device.Discoverer) {
	t.Helper()
	root := t.TempDir()
	require.NoError(t, m.Sysfs.Write(root))
	d := device.NewDiscoverer(device.Options{NVML: m.NVML, SysfsRoot: root, Fixture: m.Name})
	d.Init()
	t.Cleanup(d.Shutdown)
	return d.Discover(), d
}

func uuidsOf(st v1.NodeDevicesStatus) []string {
	var u []string
	for _, g := range st.GPUs {
		u = append(u, g.UUID)
	}
	return u
}

func TestFixturesMatchPublishedLayouts(t *testing.T) {
	for _, want := range []machine{dgxH100, hgxA100, pcieL40S, pcieA100Bridged} {
		t.Run(want.fixture, func(t *testing.T) {
			m, err := fixtures.New(want.fixture, fixtures.Options{Seed: "node-a"})
			require.NoError(t, err)
			got, _ := discover(t, m)
			require.Len(t, got.GPUs, len(want.gpus))
			if diff := cmp.Diff(expectedStatus(t, want, uuidsOf(got)), got); diff != "" {
				t.Errorf("discovered NodeDevices differ from the published layout (-want +got):\n%s", diff)
			}
			for _, g := range got.GPUs {
				assert.Regexp(t, `^GPU-[0-9a-f-]{36}$`, g.UUID)
			}
		})
	}
}

func TestPCIeMatrixOfL40S(t *testing.T) {
	// The GPU×GPU PCIe levels of a machine without NVLink follow from the published GPU PCIe fields.
	m, err := fixtures.New("pcie-l40s", fixtures.Options{})
	require.NoError(t, err)
	got, _ := discover(t, m)
	want := rows(pcieL40S.gpuMatrix)
	for i, a := range got.GPUs {
		for j, b := range got.GPUs {
			if i == j {
				continue
			}
			var lvl string
			switch {
			case a.PCIeSwitch != "" && a.PCIeSwitch == b.PCIeSwitch:
				lvl = "PIX"
			case a.NUMANode == b.NUMANode:
				lvl = "NODE"
			default:
				lvl = "SYS"
			}
			assert.Equal(t, want[i][j], lvl, "GPU%d-GPU%d", i, j)
		}
	}
}

func TestGB200CliqueSharedBy18Trays(t *testing.T) {
	cliqueOf := func(tray int) v1.NodeDevicesStatus {
		m, err := fixtures.New("gb200-nvl72", fixtures.Options{Seed: fmt.Sprintf("tray-%d", tray), Index: tray})
		require.NoError(t, err)
		st, _ := discover(t, m)
		return st
	}
	rack0 := fixtures.RackClusterUUID(0).String() + ".1"
	rack1 := fixtures.RackClusterUUID(1).String() + ".1"
	require.NotEqual(t, rack0, rack1)

	first, last, next := cliqueOf(0), cliqueOf(17), cliqueOf(18)
	assert.Equal(t, rack0, first.Clique)
	assert.Equal(t, rack0, last.Clique, "trays 0-17 form one NVL72 rack")
	assert.Equal(t, rack1, next.Clique, "tray 18 starts the next rack")
	assert.NotEqual(t, first.GPUs[0].UUID, last.GPUs[0].UUID, "each tray has its own GPUs")

	if diff := cmp.Diff(expectedStatus(t, gb200Tray(rack1), uuidsOf(next)), next); diff != "" {
		t.Errorf("tray 18 differs from the GB200 NVL72 layout (-want +got):\n%s", diff)
	}
}
