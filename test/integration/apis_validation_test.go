package integration

import (
	"context"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"
)

// Minimal valid bodies the cases below break one field at a time.
const (
	tplWorker = `
    template:
      spec:
        containers:
        - name: worker
          image: busybox`
	validationNS = "t9k-validation"
)

// TestAPIValidation sends invalid objects to the real apiserver and checks each is rejected by the
// rule meant for it: the message must name the field and say what the rule is. A few valid
// neighbours make sure the rules do not reject too much.
func TestAPIValidation(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		// want are substrings of the rejection; empty means the object must be accepted.
		want []string
	}{
		{
			name: "DeepSpeed run with two entries",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: ds}
spec:
  worker:
    replicas: 2` + tplWorker + `
  config:
    run:
      python: [train.py]
      module: [train]`,
			want: []string{"spec.config.run", "exactly one of python, module and exec"},
		},
		{
			name: "DeepSpeed run with no entry",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: ds}
spec:
  worker:` + tplWorker + `
  config:
    run: {}`,
			want: []string{"spec.config.run", "exactly one of python, module and exec"},
		},
		{
			name: "DeepSpeed with exactly one run entry is fine",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: ds}
spec:
  worker:` + tplWorker + `
  config:
    slotsPerWorker: 8
    run:
      exec: [./train.sh]
    otherArgs: ["--master_port=12346"]`,
		},
		{
			name: "DeepSpeed forbidden otherArgs",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: ds}
spec:
  worker:` + tplWorker + `
  config:
    run: {python: [train.py]}
    otherArgs: ["--master_port=1", "--no_python"]`,
			want: []string{"spec.config.otherArgs", "must not contain --no_local_rank, --autotuning, --module or --no_python"},
		},
		{
			name: "DeepSpeed forbidden otherArgs with a value",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: ds}
spec:
  worker:` + tplWorker + `
  config:
    run: {python: [train.py]}
    otherArgs: ["--autotuning=run"]`,
			want: []string{"spec.config.otherArgs", "must not contain"},
		},
		{
			name: "DeepSpeed bad autotune",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: ds}
spec:
  worker:` + tplWorker + `
  config:
    autotune: always
    run: {python: [train.py]}`,
			want: []string{"spec.config.autotune", `Unsupported value: "always"`, `"none", "tune", "run"`},
		},
		{
			name: "job priority 101",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata: {name: gj}
spec:
  scheduler:
    t9kScheduler: {queue: default, priority: 101}
  replicaSpecs:
  - type: worker` + tplWorker,
			want: []string{"spec.scheduler.t9kScheduler.priority", "less than or equal to 100"},
		},
		{
			name: "job priority negative",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: PyTorchTrainingJob
metadata: {name: pj}
spec:
  scheduler:
    t9kScheduler: {queue: default, priority: -1}
  replicaSpecs:
  - type: worker` + tplWorker,
			want: []string{"spec.scheduler.t9kScheduler.priority", "greater than or equal to 0"},
		},
		{
			name: "TensorFlow replica type master",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: TensorFlowTrainingJob
metadata: {name: tj}
spec:
  replicaSpecs:
  - type: master` + tplWorker,
			want: []string{"spec", "replicaSpecs[].type must be one of chief, worker, ps, evaluator"},
		},
		{
			name: "XGBoost replica type ps",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: XGBoostTrainingJob
metadata: {name: xj}
spec:
  replicaSpecs:
  - type: ps` + tplWorker,
			want: []string{"spec", "replicaSpecs[].type must be master or worker"},
		},
		{
			name: "MPIJob replica type master",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata: {name: mj}
spec:
  replicaSpecs:
  - type: master` + tplWorker,
			want: []string{"spec", "replicaSpecs[].type must be worker or launcher"},
		},
		{
			name: "GenericJob replica type not a DNS label",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata: {name: gj}
spec:
  replicaSpecs:
  - type: Worker_1` + tplWorker,
			want: []string{"spec.replicaSpecs[0].type", "should match"},
		},
		{
			name: "GenericJob duplicate replica type",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata: {name: gj}
spec:
  replicaSpecs:
  - type: worker` + tplWorker + `
  - type: worker` + tplWorker,
			want: []string{"spec.replicaSpecs[1]", "Duplicate value"},
		},
		{
			name: "GenericJob success rule names an unknown type",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata: {name: gj}
spec:
  successRules:
  - {master: [0]}
  replicaSpecs:
  - type: worker` + tplWorker,
			want: []string{"spec", "successRules may only name replica types listed in replicaSpecs"},
		},
		{
			name: "string restart policy out of enum",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: PyTorchTrainingJob
metadata: {name: pj}
spec:
  replicaSpecs:
  - type: worker
    restartPolicy: Sometimes` + tplWorker,
			want: []string{"spec.replicaSpecs[0].restartPolicy", `Unsupported value: "Sometimes"`, `"ExitCode"`},
		},
		{
			name: "struct restart policy has no ExitCode",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata: {name: gj}
spec:
  replicaSpecs:
  - type: worker
    restartPolicy: {policy: ExitCode, limit: 3}` + tplWorker,
			want: []string{"spec.replicaSpecs[0].restartPolicy.policy", `Unsupported value: "ExitCode"`},
		},
		{
			name: "cleanUpPolicy out of enum",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata: {name: gj}
spec:
  cleanUpPolicy: Finished
  replicaSpecs:
  - type: worker` + tplWorker,
			want: []string{"spec.cleanUpPolicy", `Unsupported value: "Finished"`},
		},
		{
			name: "torchrun procPerNode neither number nor gpu",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: PyTorchTrainingJob
metadata: {name: pj}
spec:
  torchrunConfig: {enabled: true, procPerNode: auto}
  replicaSpecs:
  - type: node` + tplWorker,
			want: []string{"spec.torchrunConfig.procPerNode", "should match"},
		},
		{
			name: "elastic without torchrun",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: PyTorchTrainingJob
metadata: {name: pj}
spec:
  elastic: {enabled: true, minReplicas: 1, maxReplicas: 4}
  replicaSpecs:
  - type: node` + tplWorker,
			want: []string{"spec", "elastic.enabled needs torchrunConfig.enabled"},
		},
		{
			name: "elastic min above max",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: ds}
spec:
  elastic: {enabled: true, minReplicas: 4, maxReplicas: 2}
  worker:` + tplWorker,
			want: []string{"spec.elastic", "minReplicas must not exceed elastic.maxReplicas"},
		},
		{
			name: "MPIJob mixing the 2024 and 2025 shapes",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata: {name: mj}
spec:
  worker:
    replicas: 2` + tplWorker + `
  replicaSpecs:
  - type: worker` + tplWorker,
			want: []string{"spec", "set exactly one of worker (2024 shape) and replicaSpecs (2025 shape)"},
		},
		{
			name: "ColossalAIJob 2024 launcher with 2025 replicaSpecs",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: ColossalAIJob
metadata: {name: caij}
spec:
  launcher: {image: busybox}
  replicaSpecs:
  - type: worker` + tplWorker,
			want: []string{"spec", "launcher belongs to the 2024 shape"},
		},
		{
			name: "unknown field is rejected, not dropped",
			yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: ds}
