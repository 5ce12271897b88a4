package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/localcluster"
	"github.com/tensorstack/t9k/pkg/scheduler"
)

// TestLocalClusterRunsPod brings up the local cluster (as `make demo` does, smaller), checks the
// nodes kwok made Ready with their GPUs and topology labels, and follows a t9k-scheduler pod through
// Running to Succeeded via the kwok stages.
func TestLocalClusterRunsPod(t *testing.T) {
	ctx := context.Background()
	spec := localcluster.DefaultSpec()
	spec.Spines, spec.BlocksPerSpine, spec.NodesPerBlock = 1, 2, 2
	c, err := localcluster.Start(ctx, localcluster.Options{
		Dir: t.TempDir(), BinDir: binDir(t), Spec: spec, Progress: testWriter{t},
	})
	require.NoError(t, err)
	t.Cleanup(c.Stop)

	nodes, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, nodes.Items, 4)
	blocks := map[string]int{}
	for _, n := range nodes.Items {
		require.True(t, localcluster.NodeReady(&n), "node %s not Ready", n.Name)
		gpus := n.Status.Allocatable[localcluster.ResourceGPU]
		require.Equal(t, int64(8), gpus.Value(), "node %s GPUs", n.Name)
		blocks[n.Labels[localcluster.LabelBlock]]++
	}
	require.Equal(t, map[string]int{"block-0": 2, "block-1": 2}, blocks)

	startScheduler(t, c.ControlPlane)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "train", Namespace: "default",
			Annotations: map[string]string{"local.tensorstack.dev/run-duration": "2s"},
		},
		Spec: corev1.PodSpec{
			SchedulerName: scheduler.SchedulerName,
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{
				Name: "main", Image: "pytorch",
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{localcluster.ResourceGPU: resource.MustParse("8")}},
			}},
		},
	}
	_, err = c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)

	var seen []corev1.PodPhase
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, "train", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(seen) == 0 || seen[len(seen)-1] != p.Status.Phase {
			seen = append(seen, p.Status.Phase)
		}
		return p.Status.Phase == corev1.PodSucceeded, nil
	})
	require.NoError(t, err, "phases seen: %v (kwok log %s)", seen, c.LogPath("kwok"))
	require.Contains(t, seen, corev1.PodRunning, "pod never reported Running")
}

func binDir(t *testing.T) string {
	t.Helper()
	d, err := controlplane.BinDir()
	require.NoError(t, err)
	return d
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
