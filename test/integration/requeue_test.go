package integration

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/scheduler"
)

// A GPU gang that cannot fit is not retried for events that cannot help it: while unrelated
// CPU-only pods come and go for 30 s it costs at most 8 scheduling attempts and 2 PodGroup status
// writes; when GPUs it needs come free it is retried at once.
func TestGangThatCannotFitIsNotRetriedForNothing(t *testing.T) {
	e := newGangEnv(t, 4, 8)
	e.queue("default", 0, nil)
	// Three of the four nodes are full of GPUs: a 2 × 8-GPU gang cannot fit.
	for i := range 3 {
		p := gangPod("default", fmt.Sprintf("holder-%d", i), "", "default", 8)
		p.Spec.NodeName = fmt.Sprintf("node-%d", i)
		_, err := e.kc.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	startScheduler(t, e.cp)
	e.gang("default", "big", "default", 2, 2, 8, nil)
	e.waitCondition("default", "big", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonUnschedulable, "needs 8 nvidia.com/gpu")

	// Count status writes to the PodGroup from here on.
	wc, err := client.NewWithWatch(e.cp.Config, client.Options{Scheme: e.c.Scheme()})
	require.NoError(t, err)
	w, err := wc.Watch(e.ctx, &v1beta1.PodGroupList{}, client.InNamespace("default"))
	require.NoError(t, err)
	defer w.Stop()
	var writes atomic.Int32
	go func() {
		for ev := range w.ResultChan() {
			if pg, ok := ev.Object.(*v1beta1.PodGroup); ok && ev.Type == watch.Modified && pg.Name == "big" {
				writes.Add(1)
			}
		}
	}()
	time.Sleep(time.Second) // the watch's initial ADDED events pass
	writes.Store(0)
	const attempts = `scheduler_schedule_attempts_total{profile="t9k-scheduler",result="unschedulable"}`
	before := snapshotMetrics(t)

	// Unrelated CPU-only pods come and go for 30 s.
	var prev string
	cpu := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
	for i := range 60 {
		name := fmt.Sprintf("cpu-%d", i)
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec: corev1.PodSpec{SchedulerName: scheduler.SchedulerName, Containers: []corev1.Container{{Name: "main", Image: "busybox",
				Resources: corev1.ResourceRequirements{Requests: cpu, Limits: cpu}}}}}
		_, err := e.kc.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{})
		require.NoError(t, err)
		if prev != "" {
			require.NoError(t, e.kc.CoreV1().Pods("default").Delete(e.ctx, prev, *metav1.NewDeleteOptions(0)))
		}
		prev = name
		time.Sleep(500 * time.Millisecond)
	}
	after := snapshotMetrics(t)
	n := after[attempts] - before[attempts]
	t.Logf("in 30 s of unrelated pods: %.0f unschedulable attempts, %d PodGroup status writes", n, writes.Load())
	require.LessOrEqual(t, n, 8.0, "unschedulable attempts while nothing could help the gang")
	require.LessOrEqual(t, writes.Load(), int32(2), "PodGroup status writes while nothing changed for the gang")

	// GPUs it needs come free: it is retried at once, not after the periodic flush.
	freed := time.Now()
	require.NoError(t, e.kc.CoreV1().Pods("default").Delete(e.ctx, "holder-0", *metav1.NewDeleteOptions(0)))
	e.waitBound("default", "big", 2, 20*time.Second)
	t.Logf("bound %s after the GPUs came free", time.Since(freed).Round(10*time.Millisecond))
}
