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

// Package deviceplugin is the kubelet device plugin (API v1beta1) for whole NVIDIA GPUs.
//
// Device IDs are GPU UUIDs, not indices: the kubelet checkpoints the IDs it handed out, and a UUID
// still names the same GPU after a reboot re-numbers the devices (a GPU that fell off the bus shifts
// every later index); NVIDIA_VISIBLE_DEVICES takes UUIDs too. k8s-device-plugin does the same by
// default (deviceIDStrategy=uuid).
//
// Which GPUs a container gets is the scheduler's decision, written on the pod as
// device.tensorstack.dev/gpus at PreBind. The kubelet's requests carry no pod identity, so the plugin
// finds the pod the way HAMi and Volcano do (see PodAssigner): the oldest pending pod on this node
// whose annotation names as many GPUs as requested and that is not yet marked assigned.
// GetPreferredAllocation returns that set, so the kubelet's own accounting agrees; Allocate hands it to
// the container and marks the pod. Without an annotated pod, the best-connected set among the
// kubelet's available devices is chosen with pkg/topology.
package deviceplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/topospec"
	"github.com/tensorstack/t9k/pkg/topology"
)

const (
	// DefaultResourceName is the extended resource served.
	DefaultResourceName = "nvidia.com/gpu"
	// EnvVisibleDevices is read by the NVIDIA container runtime hook.
	EnvVisibleDevices = "NVIDIA_VISIBLE_DEVICES"
)

// Options configure a Plugin.
type Options struct {
	// ResourceName is the extended resource; DefaultResourceName when empty.
	ResourceName string
	// PluginDir holds kubelet.sock and the plugin's socket; pluginapi.DevicePluginPath when empty.
	PluginDir string
	// Endpoint is the plugin's socket file name in PluginDir; derived from ResourceName when empty.
	Endpoint string
	// Health, when set, overrides the health of the devices given to SetDevices, and a change in it is
	// sent to the kubelet at once.
	Health *device.HealthTracker
	// Pods finds the pod being admitted; nil means no scheduler annotations are honoured.
	Pods PodAssigner
	// DeviceSpecs returns the device nodes for a container's GPUs; nil returns none (fixture mode,
	// or a node whose runtime injects them from NVIDIA_VISIBLE_DEVICES).
	DeviceSpecs func(gpus []v1.GPU) []*pluginapi.DeviceSpec
	// CheckInterval is how often the sockets are checked in case a file event was missed; 5s when 0.
	CheckInterval time.Duration
}

// Plugin serves one resource to the kubelet. Create it with New, feed it the node's GPUs with
// SetDevices, and Run it.
type Plugin struct {
	pluginapi.UnimplementedDevicePluginServer

	o Options

	mu      sync.Mutex
	gpus    []v1.GPU
	pos     map[string]int // UUID → position in gpus
	topo    *topology.GPUTopology
	updated chan struct{} // closed and replaced on every change of the device list or health

	allocMu sync.Mutex // one admission at a time, so two containers never pick the same pod
}

// New returns a Plugin with no devices.
func New(o Options) *Plugin {
	if o.ResourceName == "" {
		o.ResourceName = DefaultResourceName
	}
	if o.PluginDir == "" {
		o.PluginDir = pluginapi.DevicePluginPath
	}
	if abs, err := filepath.Abs(o.PluginDir); err == nil {
		o.PluginDir = abs // the registration dial needs unix:///absolute/path
	}
	if o.Endpoint == "" {
		o.Endpoint = "t9k-" + strings.NewReplacer("/", "-", ".", "-").Replace(o.ResourceName) + ".sock"
	}
	if o.CheckInterval <= 0 {
		o.CheckInterval = 5 * time.Second
	}
	return &Plugin{o: o, updated: make(chan struct{})}
}

// ResourceName is the resource served.
func (p *Plugin) ResourceName() string { return p.o.ResourceName }

