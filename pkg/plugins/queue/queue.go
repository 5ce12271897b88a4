// Package queue is the T9kQueue scheduler plugin: Queues (scheduler.tensorstack.dev) order, admit
// and preempt.
//
//   - QueueSort: queue priority, then the lower dominant resource share (usage/quota), then
//     PodGroup priority, then age; members of one group compare equal up to their group key, so
//     they stay adjacent and a gang is tried in one go.
//   - PreFilter: the queue must exist and be open, admit the pod's namespace (namespaceSelector;
//     unset admits none) and have quota left for what the gang is about to take (quota.requests
//     caps the sum of requests of the queue's bound and reserved pods).
//   - Filter: the queue's nodeSelector.
//   - PostFilter: gang-aware preemption from lower-priority, preemptible queues (preemption.go).
package queue

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	listersv1 "k8s.io/client-go/listers/core/v1"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/apis/config"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

// Name is the plugin's name in KubeSchedulerConfiguration.
const Name = "T9kQueue"

// Queue implements the plugin.
type Queue struct {
	handle     framework.Handle
	state      *groupstate.State
	namespaces listersv1.NamespaceLister
	preemption bool
}

var (
	_ framework.QueueSortPlugin   = &Queue{}
	_ framework.PreFilterPlugin   = &Queue{}
	_ framework.FilterPlugin      = &Queue{}
	_ framework.ReservePlugin     = &Queue{}
	_ framework.PostFilterPlugin  = &Queue{}
	_ framework.EnqueueExtensions = &Queue{}
)

// New builds the plugin from its (defaulted) args.
func New(ctx context.Context, obj runtime.Object, h framework.Handle) (framework.Plugin, error) {
	args, ok := obj.(*config.T9kQueueArgs)
	if !ok {
		return nil, fmt.Errorf("%s: want args of type T9kQueueArgs, got %T", Name, obj)
	}
	if err := config.ValidateT9kQueueArgs(args); err != nil {
		return nil, err
	}
	st, err := groupstate.For(ctx, h)
	if err != nil {
		return nil, err
	}
	st.SetQueueNamespace(args.QueueNamespace)
	return NewWithState(h, st, h.SharedInformerFactory().Core().V1().Namespaces().Lister(), args.Preemption), nil
}

// NewWithState builds the plugin on a given State (tests, benchmarks).
func NewWithState(h framework.Handle, st *groupstate.State, namespaces listersv1.NamespaceLister, preemption bool) *Queue {
	return &Queue{handle: h, state: st, namespaces: namespaces, preemption: preemption}
}

// Name implements framework.Plugin.
func (q *Queue) Name() string { return Name }

var (
	podGroupEvent = fwk.EventResource("podgroups.v1beta1.scheduler.tensorstack.dev")
	queueEvent    = fwk.EventResource("queues.v1beta1.scheduler.tensorstack.dev")
)

// EventsToRegister: a queue opened or changed, quota freed by a pod leaving, a node (selector).
func (q *Queue) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: queueEvent, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: q.state.QueueSpecChanged},
		{Event: fwk.ClusterEvent{Resource: podGroupEvent, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: q.state.PodGroupSpecChanged},
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete | fwk.Update}, QueueingHintFn: q.state.QueuePodChangeMayHelp},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: groupstate.NodeChangeMayHelp},
	}, nil
}

// Less orders the scheduling queue.
func (q *Queue) Less(a, b fwk.QueuedPodInfo) bool {
	pa, pb := a.GetPodInfo().GetPod(), b.GetPodInfo().GetPod()
	_, ga := groupstate.KeyOf(pa)
	_, gb := groupstate.KeyOf(pb)
	if !ga && !gb {
		// Two plain pods: exactly kube-scheduler's PrioritySort (PriorityClass, then the time the
		// pod entered the queue), so t9k-scheduler is a drop-in for them.
		p1, p2 := corev1helpers.PodPriority(pa), corev1helpers.PodPriority(pb)
		return p1 > p2 || (p1 == p2 && a.GetTimestamp().Before(b.GetTimestamp()))
	}
	return less(q.state.SortInfo(pa, a.GetTimestamp()), q.state.SortInfo(pb, b.GetTimestamp()), pa, pb)
}

