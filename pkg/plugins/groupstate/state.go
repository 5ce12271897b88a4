// Package groupstate is the state t9k's scheduler plugins share inside one scheduler profile: which
// pods form which gang (PodGroup, or a virtual group of one for a pod that only names a queue), the
// Queues, what each queue's assigned pods request, and which members this scheduler has reserved
// but not yet bound. The gang and queue plugins (pkg/plugins) read and update it; a topology plugin
// can read a gang's members, minMember and policy through Gang without knowing either plugin.
//
// Everything here is fed by informers (the scheduler's own pod informer, a controller-runtime cache
// for PodGroups and Queues) and by the plugins' Reserve/Unreserve/PostBind calls; nothing on the
// scheduling hot path talks to the apiserver.
package groupstate

import (
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	listersv1 "k8s.io/client-go/listers/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// DefaultQueueNamespace is where Queues live unless the queue plugin is told otherwise.
const DefaultQueueNamespace = "t9k-system"

// GroupKey names a gang: a PodGroup (Namespace/Name), or with Pod set the virtual group of one
// formed by a pod that names a queue but no group (Name is then the pod's name).
type GroupKey struct {
	Namespace, Name string
	Pod             bool
}

func (k GroupKey) String() string {
	if k.Pod {
		return k.Namespace + "/pod:" + k.Name
	}
	return k.Namespace + "/" + k.Name
}

type nsName struct{ ns, name string }

// QueueInfo is a Queue with its selectors compiled once per update.
type QueueInfo struct {
	Queue *v1beta1.Queue
	// NodeSelector is nil when the queue may use every node.
	NodeSelector labels.Selector
	// NamespaceSelector is nil when no namespace may use the queue (unset or empty selector).
	NamespaceSelector labels.Selector
	// SelectorError is set when a selector does not parse; the queue then admits nothing.
	SelectorError error
}

type podEntry struct {
	pod *v1.Pod
	key GroupKey
	req Res
	// reservedOn is the node this scheduler reserved the pod on, until the informer shows it bound.
	reservedOn string
	// counted is the queue whose usage includes this pod's requests ("" when none).
	counted string
}

func (e *podEntry) assigned() bool { return e.pod.Spec.NodeName != "" || e.reservedOn != "" }

type group struct {
	members map[types.UID]*podEntry
	// attemptStart is when the first member of the current placement attempt was reserved; zero
	// while no member waits in Permit. The whole attempt shares one deadline.
	attemptStart time.Time
	// backoffUntil keeps a gang whose attempt timed out from taking the room it just released
	// back before other gangs have had a chance at it.
	backoffUntil time.Time
	// quorumReported is set once the group's bound members reached quorum, so the metric and the
	// GroupScheduled condition are reported once per time the gang is scheduled.
	quorumReported bool
	// short are the resources the gang's last failed fit lacked; nil when unknown. A pod leaving
	// wakes the gang only when it held one of them.
	short []v1.ResourceName
	// lastFailed is when the group's last scheduling attempt failed (QueueSort's Since).
	lastFailed time.Time
	// failures counts the members' failed scheduling cycles since the gang was last scheduled
	// (GangFailedAttempts, observed when its quorum binds).
	failures int
	// fitFailure is the last whole-gang fit that failed, and on what state (see FitVersion).
	fitFailure    string
	fitFailedWith FitVersion
}

// State is shared by the t9k plugins of one scheduler profile. Its methods are safe for concurrent
// use.
type State struct {
	mu sync.RWMutex
	// planner is the resource whose gangs a topology planner in this profile places as a whole
	// (T9kTopology: GPUs); "" when none does.
	planner   v1.ResourceName
	queueNS   string
	groups    map[GroupKey]*group
	pods      map[types.UID]*podEntry
	podGroups map[nsName]*v1beta1.PodGroup
	queues    map[nsName]*QueueInfo
	usage     map[string]Res
	desired   map[GroupKey]*pgStatus

	now    func() time.Time
	status *statusWriter
	// activate moves pods back to the scheduler's active queue (framework.Handle.Activate): used
	// only for members PreEnqueue held, once their gate opens. Every other retry comes from a
	// queueing hint, which applies its event to this State first (hints.go).
	activate   func(map[string]*v1.Pod)
	toActivate map[string]*v1.Pod
	podLister  listersv1.PodLister
	// podsSynced: this State has been told of every pod the scheduler's informer listed at start.
	podsSynced func() bool
	// held are the members T9kGang's PreEnqueue turned away (too few members, no PodGroup), by
	// group: Activate is used only to let these through once their gate opens.
	held map[GroupKey]map[types.UID]*v1.Pod
	// sweeping: ReleaseHeld is running (set under mu), so what it lets go is counted as missed.
	sweeping bool
	// prios counts the pods holding a node by priority (priorities.go).
	prios *Priorities
}

// New returns an empty State; For wires one to a scheduler. Tests and benchmarks feed it through
// the Upsert*/Delete* methods the informers call.
func New() *State {
	return &State{
		queueNS:   DefaultQueueNamespace,
		groups:    map[GroupKey]*group{},
		pods:      map[types.UID]*podEntry{},
		podGroups: map[nsName]*v1beta1.PodGroup{},
		queues:    map[nsName]*QueueInfo{},
		usage:     map[string]Res{},
		desired:   map[GroupKey]*pgStatus{},
		held:      map[GroupKey]map[types.UID]*v1.Pod{},
		now:       time.Now,
		prios:     NewPriorities(),
	}
}

// Priorities is the count of pods holding a node by priority, fed by every pod event.
func (s *State) Priorities() *Priorities { return s.prios }

// SetQueueNamespace sets where Queues are looked up (the queue plugin's args).
func (s *State) SetQueueNamespace(ns string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueNS = ns
}

// KeyOf returns the gang a pod belongs to; false for a pod with neither a group nor a queue label.
func KeyOf(pod *v1.Pod) (GroupKey, bool) {
	if g := pod.Labels[v1beta1.LabelGroupName]; g != "" {
		return GroupKey{Namespace: pod.Namespace, Name: g}, true
	}
	if pod.Labels[v1beta1.LabelQueue] != "" {
		return GroupKey{Namespace: pod.Namespace, Name: pod.Name, Pod: true}, true
	}
	return GroupKey{}, false
}

func terminal(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
}

// UpsertPod records a pod add or update from the informer.
func (s *State) UpsertPod(pod *v1.Pod) { s.upsertPod(pod, false) }

// upsertPod is UpsertPod; fromHint: called inside a queueing hint (see unlockAndActivate).
func (s *State) upsertPod(pod *v1.Pod, fromHint bool) {
	s.prios.Observe(pod, false)
	key, ok := KeyOf(pod)
	if !ok {
		return
	}
	if terminal(pod) {
		s.deletePod(pod, fromHint)
		return
	}
	s.mu.Lock()
	defer s.unlockAndActivate(fromHint)
	e := s.pods[pod.UID]
	if e != nil && e.pod != nil && olderVersion(pod, e.pod) {
		// A hint replays the version an event carried, which the informer may already have
		// superseded (an unbound copy of a bound pod would uncount its queue's usage).
		return
	}
	if e != nil && e.key != key {
		// The pod's group (or queue) label changed: it leaves its old group and that queue's count.
		s.subUsageLocked(e)
		s.unholdLocked(e.key, pod.UID)
		if g := s.groups[e.key]; g != nil {
			delete(g.members, pod.UID)
			s.settleGroupLocked(e.key, g)
		}
		e.key = key
		s.groupLocked(key).members[pod.UID] = e
	}
	if e == nil {
		e = &podEntry{key: key}
		s.pods[pod.UID] = e
		s.groupLocked(key).members[pod.UID] = e
	}
	if e.pod == nil || e.pod.ResourceVersion != pod.ResourceVersion || e.req == nil {
		e.req = PodRequests(pod)
	}
	isNew := e.pod == nil
	e.pod = pod
	if pod.Spec.NodeName != "" {
		e.reservedOn = ""
	}
	s.recountLocked(e)
	if isNew || pod.Spec.NodeName == "" {
		// A member added (or its role label changed) may complete the group: members
		// PreEnqueue held may go. Not "count == minMember": a role completed by a pod beyond
		// minMember opens the gate too.
		s.releaseHeldLocked(key)
	}
}

// Hold records that PreEnqueue turned the pod away; Unhold that it let it through. PreEnqueue read
// the gang before this, so an event that opened the gate in between found the pod not yet held:
// the gate is checked again under the lock, and if it is open now the pod goes at once. The
// activation is asynchronous because PreEnqueue runs with the scheduling queue locked.
func (s *State) Hold(pod *v1.Pod) {
	key, ok := KeyOf(pod)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.unlockAndActivate(true)
	s.holdLocked(key, pod)
	s.releaseHeldLocked(key)
}

func (s *State) holdLocked(key GroupKey, pod *v1.Pod) {
	h := s.held[key]
	if h == nil {
		h = map[types.UID]*v1.Pod{}
		s.held[key] = h
	}
	h[pod.UID] = pod
}

// Unhold forgets a pod PreEnqueue let through (or that is gone).
func (s *State) Unhold(pod *v1.Pod) {
	key, ok := KeyOf(pod)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unholdLocked(key, pod.UID)
}

func (s *State) unholdLocked(key GroupKey, uid types.UID) {
	if h := s.held[key]; h != nil {
		delete(h, uid)
		if len(h) == 0 {
			delete(s.held, key)
		}
	}
}

// releaseHeldLocked queues for activation the held members of the group, if its gate is open now
// (its PodGroup exists, enough members, of every role, exist, and it is not backing off).
func (s *State) releaseHeldLocked(key GroupKey) {
	if len(s.held[key]) == 0 || s.activate == nil {
		return // nothing to let go: skip building the gang
	}
	g := s.gangLocked(key)
	if g.PodGroup == nil || g.ShortOfMembers() != "" {
		return
	}
	if gr := s.groups[key]; gr != nil && s.now().Before(gr.backoffUntil) {
		return // EndBackOff opens it
	}
	s.activateHeldLocked(key)
}

// activateHeldLocked lets every held member of the group go (unlockAndActivate activates them).
func (s *State) activateHeldLocked(key GroupKey) {
	h := s.held[key]
	if len(h) == 0 || s.activate == nil {
		return
	}
	if s.sweeping {
		SweepReleased.Add(float64(len(h)))
	} else if FaultMissGateEvents.Load() {
		return
	}
	if s.toActivate == nil {
		s.toActivate = map[string]*v1.Pod{}
	}
	for _, p := range h {
		s.toActivate[p.Namespace+"/"+p.Name] = p
	}
	delete(s.held, key)
}

// ReleaseHeld activates every held member whose gate is open now. The scheduler's periodic flush
// of unschedulable pods skips pods a PreEnqueue plugin holds (only the plugin's own events move
// them), so this is the backstop that lets such a pod go if an event that opened its gate was
// missed; the scheduler runs it periodically.
func (s *State) ReleaseHeld() {
	s.mu.Lock()
	defer s.unlockAndActivate(false)
	s.sweeping = true
	defer func() { s.sweeping = false }() // runs before the unlock (deferred later)
	for key := range s.held {
		s.releaseHeldLocked(key)
	}
}

// FaultMissGateEvents is for tests only: while set, no event opens a PreEnqueue gate (the State
// activates nothing but from ReleaseHeld, and T9kGang's hints answer QueueSkip), as if every such
// event were lost, so a test can show the sweep alone lets held members go.
var FaultMissGateEvents atomic.Bool

// unlockAndActivate releases the lock, then activates what releaseHeldLocked collected. Inside a
// queueing hint or PreEnqueue (fromHint) the activation goes to its own goroutine: the scheduler
// calls those with its scheduling queue locked, and Activate takes that lock.
func (s *State) unlockAndActivate(fromHint bool) {
	pods := s.toActivate
	s.toActivate = nil
	s.mu.Unlock()
	if len(pods) == 0 {
		return
	}
	if fromHint {
		go s.activate(pods)
		return
	}
	s.activate(pods)
}

// DeletePod records a pod deletion (or its move to a terminal phase).
func (s *State) DeletePod(pod *v1.Pod) { s.deletePod(pod, false) }

func (s *State) deletePod(pod *v1.Pod, fromHint bool) {
	s.prios.Observe(pod, true)
	s.mu.Lock()
	defer s.unlockAndActivate(fromHint)
	if key, ok := KeyOf(pod); ok {
		s.unholdLocked(key, pod.UID)
	}
	e := s.pods[pod.UID]
	if e == nil {
		return
	}
	s.subUsageLocked(e)
	delete(s.pods, pod.UID)
	if g := s.groups[e.key]; g != nil {
		delete(g.members, pod.UID)
		s.settleGroupLocked(e.key, g)
	}
}

// olderVersion says whether a is an older version of the same pod than b, by resourceVersion
// (etcd's revision, an integer; an unparsable one is taken as not older).
func olderVersion(a, b *v1.Pod) bool {
	if a.UID != b.UID || a.ResourceVersion == b.ResourceVersion {
		return false
	}
	ra, errA := strconv.ParseUint(a.ResourceVersion, 10, 64)
	rb, errB := strconv.ParseUint(b.ResourceVersion, 10, 64)
	return errA == nil && errB == nil && ra < rb
}

func (s *State) groupLocked(k GroupKey) *group {
	g := s.groups[k]
	if g == nil {
		g = &group{members: map[types.UID]*podEntry{}}
		s.groups[k] = g
	}
	return g
}

// settleGroupLocked drops empty groups and resets per-attempt bookkeeping when nothing is placed.
func (s *State) settleGroupLocked(k GroupKey, g *group) {
	if len(g.members) == 0 {
		delete(s.groups, k)
		return
	}
	assigned, reserved := 0, 0
	for _, m := range g.members {
		if m.assigned() {
			assigned++
		}
		if m.reservedOn != "" {
			reserved++
		}
	}
	if reserved == 0 {
		g.attemptStart = time.Time{}
	}
	if min := s.minMemberLocked(k); assigned < int(min) {
		g.quorumReported = false
	}
}

func (s *State) minMemberLocked(k GroupKey) int32 {
	if k.Pod {
		return 1
	}
	if pg := s.podGroups[nsName{k.Namespace, k.Name}]; pg != nil {
		return pg.Spec.MinMember
	}
	return 1
}

// queueOfLocked is the queue a member's requests count against: its PodGroup's spec.queue, else
// its own queue label.
func (s *State) queueOfLocked(e *podEntry) string {
	if !e.key.Pod {
		if pg := s.podGroups[nsName{e.key.Namespace, e.key.Name}]; pg != nil {
			if pg.Spec.Queue != "" {
				return pg.Spec.Queue
			}
			return v1beta1.DefaultQueue
		}
	}
	return e.pod.Labels[v1beta1.LabelQueue]
}

func (s *State) recountLocked(e *podEntry) {
	want := ""
	if e.assigned() && !terminal(e.pod) {
		want = s.queueOfLocked(e)
	}
	if want == e.counted {
		return
	}
	s.subUsageLocked(e)
	if want != "" {
		u := s.usage[want]
		if u == nil {
			u = Res{}
			s.usage[want] = u
		}
		u.Add(e.req)
		e.counted = want
	}
}

func (s *State) subUsageLocked(e *podEntry) {
	if e.counted == "" {
		return
	}
	if u := s.usage[e.counted]; u != nil {
		u.Sub(e.req)
		empty := true
		for _, v := range u {
			empty = empty && v == 0
		}
		if empty {
			delete(s.usage, e.counted) // a queue no pod counts against any more leaves no key
		}
	}
	e.counted = ""
}

// UpsertPodGroup records a PodGroup add or update.
func (s *State) UpsertPodGroup(pg *v1beta1.PodGroup) { s.upsertPodGroup(pg, false) }

func (s *State) upsertPodGroup(pg *v1beta1.PodGroup, fromHint bool) {
	s.mu.Lock()
	defer s.unlockAndActivate(fromHint)
	old := s.podGroups[nsName{pg.Namespace, pg.Name}]
	if old != nil && old.UID == pg.UID && pg.Generation < old.Generation {
		return // an older spec than the one held (a hint applied the newer one first)
	}
	s.podGroups[nsName{pg.Namespace, pg.Name}] = pg
	key := GroupKey{Namespace: pg.Namespace, Name: pg.Name}
	s.requeueGroupLocked(key)
	// Only a new or changed spec (minMember, roles) can open PreEnqueue's gate; a status write
	// (this scheduler's own conditions among them) must not. Pods past the gate are retried by
	// the PodGroup hint.
	switch {
	case old == nil:
		// Members held before this state knew their PodGroup were held for its absence, and that
		// gate is open now: PreEnqueue runs again, and says what they wait for if they still do
		// (this cache can see the PodGroup after the scheduler's own informer did, so no hint
		// may be left to move them).
		s.activateHeldLocked(key)
	case !equality.Semantic.DeepEqual(old.Spec, pg.Spec):
		s.releaseHeldLocked(key)
	}
}

// DeletePodGroup records a PodGroup deletion.
func (s *State) DeletePodGroup(pg *v1beta1.PodGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.podGroups, nsName{pg.Namespace, pg.Name})
	delete(s.desired, GroupKey{Namespace: pg.Namespace, Name: pg.Name})
	s.requeueGroupLocked(GroupKey{Namespace: pg.Namespace, Name: pg.Name})
}

