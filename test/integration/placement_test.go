package integration

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// A gang's plan is checked with the profile's own filters before it is offered (issue 32): a
// member a filter refuses on its planned node makes the gang be planned around that node, instead
// of a plan that fails, is dropped and is made again, attempt after attempt. Each case places a
// 4 × 4-GPU gang on 4 nodes of 8 GPUs, where the planner alone would pack two members per node.
func TestGangPlanPassesTheProfilesFilters(t *testing.T) {
	member := func(p *corev1.Pod) { p.Labels["app"] = "gang" }
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "gang"}}
	cases := []struct {
		name string
		edit func(*corev1.Pod)
	}{
		{"hostPort", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9000, HostPort: 9000}}
		}},
		{"hostNetwork", func(p *corev1.Pod) {
			// The apiserver defaults the host port to the container port.
			p.Spec.HostNetwork = true
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9000}}
		}},
		{"topologySpread", func(p *corev1.Pod) {
			member(p)
			p.Spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{{MaxSkew: 1, TopologyKey: corev1.LabelHostname,
				WhenUnsatisfiable: corev1.DoNotSchedule, LabelSelector: sel}}
		}},
		{"podAntiAffinity", func(p *corev1.Pod) {
			member(p)
			p.Spec.Affinity = &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{LabelSelector: sel, TopologyKey: corev1.LabelHostname}}}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newGangEnv(t, 4, 8)
			e.queue("default", 0, nil)
			startScheduler(t, e.cp)
			before := snapshotMetrics(t)
			pg := &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "g", Namespace: "default"}, Spec: v1beta1.PodGroupSpec{MinMember: 4, Queue: "default"}}
			require.NoError(t, e.c.Create(e.ctx, pg))
			start := time.Now()
			e.members("default", "g", "default", 0, 4, 4, tc.edit)
			e.waitBound("default", "g", 4, 20*time.Second)
			_, nodes := e.bound("default", "g")
			slices.Sort(nodes)
			require.Equal(t, []string{"node-0", "node-1", "node-2", "node-3"}, nodes, "one member per node")
			after := snapshotMetrics(t)
			attempts := attemptsSince(before, after)
			t.Logf("bound on %v %s after creation, in %.0f scheduling attempts; plan refusals: %v", nodes,
				time.Since(start).Round(10*time.Millisecond), attempts, after.seriesOf("t9k_scheduler_plan_refusals_total"))
			require.LessOrEqual(t, attempts, 24.0, "scheduling attempts for a gang of 4")
			require.Positive(t, after.sum("t9k_scheduler_plan_refusals_total")-before.sum("t9k_scheduler_plan_refusals_total"),
				"the planner's first plan packs two members per node: the filters must have refused it")
		})
	}
}

// A filter that refuses a node for the member itself (not because of its siblings) rules the node
// out at once: a gang whose shared volume is bound in one zone lands in that zone, and a gang
// that does not tolerate a taint lands on the nodes without it.
func TestGangPlanAvoidsNodesAFilterRefuses(t *testing.T) {
	t.Run("volumeZone", func(t *testing.T) {
		e := newGangEnv(t, 4, 8)
		e.queue("default", 0, nil)
		for i := range 4 {
			zone := "a"
			if i >= 2 {
				zone = "b"
			}
			e.labelNode(fmt.Sprintf("node-%d", i), corev1.LabelTopologyZone, zone)
		}
		e.boundVolume("default", "data", "b")
		startScheduler(t, e.cp)
		before := snapshotMetrics(t)
		pg := &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "vz", Namespace: "default"}, Spec: v1beta1.PodGroupSpec{MinMember: 2, Queue: "default"}}
		require.NoError(t, e.c.Create(e.ctx, pg))
		e.members("default", "vz", "default", 0, 2, 8, func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}}}
		})
		e.waitBound("default", "vz", 2, 20*time.Second)
		_, nodes := e.bound("default", "vz")
		slices.Sort(nodes)
		require.Equal(t, []string{"node-2", "node-3"}, nodes, "the members must run in the volume's zone")
		after := snapshotMetrics(t)
		require.LessOrEqual(t, attemptsSince(before, after), 12.0)
	})
	t.Run("taint", func(t *testing.T) {
		e := newGangEnv(t, 4, 8)
		e.queue("default", 0, nil)
		for _, n := range []string{"node-0", "node-1"} {
			node, err := e.kc.CoreV1().Nodes().Get(e.ctx, n, metav1.GetOptions{})
			require.NoError(t, err)
			node.Spec.Taints = append(node.Spec.Taints, corev1.Taint{Key: "maintenance", Effect: corev1.TaintEffectNoSchedule})
			_, err = e.kc.CoreV1().Nodes().Update(e.ctx, node, metav1.UpdateOptions{})
			require.NoError(t, err)
		}
		startScheduler(t, e.cp)
		before := snapshotMetrics(t)
		e.gang("default", "tt", "default", 2, 2, 8, nil)
		e.waitBound("default", "tt", 2, 20*time.Second)
		_, nodes := e.bound("default", "tt")
		slices.Sort(nodes)
		require.Equal(t, []string{"node-2", "node-3"}, nodes)
		require.LessOrEqual(t, attemptsSince(before, snapshotMetrics(t)), 12.0)
	})
}

