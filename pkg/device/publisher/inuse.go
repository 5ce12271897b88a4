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
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
)

// InUseFromPods lists the GPUs held by pods, from the scheduler's device.tensorstack.dev/gpus
// annotation. Finished pods hold nothing; a GPU claimed twice goes to the first pod by namespace/name.
// An annotated UUID wins over the index when they disagree, as the UUID is what the container got.
func InUseFromPods(pods []corev1.Pod, gpus []v1.GPU) []v1.GPUAllocation {
	byUUID := map[string]int32{}
	uuidOf := map[int32]string{}
	for _, g := range gpus {
		byUUID[g.UUID] = g.Index
		uuidOf[g.Index] = g.UUID
	}
	sorted := append([]corev1.Pod(nil), pods...)
	sort.Slice(sorted, func(i, j int) bool {
		if sorted[i].Namespace != sorted[j].Namespace {
			return sorted[i].Namespace < sorted[j].Namespace
		}
		return sorted[i].Name < sorted[j].Name
	})
	taken := map[int32]v1.GPUAllocation{}
	for _, pod := range sorted {
		if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
			continue
		}
		val, ok := pod.Annotations[v1.AnnotationGPUs]
		if !ok {
			continue
		}
		refs, err := v1.ParseGPUAnnotation(val)
		if err != nil {
			klog.V(2).InfoS("ignoring bad GPU annotation", "pod", klog.KObj(&pod), "err", err)
			continue
		}
		for _, r := range refs {
			idx := r.Index
			if i, ok := byUUID[r.UUID]; ok {
				idx = i
			}
			if _, dup := taken[idx]; dup {
				klog.InfoS("GPU annotated on two pods", "index", idx, "pod", klog.KObj(&pod), "holder", taken[idx].Namespace+"/"+taken[idx].Pod)
				continue
			}
			taken[idx] = v1.GPUAllocation{Index: idx, UUID: uuidOf[idx], Namespace: pod.Namespace, Pod: pod.Name}
		}
	}
	out := make([]v1.GPUAllocation, 0, len(taken))
	for _, a := range taken {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	if len(out) == 0 {
		return nil
	}
	return out
}

// ListPodsOnNode lists the pods bound to a node (a field selector the API server answers directly).
func ListPodsOnNode(ctx context.Context, c client.Reader, node string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.MatchingFields{"spec.nodeName": node}); err != nil {
		return nil, fmt.Errorf("list pods on %s: %w", node, err)
	}
	return pods.Items, nil
}
