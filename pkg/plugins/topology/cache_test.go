package topology

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
	"github.com/tensorstack/t9k/pkg/topology"
)

const gpuRes = v1.ResourceName("nvidia.com/gpu")

var levels = []string{"network.topology.nvidia.com/block", "network.topology.nvidia.com/spine"}

func testNode(name, block, spine string, gpus int) *v1.Node {
	q := *resource.NewQuantity(int64(gpus), resource.DecimalSI)
	return &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{levels[0]: block, levels[1]: spine}},
		Status:     v1.NodeStatus{Allocatable: v1.ResourceList{gpuRes: q}},
	}
}

// pairedDevices: 8 GPUs with NVLink bridges 0-1, 2-3, 4-5, 6-7, GPUs 0-3 on NUMA 0 and 4-7 on
// NUMA 1, one NIC per pair behind the pair's PCIe switch.
func pairedDevices(node string) *devicev1beta1.NodeDevices {
	d := &devicev1beta1.NodeDevices{ObjectMeta: metav1.ObjectMeta{Name: node}}
	for i := 0; i < 8; i++ {
		sw := fmt.Sprintf("sw%d", i/2)
		g := devicev1beta1.GPU{
			Index: int32(i), UUID: fmt.Sprintf("GPU-%s-%d", node, i), NUMANode: int32(i / 4),
			PCIeSwitch: sw, PCIeRoot: fmt.Sprintf("root%d", i/4), Health: devicev1beta1.GPUHealth{Healthy: true},
			NVLink: &devicev1beta1.GPUNVLink{ActiveLinks: 12, Peers: []devicev1beta1.NVLinkPeer{{Index: int32(i ^ 1), Links: 12, Via: devicev1beta1.NVLinkViaBridge}}},
		}
		for n := 0; n < 4; n++ {
			lvl := devicev1beta1.PCIeLevelSYS
			if n == i/2 {
				lvl = devicev1beta1.PCIeLevelPIX
			}
			g.NICs = append(g.NICs, devicev1beta1.GPUNICLevel{NIC: fmt.Sprintf("mlx5_%d", n), Level: lvl})
		}
		d.Status.GPUs = append(d.Status.GPUs, g)
	}
	for n := 0; n < 4; n++ {
		d.Status.NICs = append(d.Status.NICs, devicev1beta1.NIC{Name: fmt.Sprintf("mlx5_%d", n)})
	}
	return d
}

func gpuPod(name string, uid types.UID, node string, gpus int, ann string) *v1.Pod {
	q := *resource.NewQuantity(int64(gpus), resource.DecimalSI)
	p := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: uid},
		Spec: v1.PodSpec{NodeName: node, Containers: []v1.Container{{Name: "c",
			Resources: v1.ResourceRequirements{Limits: v1.ResourceList{gpuRes: q}}}}},
	}
	if ann != "" {
		p.Annotations = map[string]string{devicev1beta1.AnnotationGPUs: ann}
	}
	return p
}

func TestReserveChoosesBridgedPairAndNearestNIC(t *testing.T) {
	c := newGPUCache(levels, gpuRes)
	c.upsertNode(testNode("n0", "b0", "s0", 8))
	c.upsertDevices(newDevicesView(pairedDevices("n0")))
	// GPU 0 is taken: a 2-GPU pod must get a whole bridged pair, not 1+2.
	c.observePod(gpuPod("busy", "busy", "n0", 1, "0:GPU-n0-0"))
	//
	// Free are 1-7; the whole bridged pairs (2,3), (4,5) and (6,7) tie on NVLink (12), PCIe (PIX)
	// and NIC (a PIX NIC each). Leftovers decide: taking (2,3) leaves GPU 1 with 4-7, where the
	// two pairs on one root complex are PHB to each other; taking (4,5) or (6,7) leaves 1-3 split
	// from the remaining pair across NUMA nodes (SYS). So (2,3), with mlx5_1 on its switch.
	a, err := c.reserve(gpuPod("p", "p", "", 2, ""), "n0", 2, 1)
	require.NoError(t, err)
	require.Equal(t, "n0", a.node)
	require.Equal(t, []int{2, 3}, a.gpus, "the bridged pair that leaves the most behind")
	gpus, nics := c.describe(a)
	require.Equal(t, "2:GPU-n0-2,3:GPU-n0-3", gpus, "annotation: index:UUID of both GPUs")
	require.Equal(t, "mlx5_1", nics, "the NIC behind the pair's switch")
	free, _ := c.freeOn("n0")
	require.Equal(t, 5, free)

	// Reserving again for the same pod on the same node is idempotent.
	again, err := c.reserve(gpuPod("p", "p", "", 2, ""), "n0", 2, 1)
	require.NoError(t, err)
	require.Equal(t, a.gpus, again.gpus)
	free, _ = c.freeOn("n0")
	require.Equal(t, 5, free)

	c.forgetPod("p")
	free, _ = c.freeOn("n0")
	require.Equal(t, 7, free)
}

