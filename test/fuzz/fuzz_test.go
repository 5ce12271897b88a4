// Package fuzz applies hostile mutations of the project's example manifests to the local cluster
// (real apiserver, kwok nodes, t9k-scheduler, t9k-controllers with its webhook, device-agent, and
// the stock kube-scheduler as default-scheduler) and checks that nothing breaks: no panic, every
// rejection names a field, every accepted object reaches a state that explains itself, and a
// normal job submitted afterwards still runs.
//
// `make test` runs T9K_FUZZ_CASES (default 240) cases from T9K_FUZZ_SEED (default 1); `make fuzz`
// runs more.
package fuzz

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/localcluster"
)

const ns = "examples"

var (
	podGVR   = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	pgGVR    = schema.GroupVersionResource{Group: "scheduler.tensorstack.dev", Version: "v1beta1", Resource: "podgroups"}
	qGVR     = schema.GroupVersionResource{Group: "scheduler.tensorstack.dev", Version: "v1beta1", Resource: "queues"}
	eventGVR = schema.GroupVersionResource{Version: "v1", Resource: "events"}
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// fuzzCase is one mutated object, with the unmutated pods a PodGroup seed brings along.
type fuzzCase struct {
	id        int
	obj       *unstructured.Unstructured
	members   []*unstructured.Unstructured
	mutations []string
}

type outcome struct {
	c        *fuzzCase
	rejected error
	verdict  string // accepted: what explained it, or "" when nothing did
	last     string // accepted and unexplained: the last state seen
}

// TestExamplesAndFuzz brings up one local cluster, runs every example as written to its end, then
// the fuzz cases.
func TestExamplesAndFuzz(t *testing.T) {
	root, err := controlplane.ModuleRoot()
	require.NoError(t, err)
	bin, err := controlplane.BinDir()
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	spec := localcluster.DefaultSpec()
	spec.Spines, spec.BlocksPerSpine, spec.NodesPerBlock = 1, 2, 2
	dir := t.TempDir()
	c, err := localcluster.Start(ctx, localcluster.Options{Dir: dir, BinDir: bin, Spec: spec, Namespaces: []string{"t9k-system"}})
	require.NoError(t, err)
	t.Cleanup(c.Stop)
	require.NoError(t, c.StartBinaries(localcluster.BinariesOptions{
		SchedulerConfig: filepath.Join(root, "manifests", "scheduler", "t9k-scheduler.yaml"), DefaultScheduler: true}))
	dyn, err := dynamic.NewForConfig(c.Config)
	require.NoError(t, err)
	f := &fuzzer{ctx: ctx, dyn: dyn, c: c}

	// The namespace and queue of the examples, then the webhook answering.
	setup := t.TempDir()
	data, err := os.ReadFile(filepath.Join(root, "examples", "00-namespace-and-queue.yaml"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(setup, "setup.yaml"), data, 0o644))
	_, err = c.ApplyDir(ctx, setup)
	require.NoError(t, err)
	examples := loadExamples(t, filepath.Join(root, "examples"))
	seeds := seedsOf(t, examples)
	probe := seeds["GenericJob"][0].DeepCopy()
	probe.SetName("probe")
	probe.SetAnnotations(map[string]string{"scheduler.tensorstack.dev/topology-policy": "Required:no.such/level"})
	require.NoError(t, wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := f.resource(probe).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil && strings.Contains(err.Error(), "denied the request"), nil
	}), "webhook never answered")

	t.Run("examples", func(t *testing.T) { f.examplesRun(t, examples) })
	t.Run("fuzz", func(t *testing.T) { f.fuzz(t, seeds) })
}

// setupFile is the example applied before the others (the examples' namespace and queue).
const setupFile = "00-namespace-and-queue.yaml"

// stepLabel orders the objects of an example meant to be applied in steps (kubectl apply -l
// example.tensorstack.dev/step=1, then the whole file): each step's jobs run before the next
// step is applied.
const stepLabel = "example.tensorstack.dev/step"

