package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// kubeletDeadlines does for every pod of the namespace what a kubelet does with
// spec.activeDeadlineSeconds once it has passed: it kills the containers and marks the pod Failed
// with reason DeadlineExceeded. The pods of these tests have no node and no startTime, so any
// deadline has passed. It runs until the test ends.
func (e *jobEnv) kubeletDeadlines() {
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan struct{})
	e.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			var list corev1.PodList
			if e.c.List(ctx, &list, client.InNamespace(e.ns)) == nil {
				for i := range list.Items {
					p := &list.Items[i]
					if p.Spec.ActiveDeadlineSeconds == nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
						continue
					}
					p.Status.Phase, p.Status.Reason = corev1.PodFailed, "DeadlineExceeded"
					p.Status.Message = "Pod was active on the node longer than the specified deadline"
					p.Status.ContainerStatuses = nil
					for _, c := range p.Spec.Containers {
						p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
							State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "Error"}}})
					}
					_ = e.c.Status().Update(ctx, p)
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
}

// sub is the environment for a subtest: its failures end the subtest, not the parent.
func (e *jobEnv) sub(t *testing.T) *jobEnv {
	c := *e
	c.t = t
	return &c
}

func terminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// requireHoldsNothing waits until no pod of the job holds resources (every pod has finished or is
// gone: a terminal pod holds no GPU in the scheduler, the kubelet or a Queue), then checks that
// the pods named in kept are still there (cleanUpPolicy None keeps the pods, and their logs).
func (e *jobEnv) requireHoldsNothing(job string, kept ...string) {
	e.t.Helper()
	var pods []corev1.Pod
	e.eventually(job+" holds nothing", func() bool {
		pods = e.pods(job)
		for i := range pods {
			if !terminal(&pods[i]) {
				return false
			}
		}
		return true
	})
	require.Subset(e.t, podNames(pods), kept, "pods kept by the clean-up policy")
}

