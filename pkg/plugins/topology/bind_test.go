package topology

import (
	"context"
	"fmt"
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
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	fwk "k8s.io/kube-scheduler/framework"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

// stubHandle answers the two questions Bind and PreBind ask of the framework.
type stubHandle struct {
	framework.Handle
	client kubernetes.Interface
	bind   []string // the profile's Bind plugins, in order
}

func (h stubHandle) ClientSet() kubernetes.Interface { return h.client }
func (h stubHandle) ListPlugins() *schedconfig.Plugins {
	p := &schedconfig.Plugins{}
	for _, n := range h.bind {
		p.Bind.Enabled = append(p.Bind.Enabled, schedconfig.Plugin{Name: n})
	}
	return p
}

// bindSetup reserves 2 GPUs for a pod on n0 and returns the plugin, the cycle state and the fake
// client that records the requests.
func bindSetup(t *testing.T, bindPlugins ...string) (*Topology, fwk.CycleState, *v1.Pod, *fake.Clientset) {
	pod := gpuPod("p", "uid-p", "", 2, "")
	client := fake.NewSimpleClientset(pod.DeepCopy())
	p := &Topology{handle: stubHandle{client: client, bind: bindPlugins}, cache: newGPUCache(levels, gpuRes), resource: gpuRes, prios: groupstate.NewPriorities(),
		bindSlots: make(chan struct{}, maxBindsInFlight)}
	p.cache.upsertNode(testNode("n0", "b0", "s0", 8))
	p.cache.upsertDevices(newDevicesView(pairedDevices("n0")))
	cs := framework.NewCycleState()
	cs.Write(stateKey, &cycle{gpus: 2})
	require.Nil(t, p.Reserve(context.Background(), cs, pod, "n0"))
	client.ClearActions()
	return p, cs, pod, client
}

func verbs(client *fake.Clientset) []string {
	var out []string
	for _, a := range client.Actions() {
		out = append(out, a.GetVerb()+" "+a.GetResource().Resource+"/"+a.GetSubresource())
	}
	return out
}

// As the profile's first Bind plugin, a GPU pod is bound in one request that carries the GPUs.
func TestBindCarriesGPUsInOneWrite(t *testing.T) {
	p, cs, pod, client := bindSetup(t, Name, "DefaultBinder")
	ctx := context.Background()
	require.True(t, p.PreBindPreFlight(ctx, cs, pod, "n0").IsSkip(), "no PreBind patch when we bind")
	require.Nil(t, p.PreBind(ctx, cs, pod, "n0"))
	require.Nil(t, p.Bind(ctx, cs, pod, "n0"))
	require.Equal(t, []string{"create pods/binding"}, verbs(client))
	b := client.Actions()[0].(k8stesting.CreateAction).GetObject().(*v1.Binding)
	require.Equal(t, "n0", b.Target.Name)
	require.Equal(t, pod.UID, b.UID)
	require.Regexp(t, `^[0-7]:GPU-n0-[0-7],[0-7]:GPU-n0-[0-7]$`, b.Annotations[devicev1beta1.AnnotationGPUs])
	require.Contains(t, b.Annotations, devicev1beta1.AnnotationNICs)

	// A pod without GPUs is left to DefaultBinder.
	cpu := framework.NewCycleState()
	cpu.Write(stateKey, &cycle{})
	require.True(t, p.Bind(ctx, cpu, gpuPod("c", "uid-c", "", 0, ""), "n0").IsSkip())
	// A GPU pod with nothing reserved on that node is an error, not a bind without GPUs.
	require.Equal(t, fwk.Error, p.Bind(ctx, cs, pod, "n1").Code())
	require.Len(t, client.Actions(), 1)
}

// When another plugin binds first, PreBind writes the choice with a patch of its own.
func TestPreBindPatchesWhenAnotherPluginBinds(t *testing.T) {
	p, cs, pod, client := bindSetup(t, "DefaultBinder", Name)
	ctx := context.Background()
	require.Nil(t, p.PreBindPreFlight(ctx, cs, pod, "n0"))
	require.Nil(t, p.PreBind(ctx, cs, pod, "n0"))
	require.Equal(t, []string{"patch pods/"}, verbs(client))
	got, err := client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	require.NoError(t, err)
	require.Regexp(t, `^[0-7]:GPU-n0-[0-7],[0-7]:GPU-n0-[0-7]$`, got.Annotations[devicev1beta1.AnnotationGPUs])
}

// However many members Permit lets through at once, at most cap(bindSlots) Binding requests are in
// flight; the others wait their turn and all are bound. (An HTTP server stands in for the
// apiserver: the fake clientset runs its reactors one at a time.)
func TestBindsInFlightAreBounded(t *testing.T) {
	const pods, slots = 8, 3
	var mu sync.Mutex
	inFlight, most, bound := 0, 0, 0
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/binding") {
			http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusBadRequest)
			return
		}
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		<-release
		mu.Lock()
		inFlight--
		bound++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Success"}`))
	}))
	defer srv.Close()
	defer free() // before Close, which waits for the handlers, also when an assertion fails
	client, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL, QPS: -1})
	require.NoError(t, err)
	p := &Topology{handle: stubHandle{client: client, bind: []string{Name}}, cache: newGPUCache(levels, gpuRes), resource: gpuRes, prios: groupstate.NewPriorities(),
		bindSlots: make(chan struct{}, slots)}
	for _, n := range []string{"n0", "n1"} {
		p.cache.upsertNode(testNode(n, "b0", "s0", 8))
		p.cache.upsertDevices(newDevicesView(pairedDevices(n)))
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan *fwk.Status, pods)
	for i := range pods {
		pod := gpuPod(fmt.Sprintf("p%d", i), types.UID(fmt.Sprintf("uid-%d", i)), "", 2, "")
		node := fmt.Sprintf("n%d", i/4)
		cs := framework.NewCycleState()
		cs.Write(stateKey, &cycle{gpus: 2})
		require.Nil(t, p.Reserve(ctx, cs, pod, node))
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- p.Bind(ctx, cs, pod, node)
		}()
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return most >= slots
	}, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond) // a bind that ignored the bound would show up in this time
	mu.Lock()
	atOnce := most
	mu.Unlock()
	require.Equal(t, slots, atOnce, "Binding requests in flight at once")
	free()
	wg.Wait()
	close(errs)
	for st := range errs {
		require.Nil(t, st)
	}
	require.Equal(t, slots, most)
	require.Equal(t, pods, bound)
}
