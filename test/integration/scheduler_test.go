package integration

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/localcluster"
	"github.com/tensorstack/t9k/pkg/scheduler"
)

// startScheduler runs t9k-scheduler's code in this process with the shipped default profile, as
// ServiceAccount t9k-system/t9k-scheduler holding only the shipped RBAC (a request it refuses fails
// the test). The returned function stops it (as a restart would); otherwise it stops when the test
// ends. Leader election is off here (kube-scheduler exits the process when its elector stops);
// TestInstallRunsAsServiceAccounts runs the binary with it.
func startScheduler(t *testing.T, cp *controlplane.ControlPlane) (stop func()) {
	t.Helper()
	dir := t.TempDir()
	kubeconfig := startSAProxy(t, cp, saScheduler).Kubeconfig
	root, err := controlplane.ModuleRoot()
	require.NoError(t, err)
	cfg := filepath.Join(dir, "scheduler.yaml")
	require.NoError(t, localcluster.WriteSchedulerConfig(filepath.Join(root, "manifests/scheduler/t9k-scheduler.yaml"), cfg, kubeconfig))

	// A held gang member whose gate opened without the event reaching it is rescued by the 15 s
	// sweep, so a test would still pass with a lost event, only slower: every test ends by
	// checking that the sweep released nothing (unless it exists to test the sweep).
	const swept = "t9k_scheduler_gate_sweep_released_total{}"
	sweptBefore := snapshotMetrics(t)[swept]
	t.Cleanup(func() {
		if _, ok := sweepAllowed.Load(t.Name()); ok || t.Failed() {
			return
		}
		if n := snapshotMetrics(t)[swept] - sweptBefore; n != 0 {
			t.Errorf("the held-gate sweep released %v members: a gate-opening event was lost", n)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done, err := scheduler.Start(ctx, append([]string{"--config=" + cfg, "--secure-port=0"}, schedulerExtraArgs()...))
	require.NoError(t, err)
	// A scheduler that stops on its own (lost its lease, failed to start) fails the test loudly.
	exited := make(chan struct{})
	go func() {
		err := <-done
		if ctx.Err() == nil {
			t.Errorf("scheduler exited while the test ran: %v", err)
		}
		close(exited)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-exited:
			case <-time.After(30 * time.Second):
				t.Error("scheduler did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// sweepAllowed: tests (by name) in which the held-gate sweep is expected to release members.
var sweepAllowed sync.Map

// allowSweep exempts the test from startScheduler's check that the sweep released nothing.
func allowSweep(t *testing.T) { sweepAllowed.Store(t.Name(), true) }

// readyNode is a Node as a kubelet would register it: Ready, with GPU capacity.
func readyNode(name string, gpus int64) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("64"),
		corev1.ResourceMemory: resource.MustParse("512Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
		"nvidia.com/gpu":      *resource.NewQuantity(gpus, resource.DecimalSI),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Conditions:  []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, LastHeartbeatTime: metav1.Now()}},
		},
	}
}

func TestSchedulerBindsPod(t *testing.T) {
	cp := startControlPlane(t)
	client, err := kubernetes.NewForConfig(cp.Config)
	require.NoError(t, err)
	ctx := context.Background()

	nodes := map[string]bool{}
	for i := range 3 {
		n, err := client.CoreV1().Nodes().Create(ctx, readyNode(fmt.Sprintf("node-%d", i), 8), metav1.CreateOptions{})
		require.NoError(t, err)
		nodes[n.Name] = true
	}
	startScheduler(t, cp)

	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "gpu-pod", Namespace: "default"},
		Spec: corev1.PodSpec{
			SchedulerName: scheduler.SchedulerName,
			Containers: []corev1.Container{{
				Name: "main", Image: "busybox",
				Resources: corev1.ResourceRequirements{
					Requests: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("4")},
					Limits:   corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("4")},
				},
			}},
		},
	}
	_, err = client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	// A pod for another scheduler must be left alone: proves the binding came from t9k-scheduler.
	other := pod.DeepCopy()
	other.Name, other.Spec.SchedulerName = "other-pod", "someone-else"
	_, err = client.CoreV1().Pods("default").Create(ctx, other, metav1.CreateOptions{})
	require.NoError(t, err)

	var bound string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := client.CoreV1().Pods("default").Get(ctx, "gpu-pod", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		bound = p.Spec.NodeName
		return bound != "", nil
	})
	require.NoError(t, err, "pod was not bound")
	require.True(t, nodes[bound], "bound to unknown node %q", bound)

	o, err := client.CoreV1().Pods("default").Get(ctx, "other-pod", metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, o.Spec.NodeName, "a pod of another scheduler was bound")
	t.Logf("gpu-pod bound to %s", bound)
}
