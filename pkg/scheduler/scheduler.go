// Package scheduler assembles t9k-scheduler: the upstream kube-scheduler app (flags, config
// loading, leader election, serving, metrics) with our plugins and the scheduler-plugins plugins a
// distribution offers. The binary, the integration tests, the local cluster and the benchmark all
// start it through this package, so they run the same code.
package scheduler

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/component-base/configz"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	// Decodes scheduler-plugins' pluginConfig args (Coscheduling, CapacityScheduling,
	// NodeResourceTopologyMatch) in KubeSchedulerConfiguration; without it such configs are refused.
	_ "sigs.k8s.io/scheduler-plugins/apis/config/scheme"
	"sigs.k8s.io/scheduler-plugins/pkg/capacityscheduling"
	"sigs.k8s.io/scheduler-plugins/pkg/coscheduling"
	"sigs.k8s.io/scheduler-plugins/pkg/noderesourcetopology"

	// Decodes, defaults and converts T9kGang/T9kQueue pluginConfig args.
	_ "github.com/tensorstack/t9k/pkg/plugins/apis/config/scheme"
	"github.com/tensorstack/t9k/pkg/plugins/gang"
	"github.com/tensorstack/t9k/pkg/plugins/podpreemption"
	"github.com/tensorstack/t9k/pkg/plugins/queue"
	"github.com/tensorstack/t9k/pkg/plugins/topology"
)

// SchedulerName is the name workloads put in spec.schedulerName to be scheduled by t9k.
const SchedulerName = "t9k-scheduler"

// RegistryOptions registers every out-of-tree plugin the binary knows. Enabling one is a matter of
// the KubeSchedulerConfiguration profile (manifests/scheduler/).
func RegistryOptions() []app.Option {
	return []app.Option{
		app.WithPlugin(queue.Name, queue.New),
		app.WithPlugin(gang.Name, gang.New),
		app.WithPlugin(topology.Name, topology.New),
		app.WithPlugin(podpreemption.Name, podpreemption.New),
		app.WithPlugin(coscheduling.Name, coscheduling.New),
		app.WithPlugin(capacityscheduling.Name, capacityscheduling.New),
		app.WithPlugin(noderesourcetopology.Name, noderesourcetopology.New),
	}
}

// NewCommand is the t9k-scheduler command line: kube-scheduler's flags and behaviour.
func NewCommand() *cobra.Command {
	cmd := app.NewSchedulerCommand(RegistryOptions()...)
	cmd.Use = "t9k-scheduler"
	cmd.Short = "t9k-scheduler: the kube-scheduler with gang, queue and GPU-topology plugins"
	return cmd
}

// Start runs the scheduler in this process with the given command-line flags (the binary's flags,
// e.g. --config, --kubeconfig, --secure-port=0) until ctx is cancelled. It returns once the
// scheduler is set up; the returned channel yields Run's result when it ends.
func Start(ctx context.Context, args []string) (<-chan error, error) {
	opts := options.NewOptions()
	fs := pflag.NewFlagSet(SchedulerName, pflag.ContinueOnError)
	for _, f := range opts.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if err := opts.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	cc, sched, err := app.Setup(ctx, opts, RegistryOptions()...)
	if err != nil {
		return nil, fmt.Errorf("setting up %s: %w", SchedulerName, err)
	}
	done := make(chan error, 1)
	go func() {
		done <- app.Run(ctx, cc, sched)
		// Run registers its config in the process-wide /configz registry and never removes it;
		// without this a second scheduler in one process (tests run several in turn) fails.
		configz.Delete("componentconfig")
	}()
	return done, nil
}