// requeueGroupLocked re-derives the queue the group's assigned members count against.
func (s *State) requeueGroupLocked(k GroupKey) {
	if g := s.groups[k]; g != nil {
		for _, e := range g.members {
			s.recountLocked(e)
		}
	}
}

// UpsertQueue records a Queue add or update.
func (s *State) UpsertQueue(q *v1beta1.Queue) {
	info := &QueueInfo{Queue: q}
	if sel := q.Spec.NodeSelector; sel != nil {
		if ls, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			info.SelectorError = err
		} else if !ls.Empty() {
			info.NodeSelector = ls
		}
	}
	if sel := q.Spec.NamespaceSelector; sel != nil {
		if ls, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			info.SelectorError = err
		} else if !ls.Empty() {
			info.NamespaceSelector = ls
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The Queue hint retries the queue's pods on a spec change (not on its status, written on
	// every member's change by the queue status controller).
	if old := s.queues[nsName{q.Namespace, q.Name}]; old != nil && old.Queue.UID == q.UID && q.Generation < old.Queue.Generation {
		return // an older spec than the one held (a hint applied the newer one first)
	}
	s.queues[nsName{q.Namespace, q.Name}] = info
}

// SetPlanner records that a plugin of this profile plans every gang whose members all request
// resource as a whole in its PreFilter (T9kTopology), checking their placement, CPU and memory.
func (s *State) SetPlanner(resource v1.ResourceName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.planner = resource
}

