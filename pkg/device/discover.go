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

// Package device discovers a node's GPUs (through NVML) and RDMA NICs (through sysfs) and turns them
// into a NodeDevices status. The same code runs against the real libnvidia-ml and against the simulated
// machines in pkg/device/fixtures: both are an nvml.Interface plus a sysfs root.
package device

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/google/uuid"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device/sysfs"
)

// NVSwitchDomainNode is GPUNVLink.NVSwitchDomain for an NVSwitch baseboard inside one node.
const NVSwitchDomainNode = "node"

// cpuAffinityWords is how many 64-bit words of CPU mask we ask NVML for (4096 CPUs).
const cpuAffinityWords = 64

// Discoverer reads the node's devices. Create it with NewDiscoverer, call Init once, then Discover as
// often as needed; Shutdown releases NVML.
type Discoverer struct {
	lib     nvml.Interface
	fs      sysfs.FS
	fixture string
	health  *HealthTracker

	mu        sync.Mutex
	nvmlReady bool
	initCond  metav1.Condition
}

// Options configure a Discoverer.
type Options struct {
	// NVML is the library: nvml.New() on a real node, a fixture's server otherwise. nil means no driver.
	NVML nvml.Interface
	// SysfsRoot is where sys/ lives; "/" on a real node.
	SysfsRoot string
	// Fixture is recorded in the status when the machine is simulated.
	Fixture string
	// Health carries GPU health across discoveries; nil means all GPUs are healthy.
	Health *HealthTracker
}

// NewDiscoverer returns a Discoverer; it does not touch NVML yet.
func NewDiscoverer(o Options) *Discoverer {
	if o.Health == nil {
		o.Health = NewHealthTracker()
	}
	return &Discoverer{lib: o.NVML, fs: sysfs.New(o.SysfsRoot), fixture: o.Fixture, health: o.Health}
}

// Health returns the tracker the Discoverer reads GPU health from.
func (d *Discoverer) Health() *HealthTracker { return d.health }

// NVML returns the library when it initialised, nil otherwise.
func (d *Discoverer) NVML() nvml.Interface {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.nvmlReady {
		return nil
	}
	return d.lib
}

// Init initialises NVML. A node without a driver is not an error: it is logged once and reported as a
// condition, and discovery goes on with NICs only.
func (d *Discoverer) Init() {
	d.mu.Lock()
	defer d.mu.Unlock()
	ret := nvml.ERROR_LIBRARY_NOT_FOUND
	if d.lib != nil {
		ret = d.lib.Init()
	}
	switch ret {
	case nvml.SUCCESS:
		d.nvmlReady = true
		d.initCond = metav1.Condition{Type: v1.ConditionNVMLAvailable, Status: metav1.ConditionTrue,
			Reason: v1.ReasonNVMLReady, Message: "NVML initialised"}
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		klog.InfoS(v1.MessageNVMLNotFound)
		d.initCond = metav1.Condition{Type: v1.ConditionNVMLAvailable, Status: metav1.ConditionFalse,
			Reason: v1.ReasonNVMLNotFound, Message: v1.MessageNVMLNotFound}
	default:
		msg := fmt.Sprintf("NVML init failed: %s", ret.Error())
		klog.ErrorS(nil, msg)
		d.initCond = metav1.Condition{Type: v1.ConditionNVMLAvailable, Status: metav1.ConditionFalse,
			Reason: v1.ReasonNVMLInitFailed, Message: msg}
	}
}

// Shutdown releases NVML.
func (d *Discoverer) Shutdown() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.nvmlReady {
		d.lib.Shutdown()
		d.nvmlReady = false
	}
}

