package workloads

import (
	"fmt"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// PreviewPod is a pod the controller would create for a job.
type PreviewPod struct {
	Pod *corev1.Pod
	// TemplatePath is the JSON path of the template it is built from (spec.worker.template), ""
	// for a template the kind derives (the MPI launcher's, from the worker's).
	TemplatePath string
}

// Preview builds, with no client, the first and the last pod of each replica group of a job, as
// the controller will: what admission validates before the job is stored. obj is one of the job
// kinds; namespace is used when the object has none yet.
func Preview(obj client.Object, namespace string) (out []PreviewPod, err error) {
	job := adapterFor(obj)
	if job == nil {
		return nil, fmt.Errorf("%T is not a job kind", obj)
	}
	defer func() {
		// Hostile specs must not take the webhook down; say what broke instead.
		if r := recover(); r != nil {
			out, err = nil, fmt.Errorf("building the job's pods: %v", r)
		}
	}()
	if job.Object().GetNamespace() == "" {
		job.Object().SetNamespace(namespace)
	}
	paths := map[*batch.PodTemplate]string{}
	for _, t := range batch.Templates(job.Object()) {
		if t.Pod != nil {
			paths[t.Pod] = t.Path
		}
	}
	c := clusterOf(job)
	for i := range c.Replicas {
		g := &c.Replicas[i]
		if g.Template == nil {
			// Pods this controller does not build from a pod template of its own (BeamJob's
			// submit pods come from its Job template through the Job controller).
			continue
		}
		indexes := []int{0}
		if g.Count > 1 {
			indexes = append(indexes, int(g.Count)-1)
		}
		for _, idx := range indexes {
			if g.Count == 0 {
				break
			}
			pod, err := buildPod(job, c, g, idx)
			if err != nil {
				return nil, err
			}
			out = append(out, PreviewPod{Pod: pod, TemplatePath: paths[g.Template]})
		}
	}
	return out, nil
}

// GroupCounts returns each replica group's type and pod count, after elastic scaling.
func GroupCounts(obj client.Object) map[string]int32 {
	job := adapterFor(obj)
	if job == nil {
		return nil
	}
	out := map[string]int32{}
	for _, g := range clusterOf(job).Replicas {
		out[g.Type] += g.Count
	}
	return out
}

// adapterFor wraps a copy of obj in its kind's adapter, or returns nil.
func adapterFor(obj client.Object) Job {
	for _, newJob := range Kinds {
		j := newJob()
		if reflect.TypeOf(j.Object()) == reflect.TypeOf(obj) {
			reflect.ValueOf(j.Object()).Elem().Set(reflect.ValueOf(obj.DeepCopyObject()).Elem())
			return j
		}
	}
	return nil
}

// JobWithRequiredTypes names the replica types a kind cannot run without (the workers of the
// launcher kinds: mpirun, deepspeed and colossalai have nobody to start otherwise).
type JobWithRequiredTypes interface {
	RequiredTypes() []string
}

// ValidateReplicas refuses a job with nothing to run, or without a replica type its kind needs.
func ValidateReplicas(obj client.Object) field.ErrorList {
	job := adapterFor(obj)
	if job == nil {
		return nil
	}
	c := clusterOf(job)
	paths := map[*batch.PodTemplate]string{}
	for _, t := range batch.Templates(job.Object()) {
		if t.Pod != nil {
			paths[t.Pod] = t.Path
		}
	}
	var errs field.ErrorList
	total := 0
	for _, g := range c.Replicas {
		total += int(g.Count)
	}
	if total == 0 && len(c.Replicas) > 0 {
		errs = append(errs, field.Invalid(field.NewPath("spec"), total, "the job has no replica to run: every replica count is 0"))
	}
	if k, ok := job.(JobWithReplicaRules); ok {
		errs = append(errs, k.ValidateReplicas(c, func(g *Replicas) *field.Path {
			return FieldPath(strings.TrimSuffix(paths[g.Template], ".template"))
		})...)
	}
	r, ok := job.(JobWithRequiredTypes)
	if !ok {
		return errs
	}
	for _, t := range r.RequiredTypes() {
		g := c.Group(t)
		switch {
		case g == nil:
			errs = append(errs, field.Required(field.NewPath("spec"), fmt.Sprintf("%s needs replica type %q", c.Kind, t)))
		case g.Count < 1:
			p := strings.TrimSuffix(paths[g.Template], ".template") + ".replicas"
			errs = append(errs, field.Invalid(field.NewPath(p), g.Count, fmt.Sprintf("%s needs at least one %s", c.Kind, t)))
		}
	}
	return errs
}

// JobWithReplicaRules is implemented by kinds with rules of their own about replica counts: the
// replica that decides the job must exist, a role that is one process has one pod. specPath gives
// the path of a group's entry (spec.replicaSpecs[1]).
type JobWithReplicaRules interface {
	ValidateReplicas(c *Cluster, specPath func(*Replicas) *field.Path) field.ErrorList
}

// countRule checks that replica type t has between lo and hi pods (hi < 0: no upper bound) when
// the job lists it, and that it is listed when lo > 0 and required.
func countRule(c *Cluster, specPath func(*Replicas) *field.Path, t string, lo, hi int32, required bool, why string) field.ErrorList {
	g := c.Group(t)
	if g == nil {
		if required {
			return field.ErrorList{field.Required(field.NewPath("spec", "replicaSpecs"), fmt.Sprintf("%s needs a %s replica: %s", c.Kind, t, why))}
		}
		return nil
	}
	if g.Count >= lo && (hi < 0 || g.Count <= hi) {
		return nil
	}
	want := fmt.Sprintf("at least %d %s", lo, t)
	switch {
	case lo == hi:
		want = fmt.Sprintf("exactly %d %s", lo, t)
	case hi >= 0 && lo == 0:
		want = fmt.Sprintf("at most %d %s", hi, t)
	}
	return field.ErrorList{field.Invalid(specPath(g).Child("replicas"), g.Count, fmt.Sprintf("%s needs %s: %s", c.Kind, want, why))}
}

// FieldPath turns "spec.replicaSpecs[0].template" into a field.Path ("" gives spec).
func FieldPath(s string) *field.Path {
	if s == "" {
		return field.NewPath("spec")
	}
	var p *field.Path
	for _, part := range strings.Split(s, ".") {
		name, rest, hasIdx := strings.Cut(part, "[")
		if p == nil {
			p = field.NewPath(name)
		} else {
			p = p.Child(name)
		}
		for hasIdx {
			var i int
			if n, _ := fmt.Sscanf(rest, "%d]", &i); n != 1 {
				break
			}
			p = p.Index(i)
			_, rest, hasIdx = strings.Cut(rest, "[")
		}
	}
	return p
}
