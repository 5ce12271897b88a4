package localcluster

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
)

// shippedFile reads manifests/local/<name> of this repository.
func shippedFile(t *testing.T, name string) *Layout {
	t.Helper()
	l, err := LoadClusterFile(filepath.Join("..", "..", "manifests", "local", name))
	require.NoError(t, err)
	return l
}

func TestDefaultClusterFileIsTheDefaultCluster(t *testing.T) {
	l := shippedFile(t, "default.yaml")
	want := DefaultSpec().Layout()
	require.Equal(t, want.Levels, l.Levels)
	require.Equal(t, want.Nodes, l.Nodes)
	require.Equal(t, []string{LabelClique, LabelBlock, LabelSpine, LabelZone}, l.LevelLabels())
	require.Equal(t, "16 nodes, 128 GPUs (16 dgx-h100); 0 cliques, 4 blocks, 2 spines, 1 zone", l.Summary())
}

func TestMixedClusterFile(t *testing.T) {
	l := shippedFile(t, "mixed.yaml")
	kinds := map[string]int{}
	blockOf := map[string]string{}
	for _, n := range l.Nodes {
		kinds[n.Labels[LabelFixture]]++
		blockOf[n.Name] = n.Labels[LabelBlock]
		require.Equal(t, "zone-a", n.Labels[LabelZone])
		_, inClique := n.Labels[LabelClique]
		require.Equal(t, n.Labels[LabelFixture] == "gb200-nvl72", inClique, n.Name)
	}
	require.Equal(t, map[string]int{"dgx-h100": 4, "hgx-a100": 4, "pcie-a100-bridged": 6, "pcie-l40s": 2, "gb200-nvl72": 18}, kinds)
	require.Equal(t, 200, l.GPUs())
	require.Equal(t, "block-h100", blockOf["s0-b0-n0"])
	require.Equal(t, "block-gb200", blockOf["s1-b3-c0-n17"])
	require.Equal(t, "block-gb200", blockOf["s1-b3-n3"], "machines in the block beside its clique")
	require.Equal(t, "spine-pcie", nodeByName(t, l, "s1-b2-n3").Labels[LabelSpine])
	require.Equal(t, "pcie-l40s", nodeByName(t, l, "s1-b2-n3").Labels[LabelFixture])
}

func TestGB200ClusterFile(t *testing.T) {
	l := shippedFile(t, "gb200.yaml")
	require.Len(t, l.Nodes, 72)
	require.Equal(t, 288, l.GPUs())
	cliques := map[string][]string{}
	cliqueBlock := map[string]string{}
	for i, n := range l.Nodes {
		c := n.Labels[LabelClique]
		cliques[c] = append(cliques[c], n.Name)
		if b, ok := cliqueBlock[c]; ok {
			require.Equal(t, b, n.Labels[LabelBlock], "clique %s spans blocks", c)
		}
		cliqueBlock[c] = n.Labels[LabelBlock]
		require.Equal(t, "gb200-nvl72", n.Labels[LabelFixture])
		require.Equal(t, strconv.Itoa(i), n.Labels[LabelFixtureIndex], "trays numbered rack by rack")
		rdma := n.Status.Allocatable[ResourceRDMA]
		require.Equal(t, int64(rdmaHcaMax), rdma.Value())
		gpus := n.Status.Allocatable[ResourceGPU]
		require.Equal(t, int64(4), gpus.Value())
	}
	require.Len(t, cliques, 4)
	for rack := 0; rack < 4; rack++ {
		c := fixtures.RackClusterUUID(rack).String() + ".1"
		require.Len(t, cliques[c], 18, "rack %d", rack)
	}
	require.Equal(t, "s0-b0-c0-n0", l.Nodes[0].Name)
	require.Equal(t, "s0-b1-c3-n17", l.Nodes[71].Name)
	require.Equal(t, "72 nodes, 288 GPUs (72 gb200-nvl72); 4 cliques, 2 blocks, 1 spine, 1 zone", l.Summary())
}

// TestNodesMatchTheirFixtures: what a node advertises (GPUs, product, memory, RDMA, clique) is
// what the device-agent publishes for it from its fixture.
func TestNodesMatchTheirFixtures(t *testing.T) {
	var nodes []*corev1.Node
	for _, f := range []string{"mixed.yaml", "gb200.yaml"} {
		nodes = append(nodes, shippedFile(t, f).Nodes...)
	}
	seen := map[string]bool{}
	for _, n := range nodes {
		fixture := n.Labels[LabelFixture]
		index := 0
		if v, ok := n.Labels[LabelFixtureIndex]; ok {
			var err error
			index, err = strconv.Atoi(v)
			require.NoError(t, err)
			if r := index % fixtures.TraysPerRack; r != 0 && r != fixtures.TraysPerRack-1 {
				continue // the first and last tray of every rack
			}
		} else if seen[fixture] {
			continue // one of each kind outside cliques
		}
		seen[fixture] = true
		m, err := fixtures.New(fixture, fixtures.Options{Seed: n.Name, Index: index})
		require.NoError(t, err)
		root := t.TempDir()
		require.NoError(t, m.Sysfs.Write(root))
		d := device.NewDiscoverer(device.Options{NVML: m.NVML, SysfsRoot: root, Fixture: fixture})
		d.Init()
		st := d.Discover()
		gpus := n.Status.Allocatable[ResourceGPU]
		require.Equal(t, gpus.Value(), int64(st.GPUCount), n.Name)
		require.Equal(t, n.Labels["nvidia.com/gpu.product"], st.GPUProduct, n.Name)
		require.Equal(t, n.Labels["nvidia.com/gpu.memory"], strconv.Itoa(int(st.GPUMemoryMiB)), n.Name)
		_, rdma := n.Status.Allocatable[ResourceRDMA]
		require.Equal(t, len(st.NICs) > 0, rdma, "%s: RDMA resource iff the machine has RDMA NICs", n.Name)
		require.Equal(t, n.Labels[LabelClique], st.Clique, "%s: clique label = the NVLink fabric the agent reports", n.Name)
	}
	require.Len(t, seen, len(Machines), "every machine kind checked")
}

