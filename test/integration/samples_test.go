package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/tensorstack/t9k/pkg/controlplane"
)

// TestSamplesApply dry-runs every document of manifests/samples (what `make demo` submits) against
// the real apiserver with strict field validation.
func TestSamplesApply(t *testing.T) {
	cp := startControlPlane(t)
	d := newDryRunner(t, cp.Config)
	ctx := context.Background()
	root, err := controlplane.ModuleRoot()
	require.NoError(t, err)
	files, err := filepath.Glob(filepath.Join(root, "manifests", "samples", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	kinds := map[string]int{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		docs, err := splitDocuments(data)
		require.NoError(t, err)
		for _, doc := range docs {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct{ Name, Namespace string }
			}
			require.NoError(t, yaml.Unmarshal(doc, &head), f)
			if head.Kind == "Namespace" {
				require.NoError(t, d.ensureNamespace(ctx, head.Metadata.Name))
				continue
			}
			gv, err := schema.ParseGroupVersion(head.APIVersion)
			require.NoError(t, err)
			require.NoError(t, d.create(ctx, gv.WithKind(head.Kind), head.Metadata.Namespace, doc), "%s: %s %s", filepath.Base(f), head.Kind, head.Metadata.Name)
			kinds[head.Kind]++
		}
	}
	for _, k := range []string{"Queue", "DeepSpeedJob", "MPIJob", "PyTorchTrainingJob", "GenericJob"} {
		require.Positive(t, kinds[k], "samples include a %s", k)
	}
}
