package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/localcluster"
)

// chartStep is the resolution of Run.BoundOverTime in seconds.
const chartStep = 0.1

// recorder notes when each pod was created (by us) and first seen bound (by the informer), as
// upstream scheduler_perf counts scheduled pods.
type recorder struct {
	mu      sync.Mutex
	created map[string]time.Time
	jobOf   map[string]string
	gpusOf  map[string]int
	bound   map[string]time.Time
	nodeOf  map[string]string
	annot   map[string]string // device.tensorstack.dev/gpus when first seen bound
	deleted map[string]time.Time
	// pending holds the scheduler's last PodScheduled=False message of each unbound pod.
	pending  map[string]string
	lastBind time.Time
	changed  chan struct{}
}

func newRecorder() *recorder {
	return &recorder{created: map[string]time.Time{}, jobOf: map[string]string{}, gpusOf: map[string]int{},
		bound: map[string]time.Time{}, nodeOf: map[string]string{}, annot: map[string]string{},
		deleted: map[string]time.Time{}, pending: map[string]string{}, changed: make(chan struct{}, 1)}
}

func (r *recorder) noteCreated(pod, job string, gpus int, t time.Time) {
	r.mu.Lock()
	r.created[pod], r.jobOf[pod], r.gpusOf[pod] = t, job, gpus
	r.mu.Unlock()
}

// noteDeleted is called before the delete request is sent.
func (r *recorder) noteDeleted(pod string, t time.Time) {
	r.mu.Lock()
	r.deleted[pod] = t
	r.mu.Unlock()
}

func (r *recorder) observe(p *corev1.Pod) {
	if p.Spec.NodeName == "" {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse {
				r.mu.Lock()
				r.pending[p.Name] = c.Message
				r.mu.Unlock()
			}
		}
		return
	}
	now := time.Now()
	r.mu.Lock()
	if _, ours := r.jobOf[p.Name]; !ours {
		r.mu.Unlock()
		return // e.g. the readiness probe pod, if the informer still lists it
	}
	if _, seen := r.bound[p.Name]; !seen {
		r.bound[p.Name], r.nodeOf[p.Name] = now, p.Spec.NodeName
		r.annot[p.Name] = p.Annotations[devicev1beta1.AnnotationGPUs]
		r.lastBind = now
	}
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// boundOfLocked counts the job's bound pods and returns when the last of them bound. The caller
// holds r.mu.
func (r *recorder) boundOfLocked(j Job) (n int, last time.Time) {
	for i := 0; i < j.Pods; i++ {
		if t, ok := r.bound[podName(j, i)]; ok {
			n++
			if t.After(last) {
				last = t
			}
		}
	}
	return n, last
}

func (r *recorder) boundCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.bound)
}

// waitAll waits until want pods are bound, or until none has bound for stall. It reports progress
// every 10s and returns whether everything bound.
func (r *recorder) waitAll(ctx context.Context, want int, stall time.Duration, progress func(int)) bool {
	last, lastN := time.Now(), -1
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		n := r.boundCount()
		if n >= want {
			return true
		}
		if n != lastN {
			last, lastN = time.Now(), n
		}
		if time.Since(last) > stall {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-r.changed:
		case <-tick.C:
			progress(n)
		case <-time.After(time.Second):
		}
	}
}

// waitQuiet waits until no pod has bound for quiet, counting from since at the earliest, and
// reports progress every 10s.
func (r *recorder) waitQuiet(ctx context.Context, since time.Time, quiet time.Duration, progress func(int)) {
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		r.mu.Lock()
		last, n := r.lastBind, len(r.bound)
		r.mu.Unlock()
		if since.After(last) {
			last = since
		}
		left := quiet - time.Since(last)
		if left <= 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			progress(n)
		case <-time.After(left):
		}
	}
}

// events lists every bind and deletion for the interconnect replay.
func (r *recorder) events() []podEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]podEvent, 0, len(r.bound)+len(r.deleted))
	for pod, t := range r.bound {
		out = append(out, podEvent{at: t, pod: pod, node: r.nodeOf[pod], gpus: r.gpusOf[pod], annot: r.annot[pod]})
	}
	for pod, t := range r.deleted {
		out = append(out, podEvent{at: t, pod: pod, deleted: true})
	}
	return out
}

// allocationOverTime is the percentage of the cluster's GPUs held by bound, undeleted pods every
// chartStep seconds from start.
func (r *recorder) allocationOverTime(start time.Time, totalGPUs int) []float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var end time.Time
	delta := map[int]int{}
	step := func(t time.Time) int { return int(t.Sub(start).Seconds() / chartStep) }
	for pod, t := range r.bound {
		delta[step(t)] += r.gpusOf[pod]
		if t.After(end) {
			end = t
		}
		if d, ok := r.deleted[pod]; ok {
			delta[step(d)] -= r.gpusOf[pod]
			if d.After(end) {
				end = d
			}
		}
	}
	out := make([]float64, step(end)+1)
	held := 0
	for i := range out {
		held += delta[i]
		out[i] = 100 * float64(held) / float64(totalGPUs)
	}
	return out
}

