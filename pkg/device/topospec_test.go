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
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tensorstack/t9k/pkg/device/fixtures"
	"github.com/tensorstack/t9k/pkg/device/topospec"
	"github.com/tensorstack/t9k/pkg/topology"
)

// TestTopologySpec converts discovered inventories into pkg/topology input and checks what the
// chooser then sees: NVSwitch domains, bridged pairs, GPU↔NIC levels.
func TestTopologySpec(t *testing.T) {
	build := func(name string) (*topology.GPUTopology, topology.GPUTopologySpec) {
		m, err := fixtures.New(name, fixtures.Options{})
		require.NoError(t, err)
		st, _ := discover(t, m)
		spec := topospec.FromInventory(st.GPUs, st.NICs)
		topo, err := topology.NewGPUTopology(spec)
		require.NoError(t, err)
		return topo, spec
	}

	dgx, spec := build("dgx-h100")
	assert.Equal(t, 18, dgx.NVLinks(0, 7), "NVSwitch: every pair NV18")
	assert.Equal(t, "node", spec.GPUs[0].NVSwitchDomain)
	assert.Nil(t, spec.GPUs[0].NVLinks, "no bridges")
	assert.Equal(t, topology.PCIeNODE.Points(), dgx.PCIePoints(0, 1))
	assert.Equal(t, topology.PCIeSYS.Points(), dgx.PCIePoints(0, 4))
	require.Len(t, spec.NICs, 12, "8 compute + 4 storage ports")
	nic := map[string]topology.NICSpec{}
	for _, n := range spec.NICs {
		nic[n.Name] = n
	}
	assert.Equal(t, topology.PCIePIX, nic["mlx5_0"].PCIe[0], "GPU0 shares a PCIe switch with mlx5_0")
	assert.Equal(t, topology.PCIeSYS, nic["mlx5_0"].PCIe[4])
	c, ok := dgx.Choose(dgx.AllGPUs(), topology.GPURequest{GPUs: 1, NICs: 1})
	require.True(t, ok)
	assert.Equal(t, topology.PCIePIX, nic[dgx.NICName(c.NICs[0])].PCIe[c.GPUs[0]], "the chosen NIC is the GPU's own")

	bridged, spec := build("pcie-a100-bridged")
	assert.Equal(t, map[int]int{1: 12}, spec.GPUs[0].NVLinks)
	assert.Equal(t, 12, bridged.NVLinks(2, 3))
	assert.Equal(t, 0, bridged.NVLinks(1, 2))
	assert.Empty(t, spec.GPUs[0].NVSwitchDomain)
}
