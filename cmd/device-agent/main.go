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

// Command device-agent runs on every GPU node (a DaemonSet): it discovers GPUs through NVML and RDMA
// NICs through sysfs and publishes them as the node's NodeDevices object (plus GFD-style labels).
// It also serves the kubelet device plugin for nvidia.com/gpu (handing out the GPUs the scheduler
// annotated on each pod) and GPU metrics under dcgm-exporter's names on --metrics-addr /metrics.
// With --fixture it simulates a known machine; with --simulate-nodes it publishes for many
// simulated nodes from one process (the local cluster; no device plugin or GPU metrics there).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/deviceplugin"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
	"github.com/tensorstack/t9k/pkg/device/metrics"
	"github.com/tensorstack/t9k/pkg/device/publisher"
)

type options struct {
	nodeName      string
	kubeconfig    string
	fixture       string
	fixtureIndex  int
	sysfsRoot     string
	simulate      string
	publishLabels bool
	trackInUse    bool
	metricsAddr   string
	resync        time.Duration
	once          bool
	print         bool

	devicePlugin    bool
	resourceName    string
	pluginDir       string
	passDeviceSpecs bool
	devRoot         string
}

func main() {
	var o options
	fs := flag.CommandLine
	fs.StringVar(&o.nodeName, "node-name", os.Getenv("NODE_NAME"), "name of this node (default $NODE_NAME)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty means $KUBECONFIG, ~/.kube/config or in-cluster")
	fs.StringVar(&o.fixture, "fixture", "", fmt.Sprintf("simulate this machine instead of reading NVML and /sys (one of %v); with --simulate-nodes, the fixture of nodes without the %s label", fixtures.Names(), v1.LabelFixture))
	fs.IntVar(&o.fixtureIndex, "fixture-index", 0, "instance of the fixture in single-node mode, e.g. the GB200 tray number")
	fs.StringVar(&o.sysfsRoot, "sysfs-root", "/", "directory holding sys/ (e.g. /host when the host's /sys is mounted at /host/sys); fixtures bring their own tree")
	fs.StringVar(&o.simulate, "simulate-nodes", "", "label selector: publish simulated devices for every matching Node from this one process")
	fs.BoolVar(&o.publishLabels, "publish-labels", false, "label the Node with nvidia.com/gpu.product, .count, .memory and .clique as GPU Feature Discovery does")
	fs.BoolVar(&o.trackInUse, "track-in-use", true, "fill status.inUse from the pods' "+v1.AnnotationGPUs+" annotations")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics (GPU metrics with dcgm-exporter names) and /healthz on this address, e.g. :9400")
	fs.DurationVar(&o.resync, "resync", time.Minute, "how often to rediscover and publish (writes happen only on change)")
	fs.BoolVar(&o.once, "once", false, "publish once and exit")
	fs.BoolVar(&o.print, "print", false, "print the discovered NodeDevices as YAML and exit (no API server needed)")
	fs.BoolVar(&o.devicePlugin, "device-plugin", true, "serve the kubelet device plugin once the node has GPUs")
	fs.StringVar(&o.resourceName, "resource-name", deviceplugin.DefaultResourceName, "extended resource the device plugin serves")
	fs.StringVar(&o.pluginDir, "device-plugin-dir", "/var/lib/kubelet/device-plugins/", "kubelet's device plugin directory (holds kubelet.sock)")
	fs.BoolVar(&o.passDeviceSpecs, "pass-device-specs", true, "return /dev/nvidia* device nodes from Allocate (not with --fixture); off when the NVIDIA runtime or CDI injects them")
	fs.StringVar(&o.devRoot, "dev-root", "/dev", "where the host's device nodes are, for --pass-device-specs")
	klog.InitFlags(fs)
	flag.Parse()
	logs.InitLogs()
	defer logs.FlushLogs()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		klog.ErrorS(err, "device-agent failed")
		logs.FlushLogs()
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if o.simulate != "" {
		if o.metricsAddr != "" {
			go serveHTTP(ctx, o.metricsAddr, nil)
		}
		return runSimulator(ctx, o)
	}

	disc, cleanup, err := newDiscoverer(o)
	if err != nil {
		return err
	}
	defer cleanup()
	disc.Init()
	defer disc.Shutdown()

	if o.print {
		return printYAML(o.nodeName, disc.Discover())
	}
	if o.nodeName == "" {
		return errors.New("--node-name (or $NODE_NAME) is required")
	}
	c, err := newClient(o.kubeconfig)
	if err != nil {
		return err
	}
	collector := &metrics.Collector{NVML: disc.NVML, Hostname: o.nodeName, Health: disc.Health()}
	if o.metricsAddr != "" && !o.once {
		reg := prometheus.NewRegistry()
		reg.MustRegister(collector)
		go serveHTTP(ctx, o.metricsAddr, reg)
	}
	var plugin *deviceplugin.Plugin
	if o.devicePlugin && !o.once {
		po := deviceplugin.Options{ResourceName: o.resourceName, PluginDir: o.pluginDir, Health: disc.Health(),
			Pods: &deviceplugin.KubePods{Client: c, NodeName: o.nodeName}}
		if lib := disc.NVML(); lib != nil && o.fixture == "" && o.passDeviceSpecs {
			po.DeviceSpecs = deviceplugin.NVMLDeviceSpecs(lib, o.devRoot)
		}
		plugin = deviceplugin.New(po)
	}
	pluginStarted := false
	pub := &publisher.Publisher{Client: c, PublishLabels: o.publishLabels}
	publish := func() {
		st := disc.Discover()
		if plugin != nil {
			plugin.SetDevices(st.GPUs)
			// Nodes without GPUs do not advertise a zero resource; the plugin starts once GPUs appear.
			if !pluginStarted && len(st.GPUs) > 0 {
				pluginStarted = true
				go func() {
					if err := plugin.Run(ctx); err != nil {
						klog.ErrorS(err, "device plugin stopped")
					}
				}()
			}
		}
		if o.trackInUse {
			if pods, err := publisher.ListPodsOnNode(ctx, c, o.nodeName); err != nil {
				klog.ErrorS(err, "cannot read GPUs in use")
			} else {
				st.InUse = publisher.InUseFromPods(pods, st.GPUs)
				collector.SetOwners(metrics.OwnersFromPods(pods, st.GPUs, o.resourceName))
			}
		}
		res, err := pub.Publish(ctx, o.nodeName, st)
		if err != nil {
			klog.ErrorS(err, "publish failed; retrying at next resync", "node", o.nodeName)
			return
		}
		klog.V(1).InfoS("published", "node", o.nodeName, "created", res.Created, "updated", res.Updated, "labels", res.LabelsChanged)
	}
	publish()
	if o.once {
		return nil
	}
	if lib := disc.NVML(); lib != nil {
		go func() {
			if err := device.WatchXIDs(ctx, lib, disc.Health()); err != nil {
				klog.ErrorS(err, "XID events unavailable: GPU health will not change")
			}
		}()
	}
	t := time.NewTicker(o.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-disc.Health().Changed():
		}
		publish()
	}
}

