package admission

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func spec(req, lim corev1.ResourceList) *corev1.PodSpec {
	return &corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}}
}

func TestCheck(t *testing.T) {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "demo", Labels: map[string]string{"team": "a"}}}
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	queue := func(mut func(*schedv1beta1.Queue)) *schedv1beta1.Queue {
		q := &schedv1beta1.Queue{ObjectMeta: metav1.ObjectMeta{Name: "q"}, Spec: schedv1beta1.QueueSpec{
			NamespaceSelector: sel, Quota: &schedv1beta1.QueueQuota{Requests: rl("cpu", "10", "nvidia.com/gpu", "8")}}}
		if mut != nil {
			mut(q)
		}
		return q
	}
	shape := &Profile{Name: "small", Rules: []ShapeRule{
		{APIGroups: []string{"*"}, Resources: []string{"pods"}, ResourceShape: corev1.ResourceRequirements{Requests: rl("cpu", "4")}},
		{APIGroups: []string{"batch.tensorstack.dev"}, Resources: []string{"genericjobs"}, ResourceShape: corev1.ResourceRequirements{Limits: rl("nvidia.com/gpu", "4")}},
	}}
	jobs := schema.GroupResource{Group: "batch.tensorstack.dev", Resource: "genericjobs"}
	for _, tc := range []struct {
		name string
		in   Input
		want string
	}{
		{name: "fits", in: Input{Kind: "Pod", Queue: queue(nil), Replicas: []Replica{{Name: "p", Count: 1, Spec: spec(rl("cpu", "1"), nil)}}}},
		{name: "missing", in: Input{Kind: "Pod", QueueName: "x", QueueNamespace: "t9k-system"},
			want: `queue "x" does not exist (queues live in namespace t9k-system)`},
		{name: "closed", in: Input{Kind: "PodGroup", Queue: queue(func(q *schedv1beta1.Queue) { q.Spec.Closed = true })},
			want: `queue "q" is closed and accepts no new workloads`},
		{name: "nil selector", in: Input{Kind: "PodGroup", Queue: queue(func(q *schedv1beta1.Queue) { q.Spec.NamespaceSelector = nil })},
			want: `namespace "demo" may not use queue "q": the queue's namespaceSelector does not select it`},
		{name: "empty selector", in: Input{Kind: "PodGroup", Queue: queue(func(q *schedv1beta1.Queue) { q.Spec.NamespaceSelector = &metav1.LabelSelector{} })},
			want: `namespace "demo" may not use queue "q": the queue's namespaceSelector does not select it`},
		{name: "cpu not declared", in: Input{Kind: "Pod", Queue: queue(nil), Replicas: []Replica{{Name: "p", Count: 1, Spec: spec(nil, nil)}}},
			want: `queue "q" has a cpu quota, so every container must declare requests.cpu; container "c" of pod "p" does not`},
		{name: "a limit declares the request", in: Input{Kind: "Pod", Queue: queue(nil), Replicas: []Replica{{Name: "p", Count: 1, Spec: spec(nil, rl("cpu", "1"))}}}},
		{name: "zero replicas need not declare", in: Input{Kind: "GenericJob", Queue: queue(nil), Replicas: []Replica{{Name: "w", Count: 0, Spec: spec(nil, nil)}}}},
		{name: "job over quota", in: Input{Kind: "GenericJob", Queue: queue(nil), Allocated: rl("nvidia.com/gpu", "5"),
			Replicas: []Replica{{Name: "w", Count: 2, Spec: spec(rl("cpu", "1"), rl("nvidia.com/gpu", "2"))}}},
			want: `queue "q" has not enough nvidia.com/gpu left: asked 4, left 3 (quota 8, allocated 5)`},
		{name: "over-allocated queue shows 0 left", in: Input{Kind: "Pod", Queue: queue(nil), Allocated: rl("cpu", "12"),
			Replicas: []Replica{{Name: "p", Count: 1, Spec: spec(rl("cpu", "500m"), nil)}}},
			want: `queue "q" has not enough cpu left: asked 500m, left 0 (quota 10, allocated 12)`},
		{name: "exactly fits", in: Input{Kind: "Pod", Queue: queue(nil), Allocated: rl("cpu", "9"),
			Replicas: []Replica{{Name: "p", Count: 1, Spec: spec(rl("cpu", "1"), nil)}}}},
		{name: "unquoted resource is free", in: Input{Kind: "Pod", Queue: queue(nil),
			Replicas: []Replica{{Name: "p", Count: 1, Spec: spec(rl("cpu", "1", "memory", "1Ti"), nil)}}}},
		{name: "shape per pod", in: Input{Kind: "GenericJob", Resource: jobs, Queue: queue(nil), Shape: shape,
			Replicas: []Replica{{Name: "w", Count: 1, Spec: spec(rl("cpu", "5"), nil)}}},
			want: `resource shape "small" of queue "q" allows at most requests.cpu 4 per pod; replica "w" asks 5`},
		{name: "shape of the whole job", in: Input{Kind: "GenericJob", Resource: jobs, Queue: queue(nil), Shape: shape,
			Replicas: []Replica{{Name: "w", Count: 3, Spec: spec(rl("cpu", "1", "memory", "1Gi"), rl("cpu", "1", "memory", "1Gi", "nvidia.com/gpu", "2"))}}},
			want: `resource shape "small" of queue "q" allows at most limits.nvidia.com/gpu 4 per GenericJob; this one asks 6 in total`},
		{name: "shape declares cpu", in: Input{Kind: "Pod", Queue: queue(func(q *schedv1beta1.Queue) { q.Spec.Quota = nil }), Shape: shape,
			Replicas: []Replica{{Name: "p", Count: 1, Spec: spec(rl("memory", "1Gi"), nil)}}},
			want: `resource shape "small" of queue "q" sets requests.cpu, so every container must declare it; container "c" of pod "p" does not`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Namespace = ns
			err := Check(tc.in)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("Check() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestJobReplicas(t *testing.T) {
	tmpl := batchv1beta1.PodTemplate{PodTemplateSpec: corev1.PodTemplateSpec{Spec: *spec(rl("cpu", "1"), nil)}}
	t9k := batchv1beta1.CommonJobSpec{Scheduler: &batchv1beta1.SchedulePolicy{T9kScheduler: &batchv1beta1.T9kScheduler{}}}
	for _, tc := range []struct {
		name      string
		obj       any
		wantQueue string
		wantOK    bool
		wantCPU   string
	}{
		{name: "generic", obj: &batchv1beta1.GenericJob{Spec: batchv1beta1.GenericJobSpec{CommonJobSpec: t9k, ReplicaSpecs: []batchv1beta1.ReplicaSpec{
			{Type: "worker", Replicas: ptr.To[int32](4), Template: tmpl}, {Type: "ps", Template: tmpl}}}},
			wantQueue: "default", wantOK: true, wantCPU: "5"},
		{name: "no t9k scheduler", obj: &batchv1beta1.GenericJob{Spec: batchv1beta1.GenericJobSpec{ReplicaSpecs: []batchv1beta1.ReplicaSpec{{Type: "worker", Template: tmpl}}}},
			wantCPU: "1"},
		{name: "mpi 2024 shape", obj: &batchv1beta1.MPIJob{Spec: batchv1beta1.MPIJobSpec{CommonJobSpec: t9k,
			Worker: &batchv1beta1.MPIWorker{Replicas: ptr.To[int32](3), Template: tmpl}}}, wantQueue: "default", wantOK: true, wantCPU: "3"},
		{name: "colossalai 2024 shape counts the launcher", obj: &batchv1beta1.ColossalAIJob{Spec: batchv1beta1.ColossalAIJobSpec{CommonJobSpec: t9k,
			Worker:   &batchv1beta1.ColossalAIWorker{Replicas: ptr.To[int32](2), Template: tmpl},
			Launcher: &batchv1beta1.ColossalAILauncher{Resources: corev1.ResourceRequirements{Requests: rl("cpu", "500m")}}}},
			wantQueue: "default", wantOK: true, wantCPU: "2500m"},
		{name: "deepspeed", obj: &batchv1beta1.DeepSpeedJob{Spec: batchv1beta1.DeepSpeedJobSpec{CommonJobSpec: batchv1beta1.CommonJobSpec{
			Scheduler: &batchv1beta1.SchedulePolicy{T9kScheduler: &batchv1beta1.T9kScheduler{Queue: "a100"}}},
			Worker: batchv1beta1.DeepSpeedWorker{Replicas: ptr.To[int32](2), Template: tmpl}}}, wantQueue: "a100", wantOK: true, wantCPU: "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q, reps, ok := JobReplicas(tc.obj)
			if q != tc.wantQueue || ok != tc.wantOK {
				t.Errorf("queue, ok = %q, %v; want %q, %v", q, ok, tc.wantQueue, tc.wantOK)
			}
			got := totalRequests(reps)[corev1.ResourceCPU]
			if want := resource.MustParse(tc.wantCPU); got.Cmp(want) != 0 {
				t.Errorf("total cpu = %s, want %s", got.String(), want.String())
			}
		})
	}
}
