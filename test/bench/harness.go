package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/device/publisher"
	"github.com/tensorstack/t9k/pkg/localcluster"
)

// Options of one benchmark invocation.
type Options struct {
	Nodes      int
	Workloads  []string // names; empty means all
	Schedulers []string // names; empty means all
	// StallTimeout ends a run when no pod has bound for this long (a gang scheduler that cannot
	// place the rest); the run is reported incomplete.
	StallTimeout time.Duration
	// StreamRounds, when set, overrides the rounds of stream workloads (the smoke test runs one).
	StreamRounds *int
	// StreamSettle, when set, overrides the settleSeconds of stream workloads (the smoke test,
	// which checks no figure, shortens it).
	StreamSettle time.Duration
	// Repeats runs every workload this many times under each scheduler, the schedulers' order
	// rotated by one each time, so that neither order nor a growing etcd favours one; 0 means 1.
	Repeats int
	BinDir  string
	Log     io.Writer
	WorkDir string
	// LogDir keeps each scheduler process's log (stdout and stderr, so klog) as
	// <workload>-<scheduler>-run<k>.log; empty means the work directory, which is removed.
	LogDir string
	// Profile, when set, fetches each scheduler process's CPU profile over this long from the
	// run's start and its heap profile at the run's end into ProfileDir.
	Profile    time.Duration
	ProfileDir string
}

type harness struct {
	opts       Options
	root       string
	binDir     string
	cfg        *rest.Config
	client     kubernetes.Interface
	dyn        dynamic.Interface
	kubeconfig string
	nodeNames  []string
	nodeLabels map[string]map[string]string
	totalGPUs  int
	// machines holds each node's GPU topology (read back from its NodeDevices) for scoring GPU sets.
	machines map[string]*machine
	// Shape of the node layout, for placement quality.
	gpusPerNode, nodesPerBlock, blocksPerSpine int
}

var (
	t9kPodGroupGVR  = schema.GroupVersionResource{Group: "scheduler.tensorstack.dev", Version: "v1beta1", Resource: "podgroups"}
	cosPodGroupGVR  = schema.GroupVersionResource{Group: "scheduling.x-k8s.io", Version: "v1alpha1", Resource: "podgroups"}
	t9kQueueGVR     = schema.GroupVersionResource{Group: "scheduler.tensorstack.dev", Version: "v1beta1", Resource: "queues"}
	cosPodGroupName = "scheduling.x-k8s.io/pod-group"
	t9kGroupLabel   = "scheduler.tensorstack.dev/group-name"
)

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.opts.Log, "[bench] "+format+"\n", args...)
}

// Measure starts one control plane, creates the nodes once, and runs every workload under every
// scheduler in turn on it, clearing the pods between runs.
func Measure(ctx context.Context, opts Options) (*Report, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.StallTimeout == 0 {
		opts.StallTimeout = 60 * time.Second
	}
	root, err := controlplane.ModuleRoot()
	if err != nil {
		return nil, err
	}
	h := &harness{opts: opts, root: root, binDir: opts.BinDir}
	if h.binDir == "" {
		if h.binDir, err = controlplane.BinDir(); err != nil {
			return nil, err
		}
	}
	workloads, names, err := loadWorkloads()
	if err != nil {
		return nil, err
	}
	if len(opts.Workloads) > 0 {
		names = opts.Workloads
	}
	scheds := allSchedulers()
	if len(opts.Schedulers) > 0 {
		var picked []schedulerUnderTest
		for _, want := range opts.Schedulers {
			found := false
			for _, s := range scheds {
				if s.Name == want {
					picked, found = append(picked, s), true
				}
			}
			if !found {
				return nil, fmt.Errorf("unknown scheduler %q", want)
			}
		}
		scheds = picked
	}

	cosCRD, err := coschedulingCRD()
	if err != nil {
		return nil, err
	}
	h.logf("starting kube-apiserver + etcd")
	cp, err := controlplane.Start(controlplane.Options{BinDir: h.binDir, ExtraCRDPaths: []string{cosCRD}})
	if err != nil {
		return nil, err
	}
	defer func() { _ = cp.Stop() }()
	cfg := *cp.Config
	cfg.QPS, cfg.Burst = 5000, 5000
	if h.client, err = kubernetes.NewForConfig(&cfg); err != nil {
		return nil, err
	}
	if h.dyn, err = dynamic.NewForConfig(&cfg); err != nil {
		return nil, err
	}
	h.cfg = &cfg
	h.kubeconfig = filepath.Join(opts.WorkDir, "kubeconfig")
	if err := cp.WriteKubeconfig(h.kubeconfig); err != nil {
		return nil, err
	}
	if err := h.createNodes(ctx, opts.Nodes); err != nil {
		return nil, err
	}

	rep := &Report{Nodes: len(h.nodeNames), GPUs: h.totalGPUs, Started: time.Now().UTC(), Descriptions: map[string]string{},
		Layout: fmt.Sprintf("Nodes: %d per block, %d blocks per spine; the blocks cycle through %s (8 GPUs each).",
			h.nodesPerBlock, h.blocksPerSpine, h.machineMix())}
	for _, wname := range names {
		w, ok := workloads[wname]
		if !ok {
			return nil, fmt.Errorf("unknown workload %q", wname)
		}
		rep.Descriptions[wname] = w.Description
		for round := range max(opts.Repeats, 1) {
			for _, s := range rotated(scheds, round) {
				if w.Stream != nil && s.Ceiling {
					if round == 0 {
						h.logf("%s / %s: skipped (binds without fitting, so it has no saturation)", w.Name, s.Name)
					}
					continue
				}
				h.logf("%s / %s: run %d of %d", w.Name, s.Name, round+1, max(opts.Repeats, 1))
				r, err := h.runOne(ctx, w, s, round)
				if err != nil {
					return nil, fmt.Errorf("%s under %s: %w", w.Name, s.Name, err)
				}
				r.Repeat = round
				rep.Runs = append(rep.Runs, *r)
			}
		}
	}
	rep.Repeats = max(opts.Repeats, 1)
	return rep, nil
}