spec:
  worker:` + tplWorker + `
  config:
    slotPerWorker: 8
    run: {python: [train.py]}`,
			want: []string{`unknown field "spec.config.slotPerWorker"`},
		},
		{
			name: "Queue bad maxDuration",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: Queue
metadata: {name: q}
spec:
  maxDuration: 2 hours`,
			want: []string{"spec.maxDuration", "should match"},
		},
		{
			name: "Queue maxDuration in the documented form is fine",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: Queue
metadata: {name: q}
spec:
  maxDuration: 1d2h30m
  quota:
    requests: {cpu: "10", nvidia.com/gpu: "8"}`,
		},
		{
			name: "Queue priority 101",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: Queue
metadata: {name: q}
spec:
  priority: 101`,
			want: []string{"spec.priority", "less than or equal to 100"},
		},
		{
			name: "Queue with both quota spellings",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: Queue
metadata: {name: q}
spec:
  requests: {cpu: "4"}
  quota:
    requests: {cpu: "4"}`,
			want: []string{"spec", "spec.requests is the pre-2023 spelling of spec.quota.requests"},
		},
		{
			name: "PodGroup negative minMember",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: PodGroup
metadata: {name: pg}
spec:
  minMember: -1`,
			want: []string{"spec.minMember", "greater than or equal to 1"},
		},
		{
			name: "PodGroup without minMember",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: PodGroup
metadata: {name: pg}
spec:
  queue: default`,
			want: []string{"spec.minMember", "Required value"},
		},
		{
			name: "PodGroup negative role minMember",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: PodGroup
metadata: {name: pg}
spec:
  minMember: 2
  roles:
  - {name: worker, minMember: -2}`,
			want: []string{"spec.roles[0].minMember", "greater than or equal to 0"},
		},
		{
			name: "PodGroup Required topology without a level",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: PodGroup
metadata: {name: pg}
spec:
  minMember: 2
  topologyPolicy: {mode: Required}`,
			want: []string{"spec.topologyPolicy", "level is required when mode is Required"},
		},
		{
			name: "PodGroup Preferred topology with a level",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: PodGroup
metadata: {name: pg}
spec:
  minMember: 2
  topologyPolicy: {mode: Preferred, level: nvidia.com/gpu.clique}`,
			want: []string{"spec.topologyPolicy", "level may only be set when mode is Required"},
		},
		{
			name: "PodGroup unknown topology mode",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: PodGroup
metadata: {name: pg}
spec:
  minMember: 2
  topologyPolicy: {mode: Strict}`,
			want: []string{"spec.topologyPolicy.mode", `Unsupported value: "Strict"`},
		},
		{
			name: "PodGroup topology level that is no label key",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: PodGroup
metadata: {name: pg}
spec:
  minMember: 2
  topologyPolicy: {mode: Required, level: "rack 1"}`,
			want: []string{"spec.topologyPolicy.level", "should match"},
		},
		{
			name: "PodGroup Required topology with a level is fine",
			yaml: `
apiVersion: scheduler.tensorstack.dev/v1beta1
kind: PodGroup
metadata: {name: pg}
spec:
  minMember: 16
  priority: 100
  roles:
  - {name: worker, minMember: 16}
  topologyPolicy: {mode: Required, level: nvidia.com/gpu.clique}`,
		},
	}

	cp := startControlPlane(t)
	ctx := context.Background()
	d := newDryRunner(t, cp.Config)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gvk := headGVK(t, tc.yaml)
			err := d.create(ctx, gvk, validationNS, []byte(tc.yaml))
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("valid object rejected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want a rejection containing %q", tc.want)
			}
			t.Logf("rejected: %v", err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("rejection lacks %q:\n%v", w, err)
				}
			}
		})
	}

	// Transition rules need a stored object: create for real, then change what must not change.
	t.Run("immutable fields", func(t *testing.T) {
		for _, tc := range []struct {
			name, yaml, patch string
			want              []string
		}{
			{
				name: "elastic.maxReplicas",
				yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: PyTorchTrainingJob
metadata: {name: elastic}
spec:
  torchrunConfig: {enabled: true}
  elastic: {enabled: true, minReplicas: 1, maxReplicas: 4, expectedReplicas: 2}
  replicaSpecs:
  - type: node` + tplWorker,
				patch: `{"spec":{"elastic":{"maxReplicas":8,"expectedReplicas":3}}}`,
				want:  []string{"spec.elastic", "elastic.maxReplicas is immutable"},
			},
			{
				name: "runMode.pause.resumeSpecs",
				yaml: `
apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata: {name: paused}
spec:
  runMode:
    pause:
      enabled: true
      resumeSpecs:
      - {type: worker, command: [sleep, "1"]}
  replicaSpecs:
  - type: worker` + tplWorker,
				patch: `{"spec":{"runMode":{"pause":{"resumeSpecs":[{"type":"worker","command":["sleep","2"]}]}}}}`,
				want:  []string{"spec.runMode.pause.resumeSpecs", "resumeSpecs cannot be changed after creation"},
			},
		} {
			gvk := headGVK(t, tc.yaml)
			m, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				t.Fatal(err)
			}
			base := d.rc.Post().AbsPath("/apis", gvk.Group, gvk.Version, "namespaces", validationNS, m.Resource.Resource)
			if err := base.SetHeader("Content-Type", "application/yaml").Body([]byte(tc.yaml)).Do(ctx).Error(); err != nil {
				t.Fatalf("%s: creating: %v", tc.name, err)
			}
			var head struct {
				Metadata struct{ Name string } `json:"metadata"`
			}
			_ = yaml.Unmarshal([]byte(tc.yaml), &head)
			err = d.rc.Patch(types.MergePatchType).
				AbsPath("/apis", gvk.Group, gvk.Version, "namespaces", validationNS, m.Resource.Resource, head.Metadata.Name).
				Body([]byte(tc.patch)).Do(ctx).Error()
			if err == nil {
				t.Errorf("%s: change accepted", tc.name)
				continue
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("%s: rejection lacks %q:\n%v", tc.name, w, err)
				}
			}
		}
	})
}

// headGVK reads apiVersion and kind of a YAML document.
func headGVK(t *testing.T, doc string) schema.GroupVersionKind {
	t.Helper()
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
		t.Fatalf("test case YAML: %v", err)
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		t.Fatal(err)
	}
	return gv.WithKind(head.Kind)
}
