package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/deviceplugin"
	"github.com/tensorstack/t9k/pkg/device/deviceplugin/kubelettest"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
)

const dpWait = 15 * time.Second

// gpuPod is a pod bound to node asking for len(gpus) GPUs, with the scheduler's annotation when
// gpus is not nil.
func gpuPod(ns, name, node string, n int, gpus []devicev1.GPURef) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "main", Image: "busybox",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse(fmt.Sprint(n))}}}}},
	}
	if gpus != nil {
		p.Annotations = map[string]string{devicev1.AnnotationGPUs: devicev1.FormatGPUAnnotation(gpus)}
	}
	return p
}

func refs(st devicev1.NodeDevicesStatus, idx ...int) []devicev1.GPURef {
	var out []devicev1.GPURef
	for _, i := range idx {
		out = append(out, devicev1.GPURef{Index: st.GPUs[i].Index, UUID: st.GPUs[i].UUID})
	}
	return out
}

func ids(st devicev1.NodeDevicesStatus, idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, st.GPUs[i].UUID)
	}
	return out
}

// TestDevicePlugin drives the device plugin through a fake kubelet while the pods live on a real
// apiserver: the oldest unassigned pod whose annotation matches the request gets exactly its
// annotated GPUs and is marked; pods on other nodes, already assigned ones and other sizes are
// skipped; with no annotated pod left the choice comes from pkg/topology.
func TestDevicePlugin(t *testing.T) {
	cp := startControlPlane(t)
	ctx := context.Background()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	c, err := client.New(cp.Config, client.Options{Scheme: s})
	require.NoError(t, err)

	const node, ns = "gpu-node", "dp"
	require.NoError(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	m, err := fixtures.New("dgx-h100", fixtures.Options{Seed: node})
	require.NoError(t, err)
	sys := t.TempDir()
	require.NoError(t, m.Sysfs.Write(sys))
	disc := device.NewDiscoverer(device.Options{NVML: m.NVML, SysfsRoot: sys, Fixture: "dgx-h100"})
	disc.Init()
	defer disc.Shutdown()
	st := disc.Discover()

	// Created oldest first, a second apart (creationTimestamp has whole seconds).
	done := gpuPod(ns, "done", node, 2, refs(st, 0, 3))
	done.Annotations[deviceplugin.AnnotationAssigned] = "true"
	for _, p := range []*corev1.Pod{
		done,
		gpuPod(ns, "elsewhere", "other-node", 2, refs(st, 0, 3)),
		gpuPod(ns, "old", node, 2, refs(st, 5, 7)),
	} {
		require.NoError(t, c.Create(ctx, p))
	}
	waitPastSecond(done.CreationTimestamp)
	for _, p := range []*corev1.Pod{
		gpuPod(ns, "new", node, 2, refs(st, 1, 2)),
		gpuPod(ns, "single", node, 1, refs(st, 6)),
		gpuPod(ns, "plain", node, 2, nil),
	} {
		require.NoError(t, c.Create(ctx, p))
	}

	dir := kubelettest.ShortTempDir(t)
	kubelet := kubelettest.Start(t, dir)
	p := deviceplugin.New(deviceplugin.Options{PluginDir: dir, Health: disc.Health(), CheckInterval: 200 * time.Millisecond,
		Pods: &deviceplugin.KubePods{Client: c, NodeName: node}})
	p.SetDevices(st.GPUs)
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() { defer close(stopped); assert.NoError(t, p.Run(runCtx)) }()
	defer func() { cancel(); <-stopped }()
	reg := kubelet.WaitRegistration(t, dpWait)
	assert.Equal(t, "nvidia.com/gpu", reg.ResourceName)
	dp := kubelet.Dial(t, reg.Endpoint)

	free := ids(st, 0, 1, 2, 3, 4, 5, 6, 7)
	admit := func(size int, wantPreferred []string) []string {
		t.Helper()
		pref, err := dp.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
			{AvailableDeviceIDs: free, AllocationSize: int32(size)}}})
		require.NoError(t, err)
		got := pref.ContainerResponses[0].DeviceIDs
		if wantPreferred != nil {
			assert.Equal(t, wantPreferred, got)
		}
		alloc, err := dp.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: got}}})
		require.NoError(t, err)
		env := alloc.ContainerResponses[0].Envs["NVIDIA_VISIBLE_DEVICES"]
		free = slices.DeleteFunc(free, func(id string) bool { return slices.Contains(got, id) })
		return strings.Split(env, ",")
	}
	assigned := func(name string) bool {
		var pod corev1.Pod
		require.NoError(t, c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &pod))
		return pod.Annotations[deviceplugin.AnnotationAssigned] == "true"
	}

	assert.Equal(t, ids(st, 5, 7), admit(2, ids(st, 5, 7)), "oldest: old")
	assert.True(t, assigned("old"))
	assert.False(t, assigned("new"))
	assert.Equal(t, ids(st, 6), admit(1, ids(st, 6)), "size 1: single")
	assert.Equal(t, ids(st, 1, 2), admit(2, ids(st, 1, 2)), "then new")
	assert.True(t, assigned("new"))
	assert.True(t, assigned("single"))
	assert.False(t, assigned("elsewhere"))

	// Nothing annotated is left: pkg/topology picks among 0, 3, 4 (GPU 4 is the odd one on NUMA 1).
	got := admit(2, nil)
	assert.ElementsMatch(t, ids(st, 0, 3), got, "both on NUMA 0")
	assert.False(t, assigned("plain"), "pods without an annotation are never marked")
}

