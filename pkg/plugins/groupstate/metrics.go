package groupstate

import (
	"sync"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Metric names, exposed on the scheduler's /metrics next to kube-scheduler's own.
const (
	// MetricNodeResourceRequests is T9k's documented gauge: what non-terminal pods request per node.
	MetricNodeResourceRequests = "T9kScheduler_node_resource_requests"
	metricsSubsystem           = "t9k_scheduler"
)

var (
	// GangTimeToQuorum observes, per gang scheduled, the seconds from its first member's creation
	// to the bind that completed its quorum.
	GangTimeToQuorum = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "gang_time_to_quorum_seconds",
		Help:           "Seconds from a gang's first member created to minMember members bound.",
		Buckets:        metrics.ExponentialBuckets(0.05, 2, 16),
		StabilityLevel: metrics.ALPHA,
	})
	// GangFailedAttempts observes, per gang scheduled, how many of its members' scheduling cycles
	// failed before its quorum bound (0: placed at the first try).
	GangFailedAttempts = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      metricsSubsystem,
		Name:           "gang_failed_attempts",
		Help:           "Failed scheduling cycles of a gang's members before its quorum bound.",
		Buckets:        []float64{0, 1, 2, 4, 8, 16, 32, 64, 128, 256},
		StabilityLevel: metrics.ALPHA,
	})
	// Preemptions counts evicted pods by reason.
	Preemptions = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "preemption_victims_total",
		Help:           "Pods evicted to make room for a pending gang, by reason.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"reason"})
	// PermitTimeouts counts gangs released because their quorum was not placed in time.
	PermitTimeouts = metrics.NewCounter(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "gang_permit_timeouts_total",
		Help:           "Gangs whose placed members were all released because the quorum was not placed within the schedule timeout.",
		StabilityLevel: metrics.ALPHA,
	})

	// SweepReleased counts held members the periodic sweep (ReleaseHeld) let go: each was waiting
	// behind a gate that had opened without the event that should have let it go reaching it.
	// Expected to stay 0; a rising count means missed events, each costing up to heldSweep.
	SweepReleased = metrics.NewCounter(&metrics.CounterOpts{
		Subsystem:      metricsSubsystem,
		Name:           "gate_sweep_released_total",
		Help:           "Gang members held at PreEnqueue that the periodic sweep let go after their gate had opened with no event releasing them (expected 0).",
		StabilityLevel: metrics.ALPHA,
	})

	nodeRequestsDesc = metrics.NewDesc(MetricNodeResourceRequests,
		"Resources requested by non-terminal pods on a node.", []string{"node", "resource", "unit"}, nil, metrics.ALPHA, "")
	pendingGangsDesc = metrics.NewDesc(metricsSubsystem+"_pending_gangs",
		"PodGroups with members waiting to be scheduled and fewer than minMember placed, per queue.", []string{"queue"}, nil, metrics.ALPHA, "")
	queueAllocatedDesc = metrics.NewDesc(metricsSubsystem+"_queue_allocated",
		"Requests of a queue's bound or reserved pods.", []string{"queue", "resource", "unit"}, nil, metrics.ALPHA, "")
	queueQuotaDesc = metrics.NewDesc(metricsSubsystem+"_queue_quota",
		"A queue's quota.requests.", []string{"queue", "resource", "unit"}, nil, metrics.ALPHA, "")

	registerOnce sync.Once
	live         = &liveStates{states: map[*State]bool{}}
)

// liveStates are the States of running schedulers in this process (tests start several in turn).
type liveStates struct {
	metrics.BaseStableCollector
	mu     sync.Mutex
	states map[*State]bool
}

func registerMetrics(s *State) func() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(GangTimeToQuorum, GangFailedAttempts, Preemptions, PermitTimeouts, SweepReleased)
		legacyregistry.CustomMustRegister(live)
	})
	live.mu.Lock()
	live.states[s] = true
	live.mu.Unlock()
	return func() {
		live.mu.Lock()
		delete(live.states, s)
		live.mu.Unlock()
	}
}

func (l *liveStates) DescribeWithStability(ch chan<- *metrics.Desc) {
	ch <- nodeRequestsDesc
	ch <- pendingGangsDesc
	ch <- queueAllocatedDesc
	ch <- queueQuotaDesc
}

func (l *liveStates) CollectWithStability(ch chan<- metrics.Metric) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for s := range l.states {
		s.collect(ch)
	}
}

// unit is the documented unit label: core, byte, or integer.
func unit(name v1.ResourceName) (string, float64) {
	switch name {
	case v1.ResourceCPU:
		return "core", 1000
	case v1.ResourceMemory, v1.ResourceEphemeralStorage:
		return "byte", 1
	}
	return "integer", 1
}

func emit(ch chan<- metrics.Metric, desc *metrics.Desc, r Res, lv ...string) {
	for name, v := range r {
		u, div := unit(name)
		ch <- metrics.NewLazyConstMetric(desc, metrics.GaugeValue, float64(v)/div, append(lv, string(name), u)...)
	}
}

func (s *State) collect(ch chan<- metrics.Metric) {
	if s.podLister != nil {
		// Every pod counts here, not only t9k's: the gauge describes the node.
		pods, _ := s.podLister.List(labels.Everything())
		perNode := map[string]Res{}
		for _, p := range pods {
			if p.Spec.NodeName == "" || terminal(p) {
				continue
			}
			r := perNode[p.Spec.NodeName]
			if r == nil {
				r = Res{}
				perNode[p.Spec.NodeName] = r
			}
			r.Add(PodRequests(p))
		}
		for node, r := range perNode {
			emit(ch, nodeRequestsDesc, r, node)
		}
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	for q, r := range s.usage {
		emit(ch, queueAllocatedDesc, r, q)
	}
	for k, q := range s.queues {
		if k.ns == s.queueNS {
			emit(ch, queueQuotaDesc, ToRes(q.Queue.Spec.QuotaRequests()), q.Queue.Name)
		}
	}
	pending := map[string]int{}
	for k := range s.groups {
		if k.Pod {
			continue
		}
		g := s.gangLocked(k)
		if g.PodGroup != nil && g.ShortOfQuorum() != "" && g.count(func(m *Member) bool { return !m.Assigned() }) > 0 {
			pending[g.Queue]++
		}
	}
	for q, n := range pending {
		ch <- metrics.NewLazyConstMetric(pendingGangsDesc, metrics.GaugeValue, float64(n), q)
	}
}
