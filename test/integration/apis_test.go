package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/tensorstack/t9k/pkg/controlplane"
)

// corpusEnv names the directory of the public corpus of T9k manifests (the manuals' and tutorials'
// YAML, with an INDEX.md), which the compatibility tests check when it is given.
const corpusEnv = "T9K_EXAMPLES"

// corpusDir returns the corpus directory named by T9K_EXAMPLES, a relative path being taken from
// the module root (where make runs), and skips the test when the variable is unset. A directory
// that is named but missing fails the test.
func corpusDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(corpusEnv)
	if dir == "" {
		t.Skipf("public manifest corpus not given; to run this: %s=../shared/t9k-examples make test (or go test with %s=<dir>)", corpusEnv, corpusEnv)
	}
	if !filepath.IsAbs(dir) {
		root, err := controlplane.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, "INDEX.md")); err != nil {
		t.Fatalf("%s=%s is not the manifest corpus: %v", corpusEnv, os.Getenv(corpusEnv), err)
	}
	return dir
}

// examplesNamespace receives manifests that name no namespace.
const examplesNamespace = "t9k-examples"

// ourKinds are the kinds this repository serves, by group. A document whose group is ours and whose
// kind matches one of these case-insensitively is ours (so the DeepspeedJob typo is tried and
// counted); other kinds of the same groups (WorkflowTemplate, WorkflowRun) belong to components we
// do not ship.
var ourKinds = map[string][]string{
	"batch.tensorstack.dev": {"GenericJob", "PyTorchTrainingJob", "TensorFlowTrainingJob",
		"XGBoostTrainingJob", "MPIJob", "ColossalAIJob", "DeepSpeedJob", "BeamJob"},
	"scheduler.tensorstack.dev": {"Queue", "PodGroup"},
}

// knownRejections are complete manifests the apiserver must reject, each because the manifest itself
// is wrong. The value is a substring the rejection must contain and why. An entry that starts being
// accepted fails the test, so this list cannot go stale.
var knownRejections = map[string]struct{ want, why string }{
	"doc__user-manuals__src__modules__jobs__deepspeedjob__01.yaml": {"DeepspeedJob",
		"doc typo: kind DeepspeedJob (and slotPerWorker); the API reference and all real manifests say DeepSpeedJob/slotsPerWorker"},
	"tutorial-examples__PRE2025API__job__mpijob__horovod-keras__job.yaml": {`key "runPolicy" already set in map`,
		"spec.runPolicy appears twice; strict decoding rejects duplicate keys (lenient parsers keep the last)"},
	"tutorial-examples__PRE2025API__job__mpijob__horovod-keras__job_gpu.yaml": {`key "runPolicy" already set in map`,
		"spec.runPolicy appears twice"},
	"tutorial-examples__PRE2025API__job__mpijob__horovod-keras__job_gpu_t9ksched.yaml": {`key "runPolicy" already set in map`,
		"spec.runPolicy appears twice"},
	"tutorial-examples__PRE2025API__job__mpijob__horovod-torch__job.yaml": {`key "runPolicy" already set in map`,
		"spec.runPolicy appears twice"},
	"tutorial-examples__PRE2025API__job__mpijob__horovod-torch__job_gpu.yaml": {`key "runPolicy" already set in map`,
		"spec.runPolicy appears twice"},
	"tutorial-examples__job__mpijob__horovod-torch__job_gpu_t9ksched.yaml": {`key "runPolicy" already set in map`,
		"spec.runPolicy appears twice (still so at HEAD of tutorial-examples)"},
}

// indexRow matches a row of INDEX.md: | `file` | kinds | origin | source |
var indexRow = regexp.MustCompile("^\\| `([^`]+)` \\| ([^|]*) \\| ([^|]*) \\|")