// SocketPath is where the plugin listens.
func (p *Plugin) SocketPath() string { return filepath.Join(p.o.PluginDir, p.o.Endpoint) }

// SetDevices replaces the node's GPUs (from the latest discovery). A change is sent to the kubelet.
func (p *Plugin) SetDevices(gpus []v1.GPU) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sameInventory(p.gpus, gpus) {
		return
	}
	p.gpus = slices.Clone(gpus)
	p.pos = make(map[string]int, len(gpus))
	for i, g := range gpus {
		p.pos[g.UUID] = i
	}
	t, err := topology.NewGPUTopology(topospec.FromInventory(gpus, nil))
	if err != nil {
		klog.ErrorS(err, "GPU topology unusable; preferred allocations fall back to the kubelet's order")
		t = nil
	}
	p.topo = t
	p.broadcastLocked()
}

// sameInventory compares what the kubelet and the chooser see: identity, NUMA, links and health.
func sameInventory(a, b []v1.GPU) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.UUID != y.UUID || x.Index != y.Index || x.NUMANode != y.NUMANode || x.Health != y.Health ||
			x.PCIeSwitch != y.PCIeSwitch || x.PCIeRoot != y.PCIeRoot || !equalNVLink(x.NVLink, y.NVLink) {
			return false
		}
	}
	return true
}

func equalNVLink(a, b *v1.GPUNVLink) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.NVSwitchDomain == b.NVSwitchDomain && a.ActiveLinks == b.ActiveLinks && slices.Equal(a.Peers, b.Peers)
}

func (p *Plugin) broadcastLocked() {
	close(p.updated)
	p.updated = make(chan struct{})
}

func (p *Plugin) health(g v1.GPU) v1.GPUHealth {
	if p.o.Health != nil {
		if h := p.o.Health.Get(g.UUID); !h.Healthy {
			return h
		}
	}
	return g.Health
}

// devicesLocked is the ListAndWatch content.
func (p *Plugin) devicesLocked() []*pluginapi.Device {
	out := make([]*pluginapi.Device, 0, len(p.gpus))
	for _, g := range p.gpus {
		d := &pluginapi.Device{ID: g.UUID, Health: pluginapi.Healthy}
		if !p.health(g).Healthy {
			d.Health = pluginapi.Unhealthy
		}
		if g.NUMANode >= 0 {
			d.Topology = &pluginapi.TopologyInfo{Nodes: []*pluginapi.NUMANode{{ID: int64(g.NUMANode)}}}
		}
		out = append(out, d)
	}
	return out
}

// GetDevicePluginOptions implements pluginapi.DevicePluginServer.
func (p *Plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: true}, nil
}

// ListAndWatch implements pluginapi.DevicePluginServer: the full list first, then again on every
// change of the devices or their health.
func (p *Plugin) ListAndWatch(_ *pluginapi.Empty, s grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	var last []*pluginapi.Device
	first := true
	for {
		p.mu.Lock()
		devs, wait := p.devicesLocked(), p.updated
		p.mu.Unlock()
		if first || !equalDevices(last, devs) {
			if err := s.Send(&pluginapi.ListAndWatchResponse{Devices: devs}); err != nil {
				return err
			}
			klog.V(2).InfoS("sent devices to the kubelet", "resource", p.o.ResourceName, "devices", len(devs))
			last, first = devs, false
		}
		select {
		case <-wait:
		case <-s.Context().Done():
			return nil
		}
	}
}

func equalDevices(a, b []*pluginapi.Device) bool {
	return slices.EqualFunc(a, b, func(x, y *pluginapi.Device) bool {
		return x.ID == y.ID && x.Health == y.Health && numa(x) == numa(y)
	})
}

func numa(d *pluginapi.Device) int64 {
	if d.Topology == nil || len(d.Topology.Nodes) == 0 {
		return -1
	}
	return d.Topology.Nodes[0].ID
}

