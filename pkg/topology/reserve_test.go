package topology

import (
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

func TestReserveChoosesSmallestDomainWithLeastToWaitFor(t *testing.T) {
	levels := []string{lBlock, lSpine}
	build := func(used map[string]int) *Cluster {
		c := NewCluster(levels, nil)
		for i, n := range []string{"a0", "a1", "b0", "b1"} {
			var u []int
			for g := range used[n] {
				u = append(u, g)
			}
			mustSet(t, c, NodeSpec{Name: n, Labels: labels(lBlock, []string{"A", "A", "B", "B"}[i], lSpine, "s0"), GPUCount: 8, UsedGPUs: u})
		}
		return c
	}
	gang := func(n, gpus int, p Policy) Gang {
		return Gang{Groups: []MemberGroup{{Name: "w", Count: n, GPUs: gpus}}, Policy: p}
	}
	for _, tc := range []struct {
		name        string
		used        map[string]int
		pinned      map[string]int
		g           Gang
		wantDomain  string
		wantNeed    map[string]int
		wantWaiting int
		wantErr     string
	}{
		{name: "block with fewer GPUs in use", used: map[string]int{"a0": 6, "a1": 2, "b0": 8, "b1": 1},
			g: gang(2, 8, Policy{Mode: PolicyPreferred}), wantDomain: "block=A", wantNeed: map[string]int{"a0": 8, "a1": 8}, wantWaiting: 8},
		{name: "pinned GPUs rule a block out", used: map[string]int{"a0": 6, "a1": 2, "b0": 8, "b1": 8},
			pinned: map[string]int{"a0": 1}, g: gang(2, 8, Policy{Mode: PolicyPreferred}), wantDomain: "block=B", wantNeed: map[string]int{"b0": 8, "b1": 8}, wantWaiting: 16},
		{name: "spread over two nodes to wait for nothing", used: map[string]int{"a0": 4, "a1": 4, "b0": 8, "b1": 8},
			g: gang(2, 4, Policy{Mode: PolicyRequired, Level: lBlock}), wantDomain: "block=A", wantNeed: map[string]int{"a0": 4, "a1": 4}, wantWaiting: 0},
		{name: "too big for a block: the spine", used: map[string]int{"a0": 7, "a1": 8, "b0": 5, "b1": 6},
			g: gang(3, 8, Policy{Mode: PolicyPreferred}), wantDomain: "spine=s0", wantNeed: map[string]int{"a0": 8, "b0": 8, "b1": 8}, wantWaiting: 18},
		{name: "required block too small even drained", used: map[string]int{},
			g: gang(3, 8, Policy{Mode: PolicyRequired, Level: lBlock}), wantErr: "cannot hold the gang's 24 GPUs"},
		{name: "unknown level", g: gang(1, 8, Policy{Mode: PolicyRequired, Level: "no.such/level"}), wantErr: "unknown topology level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := build(tc.used)
			r, err := c.Reserve(tc.g, func(n string) int { return tc.pinned[n] })
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Domain.Name != tc.wantDomain || r.Waiting != tc.wantWaiting || fmt.Sprint(r.Need) != fmt.Sprint(tc.wantNeed) {
				t.Fatalf("got %s need %v waiting %d; want %s need %v waiting %d", r.Domain.Name, r.Need, r.Waiting, tc.wantDomain, tc.wantNeed, tc.wantWaiting)
			}
		})
	}
}

// Property: for gangs of one pod size, Reserve finds a domain whenever one can hold the gang once
// drained, at the smallest such level, and the fewest GPUs to wait for there, as brute force over
// every assignment of members to nodes says.
func TestReserveMatchesBruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	levels := []string{lBlock}
	for it := 0; it < 3000; it++ {
		c := NewCluster(levels, nil)
		type bn struct {
			name, block    string
			capa, free, in int
		}
		var nodes []bn
		pinned := map[string]int{}
		for i, nn := 0, 1+r.Intn(5); i < nn; i++ {
			name, block := fmt.Sprint("n", i), []string{"b0", "b1"}[r.Intn(2)]
			nG := []int{4, 8}[r.Intn(2)]
			usedN := r.Intn(nG + 1)
			var used []int
			for g := range usedN {
				used = append(used, g)
			}
			mustSet(t, c, NodeSpec{Name: name, Labels: labels(lBlock, block), GPUCount: nG, UsedGPUs: used})
			if usedN > 0 && r.Intn(3) == 0 {
				pinned[name] = r.Intn(usedN + 1)
			}
			nodes = append(nodes, bn{name: name, block: block, capa: nG - pinned[name], free: min(nG-usedN, nG-pinned[name])})
		}
		count, size := 1+r.Intn(4), []int{1, 2, 4, 8}[r.Intn(4)]
		g := Gang{Groups: []MemberGroup{{Name: "w", Count: count, GPUs: size}}, Policy: Policy{Mode: PolicyRequired, Level: lBlock}}
		// Brute force per block: every assignment of count members to the block's nodes.
		best := -1
		for _, blk := range []string{"b0", "b1"} {
			var in []bn
			for _, n := range nodes {
				if n.block == blk {
					in = append(in, n)
				}
			}
			var rec func(k int, used []int) int
			rec = func(k int, used []int) int {
				if k == count {
					w := 0
					for i, u := range used {
						w += max(0, u-in[i].free)
					}
					return w
				}
				b := -1
				for i := range in {
					if used[i]+size > in[i].capa {
						continue
					}
					used[i] += size
					if w := rec(k+1, used); w >= 0 && (b < 0 || w < b) {
						b = w
					}
					used[i] -= size
				}
				return b
			}
			if w := rec(0, make([]int, len(in))); w >= 0 && (best < 0 || w < best) {
				best = w
			}
		}
		res, err := c.Reserve(g, func(n string) int { return pinned[n] })
		if best < 0 {
			var ue *UnschedulableError
			if err == nil || !errors.As(err, &ue) {
				t.Fatalf("it %d: brute force finds no block, Reserve gave %+v, %v", it, res, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("it %d: brute force waits for %d, Reserve failed: %v (nodes %+v)", it, best, err, nodes)
		}
		if res.Waiting != best {
			t.Fatalf("it %d: Reserve waits for %d, optimum %d (nodes %+v, %d x %d, need %v)", it, res.Waiting, best, nodes, count, size, res.Need)
		}
		sum := 0
		for n, k := range res.Need {
			sum += k
			for _, bn := range nodes {
				if bn.name == n && (k > bn.capa || k%size != 0) {
					t.Fatalf("it %d: %d GPUs on %s beyond its capacity %d or not whole pods", it, k, n, bn.capa)
				}
			}
		}
		if sum != count*size {
			t.Fatalf("it %d: reserved %d GPUs for a gang of %d", it, sum, count*size)
		}
	}
}

func BenchmarkReserve5000Nodes(b *testing.B) {
	c := NewCluster([]string{lBlock, lSpine}, nil)
	for i := range 5000 {
		var used []int
		for g := range i % 9 {
			used = append(used, g)
		}
		if err := c.SetNode(NodeSpec{Name: fmt.Sprint("n", i), Labels: labels(lBlock, fmt.Sprint("b", i/16), lSpine, fmt.Sprint("s", i/64)), GPUCount: 8, UsedGPUs: used[:min(len(used), 8)]}); err != nil {
			b.Fatal(err)
		}
	}
	g := Gang{Groups: []MemberGroup{{Name: "w", Count: 32, GPUs: 8}}, Policy: Policy{Mode: PolicyPreferred}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Reserve(g, nil); err != nil {
			b.Fatal(err)
		}
	}
}
