package placement

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

var (
	// Refusals counts nodes of a gang's proposal that the profile's own filters refused a member
	// on, by the refusing plugin; the gang was placed again around them.
	Refusals = metrics.NewCounterVec(&metrics.CounterOpts{
		Subsystem:      "t9k_scheduler",
		Name:           "plan_refusals_total",
		Help:           "Nodes of a gang's proposed placement that the profile's own filters refused a member on, by the refusing plugin; the gang was placed again around them.",
		StabilityLevel: metrics.ALPHA,
	}, []string{"plugin"})
	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() { legacyregistry.MustRegister(Refusals) })
}
