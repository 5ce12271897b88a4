package queue

import (
	"context"
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

// PreemptionReason labels the preemption metric: victims of a higher-priority queue.
const PreemptionReason = "QueuePriority"

// victim is one whole gang that preemption may evict.
type victim struct {
	gang *groupstate.Gang
	pods []*v1.Pod
	gpus int64
}

// gpus counts a gang's accelerators (any extended resource named *gpu), the currency preemption
// minimizes.
func gpus(r groupstate.Res) int64 {
	var n int64
	for name, v := range r {
		if strings.HasSuffix(string(name), "gpu") {
			n += v
		}
	}
	return n
}

// candidates are the gangs the pending gang may evict: bound (not half placed, not already
// terminating) gangs of preemptible queues with a lower priority than prio, lowest PodGroup
// priority first, then fewest GPUs, then newest.
func (q *Queue) candidates(pending groupstate.GroupKey, prio int32) []victim {
	var out []victim
	for _, g := range q.state.Gangs() {
		if g.Key == pending {
			continue
		}
		qi := q.state.Queue(g.Queue)
		if qi == nil || !qi.Queue.Spec.IsPreemptible() || qi.Queue.Spec.Priority >= prio || g.Leaving > 0 {
			continue
		}
		v := victim{gang: g}
		usable := true
		for _, m := range g.Members {
			if m.Reserved {
				usable = false
				break
			}
			if m.Pod.Spec.NodeName != "" {
				v.pods = append(v.pods, m.Pod)
				v.gpus += gpus(m.Requests)
			}
		}
		if usable && len(v.pods) > 0 {
			out = append(out, v)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.gang.Priority != b.gang.Priority {
			return a.gang.Priority < b.gang.Priority
		}
		if a.gpus != b.gpus {
			return a.gpus < b.gpus
		}
		return a.gang.Created.After(b.gang.Created)
	})
	return out
}

// PostFilter evicts whole lower-priority gangs when, and only when, the whole pending gang then
// fits. It returns Unschedulable either way: the gang is retried once the victims are gone.
func (q *Queue) PostFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, _ framework.NodeToStatusReader) (*framework.PostFilterResult, *fwk.Status) {
	c := readCycle(cs)
	if !q.preemption || c == nil || c.blocked || c.queue == nil || q.handle == nil {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	gang, ok := q.state.Gang(pod)
	if !ok {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if _, backingOff := q.state.BackingOff(gang.Key); backingOff {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	if !q.state.PreemptibleBelow(c.queue.Queue.Spec.Priority) {
		// No candidate at all: return before snapshotting every gang and every node.
		return nil, fwk.NewStatus(fwk.Unschedulable, "preemption cannot help: no preemptible queue of lower priority runs pods")
	}
	nodes, err := q.handle.SnapshotSharedLister().NodeInfos().List()
	if err != nil {
		return nil, fwk.AsStatus(err)
	}
	plan := q.plan(gang, pod, c.queue.Queue.Spec.Priority, nodes)
	logger := klog.FromContext(ctx)
	switch {
	case plan.waiting > 0:
		logger.V(3).Info("Pending gang waits for terminating pods", "podGroup", gang.Key, "terminating", plan.waiting)
		return nil, fwk.NewStatus(fwk.Unschedulable, fmt.Sprintf("waiting for %d terminating pods to leave", plan.waiting))
	case plan.victims == nil:
		logger.V(4).Info("Preemption cannot help", "podGroup", gang.Key, "reason", plan.why)
		return nil, fwk.NewStatus(fwk.Unschedulable, plan.why)
	}
	var names []string
	evicted, gpuCount := 0, int64(0)
	for _, v := range plan.victims {
		names = append(names, v.gang.Key.String())
		gpuCount += v.gpus
		for _, p := range v.pods {
			err := q.handle.ClientSet().CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				return nil, fwk.AsStatus(fmt.Errorf("evicting %s/%s: %w", p.Namespace, p.Name, err))
			}
			evicted++
			groupstate.Preemptions.WithLabelValues(PreemptionReason).Inc()
		}
		q.state.Event(v.gang.Key, v1.EventTypeWarning, v1beta1.ReasonPreempted,
			fmt.Sprintf("%d pods evicted for gang %s of queue %s (priority %d)", len(v.pods), gang.Key, gang.Queue, c.queue.Queue.Spec.Priority))
	}
	msg := fmt.Sprintf("preempting %d pods (%d GPUs) of %s from lower-priority queues; waiting for them to terminate", evicted, gpuCount, strings.Join(names, ", "))
	logger.V(2).Info("Preempted gangs", "podGroup", gang.Key, "victims", names)
	q.state.RecordPending(cs, gang.Key, v1beta1.ReasonPreempting, msg)
	return nil, fwk.NewStatus(fwk.Unschedulable, msg)
}

type preemptionPlan struct {
	victims []victim
	// waiting > 0: earlier victims still terminating already make room; evict nothing more.
	waiting int
	why     string
}

// plan chooses victims on a copy of the snapshot. The pending gang is the whole of it: members it
// has reserved are taken out and placed again together with those still to place.
func (q *Queue) plan(gang *groupstate.Gang, pod *v1.Pod, prio int32, nodes []fwk.NodeInfo) preemptionPlan {
	toPlace := gang.ToPlace(pod)
	own := map[types.UID]bool{}
	for _, m := range gang.Members {
		if m.Reserved {
			own[m.Pod.UID] = true
			toPlace = append(toPlace, m)
		}
	}
	terminating := 0
	for _, ni := range nodes {
		for _, pi := range ni.GetPods() {
			if pi.GetPod().DeletionTimestamp != nil {
				terminating++
			}
		}
	}
	fits := func(gone map[types.UID]bool) bool {
		f := q.state.NewFitter(nodes, func(p *v1.Pod) bool { return own[p.UID] || gone[p.UID] || p.DeletionTimestamp != nil })
		_, why := f.PlaceAll(toPlace)
		return why == ""
	}
	if terminating > 0 && fits(nil) {
		return preemptionPlan{waiting: terminating}
	}
	cands := q.candidates(gang.Key, prio)
	gone := map[types.UID]bool{}
	var chosen []int
	ok := false
	for i, v := range cands {
		for _, p := range v.pods {
			gone[p.UID] = true
		}
		chosen = append(chosen, i)
		if fits(gone) {
			ok = true
			break
		}
	}
	if !ok {
		return preemptionPlan{why: fmt.Sprintf("preemption cannot help: the gang does not fit even without all %d preemptible gangs of lower-priority queues", len(cands))}
	}
	// Give back every victim the gang does not need, latest-chosen (largest) first.
	for k := len(chosen) - 1; k >= 0; k-- {
		v := cands[chosen[k]]
		for _, p := range v.pods {
			delete(gone, p.UID)
		}
		if fits(gone) {
			chosen = append(chosen[:k], chosen[k+1:]...)
			continue
		}
		for _, p := range v.pods {
			gone[p.UID] = true
		}
	}
	plan := preemptionPlan{}
	for _, i := range chosen {
		plan.victims = append(plan.victims, cands[i])
	}
	return plan
}
