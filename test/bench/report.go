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
	Runs    []Run     `json:"runs"`
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

func machine() string {
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
	var workloads []string
	seen := map[string]bool{}
	for _, run := range r.Runs {
		if !seen[run.Workload] {
			seen[run.Workload] = true
			workloads = append(workloads, run.Workload)
		}
	}
	for _, wl := range workloads {
		fmt.Fprintf(w, "\n**%s**\n\n", wl)
		fmt.Fprintln(w, "| scheduler | bound | pods/s avg | p50 | p90 | p99 | gang quorum p50 / p99 (s) | gangs in smallest domain | blocks/gang | GPU alloc | CPU s | peak RSS MiB |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|---|---|")
		for _, run := range r.Runs {
			if run.Workload != wl {
				continue
			}
			gang, smallest, blocks := "–", "–", "–"
			if run.Gangs > 0 {
				gang = fmt.Sprintf("%.2f / %.2f", run.GangTimeToQuorum.P50, run.GangTimeToQuorum.P99)
				smallest = fmt.Sprintf("%.0f%%", 100*run.GangsInSmallestDomain)
				blocks = fmt.Sprintf("%.2f", run.MeanBlocksPerGang)
			}
			alloc := "incomplete"
			if !math.IsNaN(run.GPUAllocation) {
				alloc = fmt.Sprintf("%.0f%%", 100*run.GPUAllocation)
			}
			cpu, rss := "in-process", "–"
			if run.PeakRSSMiB > 0 {
				cpu, rss = fmt.Sprintf("%.1f", run.CPUSeconds), fmt.Sprintf("%.0f", run.PeakRSSMiB)
			}
			fmt.Fprintf(w, "| %s | %d/%d | %.1f | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s | %s |\n",
				run.Scheduler, run.Bound, run.Pods, run.PodsPerSecond.Avg, run.PodsPerSecond.P50, run.PodsPerSecond.P90,
				run.PodsPerSecond.P99, gang, smallest, blocks, alloc, cpu, rss)
		}
	}
}
