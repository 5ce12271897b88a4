package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// metricsClient reads a scheduler's /metrics over its self-signed loopback port.
var metricsClient = &http.Client{
	Timeout:   10 * time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // loopback, self-signed
}

// sample is one line of the Prometheus text format: a metric name, its labels and its value.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrapeMetrics fetches and parses a scheduler's /metrics.
func scrapeMetrics(ctx context.Context, url string) ([]sample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return parseMetrics(resp.Body)
}

// parseMetrics reads the Prometheus text exposition format (comments skipped, no timestamps
// expected, as component-base writes it).
func parseMetrics(r io.Reader) ([]sample, error) {
	var out []sample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		cut := strings.LastIndexByte(line, ' ')
		if cut < 0 {
			return nil, fmt.Errorf("metrics line %q: no value", line)
		}
		v, err := strconv.ParseFloat(line[cut+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics line %q: %w", line, err)
		}
		s := sample{name: strings.TrimSpace(line[:cut]), value: v, labels: map[string]string{}}
		if open := strings.IndexByte(s.name, '{'); open >= 0 {
			if s.labels, err = parseLabels(strings.TrimSuffix(s.name[open+1:], "}")); err != nil {
				return nil, fmt.Errorf("metrics line %q: %w", line, err)
			}
			s.name = s.name[:open]
		}
		out = append(out, s)
	}
	return out, sc.Err()
}

// parseLabels reads `a="x",b="y"` with the format's escapes (\\, \", \n).
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || len(s) < eq+2 || s[eq+1] != '"' {
			return nil, fmt.Errorf("bad labels at %q", s)
		}
		name := strings.TrimSpace(s[:eq])
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				if s[i] == 'n' {
					val.WriteByte('\n')
					continue
				}
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, fmt.Errorf("unterminated label value in %q", s)
		}
		out[name] = val.String()
		s = strings.TrimPrefix(strings.TrimSpace(s[i+1:]), ",")
		s = strings.TrimSpace(s)
	}
	return out, nil
}

// sumMetric adds the values of every sample of the metric whose labels include match. found says
// whether there was any such sample (a gauge vector not yet set has none).
func sumMetric(samples []sample, name string, match map[string]string) (total float64, found bool) {
	for _, s := range samples {
		if s.name != name {
			continue
		}
		ok := true
		for k, v := range match {
			if s.labels[k] != v {
				ok = false
				break
			}
		}
		if ok {
			total += s.value
			found = true
		}
	}
	return total, found
}

// SchedulerState is what a scheduler's own gauges say at one moment: pods it holds between its
// scheduling and binding cycles, and its queues. Reserved is
// scheduler_goroutines{operation="binding"}: one binding goroutine per pod that was assumed and
// reserved and has not finished binding, so it counts the pods waiting at Permit (a gang's placed
// members waiting for the rest: T9kGang's and Coscheduling's Permit) plus binds in flight. A
// t9k gang plan is live between its first member's Reserve and its last member's bind (a member
// that fails drops the plan at once), so a live plan has a reserved member among these.
type SchedulerState struct {
	Reserved      int `json:"reservedUnbound"`
	Active        int `json:"activeQueue"`
	Backoff       int `json:"backoffQueue"`
	Unschedulable int `json:"unschedulableQueue"`
}

// readSchedulerState scrapes a scheduler's /metrics for its SchedulerState.
func readSchedulerState(ctx context.Context, url string) (SchedulerState, error) {
	m, err := scrapeMetrics(ctx, url)
	if err != nil {
		return SchedulerState{}, err
	}
	return schedulerState(m)
}

// schedulerState reads the gauges. The binding gauge must be there (it is from the first bind on,
// and the harness's probe pod was bound before any sample): reading a missing gauge as 0 would
// end settle windows early without a word.
func schedulerState(samples []sample) (SchedulerState, error) {
	if _, ok := sumMetric(samples, "scheduler_goroutines", map[string]string{"operation": "binding"}); !ok {
		return SchedulerState{}, fmt.Errorf(`no scheduler_goroutines{operation="binding"} on /metrics`)
	}
	get := func(name string, match map[string]string) int {
		v, _ := sumMetric(samples, name, match)
		return int(v)
	}
	return SchedulerState{
		Reserved:      get("scheduler_goroutines", map[string]string{"operation": "binding"}),
		Active:        get("scheduler_pending_pods", map[string]string{"queue": "active"}),
		Backoff:       get("scheduler_pending_pods", map[string]string{"queue": "backoff"}),
		Unschedulable: get("scheduler_pending_pods", map[string]string{"queue": "unschedulable"}),
	}, nil
}
