package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// TestJobProcPerNodeGPUCountsEveryGPUResource: torchrunConfig.procPerNode "gpu" is the replica's
// GPUs whatever the device plugin calls them: MIG slices (nvidia.com/mig-<profile>) and shared
// GPUs (nvidia.com/gpu.shared) included.
func TestJobProcPerNodeGPUCountsEveryGPUResource(t *testing.T) {
	e := startJobs(t)
	for _, tc := range []struct{ name, resource string }{
		{"mig", "nvidia.com/mig-1g.10gb"},
		{"shared", "nvidia.com/gpu.shared"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			e.apply("torchrun-mnist.yaml", func(o client.Object) {
				j := o.(*batch.PyTorchTrainingJob)
				j.SetName("gpus-" + tc.name)
				j.Spec.TorchrunConfig = &batch.TorchrunConfig{Enabled: ptr.To(true), ProcPerNode: ptr.To(intstr.FromString("gpu"))}
				c := &j.Spec.ReplicaSpecs[0].Template.Spec.Containers[0]
				c.Command = nil
				c.Args = []string{"mnist_ddp.py"}
				c.Resources.Limits[corev1.ResourceName(tc.resource)] = resource.MustParse("2")
			})
			name := "gpus-" + tc.name
			pods := e.waitPods(name, name+"-node-0", name+"-node-1")
			cmd := container(&pods[0], "pytorch").Command
			require.Contains(t, cmd, "--nproc_per_node=2", "torchrun command %q", cmd)
		})
	}
}

// TestJobPyTorchMasterIsRankZero: with the worker type listed before the master, the master (which
// MASTER_ADDR names) is still RANK 0 and the workers follow it.
func TestJobPyTorchMasterIsRankZero(t *testing.T) {
	e := startJobs(t)
	e.apply("torchrun-mnist.yaml", func(o client.Object) {
		j := o.(*batch.PyTorchTrainingJob)
		j.SetName("master-last")
		w := j.Spec.ReplicaSpecs[0]
		w.Type, w.Replicas = "worker", ptr.To[int32](2)
		m := *w.DeepCopy()
		m.Type, m.Replicas = "master", ptr.To[int32](1)
		j.Spec.ReplicaSpecs = []batch.PyTorchReplicaSpec{w, m}
	})
	name := "master-last"
	pods := e.waitPods(name, name+"-master-0", name+"-worker-0", name+"-worker-1")
	for i, want := range []string{"0", "1", "2"} {
		c := container(&pods[i], "pytorch")
		addr, _ := envOf(c, "MASTER_ADDR")
		require.Equal(t, name+"-master-0."+name, addr)
		rank, _ := envOf(c, "RANK")
		require.Equal(t, want, rank, "RANK of %s", pods[i].Name)
		size, _ := envOf(c, "WORLD_SIZE")
		require.Equal(t, "3", size)
	}
}

// TestJobColossalAITorchArgs: worker.torchArgs (torchConfig.extraArgs) reach torchrun through
// "colossalai run --extra_launch_args k=v,...", not as words before the script, which colossalai
// would take for the script.
func TestJobColossalAITorchArgs(t *testing.T) {
	e := startJobs(t)
	name := "colossalai-example"
	e.apply("colossalai-example.yaml", func(o client.Object) {
		o.(*batch.ColossalAIJob).Spec.Worker.TorchArgs = []string{"--max_restarts=3", "--rdzv_backend", "c10d", "--standalone"}
	})
	w0, w1 := name+"-worker-0", name+"-worker-1"
	e.runAll(podNames(e.waitPods(name, w0, w1))...)
	pods := e.waitPods(name, name+"-launcher", w0, w1)
	cmd := container(&pods[0], "launcher").Command
	require.Equal(t, []string{"--extra_launch_args", "max_restarts=3,rdzv_backend=c10d,standalone", "train.py", "--config=gpt2_small.py"},
		cmd[len(cmd)-4:], "launcher command %q", cmd)
}

