package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"runtime"
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
	Runs         []Run             `json:"runs"`
}

// Run is one workload under one scheduler.
type Run struct {
	Workload  string  `json:"workload"`
	Scheduler string  `json:"scheduler"`
	Jobs      int     `json:"jobs"`
	Pods      int     `json:"pods"`
	Bound     int     `json:"bound"`
	Complete  bool    `json:"complete"`
	Seconds   float64 `json:"seconds"` // first pod created → last pod bound
	// PodsPerSecond: Avg is bound/Seconds; P50/P90/P99 are over 1 s samples.
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
}

// Stats of a sample set.
type Stats struct {
	Avg float64 `json:"avg"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
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
		} else {
			writeBurstTable(w, runs)
		}
	}
}

func writeBurstTable(w io.Writer, runs []Run) {
	fmt.Fprintln(w, "| scheduler | bound | pods/s avg | p50 | p90 | p99 | gang quorum p50 / p99 (s) | gangs in smallest domain | blocks/gang | GPU alloc | CPU s | peak RSS MiB |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, run := range runs {
		gang, smallest, blocks := gangCells(run)
		alloc := "incomplete"
		if !math.IsNaN(run.GPUAllocation) {
			alloc = fmt.Sprintf("%.0f%%", 100*run.GPUAllocation)
		}
		cpu, rss := usageCells(run)
		fmt.Fprintf(w, "| %s | %d/%d | %.1f | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s | %s |\n",
			run.Scheduler, run.Bound, run.Pods, run.PodsPerSecond.Avg, run.PodsPerSecond.P50, run.PodsPerSecond.P90,
			run.PodsPerSecond.P99, gang, smallest, blocks, alloc, cpu, rss)
	}
}

func writeStreamTable(w io.Writer, runs []Run) {
	fmt.Fprintln(w, "| scheduler | jobs submitted / finished | GPU alloc at saturation (settled / time-avg) | in fully bound jobs | partial jobs at end | pods pending at end | gangs in smallest domain | blocks/gang | multi-GPU pods all-NVLink | GPU-set score vs go-gpuallocator | better / worse | CPU s | peak RSS MiB |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, run := range runs {
		st := run.Saturation
		_, smallest, blocks := gangCells(run)
		score, vs := interconnectCells(run.Interconnect)
		cpu, rss := usageCells(run)
		nvl := "–"
		if ic := run.Interconnect; ic != nil && ic.Pods > 0 {
			nvl = fmt.Sprintf("%.0f%%", 100*float64(ic.NVLinked)/float64(ic.Pods))
		}
		fmt.Fprintf(w, "| %s | %d / %d | %.1f%% / %.1f%% | %.1f%% | %d | %d | %s | %s | %s | %s | %s | %s | %s |\n",
			run.Scheduler, st.JobsSubmitted, st.JobsFinished, 100*st.GPUAllocation, 100*st.TimeAveraged, 100*st.UsefulAllocation,
			st.PartialJobs, st.PendingPods, smallest, blocks, nvl, score, vs, cpu, rss)
	}
}

func gangCells(run Run) (quorum, smallest, blocks string) {
	if run.Gangs == 0 || run.MeanBlocksPerGang == 0 {
		return "–", "–", "–"
	}
	return fmt.Sprintf("%.2f / %.2f", run.GangTimeToQuorum.P50, run.GangTimeToQuorum.P99),
		fmt.Sprintf("%.0f%%", 100*run.GangsInSmallestDomain), fmt.Sprintf("%.2f", run.MeanBlocksPerGang)
}

func usageCells(run Run) (cpu, rss string) {
	if run.PeakRSSMiB > 0 {
		return fmt.Sprintf("%.1f", run.CPUSeconds), fmt.Sprintf("%.0f", run.PeakRSSMiB)
	}
	return "in-process", "–"
}

// interconnectCells: mean score of the sets pods got against go-gpuallocator's on the same free
// GPUs, and how many pods came out better or worse.
func interconnectCells(ic *Interconnect) (score, vs string) {
	if ic == nil || ic.Pods == 0 {
		return "–", "–"
	}
	score = fmt.Sprintf("%.0f vs %.0f (%d pods)", ic.Score, ic.Baseline, ic.Pods)
	if ic.Chooser != "scheduler" {
		score += ", device plugin picks"
	}
	vs = fmt.Sprintf("%d / %d", ic.Better, ic.Worse)
	if ic.Conflicts > 0 {
		vs += fmt.Sprintf(" (%d GPUs given twice!)", ic.Conflicts)
	}
	return score, vs
}
