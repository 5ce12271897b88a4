package main

import (
	"embed"
	"fmt"
	"io/fs"
	"sort"

	"sigs.k8s.io/yaml"
)

//go:embed workloads/*.yaml
var workloadFiles embed.FS

// Workload is one benchmark scenario, read from workloads/*.yaml. Sizes are relative to the
// cluster so the same file works at 50 and at 5000 nodes.
type Workload struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Gangs lists groups of identical jobs. A job of 1 pod is a plain pod (no PodGroup).
	Gangs []GangSpec `json:"gangs"`
	// Stream, when set, makes the workload a saturating stream of the Gangs mix instead of one burst.
	Stream *StreamSpec `json:"stream,omitempty"`
	// Backlog, for a burst: every pod (and PodGroup) is created before the scheduler starts, and
	// time counts from the first bind. A burst created while the scheduler runs is capped by how
	// fast the harness can create pods (the no-op binder's figure); a backlog measures how fast the
	// scheduler drains work, as scheduler_perf's throughput does.
	Backlog bool `json:"backlog,omitempty"`
}

// StreamSpec: jobs of the Gangs mix (one cluster's worth per cycle, gpuShare as weights) keep
// arriving so that OfferedLoad × the cluster's GPUs are always asked for by live jobs. Once the
// cluster settles (no bind for SettleSeconds), the harness samples GPU allocation; then, Rounds
// times, the oldest FinishShare of the fully bound jobs finish (their pods are deleted), new jobs
// top the offered load up again, and the cluster settles and is sampled again.
type StreamSpec struct {
	OfferedLoad   float64 `json:"offeredLoad"`
	Rounds        int     `json:"rounds"`
	FinishShare   float64 `json:"finishShare"`
	SettleSeconds float64 `json:"settleSeconds"`
}

// Generator returns the stream's endless job sequence: Jobs(totalGPUs) over and over, each cycle's
// names suffixed so every job is new.
func (w Workload) Generator(totalGPUs int) func() Job {
	cycle := w.Jobs(totalGPUs)
	n := 0
	return func() Job {
		if len(cycle) == 0 {
			return Job{}
		}
		j := cycle[n%len(cycle)]
		j.Name = fmt.Sprintf("%s-c%d", j.Name, n/len(cycle))
		n++
		return j
	}
}

// GangSpec is Count jobs (or, with GPUShare, as many as use that share of the cluster's GPUs) of
// Pods pods × GPUs GPUs each.
type GangSpec struct {
	Pods     int     `json:"pods"`
	GPUs     int     `json:"gpus"`
	Count    int     `json:"count,omitempty"`
	GPUShare float64 `json:"gpuShare,omitempty"`
}

// Jobs expands the workload for a cluster with totalGPUs GPUs, interleaving sizes as a real
// submission stream would. Gangs needing more than a quarter of the cluster are left out (a small
// smoke cluster cannot hold a 64×8 gang next to the rest).
func (w Workload) Jobs(totalGPUs int) []Job {
	var perSpec [][]Job
	for i, g := range w.Gangs {
		if g.Pods*g.GPUs*4 > totalGPUs {
			continue
		}
		n := g.Count
		if g.GPUShare > 0 {
			n = int(g.GPUShare * float64(totalGPUs) / float64(g.Pods*g.GPUs))
		}
		var js []Job
		for j := 0; j < n; j++ {
			js = append(js, Job{Name: fmt.Sprintf("g%d-%dx%d-%d", i, g.Pods, g.GPUs, j), Pods: g.Pods, GPUs: g.GPUs})
		}
		perSpec = append(perSpec, js)
	}
	var out []Job
	for more := true; more; {
		more = false
		for i := range perSpec {
			if len(perSpec[i]) > 0 {
				out = append(out, perSpec[i][0])
				perSpec[i] = perSpec[i][1:]
				more = true
			}
		}
	}
	return out
}

// Job is one gang (or plain pod when Pods == 1).
type Job struct {
	Name string
	Pods int
	GPUs int // per pod
}

func loadWorkloads() (map[string]Workload, []string, error) {
	out := map[string]Workload{}
	entries, err := fs.Glob(workloadFiles, "workloads/*.yaml")
	if err != nil {
		return nil, nil, err
	}
	var names []string
	for _, e := range entries {
		data, err := workloadFiles.ReadFile(e)
		if err != nil {
			return nil, nil, err
		}
		var w Workload
		if err := yaml.UnmarshalStrict(data, &w); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", e, err)
		}
		if w.Name == "" || len(w.Gangs) == 0 {
			return nil, nil, fmt.Errorf("%s: a workload needs a name and gangs", e)
		}
		if st := w.Stream; st != nil && (st.OfferedLoad <= 1 || st.Rounds < 0 || st.FinishShare <= 0 || st.FinishShare > 1 || st.SettleSeconds <= 0) {
			return nil, nil, fmt.Errorf("%s: stream %+v needs offeredLoad > 1 (saturating), rounds ≥ 0, 0 < finishShare ≤ 1 and settleSeconds > 0", e, *st)
		}
		for _, g := range w.Gangs {
			if g.Pods < 1 || g.GPUs < 0 || (g.Count == 0) == (g.GPUShare == 0) {
				return nil, nil, fmt.Errorf("%s: gang %+v needs pods ≥ 1 and exactly one of count, gpuShare", e, g)
			}
		}
		out[w.Name] = w
		names = append(names, w.Name)
	}
	sort.Strings(names)
	return out, names, nil
}
