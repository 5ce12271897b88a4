package workloads

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestScaleDownVerdict: running surplus pods go once the acknowledging replica became Ready after
// the ConfigMap's stamp (strictly: both have one-second precision), at once when that replica
// cannot tell, and after scaleDownAckTimeout with a warning.
func TestScaleDownVerdict(t *testing.T) {
	stamp := time.Date(2025, 1, 2, 10, 0, 0, 0, time.UTC)
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"true"}}}}
	worker0 := func(phase corev1.PodPhase, ready corev1.ConditionStatus, since time.Time, p *corev1.Probe) *Slot {
		pod := &corev1.Pod{}
		pod.Spec.Containers = []corev1.Container{{Name: "sidecar"}, {Name: "worker", ReadinessProbe: p}}
		pod.Status.Phase = phase
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready, LastTransitionTime: metav1.NewTime(since)}}
		return &Slot{Type: "worker", Name: "j-worker-0", Pod: pod, MainContainer: "worker"}
	}
	deleting := worker0(corev1.PodRunning, corev1.ConditionTrue, stamp.Add(-time.Minute), probe)
	deleting.Pod.DeletionTimestamp = &metav1.Time{Time: stamp}
	now := stamp.Add(30 * time.Second)
	for _, tc := range []struct {
		name   string
		acker  *Slot
		stamp  time.Time
		now    time.Time
		want   ackVerdict
		wantIn time.Duration
	}{
		{"ready since before the change", worker0(corev1.PodRunning, corev1.ConditionTrue, stamp.Add(-time.Minute), probe), stamp, now, ackWait, 270 * time.Second},
		{"relaunching", worker0(corev1.PodRunning, corev1.ConditionFalse, stamp.Add(10*time.Second), probe), stamp, now, ackWait, 270 * time.Second},
		{"ready again after the change", worker0(corev1.PodRunning, corev1.ConditionTrue, stamp.Add(10*time.Second), probe), stamp, now, ackDone, 0},
		// In the stamp's own second, the transition may have come before the write.
		{"ready in the same second", worker0(corev1.PodRunning, corev1.ConditionTrue, stamp.Add(800*time.Millisecond), probe), stamp.Add(200 * time.Millisecond), now, ackWait, 270 * time.Second},
		{"ready without a transition time", worker0(corev1.PodRunning, corev1.ConditionTrue, time.Time{}, probe), stamp, now, ackWait, 270 * time.Second},
		{"timed out", worker0(corev1.PodRunning, corev1.ConditionFalse, stamp.Add(10*time.Second), probe), stamp, stamp.Add(scaleDownAckTimeout), ackTimeout, 0},
		{"no stamp", worker0(corev1.PodRunning, corev1.ConditionTrue, stamp, probe), time.Time{}, now, ackTimeout, 0},
		{"worker-0 pending", worker0(corev1.PodPending, corev1.ConditionFalse, stamp, probe), stamp, now, ackNobody, 0},
		{"worker-0 failed", worker0(corev1.PodFailed, corev1.ConditionFalse, stamp, probe), stamp, now, ackNobody, 0},
		{"worker-0 being deleted", deleting, stamp, now, ackNobody, 0},
		{"no worker-0", &Slot{Type: "worker", Name: "j-worker-0"}, stamp, now, ackNobody, 0},
		{"no probe (debug mode, an older controller's pod)", worker0(corev1.PodRunning, corev1.ConditionTrue, stamp.Add(-time.Minute), nil), stamp, now, ackNobody, 0},
	} {
		got, in := scaleDownVerdict(tc.acker, tc.stamp, tc.now)
		if got != tc.want || in != tc.wantIn {
			t.Errorf("%s: %v in %v, want %v in %v", tc.name, got, in, tc.want, tc.wantIn)
		}
	}
}
