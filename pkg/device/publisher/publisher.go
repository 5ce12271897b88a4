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

// Package publisher writes a node's discovered devices to the API server: the NodeDevices object
// (owned by the Node, written only when something changed) and, optionally, GFD-compatible node
// labels. Simulator does the same for many simulated nodes from one process.
package publisher

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
)

// Publisher writes NodeDevices and node labels.
type Publisher struct {
	Client client.Client
	// PublishLabels adds nvidia.com/gpu.{product,count,memory,clique} to the Node, as GFD would.
	PublishLabels bool
	// Now stamps condition transitions; time.Now when nil.
	Now func() time.Time
}

// Result says what a Publish call wrote.
type Result struct {
	Created, Updated, LabelsChanged bool
}

// Publish looks the Node up and publishes status for it.
func (p *Publisher) Publish(ctx context.Context, nodeName string, status v1.NodeDevicesStatus) (Result, error) {
	var node corev1.Node
	if err := p.Client.Get(ctx, client.ObjectKey{Name: nodeName}, &node); err != nil {
		return Result{}, fmt.Errorf("get node %s: %w", nodeName, err)
	}
	return p.PublishForNode(ctx, &node, status)
}

// PublishForNode writes the NodeDevices named after node if it is missing or differs from status, and
// the labels if they differ. Writing nothing when nothing changed is what keeps restarts and resyncs
// of many agents from becoming write storms.
func (p *Publisher) PublishForNode(ctx context.Context, node *corev1.Node, status v1.NodeDevicesStatus) (Result, error) {
	var res Result
	now := metav1.NewTime(p.now().Truncate(time.Second))
	owner := metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}

	var cur v1.NodeDevices
	err := p.Client.Get(ctx, client.ObjectKey{Name: node.Name}, &cur)
	switch {
	case apierrors.IsNotFound(err):
		nd := &v1.NodeDevices{
			ObjectMeta: metav1.ObjectMeta{Name: node.Name, OwnerReferences: []metav1.OwnerReference{owner}},
			Status:     *status.DeepCopy(),
		}
		stampConditions(nil, nd.Status.Conditions, now)
		if err := p.Client.Create(ctx, nd); err != nil {
			return res, fmt.Errorf("create NodeDevices %s: %w", node.Name, err)
		}
		res.Created = true
		klog.V(2).InfoS("created NodeDevices", "node", node.Name, "gpus", nd.Status.GPUCount, "nics", nd.Status.NICCount)
	case err != nil:
		return res, fmt.Errorf("get NodeDevices %s: %w", node.Name, err)
	default:
		want := status.DeepCopy()
		stampConditions(cur.Status.Conditions, want.Conditions, now)
		owners, ownerChanged := withOwner(cur.OwnerReferences, owner)
		if !ownerChanged && equality.Semantic.DeepEqual(cur.Status, *want) {
			break
		}
		cur.Status = *want
		cur.OwnerReferences = owners
		if err := p.Client.Update(ctx, &cur); err != nil {
			return res, fmt.Errorf("update NodeDevices %s: %w", node.Name, err)
		}
		res.Updated = true
		klog.V(2).InfoS("updated NodeDevices", "node", node.Name, "gpus", cur.Status.GPUCount, "nics", cur.Status.NICCount)
	}

	if p.PublishLabels {
		changed, err := p.syncLabels(ctx, node, status)
		if err != nil {
			return res, err
		}
		res.LabelsChanged = changed
	}
	return res, nil
}

func (p *Publisher) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// stampConditions keeps the stored transition time of a condition whose status did not change.
func stampConditions(prev, conds []metav1.Condition, now metav1.Time) {
	for i := range conds {
		conds[i].LastTransitionTime = now
		for _, old := range prev {
			if old.Type == conds[i].Type && old.Status == conds[i].Status {
				conds[i].LastTransitionTime = old.LastTransitionTime
			}
		}
	}
}

// withOwner makes owner the only Node owner (a Node re-created under the same name has a new UID).
func withOwner(refs []metav1.OwnerReference, owner metav1.OwnerReference) ([]metav1.OwnerReference, bool) {
	var out []metav1.OwnerReference
	found := false
	for _, r := range refs {
		if r.APIVersion == owner.APIVersion && r.Kind == owner.Kind {
			if r.UID == owner.UID && r.Name == owner.Name && !found {
				found = true
				out = append(out, r)
			}
			continue
		}
		out = append(out, r)
	}
	if !found {
		out = append(out, owner)
	}
	return out, !found || len(out) != len(refs)
}

// Labels returns the GFD-compatible labels for status; a nil value means "remove".
func Labels(st v1.NodeDevicesStatus) map[string]*string {
	str := func(s string) *string { return &s }
	l := map[string]*string{
		v1.LabelGPUProduct: nil, v1.LabelGPUCount: nil, v1.LabelGPUMemory: nil, v1.LabelGPUClique: nil,
	}
	if st.GPUCount > 0 {
		l[v1.LabelGPUProduct] = str(st.GPUProduct)
		l[v1.LabelGPUCount] = str(strconv.Itoa(int(st.GPUCount)))
		l[v1.LabelGPUMemory] = str(strconv.FormatInt(st.GPUMemoryMiB, 10))
		if st.Clique != "" {
			l[v1.LabelGPUClique] = str(st.Clique)
		}
	}
	return l
}

func (p *Publisher) syncLabels(ctx context.Context, node *corev1.Node, st v1.NodeDevicesStatus) (bool, error) {
	patch := map[string]any{}
	for k, v := range Labels(st) {
		cur, has := node.Labels[k]
		switch {
		case v == nil && has:
			patch[k] = nil
		case v != nil && (!has || cur != *v):
			patch[k] = *v
		}
	}
	if len(patch) == 0 {
		return false, nil
	}
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": patch}})
	if err != nil {
		return false, err
	}
	if err := p.Client.Patch(ctx, node, client.RawPatch(types.MergePatchType, body)); err != nil {
		return false, fmt.Errorf("label node %s: %w", node.Name, err)
	}
	return true, nil
}
