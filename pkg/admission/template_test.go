package admission

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	"sigs.k8s.io/yaml"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// jobFrom decodes a manifest the way the webhook does.
func jobFrom(t *testing.T, manifest string) ([]byte, *batchv1beta1.GenericJob) {
	t.Helper()
	raw, err := yaml.YAMLToJSON([]byte(manifest))
	require.NoError(t, err)
	var j batchv1beta1.GenericJob
	require.NoError(t, json.Unmarshal(raw, &j))
	return raw, &j
}

const jobHead = `apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata: {name: j, namespace: ns}
spec:
  replicaSpecs:
  - type: worker
    template:
      spec:
`

func fields(errs field.ErrorList) string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field+": "+string(e.Type))
	}
	return strings.Join(out, "; ")
}

// Every check names the job's own field, down to the container and the resource.
func TestTemplateValidationNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		name, spec string
		want       string // field: type of the first error
	}{
		{"NaN quantity", `        containers: [{image: busybox, resources: {requests: {cpu: "NaN"}}}]`,
			"spec.replicaSpecs[0].template.spec.containers[0].resources.requests.cpu: FieldValueInvalid"},
		{"securityContext a string", `        securityContext: "x"
        containers: [{image: busybox}]`,
			"spec.replicaSpecs[0].template.spec.securityContext: FieldValueTypeInvalid"},
		{"no image", `        containers: [{name: main}]`,
			"spec.replicaSpecs[0].template.spec.containers[0].image: FieldValueRequired"},
		{"negative cpu", `        containers: [{image: busybox, resources: {requests: {cpu: "-1"}}}]`,
			"spec.replicaSpecs[0].template.spec.containers[0].resources.requests[cpu]: FieldValueInvalid"},
		{"no containers", `        containers: []`,
			"spec.replicaSpecs[0].template.spec.containers: FieldValueRequired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, job := jobFrom(t, jobHead+tc.spec)
			v := &Validator{}
			errs, err := v.validateJob(requestFor(raw), job)
			require.NoError(t, err)
			require.NotEmpty(t, errs)
			assert.Equal(t, tc.want, fields(errs[:1]))
		})
	}
}

// A valid template, with unnamed containers as the manuals write them, passes every check.
func TestTemplateValidationAcceptsManualsTemplate(t *testing.T) {
	raw, job := jobFrom(t, jobHead+`        containers:
        - image: busybox
          command: [sh, -c, "echo hi"]
          resources: {limits: {cpu: 1, memory: 1Gi, nvidia.com/gpu: 2}}
        - image: sidecar`)
	errs, err := (&Validator{}).validateJob(requestFor(raw), job)
	require.NoError(t, err)
	assert.Empty(t, errs)
}

// The launcher kinds need workers; a job needs a replica; an unknown Required level is refused
// when the scheduler's levels are known.
func TestReplicaAndLevelChecks(t *testing.T) {
	raw, job := jobFrom(t, strings.Replace(jobHead, "  - type: worker\n", "  - type: worker\n    replicas: 0\n", 1)+`        containers: [{image: busybox}]`)
	errs, err := (&Validator{}).validateJob(requestFor(raw), job)
	require.NoError(t, err)
	assert.Equal(t, "spec: FieldValueInvalid", fields(errs))

	ds := `apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: d, namespace: ns}
spec:
  worker:
    replicas: 0
    template: {spec: {containers: [{image: busybox}]}}`
	raw, err = yaml.YAMLToJSON([]byte(ds))
	require.NoError(t, err)
	var d batchv1beta1.DeepSpeedJob
	require.NoError(t, json.Unmarshal(raw, &d))
	errs, err = (&Validator{}).validateJob(requestFor(raw), &d)
	require.NoError(t, err)
	assert.Contains(t, fields(errs), "spec.worker.replicas: FieldValueInvalid")

	raw, job = jobFrom(t, strings.Replace(jobHead, "metadata: {name: j, namespace: ns}",
		"metadata: {name: j, namespace: ns, annotations: {scheduler.tensorstack.dev/topology-policy: 'Required:no.such/label'}}", 1)+`        containers: [{image: busybox}]`)
	errs, err = (&Validator{TopologyLevels: []string{"nvidia.com/gpu.clique"}}).validateJob(requestFor(raw), job)
	require.NoError(t, err)
	assert.Equal(t, "metadata.annotations[scheduler.tensorstack.dev/topology-policy]: FieldValueNotSupported", fields(errs))
}

func TestVisitTemplatesFollowsTheGoType(t *testing.T) {
	obj := map[string]any{"spec": map[string]any{
		"replicaSpecs": []any{map[string]any{"template": "a"}, map[string]any{"template": "b"}},
		"worker":       map[string]any{"template": "c"}}}
	var got []string
	visitTemplates(reflect.TypeOf(&batchv1beta1.MPIJob{}), obj, nil, func(p *field.Path, node any, _ bool) {
		got = append(got, p.String()+"="+node.(string))
	})
	assert.Equal(t, []string{"spec.replicaSpecs[0].template=a", "spec.replicaSpecs[1].template=b", "spec.worker.template=c"}, got)
}

func requestFor(raw []byte) admission.Request {
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		Operation: admissionv1.Create, Namespace: "ns", Object: runtime.RawExtension{Raw: raw}}}
}
