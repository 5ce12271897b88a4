package integration

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/metrics/legacyregistry"
)

// metrics is a snapshot of the in-process registry (the scheduler under test runs in this
// process): counter and gauge values and histogram sample counts, by name{label="value",...}.
type metrics map[string]float64

func snapshotMetrics(t *testing.T) metrics {
	t.Helper()
	families, err := legacyregistry.DefaultGatherer.Gather()
	require.NoError(t, err)
	out := metrics{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			out[seriesKey(f.GetName(), m)] = seriesValue(m)
		}
	}
	return out
}

func seriesKey(name string, m *dto.Metric) string {
	var lbls []string
	for _, l := range m.GetLabel() {
		lbls = append(lbls, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(lbls)
	return name + "{" + strings.Join(lbls, ",") + "}"
}

func seriesValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	case m.Gauge != nil:
		return m.GetGauge().GetValue()
	case m.Histogram != nil:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return 0
}

// requireDelta asserts that a series moved by exactly want since before (other tests in this
// process may have moved it earlier: only this test's change counts).
func requireDelta(t *testing.T, before, after metrics, series string, want float64) {
	t.Helper()
	require.Equal(t, want, after[series]-before[series], "%s: %v before, %v after", series, before[series], after[series])
}

// seriesOf lists the series of one metric name whose value is non-zero, for failure messages.
func (m metrics) seriesOf(name string) []string {
	var out []string
	for k, v := range m {
		if strings.HasPrefix(k, name+"{") && v != 0 {
			out = append(out, fmt.Sprintf("%s %v", k, v))
		}
	}
	sort.Strings(out)
	return out
}

// waitPastSecond waits until the apiserver's next creationTimestamp (whole seconds) is later
// than created: objects made after it are then ordered after it by creation time.
func waitPastSecond(created metav1.Time) {
	for !time.Now().Truncate(time.Second).After(created.Time) {
		time.Sleep(20 * time.Millisecond)
	}
}

// sum adds the series whose key starts with prefix (a name, or a name and its first labels).
func (m metrics) sum(prefix string) float64 {
	total := 0.0
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			total += v
		}
	}
	return total
}
