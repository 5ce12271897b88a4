package topology

import (
	"fmt"
	"math/bits"
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

type bfNode struct {
	name string
	free int
	keys []string // per level, then "" for the cluster
	cap  int      // most members of the gang it may take; -1: no cap
}

// bfKeys re-derives domain keys from labels by the documented rule, independently of Cluster.
func bfKeys(levels []string, name string, lab map[string]string) []string {
	L := len(levels)
	local := make([]string, L)
	for l := range levels {
		short := levels[l][strings.LastIndex(levels[l], "/")+1:]
		switch v := lab[levels[l]]; {
		case v != "":
			local[l] = short + "=" + v
		case l == 0:
			local[l] = "node=" + name
		default:
			local[l] = local[l-1]
		}
	}
	keys := make([]string, L+1)
	for l := L - 1; l >= 0; l-- {
		keys[l] = local[l]
		if l < L-1 {
			keys[l] = keys[l+1] + "/" + local[l]
		}
	}
	return keys
}

// bfFeasible: can pods (GPU counts) be placed on nodes with these free counts, each node taking
// at most caps[n] pods (-1: any number)? Exhaustive.
func bfFeasible(free, caps []int, pods []int) bool {
	if len(free) == 0 {
		return false
	}
	var rec func(i int) bool
	rec = func(i int) bool {
		if i == len(pods) {
			return true
		}
		for n := range free {
			if free[n] >= pods[i] && caps[n] != 0 {
				free[n] -= pods[i]
				caps[n]--
				ok := rec(i + 1)
				caps[n]++
				free[n] += pods[i]
				if ok {
					return true
				}
			}
		}
		return false
	}
	return rec(0)
}

type bfResult struct {
	ok    bool
	level int
	left  int
	key   string
}

func bfPlan(levels []string, nodes []bfNode, g Gang) bfResult {
	L := len(levels)
	var tryLevels []int
	switch g.Policy.Mode {
	case PolicyNone:
		tryLevels = []int{L}
	case PolicyPreferred:
		for l := 0; l <= L; l++ {
			tryLevels = append(tryLevels, l)
		}
	case PolicyRequired:
		for l := 0; l < L; l++ {
			tryLevels = append(tryLevels, l)
			if levels[l] == g.Policy.Level {
				break
			}
		}
	}
	var pods []int
	need := 0
	for _, m := range g.Groups {
		for i := 0; i < m.Count; i++ {
			pods = append(pods, m.GPUs)
			need += m.GPUs
		}
	}
	var best bfResult
	for _, l := range tryLevels {
		doms, caps := map[string][]int{}, map[string][]int{}
		for _, n := range nodes {
			doms[n.keys[l]] = append(doms[n.keys[l]], n.free)
			caps[n.keys[l]] = append(caps[n.keys[l]], n.cap)
		}
		for key, free := range doms {
			if !bfFeasible(free, caps[key], pods) {
				continue
			}
			total := 0
			for _, f := range free {
				total += f
			}
			r := bfResult{true, l, total - need, key}
			if !best.ok || r.level < best.level || (r.level == best.level && (r.left < best.left || (r.left == best.left && r.key < best.key))) {
				best = r
			}
		}
	}
	return best
}

// TestPlanMatchesBruteForce: on random small clusters the planner's (level, GPUs left, domain)
// equals brute force's optimum for gangs of one GPU size plus CPU-only members (where the packing
// is exact), and is never better than the optimum (i.e. never infeasible) for mixed sizes.
func TestPlanMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	levels := []string{lBlock, lSpine}
	pick := func(vals ...string) string { return vals[r.Intn(len(vals))] }
	mixedWorse, mixed, exactRuns := 0, 0, 0
	for it := 0; it < 4000; it++ {
		c := NewCluster(levels, nil)
		var nodes []bfNode
		for i, nn := 0, 1+r.Intn(6); i < nn; i++ {
			name := fmt.Sprint("n", i)
			nG := []int{2, 4, 8}[r.Intn(3)]
			lab := labels(lBlock, pick("", "b0", "b1", "b2"), lSpine, pick("", "s0", "s1"))
			var used []int
			for g := 0; g < nG; g++ {
				if r.Intn(3) == 0 {
					used = append(used, g)
				}
			}
			mustSet(t, c, NodeSpec{Name: name, Labels: lab, GPUCount: nG, UsedGPUs: used})
			nodes = append(nodes, bfNode{name, nG - len(used), bfKeys(levels, name, lab), -1})
		}
		g := Gang{Groups: []MemberGroup{{Name: "w", Count: 1 + r.Intn(4), GPUs: 1 + r.Intn(8)}}}
		isMixed := r.Intn(4) == 0
		if isMixed {
			g.Groups = append(g.Groups, MemberGroup{Name: "w2", Count: 1 + r.Intn(3), GPUs: 1 + r.Intn(6)})
		}
		if r.Intn(2) == 0 {
			g.Groups = append(g.Groups, MemberGroup{Name: "launcher", Count: 1})
		}
		switch r.Intn(4) {
		case 0:
			g.Policy = Policy{Mode: PolicyNone}
		case 1:
			g.Policy = Policy{Mode: PolicyPreferred}
		case 2:
			g.Policy = Policy{Mode: PolicyRequired, Level: lBlock}
		case 3:
			g.Policy = Policy{Mode: PolicyRequired, Level: lSpine}
		}
		want := bfPlan(levels, nodes, g)
		p, err := c.Plan(g)
		if err == nil {
			checkPlan(t, c, g, p)
			if !want.ok {
				t.Fatalf("it %d: planner placed a gang brute force cannot: %+v", it, p.Domain)
			}
		}
		got := bfResult{err == nil, 0, 0, ""}
		if p != nil {
			got = bfResult{true, p.Domain.Level, p.GPUsLeft, p.Domain.Key}
		}
		if isMixed && g.Groups[0].GPUs != g.Groups[1].GPUs {
			mixed++
			if got != want {
				if got.ok && (got.level < want.level || (got.level == want.level && got.left < want.left)) {
					t.Fatalf("it %d: planner %+v beats the optimum %+v", it, got, want)
				}
				mixedWorse++
			}
			continue
		}
		exactRuns++
		if got != want {
			t.Fatalf("it %d: policy %+v gang %+v nodes %+v:\nplanner %+v (err %v)\nbrute   %+v", it, g.Policy, g.Groups, nodes, got, err, want)
		}
	}
	if exactRuns < 2000 {
		t.Fatalf("only %d exact comparisons", exactRuns)
	}
	t.Logf("%d exact comparisons equal; mixed-size gangs: %d of %d worse than optimum (best-fit-decreasing)", exactRuns, mixedWorse, mixed)
}

