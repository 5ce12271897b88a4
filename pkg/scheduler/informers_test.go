package scheduler

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	dynfake "k8s.io/client-go/dynamic/fake"
	fwk "k8s.io/kube-scheduler/framework"
	kubescheduler "k8s.io/kubernetes/pkg/scheduler"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/profile"
)

// eventsOnly is a profile that answers EnqueueExtensions and nothing else.
type eventsOnly struct {
	framework.Framework
	exts []framework.EnqueueExtensions
}

func (f eventsOnly) EnqueueExtensions() []framework.EnqueueExtensions { return f.exts }

type registers []fwk.EventResource

func (registers) Name() string { return "registers" }
func (r registers) EventsToRegister(context.Context) ([]fwk.ClusterEventWithHint, error) {
	var out []fwk.ClusterEventWithHint
	for _, res := range r {
		out = append(out, fwk.ClusterEventWithHint{Event: fwk.ClusterEvent{Resource: res, ActionType: fwk.All}})
	}
	return out, nil
}

// The dynamic informer of a registered custom resource keeps its objects without managedFields,
// and no informer is made for a custom resource nobody registered.
func TestTrimDynamicInformers(t *testing.T) {
	podGroups := schema.GroupVersionResource{Group: "scheduler.tensorstack.dev", Version: "v1beta1", Resource: "podgroups"}
	queues := schema.GroupVersionResource{Group: "scheduler.tensorstack.dev", Version: "v1beta1", Resource: "queues"}
	pg := &unstructured.Unstructured{}
	pg.SetAPIVersion("scheduler.tensorstack.dev/v1beta1")
	pg.SetKind("PodGroup")
	pg.SetNamespace("default")
	pg.SetName("g")
	pg.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}})
	client := dynfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{podGroups: "PodGroupList", queues: "QueueList"}, pg)
	factory := dynamicinformer.NewDynamicSharedInformerFactory(client, 0)

	sched := &kubescheduler.Scheduler{Profiles: profile.Map{"t9k-scheduler": eventsOnly{exts: []framework.EnqueueExtensions{
		registers{fwk.Pod, fwk.Node, fwk.WildCard, fwk.CSIDriver, fwk.ResourceClaim, "podgroups.v1beta1.scheduler.tensorstack.dev"},
		registers{"podgroups.v1beta1.scheduler.tensorstack.dev"},
	}}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	require.NoError(t, trimDynamicInformers(ctx, factory, sched))
	factory.Start(ctx.Done())
	synced := factory.WaitForCacheSync(ctx.Done())
	require.Equal(t, map[schema.GroupVersionResource]bool{podGroups: true}, synced, "informers started")

	objs := factory.ForResource(podGroups).Informer().GetStore().List()
	require.Len(t, objs, 1)
	got := objs[0].(*unstructured.Unstructured)
	require.Equal(t, "g", got.GetName())
	require.Empty(t, got.GetManagedFields(), "managedFields kept")
}
