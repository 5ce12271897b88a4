package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	_ "image/png"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSmoke runs every workload under every scheduler on a small cluster. It asserts that each
// scheduler bound every pod and that the report is well formed — never how fast anything was.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and four schedulers")
	}
	var log bytes.Buffer
	rep, err := Measure(context.Background(), Options{Nodes: 32, Log: &log, WorkDir: t.TempDir()})
	require.NoError(t, err, log.String())

	workloads, names, err := loadWorkloads()
	require.NoError(t, err)
	require.Len(t, rep.Runs, len(names)*len(allSchedulers()))
	for _, run := range rep.Runs {
		want := 0
		for _, j := range workloads[run.Workload].Jobs(rep.GPUs) {
			want += j.Pods
		}
		require.Positive(t, want, "workload %s expands to no pods at %d GPUs", run.Workload, rep.GPUs)
		require.Equal(t, want, run.Pods, "%s/%s pods", run.Workload, run.Scheduler)
		require.True(t, run.Complete, "%s/%s bound %d of %d\n%s", run.Workload, run.Scheduler, run.Bound, run.Pods, log.String())
		require.Equal(t, run.Pods, run.Bound)
		require.Positive(t, run.PodsPerSecond.Avg)
		require.NotEmpty(t, run.BoundOverTime)
		require.Equal(t, float64(run.Bound), run.BoundOverTime[len(run.BoundOverTime)-1], "cumulative series ends at the bound count")
		if run.Scheduler != "noop-binder" {
			require.Positive(t, run.PeakRSSMiB, "%s: peak RSS read from /proc", run.Scheduler)
		}
	}

	data, err := json.Marshal(rep)
	require.NoError(t, err)
	var back Report
	require.NoError(t, json.Unmarshal(data, &back))
	require.Equal(t, len(rep.Runs), len(back.Runs))
	var md bytes.Buffer
	rep.writeMarkdown(&md)
	for _, s := range allSchedulers() {
		require.Contains(t, md.String(), "| "+s.Name+" |")
	}
	charts, err := rep.writeCharts(t.TempDir())
	require.NoError(t, err)
	require.Len(t, charts, len(names))
	for _, c := range charts {
		f, err := os.Open(c)
		require.NoError(t, err)
		cfg, format, err := image.DecodeConfig(f)
		f.Close()
		require.NoError(t, err, c)
		require.Equal(t, "png", format)
		require.Greater(t, cfg.Width, 400)
	}
}
