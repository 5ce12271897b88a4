package workloads

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// genericJob adapts GenericJob: user-defined replica types, success/failure rules, optional
// per-replica Services and $(…) substitution. Nothing is injected beyond what the user writes.
type genericJob struct{ *batch.GenericJob }

func newGenericJob() Job { return genericJob{&batch.GenericJob{}} }

func (j genericJob) Object() client.Object        { return j.GenericJob }
func (j genericJob) GVK() schema.GroupVersionKind { return batch.GroupVersion.WithKind("GenericJob") }
func (j genericJob) Common() *batch.CommonJobSpec { return &j.Spec.CommonJobSpec }
func (j genericJob) Status() *batch.JobStatus     { return &j.GenericJob.Status }
func (j genericJob) RunPolicy() RunPolicy         { return RunPolicy{CleanUpPolicy: j.Spec.CleanUpPolicy} }
func (j genericJob) Objects(c *Cluster) ([]client.Object, error) {
	return replicaServices(c, j.Spec.Service), nil
}

func (j genericJob) Replicas() []Replicas {
	out := make([]Replicas, 0, len(j.Spec.ReplicaSpecs))
	for i := range j.Spec.ReplicaSpecs {
		rs := &j.Spec.ReplicaSpecs[i]
		out = append(out, Replicas{
			Type: string(rs.Type), Count: deref32(rs.Replicas, 1), Template: &rs.Template,
			Restart: structRestart(rs.RestartPolicy),
		})
	}
	return out
}

func (j genericJob) MutatePod(c *Cluster, pod *corev1.Pod, g *Replicas, index int) error {
	sub := genericSubstitution{c: c, service: j.Spec.Service, replicaType: g.Type, rank: index}
	substitutePod(pod, sub.expand)
	return nil
}

// Outcome applies the rules: the job fails when every replica of any failure rule failed for
// good, succeeds when every replica of any success rule succeeded (without success rules: every
// replica), and fails when a replica failed for good and no success rule can be met any more.
func (j genericJob) Outcome(c *Cluster, v *View) Outcome {
	for _, rule := range j.Spec.FailureRules {
		if ruleMet(v, rule, func(s *Slot) bool { return s.Exhausted }) {
			return failed("The job is failed with rule: " + ruleString(rule))
		}
	}
	success := j.Spec.SuccessRules
	if len(success) == 0 {
		all := batch.FinishRule{}
		for _, g := range c.Replicas {
			for i := int32(0); i < g.Count; i++ {
				all[g.Type] = append(all[g.Type], i)
			}
		}
		success = []batch.FinishRule{all}
	}
	reachable := false
	for _, rule := range success {
		if ruleMet(v, rule, (*Slot).Succeeded) {
			return succeeded()
		}
		reachable = reachable || !ruleBroken(v, rule)
	}
	if s := v.FirstExhausted(); s != nil && !reachable {
		return failed(failedMessage(c, s))
	}
	return Outcome{}
}

// ruleMet: every replica the rule names exists and satisfies ok.
func ruleMet(v *View, rule batch.FinishRule, ok func(*Slot) bool) bool {
	n := 0
	for t, idx := range rule {
		for _, i := range idx {
			s := v.Slot(t, int(i))
			if s == nil || !ok(s) {
				return false
			}
			n++
		}
	}
	return n > 0
}

// ruleBroken: some replica the rule needs has failed for good or does not exist.
func ruleBroken(v *View, rule batch.FinishRule) bool {
	for t, idx := range rule {
		for _, i := range idx {
			if s := v.Slot(t, int(i)); s == nil || s.Exhausted {
				return true
			}
		}
	}
	return false
}

