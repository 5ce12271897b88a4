package integration

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	sched "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// object parses a manifest into an unstructured object: what kubectl sends, whatever it holds.
func object(t *testing.T, manifest string) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{}
	require.NoError(t, yaml.Unmarshal([]byte(manifest), &u.Object))
	return u
}

func genericJobYAML(ns, name, containers string) string {
	return `apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata: {name: ` + name + `, namespace: ` + ns + `}
spec:
  replicaSpecs:
  - type: worker
    replicas: 2
    template:
      spec:
` + containers
}

const (
	nanContainers = `        containers: [{image: busybox, resources: {requests: {cpu: "NaN"}}}]`
	scContainers  = `        securityContext: "x"
        containers: [{image: busybox}]`
	goodContainers = `        containers: [{image: busybox, command: [sleep, "1"]}]`
)

func (e *queueEnv) jobStatus(kind, ns, name string) *batch.JobStatus {
	obj := newTyped(kind)
	if err := e.c.Get(e.ctx, types.NamespacedName{Namespace: ns, Name: name}, obj); err != nil {
		return nil
	}
	return statusOf(obj)
}

func newTyped(kind string) client.Object {
	switch kind {
	case "DeepSpeedJob":
		return &batch.DeepSpeedJob{}
	case "MPIJob":
		return &batch.MPIJob{}
	}
	return &batch.GenericJob{}
}

// One tenant's malformed job, stored before the webhook could refuse it (as by an older
// version), must not stop the controllers: a correct job in another namespace still runs, and the
// malformed one says why it does not.
func TestMalformedJobDoesNotStopOtherTenants(t *testing.T) {
	e := startEnv(t, envOptions{jobs: true, before: func(c client.Client) {
		ctx := t.Context()
		require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "tenant-a"}}))
		require.NoError(t, c.Create(ctx, object(t, genericJobYAML("tenant-a", "broken-cpu", nanContainers))))
		require.NoError(t, c.Create(ctx, object(t, genericJobYAML("tenant-a", "broken-sc", scContainers))))
	}})
	e.namespace("tenant-b", nil)
	require.NoError(t, e.c.Create(e.ctx, object(t, genericJobYAML("tenant-b", "good", goodContainers))))

	var pods corev1.PodList
	e.eventually("the good job's pods", func() bool {
		_ = e.c.List(e.ctx, &pods, client.InNamespace("tenant-b"), client.MatchingLabels{workloads.LabelOwnerName: "good"})
		return len(pods.Items) == 2
	})
	for i := range pods.Items {
		p := &pods.Items[i]
		p.Status.Phase = corev1.PodRunning
		require.NoError(t, e.c.Status().Update(e.ctx, p))
	}
	e.eventually("the good job running", func() bool {
		st := e.jobStatus("GenericJob", "tenant-b", "good")
		return st != nil && st.Phase == batch.JobRunning
	})

	for name, want := range map[string]string{
		"broken-cpu": "spec.replicaSpecs[0].template is not a valid template: quantities must match the regular expression",
		"broken-sc":  "spec.replicaSpecs[0].template is not a valid template: json: cannot unmarshal string into Go struct field PodSpec.spec.securityContext",
	} {
		var st *batch.JobStatus
		e.eventually(name+" explained", func() bool {
			st = e.jobStatus("GenericJob", "tenant-a", name)
			c := condition(st, batch.JobConditionReplicaFailure)
			return c != nil && c.Status == corev1.ConditionTrue && c.Reason == workloads.ReasonInvalidTemplate
		}, func() string { return spew(st) })
		c := condition(st, batch.JobConditionReplicaFailure)
		require.Contains(t, c.Message, want)
		var none corev1.PodList
		require.NoError(t, e.c.List(e.ctx, &none, client.InNamespace("tenant-a")))
		require.Empty(t, none.Items, "a job that cannot be read must create nothing")
	}

	// The stored object is left as it was (the controller wrote only its status).
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("batch.tensorstack.dev/v1beta1")
	u.SetKind("GenericJob")
	require.NoError(t, e.c.Get(e.ctx, types.NamespacedName{Namespace: "tenant-a", Name: "broken-cpu"}, u))
	cpu, _, _ := unstructured.NestedSlice(u.Object, "spec", "replicaSpecs")
	require.Contains(t, spew(cpu), "NaN")

	// Now that the webhook runs, the same objects are refused, naming the field.
	for _, tc := range []struct{ containers, field string }{
		{nanContainers, "spec.replicaSpecs[0].template.spec.containers[0].resources.requests.cpu"},
		{scContainers, "spec.replicaSpecs[0].template.spec.securityContext"},
	} {
		err := e.c.Create(e.ctx, object(t, genericJobYAML("tenant-b", "again", tc.containers)))
		require.Error(t, err)
		require.True(t, apierrors.IsInvalid(err), "want 422 Invalid, got %v", err)
		require.Contains(t, err.Error(), `GenericJob.batch.tensorstack.dev "again" is invalid: `+tc.field)
	}
	// An update that would break a stored job's template is refused too.
	good := object(t, genericJobYAML("tenant-b", "good", nanContainers))
	cur := &unstructured.Unstructured{}
	cur.SetGroupVersionKind(good.GroupVersionKind())
	require.NoError(t, e.c.Get(e.ctx, types.NamespacedName{Namespace: "tenant-b", Name: "good"}, cur))
	good.SetResourceVersion(cur.GetResourceVersion())
	err := e.c.Update(e.ctx, good)
	require.True(t, apierrors.IsInvalid(err), "want 422 Invalid, got %v", err)
	require.Contains(t, err.Error(), "spec.replicaSpecs[0].template.spec.containers[0].resources.requests.cpu")
	// A label on the stored broken job is still allowed (its spec does not change).
	broken := &unstructured.Unstructured{}
	broken.SetGroupVersionKind(good.GroupVersionKind())
	require.NoError(t, e.c.Get(e.ctx, types.NamespacedName{Namespace: "tenant-a", Name: "broken-sc"}, broken))
	broken.SetLabels(map[string]string{"fixed": "not-yet"})
	require.NoError(t, e.c.Update(e.ctx, broken))
}

