// Package gang is the T9kGang scheduler plugin: all-or-nothing scheduling of a PodGroup
// (scheduler.tensorstack.dev). No member binds until minMember members, and every role's minimum,
// can run at once.
//
//   - PreEnqueue keeps members out of the active queue until enough of them exist; the shared
//     state lets them through (Activate) when a member or the PodGroup opens the gate, and
//     checks held members periodically, since the scheduler's own flush skips them.
//   - PreFilter, for the first member of an attempt, checks that the whole quorum fits on the
//     snapshot at once (leaving room for other gangs already half placed), so a gang that cannot
//     run takes no reservation at all.
//   - Reserve/Unreserve track reservations in the shared groupstate; Permit holds members until
//     the quorum is reserved (running members count), then lets them all bind. On the timeout
//     (args, or the PodGroup's spec.scheduleTimeoutSeconds) or any member's failure every waiting
//     member is rejected and its reservation released.
//   - A member failing to bind after Permit let the gang go (the others may be bound already) is
//     retried; if the gang is still short of its quorum after its timeout, its bound members are
//     deleted, so a partial gang holds nothing (BindFailed, PartialGangReleased).
//   - PostBind reports the quorum (GroupScheduled condition, time-to-quorum metric).
package gang

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/apis/config"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
	"github.com/tensorstack/t9k/pkg/plugins/placement"
)

// Name is the plugin's name in KubeSchedulerConfiguration.
const Name = "T9kGang"

// Gang implements the plugin.
type Gang struct {
	handle  framework.Handle
	state   *groupstate.State
	place   *placement.Engine
	timeout time.Duration

	mu sync.Mutex
	// repairing: gangs with a bind failure after their quorum was let go, whose release check is
	// scheduled (at most one check per gang at a time).
	repairing map[groupstate.GroupKey]bool
}

var (
	_ framework.PreEnqueuePlugin  = &Gang{}
	_ framework.PreFilterPlugin   = &Gang{}
	_ framework.PostFilterPlugin  = &Gang{}
	_ framework.ReservePlugin     = &Gang{}
	_ framework.PermitPlugin      = &Gang{}
	_ framework.PostBindPlugin    = &Gang{}
	_ framework.EnqueueExtensions = &Gang{}
)

// New builds the plugin from its (defaulted) args.
func New(ctx context.Context, obj runtime.Object, h framework.Handle) (framework.Plugin, error) {
	args, ok := obj.(*config.T9kGangArgs)
	if !ok {
		return nil, fmt.Errorf("%s: want args of type T9kGangArgs, got %T", Name, obj)
	}
	if err := config.ValidateT9kGangArgs(args); err != nil {
		return nil, err
	}
	st, err := groupstate.For(ctx, h)
	if err != nil {
		return nil, err
	}
	return NewWithState(h, st, time.Duration(args.ScheduleTimeoutSeconds)*time.Second), nil
}

// NewWithState builds the plugin on a given State (tests, benchmarks).
func NewWithState(h framework.Handle, st *groupstate.State, timeout time.Duration) *Gang {
	return &Gang{handle: h, state: st, place: placement.For(h), timeout: timeout, repairing: map[groupstate.GroupKey]bool{}}
}

// Name implements framework.Plugin.
func (g *Gang) Name() string { return Name }

// PodGroupEvent and QueueEvent are the scheduler's names for events of our custom resources
// (served to plugins through its dynamic informers).
var (
	PodGroupEvent = fwk.EventResource("podgroups.v1beta1.scheduler.tensorstack.dev")
	QueueEvent    = fwk.EventResource("queues.v1beta1.scheduler.tensorstack.dev")
)

// EventsToRegister: a gang held for members moves on a new member or a changed PodGroup; a gang
// that did not fit moves when room appears.
func (g *Gang) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	events := []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Add | fwk.Delete | fwk.Update}, QueueingHintFn: g.state.PodChangeMayHelp},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: groupstate.NodeChangeMayHelp},
		{Event: fwk.ClusterEvent{Resource: PodGroupEvent, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: g.state.PodGroupSpecChanged},
		// The whole-gang fit applies the queue's nodeSelector.
		{Event: fwk.ClusterEvent{Resource: QueueEvent, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: g.state.OwnQueueSpecChanged},
	}
	if groupstate.FaultMissGateEvents.Load() {
		for i := range events {
			events[i].QueueingHintFn = func(klog.Logger, *v1.Pod, any, any) (fwk.QueueingHint, error) { return fwk.QueueSkip, nil }
		}
	}
	return events, nil
}

