package workloads

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// defaultMasterPort is MASTER_PORT when the master's container declares no port (the manuals do
// not say; 23456 is what Kubeflow's PyTorchJob uses).
const defaultMasterPort = 23456

// pytorchJob adapts PyTorchTrainingJob: the master (a "master" replica, else the first listed) is
// the rendezvous point and decides; every replica gets MASTER_ADDR/MASTER_PORT and, without
// torchrun, RANK/WORLD_SIZE; with torchrunConfig the program is started by torchrun.
type pytorchJob struct{ *batch.PyTorchTrainingJob }

func newPyTorchJob() Job { return pytorchJob{&batch.PyTorchTrainingJob{}} }

func (j pytorchJob) Object() client.Object { return j.PyTorchTrainingJob }
func (j pytorchJob) GVK() schema.GroupVersionKind {
	return batch.GroupVersion.WithKind("PyTorchTrainingJob")
}
func (j pytorchJob) Common() *batch.CommonJobSpec { return &j.Spec.CommonJobSpec }
func (j pytorchJob) Status() *batch.JobStatus     { return &j.PyTorchTrainingJob.Status.JobStatus }
func (j pytorchJob) RunPolicy() RunPolicy         { return trainingRunPolicy(j.Spec.RunPolicy) }

// TensorBoard is spec.tensorboardSpec: a TensorBoard beside the job (see JobWithTensorBoard).
func (j pytorchJob) TensorBoard() *batch.TensorBoardSpec { return j.Spec.TensorboardSpec }
func (j pytorchJob) TensorBoardStatus() **batch.DependentStatus {
	return &j.PyTorchTrainingJob.Status.Tensorboard
}
func (j pytorchJob) Elastic() *batch.ElasticConfig { return j.Spec.Elastic }

// ElasticType is the one replica type, or worker (node) beside a master.
func (j pytorchJob) ElasticType() string {
	rs := j.Spec.ReplicaSpecs
	if len(rs) == 1 {
		return string(rs[0].Type)
	}
	for _, t := range []batch.ReplicaType{"worker", "node"} {
		for _, r := range rs {
			if r.Type == t {
				return string(t)
			}
		}
	}
	return string(rs[len(rs)-1].Type)
}

func (j pytorchJob) Replicas() []Replicas {
	out := make([]Replicas, 0, len(j.Spec.ReplicaSpecs))
	for i := range j.Spec.ReplicaSpecs {
		rs := &j.Spec.ReplicaSpecs[i]
		out = append(out, Replicas{
			Type: string(rs.Type), Count: deref32(rs.Replicas, 1), Template: &rs.Template,
			Restart: trainingRestart(rs.RestartPolicy), MainContainer: "pytorch",
		})
	}
	return out
}

func (j pytorchJob) master(c *Cluster) string {
	if c.Group("master") != nil {
		return "master"
	}
	return c.Replicas[0].Type
}

func (j pytorchJob) MutatePod(c *Cluster, pod *corev1.Pod, g *Replicas, index int) error {
	m := j.master(c)
	vars := []corev1.EnvVar{
		env("MASTER_ADDR", c.Host(m, 0)),
		env("MASTER_PORT", strconv.Itoa(int(containerPort(c.Group(m), "pytorchjob-port", defaultMasterPort)))),
	}
	tr := j.Spec.TorchrunConfig
	if !tr.IsEnabled() {
		vars = append(vars, env("WORLD_SIZE", strconv.Itoa(c.WorldSize())), env("RANK", strconv.Itoa(c.RankFrom(m, g.Type, index))))
		addEnv(pod, vars...)
		return nil
	}
	addEnv(pod, vars...)
	// The manuals: torchrun drives the container named python (ours: pytorch), else the first.
	main := mainContainer(pod, "python", g.MainContainer)
	cmd, err := torchrunCommand(tr, j.Spec.Elastic, c, g, gpuCount(main), string(j.UID))
	if err != nil {
		return err
	}
	main.Command, main.Args = append(cmd, main.Args...), nil
	return nil
}

// torchrunCommand is "torchrun <options>"; the container's args follow it.
func torchrunCommand(tr *batch.TorchrunConfig, el *batch.ElasticConfig, c *Cluster, g *Replicas, gpus int64, rdzvID string) ([]string, error) {
	nnodes := strconv.Itoa(c.WorldSize())
	if el != nil && el.Enabled {
		lo, hi := deref32(el.MinReplicas, 1), deref32(el.MaxReplicas, int32(c.WorldSize()))
		nnodes = fmt.Sprintf("%d:%d", lo, hi)
	} else if tr.MinNodes != nil {
		nnodes = fmt.Sprintf("%d:%d", *tr.MinNodes, c.WorldSize())
	}
	cmd := []string{"torchrun", "--nnodes=" + nnodes}
	if p := tr.ProcPerNode; p != nil {
		n := p.String()
		if n == "gpu" {
			if gpus == 0 {
				return nil, fmt.Errorf("torchrunConfig.procPerNode is \"gpu\" but replica type %s asks for no GPUs", g.Type)
			}
			n = strconv.FormatInt(gpus, 10)
		}
		cmd = append(cmd, "--nproc_per_node="+n)
	}
	backend := tr.RdzvBackend
	if backend == "" {
		backend = "c10d"
	}
	cmd = append(cmd, "--rdzv_backend="+backend, "--rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT)")
	if rdzvID != "" {
		cmd = append(cmd, "--rdzv_id="+rdzvID)
	}
	if tr.MaxRestarts != nil {
		cmd = append(cmd, "--max_restarts="+strconv.Itoa(int(*tr.MaxRestarts)))
	}
	return append(cmd, tr.ExtraOptions...), nil
}

func (j pytorchJob) Outcome(c *Cluster, v *View) Outcome {
	return decidedBy(c, v, j.master(c), 0)
}

// ValidateReplicas: the master (a master replica, else the first type listed) is the rendezvous
// point, rank 0 and the replica that decides the job, so it must exist; a master replica type is
// that one pod. torchrun's minNodes cannot exceed the job's replicas.
func (j pytorchJob) ValidateReplicas(c *Cluster, specPath func(*Replicas) *field.Path) field.ErrorList {
	if len(c.Replicas) == 0 {
		return nil
	}
	var errs field.ErrorList
	if c.Group("master") != nil {
		errs = countRule(c, specPath, "master", 1, 1, true, "the master is rank 0, MASTER_ADDR and the replica that decides the job")
	} else {
		first := c.Replicas[0].Type
		errs = countRule(c, specPath, first, 1, -1, true,
			fmt.Sprintf("without a master replica the first type listed (%s) is the master: MASTER_ADDR is %s-%s-0", first, c.Name, first))
	}
	if tr := j.Spec.TorchrunConfig; tr.IsEnabled() && tr.MinNodes != nil && !(j.Spec.Elastic != nil && j.Spec.Elastic.Enabled) &&
		int(*tr.MinNodes) > c.WorldSize() {
		errs = append(errs, field.Invalid(field.NewPath("spec", "torchrunConfig", "minNodes"), *tr.MinNodes,
			fmt.Sprintf("must not be greater than the job's %d replicas", c.WorldSize())))
	}
	return errs
}
