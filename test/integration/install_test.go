package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	admissionregv1 "k8s.io/api/admissionregistration/v1"

	devicev1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	sched "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/controllers"
	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/localcluster"
)

// kubectl runs bin/kubectl against kubeconfig and returns stdout and stderr.
func kubectl(t *testing.T, kubeconfig string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin, berr := controlplane.BinDir()
	require.NoError(t, berr)
	root, rerr := controlplane.ModuleRoot()
	require.NoError(t, rerr)
	cmd := exec.Command(filepath.Join(bin, "kubectl"), append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Dir = root
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// resourceVersions maps every object of the rendered manifests to its resourceVersion now.
func resourceVersions(t *testing.T, c client.Client, objs []*unstructured.Unstructured) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, o := range objs {
		have := &unstructured.Unstructured{}
		have.SetGroupVersionKind(o.GroupVersionKind())
		require.NoError(t, c.Get(context.Background(), types.NamespacedName{Namespace: o.GetNamespace(), Name: o.GetName()}, have))
		out[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = have.GetResourceVersion()
	}
	return out
}

// startT9kProcess runs bin/<name> with args until the test ends; its output goes to a log file
// whose path is returned (printed on failure).
func startT9kProcess(t *testing.T, name string, args ...string) string {
	t.Helper()
	bin, err := controlplane.BinDir()
	require.NoError(t, err)
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start(), "run `make build` first")
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		_ = f.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logPath)
			if len(data) > 6000 {
				data = data[len(data)-6000:]
			}
			t.Logf("--- %s log (tail) ---\n%s", name, data)
		}
	})
	return logPath
}

// noForbiddenInLog fails the test for every line of a process log that mentions "forbidden".
func noForbiddenInLog(t *testing.T, name, logPath string) {
	t.Helper()
	f, err := os.Open(logPath)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(strings.ToLower(sc.Text()), "forbidden") {
			t.Errorf("%s logged: %s", name, sc.Text())
		}
	}
}

// deploymentArgs are the container args of a Deployment or DaemonSet of the manifests.
func deploymentArgs(t *testing.T, objs []*unstructured.Unstructured, kind, name string) []string {
	t.Helper()
	containers, _, err := unstructured.NestedSlice(find(t, objs, kind, name).Object, "spec", "template", "spec", "containers")
	require.NoError(t, err)
	require.Len(t, containers, 1)
	args, _, err := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	require.NoError(t, err)
	return args
}

// withoutFlags drops the args that set any of the named flags.
func withoutFlags(args []string, names ...string) []string {
	var out []string
	for _, a := range args {
		keep := true
		for _, n := range names {
			if a == "--"+n || strings.HasPrefix(a, "--"+n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, a)
		}
	}
	return out
}