// preempts names, per example file, the job that a later step of it must preempt.
var preempts = map[string]string{"queue-preemption.yaml": "research-sweep"}

// examplesRun applies every example file as written, all files at once, and waits for the end of
// each object: jobs Succeeded (BeamJob: the missing Flink operator named; a job created paused is
// resumed once it shows Paused), a PodGroup's member pods Succeeded, a Queue with conditions.
func (f *fuzzer) examplesRun(t *testing.T, examples []example) {
	var wg sync.WaitGroup
	for _, ex := range examples {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.runExample(t, ex)
		}()
	}
	wg.Wait()
}

// runExample applies one example file, step by step if it has steps, waits for the end of each of
// its objects and checks it, then removes what it created.
func (f *fuzzer) runExample(t *testing.T, ex example) {
	steps := map[string][]*unstructured.Unstructured{}
	for _, d := range ex.docs {
		step := d.GetLabels()[stepLabel]
		steps[step] = append(steps[step], d)
	}
	var created []*unstructured.Unstructured
	defer func() {
		for _, o := range created {
			if o.GetKind() == "Pod" {
				_ = f.resource(o).Delete(f.ctx, o.GetName(), metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
			} else {
				f.cleanUp(&fuzzCase{obj: o})
			}
		}
	}()
	order := sortedKeys(steps)
	for i, step := range order {
		for _, d := range steps[step] {
			if want := f.namespaceOf(d); d.GetNamespace() != want {
				t.Errorf("%s: %s %s is in namespace %q, want %q", ex.file, d.GetKind(), d.GetName(), d.GetNamespace(), want)
				return
			}
			_, err := f.resource(d).Create(f.ctx, d.DeepCopy(), metav1.CreateOptions{})
			switch {
			case apierrors.IsAlreadyExists(err) && ex.file == setupFile:
				// Applied by the setup; left for the fuzz cases.
			case err != nil:
				t.Errorf("%s: %s %s refused: %v", ex.file, d.GetKind(), d.GetName(), err)
				return
			default:
				created = append(created, d)
			}
		}
		if i == len(order)-1 {
			break
		}
		for _, d := range steps[step] {
			if isJob(d) {
				if phase := f.waitPhase(d, "Running"); phase != "Running" {
					t.Errorf("%s: step %s: %s %s never ran (phase %q), so step %s was not applied", ex.file, step, d.GetKind(), d.GetName(), phase, order[i+1])
					return
				}
			}
		}
		t.Logf("%s: step %s running", ex.file, step)
	}

	for _, d := range ex.docs {
		if d.GetKind() == "Pod" {
			continue // a member of a PodGroup of the file, which ends when they do
		}
		var end string
		if paused, _, _ := unstructured.NestedBool(d.Object, "spec", "runMode", "pause", "enabled"); paused && isJob(d) {
			end = f.resumeToEnd(d)
		} else {
			end = f.waitEnd(&fuzzCase{obj: d, members: membersOf(ex.docs, d)})
		}
		switch kind := d.GetKind(); {
		case kind == "BeamJob":
			if !strings.Contains(end, "FlinkClusterCRDNotFound") {
				t.Errorf("%s: %s %s: %s, want it to name the missing Flink operator", ex.file, kind, d.GetName(), end)
			}
		case kind == "Queue":
			if !strings.HasPrefix(end, "queue conditions") {
				t.Errorf("%s: %s %s: %s", ex.file, kind, d.GetName(), end)
			}
		case end != "Succeeded":
			t.Errorf("%s: %s %s ended %s, want Succeeded; its pods: %s", ex.file, kind, d.GetName(), end, f.podStates(d))
		}
		t.Logf("%s: %s %s: %s", ex.file, d.GetKind(), d.GetName(), end)
	}
	if victim := preempts[ex.file]; victim != "" {
		if msg := f.preemptedEvent(victim); msg == "" {
			t.Errorf("%s: no Preempted event for %s's PodGroup", ex.file, victim)
		} else {
			t.Logf("%s: %s preempted: %s", ex.file, victim, msg)
		}
	}
}

// namespaceOf is where an example's object must be: Queues in t9k-system, the rest in the
// examples' namespace.
func (f *fuzzer) namespaceOf(obj *unstructured.Unstructured) string {
	if obj.GetKind() == "Queue" {
		return "t9k-system"
	}
	return ns
}

func isJob(obj *unstructured.Unstructured) bool {
	return obj.GroupVersionKind().Group == "batch.tensorstack.dev"
}

// membersOf returns the pods of docs that join the PodGroup obj.
func membersOf(docs []*unstructured.Unstructured, obj *unstructured.Unstructured) []*unstructured.Unstructured {
	if obj.GetKind() != "PodGroup" {
		return nil
	}
	var out []*unstructured.Unstructured
	for _, d := range docs {
		if d.GetKind() == "Pod" && d.GetLabels()["scheduler.tensorstack.dev/group-name"] == obj.GetName() {
			out = append(out, d)
		}
	}
	return out
}

// waitPhase waits (90 s at most) for a job to reach phase, and returns the phase it last had.
func (f *fuzzer) waitPhase(obj *unstructured.Unstructured, phase string) string {
	var last string
	_ = wait.PollUntilContextTimeout(f.ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		cur, err := f.resource(obj).Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last, _, _ = unstructured.NestedString(cur.Object, "status", "phase")
		return last == phase, nil
	})
	return last
}

