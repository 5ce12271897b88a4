package queuestatus

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// Terminated pods hold no resources any more.
func Terminated(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// CountPhases counts pods by phase; a pod not yet given a phase is Pending.
func CountPhases(pods []corev1.Pod) schedv1beta1.PodCounts {
	var c schedv1beta1.PodCounts
	for i := range pods {
		switch pods[i].Status.Phase {
		case corev1.PodRunning:
			c.Running++
		case corev1.PodSucceeded:
			c.Succeeded++
		case corev1.PodFailed:
			c.Failed++
		case corev1.PodUnknown:
			c.Unknown++
		default:
			c.Pending++
		}
	}
	return c
}

// Allocated sums the requests of the pods that are not terminated; with boundOnly, only of those
// already bound to a node.
func Allocated(pods []corev1.Pod, boundOnly bool) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := range pods {
		p := &pods[i]
		if Terminated(p) || (boundOnly && p.Spec.NodeName == "") {
			continue
		}
		out = Add(out, PodRequests(&p.Spec), 1)
	}
	return out
}

// QueueStatus is the status a queue should have given its members. Allocated counts pending pods
// too: admission compares new workloads against quota minus allocated, and a workload waiting in
// the queue has already been admitted against that quota. Existing conditions keep their
// transition times when unchanged.
func QueueStatus(q *schedv1beta1.Queue, m Members) schedv1beta1.QueueStatus {
	st := schedv1beta1.QueueStatus{
		Allocated:  Allocated(m.Pods, false),
		Conditions: append([]metav1.Condition(nil), q.Status.Conditions...),
		Pods:       CountPhases(m.Pods),
	}
	st.PodGroups.Total = int32(len(m.PodGroups))
	for i := range m.Pods {
		if m.Pods[i].Labels[schedv1beta1.LabelGroupName] == "" {
			st.PodGroups.Total++ // a virtual group of one
		}
	}
	closed := metav1.Condition{Type: schedv1beta1.QueueConditionClosed, Status: metav1.ConditionFalse,
		Reason: schedv1beta1.ReasonQueueOpen, Message: "Queue is open", ObservedGeneration: q.Generation}
	if q.Spec.Closed {
		closed.Status, closed.Reason, closed.Message = metav1.ConditionTrue, schedv1beta1.ReasonQueueClosed,
			"Queue is closed: new workloads are rejected and nothing new is allocated"
	}
	meta.SetStatusCondition(&st.Conditions, closed)
	meta.SetStatusCondition(&st.Conditions, Pressure(q.Spec.QuotaRequests(), st.Allocated, q.Generation))
	return st
}

// Pressure is the ResourcePressure condition: True when some resource's allocation exceeds
// ResourcePressureThresholdPercent of its quota; the message names the fullest resource.
func Pressure(quota, allocated corev1.ResourceList, generation int64) metav1.Condition {
	c := metav1.Condition{Type: schedv1beta1.QueueConditionResourcePressure, Status: metav1.ConditionFalse,
		Reason: schedv1beta1.ReasonQueueNoResourcePressure, Message: "Queue has sufficient resource quota",
		ObservedGeneration: generation}
	names := make([]string, 0, len(quota))
	for n := range quota {
		names = append(names, string(n))
	}
	sort.Strings(names)
	worst, worstName := 0.0, ""
	for _, n := range names {
		q, a := quota[corev1.ResourceName(n)], allocated[corev1.ResourceName(n)]
		if a.Sign() <= 0 {
			continue
		}
		ratio := 2.0 // anything allocated against a zero quota is over it
		if q.Sign() > 0 {
			ratio = a.AsApproximateFloat64() / q.AsApproximateFloat64()
		}
		if ratio > worst {
			worst, worstName = ratio, n
		}
	}
	if worst*100 > schedv1beta1.ResourcePressureThresholdPercent {
		q, a := quota[corev1.ResourceName(worstName)], allocated[corev1.ResourceName(worstName)]
		c.Status, c.Reason = metav1.ConditionTrue, schedv1beta1.ReasonQueueHasResourcePressure
		c.Message = fmt.Sprintf("Queue has allocated more than %d%% of its quota: %s %s of %s",
			schedv1beta1.ResourcePressureThresholdPercent, worstName, a.String(), q.String())
	}
	return c
}

// GroupCounts fills the counts and allocated of a PodGroup's status from its members, leaving the
// conditions (the scheduler's) as they are. Allocated counts bound members only: it is what the
// scheduler has placed.
func GroupCounts(st schedv1beta1.PodGroupStatus, pods []corev1.Pod) schedv1beta1.PodGroupStatus {
	c := CountPhases(pods)
	st.Pending, st.Running, st.Succeeded, st.Failed, st.Unknown = c.Pending, c.Running, c.Succeeded, c.Failed, c.Unknown
	st.Allocated = Allocated(pods, true)
	return st
}
