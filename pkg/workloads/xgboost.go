package workloads

import (
	"strconv"

	"k8s.io/apimachinery/pkg/util/validation/field"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// defaultXGBoostPort is the rabit tracker port when the master declares none.
const defaultXGBoostPort = 9999

// xgboostJob adapts XGBoostTrainingJob: Kubeflow-style rabit env (MASTER_ADDR/PORT, RANK with the
// master at 0, WORLD_SIZE); the master, which must exist, decides.
type xgboostJob struct{ *batch.XGBoostTrainingJob }

func newXGBoostJob() Job { return xgboostJob{&batch.XGBoostTrainingJob{}} }

func (j xgboostJob) Object() client.Object { return j.XGBoostTrainingJob }
func (j xgboostJob) GVK() schema.GroupVersionKind {
	return batch.GroupVersion.WithKind("XGBoostTrainingJob")
}
func (j xgboostJob) Common() *batch.CommonJobSpec { return &j.Spec.CommonJobSpec }
func (j xgboostJob) Status() *batch.JobStatus     { return &j.XGBoostTrainingJob.Status }
func (j xgboostJob) RunPolicy() RunPolicy         { return trainingRunPolicy(j.Spec.RunPolicy) }

// Replicas puts the master first, so that it has rank 0 whatever the listing order.
func (j xgboostJob) Replicas() []Replicas {
	rs := trainingReplicas(j.Spec.ReplicaSpecs, "xgboost")
	for i := range rs {
		if rs[i].Type == "master" && i > 0 {
			rs[0], rs[i] = rs[i], rs[0]
		}
	}
	return rs
}

func (j xgboostJob) MutatePod(c *Cluster, pod *corev1.Pod, g *Replicas, index int) error {
	addEnv(pod,
		env("MASTER_ADDR", c.Host("master", 0)),
		env("MASTER_PORT", strconv.Itoa(int(containerPort(c.Group("master"), "xgboost-port", defaultXGBoostPort)))),
		env("RANK", strconv.Itoa(c.Rank(g.Type, index))),
		env("WORLD_SIZE", strconv.Itoa(c.WorldSize())),
	)
	return nil
}

func (j xgboostJob) Outcome(c *Cluster, v *View) Outcome {
	if c.Group("master") == nil {
		return failed("XGBoostTrainingJob " + c.Name + " has failed: it has no master replica, which decides the job")
	}
	return decidedBy(c, v, "master", 0)
}

// ValidateReplicas: the master is rank 0, runs the rabit tracker and decides the job: one pod. A
// job without a master is admitted (the manual's own example omits it) and fails at once with a
// condition that says why (Outcome).
func (j xgboostJob) ValidateReplicas(c *Cluster, specPath func(*Replicas) *field.Path) field.ErrorList {
	return countRule(c, specPath, "master", 1, 1, false, "the master is rank 0, runs the tracker and decides the job")
}
