package topology_test

import (
	"math/bits"
	"math/rand"
	"testing"

	"github.com/tensorstack/t9k/pkg/topology"
	"github.com/tensorstack/t9k/pkg/topology/baseline"
)

// TestChooseAgainstRingBruteForce: on random machines of up to 8 GPUs (bridges, NVSwitch domains
// with any number of active links, random PCIe levels and NUMA nodes), brute force over every
// k-subset of a random free set finds the best set by the ring yardstick (baseline.RingBandwidth),
// which reads the spec and shares nothing with Quality. It counts how often Choose's set is at that
// optimum and how Choose's set ranks against go-gpuallocator's on the same machine, fails on any
// conflict in Choose's set (wrong number of GPUs, a GPU twice or not free), and asserts the bounds
// that hold (see the end). NICs are not asked for: neither the yardstick nor go-gpuallocator
// knows them. TestChooseMatchesBruteForce checks, separately, that Choose finds the exact optimum
// of its own objective (Quality).
func TestChooseAgainstRingBruteForce(t *testing.T) {
	r := rand.New(rand.NewSource(5))
	var st compareStats
	for it := 0; it < 3000; it++ {
		n := 2 + r.Intn(7)
		spec := physical(topology.RandomSpec(r, n))
		topo := topology.MustTopo(t, spec)
		theirs, err := baseline.New(spec)
		if err != nil {
			t.Fatal(err)
		}
		tab := ringTable(spec, baseline.NVLink4Rates)
		free := (r.Uint64() | r.Uint64()) & topo.AllGPUs() // each GPU free with probability 3/4
		for k := 1; k <= bits.OnesCount64(free); k++ {
			ours, ok := topo.Choose(free, topology.GPURequest{GPUs: k})
			if !ok {
				t.Fatalf("it %d: Choose found no %d of %v", it, k, topology.MaskIndices(free))
			}
			st.add(t, tab, free, k, ours.GPUs, theirs.Allocate(free, k))
		}
	}
	t.Logf("random machines: %s", st)
	// What holds, measured with this seed (the run is deterministic). Choose maximises the NVLink
	// sum over pairs, not the ring's bottleneck, and on irregular machines the two part: a set
	// with a few fat links and one slow hop can out-sum a set that rings several times faster.
	// So t9k is not never-worse here: it is below go-gpuallocator's set in some cases and off the
	// ring optimum in more. The bounds are the measured counts: a change to Choose that loses
	// ground fails; one that gains should lower them.
	const (
		maxWorse        = 315  // of 5339 compared: t9k's set rings slower than go-gpuallocator's
		maxOffOptimum   = 1225 // of 5445: t9k's set is not the yardstick's optimum
		maxBottleMissed = 1074 // of 5445: t9k's set has a smaller bottleneck than the optimum
	)
	if st.cases < 5000 {
		t.Fatalf("only %d cases with a choice", st.cases)
	}
	if st.worse > maxWorse {
		t.Errorf("t9k below go-gpuallocator in %d cases, at most %d expected; worst: %s", st.worse, maxWorse, st.worseExample)
	}
	if off := st.cases - st.oursOptimal; off > maxOffOptimum {
		t.Errorf("t9k off the ring optimum in %d cases, at most %d expected", off, maxOffOptimum)
	}
	if st.bottleMissed > maxBottleMissed {
		t.Errorf("t9k misses the optimal bottleneck in %d cases, at most %d expected", st.bottleMissed, maxBottleMissed)
	}
	// And t9k's set is above go-gpuallocator's more often than below, by a wide margin.
	if st.better < 4*st.worse {
		t.Errorf("t9k above go-gpuallocator in %d cases, below in %d: expected at least 4 to 1", st.better, st.worse)
	}
}

// maxLinks is the NVLinks one GPU has at most (H100, B200: 18).
const maxLinks = 18

// physical trims a random machine to what hardware can be: at most maxLinks NVLinks per GPU,
// bridges first (in pair order, both ends alike), then NVSwitch links. NVML reports at most 36
// links per GPU, and go-gpuallocator panics when the two ends of a pair disagree, as they would if
// one end's links ran past that.
func physical(s topology.GPUTopologySpec) topology.GPUTopologySpec {
	used := make([]int, len(s.GPUs))
	for i := range s.GPUs {
		for j := i + 1; j < len(s.GPUs); j++ {
			l := max(s.GPUs[i].NVLinks[j], s.GPUs[j].NVLinks[i])
			l = min(l, maxLinks-used[i], maxLinks-used[j])
			delete(s.GPUs[i].NVLinks, j)
			delete(s.GPUs[j].NVLinks, i)
			if l > 0 {
				s.GPUs[i].NVLinks[j], s.GPUs[j].NVLinks[i] = l, l
				used[i] += l
				used[j] += l
			}
		}
	}
	for i := range s.GPUs {
		s.GPUs[i].NVSwitchLinks = min(s.GPUs[i].NVSwitchLinks, maxLinks-used[i])
	}
	return s
}
