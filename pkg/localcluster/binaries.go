package localcluster

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
)

// BinariesOptions say which t9k binaries StartBinaries runs.
type BinariesOptions struct {
	// SchedulerConfig is the KubeSchedulerConfiguration for t9k-scheduler (its kubeconfig and
	// leader election are set for this cluster).
	SchedulerConfig string
	// NoDeviceAgent leaves the device-agent out.
	NoDeviceAgent bool
	// DefaultScheduler also runs the stock kube-scheduler as "default-scheduler", so that pods
	// that do not name t9k-scheduler are scheduled as on a real cluster.
	DefaultScheduler bool
	// TopologyLevels, when set, are the node labels naming the cluster's topology levels,
	// innermost first (Layout.LevelLabels): T9kTopology's args.levels and t9k-controllers'
	// --topology-levels. Unset leaves the scheduler config's levels and the controllers' default.
	TopologyLevels []string
	// Manifests is the install kustomization whose ServiceAccounts, RBAC and webhook
	// configuration the binaries run with (default: manifests/default of this module).
	Manifests string
}

// StartBinaries runs t9k-scheduler, t9k-controllers (with its admission webhook, reached by the
// apiserver on loopback) and the device-agent for every simulated node, from c.BinDir. As on a
// cluster installed from the manifests, each runs as its own ServiceAccount holding only the
// shipped RBAC (a kubeconfig impersonating it), and the webhook configuration is the shipped one.
func (c *Cluster) StartBinaries(o BinariesOptions) error {
	ports := make([]int, 6)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return err
		}
		ports[i] = p
	}
	manifests := o.Manifests
	if manifests == "" {
		var err error
		if manifests, err = defaultManifests(); err != nil {
			return err
		}
	}
	c.step("installing ServiceAccounts, RBAC and the webhook configuration from %s", manifests)
	if err := c.installIdentities(context.Background(), manifests, fmt.Sprintf("127.0.0.1:%d", ports[4])); err != nil {
		return fmt.Errorf("install manifests: %w", err)
	}
	kubeconfigs := map[string]string{}
	for _, sa := range []string{SchedulerServiceAccount, ControllersServiceAccount, DeviceAgentServiceAccount} {
		kc, err := c.serviceAccountKubeconfig(sa)
		if err != nil {
			return err
		}
		kubeconfigs[sa] = kc
	}
	cfg := filepath.Join(c.Dir, "scheduler-config.yaml")
	if err := WriteSchedulerConfigWithLevels(o.SchedulerConfig, cfg, kubeconfigs[SchedulerServiceAccount], o.TopologyLevels); err != nil {
		return fmt.Errorf("scheduler config: %w", err)
	}
	c.step("starting t9k-scheduler (https://127.0.0.1:%d/metrics)", ports[0])
	if err := c.StartProcess("t9k-scheduler", filepath.Join(c.BinDir, "t9k-scheduler"),
		"--config="+cfg, "--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", ports[0]),
		"--authentication-skip-lookup", "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"); err != nil {
		return err
	}
	c.step("starting t9k-controllers (http://127.0.0.1:%d/metrics)", ports[1])
	ctrlArgs := []string{"--kubeconfig=" + kubeconfigs[ControllersServiceAccount], "--leader-elect=false"}
	if o.TopologyLevels != nil {
		ctrlArgs = append(ctrlArgs, "--topology-levels="+strings.Join(o.TopologyLevels, ","))
	}
	if err := c.StartProcess("t9k-controllers", filepath.Join(c.BinDir, "t9k-controllers"), append(ctrlArgs,
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", ports[1]),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", ports[2]),
		// The apiserver runs on this machine: it calls the admission webhook on loopback (the
		// shipped configuration, pointed there), whose caBundle the controllers write.
		"--webhook-bind-address=127.0.0.1", "--webhook-url-host=127.0.0.1", fmt.Sprintf("--webhook-port=%d", ports[4]),
		// Plain HTTP metrics on loopback, for curl.
		"--metrics-secure=false")...); err != nil {
		return err
	}
	if o.DefaultScheduler {
		c.step("starting kube-scheduler as default-scheduler")
		if err := c.StartProcess("kube-scheduler", filepath.Join(c.BinDir, "kube-scheduler"),
			"--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", ports[5]), "--kube-api-qps=200", "--kube-api-burst=400"); err != nil {
			return err
		}
	}
	if o.NoDeviceAgent {
		return nil
	}
	c.step("starting device-agent for all simulated nodes (http://127.0.0.1:%d/metrics)", ports[3])
	return c.StartProcess("device-agent", filepath.Join(c.BinDir, "device-agent"),
		"--kubeconfig="+kubeconfigs[DeviceAgentServiceAccount], "--simulate-nodes="+LabelSimulated+"=true",
		fmt.Sprintf("--metrics-addr=127.0.0.1:%d", ports[3]))
}
