package topology

import (
	"testing"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

func TestTopologyHints(t *testing.T) {
	p := &Topology{resource: "nvidia.com/gpu", cache: newGPUCache(levels, gpuRes), prios: groupstate.NewPriorities()}
	pod := func(node string, gpus int64, phase v1.PodPhase) *v1.Pod {
		req := v1.ResourceList{v1.ResourceCPU: resource.MustParse("1")}
		if gpus > 0 {
			req["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
		}
		return &v1.Pod{Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Resources: v1.ResourceRequirements{Requests: req, Limits: req}}}},
			Status: v1.PodStatus{Phase: phase}}
	}
	member := func(p *v1.Pod) *v1.Pod {
		p.Labels = map[string]string{schedv1beta1.LabelGroupName: "g"}
		return p
	}
	for name, tc := range map[string]struct {
		old, new *v1.Pod
		want     fwk.QueueingHint
	}{
		"GPU pod deleted":            {pod("n", 8, v1.PodRunning), nil, fwk.Queue},
		"CPU pod deleted":            {pod("n", 0, v1.PodRunning), nil, fwk.QueueSkip},
		"pending GPU pod deleted":    {pod("", 8, v1.PodPending), nil, fwk.QueueSkip},
		"pending GPU member deleted": {member(pod("", 8, v1.PodPending)), nil, fwk.Queue},
		"pending CPU member deleted": {member(pod("", 0, v1.PodPending)), nil, fwk.QueueSkip},
		"finished GPU pod deleted":   {pod("n", 8, v1.PodSucceeded), nil, fwk.QueueSkip},
		"GPU pod finished":           {pod("n", 8, v1.PodRunning), pod("n", 8, v1.PodSucceeded), fwk.Queue},
		"GPU pod status update":      {pod("n", 8, v1.PodPending), pod("n", 8, v1.PodRunning), fwk.QueueSkip},
		"pending pod's status write": {pod("", 8, v1.PodPending), pod("", 8, v1.PodPending), fwk.QueueSkip},
	} {
		var oldObj, newObj any
		if tc.old != nil {
			oldObj = tc.old
		}
		if tc.new != nil {
			newObj = tc.new
		}
		got, err := p.gpusFreed(klog.Background(), &v1.Pod{}, oldObj, newObj)
		if err != nil || got != tc.want {
			t.Errorf("%s: hint = %v, %v; want %v", name, got, err, tc.want)
		}
	}
}

// A hint that retries pods for freed GPUs applies the event to the GPU cache first: the cache's
// own handler on the informer may run after the scheduler's, and the retried gang must plan on
// the freed GPUs.
func TestGPUsFreedHintAppliesTheDeletionFirst(t *testing.T) {
	p := &Topology{resource: gpuRes, cache: newGPUCache(levels, gpuRes), prios: groupstate.NewPriorities()}
	p.cache.upsertNode(testNode("n0", "b0", "s0", 8))
	p.cache.upsertDevices(newDevicesView(pairedDevices("n0")))
	running := gpuPod("busy", "busy", "n0", 8, "")
	p.cache.observePod(running)
	free, _ := p.cache.freeOn("n0")
	if free != 0 {
		t.Fatalf("free before = %d", free)
	}
	got, err := p.gpusFreed(klog.Background(), gpuPod("pending", "pending", "", 8, ""), running, nil)
	if err != nil || got != fwk.Queue {
		t.Fatalf("hint = %v, %v", got, err)
	}
	if free, _ := p.cache.freeOn("n0"); free != 8 {
		t.Errorf("free after the hint = %d, want 8 (the hint must not wait for the cache's own handler)", free)
	}
}
