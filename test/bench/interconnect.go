package main

import (
	"context"
	"fmt"
	"math/bits"
	"sort"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device/topospec"
	"github.com/tensorstack/t9k/pkg/topology"
	"github.com/tensorstack/t9k/pkg/topology/baseline"
)

// machine is one node's GPUs as pkg/topology and go-gpuallocator see them, built from the
// NodeDevices the node published. Nodes of one fixture share one machine.
type machine struct {
	fixture string
	spec    topology.GPUTopologySpec
	topo    *topology.GPUTopology
	alloc   *baseline.Allocator
	pos     map[int32]int // NVML index → position in topo
}

// loadMachines reads every node's NodeDevices back from the apiserver.
func (h *harness) loadMachines(ctx context.Context, c client.Client) error {
	var list devicev1beta1.NodeDevicesList
	if err := c.List(ctx, &list); err != nil {
		return err
	}
	byFixture := map[string]*machine{}
	h.machines = map[string]*machine{}
	for i := range list.Items {
		nd := &list.Items[i]
		m := byFixture[nd.Status.Fixture]
		if m == nil {
			spec := topospec.FromInventory(nd.Status.GPUs, nd.Status.NICs)
			topo, err := topology.NewGPUTopology(spec)
			if err != nil {
				return fmt.Errorf("NodeDevices %s: %w", nd.Name, err)
			}
			alloc, err := baseline.New(spec)
			if err != nil {
				return fmt.Errorf("NodeDevices %s: %w", nd.Name, err)
			}
			m = &machine{fixture: nd.Status.Fixture, spec: spec, topo: topo, alloc: alloc, pos: map[int32]int{}}
			for p, g := range nd.Status.GPUs {
				m.pos[g.Index] = p
			}
			byFixture[nd.Status.Fixture] = m
		}
		h.machines[nd.Name] = m
	}
	if len(h.machines) != len(h.nodeNames) {
		return fmt.Errorf("NodeDevices for %d of %d nodes", len(h.machines), len(h.nodeNames))
	}
	return nil
}

// Interconnect compares the GPU sets pods got with what go-gpuallocator (the NVIDIA device
// plugin's preferred allocation) would take from the same free GPUs. Only pods with a real choice
// count: 2 or more GPUs, fewer than the node has. Sets are scored by an independent yardstick,
// baseline.RingBandwidth: the bottleneck bandwidth (GB/s) of the best ring over the set, read
// from the machine's raw topology (NVLink counts, PCIe paths) and used by neither chooser.
type Interconnect struct {
	Pods     int     `json:"pods"`
	Score    float64 `json:"meanRingGBps"`         // mean ring bottleneck of the sets pods got
	Baseline float64 `json:"meanBaselineRingGBps"` // mean ring bottleneck of go-gpuallocator's sets
	Better   int     `json:"better"`               // pods whose set rings faster than go-gpuallocator's
	Worse    int     `json:"worse"`
	// NVLinked counts pods whose GPUs are joined pairwise by NVLink (bridge or NVSwitch): where
	// the pod landed matters as much as which GPUs of the node it got.
	NVLinked int `json:"nvlinked"`
	// Chooser says who picked the sets: the scheduler (pod annotation) or, for schedulers that
	// pick none, the device plugin (go-gpuallocator itself, so their sets equal the baseline).
	Chooser string `json:"chooser"`
	// Conflicts counts pods given the wrong number of GPUs (a short or malformed annotation, or
	// GPUs the node does not have) and GPUs handed to a pod while another live pod held them.
	// Must be 0.
	Conflicts int `json:"conflicts"`
	// BaselineShort counts choices where go-gpuallocator itself returned too few GPUs (a known
	// quirk of v0.6.0); those pods are left out of the comparison.
	BaselineShort int `json:"baselineShort,omitempty"`
}

// podEvent is a bind (gpus > 0) or a deletion of one pod, in the order the harness saw them.
type podEvent struct {
	at      time.Time
	pod     string
	node    string
	gpus    int
	annot   string // device.tensorstack.dev/gpus as bound
	deleted bool
}

// replayInterconnect walks binds and deletions in time order, keeping each node's free GPUs.
// A deletion is stamped before its request is sent, so a later bind that reuses its GPUs sorts
// after it; the replayed free set is never smaller than what the scheduler saw. It can be larger
// (GPUs of a pod whose deletion the scheduler had not yet seen), which can only favour
// go-gpuallocator; on equal free sets pkg/topology's tests show the chooser is never worse.
func (h *harness) replayInterconnect(events []podEvent) Interconnect {
	sort.SliceStable(events, func(i, j int) bool { return events[i].at.Before(events[j].at) })
	free := map[string]uint64{}
	held := map[string][]int{}
	nodeOf := map[string]string{}
	var ic Interconnect
	var sum, sumBase float64
	for _, e := range events {
		m := h.machines[e.node]
		if e.deleted {
			if n, ok := nodeOf[e.pod]; ok {
				for _, g := range held[e.pod] {
					free[n] |= 1 << uint(g)
				}
				delete(held, e.pod)
				delete(nodeOf, e.pod)
			}
			continue
		}
		if m == nil || e.gpus == 0 {
			continue
		}
		f, ok := free[e.node]
		if !ok {
			f = m.topo.AllGPUs()
		}
		theirs := m.alloc.Allocate(f, e.gpus)
		got := theirs
		if e.annot != "" {
			ic.Chooser = "scheduler"
			got = nil
			refs, err := devicev1beta1.ParseGPUAnnotation(e.annot)
			malformed := err != nil
			for _, r := range refs {
				if p, ok := m.pos[r.Index]; ok {
					got = append(got, p)
				} else {
					malformed = true
				}
			}
			sort.Ints(got)
			if malformed || len(got) != e.gpus || hasDuplicate(got) {
				ic.Conflicts++ // the wrong GPUs for this pod
			}
		} else if ic.Chooser == "" {
			ic.Chooser = "device plugin"
		}
		var mask uint64
		for _, g := range got {
			mask |= 1 << uint(g)
		}
		ic.Conflicts += bits.OnesCount64(mask &^ f) // GPUs another live pod holds
		if n := e.gpus; n >= 2 && n < m.topo.NumGPUs() && len(got) == n && !hasDuplicate(got) {
			if len(theirs) != n {
				ic.BaselineShort++
			} else {
				bo, to := baseline.RingBandwidth(m.spec, got)
				bt, tt := baseline.RingBandwidth(m.spec, theirs)
				ic.Pods++
				if allNVLinked(m.topo, got) {
					ic.NVLinked++
				}
				sum += bo
				sumBase += bt
				switch baseline.CompareRings(bo, to, bt, tt) {
				case 1:
					ic.Better++
				case -1:
					ic.Worse++
				}
			}
		}
		free[e.node] = f &^ mask
		held[e.pod], nodeOf[e.pod] = got, e.node
	}
	if ic.Pods > 0 {
		ic.Score, ic.Baseline = sum/float64(ic.Pods), sumBase/float64(ic.Pods)
	}
	return ic
}

func allNVLinked(t *topology.GPUTopology, set []int) bool {
	for a := 0; a < len(set); a++ {
		for b := a + 1; b < len(set); b++ {
			if t.NVLinks(set[a], set[b]) == 0 {
				return false
			}
		}
	}
	return true
}

func hasDuplicate(set []int) bool {
	for i := 1; i < len(set); i++ {
		if set[i] == set[i-1] {
			return true
		}
	}
	return false
}
