package scheduler

import (
	"context"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	fwk "k8s.io/kube-scheduler/framework"
	kubescheduler "k8s.io/kubernetes/pkg/scheduler"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
)

// trimDynamicInformers drops managedFields from the objects of the dynamic informers the
// framework made for the custom resources its plugins register events on (our PodGroups and
// Queues). The framework keeps those objects, as unstructured maps, only to hand them to queueing
// hints, which never read managedFields; in a 5000-node gang backlog they were about half of that
// informer's 8 MB (README "Memory"). It must run before the informers start, and touches only the
// resources some profile registered: asking the factory for any other would start an informer.
func trimDynamicInformers(ctx context.Context, dyn dynamicinformer.DynamicSharedInformerFactory, sched *kubescheduler.Scheduler) error {
	if dyn == nil {
		return nil
	}
	for _, r := range customResources(ctx, sched) {
		gvr, _ := schema.ParseResourceArg(string(r))
		if gvr == nil {
			continue // not "<plural>.<version>.<group>": the framework registers nothing for it either
		}
		if err := dyn.ForResource(*gvr).Informer().SetTransform(crcache.TransformStripManagedFields()); err != nil {
			return fmt.Errorf("trimming the %s informer: %w", r, err)
		}
	}
	return nil
}

// builtIn are the resources the framework watches through its typed informers (the cases of its
// addAllEventHandlers); it falls back to a dynamic informer for any other.
var builtIn = map[fwk.EventResource]bool{
	fwk.Pod: true, fwk.Node: true, fwk.PersistentVolume: true, fwk.PersistentVolumeClaim: true,
	fwk.CSINode: true, fwk.CSIDriver: true, fwk.VolumeAttachment: true, fwk.CSIStorageCapacity: true,
	fwk.StorageClass: true, fwk.ResourceClaim: true, fwk.ResourceSlice: true, fwk.DeviceClass: true,
	fwk.WildCard: true,
}

// customResources lists the resources of the profiles' registered events that the framework
// watches through dynamic informers (every one it has no typed informer for).
func customResources(ctx context.Context, sched *kubescheduler.Scheduler) []fwk.EventResource {
	seen := map[fwk.EventResource]bool{}
	var out []fwk.EventResource
	for _, prof := range sched.Profiles {
		for _, ext := range prof.EnqueueExtensions() {
			events, err := ext.EventsToRegister(ctx)
			if err != nil {
				continue // the framework logs it and registers nothing for the plugin either
			}
			for _, e := range events {
				r := e.Event.Resource
				if builtIn[r] || seen[r] {
					continue
				}
				seen[r] = true
				out = append(out, r)
			}
		}
	}
	return out
}
