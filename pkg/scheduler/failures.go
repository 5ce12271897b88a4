package scheduler

import (
	"context"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	podutil "k8s.io/kubernetes/pkg/api/v1/pod"
	kubescheduler "k8s.io/kubernetes/pkg/scheduler"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"
)

// failuresBeside takes the PodScheduled PATCH of a failed scheduling attempt out of the
// scheduling loop, when the failure changes no nomination.
//
// The framework's handler of a failed attempt puts the pod back in the queue, records the
// FailedScheduling event and, on a pod's first failure or a new message, PATCHes its PodScheduled
// condition, all in the loop. Under a saturating stream at 5000 nodes, with kube-apiserver busy on
// the binds t9k makes, the loop spent most of its time in those PATCHes, and new pods were left in
// the active queue never attempted when the cluster settled (README "Failed attempts").
//
// The handler still runs in the loop, unchanged, on a copy of the pod that already carries the
// condition it would write: it requeues the pod and records the event as ever, and finds nothing
// to PATCH. The PATCH (the same condition, built as the framework builds it) is then made beside
// the loop. A pod's PATCHes are made one after another, in the order of its attempts, so its
// condition ends with its latest message.
//
// Left entirely to the framework, in the loop: a failure that nominates a node or whose pod
// carries a nomination (a preemptor's nomination and its status must not lag; upstream's async
// API calls were disabled in 1.34 for a regression of that kind, kubernetes#134400), and any PATCH
// while all slots are busy (back-pressure on the apiserver).
type failuresBeside struct {
	next  kubescheduler.FailureHandlerFn
	slots chan struct{}

	mu sync.Mutex
	// last holds, per pod with a PATCH beside the loop, a channel closed when its latest ends.
	last map[types.UID]chan struct{}
}

// maxFailuresBeside bounds the PATCHes in flight beside the loop (the client's QPS is shared
// with binds).
const maxFailuresBeside = 16

func newFailuresBeside(next kubescheduler.FailureHandlerFn, slots int) *failuresBeside {
	return &failuresBeside{next: next, slots: make(chan struct{}, slots), last: map[types.UID]chan struct{}{}}
}

// installFailuresBeside wraps sched's FailureHandler.
func installFailuresBeside(sched *kubescheduler.Scheduler) {
	sched.FailureHandler = newFailuresBeside(sched.FailureHandler, maxFailuresBeside).handle
}

func (f *failuresBeside) handle(ctx context.Context, fw framework.Framework, podInfo *framework.QueuedPodInfo, status *fwk.Status, ni *framework.NominatingInfo, start time.Time) {
	pod := podInfo.Pod
	nominates := ni != nil && ni.NominatedNodeName != ""
	if nominates || pod.Status.NominatedNodeName != "" || status.AsError() == nil {
		f.afterPatches(ctx, pod.UID)
		f.next(ctx, fw, podInfo, status, ni, start)
		return
	}
	newStatus := pod.Status.DeepCopy()
	if !podutil.UpdatePodCondition(newStatus, failedCondition(pod, status)) {
		f.next(ctx, fw, podInfo, status, ni, start) // the framework has nothing to write either
		return
	}
	// A shallow copy: it shares the informer object's spec and metadata, which nothing writes, and
	// the queue holds it only until the PATCH's update replaces it; thousands of failures at once
	// (a full cluster's new pods) each kept a whole copy before.
	withCond := *pod
	withCond.Status = *newStatus
	pi := *podInfo.PodInfo
	pi.Pod = &withCond
	podInfo.PodInfo = &pi
	f.next(ctx, fw, podInfo, status, ni, start)

	patch := func(ctx context.Context) {
		if err := util.PatchPodStatus(ctx, fw.ClientSet(), pod.Name, pod.Namespace, &pod.Status, newStatus); err != nil {
			utilruntime.HandleErrorWithContext(ctx, err, "Error updating pod", "pod", klog.KObj(pod))
		}
	}
	select {
	case f.slots <- struct{}{}:
	default:
		f.afterPatches(ctx, pod.UID)
		patch(ctx)
		return
	}
	prev, done := f.chain(pod.UID)
	// The loop cancels ctx when the attempt returns; the PATCH must outlive it.
	bctx := context.WithoutCancel(ctx)
	go func() {
		defer func() { <-f.slots }()
		defer f.finish(pod.UID, done)
		if prev != nil {
			<-prev
		}
		patch(bctx)
	}()
}

// failedCondition is the condition the framework writes for a failed attempt
// (handleSchedulingFailure in k8s.io/kubernetes/pkg/scheduler).
func failedCondition(pod *v1.Pod, status *fwk.Status) *v1.PodCondition {
	reason := v1.PodReasonSchedulerError
	if status.IsRejected() {
		reason = v1.PodReasonUnschedulable
	}
	return &v1.PodCondition{
		Type:               v1.PodScheduled,
		ObservedGeneration: podutil.CalculatePodConditionObservedGeneration(&pod.Status, pod.Generation, v1.PodScheduled),
		Status:             v1.ConditionFalse,
		Reason:             reason,
		Message:            status.Message(),
	}
}

// afterPatches returns once the pod's PATCHes beside the loop have ended.
func (f *failuresBeside) afterPatches(ctx context.Context, uid types.UID) {
	f.mu.Lock()
	prev := f.last[uid]
	f.mu.Unlock()
	if prev != nil {
		select {
		case <-prev:
		case <-ctx.Done():
		}
	}
}

// chain registers a new PATCH of uid and returns the channel of the one before it (nil when
// none runs) and the new one's own.
func (f *failuresBeside) chain(uid types.UID) (prev, done chan struct{}) {
	done = make(chan struct{})
	f.mu.Lock()
	prev = f.last[uid]
	f.last[uid] = done
	f.mu.Unlock()
	return prev, done
}

func (f *failuresBeside) finish(uid types.UID, done chan struct{}) {
	f.mu.Lock()
	if f.last[uid] == done {
		delete(f.last, uid)
	}
	f.mu.Unlock()
	close(done)
}