// When a GPU has fallen off the bus, NodeDevices lists the rest with a gap in their indices: the
// cache works on positions, but the annotation must name the GPUs by NVML index and UUID.
func TestAnnotationNamesGPUsByIndexAcrossAGap(t *testing.T) {
	c := newGPUCache(levels, gpuRes)
	c.upsertNode(testNode("n0", "b0", "s0", 7))
	d := pairedDevices("n0")
	d.Status.GPUs = append(d.Status.GPUs[:1], d.Status.GPUs[2:]...) // index 1 is gone
	c.upsertDevices(newDevicesView(d))
	// Positions 0-6 are indices 0,2,3,4,5,6,7. Whole bridged pairs: indices (2,3), (4,5), (6,7);
	// taking (2,3) leaves GPU 0 with two pairs on one root complex (the best leftovers), as in
	// TestReserveChoosesBridgedPairAndNearestNIC.
	a, err := c.reserve(gpuPod("p", "p", "", 2, ""), "n0", 2, 1)
	require.NoError(t, err)
	require.Equal(t, []int{1, 2}, a.gpus, "positions of indices 2 and 3")
	gpus, nics := c.describe(a)
	require.Equal(t, "2:GPU-n0-2,3:GPU-n0-3", gpus)
	require.Equal(t, "mlx5_1", nics)
}

// After a scheduler restart the cache is rebuilt from the pods' annotations: exactly the annotated
// GPUs are held, whatever order the informer delivers things in.
func TestRebuildFromAnnotations(t *testing.T) {
	c := newGPUCache(levels, gpuRes)
	// The pod informer may deliver a pod before its node: it is counted once the node arrives.
	c.observePod(gpuPod("early", "early", "n0", 2, "6:GPU-n0-6,7:GPU-n0-7"))
	c.upsertNode(testNode("n0", "b0", "s0", 8))
	got, ok := c.cluster.FreeGPUs("n0")
	require.True(t, ok)
	require.Equal(t, []int{0, 1, 2, 3, 4, 5}, got)
	c.upsertDevices(newDevicesView(pairedDevices("n0")))
	c.observePod(gpuPod("a", "a", "n0", 2, "2:GPU-n0-2,3:GPU-n0-3"))
	c.observePod(gpuPod("noann", "noann", "n0", 1, "")) // bound elsewhere: counts, lowest free
	got, _ = c.cluster.FreeGPUs("n0")
	require.Equal(t, []int{1, 4, 5}, got)

	// The annotation arriving later moves the unannotated pod to its real GPU.
	c.observePod(gpuPod("noann", "noann", "n0", 1, "5:GPU-n0-5"))
	got, _ = c.cluster.FreeGPUs("n0")
	require.Equal(t, []int{0, 1, 4}, got)

	// Finished pods give their GPUs back.
	done := gpuPod("a", "a", "n0", 2, "2:GPU-n0-2,3:GPU-n0-3")
	done.Status.Phase = v1.PodSucceeded
	c.observePod(done)
	got, _ = c.cluster.FreeGPUs("n0")
	require.Equal(t, []int{0, 1, 2, 3, 4}, got)
}

func TestUnhealthyGPUIsNotOffered(t *testing.T) {
	c := newGPUCache(levels, gpuRes)
	c.upsertNode(testNode("n0", "b0", "s0", 8))
	d := pairedDevices("n0")
	d.Status.GPUs[3].Health = devicev1beta1.GPUHealth{Healthy: false, Reason: "XID79"}
	c.upsertDevices(newDevicesView(d))
	got, _ := c.cluster.FreeGPUs("n0")
	require.NotContains(t, got, 3)
	require.Len(t, got, 7)
}

