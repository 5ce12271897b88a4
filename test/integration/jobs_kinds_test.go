package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// TestJobPyTorchParameterServer runs a ps+worker PyTorchTrainingJob: MASTER_ADDR is
// ps-0 (the first replica type), ranks run across types, the master's success is the job's, and
// cleanUpPolicy Unfinished deletes the still-running workers.
func TestJobPyTorchParameterServer(t *testing.T) {
	e := startJobs(t)
	job := e.apply("torch-mnist-trainingjob-ps.yaml", nil)
	name := "torch-mnist-trainingjob-ps"
	all := []string{name + "-ps-0", name + "-worker-0", name + "-worker-1", name + "-worker-2", name + "-worker-3"}
	pods := e.waitPods(name, all...)
	for i, p := range pods {
		c := container(&p, "pytorch")
		require.NotNil(t, c)
		addr, _ := envOf(c, "MASTER_ADDR")
		port, _ := envOf(c, "MASTER_PORT")
		rank, _ := envOf(c, "RANK")
		size, _ := envOf(c, "WORLD_SIZE")
		require.Equal(t, name+"-ps-0."+name, addr)
		require.Equal(t, "23456", port)
		require.Equal(t, "5", size)
		// pods sort as ps-0, worker-0..3: ranks 0..4 in that order.
		require.Equal(t, string(rune('0'+i)), rank, p.Name)
		require.Equal(t, []string{"python", "torch_mnist_trainingjob_ps.py"}, c.Command[:2])
	}
	e.runAll(all...)
	e.waitPhase(job, batch.JobRunning)
	e.setPhase(name+"-ps-0", corev1.PodSucceeded, 0)
	st := e.waitPhase(job, batch.JobSucceeded)
	requireCondition(t, st, batch.JobConditionCompleted, corev1.ConditionTrue, workloads.ReasonSucceeded, workloads.MessageSucceeded)
	e.waitPods(name, name+"-ps-0")
	st = e.waitJob(job, "workers reported Deleted", func(s *batch.JobStatus) bool { return s.Aggregate != nil && s.Aggregate.Deleted == 4 })
	require.Equal(t, batch.ReplicaDeleted, st.Tasks[1].Replicas[0].Phase)
	require.Equal(t, batch.ReplicaSucceeded, st.Tasks[0].Replicas[0].Phase)
}

// TestJobPyTorchTorchrunExitCode runs a torchrun job (old spelling torchrunConfig.enable, queue
// mlperf) with restartPolicy ExitCode: 137 restarts the pod, 1 fails the job.
func TestJobPyTorchTorchrunExitCode(t *testing.T) {
	e := startJobs(t)
	job := e.apply("gpt2-1-5b.yaml", nil)
	name := "gpt2-1-5b"
	pod := e.waitPods(name, name+"-node-0")[0]
	c := container(&pod, "pytorch")
	require.Equal(t, []string{"torchrun", "--nnodes=1", "--nproc_per_node=1", "--rdzv_backend=c10d",
		"--rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT)", "--rdzv_id=" + string(job.GetUID()), "--max_restarts=3",
		"Megatron-LM/pretrain_gpt.py", "--num-layers 48"}, c.Command[:9])
	require.Empty(t, c.Args)
	_, hasRank := envOf(c, "RANK")
	require.False(t, hasRank, "torchrun sets RANK itself")
	require.Equal(t, "mlperf", pod.Labels[schedv1.LabelQueue])

	var pg schedv1.PodGroup
	e.eventually("pod group", func() bool { return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &pg) == nil })
	require.Equal(t, int32(1), pg.Spec.MinMember)
	require.Equal(t, "mlperf", pg.Spec.Queue)

	e.runAll(name + "-node-0")
	e.waitPhase(job, batch.JobRunning)
	e.setPhase(name+"-node-0", corev1.PodFailed, 137)
	e.eventually("node-0 recreated", func() bool {
		p := &corev1.Pod{}
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name + "-node-0"}, p) == nil && p.UID != pod.UID
	})
	st := e.waitJob(job, "backoff 1", func(s *batch.JobStatus) bool { return s.BackoffCount == 1 })
	require.Equal(t, int32(1), st.Tasks[0].RestartCount)

	e.setPhase(name+"-node-0", corev1.PodFailed, 1)
	st = e.waitPhase(job, batch.JobFailed)
	msg := "PyTorchTrainingJob gpt2-1-5b has failed: gpt2-1-5b-node-0 failed with exit code 1"
	requireCondition(t, st, batch.JobConditionFailed, corev1.ConditionTrue, workloads.ReasonFailed, msg)
	require.Equal(t, int32(1), st.BackoffCount)
}