// Discover returns the node's devices. Errors on single devices or fields are logged and leave the
// field empty; nothing here panics the process (fixture gaps included).
func (d *Discoverer) Discover() v1.NodeDevicesStatus {
	d.mu.Lock()
	ready, cond := d.nvmlReady, d.initCond
	d.mu.Unlock()

	st := v1.NodeDevicesStatus{Fixture: d.fixture}
	// Conditions carry no time here; the publisher stamps it, keeping the stored one while the
	// condition's status is unchanged, so a restart does not count as a change.
	st.Conditions = []metav1.Condition{cond}

	nics, nicPCI, err := d.fs.RDMADevices()
	if err != nil {
		klog.ErrorS(err, "RDMA discovery failed")
	}
	st.NICs = nics

	var raws []gpuRaw
	if ready {
		st.Driver = d.driverInfo()
		raws = d.gpus()
	}
	linkPeers(d.lib, raws)
	for i := range raws {
		g := &raws[i].gpu
		for _, nic := range sortedNICNames(nicPCI) {
			if raws[i].pci.Path == nil {
				break
			}
			g.NICs = append(g.NICs, v1.GPUNICLevel{NIC: nic, Level: sysfs.Level(raws[i].pci, nicPCI[nic])})
		}
		g.Health = d.health.Get(g.UUID)
		st.GPUs = append(st.GPUs, *g)
	}
	summarize(&st)
	return st
}

func summarize(st *v1.NodeDevicesStatus) {
	st.GPUCount = int32(len(st.GPUs))
	st.NICCount = int32(len(st.NICs))
	cliques := map[string]bool{}
	for i, g := range st.GPUs {
		if i == 0 {
			st.GPUProduct, st.GPUMemoryMiB = g.Product, g.MemoryMiB
		}
		if g.Product != st.GPUProduct {
			st.GPUProduct = "mixed"
		}
		if g.MemoryMiB < st.GPUMemoryMiB {
			st.GPUMemoryMiB = g.MemoryMiB
		}
		cliques[g.Clique] = true
	}
	// GFD sets the clique only when every GPU agrees on one.
	if len(cliques) == 1 && !cliques[""] {
		st.Clique = st.GPUs[0].Clique
	}
}

func sortedNICNames(m map[string]sysfs.PCIDevice) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return sysfs.NaturalLess(names[i], names[j]) })
	return names
}

func (d *Discoverer) driverInfo() v1.DriverInfo {
	var di v1.DriverInfo
	_ = safely("driver versions", func() {
		if v, ret := d.lib.SystemGetDriverVersion(); ret == nvml.SUCCESS {
			di.DriverVersion = v
		}
		if v, ret := d.lib.SystemGetNVMLVersion(); ret == nvml.SUCCESS {
			di.NVMLVersion = v
		}
		if v, ret := d.lib.SystemGetCudaDriverVersion(); ret == nvml.SUCCESS {
			di.CUDADriverVersion = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
		}
	})
	return di
}

// gpuRaw is a GPU plus what linking peers needs.
type gpuRaw struct {
	gpu v1.GPU
	dev nvml.Device
	pci sysfs.PCIDevice
	// per remote PCI bus id: links to a GPU; links to switches counted apart.
	gpuLinks    map[string]int32
	switchLinks int32
}

func (d *Discoverer) gpus() []gpuRaw {
	var n int
	if err := safely("device count", func() {
		c, ret := d.lib.DeviceGetCount()
		if ret != nvml.SUCCESS {
			klog.ErrorS(nil, "DeviceGetCount failed", "ret", ret.Error())
			return
		}
		n = c
	}); err != nil {
		return nil
	}
	var out []gpuRaw
	for i := 0; i < n; i++ {
		var r gpuRaw
		err := safely(fmt.Sprintf("GPU %d", i), func() {
			dev, ret := d.lib.DeviceGetHandleByIndex(i)
			if ret != nvml.SUCCESS {
				panic(fmt.Sprintf("DeviceGetHandleByIndex: %s", ret.Error()))
			}
			r = d.gpu(i, dev)
		})
		if err != nil {
			klog.ErrorS(err, "skipping GPU", "index", i)
			continue
		}
		out = append(out, r)
	}
	return out
}

// has reports whether libnvidia-ml exports a symbol; calling a missing one kills the process.
func (d *Discoverer) has(symbol string) bool {
	return d.lib.Extensions().LookupSymbol(symbol) == nil
}

