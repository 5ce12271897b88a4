package topology

import (
	"fmt"
	"math/rand"
	"testing"
)

// benchCluster: 5000 DGX H100 nodes, 5 spines × 10 blocks × 100 nodes, about half the GPUs taken
// in random chunks (whole nodes, halves, single GPUs); blocks 3 and 7 of each spine are lightly
// loaded, so a 64×8 gang fits in those and in no other block.
func benchCluster(b *testing.B) *Cluster {
	r := rand.New(rand.NewSource(1))
	topo := mustTopo(b, dgxH100Spec(nil))
	c := NewCluster(defaultLevels, []string{"cpu", "memory"})
	for s := 0; s < 5; s++ {
		for bl := 0; bl < 10; bl++ {
			for n := 0; n < 100; n++ {
				var used []int
				load := r.Intn(6)
				if bl%4 == 3 && load < 4 { // lighter blocks: the ones a 64x8 gang fits in
					load = 5
				}
				switch load {
				case 0, 1:
					used = gpus(8)
				case 2:
					used = gpus(4)
				case 3:
					used = []int{r.Intn(8)}
				}
				if err := c.SetNode(NodeSpec{
					Name:        fmt.Sprintf("s%d-b%d-n%03d", s, bl, n),
					Labels:      labels(lBlock, fmt.Sprintf("s%d-b%d", s, bl), lSpine, fmt.Sprint("s", s), lZone, "z0"),
					Topology:    topo,
					UsedGPUs:    used,
					Allocatable: Resources{"cpu": 192000, "memory": 2 << 40},
				}); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	return c
}

func BenchmarkPlan64x8On5000Nodes(b *testing.B) {
	c := benchCluster(b)
	g := Gang{Groups: []MemberGroup{
		{Name: "launcher", Count: 1, Resources: Resources{"cpu": 2000}},
		{Name: "worker", Count: 64, GPUs: 8, NICs: 8, Resources: Resources{"cpu": 96000, "memory": 1 << 40}},
	}, Policy: Policy{Mode: PolicyPreferred}}
	p, err := c.Plan(g)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("domain %s (level %d), %d GPUs left", p.Domain.Name, p.Domain.Level, p.GPUsLeft)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Plan(g); err != nil {
			b.Fatal(err)
		}
	}
}

// The same gang of 4-GPU workers: members share nodes, so the planner's own bookkeeping and the
// per-member GPU choice on half-free nodes are exercised.
func BenchmarkPlan128x4On5000Nodes(b *testing.B) {
	c := benchCluster(b)
	g := Gang{Groups: []MemberGroup{{Name: "worker", Count: 128, GPUs: 4, NICs: 4}}, Policy: Policy{Mode: PolicyPreferred}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Plan(g); err != nil {
			b.Fatal(err)
		}
	}
}

// A gang with no topology policy is packed over the whole cluster: the planner walks all 5000
// nodes in locality order. PodGroups without a topologyPolicy (the benchmark's, most users') plan
// this way.
func BenchmarkPlan4x8NoPolicyOn5000Nodes(b *testing.B) {
	c := benchCluster(b)
	g := Gang{Groups: []MemberGroup{{Name: "worker", Count: 4, GPUs: 8}}, Policy: Policy{Mode: PolicyNone}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Plan(g); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkPlanRequiredBlockUnschedulable(b *testing.B) {
	c := benchCluster(b)
	g := Gang{Groups: []MemberGroup{{Name: "worker", Count: 120, GPUs: 8}}, Policy: Policy{Mode: PolicyRequired, Level: lBlock}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Plan(g); err == nil {
			b.Fatal("expected unschedulable")
		}
	}
}

func benchChoose(b *testing.B, spec GPUTopologySpec, free uint64, req GPURequest) {
	topo := mustTopo(b, spec)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := topo.Choose(free, req); !ok {
			b.Fatal("no set")
		}
	}
}

func BenchmarkChooseDGXH100_4of8(b *testing.B) {
	benchChoose(b, dgxH100Spec(nil), maskOfFirst(8), GPURequest{GPUs: 4})
}
func BenchmarkChooseDGXH100_4of8_NICs(b *testing.B) {
	benchChoose(b, dgxH100Spec(nil), maskOfFirst(8), GPURequest{GPUs: 4, NICs: 4})
}
func BenchmarkChooseBridged_2of6(b *testing.B) {
	benchChoose(b, pcieA100BridgedSpec(), maskOf(1, 2, 3, 5, 6, 7), GPURequest{GPUs: 2})
}
func BenchmarkChooseL40S_8of8(b *testing.B) {
	benchChoose(b, l40sSpec(), maskOfFirst(8), GPURequest{GPUs: 8})
}

// Incremental update cost: one allocate + one release on a 5000-node, 4-level cluster.
func BenchmarkAllocateRelease(b *testing.B) {
	c := benchCluster(b)
	name := "s2-b5-n050"
	topo := mustTopo(b, dgxH100Spec(nil))
	if err := c.SetNode(NodeSpec{Name: name, Labels: labels(lBlock, "s2-b5", lSpine, "s2", lZone, "z0"), Topology: topo}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Allocate(name, []int{2, 3}, nil); err != nil {
			b.Fatal(err)
		}
		if err := c.Release(name, []int{2, 3}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// Node churn: replace a node (remove + add) in a 5000-node cluster.
func BenchmarkSetNodeReplace(b *testing.B) {
	c := benchCluster(b)
	topo := mustTopo(b, dgxH100Spec(nil))
	spec := NodeSpec{Name: "s2-b5-n050", Labels: labels(lBlock, "s2-b5", lSpine, "s2", lZone, "z0"), Topology: topo}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.SetNode(spec); err != nil {
			b.Fatal(err)
		}
	}
}

// Score as the scheduler asks it per scored node: one pod shape over many free masks of one model
// (memoised after the first call per mask).
func BenchmarkScoreDGXH100_1of8(b *testing.B) {
	topo, err := NewGPUTopology(dgxH100Spec(nil))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := topo.Score(uint64(i%255)+1, GPURequest{GPUs: 1}); !ok {
			b.Fatal("no set")
		}
	}
}
