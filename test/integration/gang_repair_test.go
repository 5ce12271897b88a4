package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

// Correctness fixes of the scale rework (issue 20, items 6–9), each against the real scheduler.

// denyBinding makes the apiserver refuse every Binding of the named pod, as an admission policy
// of a real cluster (or a node that went away) would: the scheduler sees its Bind fail after
// Permit let the gang go. It returns a func that lifts the refusal.
func (e *gangEnv) denyBinding(pod string) (lift func()) {
	e.t.Helper()
	name := "deny-binding-" + pod
	pol := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/binding"}},
				},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: fmt.Sprintf("object.metadata.name != %q", pod),
				Message:    "binding refused by the test",
			}},
		},
	}
	_, err := e.kc.AdmissionregistrationV1().ValidatingAdmissionPolicies().Create(e.ctx, pol, metav1.CreateOptions{})
	require.NoError(e.t, err)
	b := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
	}
	_, err = e.kc.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Create(e.ctx, b, metav1.CreateOptions{})
	require.NoError(e.t, err)
	// Policies reach (and leave) the admission plugin asynchronously: probe with a pod of that
	// name in a namespace of its own until a Binding of it is refused, or, after lift, allowed.
	e.namespace("binding-probe", nil)
	probe := func(wantDenied bool) {
		p := gangPod("binding-probe", pod, "", "", 0)
		p.Spec.SchedulerName = "nobody"
		require.Eventually(e.t, func() bool {
			_ = e.kc.CoreV1().Pods("binding-probe").Delete(e.ctx, pod, *metav1.NewDeleteOptions(0))
			if _, err := e.kc.CoreV1().Pods("binding-probe").Create(e.ctx, p, metav1.CreateOptions{}); err != nil {
				return false
			}
			err := e.kc.CoreV1().Pods("binding-probe").Bind(e.ctx, &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod},
				Target: corev1.ObjectReference{Kind: "Node", Name: "no-such-node"}}, metav1.CreateOptions{})
			denied := apierrors.IsInvalid(err) || apierrors.IsForbidden(err)
			return denied == wantDenied && (denied || err == nil)
		}, 30*time.Second, 200*time.Millisecond, "the binding policy never took effect (want denied: %v)", wantDenied)
	}
	probe(true)
	return func() {
		require.NoError(e.t, e.kc.AdmissionregistrationV1().ValidatingAdmissionPolicyBindings().Delete(e.ctx, name, metav1.DeleteOptions{}))
		require.NoError(e.t, e.kc.AdmissionregistrationV1().ValidatingAdmissionPolicies().Delete(e.ctx, name, metav1.DeleteOptions{}))
		probe(false)
	}
}

