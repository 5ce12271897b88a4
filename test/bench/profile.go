package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// profileCPU starts fetching the scheduler's CPU profile over the next h.opts.Profile into
// ProfileDir/<name>.cpu.pprof; the channel closes when it is written (or failed, logged).
func (h *harness) profileCPU(ctx context.Context, rs *running, name string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The process was just started: wait for its port.
		healthz := strings.TrimSuffix(rs.metricsURL, "/metrics") + "/healthz"
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if resp, err := metricsClient.Get(healthz); err == nil {
				resp.Body.Close()
				break
			}
		}
		secs := max(1, int(h.opts.Profile.Seconds()))
		h.fetchProfile(ctx, rs, fmt.Sprintf("profile?seconds=%d", secs), name+".cpu.pprof", h.opts.Profile+30*time.Second)
	}()
	return done
}

// profileHeap writes the scheduler's heap profile (in-use and allocated since start) to
// ProfileDir/<name>.heap.pprof.
func (h *harness) profileHeap(ctx context.Context, rs *running, name string) {
	h.fetchProfile(ctx, rs, "heap", name+".heap.pprof", 30*time.Second)
}

func (h *harness) fetchProfile(ctx context.Context, rs *running, what, file string, timeout time.Duration) {
	url := strings.TrimSuffix(rs.metricsURL, "/metrics") + "/debug/pprof/" + what
	err := func() error {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		client := *metricsClient
		client.Timeout = 0 // the context bounds it; a CPU profile takes its seconds
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		if err := os.MkdirAll(h.opts.ProfileDir, 0o755); err != nil {
			return err
		}
		f, err := os.Create(filepath.Join(h.opts.ProfileDir, file))
		if err != nil {
			return err
		}
		if _, err := io.Copy(f, resp.Body); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	}()
	if err != nil {
		h.logf("profile %s: GET %s: %v", file, url, err)
	}
}
