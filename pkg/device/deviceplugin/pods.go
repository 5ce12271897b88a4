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

package deviceplugin

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
)

// AnnotationAssigned marks a pod whose annotated GPUs the device plugin has handed to the kubelet, so
// the next admission does not pick the same pod again.
const AnnotationAssigned = "device.tensorstack.dev/assigned"

// Assignment is the scheduler's GPU choice for one pod.
type Assignment struct {
	Namespace, Name string
	GPUs            []v1.GPURef
}

// Key is namespace/name.
func (a *Assignment) Key() string { return a.Namespace + "/" + a.Name }

// PodAssigner finds the pod the kubelet is admitting and marks it once its GPUs are handed out.
type PodAssigner interface {
	// Candidate returns the pod being admitted for a request of size devices of resource, or nil
	// when no pod carries a matching annotation.
	Candidate(ctx context.Context, resource string, size int) (*Assignment, error)
	// MarkAssigned records that the pod's GPUs were allocated.
	MarkAssigned(ctx context.Context, a *Assignment) error
}

// KubePods is the PodAssigner on the API server. The kubelet gives no pod identity with its calls, so
// the pod is found as HAMi and Volcano find it: pending on this node, annotated with as many GPUs as
// requested, requesting that many in one container, not yet marked assigned; oldest first, as the
// kubelet admits pods in the order they were bound, which follows creation for most workloads.
type KubePods struct {
	Client   client.Client
	NodeName string
}

// Candidate implements PodAssigner.
func (k *KubePods) Candidate(ctx context.Context, resource string, size int) (*Assignment, error) {
	var pods corev1.PodList
	// Uncached client: the annotation was written moments ago (PreBind), a cache could lag behind.
	if err := k.Client.List(ctx, &pods, client.MatchingFields{"spec.nodeName": k.NodeName}); err != nil {
		return nil, fmt.Errorf("list pods on %s: %w", k.NodeName, err)
	}
	var cands []*corev1.Pod
	refsOf := map[*corev1.Pod][]v1.GPURef{}
	for i := range pods.Items {
		pod := &pods.Items[i]
		if pod.DeletionTimestamp != nil || (pod.Status.Phase != corev1.PodPending && pod.Status.Phase != "") ||
			pod.Annotations[AnnotationAssigned] == "true" {
			continue
		}
		val, ok := pod.Annotations[v1.AnnotationGPUs]
		if !ok {
			continue
		}
		refs, err := v1.ParseGPUAnnotation(val)
		if err != nil {
			klog.InfoS("ignoring pod with a bad GPU annotation", "pod", klog.KObj(pod), "err", err)
			continue
		}
		if len(refs) != size || !requestsInOneContainer(pod, corev1.ResourceName(resource), int64(size)) {
			continue
		}
		cands = append(cands, pod)
		refsOf[pod] = refs
	}
	if len(cands) == 0 {
		return nil, nil
	}
	sort.Slice(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		return a.Name < b.Name
	})
	if len(cands) > 1 {
		klog.V(1).InfoS("several pods could be the one admitted; taking the oldest", "pod", klog.KObj(cands[0]), "candidates", len(cands))
	}
	return &Assignment{Namespace: cands[0].Namespace, Name: cands[0].Name, GPUs: refsOf[cands[0]]}, nil
}

// requestsInOneContainer: the kubelet allocates per container, so a pod whose GPUs are split over
// several containers never asks for its whole annotated set at once (see the package doc).
func requestsInOneContainer(pod *corev1.Pod, res corev1.ResourceName, n int64) bool {
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			if q, ok := c.Resources.Limits[res]; ok && q.Value() == n {
				return true
			}
			if q, ok := c.Resources.Requests[res]; ok && q.Value() == n {
				return true
			}
		}
	}
	return false
}

// MarkAssigned implements PodAssigner with a merge patch of the annotation.
func (k *KubePods) MarkAssigned(ctx context.Context, a *Assignment) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{AnnotationAssigned: "true"}}})
	if err != nil {
		return err
	}
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name = a.Namespace, a.Name
	return k.Client.Patch(ctx, pod, client.RawPatch(types.MergePatchType, patch))
}