func inPodGroup(pod *v1.Pod) (groupstate.GroupKey, bool) {
	k, ok := groupstate.KeyOf(pod)
	return k, ok && !k.Pod
}

// PreEnqueue holds a member until minMember members (and each role's minimum) exist.
func (g *Gang) PreEnqueue(_ context.Context, pod *v1.Pod) *fwk.Status {
	key, ok := inPodGroup(pod)
	if !ok {
		return nil
	}
	gang, _ := g.state.Gang(pod)
	if gang.PodGroup == nil {
		g.state.Hold(pod)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("PodGroup %s not found", key))
	}
	if short := gang.ShortOfMembers(); short != "" {
		g.state.Hold(pod)
		msg := "Insufficient members in PodGroup, waiting for more: " + short
		g.state.SetCondition(key, v1beta1.PodGroupConditionSufficientMember, metav1.ConditionFalse, v1beta1.ReasonInsufficientMemberPod, msg)
		g.state.SetCondition(key, v1beta1.PodGroupConditionScheduled, metav1.ConditionFalse, v1beta1.ReasonInsufficientMemberPod, msg)
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	if until, ok := g.state.BackingOff(key); ok {
		g.state.Hold(pod) // EndBackOff lets it go
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("gang backing off after a timed-out attempt until %s", until.Format(time.TimeOnly)))
	}
	g.state.Unhold(pod)
	g.state.SetCondition(key, v1beta1.PodGroupConditionSufficientMember, metav1.ConditionTrue, v1beta1.ReasonSufficientMemberPods, "PodGroup has enough member pods")
	if c := g.state.Condition(key, v1beta1.PodGroupConditionScheduled); c != nil && c.Reason == v1beta1.ReasonInsufficientMemberPod {
		// Written in the same status apply as SufficientGroupMember (the writer coalesces).
		g.state.SetCondition(key, v1beta1.PodGroupConditionScheduled, metav1.ConditionFalse, v1beta1.ReasonScheduling, "every member exists; the scheduler is placing them")
	}
	return nil
}

// PreFilter checks, at the first member of an attempt, that the whole quorum fits at once.
func (g *Gang) PreFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, nodes []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	key, ok := inPodGroup(pod)
	if !ok || groupstate.PlanCheck(cs) {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	gang, _ := g.state.Gang(pod)
	if gang.PodGroup == nil {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("PodGroup %s not found", key))
	}
	if short := gang.ShortOfMembers(); short != "" {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, "waiting for members: "+short)
	}
	if until, ok := g.state.BackingOff(key); ok {
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("gang backing off after a timed-out attempt until %s", until.Format(time.TimeOnly)))
	}
	if gang.Waiting() {
		// Later members of an attempt: the first one checked the whole quorum; Filter checks
		// this one, and a failure releases the whole attempt (PostFilter).
		return nil, nil
	}
	toPlace := gang.ToPlace(pod)
	if len(toPlace) <= 1 {
		return nil, nil
	}
	if g.state.Planned(toPlace) {
		// T9kTopology's PreFilter, next, places the whole gang (GPUs, CPU and memory, the same
		// node rules) and holds what it planned: a fit over every node here would repeat it. If
		// its plan fails it runs this same fit for the reason.
		return nil, nil
	}
	if st := g.fitChecked(ctx, key, toPlace, nodes); st != nil {
		g.state.RecordPending(cs, key, v1beta1.ReasonUnschedulable, st.Message())
		return nil, st
	}
	klog.FromContext(ctx).V(4).Info("Gang fits", "podGroup", key, "members", len(toPlace))
	return nil, nil
}

