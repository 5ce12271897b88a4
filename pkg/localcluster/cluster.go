// Package localcluster runs a simulated GPU cluster on one machine: the real kube-apiserver + etcd
// (pkg/controlplane), kwok playing the kubelet of every node, and any processes started beside them
// (the t9k binaries). cmd/t9k-local, the integration tests and the benchmark build on it.
package localcluster

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tensorstack/t9k/pkg/controlplane"
)

//go:embed kwok.yaml
var kwokConfig []byte

// Options configure a local cluster.
type Options struct {
	// Dir holds the kubeconfig, kwok's config and one log file per process. Created if missing.
	Dir string
	// BinDir holds kube-apiserver, etcd and kwok (and the t9k binaries for StartProcess callers).
	BinDir string
	// CRDDir overrides controlplane's default (manifests/crd under the module root).
	CRDDir string
	// Spec is the node layout; zero Spines means no nodes are created.
	Spec Spec
	// Layout, when set, is the cluster instead of Spec (e.g. from a cluster file).
	Layout *Layout
	// Reexec starts kube-apiserver and etcd through this executable, so that they die with this
	// process even when it is killed by SIGKILL; its main must call ExecGuardedChild first.
	// Children started by StartProcess die with it in any case.
	Reexec bool
	// Progress receives one line per step; nil discards.
	Progress io.Writer
	// Namespaces to create on start (e.g. t9k-system for leader election and queues).
	Namespaces []string
}

// Cluster is a running local cluster.
type Cluster struct {
	ControlPlane *controlplane.ControlPlane
	Config       *rest.Config
	Client       kubernetes.Interface
	// Kubeconfig is the path of an admin kubeconfig usable by kubectl and child processes.
	Kubeconfig string
	Dir        string
	BinDir     string

	progress io.Writer
	mu       sync.Mutex
	procs    []*process
	others   []procStat // processes started for us by others (envtest: etcd, kube-apiserver)
	lock     *os.File
}

type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// Start brings the cluster up: control plane, kubeconfig, namespaces, kwok, then the nodes, and
// waits until every node is Ready. On error everything started so far is stopped again. A
// directory holds one running cluster at a time; what a killed earlier run left in it (processes,
// etcd data) is cleared first.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	layout := opts.Layout
	if layout == nil && opts.Spec.Spines > 0 {
		if err := opts.Spec.Validate(); err != nil {
			return nil, err
		}
		layout = opts.Spec.Layout()
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, BinDir: opts.BinDir, progress: opts.Progress}
	if err := c.lockDir(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop()
			c = nil
		}
	}()
	c.reapLeftovers()
	work := filepath.Join(dir, "controlplane")
	if err = os.RemoveAll(work); err != nil {
		return c, fmt.Errorf("clearing %s: %w", work, err)
	}
	cpOpts := controlplane.Options{BinDir: opts.BinDir, CRDDir: opts.CRDDir, WorkDir: work}
	if opts.Reexec {
		binDir := opts.BinDir
		if binDir == "" {
			if binDir, err = controlplane.BinDir(); err != nil {
				return c, err
			}
		}
		var undo func()
		cpOpts.APIServerPath, cpOpts.EtcdPath, undo, err = guardedPaths(filepath.Join(work, "bin"), binDir, dir)
		if err != nil {
			return c, err
		}
		defer undo() // on errors before the control plane is up
	}

	c.step("starting kube-apiserver and etcd")
	start := time.Now()
	before := childGroups()
	if opts.Reexec {
		// Forked from the spawner thread, to which their parent-death signal is tied.
		spawn(func() { c.ControlPlane, err = controlplane.Start(cpOpts) })
		os.Unsetenv(envGuardBinDir) // the children started from here on are not guarded
		os.Unsetenv(envGuardParent)
		os.Unsetenv(envLocalDir)
	} else {
		c.ControlPlane, err = controlplane.Start(cpOpts)
	}
	for pid, st := range childGroups() {
		if _, ok := before[pid]; !ok {
			c.others = append(c.others, st)
		}
	}
	c.recordChildren()
	if err != nil {
		return c, err
	}
	c.Config = c.ControlPlane.Config
	c.step("control plane ready in %.1fs at %s", time.Since(start).Seconds(), c.Config.Host)
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return c, err
	}
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err = c.ControlPlane.WriteKubeconfig(c.Kubeconfig); err != nil {
		return c, err
	}
	for _, ns := range opts.Namespaces {
		_, err = c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return c, fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}

	kwokCfg := filepath.Join(dir, "kwok.yaml")
	if err = os.WriteFile(kwokCfg, kwokConfig, 0o644); err != nil {
		return c, err
	}
	port, err := FreePort()
	if err != nil {
		return c, err
	}
	c.step("starting kwok")
	if err = c.StartProcess("kwok", filepath.Join(opts.BinDir, "kwok"),
		"--kubeconfig="+c.Kubeconfig, "--config="+kwokCfg,
		fmt.Sprintf("--server-address=127.0.0.1:%d", port)); err != nil {
		return c, err
	}

	if layout != nil && len(layout.Nodes) > 0 {
		if err = c.CreateNodes(ctx, layout.Nodes); err != nil {
			return c, err
		}
	}
	return c, nil
}