// The NodeDevices informer keeps a view, not the object: the view holds what the cache reads, and
// the list and view types are what a reflector needs (items extracted, resourceVersion read).
func TestDevicesViewKeepsTheDerivedTopology(t *testing.T) {
	d := pairedDevices("n0")
	d.ResourceVersion = "7"
	d.Status.GPUs[3].Health = devicev1beta1.GPUHealth{Healthy: false}
	v := newDevicesView(d)
	require.Equal(t, "n0", v.Name)
	require.Equal(t, "7", v.ResourceVersion)
	require.Equal(t, 8, v.topo.NumGPUs())
	require.Equal(t, []int{3}, v.unhealthy)
	require.Equal(t, "GPU-n0-5", v.uuids[5])
	require.Equal(t, []string{"mlx5_0", "mlx5_1", "mlx5_2", "mlx5_3"}, v.nics)

	list := &devicesViewList{ListMeta: metav1.ListMeta{ResourceVersion: "9"}, Items: []devicesView{*v}}
	items, err := meta.ExtractList(list)
	require.NoError(t, err)
	require.Len(t, items, 1)
	got, ok := items[0].(*devicesView)
	require.True(t, ok, "got %T", items[0])
	require.Equal(t, v.uuids, got.uuids)
	acc, err := meta.ListAccessor(list)
	require.NoError(t, err)
	require.Equal(t, "9", acc.GetResourceVersion())
	key, err := toolscache.MetaNamespaceKeyFunc(v.DeepCopyObject())
	require.NoError(t, err)
	require.Equal(t, "n0", key)
}

// A gang plan holds its GPUs at once: a lone pod cannot take them between the members' cycles,
// each member's reserve gets exactly its planned set, and dropping the plan frees the rest.
func TestGangPlanHoldsGPUsUntilClaimed(t *testing.T) {
	c := newGPUCache(levels, gpuRes)
	// Block b0: 2 nodes with 4 free GPUs each; block b1: 4 empty nodes. A 4×8 gang fits only in b1.
	for i := 0; i < 2; i++ {
		name := fmt.Sprintf("b0-n%d", i)
		c.upsertNode(testNode(name, "b0", "s0", 8))
		c.observePod(gpuPod("busy-"+name, types.UID("busy-"+name), name, 4, ""))
	}
	for i := 0; i < 4; i++ {
		name := fmt.Sprintf("b1-n%d", i)
		c.upsertNode(testNode(name, "b1", "s0", 8))
		c.upsertDevices(newDevicesView(pairedDevices(name)))
	}
	members := []memberReq{{uid: "m0", gpus: 8}, {uid: "m1", gpus: 8}, {uid: "m2", gpus: 8}, {uid: "m3", gpus: 8}}
	plan, err := c.planGang("ns/g", members, topology.Policy{Mode: topology.PolicyPreferred}, nil, nil, nil)
	require.NoError(t, err)
	require.Equal(t, "block=b1", plan.domain.Name)
	nodes := map[string]bool{}
	for _, m := range members {
		node, ok := c.placement("ns/g", m.uid)
		require.True(t, ok)
		nodes[node] = true
	}
	require.Len(t, nodes, 4, "one node per 8-GPU member")

	for n := range nodes {
		free, _ := c.freeOn(n)
		require.Zero(t, free, "planned GPUs are held on %s", n)
		_, err := c.reserve(gpuPod("intruder", "x", "", 1, ""), n, 1, 0)
		require.Error(t, err, "a lone pod must not take a planned GPU")
	}

	node0, _ := c.placement("ns/g", "m0")
	a, err := c.reserve(gpuPod("m0", "m0", "", 8, ""), node0, 8, 0)
	require.NoError(t, err)
	require.Equal(t, []int{0, 1, 2, 3, 4, 5, 6, 7}, a.gpus)

	c.dropPlan("ns/g")
	free, _ := c.freeOn(node0)
	require.Zero(t, free, "the member that reserved keeps its GPUs")
	for n := range nodes {
		if n != node0 {
			free, _ := c.freeOn(n)
			require.Equal(t, 8, free, "unclaimed places are released on %s", n)
		}
	}
}