// resumeToEnd follows a job created paused: Paused with no pods, then resumed (as the example
// tells the reader to), to its end; every pod it then ran must have run resumeSpecs' command.
func (f *fuzzer) resumeToEnd(obj *unstructured.Unstructured) string {
	if phase := f.waitPhase(obj, "Paused"); phase != "Paused" {
		return fmt.Sprintf("never Paused (phase %q)", phase)
	}
	if pods := f.podsOf(obj); len(pods) > 0 {
		return fmt.Sprintf("Paused with %d pods", len(pods))
	}
	patch := []byte(`{"spec":{"runMode":{"pause":{"enabled":false}}}}`)
	if _, err := f.resource(obj).Patch(f.ctx, obj.GetName(), types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return "resume refused: " + err.Error()
	}
	end := f.waitEnd(&fuzzCase{obj: obj})
	if end != "Succeeded" {
		return end
	}
	resume := map[string][]any{}
	specs, _, _ := unstructured.NestedSlice(obj.Object, "spec", "runMode", "pause", "resumeSpecs")
	for _, s := range specs {
		m, _ := s.(map[string]any)
		resume[fmt.Sprint(m["type"])], _ = m["command"].([]any)
	}
	pods := f.podsOf(obj)
	if len(pods) == 0 {
		return "Succeeded, but its pods are gone: cannot tell what they ran"
	}
	for _, p := range pods {
		containers, _, _ := unstructured.NestedSlice(p.Object, "spec", "containers")
		var cmd []any
		if len(containers) > 0 {
			cmd, _ = containers[0].(map[string]any)["command"].([]any)
		}
		want := resume[p.GetLabels()["batch.tensorstack.dev/replica-type"]]
		if fmt.Sprint(cmd) != fmt.Sprint(want) {
			return fmt.Sprintf("Succeeded, but pod %s ran %v after the resume, want resumeSpecs' %v", p.GetName(), cmd, want)
		}
	}
	return end
}

// podsOf lists a job's pods.
func (f *fuzzer) podsOf(obj *unstructured.Unstructured) []unstructured.Unstructured {
	list, err := f.dyn.Resource(podGVR).Namespace(ns).List(f.ctx, metav1.ListOptions{LabelSelector: "tensorstack.dev/owner-name=" + obj.GetName()})
	if err != nil {
		return nil
	}
	return list.Items
}

