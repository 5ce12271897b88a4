package scheduler

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// apiserver stands in for kube-apiserver's pods/status endpoint: it logs each PATCH as
// "pod:message" and holds the ones whose message has a closed-later gate. (A fake clientset
// would run the requests one at a time.)
type apiserver struct {
	mu      sync.Mutex
	patches []string
	gates   map[string]chan struct{}
}

func (a *apiserver) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(r.URL.Path, "/") // /api/v1/namespaces/<ns>/pods/<name>/status
	if r.Method != http.MethodPatch || len(parts) != 8 || parts[7] != "status" {
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var p v1.Pod
	_ = json.Unmarshal(body, &p)
	msg := ""
	for _, c := range p.Status.Conditions {
		msg = c.Message
	}
	a.mu.Lock()
	g := a.gates[msg]
	a.mu.Unlock()
	if g != nil {
		<-g
	}
	a.mu.Lock()
	a.patches = append(a.patches, parts[6]+":"+msg)
	a.mu.Unlock()
	_ = json.NewEncoder(w).Encode(&v1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Name: parts[6], Namespace: parts[4]}})
}

func (a *apiserver) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.patches...)
}

// clientFramework is a framework.Framework that only has a client.
type clientFramework struct {
	framework.Framework
	cs kubernetes.Interface
}

func (c clientFramework) ClientSet() kubernetes.Interface { return c.cs }

// handled records what the framework's handler (next) was given.
type handled struct {
	mu    sync.Mutex
	calls []string // "pod:message the pod already carries"
}

func (h *handled) next(_ context.Context, _ framework.Framework, pi *framework.QueuedPodInfo, _ *fwk.Status, _ *framework.NominatingInfo, _ time.Time) {
	msg := ""
	for _, c := range pi.Pod.Status.Conditions {
		msg = c.Message
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, pi.Pod.Name+":"+msg)
}

func (h *handled) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.calls...)
}

func newFailureEnv(t *testing.T, slots int, gates map[string]chan struct{}) (*failuresBeside, *handled, *apiserver, framework.Framework) {
	a := &apiserver{gates: gates}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(func() {
		for _, g := range gates {
			select {
			case <-g:
			default:
				close(g)
			}
		}
		srv.Close()
	})
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, QPS: -1})
	require.NoError(t, err)
	h := &handled{}
	return newFailuresBeside(h.next, slots), h, a, clientFramework{cs: cs}
}

func qpod(name, nominated string) *framework.QueuedPodInfo {
	pod := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID(name)}}
	pod.Status.NominatedNodeName = nominated
	return &framework.QueuedPodInfo{PodInfo: &framework.PodInfo{Pod: pod}}
}

func unschedulable(msg string) *fwk.Status { return fwk.NewStatus(fwk.Unschedulable, msg) }

// returnsSoon fails the test when call does not return within a second.
func returnsSoon(t *testing.T, call func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { call(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("the failure's PATCH was made in the loop: handle did not return")
	}
}

func TestFailurePatchesBesideTheLoop(t *testing.T) {
	gates := map[string]chan struct{}{"first": make(chan struct{})}
	f, h, api, fw := newFailureEnv(t, 2, gates)
	clear := &framework.NominatingInfo{NominatingMode: framework.ModeOverride}

	// The framework's handler runs in the loop on a pod that already carries the condition (so
	// it writes nothing); the PATCH, held by the apiserver, does not hold the loop, and outlives
	// the attempt's context.
	ctx, cancel := context.WithCancel(context.Background())
	returnsSoon(t, func() { f.handle(ctx, fw, qpod("a", ""), unschedulable("first"), clear, time.Now()) })
	cancel()
	require.Equal(t, []string{"a:first"}, h.got())

	// The pod's second PATCH waits for its first: its condition ends with the latest message.
	returnsSoon(t, func() { f.handle(context.Background(), fw, qpod("a", ""), unschedulable("second"), nil, time.Now()) })
	// Another pod's is not held behind them.
	returnsSoon(t, func() { f.handle(context.Background(), fw, qpod("b", ""), unschedulable("b"), nil, time.Now()) })
	require.Equal(t, []string{"a:first", "a:second", "b:b"}, h.got())
	require.Eventually(t, func() bool { return len(api.got()) == 1 }, 5*time.Second, time.Millisecond)
	require.Never(t, func() bool { return len(api.got()) > 1 }, 100*time.Millisecond, time.Millisecond, "a's second PATCH went before its first ended")
	require.Equal(t, []string{"b:b"}, api.got())
	close(gates["first"])
	require.Eventually(t, func() bool { return len(api.got()) == 3 }, 5*time.Second, time.Millisecond)
	require.Equal(t, []string{"b:b", "a:first", "a:second"}, api.got())
	require.Eventually(t, func() bool { f.mu.Lock(); defer f.mu.Unlock(); return len(f.last) == 0 }, 5*time.Second, time.Millisecond)

	// A pod that already carries the condition: nothing to write, by either.
	carries := qpod("c", "")
	carries.Pod.Status.Conditions = []v1.PodCondition{*failedCondition(carries.Pod, unschedulable("same"))}
	f.handle(context.Background(), fw, carries, unschedulable("same"), nil, time.Now())
	require.Never(t, func() bool { return len(api.got()) > 3 }, 100*time.Millisecond, time.Millisecond, "a PATCH that changes nothing")
}

func TestFailuresThatNominateAreLeftToTheFramework(t *testing.T) {
	gates := map[string]chan struct{}{"first": make(chan struct{})}
	f, h, api, fw := newFailureEnv(t, 2, gates)
	returnsSoon(t, func() { f.handle(context.Background(), fw, qpod("p", ""), unschedulable("first"), nil, time.Now()) })
	// p's next failure nominates a node: the framework's handler gets the pod as it is (it
	// writes the condition and nomination itself), and only after p's earlier PATCH has ended.
	returned := make(chan struct{})
	go func() {
		f.handle(context.Background(), fw, qpod("p", ""), unschedulable("nominated"),
			&framework.NominatingInfo{NominatedNodeName: "n1", NominatingMode: framework.ModeOverride}, time.Now())
		close(returned)
	}()
	select {
	case <-returned:
		t.Fatal("the nominating failure did not wait for the pod's earlier PATCH")
	case <-time.After(50 * time.Millisecond):
	}
	close(gates["first"])
	<-returned
	require.Equal(t, []string{"p:first", "p:"}, h.got())
	require.Equal(t, []string{"p:first"}, api.got())

	// A pod that carries a nomination is left to the framework too.
	f.handle(context.Background(), fw, qpod("q", "n2"), unschedulable("q"), nil, time.Now())
	require.Equal(t, []string{"p:first", "p:", "q:"}, h.got())
	require.Never(t, func() bool { return len(api.got()) > 1 }, 100*time.Millisecond, time.Millisecond)
}

func TestFailurePatchInTheLoopWhenSlotsAreBusy(t *testing.T) {
	gate := make(chan struct{})
	f, _, api, fw := newFailureEnv(t, 2, map[string]chan struct{}{"x": gate, "y": gate})
	for _, name := range []string{"x", "y"} {
		returnsSoon(t, func() { f.handle(context.Background(), fw, qpod(name, ""), unschedulable(name), nil, time.Now()) })
	}
	// Both slots are taken: the third PATCH is made in the loop, before handle returns.
	f.handle(context.Background(), fw, qpod("z", ""), unschedulable("z"), nil, time.Now())
	require.Equal(t, []string{"z:z"}, api.got())
	close(gate)
	require.Eventually(t, func() bool { return len(api.got()) == 3 }, 5*time.Second, time.Millisecond)
}
