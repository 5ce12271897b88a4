package integration

import (
	"fmt"
	"testing"
	"time"
)

// recorder is a testingT that records a failure instead of ending the test.
type recorder struct{ failed []string }

func (r *recorder) Errorf(format string, args ...any) {
	r.failed = append(r.failed, fmt.Sprintf(format, args...))
}
func (r *recorder) FailNow() { panic(r) }
func (r *recorder) Helper()  {}

// fails runs check and says whether it failed.
func fails(check func(testingT)) (failed bool) {
	r := &recorder{}
	defer func() {
		if v := recover(); v != nil {
			if v != r {
				panic(v)
			}
			failed = true
		}
	}()
	check(r)
	return len(r.failed) > 0
}

func samplesOf(bound ...int) []sample {
	t0 := time.Unix(0, 0)
	out := make([]sample, len(bound))
	for i, b := range bound {
		out[i] = sample{at: t0.Add(time.Duration(i) * 20 * time.Millisecond), bound: b}
	}
	return out
}

// The all-or-nothing check fails on every way a gang can be seen partly bound, and passes on a
// gang that binds in one burst and later finishes.
func TestRequireAllOrNothingCatchesPartialGangs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		samples []sample
		fail    bool
	}{
		{"no samples", nil, true},
		{"never whole", samplesOf(0, 0, 0), true},
		{"partial, never whole", samplesOf(0, 1, 1, 1), true},
		{"partial back to nothing", samplesOf(0, 1, 0, 0, 2), true},
		{"partial for too long", samplesOf(append(append([]int{0}, repeat(1, maxInFlightSamples+1)...), 2)...), true},
		{"ends partial after a whole stretch", samplesOf(0, 2, 0, 1), true},
		{"one burst", samplesOf(0, 0, 1, 2, 2), false},
		{"at once", samplesOf(0, 2, 2), false},
		{"whole, then finishing one by one", samplesOf(0, 2, 1, 0), false},
		{"bursts of in-flight binds within the limit", samplesOf(append(append([]int{0}, repeat(1, maxInFlightSamples)...), 2)...), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fails(func(r testingT) { requireAllOrNothing(r, tc.samples, 2, "g") })
			if got != tc.fail {
				t.Errorf("requireAllOrNothing failed=%v, want %v", got, tc.fail)
			}
		})
	}
	if !fails(func(r testingT) { requireNeverBound(r, nil, "g") }) {
		t.Error("requireNeverBound passed on no samples")
	}
	if !fails(func(r testingT) { requireNeverBound(r, samplesOf(0, 1, 0), "g") }) {
		t.Error("requireNeverBound passed on a bound sample")
	}
}

func repeat(v, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = v
	}
	return out
}