// Planned says whether the planner places these members as a whole, so that a second whole-gang
// fit over every node would only repeat its work.
func (s *State) Planned(ms []Member) bool {
	s.mu.RLock()
	r := s.planner
	s.mu.RUnlock()
	if r == "" || len(ms) == 0 {
		return false
	}
	for _, m := range ms {
		if m.Requests[r] <= 0 {
			return false
		}
	}
	return true
}

// SetShort records what the gang's last failed fit lacked (nil: it fitted, or failed otherwise).
func (s *State) SetShort(key GroupKey, short []v1.ResourceName) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[key]; g != nil {
		g.short = short
	}
}

// DeleteQueue records a Queue deletion.
func (s *State) DeleteQueue(q *v1beta1.Queue) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.queues, nsName{q.Namespace, q.Name})
}

// PreemptibleBelow says whether some preemptible queue of a priority below prio has pods assigned:
// without one, queue preemption has no candidate, and PostFilter need not look at the cluster.
func (s *State) PreemptibleBelow(prio int32) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for k, q := range s.queues {
		if k.ns != s.queueNS || !q.Queue.Spec.IsPreemptible() || q.Queue.Spec.Priority >= prio {
			continue
		}
		for _, v := range s.usage[k.name] {
			if v > 0 {
				return true
			}
		}
	}
	return false
}

