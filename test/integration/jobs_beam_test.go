package integration

import (
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
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

// requireBeamGang checks the PodGroup of the BeamJob of beamjob-t9k-scheduler.yaml: the gang is
// its Flink cluster, one job manager and its two task managers (queue beam, priority 20); the
// submit pods, created once the cluster runs, join the running group and are not counted.
func (e *jobEnv) requireBeamGang(name string, uid types.UID) {
	e.t.Helper()
	pg := &schedv1.PodGroup{}
	e.eventually("pod group", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, pg) == nil
	})
	require.Equal(e.t, int32(3), pg.Spec.MinMember)
	require.Equal(e.t, "beam", pg.Spec.Queue)
	require.Equal(e.t, int32(20), pg.Spec.Priority)
	require.Equal(e.t, []schedv1.PodGroupRole{{Name: workloads.BeamJobManager, MinMember: 1}, {Name: workloads.BeamTaskManager, MinMember: 2}}, pg.Spec.Roles)
	require.Equal(e.t, uid, metav1.GetControllerOf(pg).UID)
}

// operatorPod creates a pod as the Flink operator (or the Job controller) would, from a template's
// labels and containers.
// clusterRunning reports the job's FlinkCluster Running, as the Flink operator would, and returns
// the submit Job the controller then creates.
func (e *jobEnv) clusterRunning(job string) *batchv1.Job {
	e.t.Helper()
	fc := e.flinkCluster(job)
	require.NoError(e.t, unstructured.SetNestedField(fc.Object, "Running", "status", "state"))
	require.NoError(e.t, e.c.Update(e.ctx, fc))
	submit := &batchv1.Job{}
	e.eventually("submit job", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: job + "-batchjob"}, submit) == nil
	})
	return submit
}

func (e *jobEnv) operatorPod(name string, labels map[string]string, spec corev1.PodSpec) *corev1.Pod {
	e.t.Helper()
	if len(spec.Containers) == 0 {
		spec.Containers = []corev1.Container{{Name: "flink", Image: "flink:1.17.2"}}
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: labels}, Spec: spec}
	e.create(p)
	return p
}

// TestJobBeamScheduler: with spec.scheduler a BeamJob has a PodGroup (minMember: the Flink
// cluster's job manager and task managers; queue and priority from the spec); its submit pods carry schedulerName t9k-scheduler and
// the PodGroup, queue and role labels, and the Flink cluster's pods the same labels through the
// FlinkCluster's podLabels. status.jobURL, flinkClusterStatus, tasks and aggregate follow the
// cluster and the pods.
func TestJobBeamScheduler(t *testing.T) {
	e := startJobs(t)
	e.installFlinkCRD()
	job := e.apply("beamjob-t9k-scheduler.yaml", nil).(*batch.BeamJob)
	name := job.Name

	e.requireBeamGang(name, job.UID)

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

	submit := e.clusterRunning(name)
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
	submit := e.clusterRunning(job.Name)
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
	running := func() { e.clusterRunning(job.Name) }
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

// TestJobBeamFlinkPodsOnT9kScheduler: with the controllers' webhooks in place (as installed), the
// pods the Flink operator makes from a t9k BeamJob's FlinkCluster (its labels, its podLabels, no
// schedulerName) are created with schedulerName t9k-scheduler and the job's PodGroup, queue, role
// and owner labels, and pass the queue's pod checks; a Flink pod of a cluster no t9k BeamJob owns,
// or of a BeamJob without spec.scheduler, is left as it came. Admission charges the queue for the
// Flink cluster as well as the submit pods.
func TestJobBeamFlinkPodsOnT9kScheduler(t *testing.T) {
	qe := startEnv(t, envOptions{jobs: true})
	const ns = "beam-demo"
	qe.namespace(ns, map[string]string{"team": "beam"})
	team := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "beam"}}
	qe.queue("beam", schedv1.QueueSpec{NamespaceSelector: team})
	e := &jobEnv{t: t, ctx: qe.ctx, cp: qe.cp, c: qe.c, ns: ns}
	e.installFlinkCRD()

	job := e.apply("beamjob-t9k-scheduler.yaml", nil).(*batch.BeamJob)
	name, cluster := job.Name, job.Name+"-flinkcluster"
	e.requireBeamGang(name, job.UID)
	fc := e.flinkCluster(name)
	podLabels := func(fc *unstructured.Unstructured, field string) map[string]string {
		l, _, err := unstructured.NestedStringMap(fc.Object, "spec", field, "podLabels")
		require.NoError(t, err)
		return l
	}
	// As the operator labels its pods: its own labels, then the component's podLabels.
	operatorLabels := func(cluster, component string, podLabels map[string]string) map[string]string {
		l := map[string]string{"app": "flink", "cluster": cluster, "component": component}
		maps.Copy(l, podLabels)
		return l
	}
	flinkSpec := func(cpu string) corev1.PodSpec {
		r := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu), corev1.ResourceMemory: resource.MustParse("1Gi")}
		return corev1.PodSpec{Containers: []corev1.Container{{Name: "flink", Image: "flink:1.17.2",
			Resources: corev1.ResourceRequirements{Requests: r, Limits: r}}}}
	}

	jm := e.operatorPod(cluster+"-jobmanager-0", operatorLabels(cluster, "jobmanager", podLabels(fc, "jobManager")), flinkSpec("500m"))
	tm := e.operatorPod(cluster+"-taskmanager-0", operatorLabels(cluster, "taskmanager", podLabels(fc, "taskManager")), flinkSpec("1"))
	for _, tc := range []struct {
		pod  *corev1.Pod
		role string
	}{{jm, workloads.BeamJobManager}, {tm, workloads.BeamTaskManager}} {
		p := e.pod(tc.pod.Name)
		require.Equal(t, schedv1.SchedulerName, p.Spec.SchedulerName, "schedulerName of %s", p.Name)
		for k, v := range map[string]string{
			workloads.LabelOwnerName: name, workloads.LabelOwnerKind: "BeamJob", workloads.LabelReplicaType: tc.role,
			schedv1.LabelGroupName: name, schedv1.LabelQueue: "beam", schedv1.LabelRole: tc.role,
			"app": "flink", "cluster": cluster, "component": tc.role,
		} {
			require.Equal(t, v, p.Labels[k], "label %s of %s", k, p.Name)
		}
	}

	// Not a t9k BeamJob's: a Flink cluster of the operator's own, and one of a BeamJob without
	// spec.scheduler (owner labels, no PodGroup).
	plain := e.operatorPod("other-flinkcluster-taskmanager-0", operatorLabels("other-flinkcluster", "taskmanager", nil), flinkSpec("1"))
	plainJob := e.apply("beamjob-t9k-scheduler.yaml", func(o client.Object) {
		o.SetName("wordcount-default")
		o.(*batch.BeamJob).Spec.Scheduler = nil
	}).(*batch.BeamJob)
	pfc := e.flinkCluster(plainJob.Name)
	require.NotContains(t, podLabels(pfc, "taskManager"), schedv1.LabelGroupName)
	own := e.operatorPod(plainJob.Name+"-flinkcluster-taskmanager-0",
		operatorLabels(plainJob.Name+"-flinkcluster", "taskmanager", podLabels(pfc, "taskManager")), flinkSpec("1"))
	for _, p := range []*corev1.Pod{plain, own} {
		require.Equal(t, corev1.DefaultSchedulerName, e.pod(p.Name).Spec.SchedulerName, "schedulerName of %s", p.Name)
	}

	// The queue is charged for the cluster: with 2 CPUs, a job manager of 0.5 and two task managers
	// of 1 do not fit beside a submit pod of 0.5.
	qe.queue("small", schedv1.QueueSpec{NamespaceSelector: team,
		Quota: &schedv1.QueueQuota{Requests: res("cpu", "2", "memory", "16Gi")}})
	big := e.load("beamjob-t9k-scheduler.yaml").(*batch.BeamJob)
	big.Name = "wordcount-small"
	big.Spec.Scheduler.T9kScheduler.Queue = "small"
	big.Spec.JobTemplate.Spec.Template.Spec.Containers[0].Resources.Requests = res("cpu", "500m", "memory", "1Gi")
	err := e.c.Create(e.ctx, big)
	require.ErrorContains(t, err, `admission webhook "jobs.admission.batch.tensorstack.dev" denied the request: queue "small" has not enough cpu left: asked 3, left 2 (quota 2, allocated 0)`)
}

