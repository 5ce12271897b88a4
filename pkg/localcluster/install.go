package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tensorstack/t9k/pkg/controlplane"
)

// The ServiceAccounts of the install manifests the binaries run as, namespace/name.
const (
	SchedulerServiceAccount   = "t9k-system/t9k-scheduler"
	ControllersServiceAccount = "t9k-system/t9k-controllers"
	DeviceAgentServiceAccount = "t9k-device-agent/t9k-device-agent"
)

// RenderManifests runs `kubectl kustomize dir` with the kubectl of binDir and returns the
// documents.
func RenderManifests(binDir, dir string) ([]*unstructured.Unstructured, error) {
	cmd := exec.Command(filepath.Join(binDir, "kubectl"), "kustomize", dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("kubectl kustomize %s: %v: %s", dir, err, stderr.String())
	}
	var objs []*unstructured.Unstructured
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(out), 4096)
	for {
		var m map[string]any
		if err := dec.Decode(&m); err == io.EOF {
			return objs, nil
		} else if err != nil {
			return nil, err
		}
		if len(m) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: m})
		}
	}
}

// installIdentities applies, from the install manifests (manifests/default), the namespaces,
// ServiceAccounts and RBAC, and the Validating- and MutatingWebhookConfiguration with their
// webhooks pointed at https://webhookHostPort on loopback (no Service routing here; the
// controllers write their caBundle). The binaries then run as those ServiceAccounts.
func (c *Cluster) installIdentities(ctx context.Context, manifests, webhookHostPort string) error {
	objs, err := RenderManifests(c.BinDir, manifests)
	if err != nil {
		return err
	}
	cl, err := client.New(c.ControlPlane.Config, client.Options{})
	if err != nil {
		return err
	}
	for _, kinds := range [][]string{{"Namespace"}, {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}} {
		for _, o := range objs {
			if !slices.Contains(kinds, o.GetKind()) {
				continue
			}
			o = o.DeepCopy()
			if strings.HasSuffix(o.GetKind(), "WebhookConfiguration") {
				if err := webhooksAtURL(o, webhookHostPort); err != nil {
					return err
				}
			}
			if err := cl.Patch(ctx, o, client.Apply, client.FieldOwner("t9k-local"), client.ForceOwnership); err != nil {
				return fmt.Errorf("applying %s %s: %w", o.GetKind(), o.GetName(), err)
			}
		}
	}
	return nil
}

// webhooksAtURL replaces each webhook's Service by https://hostPort<path>.
func webhooksAtURL(vwc *unstructured.Unstructured, hostPort string) error {
	hooks, _, err := unstructured.NestedSlice(vwc.Object, "webhooks")
	if err != nil {
		return err
	}
	for i, h := range hooks {
		hook := h.(map[string]any)
		path, _, _ := unstructured.NestedString(hook, "clientConfig", "service", "path")
		hook["clientConfig"] = map[string]any{"url": "https://" + hostPort + path}
		hooks[i] = hook
	}
	return unstructured.SetNestedSlice(vwc.Object, hooks, "webhooks")
}

// serviceAccountKubeconfig writes a copy of the admin kubeconfig that impersonates the
// ServiceAccount (namespace/name) and returns its path.
func (c *Cluster) serviceAccountKubeconfig(sa string) (string, error) {
	cfg, err := clientcmd.LoadFromFile(c.Kubeconfig)
	if err != nil {
		return "", err
	}
	ns, name, _ := strings.Cut(sa, "/")
	for _, a := range cfg.AuthInfos {
		a.Impersonate = "system:serviceaccount:" + ns + ":" + name
	}
	path := filepath.Join(c.Dir, "kubeconfig-"+name)
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return "", err
	}
	return path, os.Chmod(path, 0o600)
}

// defaultManifests is manifests/default of this module.
func defaultManifests() (string, error) {
	root, err := controlplane.ModuleRoot()
	if err != nil {
		return "", err
	}
	return filepath.Join(root, "manifests", "default"), nil
}
