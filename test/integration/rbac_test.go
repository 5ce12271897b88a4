package integration

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// EnvUpdateGolden, set to 1, rewrites the expected permission lists of TestRBACServiceAccounts
// (testdata/rbac/) from what the shipped RBAC grants now; review the diff before committing it.
const EnvUpdateGolden = "T9K_UPDATE_GOLDEN"

// TestRBACServiceAccounts: what each ServiceAccount of the install may do, as
// `kubectl auth can-i --list` prints it in the namespaces that matter, equals the checked-in list.
// A change to the shipped RBAC (or to the +kubebuilder:rbac markers) shows up here as a diff to
// review. Then what none of them may do.
func TestRBACServiceAccounts(t *testing.T) {
	cp := startControlPlane(t)
	installRBAC(t, cp)
	kubeconfig := filepath.Join(t.TempDir(), "admin.kubeconfig")
	require.NoError(t, cp.WriteKubeconfig(kubeconfig))
	update := os.Getenv(EnvUpdateGolden) == "1"

	for _, tc := range []struct {
		sa         string
		namespaces []string
	}{
		{saScheduler, []string{"t9k-system", "kube-system", "default"}},
		{saControllers, []string{"t9k-system", "default"}},
		{saDeviceAgent, []string{"t9k-device-agent", "default"}},
	} {
		ns, name, _ := strings.Cut(tc.sa, "/")
		var got strings.Builder
		for _, in := range tc.namespaces {
			out, stderr, err := kubectl(t, kubeconfig, "auth", "can-i", "--list", "-n", in,
				"--as=system:serviceaccount:"+ns+":"+name)
			require.NoError(t, err, stderr)
			got.WriteString("# kubectl auth can-i --list -n " + in + " --as=system:serviceaccount:" + ns + ":" + name + "\n")
			got.WriteString(canonicalCanI(out))
			got.WriteString("\n")
		}
		golden := filepath.Join("testdata", "rbac", name+".txt")
		if update {
			require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
			require.NoError(t, os.WriteFile(golden, []byte(got.String()), 0o644))
			t.Logf("wrote %s", golden)
			continue
		}
		want, err := os.ReadFile(golden)
		require.NoError(t, err, "no expected list: run with %s=1 to write it", EnvUpdateGolden)
		assert.Equal(t, string(want), got.String(),
			"%s's permissions changed; if intended, rerun with %s=1 and review the diff of %s", tc.sa, EnvUpdateGolden, golden)
	}

	// What they must not do.
	for _, tc := range []struct {
		sa, verb, resource, ns string
	}{
		{saScheduler, "get", "secrets", "t9k-system"},
		{saScheduler, "list", "secrets", ""},
		{saScheduler, "get", "configmaps", "t9k-system"},
		// (It may update leases/kube-scheduler: system:kube-scheduler, which the issue and
		// scheduler-plugins' second-scheduler chart bind, grants that Lease by name.)
		{saScheduler, "update", "leases/t9k-controllers.tensorstack.dev", "t9k-system"},
		{saDeviceAgent, "delete", "nodes", ""},
		{saDeviceAgent, "get", "secrets", "t9k-device-agent"},
		{saDeviceAgent, "delete", "pods", ""},
		{saControllers, "list", "secrets", ""},
		{saControllers, "watch", "secrets", ""},
		{saControllers, "update", "secrets", "default"},
		{saControllers, "create", "validatingwebhookconfigurations.admissionregistration.k8s.io", ""},
		{saControllers, "patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/other", ""},
		{saControllers, "update", "leases/t9k-scheduler", "t9k-system"},
		{saControllers, "create", "leases", "default"},
		{saControllers, "delete", "nodes", ""},
	} {
		where := []string{"-n", tc.ns}
		if tc.ns == "" {
			where = []string{"--all-namespaces"} // in any namespace
		}
		assert.Equal(t, "no", canI(t, kubeconfig, tc.sa, tc.verb, tc.resource, where...), "%s can %s %s in %q", tc.sa, tc.verb, tc.resource, tc.ns)
	}
	// And what they must: the leases and the certificate Secret.
	for _, tc := range []struct {
		sa, verb, resource, ns string
	}{
		{saScheduler, "update", "leases/t9k-scheduler", "t9k-system"},
		{saScheduler, "create", "leases", "t9k-system"},
		{saControllers, "update", "leases/t9k-controllers.tensorstack.dev", "t9k-system"},
		{saControllers, "create", "leases", "t9k-system"},
		{saControllers, "update", "secrets/t9k-controllers-webhook-cert", "t9k-system"},
		{saControllers, "patch", "validatingwebhookconfigurations.admissionregistration.k8s.io/t9k-controllers", ""},
		{saDeviceAgent, "patch", "nodes", ""},
	} {
		var where []string
		if tc.ns != "" {
			where = []string{"-n", tc.ns}
		}
		assert.Equal(t, "yes", canI(t, kubeconfig, tc.sa, tc.verb, tc.resource, where...), "%s cannot %s %s in %q", tc.sa, tc.verb, tc.resource, tc.ns)
	}
}