// rotated returns the schedulers starting at the i-th (mod their number).
func rotated(scheds []schedulerUnderTest, i int) []schedulerUnderTest {
	i %= len(scheds)
	return append(append([]schedulerUnderTest(nil), scheds[i:]...), scheds[:i]...)
}

// benchMachines is the bench cluster's mix, one machine per block in turn: half NVSwitch DGX H100
// (where any GPU set is equally good), a quarter PCIe A100 with NVLink bridges in pairs and a
// quarter PCIe L40S (where the GPU set on a node decides the interconnect a job gets).
var benchMachines = []localcluster.Machine{localcluster.DGXH100, localcluster.PCIeA100Bridged, localcluster.DGXH100, localcluster.PCIeL40S}

// createNodes registers plain Ready nodes with GPUs and topology labels (no kubelet: binding is
// all a scheduler benchmark needs) and publishes their NodeDevices.
func (h *harness) createNodes(ctx context.Context, n int) error {
	spec := localcluster.DefaultSpec()
	spec.NodesPerBlock, spec.BlocksPerSpine = 16, 4
	spec.Spines = (n + 63) / 64
	spec.BlockMachines = benchMachines
	all := spec.Nodes()[:n]
	h.gpusPerNode, h.nodesPerBlock, h.blocksPerSpine = benchMachines[0].GPUs, spec.NodesPerBlock, spec.BlocksPerSpine
	h.logf("creating %d nodes (%d per block, %d blocks per spine; blocks cycle through %s)", n, spec.NodesPerBlock, spec.BlocksPerSpine, h.machineMix())
	h.nodeLabels = map[string]map[string]string{}
	err := inParallel(func(send func(*corev1.Node)) error {
		for _, node := range all {
			delete(node.Annotations, localcluster.AnnotationKwok)
			node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
			h.nodeNames = append(h.nodeNames, node.Name)
			h.nodeLabels[node.Name] = node.Labels
			gpus := node.Status.Allocatable[localcluster.ResourceGPU]
			h.totalGPUs += int(gpus.Value())
			send(node)
		}
		return nil
	}, func(node *corev1.Node) error {
		_, err := h.client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	// NodeDevices as the device-agent publishes them, so t9k-scheduler chooses GPUs by
	// interconnect as it would on a real cluster.
	c, err := client.New(h.cfg, client.Options{})
	if err != nil {
		return err
	}
	if err := devicev1beta1.AddToScheme(c.Scheme()); err != nil {
		return err
	}
	sim := &publisher.Simulator{
		Publisher:      &publisher.Publisher{Client: c},
		Selector:       labels.SelectorFromSet(labels.Set{localcluster.LabelSimulated: "true"}),
		DefaultFixture: benchMachines[0].Fixture,
		SysfsDir:       filepath.Join(h.opts.WorkDir, "sysfs"),
	}
	h.logf("publishing NodeDevices for %d nodes (simulated device-agent discovery; about a minute per 1000 nodes here)", n)
	st, err := sim.SyncOnce(ctx)
	if err != nil {
		return fmt.Errorf("publishing NodeDevices: %w", err)
	}
	h.logf("published NodeDevices for %d nodes", st.Created+st.Updated+st.Unchanged)
	return h.loadMachines(ctx, c)
}

func (h *harness) machineMix() string {
	var names []string
	for _, m := range benchMachines {
		names = append(names, m.Fixture)
	}
	return strings.Join(names, ", ")
}

// runOne measures one workload under one scheduler in its own namespace.
func (h *harness) runOne(ctx context.Context, w Workload, s schedulerUnderTest, round int) (*Run, error) {
	ns := fmt.Sprintf("%s-%s", w.Name, s.Name)
	if round > 0 {
		ns += fmt.Sprintf("-r%d", round+1) // namespaces are never deleted here (no namespace controller)
	}
	dir := filepath.Join(h.opts.WorkDir, ns)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logName := fmt.Sprintf("%s-%s-run%d.log", w.Name, s.Name, round+1)
	files := runFiles{dir: dir, log: filepath.Join(dir, logName)}
	if h.opts.LogDir != "" {
		files.log = filepath.Join(h.opts.LogDir, logName)
	}
	if _, err := h.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"t9k-bench": "true"}}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if s.Gang == gangT9k {
		if err := h.ensureT9kQueue(ctx); err != nil {
			return nil, err
		}
	}

	var (
		rs      *running
		cpu0    float64
		stopped bool
	)
	defer func() {
		if rs != nil && !stopped {
			rs.stop()
		}
	}()
	var profiled <-chan struct{}
	// startScheduler starts it; the CPU count starts when the scheduler is ready (after its probe
	// pod), or at once for a backlog.
	startScheduler := func() error {
		var err error
		if rs, err = s.start(ctx, h, s, files); err != nil {
			return fmt.Errorf("%w (log in %s)", err, files.log)
		}
		if h.opts.Profile > 0 && rs.pid != 0 {
			profiled = h.profileCPU(ctx, rs, strings.TrimSuffix(logName, ".log"))
		}
		return nil
	}
	if !w.Backlog {
		if err := startScheduler(); err != nil {
			return nil, err
		}
		if err := h.waitSchedulerReady(ctx, ns, s); err != nil {
			return nil, fmt.Errorf("%w (log in %s)", err, files.log)
		}
		cpu0, _, _ = procUsage(rs.pid)
	}
	var pgWatch *podGroupWatch
	if s.Gang != gangNone {
		var err error
		if pgWatch, err = h.watchPodGroups(ctx, ns, s.Gang); err != nil {
			return nil, err
		}
		defer pgWatch.stop() // on the error paths; finish stops it too
	}

	rec := newRecorder()
	factory := informers.NewSharedInformerFactoryWithOptions(h.client, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { rec.observe(obj.(*corev1.Pod)) },
		UpdateFunc: func(_, obj any) {
			rec.observe(obj.(*corev1.Pod))
		},
	}); err != nil {
		return nil, err
	}
	informerCtx, stopInformer := context.WithCancel(ctx)
	defer stopInformer()
	factory.Start(informerCtx.Done())
	factory.WaitForCacheSync(informerCtx.Done())

	start := time.Now()
	var jobs []Job
	var sat *Saturation
	complete := true
	if w.Stream != nil {
		var err error
		jobs, sat, err = h.stream(ctx, ns, w, s, rs, rec)
		if err != nil {
			return nil, err
		}
	} else {
		jobs = w.Jobs(h.totalGPUs)
		pods := podsOf(jobs)
		h.logf("%s / %s: %d jobs, %d pods", w.Name, s.Name, len(jobs), pods)
		if err := h.submit(ctx, ns, jobs, s, rec); err != nil {
			return nil, err
		}
		h.logf("%s / %s: submitted in %.1fs", w.Name, s.Name, time.Since(start).Seconds())
		if w.Backlog {
			// Every pod waits; the scheduler's clock starts at its first bind (summarise).
			if err := startScheduler(); err != nil {
				return nil, err
			}
			cpu0, _, _ = procUsage(rs.pid)
			start = time.Time{}
		}
		complete = rec.waitAll(ctx, pods, h.opts.StallTimeout, func(n int) { h.logf("%s / %s: %d/%d bound", w.Name, s.Name, n, pods) })
	}
	var pgWrites *PodGroupWrites
	if pgWatch != nil {
		pgWrites = pgWatch.finish()
	}
	never, err := h.neverAttempted(ctx, ns)
	if err != nil {
		return nil, err
	}
	cpu1, rss, _ := procUsage(rs.pid)
	if profiled != nil {
		<-profiled
		h.profileHeap(ctx, rs, strings.TrimSuffix(logName, ".log"))
	}
	rs.stop()
	stopped = true

	run := rec.summarise(start, jobs, h)
	run.Workload, run.Scheduler, run.Pods, run.Jobs, run.Complete = w.Name, s.Name, podsOf(jobs), len(jobs), complete
	run.NeverAttempted, run.PodGroupWrites = never, pgWrites
	if rs.pid != 0 {
		run.Log = logName
	}
	ic := h.replayInterconnect(rec.events())
	run.Interconnect = &ic
	if sat != nil {
		run.Saturation = sat
		run.GPUAllocation = sat.GPUAllocation
		run.AllocationOverTime = rec.allocationOverTime(start, h.totalGPUs)
		if from := int(sat.Samples[0].Seconds / chartStep); from < len(run.AllocationOverTime) {
			tail := run.AllocationOverTime[from:]
			for _, v := range tail {
				sat.TimeAveraged += v / 100 / float64(len(tail))
			}
		}
	}
	if rs.pid != 0 {
		run.CPUSeconds, run.PeakRSSMiB = cpu1-cpu0, rss
	}
	h.logf("%s / %s: %d/%d bound, %.1f pods/s; %d pods never attempted%s", w.Name, s.Name, run.Bound, run.Pods, run.PodsPerSecond.Avg,
		run.NeverAttempted, pgWrites.String())
	return run, h.clear(ctx, ns, s.Gang)
}