// TestJobRestartLimitIsPerReplicaType: restartPolicy.limit caps the restarts of a replica type,
// summed over its replicas (what tasks[].restartCount shows), as the API documents it.
func TestJobRestartLimitIsPerReplicaType(t *testing.T) {
	e := startJobs(t)
	name := "limited"
	job := e.apply("generic-example.yaml", func(o client.Object) {
		j := o.(*batch.GenericJob)
		j.SetName(name)
		j.Spec.SuccessRules, j.Spec.FailureRules = nil, nil
		j.Spec.ReplicaSpecs[0].Replicas = ptr.To[int32](2)
		j.Spec.ReplicaSpecs[0].RestartPolicy = &batch.RestartPolicy{Policy: batch.RestartPolicyOnFailure, Limit: ptr.To[int32](1)}
	})
	w0, w1 := name+"-worker-0", name+"-worker-1"
	e.runAll(podNames(e.waitPods(name, w0, w1))...)
	uid := e.pod(w0).UID
	e.setPhase(w0, corev1.PodFailed, 1)
	e.eventually("worker-0 restarted", func() bool {
		p := &corev1.Pod{}
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: w0}, p) == nil && p.UID != uid
	})
	e.waitJob(job, "one restart counted", func(s *batch.JobStatus) bool { return len(s.Tasks) == 1 && s.Tasks[0].RestartCount == 1 })
	e.setPhase(w1, corev1.PodFailed, 1) // the type's one restart is spent: worker-1 is not restarted
	st := e.waitPhase(job, batch.JobFailed)
	require.Equal(t, int32(1), st.Tasks[0].RestartCount)
}

// TestJobNameTakenByAnotherKind: a job whose children's names are taken by a job of another kind
// (same name, same namespace) says so on its status and in an event, and takes nothing from the
// other job; the other job keeps its pods and PodGroup.
func TestJobNameTakenByAnotherKind(t *testing.T) {
	e := startJobs(t)
	name := "twin"
	e.apply("generic-example.yaml", func(o client.Object) {
		j := o.(*batch.GenericJob)
		j.SetName(name)
		j.Spec.Scheduler = &batch.SchedulePolicy{T9kScheduler: &batch.T9kScheduler{Queue: "default"}}
	})
	first := e.waitPods(name, name+"-worker-0", name+"-worker-1", name+"-worker-2", name+"-worker-3")
	var pg schedv1.PodGroup
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &pg))
	require.Equal(t, int32(4), pg.Spec.MinMember)

	second := e.apply("torchrun-mnist.yaml", func(o client.Object) {
		j := o.(*batch.PyTorchTrainingJob)
		j.SetName(name)
		j.Spec.ReplicaSpecs[0].Type = "worker"
		j.Spec.Scheduler = &batch.SchedulePolicy{T9kScheduler: &batch.T9kScheduler{Queue: "default"}}
	})
	st := e.waitJob(second, "ReplicaFailure NameConflict", func(s *batch.JobStatus) bool {
		c := condition(s, batch.JobConditionReplicaFailure)
		return c != nil && c.Status == corev1.ConditionTrue && c.Reason == workloads.ReasonNameConflict
	})
	c := condition(st, batch.JobConditionReplicaFailure)
	require.Contains(t, c.Message, "belongs to GenericJob twin")
	require.Equal(t, batch.JobPending, st.Phase)
	e.holds("the first job keeps its pods and PodGroup", time.Second, func() bool {
		pods := e.pods(name)
		if len(pods) != len(first) {
			return false
		}
		for i := range pods {
			if pods[i].UID != first[i].UID {
				return false
			}
		}
		var now schedv1.PodGroup
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &now) == nil && now.Spec.MinMember == 4
	})
	var events corev1.EventList
	require.NoError(t, e.c.List(e.ctx, &events, client.InNamespace(e.ns)))
	found := false
	for _, ev := range events.Items {
		if ev.InvolvedObject.Kind == "PyTorchTrainingJob" && ev.Type == corev1.EventTypeWarning && strings.Contains(ev.Message, "belongs to GenericJob twin") {
			found = true
		}
	}
	require.True(t, found, "a Warning event on the PyTorchTrainingJob")
}
