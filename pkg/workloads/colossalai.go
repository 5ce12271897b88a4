package workloads

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// colossalaiJob adapts ColossalAIJob in both shapes: workers run sshd; the launcher, created once
// every worker is ready, runs "colossalai run" over them (torchrun on each) from its working
// directory, and decides. Nothing restarts: colossalai cannot re-admit a restarted worker.
type colossalaiJob struct {
	*batch.ColossalAIJob
	launcherGate
}

func newColossalAIJob() Job { return colossalaiJob{ColossalAIJob: &batch.ColossalAIJob{}} }

func (j colossalaiJob) Object() client.Object { return j.ColossalAIJob }
func (j colossalaiJob) GVK() schema.GroupVersionKind {
	return batch.GroupVersion.WithKind("ColossalAIJob")
}
func (j colossalaiJob) Common() *batch.CommonJobSpec { return &j.Spec.CommonJobSpec }
func (j colossalaiJob) Status() *batch.JobStatus     { return &j.ColossalAIJob.Status }

func (j colossalaiJob) DebugCommand(t string) []string { return sshWorkerDebugCommand(t, j.sshdPath()) }

func (j colossalaiJob) RunPolicy() RunPolicy { return cleanUpWorkersPolicy(j.Spec.RunPolicy) }

func (j colossalaiJob) sshdPath() string {
	if j.Spec.SSH != nil {
		return j.Spec.SSH.SSHDPath
	}
	return ""
}

var never = RestartRule{Policy: batch.RestartPolicyNever}

// RequiredTypes: the launcher has nobody to start without workers.
func (j colossalaiJob) RequiredTypes() []string { return []string{"worker"} }

func (j colossalaiJob) Replicas() []Replicas {
	if w := j.Spec.Worker; w != nil { // 2024
		launcher := &batch.PodTemplate{}
		if l := j.Spec.Launcher; l != nil {
			launcher.Spec.Containers = []corev1.Container{{Name: "launcher", Image: l.Image, WorkingDir: l.WorkingDir,
				Env: l.Env, Resources: l.Resources}}
			launcher.Annotations = w.Template.Annotations // as derivedLauncher does
		} else {
			launcher = derivedLauncher(&w.Template, "worker")
		}
		return []Replicas{
			{Type: "worker", Count: deref32(w.Replicas, 1), Template: &w.Template, MainContainer: "worker", Restart: never},
			{Type: "launcher", Count: 1, Singleton: true, MainContainer: "launcher", Template: launcher, Restart: never},
		}
	}
	var worker, launcher *batch.ReplicaSpec
	for i := range j.Spec.ReplicaSpecs {
		switch j.Spec.ReplicaSpecs[i].Type {
		case "worker":
			worker = &j.Spec.ReplicaSpecs[i]
		case "launcher":
			launcher = &j.Spec.ReplicaSpecs[i]
		}
	}
	if worker == nil {
		return nil
	}
	l := Replicas{Type: "launcher", Count: 1, Singleton: true, MainContainer: "launcher",
		Template: derivedLauncher(&worker.Template, "worker"), Restart: never}
	if launcher != nil && len(launcher.Template.Spec.Containers) > 0 {
		l.Template = &launcher.Template
	}
	return []Replicas{{Type: "worker", Count: deref32(worker.Replicas, 1), Template: &worker.Template,
		MainContainer: "worker", Restart: never}, l}
}

func (j colossalaiJob) Objects(c *Cluster) ([]client.Object, error) {
	secret, err := sshSecret(c)
	if err != nil {
		return nil, err
	}
	return []client.Object{secret}, nil
}

func (j colossalaiJob) MutatePod(c *Cluster, pod *corev1.Pod, g *Replicas, _ int) error {
	dir := ""
	if j.Spec.SSH != nil {
		dir = j.Spec.SSH.AuthMountPath
	}
	mountSSH(pod, c, dir)
	main := mainContainer(pod, g.MainContainer)
	if g.Type == "worker" {
		main.Command, main.Args = sshdCommand(j.sshdPath()), nil
		return nil
	}
	procs, torchArgs, program := int32(1), []string(nil), []string(nil)
	if w := j.Spec.Worker; w != nil {
		procs, torchArgs, program = deref32(w.ProcPerWorker, 1), w.TorchArgs, w.Command
	} else if tc := j.Spec.TorchConfig; tc != nil {
		procs, torchArgs, program = deref32(tc.ProcPerWorker, 1), tc.ExtraArgs, tc.Script
	}
	main.Command, main.Args = colossalaiCommand(workerHosts(c, "worker"), procs, torchArgs, program), nil
	return nil
}

// colossalaiCommand is "colossalai run" over the workers, the first one as the master.
func colossalaiCommand(hosts []string, procs int32, torchArgs, program []string) []string {
	cmd := []string{"colossalai", "run", "--nproc_per_node", strconv.Itoa(int(procs)), "--host", strings.Join(hosts, ",")}
	if len(hosts) > 0 {
		cmd = append(cmd, "--master_addr", hosts[0])
	}
	direct, extra := splitTorchArgs(torchArgs)
	cmd = append(cmd, direct...)
	if len(extra) > 0 {
		cmd = append(cmd, "--extra_launch_args", strings.Join(extra, ","))
	}
	return append(cmd, program...)
}

// colossalaiRunOptions are the options "colossalai run" itself takes (and passes on to torchrun as
// it needs); every other torchrun option must go through its --extra_launch_args.
var colossalaiRunOptions = map[string]bool{
	"master_port": true, "master_addr": true, "nproc_per_node": true, "num_nodes": true,
	"host": true, "hostfile": true, "include": true, "exclude": true, "ssh-port": true,
}

// splitTorchArgs sorts torchArgs (["--master_port=29501", "--max_restarts=3", "--rdzv_backend",
// "c10d", "--standalone"]) into the options colossalai run takes itself, as written, and the
// entries of its --extra_launch_args ("max_restarts=3", "rdzv_backend=c10d", "standalone"),
// which it hands to torchrun as --k=v and --flag: colossalai run takes any other word before the
// script for the script itself.
func splitTorchArgs(args []string) (direct, extra []string) {
	for i := 0; i < len(args); i++ {
		word := args[i]
		name, value, hasValue := strings.Cut(strings.TrimLeft(word, "-"), "=")
		if name == "" {
			continue
		}
		takesNext := !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-")
		if colossalaiRunOptions[name] {
			direct = append(direct, word)
			if takesNext {
				direct = append(direct, args[i+1])
				i++
			}
			continue
		}
		if takesNext {
			value, hasValue = args[i+1], true
			i++
		}
		if hasValue {
			extra = append(extra, name+"="+value)
		} else {
			extra = append(extra, name)
		}
	}
	return direct, extra
}

func (j colossalaiJob) Outcome(c *Cluster, v *View) Outcome { return decidedBy(c, v, "launcher", 0) }