func podsOf(jobs []Job) int {
	n := 0
	for _, j := range jobs {
		n += j.Pods
	}
	return n
}

// neverAttempted counts, from the apiserver at the end of a run, the namespace's pods that are
// not bound and carry no PodScheduled condition at all: no scheduling attempt of the scheduler
// ever failed for them (a failed attempt sets PodScheduled=False), so the scheduler never
// tried them, or holds them (at PreEnqueue, or reserved and waiting at Permit) without a verdict.
func (h *harness) neverAttempted(ctx context.Context, ns string) (int, error) {
	pods, err := h.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" || p.DeletionTimestamp != nil {
			continue
		}
		scheduled := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled {
				scheduled = true
			}
		}
		if !scheduled {
			n++
		}
	}
	return n, nil
}

// waitSchedulerReady creates a probe pod and waits until the scheduler binds it: the scheduler's
// informers are synced and it is taking work.
func (h *harness) waitSchedulerReady(ctx context.Context, ns string, s schedulerUnderTest) error {
	probe := h.pod(ns, "probe", 0, s, "")
	if _, err := h.client.CoreV1().Pods(ns).Create(ctx, probe, metav1.CreateOptions{}); err != nil {
		return err
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := h.client.CoreV1().Pods(ns).Get(ctx, "probe", metav1.GetOptions{})
		return err == nil && p.Spec.NodeName != "", nil
	})
	if err != nil {
		return fmt.Errorf("%s never bound its probe pod: %w", s.Name, err)
	}
	zero := int64(0)
	return h.client.CoreV1().Pods(ns).Delete(ctx, "probe", metav1.DeleteOptions{GracePeriodSeconds: &zero})
}