// podStates says where each of a job's pods stands (phase, node, PodScheduled's reason and
// message, being deleted) and its PodGroup's conditions, to tell from a CI log why a job did not
// end.
func (f *fuzzer) podStates(obj *unstructured.Unstructured) string {
	var out []string
	for _, p := range f.podsOf(obj) {
		phase, _, _ := unstructured.NestedString(p.Object, "status", "phase")
		node, _, _ := unstructured.NestedString(p.Object, "spec", "nodeName")
		st := fmt.Sprintf("%s %s node=%q", p.GetName(), phase, node)
		if p.GetDeletionTimestamp() != nil {
			st += " deleting"
		}
		conds, _, _ := unstructured.NestedSlice(p.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "PodScheduled" && m["status"] != "True" {
				st += fmt.Sprintf(" unscheduled since %v: %v %v", m["lastTransitionTime"], m["reason"], m["message"])
			}
		}
		out = append(out, st)
	}
	if len(out) == 0 {
		out = append(out, "none")
	}
	if pg, err := f.dyn.Resource(pgGVR).Namespace(ns).Get(f.ctx, obj.GetName(), metav1.GetOptions{}); err == nil {
		conds, _, _ := unstructured.NestedSlice(pg.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok {
				out = append(out, fmt.Sprintf("PodGroup %v=%v %v: %v", m["type"], m["status"], m["reason"], m["message"]))
			}
		}
	}
	return strings.Join(out, "; ")
}

// preemptedEvent returns the message of the scheduler's Preempted event on a job's PodGroup, or
// "" when there is none.
func (f *fuzzer) preemptedEvent(job string) string {
	var msg string
	_ = wait.PollUntilContextTimeout(f.ctx, 250*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := f.dyn.Resource(eventGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, ev := range evs.Items {
			kind, _, _ := unstructured.NestedString(ev.Object, "involvedObject", "kind")
			name, _, _ := unstructured.NestedString(ev.Object, "involvedObject", "name")
			reason, _, _ := unstructured.NestedString(ev.Object, "reason")
			if kind == "PodGroup" && name == job && reason == "Preempted" {
				msg, _, _ = unstructured.NestedString(ev.Object, "message")
				return true, nil
			}
		}
		return false, nil
	})
	return msg
}

// runToEnd creates a case, waits for its end (waitEnd) and removes it.
func (f *fuzzer) runToEnd(fc *fuzzCase) string {
	obj := fc.obj.DeepCopy()
	if _, err := f.resource(obj).Create(f.ctx, obj, metav1.CreateOptions{}); err != nil {
		return "refused: " + err.Error()
	}
	for _, m := range fc.members {
		if _, err := f.dyn.Resource(podGVR).Namespace(ns).Create(f.ctx, m, metav1.CreateOptions{}); err != nil {
			return "member refused: " + err.Error()
		}
	}
	defer f.cleanUp(fc)
	return f.waitEnd(fc)
}

// waitEnd waits (90 s at most) for the end of a created case: a job's Succeeded or Failed, every
// member pod of a PodGroup Succeeded; for kinds without an end, what explains them.
func (f *fuzzer) waitEnd(fc *fuzzCase) string {
	obj := fc.obj
	var end string
	_ = wait.PollUntilContextTimeout(f.ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		switch obj.GetKind() {
		case "Queue", "BeamJob":
			end, _ = f.explained(fc)
			return end != "", nil
		case "PodGroup":
			done := 0
			for _, m := range fc.members {
				p, err := f.dyn.Resource(podGVR).Namespace(ns).Get(ctx, m.GetName(), metav1.GetOptions{})
				if err == nil {
					if phase, _, _ := unstructured.NestedString(p.Object, "status", "phase"); phase == "Succeeded" {
						done++
					}
				}
			}
			end = fmt.Sprintf("%d of %d members Succeeded", done, len(fc.members))
			if done == len(fc.members) {
				end = "Succeeded"
			}
			return done == len(fc.members), nil
		}
		cur, err := f.resource(obj).Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		phase, _, _ := unstructured.NestedString(cur.Object, "status", "phase")
		end = "phase " + phase
		if phase == "Succeeded" || phase == "Failed" {
			end = phase
			return true, nil
		}
		return false, nil
	})
	return end
}