// GetPreferredAllocation implements pluginapi.DevicePluginServer. The kubelet calls it only when it
// has a choice; it takes our answer as a hint and tops it up from its own order if we return too few.
func (p *Plugin) GetPreferredAllocation(ctx context.Context, req *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	resp := &pluginapi.PreferredAllocationResponse{}
	for _, cr := range req.ContainerRequests {
		size := int(cr.AllocationSize)
		ids, from := p.annotatedFor(ctx, size, cr.AvailableDeviceIDs, cr.MustIncludeDeviceIDs)
		if ids == nil {
			ids, from = p.choose(cr.AvailableDeviceIDs, cr.MustIncludeDeviceIDs, size), "topology"
		}
		klog.V(1).InfoS("preferred allocation", "resource", p.o.ResourceName, "size", size, "devices", ids, "from", from)
		resp.ContainerResponses = append(resp.ContainerResponses, &pluginapi.ContainerPreferredAllocationResponse{DeviceIDs: ids})
	}
	return resp, nil
}

// annotatedFor returns the annotated GPUs of the pod being admitted when they fit what the kubelet
// offers, and where they came from; nil when there is no such pod or the set does not fit.
func (p *Plugin) annotatedFor(ctx context.Context, size int, available, must []string) ([]string, string) {
	if p.o.Pods == nil {
		return nil, ""
	}
	a, err := p.o.Pods.Candidate(ctx, p.o.ResourceName, size)
	if err != nil {
		// An RPC error would fail the pod's admission; the hint is optional, so fall back.
		klog.ErrorS(err, "cannot look up the pod being admitted; choosing by topology")
		return nil, ""
	}
	if a == nil {
		return nil, ""
	}
	ids, err := p.uuidsOf(a.GPUs)
	if err != nil {
		klog.ErrorS(err, "pod's GPU annotation does not match this node; choosing by topology", "pod", a.Key())
		return nil, ""
	}
	if !subset(ids, available) || !subset(must, ids) {
		klog.InfoS("annotated GPUs are not all available to the kubelet; choosing by topology",
			"pod", a.Key(), "annotated", ids, "available", available, "mustInclude", must)
		return nil, ""
	}
	return ids, "pod " + a.Key()
}

// Allocate implements pluginapi.DevicePluginServer. The annotated GPUs win over the kubelet's IDs
// when they differ: the scheduler's view (which builds on the annotations) stays right, and the
// kubelet's count of free devices does too; the mismatch is logged, as it means the two disagreed.
func (p *Plugin) Allocate(ctx context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	p.allocMu.Lock()
	defer p.allocMu.Unlock()
	resp := &pluginapi.AllocateResponse{}
	for _, cr := range req.ContainerRequests {
		ids := cr.DevicesIds
		if p.o.Pods != nil {
			a, err := p.o.Pods.Candidate(ctx, p.o.ResourceName, len(ids))
			if err != nil {
				return nil, fmt.Errorf("find the pod being admitted: %w", err)
			}
			if a != nil {
				annotated, err := p.uuidsOf(a.GPUs)
				if err != nil {
					return nil, fmt.Errorf("pod %s: %w", a.Key(), err)
				}
				if !sameSet(annotated, ids) {
					klog.InfoS("kubelet's devices differ from the scheduler's; using the scheduler's",
						"pod", a.Key(), "kubelet", ids, "annotated", annotated)
				}
				// Marking before answering: a pod that is not marked would be found again by the next
				// container's Allocate and its GPUs given twice.
				if err := p.o.Pods.MarkAssigned(ctx, a); err != nil {
					return nil, fmt.Errorf("mark pod %s assigned: %w", a.Key(), err)
				}
				klog.InfoS("allocated annotated GPUs", "pod", a.Key(), "devices", annotated)
				ids = annotated
			}
		}
		gpus, err := p.gpusOf(ids)
		if err != nil {
			return nil, err
		}
		cresp := &pluginapi.ContainerAllocateResponse{Envs: map[string]string{EnvVisibleDevices: strings.Join(ids, ",")}}
		if p.o.DeviceSpecs != nil {
			cresp.Devices = p.o.DeviceSpecs(gpus)
		}
		resp.ContainerResponses = append(resp.ContainerResponses, cresp)
	}
	return resp, nil
}

