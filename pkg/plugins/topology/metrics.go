package topology

import (
	"sync"

	"k8s.io/component-base/metrics"
	"k8s.io/component-base/metrics/legacyregistry"
)

// Reservation metrics, on the scheduler's /metrics beside kube-scheduler's own.
var (
	reservationsActive = metrics.NewGauge(&metrics.GaugeOpts{
		Subsystem:      "t9k_scheduler",
		Name:           "reservations_active",
		Help:           "Gangs holding a reservation of draining GPUs.",
		StabilityLevel: metrics.ALPHA,
	})
	reservationIdleGPUSeconds = metrics.NewCounter(&metrics.CounterOpts{
		Subsystem:      "t9k_scheduler",
		Name:           "reservation_idle_gpu_seconds_total",
		Help:           "GPU-seconds left free on reserved nodes while their gang waited for the rest to drain.",
		StabilityLevel: metrics.ALPHA,
	})
	reservedGangWait = metrics.NewHistogram(&metrics.HistogramOpts{
		Subsystem:      "t9k_scheduler",
		Name:           "reserved_gang_wait_seconds",
		Help:           "Seconds from a reserved gang's creation to its placement.",
		Buckets:        metrics.ExponentialBuckets(1, 2, 16),
		StabilityLevel: metrics.ALPHA,
	})
	registerOnce sync.Once
)

func registerMetrics() {
	registerOnce.Do(func() {
		legacyregistry.MustRegister(reservationsActive, reservationIdleGPUSeconds, reservedGangWait)
	})
}