// TestDeviceAgentBinary runs bin/device-agent in fixture mode against the apiserver and a fake
// kubelet: it registers, lists the fixture's GPUs, hands an annotated pod its GPUs, and serves
// /metrics with the pod's labels on its GPU.
func TestDeviceAgentBinary(t *testing.T) {
	bin := filepath.Join(binDir(t), "device-agent")
	_, err := os.Stat(bin)
	require.NoError(t, err, "build it with make (go build -o bin/device-agent ./cmd/device-agent)")
	cp := startControlPlane(t)
	ctx := context.Background()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, devicev1.AddToScheme(s))
	c, err := client.New(cp.Config, client.Options{Scheme: s})
	require.NoError(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, cp.WriteKubeconfig(kubeconfig))

	const node, ns = "l40s-node", "default"
	require.NoError(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}))
	dir := kubelettest.ShortTempDir(t)
	kubelet := kubelettest.Start(t, dir)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := lis.Addr().String()
	require.NoError(t, lis.Close())

	runCtx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(runCtx, bin, "--node-name", node, "--kubeconfig", kubeconfig, "--fixture", "pcie-l40s",
		"--device-plugin-dir", dir, "--metrics-addr", addr, "--resync", "500ms")
	logf, err := os.Create(filepath.Join(t.TempDir(), "agent.log"))
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logf, logf
	require.NoError(t, cmd.Start())
	defer func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logf.Name())
			t.Logf("device-agent log:\n%s", out)
		}
	}()

	reg := kubelet.WaitRegistration(t, 60*time.Second)
	assert.Equal(t, "nvidia.com/gpu", reg.ResourceName)
	dp := kubelet.Dial(t, reg.Endpoint)
	lw, err := dp.ListAndWatch(ctx, &pluginapi.Empty{})
	require.NoError(t, err)
	first, err := lw.Recv()
	require.NoError(t, err)
	require.Len(t, first.Devices, 8)

	var nd devicev1.NodeDevices
	require.Eventually(t, func() bool { return c.Get(ctx, client.ObjectKey{Name: node}, &nd) == nil }, dpWait, 100*time.Millisecond)
	st := nd.Status
	require.Equal(t, first.Devices[0].ID, st.GPUs[0].UUID, "device IDs are the published UUIDs")

	require.NoError(t, c.Create(ctx, gpuPod(ns, "infer", node, 1, refs(st, 6))))
	alloc, err := dp.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: ids(st, 0)}}})
	require.NoError(t, err)
	assert.Equal(t, st.GPUs[6].UUID, alloc.ContainerResponses[0].Envs["NVIDIA_VISIBLE_DEVICES"])
	assert.Empty(t, alloc.ContainerResponses[0].Devices, "fixture mode passes no device nodes")

	// Metrics carry the pod once the agent's next resync has read the pods.
	var body string
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return strings.Contains(body, `pod="infer"`)
	}, dpWait, 200*time.Millisecond)
	for _, name := range []string{"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP",
		"DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_XID_ERRORS"} {
		assert.Contains(t, body, "# TYPE "+name+" gauge")
	}
	assert.NotContains(t, body, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL{", "L40S has no NVLink")
	assert.Contains(t, body, fmt.Sprintf(`DCGM_FI_DEV_GPU_TEMP{Hostname="%s",UUID="%s",container="main",device="nvidia6",gpu="6",modelName="NVIDIA L40S",namespace="%s",pci_bus_id=`,
		node, st.GPUs[6].UUID, ns))
}
