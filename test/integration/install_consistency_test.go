package integration

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	admissionregv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	schedoptions "k8s.io/kubernetes/cmd/kube-scheduler/app/options"

	"github.com/tensorstack/t9k/pkg/admission"
	"github.com/tensorstack/t9k/pkg/controllers"
	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/durationkeeper"
	configv1 "github.com/tensorstack/t9k/pkg/plugins/apis/config/v1"
	"github.com/tensorstack/t9k/pkg/queuestatus"
)

// typed converts a rendered object into a typed one.
func typed[T any](t *testing.T, o *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	require.NoError(t, runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, out), "%s %s", o.GetKind(), o.GetName())
	return out
}

// portOf is the number of the named port of a container.
func portOf(t *testing.T, c corev1.Container, name string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %q", c.Name, name)
	return 0
}

// addrPort is the port of a listen address such as ":8443".
func addrPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err, addr)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return int32(n)
}

// ruleFor finds the rule of a (Cluster)Role that names resource in group.
func ruleFor(rules []rbacv1.PolicyRule, group, resource string) *rbacv1.PolicyRule {
	for i, r := range rules {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				if g == group && res == resource {
					return &rules[i]
				}
			}
		}
	}
	return nil
}

// TestInstallConsistency: what the manifests say and what the binaries expect agree: the
// Deployments' flags are flags of the binaries (parsed by their own flag sets), Service names and
// ports, Lease names, the certificate Secret and the webhook configuration match the flag values
// and defaults, the scheduler's ConfigMap is the shipped profile under the key --config names, and
// the image tags are the VERSION.
func TestInstallConsistency(t *testing.T) {
	objs := renderManifests(t, "default")
	root, err := controlplane.ModuleRoot()
	require.NoError(t, err)

	// --- t9k-scheduler
	schedDep := typed[appsv1.Deployment](t, find(t, objs, "Deployment", "t9k-scheduler"))
	sc := schedDep.Spec.Template.Spec.Containers[0]
	so := schedoptions.NewOptions()
	sfs := pflag.NewFlagSet("t9k-scheduler", pflag.ContinueOnError)
	for _, f := range so.Flags.FlagSets {
		sfs.AddFlagSet(f)
	}
	defaultSecurePort := so.SecureServing.BindPort
	require.NoError(t, sfs.Parse(sc.Args), "the Deployment's args are t9k-scheduler flags")
	assert.Equal(t, 10259, defaultSecurePort)
	assert.Equal(t, int32(so.SecureServing.BindPort), portOf(t, sc, "https"), "--secure-port and the container port")
	cfgPath, err := sfs.GetString("config")
	require.NoError(t, err)
	var cmName, mountPath string
	for _, v := range schedDep.Spec.Template.Spec.Volumes {
		if v.ConfigMap != nil {
			cmName = v.ConfigMap.Name
			for _, m := range sc.VolumeMounts {
				if m.Name == v.Name {
					mountPath = m.MountPath
				}
			}
		}
	}
	require.Equal(t, mountPath, filepath.Dir(cfgPath), "--config is in the mounted ConfigMap")
	cm := typed[corev1.ConfigMap](t, find(t, objs, "ConfigMap", cmName))
	key := filepath.Base(cfgPath)
	shipped, err := os.ReadFile(filepath.Join(root, "manifests", "scheduler", key))
	require.NoError(t, err, "--config names a profile of manifests/scheduler")
	assert.Equal(t, string(shipped), cm.Data[key], "the ConfigMap holds the shipped profile")
	profile := schedulerProfile(t, objs, key)
	le := profile["leaderElection"].(map[string]any)
	assert.Equal(t, true, le["leaderElect"])
	leaseRole := typed[rbacv1.Role](t, find(t, objs, "Role", "t9k-scheduler-leader-election"))
	assert.Equal(t, le["resourceNamespace"], leaseRole.Namespace, "the scheduler's Lease namespace")
	lr := ruleFor(leaseRole.Rules, "coordination.k8s.io", "leases")
	require.NotNil(t, lr)
	assert.Equal(t, []string{le["resourceName"].(string)}, lr.ResourceNames, "the scheduler's Lease name")
	assert.Equal(t, schedDep.Namespace, leaseRole.Namespace)
	svc := typed[corev1.Service](t, find(t, objs, "Service", "t9k-scheduler-metrics"))
	assert.Equal(t, int32(defaultSecurePort), svc.Spec.Ports[0].Port)
	assert.Equal(t, "https", svc.Spec.Ports[0].TargetPort.String())
	assert.Equal(t, corev1.URISchemeHTTPS, sc.LivenessProbe.HTTPGet.Scheme)
	assert.Equal(t, "https", sc.ReadinessProbe.HTTPGet.Port.String())
	// The queue namespace and topology levels the scheduler uses are the controllers' too.
	queueNS, levels := "", []string(nil)
	for _, p := range profile["profiles"].([]any) {
		for _, pc := range p.(map[string]any)["pluginConfig"].([]any) {
			entry := pc.(map[string]any)
			args, _ := entry["args"].(map[string]any)
			switch entry["name"] {
			case "T9kQueue":
				queueNS, _ = args["queueNamespace"].(string)
			case "T9kTopology":
				for _, l := range args["levels"].([]any) {
					levels = append(levels, l.(string))
				}
			}
		}
	}

	// --- t9k-controllers: the flag set of cmd/t9k-controllers/main.go.
	ctrlDep := typed[appsv1.Deployment](t, find(t, objs, "Deployment", "t9k-controllers"))
	cc := ctrlDep.Spec.Template.Spec.Containers[0]
	var co controllers.Options
	var wo admission.Options
	var ko durationkeeper.Options
	cfs := pflag.NewFlagSet("t9k-controllers", pflag.ContinueOnError)
	cfs.String("kubeconfig", "", "")
	co.AddFlags(cfs)
	wo.AddFlags(cfs)
	ko.AddFlags(cfs)
	ctrlQueueNS := cfs.String("queue-namespace", queuestatus.DefaultQueueNamespace, "")
	require.NoError(t, cfs.Parse(cc.Args), "the Deployment's args are t9k-controllers flags")
	assert.Equal(t, queueNS, *ctrlQueueNS, "queue namespace: scheduler profile and controllers")
	assert.Equal(t, levels, wo.TopologyLevels, "topology levels: scheduler profile and the controllers' --topology-levels")
	assert.Equal(t, configv1.DefaultLevels, wo.TopologyLevels)
	assert.True(t, co.LeaderElect)
	assert.True(t, co.MetricsSecure, "metrics are served with authentication and authorization")
	assert.False(t, wo.ManageConfig, "the manifests ship the webhook configuration")

	whSvc := typed[corev1.Service](t, find(t, objs, "Service", wo.ServiceName))
	assert.Equal(t, wo.ServiceNamespace, whSvc.Namespace)
	assert.Equal(t, wo.ServicePort, whSvc.Spec.Ports[0].Port)
	assert.Equal(t, int32(wo.Port), portOf(t, cc, whSvc.Spec.Ports[0].TargetPort.String()), "the webhook Service's target port")
	mSvc := typed[corev1.Service](t, find(t, objs, "Service", "t9k-controllers-metrics"))
	assert.Equal(t, addrPort(t, co.MetricsAddr), portOf(t, cc, mSvc.Spec.Ports[0].TargetPort.String()), "--metrics-bind-address and the metrics Service")
	assert.Equal(t, addrPort(t, co.MetricsAddr), addrPort(t, controllers.DefaultMetricsAddr))
	assert.Equal(t, addrPort(t, co.ProbeAddr), portOf(t, cc, cc.LivenessProbe.HTTPGet.Port.String()), "probes")
	assert.Equal(t, addrPort(t, co.ProbeAddr), portOf(t, cc, cc.ReadinessProbe.HTTPGet.Port.String()), "probes")

	ctrlRole := typed[rbacv1.Role](t, find(t, objs, "Role", "t9k-controllers"))
	assert.Equal(t, co.LeaderElectionNamespace, ctrlRole.Namespace, "the controllers' Lease namespace has their Role")
	assert.Equal(t, wo.ServiceNamespace, ctrlRole.Namespace, "the certificate Secret's namespace has their Role")
	assert.Equal(t, controllers.LeaderElectionID, co.LeaderElectionID)
	var leaseNames []string
	for _, r := range ctrlRole.Rules {
		if len(r.APIGroups) == 1 && r.APIGroups[0] == "coordination.k8s.io" {
			leaseNames = append(leaseNames, r.ResourceNames...)
		}
	}
	assert.Equal(t, []string{co.LeaderElectionID}, leaseNames, "the controllers' Lease name")
	require.NotNil(t, ruleFor(ctrlRole.Rules, "", "secrets"), "the Role grants the certificate Secret")

	cr := typed[rbacv1.ClusterRole](t, find(t, objs, "ClusterRole", "t9k-controllers"))
	vr := ruleFor(cr.Rules, "admissionregistration.k8s.io", "validatingwebhookconfigurations")
	require.NotNil(t, vr)
	assert.Equal(t, []string{wo.ConfigName}, vr.ResourceNames)
	assert.Equal(t, admission.DefaultConfigName, wo.ConfigName)

	// The shipped webhook configuration is what pkg/admission builds for these flags.
	vwc := typed[admissionregv1.ValidatingWebhookConfiguration](t, find(t, objs, "ValidatingWebhookConfiguration", wo.ConfigName))
	want := admission.WebhookConfiguration(wo.ConfigName, admission.ServiceClient(wo.ServiceNamespace, wo.ServiceName, wo.ServicePort), nil, nil)
	gotJSON, err := json.MarshalIndent(vwc.Webhooks, "", " ")
	require.NoError(t, err)
	wantJSON, err := json.MarshalIndent(want.Webhooks, "", " ")
	require.NoError(t, err)
	assert.JSONEq(t, string(wantJSON), string(gotJSON), "manifests/controllers/validatingwebhookconfiguration.yaml and admission.WebhookConfiguration differ")
	mwc := typed[admissionregv1.MutatingWebhookConfiguration](t, find(t, objs, "MutatingWebhookConfiguration", wo.ConfigName))
	wantM := admission.MutatingWebhookConfiguration(wo.ConfigName, admission.ServiceClient(wo.ServiceNamespace, wo.ServiceName, wo.ServicePort), nil)
	gotJSON, err = json.MarshalIndent(mwc.Webhooks, "", " ")
	require.NoError(t, err)
	wantJSON, err = json.MarshalIndent(wantM.Webhooks, "", " ")
	require.NoError(t, err)
	assert.JSONEq(t, string(wantJSON), string(gotJSON), "manifests/controllers/mutatingwebhookconfiguration.yaml and admission.MutatingWebhookConfiguration differ")
	mr := ruleFor(cr.Rules, "admissionregistration.k8s.io", "mutatingwebhookconfigurations")
	require.NotNil(t, mr)
	assert.Equal(t, []string{wo.ConfigName}, mr.ResourceNames)

	// ServiceAccounts: each workload runs as the one its bindings name.
	for _, w := range []struct{ kind, name, sa string }{
		{"Deployment", "t9k-scheduler", saScheduler},
		{"Deployment", "t9k-controllers", saControllers},
		{"DaemonSet", "t9k-device-agent", saDeviceAgent},
	} {
		o := find(t, objs, w.kind, w.name)
		name, _, _ := unstructured.NestedString(o.Object, "spec", "template", "spec", "serviceAccountName")
		assert.Equal(t, w.sa, o.GetNamespace()+"/"+name, "%s %s", w.kind, w.name)
		find(t, objs, "ServiceAccount", name)
	}

	// --- device-agent: its metrics port in args, container, annotation and PodMonitor.
	ds := typed[appsv1.DaemonSet](t, find(t, objs, "DaemonSet", "t9k-device-agent"))
	dc := ds.Spec.Template.Spec.Containers[0]
	var metricsAddr string
	for _, a := range dc.Args {
		if v, ok := strings.CutPrefix(a, "--metrics-addr="); ok {
			metricsAddr = v
		}
	}
	require.NotEmpty(t, metricsAddr)
	assert.Equal(t, addrPort(t, metricsAddr), portOf(t, dc, "metrics"))
	assert.Equal(t, strconv.Itoa(int(addrPort(t, metricsAddr))), ds.Spec.Template.Annotations["prometheus.io/port"])

	// --- images: every image is pinned to VERSION.
	version, err := os.ReadFile(filepath.Join(root, "VERSION"))
	require.NoError(t, err)
	for _, c := range []corev1.Container{sc, cc, dc} {
		_, tag, ok := strings.Cut(c.Image, ":")
		require.True(t, ok, c.Image)
		assert.Equal(t, strings.TrimSpace(string(version)), tag, c.Image)
	}

	// --- optional components: the monitors scrape ports that exist.
	all := renderManifests(t, "optional/example-overlay")
	for _, sm := range ofKind(all, "ServiceMonitor") {
		eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
		port := eps[0].(map[string]any)["port"].(string)
		s := typed[corev1.Service](t, find(t, all, "Service", sm.GetName()+"-metrics"))
		assert.Equal(t, port, s.Spec.Ports[0].Name, "ServiceMonitor %s", sm.GetName())
		assert.Equal(t, "https", eps[0].(map[string]any)["scheme"])
	}
	pm := find(t, all, "PodMonitor", "t9k-device-agent")
	eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
	assert.Equal(t, "metrics", eps[0].(map[string]any)["port"])
	binpack := typed[appsv1.Deployment](t, find(t, all, "Deployment", "t9k-scheduler"))
	assert.Equal(t, "--config="+mountPath+"/t9k-scheduler-binpack.yaml", binpack.Spec.Template.Spec.Containers[0].Args[0])
}