// Item 6: one member's Bind fails after Permit let the whole gang go. The others are bound by
// then and cannot be unbound; the failed member is retried, and if the gang is still not whole
// when its schedule timeout has passed, the scheduler releases the members it bound, so a partial
// gang never keeps GPUs. Once binding works again the recreated gang binds whole.
func TestGangBindFailureLeavesNoPartialGang(t *testing.T) {
	e := newGangEnv(t, 2, 8)
	e.queue("default", 0, nil)
	lift := e.denyBinding("bf-1")
	startScheduler(t, e.cp)
	timeout := int32(5)
	e.gang("default", "bf", "default", 2, 2, 8, func(pg *v1beta1.PodGroup) { pg.Spec.ScheduleTimeoutSeconds = &timeout })

	// bf-0 binds (Permit let both go); bf-1's Bind is refused.
	e.waitBound("default", "bf", 1, 30*time.Second)
	failed := time.Now()
	note := e.waitEvent("default", "bf", v1beta1.ReasonBindFailed, "bf-1")
	t.Logf("bind failure reported: %s", note)

	// Within the timeout (plus the retry's slack) the partial gang is released: bf-0 is gone and
	// no member of the gang holds a node.
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, time.Duration(timeout)*time.Second+20*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := e.kc.CoreV1().Pods("default").Get(ctx, "bf-0", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	b, nodes := e.bound("default", "bf")
	require.NoError(t, err, "the bound member of the partial gang was never released (%d bound on %v)", b, nodes)
	t.Logf("partial gang released %s after the bind failure", time.Since(failed).Round(100*time.Millisecond))
	require.Zero(t, b, "members of a released gang still bound: %v", nodes)
	e.waitEvent("default", "bf", v1beta1.ReasonPartialGangReleased, "bf-0")

	// Binding works again; the gang's controller (here: the test) recreates the released member,
	// and the gang binds whole.
	lift()
	e.members("default", "bf", "default", 0, 1, 8, nil)
	e.waitBound("default", "bf", 2, 60*time.Second)
}

// Item 7: a gang whose roles are completed by a pod added after minMember pods already exist
// (the count had passed minMember, so "count == minMember" never fired) still starts.
func TestGangRoleCompletedLaterStarts(t *testing.T) {
	e := newGangEnv(t, 3, 8)
	e.queue("default", 0, nil)
	startScheduler(t, e.cp)
	pg := &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "roles", Namespace: "default"}, Spec: v1beta1.PodGroupSpec{
		MinMember: 2, Queue: "default",
		Roles: []v1beta1.PodGroupRole{{Name: "master", MinMember: 1}, {Name: "worker", MinMember: 1}},
	}}
	require.NoError(t, e.c.Create(e.ctx, pg))
	role := func(r string) func(*corev1.Pod) {
		return func(p *corev1.Pod) { p.Labels[v1beta1.LabelRole] = r }
	}
	// Two workers: minMember pods exist, but no master.
	e.members("default", "roles", "default", 0, 2, 8, role("worker"))
	e.waitCondition("default", "roles", v1beta1.PodGroupConditionSufficientMember, v1beta1.ReasonInsufficientMemberPod, "role master: 0 of 1")
	time.Sleep(2 * time.Second) // the workers settle in the gate; nothing else happens in this cluster
	b, _ := e.bound("default", "roles")
	require.Zero(t, b, "members bound while the master role was missing")
	e.members("default", "roles", "default", 2, 1, 8, role("master"))
	e.waitBound("default", "roles", 3, 20*time.Second)
}

// Item 8: a gang plan made at PreFilter holds the GPUs of every member; when the member then
// fails Filter on its planned node (a host port taken, which the planner does not know), the
// plan must be dropped in that cycle, not held until the plan's TTL: another pod needing those
// GPUs binds at once.
func TestGangPlanReleasedWhenMemberFailsFilter(t *testing.T) {
	e := newGangEnv(t, 2, 8)
	e.queue("default", 0, nil)
	// Port 8080 is taken on both nodes: the gang's members (which ask for it) fit nowhere, though
	// both nodes have all their GPUs free.
	port := []corev1.ContainerPort{{ContainerPort: 8080, HostPort: 8080}}
	for i := range 2 {
		p := gangPod("default", fmt.Sprintf("porter-%d", i), "", "", 0)
		delete(p.Labels, v1beta1.LabelQueue)
		p.Spec.NodeName = fmt.Sprintf("node-%d", i)
		p.Spec.Containers[0].Ports = port
		_, err := e.kc.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	startScheduler(t, e.cp)
	pg := &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "ported", Namespace: "default"}, Spec: v1beta1.PodGroupSpec{MinMember: 2, Queue: "default"}}
	require.NoError(t, e.c.Create(e.ctx, pg))
	e.members("default", "ported", "default", 0, 2, 8, func(p *corev1.Pod) { p.Spec.Containers[0].Ports = port })
	e.waitCondition("default", "ported", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonUnschedulable, "free ports")

	// A pod that needs 8 GPUs and no port: every GPU is free, so it must bind now.
	solo := gangPod("default", "solo", "", "default", 8)
	start := time.Now()
	_, err := e.kc.CoreV1().Pods("default").Create(e.ctx, solo, metav1.CreateOptions{})
	require.NoError(t, err)
	err = wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		p, err := e.kc.CoreV1().Pods("default").Get(ctx, "solo", metav1.GetOptions{})
		return err == nil && p.Spec.NodeName != "", nil
	})
	require.NoError(t, err, "an 8-GPU pod stayed pending on a cluster whose GPUs are all free (an unplaceable gang's plan held them)")
	t.Logf("solo bound %s after creation", time.Since(start).Round(10*time.Millisecond))
	b, _ := e.bound("default", "ported")
	require.Zero(t, b)
}