// newDiscoverer builds the discoverer from the real NVML and /sys, or from a fixture and its fake
// sysfs written to a temporary directory.
func newDiscoverer(o options) (*device.Discoverer, func(), error) {
	if o.fixture == "" {
		return device.NewDiscoverer(device.Options{NVML: nvml.New(), SysfsRoot: o.sysfsRoot}), func() {}, nil
	}
	seed := o.nodeName
	m, err := fixtures.New(o.fixture, fixtures.Options{Seed: seed, Index: o.fixtureIndex})
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "device-agent-sysfs-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { _ = os.RemoveAll(dir) }
	if err := m.Sysfs.Write(dir); err != nil {
		cleanup()
		return nil, nil, err
	}
	klog.InfoS("simulating machine", "fixture", o.fixture, "index", o.fixtureIndex)
	return device.NewDiscoverer(device.Options{NVML: m.NVML, SysfsRoot: dir, Fixture: o.fixture}), cleanup, nil
}

func runSimulator(ctx context.Context, o options) error {
	sel, err := labels.Parse(o.simulate)
	if err != nil {
		return fmt.Errorf("--simulate-nodes: %w", err)
	}
	c, err := newClient(o.kubeconfig)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "device-agent-sim-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sim := &publisher.Simulator{
		Publisher:      &publisher.Publisher{Client: c, PublishLabels: o.publishLabels},
		Selector:       sel,
		DefaultFixture: o.fixture,
		SysfsDir:       dir,
		TrackInUse:     o.trackInUse,
	}
	sync := func() {
		st, err := sim.SyncOnce(ctx)
		if err != nil {
			klog.ErrorS(err, "simulated publish had errors; retrying at next resync")
		}
		klog.InfoS("simulated nodes synced", "nodes", st.Nodes, "created", st.Created, "updated", st.Updated,
			"unchanged", st.Unchanged, "labelsChanged", st.LabelsChanged, "skipped", st.Skipped)
	}
	sync()
	if o.once {
		return nil
	}
	t := time.NewTicker(o.resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			sync()
		}
	}
}

func newClient(kubeconfig string) (client.Client, error) {
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1.AddToScheme(s); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: s})
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cfg.UserAgent = "t9k-device-agent"
	// One simulator process speaks for many nodes.
	cfg.QPS, cfg.Burst = 100, 200
	return cfg, nil
}

func printYAML(node string, st v1.NodeDevicesStatus) error {
	for i := range st.Conditions {
		st.Conditions[i].LastTransitionTime = metav1.Now()
	}
	nd := v1.NodeDevices{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "NodeDevices"},
		ObjectMeta: metav1.ObjectMeta{Name: node},
		Status:     st,
	}
	out, err := yaml.Marshal(&nd)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(out)
	return err
}

// serveHTTP serves /healthz, and /metrics from reg when it is not nil.
func serveHTTP(ctx context.Context, addr string, reg *prometheus.Registry) {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	if reg != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: klogErrors{}}))
	}
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	klog.InfoS("serving HTTP", "addr", addr, "metrics", reg != nil)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		klog.ErrorS(err, "health server stopped")
	}
}

// klogErrors sends promhttp's errors to the log.
type klogErrors struct{}

func (klogErrors) Println(v ...any) { klog.ErrorS(nil, fmt.Sprint(v...)) }
