package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	_ "image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestSmoke runs every workload under every scheduler on a small cluster. It asserts that each
// scheduler bound every pod and that the report is well formed — never how fast anything was.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and five schedulers")
	}
	var log bytes.Buffer
	oneRound := 1
	logDir := filepath.Join(t.TempDir(), "logs")
	rep, err := Measure(context.Background(), Options{Nodes: 32, Log: &log, WorkDir: t.TempDir(), LogDir: logDir,
		StreamRounds: &oneRound, StreamSettle: 3 * time.Second})
	require.NoError(t, err, log.String())
	gangOf := map[string]string{}
	for _, s := range allSchedulers() {
		gangOf[s.Name] = s.Gang
	}

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
	t9kWrites := map[string]int{} // PodGroup updates seen per t9k scheduler, over its runs
	for _, run := range rep.Runs {
		w := workloads[run.Workload]
		require.NotNil(t, run.Interconnect, "%s/%s", run.Workload, run.Scheduler)
		require.Zero(t, run.Interconnect.Conflicts, "%s/%s gave a GPU to two live pods", run.Workload, run.Scheduler)
		require.Positive(t, run.PodsPerSecond.Avg)
		require.NotEmpty(t, run.BoundOverTime)
		require.Equal(t, float64(run.Bound), run.BoundOverTime[len(run.BoundOverTime)-1], "cumulative series ends at the bound count")
		if run.Scheduler != "noop-binder" {
			require.Positive(t, run.PeakRSSMiB, "%s: peak RSS read from /proc", run.Scheduler)
			// The scheduler's own log, kept per run: klog lines from its start to its stop.
			require.Equal(t, fmt.Sprintf("%s-%s-run%d.log", run.Workload, run.Scheduler, run.Repeat+1), run.Log)
			data, err := os.ReadFile(filepath.Join(logDir, run.Log))
			require.NoError(t, err)
			require.Contains(t, string(data), "Starting Kubernetes Scheduler", "%s: a scheduler's klog output", run.Log)
		}
		require.GreaterOrEqual(t, run.NeverAttempted, 0)
		require.LessOrEqual(t, run.NeverAttempted, run.Pods-run.Bound, "%s/%s: never-attempted pods are unbound", run.Workload, run.Scheduler)
		if gangOf[run.Scheduler] == gangNone {
			require.Nil(t, run.PodGroupWrites, "%s/%s has no PodGroups", run.Workload, run.Scheduler)
		} else if run.Gangs > 0 {
			pg := run.PodGroupWrites
			require.NotNil(t, pg, "%s/%s", run.Workload, run.Scheduler)
			require.Equal(t, run.Gangs, pg.Groups, "%s/%s: every gang's PodGroup seen by the watch", run.Workload, run.Scheduler)
			require.Positive(t, pg.GangMinutes)
			if gangOf[run.Scheduler] == gangT9k {
				// Summed over the scheduler's runs: a run of 7 pods binds in ~30 ms here, and the
				// conditions are written asynchronously, so one run's window may close first.
				t9kWrites[run.Scheduler] += pg.Updates
			}
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
				require.Empty(t, smp.MetricsError, "%s/%s: the scheduler's /metrics", run.Workload, run.Scheduler)
				require.NotNil(t, smp.Scheduler, "%s/%s: gauges read at the settled state", run.Workload, run.Scheduler)
			}
			require.LessOrEqual(t, run.NeverAttempted, st.PendingPods)
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
	for name, g := range gangOf {
		if g == gangT9k {
			require.Positive(t, t9kWrites[name], "%s writes its PodGroup conditions", name)
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
	require.Contains(t, md.String(), "| never attempted |")
	require.Contains(t, md.String(), "| PodGroup writes / gang-min |")
	require.Contains(t, md.String(), "settle window extended")
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

// The scheduler's gauges as its /metrics writes them.
func TestSchedulerState(t *testing.T) {
	text := `# HELP scheduler_goroutines [ALPHA] Number of running goroutines split by the work they do such as binding.
# TYPE scheduler_goroutines gauge
scheduler_goroutines{operation="binding"} 3
scheduler_goroutines{operation="Filter"} 0
# TYPE scheduler_pending_pods gauge
scheduler_pending_pods{queue="active"} 2
scheduler_pending_pods{queue="backoff"} 1
scheduler_pending_pods{queue="gated"} 0
scheduler_pending_pods{queue="unschedulable"} 17
t9k_scheduler_queue_quota{queue="a \"b\", c",resource="nvidia.com/gpu",unit="integer"} 8
`
	m, err := parseMetrics(strings.NewReader(text))
	require.NoError(t, err)
	st, err := schedulerState(m)
	require.NoError(t, err)
	require.Equal(t, SchedulerState{Reserved: 3, Active: 2, Backoff: 1, Unschedulable: 17}, st)
	v, ok := sumMetric(m, "t9k_scheduler_queue_quota", map[string]string{"queue": `a "b", c`})
	require.True(t, ok)
	require.Equal(t, 8.0, v)

	// No binding gauge: an error, not a silent 0.
	m, err = parseMetrics(strings.NewReader("scheduler_pending_pods{queue=\"active\"} 0\n"))
	require.NoError(t, err)
	_, err = schedulerState(m)
	require.Error(t, err)
}

// The settle window stays open while the scheduler holds reserved pods, and no longer than its cap.
func TestWaitSettled(t *testing.T) {
	defer func(p time.Duration) { settlePoll = p }(settlePoll)
	settlePoll = 5 * time.Millisecond
	ctx := context.Background()
	rec := newRecorder()
	held := []int{2, 1, 0, 5}
	reads := 0
	read := func(context.Context) (SchedulerState, error) {
		st := SchedulerState{Reserved: held[min(reads, len(held)-1)]}
		reads++
		return st, nil
	}
	st, _, err := waitSettled(ctx, rec, time.Now(), 10*time.Millisecond, time.Minute, read, func(int) {})
	require.NoError(t, err)
	require.Equal(t, 3, reads, "read until nothing was held")
	require.Equal(t, 0, st.Reserved)

	always := func(context.Context) (SchedulerState, error) { return SchedulerState{Reserved: 1}, nil }
	st, extended, err := waitSettled(ctx, rec, time.Now(), 10*time.Millisecond, 50*time.Millisecond, always, func(int) {})
	require.NoError(t, err)
	require.Equal(t, 1, st.Reserved, "the cap ran out: the held pods are reported")
	require.GreaterOrEqual(t, extended, 50*time.Millisecond)

	st, _, err = waitSettled(ctx, rec, time.Now(), 10*time.Millisecond, time.Minute, nil, func(int) {})
	require.NoError(t, err)
	require.Nil(t, st, "no metrics: quiet alone")
}