func TestRequiredPolicyUnschedulableReason(t *testing.T) {
	c := newGPUCache(levels, gpuRes)
	for b := 0; b < 2; b++ {
		for i := 0; i < 2; i++ {
			c.upsertNode(testNode(fmt.Sprintf("b%d-n%d", b, i), fmt.Sprintf("b%d", b), "s0", 8))
		}
	}
	members := []memberReq{{uid: "a", gpus: 8}, {uid: "b", gpus: 8}, {uid: "c", gpus: 8}}
	_, err := c.planGang("ns/g", members, topology.Policy{Mode: topology.PolicyRequired, Level: levels[0]}, nil, nil, nil)
	var unsched *topology.UnschedulableError
	require.ErrorAs(t, err, &unsched)
	require.Contains(t, unsched.Reason, "needs 24 GPUs")
	require.Contains(t, unsched.Reason, "block")
	for _, n := range []string{"b0-n0", "b0-n1", "b1-n0", "b1-n1"} {
		free, _ := c.freeOn(n)
		require.Equal(t, 8, free, "a failed plan holds nothing")
	}

	// Preferred climbs to the spine and places it.
	_, err = c.planGang("ns/g", members, topology.Policy{Mode: topology.PolicyPreferred}, nil, nil, nil)
	require.NoError(t, err)
}

func TestExpirePlans(t *testing.T) {
	c := newGPUCache(levels, gpuRes)
	c.upsertNode(testNode("n0", "b0", "s0", 8))
	_, err := c.planGang("ns/g", []memberReq{{uid: "a", gpus: 4}, {uid: "b", gpus: 4}}, topology.Policy{}, nil, nil, nil)
	require.NoError(t, err)
	require.Empty(t, c.expirePlans(time.Hour))
	free, _ := c.freeOn("n0")
	require.Zero(t, free)
	require.Equal(t, []string{"ns/g"}, c.expirePlans(0))
	free, _ = c.freeOn("n0")
	require.Equal(t, 8, free)
}

// Plans expire one by one by their own age, whichever was dropped before (expirePlans keeps only
// the oldest plan's time between its scans).
func TestExpirePlansEachByItsAge(t *testing.T) {
	c := newGPUCache(levels, gpuRes)
	for _, n := range []string{"n0", "n1", "n2"} {
		c.upsertNode(testNode(n, "b0", "s0", 8))
	}
	plan := func(key string, uid types.UID) {
		_, err := c.planGang(key, []memberReq{{uid: uid, gpus: 8}}, topology.Policy{}, nil, nil, nil)
		require.NoError(t, err)
	}
	plan("ns/a", "a")
	time.Sleep(60 * time.Millisecond)
	plan("ns/b", "b")
	plan("ns/c", "c")
	require.Equal(t, []string{"ns/a"}, c.expirePlans(30*time.Millisecond))
	require.Empty(t, c.expirePlans(time.Hour))
	c.dropPlan("ns/b") // the oldest left goes some other way; c still expires
	time.Sleep(60 * time.Millisecond)
	require.Equal(t, []string{"ns/c"}, c.expirePlans(30*time.Millisecond))
	require.Empty(t, c.plans)
	for _, n := range []string{"n0", "n1", "n2"} {
		free, _ := c.freeOn(n)
		require.Equal(t, 8, free, n)
	}
}

// Node heartbeats do not restate the node in the cache; a change of labels or GPUs does.
func TestNodeChangedIgnoresHeartbeats(t *testing.T) {
	p := &Topology{resource: gpuRes}
	old := testNode("n0", "b0", "s0", 8)
	beat := old.DeepCopy()
	beat.ResourceVersion = "2"
	beat.Status.Conditions = []v1.NodeCondition{{Type: v1.NodeReady, Status: v1.ConditionTrue, LastHeartbeatTime: metav1.Now()}}
	require.False(t, p.nodeChanged(old, beat))

	moved := old.DeepCopy()
	moved.Labels[levels[0]] = "b1"
	require.True(t, p.nodeChanged(old, moved))

	lost := testNode("n0", "b0", "s0", 7)
	require.True(t, p.nodeChanged(old, lost))
}

