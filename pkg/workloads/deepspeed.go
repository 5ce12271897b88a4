package workloads

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// Reserved paths of DeepSpeedJob (the manuals).
const (
	deepspeedHostfile = "/t9k/hostfile"
	deepspeedEnvFile  = "/root/.deepspeed_env"
)

// deepspeedJob adapts DeepSpeedJob: workers run sshd; worker-0 also waits for every worker's
// sshd and then runs the deepspeed launcher (pdsh over ssh), and decides the job.
type deepspeedJob struct{ *batch.DeepSpeedJob }

func newDeepSpeedJob() Job { return deepspeedJob{&batch.DeepSpeedJob{}} }

func (j deepspeedJob) Object() client.Object { return j.DeepSpeedJob }
func (j deepspeedJob) GVK() schema.GroupVersionKind {
	return batch.GroupVersion.WithKind("DeepSpeedJob")
}
func (j deepspeedJob) Common() *batch.CommonJobSpec  { return &j.Spec.CommonJobSpec }
func (j deepspeedJob) Status() *batch.JobStatus      { return &j.DeepSpeedJob.Status }
func (j deepspeedJob) RunPolicy() RunPolicy          { return trainingRunPolicy(j.Spec.RunPolicy) }
func (j deepspeedJob) Elastic() *batch.ElasticConfig { return j.Spec.Elastic }
func (j deepspeedJob) ElasticType() string           { return "worker" }
func (j deepspeedJob) DebugCommand(string) []string  { return sshdCommand("") }

// RequiredTypes: the launcher has nobody to start without workers.
func (j deepspeedJob) RequiredTypes() []string { return []string{"worker"} }

func (j deepspeedJob) Replicas() []Replicas {
	return []Replicas{{
		Type: "worker", Count: deref32(j.Spec.Worker.Replicas, 1), Template: &j.Spec.Worker.Template,
		Restart: trainingRestart(j.Spec.Worker.RestartPolicy), MainContainer: "worker",
	}}
}

func (j deepspeedJob) configName(c *Cluster) string { return c.Name + "-deepspeed" }

// slots is config.slotsPerWorker, else the worker's GPU count, else 1.
func (j deepspeedJob) slots() int32 {
	if cfg := j.Spec.Config; cfg != nil && cfg.SlotsPerWorker != nil {
		return *cfg.SlotsPerWorker
	}
	p := &corev1.Pod{Spec: j.Spec.Worker.Template.Spec}
	if len(p.Spec.Containers) > 0 {
		if n := gpuCount(mainContainer(p, "worker")); n > 0 {
			return int32(n)
		}
	}
	return 1
}

func (j deepspeedJob) Objects(c *Cluster) ([]client.Object, error) {
	secret, err := sshSecret(c)
	if err != nil {
		return nil, err
	}
	data := map[string]string{"hostfile": hostfile(c, "worker", j.slots())}
	if !j.Spec.DisableCustomEnv {
		data["deepspeed_env"] = deepspeedEnv(j.Spec.Worker.Template.Spec.Containers)
	}
	return []client.Object{secret, configMap(j.configName(c), data)}, nil
}

// deepspeedEnv is /root/.deepspeed_env: the worker container's literal env, which deepspeed
// exports on every host it starts processes on.
func deepspeedEnv(containers []corev1.Container) string {
	if len(containers) == 0 {
		return ""
	}
	c := containers[0]
	for _, x := range containers {
		if x.Name == "worker" {
			c = x
		}
	}
	var b strings.Builder
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			fmt.Fprintf(&b, "%s=%s\n", e.Name, e.Value)
		}
	}
	return b.String()
}