// CreateNodes creates nodes and waits until kwok has made every one of them Ready.
func (c *Cluster) CreateNodes(ctx context.Context, nodes []*corev1.Node) error {
	c.step("creating %d nodes", len(nodes))
	for i, n := range nodes {
		if _, err := c.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating node %s: %w", n.Name, err)
		}
		if (i+1)%500 == 0 {
			c.step("created %d/%d nodes", i+1, len(nodes))
		}
	}
	want := map[string]bool{}
	for _, n := range nodes {
		want[n.Name] = true
	}
	lastReady := -1
	err := wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, nil //nolint:nilerr // transient; keep polling until the timeout
		}
		ready := 0
		for i := range list.Items {
			if want[list.Items[i].Name] && NodeReady(&list.Items[i]) {
				ready++
			}
		}
		if ready != lastReady {
			c.step("%d/%d nodes Ready", ready, len(nodes))
			lastReady = ready
		}
		if err := c.firstExited(); err != nil {
			return false, err
		}
		return ready == len(nodes), nil
	})
	if err != nil {
		return fmt.Errorf("waiting for nodes to become Ready (kwok log: %s): %w", c.LogPath("kwok"), err)
	}
	return nil
}

// NodeReady reports whether the node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// StartProcess runs a child process whose output goes to Dir/logs/<name>.log, in its own process
// group. The child dies with this process (PDEATHSIG, set from the spawner thread: see
// processes.go), so a crash of the parent leaves nothing behind.
func (c *Cluster) StartProcess(name, path string, args ...string) error {
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s: %w (run `make build tools`)", name, err)
	}
	log, err := os.Create(c.LogPath(name))
	if err != nil {
		return err
	}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), envLocalDir+"="+c.Dir)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	spawn(func() { err = cmd.Start() })
	if err != nil {
		log.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{}), log: log}
	go func() { _ = cmd.Wait(); close(p.done) }()
	c.mu.Lock()
	c.procs = append(c.procs, p)
	c.mu.Unlock()
	c.recordChildren()
	return nil
}

// LogPath is where the named process logs.
func (c *Cluster) LogPath(name string) string { return filepath.Join(c.Dir, "logs", name+".log") }

// Exited returns an error naming the first child that has exited, or nil while all run.
func (c *Cluster) Exited() error { return c.firstExited() }

func (c *Cluster) firstExited() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited (%v); see %s", p.name, p.cmd.ProcessState, c.LogPath(p.name))
		default:
		}
	}
	return nil
}

// Stop terminates the children (SIGTERM, then SIGKILL after 10s), newest first, then the control
// plane. Safe to call more than once.
func (c *Cluster) Stop() {
	c.mu.Lock()
	procs := c.procs
	c.procs = nil
	c.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
		p.log.Close()
	}
	if c.ControlPlane != nil {
		if err := c.ControlPlane.Stop(); err != nil {
			c.step("stopping control plane: %v", err)
		}
		c.ControlPlane = nil
	}
	if c.lock != nil {
		_ = os.RemoveAll(filepath.Join(c.Dir, "controlplane"))
		_ = os.Remove(c.processesFile())
		c.unlockDir()
	}
}

func (c *Cluster) step(format string, args ...any) {
	fmt.Fprintf(c.progress, "[t9k-local] "+format+"\n", args...)
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("not a TCP address")
	}
	return addr.Port, nil
}
