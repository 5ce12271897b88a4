package topology

import (
	"fmt"
	"math/bits"
	"math/rand"
	"sort"
	"testing"
)

const (
	lClique = "nvidia.com/gpu.clique"
	lBlock  = "network.topology.nvidia.com/block"
	lSpine  = "network.topology.nvidia.com/spine"
	lZone   = "topology.kubernetes.io/zone"
)

var defaultLevels = []string{lClique, lBlock, lSpine, lZone}

func labels(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func mustSet(t testing.TB, c *Cluster, s NodeSpec) {
	t.Helper()
	if err := c.SetNode(s); err != nil {
		t.Fatal(err)
	}
}

func TestDomainDerivation(t *testing.T) {
	c := NewCluster([]string{lClique, lBlock, lSpine}, nil)
	add := func(name string, l map[string]string) { mustSet(t, c, NodeSpec{Name: name, Labels: l, GPUCount: 8}) }
	add("a1", labels(lBlock, "b1", lSpine, "s1"))
	add("a2", labels(lBlock, "b1", lSpine, "s1"))
	add("lone", labels(lSpine, "s1"))
	add("bare", nil)
	// GB200 trays with a clique label but no block label: the clique must stay whole.
	add("g1", labels(lClique, "c1", lSpine, "s2"))
	add("g2", labels(lClique, "c1", lSpine, "s2"))
	// Same clique value under another spine: split, so the tree stays a tree.
	add("g3", labels(lClique, "c1", lSpine, "s3"))

	cases := []struct {
		a, b  string
		level int
		same  bool
	}{
		{"a1", "a2", 1, true},    // same block
		{"a1", "a2", 0, false},   // no clique label: each its own clique
		{"a1", "lone", 1, false}, // lone has no block: its own block
		{"a1", "lone", 2, true},  // but the same spine
		{"bare", "a1", 2, false}, // bare is alone at every level
		{"bare", "a1", 3, true},  // except the whole cluster
		{"g1", "g2", 0, true},
		{"g1", "g2", 1, true}, // block inherited from the clique
		{"g1", "g3", 0, false},
	}
	for _, tc := range cases {
		da, _ := c.NodeDomain(tc.a, tc.level)
		db, _ := c.NodeDomain(tc.b, tc.level)
		if (da.Key == db.Key) != tc.same {
			t.Errorf("%s/%s at level %d: keys %q %q, same=%v want %v", tc.a, tc.b, tc.level, da.Key, db.Key, !tc.same, tc.same)
		}
	}
	d, _ := c.NodeDomain("g1", 1)
	if d.Nodes != 2 || d.TotalGPUs != 16 || d.Name != "gpu.clique=c1" {
		t.Errorf("GB200 block domain: %+v", d)
	}
	var blocks []string
	for _, d := range c.Domains(1) {
		blocks = append(blocks, d.Key)
	}
	sort.Strings(blocks)
	want := "[node=bare/node=bare spine=s1/block=b1 spine=s1/node=lone spine=s2/gpu.clique=c1 spine=s3/gpu.clique=c1]"
	if fmt.Sprint(blocks) != want {
		t.Errorf("blocks %v, want %s", blocks, want)
	}
}

func TestClusterUpdates(t *testing.T) {
	c := NewCluster([]string{lBlock}, []string{"cpu"})
	mustSet(t, c, NodeSpec{Name: "n1", Labels: labels(lBlock, "b"), GPUCount: 8, UsedGPUs: []int{0},
		Allocatable: Resources{"cpu": 1000}})
	mustSet(t, c, NodeSpec{Name: "n2", Labels: labels(lBlock, "b"), GPUCount: 4})
	blk := func() DomainInfo { d, _ := c.NodeDomain("n1", 0); return d }
	if d := blk(); d.FreeGPUs != 11 || d.TotalGPUs != 12 || d.MaxFreeOnNode != 7 || d.Nodes != 2 {
		t.Fatalf("block after add: %+v", d)
	}
	if err := c.Allocate("n1", []int{1, 2, 3}, Resources{"cpu": 500}); err != nil {
		t.Fatal(err)
	}
	if d := blk(); d.FreeGPUs != 8 || d.MaxFreeOnNode != 4 {
		t.Fatalf("after allocate: %+v", d)
	}
	if err := c.Allocate("n1", []int{3, 4}, nil); err == nil {
		t.Fatal("double booking accepted")
	}
	if free, _ := c.FreeGPUs("n1"); fmt.Sprint(free) != "[4 5 6 7]" {
		t.Fatalf("failed allocate changed state: free %v", free)
	}
	if err := c.Release("n1", []int{4}, nil); err == nil {
		t.Fatal("release of a free GPU accepted")
	}
	if err := c.Allocate("n1", []int{8}, nil); err == nil {
		t.Fatal("out-of-range GPU accepted")
	}
	if err := c.Release("n1", []int{1, 2}, nil); err != nil {
		t.Fatal(err)
	}
	if d := blk(); d.FreeGPUs != 10 || d.MaxFreeOnNode != 6 {
		t.Fatalf("after release: %+v", d)
	}
	c.RemoveNode("n1")
	d, ok := c.NodeDomain("n2", 0)
	if !ok || d.FreeGPUs != 4 || d.TotalGPUs != 4 || d.Nodes != 1 {
		t.Fatalf("after remove: %+v", d)
	}
	c.RemoveNode("n2")
	if len(c.Domains(0)) != 0 || c.Domains(1)[0].Nodes != 0 {
		t.Fatalf("empty domains left: %+v %+v", c.Domains(0), c.Domains(1))
	}
	if err := c.SetNode(NodeSpec{Name: "x", GPUCount: 2, UsedGPUs: []int{2}}); err == nil {
		t.Fatal("used GPU out of range accepted")
	}
}

// TestIncrementalMatchesRecount drives random adds, replacements, removals, allocations and
// releases, and after every step compares each domain's aggregates with a recount from nodes.
func TestIncrementalMatchesRecount(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	levels := []string{lClique, lBlock, lSpine}
	c := NewCluster(levels, nil)
	vals := func(prefix string) string {
		if r.Intn(4) == 0 {
			return ""
		}
		return fmt.Sprint(prefix, r.Intn(3))
	}
	for step := 0; step < 2000; step++ {
		name := fmt.Sprint("n", r.Intn(12))
		switch op := r.Intn(10); {
		case op < 3:
			nG := []int{0, 4, 8, 16}[r.Intn(4)]
			var used []int
			for g := 0; g < nG; g++ {
				if r.Intn(3) == 0 {
					used = append(used, g)
				}
			}
			mustSet(t, c, NodeSpec{Name: name, GPUCount: nG, UsedGPUs: used,
				Labels: labels(lClique, vals("c"), lBlock, vals("b"), lSpine, vals("s"))})
		case op < 4:
			c.RemoveNode(name)
		default:
			free, ok := c.FreeGPUs(name)
			if !ok {
				continue
			}
			if r.Intn(2) == 0 && len(free) > 0 {
				_ = c.Allocate(name, free[:1+r.Intn(len(free))], nil)
			} else {
				nd := c.nodes[name]
				busy := maskIndices(maskOfFirst(nd.nGPU) &^ nd.free)
				if len(busy) > 0 {
					_ = c.Release(name, busy[:1+r.Intn(len(busy))], nil)
				}
			}
		}
		checkAggregates(t, c, step)
	}
}

func checkAggregates(t *testing.T, c *Cluster, step int) {
	t.Helper()
	for l := 0; l <= len(c.levels); l++ {
		want := map[string]*DomainInfo{}
		for name, n := range c.nodes {
			d, _ := c.NodeDomain(name, l)
			w := want[d.Key]
			if w == nil {
				w = &DomainInfo{}
				want[d.Key] = w
			}
			f := bits.OnesCount64(n.free)
			w.Nodes++
			w.FreeGPUs += f
			w.TotalGPUs += n.nGPU
			w.MaxFreeOnNode = max(w.MaxFreeOnNode, f)
		}
		got := c.Domains(l)
		if l < len(c.levels) && len(got) != len(want) {
			t.Fatalf("step %d level %d: %d domains, want %d", step, l, len(got), len(want))
		}
		for _, d := range got {
			w := want[d.Key]
			if w == nil {
				if d.Nodes != 0 {
					t.Fatalf("step %d: domain %q not backed by nodes: %+v", step, d.Key, d)
				}
				continue
			}
			if d.Nodes != w.Nodes || d.FreeGPUs != w.FreeGPUs || d.TotalGPUs != w.TotalGPUs || d.MaxFreeOnNode != w.MaxFreeOnNode {
				t.Fatalf("step %d level %d domain %q: got %+v, recount %+v", step, l, d.Key, d, *w)
			}
		}
	}
}
