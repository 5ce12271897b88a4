package integration

import (
	"testing"
	"time"

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

// installFlinkCRD installs a stand-in for the Flink operator's FlinkCluster CRD (open schema, no
// status subresource, so that tests write the operator's status with a plain update).
func (e *jobEnv) installFlinkCRD() {
	e.t.Helper()
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "flinkclusters.flinkoperator.k8s.io",
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
	require.NoError(e.t, apiextensionsv1.AddToScheme(s))
	c, err := client.New(e.cp.Config, client.Options{Scheme: s})
	require.NoError(e.t, err)
	require.NoError(e.t, c.Create(e.ctx, crd))
	e.eventually("FlinkCluster served", func() bool {
		var l unstructured.UnstructuredList
		l.SetGroupVersionKind(workloads.FlinkClusterGVK.GroupVersion().WithKind("FlinkClusterList"))
		return e.c.List(e.ctx, &l, client.InNamespace(e.ns)) == nil
	})
}

// flinkCluster waits for the job's FlinkCluster and returns it.
func (e *jobEnv) flinkCluster(job string) *unstructured.Unstructured {
	e.t.Helper()
	fc := &unstructured.Unstructured{}
	fc.SetGroupVersionKind(workloads.FlinkClusterGVK)
	e.eventually("flink cluster", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: job + "-flinkcluster"}, fc) == nil
	})
	return fc
}

// operatorPod creates a pod as the Flink operator (or the Job controller) would, from a template's
// labels and containers.
func (e *jobEnv) operatorPod(name string, labels map[string]string, spec corev1.PodSpec) *corev1.Pod {
	e.t.Helper()
	if len(spec.Containers) == 0 {
		spec.Containers = []corev1.Container{{Name: "flink", Image: "flink:1.17.2"}}
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: labels}, Spec: spec}
	e.create(p)
	return p
}