// TestJobBeamGangIsTheFlinkCluster: with the t9k scheduler running, the PodGroup the controller
// writes for a BeamJob lets the Flink cluster (its pods as the mutating webhook leaves them) bind
// before the submit Job exists, which only the running cluster brings; the submit pod, a role the
// PodGroup does not list, then joins the running group and binds too.
func TestJobBeamGangIsTheFlinkCluster(t *testing.T) {
	ge := newGangEnv(t, 2, 0)
	ge.queue("beam", 0, nil) // namespace default
	c, err := client.New(ge.cp.Config, client.Options{Scheme: controllers.Scheme()})
	require.NoError(t, err)
	e := &jobEnv{t: t, ctx: ge.ctx, cp: ge.cp, c: c, ns: "default"}
	e.stop = e.startControllers()
	e.installFlinkCRD()
	startScheduler(t, ge.cp)

	job := e.apply("beamjob-t9k-scheduler.yaml", nil).(*batch.BeamJob)
	name, cluster := job.Name, job.Name+"-flinkcluster"
	e.requireBeamGang(name, job.UID)
	fc := e.flinkCluster(name)
	onT9k := corev1.PodSpec{SchedulerName: schedv1.SchedulerName}
	for _, p := range []struct{ name, field string }{
		{cluster + "-jobmanager-0", "jobManager"}, {cluster + "-taskmanager-0", "taskManager"}, {cluster + "-taskmanager-1", "taskManager"},
	} {
		l, _, err := unstructured.NestedStringMap(fc.Object, "spec", p.field, "podLabels")
		require.NoError(t, err)
		e.operatorPod(p.name, l, *onT9k.DeepCopy())
	}
	ge.waitBound(e.ns, name, 3, 60*time.Second)

	submit := e.clusterRunning(name)
	sp := e.operatorPod(name+"-batchjob-x7k2p", submit.Spec.Template.Labels, submit.Spec.Template.Spec)
	ge.waitBound(e.ns, name, 4, 60*time.Second)
	require.NotEmpty(t, e.pod(sp.Name).Spec.NodeName, "the submit pod joined the running gang")
}
