package groupstate

import (
	"fmt"
	"sort"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
)

// Res is an amount per resource: millicores for cpu, plain units (bytes, devices) for the rest.
type Res map[v1.ResourceName]int64

// Amount converts a quantity to Res units.
func Amount(name v1.ResourceName, q resource.Quantity) int64 {
	if name == v1.ResourceCPU {
		return q.MilliValue()
	}
	return q.Value()
}

// ToRes converts a ResourceList.
func ToRes(rl v1.ResourceList) Res {
	r := make(Res, len(rl))
	for name, q := range rl {
		r[name] = Amount(name, q)
	}
	return r
}

// PodRequests is what the pod requests, as the scheduler counts it (init containers, overhead).
func PodRequests(pod *v1.Pod) Res {
	return ToRes(resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{}))
}

// Add adds o to r.
func (r Res) Add(o Res) {
	for k, v := range o {
		r[k] += v
	}
}

// Sub subtracts o from r.
func (r Res) Sub(o Res) {
	for k, v := range o {
		r[k] -= v
	}
}

// Clone copies r (nil stays nil).
func (r Res) Clone() Res {
	if r == nil {
		return nil
	}
	c := make(Res, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

// Format renders an amount of one resource for people: cores, Gi, or a count.
func Format(name v1.ResourceName, v int64) string {
	switch {
	case name == v1.ResourceCPU:
		return resource.NewMilliQuantity(v, resource.DecimalSI).String()
	case name == v1.ResourceMemory || name == v1.ResourceEphemeralStorage || strings.HasPrefix(string(name), "hugepages-"):
		return resource.NewQuantity(v, resource.BinarySI).String()
	}
	return fmt.Sprint(v)
}

// String renders r with sorted resource names, e.g. "cpu=4, nvidia.com/gpu=8".
func (r Res) String() string {
	parts := make([]string, 0, len(r))
	for _, k := range sortedKeys(r) {
		if r[k] != 0 {
			parts = append(parts, string(k)+"="+Format(k, r[k]))
		}
	}
	return strings.Join(parts, ", ")
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return ks[i] < ks[j] })
	return ks
}