// fuzz runs T9K_FUZZ_CASES mutated examples from T9K_FUZZ_SEED.
func (f *fuzzer) fuzz(t *testing.T, seeds map[string][]*unstructured.Unstructured) {
	cases, seed := envInt("T9K_FUZZ_CASES", 240), envInt("T9K_FUZZ_SEED", 1)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	all := make([]*fuzzCase, cases)
	kinds := sortedKeys(seeds)
	for i := range all {
		docs := seeds[kinds[rng.IntN(len(kinds))]]
		all[i] = newCase(rng, i, docs)
	}

	start := time.Now()
	results := make([]outcome, cases)
	var wg sync.WaitGroup
	work := make(chan *fuzzCase)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for fc := range work {
				results[fc.id] = f.run(fc)
			}
		}()
	}
	for _, fc := range all {
		work <- fc
	}
	close(work)
	wg.Wait()

	var accepted, rejected, explained int
	verdicts := map[string]int{}
	var unexplained, unnamed []string
	// A field path (spec.x, metadata.annotations[...], "spec: ..."), a decoder's Go field
	// (ObjectMeta.annotations), or a queue admission refusal, which names the queue and resource.
	fieldRef := regexp.MustCompile(`\b(spec|metadata)(\.|\[|:)|ObjectMeta\.[a-z]|queue "`)
	for _, r := range results {
		switch {
		case r.rejected != nil:
			rejected++
			if os.Getenv("T9K_FUZZ_VERBOSE") != "" {
				t.Logf("case %d %s %v rejected: %.300s", r.c.id, r.c.obj.GetKind(), r.c.mutations, r.rejected)
			}
			if !fieldRef.MatchString(r.rejected.Error()) {
				unnamed = append(unnamed, fmt.Sprintf("case %d %s %v: %v", r.c.id, r.c.obj.GetKind(), r.c.mutations, r.rejected))
			}
		case r.verdict != "":
			accepted++
			explained++
			verdicts[r.c.obj.GetKind()+": "+verdictClass(r.verdict)]++
			if os.Getenv("T9K_FUZZ_VERBOSE") != "" {
				t.Logf("case %d %s %v accepted: %.400s", r.c.id, r.c.obj.GetKind(), r.c.mutations, r.verdict)
			}
		default:
			accepted++
			unexplained = append(unexplained, fmt.Sprintf("case %d %s %v: %s", r.c.id, r.c.obj.GetKind(), r.c.mutations, r.last))
		}
	}
	panics := f.panics()
	normal := f.runToEnd(&fuzzCase{obj: renamed(seeds["GenericJob"][0], "after-fuzz")})
	t.Logf("fuzz: %d cases (seed %d) in %s: %d accepted, %d rejected, %d explained, %d unexplained; %d rejections without a field; %d panics; a normal job afterwards: %s",
		cases, seed, time.Since(start).Round(time.Second), accepted, rejected, explained, len(unexplained), len(unnamed), len(panics), normal)
	for _, k := range sortedKeys(verdicts) {
		t.Logf("  explained by %s: %d", k, verdicts[k])
	}
	for _, u := range unexplained {
		t.Errorf("unexplained: %s", u)
	}
	for _, u := range unnamed {
		t.Errorf("rejection names no field: %s", u)
	}
	for _, p := range panics {
		t.Errorf("panic in a log: %s", p)
	}
	if normal != "Succeeded" {
		t.Errorf("a normal GenericJob after the fuzz ended %q, want Succeeded", normal)
	}
}

// verdictClass drops the object names from a verdict, for counting.
func verdictClass(v string) string {
	if strings.HasPrefix(v, "pod ") {
		return "a pod's PodScheduled=False"
	}
	class, _, _ := strings.Cut(v, ": ")
	return class
}

// example is one file of examples/: its objects in order, the Namespace left out (the setup
// applies it).
type example struct {
	file string
	docs []*unstructured.Unstructured
}

