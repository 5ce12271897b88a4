package integration

import (
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// TestJobGenericJob runs a multi-worker Keras GenericJob (t9k scheduler, per-replica
// Services, $(…) substitution in TF_CONFIG, restartPolicy {OnFailure, 100}, success and failure
// rules) through a restart to success.
func TestJobGenericJob(t *testing.T) {
	e := startJobs(t)
	job := e.apply("keras-mnist-genericjob.yaml", nil)
	name := "keras-mnist-genericjob"
	workers := []string{name + "-worker-0", name + "-worker-1", name + "-worker-2", name + "-worker-3"}
	pods := e.waitPods(name, workers...)

	for i, p := range pods {
		require.Equal(t, name, p.Labels[workloads.LabelOwnerName])
		require.Equal(t, "GenericJob", p.Labels[workloads.LabelOwnerKind])
		require.Equal(t, "user", p.Labels[workloads.LabelComponentType])
		require.Equal(t, name, p.Labels[schedv1.LabelGroupName])
		require.Equal(t, "default", p.Labels[schedv1.LabelQueue])
		require.Equal(t, "worker", p.Labels[schedv1.LabelRole])
		require.Equal(t, schedv1.SchedulerName, p.Spec.SchedulerName)
		require.Equal(t, corev1.RestartPolicyNever, p.Spec.RestartPolicy)
		require.Equal(t, name, p.Spec.Subdomain)
		require.Equal(t, "GenericJob", p.OwnerReferences[0].Kind)
		tfConfig, _ := envOf(container(&p, "tensorflow"), "TF_CONFIG")
		require.Equal(t, `{"cluster":{"worker":["keras-mnist-genericjob-worker-0:2222","keras-mnist-genericjob-worker-1:2222",`+
			`"keras-mnist-genericjob-worker-2:2222","keras-mnist-genericjob-worker-3:2222"]},"task":{"type":"worker","index":`+
			string(rune('0'+i))+`}}`, tfConfig)
	}

	var pg schedv1.PodGroup
	e.eventually("pod group", func() bool { return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &pg) == nil })
	require.Equal(t, int32(4), pg.Spec.MinMember)
	require.Equal(t, "default", pg.Spec.Queue)
	require.Equal(t, int32(50), pg.Spec.Priority)
	require.Equal(t, []schedv1.PodGroupRole{{Name: "worker", MinMember: 4}}, pg.Spec.Roles)
	require.Equal(t, "GenericJob", pg.OwnerReferences[0].Kind)

	var svcs corev1.ServiceList
	require.NoError(t, e.c.List(e.ctx, &svcs, client.InNamespace(e.ns), client.MatchingLabels{workloads.LabelOwnerName: name}))
	ports := map[string]int32{}
	for _, s := range svcs.Items {
		ports[s.Name] = 0
		if len(s.Spec.Ports) > 0 {
			ports[s.Name] = s.Spec.Ports[0].Port
		}
	}
	require.Equal(t, map[string]int32{name: 0, workers[0]: 2222, workers[1]: 2222, workers[2]: 2222, workers[3]: 2222}, ports)

	st := e.waitPhase(job, batch.JobPending)
	requireCondition(t, st, batch.JobConditionInitialized, corev1.ConditionTrue, "", workloads.MessageInitialized)
	require.Equal(t, workers[2], st.Tasks[0].Replicas[2].Name)

	e.runAll(workers...)
	st = e.waitPhase(job, batch.JobRunning)
	requireCondition(t, st, batch.JobConditionRunning, corev1.ConditionTrue, workloads.ReasonAllPodsRunning, workloads.MessageRunning)
	require.Equal(t, int32(4), st.Aggregate.Running)

	// worker-1 fails: restarted (limit 100), counted on its type.
	old := e.pod(workers[1]).UID
	e.setPhase(workers[1], corev1.PodFailed, 1)
	e.eventually("worker-1 recreated", func() bool {
		p := &corev1.Pod{}
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: workers[1]}, p) == nil && p.UID != old
	})
	st = e.waitJob(job, "restart counted", func(s *batch.JobStatus) bool { return len(s.Tasks) == 1 && s.Tasks[0].RestartCount == 1 })
	require.Equal(t, batch.JobRunning, st.Phase, "a restart keeps the job Running")

	e.setPhase(workers[0], corev1.PodSucceeded, 0)
	st = e.waitPhase(job, batch.JobSucceeded)
	for _, c := range []batch.JobConditionType{batch.JobConditionCompleted} {
		requireCondition(t, st, c, corev1.ConditionTrue, workloads.ReasonSucceeded, workloads.MessageSucceeded)
	}
	requireCondition(t, st, batch.JobConditionFailed, corev1.ConditionFalse, workloads.ReasonSucceeded, workloads.MessageSucceeded)
	requireCondition(t, st, batch.JobConditionRunning, corev1.ConditionFalse, workloads.ReasonSucceeded, workloads.MessageSucceeded)
	require.NotNil(t, st.CompletionTime)
	// cleanUpPolicy defaults to None: every pod that ran stays (the running ones stopped); worker-1's
	// replacement, never scheduled, is deleted rather than started now.
	e.waitPods(name, workers[0], workers[2], workers[3])
	e.waitStopped(workers[2:]...)
}

// TestJobGenericJobFailureRule: generic-example fails by its rule {"worker": [1]}
// when worker-1 fails (no restartPolicy: no restarts), with the messages the manuals give.
func TestJobGenericJobFailureRule(t *testing.T) {
	e := startJobs(t)
	job := e.apply("generic-example.yaml", nil)
	name := "generic-example"
	pods := e.waitPods(name, name+"-worker-0", name+"-worker-1", name+"-worker-2", name+"-worker-3")
	require.Equal(t, []string{"sleep", "365"}, pods[0].Spec.Containers[0].Command)
	require.Equal(t, corev1.DefaultSchedulerName, pods[0].Spec.SchedulerName, "no spec.scheduler: the default scheduler")

	e.runAll(podNames(pods)...)
	e.waitPhase(job, batch.JobRunning)
	e.setPhase(name+"-worker-1", corev1.PodFailed, 127)
	st := e.waitPhase(job, batch.JobFailed)
	msg := `The job is failed with rule: {"worker":["1"]}`
	requireCondition(t, st, batch.JobConditionFailed, corev1.ConditionTrue, workloads.ReasonFailed, msg)
	requireCondition(t, st, batch.JobConditionCompleted, corev1.ConditionTrue, workloads.ReasonFailed, msg)
	requireCondition(t, st, batch.JobConditionReplicaFailure, corev1.ConditionTrue, "ErrorInPod",
		"Pod[generic-example-worker-1] exited with error code 127")
	require.Equal(t, int32(3), st.Aggregate.Running)
	require.Equal(t, int32(1), st.Aggregate.Failed)
	require.Equal(t, batch.ReplicaFailed, st.Tasks[0].Replicas[1].Phase)
	require.Equal(t, int32(127), *st.Tasks[0].Replicas[1].Containers[0].ExitCode)
}
