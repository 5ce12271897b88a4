package workloads

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

func TestWantsRestart(t *testing.T) {
	for _, tc := range []struct {
		policy batch.RestartPolicyType
		phase  corev1.PodPhase
		code   int32
		known  bool
		want   bool
	}{
		{batch.RestartPolicyNever, corev1.PodFailed, 1, true, false},
		{batch.RestartPolicyOnFailure, corev1.PodFailed, 1, true, true},
		{batch.RestartPolicyOnFailure, corev1.PodSucceeded, 0, true, false},
		{batch.RestartPolicyAlways, corev1.PodSucceeded, 0, true, true},
		{batch.RestartPolicyAlways, corev1.PodFailed, 2, true, true},
		{batch.RestartPolicyExitCode, corev1.PodFailed, 137, true, true},
		{batch.RestartPolicyExitCode, corev1.PodFailed, 130, true, true},
		{batch.RestartPolicyExitCode, corev1.PodFailed, 143, true, true},
		{batch.RestartPolicyExitCode, corev1.PodFailed, 138, true, true},
		{batch.RestartPolicyExitCode, corev1.PodFailed, 1, true, false},
		{batch.RestartPolicyExitCode, corev1.PodFailed, 139, true, false},
		{batch.RestartPolicyExitCode, corev1.PodFailed, 0, false, true}, // evicted: no exit code
		{batch.RestartPolicyExitCode, corev1.PodSucceeded, 0, true, false},
	} {
		if got := wantsRestart(tc.policy, tc.phase, tc.code, tc.known); got != tc.want {
			t.Errorf("wantsRestart(%s, %s, %d, %v) = %v, want %v", tc.policy, tc.phase, tc.code, tc.known, got, tc.want)
		}
	}
}

func failedPod(name string, uid types.UID, code int32) *corev1.Pod {
	p := &corev1.Pod{}
	p.Name, p.UID = name, uid
	p.Status.Phase = corev1.PodFailed
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "main",
		State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: code}}}}
	return p
}

func TestPlanRestarts(t *testing.T) {
	group := func(rule RestartRule) *Cluster {
		return NewCluster("PyTorchTrainingJob", "j", "ns", []Replicas{{Type: "worker", Count: 2, Restart: rule, MainContainer: "main"}})
	}
	for _, tc := range []struct {
		name           string
		rule           RestartRule
		backoff        *int32
		status         batch.JobStatus
		wantRestarting []bool
		wantExhausted  []bool
		wantTotal      int32
	}{
		{name: "on failure counts both", rule: RestartRule{Policy: batch.RestartPolicyOnFailure}, backoff: ptr.To[int32](3),
			wantRestarting: []bool{true, true}, wantExhausted: []bool{false, false}, wantTotal: 2},
		{name: "backoff reached after one", rule: RestartRule{Policy: batch.RestartPolicyOnFailure}, backoff: ptr.To[int32](3),
			status:         batch.JobStatus{BackoffCount: 2},
			wantRestarting: []bool{true, false}, wantExhausted: []bool{false, true}, wantTotal: 3},
		{name: "group limit", rule: RestartRule{Policy: batch.RestartPolicyOnFailure, Limit: ptr.To[int32](1)},
			wantRestarting: []bool{true, false}, wantExhausted: []bool{false, true}, wantTotal: 1},
		{name: "never", rule: RestartRule{Policy: batch.RestartPolicyNever},
			wantRestarting: []bool{false, false}, wantExhausted: []bool{true, true}},
		{name: "exit code 1 is not retryable", rule: RestartRule{Policy: batch.RestartPolicyExitCode},
			wantRestarting: []bool{true, false}, wantExhausted: []bool{false, true}, wantTotal: 1},
		{name: "already counted before a crash is not counted again", rule: RestartRule{Policy: batch.RestartPolicyOnFailure},
			backoff: ptr.To[int32](1),
			status: batch.JobStatus{BackoffCount: 1, Tasks: []batch.TaskStatus{{Type: "worker", RestartCount: 1,
				Replicas: []batch.ReplicaStatus{{Name: "j-worker-0", UID: "a", Phase: batch.ReplicaDeleted}}}}},
			wantRestarting: []bool{true, false}, wantExhausted: []bool{false, true}, wantTotal: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := group(tc.rule)
			v, _ := NewView(c, []*corev1.Pod{failedPod("j-worker-0", "a", 137), failedPod("j-worker-1", "b", 1)})
			counts := countsFrom(&tc.status)
			planRestarts(c, v, &tc.status, RunPolicy{BackoffLimit: tc.backoff}, &counts, corev1.PodFailed)
			for i, s := range v.All() {
				if s.Restarting != tc.wantRestarting[i] || s.Exhausted != tc.wantExhausted[i] {
					t.Errorf("%s: restarting %v exhausted %v, want %v %v", s.Name, s.Restarting, s.Exhausted, tc.wantRestarting[i], tc.wantExhausted[i])
				}
			}
			if counts.total != tc.wantTotal {
				t.Errorf("total %d, want %d", counts.total, tc.wantTotal)
			}
		})
	}
}
