package groupstate

import (
	"maps"
	"slices"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	v1helper "k8s.io/kubernetes/pkg/apis/core/v1/helper"
	"k8s.io/kubernetes/pkg/scheduler/util"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// Queueing hints shared by the t9k plugins. The scheduler calls a hint for every pod a plugin
// turned away when an event it registered happens; Queue retries the pod, QueueSkip leaves it
// where it is. A hint answers Queue only when the event could make the pod schedulable, so that a
// gang that cannot fit is not retried for every unrelated event, and never for a status write
// (the scheduler's own PodScheduled conditions and PodGroup conditions included).

// PodChangeMayHelp is T9kGang's pod hint: an event can help a pending gang member when it frees
// what the gang lacked (an assigned pod holding one of those resources deleted or finished; any
// assigned pod when the gang's shortage is not known), or changes the gang (a member added, its
// labels or scheduling gates changed).
func (s *State) PodChangeMayHelp(_ klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldPod, newPod, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if leaving := LeavingPod(oldPod, newPod); leaving != nil {
		return s.freesWhatIsShort(pod, leaving), nil
	}
	if newPod == nil {
		return fwk.QueueSkip, nil
	}
	if oldPod == nil { // added
		if sameGang(pod, newPod) {
			return fwk.Queue, nil
		}
		return fwk.QueueSkip, nil
	}
	if (sameGang(pod, newPod) || sameGang(pod, oldPod)) &&
		(!maps.Equal(oldPod.Labels, newPod.Labels) || len(oldPod.Spec.SchedulingGates) != len(newPod.Spec.SchedulingGates)) {
		return fwk.Queue, nil // the gang's membership changed
	}
	return fwk.QueueSkip, nil
}

// freesWhatIsShort: Queue when the leaving pod held a resource the pending pod's gang lacked at
// its last attempt, or when that is not known.
func (s *State) freesWhatIsShort(pending, leaving *v1.Pod) fwk.QueueingHint {
	key, ok := KeyOf(pending)
	if !ok {
		return fwk.Queue
	}
	s.mu.RLock()
	g := s.groups[key]
	var short []v1.ResourceName
	if g != nil {
		short = g.short
	}
	s.mu.RUnlock()
	if short == nil {
		return fwk.Queue
	}
	req := PodRequests(leaving)
	for _, r := range short {
		if req[r] > 0 {
			return fwk.Queue
		}
	}
	return fwk.QueueSkip
}

// QueuePodChangeMayHelp is T9kQueue's pod hint: a pod leaving frees quota only in its own queue.
func (s *State) QueuePodChangeMayHelp(_ klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldPod, newPod, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	leaving := LeavingPod(oldPod, newPod)
	if leaving == nil && oldPod != nil && newPod != nil && !maps.Equal(oldPod.Labels, newPod.Labels) {
		s.upsertPod(newPod, true)
		return fwk.Queue, nil // a pod moved between queues or groups
	}
	if leaving != nil && s.QueueOf(leaving) == s.QueueOf(pod) {
		s.deletePod(leaving, true) // its quota is free by the time the pod is retried
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// LeavingPod returns the pod of a pod event that gives its node's room back: an assigned pod
// deleted before it finished, or one that just finished; nil otherwise.
func LeavingPod(oldPod, newPod *v1.Pod) *v1.Pod {
	switch {
	case newPod == nil && oldPod != nil && oldPod.Spec.NodeName != "" && !terminal(oldPod):
		return oldPod
	case oldPod != nil && newPod != nil && newPod.Spec.NodeName != "" && terminal(newPod) && !terminal(oldPod):
		return newPod
	}
	return nil
}

// sameGang says whether other is a member of pod's PodGroup.
func sameGang(pod, other *v1.Pod) bool {
	if other == nil || pod.UID == other.UID {
		return false
	}
	k, ok := KeyOf(pod)
	ko, oko := KeyOf(other)
	return ok && oko && !k.Pod && k == ko
}

// NodeChangeMayHelp: a node added, or one whose allocatable, labels, taints or
// schedulability changed; not its heartbeats and conditions, and never a node that offers none
// of an extended resource (GPUs) the pod asks for (a CPU-only node's labels cannot help a GPU gang).
func NodeChangeMayHelp(_ klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldNode, newNode, err := util.As[*v1.Node](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if newNode != nil && lacksExtended(pod, newNode) {
		return fwk.QueueSkip, nil
	}
	if oldNode == nil || newNode == nil {
		return fwk.Queue, nil
	}
	if !equality.Semantic.DeepEqual(oldNode.Status.Allocatable, newNode.Status.Allocatable) ||
		!maps.Equal(oldNode.Labels, newNode.Labels) ||
		!slices.EqualFunc(oldNode.Spec.Taints, newNode.Spec.Taints, func(a, b v1.Taint) bool { return a.MatchTaint(&b) }) ||
		oldNode.Spec.Unschedulable != newNode.Spec.Unschedulable {
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

// lacksExtended says whether the pod asks for an extended resource of which the node offers none
// at all. It reads the containers' requests in place: a hint runs per pending pod under the
// scheduling queue's lock.
func lacksExtended(pod *v1.Pod, n *v1.Node) bool {
	if pod == nil {
		return false
	}
	for _, c := range pod.Spec.Containers {
		for name, q := range c.Resources.Requests {
			if q.IsZero() || !v1helper.IsExtendedResourceName(name) {
				continue
			}
			if a, ok := n.Status.Allocatable[name]; !ok || a.IsZero() {
				return true
			}
		}
	}
	return false
}

// Hints that retry a pod because of a change this State tracks first apply that change to the
// State (idempotently), so that the retried pod is judged by what woke it: the State's own
// informers may deliver the same change after the scheduler's. That is what lets the plugins
// wake pods through hints alone, with Activate only for a PreEnqueue gate that opens. The
// scheduler holds its queue's lock while it calls a hint: an update made here never calls
// Activate (which takes that lock) before returning.

// PodGroupSpecChanged is the hint of PodGroup events: only the pending pod's own PodGroup, when
// it is new or its spec changed; a status write (the scheduler's conditions, the controllers'
// counts) cannot help.
func (s *State) PodGroupSpecChanged(_ klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldU, newU, err := util.As[*unstructured.Unstructured](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if newU == nil {
		return fwk.QueueSkip, nil
	}
	if k, ok := KeyOf(pod); !ok || k.Pod || k.Namespace != newU.GetNamespace() || k.Name != newU.GetName() {
		return fwk.QueueSkip, nil
	}
	h := specHint(oldU, newU)
	if h == fwk.Queue && !s.holds(newU) {
		var pg v1beta1.PodGroup
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(newU.Object, &pg); err == nil {
			s.upsertPodGroup(&pg, true)
		}
	}
	return h, nil
}

// QueueSpecChanged is the hint of Queue events: a new Queue or a changed spec (opened, quota,
// selectors); not its status.
func (s *State) QueueSpecChanged(_ klog.Logger, _ *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldU, newU, err := util.As[*unstructured.Unstructured](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if newU == nil {
		return fwk.QueueSkip, nil
	}
	h := specHint(oldU, newU)
	if h == fwk.Queue && !s.holds(newU) {
		var q v1beta1.Queue
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(newU.Object, &q); err == nil {
			s.UpsertQueue(&q)
		}
	}
	return h, nil
}

// OwnQueueSpecChanged is QueueSpecChanged for the pod's own queue only: what a gang's fit reads
// of a queue is its nodeSelector, so another queue's change cannot help it.
func (s *State) OwnQueueSpecChanged(logger klog.Logger, pod *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	h, err := s.QueueSpecChanged(logger, pod, oldObj, newObj)
	if err != nil || h != fwk.Queue {
		return h, err
	}
	if u, ok := newObj.(*unstructured.Unstructured); ok && (u.GetNamespace() != s.queueNS || u.GetName() != s.QueueOf(pod)) {
		return fwk.QueueSkip, nil
	}
	return h, nil
}

// holds says whether the State already has this very version of a PodGroup or Queue: the
// scheduler calls a hint once per pending pod for the same event, and only the first call needs
// to apply it.
func (s *State) holds(u *unstructured.Unstructured) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rv, at := u.GetResourceVersion(), nsName{u.GetNamespace(), u.GetName()}
	switch u.GetKind() {
	case "PodGroup":
		pg := s.podGroups[at]
		return pg != nil && rv != "" && pg.ResourceVersion == rv
	case "Queue":
		q := s.queues[at]
		return q != nil && rv != "" && q.Queue.ResourceVersion == rv
	}
	return false
}

func specHint(oldU, newU *unstructured.Unstructured) fwk.QueueingHint {
	if oldU == nil || !equality.Semantic.DeepEqual(oldU.Object["spec"], newU.Object["spec"]) {
		return fwk.Queue
	}
	return fwk.QueueSkip
}
