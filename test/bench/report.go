package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Report is everything one `make bench` measured; written as JSON and as a markdown table.
type Report struct {
	Nodes   int       `json:"nodes"`
	GPUs    int       `json:"gpus"`
	Started time.Time `json:"started"`
	Machine string    `json:"machine"`
	// Layout says what the nodes are; Descriptions holds each workload's description.
	Layout       string            `json:"layout"`
	Descriptions map[string]string `json:"descriptions"`
	// Repeats is how many times each workload ran under each scheduler (in rotated order).
	Repeats int   `json:"repeats"`
	Runs    []Run `json:"runs"`
}

// Run is one workload under one scheduler.
type Run struct {
	Workload  string  `json:"workload"`
	Scheduler string  `json:"scheduler"`
	Repeat    int     `json:"repeat"` // 0-based: which of the Report's Repeats
	Jobs      int     `json:"jobs"`
	Pods      int     `json:"pods"`
	Bound     int     `json:"bound"`
	Complete  bool    `json:"complete"`
	Seconds   float64 `json:"seconds"` // first pod created (backlog: first bind) → last pod bound
	// PodsPerSecond: Avg is bound/Seconds; P50/P90/P99 are over 1 s samples (NaN, written null,
	// when there are fewer than minPercentileSamples).
	PodsPerSecond Stats `json:"podsPerSecond"`
	// Gangs counts jobs of more than one pod; the next fields cover those that bound completely.
	Gangs                 int       `json:"gangs"`
	GangTimeToQuorum      Stats     `json:"gangTimeToQuorumSeconds"`
	MeanBlocksPerGang     float64   `json:"meanBlocksPerGang"`
	GangsInSmallestDomain float64   `json:"gangsInSmallestDomain"` // share, 0..1
	GPUAllocation         float64   `json:"gpuAllocation"`         // share of the cluster's GPUs bound at the end
	CPUSeconds            float64   `json:"schedulerCPUSeconds"`   // 0 for the in-process no-op binder
	PeakRSSMiB            float64   `json:"schedulerPeakRSSMiB"`
	BoundOverTime         []float64 `json:"boundOverTime"` // cumulative bound pods every chartStep (0.1 s)
	// Interconnect of the GPU sets pods got on their nodes, against go-gpuallocator.
	Interconnect *Interconnect `json:"interconnect,omitempty"`
	// Saturation and AllocationOverTime (% of GPUs held, every chartStep) for stream workloads.
	Saturation         *Saturation `json:"saturation,omitempty"`
	AllocationOverTime []float64   `json:"allocationOverTime,omitempty"`
	// NeverAttempted counts the pods that, at the end of the run (as the apiserver lists them,
	// the scheduler still running), are not bound and have no PodScheduled condition at all.
	NeverAttempted int `json:"neverAttemptedPods"`
	// PodGroupWrites, for schedulers with PodGroups: their updates during the run.
	PodGroupWrites *PodGroupWrites `json:"podGroupWrites,omitempty"`
	// Log is the scheduler's log file in the output's logs/ directory ("" for the in-process
	// no-op binder).
	Log string `json:"log,omitempty"`
}

// Saturation is what a stream workload measured in its settled states.
type Saturation struct {
	Samples []SaturationSample `json:"samples"` // after the fill, then after each round
	// GPUAllocation and UsefulAllocation are the means over Samples.
	GPUAllocation    float64 `json:"gpuAllocation"`
	UsefulAllocation float64 `json:"usefulAllocation"`
	// TimeAveraged is the mean share of GPUs held from the first settled state to the end, so
	// how fast a scheduler refills freed GPUs counts too.
	TimeAveraged  float64 `json:"timeAveragedAllocation"`
	JobsSubmitted int     `json:"jobsSubmitted"`
	JobsFinished  int     `json:"jobsFinished"`
	// At the end: jobs with some but not all pods bound (GPUs held by a job that cannot start),
	// and pods still pending.
	PartialJobs int `json:"partialJobs"`
	PendingPods int `json:"pendingPods"`
	// PendingReasons: the most common scheduler messages of the pods pending at the end.
	PendingReasons []string `json:"pendingReasons,omitempty"`
}

