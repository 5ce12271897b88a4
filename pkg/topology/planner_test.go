package topology

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"testing"
)

// fabric builds spines × blocks × nodes of 8-GPU DGX H100 nodes; used(s,b,n) lists taken GPUs.
func fabric(t testing.TB, spines, blocks, nodes int, used func(s, b, n int) []int) *Cluster {
	topo := mustTopo(t, dgxH100Spec(nil))
	c := NewCluster(defaultLevels, []string{"cpu"})
	for s := 0; s < spines; s++ {
		for b := 0; b < blocks; b++ {
			for n := 0; n < nodes; n++ {
				var u []int
				if used != nil {
					u = used(s, b, n)
				}
				mustSet(t, c, NodeSpec{
					Name:        fmt.Sprintf("s%d-b%d-n%d", s, b, n),
					Labels:      labels(lBlock, fmt.Sprintf("s%d-b%d", s, b), lSpine, fmt.Sprint("s", s), lZone, "z"),
					Topology:    topo,
					UsedGPUs:    u,
					Allocatable: Resources{"cpu": 100000},
				})
			}
		}
	}
	return c
}

func gpus(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// checkPlan asserts what every plan must satisfy: each member placed once, inside the domain, on
// GPUs that were free and are not given twice, with the request's count.
func checkPlan(t *testing.T, c *Cluster, g Gang, p *Plan) {
	t.Helper()
	taken := map[string]uint64{}
	i := 0
	for gi, m := range g.Groups {
		for o := 0; o < m.Count; o++ {
			pl := p.Placements[i]
			i++
			if pl.Group != gi || pl.Ordinal != o {
				t.Fatalf("placement %d is group %d ordinal %d, want %d/%d", i-1, pl.Group, pl.Ordinal, gi, o)
			}
			if len(pl.GPUs) != m.GPUs {
				t.Fatalf("member %d/%d got %d GPUs, want %d", gi, o, len(pl.GPUs), m.GPUs)
			}
			d, ok := c.NodeDomain(pl.Node, p.Domain.Level)
			if !ok || d.Key != p.Domain.Key {
				t.Fatalf("member on %s outside the chosen domain %q", pl.Node, p.Domain.Key)
			}
			free, _ := c.FreeGPUs(pl.Node)
			var fm uint64
			for _, x := range free {
				fm |= 1 << uint(x)
			}
			for _, x := range pl.GPUs {
				bit := uint64(1) << uint(x)
				if fm&bit == 0 || taken[pl.Node]&bit != 0 {
					t.Fatalf("GPU %d on %s double-booked or busy", x, pl.Node)
				}
				taken[pl.Node] |= bit
			}
		}
	}
	if i != len(p.Placements) {
		t.Fatalf("%d placements for %d members", len(p.Placements), i)
	}
	want := p.Domain.FreeGPUs
	for _, m := range taken {
		want -= bits.OnesCount64(m)
	}
	if p.GPUsLeft != want {
		t.Fatalf("GPUsLeft %d, want %d", p.GPUsLeft, want)
	}
}

func workers(n, g int) []MemberGroup { return []MemberGroup{{Name: "worker", Count: n, GPUs: g}} }

func TestPlanTable(t *testing.T) {
	// 2 spines × 2 blocks × 4 nodes × 8 GPUs. Block s0-b0: every node has 1 GPU taken. Block s0-b1:
	// nodes 0,1 half taken. s1-b0 entirely free. s1-b1: node 0 taken entirely.
	used := func(s, b, n int) []int {
		switch {
		case s == 0 && b == 0:
			return []int{7}
		case s == 0 && b == 1 && n < 2:
			return gpus(4)
		case s == 1 && b == 1 && n == 0:
			return gpus(8)
		}
		return nil
	}
	cases := []struct {
		name       string
		gang       Gang
		wantDomain string // Name of the chosen domain
		wantLevel  int
		wantLeft   int
		wantErr    string
		check      func(t *testing.T, p *Plan)
	}{
		{name: "4x8 preferred fits the one free block", gang: Gang{Groups: workers(4, 8), Policy: Policy{Mode: PolicyPreferred}},
			wantDomain: "block=s1-b0", wantLevel: 1, wantLeft: 0},
		{name: "3x8 best fit: the 3-free-node block", gang: Gang{Groups: workers(3, 8), Policy: Policy{Mode: PolicyPreferred}},
			wantDomain: "block=s1-b1", wantLevel: 1, wantLeft: 0},
		{name: "2x8 best fit: the block with 2 whole nodes and 2 halves", gang: Gang{Groups: workers(2, 8), Policy: Policy{Mode: PolicyPreferred}},
			wantDomain: "block=s0-b1", wantLevel: 1, wantLeft: 8},
		{name: "7x8 climbs to the spine", gang: Gang{Groups: workers(7, 8), Policy: Policy{Mode: PolicyPreferred}},
			wantDomain: "spine=s1", wantLevel: 2, wantLeft: 0},
		{name: "4x7 fits exactly the block with one GPU taken per node", gang: Gang{Groups: workers(4, 7), Policy: Policy{Mode: PolicyPreferred}},
			wantDomain: "block=s0-b0", wantLevel: 1, wantLeft: 0},
		{name: "required block fails with a reason", gang: Gang{Groups: workers(6, 8), Policy: Policy{Mode: PolicyRequired, Level: lBlock}},
			wantErr: "needs 48 GPUs (6 pods x 8) in one block; best block s1-b0 has 32 free"},
		{name: "required block: best-fit block, ties by key", gang: Gang{Groups: workers(4, 4), Policy: Policy{Mode: PolicyRequired, Level: lBlock}},
			wantDomain: "block=s0-b1", wantLevel: 1, wantLeft: 8},
		{name: "required spine", gang: Gang{Groups: workers(6, 8), Policy: Policy{Mode: PolicyRequired, Level: lSpine}},
			wantDomain: "spine=s1", wantLevel: 2, wantLeft: 8},
		{name: "too big for the cluster", gang: Gang{Groups: workers(14, 8), Policy: Policy{Mode: PolicyPreferred}},
			wantErr: "needs 112 GPUs (14 pods x 8); the cluster has 108 free"},
		{name: "none: whole cluster, best-fit nodes", gang: Gang{Groups: workers(2, 4), Policy: Policy{Mode: PolicyNone}},
			wantDomain: "", wantLevel: 4, wantLeft: 100,
			check: func(t *testing.T, p *Plan) {
				for _, pl := range p.Placements {
					if !strings.HasPrefix(pl.Node, "s0-b1-n") || pl.Node > "s0-b1-n1" {
						t.Errorf("4-GPU pod on %s; best fit is a half-taken node of s0-b1", pl.Node)
					}
				}
			}},
		// No clique labels: each node is its own innermost domain, so a gang that fits one node is one.
		{name: "members share a node", gang: Gang{Groups: workers(4, 2), Policy: Policy{Mode: PolicyPreferred}},
			wantDomain: "node=s0-b1-n2", wantLevel: 0, wantLeft: 0,
			check: func(t *testing.T, p *Plan) {
				nodes := map[string]int{}
				for _, pl := range p.Placements {
					nodes[pl.Node]++
				}
				if len(nodes) != 1 {
					t.Errorf("4 pods x 2 GPUs spread over %v; they fit on one node", nodes)
				}
			}},
		{name: "launcher without GPUs plus workers", gang: Gang{Groups: []MemberGroup{
			{Name: "launcher", Count: 1, Resources: Resources{"cpu": 1000}},
			{Name: "worker", Count: 4, GPUs: 8, NICs: 8, Resources: Resources{"cpu": 8000}}}, Policy: Policy{Mode: PolicyPreferred}},
			wantDomain: "block=s1-b0", wantLevel: 1, wantLeft: 0,
			check: func(t *testing.T, p *Plan) {
				if len(p.Placements[1].NICs) != 8 {
					t.Errorf("worker NICs %v", p.Placements[1].NICs)
				}
			}},
		{name: "unknown level", gang: Gang{Groups: workers(1, 1), Policy: Policy{Mode: PolicyRequired, Level: "rack"}},
			wantErr: `unknown topology level "rack"`},
		{name: "empty gang", gang: Gang{Policy: Policy{Mode: PolicyPreferred}}, wantErr: "empty gang"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := fabric(t, 2, 2, 4, used)
			p, err := c.Plan(tc.gang)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkPlan(t, c, tc.gang, p)
			if p.Domain.Name != tc.wantDomain || p.Domain.Level != tc.wantLevel || p.GPUsLeft != tc.wantLeft {
				t.Errorf("domain %q level %d left %d, want %q level %d left %d",
					p.Domain.Name, p.Domain.Level, p.GPUsLeft, tc.wantDomain, tc.wantLevel, tc.wantLeft)
			}
			if tc.check != nil {
				tc.check(t, p)
			}
			if err := c.Apply(tc.gang, p); err != nil {
				t.Fatalf("apply: %v", err)
			}
		})
	}
}

