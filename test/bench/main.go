// Command bench measures schedulers side by side on one real kube-apiserver + etcd, in the manner
// of upstream scheduler_perf: plain Node objects (no kubelet needed to bind), workloads from
// workloads/*.yaml, an informer counting bound pods per second. Each workload runs under the no-op
// binder (the apiserver's ceiling), the stock kube-scheduler, scheduler-plugins' Coscheduling,
// t9k-scheduler and t9k-scheduler's bin-packing profile, one after another. `make bench` runs it;
// see README "Performance".
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	var (
		nodes      = flag.Int("nodes", 500, "Number of nodes (8 GPUs each, 16 per block, 4 blocks per spine).")
		workloads  = flag.String("workloads", "", "Comma-separated workloads to run (default: all in workloads/).")
		schedulers = flag.String("schedulers", "", "Comma-separated schedulers (default: noop-binder,kube-scheduler,coscheduling,t9k-scheduler,t9k-binpack).")
		out        = flag.String("out", "_output/bench", "Directory for report.json, report.md, the charts and logs/ (each scheduler run's log).")
		binDir     = flag.String("bin-dir", "", "Directory with kube-apiserver, etcd, kube-scheduler and t9k-scheduler (default: bin/).")
		repeats    = flag.Int("repeats", 3, "Runs of each workload under each scheduler, in rotated order; tables show median and spread.")
		profile    = flag.Duration("profile", 0, "When set, write each scheduler process's CPU profile over this long from the run's start, and its heap profile at the run's end, to profiles/ (go tool pprof reads them).")
	)
	flag.Parse()
	if err := run(*nodes, *repeats, split(*workloads), split(*schedulers), *out, *binDir, *profile); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(nodes, repeats int, workloads, schedulers []string, out, binDir string, profile time.Duration) error {
	if nodes < 1 {
		return fmt.Errorf("--nodes must be at least 1, got %d", nodes)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "t9k-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	rep, err := Measure(ctx, Options{Nodes: nodes, Repeats: repeats, Workloads: workloads, Schedulers: schedulers, BinDir: binDir, Log: os.Stdout, WorkDir: work,
		LogDir: filepath.Join(out, "logs"), Profile: profile, ProfileDir: filepath.Join(out, "profiles")})
	if err != nil {
		return err
	}
	rep.Machine = machineInfo()
	if err := rep.writeJSON(filepath.Join(out, "report.json")); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(out, "report.md"))
	if err != nil {
		return err
	}
	defer f.Close()
	rep.writeMarkdown(f)
	rep.writeMarkdown(os.Stdout)
	charts, err := rep.writeCharts(out)
	if err != nil {
		return err
	}
	fmt.Printf("\nwrote %s/report.{json,md} and %v\n", out, charts)
	return nil
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// moduleDir returns where the Go module cache holds a module of our build list.
func moduleDir(module string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w", module, err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		if err := exec.Command("go", "mod", "download", module).Run(); err != nil {
			return "", err
		}
		return moduleDir(module)
	}
	return dir, nil
}