func less(a, b groupstate.SortInfo, pa, pb *v1.Pod) bool {
	switch {
	case a.QueuePriority != b.QueuePriority:
		return a.QueuePriority > b.QueuePriority
	case a.DRS != b.DRS:
		return a.DRS < b.DRS
	case a.Priority != b.Priority:
		return a.Priority > b.Priority
	case !a.Since.Equal(b.Since):
		return a.Since.Before(b.Since)
	case a.Size != b.Size:
		return a.Size > b.Size
	case a.Key != b.Key:
		if a.Key.Namespace != b.Key.Namespace {
			return a.Key.Namespace < b.Key.Namespace
		}
		if a.Key.Name != b.Key.Name {
			return a.Key.Name < b.Key.Name
		}
		return !a.Key.Pod
	case !pa.CreationTimestamp.Equal(&pb.CreationTimestamp):
		return pa.CreationTimestamp.Before(&pb.CreationTimestamp)
	}
	return pa.Name < pb.Name
}

const cycleKey fwk.StateKey = Name

// cycle is what PreFilter learned for Filter and PostFilter.
type cycle struct {
	queue *groupstate.QueueInfo
	// blocked: a queue rule (not room on nodes) stopped the pod, so preemption cannot help.
	blocked bool
}

func (c *cycle) Clone() fwk.StateData { return c }

func readCycle(cs fwk.CycleState) *cycle {
	d, err := cs.Read(cycleKey)
	if err != nil {
		return nil
	}
	c, _ := d.(*cycle)
	return c
}

// PreFilter admits the pod into its queue, or says which queue rule blocks it and by how much.
func (q *Queue) PreFilter(_ context.Context, cs fwk.CycleState, pod *v1.Pod, _ []fwk.NodeInfo) (*framework.PreFilterResult, *fwk.Status) {
	name := q.state.QueueOf(pod)
	if name == "" {
		return nil, fwk.NewStatus(fwk.Skip)
	}
	if groupstate.PlanCheck(cs) {
		// A gang's plan checked member by member: admission is the gang's (decided once), the
		// queue's nodeSelector is a node's (Filter).
		if qi := q.state.Queue(name); qi != nil && qi.NodeSelector != nil {
			cs.Write(cycleKey, &cycle{queue: qi})
			return nil, nil
		}
		return nil, fwk.NewStatus(fwk.Skip)
	}
	reason, msg := q.admit(pod, name)
	if reason != "" {
		key, _ := groupstate.KeyOf(pod)
		q.state.RecordPending(cs, key, reason, msg)
		cs.Write(cycleKey, &cycle{blocked: true})
		return nil, fwk.NewStatus(fwk.UnschedulableAndUnresolvable, msg)
	}
	cs.Write(cycleKey, &cycle{queue: q.state.Queue(name)})
	return nil, nil
}

