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

// Package kubelettest is a fake kubelet for device plugin tests: the registration service on
// <dir>/kubelet.sock, and a client to the plugin's socket, as the kubelet's device manager uses them.
package kubelettest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// Kubelet is the fake. Directories must be short: unix socket paths are limited to ~108 bytes, so
// use ShortTempDir rather than t.TempDir for deep test names.
type Kubelet struct {
	pluginapi.UnimplementedRegistrationServer

	Dir string
	// Registrations receives every RegisterRequest.
	Registrations chan *pluginapi.RegisterRequest

	srv *grpc.Server
}

// ShortTempDir is a temporary directory with a short path, removed when the test ends.
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// Start listens on dir/kubelet.sock. It is stopped when the test ends.
func Start(t testing.TB, dir string) *Kubelet {
	t.Helper()
	k := &Kubelet{Dir: dir, Registrations: make(chan *pluginapi.RegisterRequest, 16)}
	k.listen(t)
	t.Cleanup(k.Stop)
	return k
}

func (k *Kubelet) listen(t testing.TB) {
	t.Helper()
	lis, err := net.Listen("unix", filepath.Join(k.Dir, "kubelet.sock"))
	if err != nil {
		t.Fatal(err)
	}
	k.srv = grpc.NewServer()
	pluginapi.RegisterRegistrationServer(k.srv, k)
	go func() { _ = k.srv.Serve(lis) }()
}

// Register implements pluginapi.RegistrationServer.
func (k *Kubelet) Register(_ context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	k.Registrations <- r
	return &pluginapi.Empty{}, nil
}

// Stop stops serving and removes kubelet.sock.
func (k *Kubelet) Stop() {
	if k.srv != nil {
		k.srv.Stop()
		k.srv = nil
	}
	_ = os.Remove(filepath.Join(k.Dir, "kubelet.sock"))
}

// Restart does what a restarting kubelet's device manager does: stop, delete every file in the
// directory (the plugins' sockets included), and listen on a new kubelet.sock.
func (k *Kubelet) Restart(t testing.TB) {
	t.Helper()
	k.Stop()
	entries, err := os.ReadDir(k.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		_ = os.RemoveAll(filepath.Join(k.Dir, e.Name()))
	}
	k.listen(t)
}

// WaitRegistration returns the next RegisterRequest or fails the test after timeout.
func (k *Kubelet) WaitRegistration(t testing.TB, timeout time.Duration) *pluginapi.RegisterRequest {
	t.Helper()
	select {
	case r := <-k.Registrations:
		return r
	case <-time.After(timeout):
		t.Fatalf("no registration within %s", timeout)
		return nil
	}
}

// Dial connects to a registered plugin's endpoint, as the kubelet does after Register.
func (k *Kubelet) Dial(t testing.TB, endpoint string) pluginapi.DevicePluginClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+filepath.Join(k.Dir, endpoint), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pluginapi.NewDevicePluginClient(conn)
}
