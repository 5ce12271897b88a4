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

// Package metrics exports GPU metrics under the names dcgm-exporter uses (so its Grafana dashboards
// work unchanged), read from NVML when Prometheus scrapes. A metric whose NVML call fails on a GPU is
// left out for that GPU rather than reported as zero.
package metrics

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/klog/v2"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/publisher"
)

// Labels of every series, as dcgm-exporter names them (pod, namespace and container are empty for a
// GPU no pod holds, which PromQL treats as absent).
var Labels = []string{"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "container", "namespace", "pod"}

func desc(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, Labels, nil) }

var (
	gpuUtil   = desc("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).")
	fbUsed    = desc("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).")
	fbFree    = desc("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).")
	gpuTemp   = desc("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).")
	power     = desc("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).")
	xidErrors = desc("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.")
	nvlinkBW  = desc("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "Total number of NVLink bandwidth counters for all lanes (NVML data TX+RX, KiB).")
)

// Owner is the pod holding a GPU.
type Owner struct {
	Namespace, Pod, Container string
}

// Collector is a prometheus.Collector over NVML.
type Collector struct {
	// NVML returns the library, or nil while it is not initialised (no driver): then nothing is exported.
	NVML func() nvml.Interface
	// Hostname is the node name (the Hostname label).
	Hostname string
	// Health supplies the last XID per GPU; nil leaves DCGM_FI_DEV_XID_ERRORS out.
	Health *device.HealthTracker

	mu     sync.Mutex
	owners map[string]Owner // by GPU UUID
}

// SetOwners replaces the GPU → pod mapping (from the pods' GPU annotations).
func (c *Collector) SetOwners(owners map[string]Owner) {
	c.mu.Lock()
	c.owners = owners
	c.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{gpuUtil, fbUsed, fbFree, gpuTemp, power, xidErrors, nvlinkBW} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.NVML == nil {
		return
	}
	lib := c.NVML()
	if lib == nil {
		return
	}
	var n int
	if !call("DeviceGetCount", func() (ret nvml.Return) { n, ret = lib.DeviceGetCount(); return }) {
		return
	}
	c.mu.Lock()
	owners := c.owners
	c.mu.Unlock()
	for i := 0; i < n; i++ {
		var dev nvml.Device
		if !call("DeviceGetHandleByIndex", func() (ret nvml.Return) { dev, ret = lib.DeviceGetHandleByIndex(i); return }) {
			continue
		}
		c.collectGPU(ch, i, dev, owners)
	}
}

func (c *Collector) collectGPU(ch chan<- prometheus.Metric, index int, dev nvml.Device, owners map[string]Owner) {
	var uuid, name string
	if !call("GetUUID", func() (ret nvml.Return) { uuid, ret = dev.GetUUID(); return }) {
		return // no identity, no series
	}
	call("GetName", func() (ret nvml.Return) { name, ret = dev.GetName(); return })
	var pci nvml.PciInfo
	busID := ""
	if call("GetPciInfo", func() (ret nvml.Return) { pci, ret = dev.GetPciInfo(); return }) {
		busID = busIDString(pci.BusId[:])
	}
	devName := ""
	var minor int
	if call("GetMinorNumber", func() (ret nvml.Return) { minor, ret = dev.GetMinorNumber(); return }) {
		devName = fmt.Sprintf("nvidia%d", minor)
	}
	o := owners[uuid]
	lv := []string{fmt.Sprint(index), uuid, busID, devName, name, c.Hostname, o.Container, o.Namespace, o.Pod}
	emit := func(d *prometheus.Desc, t prometheus.ValueType, v float64) {
		ch <- prometheus.MustNewConstMetric(d, t, v, lv...)
	}

	var util nvml.Utilization
	if call("GetUtilizationRates", func() (ret nvml.Return) { util, ret = dev.GetUtilizationRates(); return }) {
		emit(gpuUtil, prometheus.GaugeValue, float64(util.Gpu))
	}
	var mem nvml.Memory
	if call("GetMemoryInfo", func() (ret nvml.Return) { mem, ret = dev.GetMemoryInfo(); return }) {
		emit(fbUsed, prometheus.GaugeValue, float64(mem.Used>>20))
		emit(fbFree, prometheus.GaugeValue, float64(mem.Free>>20))
	}
	var temp uint32
	if call("GetTemperature", func() (ret nvml.Return) { temp, ret = dev.GetTemperature(nvml.TEMPERATURE_GPU); return }) {
		emit(gpuTemp, prometheus.GaugeValue, float64(temp))
	}
	var mw uint32
	if call("GetPowerUsage", func() (ret nvml.Return) { mw, ret = dev.GetPowerUsage(); return }) {
		emit(power, prometheus.GaugeValue, float64(mw)/1000)
	}
	if c.Health != nil {
		xid, _ := c.Health.LastXID(uuid)
		emit(xidErrors, prometheus.GaugeValue, float64(xid))
	}
	if kib, ok := nvlinkKiB(dev); ok {
		emit(nvlinkBW, prometheus.CounterValue, float64(kib))
	}
}

// nvlinkKiB sums NVML's NVLink data throughput counters (TX and RX, all links). GPUs without NVLink
// answer NOT_SUPPORTED per field.
func nvlinkKiB(dev nvml.Device) (uint64, bool) {
	fv := []nvml.FieldValue{{FieldId: nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_TX}, {FieldId: nvml.FI_DEV_NVLINK_THROUGHPUT_DATA_RX}}
	if !call("GetFieldValues", func() nvml.Return { return dev.GetFieldValues(fv) }) {
		return 0, false
	}
	var sum uint64
	for _, f := range fv {
		if nvml.Return(f.NvmlReturn) != nvml.SUCCESS {
			return 0, false
		}
		v, ok := fieldUint(f)
		if !ok {
			return 0, false
		}
		sum += v
	}
	return sum, true
}

func fieldUint(f nvml.FieldValue) (uint64, bool) {
	raw := binary.LittleEndian.Uint64(f.Value[:])
	switch nvml.ValueType(f.ValueType) {
	case nvml.VALUE_TYPE_UNSIGNED_LONG_LONG, nvml.VALUE_TYPE_UNSIGNED_LONG:
		return raw, true
	case nvml.VALUE_TYPE_UNSIGNED_INT:
		return uint64(uint32(raw)), true
	case nvml.VALUE_TYPE_DOUBLE:
		return uint64(math.Float64frombits(raw)), true
	}
	return 0, false
}

// call runs one NVML call; a failing return or a panic (a mock without the function) means "leave
// the metric out".
func call(what string, f func() nvml.Return) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			klog.V(4).InfoS("NVML call unavailable", "call", what, "panic", r)
			ok = false
		}
	}()
	ret := f()
	if ret != nvml.SUCCESS {
		klog.V(4).InfoS("NVML call failed", "call", what, "ret", ret.Error())
		return false
	}
	return true
}

func busIDString(b []int8) string {
	var sb strings.Builder
	for _, c := range b {
		if c == 0 {
			break
		}
		sb.WriteByte(byte(c))
	}
	return sb.String()
}

// OwnersFromPods maps GPU UUIDs to the pods holding them, from the scheduler's annotations (the
// same rule as NodeDevices' inUse). The container is the one requesting resource, when exactly one does.
func OwnersFromPods(pods []corev1.Pod, gpus []v1.GPU, resource string) map[string]Owner {
	container := map[string]string{}
	for _, p := range pods {
		var names []string
		for _, c := range p.Spec.Containers {
			if _, ok := c.Resources.Limits[corev1.ResourceName(resource)]; ok {
				names = append(names, c.Name)
			}
		}
		if len(names) == 1 {
			container[p.Namespace+"/"+p.Name] = names[0]
		}
	}
	out := map[string]Owner{}
	for _, a := range publisher.InUseFromPods(pods, gpus) {
		if a.UUID == "" {
			continue
		}
		out[a.UUID] = Owner{Namespace: a.Namespace, Pod: a.Pod, Container: container[a.Namespace+"/"+a.Pod]}
	}
	return out
}