// TestPlanWithMemberCapsMatchesBruteForce: with per-node caps on the gang's members (what the
// scheduler's filters refused), the planner's (level, GPUs left, domain) equals brute force's
// optimum for gangs of one GPU size, and no node holds more members than its cap.
func TestPlanWithMemberCapsMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(29))
	levels := []string{lBlock, lSpine}
	pick := func(vals ...string) string { return vals[r.Intn(len(vals))] }
	capped := 0
	for it := 0; it < 3000; it++ {
		c := NewCluster(levels, nil)
		var nodes []bfNode
		g := Gang{Groups: []MemberGroup{{Name: "w", Count: 1 + r.Intn(5), GPUs: 1 + r.Intn(4)}}, MaxMembers: map[string]int{}}
		for i, nn := 0, 1+r.Intn(6); i < nn; i++ {
			name := fmt.Sprint("n", i)
			lab := labels(lBlock, pick("", "b0", "b1"), lSpine, pick("", "s0", "s1"))
			used := []int{}
			for x := 0; x < 8; x++ {
				if r.Intn(3) == 0 {
					used = append(used, x)
				}
			}
			mustSet(t, c, NodeSpec{Name: name, Labels: lab, GPUCount: 8, UsedGPUs: used})
			limit := -1
			if r.Intn(2) == 0 {
				limit = r.Intn(3)
				g.MaxMembers[name] = limit
				capped++
			}
			nodes = append(nodes, bfNode{name, 8 - len(used), bfKeys(levels, name, lab), limit})
		}
		g.Policy = []Policy{{Mode: PolicyNone}, {Mode: PolicyPreferred}, {Mode: PolicyRequired, Level: lBlock}}[r.Intn(3)]
		want := bfPlan(levels, nodes, g)
		p, err := c.Plan(g)
		got := bfResult{}
		if err == nil {
			checkPlan(t, c, g, p)
			got = bfResult{true, p.Domain.Level, p.GPUsLeft, p.Domain.Key}
			per := map[string]int{}
			for _, pl := range p.Placements {
				per[pl.Node]++
				if limit, ok := g.MaxMembers[pl.Node]; ok && per[pl.Node] > limit {
					t.Fatalf("it %d: %s holds %d members, capped at %d", it, pl.Node, per[pl.Node], limit)
				}
			}
		}
		if got != want {
			t.Fatalf("it %d: policy %+v gang %+v nodes %+v:\nplanner %+v (err %v)\nbrute   %+v", it, g.Policy, g.Groups, nodes, got, err, want)
		}
	}
	if capped < 1000 {
		t.Fatalf("only %d capped nodes", capped)
	}
}

