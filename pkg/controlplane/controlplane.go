// Package controlplane starts a real kube-apiserver and etcd (built by `make tools` into bin/) for
// tests, the local cluster and benchmarks. It wraps controller-runtime's envtest so that everything
// that talks to "a cluster" here talks to the same real apiserver a production cluster would run.
package controlplane

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// EnvBinDir names the environment variable that points at the directory with kube-apiserver, etcd
// and kubectl. The Makefile sets it; without it we look for bin/ at the module root.
const EnvBinDir = "T9K_BIN_DIR"

// Options tune the control plane. The zero value is what tests want.
type Options struct {
	// BinDir holds kube-apiserver, etcd and kubectl. Default: $T9K_BIN_DIR, else <module root>/bin.
	BinDir string
	// CRDDir holds the CRDs to install before Start returns. Default: <module root>/manifests/crd.
	// Set NoCRDs to start without any.
	CRDDir string
	NoCRDs bool
	// ExtraCRDPaths are more CRD files or directories to install (e.g. a baseline's own CRDs).
	ExtraCRDPaths []string
	// APIServerFlags are extra kube-apiserver flags (name without dashes → value), applied last.
	APIServerFlags map[string]string
	// Verbose attaches the apiserver's and etcd's output to this process's stdout/stderr.
	Verbose bool
	// StartTimeout bounds the start of each component. Default 60s: the 2-core CI machines are slow
	// when the Go build of the tests runs alongside.
	StartTimeout time.Duration
	// WorkDir, when set, holds etcd's data (WorkDir/etcd) and the apiserver's certificates
	// (WorkDir/apiserver) instead of fresh temporary directories, so that a process killed before
	// Stop leaves them where its next run finds and clears them. The caller empties it first and
	// removes it after Stop.
	WorkDir string
	// APIServerPath and EtcdPath override BinDir/kube-apiserver and BinDir/etcd (e.g. a launcher
	// that makes them die with this process).
	APIServerPath, EtcdPath string
}

// ControlPlane is a running kube-apiserver + etcd pair.
type ControlPlane struct {
	// Config is an admin (system:masters) client config for the apiserver.
	Config *rest.Config
	env    *envtest.Environment
}

// Start launches etcd and kube-apiserver, installs the CRDs and waits until they are served.
func Start(opts Options) (*ControlPlane, error) {
	binDir := opts.BinDir
	if binDir == "" {
		var err error
		if binDir, err = BinDir(); err != nil {
			return nil, err
		}
	}
	root, rootErr := ModuleRoot()
	for _, b := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return nil, fmt.Errorf("%s not found in %s: run `make tools` first", b, binDir)
		}
	}

	env := &envtest.Environment{
		BinaryAssetsDirectory:    binDir,
		AttachControlPlaneOutput: opts.Verbose,
		ControlPlaneStartTimeout: opts.StartTimeout,
		ControlPlaneStopTimeout:  30 * time.Second,
		ErrorIfCRDPathMissing:    true,
	}
	if env.ControlPlaneStartTimeout == 0 {
		env.ControlPlaneStartTimeout = 60 * time.Second
	}
	if !opts.NoCRDs {
		crdDir := opts.CRDDir
		if crdDir == "" {
			if rootErr != nil {
				return nil, fmt.Errorf("cannot find CRD dir: %w", rootErr)
			}
			crdDir = filepath.Join(root, "manifests", "crd")
		}
		env.CRDDirectoryPaths = []string{crdDir}
	}
	env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, opts.ExtraCRDPaths...)

	api := env.ControlPlane.GetAPIServer()
	api.Path = opts.APIServerPath
	args := api.Configure()
	// No kube-controller-manager runs here: the ServiceAccount admission would wait for token
	// controllers, and TaintNodesByCondition would leave every new node tainted not-ready forever.
	args.Set("disable-admission-plugins", "ServiceAccount,TaintNodesByCondition")
	// A single apiserver on loopback: don't maintain the kubernetes Service endpoints.
	args.Set("endpoint-reconciler-type", "none")
	// Benchmarks create thousands of objects per second; the default in-flight limits throttle them.
	args.Set("max-requests-inflight", "2000")
	args.Set("max-mutating-requests-inflight", "1000")
	for k, v := range opts.APIServerFlags {
		args.Set(k, v)
	}
	etcd := env.ControlPlane.Etcd
	if etcd == nil {
		etcd = &envtest.Etcd{}
		env.ControlPlane.Etcd = etcd
	}
	etcd.Path = opts.EtcdPath
	if opts.WorkDir != "" {
		api.CertDir = filepath.Join(opts.WorkDir, "apiserver")
		etcd.DataDir = filepath.Join(opts.WorkDir, "etcd")
		for _, d := range []string{api.CertDir, etcd.DataDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, err
			}
		}
	}
	// The data dir is throw-away: durability costs fsyncs that dominate on these machines.
	etcd.Configure().Set("unsafe-no-fsync", "true")
	etcd.Configure().Set("quota-backend-bytes", fmt.Sprint(8<<30))

	cfg, err := env.Start()
	if err != nil {
		_ = env.Stop()
		return nil, fmt.Errorf("starting control plane: %w", err)
	}
	// Tests and the local cluster create objects in bursts; client-side throttling would hide
	// the apiserver's and scheduler's real behaviour.
	cfg.QPS, cfg.Burst = 1000, 2000
	return &ControlPlane{Config: cfg, env: env}, nil
}

// Stop terminates the apiserver and etcd and removes their data.
func (c *ControlPlane) Stop() error {
	if c == nil || c.env == nil {
		return nil
	}
	return c.env.Stop()
}

// Kubeconfig returns an admin kubeconfig for this control plane (for kubectl, kwok and child
// processes). Each call mints a fresh client certificate.
func (c *ControlPlane) Kubeconfig() ([]byte, error) {
	user, err := c.env.AddUser(envtest.User{Name: "t9k-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	return user.KubeConfig()
}

// WriteKubeconfig writes Kubeconfig() to path with owner-only permissions.
func (c *ControlPlane) WriteKubeconfig(path string) error {
	data, err := c.Kubeconfig()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

// BinDir is where the built tools and binaries are: $T9K_BIN_DIR, else <module root>/bin.
func BinDir() (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		return d, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", fmt.Errorf("cannot find bin dir: set %s: %w", EnvBinDir, err)
	}
	return filepath.Join(root, "bin"), nil
}

// ModuleRoot walks up from the working directory to the directory holding go.mod.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}