// The saturated-cluster shortcut of PreFilter: the nodes whose snapshot shows the GPUs free, as a
// set while it stays within the limit, and their count.
func TestGPUCandidates(t *testing.T) {
	node := func(name string, gpus int, used ...int) fwk.NodeInfo {
		ni := framework.NewNodeInfo()
		ni.SetNode(testNode(name, "b0", "s0", gpus))
		for i, u := range used {
			p := gpuPod(fmt.Sprintf("%s-p%d", name, i), types.UID(fmt.Sprintf("%s-p%d", name, i)), name, u, "")
			p.Spec.Containers[0].Resources.Requests = p.Spec.Containers[0].Resources.Limits // the apiserver's defaulting
			ni.AddPod(p)
		}
		return ni
	}
	full := []fwk.NodeInfo{node("a", 8, 8), node("b", 8, 4, 2)}
	fit, n := gpuCandidates(full, gpuRes, 4, 10, nil)
	require.Zero(t, n)
	require.Empty(t, fit)
	fit, n = gpuCandidates(full, gpuRes, 2, 10, nil)
	require.Equal(t, 1, n)
	require.Equal(t, sets.New("b"), fit)
	more := append(full, node("c", 8), node("d", 8, 1))
	fit, n = gpuCandidates(more, gpuRes, 2, 10, nil)
	require.Equal(t, 3, n)
	require.Equal(t, sets.New("b", "c", "d"), fit)
	fit, n = gpuCandidates(more, gpuRes, 2, 2, nil) // past the limit: no set, a count above it
	require.Nil(t, fit)
	require.Equal(t, 3, n)
	fit, n = gpuCandidates(more, gpuRes, 2, 0, nil) // limit 0: whether some node has them
	require.Nil(t, fit)
	require.Equal(t, 1, n)
	_, n = gpuCandidates(nil, gpuRes, 1, 10, nil)
	require.Zero(t, n)
}

// PreFilter hands the framework only the nodes with the GPUs free when nothing else could serve a
// plain pod: not while a lower-priority pod might be preempted, not for a group's pod (queue
// preemption), not in a cluster small enough that the framework filters every node anyway, and
// not when the GPUs are free on many nodes.
func TestPreFilterNarrowsToNodesWithTheGPUs(t *testing.T) {
	snapshot := func(total, free int) []fwk.NodeInfo {
		var nodes []fwk.NodeInfo
		for i := 0; i < total; i++ {
			name := fmt.Sprintf("n%d", i)
			ni := framework.NewNodeInfo()
			ni.SetNode(testNode(name, "b0", "s0", 8))
			if i >= free {
				p := gpuPod(name+"-p", types.UID(name+"-p"), name, 8, "")
				p.Spec.Containers[0].Resources.Requests = p.Spec.Containers[0].Resources.Limits
				ni.AddPod(p)
			}
			nodes = append(nodes, ni)
		}
		return nodes
	}
	p := &Topology{groups: groupstate.New(), cache: newGPUCache(levels, gpuRes), resource: gpuRes, res: newReservations(), prios: groupstate.NewPriorities()}
	preFilter := func(pod *v1.Pod, nodes []fwk.NodeInfo) *framework.PreFilterResult {
		res, st := p.PreFilter(context.Background(), framework.NewCycleState(), pod, nodes)
		require.True(t, st.IsSuccess(), "%v", st)
		return res
	}
	pod := gpuPod("plain", "plain", "", 2, "")
	res := preFilter(pod, snapshot(120, 3))
	require.NotNil(t, res)
	require.Equal(t, sets.New("n0", "n1", "n2"), res.NodeNames)

	require.Nil(t, preFilter(pod, snapshot(99, 3)), "the framework filters every node of a small cluster")
	require.Nil(t, preFilter(pod, snapshot(120, 40)), "GPUs free on a third of the nodes")

	grouped := pod.DeepCopy()
	grouped.Labels = map[string]string{schedv1beta1.LabelQueue: "q"}
	require.Nil(t, preFilter(grouped, snapshot(120, 3)), "a queue's pod keeps every node")

	low := gpuPod("low", "low", "n5", 8, "")
	low.Spec.Priority = ptr.To[int32](-1)
	p.prios.Observe(low, false)
	require.Nil(t, preFilter(pod, snapshot(120, 3)), "a lower-priority pod might be preempted")
	never := pod.DeepCopy()
	never.Spec.PreemptionPolicy = ptr.To(v1.PreemptNever)
	require.NotNil(t, preFilter(never, snapshot(120, 3)), "a pod that never preempts")

	_, st := p.PreFilter(context.Background(), framework.NewCycleState(), pod, snapshot(120, 0))
	require.Equal(t, fwk.Unschedulable, st.Code())
	require.Equal(t, "120 Insufficient nvidia.com/gpu", st.Message())
}