// TestJobBeamScheduler: with spec.scheduler a BeamJob has a PodGroup (minMember: the submit Job's
// pods; queue and priority from the spec); its submit pods carry schedulerName t9k-scheduler and
// the PodGroup, queue and role labels, and the Flink cluster's pods the same labels through the
// FlinkCluster's podLabels. status.jobURL, flinkClusterStatus, tasks and aggregate follow the
// cluster and the pods.
func TestJobBeamScheduler(t *testing.T) {
	e := startJobs(t)
	e.installFlinkCRD()
	job := e.apply("beamjob-t9k-scheduler.yaml", nil).(*batch.BeamJob)
	name := job.Name

	pg := &schedv1.PodGroup{}
	e.eventually("pod group", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, pg) == nil
	})
	require.Equal(t, int32(1), pg.Spec.MinMember)
	require.Equal(t, "beam", pg.Spec.Queue)
	require.Equal(t, int32(20), pg.Spec.Priority)
	require.Equal(t, []schedv1.PodGroupRole{{Name: workloads.BeamSubmitter, MinMember: 1}}, pg.Spec.Roles)
	require.Equal(t, job.UID, metav1.GetControllerOf(pg).UID)

	want := func(role string) map[string]string {
		return map[string]string{
			workloads.LabelOwnerName: name, workloads.LabelOwnerKind: "BeamJob",
			workloads.LabelReplicaType: role,
			schedv1.LabelGroupName:     name, schedv1.LabelQueue: "beam", schedv1.LabelRole: role,
		}
	}
	fc := e.flinkCluster(name)
	podLabels := func(field string) map[string]string {
		l, found, err := unstructured.NestedStringMap(fc.Object, "spec", field, "podLabels")
		require.NoError(t, err)
		require.True(t, found, field)
		return l
	}
	jmLabels, tmLabels := podLabels("jobManager"), podLabels("taskManager")
	for k, v := range want(workloads.BeamJobManager) {
		require.Equal(t, v, jmLabels[k], "jobManager.podLabels[%s]", k)
	}
	for k, v := range want(workloads.BeamTaskManager) {
		require.Equal(t, v, tmLabels[k], "taskManager.podLabels[%s]", k)
	}
	require.Equal(t, "data", tmLabels["team"], "the user's pod label is kept")
	scope, _, _ := unstructured.NestedString(fc.Object, "spec", "jobManager", "accessScope")
	require.Equal(t, "Cluster", scope, "the rest of the template is kept")

	// The Flink operator's pods, from those labels.
	cluster := name + "-flinkcluster"
	jm := e.operatorPod(cluster+"-jobmanager-0", jmLabels, corev1.PodSpec{})
	tm0 := e.operatorPod(cluster+"-taskmanager-0", tmLabels, corev1.PodSpec{})
	tm1 := e.operatorPod(cluster+"-taskmanager-1", tmLabels, corev1.PodSpec{})
	e.runAll(jm.Name, tm0.Name)

	fc = e.flinkCluster(name)
	require.NoError(t, unstructured.SetNestedField(fc.Object, "Running", "status", "state"))
	require.NoError(t, e.c.Update(e.ctx, fc))

	submit := &batchv1.Job{}
	e.eventually("submit job", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name + "-batchjob"}, submit) == nil
	})
	tmpl := submit.Spec.Template
	require.Equal(t, schedv1.SchedulerName, tmpl.Spec.SchedulerName)
	for k, v := range want(workloads.BeamSubmitter) {
		require.Equal(t, v, tmpl.Labels[k], "submit pod label %s", k)
	}
	require.Equal(t, "wordcount", tmpl.Labels["app"], "the template's own label is kept")
	c := tmpl.Spec.Containers[0]
	require.Equal(t, []string{"python", "-m", "apache_beam.examples.wordcount"}, c.Command)
	require.Contains(t, c.Args, "--flink_master="+cluster+"-jobmanager:8081")
	require.NotNil(t, c.ReadinessProbe)

	// The Job controller's pod, from the template.
	sp := e.operatorPod(name+"-batchjob-x7k2p", tmpl.Labels, tmpl.Spec)
	e.runAll(sp.Name)

	st := e.waitJob(job, "tasks and flink cluster status", func(s *batch.JobStatus) bool {
		return s.Aggregate != nil && s.Aggregate.Running == 3 && s.Aggregate.Creating == 1
	})
	require.Equal(t, batch.JobRunning, st.Phase)
	bs := job.Status
	require.Equal(t, "/t9k/flink-cluster/"+cluster+"/namespace/"+e.ns+"/#/overview/", bs.JobURL)
	uid := func(p *corev1.Pod) string { return string(e.pod(p.Name).UID) }
	require.NotNil(t, bs.FlinkClusterStatus)
	require.Len(t, bs.FlinkClusterStatus.JobManagerStatus, 1)
	require.Equal(t, "Running", bs.FlinkClusterStatus.JobManagerStatus[0].Phase)
	require.Equal(t, jm.Name, bs.FlinkClusterStatus.JobManagerStatus[0].Reference.Name)
	require.Equal(t, uid(jm), string(bs.FlinkClusterStatus.JobManagerStatus[0].Reference.UID))
	require.Len(t, bs.FlinkClusterStatus.TaskManagerStatus, 2)
	require.Equal(t, tm1.Name, bs.FlinkClusterStatus.TaskManagerStatus[1].Reference.Name)
	require.Equal(t, string(batch.ReplicaCreating), bs.FlinkClusterStatus.TaskManagerStatus[1].Phase)
	require.Len(t, st.Tasks, 3)
	types := []batch.ReplicaType{st.Tasks[0].Type, st.Tasks[1].Type, st.Tasks[2].Type}
	require.Equal(t, []batch.ReplicaType{workloads.BeamJobManager, workloads.BeamTaskManager, workloads.BeamSubmitter}, types)
	require.Len(t, st.Tasks[2].Replicas, 1)
	require.Equal(t, sp.Name, st.Tasks[2].Replicas[0].Name)
	require.Equal(t, batch.ReplicaRunning, st.Tasks[2].Replicas[0].Phase)
	require.Equal(t, uid(sp), string(st.Tasks[2].Replicas[0].UID))
	require.Equal(t, &batch.Aggregate{Running: 3, Creating: 1}, st.Aggregate)

	// A Flink job ID reported by the cluster gives the job's own page.
	fc = e.flinkCluster(name)
	require.NoError(t, unstructured.SetNestedField(fc.Object, "3f1c0a", "status", "components", "job", "id"))
	require.NoError(t, e.c.Update(e.ctx, fc))
	e.eventually("job URL with the Flink job ID", func() bool {
		bj := &batch.BeamJob{}
		return e.c.Get(e.ctx, client.ObjectKeyFromObject(job), bj) == nil &&
			bj.Status.JobURL == "/t9k/flink-cluster/"+cluster+"/namespace/"+e.ns+"/#/job/3f1c0a/overview/"
	})

	// The submit Job succeeds: the job succeeds, its cluster is deleted, and the submit pod's
	// last state stays in tasks.
	e.setPhase(sp.Name, corev1.PodSucceeded, 0)
	now := metav1.Now()
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKeyFromObject(submit), submit))
	submit.Status.StartTime, submit.Status.CompletionTime = &now, &now
	submit.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	require.NoError(t, e.c.Status().Update(e.ctx, submit))
	st = e.waitPhase(job, batch.JobSucceeded)
	e.eventually("cluster cleaned up", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: cluster}, fc.DeepCopy()) != nil
	})
	st = e.waitJob(job, "submit pod succeeded in tasks", func(s *batch.JobStatus) bool {
		return s.Aggregate != nil && s.Aggregate.Succeeded == 1
	})
	require.Equal(t, batch.ReplicaSucceeded, st.Tasks[2].Replicas[0].Phase)
}

