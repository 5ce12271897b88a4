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

package device_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/dgxh100"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
)

// captureKlog sends klog output to a buffer for the test's duration.
func captureKlog(t *testing.T) *bytes.Buffer {
	t.Helper()
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	require.NoError(t, fs.Set("logtostderr", "false"))
	require.NoError(t, fs.Set("alsologtostderr", "false"))
	var buf bytes.Buffer
	klog.SetOutput(&buf)
	t.Cleanup(func() {
		klog.SetOutput(nil)
		_ = fs.Set("logtostderr", "true")
	})
	return &buf
}

func TestNoDriver(t *testing.T) {
	// A real NVML handle on this machine, which has no libnvidia-ml: Init must fail softly.
	for name, lib := range map[string]nvml.Interface{"real nvml.New()": nvml.New(), "no library": nil} {
		t.Run(name, func(t *testing.T) {
			logs := captureKlog(t)
			m, err := fixtures.New("dgx-h100", fixtures.Options{})
			require.NoError(t, err)
			root := t.TempDir()
			require.NoError(t, m.Sysfs.Write(root)) // the NICs are still there

			d := device.NewDiscoverer(device.Options{NVML: lib, SysfsRoot: root})
			d.Init()
			defer d.Shutdown()
			st := d.Discover()
			klog.Flush()

			assert.Empty(t, st.GPUs)
			assert.Equal(t, int32(0), st.GPUCount)
			assert.Equal(t, int32(12), st.NICCount, "NICs are published without a driver")
			assert.Len(t, st.GPUs, 0)
			for _, g := range st.GPUs {
				assert.Empty(t, g.NICs)
			}
			assert.Equal(t, []metav1.Condition{{Type: v1.ConditionNVMLAvailable, Status: metav1.ConditionFalse,
				Reason: "NVMLNotFound", Message: "NVML library not found: no NVIDIA driver on this node"}}, st.Conditions)
			assert.Equal(t, 1, strings.Count(logs.String(), "NVML library not found: no NVIDIA driver on this node"), logs.String())
			assert.Nil(t, d.NVML())
		})
	}
}

func TestInitFailure(t *testing.T) {
	lib := &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED }}
	d := device.NewDiscoverer(device.Options{NVML: lib, SysfsRoot: t.TempDir()})
	d.Init()
	st := d.Discover()
	assert.Empty(t, st.GPUs)
	require.Len(t, st.Conditions, 1)
	assert.Equal(t, metav1.ConditionFalse, st.Conditions[0].Status)
	assert.Equal(t, v1.ReasonNVMLInitFailed, st.Conditions[0].Reason)
	assert.Contains(t, st.Conditions[0].Message, "ERROR_DRIVER_NOT_LOADED")
}

func TestHealthForXID(t *testing.T) {
	for _, xid := range []uint64{48, 63, 64, 74, 79} {
		h, critical := device.HealthForXID(xid)
		assert.True(t, critical, "XID %d", xid)
		assert.False(t, h.Healthy)
		assert.NotEmpty(t, h.Reason)
		assert.NotEmpty(t, h.Message)
	}
	h, _ := device.HealthForXID(79)
	assert.Equal(t, v1.GPUHealth{Healthy: false, Reason: "XID79", Message: "XID 79: GPU has fallen off the bus"}, h)
	for _, xid := range []uint64{13, 31, 43, 45, 68} { // application errors
		h, critical := device.HealthForXID(xid)
		assert.False(t, critical, "XID %d", xid)
		assert.True(t, h.Healthy)
	}
}

func TestXIDEventMakesGPUUnhealthy(t *testing.T) {
	m, err := fixtures.New("dgx-h100", fixtures.Options{})
	require.NoError(t, err)
	st, d := discover(t, m)
	for _, g := range st.GPUs {
		require.True(t, g.Health.Healthy)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- device.WatchXIDs(ctx, d.NVML(), d.Health()) }()
	require.Eventually(t, func() bool { return m.InjectXID(3, 13) }, 5*time.Second, 10*time.Millisecond)
	require.True(t, m.InjectXID(3, 79))
	select {
	case <-d.Health().Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("no health change after XID 79")
	}
	cancel()
	require.NoError(t, <-done)

	st = d.Discover()
	for _, g := range st.GPUs {
		if g.Index == 3 {
			assert.Equal(t, v1.GPUHealth{Healthy: false, Reason: "XID79", Message: "XID 79: GPU has fallen off the bus"}, g.Health)
		} else {
			assert.True(t, g.Health.Healthy, "GPU %d", g.Index)
		}
	}
}

