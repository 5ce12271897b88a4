package main

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	_ "image/png"
	"math"
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
	oneRound := 1
	rep, err := Measure(context.Background(), Options{Nodes: 32, Log: &log, WorkDir: t.TempDir(), StreamRounds: &oneRound})
	require.NoError(t, err, log.String())

	workloads, names, err := loadWorkloads()
	require.NoError(t, err)
	wantRuns := 0
	for _, n := range names {
		for _, s := range allSchedulers() {
			if workloads[n].Stream == nil || !s.Ceiling {
				wantRuns++
			}
		}
	}
	require.Len(t, rep.Runs, wantRuns)
	streams := 0
	for _, run := range rep.Runs {
		w := workloads[run.Workload]
		require.NotNil(t, run.Interconnect, "%s/%s", run.Workload, run.Scheduler)
		require.Zero(t, run.Interconnect.Conflicts, "%s/%s gave a GPU to two live pods", run.Workload, run.Scheduler)
		require.Positive(t, run.PodsPerSecond.Avg)
		require.NotEmpty(t, run.BoundOverTime)
		require.Equal(t, float64(run.Bound), run.BoundOverTime[len(run.BoundOverTime)-1], "cumulative series ends at the bound count")
		if run.Scheduler != "noop-binder" {
			require.Positive(t, run.PeakRSSMiB, "%s: peak RSS read from /proc", run.Scheduler)
		}
		if w.Stream != nil {
			// Saturating: not everything binds; every settled state is sampled and consistent.
			streams++
			st := run.Saturation
			require.NotNil(t, st, "%s/%s", run.Workload, run.Scheduler)
			require.Len(t, st.Samples, 1+oneRound)
			require.Positive(t, st.JobsSubmitted)
			require.Positive(t, st.JobsFinished, "%s/%s: a round finishes running jobs", run.Workload, run.Scheduler)
			for _, smp := range st.Samples {
				require.Greater(t, smp.Allocated, 0.0)
				require.LessOrEqual(t, smp.Allocated, 1.0)
				require.LessOrEqual(t, smp.Useful, smp.Allocated)
			}
			require.Positive(t, run.Interconnect.Pods, "%s/%s: the stream has 2- and 4-GPU pods", run.Workload, run.Scheduler)
			require.NotEmpty(t, run.AllocationOverTime)
			continue
		}
		want := 0
		for _, j := range w.Jobs(rep.GPUs) {
			want += j.Pods
		}
		require.Positive(t, want, "workload %s expands to no pods at %d GPUs", run.Workload, rep.GPUs)
		require.Equal(t, want, run.Pods, "%s/%s pods", run.Workload, run.Scheduler)
		require.True(t, run.Complete, "%s/%s bound %d of %d\n%s", run.Workload, run.Scheduler, run.Bound, run.Pods, log.String())
		require.Equal(t, run.Pods, run.Bound)
	}
	require.Positive(t, streams, "a stream workload ran")

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

// The report's summaries: medians with their spread, rotation of the order, and no percentile
// from too few samples.
func TestSummaries(t *testing.T) {
	require.Equal(t, "2.0 (1.0–9.0)", spread("%.1f", []float64{9, 1, 2}))
	require.Equal(t, "2.5 (1.0–9.0)", spread("%.1f", []float64{9, 1, 2, 3}))
	require.Equal(t, "4", spread("%.0f", []float64{4, math.NaN()}))
	require.Equal(t, "–", spread("%.0f", []float64{math.NaN()}))

	s := []schedulerUnderTest{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	var order []string
	for _, x := range rotated(s, 4) {
		order = append(order, x.Name)
	}
	require.Equal(t, []string{"b", "c", "a"}, order)

	few := stats([]float64{1, 2, 3})
	require.Equal(t, 3, few.N)
	require.Equal(t, 2.0, few.Avg)
	require.True(t, math.IsNaN(few.P99), "p99 of 3 samples")
	many := stats(make([]float64, minPercentileSamples))
	require.False(t, math.IsNaN(many.P99))
	b, err := json.Marshal(few)
	require.NoError(t, err)
	require.JSONEq(t, `{"n":3,"avg":2,"p50":null,"p90":null,"p99":null}`, string(b))
	var back Stats
	require.NoError(t, json.Unmarshal(b, &back))
	require.True(t, math.IsNaN(back.P50))
}