func (d *Discoverer) gpu(i int, dev nvml.Device) gpuRaw {
	r := gpuRaw{dev: dev, gpuLinks: map[string]int32{}}
	g := &r.gpu
	g.Index = int32(i)
	g.NUMANode = -1
	if idx, ret := dev.GetIndex(); ret == nvml.SUCCESS {
		g.Index = int32(idx)
	}
	if u, ret := dev.GetUUID(); ret == nvml.SUCCESS {
		g.UUID = u
	}
	if name, ret := dev.GetName(); ret == nvml.SUCCESS {
		g.Product = GFDProduct(name)
	}
	if m, ret := dev.GetMemoryInfo(); ret == nvml.SUCCESS {
		g.MemoryMiB = int64(m.Total / (1 << 20))
	}
	if p, ret := dev.GetPciInfo(); ret == nvml.SUCCESS {
		g.PCIBusID = sysfs.NormalizeBusID(busIDString(p.BusId[:]))
	}
	if g.PCIBusID != "" {
		if pd, err := d.fs.PCIDevice(g.PCIBusID); err == nil {
			r.pci = pd
			g.PCIeRoot, g.PCIeSwitch, g.NUMANode = pd.Root(), pd.Switch(), pd.NUMANode
		} else {
			klog.V(2).InfoS("GPU not found in sysfs", "busID", g.PCIBusID, "err", err)
		}
	}
	// NUMA comes from sysfs numa_node: the CPU socket the GPU hangs off. NVML's GetNumaNodeId is not
	// that: it names the GPU memory's own NUMA node on coherent platforms (GB200) and is unsupported
	// elsewhere.
	_ = safely("GetCpuAffinity", func() {
		if mask, ret := dev.GetCpuAffinity(cpuAffinityWords); ret == nvml.SUCCESS {
			g.CPUAffinity = CPUList(mask)
		}
	})
	_ = safely("NVLink", func() { d.nvlinks(&r) })
	_ = safely("fabric", func() { g.Clique = d.clique(dev) })
	_ = safely("MIG", func() { g.MIG = migState(dev) })
	return r
}

func (d *Discoverer) nvlinks(r *gpuRaw) {
	remoteType := d.has("nvmlDeviceGetNvLinkRemoteDeviceType")
	var active, version int32
	for l := 0; l < nvml.NVLINK_MAX_LINKS; l++ {
		state, ret := r.dev.GetNvLinkState(l)
		if ret == nvml.ERROR_INVALID_ARGUMENT || (ret == nvml.ERROR_NOT_SUPPORTED && l == 0) {
			break // past the last link, or no NVLink at all
		}
		if ret != nvml.SUCCESS || state != nvml.FEATURE_ENABLED {
			continue
		}
		active++
		if version == 0 {
			if v, ret := r.dev.GetNvLinkVersion(l); ret == nvml.SUCCESS {
				version = int32(v)
			}
		}
		remote := ""
		if p, ret := r.dev.GetNvLinkRemotePciInfo(l); ret == nvml.SUCCESS {
			remote = sysfs.NormalizeBusID(busIDString(p.BusId[:]))
		}
		isSwitch := false
		if remoteType {
			t, ret := r.dev.GetNvLinkRemoteDeviceType(l)
			isSwitch = ret == nvml.SUCCESS && t == nvml.NVLINK_DEVICE_TYPE_SWITCH
		}
		if isSwitch {
			r.switchLinks++
		} else if remote != "" {
			// Counted per remote bus; linkPeers reclassifies a remote that is no local GPU as a
			// switch (drivers without the remote-type call; NCCL's "invisible NVSwitch").
			r.gpuLinks[remote]++
		}
	}
	if active > 0 {
		r.gpu.NVLink = &v1.GPUNVLink{Version: version, ActiveLinks: active}
	}
}