// SaturationSample is one settled state.
type SaturationSample struct {
	Seconds float64 `json:"seconds"` // since the stream started
	// Allocated: share of GPUs held by bound pods. Useful: share held by jobs whose pods all bound.
	Allocated   float64 `json:"allocated"`
	Useful      float64 `json:"useful"`
	PartialJobs int     `json:"partialJobs"`
	PendingPods int     `json:"pendingPods"`
	// ExtendedSeconds is how long the settle window was held open past "no bind for
	// SettleSeconds" because the scheduler still had reserved, unbound pods (Permit waits, binds
	// in flight), at most settleExtensionCap. Scheduler is its gauges when the sample was taken:
	// Reserved > 0 there means the cap ran out with pods still held. MetricsError says why they
	// could not be read.
	ExtendedSeconds float64         `json:"extendedSeconds"`
	Scheduler       *SchedulerState `json:"scheduler,omitempty"`
	MetricsError    string          `json:"metricsError,omitempty"`
}

// Stats of a sample set. Percentiles of fewer than minPercentileSamples samples are NaN: a "p99"
// of 5 one-second buckets is just the largest of them.
type Stats struct {
	N   int     `json:"n"`
	Avg float64 `json:"avg"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

const minPercentileSamples = 20

// MarshalJSON writes NaN (too few samples) as null.
func (s Stats) MarshalJSON() ([]byte, error) {
	num := func(v float64) any {
		if math.IsNaN(v) {
			return nil
		}
		return v
	}
	return json.Marshal(map[string]any{"n": s.N, "avg": num(s.Avg), "p50": num(s.P50), "p90": num(s.P90), "p99": num(s.P99)})
}

// UnmarshalJSON reads null as NaN.
func (s *Stats) UnmarshalJSON(b []byte) error {
	var raw struct {
		N                  int
		Avg, P50, P90, P99 *float64
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	val := func(p *float64) float64 {
		if p == nil {
			return math.NaN()
		}
		return *p
	}
	*s = Stats{N: raw.N, Avg: val(raw.Avg), P50: val(raw.P50), P90: val(raw.P90), P99: val(raw.P99)}
	return nil
}

// MarshalJSON writes NaN (unknown) as null.
func (r Run) MarshalJSON() ([]byte, error) {
	type plain Run
	p := plain(r)
	if math.IsNaN(p.GPUAllocation) {
		p.GPUAllocation = -1
	}
	return json.Marshal(p)
}

func machineInfo() string {
	cpu := ""
	if out, err := exec.Command("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").Output(); err == nil {
		cpu = strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("%d cores %s, %s", runtime.NumCPU(), cpu, runtime.Version())
}

func (r *Report) writeJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// writeMarkdown prints one table per workload with the schedulers side by side.
func (r *Report) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "%d nodes, %d GPUs; %s; %s\n", r.Nodes, r.GPUs, r.Machine, r.Started.Format(time.RFC3339))
	fmt.Fprintf(w, "\nEach workload ran %d time(s) under each scheduler, the schedulers' order rotated each time; "+
		"cells are the median (min–max) over the runs. Percentiles need at least %d samples (1 s buckets or gangs).\n", max(r.Repeats, 1), minPercentileSamples)
	if r.Layout != "" {
		fmt.Fprintf(w, "\n%s\n", r.Layout)
	}
	var workloads []string
	seen := map[string]bool{}
	for _, run := range r.Runs {
		if !seen[run.Workload] {
			seen[run.Workload] = true
			workloads = append(workloads, run.Workload)
		}
	}
	for _, wl := range workloads {
		var runs []Run
		for _, run := range r.Runs {
			if run.Workload == wl {
				runs = append(runs, run)
			}
		}
		fmt.Fprintf(w, "\n**%s**", wl)
		if d := r.Descriptions[wl]; d != "" {
			fmt.Fprintf(w, ": %s", d)
		}
		fmt.Fprint(w, "\n\n")
		if runs[0].Saturation != nil {
			writeStreamTable(w, runs)
			fmt.Fprint(w, "\n")
			writeSettleTable(w, runs)
		} else {
			writeBurstTable(w, runs)
		}
	}
	capS := settleExtensionCap.Seconds()
	fmt.Fprintf(w, "\n"+reportNotes, capS, capS)
}

// reportNotes defines the figures the tables' headers cannot (a format: the settle window's cap
// in seconds, twice).
const reportNotes = `Notes:

- **never attempted**: pods that, listed from the apiserver at the end of the run (the scheduler
  still running), are unbound and have no PodScheduled condition at all. A failed scheduling
  attempt sets PodScheduled=False, so these are pods the scheduler never tried (or holds without
  a verdict: at PreEnqueue, or reserved and waiting at Permit).
- **PodGroup writes / gang-min**: MODIFIED watch events of the run's PodGroups (only the scheduler
  updates them here: the harness creates and deletes them and no controller runs), divided by the
  gang-minutes (each PodGroup's minutes alive during the run, summed; the run ends at the last
  bind of a burst, at the last settled sample of a stream, and later writes are not counted).
  "per group" is the writes divided by the PodGroups the run had (a burst lasts seconds, so
  its rate per gang-minute is large however few the writes). Coscheduling leaves its PodGroup
  status to scheduler-plugins' controller, which does not run here, so it writes none; "–" for
  schedulers without PodGroups.
