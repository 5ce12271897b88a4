// Package admission is the validating webhook of t9k-controllers: what TensorStack enforced with
// OPA Gatekeeper (queue exists and is open, the namespace may use it, quota left, requests declared,
// resource shape), answered at `kubectl apply` time for Pods with schedulerName t9k-scheduler,
// PodGroups and the eight T9k job kinds. The controllers make and rotate their own serving
// certificate and keep their ValidatingWebhookConfiguration (with its caBundle) in place.
package admission

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	configv1 "github.com/tensorstack/t9k/pkg/plugins/apis/config/v1"
	"github.com/tensorstack/t9k/pkg/queuestatus"
)

// Options are the webhook's flags.
type Options struct {
	Enabled        bool
	QueueNamespace string
	BindAddress    string // host to listen on; "" all
	Port           int
	// URLHost, when set, makes the apiserver call https://URLHost:Port directly (the local
	// cluster); otherwise it goes through Service ServiceNamespace/ServiceName:ServicePort.
	URLHost          string
	ServiceName      string
	ServiceNamespace string
	ServicePort      int32
	ConfigName       string
	// ManageConfig makes the controllers create the ValidatingWebhookConfiguration and keep all of
	// it (running without the install manifests). False, the default of the binary: the manifests
	// ship it (so that uninstalling removes it) and the controllers only write its caBundle.
	ManageConfig      bool
	CertSecret        string
	NamespaceSelector string // label selector of the namespaces checked; "" all (but kube-*)
	Refresh           time.Duration
	// TopologyLevels are the scheduler's T9kTopology levels (see Validator.TopologyLevels).
	TopologyLevels []string
}

// AddFlags registers the webhook flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&o.Enabled, "enable-webhooks", true, "Serve the admission webhooks and keep their ValidatingWebhookConfiguration registered.")
	fs.StringVar(&o.BindAddress, "webhook-bind-address", "", "Host the webhook server listens on; empty for all addresses.")
	fs.IntVar(&o.Port, "webhook-port", 9443, "Port of the webhook server.")
	fs.StringVar(&o.URLHost, "webhook-url-host", "", "When set (e.g. 127.0.0.1), the apiserver calls the webhook at https://<this>:<webhook-port> instead of through the Service; the certificate covers this host.")
	fs.StringVar(&o.ServiceName, "webhook-service-name", "t9k-controllers-webhook", "Service in front of the webhook server.")
	fs.StringVar(&o.ServiceNamespace, "webhook-service-namespace", "t9k-system", "Namespace of that Service and of the certificate Secret.")
	fs.Int32Var(&o.ServicePort, "webhook-service-port", 443, "Port of that Service.")
	fs.StringVar(&o.ConfigName, "webhook-config-name", DefaultConfigName, "Name of the ValidatingWebhookConfiguration whose caBundle the controllers keep current (the install manifests ship it).")
	fs.BoolVar(&o.ManageConfig, "webhook-manage-config", false, "Create the ValidatingWebhookConfiguration and keep all of it, not just its caBundle: for running without the install manifests (needs create and update on validatingwebhookconfigurations, which the shipped ClusterRole does not grant).")
	fs.StringVar(&o.CertSecret, "webhook-cert-secret", "t9k-controllers-webhook-cert", "Secret (in the service namespace) holding the self-made CA and serving certificate, shared by all replicas.")
	fs.StringVar(&o.NamespaceSelector, "webhook-namespace-selector", "", "Label selector of the namespaces whose workloads are checked, e.g. project.tensorstack.dev=true; empty checks all but kube-system, kube-public and kube-node-lease.")
	fs.StringSliceVar(&o.TopologyLevels, "topology-levels", append([]string(nil), configv1.DefaultLevels...),
		"The scheduler's topology levels (T9kTopology args.levels): a PodGroup or job that requires another level is refused. Empty: not checked (the scheduler reports it on the PodGroup).")
	fs.DurationVar(&o.Refresh, "webhook-cert-refresh", 10*time.Minute, "How often certificates are checked for renewal and the webhook configuration for drift.")
}