// linkPeers fills NVLink peers once every GPU's links are known.
func linkPeers(lib nvml.Interface, raws []gpuRaw) {
	byBus := map[string]int{}
	for i := range raws {
		byBus[raws[i].gpu.PCIBusID] = i
	}
	// Remotes that are not local GPUs are switches the remote-type call could not name.
	for i := range raws {
		for bus, n := range raws[i].gpuLinks {
			if _, ok := byBus[bus]; !ok {
				raws[i].switchLinks += n
				delete(raws[i].gpuLinks, bus)
			}
		}
	}
	for i := range raws {
		a := &raws[i]
		if a.gpu.NVLink == nil {
			continue
		}
		if a.switchLinks > 0 {
			a.gpu.NVLink.NVSwitchDomain = NVSwitchDomainNode
			if a.gpu.Clique != "" {
				a.gpu.NVLink.NVSwitchDomain = a.gpu.Clique
			}
		}
		var peers []v1.NVLinkPeer
		for j := range raws {
			b := &raws[j]
			if i == j || b.gpu.NVLink == nil {
				continue
			}
			if n := a.gpuLinks[b.gpu.PCIBusID]; n > 0 {
				peers = append(peers, v1.NVLinkPeer{Index: b.gpu.Index, Links: n, Via: v1.NVLinkViaBridge})
				continue
			}
			// Through NVSwitches every pair has min(links) of bandwidth, if the switches route it:
			// P2P status over NVLink says so where the driver can tell.
			if a.switchLinks > 0 && b.switchLinks > 0 && p2pOK(a.dev, b.dev) {
				peers = append(peers, v1.NVLinkPeer{Index: b.gpu.Index, Links: min(a.switchLinks, b.switchLinks), Via: v1.NVLinkViaNVSwitch})
			}
		}
		sort.Slice(peers, func(x, y int) bool { return peers[x].Index < peers[y].Index })
		a.gpu.NVLink.Peers = peers
	}
}

func p2pOK(a, b nvml.Device) bool {
	ok := true // a driver that cannot answer does not veto the switch links
	_ = safely("GetP2PStatus", func() {
		st, ret := a.GetP2PStatus(b, nvml.P2P_CAPS_INDEX_NVLINK)
		if ret == nvml.SUCCESS {
			ok = st == nvml.P2P_STATUS_OK
		}
	})
	return ok
}

// clique reads the multi-node NVLink clique from the fabric info, as GFD and the DRA driver do: valid
// only when registration completed successfully and the cluster UUID is set.
func (d *Discoverer) clique(dev nvml.Device) string {
	if !d.has("nvmlDeviceGetGpuFabricInfo") {
		return ""
	}
	fi, ret := dev.GetGpuFabricInfo()
	if ret != nvml.SUCCESS || fi.State != nvml.GPU_FABRIC_STATE_COMPLETED || nvml.Return(fi.Status) != nvml.SUCCESS {
		return ""
	}
	id, err := uuid.FromBytes(fi.ClusterUuid[:])
	if err != nil || id == uuid.Nil {
		return ""
	}
	return fmt.Sprintf("%s.%d", id, fi.CliqueId)
}

func migState(dev nvml.Device) *v1.GPUMIG {
	cur, pending, ret := dev.GetMigMode()
	if ret != nvml.SUCCESS {
		return nil // not MIG-capable (NOT_SUPPORTED) or unknown
	}
	mode := func(m int) v1.MIGMode {
		if m == nvml.DEVICE_MIG_ENABLE {
			return v1.MIGEnabled
		}
		return v1.MIGDisabled
	}
	mig := &v1.GPUMIG{Mode: mode(cur)}
	if pending != cur {
		mig.PendingMode = mode(pending)
	}
	if cur != nvml.DEVICE_MIG_ENABLE {
		return mig
	}
	// MIG device handles are what nvidia-smi -L walks and need no privileges; enumerating GPU
	// instances works where handles do not (older drivers, go-nvml's mock) but needs root.
	var byHandle []v1.MIGDevice
	if err := safely("MIG device handles", func() { byHandle = migDevicesByHandle(dev) }); err == nil && byHandle != nil {
		mig.Devices = byHandle
	} else {
		mig.Devices = migDevicesByInstance(dev)
	}
	sort.Slice(mig.Devices, func(i, j int) bool { return mig.Devices[i].GPUInstanceID < mig.Devices[j].GPUInstanceID })
	if len(mig.Devices) == 0 {
		mig.Devices = nil // as the API server returns it, so that comparisons see no change
	}
	return mig
}

func migProfile(slices uint32, memMB uint64) string {
	return fmt.Sprintf("%dg.%dgb", slices, (memMB+1023)/1024)
}

