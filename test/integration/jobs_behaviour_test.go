package integration

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// TestJobActiveDeadline: a PyTorch job past runPolicy.activeDeadlineSeconds fails and its
// running pods are stopped.
func TestJobActiveDeadline(t *testing.T) {
	e := startJobs(t)
	job := e.apply("torchrun-mnist.yaml", func(o client.Object) {
		o.(*batch.PyTorchTrainingJob).Spec.RunPolicy = &batch.TrainingRunPolicy{ActiveDeadlineSeconds: ptr.To[int64](2)}
	})
	name := "torchrun-mnist"
	e.runAll(podNames(e.waitPods(name, name+"-node-0", name+"-node-1"))...)
	// Observed every 20ms, so the failure is seen within that of when it was written.
	var st *batch.JobStatus
	require.Eventually(t, func() bool {
		if e.c.Get(e.ctx, client.ObjectKeyFromObject(job), job) != nil {
			return false
		}
		st = statusOf(job)
		return st.Phase == batch.JobFailed
	}, 30*time.Second, 20*time.Millisecond)
	failedSeen := time.Now()
	requireCondition(t, st, batch.JobConditionFailed, corev1.ConditionTrue, workloads.ReasonDeadlineExceeded,
		"PyTorchTrainingJob torchrun-mnist has failed: it ran longer than activeDeadlineSeconds (2s)")
	// The deadline counts from status.startTime as stored; the failure may not come before it.
	ran := failedSeen.Sub(st.StartTime.Time)
	require.GreaterOrEqual(t, ran, 2*time.Second, "failed %s after startTime", ran)
	t.Logf("failed %s after startTime", ran.Round(10*time.Millisecond))
	e.waitPods(name)
}

// TestJobCleanUpPolicy: once generic-example succeeds (worker-0 succeeded, three
// still running), All deletes every pod, Unfinished the running ones, None none, but stops the
// running ones (spec.activeDeadlineSeconds).
func TestJobCleanUpPolicy(t *testing.T) {
	e := startJobs(t)
	for _, tc := range []struct {
		policy batch.CleanUpPolicy
		left   []int
	}{
		{batch.CleanUpPolicyAll, nil},
		{batch.CleanUpPolicyUnfinished, []int{0}},
		{batch.CleanUpPolicyNone, []int{0, 1, 2, 3}},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			name := "cleanup-" + strings.ToLower(string(tc.policy))
			job := e.apply("generic-example.yaml", func(o client.Object) {
				o.SetName(name)
				o.(*batch.GenericJob).Spec.CleanUpPolicy = tc.policy
			})
			var all, left []string
			for i := 0; i < 4; i++ {
				all = append(all, fmt.Sprintf("%s-worker-%d", name, i))
			}
			for _, i := range tc.left {
				left = append(left, all[i])
			}
			e.runAll(podNames(e.waitPods(name, all...))...)
			e.setPhase(all[0], corev1.PodSucceeded, 0)
			// The trigger: the controller saw the job succeed (it cleans up in the same pass).
			e.waitPhase(job, batch.JobSucceeded)
			e.waitPods(name, left...)
			e.holds("the pods the policy keeps", time.Second, func() bool {
				return slices.Equal(podNames(e.pods(name)), left)
			})
			// Kept pods that were still running are stopped: a finished job holds nothing.
			for _, n := range left {
				if n != all[0] { // worker-0 succeeded
					e.waitStopped(n)
				}
			}
		})
	}
}