// ruleString renders a rule as the manuals show it: {"worker":["0"]}.
func ruleString(rule batch.FinishRule) string {
	types := make([]string, 0, len(rule))
	for t := range rule {
		types = append(types, t)
	}
	sort.Strings(types)
	parts := make([]string, len(types))
	for i, t := range types {
		idx := make([]string, len(rule[t]))
		for k, x := range rule[t] {
			idx[k] = strconv.Quote(strconv.Itoa(int(x)))
		}
		parts[i] = fmt.Sprintf("%q:[%s]", t, strings.Join(idx, ","))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// replicaServices gives each replica a Service <job>-<type>-<rank> with the job's ports.
func replicaServices(c *Cluster, opt *batch.ServiceOption) []client.Object {
	if opt == nil || len(opt.Ports) == 0 {
		return nil
	}
	var out []client.Object
	for _, g := range c.Replicas {
		for i := 0; i < int(g.Count); i++ {
			svc := &corev1.Service{}
			svc.Name = dnsLabel(c.PodName(g.Type, i))
			svc.Spec.Ports = append([]corev1.ServicePort(nil), opt.Ports...)
			svc.Spec.Selector = map[string]string{
				LabelOwnerName: c.Name, LabelOwnerKind: c.Kind,
				LabelReplicaType: g.Type, LabelReplicaIndex: strconv.Itoa(i),
			}
			out = append(out, svc)
		}
	}
	return out
}

// genericSubstitution expands GenericJob's variables: $(type), $(rank), $(replicas[<type>]),
// $(service.<type>[<rank>].host) and $(service.port[<name>]). Anything else is left for
// Kubernetes' own $(VAR) expansion.
type genericSubstitution struct {
	c           *Cluster
	service     *batch.ServiceOption
	replicaType string
	rank        int
}

var substitutionVar = regexp.MustCompile(`\$\((type|rank|replicas\[([^\]]+)\]|service\.([^\[\]]+)\[(\d+)\]\.host|service\.port\[([^\]]+)\])\)`)

func (g genericSubstitution) expand(s string) string {
	return substitutionVar.ReplaceAllStringFunc(s, func(m string) string {
		p := substitutionVar.FindStringSubmatch(m)
		switch {
		case p[1] == "type":
			return g.replicaType
		case p[1] == "rank":
			return strconv.Itoa(g.rank)
		case p[2] != "":
			return strconv.Itoa(g.c.Count(p[2]))
		case p[3] != "":
			rank, _ := strconv.Atoi(p[4])
			if g.service != nil && len(g.service.Ports) > 0 {
				return dnsLabel(g.c.PodName(p[3], rank)) // the replica's own Service
			}
			return g.c.Host(p[3], rank)
		case p[5] != "" && g.service != nil:
			for _, port := range g.service.Ports {
				if port.Name == p[5] {
					return strconv.Itoa(int(port.Port))
				}
			}
		}
		return m
	})
}

// substitutePod applies f to every command, argument and literal env value of the pod.
func substitutePod(pod *corev1.Pod, f func(string) string) {
	do := func(cs []corev1.Container) {
		for i := range cs {
			c := &cs[i]
			for k := range c.Command {
				c.Command[k] = f(c.Command[k])
			}
			for k := range c.Args {
				c.Args[k] = f(c.Args[k])
			}
			for k := range c.Env {
				c.Env[k].Value = f(c.Env[k].Value)
			}
		}
	}
	do(pod.Spec.InitContainers)
	do(pod.Spec.Containers)
}

// ValidateReplicas: a success or failure rule that names a replica the job does not have can never
// be met (the CRD already refuses unknown types).
func (j genericJob) ValidateReplicas(c *Cluster, _ func(*Replicas) *field.Path) field.ErrorList {
	var errs field.ErrorList
	check := func(name string, rules []batch.FinishRule) {
		for i, rule := range rules {
			types := make([]string, 0, len(rule))
			for t := range rule {
				types = append(types, t)
			}
			sort.Strings(types)
			for _, t := range types {
				p := field.NewPath("spec", name).Index(i).Child(t)
				g := c.Group(t)
				if g == nil {
					errs = append(errs, field.Invalid(p, t, fmt.Sprintf("the job has no replica type %q", t)))
					continue
				}
				for k, idx := range rule[t] {
					if idx < 0 || idx >= g.Count {
						errs = append(errs, field.Invalid(p.Index(k), idx,
							fmt.Sprintf("the job has %d %s replicas (indices 0 to %d)", g.Count, t, g.Count-1)))
					}
				}
			}
		}
	}
	check("successRules", j.Spec.SuccessRules)
	check("failureRules", j.Spec.FailureRules)
	return errs
}