// Queue returns the named Queue in the queue namespace, or nil.
func (s *State) Queue(name string) *QueueInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.queues[nsName{s.queueNS, name}]
}

// QueueOf returns the queue a pod is scheduled from ("" for a pod that names none).
func (s *State) QueueOf(pod *v1.Pod) string {
	key, ok := KeyOf(pod)
	if !ok {
		return ""
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.queueOfLocked(&podEntry{pod: pod, key: key})
}

// Usage returns a copy of what the queue's assigned (bound or reserved) pods request.
func (s *State) Usage(queue string) Res {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.usage[queue].Clone()
}

// DRS is the queue's dominant resource share: the largest usage/quota over the quota's resources.
// A queue without quota has share 0.
func (s *State) DRS(queue string) float64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.drsLocked(queue)
}

func (s *State) drsLocked(queue string) float64 {
	q := s.queues[nsName{s.queueNS, queue}]
	if q == nil {
		return 0
	}
	u := s.usage[queue]
	share := 0.0
	for name, quota := range q.Queue.Spec.QuotaRequests() {
		total := Amount(name, quota)
		if total <= 0 {
			continue
		}
		if f := float64(u[name]) / float64(total); f > share {
			share = f
		}
	}
	return share
}

// SortInfo is what QueueSort compares for one pod.
type SortInfo struct {
	QueuePriority int32
	DRS           float64
	Priority      int32
	// Since is when the pod's group last entered the queue: a single pod's queue timestamp; a
	// PodGroup's creation, or its last failed attempt if later (so that a gang that keeps failing
	// goes behind the pods that were waiting when it failed, instead of staying ahead of them for
	// ever; a gang that never failed keeps its place).
	Since time.Time
	// Size is the group's minMember (1 for a pod without a PodGroup). Creation times have 1 s
	// resolution, so groups created in one second tie on Since with no arrival order between
	// them (a backlog, a scheduler restart): the larger goes first, which is best-fit
	// decreasing, so small gangs do not fragment the domains a large one needs.
	Size int32
	Key  GroupKey
}

