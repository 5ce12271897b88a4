// Package controllers assembles t9k-controllers: one controller-runtime manager that runs the job
// controllers (pkg/workloads), the Queue/PodGroup lifecycle and the admission webhooks.
package controllers

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	schedulerv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// Defaults of the manager's flags; the install manifests (manifests/controllers) must agree with
// them, which TestInstallConsistency checks.
const (
	DefaultMetricsAddr = ":8443"
	DefaultProbeAddr   = ":8081"
	// LeaderElectionID is the name of the leader-election Lease.
	LeaderElectionID        = "t9k-controllers.tensorstack.dev"
	DefaultLeaderElectionNS = "t9k-system"
)

// Options are the manager's process-level settings (flags of cmd/t9k-controllers).
type Options struct {
	MetricsAddr string // "0" disables the metrics endpoint
	// MetricsSecure serves /metrics over HTTPS (a self-signed certificate unless MetricsCertDir
	// holds tls.crt/tls.key), each request authenticated by a TokenReview and authorized by a
	// SubjectAccessReview (get on the non-resource URL /metrics). False serves plain HTTP to
	// anyone who can reach the port.
	MetricsSecure  bool
	MetricsCertDir string
	ProbeAddr      string // "0" disables /healthz and /readyz
	LeaderElect    bool
	// LeaderElectionID names the Lease; default LeaderElectionID.
	LeaderElectionID        string
	LeaderElectionNamespace string
	LeaseDuration           time.Duration
	RenewDeadline           time.Duration
	RetryPeriod             time.Duration
}

// AddFlags registers the manager's flags with their defaults.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", DefaultMetricsAddr, "Address of the Prometheus /metrics endpoint; \"0\" disables it.")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", true, "Serve /metrics over HTTPS, authenticating each request with a TokenReview and authorizing it with a SubjectAccessReview (grant get on /metrics, e.g. ClusterRole t9k-controllers-metrics-reader). False serves plain HTTP without authorization.")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for the metrics endpoint; empty (or files missing): a self-signed certificate made in memory.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", DefaultProbeAddr, "Address of /healthz and /readyz; \"0\" disables them.")
	fs.BoolVar(&o.LeaderElect, "leader-elect", true, "Elect a leader so that only one replica reconciles (every replica serves the webhook).")
	fs.StringVar(&o.LeaderElectionID, "leader-election-id", LeaderElectionID, "Name of the leader-election Lease.")
	fs.StringVar(&o.LeaderElectionNamespace, "leader-election-namespace", DefaultLeaderElectionNS, "Namespace of the leader-election Lease.")
	fs.DurationVar(&o.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "How long a non-leader waits after the last renewal before taking the lease.")
	fs.DurationVar(&o.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "How long the leader retries renewing before it gives up leadership.")
	fs.DurationVar(&o.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "How often candidates try to acquire or renew the lease.")
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

// What the manager itself needs, beyond what the controllers' own markers ask:
// - its leader-election Lease, by name (create cannot be limited to a name; leases are not
//   watched);
// - TokenReviews and SubjectAccessReviews for the authorized /metrics endpoint;
// - update on the jobs' finalizers: the owner references it sets block the owner's deletion,
//   which clusters with OwnerReferencesPermissionEnforcement only allow to who may update them.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=t9k-system,resources=leases,verbs=create
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=t9k-system,resources=leases,resourceNames=t9k-controllers.tensorstack.dev,verbs=get;update
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=batch.tensorstack.dev,resources=genericjobs/finalizers;pytorchtrainingjobs/finalizers;tensorflowtrainingjobs/finalizers;xgboosttrainingjobs/finalizers;mpijobs/finalizers;colossalaijobs/finalizers;deepspeedjobs/finalizers;beamjobs/finalizers,verbs=update

// NewManager builds the manager with probes, metrics and leader election. Controllers are added by
// their own Setup functions.
func NewManager(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	mgr, err := ctrl.NewManager(cfg, ManagerOptions(opts))
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

// ManagerOptions are the controller-runtime options NewManager uses (tests start managers of
// their own with them, so that they read and watch exactly what the binary does).
func ManagerOptions(opts Options) ctrl.Options {
	metrics := metricsserver.Options{BindAddress: opts.MetricsAddr}
	if opts.MetricsSecure {
		metrics.SecureServing = true
		metrics.FilterProvider = filters.WithAuthenticationAndAuthorization
		metrics.CertDir = opts.MetricsCertDir
		if metrics.CertDir == "" {
			// A directory that does not exist: controller-runtime then makes a self-signed
			// certificate in memory (its default, under $TMPDIR, might hold someone's files).
			metrics.CertDir = "/nonexistent/t9k-controllers-metrics-certs"
		}
	}
	id := opts.LeaderElectionID
	if id == "" {
		id = LeaderElectionID
	}
	mo := ctrl.Options{
		Scheme:                  Scheme(),
		Metrics:                 metrics,
		HealthProbeBindAddress:  opts.ProbeAddr,
		LeaderElection:          opts.LeaderElect,
		LeaderElectionID:        id,
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		// A replica that is stopped (rolling update) hands the lease over at once.
		LeaderElectionReleaseOnCancel: true,
		Client: client.Options{Cache: &client.CacheOptions{
			// Secrets are read one at a time (the jobs' ssh keys, the webhook certificate): a
			// cached Get would start a cluster-wide Secret informer, i.e. list/watch on every
			// Secret of the cluster, which the controllers neither need nor are granted.
			DisableFor: []client.Object{&corev1.Secret{}},
		}},
	}
	if opts.LeaseDuration > 0 {
		mo.LeaseDuration = &opts.LeaseDuration
	}
	if opts.RenewDeadline > 0 {
		mo.RenewDeadline = &opts.RenewDeadline
	}
	if opts.RetryPeriod > 0 {
		mo.RetryPeriod = &opts.RetryPeriod
	}
	return mo
}