// summarise turns the timestamps into the run's figures.
func (r *recorder) summarise(start time.Time, jobs []Job, h *harness) *Run {
	r.mu.Lock()
	defer r.mu.Unlock()
	run := &Run{Bound: len(r.bound)}
	if len(r.bound) == 0 {
		return run
	}
	var firstBind, lastBind time.Time
	for _, t := range r.bound {
		if t.After(lastBind) {
			lastBind = t
		}
		if firstBind.IsZero() || t.Before(firstBind) {
			firstBind = t
		}
	}
	// A backlog (zero start) counts from its first bind; a pod created before it waited from there.
	backlog := start.IsZero()
	if backlog {
		start = firstBind
	}
	elapsed := lastBind.Sub(start).Seconds()
	run.Seconds = elapsed
	// One sample per whole second from the first pod's creation, as scheduler_perf samples
	// its throughput collector.
	buckets := make([]float64, int(math.Ceil(elapsed))+1)
	for _, t := range r.bound {
		buckets[int(t.Sub(start).Seconds())]++
	}
	run.PodsPerSecond = stats(buckets)
	run.PodsPerSecond.Avg = float64(len(r.bound)) / math.Max(elapsed, 1e-3)
	// Cumulative bound pods every chartStep seconds, for the chart.
	fine := make([]float64, int(math.Ceil(elapsed/chartStep))+1)
	for _, t := range r.bound {
		fine[int(t.Sub(start).Seconds()/chartStep)]++
	}
	cum := 0.0
	for _, b := range fine {
		cum += b
		run.BoundOverTime = append(run.BoundOverTime, cum)
	}

	// Per gang: first member created → last of minMember (= all members here) bound.
	type gang struct {
		first, quorum time.Time
		pods, bound   int
		nodes         []string
	}
	gangs := map[string]*gang{}
	for _, j := range jobs {
		if j.Pods > 1 {
			gangs[j.Name] = &gang{pods: j.Pods}
		}
	}
	for pod, job := range r.jobOf {
		g := gangs[job]
		if g == nil {
			continue
		}
		c := r.created[pod]
		if backlog && c.Before(start) {
			c = start
		}
		if g.first.IsZero() || c.Before(g.first) {
			g.first = c
		}
		if b, ok := r.bound[pod]; ok {
			g.bound++
			g.nodes = append(g.nodes, r.nodeOf[pod])
			if b.After(g.quorum) {
				g.quorum = b
			}
		}
	}
	var ttq []float64
	var spanned, inSmallest, complete float64
	var outside []string // a few examples for the log
	for _, j := range jobs {
		g := gangs[j.Name]
		if g == nil {
			continue
		}
		if g.bound == g.pods {
			complete++
			ttq = append(ttq, g.quorum.Sub(g.first).Seconds())
			nodes, blocks, spines := map[string]bool{}, map[string]bool{}, map[string]bool{}
			for _, n := range g.nodes {
				nodes[n] = true
				blocks[h.nodeLabels[n][localcluster.LabelBlock]] = true
				spines[h.nodeLabels[n][localcluster.LabelSpine]] = true
			}
			spanned += float64(len(blocks))
			if inSmallestDomain(j.Pods*j.GPUs, len(nodes), len(blocks), len(spines), h) {
				inSmallest++
			} else if len(outside) < 3 {
				outside = append(outside, fmt.Sprintf("%s (%d × %d GPUs) spans %d nodes, %d blocks, %d spines", j.Name, j.Pods, j.GPUs, len(nodes), len(blocks), len(spines)))
			}
		}
	}
	run.Gangs = len(gangs)
	if len(outside) > 0 {
		h.logf("%.0f of %.0f complete gangs outside their smallest domain, e.g. %s", complete-inSmallest, complete, strings.Join(outside, "; "))
	}
	if complete > 0 {
		run.GangTimeToQuorum = stats(ttq)
		run.MeanBlocksPerGang = spanned / complete
		run.GangsInSmallestDomain = inSmallest / complete
	}
	gpus := 0
	for _, j := range jobs {
		for i := 0; i < j.Pods; i++ {
			gpus += j.GPUs
		}
	}
	run.GPUAllocation = float64(gpus) / float64(h.totalGPUs)
	if run.Bound < len(r.created) {
		run.GPUAllocation = math.NaN() // not all bound: the share requested is not what was allocated
	}
	return run
}

// inSmallestDomain reports whether a gang sits in one domain of the smallest level that could hold
// it on an empty cluster: one node if it fits on one, else one block, else one spine.
func inSmallestDomain(needGPUs, nodes, blocks, spines int, h *harness) bool {
	switch {
	case needGPUs <= h.gpusPerNode:
		return nodes == 1
	case needGPUs <= h.gpusPerNode*h.nodesPerBlock:
		return blocks == 1
	case needGPUs <= h.gpusPerNode*h.nodesPerBlock*h.blocksPerSpine:
		return spines == 1
	}
	return true
}

// stats summarises samples: mean and p50/p90/p99.
func stats(samples []float64) Stats {
	if len(samples) == 0 {
		return Stats{}
	}
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	sum := 0.0
	for _, v := range s {
		sum += v
	}
	q := func(p float64) float64 {
		if len(s) < minPercentileSamples {
			return math.NaN()
		}
		return s[int(math.Min(float64(len(s)-1), math.Floor(p*float64(len(s)))))]
	}
	return Stats{N: len(s), Avg: sum / float64(len(s)), P50: q(0.5), P90: q(0.9), P99: q(0.99)}
}
