package integration

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/controllers"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// TestJobTensorFlowPS runs a chief/ps/worker TensorFlowTrainingJob: TF_CONFIG lists
// the cluster with this task, the PodGroup counts all 7 replicas by role, the chief decides.
func TestJobTensorFlowPS(t *testing.T) {
	e := startJobs(t)
	job := e.apply("keras-mnist-trainingjob-ps.yaml", nil)
	name := "keras-mnist-trainingjob-ps"
	pods := e.waitPods(name, name+"-chief-0", name+"-ps-0", name+"-ps-1",
		name+"-worker-0", name+"-worker-1", name+"-worker-2", name+"-worker-3")
	raw, _ := envOf(container(&pods[2], "tensorflow"), "TF_CONFIG")
	var cfg struct {
		Cluster map[string][]string
		Task    struct {
			Type  string
			Index int
		}
	}
	require.NoError(t, json.Unmarshal([]byte(raw), &cfg))
	require.Equal(t, "ps", cfg.Task.Type)
	require.Equal(t, 1, cfg.Task.Index)
	require.Equal(t, []string{name + "-chief-0." + name + ":2222"}, cfg.Cluster["chief"])
	require.Len(t, cfg.Cluster["worker"], 4)
	require.Len(t, cfg.Cluster["ps"], 2)

	var pg schedv1.PodGroup
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &pg))
	require.Equal(t, int32(7), pg.Spec.MinMember)
	require.Equal(t, []schedv1.PodGroupRole{{Name: "chief", MinMember: 1}, {Name: "ps", MinMember: 2}, {Name: "worker", MinMember: 4}}, pg.Spec.Roles)

	e.runAll(podNames(pods)...)
	e.waitPhase(job, batch.JobRunning)
	e.setPhase(name+"-worker-0", corev1.PodSucceeded, 0)
	e.setPhase(name+"-chief-0", corev1.PodSucceeded, 0)
	e.waitPhase(job, batch.JobSucceeded)
}

// TestJobXGBoost runs a distributed XGBoost job: rabit env with the master's xgboost-port; the
// master's failure with a non-retryable exit code (ExitCode policy) fails the job.
func TestJobXGBoost(t *testing.T) {
	e := startJobs(t)
	job := e.apply("xgb-iris-trainingjob.yaml", nil)
	name := "xgb-iris-trainingjob"
	pods := e.waitPods(name, name+"-master-0", name+"-worker-0")
	for _, want := range [][2]string{{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "9991"}, {"MASTER_ADDR", name + "-master-0." + name}} {
		got, _ := envOf(container(&pods[0], "xgboost"), want[0])
		require.Equal(t, want[1], got, want[0])
	}
	rank, _ := envOf(container(&pods[1], "xgboost"), "RANK")
	require.Equal(t, "1", rank)
	e.runAll(podNames(pods)...)
	e.waitPhase(job, batch.JobRunning)
	e.setPhase(name+"-master-0", corev1.PodFailed, 2)
	st := e.waitPhase(job, batch.JobFailed)
	requireCondition(t, st, batch.JobConditionFailed, corev1.ConditionTrue, workloads.ReasonFailed,
		"XGBoostTrainingJob xgb-iris-trainingjob has failed: xgb-iris-trainingjob-master-0 failed with exit code 2")
}

// TestJobColossalAI runs both ColossalAIJob shapes: sshd workers, then a launcher running
// "colossalai run" over them from its working directory; the launcher's failure fails the job
// without restarts.
func TestJobColossalAI(t *testing.T) {
	e := startJobs(t)
	for _, tc := range []struct {
		file, name string
		workers    int
	}{
		{"colossalai-example.yaml", "colossalai-example", 2},
		{"colossal-palm.yaml", "colossal-palm", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			job := e.apply(tc.file, nil)
			pods := e.pods(tc.name)
			e.eventually("workers", func() bool { pods = e.pods(tc.name); return len(pods) == tc.workers })
			for _, p := range pods {
				require.Equal(t, []string{"/usr/sbin/sshd", "-D"}, container(&p, "worker").Command)
				require.Contains(t, mountPaths(container(&p, "worker")), "/root/.ssh")
			}
			e.runAll(podNames(pods)...)
			launcher := tc.name + "-launcher"
			e.eventually("launcher", func() bool { return len(e.pods(tc.name)) == len(pods)+1 })
			l := container(e.pod(launcher), "launcher")
			require.Equal(t, "/workspace", l.WorkingDir)
			require.Equal(t, []string{"colossalai", "run", "--nproc_per_node", "1", "--host"}, l.Command[:5])
			require.Equal(t, "--master_addr", l.Command[6])
			require.Equal(t, tc.name+"-worker-0."+tc.name, l.Command[7])
			e.runAll(launcher)
			e.waitPhase(job, batch.JobRunning)
			e.setPhase(launcher, corev1.PodFailed, 1)
			st := e.waitPhase(job, batch.JobFailed)
			require.Equal(t, int32(0), st.BackoffCount)
		})
	}
}