func TestPlanUnschedulableErrorType(t *testing.T) {
	c := fabric(t, 1, 1, 2, nil)
	_, err := c.Plan(Gang{Groups: workers(3, 8), Policy: Policy{Mode: PolicyRequired, Level: lBlock}})
	var ue *UnschedulableError
	if !errors.As(err, &ue) {
		t.Fatalf("err %T %v, want *UnschedulableError", err, err)
	}
	// Fragmentation: 16 GPUs free in the block but no node with 8.
	c = fabric(t, 1, 1, 4, func(s, b, n int) []int { return gpus(4) })
	_, err = c.Plan(Gang{Groups: workers(2, 8), Policy: Policy{Mode: PolicyRequired, Level: lBlock}})
	if err == nil || !strings.Contains(err.Error(), "best block s0-b0 has 16 free GPUs but room for only 0 of the 2 pods needing 8+ GPUs") {
		t.Fatalf("err = %v", err)
	}
}

func TestPlanScalarsBind(t *testing.T) {
	topo := mustTopo(t, dgxH100Spec(nil))
	c := NewCluster([]string{lBlock}, []string{"cpu", "memory"})
	for i, cpu := range []int64{1000, 64000, 64000} {
		mustSet(t, c, NodeSpec{Name: fmt.Sprint("n", i), Labels: labels(lBlock, "b"), Topology: topo,
			Allocatable: Resources{"cpu": cpu, "memory": 1 << 40}})
	}
	g := Gang{Groups: []MemberGroup{{Name: "w", Count: 2, GPUs: 8, Resources: Resources{"cpu": 32000}}}, Policy: Policy{Mode: PolicyPreferred}}
	p, err := c.Plan(g)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, c, g, p)
	for _, pl := range p.Placements {
		if pl.Node == "n0" {
			t.Fatalf("pod on n0, which has 1 CPU")
		}
	}
	if err := c.Apply(g, p); err != nil {
		t.Fatal(err)
	}
	// A third such pod: GPUs are free on n0, but no CPU anywhere.
	g.Groups[0].Count = 1
	_, err = c.Plan(g)
	if err == nil || !strings.Contains(err.Error(), "no node left for member 1 of 1") {
		t.Fatalf("err = %v", err)
	}
}

