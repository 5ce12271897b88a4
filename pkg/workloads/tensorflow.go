package workloads

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
