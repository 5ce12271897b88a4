package topology

import (
	"context"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/util"

	"github.com/tensorstack/t9k/pkg/plugins/gang"
	"github.com/tensorstack/t9k/pkg/scheduler/groupstate"
)

// nodeDevicesEvent is the scheduler's name for NodeDevices events.
var nodeDevicesEvent = fwk.EventResource("nodedevices.v1beta1.device.tensorstack.dev")

var _ framework.EnqueueExtensions = &Topology{}

// EventsToRegister: a pod T9kTopology turned away (no GPUs of a usable topology, no domain with
// room for its gang) can be helped only by GPUs coming free (a GPU pod leaving), a node or its
// devices appearing or changing, or its PodGroup's policy changing. Without this list every event
// of the cluster would retry it.
func (p *Topology) EventsToRegister(_ context.Context) ([]fwk.ClusterEventWithHint, error) {
	return []fwk.ClusterEventWithHint{
		{Event: fwk.ClusterEvent{Resource: fwk.Pod, ActionType: fwk.Delete | fwk.Update}, QueueingHintFn: p.gpusFreed},
		{Event: fwk.ClusterEvent{Resource: fwk.Node, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: groupstate.NodeChangeMayHelp},
		{Event: fwk.ClusterEvent{Resource: nodeDevicesEvent, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: devicesChanged},
		{Event: fwk.ClusterEvent{Resource: gang.PodGroupEvent, ActionType: fwk.Add | fwk.Update}, QueueingHintFn: groupstate.PodGroupSpecChanged},
	}, nil
}

// gpusFreed: an assigned pod holding GPUs deleted or finished.
func (p *Topology) gpusFreed(_ klog.Logger, _ *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldPod, newPod, err := util.As[*v1.Pod](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	leaving := oldPod
	if newPod != nil { // an update: only a finish frees anything
		if oldPod == nil || !finished(newPod) || finished(oldPod) {
			return fwk.QueueSkip, nil
		}
		leaving = newPod
	}
	if leaving.Spec.NodeName != "" && podGPUs(leaving, p.resource) > 0 && (newPod != nil || !finished(leaving)) {
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}

func finished(p *v1.Pod) bool {
	return p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
}

// devicesChanged: new NodeDevices, or a change of their GPUs (inventory, health); not of which
// GPUs are in use, which pod events already tell.
func devicesChanged(_ klog.Logger, _ *v1.Pod, oldObj, newObj any) (fwk.QueueingHint, error) {
	oldU, newU, err := util.As[*unstructured.Unstructured](oldObj, newObj)
	if err != nil {
		return fwk.Queue, err
	}
	if oldU == nil {
		return fwk.Queue, nil
	}
	if newU == nil {
		return fwk.QueueSkip, nil
	}
	oldGPUs, _, _ := unstructured.NestedFieldNoCopy(oldU.Object, "status", "gpus")
	newGPUs, _, _ := unstructured.NestedFieldNoCopy(newU.Object, "status", "gpus")
	if !equality.Semantic.DeepEqual(oldGPUs, newGPUs) {
		return fwk.Queue, nil
	}
	return fwk.QueueSkip, nil
}
