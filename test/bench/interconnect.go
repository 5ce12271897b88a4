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
			m = &machine{fixture: nd.Status.Fixture, topo: topo, alloc: alloc, pos: map[int32]int{}}
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
// count: 2 or more GPUs, fewer than the node has. Scores are go-gpuallocator's own pair score
// (Σ pairs 100·NVLinks + PCIe points, true NVLink counts).
type Interconnect struct {
	Pods     int     `json:"pods"`
	Score    float64 `json:"meanScore"`         // mean score of the sets pods got
	Baseline float64 `json:"meanBaselineScore"` // mean score of go-gpuallocator's sets
	Better   int     `json:"better"`            // pods whose set scores above go-gpuallocator's
	Worse    int     `json:"worse"`
	// NVLinked counts pods whose GPUs are joined pairwise by NVLink (bridge or NVSwitch): where
	// the pod landed matters as much as which GPUs of the node it got.
	NVLinked int `json:"nvlinked"`
	// Chooser says who picked the sets: the scheduler (pod annotation) or, for schedulers that
	// pick none, the device plugin (go-gpuallocator itself).
	Chooser string `json:"chooser"`
	// Conflicts counts GPUs given to a pod while another live pod held them (must be 0).
	Conflicts int `json:"conflicts"`
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
			for _, r := range refs {
				if p, ok := m.pos[r.Index]; ok && err == nil {
					got = append(got, p)
				}
			}
			sort.Ints(got)
		} else if ic.Chooser == "" {
			ic.Chooser = "device plugin"
		}
		var mask uint64
		for _, g := range got {
			mask |= 1 << uint(g)
		}
		ic.Conflicts += bits.OnesCount64(mask &^ f)
		if n := e.gpus; n >= 2 && n < m.topo.NumGPUs() && len(theirs) == n && len(got) == n {
			so, st := baseline.Score(m.topo, got), baseline.Score(m.topo, theirs)
			ic.Pods++
			if allNVLinked(m.topo, got) {
				ic.NVLinked++
			}
			sum += float64(so)
			sumBase += float64(st)
			switch {
			case so > st:
				ic.Better++
			case so < st:
				ic.Worse++
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
