package integration

// The install path in tests: the shipped manifests rendered with the kubectl of bin/, their RBAC
// applied to each control plane, and every binary the tests run talking to the apiserver as its
// own ServiceAccount through saProxy, which fails the test on any request RBAC refuses.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tensorstack/t9k/pkg/controlplane"
)

// The ServiceAccounts the install manifests create, as namespace/name.
const (
	saScheduler   = "t9k-system/t9k-scheduler"
	saControllers = "t9k-system/t9k-controllers"
	saDeviceAgent = "t9k-device-agent/t9k-device-agent"
)

var rendered sync.Map // manifest directory → []byte

// renderManifests runs `kubectl kustomize manifests/<dir>` (once per test process and directory)
// and returns its documents.
func renderManifests(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	out, ok := rendered.Load(dir)
	if !ok {
		root, err := controlplane.ModuleRoot()
		require.NoError(t, err)
		bin, err := controlplane.BinDir()
		require.NoError(t, err)
		cmd := exec.Command(filepath.Join(bin, "kubectl"), "kustomize", filepath.Join(root, "manifests", dir))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		data, err := cmd.Output()
		require.NoError(t, err, "kubectl kustomize manifests/%s: %s", dir, stderr.String())
		rendered.Store(dir, data)
		out = data
	}
	return decodeDocuments(t, out.([]byte))
}

func decodeDocuments(t *testing.T, data []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if err == io.EOF {
			return objs
		}
		require.NoError(t, err)
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// ofKind picks the objects of the given kinds.
func ofKind(objs []*unstructured.Unstructured, kinds ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range objs {
		for _, k := range kinds {
			if o.GetKind() == k {
				out = append(out, o.DeepCopy())
			}
		}
	}
	return out
}

// find returns the object of kind and name (namespace ignored), failing the test if absent.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o.DeepCopy()
		}
	}
	t.Fatalf("manifests have no %s %s", kind, name)
	return nil
}

// applyObjects server-side applies objs as the admin (field manager t9k-test).
func applyObjects(t *testing.T, c client.Client, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		o = o.DeepCopy()
		o.SetResourceVersion("")
		require.NoError(t, c.Patch(context.Background(), o, client.Apply, client.FieldOwner("t9k-test"), client.ForceOwnership),
			"%s %s", o.GetKind(), o.GetName())
	}
}

var rbacInstalled sync.Map // *controlplane.ControlPlane → struct{}

// installRBAC gives a control plane the shipped identities: the namespaces t9k-system and
// t9k-device-agent, the ServiceAccounts and every (Cluster)Role and binding of manifests/default,
// nothing else. The namespaces are created without their Pod Security labels: tests create
// plain pods wherever they like (TestInstall checks the labelled namespace).
func installRBAC(t *testing.T, cp *controlplane.ControlPlane) {
	t.Helper()
	if _, done := rbacInstalled.LoadOrStore(cp, struct{}{}); done {
		return
	}
	t.Cleanup(func() { rbacInstalled.Delete(cp) })
	c, err := client.New(cp.Config, client.Options{})
	require.NoError(t, err)
	objs := renderManifests(t, "default")
	var nss []*unstructured.Unstructured
	for _, ns := range ofKind(objs, "Namespace") {
		bare := &unstructured.Unstructured{}
		bare.SetAPIVersion("v1")
		bare.SetKind("Namespace")
		bare.SetName(ns.GetName())
		nss = append(nss, bare)
	}
	applyObjects(t, c, nss)
	applyObjects(t, c, ofKind(objs, "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"))
}

// forbiddenRE matches the apiserver's RBAC refusal (not an admission webhook's, a quota's or Pod
// Security's, which are 403s too).
var forbiddenRE = regexp.MustCompile(`User "[^"]+" cannot [a-z]+ (resource|path) "[^"]*"[^"]*("[^"]*")?[^"]*("[^"]*")?`)

// saProxy is an HTTP endpoint on loopback that forwards every request to the apiserver as the
// ServiceAccount (the admin impersonates it; it holds only its RBAC) and records each request RBAC
// refused. The test fails at its end if there was any.
type saProxy struct {
	sa         string // namespace/name
	URL        string
	Kubeconfig string
	mu         sync.Mutex
	forbidden  []string
}

func startSAProxy(t *testing.T, cp *controlplane.ControlPlane, sa string) *saProxy {
	t.Helper()
	installRBAC(t, cp)
	ns, name, _ := strings.Cut(sa, "/")
	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ns + ":" + name}
	rt, err := rest.TransportFor(cfg)
	require.NoError(t, err)
	target, err := url.Parse(cfg.Host)
	require.NoError(t, err)
	p := &saProxy{sa: sa}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = target.Host },
		Transport:     &recordForbidden{next: rt, p: p},
		FlushInterval: -1, // watches stream
	}
	srv := httptest.NewServer(rp)
	p.URL = srv.URL
	p.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig-"+name)
	require.NoError(t, os.WriteFile(p.Kubeconfig, []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: apiserver-as-%[2]s
  cluster:
    server: %[1]s
users:
- name: %[2]s
  user: {}
contexts:
- name: %[2]s
  context:
    cluster: apiserver-as-%[2]s
    user: %[2]s
current-context: %[2]s
`, srv.URL, name)), 0o600))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, f := range p.forbidden {
			t.Errorf("%s was refused by RBAC: %s", sa, f)
		}
	})
	return p
}

// Config is a client config for the proxy: requests are made as the ServiceAccount.
func (p *saProxy) Config(base *rest.Config) *rest.Config {
	return &rest.Config{Host: p.URL, QPS: base.QPS, Burst: base.Burst}
}

// take returns the refusals recorded so far and forgets them (a test that provokes one on
// purpose).
func (p *saProxy) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.forbidden
	p.forbidden = nil
	return out
}

type recordForbidden struct {
	next http.RoundTripper
	p    *saProxy
}

func (r *recordForbidden) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusForbidden {
		return resp, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	_ = resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if m := forbiddenRE.Find(body); m != nil {
		r.p.mu.Lock()
		r.p.forbidden = append(r.p.forbidden, fmt.Sprintf("%s %s: %s", req.Method, req.URL.Path, m))
		r.p.mu.Unlock()
	}
	return resp, nil
}

// webhookAtURL is the shipped ValidatingWebhookConfiguration and MutatingWebhookConfiguration with
// each webhook's Service replaced by https://hostPort<path>: here the apiserver reaches the
// controllers on loopback, with no Service routing.
func webhookAtURL(t *testing.T, hostPort string) []*unstructured.Unstructured {
	t.Helper()
	objs := renderManifests(t, "default")
	var out []*unstructured.Unstructured
	for _, kind := range []string{"ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"} {
		wc := find(t, objs, kind, "t9k-controllers")
		hooks, _, err := unstructured.NestedSlice(wc.Object, "webhooks")
		require.NoError(t, err)
		for i, h := range hooks {
			hook := h.(map[string]any)
			path, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "path")
			require.NotEmpty(t, path)
			hook["clientConfig"] = map[string]any{"url": "https://" + hostPort + path}
			hooks[i] = hook
		}
		require.NoError(t, unstructured.SetNestedSlice(wc.Object, hooks, "webhooks"))
		out = append(out, wc)
	}
	return out
}