// PreStartContainer implements pluginapi.DevicePluginServer; not requested in the options.
func (p *Plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

// uuidsOf maps annotation refs to device IDs. A ref's UUID wins over its index (the UUID is what
// the scheduler saw in NodeDevices); a bare index is looked up.
func (p *Plugin) uuidsOf(refs []v1.GPURef) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		if r.UUID != "" {
			if _, ok := p.pos[r.UUID]; !ok {
				return nil, fmt.Errorf("annotated GPU %d:%s is not on this node", r.Index, r.UUID)
			}
			out = append(out, r.UUID)
			continue
		}
		i := slices.IndexFunc(p.gpus, func(g v1.GPU) bool { return g.Index == r.Index })
		if i < 0 {
			return nil, fmt.Errorf("annotated GPU index %d is not on this node", r.Index)
		}
		out = append(out, p.gpus[i].UUID)
	}
	return out, nil
}

func (p *Plugin) gpusOf(ids []string) ([]v1.GPU, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]v1.GPU, 0, len(ids))
	for _, id := range ids {
		i, ok := p.pos[id]
		if !ok {
			return nil, fmt.Errorf("unknown device %q", id)
		}
		out = append(out, p.gpus[i])
	}
	return out, nil
}

// choose picks size devices from available, containing must, with the best interconnect.
func (p *Plugin) choose(available, must []string, size int) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var free, set uint64
	for _, id := range available {
		if i, ok := p.pos[id]; ok && i < topology.MaxGPUsPerNode {
			free |= 1 << uint(i)
		}
	}
	var chosen []int
	for _, id := range must {
		if i, ok := p.pos[id]; ok && free&(1<<uint(i)) != 0 && set&(1<<uint(i)) == 0 {
			set |= 1 << uint(i)
			chosen = append(chosen, i)
		}
	}
	switch {
	case p.topo == nil || size > len(available):
	case len(chosen) == 0:
		if c, ok := p.topo.Choose(free, topology.GPURequest{GPUs: size}); ok {
			chosen = c.GPUs
		}
	default:
		// Choose has no must-include; must-include only comes from devices an init container already
		// holds, so growing that set greedily is good enough.
		for len(chosen) < size {
			best, bestQ := -1, topology.Quality{}
			for i := 0; i < p.topo.NumGPUs(); i++ {
				if free&(1<<uint(i)) == 0 || set&(1<<uint(i)) != 0 {
					continue
				}
				q := p.topo.SetQuality(free, append(slices.Clone(chosen), i), 0)
				if best < 0 || q.Compare(bestQ) > 0 {
					best, bestQ = i, q
				}
			}
			if best < 0 {
				break
			}
			set |= 1 << uint(best)
			chosen = append(chosen, best)
		}
	}
	out := make([]string, 0, size)
	for _, i := range chosen {
		out = append(out, p.gpus[i].UUID)
	}
	// Anything short (no topology, unknown IDs): the kubelet tops up from its own order.
	return out
}