- **settle window** (stream): a state is sampled once no pod has bound for the workload's
  settleSeconds *and* the scheduler holds no reserved, unbound pod — its
  scheduler_goroutines{operation="binding"} gauge (one per pod between Reserve and the end of
  its bind: Permit waits of gang members, binds in flight; a live t9k gang plan has a placed
  member among them) is 0. "extended" is how long the window stayed open past the quiet
  period for that (at most %.0f s); "held at samples" sums the gauge at the moments the samples
  were taken (non-zero only if the %.0f s ran out).
- Each scheduler run's log (stdout and stderr, -v=1) is in logs/<workload>-<scheduler>-run<k>.log.
`

// bySchedulers groups a workload's runs per scheduler, in the order the schedulers first ran.
func bySchedulers(runs []Run) (names []string, of map[string][]Run) {
	of = map[string][]Run{}
	for _, r := range runs {
		if _, ok := of[r.Scheduler]; !ok {
			names = append(names, r.Scheduler)
		}
		of[r.Scheduler] = append(of[r.Scheduler], r)
	}
	return names, of
}

// spread is "median (min–max)" of the values that are not NaN, "–" when none are; one value
// alone is written as it is.
func spread(format string, vals []float64) string {
	var v []float64
	for _, x := range vals {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return "–"
	}
	sort.Float64s(v)
	med := median(v)
	if len(v) == 1 {
		return fmt.Sprintf(format, med)
	}
	return fmt.Sprintf(format+" ("+format+"–"+format+")", med, v[0], v[len(v)-1])
}

// field collects one figure of each run.
func field(runs []Run, f func(Run) float64) []float64 {
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(r)
	}
	return out
}

func writeBurstTable(w io.Writer, runs []Run) {
	fmt.Fprintln(w, "| scheduler | runs | bound | pods/s avg | s to last bind | pods/s p50 / p99 | gang quorum p50 / p99 (s) | gangs in smallest domain | blocks/gang | GPU alloc | never attempted | PodGroup writes / gang-min | CPU s | peak RSS MiB |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	names, of := bySchedulers(runs)
	for _, name := range names {
		rs := of[name]
		bound := fmt.Sprintf("%d/%d", rs[0].Bound, rs[0].Pods)
		for _, r := range rs[1:] {
			if r.Bound != rs[0].Bound {
				bound = spread("%.0f", field(rs, func(r Run) float64 { return float64(r.Bound) })) + fmt.Sprintf("/%d", rs[0].Pods)
			}
		}
		pct := spread("%.0f", field(rs, func(r Run) float64 { return r.PodsPerSecond.P50 })) + " / " +
			spread("%.0f", field(rs, func(r Run) float64 { return r.PodsPerSecond.P99 }))
		if math.IsNaN(rs[0].PodsPerSecond.P50) {
			pct = fmt.Sprintf("– (%d samples)", rs[0].PodsPerSecond.N)
		}
		gang, smallest, blocks := "–", "–", "–"
		if rs[0].Gangs > 0 {
			gang = spread("%.2f", field(rs, func(r Run) float64 { return r.GangTimeToQuorum.P50 })) + " / " +
				spread("%.2f", field(rs, func(r Run) float64 { return r.GangTimeToQuorum.P99 }))
			if math.IsNaN(rs[0].GangTimeToQuorum.P50) {
				gang = fmt.Sprintf("avg %s (%d gangs)", spread("%.2f", field(rs, func(r Run) float64 { return r.GangTimeToQuorum.Avg })), rs[0].GangTimeToQuorum.N)
			}
			smallest = spread("%.0f%%", field(rs, func(r Run) float64 { return 100 * r.GangsInSmallestDomain }))
			blocks = spread("%.2f", field(rs, func(r Run) float64 { return r.MeanBlocksPerGang }))
		}
		alloc := spread("%.0f%%", field(rs, func(r Run) float64 { return 100 * r.GPUAllocation }))
		if alloc == "–" {
			alloc = "incomplete"
		}
		cpu, rss := usageSpread(rs)
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			name, len(rs), bound, spread("%.1f", field(rs, func(r Run) float64 { return r.PodsPerSecond.Avg })),
			spread("%.2f", field(rs, func(r Run) float64 { return r.Seconds })), pct, gang, smallest, blocks, alloc,
			neverAttemptedCell(rs), podGroupWritesCell(rs), cpu, rss)
	}
}

func writeStreamTable(w io.Writer, runs []Run) {
	fmt.Fprintln(w, "| scheduler | runs | jobs submitted / finished | GPU alloc at saturation, settled | time-avg | in fully bound jobs | partial jobs at end | pods pending at end | gangs in smallest domain | blocks/gang | multi-GPU pods all-NVLink | GPU-set ring GB/s vs go-gpuallocator (first run) | better / worse (all runs) | CPU s | peak RSS MiB |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	names, of := bySchedulers(runs)
	for _, name := range names {
		rs := of[name]
		sat := func(f func(*Saturation) float64) []float64 {
			return field(rs, func(r Run) float64 { return f(r.Saturation) })
		}
		_, smallest, blocks := gangCells(rs[0])
		if rs[0].Gangs > 0 && rs[0].MeanBlocksPerGang > 0 {
			smallest = spread("%.0f%%", field(rs, func(r Run) float64 { return 100 * r.GangsInSmallestDomain }))
			blocks = spread("%.2f", field(rs, func(r Run) float64 { return r.MeanBlocksPerGang }))
		}
		score, _ := interconnectCells(rs[0].Interconnect)
		var better, worse, conflicts int
		nvl := field(rs, func(r Run) float64 {
			if ic := r.Interconnect; ic != nil && ic.Pods > 0 {
				return 100 * float64(ic.NVLinked) / float64(ic.Pods)
			}
			return math.NaN()
		})
		for _, r := range rs {
			if ic := r.Interconnect; ic != nil {
				better, worse, conflicts = better+ic.Better, worse+ic.Worse, conflicts+ic.Conflicts
			}
		}
		vs := fmt.Sprintf("%d / %d", better, worse)
		if conflicts > 0 {
			vs += fmt.Sprintf(" (%d GPUs given twice!)", conflicts)
		}
		cpu, rss := usageSpread(rs)
		fmt.Fprintf(w, "| %s | %d | %s / %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			name, len(rs), spread("%.0f", sat(func(s *Saturation) float64 { return float64(s.JobsSubmitted) })),
			spread("%.0f", sat(func(s *Saturation) float64 { return float64(s.JobsFinished) })),
			spread("%.1f%%", sat(func(s *Saturation) float64 { return 100 * s.GPUAllocation })),
			spread("%.1f%%", sat(func(s *Saturation) float64 { return 100 * s.TimeAveraged })),
			spread("%.1f%%", sat(func(s *Saturation) float64 { return 100 * s.UsefulAllocation })),
			spread("%.0f", sat(func(s *Saturation) float64 { return float64(s.PartialJobs) })),
			spread("%.0f", sat(func(s *Saturation) float64 { return float64(s.PendingPods) })),
			smallest, blocks, spread("%.0f%%", nvl), score, vs, cpu, rss)
	}
}

// writeSettleTable shows, per scheduler, what was left in the scheduler when the stream's states
// were sampled and at its end.
func writeSettleTable(w io.Writer, runs []Run) {
	fmt.Fprintln(w, "| scheduler | runs | never attempted at end | PodGroup writes / gang-min | settle window extended, s (sum over samples) | held at samples (reserved, unbound) | queues at last sample: active / backoff / unschedulable |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	names, of := bySchedulers(runs)
	for _, name := range names {
		rs := of[name]
		extended, held := "–", "–"
		var active, backoff, unsched []float64
		var errs int
		ext := field(rs, func(r Run) float64 {
			sum := 0.0
			for _, smp := range r.Saturation.Samples {
				sum += smp.ExtendedSeconds
			}
			return sum
		})
		hold := field(rs, func(r Run) float64 {
			n, known := 0, false
			for _, smp := range r.Saturation.Samples {
				if smp.Scheduler != nil {
					n, known = n+smp.Scheduler.Reserved, true
				}
			}
			if !known {
				return math.NaN()
			}
			return float64(n)
		})
		for _, r := range rs {
			smps := r.Saturation.Samples
			for _, smp := range smps {
				if smp.MetricsError != "" {
					errs++
				}
			}
			if last := smps[len(smps)-1].Scheduler; last != nil {
				active = append(active, float64(last.Active))
				backoff = append(backoff, float64(last.Backoff))
				unsched = append(unsched, float64(last.Unschedulable))
			}
		}
		queues := "–"
		if len(active) > 0 {
			queues = spread("%.0f", active) + " / " + spread("%.0f", backoff) + " / " + spread("%.0f", unsched)
			extended, held = spread("%.1f", ext), spread("%.0f", hold)
		}
		if errs > 0 {
			held += fmt.Sprintf(" (metrics unreadable at %d samples)", errs)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %s |\n", name, len(rs), neverAttemptedCell(rs), podGroupWritesCell(rs), extended, held, queues)
	}
}

func neverAttemptedCell(rs []Run) string {
	return spread("%.0f", field(rs, func(r Run) float64 { return float64(r.NeverAttempted) }))
}

// podGroupWritesCell: PodGroup updates per gang-minute, with the updates per PodGroup (median
// over the runs; a burst run lasts seconds, so its rate per gang-minute says less than that), or
// "–" for a scheduler without PodGroups (or a workload without gangs).
func podGroupWritesCell(rs []Run) string {
	per := field(rs, func(r Run) float64 {
		if p := r.PodGroupWrites; p != nil && p.GangMinutes > 0 {
			return p.PerGangMinute
		}
		return math.NaN()
	})
	perGroup := field(rs, func(r Run) float64 {
		if p := r.PodGroupWrites; p != nil && p.GangMinutes > 0 && p.Groups > 0 {
			return float64(p.Updates) / float64(p.Groups)
		}
		return math.NaN()
	})
	cell := spread("%.1f", per)
	if cell == "–" {
		return cell
	}
	return fmt.Sprintf("%s; %.1f per group", cell, median(perGroup))
}

// median of the values that are not NaN (NaN if none).
func median(vals []float64) float64 {
	var v []float64
	for _, x := range vals {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	sort.Float64s(v)
	if len(v)%2 == 0 {
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return v[len(v)/2]
}

func usageSpread(rs []Run) (cpu, rss string) {
	if rs[0].PeakRSSMiB == 0 {
		return "in-process", "–"
	}
	return spread("%.1f", field(rs, func(r Run) float64 { return r.CPUSeconds })),
		spread("%.0f", field(rs, func(r Run) float64 { return r.PeakRSSMiB }))
}

func gangCells(run Run) (quorum, smallest, blocks string) {
	if run.Gangs == 0 || run.MeanBlocksPerGang == 0 {
		return "–", "–", "–"
	}
	return fmt.Sprintf("%.2f / %.2f", run.GangTimeToQuorum.P50, run.GangTimeToQuorum.P99),
		fmt.Sprintf("%.0f%%", 100*run.GangsInSmallestDomain), fmt.Sprintf("%.2f", run.MeanBlocksPerGang)
}

// interconnectCells: mean ring bottleneck (baseline.RingBandwidth) of the sets pods got against
// go-gpuallocator's on the same free GPUs, and how many pods came out better or worse.
func interconnectCells(ic *Interconnect) (score, vs string) {
	if ic == nil || ic.Pods == 0 {
		return "–", "–"
	}
	score = fmt.Sprintf("%.1f vs %.1f GB/s (%d pods)", ic.Score, ic.Baseline, ic.Pods)
	if ic.Chooser != "scheduler" {
		score += ", device plugin picks"
	}
	vs = fmt.Sprintf("%d / %d", ic.Better, ic.Worse)
	if ic.Conflicts > 0 {
		vs += fmt.Sprintf(" (%d GPUs given twice!)", ic.Conflicts)
	}
	return score, vs
}
