/*
Copyright 2026 The t9k Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package deviceplugin_test

import (
	"context"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/deviceplugin"
	"github.com/tensorstack/t9k/pkg/device/deviceplugin/kubelettest"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
)

const wait = 10 * time.Second

// machine discovers a fixture and keeps its XID watch running for the test.
func machine(t *testing.T, fixture string) (*fixtures.Machine, *device.Discoverer, v1.NodeDevicesStatus) {
	t.Helper()
	m, err := fixtures.New(fixture, fixtures.Options{Seed: "node-a"})
	require.NoError(t, err)
	dir := t.TempDir()
	require.NoError(t, m.Sysfs.Write(dir))
	disc := device.NewDiscoverer(device.Options{NVML: m.NVML, SysfsRoot: dir, Fixture: fixture})
	disc.Init()
	t.Cleanup(disc.Shutdown)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = device.WatchXIDs(ctx, disc.NVML(), disc.Health()) }()
	t.Cleanup(func() { cancel(); <-done })
	return m, disc, disc.Discover()
}

// fakePods is a PodAssigner holding one annotated pod until it is marked.
type fakePods struct {
	mu     sync.Mutex
	pod    *deviceplugin.Assignment
	marked []string
}

func (f *fakePods) Candidate(_ context.Context, resource string, size int) (*deviceplugin.Assignment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pod == nil || len(f.pod.GPUs) != size || resource != deviceplugin.DefaultResourceName {
		return nil, nil
	}
	return f.pod, nil
}

func (f *fakePods) MarkAssigned(_ context.Context, a *deviceplugin.Assignment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.marked = append(f.marked, a.Key())
	f.pod = nil
	return nil
}

func startPlugin(t *testing.T, o deviceplugin.Options, gpus []v1.GPU) *deviceplugin.Plugin {
	t.Helper()
	o.CheckInterval = 100 * time.Millisecond
	p := deviceplugin.New(o)
	p.SetDevices(gpus)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); assert.NoError(t, p.Run(ctx)) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func uuids(st v1.NodeDevicesStatus, idx ...int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, st.GPUs[i].UUID)
	}
	return out
}

func indicesOf(st v1.NodeDevicesStatus, ids []string) []int {
	var out []int
	for _, id := range ids {
		out = append(out, slices.IndexFunc(st.GPUs, func(g v1.GPU) bool { return g.UUID == id }))
	}
	slices.Sort(out)
	return out
}

// TestPluginWithFakeKubelet goes through what the kubelet's device manager does: registration,
// ListAndWatch with a health change from an injected XID, GetPreferredAllocation and Allocate for an
// annotated pod, and re-registration after a kubelet restart.
func TestPluginWithFakeKubelet(t *testing.T) {
	m, disc, st := machine(t, "dgx-h100")
	dir := kubelettest.ShortTempDir(t)
	kubelet := kubelettest.Start(t, dir)
	pods := &fakePods{}
	startPlugin(t, deviceplugin.Options{PluginDir: dir, Health: disc.Health(), Pods: pods}, st.GPUs)

	reg := kubelet.WaitRegistration(t, wait)
	assert.Equal(t, pluginapi.Version, reg.Version)
	assert.Equal(t, "nvidia.com/gpu", reg.ResourceName)
	assert.Equal(t, "t9k-nvidia-com-gpu.sock", reg.Endpoint)
	assert.True(t, reg.Options.GetPreferredAllocationAvailable)
	assert.False(t, reg.Options.PreStartRequired)

	ctx := context.Background()
	c := kubelet.Dial(t, reg.Endpoint)
	opts, err := c.GetDevicePluginOptions(ctx, &pluginapi.Empty{})
	require.NoError(t, err)
	assert.True(t, opts.GetPreferredAllocationAvailable)

	stream, err := c.ListAndWatch(ctx, &pluginapi.Empty{})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	require.Len(t, first.Devices, 8)
	for i, d := range first.Devices {
		assert.Equal(t, st.GPUs[i].UUID, d.ID)
		assert.Equal(t, pluginapi.Healthy, d.Health)
		assert.Equal(t, int64(i/4), d.Topology.Nodes[0].ID, "DGX H100: GPUs 0-3 on NUMA 0, 4-7 on 1")
	}

	// XID 79 (fallen off the bus) on GPU 3 reaches the kubelet without waiting for a resync.
	require.Eventually(t, func() bool { return m.InjectXID(3, 79) }, wait, 10*time.Millisecond, "XID watch not registered")
	next, err := stream.Recv()
	require.NoError(t, err)
	for i, d := range next.Devices {
		want := pluginapi.Healthy
		if i == 3 {
			want = pluginapi.Unhealthy
		}
		assert.Equal(t, want, d.Health, "GPU %d", i)
	}

	// The scheduler annotated GPUs 5 and 7 on the pod being admitted.
	all := uuids(st, 0, 1, 2, 4, 5, 6, 7)
	pods.pod = &deviceplugin.Assignment{Namespace: "ns", Name: "train-0",
		GPUs: []v1.GPURef{{Index: 5, UUID: st.GPUs[5].UUID}, {Index: 7, UUID: st.GPUs[7].UUID}}}
	pref, err := c.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: all, AllocationSize: 2}}})
	require.NoError(t, err)
	assert.Equal(t, uuids(st, 5, 7), pref.ContainerResponses[0].DeviceIDs)
	assert.Empty(t, pods.marked, "GetPreferredAllocation does not mark")

	// Even if the kubelet picked others, the container gets the scheduler's GPUs and the pod is marked.
	alloc, err := c.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{
		{DevicesIds: uuids(st, 0, 1)}}})
	require.NoError(t, err)
	assert.Equal(t, st.GPUs[5].UUID+","+st.GPUs[7].UUID, alloc.ContainerResponses[0].Envs["NVIDIA_VISIBLE_DEVICES"])
	assert.Empty(t, alloc.ContainerResponses[0].Devices, "no device nodes in fixture mode")
	assert.Equal(t, []string{"ns/train-0"}, pods.marked)

	// No annotated pod: the kubelet's devices are used as given.
	alloc, err = c.Allocate(ctx, &pluginapi.AllocateRequest{ContainerRequests: []*pluginapi.ContainerAllocateRequest{
		{DevicesIds: uuids(st, 0, 1)}}})
	require.NoError(t, err)
	assert.Equal(t, st.GPUs[0].UUID+","+st.GPUs[1].UUID, alloc.ContainerResponses[0].Envs["NVIDIA_VISIBLE_DEVICES"])

	// Fallback: four GPUs from the healthy ones stay on one socket (NVSwitch makes every pair NV18;
	// PCIe decides). GPU 3 is unhealthy, so the kubelet does not offer it.
	pref, err = c.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
		{AvailableDeviceIDs: all, AllocationSize: 4}}})
	require.NoError(t, err)
	assert.Equal(t, []int{4, 5, 6, 7}, indicesOf(st, pref.ContainerResponses[0].DeviceIDs))

	// The kubelet restarts: it wipes the directory (our socket too) and creates kubelet.sock anew.
	kubelet.Restart(t)
	reg2 := kubelet.WaitRegistration(t, wait)
	assert.Equal(t, reg.Endpoint, reg2.Endpoint)
	c2 := kubelet.Dial(t, reg2.Endpoint)
	stream2, err := c2.ListAndWatch(ctx, &pluginapi.Empty{})
	require.NoError(t, err)
	again, err := stream2.Recv()
	require.NoError(t, err)
	require.Len(t, again.Devices, 8)
	assert.Equal(t, pluginapi.Unhealthy, again.Devices[3].Health, "health survives the re-registration")
}

// TestPreferredAllocationTopology checks the no-annotation choice on NVLink-bridged pairs.
func TestPreferredAllocationTopology(t *testing.T) {
	_, disc, st := machine(t, "pcie-a100-bridged")
	dir := kubelettest.ShortTempDir(t)
	kubelet := kubelettest.Start(t, dir)
	startPlugin(t, deviceplugin.Options{PluginDir: dir, Health: disc.Health()}, st.GPUs)
	c := kubelet.Dial(t, kubelet.WaitRegistration(t, wait).Endpoint)
	ctx := context.Background()

	prefer := func(available, must []string, size int) []int {
		t.Helper()
		r, err := c.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{
			{AvailableDeviceIDs: available, MustIncludeDeviceIDs: must, AllocationSize: int32(size)}}})
		require.NoError(t, err)
		return indicesOf(st, r.ContainerResponses[0].DeviceIDs)
	}
	// GPU 0 taken: a whole bridged pair, not GPU 1 (whose partner is gone), which is left for a 1-GPU pod.
	assert.Equal(t, []int{2, 3}, prefer(uuids(st, 1, 2, 3, 4, 5, 6, 7), nil, 2))
	// GPU 1 taken and 6 must be included (an init container holds it): its partner 7.
	assert.Equal(t, []int{6, 7}, prefer(uuids(st, 0, 2, 3, 4, 5, 6, 7), uuids(st, 6), 2))
	// Four GPUs: two bridged pairs on one socket.
	assert.Equal(t, []int{4, 5, 6, 7}, prefer(uuids(st, 1, 2, 4, 5, 6, 7), nil, 4))
	// Single GPU: the orphan of a broken pair, keeping pairs whole.
	assert.Equal(t, []int{1}, prefer(uuids(st, 1, 2, 3, 4, 5, 6, 7), nil, 1))
}

// TestDeviceSpecs: device nodes by NVML minor number, for real GPUs.
func TestDeviceSpecs(t *testing.T) {
	m, _, st := machine(t, "pcie-l40s")
	devRoot := t.TempDir()
	specs := deviceplugin.NVMLDeviceSpecs(m.NVML, devRoot)([]v1.GPU{st.GPUs[1]})
	require.Len(t, specs, 1, "no control devices exist under the fake /dev")
	assert.Equal(t, "/dev/nvidia1", specs[0].ContainerPath)
	assert.Equal(t, devRoot+"/nvidia1", specs[0].HostPath)
	assert.Equal(t, "rw", specs[0].Permissions)
}

// TestPluginWaitsForKubelet: started before the kubelet (no directory, then no kubelet.sock), the
// plugin registers as soon as the kubelet is there, by polling when the directory could not be watched.
func TestPluginWaitsForKubelet(t *testing.T) {
	_, _, st := machine(t, "pcie-l40s")
	dir := kubelettest.ShortTempDir(t) + "/dp"
	startPlugin(t, deviceplugin.Options{PluginDir: dir}, st.GPUs)
	time.Sleep(300 * time.Millisecond)
	require.NoError(t, os.Mkdir(dir, 0o755))
	time.Sleep(300 * time.Millisecond)
	kubelet := kubelettest.Start(t, dir)
	reg := kubelet.WaitRegistration(t, wait)
	stream, err := kubelet.Dial(t, reg.Endpoint).ListAndWatch(context.Background(), &pluginapi.Empty{})
	require.NoError(t, err)
	first, err := stream.Recv()
	require.NoError(t, err)
	assert.Len(t, first.Devices, len(st.GPUs))
}
