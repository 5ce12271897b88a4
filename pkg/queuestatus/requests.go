package queuestatus

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	resourcehelper "k8s.io/component-helpers/resource"
)

// PodRequests is what one pod built from spec asks of a queue: the scheduler's view of its
// requests (containers summed, init containers and sidecars folded in, overhead added), where a
// container that sets only a limit counts it as its request, as the apiserver defaults it on a real
// pod. Templates inside jobs are not defaulted yet, hence the fallback here.
func PodRequests(spec *corev1.PodSpec) corev1.ResourceList {
	pod := &corev1.Pod{Spec: *spec.DeepCopy()}
	defaultRequests(pod.Spec.Containers)
	defaultRequests(pod.Spec.InitContainers)
	return resourcehelper.PodRequests(pod, resourcehelper.PodResourcesOptions{})
}

func defaultRequests(cs []corev1.Container) {
	for i := range cs {
		r := &cs[i].Resources
		for name, q := range r.Limits {
			if _, ok := r.Requests[name]; ok {
				continue
			}
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			r.Requests[name] = q.DeepCopy()
		}
	}
}

// Add adds b, times n, into a (allocating a when nil) and returns a.
func Add(a corev1.ResourceList, b corev1.ResourceList, n int64) corev1.ResourceList {
	if a == nil {
		a = corev1.ResourceList{}
	}
	for name, q := range b {
		sum := a[name]
		for range n {
			sum.Add(q)
		}
		a[name] = sum
	}
	return a
}

// Scaled returns q times n.
func Scaled(q resource.Quantity, n int64) resource.Quantity {
	out := resource.Quantity{Format: q.Format}
	for range n {
		out.Add(q)
	}
	return out
}
