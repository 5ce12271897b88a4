// Command t9k-local runs a simulated GPU cluster on this machine: a real kube-apiserver + etcd,
// kwok nodes with GPUs in a spine/block topology (or the one a --cluster file describes), and
// t9k-scheduler, t9k-controllers and the device-agent as child processes. Ctrl-C, SIGTERM or
// SIGHUP tear it all down; if t9k-local is killed outright, its children die with it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/localcluster"
)

func main() {
	// When started in place of kube-apiserver or etcd, become it (see localcluster.Options.Reexec).
	localcluster.ExecGuardedChild()
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "t9k-local: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	spec := localcluster.DefaultSpec()
	root, _ := controlplane.ModuleRoot()
	defaultBin, _ := controlplane.BinDir()
	var (
		dir       = flag.String("dir", ".t9k-local", "Directory for the kubeconfig, configs and logs.")
		binDir    = flag.String("bin-dir", defaultBin, "Directory with kube-apiserver, etcd, kwok and the t9k binaries.")
		schedCfg  = flag.String("scheduler-config", filepath.Join(root, "manifests", "scheduler", "t9k-scheduler.yaml"), "KubeSchedulerConfiguration for t9k-scheduler (its T9kTopology levels become the cluster's).")
		crdDir    = flag.String("crd-dir", "", "CRDs to install (default: manifests/crd of this repository).")
		noAgent   = flag.Bool("no-device-agent", false, "Do not start the device-agent.")
		samples   = flag.String("samples", filepath.Join(root, "manifests", "samples"), "Apply the manifests in this directory once the cluster is up and show where their jobs land; empty to skip.")
		readyOnly = flag.Bool("exit-when-ready", false, "Stop everything and exit 0 once the cluster is up (for scripts and tests).")
		cluster   = flag.String("cluster", "", "Cluster file: topology levels and machines per domain (see manifests/local/); replaces the shape flags, and sets the scheduler's and controllers' topology levels.")
	)
	shapeFlags := []string{"spines", "blocks-per-spine", "nodes-per-block", "gpus-per-node"}
	flag.IntVar(&spec.Spines, "spines", spec.Spines, "Number of spines.")
	flag.IntVar(&spec.BlocksPerSpine, "blocks-per-spine", spec.BlocksPerSpine, "Blocks under each spine.")
	flag.IntVar(&spec.NodesPerBlock, "nodes-per-block", spec.NodesPerBlock, "Nodes in each block.")
	flag.IntVar(&spec.Machine.GPUs, "gpus-per-node", spec.Machine.GPUs, "GPUs per node.")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	var layout *localcluster.Layout
	if *cluster != "" {
		var clash []string
		flag.Visit(func(f *flag.Flag) {
			if slices.Contains(shapeFlags, f.Name) {
				clash = append(clash, "--"+f.Name)
			}
		})
		if len(clash) > 0 {
			return fmt.Errorf("--cluster gives the whole cluster; leave out %s (or drop --cluster)", strings.Join(clash, ", "))
		}
		var err error
		if layout, err = localcluster.LoadClusterFile(*cluster); err != nil {
			return err
		}
	} else {
		if err := spec.Validate(); err != nil {
			return err
		}
		layout = spec.Layout()
	}

	// SIGHUP (the terminal closed) ends the cluster as Ctrl-C and SIGTERM do. A second signal
	// while stopping exits at once; the children still die with this process.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	// Output to a pipe whose reader has gone must not kill t9k-local halfway through a teardown
	// (the writes fail instead); a handler, unlike SIG_IGN, is not inherited by the children.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	go func() {
		s := <-sigs
		fmt.Printf("[t9k-local] %v: stopping (again to exit at once)\n", s)
		cancel()
		s = <-sigs
		fmt.Printf("[t9k-local] %v: exiting now\n", s)
		os.Exit(130)
	}()

	c, err := localcluster.Start(ctx, localcluster.Options{
		Dir: *dir, BinDir: *binDir, CRDDir: *crdDir, Layout: layout, Reexec: true,
		Progress: os.Stdout, Namespaces: []string{"t9k-system"},
	})
	if err != nil {
		if ctx.Err() != nil {
			fmt.Println("[t9k-local] stopped before the cluster was up; nothing left running")
			return nil
		}
		return err
	}
	defer func() {
		fmt.Println("[t9k-local] stopping")
		c.Stop()
		fmt.Println("[t9k-local] stopped; nothing left running")
	}()

	if err := c.StartBinaries(localcluster.BinariesOptions{SchedulerConfig: *schedCfg, NoDeviceAgent: *noAgent,
		TopologyLevels: layout.LevelLabels()}); err != nil {
		return err
	}
	// Give the children a moment to fail on bad flags or config before declaring success.
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		return nil
	}
	if err := c.Exited(); err != nil {
		return err
	}

	fmt.Printf(`
[t9k-local] cluster is up: %s
  levels:     %s
  kubeconfig: %s
  logs:       %s
  try:        %s --kubeconfig %s get nodes -L %s
Press Ctrl-C to stop.
`, layout.Summary(), strings.Join(layout.LevelLabels(), ", "),
		c.Kubeconfig, filepath.Join(c.Dir, "logs"), filepath.Join(*binDir, "kubectl"), c.Kubeconfig, strings.Join(layout.LevelLabels(), ","))

	if *readyOnly {
		return nil
	}
	if *samples != "" {
		applied, err := c.ApplyDir(ctx, *samples)
		if err != nil {
			return fmt.Errorf("applying samples: %w", err)
		}
		fmt.Printf("[t9k-local] applied %d sample objects from %s: %s\n", len(applied), *samples, strings.Join(applied, " "))
	}
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	// Print the placement table a few seconds after the samples go in, then whenever it changes.
	var last string
	nextTable := time.Now().Add(5 * time.Second)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := c.Exited(); err != nil {
				return err
			}
			if *samples == "" || time.Now().Before(nextTable) {
				continue
			}
			nextTable = time.Now().Add(10 * time.Second)
			var b strings.Builder
			if err := c.PrintPlacement(ctx, &b); err != nil {
				fmt.Printf("[t9k-local] placement: %v\n", err)
				continue
			}
			if b.String() != last {
				last = b.String()
				fmt.Printf("\n[t9k-local] placement at %s\n%s", time.Now().Format("15:04:05"), last)
			}
		}
	}
}
