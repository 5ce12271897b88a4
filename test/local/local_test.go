// Package local runs the t9k-local binary (from T9K_BIN_DIR, built by `make build`) as a user
// would: a cluster file's nodes, cliques and NodeDevices, a gang placed in one NVLink clique, and
// that nothing t9k-local started outlives it however it ends (SIGTERM, SIGHUP, SIGKILL), so that a
// second t9k-local in the same directory starts cleanly.
package local

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
	"github.com/tensorstack/t9k/pkg/localcluster"
	"github.com/tensorstack/t9k/pkg/scheduler"
)

// readyLine is what t9k-local prints once the cluster and its binaries are up.
const readyLine = "[t9k-local] cluster is up"

// localRun is one t9k-local process.
type localRun struct {
	t    *testing.T
	cmd  *exec.Cmd
	dir  string
	out  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startLocal runs t9k-local with --dir dir and no samples, and waits for its ready line.
func startLocal(t *testing.T, dir string, args ...string) *localRun {
	t.Helper()
	bin, err := controlplane.BinDir()
	require.NoError(t, err)
	exe := filepath.Join(bin, "t9k-local")
	_, err = os.Stat(exe)
	require.NoError(t, err, "run `make build` first (T9K_BIN_DIR=%s)", bin)
	r := &localRun{t: t, dir: dir, out: &lockedBuffer{}, done: make(chan struct{})}
	r.cmd = exec.Command(exe, append([]string{"--dir", dir, "--bin-dir", bin, "--samples", ""}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = r.out, r.out
	// If the test binary dies (a -timeout panic), t9k-local stops too. No goroutine of the test
	// binary locks its thread, so the forking thread lives as long as the binary (golang/go#27505).
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	require.NoError(t, r.cmd.Start())
	go func() { _ = r.cmd.Wait(); close(r.done) }()
	t.Cleanup(func() {
		// Whatever the test did, leave nothing running.
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(60 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	deadline := time.After(3 * time.Minute)
	for !strings.Contains(r.out.String(), readyLine) {
		select {
		case <-r.done:
			r.dump()
			t.Fatalf("t9k-local exited before it was up (%v)", r.cmd.ProcessState)
		case <-deadline:
			r.dump()
			t.Fatal("t9k-local not up after 3 minutes")
		case <-time.After(100 * time.Millisecond):
		}
	}
	return r
}

// dump logs t9k-local's output and the tail of every child's log.
func (r *localRun) dump() {
	r.t.Logf("t9k-local output:\n%s", r.out.String())
	logs, _ := filepath.Glob(filepath.Join(r.dir, "logs", "*.log"))
	for _, l := range logs {
		data, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		r.t.Logf("%s (last lines):\n%s", filepath.Base(l), strings.Join(lines, "\n"))
	}
}

// stop sends sig and waits for t9k-local to exit, returning its exit code.
func (r *localRun) stop(sig syscall.Signal) int {
	r.t.Helper()
	require.NoError(r.t, r.cmd.Process.Signal(sig))
	select {
	case <-r.done:
	case <-time.After(90 * time.Second):
		r.dump()
		r.t.Fatalf("t9k-local still running 90s after %v", sig)
	}
	return r.cmd.ProcessState.ExitCode()
}

func (r *localRun) client() client.Client {
	r.t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(r.dir, "kubeconfig"))
	require.NoError(r.t, err)
	s := runtime.NewScheme()
	require.NoError(r.t, clientgoscheme.AddToScheme(s))
	require.NoError(r.t, devicev1beta1.AddToScheme(s))
	require.NoError(r.t, schedv1beta1.AddToScheme(s))
	c, err := client.New(cfg, client.Options{Scheme: s})
	require.NoError(r.t, err)
	return c
}

// proc is a process seen in /proc.
type proc struct {
	pid, ppid int
	start     string // start time in clock ticks: tells a reused pid apart
	state     string
	comm      string
}

func readProc(pid int) (proc, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return proc{}, false
	}
	s := string(data)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	f := strings.Fields(s[closing+1:])
	if open < 0 || closing < open || len(f) < 20 {
		return proc{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	return proc{pid: pid, ppid: ppid, start: f[19], state: f[0], comm: s[open+1 : closing]}, true
}

// descendants are the live processes under pid, children first.
func descendants(pid int) []proc {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]proc{}
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(n); ok && p.state != "Z" {
			children[p.ppid] = append(children[p.ppid], p)
		}
	}
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
	}
	return out
}

func names(ps []proc) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.comm)
	}
	sort.Strings(out)
	return out
}

// allChildren are the processes t9k-local runs: the control plane, kwok and the three binaries.
var allChildren = []string{"device-agent", "etcd", "kube-apiserver", "kwok", "t9k-controllers", "t9k-scheduler"}

