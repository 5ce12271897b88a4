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

package sysfs

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
)

// A small two-socket machine, drawn by hand:
//
//	socket 0: pci0000:10 ─ rp 10:01.0 ─ usp 11:00.0 ┬ dsp 12:00.0 ─ mlx5_0 13:00.0
//	                                               ├ dsp 12:01.0 ─ GPU0 14:00.0
//	                                               └ dsp 12:02.0 ─ usp 15:00.0 ─ dsp 16:00.0 ─ GPU1 17:00.0
//	          pci0000:10 ─ rp 10:02.0 ─ mlx5_2 18:00.0 (Ethernet, dual port 18:00.0/18:00.1 → mlx5_2, mlx5_3)
//	          pci0000:30 ─ rp 30:01.0 ─ mlx5_1 31:00.0
//	socket 1: pci0000:80 ─ rp 80:01.0 ─ GPU2 81:00.0
func smallTree() FakeTree {
	return FakeTree{
		PCI: []FakePCI{
			{Path: []string{"pci0000:10", "0000:10:01.0", "0000:11:00.0", "0000:12:00.0", "0000:13:00.0"}, NUMANode: 0, NetDevs: []string{"ibp19s0"}},
			{Path: []string{"pci0000:10", "0000:10:01.0", "0000:11:00.0", "0000:12:01.0", "0000:14:00.0"}, NUMANode: 0},
			{Path: []string{"pci0000:10", "0000:10:01.0", "0000:11:00.0", "0000:12:02.0", "0000:15:00.0", "0000:16:00.0", "0000:17:00.0"}, NUMANode: 0},
			{Path: []string{"pci0000:10", "0000:10:02.0", "0000:18:00.0"}, NUMANode: 0, NetDevs: []string{"ens2f0np0"}},
			{Path: []string{"pci0000:10", "0000:10:02.0", "0000:18:00.1"}, NUMANode: 0, NetDevs: []string{"ens2f1np1"}},
			{Path: []string{"pci0000:30", "0000:30:01.0", "0000:31:00.0"}, NUMANode: 0, NetDevs: []string{"ibp49s0"}},
			{Path: []string{"pci0000:80", "0000:80:01.0", "0000:81:00.0"}, NUMANode: 1},
		},
		RDMA: []FakeRDMA{
			{Name: "mlx5_0", BusID: "0000:13:00.0", Ports: []FakePort{{LinkLayer: "InfiniBand", State: "4: ACTIVE", Rate: "400 Gb/sec (4X NDR)"}}},
			{Name: "mlx5_1", BusID: "0000:31:00.0", Ports: []FakePort{{LinkLayer: "InfiniBand", State: "1: DOWN", Rate: "10 Gb/sec (4X SDR)"}}},
			{Name: "mlx5_2", BusID: "0000:18:00.0", Ports: []FakePort{{LinkLayer: "Ethernet", State: "4: ACTIVE", Rate: "200 Gb/sec (4X HDR)", NetDev: "ens2f0np0"}}},
			{Name: "mlx5_3", BusID: "0000:18:00.1", Ports: []FakePort{{LinkLayer: "Ethernet", State: "4: ACTIVE", Rate: "200 Gb/sec (4X HDR)", NetDev: "ens2f1np1"}}},
		},
	}
}

func TestRDMADevicesAndLevels(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, smallTree().Write(root))
	fs := New(root)

	nics, pci, err := fs.RDMADevices()
	require.NoError(t, err)
	want := []v1.NIC{
		{Name: "mlx5_0", Port: 1, NetDev: "ibp19s0", LinkLayer: v1.LinkLayerInfiniBand, State: "ACTIVE", Rate: "400 Gb/sec (4X NDR)", RateGbps: 400,
			PCIBusID: "0000:13:00.0", NUMANode: 0, PCIeRoot: "pci0000:10", PCIeSwitch: "0000:11:00.0"},
		{Name: "mlx5_1", Port: 1, NetDev: "ibp49s0", LinkLayer: v1.LinkLayerInfiniBand, State: "DOWN", Rate: "10 Gb/sec (4X SDR)", RateGbps: 10,
			PCIBusID: "0000:31:00.0", NUMANode: 0, PCIeRoot: "pci0000:30"},
		{Name: "mlx5_2", Port: 1, NetDev: "ens2f0np0", LinkLayer: v1.LinkLayerEthernet, State: "ACTIVE", Rate: "200 Gb/sec (4X HDR)", RateGbps: 200,
			PCIBusID: "0000:18:00.0", NUMANode: 0, PCIeRoot: "pci0000:10"},
		{Name: "mlx5_3", Port: 1, NetDev: "ens2f1np1", LinkLayer: v1.LinkLayerEthernet, State: "ACTIVE", Rate: "200 Gb/sec (4X HDR)", RateGbps: 200,
			PCIBusID: "0000:18:00.1", NUMANode: 0, PCIeRoot: "pci0000:10"},
	}
	assert.Equal(t, want, nics)

	gpu := func(bdf string) PCIDevice {
		d, err := fs.PCIDevice(bdf)
		require.NoError(t, err)
		return d
	}
	gpu0, gpu1, gpu2 := gpu("00000000:14:00.0"), gpu("0000:17:00.0"), gpu("0000:81:00.0")
	assert.Equal(t, int32(1), gpu2.NUMANode)
	assert.Equal(t, "0000:11:00.0", gpu0.Switch())
	assert.Equal(t, "0000:15:00.0", gpu1.Switch())

	for _, tc := range []struct {
		a, b PCIDevice
		want v1.PCIeLevel
	}{
		{pci["mlx5_0"], gpu0, v1.PCIeLevelPIX},  // same switch
		{pci["mlx5_0"], gpu1, v1.PCIeLevelPXB},  // cascaded switch under the same root port
		{pci["mlx5_2"], gpu0, v1.PCIeLevelPHB},  // another root port of the same host bridge
		{pci["mlx5_1"], gpu0, v1.PCIeLevelNODE}, // another host bridge, same NUMA node
		{pci["mlx5_0"], gpu2, v1.PCIeLevelSYS},  // other socket
		{pci["mlx5_2"], pci["mlx5_3"], v1.PCIeLevelPIX},
	} {
		assert.Equal(t, tc.want, Level(tc.a, tc.b), "%s <-> %s", tc.a.BusID, tc.b.BusID)
		assert.Equal(t, tc.want, Level(tc.b, tc.a), "symmetric %s <-> %s", tc.b.BusID, tc.a.BusID)
	}
}

func TestNoRDMA(t *testing.T) {
	nics, _, err := New(t.TempDir()).RDMADevices()
	require.NoError(t, err)
	assert.Empty(t, nics)
}

func TestNormalizeBusID(t *testing.T) {
	assert.Equal(t, "0000:1b:00.0", NormalizeBusID("00000000:1B:00.0"))
	assert.Equal(t, "0008:01:00.0", NormalizeBusID("00000008:01:00.0"))
	assert.Equal(t, "0000:07:00.0", NormalizeBusID("0000:07:00.0"))
}