// submit creates the PodGroups (for gang schedulers) and pods of every job, each PodGroup just
// before its pods, recording each pod's creation time.
func (h *harness) submit(ctx context.Context, ns string, jobs []Job, s schedulerUnderTest, rec *recorder) error {
	type item struct {
		job Job
		idx int
	}
	return inParallel(func(send func(item)) error {
		for _, j := range jobs {
			if j.Pods > 1 && s.Gang != gangNone {
				if err := h.createPodGroup(ctx, ns, j, s.Gang); err != nil {
					return err
				}
			}
			for i := 0; i < j.Pods; i++ {
				send(item{job: j, idx: i})
			}
		}
		return nil
	}, func(it item) error {
		group := ""
		if it.job.Pods > 1 {
			group = it.job.Name
		}
		p := h.pod(ns, podName(it.job, it.idx), it.job.GPUs, s, group)
		rec.noteCreated(p.Name, it.job.Name, it.job.GPUs, time.Now())
		_, err := h.client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	})
}

// inParallel runs do with 16 workers on every item feed sends, and returns feed's error or else
// the first of do's. The apiserver takes creates and deletes far faster in parallel.
func inParallel[T any](feed func(send func(T)) error, do func(T) error) error {
	work := make(chan T, 1024)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				if err := do(it); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	err := feed(func(it T) { work <- it })
	close(work)
	wg.Wait()
	if err != nil {
		return err
	}
	return first
}

