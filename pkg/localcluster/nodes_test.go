package localcluster

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMixedClusterMachinesPerBlock(t *testing.T) {
	s := Spec{Zone: "z", Spines: 1, BlocksPerSpine: 3, NodesPerBlock: 2,
		BlockMachines: []Machine{DGXH100, PCIeL40S}}
	require.NoError(t, s.Validate())
	nodes := s.Nodes()
	require.Len(t, nodes, 6)
	want := map[string]string{"block-0": "dgx-h100", "block-1": "pcie-l40s", "block-2": "dgx-h100"}
	for _, n := range nodes {
		require.Equal(t, want[n.Labels[LabelBlock]], n.Labels[LabelFixture], n.Name)
		cpu := n.Status.Capacity.Cpu().String()
		if n.Labels[LabelFixture] == "pcie-l40s" {
			require.Equal(t, "192", cpu)
			require.Equal(t, "NVIDIA-L40S", n.Labels["nvidia.com/gpu.product"])
		} else {
			require.Equal(t, "224", cpu)
		}
	}

	bad := s
	bad.BlockMachines = []Machine{{Fixture: "x", GPUs: 8, CPU: "lots", Memory: "1Ti"}}
	require.ErrorContains(t, bad.Validate(), `machine quantity "lots"`)
}