// loadExamples reads every examples/*.yaml, in name order.
func loadExamples(t *testing.T, dir string) []example {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	require.NoError(t, err)
	sort.Strings(files)
	var out []example
	for _, file := range files {
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		ex := example{file: filepath.Base(file)}
		for _, d := range strings.Split(string(data), "\n---\n") {
			u := &unstructured.Unstructured{}
			require.NoError(t, yamlToObject(d, u), file)
			if u.GetKind() != "" && u.GetKind() != "Namespace" {
				ex.docs = append(ex.docs, u)
			}
		}
		require.NotEmpty(t, ex.docs, "%s holds no object", file)
		out = append(out, ex)
	}
	return out
}

// seedsOf picks the fuzz seeds by kind: each job kind, PodGroup (with its member pods) and Queue,
// from the examples that hold that one object. Where several do, the file named after the kind
// (pytorchtrainingjob.yaml rather than debug-mode.yaml) is the seed.
func seedsOf(t *testing.T, examples []example) map[string][]*unstructured.Unstructured {
	out := map[string][]*unstructured.Unstructured{}
	for _, ex := range examples {
		kind := ex.docs[0].GetKind()
		single := true
		for _, d := range ex.docs[1:] {
			single = single && kind == "PodGroup" && d.GetKind() == "Pod"
		}
		if _, taken := out[kind]; !single || taken && ex.file != strings.ToLower(kind)+".yaml" {
			continue
		}
		out[kind] = ex.docs
	}
	require.Len(t, out, 10, "want seeds of the 8 job kinds, PodGroup and Queue: %v", sortedKeys(out))
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// newCase names a copy of the seed fz-<i>, shortens its run to 1s, and mutates it 1–3 times.
func newCase(rng *rand.Rand, i int, docs []*unstructured.Unstructured) *fuzzCase {
	obj := docs[0].DeepCopy()
	name := fmt.Sprintf("fz-%d", i)
	obj.SetName(name)
	fc := &fuzzCase{id: i, obj: obj}
	for _, m := range docs[1:] {
		m = m.DeepCopy()
		m.SetName(strings.Replace(m.GetName(), docs[0].GetName(), name, 1))
		labels := m.GetLabels()
		labels["scheduler.tensorstack.dev/group-name"] = name
		m.SetLabels(labels)
		fc.members = append(fc.members, m)
	}
	// One mutation half the time: enough hostile objects get past the schema to test the
	// controllers and the scheduler, not only validation.
	n := 1
	if r := rng.IntN(10); r >= 8 {
		n = 3
	} else if r >= 5 {
		n = 2
	}
	for ; n > 0; n-- {
		fc.mutations = append(fc.mutations, mutate(rng, obj.Object))
	}
	return fc
}

// run creates a case and, when it is accepted, waits for a state that explains it, then removes
// it with everything it made (no garbage collector runs here).
func (f *fuzzer) run(fc *fuzzCase) outcome {
	obj := fc.obj.DeepCopy()
	_, err := f.resource(obj).Create(f.ctx, obj, metav1.CreateOptions{})
	if err != nil {
		return outcome{c: fc, rejected: err}
	}
	for _, m := range fc.members {
		_, _ = f.dyn.Resource(podGVR).Namespace(ns).Create(f.ctx, m, metav1.CreateOptions{})
	}
	defer f.cleanUp(fc)
	var verdict, last string
	_ = wait.PollUntilContextTimeout(f.ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		verdict, last = f.explained(fc)
		return verdict != "", nil
	})
	return outcome{c: fc, verdict: verdict, last: last}
}

type fuzzer struct {
	ctx context.Context
	dyn dynamic.Interface
	c   *localcluster.Cluster
}

func (f *fuzzer) resource(obj *unstructured.Unstructured) dynamic.ResourceInterface {
	gvk := obj.GroupVersionKind()
	plural := strings.ToLower(gvk.Kind) + "s"
	r := f.dyn.Resource(gvk.GroupVersion().WithResource(plural))
	if gvk.Kind == "Queue" {
		return r.Namespace("t9k-system")
	}
	return r.Namespace(ns)
}

