// Command t9k-controllers runs the TensorStack job controllers, Queue/PodGroup lifecycle and
// admission webhooks in one controller-runtime manager.
package main

import (
	"os"

	"github.com/spf13/pflag"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/tensorstack/t9k/pkg/admission"
	"github.com/tensorstack/t9k/pkg/controllers"
	"github.com/tensorstack/t9k/pkg/durationkeeper"
	"github.com/tensorstack/t9k/pkg/queuestatus"
	"github.com/tensorstack/t9k/pkg/workloads"
)

func main() {
	var opts controllers.Options
	var kubeconfig string
	fs := pflag.CommandLine
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Path to a kubeconfig; in-cluster config when empty.")
	opts.AddFlags(fs)
	var webhookOpts admission.Options
	var keeperOpts durationkeeper.Options
	queueNS := fs.String("queue-namespace", queuestatus.DefaultQueueNamespace, "Namespace where Queues live.")
	webhookOpts.AddFlags(fs)
	keeperOpts.AddFlags(fs)
	logs.AddFlags(fs)
	pflag.Parse()
	logs.InitLogs()
	defer logs.FlushLogs()
	ctrl.SetLogger(klog.NewKlogr())
	log := klog.Background().WithName("t9k-controllers")

	if kubeconfig != "" {
		_ = os.Setenv("KUBECONFIG", kubeconfig) // read by ctrl.GetConfig
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		log.Error(err, "no cluster configuration")
		os.Exit(1)
	}
	mgr, err := controllers.NewManager(cfg, opts)
	if err != nil {
		log.Error(err, "setting up")
		os.Exit(1)
	}
	if err := workloads.SetupWithManager(mgr); err != nil {
		log.Error(err, "setting up the job controllers")
		os.Exit(1)
	}
	webhookOpts.QueueNamespace, keeperOpts.QueueNamespace = *queueNS, *queueNS
	if err := queuestatus.Setup(mgr, *queueNS); err != nil {
		log.Error(err, "setting up Queue and PodGroup status")
		os.Exit(1)
	}
	if err := admission.Setup(mgr, webhookOpts); err != nil {
		log.Error(err, "setting up the admission webhooks")
		os.Exit(1)
	}
	if err := durationkeeper.Setup(mgr, keeperOpts); err != nil {
		log.Error(err, "setting up the duration keeper")
		os.Exit(1)
	}
	log.Info("starting", "metrics", opts.MetricsAddr, "metricsSecure", opts.MetricsSecure, "probes", opts.ProbeAddr, "leaderElect", opts.LeaderElect)
	if err := mgr.Start(ctrl.SetupSignalHandler()); err != nil {
		log.Error(err, "manager exited")
		os.Exit(1)
	}
}