// TestJobPauseResume: pausing deletes the pods (phase Paused); resuming recreates them with the
// resumeSpecs command (Resuming) until all run again (Running).
func TestJobPauseResume(t *testing.T) {
	e := startJobs(t)
	job := e.apply("generic-example.yaml", func(o client.Object) {
		o.(*batch.GenericJob).Spec.RunMode = &batch.RunMode{Pause: &batch.PauseMode{
			ResumeSpecs: []batch.ResumeSpec{{Type: "worker", Command: []string{"sleep", "1000"}}}}}
	})
	name := "generic-example"
	all := []string{name + "-worker-0", name + "-worker-1", name + "-worker-2", name + "-worker-3"}
	e.runAll(podNames(e.waitPods(name, all...))...)
	e.waitPhase(job, batch.JobRunning)

	setPause := func(on bool) {
		gj := &batch.GenericJob{}
		require.NoError(t, e.c.Get(e.ctx, client.ObjectKeyFromObject(job), gj))
		gj.Spec.RunMode.Pause.Enabled = on
		require.NoError(t, e.c.Update(e.ctx, gj))
	}
	setPause(true)
	st := e.waitPhase(job, batch.JobPaused)
	requireCondition(t, st, batch.JobConditionPaused, corev1.ConditionTrue, workloads.ReasonPaused, workloads.MessagePaused)
	e.waitPods(name)
	st = e.waitJob(job, "replicas reported Deleted", func(s *batch.JobStatus) bool { return s.Aggregate.Deleted == 4 })

	setPause(false)
	pods := e.waitPods(name, all...)
	require.Equal(t, []string{"sleep", "1000"}, pods[0].Spec.Containers[0].Command)
	st = e.waitPhase(job, batch.JobResuming)
	requireCondition(t, st, batch.JobConditionPaused, corev1.ConditionFalse, workloads.ReasonResumed, workloads.MessageResumed)
	e.runAll(all...)
	e.waitPhase(job, batch.JobRunning)
}

// TestJobDebugMode: debug mode replaces the programs: a DeepSpeed job's worker-0 runs sshd instead
// of the launcher, a PyTorch job's container sleeps, or runs the command debug.replicaSpecs gives.
func TestJobDebugMode(t *testing.T) {
	e := startJobs(t)
	e.apply("neox-single-debug.yaml", nil)
	pod := e.waitPods("neox-single-debug", "neox-single-debug-worker-0")[0]
	require.Equal(t, []string{"/usr/sbin/sshd", "-D"}, container(&pod, "worker").Command)

	e.apply("llama3-debug.yaml", nil)
	pod = e.waitPods("llama3-debug", "llama3-debug-worker-0")[0]
	require.Equal(t, []string{"sleep", "inf"}, container(&pod, "llama3").Command)
	require.Empty(t, container(&pod, "llama3").Args)

	e.apply("llama3-debug.yaml", func(o client.Object) {
		o.SetName("llama3-debug-custom")
		j := o.(*batch.PyTorchTrainingJob)
		j.Spec.RunMode.Debug.ReplicaSpecs = []batch.ReplicaDebugSet{{Type: "worker", SkipInitContainer: true, Command: []string{"sleep", "3600"}}}
		j.Spec.ReplicaSpecs[0].Template.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
	})
	pod = e.waitPods("llama3-debug-custom", "llama3-debug-custom-worker-0")[0]
	require.Equal(t, []string{"sleep", "3600"}, container(&pod, "llama3").Command)
	require.Empty(t, pod.Spec.InitContainers)
}