func TestClusterFileErrors(t *testing.T) {
	const head = "levels: [block, spine]\n"
	cases := []struct {
		name, file string
		want       []string // each must appear, with the file name and line
	}{
		{"unknown field", head + "spines:\n- blocks:\n  - nodes:\n    - machine: dgx-h100\n      gpuz: 8\n",
			[]string{`x.yaml:6: unknown field "gpuz" (a nodes entry takes machine, count)`}},
		{"unknown machine", head + "spines:\n- blocks:\n  - nodes:\n    - machine: dgx-b200\n",
			[]string{`x.yaml:5: unknown machine kind "dgx-b200" (known: dgx-h100, gb200-nvl72, hgx-a100, pcie-a100-bridged, pcie-l40s)`}},
		{"zero count", head + "spines:\n- blocks:\n  - nodes:\n    - machine: dgx-h100\n      count: 0\n",
			[]string{`x.yaml:6: count must be > 0, got 0`}},
		{"negative domain count", head + "spines:\n- count: -2\n  blocks:\n  - nodes: [{machine: dgx-h100}]\n",
			[]string{`x.yaml:3: count must be > 0, got -2`}},
		{"count not a number", head + "spines:\n- blocks:\n  - nodes: [{machine: dgx-h100, count: two}]\n",
			[]string{`x.yaml:4: count must be a whole number, got "two"`}},
		{"unknown level", "levels: [block, rack]\nracks: []\n",
			[]string{`x.yaml:1: unknown level "rack" (known: clique, block, spine, zone)`}},
		{"levels out of order", "levels: [spine, block]\nblocks: []\n",
			[]string{`x.yaml:1: levels must go innermost first without repeats (clique, block, spine, zone): "block" after "spine"`}},
		{"missing levels", "spines: []\n", []string{`x.yaml:1: missing field "levels"`}},
		{"field of a level not named", head + "spines:\n- blocks:\n  - cliques:\n    - nodes: [{machine: gb200-nvl72}]\n",
			[]string{`x.yaml:4: unknown field "cliques" (a block takes name, count, nodes)`}},
		{"outermost level missing", head + "zones: []\n",
			[]string{`x.yaml:2: unknown field "zones" (a cluster file takes levels, spines)`, `x.yaml:1: missing field "spines"`}},
		{"domain without nodes", head + "spines:\n- name: s\n",
			[]string{`x.yaml:3: a spine needs blocks or nodes`}},
		{"empty list", head + "spines:\n- blocks: []\n",
			[]string{`x.yaml:3: blocks: the list is empty`}},
		{"name with count", head + "spines:\n- name: s\n  count: 2\n  nodes: [{machine: dgx-h100}]\n",
			[]string{`x.yaml:3: name "s" with count 2: a name is for one spine`}},
		{"duplicate name", head + "spines:\n- name: s\n  nodes: [{machine: dgx-h100}]\n- name: s\n  nodes: [{machine: dgx-h100}]\n",
			[]string{`x.yaml:5: spine name "s" already used on line 3`}},
		{"bad label value", head + "spines:\n- name: 'spine 0'\n  nodes: [{machine: dgx-h100}]\n",
			[]string{`x.yaml:3: name "spine 0" is not a valid label value`}},
		{"gb200 outside a clique", head + "spines:\n- nodes: [{machine: gb200-nvl72}]\n",
			[]string{`x.yaml:3: machine gb200-nvl72 must be in a clique: its trays share an NVLink domain of up to 18 (add clique to levels and list it under cliques)`}},
		{"dgx in a clique", "levels: [clique, block]\nblocks:\n- cliques:\n  - nodes: [{machine: dgx-h100}]\n",
			[]string{`x.yaml:4: machine dgx-h100 cannot be in a clique`, `list it in the block's nodes`}},
		{"clique too big", "levels: [clique]\ncliques:\n- nodes:\n  - machine: gb200-nvl72\n    count: 10\n  - machine: gb200-nvl72\n    count: 9\n",
			[]string{`x.yaml:7: 19 gb200-nvl72 trays in one clique: an NVLink domain holds at most 18`}},
		{"clique name", "levels: [clique]\ncliques:\n- name: c\n  nodes: [{machine: gb200-nvl72}]\n",
			[]string{`x.yaml:3: unknown field "name" (a clique takes count, nodes)`}},
		{"missing machine", head + "spines:\n- nodes:\n  - count: 2\n",
			[]string{`x.yaml:4: missing field "machine"`}},
		{"too many nodes", head + "spines:\n- count: 1000\n  nodes: [{machine: pcie-l40s, count: 11}]\n",
			[]string{`x.yaml:4: more than 10000 nodes in the cluster`}},
		{"yaml syntax", head + "spines:\n- blocks: [\n", []string{`x.yaml:3: did not find expected node content`}},
		{"not a mapping", "- a\n", []string{`x.yaml:1: want a mapping with levels`}},
		{"empty", "", []string{`x.yaml: empty cluster file`}},
		{"several errors", head + "spines:\n- blocks:\n  - nodes:\n    - machine: x\n    - machine: dgx-h100\n      count: 0\n",
			[]string{`x.yaml:5: unknown machine kind "x"`, "\nx.yaml:7: count must be > 0, got 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseClusterFile("x.yaml", []byte(tc.file))
			require.Error(t, err)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestClusterFileGood(t *testing.T) {
	cases := []struct {
		name, file string
		levels     []Level
		nodes      []string // name=block,spine,zone,clique
	}{
		{"one level", "levels: [zone]\nzones:\n- nodes: [{machine: pcie-l40s, count: 2}]\n- name: west\n  nodes: [{machine: hgx-a100}]\n",
			[]Level{LevelZone}, []string{"z0-n0=,,zone-a,", "z0-n1=,,zone-a,", "z1-n0=,,west,"}},
		{"blocks only, anchors", "levels: [block]\nblocks:\n- &b {count: 2, nodes: [{machine: dgx-h100}]}\n- *b\n",
			[]Level{LevelBlock}, []string{"b0-n0=block-0,,,", "b1-n0=block-1,,,", "b2-n0=block-2,,,", "b3-n0=block-3,,,"}},
		{"cliques under a zone", "levels: [clique, zone]\nzones:\n- cliques:\n  - nodes: [{machine: gb200-nvl72, count: 2}]\n  nodes: [{machine: dgx-h100}]\n",
			[]Level{LevelClique, LevelZone}, []string{
				"c0-n0=,,zone-a," + fixtures.RackClusterUUID(0).String() + ".1",
				"c0-n1=,,zone-a," + fixtures.RackClusterUUID(0).String() + ".1",
				"z0-n0=,,zone-a,"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := ParseClusterFile("x.yaml", []byte(tc.file))
			require.NoError(t, err)
			require.Equal(t, tc.levels, l.Levels)
			var got []string
			for _, n := range l.Nodes {
				got = append(got, n.Name+"="+n.Labels[LabelBlock]+","+n.Labels[LabelSpine]+","+n.Labels[LabelZone]+","+n.Labels[LabelClique])
			}
			require.Equal(t, tc.nodes, got)
		})
	}
}

func TestSchedulerConfigGetsTheLevels(t *testing.T) {
	dir := t.TempDir()
	for _, profile := range []string{"t9k-scheduler.yaml", "t9k-scheduler-binpack.yaml"} {
		dst := filepath.Join(dir, profile)
		src := filepath.Join("..", "..", "manifests", "scheduler", profile)
		require.NoError(t, WriteSchedulerConfigWithLevels(src, dst, "/k", []string{LabelClique, LabelBlock}))
		require.Equal(t, []any{LabelClique, LabelBlock}, topologyLevels(t, dst), profile)
	}
	// A profile that enables T9kTopology without args gets them; one without it is left alone.
	src := filepath.Join(dir, "bare.yaml")
	require.NoError(t, os.WriteFile(src, []byte(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
- schedulerName: a
  plugins: {multiPoint: {enabled: [{name: T9kTopology}]}}
- schedulerName: b
`), 0o644))
	dst := filepath.Join(dir, "bare-out.yaml")
	require.NoError(t, WriteSchedulerConfigWithLevels(src, dst, "/k", []string{LabelBlock}))
	var cfg map[string]any
	data, err := os.ReadFile(dst)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	profiles := cfg["profiles"].([]any)
	require.Equal(t, []any{map[string]any{"name": "T9kTopology", "args": map[string]any{"levels": []any{LabelBlock}}}},
		profiles[0].(map[string]any)["pluginConfig"])
	require.NotContains(t, profiles[1].(map[string]any), "pluginConfig")
}

func topologyLevels(t *testing.T, path string) []any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	for _, p := range cfg["profiles"].([]any) {
		for _, pc := range p.(map[string]any)["pluginConfig"].([]any) {
			if e := pc.(map[string]any); e["name"] == TopologyPlugin {
				return e["args"].(map[string]any)["levels"].([]any)
			}
		}
	}
	return nil
}

func nodeByName(t *testing.T, l *Layout, name string) *corev1.Node {
	t.Helper()
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no node %s", name)
	return nil
}