// fitChecked is the whole-gang fit of a gang no planner places: groupstate's fitter proposes a
// node per member (resources, the node rules), and the placement engine checks the proposal
// with the profile's own filters, asking again around the nodes they refuse. The framework then
// places each member itself; the check makes sure a place exists that the filters accept, so a
// gang they refuse is turned away once, with their reason, instead of half placed and released
// over and over. A failure is remembered with the state it was decided on (FitVersion).
func (g *Gang) fitChecked(ctx context.Context, key groupstate.GroupKey, toPlace []groupstate.Member, nodes []fwk.NodeInfo) *fwk.Status {
	inFlight := g.state.InFlight(key)
	ver := g.state.FitVersionOf(key, toPlace, nodes, inFlight)
	if msg, ok := g.state.FitFailure(key, ver); ok {
		return fwk.NewStatus(fwk.Unschedulable, msg)
	}
	pods := make([]*v1.Pod, len(toPlace))
	for i, m := range toPlace {
		pods[i] = m.Pod
	}
	_, err := g.place.Place(ctx, key.String(), func(caps map[string]int) (*placement.Proposal, error) {
		at, why := g.state.FitPlan(key, toPlace, nodes, inFlight, caps)
		if why != "" {
			return nil, errors.New(why)
		}
		return &placement.Proposal{Members: pods, Nodes: at}, nil
	}, placement.Options{})
	if err == nil {
		g.state.SetFitFailure(key, ver, "")
		return nil
	}
	g.state.SetFitFailure(key, ver, err.Error())
	return fwk.NewStatus(placement.Code(err), err.Error())
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (g *Gang) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// PostFilter runs when a member could not be placed: the attempt fails as a whole, so every member
// waiting in Permit is rejected (releasing its reservation), and the reason is recorded.
func (g *Gang) PostFilter(_ context.Context, cs fwk.CycleState, pod *v1.Pod, m framework.NodeToStatusReader) (*framework.PostFilterResult, *fwk.Status) {
	key, ok := inPodGroup(pod)
	if !ok {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	n := g.rejectWaiting(key, fmt.Sprintf("member %s could not be placed", pod.Name))
	if !groupstate.PendingRecorded(cs) {
		msg := summarize(g.handle, m)
		if n > 0 {
			msg = fmt.Sprintf("member %s: %s; released %d placed members", pod.Name, msg, n)
		}
		g.state.RecordPending(cs, key, v1beta1.ReasonUnschedulable, msg)
	}
	return nil, fwk.NewStatus(fwk.Unschedulable)
}

// summarize turns per-node filter failures into the scheduler's familiar
// "0/3 nodes are available: 3 Insufficient nvidia.com/gpu." form.
func summarize(h framework.Handle, m framework.NodeToStatusReader) string {
	if h == nil || m == nil {
		return "no node fits"
	}
	nodes, err := h.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return "no node fits"
	}
	counts := map[string]int{}
	for _, ni := range nodes {
		if st := m.Get(ni.Node().Name); st != nil {
			for _, r := range st.Reasons() {
				counts[r]++
			}
		}
	}
	reasons := make([]string, 0, len(counts))
	for r, c := range counts {
		reasons = append(reasons, fmt.Sprintf("%d %s", c, r))
	}
	sort.Strings(reasons)
	return fmt.Sprintf("0/%d nodes are available: %s", len(nodes), strings.Join(reasons, ", "))
}

// rejectWaiting rejects every member of the group waiting in Permit; it returns how many.
func (g *Gang) rejectWaiting(key groupstate.GroupKey, why string) int {
	if g.handle == nil {
		return 0
	}
	n := 0
	g.handle.IterateOverWaitingPods(func(wp framework.WaitingPod) {
		if k, ok := inPodGroup(wp.GetPod()); ok && k == key {
			wp.Reject(Name, why)
			n++
		}
	})
	return n
}

// Reserve records the reservation so Permit and other gangs' PreFilter see it.
func (g *Gang) Reserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	g.state.Assume(pod, node)
	return nil
}

