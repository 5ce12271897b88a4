package topology

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/gang"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

var _ framework.EnqueueExtensions = &Topology{}

// EventsToRegister: a pod T9kTopology turned away (no GPUs of a usable topology, no domain with
// room for its gang) can be helped only by GPUs coming free (a GPU pod leaving), a node appearing
// or changing (a node's GPUs appear in its allocatable when its device plugin registers), or its
// PodGroup's policy changing. Without this list every event of the cluster would retry it.
// NodeDevices events are not registered: the scheduler would keep a second, dynamic copy of every
// node's device inventory (about 0.3 KiB per GPU) only to learn what the Node event says too.
func (p *Topology) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete | fwk.Update}, QueueingHintFn: p.gpusFreed},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: groupstate.NodeChangeMayHelp},
		{Event: fwk.ClusterEvent{Resource: gang.PodGroupEvent, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: p.groups.PodGroupSpecChanged},
	}, nil
}

// gpusFreed: an assigned pod holding GPUs deleted or finished, or a pending gang member asking for
// GPUs deleted (its gang's plan may have held GPUs for it, released on its deletion).
func (p *Topology) gpusFreed(_ klog.Logger, _ *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldPod, newPod, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	// The GPU cache is fed by its own handler on the same informer, which may run after this
	// hint: apply the event first (idempotent), so the retried pod plans on the freed GPUs.
	apply := func() {
		if newPod == nil {
			p.onPod(oldPod, true)
		} else {
			p.onPod(newPod, false)
		}
	}
	if leaving := groupstate.LeavingPod(oldPod, newPod); leaving != nil && podGPUs(leaving, p.resource) > 0 {
		apply()
		return fwk.Queue, nil
	}
	if newPod == nil && oldPod != nil && oldPod.Spec.NodeName == "" && oldPod.Labels[schedv1beta1.LabelGroupName] != "" && podGPUs(oldPod, p.resource) > 0 {
		apply()
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}