// admit applies the queue's rules to a pod; it returns a PodGroup reason and message when one
// blocks it.
func (q *Queue) admit(pod *v1.Pod, name string) (string, string) {
	qi := q.state.Queue(name)
	if qi == nil {
		return v1beta1.ReasonQueueNotFound, fmt.Sprintf("queue %s does not exist", name)
	}
	spec := &qi.Queue.Spec
	if qi.SelectorError != nil {
		return v1beta1.ReasonUnschedulable, fmt.Sprintf("queue %s has an invalid selector: %v", name, qi.SelectorError)
	}
	if spec.Closed {
		return v1beta1.ReasonQueueClosed, fmt.Sprintf("queue %s is closed: nothing new is scheduled from it until it is opened", name)
	}
	if qi.NamespaceSelector == nil {
		return v1beta1.ReasonNamespaceNotAllowed, fmt.Sprintf("namespace %s may not use queue %s: the queue's namespaceSelector is unset, which admits no namespace", pod.Namespace, name)
	}
	var nsLabels labels.Set
	if q.namespaces != nil {
		if ns, err := q.namespaces.Get(pod.Namespace); err == nil {
			nsLabels = ns.Labels
		}
	}
	if !qi.NamespaceSelector.Matches(nsLabels) {
		return v1beta1.ReasonNamespaceNotAllowed, fmt.Sprintf("namespace %s may not use queue %s: its labels do not match the queue's namespaceSelector (%s)", pod.Namespace, name, qi.NamespaceSelector)
	}
	quota := groupstate.ToRes(spec.QuotaRequests())
	if len(quota) == 0 {
		return "", ""
	}
	need, key := q.need(pod)
	usage := q.state.Usage(name)
	held := q.heldForOthers(name, key)
	var over []string
	for _, r := range slices.Sorted(maps.Keys(quota)) {
		if need[r] > 0 && usage[r]+held[r]+need[r] > quota[r] {
			msg := fmt.Sprintf("needs %s %s, %s left (quota %s, allocated %s",
				groupstate.Format(r, need[r]), r, groupstate.Format(r, max(quota[r]-usage[r]-held[r], 0)),
				groupstate.Format(r, quota[r]), groupstate.Format(r, usage[r]))
			if held[r] > 0 {
				msg += fmt.Sprintf(", %s more held for gangs being placed", groupstate.Format(r, held[r]))
			}
			over = append(over, msg+")")
		}
	}
	if len(over) > 0 {
		return v1beta1.ReasonQueueQuotaExceeded, fmt.Sprintf("queue %s quota: %s", name, strings.Join(over, "; "))
	}
	return "", ""
}

// need is what the pod's admission adds to its queue: for a member of a gang the whole quorum
// still to be placed, this member included (so a gang is not half admitted, and a later member
// of an attempt is judged as its first was), else the pod alone. It also returns the pod's group.
func (q *Queue) need(pod *v1.Pod) (groupstate.Res, groupstate.GroupKey) {
	key, _ := groupstate.KeyOf(pod)
	if gang, ok := q.state.Gang(pod); ok {
		if ms := gang.ToPlace(pod); len(ms) > 0 {
			return groupstate.Requests(ms), key
		}
	}
	return groupstate.PodRequests(pod), key
}

// heldForOthers is what the queue's other gangs half placed still need for their quorum: their
// first member was admitted for the whole quorum, so a second gang must not be admitted into the
// same room (each would then fail the other's later members, attempt after attempt).
func (q *Queue) heldForOthers(queue string, except groupstate.GroupKey) groupstate.Res {
	var held groupstate.Res
	for _, m := range q.state.InFlight(except) {
		if q.state.QueueOf(m.Pod) != queue {
			continue
		}
		if held == nil {
			held = groupstate.Res{}
		}
		held.Add(m.Requests)
	}
	return held
}

// PreFilterExtensions implements framework.PreFilterPlugin.
func (q *Queue) PreFilterExtensions() framework.PreFilterExtensions { return nil }

// Filter keeps the pod on its queue's nodes.
func (q *Queue) Filter(_ context.Context, cs fwk.CycleState, _ *v1.Pod, ni fwk.NodeInfo) *fwk.Status {
	c := readCycle(cs)
	if c == nil || c.queue == nil || c.queue.NodeSelector == nil {
		return nil
	}
	if !c.queue.NodeSelector.Matches(labels.Set(ni.Node().Labels)) {
		return fwk.NewStatus(fwk.UnschedulableAndUnresolvable, fmt.Sprintf("node(s) didn't match queue %s's nodeSelector", c.queue.Queue.Name))
	}
	return nil
}

// Reserve counts the pod against its queue's quota at once, before it is bound.
func (q *Queue) Reserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, node string) *fwk.Status {
	q.state.Assume(pod, node)
	return nil
}

// Unreserve gives the quota back.
func (q *Queue) Unreserve(_ context.Context, _ fwk.CycleState, pod *v1.Pod, _ string) {
	q.state.Forget(pod)
}