// Unreserve releases the reservation, and with it the whole attempt: every waiting member is
// rejected too, so a partial gang never keeps GPUs.
func (g *Gang) Unreserve(_ context.Context, cs fwk.CycleState, pod *v1.Pod, _ string) {
	key, inGroup := inPodGroup(pod)
	var before *groupstate.Gang
	if inGroup {
		before, _ = g.state.Gang(pod)
	}
	g.state.Forget(pod)
	if !inGroup {
		return
	}
	// The room it held is free again: the scheduler treats a pod forgotten in its binding cycle
	// as an assigned pod deleted, so the queueing hints of the gangs short of it fire; and a
	// rejected waiting sibling's binding cycle does the same for its own room.
	g.rejectWaiting(key, fmt.Sprintf("member %s was released", pod.Name))
	if before.ShortOfQuorum() == "" && permitted(cs) {
		// The quorum was placed, so Permit let the gang go: this member failed at PreBind or
		// Bind, and members bound meanwhile cannot be unbound. A member that failed before
		// Permit (another plugin's Reserve) completed no quorum: its siblings wait in Permit
		// and were just rejected, so the attempt ends like any other.
		g.bindFailed(before, pod)
		return
	}
	if before.AttemptStart.IsZero() {
		return
	}
	timeout := g.timeoutOf(before)
	if elapsed := time.Since(before.AttemptStart); elapsed >= timeout-100*time.Millisecond {
		groupstate.PermitTimeouts.Inc()
		placed := 0
		for _, m := range before.Members {
			if m.Reserved {
				placed++
			}
		}
		backoff := min(timeout, maxBackoff)
		msg := fmt.Sprintf("quorum not placed within %s (%s); released all %d placed members, retrying in %s",
			timeout, before.ShortOfQuorum(), placed, backoff)
		g.state.SetCondition(key, v1beta1.PodGroupConditionScheduled, metav1.ConditionFalse, v1beta1.ReasonPermitTimeout, msg)
		g.state.MarkFailed(key)
		g.backOff(before, backoff)
	}
	g.state.ResetAttempt(key)
}

// bindFailed reports a member that failed to bind after its gang's quorum was let go, and schedules
// the check that releases the gang's bound members if it is still not whole after its schedule
// timeout (the member is retried meanwhile; a transient failure heals well within it). A gang
// that never had a member bound has nothing to release.
func (g *Gang) bindFailed(gang *groupstate.Gang, pod *v1.Pod) {
	bound := 0
	for _, m := range gang.Members {
		if m.Pod.UID != pod.UID && m.Assigned() {
			bound++ // bound, or binding (the informer may not show it bound yet)
		}
	}
	timeout := g.timeoutOf(gang)
	msg := fmt.Sprintf("member %s failed to bind after the gang's quorum was placed; retrying it; if the gang is not whole within %s its %d placed members are released", pod.Name, timeout, bound)
	g.state.Event(gang.Key, v1.EventTypeWarning, v1beta1.ReasonBindFailed, msg)
	g.state.SetCondition(gang.Key, v1beta1.PodGroupConditionScheduled, metav1.ConditionFalse, v1beta1.ReasonBindFailed, msg)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.repairing[gang.Key] {
		return
	}
	g.repairing[gang.Key] = true
	time.AfterFunc(timeout, func() { g.releaseIfPartial(gang.Key) })
}

// releaseIfPartial deletes the bound members of a gang that is still short of its quorum, so a
// partial gang holds no GPUs (its job's controller recreates the pods, and the gang is placed
// whole again). A member being bound right now gets a second look before anything is deleted.
func (g *Gang) releaseIfPartial(key groupstate.GroupKey) {
	gang := g.state.GangByKey(key)
	if gang.ShortOfQuorum() == "" {
		if gang.Waiting() {
			time.AfterFunc(time.Second, func() { g.releaseIfPartial(key) })
			return
		}
		g.mu.Lock()
		delete(g.repairing, key)
		g.mu.Unlock()
		return
	}
	g.mu.Lock()
	delete(g.repairing, key)
	g.mu.Unlock()
	var names []string
	ctx := context.Background()
	for _, m := range gang.Members {
		if m.Pod.Spec.NodeName == "" || g.handle == nil {
			continue
		}
		err := g.handle.ClientSet().CoreV1().Pods(m.Pod.Namespace).Delete(ctx, m.Pod.Name,
			metav1.DeleteOptions{Preconditions: metav1.NewUIDPreconditions(string(m.Pod.UID))})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			klog.Background().Error(err, "Releasing a member of a partial gang", "pod", klog.KObj(m.Pod), "podGroup", key)
			continue
		}
		names = append(names, m.Pod.Name)
	}
	if len(names) == 0 {
		return
	}
	msg := fmt.Sprintf("the gang stayed short of its quorum (%s) after a member failed to bind; released its %d bound members: %s",
		gang.ShortOfQuorum(), len(names), strings.Join(names, ", "))
	g.state.Event(key, v1.EventTypeWarning, v1beta1.ReasonPartialGangReleased, msg)
	g.state.SetCondition(key, v1beta1.PodGroupConditionScheduled, metav1.ConditionFalse, v1beta1.ReasonPartialGangReleased, msg)
}