// TestJobElasticDeepSpeed: the elastic gpt-neox DeepSpeedJob runs expectedReplicas workers and
// scales 3→2→4 (issue #14) without restarting a pod or counting a failure. The hostfile ConfigMap
// is mounted as a directory (the kubelet refreshes it in running pods) and worker-0 carries the
// readiness probe of its relaunch marker. On 3→2 the hostfile shrinks first and worker-2 stays
// until worker-0 acknowledges: this test plays worker-0's kubelet, whose probe fails while the
// supervisor relaunches and passes once the launcher runs on the new hosts. The PodGroup's
// minMember is minReplicas.
func TestJobElasticDeepSpeed(t *testing.T) {
	e := startJobs(t)
	job := e.apply("neox-elastic.yaml", func(o client.Object) {
		j := o.(*batch.DeepSpeedJob)
		j.Spec.Scheduler = &batch.SchedulePolicy{T9kScheduler: &batch.T9kScheduler{Queue: "default"}}
		j.Spec.Elastic.MaxReplicas = ptr.To[int32](4)
	})
	name := "neox-elastic"
	w := func(i int) string { return fmt.Sprintf("%s-worker-%d", name, i) }
	pods := e.waitPods(name, w(0), w(1), w(2))
	var pg schedv1.PodGroup
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &pg))
	require.Equal(t, int32(1), pg.Spec.MinMember)

	launcher := container(&pods[0], "worker")
	require.Contains(t, launcher.Command[2], "LAUNCH='deepspeed --hostfile=/t9k/hostfile --elastic_training --min_elastic_nodes=1 --max_elastic_nodes=4 train.py")
	for _, p := range pods {
		for _, m := range container(&p, "worker").VolumeMounts {
			if m.Name == "t9k-deepspeed" && m.MountPath != "/root/.deepspeed_env" {
				require.Equal(t, "/t9k/config", m.MountPath, "%s: the ConfigMap as a directory", p.Name)
				require.Empty(t, m.SubPath, "%s: a subPath mount is never refreshed", p.Name)
			}
		}
	}
	require.Contains(t, mountPaths(launcher), "/t9k/config")
	require.NotContains(t, mountPaths(launcher), "/t9k/hostfile", "a symlink, made in the container, not a mount")
	probe := launcher.ReadinessProbe
	require.NotNil(t, probe, "worker-0 acknowledges through its readiness")
	require.Equal(t, []string{"/bin/sh", "-c", "test ! -e /tmp/t9k-relaunch"}, probe.Exec.Command)
	require.Equal(t, int32(1), probe.PeriodSeconds)
	require.Equal(t, int32(1), probe.FailureThreshold)
	require.Nil(t, container(&pods[1], "worker").ReadinessProbe)

	cmName := client.ObjectKey{Namespace: e.ns, Name: name + "-deepspeed"}
	configMap := func() *corev1.ConfigMap {
		var cm corev1.ConfigMap
		require.NoError(t, e.c.Get(e.ctx, cmName, &cm))
		return &cm
	}
	hostsOf := func(n int) string {
		s := ""
		for i := 0; i < n; i++ {
			s += fmt.Sprintf("%s.%s slots=2\n", w(i), name)
		}
		return s
	}
	require.Equal(t, hostsOf(3), configMap().Data["hostfile"])
	scale := func(n int32) {
		// The controller writes the job's status meanwhile: retry on a conflict, as kubectl would.
		require.NoError(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			dj := &batch.DeepSpeedJob{}
			if err := e.c.Get(e.ctx, client.ObjectKeyFromObject(job), dj); err != nil {
				return err
			}
			dj.Spec.Elastic.ExpectedReplicas = &n
			return e.c.Update(e.ctx, dj)
		}))
	}
	e.runAll(w(0), w(1), w(2))
	e.waitPhase(job, batch.JobRunning)
	uids := map[string]types.UID{}
	for _, p := range e.pods(name) {
		uids[p.Name] = p.UID
	}
	unchanged := func() bool {
		for _, i := range []int{0, 1} {
			if p := e.pod(w(i)); p.UID != uids[w(i)] || p.DeletionTimestamp != nil {
				return false
			}
		}
		return true
	}

	// 3→2: the hostfile shrinks first; worker-2 stays while worker-0 has not acknowledged.
	scale(2)
	e.eventually("hostfile of 2", func() bool { return configMap().Data["hostfile"] == hostsOf(2) })
	stamp, err := time.Parse(time.RFC3339, configMap().Annotations[workloads.AnnotationUpdatedAt])
	require.NoError(t, err, "the ConfigMap says when its hostfile changed")
	e.holds("worker-2 kept until worker-0 acknowledges", 2*time.Second, func() bool {
		p := &corev1.Pod{}
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: w(2)}, p) == nil && p.DeletionTimestamp == nil
	})
	// The kubelet refreshes the mount, the supervisor creates its marker and the probe fails...
	e.setReady(w(0), corev1.ConditionFalse)
	e.holds("worker-2 kept while worker-0 relaunches", time.Second, func() bool {
		p := &corev1.Pod{}
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: w(2)}, p) == nil && p.DeletionTimestamp == nil
	})
	// ...and passes once the launcher runs on the two hosts (the supervisor holds the marker for
	// 5 s, so a real acknowledgement always comes in a later second than the stamp).
	for !time.Now().Truncate(time.Second).After(stamp) {
		time.Sleep(50 * time.Millisecond)
	}
	e.setReady(w(0), corev1.ConditionTrue)
	e.waitPods(name, w(0), w(1))
	require.True(t, unchanged(), "worker-0 and worker-1 are the same pods")
	e.eventually("the acknowledgement's event", func() bool {
		var events corev1.EventList
		require.NoError(t, e.c.List(e.ctx, &events, client.InNamespace(e.ns)))
		for _, ev := range events.Items {
			if ev.InvolvedObject.Name == name && ev.Reason == "ScaleDownAcknowledged" && ev.Type == corev1.EventTypeNormal &&
				strings.Contains(ev.Message, w(2)) {
				return true
			}
		}
		return false
	})

	// 2→4: the new pods come, and the hostfile lists them at once (the supervisor waits for their
	// sshd before it relaunches).
	scale(4)
	e.waitPods(name, w(0), w(1), w(2), w(3))
	e.eventually("hostfile of 4", func() bool { return configMap().Data["hostfile"] == hostsOf(4) })
	e.runAll(w(2), w(3))
	st := e.waitJob(job, "four replicas in status", func(s *batch.JobStatus) bool {
		return len(s.Tasks) == 1 && len(s.Tasks[0].Replicas) == 4 && s.Aggregate != nil && s.Aggregate.Running == 4
	})
	require.True(t, unchanged(), "worker-0 and worker-1 are the same pods")
	require.Equal(t, batch.JobRunning, st.Phase)
	require.Equal(t, int32(0), st.BackoffCount, "scaling is not a restart")
	require.Equal(t, int32(0), st.Tasks[0].RestartCount, "scaling is not a restart")
}

