package main

import (
	"fmt"
	"image/color"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
)

// schedulerColors keeps each scheduler's colour the same across charts.
var schedulerColors = map[string]color.RGBA{
	"noop-binder":    {R: 150, G: 150, B: 150, A: 255},
	"kube-scheduler": {R: 31, G: 119, B: 180, A: 255},
	"coscheduling":   {R: 255, G: 127, B: 14, A: 255},
	"t9k-scheduler":  {R: 44, G: 160, B: 44, A: 255},
	"t9k-binpack":    {R: 148, G: 103, B: 189, A: 255},
}

// writeCharts draws, per workload, the cumulative number of bound pods (for a stream: the share of
// GPUs allocated) against seconds since the first pod was created, one line per scheduler.
// Returns the files written.
func (r *Report) writeCharts(dir string) ([]string, error) {
	byWorkload := map[string][]Run{}
	var order []string
	for _, run := range r.Runs {
		if run.Repeat != 0 {
			continue // one line per scheduler: the first run
		}
		if _, ok := byWorkload[run.Workload]; !ok {
			order = append(order, run.Workload)
		}
		byWorkload[run.Workload] = append(byWorkload[run.Workload], run)
	}
	var files []string
	for _, wl := range order {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("%s: pods bound over time (%d nodes, %d GPUs)", wl, r.Nodes, r.GPUs)
		p.X.Label.Text = "seconds since the first pod was created"
		p.Y.Label.Text = "pods bound"
		stream := byWorkload[wl][0].Saturation != nil
		if stream {
			// A stream's pods come and go: show the share of GPUs held instead.
			p.Title.Text = fmt.Sprintf("%s: GPUs allocated over time (%d nodes, %d GPUs)", wl, r.Nodes, r.GPUs)
			p.Y.Label.Text = "GPUs allocated (%)"
		}
		p.Add(plotter.NewGrid())
		p.Legend.Top, p.Legend.Left = false, false
		for _, run := range byWorkload[wl] {
			series, label := run.BoundOverTime, fmt.Sprintf("%s (%.0f pods/s)", run.Scheduler, run.PodsPerSecond.Avg)
			if stream {
				series, label = run.AllocationOverTime, fmt.Sprintf("%s (%.1f%% at saturation)", run.Scheduler, 100*run.Saturation.GPUAllocation)
			}
			pts := make(plotter.XYs, len(series)+1)
			for i, v := range series {
				pts[i+1] = plotter.XY{X: float64(i+1) * chartStep, Y: v}
			}
			line, err := plotter.NewLine(pts)
			if err != nil {
				return nil, err
			}
			line.Color = schedulerColors[run.Scheduler]
			line.Width = vg.Points(2)
			p.Add(line)
			p.Legend.Add(label, line)
		}
		path := filepath.Join(dir, wl+".png")
		if err := p.Save(8*vg.Inch, 4.5*vg.Inch, path); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}