func TestMIGDevices(t *testing.T) {
	m, err := fixtures.New("hgx-a100", fixtures.Options{})
	require.NoError(t, err)
	dev := m.Device(2)
	_, ret := dev.SetMigMode(nvml.DEVICE_MIG_ENABLE)
	require.Equal(t, nvml.SUCCESS, ret)
	for _, p := range []int{nvml.GPU_INSTANCE_PROFILE_3_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE, nvml.GPU_INSTANCE_PROFILE_1_SLICE} {
		info, ret := dev.GetGpuInstanceProfileInfo(p)
		require.Equal(t, nvml.SUCCESS, ret)
		gi, ret := dev.CreateGpuInstance(&info)
		require.Equal(t, nvml.SUCCESS, ret)
		ci, ret := gi.GetComputeInstanceProfileInfo(nvml.COMPUTE_INSTANCE_PROFILE_1_SLICE, nvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
		require.Equal(t, nvml.SUCCESS, ret)
		_, ret = gi.CreateComputeInstance(&ci)
		require.Equal(t, nvml.SUCCESS, ret)
	}
	st, _ := discover(t, m)
	// A100 80GB profiles as NVIDIA names them: 3g.40gb, 1g.10gb.
	require.NotNil(t, st.GPUs[2].MIG)
	migs := st.GPUs[2].MIG.Devices
	require.Len(t, migs, 3)
	for _, md := range migs {
		require.Len(t, md.UUIDs, 1)
		assert.Regexp(t, `^MIG-[0-9a-f-]{36}$`, md.UUIDs[0])
	}
	assert.Equal(t, &v1.GPUMIG{Mode: v1.MIGEnabled, Devices: []v1.MIGDevice{
		{Profile: "3g.40gb", GPUInstanceID: 0, MemoryMiB: 40192, ComputeInstances: 1, UUIDs: migs[0].UUIDs},
		{Profile: "1g.10gb", GPUInstanceID: 1, MemoryMiB: 9856, ComputeInstances: 1, UUIDs: migs[1].UUIDs},
		{Profile: "1g.10gb", GPUInstanceID: 2, MemoryMiB: 9856, ComputeInstances: 1, UUIDs: migs[2].UUIDs},
	}}, st.GPUs[2].MIG)
	assert.Equal(t, &v1.GPUMIG{Mode: v1.MIGDisabled}, st.GPUs[0].MIG)

	// Without MIG device handles (older drivers, or go-nvml's bare mock) the GPU instances are
	// enumerated instead: same devices, no UUIDs.
	dev.GetMaxMigDeviceCountFunc = nil
	st, _ = discover(t, m)
	assert.Equal(t, &v1.GPUMIG{Mode: v1.MIGEnabled, Devices: []v1.MIGDevice{
		{Profile: "3g.40gb", GPUInstanceID: 0, MemoryMiB: 40192, ComputeInstances: 1},
		{Profile: "1g.10gb", GPUInstanceID: 1, MemoryMiB: 9856, ComputeInstances: 1},
		{Profile: "1g.10gb", GPUInstanceID: 2, MemoryMiB: 9856, ComputeInstances: 1},
	}}, st.GPUs[2].MIG)
}

// A bare go-nvml mock leaves every topology call nil (they panic): discovery must survive with what
// it can read, and the XID watcher must return an error rather than crash.
func TestBareMockDoesNotCrash(t *testing.T) {
	d := device.NewDiscoverer(device.Options{NVML: dgxh100.New(), SysfsRoot: t.TempDir()})
	d.Init()
	st := d.Discover()
	require.Len(t, st.GPUs, 8)
	assert.Equal(t, "NVIDIA-H100-80GB-HBM3", st.GPUProduct)
	assert.Equal(t, int64(81920), st.GPUs[0].MemoryMiB)
	assert.Nil(t, st.GPUs[0].NVLink)
	assert.Equal(t, int32(-1), st.GPUs[0].NUMANode)
	assert.Error(t, device.WatchXIDs(context.Background(), dgxh100.New(), device.NewHealthTracker()))
}

// On a driver that lacks newer symbols they are never called (calling one kills the process); the
// NVSwitch is then recognised by its remote PCI address not being a local GPU.
func TestMissingSymbolsAreNotCalled(t *testing.T) {
	m, err := fixtures.New("gb200-nvl72", fixtures.Options{})
	require.NoError(t, err)
	srv := m.NVML.(*server.Server)
	srv.LookupSymbolFunc = func(sym string) error {
		switch sym {
		case "nvmlDeviceGetGpuFabricInfo", "nvmlDeviceGetNvLinkRemoteDeviceType":
			return errors.New("undefined symbol: " + sym)
		}
		return nil
	}
	for i := 0; i < 4; i++ {
		dev := m.Device(i)
		dev.GetGpuFabricInfoFunc = func() (nvml.GpuFabricInfo, nvml.Return) {
			t.Error("GetGpuFabricInfo called although the symbol is missing")
			return nvml.GpuFabricInfo{}, nvml.ERROR_FUNCTION_NOT_FOUND
		}
		dev.GetNvLinkRemoteDeviceTypeFunc = func(int) (nvml.IntNvLinkDeviceType, nvml.Return) {
			t.Error("GetNvLinkRemoteDeviceType called although the symbol is missing")
			return 0, nvml.ERROR_FUNCTION_NOT_FOUND
		}
	}
	st, _ := discover(t, m)
	require.Len(t, st.GPUs, 4)
	assert.Empty(t, st.Clique)
	assert.Equal(t, &v1.GPUNVLink{Version: 5, ActiveLinks: 18, NVSwitchDomain: "node", Peers: []v1.NVLinkPeer{
		{Index: 1, Links: 18, Via: v1.NVLinkViaNVSwitch}, {Index: 2, Links: 18, Via: v1.NVLinkViaNVSwitch}, {Index: 3, Links: 18, Via: v1.NVLinkViaNVSwitch},
	}}, st.GPUs[0].NVLink)
}