// TestPlanGB200Clique: NVL72 racks are cliques of 18 trays × 4 GPUs; a gang that fits in one clique
// stays in one clique, best fit among cliques.
func TestPlanGB200Clique(t *testing.T) {
	topo := mustTopo(t, gb200TraySpec())
	c := NewCluster(defaultLevels, nil)
	busy := map[string]int{"A": 8, "B": 2} // trays fully taken per clique
	for _, q := range []string{"A", "B"} {
		for i := 0; i < 18; i++ {
			var used []int
			if i < busy[q] {
				used = gpus(4)
			}
			mustSet(t, c, NodeSpec{Name: fmt.Sprintf("%s-tray%02d", q, i), Topology: topo, UsedGPUs: used,
				Labels: labels(lClique, "uuid."+q, lBlock, "b0")})
		}
	}
	for _, tc := range []struct {
		pods   int
		policy Policy
		want   string
		err    string
	}{
		{12, Policy{Mode: PolicyPreferred}, "gpu.clique=uuid.B", ""}, // only B has 12 free trays
		{8, Policy{Mode: PolicyPreferred}, "gpu.clique=uuid.A", ""},  // both fit; A leaves less
		{20, Policy{Mode: PolicyPreferred}, "block=b0", ""},          // spans both
		{17, Policy{Mode: PolicyRequired, Level: lClique}, "", "needs 68 GPUs (17 pods x 4) in one gpu.clique; best gpu.clique uuid.B has 64 free"},
	} {
		p, err := c.Plan(Gang{Groups: workers(tc.pods, 4), Policy: tc.policy})
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%d pods: err %v, want %q", tc.pods, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%d pods: %v", tc.pods, err)
		}
		checkPlan(t, c, Gang{Groups: workers(tc.pods, 4)}, p)
		if p.Domain.Name != tc.want {
			t.Errorf("%d pods: domain %q, want %q", tc.pods, p.Domain.Name, tc.want)
		}
	}
}

