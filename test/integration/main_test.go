// Package integration holds tests that run the real binaries' code against a real kube-apiserver
// and etcd (see pkg/controlplane). `make test` builds those into bin/ first.
package integration

import (
	"testing"

	"github.com/tensorstack/t9k/pkg/controlplane"
)

// startControlPlane starts a fresh apiserver + etcd with our CRDs for one test and stops it when
// the test ends. A missing binary fails the test: skipping would hide that CI tested nothing.
func startControlPlane(t *testing.T) *controlplane.ControlPlane {
	t.Helper()
	cp, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatalf("control plane: %v", err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Logf("stopping control plane: %v", err)
		}
	})
	return cp
}