// TestPlanNeverDoubleBooksAcrossGangs plans and applies random gangs on one cluster until it is
// full, replaying every placement against a ledger of its own — the GPUs the nodes started with in
// use plus every GPU handed out since — and fails on any conflict: a pod given the wrong number of
// GPUs, a GPU that does not exist, or a GPU already held (by a pod from before or handed out
// earlier, including to another member of the same gang). It also checks that the cluster's view
// of each node's free GPUs stays the complement of the ledger and that the counts add up.
func TestPlanNeverDoubleBooksAcrossGangs(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	const gpusPerNode = 8       // fabric's DGX H100 nodes
	held := map[string]uint64{} // the ledger: node name (as fabric names it) → GPUs in use
	c := fabric(t, 2, 3, 5, func(s, b, n int) []int {
		var u []int
		for g := 0; g < gpusPerNode; g++ {
			if r.Intn(4) == 0 {
				u = append(u, g)
				held[fmt.Sprintf("s%d-b%d-n%d", s, b, n)] |= 1 << uint(g)
			}
		}
		return u
	})
	if len(c.nodes) != 2*3*5 {
		t.Fatalf("%d nodes", len(c.nodes))
	}
	for name := range c.nodes {
		if f, _ := c.FreeGPUs(name); len(f) != gpusPerNode-bits.OnesCount64(held[name]) {
			t.Fatalf("%s starts with %d free GPUs, the ledger says %d in use", name, len(f), bits.OnesCount64(held[name]))
		}
	}
	start := c.Domains(len(c.levels))[0].FreeGPUs
	total, pods := 0, 0
	for i := 0; i < 200; i++ {
		g := Gang{Groups: workers(1+r.Intn(6), []int{1, 2, 4, 8}[r.Intn(4)]),
			Policy: Policy{Mode: PolicyMode(r.Intn(3)), Level: lBlock}}
		p, err := c.Plan(g)
		if err != nil {
			continue
		}
		checkPlan(t, c, g, p)
		if err := c.Apply(g, p); err != nil {
			t.Fatal(err)
		}
		var conflicts []string
		for _, pl := range p.Placements {
			pods++
			if want := g.Groups[pl.Group].GPUs; len(pl.GPUs) != want {
				conflicts = append(conflicts, fmt.Sprintf("member %d/%d on %s got %d GPUs %v, asked %d", pl.Group, pl.Ordinal, pl.Node, len(pl.GPUs), pl.GPUs, want))
			}
			for _, x := range pl.GPUs {
				bit := uint64(1) << uint(x)
				switch {
				case x < 0 || x >= gpusPerNode:
					conflicts = append(conflicts, fmt.Sprintf("member %d/%d on %s got GPU %d, which does not exist", pl.Group, pl.Ordinal, pl.Node, x))
				case held[pl.Node]&bit != 0:
					conflicts = append(conflicts, fmt.Sprintf("member %d/%d on %s got GPU %d, already held", pl.Group, pl.Ordinal, pl.Node, x))
				default:
					held[pl.Node] |= bit
					total++
				}
			}
		}
		if len(conflicts) > 0 {
			t.Fatalf("gang %d: %d conflicts:\n%s", i, len(conflicts), strings.Join(conflicts, "\n"))
		}
		for _, pl := range p.Placements {
			f, _ := c.FreeGPUs(pl.Node)
			var fm uint64
			for _, x := range f {
				fm |= 1 << uint(x)
			}
			if want := maskOfFirst(gpusPerNode) &^ held[pl.Node]; fm != want {
				t.Fatalf("gang %d: free GPUs on %s: cluster says %v, the ledger %v", i, pl.Node, f, maskIndices(want))
			}
		}
	}
	left := c.Domains(len(c.levels))[0].FreeGPUs
	if start-left != total || total == 0 || pods == 0 {
		t.Fatalf("start %d, left %d, handed out %d to %d pods", start, left, total, pods)
	}
	recount := 0
	for name := range c.nodes {
		f, _ := c.FreeGPUs(name)
		recount += len(f)
		if want := gpusPerNode - bits.OnesCount64(held[name]); len(f) != want {
			t.Fatalf("%s: cluster says %d free, the ledger %d", name, len(f), want)
		}
	}
	if recount != left {
		t.Fatalf("cluster says %d free, nodes say %d", left, recount)
	}
	t.Logf("%d pods placed, %d GPUs handed out, no conflicts", pods, total)
}

