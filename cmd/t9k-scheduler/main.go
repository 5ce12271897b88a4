// Command t9k-scheduler is the kube-scheduler with t9k's plugins. It takes kube-scheduler's flags;
// see manifests/scheduler/ for the profiles we ship.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go request metrics on /metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // build version metric

	"github.com/tensorstack/t9k/pkg/scheduler"
)

func main() {
	os.Exit(cli.Run(scheduler.NewCommand()))
}