func (h *harness) pod(ns, name string, gpus int, s schedulerUnderTest, group string) *corev1.Pod {
	labels := map[string]string{"job": group}
	if group != "" {
		switch s.Gang {
		case gangCoscheduling:
			labels[cosPodGroupName] = group
		case gangT9k:
			labels[t9kGroupLabel] = group
		}
	}
	res := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("1Gi")}
	if gpus > 0 {
		res[localcluster.ResourceGPU] = *resource.NewQuantity(int64(gpus), resource.DecimalSI)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Spec: corev1.PodSpec{
			SchedulerName: s.SchedulerName,
			Containers:    []corev1.Container{{Name: "main", Image: "bench", Resources: corev1.ResourceRequirements{Requests: res, Limits: res}}},
		},
	}
}

// podGroupGVR is the PodGroup resource of a gang mechanism.
func podGroupGVR(gang string) schema.GroupVersionResource {
	if gang == gangCoscheduling {
		return cosPodGroupGVR
	}
	return t9kPodGroupGVR
}

func (h *harness) createPodGroup(ctx context.Context, ns string, j Job, gang string) error {
	gvr := podGroupGVR(gang)
	pg := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": gvr.GroupVersion().String(), "kind": "PodGroup",
		"metadata": map[string]any{"name": j.Name, "namespace": ns},
		"spec":     map[string]any{"minMember": int64(j.Pods)},
	}}
	_, err := h.dyn.Resource(gvr).Namespace(ns).Create(ctx, pg, metav1.CreateOptions{})
	return err
}

// ensureT9kQueue creates the default Queue open to the benchmark's namespaces (a Queue without a
// namespaceSelector admits no namespace).
func (h *harness) ensureT9kQueue(ctx context.Context) error {
	if _, err := h.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "t9k-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	q := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "scheduler.tensorstack.dev/v1beta1", "kind": "Queue",
		"metadata": map[string]any{"name": "default", "namespace": "t9k-system"},
		"spec": map[string]any{
			"namespaceSelector": map[string]any{"matchLabels": map[string]any{"t9k-bench": "true"}},
		},
	}}
	_, err := h.dyn.Resource(t9kQueueGVR).Namespace("t9k-system").Create(ctx, q, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// clear force-deletes the namespace's pods and waits until they are gone, so the next run starts
// on empty nodes, then deletes its PodGroups (of the gang mechanism gang), so a later run of a
// scheduler that caches every PodGroup does not start with this run's.
func (h *harness) clear(ctx context.Context, ns, gang string) error {
	if err := h.clearPods(ctx, ns); err != nil {
		return err
	}
	if gang == gangNone {
		return nil
	}
	return h.dyn.Resource(podGroupGVR(gang)).Namespace(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
}

// clearPods deletes the namespace's pods and waits until they are gone. Deleting tens of
// thousands of pods can outlast the apiserver's request timeout (it goes on deleting); the
// collection is deleted again until nothing is left, three times at most.
func (h *harness) clearPods(ctx context.Context, ns string) error {
	zero := int64(0)
	for attempt := 1; ; attempt++ {
		if err := h.client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
			// A timeout or a reset stream: the apiserver may well go on deleting; see what is left.
			h.logf("%s: deleting pods: %v", ns, err)
		}
		err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
			l, err := h.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{Limit: 1})
			if err != nil {
				return false, nil //nolint:nilerr // transient; poll again
			}
			return len(l.Items) == 0, nil
		})
		if err == nil {
			return nil
		}
		if attempt == 3 {
			return fmt.Errorf("pods of %s still there after %d deletions: %w", ns, attempt, err)
		}
		h.logf("%s: pods still being deleted; deleting the rest again", ns)
	}
}

// coschedulingCRD locates scheduler-plugins' PodGroup CRD in the module cache (the module our
// go.mod pins), so the Coscheduling baseline runs against its real API.
func coschedulingCRD() (string, error) {
	dir, err := moduleDir("sigs.k8s.io/scheduler-plugins")
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "manifests", "coscheduling", "crd.yaml")
	if _, err := os.Stat(p); err != nil {
		return "", errors.New("scheduler-plugins coscheduling CRD not found in the module cache: run `go mod download sigs.k8s.io/scheduler-plugins`")
	}
	return p, nil
}
