package topology

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/durationkeeper"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
	"github.com/tensorstack/t9k/pkg/topology"
)

// Reservations: a gang (or a large pod) that has waited longer than its threshold while it could
// not be placed gets the GPUs of the domain where it fits soonest (pkg/topology Reserve). From then
// on pods of equal or lower rank (queue priority, then priority) may not take the GPUs it needs
// there, so they drain to it; the gang is planned only on those nodes and binds whole there. A
// pod whose run time is bounded (Queue maxDuration, activeDeadlineSeconds, or the
// expected-runtime annotation) may still use them when it will end before the last pod the
// reservation waits for (backfill). The reservation is kept in the PodGroup's status, so a
// restarted scheduler keeps it.

// Annotations that override the reservation threshold (on the PodGroup, else on its Queue), and
// declare a pod's expected run time for backfill.
const (
	AnnotationReserveAfter    = "scheduler.tensorstack.dev/reserve-after-seconds"
	AnnotationExpectedRuntime = "scheduler.tensorstack.dev/expected-runtime"
)

type rank struct{ queue, prio int32 }

func (a rank) above(b rank) bool { return a.queue > b.queue || a.queue == b.queue && a.prio > b.prio }

type reservation struct {
	key    groupstate.GroupKey
	queue  string
	rank   rank
	domain string
	need   map[string]int
	since  time.Time
	// created is when the gang was created (the reserved gangs' wait metric).
	created time.Time
}

func (r *reservation) describeDomain() string {
	if r.domain == "" {
		return "the cluster"
	}
	return r.domain
}

type reservations struct {
	mu     sync.RWMutex
	byGang map[groupstate.GroupKey]*reservation
	byNode map[string][]*reservation
}

func newReservations() *reservations {
	return &reservations{byGang: map[groupstate.GroupKey]*reservation{}, byNode: map[string][]*reservation{}}
}

func (rs *reservations) get(k groupstate.GroupKey) *reservation {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	return rs.byGang[k]
}

func (rs *reservations) add(r *reservation) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.byGang[r.key] = r
	for n := range r.need {
		rs.byNode[n] = append(rs.byNode[n], r)
	}
}

func (rs *reservations) remove(k groupstate.GroupKey) *reservation {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.byGang[k]
	if r == nil {
		return nil
	}
	delete(rs.byGang, k)
	for n := range r.need {
		list := rs.byNode[n]
		for i, x := range list {
			if x == r {
				list = append(list[:i], list[i+1:]...)
				break
			}
		}
		if len(list) == 0 {
			delete(rs.byNode, n)
		} else {
			rs.byNode[n] = list
		}
	}
	return r
}

func (rs *reservations) onNode(n string) []*reservation {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	return rs.byNode[n]
}

func (rs *reservations) inQueue(q string) int {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	n := 0
	for _, r := range rs.byGang {
		if r.queue == q {
			n++
		}
	}
	return n
}

func (rs *reservations) all() []*reservation {
	rs.mu.RLock()
	defer rs.mu.RUnlock()
	out := make([]*reservation, 0, len(rs.byGang))
	for _, r := range rs.byGang {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].key.String() < out[j].key.String() })
	return out
}

// rankOf is the pod's rank as QueueSort sees it.
func (p *Topology) rankOf(pod *v1.Pod) rank {
	si := p.groups.SortInfo(pod, time.Time{})
	return rank{si.QueuePriority, si.Priority}
}

// reserveAfter is how long the gang may wait before it gets a reservation: the PodGroup's
// annotation, else its Queue's, else the plugin's args; false when reservations are off for it.
func (p *Topology) reserveAfter(g *groupstate.Gang) (time.Duration, bool) {
	secs := p.args.ReserveAfterSeconds
	if q := p.groups.Queue(g.Queue); q != nil {
		if v, ok := q.Queue.Annotations[AnnotationReserveAfter]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				secs = n
			}
		}
	}
	if g.PodGroup != nil {
		if v, ok := g.PodGroup.Annotations[AnnotationReserveAfter]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				secs = n
			}
		}
	}
	return time.Duration(secs) * time.Second, secs > 0
}

