package workloads

import (
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

const mpiHostfile = "/etc/mpi/hostfile"

// mpiJob adapts MPIJob in both shapes: workers run sshd; the launcher, created once every worker
// is ready, runs mpirun over them with the job's hostfile and decides the job.
type mpiJob struct {
	*batch.MPIJob
	launcherGate
}

func newMPIJob() Job { return mpiJob{MPIJob: &batch.MPIJob{}} }

func (j mpiJob) Object() client.Object        { return j.MPIJob }
func (j mpiJob) GVK() schema.GroupVersionKind { return batch.GroupVersion.WithKind("MPIJob") }
func (j mpiJob) Common() *batch.CommonJobSpec { return &j.Spec.CommonJobSpec }
func (j mpiJob) Status() *batch.JobStatus     { return &j.MPIJob.Status }

// DebugCommand: the launcher sleeps, workers keep sshd so that mpirun can be run by hand.
func (j mpiJob) DebugCommand(t string) []string { return sshWorkerDebugCommand(t, j.sshdPath()) }

func (j mpiJob) RunPolicy() RunPolicy { return cleanUpWorkersPolicy(j.Spec.RunPolicy) }

func (j mpiJob) sshdPath() string {
	if j.Spec.SSH != nil {
		return j.Spec.SSH.SSHDPath
	}
	return ""
}

// config is the mpirun configuration of either shape. slots is each worker's slot count in the
// hostfile (see mpiSlots).
func (j mpiJob) config() (home string, mca map[string]string, extra, program []string, slots int32) {
	if w := j.Spec.Worker; w != nil { // 2024
		extra, program = w.ExtraMPIArgs, w.Cmd
		if pr := w.ProcessRecovery; pr != nil && pr.Enable && !hasArg(extra, "--enable-recovery") {
			extra = append(append([]string(nil), extra...), "--enable-recovery")
			if pr.Limit != nil {
				extra = append(extra, "--max-restarts", strconv.Itoa(int(*pr.Limit)))
			}
		}
		return j.Spec.MPIHome, j.Spec.MCA, extra, program, mpiSlots(w.ProcessesPerWorker, extra, &w.Template)
	}
	if mc := j.Spec.MPIConfig; mc != nil {
		var tmpl *batch.PodTemplate
		for i := range j.Spec.ReplicaSpecs {
			if j.Spec.ReplicaSpecs[i].Type == "worker" {
				tmpl = &j.Spec.ReplicaSpecs[i].Template
			}
		}
		return mc.Home, mc.MCA, mc.ExtraArgs, mc.Script, mpiSlots(nil, mc.ExtraArgs, tmpl)
	}
	return "", nil, nil, nil, 1
}

// mpiSlots is the number of processes mpirun may start on each worker, its "slots=" in the
// hostfile: worker.processesPerWorker when given, else the worker's GPUs (one rank per GPU, as
// mpi-operator's slotsPerWorker is used), else 1; and never fewer than the processes per node the
// mpirun arguments ask for (-N, --npernode, --map-by ppr:N:node), which OpenMPI refuses as
// oversubscription when the hostfile offers fewer.
func mpiSlots(perWorker *int32, args []string, worker *batch.PodTemplate) int32 {
	slots := int32(1)
	switch {
	case perWorker != nil && *perWorker > 0:
		slots = *perWorker
	case worker != nil && len(worker.Spec.Containers) > 0:
		p := &corev1.Pod{Spec: *worker.Spec.DeepCopy()}
		if n := gpuCount(mainContainer(p, "mpi-worker", "worker")); n > 0 {
			slots = int32(n)
		}
	}
	if n := perNode(args); n > slots {
		slots = n
	}
	return slots
}

// perNode reads the processes per node an mpirun command line asks for: -N n, -npernode n,
// --npernode n, --map-by ppr:n:node (or the = forms); 0 when it asks for none.
func perNode(args []string) int32 {
	var n int32
	for i, a := range args {
		val := ""
		switch {
		case a == "-N" || a == "-npernode" || a == "--npernode" || a == "-map-by" || a == "--map-by":
			if i+1 < len(args) {
				val = args[i+1]
			}
		case strings.HasPrefix(a, "--npernode=") || strings.HasPrefix(a, "--map-by="):
			_, val, _ = strings.Cut(a, "=")
		default:
			continue
		}
		if strings.HasPrefix(val, "ppr:") { // ppr:N:node[:options]
			parts := strings.Split(val, ":")
			if len(parts) < 3 || parts[2] != "node" {
				continue
			}
			val = parts[1]
		}
		if v, err := strconv.Atoi(val); err == nil && v > 0 && int32(v) > n {
			n = int32(v)
		}
	}
	return n
}

func hasArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// RequiredTypes: the launcher has nobody to start without workers.
func (j mpiJob) RequiredTypes() []string { return []string{"worker"} }

func (j mpiJob) Replicas() []Replicas {
	if w := j.Spec.Worker; w != nil {
		return []Replicas{
			{Type: "worker", Count: deref32(w.Replicas, 1), Template: &w.Template, MainContainer: "mpi-worker",
				Restart: RestartRule{Policy: batch.RestartPolicyNever}},
			{Type: "launcher", Count: 1, Singleton: true, MainContainer: "launcher",
				Template: derivedLauncher(&w.Template, "mpi-worker"), Restart: RestartRule{Policy: batch.RestartPolicyNever}},
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
	out := []Replicas{{Type: "worker", Count: deref32(worker.Replicas, 1), Template: &worker.Template,
		MainContainer: "worker", Restart: structRestart(worker.RestartPolicy)}}
	l := Replicas{Type: "launcher", Count: 1, Singleton: true, MainContainer: "launcher",
		Template: derivedLauncher(&worker.Template, "worker"), Restart: RestartRule{Policy: batch.RestartPolicyNever}}
	if launcher != nil {
		l.Restart = structRestart(launcher.RestartPolicy)
		if len(launcher.Template.Spec.Containers) > 0 {
			l.Template = &launcher.Template
		}
	}
	return append(out, l)
}

func (j mpiJob) Objects(c *Cluster) ([]client.Object, error) {
	secret, err := sshSecret(c)
	if err != nil {
		return nil, err
	}
	_, _, _, _, slots := j.config()
	return []client.Object{secret, configMap(c.Name+"-hostfile", map[string]string{"hostfile": hostfile(c, "worker", slots)})}, nil
}

func (j mpiJob) MutatePod(c *Cluster, pod *corev1.Pod, g *Replicas, _ int) error {
	dir := ""
	if j.Spec.SSH != nil {
		dir = j.Spec.SSH.SSHAuthMountPath
	}
	mountSSH(pod, c, dir)
	main := mainContainer(pod, g.MainContainer)
	if g.Type == "worker" {
		main.Command, main.Args = sshdCommand(j.sshdPath()), nil
		return nil
	}
	vol := corev1.Volume{Name: "t9k-mpi-hostfile", VolumeSource: corev1.VolumeSource{
		ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: c.Name + "-hostfile"}}}}
	mountAll(pod, vol, corev1.VolumeMount{Name: vol.Name, MountPath: "/etc/mpi", ReadOnly: true})
	addEnv(pod, mpiLauncherEnv()...)
	home, mca, extra, program, _ := j.config()
	main.Command, main.Args = mpirunCommand(home, mca, extra, program), nil
	return nil
}

// mpiLauncherEnv is what OpenMPI's mpirun needs in a pod. Workers are named by their full DNS names
// (<job>-worker-<i>.<job>), which only resolve with the domain: OpenMPI cuts host names at the
// first dot unless told to keep them (mpi-operator sets the same for the same reason), and ssh
// would then fail with "Could not resolve hostname". The hostfile is also the default one, so that
// a plain mpirun works by hand (debug mode). OpenMPI 4 reads the OMPI_MCA_orte_ names, OpenMPI 5
// (PRRTE) the PRTE_MCA_prte_ ones. Containers usually run as root, which mpirun refuses unless
// allowed.
func mpiLauncherEnv() []corev1.EnvVar {
	return []corev1.EnvVar{
		env("OMPI_MCA_orte_keep_fqdn_hostnames", "true"),
		env("PRTE_MCA_prte_keep_fqdn_hostnames", "true"),
		env("OMPI_MCA_orte_default_hostfile", mpiHostfile),
		env("PRTE_MCA_prte_default_hostfile", mpiHostfile),
		env("OMPI_ALLOW_RUN_AS_ROOT", "1"),
		env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"),
	}
}

// mpirunCommand is the launcher's command: mpirun (from home/bin when home is set) with the
// hostfile, MCA parameters in name order, the extra arguments and the program.
func mpirunCommand(home string, mca map[string]string, extra, program []string) []string {
	mpirun := "mpirun"
	if home != "" {
		mpirun = home + "/bin/mpirun"
	}
	cmd := []string{mpirun, "--hostfile", mpiHostfile}
	keys := make([]string, 0, len(mca))
	for k := range mca {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		cmd = append(cmd, "--mca", k, mca[k])
	}
	cmd = append(cmd, extra...)
	return append(cmd, program...)
}

func (j mpiJob) Outcome(c *Cluster, v *View) Outcome { return decidedBy(c, v, "launcher", 0) }
