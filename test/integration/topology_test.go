package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/device/publisher"
	"github.com/tensorstack/t9k/pkg/localcluster"
)

// topoEnv is a gangEnv whose nodes are the local cluster's 2 spines × 2 blocks × 4 DGX H100
// nodes, with NodeDevices published by the device-agent's simulator.
func newTopoEnv(t *testing.T) *gangEnv {
	t.Helper()
	e := newGangEnv(t, 0, 0)
	for _, n := range localcluster.DefaultSpec().Nodes() {
		n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
		_, err := e.kc.CoreV1().Nodes().Create(e.ctx, n, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	c, err := client.New(e.cp.Config, client.Options{})
	require.NoError(t, err)
	require.NoError(t, devicev1beta1.AddToScheme(c.Scheme()))
	sim := &publisher.Simulator{
		Publisher: &publisher.Publisher{Client: c},
		Selector:  labels.SelectorFromSet(labels.Set{localcluster.LabelSimulated: "true"}),
		SysfsDir:  t.TempDir(),
	}
	st, err := sim.SyncOnce(e.ctx)
	require.NoError(t, err)
	require.Equal(t, 16, st.Created, "NodeDevices for every node")
	e.queue("default", 0, nil)
	return e
}

// occupy binds a pod holding gpus GPUs of node directly (as if placed earlier), with the GPU
// annotation a scheduler would have written.
func (e *gangEnv) occupy(node string, gpus int) {
	p := gangPod("default", "busy-"+node, "", "", int64(gpus))
	delete(p.Labels, v1beta1.LabelQueue)
	p.Spec.NodeName = node
	var refs []devicev1beta1.GPURef
	for i := 0; i < gpus; i++ {
		refs = append(refs, devicev1beta1.GPURef{Index: int32(i)})
	}
	p.Annotations = map[string]string{devicev1beta1.AnnotationGPUs: devicev1beta1.FormatGPUAnnotation(refs)}
	_, err := e.kc.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{})
	require.NoError(e.t, err)
}

// placement returns, for a group's bound pods, the blocks and spines they span, and checks each
// pod's GPU annotation against its node's NodeDevices: the right count, real indices, their UUIDs.
func (e *gangEnv) placement(group string, gpus int) (blocks, spines map[string]bool) {
	pods, err := e.kc.CoreV1().Pods("default").List(e.ctx, metav1.ListOptions{LabelSelector: labels.Set{v1beta1.LabelGroupName: group}.String()})
	require.NoError(e.t, err)
	c, err := client.New(e.cp.Config, client.Options{})
	require.NoError(e.t, err)
	require.NoError(e.t, devicev1beta1.AddToScheme(c.Scheme()))
	blocks, spines = map[string]bool{}, map[string]bool{}
	for _, p := range pods.Items {
		require.NotEmpty(e.t, p.Spec.NodeName, "%s not bound", p.Name)
		node, err := e.kc.CoreV1().Nodes().Get(e.ctx, p.Spec.NodeName, metav1.GetOptions{})
		require.NoError(e.t, err)
		blocks[node.Labels[localcluster.LabelBlock]] = true
		spines[node.Labels[localcluster.LabelSpine]] = true

		refs, err := devicev1beta1.ParseGPUAnnotation(p.Annotations[devicev1beta1.AnnotationGPUs])
		require.NoError(e.t, err)
		require.Len(e.t, refs, gpus, "%s: GPU annotation %q", p.Name, p.Annotations[devicev1beta1.AnnotationGPUs])
		var nd devicev1beta1.NodeDevices
		require.NoError(e.t, c.Get(e.ctx, client.ObjectKey{Name: p.Spec.NodeName}, &nd))
		uuids := map[int32]string{}
		for _, g := range nd.Status.GPUs {
			uuids[g.Index] = g.UUID
		}
		for _, r := range refs {
			require.Equal(e.t, uuids[r.Index], r.UUID, "%s: GPU %d's UUID matches NodeDevices of %s", p.Name, r.Index, p.Spec.NodeName)
		}
	}
	return blocks, spines
}

// TestTopologyWholeGangPlacement: on 2 spines × 2 blocks × 4 nodes × 8 GPUs with some GPUs taken,
// gangs land in the smallest domain that can take them, and a Required gang that cannot fit stays
// pending with the planner's reason.
func TestTopologyWholeGangPlacement(t *testing.T) {
	e := newTopoEnv(t)
	// block-0 (spine-0) loses half a node: it has 3 whole nodes left; blocks 1, 2, 3 are free.
	e.occupy("s0-b0-n0", 4)
	stop := startScheduler(t, e.cp)

	// 5 × 8 GPUs Required in one block fits the cluster but no block (4 nodes each): it stays
	// pending with the planner's reason and holds nothing; removing it frees the way for the rest.
	e.gang("default", "huge", "default", 5, 5, 8, func(pg *v1beta1.PodGroup) {
		pg.Spec.TopologyPolicy = &v1beta1.TopologyPolicy{Mode: v1beta1.TopologyRequired, Level: localcluster.LabelBlock}
	})
	cond := e.waitCondition("default", "huge", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonTopologyUnsatisfiable, "needs 40 GPUs (5 pods x 8) in one block")
	t.Logf("huge pending: %s", cond.Message)
	n, _ := e.bound("default", "huge")
	require.Zero(t, n)
	require.NoError(t, e.kc.CoreV1().Pods("default").DeleteCollection(e.ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: labels.Set{v1beta1.LabelGroupName: "huge"}.String()}))

	// 8 × 8 GPUs fits in no block (32 GPUs each) and in one spine only: spine-1 (spine-0 has 7
	// whole nodes). Preferred climbs to the spine.
	e.gang("default", "big", "default", 8, 8, 8, func(pg *v1beta1.PodGroup) {
		pg.Spec.TopologyPolicy = &v1beta1.TopologyPolicy{Mode: v1beta1.TopologyPreferred}
	})
	e.waitBound("default", "big", 8, 90*time.Second)
	blocks, spines := e.placement("big", 8)
	require.Equal(t, map[string]bool{"spine-1": true}, spines, "the 8×8 gang stays in one spine")
	require.Len(t, blocks, 2)

	// 4 × 8 GPUs: block-1 is now the only block with four whole nodes.
	e.gang("default", "block", "default", 4, 4, 8, func(pg *v1beta1.PodGroup) {
		pg.Spec.TopologyPolicy = &v1beta1.TopologyPolicy{Mode: v1beta1.TopologyPreferred}
	})
	e.waitBound("default", "block", 4, 90*time.Second)
	blocks, _ = e.placement("block", 8)
	require.Equal(t, map[string]bool{"block-1": true}, blocks, "the 4×8 gang lands entirely in the one block that can take it")

	// 4 × 4 GPUs Required in one block: only block-0 has room (3 whole nodes + half of n0).
	e.gang("default", "small", "default", 4, 4, 4, func(pg *v1beta1.PodGroup) {
		pg.Spec.TopologyPolicy = &v1beta1.TopologyPolicy{Mode: v1beta1.TopologyRequired, Level: localcluster.LabelBlock}
	})
	e.waitBound("default", "small", 4, 90*time.Second)
	blocks, _ = e.placement("small", 4)
	require.Equal(t, map[string]bool{"block-0": true}, blocks)

	// A restarted scheduler rebuilds which GPUs are taken from the pods' annotations: a new gang
	// gets only GPUs no running pod holds.
	stop()
	startScheduler(t, e.cp)
	e.gang("default", "after", "default", 2, 2, 2, nil)
	e.waitBound("default", "after", 2, 90*time.Second)
	e.placement("after", 2)
	pods, err := e.kc.CoreV1().Pods("default").List(e.ctx, metav1.ListOptions{})
	require.NoError(t, err)
	held := map[string]string{}
	for _, p := range pods.Items {
		refs, err := devicev1beta1.ParseGPUAnnotation(p.Annotations[devicev1beta1.AnnotationGPUs])
		require.NoError(t, err)
		for _, r := range refs {
			key := fmt.Sprintf("%s/%d", p.Spec.NodeName, r.Index)
			require.Empty(t, held[key], "GPU %s given to both %s and %s", key, held[key], p.Name)
			held[key] = p.Name
		}
	}

}