// DefaultConfigName is the name of the shipped ValidatingWebhookConfiguration. The ClusterRole
// grants get and patch on this one name only.
const DefaultConfigName = "t9k-controllers"

// The certificate Secret lives beside the controllers (a Role, not a ClusterRole: no other Secret
// is read or written by the webhook); the webhook configuration is patched by name.
// +kubebuilder:rbac:groups="",namespace=t9k-system,resources=secrets,verbs=get;create;update
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=validatingwebhookconfigurations,resourceNames=t9k-controllers,verbs=get;patch
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations,resourceNames=t9k-controllers,verbs=get;patch
// +kubebuilder:rbac:groups=scheduler.tensorstack.dev,resources=queues;podgroups,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=pods,verbs=get;list;watch

// Setup makes sure a serving certificate exists (before anything is served), and adds the webhook
// server and the runnable that renews certificates and keeps the webhook configuration current.
func Setup(mgr ctrl.Manager, o Options) error {
	if !o.Enabled {
		return nil
	}
	ctx := context.Background()
	if err := queuestatus.Prepare(ctx, mgr); err != nil {
		return err
	}
	if o.QueueNamespace == "" {
		o.QueueNamespace = queuestatus.DefaultQueueNamespace
	}
	var nsSel *metav1.LabelSelector
	if o.NamespaceSelector != "" {
		var err error
		if nsSel, err = metav1.ParseToLabelSelector(o.NamespaceSelector); err != nil {
			return fmt.Errorf("--webhook-namespace-selector: %w", err)
		}
	}
	svc := o.ServiceName + "." + o.ServiceNamespace + ".svc"
	dns := []string{svc, svc + ".cluster.local", o.ServiceName + "." + o.ServiceNamespace}
	var ips []net.IP
	cc := ServiceClient(o.ServiceNamespace, o.ServiceName, o.ServicePort)
	if o.URLHost != "" {
		if ip := net.ParseIP(o.URLHost); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append([]string{o.URLHost}, dns...)
		}
		cc = URLClient(net.JoinHostPort(o.URLHost, strconv.Itoa(o.Port)))
	}
	certs := &Certs{Reader: mgr.GetAPIReader(), Writer: mgr.GetClient(), Policy: DefaultCertPolicy(dns, ips),
		Secret: types.NamespacedName{Namespace: o.ServiceNamespace, Name: o.CertSecret}}
	if err := certs.Ensure(ctx); err != nil {
		return err
	}

	// Start the informers the handler reads with the manager, not on the first request.
	for _, obj := range []client.Object{&corev1.Namespace{}, &corev1.Pod{}, &schedv1beta1.Queue{}, &schedv1beta1.PodGroup{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return err
		}
	}
	srv := webhook.NewServer(webhook.Options{Host: o.BindAddress, Port: o.Port,
		TLSOpts: []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = certs.GetCertificate }}})
	v := &Validator{Cache: mgr.GetClient(), Direct: mgr.GetAPIReader(), Decoder: admission.NewDecoder(mgr.GetScheme()),
		QueueNamespace: o.QueueNamespace, TopologyLevels: o.TopologyLevels}
	for _, p := range []string{PodPath, PodGroupPath, JobPath} {
		srv.Register(p, &webhook.Admission{Handler: v, RecoverPanic: ptr.To(true)})
	}
	srv.Register(FlinkPodPath, &webhook.Admission{Handler: &FlinkPodMutator{Decoder: v.Decoder}, RecoverPanic: ptr.To(true)})
	if err := mgr.Add(srv); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("webhook", srv.StartedChecker()); err != nil {
		return err
	}
	return mgr.Add(&keeper{certs: certs, o: o, cc: cc, nsSel: nsSel, r: mgr.GetAPIReader(), w: mgr.GetClient()})
}