// TestJobBeam: without the Flink operator a BeamJob says so in a condition; with a FlinkCluster
// CRD it creates the cluster, then (cluster Running) the submit Job pointed at it, and follows
// the Job to success, deleting the cluster (cleanUpCluster).
func TestJobBeam(t *testing.T) {
	e := startJobs(t)
	job := e.apply("count-word-beamjob.yaml", nil)
	st := e.waitJob(job, "CRD missing condition", func(s *batch.JobStatus) bool { return condition(s, batch.JobConditionClusterRunning) != nil })
	requireCondition(t, st, batch.JobConditionClusterRunning, corev1.ConditionFalse, workloads.ReasonFlinkCRDMissing,
		"The FlinkCluster CRD (flinkoperator.k8s.io/v1beta1) is not installed: install the Flink operator to run BeamJobs.")

	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "flinkclusters.flinkoperator.k8s.io",
			// *.k8s.io groups need this; the real Flink operator CRD carries it too.
			Annotations: map[string]string{"api-approved.kubernetes.io": "unapproved, test stand-in"}},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "flinkoperator.k8s.io", Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "flinkclusters", Kind: "FlinkCluster", ListKind: "FlinkClusterList", Singular: "flinkcluster"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1beta1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type: "object", XPreserveUnknownFields: ptr.To(true)}}}},
		},
	}
	s := controllers.Scheme()
	require.NoError(t, apiextensionsv1.AddToScheme(s))
	crdClient, err := client.New(e.cp.Config, client.Options{Scheme: s})
	require.NoError(t, err)
	require.NoError(t, crdClient.Create(e.ctx, crd))
	// Nudge the job (the controller also retries every minute).
	e.eventually("flink cluster", func() bool {
		bj := &batch.BeamJob{}
		if e.c.Get(e.ctx, client.ObjectKeyFromObject(job), bj) != nil {
			return false
		}
		bj.Annotations = map[string]string{"test/nudge": metav1.Now().String()}
		_ = e.c.Update(e.ctx, bj)
		fc := &unstructured.Unstructured{}
		fc.SetGroupVersionKind(workloads.FlinkClusterGVK)
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "count-word-beamjob-flinkcluster"}, fc) == nil
	})
	fc := &unstructured.Unstructured{}
	fc.SetGroupVersionKind(workloads.FlinkClusterGVK)
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "count-word-beamjob-flinkcluster"}, fc))
	replicas, _, _ := unstructured.NestedInt64(fc.Object, "spec", "taskManager", "replicas")
	require.Equal(t, int64(2), replicas)
	require.NoError(t, unstructured.SetNestedField(fc.Object, "Running", "status", "state"))
	require.NoError(t, e.c.Update(e.ctx, fc))

	submit := &batchv1.Job{}
	e.eventually("submit job", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "count-word-beamjob-batchjob"}, submit) == nil
	})
	c := submit.Spec.Template.Spec.Containers[0]
	require.Contains(t, c.Args, "--flink_master=count-word-beamjob-flinkcluster-jobmanager:8081")
	st = e.waitJob(job, "ClusterRunning", func(s *batch.JobStatus) bool {
		c := condition(s, batch.JobConditionClusterRunning)
		return c != nil && c.Status == corev1.ConditionTrue
	})
	now := metav1.Now()
	submit.Status.StartTime = &now
	submit.Status.CompletionTime = &now
	submit.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	require.NoError(t, e.c.Status().Update(e.ctx, submit))
	st = e.waitPhase(job, batch.JobSucceeded)
	requireCondition(t, st, batch.JobConditionCompleted, corev1.ConditionTrue, workloads.ReasonSucceeded, workloads.MessageSucceeded)
	e.eventually("cluster cleaned up", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: "count-word-beamjob-flinkcluster"}, fc.DeepCopy()) != nil
	})
}