// requireGone waits until none of ps is alive (gone, a zombie, or its pid reused).
func requireGone(t *testing.T, ps []proc, within time.Duration) {
	t.Helper()
	var alive []string
	deadline := time.Now().Add(within)
	for {
		alive = nil
		for _, p := range ps {
			if now, ok := readProc(p.pid); ok && now.start == p.start && now.state != "Z" {
				alive = append(alive, fmt.Sprintf("%s (pid %d)", p.comm, p.pid))
			}
		}
		if len(alive) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(alive) > 0 {
		for _, p := range ps {
			if now, ok := readProc(p.pid); ok && now.start == p.start {
				_ = syscall.Kill(p.pid, syscall.SIGKILL) // leave nothing behind, failing or not
			}
		}
	}
	require.Empty(t, alive, "still running %v after t9k-local ended", within)
}

// TestGB200ClusterFile starts the shipped GB200 cluster file and checks what it made: 4 racks of
// 18 trays, each rack one clique inside one block, every node's NodeDevices from its tray (same
// clique as its label), RDMA advertised; then that a gang needing most of a rack lands in one
// clique with GPUs and NICs chosen; then SIGTERM ends everything.
func TestGB200ClusterFile(t *testing.T) {
	root, err := controlplane.ModuleRoot()
	require.NoError(t, err)
	r := startLocal(t, t.TempDir(), "--cluster", filepath.Join(root, "manifests", "local", "gb200.yaml"))
	require.Contains(t, r.out.String(), "72 nodes, 288 GPUs (72 gb200-nvl72); 4 cliques, 2 blocks, 1 spine, 1 zone")
	c := r.client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var nodes corev1.NodeList
	require.NoError(t, c.List(ctx, &nodes))
	require.Len(t, nodes.Items, 72)
	cliqueNodes := map[string][]string{}
	cliqueBlock := map[string]string{}
	byName := map[string]*corev1.Node{}
	for i := range nodes.Items {
		n := &nodes.Items[i]
		byName[n.Name] = n
		require.True(t, localcluster.NodeReady(n), "%s not Ready", n.Name)
		require.Equal(t, "gb200-nvl72", n.Labels[localcluster.LabelFixture], n.Name)
		clique := n.Labels[localcluster.LabelClique]
		require.NotEmpty(t, clique, n.Name)
		cliqueNodes[clique] = append(cliqueNodes[clique], n.Name)
		if b, ok := cliqueBlock[clique]; ok {
			require.Equal(t, b, n.Labels[localcluster.LabelBlock], "clique %s spans blocks", clique)
		}
		cliqueBlock[clique] = n.Labels[localcluster.LabelBlock]
		gpus, rdma := n.Status.Allocatable[localcluster.ResourceGPU], n.Status.Allocatable[localcluster.ResourceRDMA]
		require.Equal(t, int64(4), gpus.Value(), n.Name)
		require.Positive(t, rdma.Value(), "%s advertises %s", n.Name, localcluster.ResourceRDMA)
	}
	require.Len(t, cliqueNodes, 4)
	for rack := range 4 {
		require.Len(t, cliqueNodes[fixtures.RackClusterUUID(rack).String()+".1"], 18, "rack %d", rack)
	}

	// The device-agent publishes every tray from its fixture, in the clique its label names.
	var devs devicev1beta1.NodeDevicesList
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &devs); err != nil {
			return false, nil //nolint:nilerr // keep polling
		}
		return len(devs.Items) == 72, nil
	})
	require.NoError(t, err, "NodeDevices: %d of 72", len(devs.Items))
	for _, d := range devs.Items {
		n := byName[d.Name]
		require.NotNil(t, n, "NodeDevices %s without a node", d.Name)
		require.Equal(t, "gb200-nvl72", d.Status.Fixture, d.Name)
		require.Equal(t, n.Labels[localcluster.LabelClique], d.Status.Clique, "%s: published clique = node label", d.Name)
		require.EqualValues(t, 4, d.Status.GPUCount, d.Name)
		require.EqualValues(t, 4, d.Status.NICCount, d.Name)
		require.Equal(t, n.Labels["nvidia.com/gpu.product"], d.Status.GPUProduct, d.Name)
	}

	// A gang of 12 pods × 4 GPUs (48 of a rack's 72) that must stay in one NVLink clique.
	const ns, group, members = "gang", "rack-job", 12
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	require.NoError(t, c.Create(ctx, &schedv1beta1.Queue{
		ObjectMeta: metav1.ObjectMeta{Name: "gang", Namespace: "t9k-system"},
		Spec: schedv1beta1.QueueSpec{Priority: 10, NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}},
	}))
	require.NoError(t, c.Create(ctx, &schedv1beta1.PodGroup{
		ObjectMeta: metav1.ObjectMeta{Name: group, Namespace: ns},
		Spec: schedv1beta1.PodGroupSpec{MinMember: members, Queue: "gang",
			TopologyPolicy: &schedv1beta1.TopologyPolicy{Mode: schedv1beta1.TopologyRequired, Level: localcluster.LabelClique}},
	}))
	for i := range members {
		limits := corev1.ResourceList{
			corev1.ResourceCPU:        resource.MustParse("8"),
			corev1.ResourceMemory:     resource.MustParse("64Gi"),
			localcluster.ResourceGPU:  resource.MustParse("4"),
			localcluster.ResourceRDMA: resource.MustParse("1"),
		}
		require.NoError(t, c.Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", group, i), Namespace: ns,
				Labels: map[string]string{schedv1beta1.LabelGroupName: group, schedv1beta1.LabelQueue: "gang"}},
			Spec: corev1.PodSpec{
				SchedulerName: scheduler.SchedulerName,
				Containers: []corev1.Container{{Name: "main", Image: "trainer",
					Resources: corev1.ResourceRequirements{Limits: limits, Requests: limits}}},
			},
		}))
	}
	var pods corev1.PodList
	bound := 0
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.List(ctx, &pods, client.InNamespace(ns)); err != nil {
			return false, nil //nolint:nilerr // keep polling
		}
		bound = 0
		for _, p := range pods.Items {
			if p.Spec.NodeName != "" {
				bound++
			}
		}
		return bound == members, nil
	})
	if err != nil {
		var pg schedv1beta1.PodGroup
		_ = c.Get(ctx, client.ObjectKey{Namespace: ns, Name: group}, &pg)
		r.dump()
		t.Fatalf("gang: %d of %d bound; PodGroup status %+v", bound, members, pg.Status)
	}
	cliques := map[string]int{}
	for _, p := range pods.Items {
		cliques[byName[p.Spec.NodeName].Labels[localcluster.LabelClique]]++
		refs, err := devicev1beta1.ParseGPUAnnotation(p.Annotations[devicev1beta1.AnnotationGPUs])
		require.NoError(t, err)
		require.Len(t, refs, 4, "%s: GPUs chosen", p.Name)
		require.NotEmpty(t, devicev1beta1.ParseNICAnnotation(p.Annotations[devicev1beta1.AnnotationNICs]), "%s: NICs chosen", p.Name)
	}
	require.Len(t, cliques, 1, "the gang spans cliques: %v", cliques)

	// SIGTERM: t9k-local tears everything down and says so.
	kids := descendants(r.cmd.Process.Pid)
	require.Subset(t, names(kids), allChildren)
	require.Equal(t, 0, r.stop(syscall.SIGTERM), r.out.String())
	require.Contains(t, r.out.String(), "stopped; nothing left running")
	requireGone(t, kids, 10*time.Second)
}

