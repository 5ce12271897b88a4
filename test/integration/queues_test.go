package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"

	"github.com/tensorstack/t9k/pkg/admission"
	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	sched "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/controllers"
	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/durationkeeper"
	"github.com/tensorstack/t9k/pkg/localcluster"
	configv1 "github.com/tensorstack/t9k/pkg/plugins/apis/config/v1"
	"github.com/tensorstack/t9k/pkg/queuestatus"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// queueEnv is a real apiserver with the queue status controllers, the admission webhook (served by
// this process on loopback, registered by the controllers with their own CA) and the duration
// keeper running. No scheduler or kube-controller-manager runs: tests play their parts.
type queueEnv struct {
	t          *testing.T
	ctx        context.Context
	cp         *controlplane.ControlPlane
	c          client.Client
	kubeconfig string
}

func startQueueEnv(t *testing.T, keeper durationkeeper.Options) *queueEnv {
	t.Helper()
	return startEnv(t, envOptions{keeper: keeper})
}

// envOptions add to the queue environment.
type envOptions struct {
	keeper durationkeeper.Options
	// jobs runs the job controllers too.
	jobs bool
	// before runs before the controllers (and their webhook) start: what it stores, no webhook
	// has checked.
	before func(client.Client)
}

func startEnv(t *testing.T, o envOptions) *queueEnv {
	t.Helper()
	keeper := o.keeper
	cp := startControlPlane(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := client.New(cp.Config, client.Options{Scheme: controllers.Scheme()})
	require.NoError(t, err)
	e := &queueEnv{t: t, ctx: ctx, cp: cp, c: c, kubeconfig: filepath.Join(t.TempDir(), "kubeconfig")}
	require.NoError(t, cp.WriteKubeconfig(e.kubeconfig))
	// The controllers run as their ServiceAccount with the shipped RBAC.
	proxy := startSAProxy(t, cp, saControllers)
	e.namespace("t9k-system", nil)
	if o.before != nil {
		o.before(c)
	}
	port, err := localcluster.FreePort()
	require.NoError(t, err)
	// The shipped webhook configurations, calling this process on loopback instead of the Service;
	// the controllers write their caBundle.
	applyObjects(t, c, webhookAtURL(t, fmt.Sprintf("127.0.0.1:%d", port)))

	ctrl.SetLogger(klog.NewKlogr())
	mo := controllers.ManagerOptions(controllers.Options{MetricsAddr: "0", ProbeAddr: "0",
		LeaderElect: true, LeaderElectionNamespace: "t9k-system"})
	// Every test starts the same controllers in this one process.
	mo.Controller = config.Controller{SkipNameValidation: ptr.To(true)}
	mgr, err := ctrl.NewManager(proxy.Config(cp.Config), mo)
	require.NoError(t, err)
	require.NoError(t, queuestatus.Setup(mgr, "t9k-system"))
	require.NoError(t, admission.Setup(mgr, admission.Options{Enabled: true, QueueNamespace: "t9k-system",
		BindAddress: "127.0.0.1", Port: port, URLHost: "127.0.0.1", ServiceName: "t9k-controllers-webhook",
		ServiceNamespace: "t9k-system", ConfigName: admission.DefaultConfigName, CertSecret: "t9k-controllers-webhook-cert",
		Refresh: time.Minute, TopologyLevels: configv1.DefaultLevels}))
	if o.jobs {
		require.NoError(t, workloads.SetupWithManager(mgr))
	}
	keeper.Enabled, keeper.QueueNamespace = true, "t9k-system"
	require.NoError(t, durationkeeper.Setup(mgr, keeper))
	done := make(chan error, 1)
	go func() { done <- mgr.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("manager: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("manager did not stop within 30s")
		}
	})

	// The webhook is in effect once the apiserver, having seen the configuration, gets an answer.
	probe := e.pod("default", "probe", "no-such-queue", "", nil)
	e.eventually("webhook answering", func() bool {
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "denied the request")
	})
	return e
}

// eventually polls cond for up to 40s; show, if given, describes the last state on failure.
func (e *queueEnv) eventually(what string, cond func() bool, show ...func() string) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, 40*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil && len(show) > 0 {
		e.t.Logf("last state: %s", show[0]())
	}
	require.NoError(e.t, err, "waiting for %s", what)
}

func (e *queueEnv) namespace(name string, labels map[string]string) {
	e.t.Helper()
	err := e.c.Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(e.t, err)
	}
}