func subset(a, b []string) bool {
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

func sameSet(a, b []string) bool { return len(a) == len(b) && subset(a, b) }

// Run serves the plugin and keeps it registered until ctx ends. The kubelet deletes every socket in
// the plugin directory when it starts and then creates kubelet.sock anew, so a new kubelet.sock (a
// file event, or a changed inode/ctime seen by the periodic check) means: serve again, register again.
func (p *Plugin) Run(ctx context.Context) error {
	dir := p.o.PluginDir
	var events <-chan fsnotify.Event
	if w, err := fsnotify.NewWatcher(); err != nil {
		klog.ErrorS(err, "cannot watch the device plugin directory; polling it", "dir", dir)
	} else {
		defer w.Close()
		if err := w.Add(dir); err != nil {
			klog.ErrorS(err, "cannot watch the device plugin directory; polling it", "dir", dir)
		} else {
			events = w.Events
		}
	}
	var health <-chan struct{}
	if p.o.Health != nil {
		health = p.o.Health.Subscribe()
	}

	var srv *grpc.Server
	var served, registered fileID // our socket as created; kubelet.sock as registered with
	stop := func() {
		if srv != nil {
			srv.Stop()
			srv = nil
			_ = os.Remove(p.SocketPath())
		}
	}
	defer stop()
	dirMissing := false
	reconcile := func(force bool) {
		if _, err := os.Stat(dir); err != nil {
			if !dirMissing { // e.g. a fixture run on a machine without a kubelet: say it once
				klog.InfoS("device plugin directory not there; waiting for a kubelet", "dir", dir, "err", err)
			}
			dirMissing = true
			return
		}
		dirMissing = false
		if cur := statID(p.SocketPath()); srv == nil || cur != served {
			stop()
			s, id, err := p.serve()
			if err != nil {
				klog.ErrorS(err, "cannot serve the device plugin", "socket", p.SocketPath())
				return
			}
			srv, served, registered = s, id, fileID{}
		}
		kubelet := statID(filepath.Join(dir, "kubelet.sock"))
		if kubelet == (fileID{}) || (!force && kubelet == registered) {
			return
		}
		if err := p.register(ctx); err != nil {
			klog.ErrorS(err, "registration with the kubelet failed; retrying", "resource", p.o.ResourceName)
			registered = fileID{}
			return
		}
		registered = kubelet
		klog.InfoS("registered with the kubelet", "resource", p.o.ResourceName, "endpoint", p.o.Endpoint)
	}
	reconcile(false)
	tick := time.NewTicker(p.o.CheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			reconcile(false)
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			switch filepath.Base(ev.Name) {
			case "kubelet.sock":
				if ev.Has(fsnotify.Create) {
					klog.InfoS("kubelet socket created: the kubelet restarted", "socket", ev.Name)
					reconcile(true)
				}
			case p.o.Endpoint:
				if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
					reconcile(false)
				}
			}
		case <-health:
			p.mu.Lock()
			p.broadcastLocked()
			p.mu.Unlock()
		}
	}
}

// fileID tells a re-created file from the old one: inode numbers alone can be reused at once.
type fileID struct {
	ino   uint64
	ctime int64
}

func statID(path string) fileID {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{ctime: fi.ModTime().UnixNano()}
	}
	return fileID{ino: st.Ino, ctime: st.Ctim.Nano()}
}

func (p *Plugin) serve() (*grpc.Server, fileID, error) {
	path := p.SocketPath()
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fileID{}, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fileID{}, err
	}
	srv := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(srv, p)
	go func() {
		if err := srv.Serve(lis); err != nil {
			klog.ErrorS(err, "device plugin server stopped", "socket", path)
		}
	}()
	klog.InfoS("serving device plugin", "resource", p.o.ResourceName, "socket", path)
	return srv, statID(path), nil
}

func (p *Plugin) register(ctx context.Context) error {
	conn, err := grpc.NewClient("unix://"+filepath.Join(p.o.PluginDir, "kubelet.sock"),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = pluginapi.NewRegistrationClient(conn).Register(ctx, &pluginapi.RegisterRequest{
		Version:      pluginapi.Version,
		Endpoint:     p.o.Endpoint,
		ResourceName: p.o.ResourceName,
		Options:      &pluginapi.DevicePluginOptions{GetPreferredAllocationAvailable: true},
	})
	return err
}