// TestNothingSurvivesSIGKILL kills t9k-local outright once it is up: every process it started
// (recorded from /proc before the kill) must die with it. A second t9k-local in the same directory
// then starts cleanly on the first one's leftovers (etcd data, lock, process records), and SIGHUP
// (its terminal closing) ends it as cleanly as Ctrl-C.
func TestNothingSurvivesSIGKILL(t *testing.T) {
	dir := t.TempDir()
	shape := []string{"--spines", "1", "--blocks-per-spine", "1", "--nodes-per-block", "2"}
	first := startLocal(t, dir, shape...)
	kids := descendants(first.cmd.Process.Pid)
	require.Subset(t, names(kids), allChildren, "processes under t9k-local")
	first.stop(syscall.SIGKILL)
	requireGone(t, kids, 10*time.Second)
	_, err := os.Stat(filepath.Join(dir, "controlplane", "etcd"))
	require.NoError(t, err, "the killed run left its etcd data (what the next run must clear)")

	second := startLocal(t, dir, shape...)
	var nodes corev1.NodeList
	require.NoError(t, second.client().List(context.Background(), &nodes))
	require.Len(t, nodes.Items, 2, "a fresh cluster, not the killed one's etcd")
	kids = descendants(second.cmd.Process.Pid)
	require.Subset(t, names(kids), allChildren)
	require.Equal(t, 0, second.stop(syscall.SIGHUP), second.out.String())
	require.Contains(t, second.out.String(), "hangup: stopping")
	require.Contains(t, second.out.String(), "stopped; nothing left running")
	requireGone(t, kids, 10*time.Second)
	_, err = os.Stat(filepath.Join(dir, "controlplane"))
	require.True(t, os.IsNotExist(err), "a clean stop removes the control plane's data")
}

// TestSecondClusterInSameDirIsRefused: while one t9k-local runs in a directory, another one
// there stops at once with a clear error instead of clearing the first one's etcd.
func TestSecondClusterInSameDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	first := startLocal(t, dir, "--spines", "1", "--blocks-per-spine", "1", "--nodes-per-block", "1")
	bin, err := controlplane.BinDir()
	require.NoError(t, err)
	out, err := exec.Command(filepath.Join(bin, "t9k-local"), "--dir", dir, "--bin-dir", bin, "--samples", "").CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), fmt.Sprintf("another local cluster (pid %d) is running in %s", first.cmd.Process.Pid, dir))
	require.Equal(t, 0, first.stop(syscall.SIGINT), first.out.String())
}