// pod is a t9k-scheduler pod in queue (by label) or group; requests "cpu=1,memory=1Gi" style.
func (e *queueEnv) pod(ns, name, queue, group string, requests corev1.ResourceList) *corev1.Pod {
	labels := map[string]string{}
	if queue != "" {
		labels[sched.LabelQueue] = queue
	}
	if group != "" {
		labels[sched.LabelGroupName] = group
	}
	// Extended resources (GPUs) must have limits equal to their requests.
	var limits corev1.ResourceList
	for n, q := range requests {
		if n != corev1.ResourceCPU && n != corev1.ResourceMemory {
			if limits == nil {
				limits = corev1.ResourceList{}
			}
			limits[n] = q
		}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{SchedulerName: sched.SchedulerName, Containers: []corev1.Container{{
			Name: "main", Image: "busybox", Resources: corev1.ResourceRequirements{Requests: requests, Limits: limits}}}},
	}
}

func res(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func (e *queueEnv) queue(name string, spec sched.QueueSpec) *sched.Queue {
	e.t.Helper()
	q := &sched.Queue{ObjectMeta: metav1.ObjectMeta{Namespace: "t9k-system", Name: name}, Spec: spec}
	require.NoError(e.t, e.c.Create(e.ctx, q))
	// The webhook knows the queue once a dry-run pod in it is no longer refused for naming an
	// unknown queue (whatever else it is refused for).
	probe := e.pod("default", "probe-"+name, name, "", res("cpu", "1", "memory", "1Gi"))
	e.eventually("the webhook to see queue "+name, func() bool {
		err := e.c.Create(e.ctx, probe.DeepCopy(), client.DryRunAll)
		return err == nil || !strings.Contains(err.Error(), "does not exist")
	})
	return q
}

// rejected creates obj, expects the webhook's denial with exactly message, and checks that
// nothing was stored.
func (e *queueEnv) rejected(obj client.Object, webhook, message string) {
	e.t.Helper()
	err := e.c.Create(e.ctx, obj)
	require.Error(e.t, err, "%s/%s was admitted", obj.GetNamespace(), obj.GetName())
	require.True(e.t, apierrors.IsForbidden(err), "want Forbidden, got %v", err)
	want := fmt.Sprintf("admission webhook %q denied the request: %s", webhook, message)
	require.Equal(e.t, want, err.Error())
	fresh := obj.DeepCopyObject().(client.Object)
	require.True(e.t, apierrors.IsNotFound(e.c.Get(e.ctx, client.ObjectKeyFromObject(obj), fresh)), "rejected object was stored")
}

func (e *queueEnv) kubectl(args ...string) (string, error) {
	bin := os.Getenv(controlplane.EnvBinDir)
	if bin == "" {
		root, err := controlplane.ModuleRoot()
		require.NoError(e.t, err)
		bin = filepath.Join(root, "bin")
	}
	cmd := exec.CommandContext(e.ctx, filepath.Join(bin, "kubectl"), append([]string{"--kubeconfig", e.kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func genericJob(ns, name, queue string, replicas int32, requests corev1.ResourceList) *batch.GenericJob {
	return &batch.GenericJob{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: batch.GenericJobSpec{
			CommonJobSpec: batch.CommonJobSpec{Scheduler: &batch.SchedulePolicy{T9kScheduler: &batch.T9kScheduler{Queue: queue}}},
			ReplicaSpecs: []batch.ReplicaSpec{{Type: "worker", Replicas: ptr.To(replicas), Template: batch.PodTemplate{PodTemplateSpec: corev1.PodTemplateSpec{
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "worker", Image: "busybox",
					Resources: corev1.ResourceRequirements{Requests: requests, Limits: requests}}}}}}}},
		},
	}
}

func TestAdmissionRejections(t *testing.T) {
	e := startQueueEnv(t, durationkeeper.Options{})
	e.namespace("team-a", map[string]string{"team": "a"})
	e.namespace("team-b", map[string]string{"team": "b"})
	teamA := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	e.queue("gpu", sched.QueueSpec{NamespaceSelector: teamA,
		Quota: &sched.QueueQuota{Requests: res("cpu", "8", "memory", "16Gi", "nvidia.com/gpu", "4")}})
	e.queue("closed", sched.QueueSpec{Closed: true, NamespaceSelector: teamA})
	e.queue("private", sched.QueueSpec{})
	e.queue("everyone-but-none", sched.QueueSpec{NamespaceSelector: &metav1.LabelSelector{}})
	ok := res("cpu", "1", "memory", "1Gi")

	const podHook, jobHook, groupHook = admission.PodWebhook, admission.JobWebhook, admission.PodGroupWebhook
	t.Run("queue does not exist", func(t *testing.T) {
		e.rejected(e.pod("team-a", "p1", "nope", "", ok), podHook, `queue "nope" does not exist (queues live in namespace t9k-system)`)
	})
	t.Run("queue closed", func(t *testing.T) {
		e.rejected(e.pod("team-a", "p2", "closed", "", ok), podHook, `queue "closed" is closed and accepts no new workloads`)
		e.rejected(&sched.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "g-closed"},
			Spec: sched.PodGroupSpec{MinMember: 2, Queue: "closed"}}, groupHook, `queue "closed" is closed and accepts no new workloads`)
	})
	t.Run("namespace not selected", func(t *testing.T) {
		e.rejected(e.pod("team-b", "p3", "gpu", "", ok), podHook, `namespace "team-b" may not use queue "gpu": the queue's namespaceSelector does not select it`)
		e.rejected(e.pod("team-a", "p4", "private", "", ok), podHook, `namespace "team-a" may not use queue "private": the queue's namespaceSelector does not select it`)
		e.rejected(e.pod("team-a", "p5", "everyone-but-none", "", ok), podHook, `namespace "team-a" may not use queue "everyone-but-none": the queue's namespaceSelector does not select it`)
	})
	t.Run("requests must be declared", func(t *testing.T) {
		e.rejected(e.pod("team-a", "p6", "gpu", "", res("memory", "1Gi")), podHook,
			`queue "gpu" has a cpu quota, so every container must declare requests.cpu; container "main" of pod "p6" does not`)
		e.rejected(genericJob("team-a", "j-noreq", "gpu", 1, res("cpu", "1")), jobHook,
			`queue "gpu" has a memory quota, so every container must declare requests.memory; container "worker" of replica "worker" does not`)
	})
	t.Run("quota", func(t *testing.T) {
		// 2 workers × 3 GPUs: each fits alone, the job does not.
		e.rejected(genericJob("team-a", "j-big", "gpu", 2, res("cpu", "1", "memory", "1Gi", "nvidia.com/gpu", "3")), jobHook,
			`queue "gpu" has not enough nvidia.com/gpu left: asked 6, left 4 (quota 4, allocated 0)`)
		// Take 3 GPUs; the next pod asking 2 sees 1 left.
		require.NoError(t, e.c.Create(e.ctx, e.pod("team-a", "holder", "gpu", "", res("cpu", "1", "memory", "1Gi", "nvidia.com/gpu", "3"))))
		e.eventually("allocated 3 GPUs", func() bool {
			var q sched.Queue
			_ = e.c.Get(e.ctx, types.NamespacedName{Namespace: "t9k-system", Name: "gpu"}, &q)
			g := q.Status.Allocated["nvidia.com/gpu"]
			return g.Value() == 3
		})
		e.rejected(e.pod("team-a", "p7", "gpu", "", res("cpu", "1", "memory", "1Gi", "nvidia.com/gpu", "2")), podHook,
			`queue "gpu" has not enough nvidia.com/gpu left: asked 2, left 1 (quota 4, allocated 3)`)
		// What kubectl shows for the same rejection of a job.
		manifest := filepath.Join(t.TempDir(), "job.yaml")
		require.NoError(t, os.WriteFile(manifest, []byte(`apiVersion: batch.tensorstack.dev/v1beta1
kind: GenericJob
metadata:
  name: j-kubectl
  namespace: team-a
spec:
  scheduler:
    t9kScheduler:
      queue: gpu
  replicaSpecs:
  - type: worker
    replicas: 2
    template:
      spec:
        containers:
        - name: worker
          image: busybox
          resources:
            limits: {cpu: 1, memory: 1Gi, nvidia.com/gpu: 1}
`), 0o600))
		out, err := e.kubectl("apply", "-f", manifest)
		require.Error(t, err)
		require.Equal(t, `Error from server (Forbidden): error when creating "`+manifest+`": admission webhook "jobs.admission.batch.tensorstack.dev" denied the request: queue "gpu" has not enough nvidia.com/gpu left: asked 2, left 1 (quota 4, allocated 3)`,
			strings.TrimSpace(out))
		require.True(t, apierrors.IsNotFound(e.c.Get(e.ctx, types.NamespacedName{Namespace: "team-a", Name: "j-kubectl"}, &batch.GenericJob{})))
		// One GPU is still there to take.
		require.NoError(t, e.c.Create(e.ctx, genericJob("team-a", "j-fits", "gpu", 1, res("cpu", "1", "memory", "1Gi", "nvidia.com/gpu", "1"))))
	})
	t.Run("pod in a group follows the group's queue", func(t *testing.T) {
		require.NoError(t, e.c.Create(e.ctx, &sched.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "dance"},
			Spec: sched.PodGroupSpec{MinMember: 2, Queue: "gpu"}}))
		e.eventually("group cached", func() bool {
			err := e.c.Create(e.ctx, e.pod("team-a", "m-probe", "", "dance", res("memory", "1Gi")), client.DryRunAll)
			return err != nil && strings.Contains(err.Error(), `queue "gpu" has a cpu quota`)
		})
		require.NoError(t, e.c.Create(e.ctx, e.pod("team-a", "m1", "", "dance", ok)))
	})
	t.Run("not ours", func(t *testing.T) {
		p := e.pod("team-b", "default-sched", "nope", "", nil)
		p.Spec.SchedulerName = ""
		require.NoError(t, e.c.Create(e.ctx, p))
		j := genericJob("team-b", "no-t9k", "", 1, nil)
		j.Spec.Scheduler = nil
		require.NoError(t, e.c.Create(e.ctx, j))
	})
}