// TestJobDeepSpeedBackoff runs a DeepSpeed-Chat actor job (t9k scheduler): hostfile, ssh keys,
// deepspeed_env, worker-0 as launcher; worker-0 exits 137 four times, and the fourth exceeds the
// default backoffLimit of 3.
func TestJobDeepSpeedBackoff(t *testing.T) {
	e := startJobs(t)
	job := e.apply("actor-multi-node.yaml", nil)
	name := "actor-multi-node"
	w0, w1 := name+"-worker-0", name+"-worker-1"
	pods := e.waitPods(name, w0, w1)

	var cm corev1.ConfigMap
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name + "-deepspeed"}, &cm))
	require.Equal(t, "actor-multi-node-worker-0.actor-multi-node slots=8\nactor-multi-node-worker-1.actor-multi-node slots=8\n", cm.Data["hostfile"])
	var secret corev1.Secret
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name + "-ssh"}, &secret))
	require.Contains(t, string(secret.Data["id_ed25519"]), "OPENSSH PRIVATE KEY")
	require.Equal(t, secret.Data["id_ed25519.pub"], secret.Data["authorized_keys"])

	launcher := container(&pods[0], "worker")
	require.Equal(t, []string{"/bin/sh", "-c"}, launcher.Command[:2])
	require.Contains(t, launcher.Command[2], "exec deepspeed --hostfile=/t9k/hostfile ./examples/deepspeed/chat/actor/main.py --data_path ./datasets/Dahoas/rm-static")
	require.Contains(t, launcher.Command[2], "actor-multi-node-worker-1.actor-multi-node")
	require.Equal(t, []string{"/usr/sbin/sshd", "-D"}, container(&pods[1], "worker").Command)
	require.Subset(t, mountPaths(launcher), []string{"/t9k/mnt", "/root/.ssh", "/t9k/hostfile", "/root/.deepspeed_env"})

	var pg schedv1.PodGroup
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &pg))
	require.Equal(t, int32(2), pg.Spec.MinMember)
	require.Equal(t, int32(50), pg.Spec.Priority)

	e.runAll(w0, w1)
	e.waitPhase(job, batch.JobRunning)
	for i := 1; i <= 3; i++ {
		uid := e.pod(w0).UID
		e.setPhase(w0, corev1.PodFailed, 137)
		e.eventually("worker-0 recreated", func() bool {
			p := &corev1.Pod{}
			return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: w0}, p) == nil && p.UID != uid
		})
		e.waitJob(job, "backoff counted", func(s *batch.JobStatus) bool { return s.BackoffCount == int32(i) })
		e.runAll(w0)
	}
	e.setPhase(w0, corev1.PodFailed, 137)
	st := e.waitPhase(job, batch.JobFailed)
	requireCondition(t, st, batch.JobConditionFailed, corev1.ConditionTrue, workloads.ReasonFailed,
		"DeepSpeedJob actor-multi-node has failed: actor-multi-node-worker-0 failed with exit code 137")
	require.Equal(t, int32(3), st.BackoffCount)
	require.Equal(t, int32(3), st.Tasks[0].RestartCount)
}

// TestJobMPI runs both MPIJob shapes (spec.worker, and spec.mpiConfig with replicaSpecs): workers
// run sshd, the launcher appears only once every worker is ready and runs mpirun with the
// hostfile; its success is the job's, and cleanUpWorkers deletes the workers.
func TestJobMPI(t *testing.T) {
	e := startJobs(t)
	for _, tc := range []struct {
		file, name, workerContainer string
		workers                     int
	}{
		{"mpi-example.yaml", "mpi-example", "mpi-worker", 5},
		{"mpi-example-2025.yaml", "mpi-example-2025", "worker", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := e.apply(tc.file, nil)
			var workers []string
			for i := 0; i < tc.workers; i++ {
				workers = append(workers, tc.name+"-worker-"+string(rune('0'+i)))
			}
			pods := e.waitPods(tc.name, workers...)
			for _, p := range pods {
				c := container(&p, tc.workerContainer)
				require.Equal(t, []string{"/usr/sbin/sshd", "-D"}, c.Command)
				require.Contains(t, mountPaths(c), "/root/.ssh")
			}
			var cm corev1.ConfigMap
			require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: tc.name + "-hostfile"}, &cm))
			// -N 3 in the mpirun arguments: three slots per worker, or OpenMPI refuses to start.
			require.Equal(t, tc.workers, strings.Count(cm.Data["hostfile"], " slots=3\n"))
			require.True(t, strings.HasPrefix(cm.Data["hostfile"], tc.name+"-worker-0."+tc.name+" slots=3\n"))

			e.runAll(workers[:tc.workers-1]...)
			// The trigger: the controller has seen all but one worker running.
			e.waitJob(job, "all but one worker running", func(s *batch.JobStatus) bool {
				return s.Aggregate != nil && s.Aggregate.Running == int32(tc.workers-1)
			})
			e.holds("no launcher before every worker is ready", time.Second, func() bool {
				return len(e.pods(tc.name)) == tc.workers
			})
			e.runAll(workers[tc.workers-1])
			launcherName := tc.name + "-launcher"
			e.waitPods(tc.name, append([]string{launcherName}, workers...)...)
			l := e.pod(launcherName)
			require.Equal(t, []string{"/usr/local/bin/mpirun", "--hostfile", "/etc/mpi/hostfile", "--mca", "btl", "^openib",
				"-N", "3", "--enable-recovery", "--max-restarts", "100", "--allow-run-as-root", "-bind-to", "none",
				"./random_walk", "20", "40", "2"}, container(l, "launcher").Command)
			require.Equal(t, "t9kpublic/mpi-tutorial:2021022-2", container(l, "launcher").Image)
			require.Equal(t, "/usr/local/code", container(l, "launcher").WorkingDir)
			keep, _ := envOf(container(l, "launcher"), "OMPI_MCA_orte_keep_fqdn_hostnames")
			require.Equal(t, "true", keep, "OpenMPI keeps the workers' full names")

			e.runAll(launcherName)
			e.waitPhase(job, batch.JobRunning)
			e.setPhase(launcherName, corev1.PodSucceeded, 0)
			st := e.waitPhase(job, batch.JobSucceeded)
			requireCondition(t, st, batch.JobConditionCompleted, corev1.ConditionTrue, workloads.ReasonSucceeded, workloads.MessageSucceeded)
			e.waitPods(tc.name, launcherName)
		})
	}
}
