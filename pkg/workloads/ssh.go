package workloads

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"golang.org/x/crypto/ssh"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// What the ssh-based kinds (MPI, ColossalAI, DeepSpeed) share: a per-job key pair in a Secret,
// mounted where ssh looks for it, workers running sshd, and a launcher that waits for them.

const (
	defaultSSHDir  = "/root/.ssh"
	defaultSSHD    = "/usr/sbin/sshd"
	sshVolumeName  = "t9k-ssh"
	sshSecretKey   = "id_ed25519"
	sshClientSetup = "Host *\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
)

func sshSecretName(c *Cluster) string { return c.Name + "-ssh" }

// sshSecret is a fresh key pair that every pod of the job trusts. It is created once (create if
// absent), so regenerating it on later reconciles changes nothing.
func sshSecret(c *Cluster) (*corev1.Secret, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, c.Name)
	if err != nil {
		return nil, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	authorized := ssh.MarshalAuthorizedKey(sshPub)
	s := &corev1.Secret{Type: corev1.SecretTypeOpaque}
	s.Name = sshSecretName(c)
	s.Data = map[string][]byte{
		sshSecretKey:          pem.EncodeToMemory(block),
		sshSecretKey + ".pub": authorized,
		"authorized_keys":     authorized,
		"config":              []byte(sshClientSetup),
	}
	return s, nil
}

// mountSSH mounts the job's key pair at dir in every container; 0600 because ssh refuses keys
// others can read.
func mountSSH(pod *corev1.Pod, c *Cluster, dir string) {
	if dir == "" {
		dir = defaultSSHDir
	}
	mountAll(pod, corev1.Volume{Name: sshVolumeName, VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: sshSecretName(c), DefaultMode: ptr.To[int32](0o600),
	}}}, corev1.VolumeMount{Name: sshVolumeName, MountPath: dir, ReadOnly: true})
}

// sshdCommand runs sshd in the foreground.
func sshdCommand(path string) []string {
	if path == "" {
		path = defaultSSHD
	}
	return []string{path, "-D"}
}

// waitForSSH is a shell fragment that waits until every host answers on ssh.
func waitForSSH(hosts []string) string {
	return fmt.Sprintf("for h in %s; do until ssh -o ConnectTimeout=2 \"$h\" true; do echo \"waiting for $h\"; sleep 2; done; done",
		shellJoin(hosts))
}

// workerHosts lists the DNS names of a replica group.
func workerHosts(c *Cluster, replicaType string) []string {
	var hosts []string
	for i := 0; i < c.Count(replicaType); i++ {
		hosts = append(hosts, c.Host(replicaType, i))
	}
	return hosts
}

// hostfile is the OpenMPI/DeepSpeed hostfile: "<host> slots=<n>" per worker.
func hostfile(c *Cluster, replicaType string, slots int32) string {
	s := ""
	for _, h := range workerHosts(c, replicaType) {
		s += fmt.Sprintf("%s slots=%d\n", h, slots)
	}
	return s
}

// launcherGate is the start gate of kinds whose launcher reaches the workers over ssh: the
// launcher starts once every worker is ready.
type launcherGate struct{}

func (launcherGate) Gated(replicaType string) bool { return replicaType == "launcher" }

func (launcherGate) ReadyToStart(_ string, v *View) bool {
	workers := v.Type("worker")
	for _, s := range workers {
		if !s.Ready() {
			return false
		}
	}
	return len(workers) > 0
}

// configMap is a ConfigMap of the job with the given data.
func configMap(name string, data map[string]string) client.Object {
	cm := &corev1.ConfigMap{Data: data}
	cm.Name = name
	return cm
}

// derivedLauncherResources are the derived launcher's requests and limits: it only runs
// mpirun/colossalai run, but it must declare what it uses, or a Queue with a cpu or memory quota
// refuses it ("every container must declare requests.cpu") and the job never starts.
var derivedLauncherResources = corev1.ResourceList{
	corev1.ResourceCPU:    resource.MustParse("500m"),
	corev1.ResourceMemory: resource.MustParse("512Mi"),
}

// derivedLauncher builds a launcher template from a worker template when the job gives none
// (the manuals allow "template: {}"): same image, working directory, env and volumes, and small
// declared resources (derivedLauncherResources).
func derivedLauncher(worker *batch.PodTemplate, workerMain string) *batch.PodTemplate {
	t := &batch.PodTemplate{}
	if worker == nil || len(worker.Spec.Containers) == 0 {
		return t
	}
	w := worker.Spec.Containers[0]
	for _, c := range worker.Spec.Containers {
		if c.Name == workerMain {
			w = c
		}
	}
	t.Spec.Containers = []corev1.Container{{
		Name: "launcher", Image: w.Image, ImagePullPolicy: w.ImagePullPolicy, WorkingDir: w.WorkingDir,
		Env: w.Env, EnvFrom: w.EnvFrom, VolumeMounts: w.VolumeMounts, SecurityContext: w.SecurityContext,
		Resources: corev1.ResourceRequirements{Requests: derivedLauncherResources.DeepCopy(), Limits: derivedLauncherResources.DeepCopy()},
	}}
	// The worker's annotations (sidecar injection, the local cluster's run-duration) apply to the
	// launcher too.
	t.Annotations = worker.Annotations
	t.Spec.Volumes = worker.Spec.Volumes
	t.Spec.ImagePullSecrets = worker.Spec.ImagePullSecrets
	t.Spec.SecurityContext = worker.Spec.SecurityContext
	t.Spec.NodeSelector = worker.Spec.NodeSelector
	t.Spec.Tolerations = worker.Spec.Tolerations
	return t
}

// sshWorkerDebugCommand is the debug command of the launcher kinds (MPI, ColossalAI): workers keep
// sshd so that the launcher's command can be run by hand; other types use their debug default.
func sshWorkerDebugCommand(replicaType, sshdPath string) []string {
	if replicaType == "worker" {
		return sshdCommand(sshdPath)
	}
	return nil
}

// cleanUpWorkersPolicy is runPolicy.cleanUpWorkers of the launcher kinds: the launcher decides, and
// the workers are removed once it has.
func cleanUpWorkersPolicy(rp *batch.WorkerRunPolicy) RunPolicy {
	if rp != nil && rp.CleanUpWorkers {
		return RunPolicy{CleanUpTypes: []string{"worker"}}
	}
	return RunPolicy{}
}