// SortInfo computes a pod's QueueSort key without allocating: queue priority and dominant resource
// share of its queue, its group's priority and when the group last entered the queue, and the
// group key (so that members of one group compare equal up to the key and stay adjacent).
// enqueued is the pod's own queue timestamp.
func (s *State) SortInfo(pod *v1.Pod, enqueued time.Time) SortInfo {
	key, ok := KeyOf(pod)
	if !ok {
		// A plain pod ranks by its PriorityClass among groups of equal queue priority.
		return SortInfo{Since: enqueued, Priority: corev1helpers.PodPriority(pod), Size: 1,
			Key: GroupKey{Namespace: pod.Namespace, Name: pod.Name, Pod: true}}
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	info := SortInfo{Since: enqueued, Size: 1, Key: key}
	queue := pod.Labels[v1beta1.LabelQueue]
	if !key.Pod {
		if pg := s.podGroups[nsName{key.Namespace, key.Name}]; pg != nil {
			info.Priority = pg.Spec.Priority
			info.Since = pg.CreationTimestamp.Time
			info.Size = max(pg.Spec.MinMember, 1)
			if g := s.groups[key]; g != nil && g.lastFailed.After(info.Since) {
				info.Since = g.lastFailed
			}
			queue = pg.Spec.Queue
			if queue == "" {
				queue = v1beta1.DefaultQueue
			}
		}
	}
	if q := s.queues[nsName{s.queueNS, queue}]; q != nil {
		info.QueuePriority = q.Queue.Spec.Priority
		info.DRS = s.drsLocked(queue)
	}
	return info
}

// Member is one non-terminal pod of a gang as the scheduler sees it.
type Member struct {
	Pod      *v1.Pod
	Requests Res
	// Node is where the member is bound or reserved ("" when unassigned).
	Node string
	// Reserved: placed by this scheduler and waiting (Permit) or binding, not yet seen bound.
	Reserved bool
}

// Assigned says the member holds a node (bound, or reserved by this scheduler).
func (m *Member) Assigned() bool { return m.Node != "" }

// Role is the member's scheduler.tensorstack.dev/role label.
func (m *Member) Role() string { return m.Pod.Labels[v1beta1.LabelRole] }

// Gang is a snapshot of one group: what a plugin needs to decide about it.
type Gang struct {
	Key GroupKey
	// PodGroup is nil for a virtual group of one and for a group whose PodGroup does not exist.
	PodGroup  *v1beta1.PodGroup
	MinMember int32
	Roles     []v1beta1.PodGroupRole
	Queue     string
	Priority  int32
	// TopologyPolicy is the PodGroup's policy (nil: None); here for a topology plugin.
	TopologyPolicy *v1beta1.TopologyPolicy
	Created        time.Time
	// AttemptStart is when the first member of the current attempt was reserved (zero if none).
	AttemptStart time.Time
	// Members are sorted by pod name; a pod being deleted is not one.
	Members []Member
	// Leaving counts the group's pods being deleted (left out of Members): a gang already being
	// evicted or torn down is no preemption victim.
	Leaving int
}

// Gang returns the snapshot of the pod's group; false for a pod in no group or queue. A pod the
// informer has not delivered yet is included as an unassigned member.
func (s *State) Gang(pod *v1.Pod) (*Gang, bool) {
	key, ok := KeyOf(pod)
	if !ok {
		return nil, false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.gangLocked(key)
	found := false
	for i := range g.Members {
		if g.Members[i].Pod.UID == pod.UID {
			found = true
			break
		}
	}
	if !found && pod.DeletionTimestamp == nil {
		g.Members = append(g.Members, Member{Pod: pod, Requests: PodRequests(pod)})
	}
	return g, true
}

// GangByKey returns the snapshot of a group by its key (a group without members has none).
func (s *State) GangByKey(key GroupKey) *Gang {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.gangLocked(key)
}

func (s *State) gangLocked(key GroupKey) *Gang {
	g := &Gang{Key: key, MinMember: 1}
	if !key.Pod {
		if pg := s.podGroups[nsName{key.Namespace, key.Name}]; pg != nil {
			g.PodGroup = pg
			g.MinMember = pg.Spec.MinMember
			g.Roles = pg.Spec.Roles
			g.Priority = pg.Spec.Priority
			g.TopologyPolicy = pg.Spec.TopologyPolicy
			g.Created = pg.CreationTimestamp.Time
		}
	}
	if grp := s.groups[key]; grp != nil {
		g.AttemptStart = grp.attemptStart
		g.Members = make([]Member, 0, len(grp.members))
		for _, e := range grp.members {
			if e.pod.DeletionTimestamp != nil {
				// Going away (evicted, its job deleting it): no longer a member. Counted, it would
				// let a recreated sibling pass the gate and reach its quorum, and run without a
				// gang (its queue's usage still counts it until it is gone).
				g.Leaving++
				continue
			}
			g.Members = append(g.Members, Member{Pod: e.pod, Requests: e.req, Node: nodeOf(e), Reserved: e.reservedOn != "" && e.pod.Spec.NodeName == ""})
			if g.Queue == "" {
				g.Queue = s.queueOfLocked(e)
			}
			if g.PodGroup == nil && (g.Created.IsZero() || e.pod.CreationTimestamp.Time.Before(g.Created)) {
				g.Created = e.pod.CreationTimestamp.Time
			}
		}
		sort.Slice(g.Members, func(i, j int) bool { return g.Members[i].Pod.Name < g.Members[j].Pod.Name })
	}
	if g.PodGroup != nil {
		g.Queue = g.PodGroup.Spec.Queue
		if g.Queue == "" {
			g.Queue = v1beta1.DefaultQueue
		}
	}
	return g
}

func nodeOf(e *podEntry) string {
	if e.pod.Spec.NodeName != "" {
		return e.pod.Spec.NodeName
	}
	return e.reservedOn
}

// Gangs returns snapshots of every group with at least one assigned member (preemption's
// candidates).
func (s *State) Gangs() []*Gang {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []*Gang
	for k, grp := range s.groups {
		for _, e := range grp.members {
			if e.assigned() {
				out = append(out, s.gangLocked(k))
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key.String() < out[j].Key.String() })
	return out
}

// InFlight returns, for every other gang that has members waiting in Permit, the unassigned
// members it still needs for its quorum: they are about to take room, so a new gang's first
// member must leave it to them.
func (s *State) InFlight(except GroupKey) []Member {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []Member
	for k, grp := range s.groups {
		if k == except || grp.attemptStart.IsZero() {
			continue
		}
		out = append(out, s.gangLocked(k).ToPlace(nil)...)
	}
	return out
}

// Assume records that the scheduler reserved pod on node (Reserve). Idempotent.
func (s *State) Assume(pod *v1.Pod, node string) {
	key, ok := KeyOf(pod)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.pods[pod.UID]
	if e == nil {
		e = &podEntry{key: key, pod: pod, req: PodRequests(pod)}
		s.pods[pod.UID] = e
		s.groupLocked(key).members[pod.UID] = e
	}
	e.reservedOn = node
	if g := s.groups[key]; g != nil && g.attemptStart.IsZero() {
		g.attemptStart = s.now()
	}
	s.recountLocked(e)
}

// Forget undoes Assume (Unreserve). Idempotent.
func (s *State) Forget(pod *v1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.pods[pod.UID]
	if e == nil || e.reservedOn == "" {
		return
	}
	e.reservedOn = ""
	s.recountLocked(e)
	if g := s.groups[e.key]; g != nil {
		s.settleGroupLocked(e.key, g)
	}
}

// Bound records a successful bind (PostBind). It returns the gang and true exactly once per time
// the gang's bound members reach its quorum.
func (s *State) Bound(pod *v1.Pod, node string) (*Gang, bool) {
	key, ok := KeyOf(pod)
	if !ok {
		return nil, false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	grp := s.groups[key]
	if grp == nil {
		return nil, false
	}
	if e := grp.members[pod.UID]; e != nil && e.pod.Spec.NodeName == "" {
		// The informer has not caught up: keep counting the member as assigned until it does.
		e.reservedOn = node
	}
	g := s.gangLocked(key)
	bound := 0
	for _, m := range g.Members {
		if m.Assigned() {
			bound++
		}
	}
	if grp.quorumReported || bound < int(g.MinMember) {
		return g, false
	}
	grp.quorumReported = true
	grp.attemptStart = time.Time{}
	GangFailedAttempts.Observe(float64(grp.failures))
	grp.failures = 0
	return g, true
}

// ResetAttempt ends the current placement attempt of a group (its members were all rejected).
func (s *State) ResetAttempt(key GroupKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[key]; g != nil {
		g.attemptStart = time.Time{}
	}
}

// specGenerations are the generations of the queue of pod and of the gang's PodGroup (0 when
// missing): a fit failure holds only while both are unchanged.
func (s *State) specGenerations(key GroupKey, pod *v1.Pod) (queue, podGroup int64) {
	if q := s.queueFor(pod); q != nil {
		queue = q.Queue.Generation
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if pg := s.podGroups[nsName{key.Namespace, key.Name}]; pg != nil {
		podGroup = pg.Generation
	}
	return queue, podGroup
}

// FitVersion identifies the cluster state a whole-gang fit was computed on: the snapshot's newest
// node generation (the scheduler bumps a node's generation on any change to it or its pods, from
// one global counter), the node count (a node removed bumps no generation), what other gangs
// have in flight, and how many members the gang needs placed.
type FitVersion struct {
	MaxGeneration int64
	Nodes         int
	InFlight      int
	Members       int
	// The specs the fit also read: the queue's (its nodeSelector) and the PodGroup's.
	QueueGeneration, PodGroupGeneration int64
}

// FitFailure returns the reason the gang's whole fit failed on exactly this state, if it did: its
// siblings then fail at once instead of each redoing the O(nodes × members) fit.
func (s *State) FitFailure(key GroupKey, v FitVersion) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if g := s.groups[key]; g != nil && g.fitFailure != "" && g.fitFailedWith == v {
		return g.fitFailure, true
	}
	return "", false
}

// SetFitFailure records why the gang's whole fit failed on state v ("" when it fitted).
func (s *State) SetFitFailure(key GroupKey, v FitVersion, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[key]; g != nil {
		g.fitFailure, g.fitFailedWith = why, v
	}
}

// MarkFailed records that the group's attempt failed now (it goes behind pods waiting since).
func (s *State) MarkFailed(key GroupKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if g := s.groups[key]; g != nil {
		g.lastFailed = s.now()
		g.failures++
	}
}

// BackOff keeps the group's members out of PreFilter until the given time.
func (s *State) BackOff(key GroupKey, until time.Time, members []*v1.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g := s.groups[key]
	if g == nil {
		return
	}
	g.backoffUntil = until
	// Held now, wherever the queue puts them (PreEnqueue holds those it sees meanwhile), so that
	// EndBackOff opening the gate activates every one of them.
	for _, p := range members {
		s.holdLocked(key, p)
	}
}

// EndBackOff opens the gate BackOff closed (called when the backoff ends): the held members go
// back to the active queue.
func (s *State) EndBackOff(key GroupKey) {
	s.mu.Lock()
	defer s.unlockAndActivate(false)
	s.releaseHeldLocked(key)
}

// BackingOff returns when the group's backoff ends, if it is backing off now.
func (s *State) BackingOff(key GroupKey) (time.Time, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if g := s.groups[key]; g != nil && s.now().Before(g.backoffUntil) {
		return g.backoffUntil, true
	}
	return time.Time{}, false
}