// TestPlanScratchCarriesNothingOver plans a sequence of random gangs (CPU-only members, binding
// scalars, excluded nodes, every policy) on one cluster, whose packing scratch is reused from
// plan to plan, and each gang again on a cluster built fresh in the same state: the plans must be
// identical, so nothing a packing attempt leaves in the scratch reaches the next.
func TestPlanScratchCarriesNothingOver(t *testing.T) {
	build := func(seed int64) *Cluster {
		r := rand.New(rand.NewSource(seed))
		c := NewCluster(defaultLevels, []string{"cpu"})
		for s := 0; s < 2; s++ {
			for b := 0; b < 3; b++ {
				for n := 0; n < 6; n++ {
					var used []int
					for g := 0; g < 8; g++ {
						if r.Intn(3) == 0 {
							used = append(used, g)
						}
					}
					mustSet(t, c, NodeSpec{Name: fmt.Sprintf("s%d-b%d-n%d", s, b, n), GPUCount: 8, UsedGPUs: used,
						Labels:      labels(lBlock, fmt.Sprintf("s%d-b%d", s, b), lSpine, fmt.Sprint("s", s), lZone, "z0"),
						Allocatable: Resources{"cpu": 64000}, Requested: Resources{"cpu": int64(r.Intn(4)) * 16000}})
				}
			}
		}
		return c
	}
	reused := build(5)
	r := rand.New(rand.NewSource(9))
	planned := 0
	for i := 0; i < 300; i++ {
		g := Gang{Groups: []MemberGroup{{Name: "w", Count: 1 + r.Intn(8), GPUs: []int{1, 2, 4, 8}[r.Intn(4)],
			Resources: Resources{"cpu": int64(r.Intn(3)) * 16000}}},
			Policy: Policy{Mode: PolicyMode(r.Intn(3)), Level: []string{lBlock, lSpine}[r.Intn(2)]}}
		if r.Intn(3) == 0 {
			g.Groups = append(g.Groups, MemberGroup{Name: "launcher", Count: 1, Resources: Resources{"cpu": 8000}})
		}
		if r.Intn(3) == 0 {
			skip := fmt.Sprintf("s%d-b%d-n%d", r.Intn(2), r.Intn(3), r.Intn(6))
			g.Exclude = func(n string) bool { return n == skip }
		}
		got, gotErr := reused.Plan(g)
		want, wantErr := build(5).Plan(g)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("gang %d %+v: after earlier plans %+v (%v), on a fresh cluster %+v (%v)", i, g.Groups, got, gotErr, want, wantErr)
		}
		if gotErr == nil {
			planned++
		}
	}
	if planned < 100 {
		t.Fatalf("only %d of 300 gangs placed: the comparison says little", planned)
	}
}
