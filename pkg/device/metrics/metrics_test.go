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

package metrics_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
	"github.com/tensorstack/t9k/pkg/device/metrics"
)

func scrape(t *testing.T, c *metrics.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var p expfmt.TextParser
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err)
	return fams
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.Label {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func value(m *dto.Metric) float64 {
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

// TestMetricsFixture scrapes /metrics of a simulated DGX H100 with one GPU held by a pod and one
// XID seen: dcgm-exporter's names, labels and units.
func TestMetricsFixture(t *testing.T) {
	m, err := fixtures.New("dgx-h100", fixtures.Options{Seed: "node-a"})
	require.NoError(t, err)
	require.Equal(t, nvml.SUCCESS, m.NVML.Init())
	health := device.NewHealthTracker()
	dev, _ := m.NVML.DeviceGetHandleByIndex(2)
	uuid2, _ := dev.GetUUID()
	health.ObserveXID(uuid2, 13) // an application XID: reported, GPU stays healthy

	c := &metrics.Collector{NVML: func() nvml.Interface { return m.NVML }, Hostname: "node-a", Health: health}
	gpus := []v1.GPU{{Index: 2, UUID: uuid2}}
	pod := corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "train-0", Annotations: map[string]string{v1.AnnotationGPUs: "2:" + uuid2}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "sidecar"}, {Name: "worker", Resources: corev1.ResourceRequirements{
			Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}}}}},
	}
	c.SetOwners(metrics.OwnersFromPods([]corev1.Pod{pod}, gpus, "nvidia.com/gpu"))

	fams := scrape(t, c)
	for _, name := range []string{"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_GPU_TEMP",
		"DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"} {
		f, ok := fams[name]
		require.True(t, ok, "missing %s", name)
		require.Len(t, f.Metric, 8, name)
	}
	assert.Equal(t, dto.MetricType_COUNTER, fams["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"].GetType())
	assert.Equal(t, dto.MetricType_GAUGE, fams["DCGM_FI_DEV_GPU_UTIL"].GetType())

	byGPU := func(name, gpu string) *dto.Metric {
		for _, mm := range fams[name].Metric {
			if labels(mm)["gpu"] == gpu {
				return mm
			}
		}
		t.Fatalf("%s: no series for gpu %s", name, gpu)
		return nil
	}
	l := labels(byGPU("DCGM_FI_DEV_GPU_UTIL", "2"))
	assert.Equal(t, map[string]string{"gpu": "2", "UUID": uuid2, "pci_bus_id": "00000000:52:00.0", "device": "nvidia2",
		"modelName": "NVIDIA H100 80GB HBM3", "Hostname": "node-a", "namespace": "team", "pod": "train-0", "container": "worker"}, l)
	l0 := labels(byGPU("DCGM_FI_DEV_GPU_UTIL", "0"))
	assert.Empty(t, l0["pod"], "a free GPU has no pod")

	assert.Equal(t, 20.0, value(byGPU("DCGM_FI_DEV_GPU_UTIL", "2")))
	assert.Equal(t, 512.0, value(byGPU("DCGM_FI_DEV_FB_USED", "2")))
	assert.Equal(t, 81559.0-512, value(byGPU("DCGM_FI_DEV_FB_FREE", "2")))
	assert.Equal(t, 32.0, value(byGPU("DCGM_FI_DEV_GPU_TEMP", "2")))
	assert.Equal(t, 72.0, value(byGPU("DCGM_FI_DEV_POWER_USAGE", "2")), "watts, from NVML's milliwatts")
	assert.Equal(t, 13.0, value(byGPU("DCGM_FI_DEV_XID_ERRORS", "2")))
	assert.Equal(t, 0.0, value(byGPU("DCGM_FI_DEV_XID_ERRORS", "0")))
	assert.Equal(t, float64(2*3<<20), value(byGPU("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "2")))
}

// TestMetricsOmitsFailingCalls: no NVLink on L40S, no NVML at all without a driver.
func TestMetricsOmitsFailingCalls(t *testing.T) {
	m, err := fixtures.New("pcie-l40s", fixtures.Options{})
	require.NoError(t, err)
	require.Equal(t, nvml.SUCCESS, m.NVML.Init())
	fams := scrape(t, &metrics.Collector{NVML: func() nvml.Interface { return m.NVML }, Hostname: "n"})
	assert.NotContains(t, fams, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL")
	assert.NotContains(t, fams, "DCGM_FI_DEV_XID_ERRORS", "no health tracker")
	assert.Contains(t, fams, "DCGM_FI_DEV_GPU_TEMP")

	assert.Empty(t, scrape(t, &metrics.Collector{NVML: func() nvml.Interface { return nil }, Hostname: "n"}))
}