// Item 9: the scheduler's periodic flush of unschedulable pods skips pods a PreEnqueue plugin
// holds, so a held gang member whose gate opened without an event reaching it (a lost or late
// event) would wait forever. groupstate's sweep lets such members go. The fault switch makes the
// scheduler miss every gate-opening event; the members, held for want of their PodGroup, must
// still bind once the PodGroup exists, released by the sweep alone.
func TestHeldMembersReleasedWhenTheOpeningEventIsMissed(t *testing.T) {
	e := newGangEnv(t, 2, 8)
	e.queue("default", 0, nil)
	allowSweep(t)
	groupstate.FaultMissGateEvents.Store(true) // read by the scheduler's plugins as they start
	t.Cleanup(func() { groupstate.FaultMissGateEvents.Store(false) })
	startScheduler(t, e.cp)

	const gated = `scheduler_pending_pods{queue="gated"}`
	before := snapshotMetrics(t)
	e.members("default", "missed", "default", 0, 3, 4, nil)
	// All three are held at PreEnqueue (no PodGroup yet) before the PodGroup comes.
	require.Eventually(t, func() bool { return snapshotMetrics(t)[gated]-before[gated] >= 3 }, 20*time.Second, 100*time.Millisecond,
		"the members were never held at PreEnqueue")
	pg := &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "missed", Namespace: "default"}, Spec: v1beta1.PodGroupSpec{MinMember: 3, Queue: "default"}}
	require.NoError(t, e.c.Create(e.ctx, pg))
	opened := time.Now()

	// The sweep runs every 15 s: the gang binds within one period (and some slack), never before
	// the sweep has let its members go.
	e.waitBound("default", "missed", 3, 40*time.Second)
	t.Logf("gang bound %s after its gate opened", time.Since(opened).Round(100*time.Millisecond))
	requireDelta(t, before, snapshotMetrics(t), "t9k_scheduler_gate_sweep_released_total{}", 3)
}

// A member being deleted (evicted, still stopping on its node) is no longer a member of its gang:
// counted, it let a recreated sibling pass the gate and reach its quorum alone. That is how the
// preemption example once hung: the evicted research-sweep-worker-1 was still terminating when
// its controller recreated worker-0, which then ran and succeeded alone; the recreated worker-1
// found a gang of one member and waited forever.
func TestGangMemberBeingDeletedDoesNotCount(t *testing.T) {
	e := newGangEnv(t, 2, 8)
	e.queue("default", 0, nil)
	startScheduler(t, e.cp)
	e.gang("default", "lv", "default", 2, 2, 4, nil)
	e.waitBound("default", "lv", 2, 30*time.Second)
	e.waitCondition("default", "lv", v1beta1.PodGroupConditionSufficientMember, v1beta1.ReasonSufficientMemberPods)

	// Both are evicted; lv-1 stays, terminating, while a finalizer holds it (its node still
	// stopping it); lv-0 goes at once and its controller recreates it.
	const hold = "test.tensorstack.dev/still-stopping"
	_, err := e.kc.CoreV1().Pods("default").Patch(e.ctx, "lv-1", types.MergePatchType,
		[]byte(`{"metadata":{"finalizers":["`+hold+`"]}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	for _, name := range []string{"lv-0", "lv-1"} {
		require.NoError(t, e.kc.CoreV1().Pods("default").Delete(e.ctx, name, *metav1.NewDeleteOptions(0)))
	}
	require.Eventually(t, func() bool {
		_, err := e.kc.CoreV1().Pods("default").Get(e.ctx, "lv-0", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 10*time.Second, 50*time.Millisecond)
	e.members("default", "lv", "default", 0, 1, 4, nil)

	// One member exists: the new lv-0 waits in the gate for its sibling.
	e.waitCondition("default", "lv", v1beta1.PodGroupConditionSufficientMember, v1beta1.ReasonInsufficientMemberPod,
		"1 of minMember 2 member pods exist")
	p, err := e.kc.CoreV1().Pods("default").Get(e.ctx, "lv-0", metav1.GetOptions{})
	require.NoError(t, err)
	require.Empty(t, p.Spec.NodeName, "the recreated lv-0 was bound while its only sibling was being deleted")

	// lv-1 goes; recreated, the gang binds whole.
	_, err = e.kc.CoreV1().Pods("default").Patch(e.ctx, "lv-1", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := e.kc.CoreV1().Pods("default").Get(e.ctx, "lv-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 10*time.Second, 50*time.Millisecond)
	e.members("default", "lv", "default", 1, 1, 4, nil)
	e.waitBound("default", "lv", 2, 30*time.Second)
}
