// Package scheme adds t9k's plugin args to the kube-scheduler's config scheme. Import it (for its
// side effect) wherever a KubeSchedulerConfiguration carrying T9kGang/T9kQueue args is loaded.
package scheme

import (
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	schedv1 "k8s.io/kube-scheduler/config/v1"
	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	kubeschedulerscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"

	// Their init functions register our kinds into the two builders used below.
	_ "github.com/tensorstack/t9k/pkg/plugins/apis/config"
	_ "github.com/tensorstack/t9k/pkg/plugins/apis/config/v1"
)

func init() {
	// kubeschedulerscheme.Scheme was built in its own init, before ours registered: rebuild it.
	utilruntime.Must(schedconfig.AddToScheme(kubeschedulerscheme.Scheme))
	utilruntime.Must(schedv1.AddToScheme(kubeschedulerscheme.Scheme))
}