// A gang whose members no placement can satisfy (each needs host port 9000, two of three nodes
// have it free, the gang needs three) fails its attempt once with the filter's own reason, and is
// not retried in a loop while nothing changes: a GPU gang (T9kTopology's planner proposes) and a
// CPU-only one (groupstate's fitter proposes, the framework places each member).
func TestGangRefusedByFiltersFailsWithTheirReason(t *testing.T) {
	for _, gpus := range []int64{1, 0} {
		t.Run(fmt.Sprintf("%d GPUs per member", gpus), func(t *testing.T) {
			e := newGangEnv(t, 3, 8)
			e.queue("default", 0, nil)
			p := gangPod("default", "porter", "", "", 0)
			delete(p.Labels, v1beta1.LabelQueue)
			p.Spec.NodeName = "node-0"
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9000, HostPort: 9000}}
			_, err := e.kc.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{})
			require.NoError(t, err)
			startScheduler(t, e.cp)
			before := snapshotMetrics(t)
			pg := &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: "ported", Namespace: "default"}, Spec: v1beta1.PodGroupSpec{MinMember: 3, Queue: "default"}}
			require.NoError(t, e.c.Create(e.ctx, pg))
			e.members("default", "ported", "default", 0, 3, gpus, func(p *corev1.Pod) {
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 9000, HostPort: 9000}}
			})
			c := e.waitCondition("default", "ported", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonUnschedulable, "NodePorts", "free ports")
			t.Logf("GroupScheduled: %s", c.Message)
			mid := snapshotMetrics(t)
			time.Sleep(10 * time.Second)
			after := snapshotMetrics(t)
			n := attemptsSince(mid, after)
			t.Logf("attempts: %.0f until the reason was written, %.0f in the 10 s after", attemptsSince(before, mid), n)
			require.LessOrEqual(t, n, 4.0, "a gang no placement can satisfy was retried while nothing changed")
			b, _ := e.bound("default", "ported")
			require.Zero(t, b)
		})
	}
}

// attemptsSince counts t9k-scheduler's scheduling attempts (any result) between two snapshots.
func attemptsSince(before, after metrics) float64 {
	return after.sum(`scheduler_schedule_attempts_total{profile="t9k-scheduler"`) - before.sum(`scheduler_schedule_attempts_total{profile="t9k-scheduler"`)
}

// labelNode sets one label on a node.
func (e *gangEnv) labelNode(name, key, value string) {
	e.t.Helper()
	node, err := e.kc.CoreV1().Nodes().Get(e.ctx, name, metav1.GetOptions{})
	require.NoError(e.t, err)
	node.Labels[key] = value
	_, err = e.kc.CoreV1().Nodes().Update(e.ctx, node, metav1.UpdateOptions{})
	require.NoError(e.t, err)
}

