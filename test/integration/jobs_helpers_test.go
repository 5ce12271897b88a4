package integration

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	"github.com/tensorstack/t9k/pkg/controllers"
	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// jobEnv is a real apiserver with the job controllers running in this process. Pods are never
// scheduled: tests drive their status themselves, and unscheduled pods are deleted at once.
type jobEnv struct {
	t   *testing.T
	ctx context.Context
	cp  *controlplane.ControlPlane
	c   client.Client
	ns  string
	// stop stops the controllers (they also stop when the test ends).
	stop func()
}

const jobsNamespace = "t9k-jobs"

func startJobs(t *testing.T) *jobEnv {
	t.Helper()
	ctrl.SetLogger(logr.Discard())
	cp := startControlPlane(t)
	c, err := client.New(cp.Config, client.Options{Scheme: controllers.Scheme()})
	require.NoError(t, err)
	e := &jobEnv{t: t, ctx: context.Background(), cp: cp, c: c, ns: jobsNamespace}
	require.NoError(t, c.Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.ns}}))
	e.stop = e.startControllers()
	return e
}

// startControllers runs a fresh manager with every job controller until the returned function
// (or the test's end) stops it.
func (e *jobEnv) startControllers() func() {
	e.t.Helper()
	// As the binary runs them: the shipped RBAC of its ServiceAccount, the binary's cache and
	// leader election settings.
	proxy := startSAProxy(e.t, e.cp, saControllers)
	mo := controllers.ManagerOptions(controllers.Options{MetricsAddr: "0", ProbeAddr: "0",
		LeaderElect: true, LeaderElectionNamespace: "t9k-system"})
	// Tests start several managers in one process.
	mo.Controller = config.Controller{SkipNameValidation: ptr.To(true)}
	mgr, err := ctrl.NewManager(proxy.Config(e.cp.Config), mo)
	require.NoError(e.t, err)
	require.NoError(e.t, workloads.SetupWithManager(mgr))
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := mgr.Start(ctx); err != nil {
			e.t.Logf("manager: %v", err)
		}
	}()
	stop := func() { cancel(); <-done }
	e.t.Cleanup(stop)
	return stop
}

// jobsTestdata holds the jobs the tests run: the project's own manifests, one job each, named
// after the job.
const jobsTestdata = "testdata/jobs"

// load reads a manifest of testdata/jobs into its typed object, in the test's namespace.
func (e *jobEnv) load(file string) client.Object {
	e.t.Helper()
	data, err := os.ReadFile(filepath.Join(jobsTestdata, file))
	require.NoError(e.t, err)
	codecs := serializer.NewCodecFactory(controllers.Scheme())
	obj, _, err := codecs.UniversalDeserializer().Decode(data, nil, nil)
	require.NoError(e.t, err, file)
	o := obj.(client.Object)
	o.SetNamespace(e.ns)
	return o
}

func (e *jobEnv) create(obj client.Object) {
	e.t.Helper()
	require.NoError(e.t, e.c.Create(e.ctx, obj))
}

// apply loads a manifest, lets mutate change it, and creates it.
func (e *jobEnv) apply(file string, mutate func(client.Object)) client.Object {
	e.t.Helper()
	obj := e.load(file)
	if mutate != nil {
		mutate(obj)
	}
	e.create(obj)
	return obj
}

// eventually polls cond until it holds (30 s at most).
func (e *jobEnv) eventually(what string, cond func() bool) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return cond(), nil
	})
	require.NoError(e.t, err, "waiting for %s", what)
}

// holds checks cond every 50ms for window and fails the first time it is false: a negative check
// ("nothing more appears") observed over time, not read once.
func (e *jobEnv) holds(what string, window time.Duration, cond func() bool) {
	e.t.Helper()
	n := 0
	for end := time.Now().Add(window); time.Now().Before(end); n++ {
		require.True(e.t, cond(), "%s stopped holding after %d checks", what, n)
		time.Sleep(50 * time.Millisecond)
	}
	require.Positive(e.t, n)
}

// pods lists a job's pods by name.
func (e *jobEnv) pods(job string) []corev1.Pod {
	e.t.Helper()
	var list corev1.PodList
	require.NoError(e.t, e.c.List(e.ctx, &list, client.InNamespace(e.ns), client.MatchingLabels{workloads.LabelOwnerName: job}))
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

func podNames(pods []corev1.Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	return names
}

// waitPods waits until the job has exactly these pods.
func (e *jobEnv) waitPods(job string, names ...string) []corev1.Pod {
	e.t.Helper()
	var pods []corev1.Pod
	e.eventually("pods "+job, func() bool {
		pods = e.pods(job)
		got := podNames(pods)
		if len(got) != len(names) {
			return false
		}
		for i := range names {
			if got[i] != names[i] {
				return false
			}
		}
		return true
	})
	return pods
}

func (e *jobEnv) pod(name string) *corev1.Pod {
	e.t.Helper()
	p := &corev1.Pod{}
	require.NoError(e.t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, p))
	return p
}