// dueReservation says whether the gang has waited past its threshold and its queue may hold one
// more reservation (cheap: checked before anything is computed for it).
func (p *Topology) dueReservation(g *groupstate.Gang) bool {
	after, on := p.reserveAfter(g)
	if !on || g.Created.IsZero() || time.Since(g.Created) < after {
		return false
	}
	return p.res.inQueue(g.Queue) < int(p.args.MaxReservationsPerQueue)
}

// maybeReserve makes a reservation for a gang that could not be planned, if it has waited long
// enough and its queue has room for one more. It returns the gang's reservation, if any.
func (p *Topology) maybeReserve(ctx context.Context, g *groupstate.Gang, tg topology.Gang) *reservation {
	if r := p.res.get(g.Key); r != nil {
		return r
	}
	if !p.dueReservation(g) {
		return nil
	}
	plan, err := p.cache.reservation(tg)
	if err != nil {
		klog.FromContext(ctx).V(3).Info("No reservation possible", "gang", g.Key, "reason", err.Error())
		return nil
	}
	r := &reservation{key: g.Key, queue: g.Queue, rank: rank{p.queuePriority(g.Queue), g.Priority},
		domain: plan.Domain.Name, need: plan.Need, since: time.Now(), created: g.Created}
	p.res.add(r)
	reservationsActive.Inc()
	p.groups.Event(g.Key, v1.EventTypeNormal, schedv1beta1.ReasonReservationHeld,
		fmt.Sprintf("waited %s: reserved %s (%d nodes, %d GPUs; %d in use now) for the gang; pods of equal or lower priority no longer take them",
			time.Since(g.Created).Round(time.Second), r.describeDomain(), len(r.need), sumNeed(r.need), plan.Waiting))
	p.persist(r)
	klog.FromContext(ctx).V(2).Info("Reserved GPUs for a waiting gang", "gang", g.Key, "domain", r.domain, "nodes", len(r.need))
	return r
}

func (p *Topology) queuePriority(q string) int32 {
	if qi := p.groups.Queue(q); qi != nil {
		return qi.Queue.Spec.Priority
	}
	return 0
}

func sumNeed(need map[string]int) int {
	n := 0
	for _, v := range need {
		n += v
	}
	return n
}

// persist writes the reservation into the PodGroup's status and the Reserved condition.
func (p *Topology) persist(r *reservation) {
	if r.key.Pod {
		return
	}
	nodes := make([]schedv1beta1.ReservedNode, 0, len(r.need))
	for _, n := range sortedNodes(r.need) {
		nodes = append(nodes, schedv1beta1.ReservedNode{Name: n, GPUs: int32(r.need[n])})
	}
	p.groups.SetReservation(r.key, &schedv1beta1.PodGroupReservation{Domain: r.domain, Nodes: nodes, Since: metav1.NewTime(r.since)})
	p.groups.SetCondition(r.key, schedv1beta1.PodGroupConditionReserved, metav1.ConditionTrue, schedv1beta1.ReasonReservationHeld, p.waitingFor(r))
}

