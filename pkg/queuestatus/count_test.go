package queuestatus

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

func rl(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func pod(phase corev1.PodPhase, group, node string, req, lim corev1.ResourceList) corev1.Pod {
	p := corev1.Pod{Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}},
		Status: corev1.PodStatus{Phase: phase}}
	if group != "" {
		p.Labels = map[string]string{schedv1beta1.LabelGroupName: group}
	}
	return p
}

func TestPodRequests(t *testing.T) {
	for _, tc := range []struct {
		name string
		spec corev1.PodSpec
		want corev1.ResourceList
	}{
		{name: "containers add up", spec: corev1.PodSpec{Containers: []corev1.Container{
			{Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1")}},
			{Resources: corev1.ResourceRequirements{Requests: rl("cpu", "500m", "memory", "1Gi")}}}},
			want: rl("cpu", "1500m", "memory", "1Gi")},
		{name: "a limit alone is the request", spec: corev1.PodSpec{Containers: []corev1.Container{
			{Resources: corev1.ResourceRequirements{Limits: rl("nvidia.com/gpu", "2", "cpu", "4"), Requests: rl("cpu", "1")}}}},
			want: rl("cpu", "1", "nvidia.com/gpu", "2")},
		{name: "the largest init container counts when larger", spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: rl("cpu", "3")}}},
			Containers:     []corev1.Container{{Resources: corev1.ResourceRequirements{Requests: rl("cpu", "1")}}}},
			want: rl("cpu", "3")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := PodRequests(&tc.spec)
			if len(got) != len(tc.want) {
				t.Fatalf("PodRequests = %v, want %v", got, tc.want)
			}
			for n, q := range tc.want {
				if g := got[n]; g.Cmp(q) != 0 {
					t.Errorf("%s = %s, want %s", n, g.String(), q.String())
				}
			}
		})
	}
}

func TestQueueStatus(t *testing.T) {
	q := &schedv1beta1.Queue{ObjectMeta: metav1.ObjectMeta{Name: "q", Generation: 3},
		Spec: schedv1beta1.QueueSpec{Quota: &schedv1beta1.QueueQuota{Requests: rl("cpu", "10", "nvidia.com/gpu", "4")}}}
	m := Members{
		PodGroups: []schedv1beta1.PodGroup{{}, {}},
		Pods: []corev1.Pod{
			pod(corev1.PodRunning, "g1", "n1", rl("cpu", "2"), rl("nvidia.com/gpu", "2")),
			pod(corev1.PodPending, "g1", "", rl("cpu", "2"), rl("nvidia.com/gpu", "2")),
			pod(corev1.PodSucceeded, "", "n1", rl("cpu", "8"), nil), // terminated: holds nothing
			pod("", "", "", rl("cpu", "1"), nil),                    // no phase yet: pending
			pod(corev1.PodUnknown, "", "n2", rl("cpu", "500m"), nil),
		},
	}
	st := QueueStatus(q, m)
	want := schedv1beta1.PodCounts{Pending: 2, Running: 1, Succeeded: 1, Unknown: 1}
	if st.Pods != want {
		t.Errorf("pods = %+v, want %+v", st.Pods, want)
	}
	if st.PodGroups.Total != 5 { // 2 PodGroups + 3 virtual groups
		t.Errorf("podGroups.total = %d, want 5", st.PodGroups.Total)
	}
	if cpu := st.Allocated[corev1.ResourceCPU]; cpu.String() != "5500m" {
		t.Errorf("allocated cpu = %s, want 5500m", cpu.String())
	}
	if gpu := st.Allocated["nvidia.com/gpu"]; gpu.Value() != 4 {
		t.Errorf("allocated gpu = %s, want 4", gpu.String())
	}
	c := meta.FindStatusCondition(st.Conditions, schedv1beta1.QueueConditionResourcePressure)
	if c == nil || c.Status != metav1.ConditionTrue || c.Message != "Queue has allocated more than 90% of its quota: nvidia.com/gpu 4 of 4" {
		t.Errorf("ResourcePressure = %+v", c)
	}
	if !meta.IsStatusConditionFalse(st.Conditions, schedv1beta1.QueueConditionClosed) {
		t.Error("QueueClosed should be False")
	}
}

func TestPressure(t *testing.T) {
	for _, tc := range []struct {
		name           string
		quota, alloc   corev1.ResourceList
		want           metav1.ConditionStatus
		wantMessageFor string
	}{
		{name: "empty", quota: rl("cpu", "10"), want: metav1.ConditionFalse},
		{name: "exactly 90% is not over", quota: rl("cpu", "10"), alloc: rl("cpu", "9"), want: metav1.ConditionFalse},
		{name: "over 90%", quota: rl("cpu", "10"), alloc: rl("cpu", "9100m"), want: metav1.ConditionTrue},
		{name: "zero quota with use", quota: rl("cpu", "0"), alloc: rl("cpu", "1"), want: metav1.ConditionTrue},
		{name: "resource without quota ignored", quota: rl("cpu", "10"), alloc: rl("memory", "1Ti"), want: metav1.ConditionFalse},
		{name: "no quota", alloc: rl("cpu", "1"), want: metav1.ConditionFalse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Pressure(tc.quota, tc.alloc, 1); got.Status != tc.want {
				t.Errorf("Pressure = %+v, want %s", got, tc.want)
			}
		})
	}
}

func TestGroupCountsKeepsConditions(t *testing.T) {
	cond := metav1.Condition{Type: schedv1beta1.PodGroupConditionScheduled, Status: metav1.ConditionTrue, Reason: schedv1beta1.ReasonPodGroupScheduled}
	st := GroupCounts(schedv1beta1.PodGroupStatus{Conditions: []metav1.Condition{cond}, Running: 7}, []corev1.Pod{
		pod(corev1.PodRunning, "g", "n1", rl("cpu", "1"), nil),
		pod(corev1.PodPending, "g", "", rl("cpu", "1"), nil), // not bound: not allocated
		pod(corev1.PodFailed, "g", "n1", rl("cpu", "1"), nil),
	})
	if st.Running != 1 || st.Pending != 1 || st.Failed != 1 || len(st.Conditions) != 1 {
		t.Errorf("status = %+v", st)
	}
	if cpu := st.Allocated[corev1.ResourceCPU]; cpu.Value() != 1 {
		t.Errorf("allocated cpu = %s, want 1 (bound, not terminated)", cpu.String())
	}
}