// The memo answers as a fresh scan does while nodes change (the framework bumps a NodeInfo's
// generation on every change), and after the node list is rebuilt.
func TestFreeMemoFollowsChanges(t *testing.T) {
	var memo freeMemo
	var nodes []fwk.NodeInfo
	for i := 0; i < 6; i++ {
		ni := framework.NewNodeInfo()
		ni.SetNode(testNode(fmt.Sprintf("n%d", i), "b0", "s0", 8))
		nodes = append(nodes, ni)
	}
	check := func(want int) {
		t.Helper()
		for n := 1; n <= 8; n++ {
			fresh, c1 := gpuCandidates(nodes, gpuRes, n, 100, nil)
			memoed, c2 := gpuCandidates(nodes, gpuRes, n, 100, &memo)
			require.Equal(t, c1, c2, "%d GPUs", n)
			require.Equal(t, fresh, memoed, "%d GPUs", n)
		}
		_, c := gpuCandidates(nodes, gpuRes, 8, 100, &memo)
		require.Equal(t, want, c)
	}
	check(6)
	for i, ni := range nodes[:4] {
		p := gpuPod(fmt.Sprintf("p%d", i), types.UID(fmt.Sprintf("p%d", i)), ni.Node().Name, 1+i, "")
		p.Spec.Containers[0].Resources.Requests = p.Spec.Containers[0].Resources.Limits
		ni.(*framework.NodeInfo).AddPod(p)
		check(5 - i)
	}
	require.NoError(t, nodes[1].(*framework.NodeInfo).RemovePod(klog.Background(), gpuPod("p1", "p1", "n1", 2, "")))
	check(3)
	nodes = nodes[2:] // the list rebuilt: positions move
	check(2)
}

// pagingReader serves NodeDevices lists as the apiserver does: a page of at most Limit objects
// (all when 0) and a continue token, read from the options as controller-runtime's client
// turns them into a request.
type pagingReader struct {
	client.Reader
	items []devicev1beta1.NodeDevices
	asked []int64 // the limit of each request
}

func (r *pagingReader) List(_ context.Context, list client.ObjectList, opts ...client.ListOption) error {
	o := (&client.ListOptions{}).ApplyOptions(opts).AsListOptions()
	r.asked = append(r.asked, o.Limit)
	from := 0
	if o.Continue != "" {
		from, _ = strconv.Atoi(o.Continue)
	}
	to := len(r.items)
	if o.Limit > 0 && from+int(o.Limit) < to {
		to = from + int(o.Limit)
	}
	l := list.(*devicev1beta1.NodeDevicesList)
	l.Items = append([]devicev1beta1.NodeDevices(nil), r.items[from:to]...)
	l.ResourceVersion = "42"
	if to < len(r.items) {
		l.Continue = strconv.Itoa(to)
	}
	return nil
}

// The informer's list reads NodeDevices a page at a time (at 5000 nodes a single list held about
// 250 MB at once) and keeps a view of every one.
func TestListViewsReadsPages(t *testing.T) {
	r := &pagingReader{}
	for i := 0; i < 7; i++ {
		r.items = append(r.items, *pairedDevices(fmt.Sprintf("n%d", i)))
	}
	views, err := listViews(context.Background(), r, 3)
	require.NoError(t, err)
	require.Equal(t, []int64{3, 3, 3}, r.asked, "three requests of at most 3 objects")
	require.Len(t, views.Items, 7)
	require.Equal(t, "n6", views.Items[6].Name)
	require.Equal(t, "42", views.ResourceVersion)
}
