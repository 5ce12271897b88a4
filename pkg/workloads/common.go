package workloads

import (
	"strings"

	corev1 "k8s.io/api/core/v1"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// Shapes the kinds share: the string and struct restart policies and the training run policy.

func deref32(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// trainingRestart reads the string form; unset is OnFailure, the CRD default.
func trainingRestart(p batch.RestartPolicyType) RestartRule {
	if p == "" {
		p = batch.RestartPolicyOnFailure
	}
	return RestartRule{Policy: p}
}

// structRestart reads the struct form {policy, limit}. Its limit defaults to 0, no restarts, and
// so does a missing restartPolicy.
func structRestart(p *batch.RestartPolicy) RestartRule {
	zero := int32(0)
	if p == nil {
		return RestartRule{Policy: batch.RestartPolicyOnFailure, Limit: &zero}
	}
	r := RestartRule{Policy: p.Policy, Limit: p.Limit}
	if r.Policy == "" {
		r.Policy = batch.RestartPolicyOnFailure
	}
	if r.Limit == nil {
		r.Limit = &zero
	}
	return r
}

// defaultBackoffLimit is the manuals' default for runPolicy.backoffLimit.
const defaultBackoffLimit = 3

// trainingRunPolicy reads runPolicy of PyTorch, TensorFlow, XGBoost and DeepSpeed jobs.
func trainingRunPolicy(p *batch.TrainingRunPolicy) RunPolicy {
	limit := int32(defaultBackoffLimit)
	if p == nil {
		return RunPolicy{BackoffLimit: &limit}
	}
	if p.BackoffLimit != nil {
		limit = *p.BackoffLimit
	}
	return RunPolicy{BackoffLimit: &limit, ActiveDeadlineSeconds: p.ActiveDeadlineSeconds, CleanUpPolicy: p.CleanUpPolicy}
}

// containerPort is the port a replica group serves its peers on: the main container's port of
// the preferred name, else its first port, else def.
func containerPort(g *Replicas, preferred string, def int32) int32 {
	if g == nil || g.Template == nil {
		return def
	}
	var first int32
	for i, c := range g.Template.Spec.Containers {
		if c.Name != g.MainContainer && !(i == 0 && c.Name == "") {
			continue
		}
		for _, p := range c.Ports {
			if p.Name == preferred {
				return p.ContainerPort
			}
			if first == 0 {
				first = p.ContainerPort
			}
		}
	}
	if first != 0 {
		return first
	}
	return def
}

// shellQuote quotes one word for sh.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,@%+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

func shellJoin(words []string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = shellQuote(w)
	}
	return strings.Join(q, " ")
}

// mountAll adds a volume (once) and mounts it in every container.
func mountAll(pod *corev1.Pod, vol corev1.Volume, mount corev1.VolumeMount) {
	have := false
	for _, v := range pod.Spec.Volumes {
		have = have || v.Name == vol.Name
	}
	if !have {
		pod.Spec.Volumes = append(pod.Spec.Volumes, vol)
	}
	for i := range pod.Spec.Containers {
		pod.Spec.Containers[i].VolumeMounts = append(pod.Spec.Containers[i].VolumeMounts, mount)
	}
}