func TestAdmissionResourceShape(t *testing.T) {
	e := startQueueEnv(t, durationkeeper.Options{})
	e.namespace("demo", nil)
	// The resource-shapes ConfigMap, profiles "default" and "large".
	out, err := e.kubectl("apply", "-f", queueManifest("resource-shapes.yaml"))
	require.NoError(t, err, out)
	e.queue("shaped", sched.QueueSpec{ResourceShapeProfile: "default",
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "demo"}}})
	e.queue("typo", sched.QueueSpec{ResourceShapeProfile: "no-such-profile",
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": "demo"}}})
	full := func(cpu, gpu string) corev1.ResourceRequirements {
		return corev1.ResourceRequirements{Requests: res("cpu", cpu, "memory", "1Gi"),
			Limits: res("cpu", cpu, "memory", "2Gi", "nvidia.com/gpu", gpu)}
	}
	p := e.pod("demo", "big", "shaped", "", nil)
	p.Spec.Containers[0].Resources = full("12", "1")
	e.rejected(p, admission.PodWebhook, `resource shape "default" of queue "shaped" allows at most requests.cpu 10 per pod; pod "big" asks 12`)
	p = e.pod("demo", "nolimits", "shaped", "", res("cpu", "1", "memory", "1Gi"))
	e.rejected(p, admission.PodWebhook, `resource shape "default" of queue "shaped" sets limits.cpu, so every container must declare it; container "main" of pod "nolimits" does not`)
	j := genericJob("demo", "gpus", "shaped", 2, nil)
	j.Spec.ReplicaSpecs[0].Template.Spec.Containers[0].Resources = full("2", "5")
	e.rejected(j, admission.JobWebhook, `resource shape "default" of queue "shaped" allows at most limits.nvidia.com/gpu 4 per pod; replica "worker" asks 5`)
	j.Spec.ReplicaSpecs[0].Template.Spec.Containers[0].Resources = full("2", "4")
	require.NoError(t, e.c.Create(e.ctx, j))
	e.rejected(e.pod("demo", "typo", "typo", "", res("cpu", "1")), admission.PodWebhook,
		`queue "typo" uses resource shape profile "no-such-profile", which ConfigMap t9k-system/resource-shapes does not define`)
}

// queueManifest is the path of a manifest of testdata/queues: the project's own Queues, written in
// the shapes the API reference documents (the pre-2023 spec.requests included), and the objects
// that go with them.
func queueManifest(file string) string {
	return filepath.Join("testdata", "queues", file)
}

// TestAdmissionQueueManifests applies Queue manifests as an admin would with kubectl (one of them
// in the pre-2023 shape, one naming no namespace) and follows queue "test" through admission,
// quota, pressure and closing.
func TestAdmissionQueueManifests(t *testing.T) {
	e := startQueueEnv(t, durationkeeper.Options{})
	e.namespace("demo", nil)
	for _, f := range []string{"queue-default-legacy.yaml", "queue-shared-gpu.yaml", "queue-short-runs.yaml", "queue-test.yaml"} {
		out, err := e.kubectl("apply", "-n", "t9k-system", "-f", queueManifest(f))
		require.NoError(t, err, "%s: %s", f, out)
	}
	e.eventually("status of the queues", func() bool {
		for _, n := range []string{"default", "shared-gpu", "short-runs", "test"} {
			var q sched.Queue
			if e.c.Get(e.ctx, types.NamespacedName{Namespace: "t9k-system", Name: n}, &q) != nil {
				return false
			}
			c := meta.FindStatusCondition(q.Status.Conditions, sched.QueueConditionClosed)
			p := meta.FindStatusCondition(q.Status.Conditions, sched.QueueConditionResourcePressure)
			if c == nil || c.Reason != sched.ReasonQueueOpen || c.Message != "Queue is open" ||
				p == nil || p.Reason != sched.ReasonQueueNoResourcePressure {
				return false
			}
		}
		return true
	})
	// None but "test" selects a namespace: the rest are private until an admin opens them.
	for _, n := range []string{"default", "shared-gpu", "short-runs"} {
		e.rejected(e.pod("demo", "in-"+n, n, "", res("cpu", "1", "memory", "1Gi")), admission.PodWebhook,
			fmt.Sprintf(`namespace "demo" may not use queue %q: the queue's namespaceSelector does not select it`, n))
	}
	// A pod without requests meets the cpu quota of "test".
	pod := e.pod("demo", "pod-test", "test", "", nil)
	e.rejected(pod, admission.PodWebhook, `queue "test" has a cpu quota, so every container must declare requests.cpu; container "main" of pod "pod-test" does not`)
	pod.Spec.Containers[0].Resources.Requests = res("cpu", "30", "memory", "1Gi")
	require.NoError(t, e.c.Create(e.ctx, pod))
	e.eventually("allocated and pressure of queue test", func() bool {
		var q sched.Queue
		_ = e.c.Get(e.ctx, types.NamespacedName{Namespace: "t9k-system", Name: "test"}, &q)
		cpu := q.Status.Allocated.Cpu()
		return cpu.Value() == 30 && q.Status.Pods.Pending == 1 && q.Status.PodGroups.Total == 1
	})
	e.rejected(e.pod("demo", "more", "test", "", res("cpu", "11", "memory", "1Gi")), admission.PodWebhook,
		`queue "test" has not enough cpu left: asked 11, left 10 (quota 40, allocated 30)`)
	require.NoError(t, e.c.Create(e.ctx, e.pod("demo", "more", "test", "", res("cpu", "7", "memory", "1Gi"))))
	e.eventually("ResourcePressure at 37 of 40 cpu", func() bool {
		var q sched.Queue
		_ = e.c.Get(e.ctx, types.NamespacedName{Namespace: "t9k-system", Name: "test"}, &q)
		p := meta.FindStatusCondition(q.Status.Conditions, sched.QueueConditionResourcePressure)
		return p != nil && p.Status == metav1.ConditionTrue && p.Message == "Queue has allocated more than 90% of its quota: cpu 37 of 40"
	})
	// Closing a queue shows in its status and in admission.
	out, err := e.kubectl("patch", "queue", "test", "-n", "t9k-system", "--type=merge", "-p", `{"spec":{"closed":true}}`)
	require.NoError(t, err, out)
	e.eventually("QueueClosed", func() bool {
		var q sched.Queue
		_ = e.c.Get(e.ctx, types.NamespacedName{Namespace: "t9k-system", Name: "test"}, &q)
		return meta.IsStatusConditionTrue(q.Status.Conditions, sched.QueueConditionClosed)
	})
	e.rejected(e.pod("demo", "late", "test", "", res("cpu", "1", "memory", "1Gi")), admission.PodWebhook,
		`queue "test" is closed and accepts no new workloads`)
}

func TestQueueStatusRecount(t *testing.T) {
	e := startQueueEnv(t, durationkeeper.Options{})
	e.namespace("burst", map[string]string{"team": "burst"})
	e.queue("burst", sched.QueueSpec{Quota: &sched.QueueQuota{Requests: res("cpu", "40")},
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "burst"}}})
	group := &sched.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "burst", Name: "g1"}, Spec: sched.PodGroupSpec{MinMember: 10, Queue: "burst"}}
	require.NoError(t, e.c.Create(e.ctx, group))
	// What the scheduler writes; the controllers must leave it alone.
	scheduled := metav1.Condition{Type: sched.PodGroupConditionScheduled, Status: metav1.ConditionTrue,
		Reason: sched.ReasonPodGroupScheduled, Message: "Resources have been allocated to PodGroup", LastTransitionTime: metav1.Now()}
	meta.SetStatusCondition(&group.Status.Conditions, scheduled)
	require.NoError(t, e.c.Status().Update(e.ctx, group))
	time.Sleep(300 * time.Millisecond) // group in the webhook's cache

	// A burst: 40 pods at once, half of them members of g1 (a third bound to a node), half virtual groups.
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p *corev1.Pod
			if i%2 == 0 {
				p = e.pod("burst", fmt.Sprintf("m%d", i), "burst", "g1", res("cpu", "1", "memory", "100Mi"))
				if i%3 == 0 {
					p.Spec.NodeName = "node-1"
				}
			} else {
				p = e.pod("burst", fmt.Sprintf("v%d", i), "burst", "", res("cpu", "1"))
			}
			errs <- e.c.Create(e.ctx, p)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Phases and deletions, also at once.
	phases := map[string]corev1.PodPhase{"m0": corev1.PodRunning, "m6": corev1.PodRunning, "m2": corev1.PodSucceeded,
		"v1": corev1.PodFailed, "v3": corev1.PodRunning, "m12": corev1.PodFailed, "v5": corev1.PodUnknown}
	deleted := []string{"m4", "v7", "v9", "m18"}
	for name, ph := range phases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var p corev1.Pod
			if err := e.c.Get(e.ctx, types.NamespacedName{Namespace: "burst", Name: name}, &p); err == nil {
				p.Status.Phase = ph
				if err := e.c.Status().Update(e.ctx, &p); err != nil {
					t.Errorf("pod %s phase: %v", name, err)
				}
			}
		}()
	}
	for _, name := range deleted {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Grace 0: a bound pod would otherwise wait for a kubelet (and rightly stay counted).
			if err := e.c.Delete(e.ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "burst", Name: name}}, client.GracePeriodSeconds(0)); err != nil {
				t.Errorf("delete %s: %v", name, err)
			}
		}()
	}
	wg.Wait()
	// Four more pods after the burst bring the queue over 90%; admission counts what the cache has
	// seen, so let it catch up first.
	var q sched.Queue
	e.eventually("33 cpu allocated after the burst", func() bool {
		_ = e.c.Get(e.ctx, types.NamespacedName{Namespace: "t9k-system", Name: "burst"}, &q)
		return q.Status.Allocated.Cpu().Value() == 33
	}, func() string { return fmt.Sprintf("%+v", q.Status) })
	for i := range 4 {
		require.NoError(t, e.c.Create(e.ctx, e.pod("burst", fmt.Sprintf("late%d", i), "burst", "", res("cpu", "1"))))
	}

	// The recount, straight from the apiserver.
	var pods corev1.PodList
	require.NoError(t, e.c.List(e.ctx, &pods, client.InNamespace("burst")))
	var want sched.PodCounts
	var groupWant sched.PodGroupStatus
	var cpuMilli, groupCPU int64
	virtual := int32(0)
	for _, p := range pods.Items {
		member := p.Labels[sched.LabelGroupName] == "g1"
		if !member {
			virtual++
		}
		count := func(c *sched.PodCounts) {
			switch p.Status.Phase {
			case corev1.PodRunning:
				c.Running++
			case corev1.PodSucceeded:
				c.Succeeded++
			case corev1.PodFailed:
				c.Failed++
			case corev1.PodUnknown:
				c.Unknown++
			default:
				c.Pending++
			}
		}
		count(&want)
		if member {
			var gc sched.PodCounts
			count(&gc)
			groupWant.Pending += gc.Pending
			groupWant.Running += gc.Running
			groupWant.Succeeded += gc.Succeeded
			groupWant.Failed += gc.Failed
			groupWant.Unknown += gc.Unknown
		}
		if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			cpuMilli += p.Spec.Containers[0].Resources.Requests.Cpu().MilliValue()
			if member && p.Spec.NodeName != "" {
				groupCPU += p.Spec.Containers[0].Resources.Requests.Cpu().MilliValue()
			}
		}
	}
	require.Equal(t, int64(37000), cpuMilli, "the test's own arithmetic")
	e.eventually("queue status equal to the recount", func() bool {
		_ = e.c.Get(e.ctx, types.NamespacedName{Namespace: "t9k-system", Name: "burst"}, &q)
		return q.Status.Pods == want && q.Status.Allocated.Cpu().MilliValue() == cpuMilli &&
			q.Status.PodGroups.Total == 1+virtual
	})
	t.Logf("queue status: %+v", q.Status)
	require.True(t, meta.IsStatusConditionTrue(q.Status.Conditions, sched.QueueConditionResourcePressure))
	require.True(t, meta.IsStatusConditionFalse(q.Status.Conditions, sched.QueueConditionClosed))

	var g sched.PodGroup
	e.eventually("PodGroup counts equal to the recount", func() bool {
		_ = e.c.Get(e.ctx, client.ObjectKeyFromObject(group), &g)
		return g.Status.Pending == groupWant.Pending && g.Status.Running == groupWant.Running &&
			g.Status.Succeeded == groupWant.Succeeded && g.Status.Failed == groupWant.Failed &&
			g.Status.Unknown == groupWant.Unknown && g.Status.Allocated.Cpu().MilliValue() == groupCPU
	})
	c := meta.FindStatusCondition(g.Status.Conditions, sched.PodGroupConditionScheduled)
	require.NotNil(t, c, "the scheduler's condition was dropped")
	require.Equal(t, scheduled.Message, c.Message)
}

