// Command t9k-scheduler is the kube-scheduler with t9k's plugins. It takes kube-scheduler's flags;
// see manifests/scheduler/ for the profiles we ship.
package main

import (
	"os"
	"runtime/debug"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go request metrics on /metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // build version metric

	"github.com/tensorstack/t9k/pkg/scheduler"
)

// gcPercent is the GOGC the scheduler runs with unless GOGC is set. t9k keeps a topology model
// and gang state beside the framework's caches, and spends far less CPU than kube-scheduler on
// the same work (README "Memory"): collecting when the heap has grown by half, not doubled,
// spends some of that CPU on a lower peak.
const gcPercent = 50

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(gcPercent)
	}
	os.Exit(cli.Run(scheduler.NewCommand()))
}