// TestInstall installs manifests/default on a fresh control plane the way a cluster admin does
// (`kubectl apply --server-side -k`), twice, then runs the three binaries as their
// ServiceAccounts with the Deployments' own flags (but for addresses and the kubeconfig: here the
// apiserver reaches the webhook on loopback and no kubelet runs pods) and checks that the
// scheduler and the controllers win their leases, the webhook answers, a gang is scheduled, the
// device-agent publishes, and the controllers' /metrics is authorized. Nothing they do may be
// refused by RBAC, and no "forbidden" may appear in their logs.
func TestInstall(t *testing.T) {
	cp, err := controlplane.Start(controlplane.Options{NoCRDs: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cp.Stop() })
	ctx := context.Background()
	kubeconfig := filepath.Join(t.TempDir(), "admin.kubeconfig")
	require.NoError(t, cp.WriteKubeconfig(kubeconfig))
	c, err := client.New(cp.Config, client.Options{Scheme: controllers.Scheme()})
	require.NoError(t, err)
	kc, err := kubernetes.NewForConfig(cp.Config)
	require.NoError(t, err)
	objs := renderManifests(t, "default")

	// 1. Install: server-side apply succeeds without any warning (Pod Security's among them).
	out, stderr, err := kubectl(t, kubeconfig, "apply", "--server-side", "-k", "manifests/default")
	require.NoError(t, err, "apply: %s\n%s", out, stderr)
	assert.Empty(t, strings.TrimSpace(stderr), "kubectl apply printed warnings")
	assert.Equal(t, len(objs), strings.Count(out, "serverside-applied"), out)
	rv := resourceVersions(t, c, objs)

	// 2. A second apply changes nothing.
	out, stderr, err = kubectl(t, kubeconfig, "apply", "--server-side", "-k", "manifests/default")
	require.NoError(t, err, "second apply: %s\n%s", out, stderr)
	assert.Empty(t, strings.TrimSpace(stderr))
	assert.Equal(t, rv, resourceVersions(t, c, objs), "the second apply changed objects")
	_, stderr, err = kubectl(t, kubeconfig, "diff", "--server-side", "-k", "manifests/default")
	assert.NoError(t, err, "kubectl diff finds differences after apply: %s", stderr)

	// 3. The controllers, as t9k-controllers, with the Deployment's flags.
	ctrlProxy := startSAProxy(t, cp, saControllers)
	ports := make([]int, 6)
	for i := range ports {
		ports[i], err = localcluster.FreePort()
		require.NoError(t, err)
	}
	metricsPort, probePort, webhookPort, schedPort := ports[0], ports[1], ports[2], ports[3]
	ctrlArgs := append(withoutFlags(deploymentArgs(t, objs, "Deployment", "t9k-controllers"),
		"metrics-bind-address", "health-probe-bind-address", "webhook-port"),
		"--kubeconfig="+ctrlProxy.Kubeconfig,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", metricsPort),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", probePort),
		fmt.Sprintf("--webhook-port=%d", webhookPort),
		"--webhook-bind-address=127.0.0.1", "--webhook-url-host=127.0.0.1")
	ctrlLog := startT9kProcess(t, "t9k-controllers", ctrlArgs...)

	// They write the CA into the shipped webhook configuration, and only that: a third apply
	// neither conflicts nor changes anything else.
	var vwc admissionregv1.ValidatingWebhookConfiguration
	var mwc admissionregv1.MutatingWebhookConfiguration
	eventually(t, "caBundle injected", 60*time.Second, func() bool {
		if c.Get(ctx, types.NamespacedName{Name: "t9k-controllers"}, &vwc) != nil ||
			c.Get(ctx, types.NamespacedName{Name: "t9k-controllers"}, &mwc) != nil {
			return false
		}
		for _, w := range vwc.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return false
			}
		}
		for _, w := range mwc.Webhooks {
			if len(w.ClientConfig.CABundle) == 0 {
				return false
			}
		}
		return true
	})
	rv = resourceVersions(t, c, objs)
	out, stderr, err = kubectl(t, kubeconfig, "apply", "--server-side", "-k", "manifests/default")
	require.NoError(t, err, "apply after injection: %s\n%s", out, stderr)
	assert.Equal(t, rv, resourceVersions(t, c, objs), "apply after the caBundle injection changed objects")
	require.NoError(t, c.Get(ctx, types.NamespacedName{Name: "t9k-controllers"}, &vwc))
	for _, w := range vwc.Webhooks {
		assert.NotEmpty(t, w.ClientConfig.CABundle, "re-applying the manifests dropped the caBundle of %s", w.Name)
	}
	require.NoError(t, c.Get(ctx, types.NamespacedName{Name: "t9k-controllers"}, &mwc))
	for _, w := range mwc.Webhooks {
		assert.NotEmpty(t, w.ClientConfig.CABundle, "re-applying the manifests dropped the caBundle of %s", w.Name)
	}

	// No Service routing here: point the webhooks at the controllers on loopback (keeping the
	// bundle they wrote), as a cluster's Service would.
	for i := range vwc.Webhooks {
		path := *vwc.Webhooks[i].ClientConfig.Service.Path
		vwc.Webhooks[i].ClientConfig.Service = nil
		vwc.Webhooks[i].ClientConfig.URL = ptr.To(fmt.Sprintf("https://127.0.0.1:%d%s", webhookPort, path))
	}
	require.NoError(t, c.Update(ctx, &vwc))
	for i := range mwc.Webhooks {
		path := *mwc.Webhooks[i].ClientConfig.Service.Path
		mwc.Webhooks[i].ClientConfig.Service = nil
		mwc.Webhooks[i].ClientConfig.URL = ptr.To(fmt.Sprintf("https://127.0.0.1:%d%s", webhookPort, path))
	}
	require.NoError(t, c.Update(ctx, &mwc))

	// 4. The scheduler, as t9k-scheduler, with the Deployment's flags and the ConfigMap's profile
	// (leader election on), delegating authentication of its secure port as itself.
	schedProxy := startSAProxy(t, cp, saScheduler)
	schedArgs := deploymentArgs(t, objs, "Deployment", "t9k-scheduler")
	cfgArg := ""
	for _, a := range schedArgs {
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			cfgArg = v
		}
	}
	profile := schedulerProfile(t, objs, filepath.Base(cfgArg))
	profile["clientConnection"].(map[string]any)["kubeconfig"] = schedProxy.Kubeconfig
	require.Equal(t, true, profile["leaderElection"].(map[string]any)["leaderElect"])
	profileData, err := yaml.Marshal(profile)
	require.NoError(t, err)
	profilePath := filepath.Join(t.TempDir(), "t9k-scheduler.yaml")
	require.NoError(t, os.WriteFile(profilePath, profileData, 0o600))
	schedLog := startT9kProcess(t, "t9k-scheduler", append(withoutFlags(schedArgs, "config", "secure-port"),
		"--config="+profilePath, fmt.Sprintf("--secure-port=%d", schedPort), "--bind-address=127.0.0.1",
		"--authentication-kubeconfig="+schedProxy.Kubeconfig, "--authorization-kubeconfig="+schedProxy.Kubeconfig)...)

	// 5. The device-agent, as t9k-device-agent, publishing for two simulated nodes.
	agentProxy := startSAProxy(t, cp, saDeviceAgent)
	for i := range 2 {
		n := readyNode(fmt.Sprintf("gpu-%d", i), 8)
		n.Labels[localcluster.LabelSimulated] = "true"
		n.Labels[localcluster.LabelFixture] = "dgx-h100"
		_, err := kc.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	agentLog := startT9kProcess(t, "device-agent", "--kubeconfig="+agentProxy.Kubeconfig,
		"--simulate-nodes="+localcluster.LabelSimulated+"=true", "--publish-labels", "--device-plugin=false")

	// Both leaders elected on the shipped Leases.
	for _, lease := range []string{"t9k-scheduler", controllers.LeaderElectionID} {
		eventually(t, "lease "+lease, 60*time.Second, func() bool {
			var l coordinationv1.Lease
			return c.Get(ctx, types.NamespacedName{Namespace: "t9k-system", Name: lease}, &l) == nil &&
				l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != ""
		})
	}
	eventually(t, "NodeDevices published", 60*time.Second, func() bool {
		var list devicev1.NodeDevicesList
		return c.List(ctx, &list) == nil && len(list.Items) == 2
	})

	// The webhook answers: a pod in a queue that does not exist is refused.
	probe := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "probe",
		Labels: map[string]string{sched.LabelQueue: "no-such-queue"}},
		Spec: corev1.PodSpec{SchedulerName: sched.SchedulerName, Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	eventually(t, "webhook answering", 60*time.Second, func() bool {
		err := c.Create(ctx, probe.DeepCopy(), client.DryRunAll)
		return err != nil && strings.Contains(err.Error(), "denied the request")
	})

	// A gang of two GPU pods in a queue is admitted and scheduled whole.
	q := &sched.Queue{ObjectMeta: metav1.ObjectMeta{Namespace: "t9k-system", Name: "team"}, Spec: sched.QueueSpec{
		Priority:          50,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "default"}},
	}}
	require.NoError(t, c.Create(ctx, q))
	pg := &sched.PodGroup{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "gang"},
		Spec: sched.PodGroupSpec{MinMember: 2, Queue: "team"}}
	eventually(t, "podgroup admitted", 30*time.Second, func() bool { return c.Create(ctx, pg.DeepCopy()) == nil })
	for i := range 2 {
		p := gangPod("default", fmt.Sprintf("gang-%d", i), "gang", "team", 4)
		p.Spec.Containers[0].Resources.Requests[corev1.ResourceMemory] = resource.MustParse("1Gi")
		eventually(t, "pod admitted", 30*time.Second, func() bool { return c.Create(ctx, p.DeepCopy()) == nil })
	}
	eventually(t, "gang bound", 60*time.Second, func() bool {
		for i := range 2 {
			var p corev1.Pod
			if c.Get(ctx, types.NamespacedName{Namespace: "default", Name: fmt.Sprintf("gang-%d", i)}, &p) != nil ||
				p.Spec.NodeName == "" || p.Annotations[devicev1.AnnotationGPUs] == "" {
				return false
			}
		}
		return true
	})

	// 6. /metrics of the controllers: HTTPS, refused without a token, refused to a token whose
	// ServiceAccount may not read metrics, served to one bound to t9k-metrics-reader; the
	// scheduler's secure port the same way.
	for _, sa := range []string{"prometheus", "nobody"} {
		_, err := kc.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	reader := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
		"metadata": map[string]any{"name": "prometheus-t9k-metrics"},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "t9k-metrics-reader"},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": "prometheus", "namespace": "default"}},
	}}
	require.NoError(t, c.Create(ctx, reader))
	token := func(sa string) string {
		tr, err := kc.CoreV1().ServiceAccounts("default").CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		require.NoError(t, err)
		return tr.Status.Token
	}
	for _, target := range []struct{ name, url string }{
		{"t9k-controllers", fmt.Sprintf("https://127.0.0.1:%d/metrics", metricsPort)},
		{"t9k-scheduler", fmt.Sprintf("https://127.0.0.1:%d/metrics", schedPort)},
	} {
		// Refused: 401 (controller-runtime's filter wants a token), or 403 (kube-scheduler
		// authenticates the anonymous user and then does not authorize it).
		code, _ := scrape(t, target.url, "")
		assert.Contains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, code, "%s: no token", target.name)
		if target.name == "t9k-controllers" {
			assert.Equal(t, http.StatusUnauthorized, code)
		}
		code, _ = scrape(t, target.url, token("nobody"))
		assert.Equal(t, http.StatusForbidden, code, "%s: token without the metrics-reader role", target.name)
		code, body := scrape(t, target.url, token("prometheus"))
		assert.Equal(t, http.StatusOK, code, "%s: metrics-reader token", target.name)
		assert.Contains(t, body, "rest_client_requests_total", target.name)
	}

	// The controllers' probes are plain HTTP without authentication (the kubelet's).
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort))
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	for name, log := range map[string]string{"t9k-controllers": ctrlLog, "t9k-scheduler": schedLog, "device-agent": agentLog} {
		noForbiddenInLog(t, name, log)
	}
}

// schedulerProfile is the KubeSchedulerConfiguration under key of the scheduler's ConfigMap.
func schedulerProfile(t *testing.T, objs []*unstructured.Unstructured, key string) map[string]any {
	t.Helper()
	for _, o := range ofKind(objs, "ConfigMap") {
		if strings.HasPrefix(o.GetName(), "t9k-scheduler-config") {
			data, ok, _ := unstructured.NestedString(o.Object, "data", key)
			require.True(t, ok, "ConfigMap %s has no key %s", o.GetName(), key)
			var m map[string]any
			require.NoError(t, yaml.Unmarshal([]byte(data), &m))
			return m
		}
	}
	t.Fatal("no t9k-scheduler-config ConfigMap")
	return nil
}

// scrape GETs url over TLS (self-signed: not verified) with an optional bearer token.
func scrape(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	hc := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed serving certificates
	resp, err := hc.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// eventually polls cond every 200ms until it holds or timeout passes.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true,
		func(context.Context) (bool, error) { return cond(), nil })
	require.NoError(t, err, "waiting for %s", what)
}
