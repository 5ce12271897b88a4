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
	"k8s.io/apiserver/pkg/server"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	basecompatibility "k8s.io/component-base/compatibility"
	"k8s.io/component-base/configz"
	"k8s.io/component-base/featuregate"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/component-base/term"
	"k8s.io/component-base/version/verflag"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	schedulerserverconfig "k8s.io/kubernetes/cmd/kube-scheduler/app/config"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
	kubescheduler "k8s.io/kubernetes/pkg/scheduler"

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

// NewCommand is the t9k-scheduler command line: kube-scheduler's flags and behaviour. It is
// app.NewSchedulerCommand's command with its run step our own, so that the scheduler Setup
// builds gets our failure handler (failures.go) before it runs; upstream offers no hook for it.
func NewCommand() *cobra.Command {
	opts := options.NewOptions()
	cmd := &cobra.Command{
		Use:   SchedulerName,
		Short: "t9k-scheduler: the kube-scheduler with gang, queue and GPU-topology plugins",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return opts.ComponentGlobalsRegistry.Set()
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runCommand(cmd, opts)
		},
		Args: cobra.NoArgs,
	}
	nfs := opts.Flags
	verflag.AddFlags(nfs.FlagSet("global"))
	globalflag.AddGlobalFlags(nfs.FlagSet("global"), cmd.Name(), logs.SkipLoggingConfigurationFlags())
	for _, f := range nfs.FlagSets {
		cmd.Flags().AddFlagSet(f)
	}
	cols, _, _ := term.TerminalSize(cmd.OutOrStdout())
	cliflag.SetUsageAndHelpFunc(cmd, *nfs, cols)
	return cmd
}

// runCommand is upstream's (cmd/kube-scheduler/app), with our failure handler installed.
func runCommand(cmd *cobra.Command, opts *options.Options) error {
	verflag.PrintAndExitIfRequested()
	fg := opts.ComponentGlobalsRegistry.FeatureGateFor(basecompatibility.DefaultKubeComponent)
	if err := logsapi.ValidateAndApply(opts.Logs, fg); err != nil {
		return err
	}
	cliflag.PrintFlags(cmd.Flags())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-server.SetupSignalHandler()
		cancel()
	}()
	cc, sched, err := setUp(ctx, opts)
	if err != nil {
		return err
	}
	fg.(featuregate.MutableFeatureGate).AddMetrics()
	opts.ComponentGlobalsRegistry.AddMetrics()
	return app.Run(ctx, cc, sched)
}

// setUp is app.Setup with our plugins and our failure handler: the one way every entry point
// builds the scheduler.
func setUp(ctx context.Context, opts *options.Options) (*schedulerserverconfig.CompletedConfig, *kubescheduler.Scheduler, error) {
	cc, sched, err := app.Setup(ctx, opts, RegistryOptions()...)
	if err != nil {
		return nil, nil, err
	}
	installFailuresBeside(sched)
	paceEvents(ctx, sched)
	if err := trimDynamicInformers(ctx, cc.DynInformerFactory, sched); err != nil {
		return nil, nil, err
	}
	return cc, sched, nil
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
	cc, sched, err := setUp(ctx, opts)
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