func (f *fuzzer) cleanUp(fc *fuzzCase) {
	zero := int64(0)
	del := metav1.DeleteOptions{GracePeriodSeconds: &zero}
	_ = f.resource(fc.obj).Delete(f.ctx, fc.obj.GetName(), del)
	_ = f.dyn.Resource(pgGVR).Namespace(ns).Delete(f.ctx, fc.obj.GetName(), del)
	for _, sel := range []string{"tensorstack.dev/owner-name=" + fc.obj.GetName(), "scheduler.tensorstack.dev/group-name=" + fc.obj.GetName()} {
		_ = f.dyn.Resource(podGVR).Namespace(ns).DeleteCollection(f.ctx, del, metav1.ListOptions{LabelSelector: sel})
	}
}

// explained returns what explains the object's state, or "" and a description of the state.
// Explained: a job running, finished or paused; a condition that says what is wrong (True
// ReplicaFailure or Failed, a False condition with a reason); its PodGroup's reason; a pod the
// scheduler said it cannot place; a PodGroup or Queue with a condition.
func (f *fuzzer) explained(fc *fuzzCase) (string, string) {
	cur, err := f.resource(fc.obj).Get(f.ctx, fc.obj.GetName(), metav1.GetOptions{})
	if err != nil {
		return "", "get: " + err.Error()
	}
	phase, _, _ := unstructured.NestedString(cur.Object, "status", "phase")
	conds, _, _ := unstructured.NestedSlice(cur.Object, "status", "conditions")
	switch cur.GetKind() {
	case "Queue":
		if len(conds) > 0 {
			return "queue conditions", ""
		}
		return "", "no queue conditions"
	case "PodGroup":
		if v := reasonOf(conds); v != "" {
			return v, ""
		}
	default:
		switch phase {
		case "Running", "Succeeded", "Failed", "Paused":
			return "phase " + phase, ""
		}
		if v := reasonOf(conds); v != "" {
			return v, ""
		}
		pg, err := f.dyn.Resource(pgGVR).Namespace(ns).Get(f.ctx, fc.obj.GetName(), metav1.GetOptions{})
		if err == nil {
			pconds, _, _ := unstructured.NestedSlice(pg.Object, "status", "conditions")
			if v := reasonOf(pconds); v != "" {
				return "PodGroup " + v, ""
			}
		}
	}
	// A pod the scheduler could not place says why in its PodScheduled condition.
	for _, p := range f.podsOf(fc.obj) {
		pconds, _, _ := unstructured.NestedSlice(p.Object, "status", "conditions")
		for _, c := range pconds {
			m, _ := c.(map[string]any)
			if m["type"] == "PodScheduled" && m["status"] == "False" && m["message"] != "" {
				return "pod " + p.GetName() + " unschedulable", ""
			}
		}
	}
	return "", fmt.Sprintf("phase %q, conditions %v", phase, conds)
}

// reasonOf finds a condition that explains a wait or a failure: a True ReplicaFailure/Failed/
// Completed or a False condition with a reason, other than the "all is well so far" ones.
func reasonOf(conds []any) string {
	for _, c := range conds {
		m, _ := c.(map[string]any)
		typ, status, reason := fmt.Sprint(m["type"]), fmt.Sprint(m["status"]), fmt.Sprint(m["reason"])
		switch {
		case status == "True" && (typ == "ReplicaFailure" || typ == "Failed" || typ == "Completed" || typ == "GroupScheduled"):
			return typ + "=" + reason + ": " + fmt.Sprint(m["message"])
		case status == "False" && reason != "" && reason != "<nil>" && reason != "PodsNotCreated" && reason != "Scheduling":
			return typ + "=False " + reason
		}
	}
	return ""
}

// panics lists the log lines of every process that report a panic.
func (f *fuzzer) panics() []string {
	logs, _ := filepath.Glob(filepath.Join(f.c.Dir, "logs", "*.log"))
	var out []string
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, "panic:") || strings.Contains(line, "Observed a panic") {
				out = append(out, filepath.Base(l)+": "+line)
			}
		}
	}
	return out
}

func renamed(u *unstructured.Unstructured, name string) *unstructured.Unstructured {
	u = u.DeepCopy()
	u.SetName(name)
	return u
}