// Jobs that could never run are refused at admission with the job's own field path.
func TestJobsThatCannotRunAreRefused(t *testing.T) {
	e := startEnv(t, envOptions{jobs: true})
	e.namespace("demo", nil)
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{"no image", genericJobYAML("demo", "noimage", `        containers: [{name: main}]`),
			`spec.replicaSpecs[0].template.spec.containers[0].image: Required value`},
		{"negative cpu in a DeepSpeedJob", `apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: negcpu, namespace: demo}
spec:
  worker:
    replicas: 2
    template: {spec: {containers: [{image: busybox, resources: {requests: {cpu: "-1"}}}]}}`,
			`spec.worker.template.spec.containers[0].resources.requests[cpu]: Invalid value: "-1": must be greater than or equal to 0`},
		{"DeepSpeedJob with 0 workers", `apiVersion: batch.tensorstack.dev/v1beta1
kind: DeepSpeedJob
metadata: {name: noworkers, namespace: demo}
spec:
  worker:
    replicas: 0
    template: {spec: {containers: [{image: busybox}]}}`,
			`spec.worker.replicas: Invalid value: 0: DeepSpeedJob needs at least one worker`},
		{"MPIJob with 0 workers", `apiVersion: batch.tensorstack.dev/v1beta1
kind: MPIJob
metadata: {name: noworkers, namespace: demo}
spec:
  worker:
    replicas: 0
    template: {spec: {containers: [{image: busybox}]}}`,
			`spec.worker.replicas: Invalid value: 0: MPIJob needs at least one worker`},
		{"unknown topology level", `apiVersion: scheduler.tensorstack.dev/v1beta1
kind: PodGroup
metadata: {name: pg, namespace: demo}
spec:
  minMember: 2
  topologyPolicy: {mode: Required, level: no.such/label}`,
			`spec.topologyPolicy.level: Unsupported value: "no.such/label": supported values: "nvidia.com/gpu.clique", "network.topology.nvidia.com/block"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obj := object(t, tc.manifest)
			err := e.c.Create(e.ctx, obj)
			require.Error(t, err, "admitted")
			require.True(t, apierrors.IsInvalid(err), "want 422 Invalid, got %v", err)
			require.Contains(t, err.Error(), tc.want)
			require.True(t, apierrors.IsNotFound(e.c.Get(e.ctx, client.ObjectKeyFromObject(obj), obj.DeepCopy())), "refused object was stored")
		})
	}
}

// A pod the apiserver refuses after admission (here a LimitRange) is reported on the job with the
// apiserver's words, and nothing says the pods run normally while none exists.
func TestPodCreateFailureIsReported(t *testing.T) {
	e := startEnv(t, envOptions{jobs: true})
	e.namespace("limited", nil)
	require.NoError(t, e.c.Create(e.ctx, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Namespace: "limited", Name: "small"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer, Max: res("cpu", "1")}}}}))
	require.NoError(t, e.c.Create(e.ctx, object(t, genericJobYAML("limited", "big",
		`        containers: [{image: busybox, resources: {limits: {cpu: "2"}}}]`))))
	var st *batch.JobStatus
	e.eventually("FailedCreatePod on the job", func() bool {
		st = e.jobStatus("GenericJob", "limited", "big")
		c := condition(st, batch.JobConditionReplicaFailure)
		return c != nil && c.Status == corev1.ConditionTrue && c.Reason == workloads.ReasonFailedCreatePod
	}, func() string { return spew(st) })
	c := condition(st, batch.JobConditionReplicaFailure)
	require.Contains(t, c.Message, "maximum cpu usage per Container is 1")
	require.Equal(t, batch.JobPending, st.Phase)
	for _, c := range st.Conditions {
		require.NotEqual(t, workloads.MessagePodsNormal, c.Message, "no pod exists, yet %s says so", c.Type)
	}
}

func spew(v any) string {
	b, _ := yaml.Marshal(v)
	return strings.TrimSpace(string(b))
}

// A PodGroup that requires a topology level the scheduler is not configured with (stored without
// the webhook) stays pending with a reason that names the level and the configured ones; once all
// its members exist, no condition still says it waits for members.
func TestUnknownTopologyLevelIsExplained(t *testing.T) {
	e := newGangEnv(t, 2, 8)
	e.queue("default", 0, nil)
	startScheduler(t, e.cp)
	e.gang("default", "lost", "default", 2, 1, 1, func(pg *sched.PodGroup) {
		pg.Spec.TopologyPolicy = &sched.TopologyPolicy{Mode: sched.TopologyRequired, Level: "no.such/label"}
	})
	e.waitCondition("default", "lost", sched.PodGroupConditionScheduled, sched.ReasonInsufficientMemberPod, "waiting for more")
	e.members("default", "lost", "default", 1, 1, 1, nil)
	e.waitCondition("default", "lost", sched.PodGroupConditionScheduled, sched.ReasonUnknownTopologyLevel,
		`unknown topology level "no.such/label"; configured levels: nvidia.com/gpu.clique, network.topology.nvidia.com/block`)
	c := e.condition("default", "lost", sched.PodGroupConditionSufficientMember)
	require.NotNil(t, c)
	require.Equal(t, metav1.ConditionTrue, c.Status)
	n, _ := e.bound("default", "lost")
	require.Zero(t, n)
}
