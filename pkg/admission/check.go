package admission

import (
	"fmt"
	"slices"
	"sort"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	resourcehelper "k8s.io/component-helpers/resource"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/queuestatus"
)

// Input is everything one admission decision looks at, gathered by the handler.
type Input struct {
	Kind      string               // "Pod", "PodGroup", "PyTorchTrainingJob", ...
	Resource  schema.GroupResource // of the object, for resource-shape rules
	Namespace *corev1.Namespace
	QueueName string
	Queue     *schedv1beta1.Queue // nil: not found
	// QueueNamespace is where queues live, for the not-found message.
	QueueNamespace string
	Allocated      corev1.ResourceList
	Replicas       []Replica
	// Shape is the queue's resource-shape profile; nil when it has none.
	Shape *Profile
	// ShapeError explains why the queue's profile could not be read.
	ShapeError error
}

// Check returns the first rule the workload breaks, as the message the user sees, or nil.
func Check(in Input) error {
	q := in.Queue
	if q == nil {
		return fmt.Errorf("queue %q does not exist (queues live in namespace %s)", in.QueueName, in.QueueNamespace)
	}
	if q.Spec.Closed {
		return fmt.Errorf("queue %q is closed and accepts no new workloads", q.Name)
	}
	if !NamespaceAllowed(q.Spec.NamespaceSelector, in.Namespace) {
		return fmt.Errorf("namespace %q may not use queue %q: the queue's namespaceSelector does not select it", in.Namespace.Name, q.Name)
	}
	quota := q.Spec.QuotaRequests()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, limited := quota[r]; !limited {
			continue
		}
		if where := firstUndeclared(in, r, false); where != "" {
			return fmt.Errorf("queue %q has a %s quota, so every container must declare requests.%s; %s does not", q.Name, r, r, where)
		}
	}
	if in.ShapeError != nil {
		return in.ShapeError
	}
	if in.Shape != nil {
		if err := checkShape(in, in.Shape); err != nil {
			return err
		}
	}
	asked := totalRequests(in.Replicas)
	for _, name := range sortedNames(quota) {
		a := asked[name]
		if a.Sign() <= 0 {
			continue
		}
		left := quota[name].DeepCopy()
		left.Sub(in.Allocated[name])
		if a.Cmp(left) > 0 {
			if left.Sign() < 0 {
				left = resource.Quantity{}
			}
			return fmt.Errorf("queue %q has not enough %s left: asked %s, left %s (quota %s, allocated %s)",
				q.Name, name, a.String(), left.String(), ptrString(quota[name]), ptrString(in.Allocated[name]))
		}
	}
	return nil
}

func ptrString(q resource.Quantity) string { return q.String() }

// NamespaceAllowed applies a queue's namespaceSelector: unset or empty selects no namespace, so a
// new queue stays private until an admin opens it.
func NamespaceAllowed(sel *metav1.LabelSelector, ns *corev1.Namespace) bool {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) || ns == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(ns.Labels))
}

// totalRequests is the sum over replica groups of count × one pod's requests.
func totalRequests(reps []Replica) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, r := range reps {
		out = queuestatus.Add(out, queuestatus.PodRequests(r.Spec), r.Count)
	}
	return out
}

func podLimits(spec *corev1.PodSpec) corev1.ResourceList {
	return resourcehelper.PodLimits(&corev1.Pod{Spec: *spec}, resourcehelper.PodResourcesOptions{})
}

// firstUndeclared names the first container (of any replica) that declares no request (limitsOnly
// false: a request or a limit, which becomes the request) or no limit (limitsOnly true) for r.
func firstUndeclared(in Input, r corev1.ResourceName, limitsOnly bool) string {
	for _, rep := range in.Replicas {
		if rep.Count == 0 {
			continue
		}
		for _, c := range rep.Spec.Containers {
			_, hasLimit := c.Resources.Limits[r]
			_, hasRequest := c.Resources.Requests[r]
			if hasLimit || (!limitsOnly && hasRequest) {
				continue
			}
			return fmt.Sprintf("container %q of %s", c.Name, describe(in, rep))
		}
	}
	return ""
}

func describe(in Input, rep Replica) string {
	if in.Kind == "Pod" {
		return fmt.Sprintf("pod %q", rep.Name)
	}
	return fmt.Sprintf("replica %q", rep.Name)
}

var podsResource = schema.GroupResource{Group: "", Resource: "pods"}

func checkShape(in Input, p *Profile) error {
	q := in.Queue
	for _, rule := range p.Rules {
		perPod := rule.Matches(podsResource)
		whole := in.Kind != "Pod" && rule.Matches(in.Resource)
		if !perPod && !whole {
			continue
		}
		shape := rule.ResourceShape
		for _, kind := range []struct {
			name  string
			limit corev1.ResourceList
		}{{"requests", shape.Requests}, {"limits", shape.Limits}} {
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if _, set := kind.limit[r]; !set {
					continue
				}
				if where := firstUndeclared(in, r, kind.name == "limits"); where != "" {
					return fmt.Errorf("resource shape %q of queue %q sets %s.%s, so every container must declare it; %s does not",
						p.Name, q.Name, kind.name, r, where)
				}
			}
			sum := func(spec *corev1.PodSpec) corev1.ResourceList {
				if kind.name == "limits" {
					return podLimits(spec)
				}
				return queuestatus.PodRequests(spec)
			}
			for _, name := range sortedNames(kind.limit) {
				max := kind.limit[name]
				if perPod {
					for _, rep := range in.Replicas {
						if got := sum(rep.Spec)[name]; rep.Count > 0 && got.Cmp(max) > 0 {
							return fmt.Errorf("resource shape %q of queue %q allows at most %s.%s %s per pod; %s asks %s",
								p.Name, q.Name, kind.name, name, max.String(), describe(in, rep), got.String())
						}
					}
				}
				if whole {
					total := resource.Quantity{}
					for _, rep := range in.Replicas {
						total.Add(queuestatus.Scaled(sum(rep.Spec)[name], rep.Count))
					}
					if total.Cmp(max) > 0 {
						return fmt.Errorf("resource shape %q of queue %q allows at most %s.%s %s per %s; this one asks %s in total",
							p.Name, q.Name, kind.name, name, max.String(), in.Kind, total.String())
					}
				}
			}
		}
	}
	return nil
}

func sortedNames(l corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(l))
	for n := range l {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Profile is one entry of ConfigMap t9k-system/resource-shapes, key config.yaml.
type Profile struct {
	Name  string      `json:"name"`
	Rules []ShapeRule `json:"rules"`
}

// ShapeRule caps the resources of the objects it matches.
type ShapeRule struct {
	APIGroups     []string                    `json:"apiGroups"`
	Resources     []string                    `json:"resources"`
	ResourceShape corev1.ResourceRequirements `json:"resourceShape"`
}

// Matches says whether the rule applies to objects of gr ("*" matches any group or resource).
func (r ShapeRule) Matches(gr schema.GroupResource) bool {
	return (slices.Contains(r.APIGroups, "*") || slices.Contains(r.APIGroups, gr.Group)) &&
		(slices.Contains(r.Resources, "*") || slices.Contains(r.Resources, gr.Resource))
}

// ShapeConfig is the content of config.yaml.
type ShapeConfig struct {
	Profiles []Profile `json:"profiles"`
}