func TestDurationKeeper(t *testing.T) {
	e := startQueueEnv(t, durationkeeper.Options{PriorityThreshold: "keep-alive"})
	ctx := e.ctx
	require.NoError(t, e.c.Create(ctx, &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "keep-alive"}, Value: 1000000}))
	// Queue short-runs (maxDuration 10s) and an nginx Deployment in it.
	out, err := e.kubectl("apply", "-f", queueManifest("queue-short-runs.yaml"))
	require.NoError(t, err, out)
	out, err = e.kubectl("apply", "-n", "default", "-f", queueManifest("deployment-short-runs.yaml"))
	require.NoError(t, err, out)
	// The admin lets namespace default use it (unset namespaceSelector admits none).
	out, err = e.kubectl("patch", "queue", "short-runs", "-n", "t9k-system", "--type=merge",
		"-p", `{"spec":{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"default"}}}}`)
	require.NoError(t, err, out)
	small := res("cpu", "500m", "memory", "100Mi")
	createdAt := map[string]time.Time{} // pod → its creationTimestamp (whole seconds, as stored)
	// The webhook has the patched queue once a dry-run pod of namespace default is admitted.
	e.eventually("the webhook to admit namespace default to short-runs", func() bool {
		return e.c.Create(ctx, e.pod("default", "probe", "short-runs", "", small), client.DryRunAll) == nil
	})

	ownedPod := func(name string, owner client.Object, gvk string) *corev1.Pod {
		p := e.pod("default", name, "short-runs", "", small)
		if owner != nil {
			apiVersion, kind, _ := strings.Cut(gvk, ",")
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: owner.GetName(),
				UID: owner.GetUID(), Controller: ptr.To(true)}}
		}
		require.NoError(t, e.c.Create(ctx, p))
		createdAt[name] = p.CreationTimestamp.Time
		return p
	}
	// No kube-controller-manager runs: make the ReplicaSet and pods it would.
	var deploy appsv1.Deployment
	require.NoError(t, e.c.Get(ctx, types.NamespacedName{Namespace: "default", Name: "nginx"}, &deploy))
	rs := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "nginx-5d8f",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: "nginx", UID: deploy.UID, Controller: ptr.To(true)}}},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](2), Selector: deploy.Spec.Selector, Template: deploy.Spec.Template}}
	require.NoError(t, e.c.Create(ctx, rs))
	ownedPod("nginx-5d8f-a", rs, "apps/v1,ReplicaSet")
	ownedPod("nginx-5d8f-b", rs, "apps/v1,ReplicaSet")

	job := genericJob("default", "train", "short-runs", 1, small)
	require.NoError(t, e.c.Create(ctx, job))
	ownedPod("train-worker-0", job, "batch.tensorstack.dev/v1beta1,GenericJob")

	bjob := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "batch-v1-job-test"},
		Spec: batchv1.JobSpec{Parallelism: ptr.To[int32](1), Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{sched.LabelQueue: "short-runs"}},
			Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, SchedulerName: sched.SchedulerName,
				Containers: []corev1.Container{{Name: "nginx", Image: "nginx", Resources: corev1.ResourceRequirements{Requests: small}}}}}}}
	require.NoError(t, e.c.Create(ctx, bjob))
	ownedPod("batch-v1-job-test-x", bjob, "batch/v1,Job")

	bare := ownedPod("bare", nil, "")
	ds := &appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "agent"},
		Spec: appsv1.DaemonSetSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "busybox"}}}}}}
	require.NoError(t, e.c.Create(ctx, ds))
	dsPod := ownedPod("agent-x", ds, "apps/v1,DaemonSet")
	vip := e.pod("default", "vip", "short-runs", "", small)
	vip.Spec.PriorityClassName = "keep-alive"
	require.NoError(t, e.c.Create(ctx, vip))
	// Each stop is observed (every 100ms) and checked against the creation time of the pod that
	// caused it: none may come before that pod lived maxDuration (10s).
	stoppedAt := map[string]time.Time{}
	stopped := func(what string, done bool) {
		if _, seen := stoppedAt[what]; done && !seen {
			stoppedAt[what] = time.Now()
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 45*time.Second, true, func(context.Context) (bool, error) {
		var d appsv1.Deployment
		var j batch.GenericJob
		var b batchv1.Job
		if e.c.Get(ctx, client.ObjectKeyFromObject(&deploy), &d) == nil {
			stopped("nginx-5d8f-a", ptr.Deref(d.Spec.Replicas, 1) == 0)
		}
		if e.c.Get(ctx, client.ObjectKeyFromObject(job), &j) == nil {
			stopped("train-worker-0", j.Spec.RunMode != nil && j.Spec.RunMode.Pause != nil && j.Spec.RunMode.Pause.Enabled)
		}
		if e.c.Get(ctx, client.ObjectKeyFromObject(bjob), &b) == nil {
			stopped("batch-v1-job-test-x", ptr.Deref(b.Spec.Suspend, false))
		}
		stopped("bare", apierrors.IsNotFound(e.c.Get(ctx, client.ObjectKeyFromObject(bare), &corev1.Pod{})))
		return len(stoppedAt) == 4, nil
	})
	require.NoError(t, err, "waiting for the duration keeper to stop the workloads (stopped: %v)", stoppedAt)
	for pod, at := range stoppedAt {
		created := createdAt[pod]
		require.False(t, created.IsZero(), pod)
		lived := at.Sub(created)
		require.GreaterOrEqual(t, lived, 10*time.Second, "%s's workload stopped %s after the pod was created, before maxDuration 10s", pod, lived)
		t.Logf("%s: stopped %s after creation", pod, lived.Round(100*time.Millisecond))
	}

	// The ReplicaSet is left to its Deployment; spared pods are untouched.
	var gotRS appsv1.ReplicaSet
	require.NoError(t, e.c.Get(ctx, client.ObjectKeyFromObject(rs), &gotRS))
	require.Equal(t, int32(2), *gotRS.Spec.Replicas)
	for _, p := range []*corev1.Pod{dsPod, vip} {
		var got corev1.Pod
		require.NoError(t, e.c.Get(ctx, client.ObjectKeyFromObject(p), &got), p.Name)
		require.Nil(t, got.DeletionTimestamp, p.Name)
	}
	e.eventually("MaxDurationExceeded events", func() bool {
		var evs corev1.EventList
		_ = e.c.List(ctx, &evs, client.InNamespace("default"))
		seen := map[string]string{}
		for _, ev := range evs.Items {
			if ev.Reason == durationkeeper.ReasonMaxDurationExceeded && ev.Type == corev1.EventTypeWarning {
				seen[ev.InvolvedObject.Kind+"/"+ev.InvolvedObject.Name] = ev.Message
			}
		}
		t.Logf("events: %v", seen)
		return strings.HasPrefix(seen["Deployment/nginx"], "Set spec.replicas to 0 because its pod nginx-5d8f-") &&
			strings.HasPrefix(seen["GenericJob/train"], "Set spec.runMode.pause.enabled to true because its pod train-worker-0 lived") &&
			strings.HasPrefix(seen["Job/batch-v1-job-test"], "Set spec.suspend to true") &&
			strings.HasPrefix(seen["Pod/bare"], "Deleted the pod because it lived") &&
			len(seen) == 4
	})
}
