/*
Copyright 2026 The t9k Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package publisher

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
)

func newClient(t *testing.T, objs ...client.Object) client.Client {
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, v1.AddToScheme(s))
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

func status(gpus int, clique string) v1.NodeDevicesStatus {
	st := v1.NodeDevicesStatus{GPUCount: int32(gpus), GPUProduct: "NVIDIA-H100-80GB-HBM3", GPUMemoryMiB: 81559, Clique: clique,
		Conditions: []metav1.Condition{{Type: v1.ConditionNVMLAvailable, Status: metav1.ConditionTrue, Reason: v1.ReasonNVMLReady, Message: "ok"}}}
	for i := 0; i < gpus; i++ {
		st.GPUs = append(st.GPUs, v1.GPU{Index: int32(i), UUID: "GPU-" + string(rune('a'+i)), Product: st.GPUProduct, Health: v1.GPUHealth{Healthy: true}})
	}
	return st
}

func TestPublishWritesOnlyOnChange(t *testing.T) {
	ctx := context.Background()
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "uid-1", Labels: map[string]string{"keep": "me", v1.LabelGPUClique: "stale.1"}}}
	c := newClient(t, node)
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := &Publisher{Client: c, PublishLabels: true, Now: func() time.Time { return clock }}

	res, err := p.Publish(ctx, "n1", status(8, ""))
	require.NoError(t, err)
	assert.Equal(t, Result{Created: true, LabelsChanged: true}, res)

	var nd v1.NodeDevices
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "n1"}, &nd))
	assert.Equal(t, []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n1", UID: "uid-1"}}, nd.OwnerReferences)
	assert.True(t, (clock).Equal(nd.Status.Conditions[0].LastTransitionTime.Time), "transition time %v", nd.Status.Conditions[0].LastTransitionTime)
	rv := nd.ResourceVersion

	var got corev1.Node
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "n1"}, &got))
	assert.Equal(t, map[string]string{"keep": "me", v1.LabelGPUProduct: "NVIDIA-H100-80GB-HBM3", v1.LabelGPUCount: "8", v1.LabelGPUMemory: "81559"}, got.Labels)

	// Same status later: nothing is written, and the condition keeps its time.
	clock = clock.Add(time.Hour)
	res, err = p.PublishForNode(ctx, &got, status(8, ""))
	require.NoError(t, err)
	assert.Equal(t, Result{}, res)
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "n1"}, &nd))
	assert.Equal(t, rv, nd.ResourceVersion)

	// A change (clique appears) is written, labels follow.
	res, err = p.PublishForNode(ctx, &got, status(8, "c.1"))
	require.NoError(t, err)
	assert.Equal(t, Result{Updated: true, LabelsChanged: true}, res)
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "n1"}, &nd))
	assert.Equal(t, "c.1", nd.Status.Clique)
	assert.True(t, (clock.Add(-time.Hour)).Equal(nd.Status.Conditions[0].LastTransitionTime.Time), "transition time %v", nd.Status.Conditions[0].LastTransitionTime)

	// A condition flip gets a new transition time.
	st := status(0, "")
	st.Conditions[0].Status = metav1.ConditionFalse
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "n1"}, &got))
	_, err = p.PublishForNode(ctx, &got, st)
	require.NoError(t, err)
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "n1"}, &nd))
	assert.True(t, (clock).Equal(nd.Status.Conditions[0].LastTransitionTime.Time), "transition time %v", nd.Status.Conditions[0].LastTransitionTime)
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "n1"}, &got))
	assert.Equal(t, map[string]string{"keep": "me"}, got.Labels, "no GPUs: GFD labels removed")
}

// Adoption of a recreated node is tested on the real apiserver (test/integration
// TestPublisherAdoptsRecreatedNode).

func TestInUseFromPods(t *testing.T) {
	gpus := status(4, "").GPUs // UUIDs GPU-a .. GPU-d
	pod := func(ns, name, ann string, phase corev1.PodPhase) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{v1.AnnotationGPUs: ann}},
			Status: corev1.PodStatus{Phase: phase}}
	}
	got := InUseFromPods([]corev1.Pod{
		pod("b", "p2", "3:GPU-d", corev1.PodRunning),
		pod("a", "p1", "0:GPU-a,2:GPU-c", corev1.PodRunning),
		pod("a", "done", "1:GPU-b", corev1.PodSucceeded),
		pod("c", "dup", "0:GPU-a", corev1.PodPending),
		pod("c", "moved", "1:GPU-c", corev1.PodPending), // UUID wins: GPU-c is index 2, already taken
		pod("c", "bad", "x", corev1.PodPending),
	}, gpus)
	assert.Equal(t, []v1.GPUAllocation{
		{Index: 0, UUID: "GPU-a", Namespace: "a", Pod: "p1"},
		{Index: 2, UUID: "GPU-c", Namespace: "a", Pod: "p1"},
		{Index: 3, UUID: "GPU-d", Namespace: "b", Pod: "p2"},
	}, got)
}

func TestGPUAnnotationRoundTrip(t *testing.T) {
	refs := []v1.GPURef{{Index: 3, UUID: "GPU-d"}, {Index: 0, UUID: "GPU-a"}}
	s := v1.FormatGPUAnnotation(refs)
	assert.Equal(t, "0:GPU-a,3:GPU-d", s)
	back, err := v1.ParseGPUAnnotation(s)
	require.NoError(t, err)
	assert.Equal(t, []v1.GPURef{{Index: 0, UUID: "GPU-a"}, {Index: 3, UUID: "GPU-d"}}, back)
	_, err = v1.ParseGPUAnnotation("a:b")
	assert.Error(t, err)
	assert.Equal(t, []string{"mlx5_0", "mlx5_3"}, v1.ParseNICAnnotation(" mlx5_0, mlx5_3,"))
}