func sortedNodes(need map[string]int) []string {
	out := make([]string, 0, len(need))
	for n := range need {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// waitingFor says what the reservation waits for: "reserved block=b1 (4 nodes): waiting for 11 of
// 32 GPUs, held by 7 pods".
func (p *Topology) waitingFor(r *reservation) string {
	busy, pods := 0, map[string]bool{}
	for n, want := range r.need {
		free, ok := p.cache.freeOn(n)
		if !ok {
			busy += want
			continue
		}
		if free < want {
			busy += want - free
			for _, pod := range p.cache.podsOnNode(n) {
				if !p.inGang(pod, r.key) {
					pods[string(pod.UID)] = true
				}
			}
		}
	}
	return fmt.Sprintf("reserved %s (%d nodes): waiting for %d of %d GPUs, held by %d pods",
		r.describeDomain(), len(r.need), busy, sumNeed(r.need), len(pods))
}

func (p *Topology) inGang(pod *v1.Pod, k groupstate.GroupKey) bool {
	pk, ok := groupstate.KeyOf(pod)
	return ok && pk == k
}

// release drops a reservation and says why.
func (p *Topology) release(k groupstate.GroupKey, why string) {
	r := p.res.remove(k)
	if r == nil {
		return
	}
	reservationsActive.Dec()
	p.groups.SetReservation(k, nil)
	msg := fmt.Sprintf("released the reservation of %s: %s", r.describeDomain(), why)
	p.groups.SetCondition(k, schedv1beta1.PodGroupConditionReserved, metav1.ConditionFalse, schedv1beta1.ReasonReservationReleased, msg)
	p.groups.Event(k, v1.EventTypeNormal, schedv1beta1.ReasonReservationReleased, msg)
}

// blockedByReservation says why a pod may not take gpus GPUs on node (free of them free now):
// the node's GPUs are reserved for a gang of equal or higher rank that the pod is not part of,
// the rest of the node has no room for it, and it cannot backfill. "" when it may.
func (p *Topology) blockedByReservation(pod *v1.Pod, node string, gpus, free int) string {
	rs := p.res.onNode(node)
	if len(rs) == 0 {
		return ""
	}
	key, inGroup := groupstate.KeyOf(pod)
	pr := p.rankOf(pod)
	for _, r := range rs {
		if inGroup && key == r.key || pr.above(r.rank) {
			continue
		}
		if free-gpus >= r.need[node] {
			continue // room beside what the gang will take
		}
		if p.backfills(pod, r) {
			continue
		}
		return fmt.Sprintf("node's GPUs are reserved for gang %s (waiting since %s)", r.key, r.since.Format(time.TimeOnly))
	}
	return ""
}

// backfills says whether the pod, started now, is bound to end before the reservation could be
// satisfied anyway: before the last pod on its nodes with a known end. Pods without a known end
// could end at any moment, so they give no slack; with none known there is no backfill.
func (p *Topology) backfills(pod *v1.Pod, r *reservation) bool {
	end, ok := p.endOf(pod, time.Now())
	if !ok {
		return false
	}
	var ready time.Time
	for n := range r.need {
		for _, q := range p.cache.podsOnNode(n) {
			if p.inGang(q, r.key) {
				continue
			}
			start := q.CreationTimestamp.Time
			if q.Status.StartTime != nil {
				start = q.Status.StartTime.Time
			}
			if e, ok := p.endOf(q, start); ok && e.After(ready) {
				ready = e
			}
		}
	}
	return !ready.IsZero() && !end.After(ready)
}

// endOf is when the pod will be gone at the latest, if its run time is bounded: its Queue's
// maxDuration (counted from creation, as the Duration Keeper does), activeDeadlineSeconds or the
// expected-runtime annotation (counted from start).
func (p *Topology) endOf(pod *v1.Pod, start time.Time) (time.Time, bool) {
	var end time.Time
	take := func(t time.Time) {
		if end.IsZero() || t.Before(end) {
			end = t
		}
	}
	if s := pod.Spec.ActiveDeadlineSeconds; s != nil && *s > 0 {
		take(start.Add(time.Duration(*s) * time.Second))
	}
	if v := pod.Annotations[AnnotationExpectedRuntime]; v != "" {
		if d, err := time.ParseDuration(v); err == nil && d > 0 {
			take(start.Add(d))
		}
	}
	if q := p.groups.Queue(p.groups.QueueOf(pod)); q != nil {
		if d, err := durationkeeper.ParseMaxDuration(q.Queue.Spec.MaxDuration); err == nil && d > 0 {
			take(pod.CreationTimestamp.Time.Add(d))
		}
	}
	return end, !end.IsZero()
}

// excludeReserved wraps a planning exclusion: a gang of equal or lower rank than a reservation is
// not planned onto its nodes; the reserved gang itself only onto them.
func (p *Topology) excludeReserved(g *groupstate.Gang, own *reservation, base func(string) bool) func(string) bool {
	gr := rank{p.queuePriority(g.Queue), g.Priority}
	return func(n string) bool {
		if base != nil && base(n) {
			return true
		}
		if own != nil {
			_, ok := own.need[n]
			return !ok
		}
		for _, r := range p.res.onNode(n) {
			if r.key != g.Key && !gr.above(r.rank) {
				return true
			}
		}
		return false
	}
}

// tendReservations runs every second: drops reservations whose gang is gone or placed, keeps their
// Reserved condition current, and counts GPU-seconds left idle by draining.
func (p *Topology) tendReservations(ctx context.Context) {
	// Until the informers have synced, a gang restored from PodGroup status shows no members and
	// its nodes seem gone: tending then would drop the reservations a restarted scheduler keeps.
	if !toolscache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return
	}
	wait.UntilWithContext(ctx, p.tendReservationsOnce, time.Second)
	// This scheduler stops (the gauge outlives it in this process): its reservations live on in
	// PodGroup status for the next one.
	reservationsActive.Add(-float64(len(p.res.all())))
}

func (p *Topology) tendReservationsOnce(context.Context) {
	for _, r := range p.res.all() {
		g := p.groups.GangByKey(r.key)
		switch {
		case !r.key.Pod && g.PodGroup == nil, len(g.Members) == 0:
			p.release(r.key, "the gang is gone")
			continue
		case g.ShortOfQuorum() == "" && !g.Waiting():
			reservedGangWait.Observe(time.Since(r.created).Seconds())
			p.release(r.key, "the gang is placed")
			continue
		case p.nodeGone(r):
			// It can never be satisfied there; the gang's next failure reserves afresh.
			p.release(r.key, "a reserved node is gone")
			continue
		}
		idle := 0
		for n, want := range r.need {
			if free, ok := p.cache.freeOn(n); ok {
				idle += min(free, want)
			}
		}
		reservationIdleGPUSeconds.Add(float64(idle))
		p.groups.SetCondition(r.key, schedv1beta1.PodGroupConditionReserved, metav1.ConditionTrue, schedv1beta1.ReasonReservationHeld, p.waitingFor(r))
	}
}

// nodeGone says whether a node of the reservation left the cluster.
func (p *Topology) nodeGone(r *reservation) bool {
	for n := range r.need {
		if _, ok := p.cache.freeOn(n); !ok {
			return true
		}
	}
	return false
}

// restoreReservations rebuilds the reservations kept in PodGroup status (a restarted scheduler).
func (p *Topology) restoreReservations() {
	for _, pg := range p.groups.PodGroups() {
		rv := pg.Status.Reservation
		if rv == nil || len(rv.Nodes) == 0 {
			continue
		}
		key := groupstate.GroupKey{Namespace: pg.Namespace, Name: pg.Name}
		if p.res.get(key) != nil {
			continue
		}
		need := map[string]int{}
		for _, n := range rv.Nodes {
			need[n.Name] = int(n.GPUs)
		}
		queue := pg.Spec.Queue
		if queue == "" {
			queue = schedv1beta1.DefaultQueue
		}
		p.res.add(&reservation{key: key, queue: queue, rank: rank{p.queuePriority(queue), pg.Spec.Priority},
			domain: rv.Domain, need: need, since: rv.Since.Time, created: pg.CreationTimestamp.Time})
		reservationsActive.Inc()
	}
}

// reservationSummary is for logs and tests: "ns/g@block=b1[n1:8 n2:8]".
func (r *reservation) String() string {
	var parts []string
	for _, n := range sortedNodes(r.need) {
		parts = append(parts, fmt.Sprintf("%s:%d", n, r.need[n]))
	}
	return fmt.Sprintf("%s@%s[%s]", r.key, r.describeDomain(), strings.Join(parts, " "))
}
