// Package controllers assembles t9k-controllers: one controller-runtime manager that runs the job
// controllers (pkg/workloads), the Queue/PodGroup lifecycle and the admission webhooks.
package controllers

import (
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	schedulerv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// Options are the manager's process-level settings (flags of cmd/t9k-controllers).
type Options struct {
	MetricsAddr             string // "0" disables the metrics endpoint
	ProbeAddr               string // "0" disables /healthz and /readyz
	LeaderElect             bool
	LeaderElectionNamespace string
}

// Scheme knows the built-in kinds and every t9k API group.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	for _, add := range apiGroups {
		utilruntime.Must(add(s))
	}
	return s
}

// apiGroups lists the AddToScheme functions of our API groups.
var apiGroups = []func(*runtime.Scheme) error{
	batchv1beta1.AddToScheme,
	schedulerv1beta1.AddToScheme,
	devicev1beta1.AddToScheme,
}

// NewManager builds the manager with probes, metrics and leader election. Controllers are added by
// their own Setup functions.
func NewManager(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                  Scheme(),
		Metrics:                 metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:  opts.ProbeAddr,
		LeaderElection:          opts.LeaderElect,
		LeaderElectionID:        "t9k-controllers.tensorstack.dev",
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}