// migDevicesByHandle groups the MIG devices (one per compute instance) by GPU instance. It returns
// nil when the driver cannot enumerate them.
func migDevicesByHandle(dev nvml.Device) []v1.MIGDevice {
	n, ret := dev.GetMaxMigDeviceCount()
	if ret != nvml.SUCCESS {
		return nil
	}
	byGI := map[int]*v1.MIGDevice{}
	for i := 0; i < n; i++ {
		md, ret := dev.GetMigDeviceHandleByIndex(i)
		if ret != nvml.SUCCESS {
			continue // NOT_FOUND: no MIG device in this slot
		}
		gi, ret := md.GetGpuInstanceId()
		if ret != nvml.SUCCESS {
			continue
		}
		attrs, ret := md.GetAttributes()
		if ret != nvml.SUCCESS {
			continue
		}
		e, ok := byGI[gi]
		if !ok {
			e = &v1.MIGDevice{Profile: migProfile(attrs.GpuInstanceSliceCount, attrs.MemorySizeMB), GPUInstanceID: int32(gi), MemoryMiB: int64(attrs.MemorySizeMB)}
			byGI[gi] = e
		}
		e.ComputeInstances++
		if u, ret := md.GetUUID(); ret == nvml.SUCCESS {
			e.UUIDs = append(e.UUIDs, u)
		}
	}
	out := []v1.MIGDevice{}
	for _, e := range byGI {
		out = append(out, *e)
	}
	return out
}

// migDevicesByInstance enumerates GPU instances per profile (needs a privileged caller).
func migDevicesByInstance(dev nvml.Device) []v1.MIGDevice {
	var out []v1.MIGDevice
	for p := 0; p < nvml.GPU_INSTANCE_PROFILE_COUNT; p++ {
		info, ret := dev.GetGpuInstanceProfileInfo(p)
		if ret != nvml.SUCCESS {
			continue
		}
		gis, ret := dev.GetGpuInstances(&info)
		if ret != nvml.SUCCESS {
			continue
		}
		for _, gi := range gis {
			gii, ret := gi.GetInfo()
			if ret != nvml.SUCCESS {
				continue
			}
			md := v1.MIGDevice{Profile: migProfile(info.SliceCount, info.MemorySizeMB), GPUInstanceID: int32(gii.Id), MemoryMiB: int64(info.MemorySizeMB)}
			for cp := 0; cp < nvml.COMPUTE_INSTANCE_PROFILE_COUNT; cp++ {
				ci, ret := gi.GetComputeInstanceProfileInfo(cp, nvml.COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED)
				if ret != nvml.SUCCESS {
					continue
				}
				if cis, ret := gi.GetComputeInstances(&ci); ret == nvml.SUCCESS {
					md.ComputeInstances += int32(len(cis))
				}
			}
			out = append(out, md)
		}
	}
	return out
}

var gfdUnsafe = regexp.MustCompile(`[^A-Za-z0-9-_. ]`)

// GFDProduct renders an NVML name the way GPU Feature Discovery does for nvidia.com/gpu.product: drop
// characters outside [A-Za-z0-9-_. ], then join the words with dashes.
func GFDProduct(name string) string {
	return strings.Join(strings.Fields(gfdUnsafe.ReplaceAllString(name, "")), "-")
}

// CPUList renders an NVML CPU mask (64 CPUs per word) as a Linux cpulist, e.g. "0-55,112-167".
func CPUList(mask []uint) string {
	var parts []string
	start := -1
	flush := func(end int) {
		if start < 0 {
			return
		}
		if start == end {
			parts = append(parts, strconv.Itoa(start))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", start, end))
		}
		start = -1
	}
	n := len(mask) * 64
	for cpu := 0; cpu < n; cpu++ {
		set := mask[cpu/64]&(1<<(uint(cpu)%64)) != 0
		if set && start < 0 {
			start = cpu
		} else if !set {
			flush(cpu - 1)
		}
	}
	flush(n - 1)
	return strings.Join(parts, ",")
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

// safely runs f and turns a panic into an error: an unimplemented mock function, or a driver quirk,
// must cost one field, not the agent.
func safely(what string, f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: %v", what, r)
			klog.V(1).InfoS("NVML call failed", "call", what, "panic", r)
		}
	}()
	f()
	return nil
}