// TestJobFinishedHoldsNothing: with the default clean-up policies, a job that has succeeded or
// failed holds no GPU: the sshd workers of DeepSpeed, MPI and ColossalAI jobs and TensorFlow's
// parameter servers, which never finish by themselves, are stopped (and kept, for their logs).
func TestJobFinishedHoldsNothing(t *testing.T) {
	e := startJobs(t)
	e.kubeletDeadlines()

	t.Run("DeepSpeedJob succeeded", func(t *testing.T) {
		e := e.sub(t)
		name := "actor-multi-node"
		job := e.apply("actor-multi-node.yaml", nil)
		w0, w1 := name+"-worker-0", name+"-worker-1"
		e.runAll(podNames(e.waitPods(name, w0, w1))...)
		e.waitPhase(job, batch.JobRunning)
		e.setPhase(w0, corev1.PodSucceeded, 0)
		e.waitPhase(job, batch.JobSucceeded)
		e.requireHoldsNothing(name, w0, w1)
		require.Equal(t, "DeadlineExceeded", e.pod(w1).Status.Reason)
	})
	t.Run("DeepSpeedJob failed", func(t *testing.T) {
		e := e.sub(t)
		name := "ds-failed"
		job := e.apply("actor-multi-node.yaml", func(o client.Object) {
			o.SetName(name)
			o.(*batch.DeepSpeedJob).Spec.RunPolicy = &batch.TrainingRunPolicy{BackoffLimit: ptr.To[int32](0)}
		})
		w0, w1 := name+"-worker-0", name+"-worker-1"
		e.runAll(podNames(e.waitPods(name, w0, w1))...)
		e.waitPhase(job, batch.JobRunning)
		e.setPhase(w0, corev1.PodFailed, 1)
		e.waitPhase(job, batch.JobFailed)
		e.requireHoldsNothing(name, w0, w1)
	})
	for _, tc := range []struct {
		file, name string
		workers    int
		exit       int32
		phase      batch.JobPhase
	}{
		{"mpi-example.yaml", "mpi-example", 5, 0, batch.JobSucceeded},
		{"mpi-example-2025.yaml", "mpi-example-2025", 4, 1, batch.JobFailed},
	} {
		t.Run("MPIJob "+tc.name, func(t *testing.T) {
			e := e.sub(t)
			job := e.apply(tc.file, func(o client.Object) {
				o.(*batch.MPIJob).Spec.RunPolicy = nil // the default: cleanUpWorkers false
			})
			var workers []string
			for i := 0; i < tc.workers; i++ {
				workers = append(workers, tc.name+"-worker-"+string(rune('0'+i)))
			}
			e.runAll(podNames(e.waitPods(tc.name, workers...))...)
			launcher := tc.name + "-launcher"
			e.waitPods(tc.name, append([]string{launcher}, workers...)...)
			e.runAll(launcher)
			e.waitPhase(job, batch.JobRunning)
			phase := corev1.PodSucceeded
			if tc.exit != 0 {
				phase = corev1.PodFailed
			}
			e.setPhase(launcher, phase, tc.exit)
			e.waitPhase(job, tc.phase)
			e.requireHoldsNothing(tc.name, append([]string{launcher}, workers...)...)
		})
	}
	t.Run("ColossalAIJob failed", func(t *testing.T) {
		e := e.sub(t)
		name := "colossalai-example"
		job := e.apply("colossalai-example.yaml", nil)
		w0, w1, launcher := name+"-worker-0", name+"-worker-1", name+"-launcher"
		e.runAll(podNames(e.waitPods(name, w0, w1))...)
		e.waitPods(name, launcher, w0, w1)
		e.runAll(launcher)
		e.waitPhase(job, batch.JobRunning)
		e.setPhase(launcher, corev1.PodFailed, 1)
		e.waitPhase(job, batch.JobFailed)
		e.requireHoldsNothing(name, launcher, w0, w1)
	})
	t.Run("TensorFlowTrainingJob parameter servers", func(t *testing.T) {
		e := e.sub(t)
		name := "keras-mnist-trainingjob-ps"
		job := e.apply("keras-mnist-trainingjob-ps.yaml", nil)
		pods := e.waitPods(name, name+"-chief-0", name+"-ps-0", name+"-ps-1",
			name+"-worker-0", name+"-worker-1", name+"-worker-2", name+"-worker-3")
		e.runAll(podNames(pods)...)
		e.waitPhase(job, batch.JobRunning)
		e.setPhase(name+"-chief-0", corev1.PodSucceeded, 0)
		e.waitPhase(job, batch.JobSucceeded)
		e.requireHoldsNothing(name, podNames(pods)...)
	})
}

// TestJobFinishedPodNotStoppedIsDeleted: where nothing acts on spec.activeDeadlineSeconds (no
// kubelet here), a pod still not finished a while after the job ended is deleted: a finished job
// holds nothing even then. Pods that finished are kept (cleanUpPolicy None).
func TestJobFinishedPodNotStoppedIsDeleted(t *testing.T) {
	e := startJobs(t)
	name := "mpi-example"
	job := e.apply("mpi-example.yaml", func(o client.Object) {
		j := o.(*batch.MPIJob)
		j.Spec.RunPolicy = nil
		j.Spec.Worker.Replicas = ptr.To[int32](2)
		j.Spec.Worker.Template.Spec.TerminationGracePeriodSeconds = ptr.To[int64](0)
	})
	w0, w1, launcher := name+"-worker-0", name+"-worker-1", name+"-launcher"
	e.runAll(podNames(e.waitPods(name, w0, w1))...)
	e.waitPods(name, launcher, w0, w1)
	e.runAll(launcher)
	e.setPhase(launcher, corev1.PodSucceeded, 0)
	e.waitPhase(job, batch.JobSucceeded)
	e.waitStopped(w0)
	stopped, err := time.Parse(time.RFC3339, e.pod(w0).Annotations[workloads.AnnotationStoppedAt])
	require.NoError(t, err)
	e.eventually("the workers that did not stop deleted", func() bool { return len(e.pods(name)) == 1 })
	require.Equal(t, []string{launcher}, podNames(e.pods(name)))
	t.Logf("workers deleted %s after they were told to stop", time.Since(stopped).Round(time.Second))
}
