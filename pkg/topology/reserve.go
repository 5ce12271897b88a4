package topology

import (
	"fmt"
	"sort"
)

// Reservation is where a gang that cannot be placed now will wait for GPUs to drain: the nodes of
// one domain and how many GPUs it will take on each.
type Reservation struct {
	Domain DomainInfo
	// Need is the GPUs the gang takes on each reserved node once they are free.
	Need map[string]int
	// Waiting is how many of those GPUs are in use now: what the gang waits for.
	Waiting int
}

// Nodes returns the reserved nodes, sorted.
func (r *Reservation) Nodes() []string {
	out := make([]string, 0, len(r.Need))
	for n := range r.Need {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Reserve chooses where a gang should wait: the smallest domain its policy allows that could hold
// it once every GPU drains, except pinned(node) GPUs that never will for it (held by pods it may
// not wait out, or unhealthy); among such domains of that level, the one with the fewest GPUs in
// use on the nodes it would take (fewest to wait for), then the domain key.
//
// Inside a domain, members go largest first to the node where they add the least waiting (GPUs in
// use beyond what is free now), ties to a node the gang already uses, then to the node with most
// free GPUs, then in locality order. For members of one size this greedy minimises the waiting
// exactly (per node the waiting is convex in the members placed there); for mixed sizes it is a
// heuristic.
//
// Cost: O(domains of the levels tried · members · nodes of the domain); it runs once per
// reservation, not per scheduling cycle.
func (c *Cluster) Reserve(g Gang, pinned func(node string) int) (*Reservation, error) {
	var sizes []int
	for _, m := range g.Groups {
		for range m.Count {
			if m.GPUs > 0 {
				sizes = append(sizes, m.GPUs)
			}
		}
	}
	if len(sizes) == 0 {
		return nil, fmt.Errorf("gang asks for no GPUs: nothing to reserve")
	}
	sort.Sort(sort.Reverse(sort.IntSlice(sizes)))
	levels, _, err := c.levelsFor(g.Policy)
	if err != nil {
		return nil, err
	}
	total := 0
	for _, s := range sizes {
		total += s
	}
	var nodes []*node
	for _, l := range levels {
		var best *Reservation
		for _, d := range c.list[l] {
			if d.total < total {
				continue
			}
			nodes = c.scratch.appendLocalityOrder(nodes[:0], d, 0)
			need, waiting, ok := assign(sizes, nodes, g.Exclude, pinned)
			if !ok {
				continue
			}
			if best == nil || waiting < best.Waiting || waiting == best.Waiting && d.key < best.Domain.Key {
				best = &Reservation{Domain: c.info(d), Need: need, Waiting: waiting}
			}
		}
		if best != nil {
			return best, nil
		}
	}
	where := "the cluster"
	if g.Policy.Mode == PolicyRequired {
		where = "any " + shortLevel(g.Policy.Level)
	}
	return nil, &UnschedulableError{Reason: fmt.Sprintf("even with every GPU it may wait for drained, %s cannot hold the gang's %d GPUs (%d pods)", where, total, len(sizes))}
}

// assign places the members (sizes, largest first) on nodes; see Reserve.
func assign(sizes []int, nodes []*node, exclude func(string) bool, pinned func(string) int) (map[string]int, int, bool) {
	type slot struct {
		n         *node
		cap, free int
		used      int
	}
	slots := make([]slot, 0, len(nodes))
	for _, n := range nodes {
		if exclude != nil && exclude(n.name) {
			continue
		}
		capacity := n.nGPU
		if pinned != nil {
			capacity -= pinned(n.name)
		}
		free := popcount(n.free)
		if capacity <= 0 {
			continue
		}
		slots = append(slots, slot{n: n, cap: capacity, free: min(free, capacity)})
	}
	wait := func(used, free int) int { return max(0, used-free) }
	waiting := 0
	for _, s := range sizes {
		bi := -1
		var bCost int
		for i := range slots {
			sl := &slots[i]
			if sl.used+s > sl.cap {
				continue
			}
			cost := wait(sl.used+s, sl.free) - wait(sl.used, sl.free)
			if bi < 0 || cost < bCost || cost == bCost && better(sl.used, sl.free, slots[bi].used, slots[bi].free) {
				bi, bCost = i, cost
			}
		}
		if bi < 0 {
			return nil, 0, false
		}
		slots[bi].used += s
		waiting += bCost
	}
	need := map[string]int{}
	for _, sl := range slots {
		if sl.used > 0 {
			need[sl.n.name] = sl.used
		}
	}
	return need, waiting, true
}

// better breaks a tie of equal added waiting: a node the gang already uses, then more free GPUs.
func better(usedA, freeA, usedB, freeB int) bool {
	if (usedA > 0) != (usedB > 0) {
		return usedA > 0
	}
	return freeA > freeB
}

func popcount(m uint64) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}