// canI asks `kubectl auth can-i` as a ServiceAccount ("namespace/name") and returns its answer.
func canI(t *testing.T, kubeconfig, sa, verb, resource string, where ...string) string {
	t.Helper()
	ns, name, _ := strings.Cut(sa, "/")
	args := append([]string{"auth", "can-i", verb, resource, "--as=system:serviceaccount:" + ns + ":" + name}, where...)
	out, _, _ := kubectl(t, kubeconfig, args...)
	return strings.TrimSpace(out)
}

// TestSAProxyReportsRBACRefusals: the harness that runs every binary as its ServiceAccount does
// notice a request RBAC refuses (and only those: a webhook's or quota's 403 is not one).
func TestSAProxyReportsRBACRefusals(t *testing.T) {
	cp := startControlPlane(t)
	p := startSAProxy(t, cp, saScheduler)
	c, err := client.New(p.Config(cp.Config), client.Options{})
	require.NoError(t, err)
	err = c.List(context.Background(), &corev1.SecretList{}, client.InNamespace("t9k-system"))
	require.True(t, apierrors.IsForbidden(err), "%v", err)
	got := p.take()
	require.Len(t, got, 1)
	assert.Contains(t, got[0], `User "system:serviceaccount:t9k-system:t9k-scheduler" cannot list resource "secrets"`)
	assert.True(t, forbiddenRE.MatchString(`pods is forbidden: User "system:serviceaccount:a:b" cannot get path "/metrics"`))
	assert.False(t, forbiddenRE.MatchString(`admission webhook "x" denied the request: queue q is closed`))
	assert.False(t, forbiddenRE.MatchString(`pods "p" is forbidden: exceeded quota: q, requested: cpu=1`))
}

var bracketRE = regexp.MustCompile(`\[[^\]]*\]`)

// canonicalCanI makes `kubectl auth can-i --list` output comparable: it merges rules from a map,
// so the order of lines and of the verbs in a line changes from run to run, and a rule granted by
// two roles appears twice. Verbs are sorted, columns joined by " | ", lines sorted and deduplicated
// (the header first).
func canonicalCanI(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) == 0 {
		return ""
	}
	var rows []string
	for _, l := range lines[1:] {
		l = bracketRE.ReplaceAllStringFunc(l, func(b string) string {
			items := strings.Fields(strings.Trim(b, "[]"))
			slices.Sort(items)
			return "[" + strings.Join(items, ",") + "]"
		})
		f := strings.Fields(l)
		if strings.HasPrefix(l, " ") { // a non-resource URL: no resource
			f = append([]string{"-"}, f...)
		}
		rows = append(rows, strings.Join(f, " | "))
	}
	slices.Sort(rows)
	rows = slices.Compact(rows)
	return strings.Join(append([]string{"Resources | Non-Resource URLs | Resource Names | Verbs"}, rows...), "\n") + "\n"
}
