package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

// Gang mechanisms a scheduler understands; the harness creates the matching PodGroup objects.
const (
	gangNone         = ""
	gangCoscheduling = "coscheduling" // scheduling.x-k8s.io/v1alpha1 PodGroup, label scheduling.x-k8s.io/pod-group
	gangT9k          = "t9k"          // scheduler.tensorstack.dev/v1beta1 PodGroup, label scheduler.tensorstack.dev/group-name
)

// schedulerUnderTest is one contender. Each run gets a fresh process so CPU and peak RSS are its own.
type schedulerUnderTest struct {
	Name          string // in the report
	SchedulerName string // spec.schedulerName of its pods
	Gang          string
	// Ceiling marks the no-op binder: it binds without fitting, so it bounds throughput but has
	// no saturation point (the stream workload skips it).
	Ceiling bool
	start   func(ctx context.Context, h *harness, s schedulerUnderTest, files runFiles) (*running, error)
}

// runFiles are where one run of a scheduler keeps its files: dir for its configuration (in the
// work directory) and log for everything the process writes (klog goes to stderr).
type runFiles struct {
	dir, log string
}

// running is a started scheduler; pid is 0 for the in-process no-op binder, which also has no
// metrics endpoint (metricsURL "").
type running struct {
	pid        int
	metricsURL string
	stop       func()
}

// allSchedulers lists every scheduler the bench knows, in the default order. t9k-binpack is
// t9k-scheduler with the shipped bin-packing profile; its profile's schedulerName is
// t9k-scheduler too, which is safe because one scheduler runs at a time.
func allSchedulers() []schedulerUnderTest {
	return []schedulerUnderTest{
		{Name: "noop-binder", SchedulerName: "noop-binder", Ceiling: true, start: startNoopBinder},
		{Name: "kube-scheduler", SchedulerName: "default-scheduler", start: startStock},
		{Name: "coscheduling", SchedulerName: "coscheduling", Gang: gangCoscheduling, start: startBinary("coscheduling.yaml")},
		{Name: "t9k-scheduler", SchedulerName: "t9k-scheduler", Gang: gangT9k, start: startBinary("t9k-scheduler.yaml")},
		{Name: "t9k-binpack", SchedulerName: "t9k-scheduler", Gang: gangT9k, start: startBinary("t9k-scheduler-binpack.yaml")},
	}
}

// startNoopBinder binds every pending pod of its schedulerName to the next node round-robin, with no
// filtering at all: the apiserver's binding ceiling on this machine.
func startNoopBinder(ctx context.Context, h *harness, _ schedulerUnderTest, _ runFiles) (*running, error) {
	ctx, cancel := context.WithCancel(ctx)
	nodes := h.nodeNames
	factory := informers.NewSharedInformerFactoryWithOptions(h.client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.AndSelectors(
			fields.OneTermEqualSelector("spec.schedulerName", "noop-binder"),
			fields.OneTermEqualSelector("spec.nodeName", "")).String()
	}))
	queue := make(chan *corev1.Pod, 100000)
	inf := factory.Core().V1().Pods().Informer()
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(obj any) {
		if p, ok := obj.(*corev1.Pod); ok {
			queue <- p
		}
	}}); err != nil {
		cancel()
		return nil, err
	}
	factory.Start(ctx.Done())
	var wg sync.WaitGroup
	var mu sync.Mutex
	next := 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case p := <-queue:
					mu.Lock()
					node := nodes[next%len(nodes)]
					next++
					mu.Unlock()
					b := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID}, Target: corev1.ObjectReference{Kind: "Node", Name: node}}
					if err := h.client.CoreV1().Pods(p.Namespace).Bind(ctx, b, metav1.CreateOptions{}); err != nil && ctx.Err() == nil {
						h.logf("noop-binder: bind %s: %v", p.Name, err)
					}
				}
			}
		}()
	}
	return &running{stop: func() { cancel(); factory.Shutdown(); wg.Wait() }}, nil
}

// startStock runs the upstream kube-scheduler v1.34.7 built from our go.mod, default plugins.
func startStock(ctx context.Context, h *harness, s schedulerUnderTest, files runFiles) (*running, error) {
	cfg := map[string]any{
		"apiVersion": "kubescheduler.config.k8s.io/v1",
		"kind":       "KubeSchedulerConfiguration",
		"profiles":   []any{map[string]any{"schedulerName": s.SchedulerName}},
	}
	return h.startProcess(ctx, "kube-scheduler", filepath.Join(h.binDir, "kube-scheduler"), cfg, files)
}

// startBinary runs bin/t9k-scheduler with one of the shipped profiles in manifests/scheduler/.
// The profile must schedule the pods the harness creates for s: its (only) profile's
// schedulerName must be s.SchedulerName.
func startBinary(profile string) func(context.Context, *harness, schedulerUnderTest, runFiles) (*running, error) {
	return func(ctx context.Context, h *harness, s schedulerUnderTest, files runFiles) (*running, error) {
		data, err := os.ReadFile(filepath.Join(h.root, "manifests", "scheduler", profile))
		if err != nil {
			return nil, err
		}
		var cfg map[string]any
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", profile, err)
		}
		if names := profileNames(cfg); len(names) != 1 || names[0] != s.SchedulerName {
			return nil, fmt.Errorf("%s: profiles schedule %v; the bench's %s pods ask for %q", profile, names, s.Name, s.SchedulerName)
		}
		return h.startProcess(ctx, strings.TrimSuffix(profile, ".yaml"), filepath.Join(h.binDir, "t9k-scheduler"), cfg, files)
	}
}

// profileNames lists the schedulerName of each profile of a KubeSchedulerConfiguration.
func profileNames(cfg map[string]any) []string {
	var names []string
	profiles, _ := cfg["profiles"].([]any)
	for _, p := range profiles {
		m, _ := p.(map[string]any)
		name, _ := m["schedulerName"].(string)
		names = append(names, name)
	}
	return names
}

// startProcess writes cfg with our kubeconfig, leader election off and client QPS raised (the
// default 50 QPS would cap every scheduler at 50 binds/s), and runs the binary with it, its stdout
// and stderr (klog) going to files.log. The secure port serves /metrics and /debug/pprof on
// loopback without authentication (only those and the health paths are allowed): the harness
// reads the scheduler's own gauges from it when a stream settles, and profiles with --profile.
func (h *harness) startProcess(ctx context.Context, name, bin string, cfg map[string]any, files runFiles) (*running, error) {
	cfg["clientConnection"] = map[string]any{"kubeconfig": h.kubeconfig, "qps": 5000, "burst": 5000}
	cfg["leaderElection"] = map[string]any{"leaderElect": false}
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(files.dir, name+".yaml")
	if err := os.WriteFile(cfgPath, data, 0o644); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(files.log), 0o755); err != nil {
		return nil, err
	}
	log, err := os.Create(files.log)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "--config="+cfgPath, "-v=1",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics,/debug/pprof,/debug/pprof/*")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return &running{pid: cmd.Process.Pid, metricsURL: fmt.Sprintf("https://127.0.0.1:%d/metrics", port), stop: func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		log.Close()
	}}, nil
}

// freePort asks the kernel for a free loopback port. Another process could take it before the
// scheduler binds it; the scheduler would then fail to start and the run would say so.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procUsage reads a process's CPU seconds (user+system) and peak RSS in MiB from /proc.
func procUsage(pid int) (cpuSeconds, peakRSSMiB float64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
	s := string(stat)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	const clkTck = 100 // USER_HZ on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			peakRSSMiB = kb / 1024
		}
	}
	return (utime + stime) / clkTck, peakRSSMiB, nil
}
