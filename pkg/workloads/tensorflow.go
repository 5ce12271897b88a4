package workloads

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// defaultTFPort is the TF_CONFIG port when the container declares none (TensorFlow's own default).
const defaultTFPort = 2222

// tensorflowJob adapts TensorFlowTrainingJob: every replica gets TF_CONFIG; the chief (else
// worker 0) decides.
type tensorflowJob struct{ *batch.TensorFlowTrainingJob }

func newTensorFlowJob() Job { return tensorflowJob{&batch.TensorFlowTrainingJob{}} }

func (j tensorflowJob) Object() client.Object { return j.TensorFlowTrainingJob }
func (j tensorflowJob) GVK() schema.GroupVersionKind {
	return batch.GroupVersion.WithKind("TensorFlowTrainingJob")
}
func (j tensorflowJob) Common() *batch.CommonJobSpec { return &j.Spec.CommonJobSpec }
func (j tensorflowJob) Status() *batch.JobStatus     { return &j.TensorFlowTrainingJob.Status.JobStatus }
func (j tensorflowJob) RunPolicy() RunPolicy         { return trainingRunPolicy(j.Spec.RunPolicy) }

// TensorBoard is spec.tensorboardSpec: a TensorBoard beside the job (see JobWithTensorBoard).
func (j tensorflowJob) TensorBoard() *batch.TensorBoardSpec { return j.Spec.TensorboardSpec }
func (j tensorflowJob) TensorBoardStatus() **batch.DependentStatus {
	return &j.TensorFlowTrainingJob.Status.Tensorboard
}
func (j tensorflowJob) Replicas() []Replicas {
	return trainingReplicas(j.Spec.ReplicaSpecs, "tensorflow")
}

// trainingReplicas reads the string-form replica specs of TensorFlow and XGBoost.
func trainingReplicas(specs []batch.TrainingReplicaSpec, main string) []Replicas {
	out := make([]Replicas, 0, len(specs))
	for i := range specs {
		rs := &specs[i]
		out = append(out, Replicas{Type: string(rs.Type), Count: deref32(rs.Replicas, 1), Template: &rs.Template,
			Restart: trainingRestart(rs.RestartPolicy), MainContainer: main})
	}
	return out
}

func (j tensorflowJob) MutatePod(c *Cluster, pod *corev1.Pod, g *Replicas, index int) error {
	cfg, err := tfConfig(c, g.Type, index)
	if err != nil {
		return err
	}
	addEnv(pod, env("TF_CONFIG", cfg))
	return nil
}

// tfConfig is TF_CONFIG: every replica but the evaluator in the cluster, and this task.
func tfConfig(c *Cluster, replicaType string, index int) (string, error) {
	cluster := map[string][]string{}
	for i := range c.Replicas {
		g := &c.Replicas[i]
		if g.Type == "evaluator" {
			continue
		}
		port := containerPort(g, "tfjob-port", defaultTFPort)
		for k := 0; k < int(g.Count); k++ {
			cluster[g.Type] = append(cluster[g.Type], fmt.Sprintf("%s:%d", c.Host(g.Type, k), port))
		}
	}
	b, err := json.Marshal(map[string]any{
		"cluster": cluster,
		"task":    map[string]any{"type": replicaType, "index": index},
	})
	return string(b), err
}

func (j tensorflowJob) Outcome(c *Cluster, v *View) Outcome {
	if c.Group("chief") != nil {
		return decidedBy(c, v, "chief", 0)
	}
	return decidedBy(c, v, "worker", 0)
}

// ValidateReplicas: TensorFlow has at most one chief and one evaluator; the chief, else worker 0,
// decides the job, so one of them must exist.
func (j tensorflowJob) ValidateReplicas(c *Cluster, specPath func(*Replicas) *field.Path) field.ErrorList {
	errs := countRule(c, specPath, "evaluator", 0, 1, false, "TensorFlow runs one evaluator")
	if c.Group("chief") != nil {
		return append(errs, countRule(c, specPath, "chief", 1, 1, true, "the chief is one task, and it decides the job")...)
	}
	if c.Group("worker") == nil {
		return append(errs, field.Required(field.NewPath("spec", "replicaSpecs"),
			fmt.Sprintf("%s needs a chief or at least 1 worker: the chief, else worker 0, decides the job", c.Kind)))
	}
	return append(errs, countRule(c, specPath, "worker", 1, -1, true, "without a chief, worker 0 decides the job")...)
}