// keeper renews certificates and re-registers the webhook configuration (with the current CA
// bundle) at start and every Refresh; every replica runs it, and they converge on one Secret.
type keeper struct {
	certs *Certs
	o     Options
	cc    ClientConfig
	nsSel *metav1.LabelSelector
	r     client.Reader
	w     client.Client
}

func (k *keeper) NeedLeaderElection() bool { return false }

func (k *keeper) Start(ctx context.Context) error {
	log := klog.FromContext(ctx).WithName("webhook-keeper")
	wait := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		err := k.certs.Ensure(ctx)
		if err == nil && k.o.ManageConfig {
			err = EnsureWebhookConfiguration(ctx, k.r, k.w, k.want())
			if err == nil {
				err = EnsureMutatingWebhookConfiguration(ctx, k.r, k.w, MutatingWebhookConfiguration(k.o.ConfigName, k.cc, k.certs.CABundle()))
			}
		} else if err == nil {
			err = InjectCABundle(ctx, k.r, k.w, k.o.ConfigName, k.certs.CABundle())
			if err == nil {
				err = InjectMutatingCABundle(ctx, k.r, k.w, k.o.ConfigName, k.certs.CABundle())
			}
		}
		if err != nil {
			log.Error(err, "keeping the admission webhook in place; retrying")
			wait = 5 * time.Second
			continue
		}
		wait = k.o.Refresh
	}
}

func (k *keeper) want() *admissionregv1.ValidatingWebhookConfiguration {
	return WebhookConfiguration(k.o.ConfigName, k.cc, k.certs.CABundle(), k.nsSel)
}

// InjectCABundle writes caBundle into every webhook of the ValidatingWebhookConfiguration name
// (shipped by the install manifests) whose bundle differs, with a merge patch that touches nothing
// else: `kubectl apply` of the manifests and the controllers then own disjoint fields, and
// re-applying the manifests neither conflicts nor clears the bundle.
func InjectCABundle(ctx context.Context, r client.Reader, w client.Writer, name string, caBundle []byte) error {
	have := &admissionregv1.ValidatingWebhookConfiguration{}
	return injectCABundle(ctx, r, w, have, "ValidatingWebhookConfiguration", name, caBundle, func() []*[]byte {
		out := make([]*[]byte, len(have.Webhooks))
		for i := range have.Webhooks {
			out[i] = &have.Webhooks[i].ClientConfig.CABundle
		}
		return out
	})
}

// InjectMutatingCABundle is InjectCABundle for the MutatingWebhookConfiguration name (the Flink pod
// webhook), shipped beside the validating one.
func InjectMutatingCABundle(ctx context.Context, r client.Reader, w client.Writer, name string, caBundle []byte) error {
	have := &admissionregv1.MutatingWebhookConfiguration{}
	return injectCABundle(ctx, r, w, have, "MutatingWebhookConfiguration", name, caBundle, func() []*[]byte {
		out := make([]*[]byte, len(have.Webhooks))
		for i := range have.Webhooks {
			out[i] = &have.Webhooks[i].ClientConfig.CABundle
		}
		return out
	})
}

// injectCABundle reads the configuration name into have and patches the bundles (pointers into
// have) that differ from caBundle.
func injectCABundle(ctx context.Context, r client.Reader, w client.Writer, have client.Object, kind, name string, caBundle []byte, bundles func() []*[]byte) error {
	if err := r.Get(ctx, types.NamespacedName{Name: name}, have); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("%s %s not found: it is installed by the manifests (manifests/controllers), or run with --webhook-manage-config", kind, name)
		}
		return err
	}
	orig := have.DeepCopyObject().(client.Object)
	changed := false
	for _, b := range bundles() {
		if !bytes.Equal(*b, caBundle) {
			*b = caBundle
			changed = true
		}
	}
	if !changed {
		return nil
	}
	return w.Patch(ctx, have, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
}