func TestPlanDoesNotMutateAndApplyIsAtomic(t *testing.T) {
	c := fabric(t, 1, 2, 2, nil)
	g := Gang{Groups: workers(2, 8), Policy: Policy{Mode: PolicyPreferred}}
	p1, err := c.Plan(g)
	if err != nil {
		t.Fatal(err)
	}
	p2, _ := c.Plan(g)
	if fmt.Sprint(p1.Placements) != fmt.Sprint(p2.Placements) {
		t.Fatal("planning twice gave different plans: Plan changed the cluster")
	}
	if err := c.Apply(g, p1); err != nil {
		t.Fatal(err)
	}
	// The same plan again must fail and leave nothing behind.
	before := fmt.Sprint(c.Domains(3))
	if err := c.Apply(g, p1); err == nil {
		t.Fatal("applying a stale plan double-booked")
	}
	if after := fmt.Sprint(c.Domains(3)); after != before {
		t.Fatalf("failed apply changed the cluster: %s -> %s", before, after)
	}
	p3, err := c.Plan(g)
	if err != nil {
		t.Fatal(err)
	}
	if p3.Domain.Key == p1.Domain.Key {
		t.Fatalf("second gang planned into the full domain %q", p1.Domain.Key)
	}
}

func TestPlanWithoutLevelsAndExclude(t *testing.T) {
	topo := mustTopo(t, l40sSpec())
	c := NewCluster(nil, nil)
	for i := 0; i < 3; i++ {
		mustSet(t, c, NodeSpec{Name: fmt.Sprint("n", i), Topology: topo, UsedGPUs: gpus(2 * i)})
	}
	g := Gang{Groups: workers(2, 4), Policy: Policy{Mode: PolicyPreferred}}
	p, err := c.Plan(g)
	if err != nil {
		t.Fatal(err)
	}
	checkPlan(t, c, g, p)
	// Best fit: n2 (4 free: GPUs 4-7) and n1 (6 free) rather than the empty n0.
	if p.Placements[0].Node != "n2" || fmt.Sprint(p.Placements[0].GPUs) != "[4 5 6 7]" || p.Placements[1].Node != "n1" {
		t.Errorf("placements %+v", p.Placements)
	}
	g.Exclude = func(n string) bool { return n == "n2" }
	p, err = c.Plan(g)
	if err != nil {
		t.Fatal(err)
	}
	for _, pl := range p.Placements {
		if pl.Node == "n2" {
			t.Fatal("excluded node used")
		}
	}
	g.Exclude = func(string) bool { return true }
	if _, err := c.Plan(g); err == nil || !strings.Contains(err.Error(), "no node left for member 1 of 2") {
		t.Fatalf("err = %v", err)
	}
	g.Exclude = nil
	g.Groups = workers(2, 8)
	if _, err := c.Plan(g); err == nil || err.Error() != "needs 16 GPUs (2 pods x 8) in the cluster; the cluster has 18 free GPUs but room for only 1 of the 2 pods needing 8+ GPUs on one node" {
		t.Fatalf("err = %v", err)
	}
}

// A member joining a gang that already runs (an elastic job growing past its quorum) goes to the
// smallest domain around its siblings that fits, not to the best-fitting domain elsewhere: here
// block s1-b0 is the best fit for a 4-GPU pod (a node with 4 free), but the siblings run in
// s0-b1, which has room too.
func TestPlanNearPlacedMembers(t *testing.T) {
	c := fabric(t, 2, 2, 2, func(s, b, n int) []int {
		switch {
		case s == 1 && b == 0 && n == 0:
			return gpus(4) // the best fit anywhere
		case s == 0 && b == 1:
			return gpus(8) // the siblings' nodes: full
		}
		return nil
	})
	g := Gang{Groups: workers(1, 4), Policy: Policy{Mode: PolicyPreferred}}
	p, err := c.Plan(g)
	if err != nil {
		t.Fatal(err)
	}
	if p.Placements[0].Node != "s1-b0-n0" {
		t.Fatalf("without Near: %s, want the best fit s1-b0-n0", p.Placements[0].Node)
	}
	for _, policy := range []Policy{{Mode: PolicyPreferred}, {Mode: PolicyNone}, {Mode: PolicyRequired, Level: lSpine}} {
		// The siblings run on s0-b1-n0 and s0-b1-n1 (full): the nearest domain with room is
		// spine s0 (block s0-b0).
		g := Gang{Groups: workers(1, 4), Policy: policy, Near: []string{"s0-b1-n0", "s0-b1-n1"}}
		p, err := c.Plan(g)
		if err != nil {
			t.Fatal(err)
		}
		checkPlan(t, c, g, p)
		if node := p.Placements[0].Node; !strings.HasPrefix(node, "s0-b0-") {
			t.Fatalf("policy %+v with siblings in s0-b1: placed on %s, want block s0-b0 (same spine)", policy, node)
		}
	}
}
