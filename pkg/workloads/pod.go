package workloads

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// defaultDebugCommand is debug mode's no-op unless the kind or the job says otherwise.
var defaultDebugCommand = []string{"sleep", "inf"}

// ownerLabels select every child of one job.
func ownerLabels(kind, name string) map[string]string {
	return map[string]string{
		LabelOwnerName:     name,
		LabelOwnerKind:     kind,
		LabelComponent:     strings.ToLower(kind),
		LabelComponentType: "user",
	}
}

// buildPod makes the pod of one replica from its group's template: names, labels, DNS identity,
// scheduler membership, the kind's injections, then the run mode's overrides.
func buildPod(job Job, c *Cluster, g *Replicas, index int) (*corev1.Pod, error) {
	tmpl := &corev1.PodTemplateSpec{}
	if g.Template != nil {
		tmpl = g.Template.PodTemplateSpec.DeepCopy()
	}
	pod := &corev1.Pod{Spec: tmpl.Spec}
	pod.Name = c.PodName(g.Type, index)
	pod.Namespace = c.Namespace
	pod.Labels = tmpl.Labels
	pod.Annotations = tmpl.Annotations
	if pod.Labels == nil {
		pod.Labels = map[string]string{}
	}
	for k, v := range ownerLabels(c.Kind, c.Name) {
		pod.Labels[k] = v
	}
	pod.Labels[LabelReplicaType] = g.Type
	pod.Labels[LabelReplicaIndex] = strconv.Itoa(index)

	// The controller restarts pods itself, so that restarts are counted and limited.
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.Hostname = c.Hostname(g.Type, index)
	pod.Spec.Subdomain = c.Service
	nameContainers(pod, g.MainContainer)

	if l := schedulerLabels(job, c.Name, g.Type); l != nil {
		pod.Spec.SchedulerName = schedv1.SchedulerName
		maps.Copy(pod.Labels, l)
	}
	if err := job.MutatePod(c, pod, g, index); err != nil {
		return nil, err
	}
	applyRunMode(job, pod, g)
	return pod, nil
}

// schedulerLabels put a pod of one role (replica type) into the job's PodGroup (named group) and
// queue; nil when the job does not use the t9k scheduler. A pod carrying them must also have
// spec.schedulerName t9k-scheduler.
func schedulerLabels(job Job, group, role string) map[string]string {
	s := job.Common().Scheduler
	if s == nil || s.T9kScheduler == nil {
		return nil
	}
	return map[string]string{
		schedv1.LabelGroupName: group,
		schedv1.LabelQueue:     queueOf(s.T9kScheduler),
		schedv1.LabelRole:      role,
	}
}

func queueOf(s *batch.T9kScheduler) string {
	if s.Queue == "" {
		return schedv1.DefaultQueue
	}
	return s.Queue
}

// nameContainers names the template's unnamed containers (the manuals show such templates): the
// first gets the kind's main container name unless another container has it.
func nameContainers(pod *corev1.Pod, main string) {
	if main == "" {
		main = "main"
	}
	taken := map[string]bool{}
	for _, c := range pod.Spec.Containers {
		taken[c.Name] = true
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Name != "" {
			continue
		}
		name := main
		if taken[name] {
			name = fmt.Sprintf("%s-%d", main, i)
		}
		c.Name, taken[name] = name, true
	}
}

// mainContainer is the container the kind drives: the one named main, else the first.
func mainContainer(pod *corev1.Pod, main ...string) *corev1.Container {
	for _, m := range main {
		for i := range pod.Spec.Containers {
			if pod.Spec.Containers[i].Name == m {
				return &pod.Spec.Containers[i]
			}
		}
	}
	if len(pod.Spec.Containers) == 0 {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: firstNonEmpty(main...)})
	}
	return &pod.Spec.Containers[0]
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return "main"
}

// addEnv adds variables to every container; a variable the user set keeps the user's value.
func addEnv(pod *corev1.Pod, vars ...corev1.EnvVar) {
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		have := map[string]bool{}
		for _, e := range c.Env {
			have[e.Name] = true
		}
		var add []corev1.EnvVar
		for _, v := range vars {
			if !have[v.Name] {
				add = append(add, v)
			}
		}
		// Ours first: the user's variables may refer to them with $(NAME).
		c.Env = append(add, c.Env...)
	}
}

func env(name, value string) corev1.EnvVar { return corev1.EnvVar{Name: name, Value: value} }

// applyRunMode replaces the main container's program in debug mode, or after a pause by the
// job's resumeSpecs.
func applyRunMode(job Job, pod *corev1.Pod, g *Replicas) {
	rm := job.Common().RunMode
	if rm == nil {
		return
	}
	main := mainContainer(pod, g.MainContainer)
	if rm.Debug.IsEnabled() {
		cmd := defaultDebugCommand
		if d, ok := job.(JobWithDebugCommand); ok {
			if k := d.DebugCommand(g.Type); k != nil {
				cmd = k
			}
		}
		skipInit := false
		for _, s := range rm.Debug.ReplicaSpecs {
			if string(s.Type) == g.Type {
				skipInit = s.SkipInitContainer
				if len(s.Command) > 0 {
					cmd = s.Command
				}
			}
		}
		main.Command, main.Args = append([]string(nil), cmd...), nil
		// A sleeping replica is not probed: it would never become ready or live.
		main.ReadinessProbe, main.LivenessProbe, main.StartupProbe = nil, nil, nil
		if skipInit {
			pod.Spec.InitContainers = nil
		}
		return
	}
	if rm.Pause == nil || !resumed(job.Status()) {
		return
	}
	for _, s := range rm.Pause.ResumeSpecs {
		if string(s.Type) != g.Type {
			continue
		}
		if len(s.Command) > 0 {
			main.Command = s.Command
		}
		if len(s.Args) > 0 {
			main.Args = s.Args
		}
		if s.SkipInitContainer {
			pod.Spec.InitContainers = nil
		}
	}
}

// resumed: the job has been paused before, so its pods now start the resume way.
func resumed(st *batch.JobStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == batch.JobConditionPaused {
			return true
		}
	}
	return false
}

// pauseEnabled reads spec.runMode.pause.enabled.
func pauseEnabled(job Job) bool {
	rm := job.Common().RunMode
	return rm != nil && rm.Pause != nil && rm.Pause.Enabled
}

// gpuCount is the number of GPUs a container asks for, in limits, whatever the device plugin calls
// them: <vendor>/gpu and /dcu, shared GPUs (nvidia.com/gpu.shared, <vendor>/gpu.<variant>) and MIG
// slices (nvidia.com/mig-<profile>), one process each.
func gpuCount(c *corev1.Container) int64 {
	var n int64
	for name, q := range c.Resources.Limits {
		if isGPUResource(string(name)) {
			n += q.Value()
		}
	}
	return n
}

func isGPUResource(name string) bool {
	_, r, ok := strings.Cut(name, "/")
	if !ok {
		return false
	}
	return r == "gpu" || r == "dcu" || strings.HasPrefix(r, "gpu.") || strings.HasPrefix(r, "gpu-") || strings.HasPrefix(r, "mig-")
}
