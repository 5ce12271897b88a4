package topology

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	fwk "k8s.io/kube-scheduler/framework"
)

// minNodesToNarrow: below this many nodes the framework filters every node anyway (kube-
// scheduler's minFeasibleNodesToFind), so narrowing would save nothing and only change the
// failure message.
const minNodesToNarrow = 100

// gpuCandidates returns the nodes whose snapshot shows n of res free, and how many there are: a
// superset of what Filter accepts (the cache also counts plans, and NodeResourcesFit nominated
// pods), so a count of 0 is every node's verdict. The set is built only while it stays within
// limit nodes (nil beyond: the framework's own sampling finds feasible nodes quickly when they are
// that common); the count is exact up to limit+1. memo may be nil.
func gpuCandidates(nodes []fwk.NodeInfo, res v1.ResourceName, n, limit int, memo *freeMemo) (sets.Set[string], int) {
	memo.begin(len(nodes))
	defer memo.end()
	// Positions first, the set only once the count is known to be within limit: when GPUs are
	// free on many nodes the set would be built for nothing.
	var local []int
	found := &local
	if memo != nil {
		found = &memo.found
	}
	*found = (*found)[:0]
	for i, ni := range nodes {
		if memo.free(i, ni, res) < int64(n) {
			continue
		}
		if len(*found) == limit {
			return nil, limit + 1
		}
		*found = append(*found, i)
	}
	if len(*found) == 0 {
		return nil, 0
	}
	fit := sets.New[string]()
	for _, i := range *found {
		fit.Insert(nodes[i].Node().Name)
	}
	return fit, len(*found)
}

// freeMemo remembers each snapshot node's free GPUs with the node's generation, which the
// framework bumps on every change of a NodeInfo: a scan of 5000 nodes then reads one field per
// unchanged node where two map lookups through three pointers were most of a failing attempt's
// time. Entries follow the snapshot's node list by position.
type freeMemo struct {
	mu      sync.Mutex
	entries []freeEntry
	found   []int // gpuCandidates' scratch
}

type freeEntry struct {
	ni   fwk.NodeInfo
	gen  int64
	free int64
}

func (m *freeMemo) begin(n int) {
	if m == nil {
		return
	}
	m.mu.Lock()
	if len(m.entries) != n {
		m.entries = make([]freeEntry, n)
	}
}

func (m *freeMemo) end() {
	if m != nil {
		m.mu.Unlock()
	}
}

// free is snapshotFree of the i-th node, from the memo while the node is unchanged.
func (m *freeMemo) free(i int, ni fwk.NodeInfo, res v1.ResourceName) int64 {
	if m == nil {
		return snapshotFree(ni, res)
	}
	e := &m.entries[i]
	if gen := ni.GetGeneration(); e.ni != ni || e.gen != gen {
		*e = freeEntry{ni: ni, gen: gen, free: snapshotFree(ni, res)}
	}
	return e.free
}

// narrowLimit is the most candidates PreFilter hands the framework as a PreFilterResult: a
// quarter of the cluster. With more nodes free the framework's sampling (percentageOfNodesToScore)
// finds enough of them within a few of its steps.
func narrowLimit(nodes int) int { return nodes / 4 }