// waitStopped waits until the controller has stopped each named pod in place (spec.activeDeadlineSeconds
// and the stopped-at annotation set). The job's status is written before its pods are stopped, and a
// stop that meets a write conflict is retried a second later, so this is waited for, not read once.
func (e *jobEnv) waitStopped(names ...string) {
	e.t.Helper()
	for _, n := range names {
		e.eventually(n+" stopped", func() bool {
			p := &corev1.Pod{}
			if e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: n}, p) != nil {
				return false
			}
			return p.Spec.ActiveDeadlineSeconds != nil && p.Annotations[workloads.AnnotationStoppedAt] != ""
		})
	}
}

// setPhase drives a pod as a kubelet would: Running (and ready), or terminated with an exit code.
func (e *jobEnv) setPhase(name string, phase corev1.PodPhase, exitCode int32) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		p := &corev1.Pod{}
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, p); err != nil {
			return false, nil
		}
		p.Status.Phase = phase
		p.Status.ContainerStatuses = nil
		ready := corev1.ConditionFalse
		for _, c := range p.Spec.Containers {
			cs := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
			switch phase {
			case corev1.PodRunning:
				cs.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.Now()}
				cs.Ready, ready = true, corev1.ConditionTrue
			case corev1.PodSucceeded, corev1.PodFailed:
				cs.State.Terminated = &corev1.ContainerStateTerminated{ExitCode: exitCode}
			}
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, cs)
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, LastTransitionTime: metav1.Now()}}
		return e.c.Status().Update(e.ctx, p) == nil, nil
	})
	require.NoError(e.t, err, "setting %s %s", name, phase)
}

// setReady sets a running pod's Ready condition as the kubelet does when its readiness probe
// starts failing or passing: the status changes, with the time of the transition.
func (e *jobEnv) setReady(name string, status corev1.ConditionStatus) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		p := &corev1.Pod{}
		if err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, p); err != nil {
			return false, nil
		}
		ready := status == corev1.ConditionTrue
		for i := range p.Status.ContainerStatuses {
			p.Status.ContainerStatuses[i].Ready = ready
		}
		cond := corev1.PodCondition{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.Now()}
		found := false
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == corev1.PodReady {
				p.Status.Conditions[i], found = cond, true
			}
		}
		if !found {
			p.Status.Conditions = append(p.Status.Conditions, cond)
		}
		return e.c.Status().Update(e.ctx, p) == nil, nil
	})
	require.NoError(e.t, err, "setting %s ready %s", name, status)
}

// runAll marks pods Running.
func (e *jobEnv) runAll(names ...string) {
	for _, n := range names {
		e.setPhase(n, corev1.PodRunning, 0)
	}
}

// statusOf reads the shared status block of any job kind.
func statusOf(obj client.Object) *batch.JobStatus {
	switch j := obj.(type) {
	case *batch.GenericJob:
		return &j.Status
	case *batch.PyTorchTrainingJob:
		return &j.Status.JobStatus
	case *batch.TensorFlowTrainingJob:
		return &j.Status.JobStatus
	case *batch.XGBoostTrainingJob:
		return &j.Status
	case *batch.MPIJob:
		return &j.Status
	case *batch.ColossalAIJob:
		return &j.Status
	case *batch.DeepSpeedJob:
		return &j.Status
	case *batch.BeamJob:
		return &j.Status.JobStatus
	}
	panic("unknown kind")
}

// waitJob re-reads the job until cond holds for its status, and returns that status.
func (e *jobEnv) waitJob(obj client.Object, what string, cond func(*batch.JobStatus) bool) *batch.JobStatus {
	e.t.Helper()
	var st *batch.JobStatus
	e.eventually(what, func() bool {
		if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			return false
		}
		st = statusOf(obj)
		return cond(st)
	})
	return st
}

func (e *jobEnv) waitPhase(obj client.Object, phase batch.JobPhase) *batch.JobStatus {
	e.t.Helper()
	return e.waitJob(obj, "phase "+string(phase), func(s *batch.JobStatus) bool { return s.Phase == phase })
}

func condition(st *batch.JobStatus, t batch.JobConditionType) *batch.JobCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// requireCondition checks a condition's status, reason and message.
func requireCondition(t *testing.T, st *batch.JobStatus, typ batch.JobConditionType, status corev1.ConditionStatus, reason, message string) {
	t.Helper()
	c := condition(st, typ)
	require.NotNil(t, c, "condition %s missing in %+v", typ, st.Conditions)
	require.Equal(t, status, c.Status, "condition %s", typ)
	require.Equal(t, reason, c.Reason, "condition %s reason", typ)
	require.Equal(t, message, c.Message, "condition %s message", typ)
}

func envOf(c *corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

func container(p *corev1.Pod, name string) *corev1.Container {
	for i := range p.Spec.Containers {
		if p.Spec.Containers[i].Name == name {
			return &p.Spec.Containers[i]
		}
	}
	return nil
}

func mountPaths(c *corev1.Container) []string {
	var out []string
	for _, m := range c.VolumeMounts {
		out = append(out, m.MountPath)
	}
	return out
}