// maxBackoff caps how long a timed-out gang stays out of the way.
const maxBackoff = 30 * time.Second

// backOff keeps a timed-out gang from taking back the room it just released (the other gangs it
// blocked are usually further into their own backoff). Its members wait behind the PreEnqueue
// gate until the backoff ends, which opens it.
func (g *Gang) backOff(gang *groupstate.Gang, d time.Duration) {
	var pending []*v1.Pod
	for _, m := range gang.Members {
		if m.Pod.Spec.NodeName == "" {
			pending = append(pending, m.Pod)
		}
	}
	g.state.BackOff(gang.Key, time.Now().Add(d), pending)
	time.AfterFunc(d, func() { g.state.EndBackOff(gang.Key) })
}

func (g *Gang) timeoutOf(gang *groupstate.Gang) time.Duration {
	if gang.PodGroup != nil && gang.PodGroup.Spec.ScheduleTimeoutSeconds != nil {
		return time.Duration(*gang.PodGroup.Spec.ScheduleTimeoutSeconds) * time.Second
	}
	return g.timeout
}

// Permit lets the member bind once the gang's quorum is placed, and then lets all waiting members
// go; until then it waits, up to the attempt's deadline.
func (g *Gang) Permit(_ context.Context, cs fwk.CycleState, pod *v1.Pod, _ string) (*fwk.Status, time.Duration) {
	key, ok := inPodGroup(pod)
	if !ok {
		return nil, 0
	}
	cs.Write(permitKey, permitMark{})
	gang, _ := g.state.Gang(pod)
	if gang.ShortOfQuorum() == "" {
		if g.handle != nil {
			g.handle.IterateOverWaitingPods(func(wp framework.WaitingPod) {
				if k, ok := inPodGroup(wp.GetPod()); ok && k == key {
					wp.Allow(Name)
				}
			})
		}
		return nil, 0
	}
	start := gang.AttemptStart
	if start.IsZero() {
		start = time.Now()
	}
	wait := time.Until(start.Add(g.timeoutOf(gang)))
	if wait < 100*time.Millisecond {
		wait = 100 * time.Millisecond
	}
	g.activateSiblings(cs, gang, pod)
	return fwk.NewStatus(fwk.Wait, "waiting for the gang's quorum: "+gang.ShortOfQuorum()), wait
}

const permitKey fwk.StateKey = Name + "/permit"

type permitMark struct{}

func (permitMark) Clone() fwk.StateData { return permitMark{} }

// permitted says whether the pod's cycle reached Permit: an Unreserve after it is a failure at
// PreBind or Bind (or a rejected wait), one before it a failure at Reserve.
func permitted(cs fwk.CycleState) bool {
	if cs == nil {
		return false
	}
	_, err := cs.Read(permitKey)
	return err == nil
}

// activateSiblings moves unplaced members to the active queue right away, so the gang is placed in
// one go instead of each member waiting out its own backoff.
func (g *Gang) activateSiblings(cs fwk.CycleState, gang *groupstate.Gang, pod *v1.Pod) {
	data, err := cs.Read(framework.PodsToActivateKey)
	if err != nil {
		return
	}
	pa, ok := data.(*framework.PodsToActivate)
	if !ok {
		return
	}
	pa.Lock()
	defer pa.Unlock()
	for _, m := range gang.Members {
		if !m.Assigned() && m.Pod.UID != pod.UID {
			pa.Map[m.Pod.Namespace+"/"+m.Pod.Name] = m.Pod
		}
	}
}

// PostBind reports a gang whose quorum is now bound.
func (g *Gang) PostBind(_ context.Context, _ fwk.CycleState, pod *v1.Pod, node string) {
	gang, done := g.state.Bound(pod, node)
	if !done || gang.Key.Pod {
		return
	}
	first := gang.Created
	for _, m := range gang.Members {
		if c := m.Pod.CreationTimestamp.Time; c.Before(first) || first.IsZero() {
			first = c
		}
	}
	groupstate.GangTimeToQuorum.Observe(time.Since(first).Seconds())
	g.state.SetCondition(gang.Key, v1beta1.PodGroupConditionScheduled, metav1.ConditionTrue, v1beta1.ReasonPodGroupScheduled, "Resources have been allocated to PodGroup")
}