// fragmentFiles reads INDEX.md and returns the files it marks as fragments (partial snippets), by
// origin ("doc block (fragment)") or by kind ("fragment", "... (fragments)").
func fragmentFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "INDEX.md"))
	if err != nil {
		t.Fatalf("reading the examples index: %v", err)
	}
	frag := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		m := indexRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		kinds, origin := strings.TrimSpace(m[2]), m[3]
		frag[m[1]] = strings.Contains(origin, "fragment") || kinds == "fragment" || strings.Contains(kinds, "(fragment")
	}
	if len(frag) == 0 {
		t.Fatalf("no rows found in %s/INDEX.md", dir)
	}
	return frag
}

// splitDocuments splits a multi-document YAML file.
func splitDocuments(data []byte) ([][]byte, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
}

// ourKind returns the served kind for a document's apiVersion and kind, and whether the document
// belongs to our groups at all.
func ourKind(apiVersion, kind string) (gv schema.GroupVersion, canonical string, ours bool) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return gv, "", false
	}
	for _, k := range ourKinds[gv.Group] {
		if strings.EqualFold(k, kind) {
			return gv, k, true
		}
	}
	return gv, "", false
}

// dryRunner creates documents with server-side dry-run and strict field validation. It sends the
// YAML as written, so that the apiserver itself judges duplicate keys and unknown fields.
type dryRunner struct {
	rc     rest.Interface
	mapper meta.RESTMapper
	kube   kubernetes.Interface
	nsDone map[string]bool
}

func newDryRunner(t *testing.T, cfg *rest.Config) *dryRunner {
	t.Helper()
	c := rest.CopyConfig(cfg)
	c.APIPath = "/apis"
	c.GroupVersion = &schema.GroupVersion{}
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientFor(c)
	if err != nil {
		t.Fatalf("rest client: %v", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		t.Fatalf("discovery client: %v", err)
	}
	return &dryRunner{
		rc:     rc,
		mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)),
		kube:   kubernetes.NewForConfigOrDie(cfg),
		nsDone: map[string]bool{},
	}
}

// ensureNamespace creates ns for real: dry-run creates still need an existing namespace.
func (d *dryRunner) ensureNamespace(ctx context.Context, ns string) error {
	if d.nsDone[ns] {
		return nil
	}
	_, err := d.kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	d.nsDone[ns] = true
	return nil
}

// create dry-runs the creation of one YAML document of group/version/kind in namespace ns.
func (d *dryRunner) create(ctx context.Context, gvk schema.GroupVersionKind, ns string, doc []byte) error {
	m, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return fmt.Errorf("kind not served: %w", err)
	}
	if err := d.ensureNamespace(ctx, ns); err != nil {
		return fmt.Errorf("namespace %s: %w", ns, err)
	}
	return d.rc.Post().
		AbsPath("/apis", gvk.Group, gvk.Version, "namespaces", ns, m.Resource.Resource).
		Param("dryRun", metav1.DryRunAll).
		Param("fieldValidation", metav1.FieldValidationStrict).
		SetHeader("Content-Type", "application/yaml").
		Body(doc).
		Do(ctx).
		Error()
}

// createLenient dry-runs a single-document file after a lenient YAML parse (duplicate keys: the
// last one wins), sent as JSON.
func (d *dryRunner) createLenient(ctx context.Context, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(js, &head); err != nil {
		return err
	}
	gv, err := schema.ParseGroupVersion(head.APIVersion)
	if err != nil {
		return err
	}
	gvk := gv.WithKind(head.Kind)
	m, err := d.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return err
	}
	return d.rc.Post().
		AbsPath("/apis", gvk.Group, gvk.Version, "namespaces", examplesNamespace, m.Resource.Resource).
		Param("dryRun", metav1.DryRunAll).
		Param("fieldValidation", metav1.FieldValidationStrict).
		SetHeader("Content-Type", "application/json").
		Body(js).
		Do(ctx).
		Error()
}