func (j deepspeedJob) MutatePod(c *Cluster, pod *corev1.Pod, g *Replicas, index int) error {
	mountSSH(pod, c, defaultSSHDir)
	vol := corev1.Volume{Name: "t9k-deepspeed", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: j.configName(c)}}}}
	if j.scales() {
		// The whole ConfigMap, no subPath: the kubelet refreshes the hostfile of a running pod only
		// in a directory mount. /t9k/hostfile is a symlink into it (deepspeedLinkHostfile).
		mountAll(pod, vol, corev1.VolumeMount{Name: vol.Name, MountPath: deepspeedConfigDir, ReadOnly: true})
	} else {
		// The hostfile never changes: a file where the manuals put it.
		mountAll(pod, vol, corev1.VolumeMount{Name: vol.Name, MountPath: deepspeedHostfile, SubPath: "hostfile", ReadOnly: true})
	}
	if !j.Spec.DisableCustomEnv {
		// deepspeed_env never changes while the job runs (it is the template's env), elastic or not.
		mountAll(pod, vol, corev1.VolumeMount{Name: vol.Name, MountPath: deepspeedEnvFile, SubPath: "deepspeed_env", ReadOnly: true})
	}
	main := mainContainer(pod, "worker")
	main.Command, main.Args = sshdCommand(""), nil
	if j.scales() && (main.Lifecycle == nil || main.Lifecycle.PostStart == nil) {
		// The documented path in every worker container, whatever it runs (sshd, debug mode, the
		// launcher, a resume command); worker-0's script makes it too, as the hook may run after
		// the script starts. A user's own postStart hook is kept.
		if main.Lifecycle == nil {
			main.Lifecycle = &corev1.Lifecycle{}
		}
		main.Lifecycle.PostStart = &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
			Command: []string{"/bin/sh", "-c", deepspeedLinkHostfile + " || true"}}}
	}
	if index != 0 || j.Spec.Config == nil {
		return nil
	}
	launch := deepspeedCommand(j.Spec.Config, j.Spec.Elastic)
	if j.scales() {
		sup := newDeepSpeedSupervisor(launch)
		main.Command = []string{"/bin/sh", "-c", sup.Script()}
		// Replaces the template's probe: worker-0's readiness is the scale-down's acknowledgement.
		main.ReadinessProbe = &corev1.Probe{
			ProbeHandler:  corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: sup.readinessCommand()}},
			PeriodSeconds: 1, FailureThreshold: 1, SuccessThreshold: 1, TimeoutSeconds: 1,
		}
		return nil
	}
	script := strings.Join([]string{
		"set -e",
		defaultSSHD, // daemonised: this container also runs the launcher
		waitForSSH(workerHosts(c, "worker")),
		"exec " + launch,
	}, "\n")
	main.Command = []string{"/bin/sh", "-c", script}
	return nil
}

// scales: elastic is enabled, so the hostfile changes while the job runs; worker-0 then runs
// the launcher, if any, under deepspeedSupervisor. Jobs that do not scale get the pods they always
// got (the hostfile by subPath at /t9k/hostfile, the launcher exec'd).
func (j deepspeedJob) scales() bool { return j.Spec.Elastic != nil && j.Spec.Elastic.Enabled }

// ScaleDownAck: worker-0 acknowledges a smaller hostfile by becoming ready again (see
// deepspeedSupervisor). Without a launcher, or in debug mode, there is nobody to tell.
func (j deepspeedJob) ScaleDownAck(c *Cluster) (ScaleDownAck, bool) {
	if !j.scales() || j.Spec.Config == nil || j.Spec.RunMode != nil && j.Spec.RunMode.Debug.IsEnabled() {
		return ScaleDownAck{}, false
	}
	return ScaleDownAck{ConfigMap: j.configName(c), Type: "worker", Index: 0}, true
}

// deepspeedCommand is the launcher's command line (shell syntax), from config: customCommand as
// written, else deepspeed with the hostfile, local rank, autotuning, elastic and run options.
func deepspeedCommand(cfg *batch.DeepSpeedConfig, el *batch.ElasticConfig) string {
	if cfg.CustomCommand != "" {
		return cfg.CustomCommand
	}
	args := []string{"deepspeed", "--hostfile=" + deepspeedHostfile}
	if cfg.LocalRank != nil && !*cfg.LocalRank {
		args = append(args, "--no_local_rank")
	}
	if cfg.Autotune == batch.DeepSpeedAutotuneTune || cfg.Autotune == batch.DeepSpeedAutotuneRun {
		args = append(args, "--autotuning="+string(cfg.Autotune))
	}
	if el != nil && el.Enabled {
		args = append(args, "--elastic_training")
		if el.MinReplicas != nil {
			args = append(args, fmt.Sprintf("--min_elastic_nodes=%d", *el.MinReplicas))
		}
		if el.MaxReplicas != nil {
			args = append(args, fmt.Sprintf("--max_elastic_nodes=%d", *el.MaxReplicas))
		}
	}
	args = append(args, cfg.OtherArgs...)
	if r := cfg.Run; r != nil {
		switch {
		case r.Module != nil:
			args = append(append(args, "--module"), r.Module...)
		case r.Exec != nil:
			args = append(append(args, "--no_python"), r.Exec...)
		default:
			args = append(args, r.Python...)
		}
	}
	return shellJoin(args)
}

func (j deepspeedJob) Outcome(c *Cluster, v *View) Outcome { return decidedBy(c, v, "worker", 0) }