// boundVolume makes PVC ns/name bound to a PV that can only be used in one zone, as the PV
// controller (not running here) would leave them.
func (e *gangEnv) boundVolume(ns, name, zone string) {
	e.t.Helper()
	size := resource.MustParse("1Gi")
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: ns + "-" + name, Labels: map[string]string{corev1.LabelTopologyZone: zone}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/data"}},
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: ns, Name: name},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
				MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelTopologyZone, Operator: corev1.NodeSelectorOpIn, Values: []string{zone}}}}}}},
		},
	}
	pv, err := e.kc.CoreV1().PersistentVolumes().Create(e.ctx, pv, metav1.CreateOptions{})
	require.NoError(e.t, err)
	pv.Status.Phase = corev1.VolumeBound
	_, err = e.kc.CoreV1().PersistentVolumes().UpdateStatus(e.ctx, pv, metav1.UpdateOptions{})
	require.NoError(e.t, err)
	empty := ""
	pvc := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Annotations: map[string]string{"pv.kubernetes.io/bind-completed": "yes"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: size}},
			VolumeName:       pv.Name,
			StorageClassName: &empty,
		},
	}
	pvc, err = e.kc.CoreV1().PersistentVolumeClaims(ns).Create(e.ctx, pvc, metav1.CreateOptions{})
	require.NoError(e.t, err)
	pvc.Status.Phase = corev1.ClaimBound
	pvc.Status.AccessModes = pvc.Spec.AccessModes
	pvc.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: size}
	_, err = e.kc.CoreV1().PersistentVolumeClaims(ns).UpdateStatus(e.ctx, pvc, metav1.UpdateOptions{})
	require.NoError(e.t, err)
}

// Issue 32, findings 2 and 4: a gang that failed on its queue's nodeSelector binds as soon as the
// selector is fixed. The failed whole-gang fit was cached on the nodes alone (not the queue's
// spec), and T9kGang, whose fit applies the selector, did not register Queue events: in an idle
// cluster the gang waited for the periodic flush, and then failed again from the cache.
func TestGangBindsWhenItsQueueSelectorIsFixed(t *testing.T) {
	e := newGangEnv(t, 2, 8)
	for i := range 2 {
		e.labelNode(fmt.Sprintf("node-%d", i), "pool", "b")
	}
	e.queue("default", 0, func(q *v1beta1.QueueSpec) {
		q.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "a"}}
	})
	startScheduler(t, e.cp)
	e.gang("default", "cpu", "default", 2, 2, 0, nil)
	e.waitCondition("default", "cpu", v1beta1.PodGroupConditionScheduled, v1beta1.ReasonUnschedulable, "nodeSelector")
	time.Sleep(2 * time.Second) // the members settle among the unschedulable pods

	var q v1beta1.Queue
	require.NoError(t, e.c.Get(e.ctx, types.NamespacedName{Namespace: "t9k-system", Name: "default"}, &q))
	q.Spec.NodeSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "b"}}
	require.NoError(t, e.c.Update(e.ctx, &q))
	fixed := time.Now()
	e.waitBound("default", "cpu", 2, 10*time.Second)
	t.Logf("bound %s after the queue's nodeSelector was fixed", time.Since(fixed).Round(10*time.Millisecond))
}

// Issue 32, finding 7: a member beyond the quorum (an elastic job growing) joins its running
// siblings' domain when it has room, rather than the best-fitting node elsewhere.
func TestGangMemberBeyondQuorumJoinsItsSiblingsDomain(t *testing.T) {
	const block = "network.topology.nvidia.com/block"
	e := newGangEnv(t, 4, 8)
	e.queue("default", 0, nil)
	for i, b := range []string{"b0", "b0", "b1", "b1"} {
		e.labelNode(fmt.Sprintf("node-%d", i), block, b)
	}
	// node-2 has 4 GPUs free (the best fit for a 4-GPU pod anywhere), node-3 none.
	for node, gpus := range map[string]int64{"node-2": 4, "node-3": 8} {
		p := gangPod("default", "holder-"+node, "", "", gpus)
		delete(p.Labels, v1beta1.LabelQueue)
		p.Spec.NodeName = node
		_, err := e.kc.CoreV1().Pods("default").Create(e.ctx, p, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	startScheduler(t, e.cp)
	e.gang("default", "el", "default", 2, 2, 4, func(pg *v1beta1.PodGroup) {
		pg.Spec.TopologyPolicy = &v1beta1.TopologyPolicy{Mode: v1beta1.TopologyPreferred}
	})
	e.waitBound("default", "el", 2, 20*time.Second)
	_, first := e.bound("default", "el")
	require.Equal(t, first[0], first[1], "the quorum fits on one node")
	e.members("default", "el", "default", 2, 1, 4, nil)
	e.waitBound("default", "el", 3, 20*time.Second)
	p, err := e.kc.CoreV1().Pods("default").Get(e.ctx, "el-2", metav1.GetOptions{})
	require.NoError(t, err)
	t.Logf("quorum on %s, the third member on %s", first[0], p.Spec.NodeName)
	require.Contains(t, []string{"node-0", "node-1"}, p.Spec.NodeName, "the third member must join its siblings' block b0")
}