// TestJobBeamDebug: in debug mode the submit Job's container runs the debug command (no
// arguments, no probes) while the Flink cluster runs as usual; without spec.scheduler nothing is
// put on the t9k scheduler and no PodGroup is made.
func TestJobBeamDebug(t *testing.T) {
	e := startJobs(t)
	e.installFlinkCRD()
	job := e.apply("beamjob-t9k-scheduler.yaml", func(o client.Object) {
		j := o.(*batch.BeamJob)
		j.Name = "wordcount-debug"
		j.Spec.Scheduler = nil
		j.Spec.RunMode = &batch.RunMode{Debug: &batch.DebugMode{Enabled: ptr.To(true)}}
	}).(*batch.BeamJob)
	fc := e.flinkCluster(job.Name)
	jmLabels, _, _ := unstructured.NestedStringMap(fc.Object, "spec", "jobManager", "podLabels")
	require.Equal(t, job.Name, jmLabels[workloads.LabelOwnerName])
	require.NotContains(t, jmLabels, schedv1.LabelGroupName)
	require.NoError(t, unstructured.SetNestedField(fc.Object, "Running", "status", "state"))
	require.NoError(t, e.c.Update(e.ctx, fc))

	submit := &batchv1.Job{}
	e.eventually("submit job", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: job.Name + "-batchjob"}, submit) == nil
	})
	tmpl := submit.Spec.Template
	c := tmpl.Spec.Containers[0]
	require.Equal(t, []string{"sleep", "inf"}, c.Command)
	require.Empty(t, c.Args)
	require.Nil(t, c.ReadinessProbe)
	require.NotEqual(t, schedv1.SchedulerName, tmpl.Spec.SchedulerName)
	require.NotContains(t, tmpl.Labels, schedv1.LabelQueue)
	require.Equal(t, workloads.BeamSubmitter, tmpl.Labels[workloads.LabelReplicaType])
	err := e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: job.Name}, &schedv1.PodGroup{})
	require.True(t, client.IgnoreNotFound(err) == nil && err != nil, "no PodGroup without spec.scheduler: %v", err)
}

// TestJobBeamPause: pausing a BeamJob (runMode.pause.enabled, as the Duration Keeper does)
// deletes its submit Job and Flink cluster and says Paused; resuming creates the cluster again
// (Resuming), then the submit Job (Running).
func TestJobBeamPause(t *testing.T) {
	e := startJobs(t)
	e.installFlinkCRD()
	job := e.apply("beamjob-t9k-scheduler.yaml", func(o client.Object) { o.SetName("wordcount-pause") }).(*batch.BeamJob)
	cluster := job.Name + "-flinkcluster"
	running := func() {
		fc := e.flinkCluster(job.Name)
		require.NoError(t, unstructured.SetNestedField(fc.Object, "Running", "status", "state"))
		require.NoError(t, e.c.Update(e.ctx, fc))
		e.eventually("submit job", func() bool {
			return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: job.Name + "-batchjob"}, &batchv1.Job{}) == nil
		})
	}
	running()
	e.waitPhase(job, batch.JobRunning)

	setPause := func(on bool) {
		e.eventually("pause "+map[bool]string{true: "on", false: "off"}[on], func() bool {
			bj := &batch.BeamJob{}
			if e.c.Get(e.ctx, client.ObjectKeyFromObject(job), bj) != nil {
				return false
			}
			bj.Spec.RunMode = &batch.RunMode{Pause: &batch.PauseMode{Enabled: on}}
			return e.c.Update(e.ctx, bj) == nil
		})
	}
	setPause(true)
	st := e.waitPhase(job, batch.JobPaused)
	requireCondition(t, st, batch.JobConditionPaused, corev1.ConditionTrue, workloads.ReasonPaused, workloads.MessagePaused)
	e.eventually("submit job and cluster deleted", func() bool {
		fc := &unstructured.Unstructured{}
		fc.SetGroupVersionKind(workloads.FlinkClusterGVK)
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: job.Name + "-batchjob"}, &batchv1.Job{}) != nil &&
			e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: cluster}, fc) != nil
	})
	e.holds("nothing recreated while paused", time.Second, func() bool {
		fc := &unstructured.Unstructured{}
		fc.SetGroupVersionKind(workloads.FlinkClusterGVK)
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: cluster}, fc) != nil
	})

	setPause(false)
	st = e.waitPhase(job, batch.JobResuming)
	requireCondition(t, st, batch.JobConditionPaused, corev1.ConditionFalse, workloads.ReasonResumed, workloads.MessageResumed)
	running()
	e.waitPhase(job, batch.JobRunning)
}
