package admission

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/tensorstack/t9k/pkg/controlplane"
)

// Every complete job manifest of the public corpus passes the webhook's template, replica and pod
// checks, except snippets whose containers have no image: Kubernetes refuses such a pod (as it
// refuses a Deployment whose template has none), so the webhook refuses the job up front rather
// than admitting one that can never start. Those are listed. The corpus is optional: the test runs
// when T9K_EXAMPLES names its directory (a relative path is taken from the module root, where make
// runs) and is skipped otherwise.
func TestCorpusJobsPassValidation(t *testing.T) {
	dir := os.Getenv("T9K_EXAMPLES")
	if dir == "" {
		t.Skip("public manifest corpus not given; to run this: T9K_EXAMPLES=../shared/t9k-examples make test (or go test with T9K_EXAMPLES=<dir>)")
	}
	if !filepath.IsAbs(dir) {
		root, err := controlplane.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, dir)
	}
	index, err := os.ReadFile(filepath.Join(dir, "INDEX.md"))
	if err != nil {
		t.Fatalf("T9K_EXAMPLES=%s is not the manifest corpus: %v", os.Getenv("T9K_EXAMPLES"), err)
	}
	complete := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(index))
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "|")
		if len(cols) > 4 && strings.HasSuffix(strings.TrimSpace(cols[1]), ".yaml`") && !strings.Contains(cols[3], "fragment") {
			complete[strings.Trim(strings.TrimSpace(cols[1]), "`")] = true
		}
	}
	v := &Validator{TopologyLevels: defaultLevels}
	checked := 0
	var noImage []string
	for name := range complete {
		for _, r := range validateManifests(t, v, filepath.Join(dir, name)) {
			checked++
			var other []string
			for _, e := range r.errs {
				if !strings.HasSuffix(e.Field, ".image") || e.Type != field.ErrorTypeRequired {
					other = append(other, e.Error())
				}
			}
			switch {
			case len(other) > 0:
				t.Errorf("%s (%s): %s", name, r.kind, strings.Join(other, "; "))
			case len(r.errs) > 0:
				noImage = append(noImage, name)
			}
		}
	}
	sort.Strings(noImage)
	t.Logf("%d complete job manifests checked: %d pass, %d refused only for a container without image: %s",
		checked, checked-len(noImage), len(noImage), strings.Join(noImage, " "))
	if checked == 0 {
		t.Fatal("the corpus has no complete job manifest")
	}
}

// Every job of the project's own examples passes the webhook's checks.
func TestExamplesPassValidation(t *testing.T) {
	root, err := controlplane.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	v := &Validator{TopologyLevels: defaultLevels}
	kinds := map[string]bool{}
	for _, f := range files {
		for _, r := range validateManifests(t, v, f) {
			kinds[r.kind] = true
			if len(r.errs) > 0 {
				t.Errorf("%s (%s): %v", filepath.Base(f), r.kind, r.errs.ToAggregate())
			}
		}
	}
	if len(kinds) != len(JobResources) {
		t.Errorf("examples cover %d job kinds, want all %d: %v", len(kinds), len(JobResources), kinds)
	}
}

var defaultLevels = []string{"nvidia.com/gpu.clique", "network.topology.nvidia.com/block",
	"network.topology.nvidia.com/spine", "topology.kubernetes.io/zone"}

type manifestResult struct {
	kind string
	errs field.ErrorList
}

// validateManifests runs the job webhook's checks on every job document of a YAML file.
func validateManifests(t *testing.T, v *Validator, path string) []manifestResult {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []manifestResult
	r := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if sigsyaml.Unmarshal(doc, &head) != nil || !strings.HasPrefix(head.APIVersion, "batch.tensorstack.dev/") || newJob(head.Kind) == nil {
			continue
		}
		raw, err := sigsyaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		obj := newJob(head.Kind)
		if err := sigsyaml.Unmarshal(doc, obj); err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		errs, err := v.validateJob(requestFor(raw), obj)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, manifestResult{head.Kind, errs})
	}
	return out
}