// TestJobControllerRestartNoDuplicates stops the controllers while they are creating a large
// job's pods, then runs two fresh controller processes at once: every replica ends with exactly
// one pod, and no pod made before the restart is replaced.
func TestJobControllerRestartNoDuplicates(t *testing.T) {
	e := startJobs(t)
	// Enough replicas that the controllers are stopped while still creating them.
	const n = 150
	job := e.apply("generic-example.yaml", func(o client.Object) {
		o.(*batch.GenericJob).Spec.ReplicaSpecs[0].Replicas = ptr.To[int32](n)
	})
	name := job.GetName()
	e.eventually("some pods", func() bool { return len(e.pods(name)) > 0 })
	e.stop() // mid-reconcile: the pods of this job are still being created
	before := map[string]types.UID{}
	for _, p := range e.pods(name) {
		before[p.Name] = p.UID
	}
	t.Logf("%d of %d pods existed when the controllers stopped", len(before), n)
	// The restart must find work half done, or this test proves nothing.
	require.Less(t, len(before), n, "every pod existed before the restart")

	e.startControllers()
	e.startControllers()
	e.eventually("all pods", func() bool { return len(e.pods(name)) == n })
	// Both controllers keep running: over a window, no pod is added or replaced.
	e.holds("exactly one pod per replica, none replaced", 2*time.Second, func() bool {
		pods := e.pods(name)
		if len(pods) != n {
			return false
		}
		for _, p := range pods {
			if uid, ok := before[p.Name]; ok && uid != p.UID {
				return false
			}
		}
		return true
	})
	st := e.waitJob(job, "status lists all", func(s *batch.JobStatus) bool { return len(s.Tasks) == 1 && len(s.Tasks[0].Replicas) == n })
	require.Equal(t, int32(0), st.BackoffCount)
}
