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

package v1beta1

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Pod annotations the scheduler writes at PreBind and the device plugin reads at Allocate.
const (
	// AnnotationGPUs lists the GPUs chosen for a pod: comma-separated "<index>:<uuid>", ordered by
	// index, e.g. "0:GPU-5e1c...,3:GPU-9a0f...". See FormatGPUAnnotation and ParseGPUAnnotation.
	AnnotationGPUs = "device.tensorstack.dev/gpus"
	// AnnotationNICs lists the RDMA NICs (ibdev names) chosen for a pod, comma-separated, e.g. "mlx5_0,mlx5_3".
	AnnotationNICs = "device.tensorstack.dev/nics"
)

// Node labels.
const (
	// LabelFixture on a Node names the simulated machine the device-agent publishes for it in
	// --simulate-nodes mode.
	LabelFixture = "device.tensorstack.dev/fixture"
	// LabelFixtureIndex on a Node picks the instance of a fixture, e.g. the GB200 tray number (0-based;
	// trays 0-17 share a rack and its NVLink clique).
	LabelFixtureIndex = "device.tensorstack.dev/fixture-index"

	// GFD-compatible labels, published by the agent with --publish-labels.
	LabelGPUProduct = "nvidia.com/gpu.product"
	LabelGPUCount   = "nvidia.com/gpu.count"
	LabelGPUMemory  = "nvidia.com/gpu.memory"
	LabelGPUClique  = "nvidia.com/gpu.clique"
)

// Conditions of NodeDevices.
const (
	// ConditionNVMLAvailable is True when NVML initialised; False with a reason otherwise.
	ConditionNVMLAvailable = "NVMLAvailable"

	ReasonNVMLReady      = "NVMLReady"
	ReasonNVMLNotFound   = "NVMLNotFound"
	ReasonNVMLInitFailed = "NVMLInitFailed"

	// MessageNVMLNotFound is also the agent's log line on a node without a driver.
	MessageNVMLNotFound = "NVML library not found: no NVIDIA driver on this node"
)

// GPURef names one GPU in AnnotationGPUs.
type GPURef struct {
	Index int32
	UUID  string
}

// FormatGPUAnnotation renders refs as the AnnotationGPUs value, ordered by index.
func FormatGPUAnnotation(refs []GPURef) string {
	sorted := append([]GPURef(nil), refs...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Index < sorted[j].Index })
	parts := make([]string, len(sorted))
	for i, r := range sorted {
		parts[i] = fmt.Sprintf("%d:%s", r.Index, r.UUID)
	}
	return strings.Join(parts, ",")
}

// ParseGPUAnnotation parses an AnnotationGPUs value. A bare index (no ":uuid") is accepted.
func ParseGPUAnnotation(v string) ([]GPURef, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	var refs []GPURef
	for _, part := range strings.Split(v, ",") {
		idx, uuid, _ := strings.Cut(strings.TrimSpace(part), ":")
		i, err := strconv.ParseInt(idx, 10, 32)
		if err != nil || i < 0 {
			return nil, fmt.Errorf("%s: bad GPU entry %q: want <index>:<uuid>", AnnotationGPUs, part)
		}
		refs = append(refs, GPURef{Index: int32(i), UUID: uuid})
	}
	return refs, nil
}

// ParseNICAnnotation parses an AnnotationNICs value.
func ParseNICAnnotation(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
