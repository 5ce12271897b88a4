package integration

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const busybox = `{spec: {containers: [{image: busybox}]}}`

// TestJobReplicaCountsThatCannotRunAreRefused: every kind refuses, at admission and naming the
// field, a replica count its pods could never run with (nobody to decide the job, two pods for a
// role that is one process, a rule about replicas that do not exist, elastic bounds that cross).
// Some of these the CRD's own rules refuse (their messages name spec or spec.elastic); the others
// are the webhook's (workloads.ValidateReplicas).
func TestJobReplicaCountsThatCannotRunAreRefused(t *testing.T) {
	e := startEnv(t, envOptions{jobs: true})
	e.namespace("demo", nil)
	for i, tc := range []struct {
		name, manifest, want string
	}{
		{"PyTorchTrainingJob with 0 masters", `kind: PyTorchTrainingJob
spec:
  replicaSpecs:
  - {type: master, replicas: 0, template: ` + busybox + `}
  - {type: worker, replicas: 2, template: ` + busybox + `}`,
			`spec.replicaSpecs[0].replicas: Invalid value: 0: PyTorchTrainingJob needs exactly 1 master: the master is rank 0`},
		{"PyTorchTrainingJob whose first replica type is empty", `kind: PyTorchTrainingJob
spec:
  replicaSpecs:
  - {type: node, replicas: 0, template: ` + busybox + `}
  - {type: worker, replicas: 2, template: ` + busybox + `}`,
			`spec.replicaSpecs[0].replicas: Invalid value: 0: PyTorchTrainingJob needs at least 1 node: without a master replica the first type listed (node) is the master`},
		{"PyTorchTrainingJob with a replica type twice", `kind: PyTorchTrainingJob
spec:
  replicaSpecs:
  - {type: worker, replicas: 1, template: ` + busybox + `}
  - {type: worker, replicas: 2, template: ` + busybox + `}`,
			`spec.replicaSpecs[1]: Duplicate value: {"type":"worker"}`},
		{"PyTorchTrainingJob with minReplicas above maxReplicas", `kind: PyTorchTrainingJob
spec:
  torchrunConfig: {enabled: true}
  elastic: {enabled: true, minReplicas: 4, maxReplicas: 2}
  replicaSpecs:
  - {type: worker, replicas: 2, template: ` + busybox + `}`,
			`spec.elastic: Invalid value: "object": elastic.minReplicas must not exceed elastic.maxReplicas`},
		{"PyTorchTrainingJob with expectedReplicas out of bounds", `kind: PyTorchTrainingJob
spec:
  torchrunConfig: {enabled: true}
  elastic: {enabled: true, minReplicas: 1, maxReplicas: 2, expectedReplicas: 3}
  replicaSpecs:
  - {type: worker, replicas: 2, template: ` + busybox + `}`,
			`spec.elastic: Invalid value: "object": elastic.expectedReplicas must lie within [minReplicas, maxReplicas]`},
		{"PyTorchTrainingJob with minNodes above its replicas", `kind: PyTorchTrainingJob
spec:
  torchrunConfig: {enabled: true, minNodes: 3}
  replicaSpecs:
  - {type: node, replicas: 2, template: ` + busybox + `}`,
			`spec.torchrunConfig.minNodes: Invalid value: 3: must not be greater than the job's 2 replicas`},
		{"TensorFlowTrainingJob with 2 chiefs", `kind: TensorFlowTrainingJob
spec:
  replicaSpecs:
  - {type: chief, replicas: 2, template: ` + busybox + `}
  - {type: worker, replicas: 2, template: ` + busybox + `}`,
			`spec.replicaSpecs[0].replicas: Invalid value: 2: TensorFlowTrainingJob needs exactly 1 chief: the chief is one task, and it decides the job`},
		{"TensorFlowTrainingJob with parameter servers only", `kind: TensorFlowTrainingJob
spec:
  replicaSpecs:
  - {type: ps, replicas: 2, template: ` + busybox + `}`,
			`spec.replicaSpecs: Required value: TensorFlowTrainingJob needs a chief or at least 1 worker: the chief, else worker 0, decides the job`},
		{"TensorFlowTrainingJob with 0 workers and no chief", `kind: TensorFlowTrainingJob
spec:
  replicaSpecs:
  - {type: ps, replicas: 1, template: ` + busybox + `}
  - {type: worker, replicas: 0, template: ` + busybox + `}`,
			`spec.replicaSpecs[1].replicas: Invalid value: 0: TensorFlowTrainingJob needs at least 1 worker: without a chief, worker 0 decides the job`},
		{"XGBoostTrainingJob with 2 masters", `kind: XGBoostTrainingJob
spec:
  replicaSpecs:
  - {type: master, replicas: 2, template: ` + busybox + `}`,
			`spec.replicaSpecs[0].replicas: Invalid value: 2: XGBoostTrainingJob needs exactly 1 master: the master is rank 0`},
		{"MPIJob (2025) with 0 workers", `kind: MPIJob
spec:
  mpiConfig: {script: [hostname]}
  replicaSpecs:
  - {type: worker, replicas: 0, template: ` + busybox + `}`,
			`spec.replicaSpecs[0].replicas: Invalid value: 0: MPIJob needs at least one worker`},
		{"MPIJob (2025) with 2 launchers", `kind: MPIJob
spec:
  mpiConfig: {script: [hostname]}
  replicaSpecs:
  - {type: worker, replicas: 2, template: ` + busybox + `}
  - {type: launcher, replicas: 2, template: {}}`,
			`spec: Invalid value: "object": MPIJob has at most one launcher replica`},
		{"MPIJob (2025) with an unknown replica type", `kind: MPIJob
spec:
  mpiConfig: {script: [hostname]}
  replicaSpecs:
  - {type: worker, replicas: 2, template: ` + busybox + `}
  - {type: server, replicas: 1, template: ` + busybox + `}`,
			`spec: Invalid value: "object": MPIJob replicaSpecs[].type must be worker or launcher`},
		{"ColossalAIJob (2025) with 0 workers", `kind: ColossalAIJob
spec:
  torchConfig: {script: [train.py]}
  replicaSpecs:
  - {type: worker, replicas: 0, template: ` + busybox + `}`,
			`spec.replicaSpecs[0].replicas: Invalid value: 0: ColossalAIJob needs at least one worker`},
		{"DeepSpeedJob with crossed elastic bounds", `kind: DeepSpeedJob
spec:
  elastic: {enabled: true, minReplicas: 3, maxReplicas: 2}
  worker: {replicas: 2, template: ` + busybox + `}`,
			`spec.elastic: Invalid value: "object": elastic.minReplicas must not exceed elastic.maxReplicas`},
		{"GenericJob whose success rule names a replica that does not exist", `kind: GenericJob
spec:
  successRules: [{worker: [0, 2]}]
  replicaSpecs:
  - {type: worker, replicas: 2, template: ` + busybox + `}`,
			`spec.successRules[0].worker[1]: Invalid value: 2: the job has 2 worker replicas (indices 0 to 1)`},
		{"GenericJob whose failure rule names an unknown type", `kind: GenericJob
spec:
  failureRules: [{master: [0]}]
  replicaSpecs:
  - {type: worker, replicas: 2, template: ` + busybox + `}`,
			`spec: Invalid value: "object": failureRules may only name replica types listed in replicaSpecs`},
		{"GenericJob with a replica type twice", `kind: GenericJob
spec:
  replicaSpecs:
  - {type: worker, replicas: 1, template: ` + busybox + `}
  - {type: worker, replicas: 1, template: ` + busybox + `}`,
			`spec.replicaSpecs[1]: Duplicate value: {"type":"worker"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := object(t, fmt.Sprintf("apiVersion: batch.tensorstack.dev/v1beta1\nmetadata: {name: bad-%d, namespace: demo}\n%s", i, tc.manifest))
			err := e.c.Create(e.ctx, obj)
			require.Error(t, err, "admitted")
			require.True(t, apierrors.IsInvalid(err), "want 422 Invalid, got %v", err)
			require.Contains(t, err.Error(), tc.want)
			require.True(t, apierrors.IsNotFound(e.c.Get(e.ctx, client.ObjectKeyFromObject(obj), obj.DeepCopy())), "refused object was stored")
		})
	}
	// What can run is admitted: one master beside workers listed first, a chief-less TF job with
	// workers, an elastic job within its bounds.
	for _, manifest := range []string{`kind: PyTorchTrainingJob
metadata: {name: ok-pytorch, namespace: demo}
spec:
  replicaSpecs:
  - {type: worker, replicas: 2, template: ` + busybox + `}
  - {type: master, replicas: 1, template: ` + busybox + `}`, `kind: TensorFlowTrainingJob
metadata: {name: ok-tf, namespace: demo}
spec:
  replicaSpecs:
  - {type: ps, replicas: 1, template: ` + busybox + `}
  - {type: worker, replicas: 2, template: ` + busybox + `}`, `kind: DeepSpeedJob
metadata: {name: ok-ds, namespace: demo}
spec:
  elastic: {enabled: true, minReplicas: 1, maxReplicas: 4, expectedReplicas: 3}
  worker: {replicas: 2, template: ` + busybox + `}`} {
		require.NoError(t, e.c.Create(e.ctx, object(t, "apiVersion: batch.tensorstack.dev/v1beta1\n"+manifest)))
	}
}