// TestManifestsDryRun applies every complete T9k manifest of our groups in the public corpus
// (T9K_EXAMPLES; skipped without it) to a real apiserver (server-side dry-run, strict field
// validation) and requires all of them to be accepted, except the known broken ones in
// knownRejections.
func TestManifestsDryRun(t *testing.T) {
	dir := corpusDir(t)
	fragments := fragmentFiles(t, dir)
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s: %v", dir, err)
	}
	sort.Strings(files)

	cp := startControlPlane(t)
	ctx := context.Background()
	d := newDryRunner(t, cp.Config)

	var (
		total, accepted, fragmentFileCount, fragmentDocs int
		otherKinds                                       = map[string]int{}
		rejected                                         = map[string]string{}
	)
	ourGroupLine := regexp.MustCompile(`(?m)^apiVersion:\s*(batch|scheduler)\.tensorstack\.dev/`)
	for _, path := range files {
		name := filepath.Base(path)
		isFragment, indexed := fragments[name]
		if !indexed {
			t.Errorf("%s is not listed in INDEX.md", name)
		}
		if isFragment {
			fragmentFileCount++
			continue
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		docs, err := splitDocuments(data)
		if err != nil {
			t.Fatalf("%s: splitting documents: %v", name, err)
		}
		for i, doc := range docs {
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Namespace string `json:"namespace"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				// Not YAML at all (e.g. "--" used as a separator). Ours only if it says so.
				if ourGroupLine.Match(doc) {
					total++
					rejected[name] = fmt.Sprintf("document %d is not valid YAML: %v", i, err)
				} else {
					otherKinds["(unparsable, other group)"]++
				}
				continue
			}
			if head.APIVersion == "" || head.Kind == "" {
				if len(bytes.TrimSpace(stripComments(doc))) > 0 {
					fragmentDocs++
				}
				continue
			}
			gv, kind, ours := ourKind(head.APIVersion, head.Kind)
			if !ours {
				otherKinds[head.Kind]++
				continue
			}
			total++
			ns := head.Metadata.Namespace
			if ns == "" {
				ns = examplesNamespace
			}
			// The kind as written, not the canonical one: a misspelt kind must fail.
			gvk := gv.WithKind(head.Kind)
			if kind != head.Kind {
				t.Logf("%s: kind %q is a misspelling of %q", name, head.Kind, kind)
			}
			if err := d.create(ctx, gvk, ns, doc); err != nil {
				rejected[name] = fmt.Sprintf("document %d (%s): %v", i, head.Kind, err)
				continue
			}
			accepted++
		}
	}

	others := make([]string, 0, len(otherKinds))
	for k, n := range otherKinds {
		others = append(others, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(others)
	t.Logf("accepted %d/%d complete manifests of batch/scheduler.tensorstack.dev; skipped %d fragment files, %d fragment documents, other kinds: %s",
		accepted, total, fragmentFileCount, fragmentDocs, strings.Join(others, " "))

	names := make([]string, 0, len(rejected))
	for n := range rejected {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		msg := rejected[n]
		known, ok := knownRejections[n]
		switch {
		case !ok:
			t.Errorf("REJECTED %s: %s", n, msg)
		case !strings.Contains(msg, known.want):
			t.Errorf("REJECTED %s for another reason than the known one (%s): %s", n, known.why, msg)
		default:
			t.Logf("rejected as expected: %s (%s)", n, known.why)
		}
		if ok && strings.Contains(known.want, "already set in map") {
			// Beyond the duplicate key the manifest must be valid: retry as a lenient parser
			// (kubectl's) reads it, the last duplicate winning.
			if err := d.createLenient(ctx, filepath.Join(dir, n)); err != nil {
				t.Errorf("%s: still rejected once the duplicate key is resolved: %v", n, err)
			}
		}
	}
	for n, known := range knownRejections {
		if _, ok := rejected[n]; !ok {
			t.Errorf("%s is listed as a known rejection (%s) but was accepted or not tried; update knownRejections", n, known.why)
		}
	}
	if total < 100 {
		t.Errorf("only %d manifests of our groups found; the corpus should hold far more", total)
	}
}

// stripComments drops comment-only lines, to tell empty documents from fragments.
func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}
