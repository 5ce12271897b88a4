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
	mountAll(pod, vol, corev1.VolumeMount{Name: vol.Name, MountPath: deepspeedHostfile, SubPath: "hostfile", ReadOnly: true})
	if !j.Spec.DisableCustomEnv {
		mountAll(pod, vol, corev1.VolumeMount{Name: vol.Name, MountPath: deepspeedEnvFile, SubPath: "deepspeed_env", ReadOnly: true})
	}
	main := mainContainer(pod, "worker")
	main.Command, main.Args = sshdCommand(""), nil
	if index != 0 || j.Spec.Config == nil {
		return nil
	}
	launch := deepspeedCommand(j.Spec.Config, j.Spec.Elastic)
	script := strings.Join([]string{
		"set -e",
		defaultSSHD, // daemonised: this container also runs the launcher
		waitForSSH(workerHosts(c, "worker")),
		"exec " + launch,
	}, "\n")
	main.Command = []string{"/bin/sh", "-c", script}
	return nil
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
