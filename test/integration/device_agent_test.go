package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/deviceplugin"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
	"github.com/tensorstack/t9k/pkg/device/publisher"
)

// TestDeviceAgent runs the device-agent's publisher in fixture mode (--simulate-nodes) against a real
// apiserver: NodeDevices and GFD labels appear for every simulated node, validated by the CRD schema;
// a restarted agent writes nothing; a pod's GPU annotation updates exactly one object.
func TestDeviceAgent(t *testing.T) {
	cp := startControlPlane(t)
	ctx := context.Background()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, devicev1.AddToScheme(s))
	c, err := client.New(cp.Config, client.Options{Scheme: s})
	require.NoError(t, err)

	const simLabel = "t9k.test/simulated"
	nodes := []struct {
		name, fixture, index string
	}{
		{"dgx-0", "dgx-h100", ""},
		{"dgx-1", "dgx-h100", ""},
		{"a100-0", "hgx-a100", ""},
		{"l40s-0", "pcie-l40s", ""},
		{"bridged-0", "pcie-a100-bridged", ""},
		{"gb-0", "gb200-nvl72", "0"},
		{"gb-1", "gb200-nvl72", "17"},
		{"gb-2", "gb200-nvl72", "18"},
		{"plain", "", ""}, // takes --fixture
	}
	for _, n := range nodes {
		lbl := map[string]string{simLabel: "true"}
		if n.fixture != "" {
			lbl[devicev1.LabelFixture] = n.fixture
		}
		if n.index != "" {
			lbl[devicev1.LabelFixtureIndex] = n.index
		}
		require.NoError(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: lbl}}))
	}
	require.NoError(t, c.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "real-gpu-node"}}))

	agent := func() *publisher.Simulator { // a fresh process: no state carried over
		return &publisher.Simulator{
			Publisher:      &publisher.Publisher{Client: c, PublishLabels: true},
			Selector:       labels.SelectorFromSet(labels.Set{simLabel: "true"}),
			DefaultFixture: "pcie-l40s",
			SysfsDir:       t.TempDir(),
			TrackInUse:     true,
		}
	}

	st, err := agent().SyncOnce(ctx)
	require.NoError(t, err)
	assert.Equal(t, publisher.Stats{Nodes: 9, Created: 9, LabelsChanged: 9}, st)

	var list devicev1.NodeDevicesList
	require.NoError(t, c.List(ctx, &list))
	require.Len(t, list.Items, 9, "one NodeDevices per simulated node, none for real-gpu-node")
	byName := map[string]devicev1.NodeDevices{}
	for _, nd := range list.Items {
		byName[nd.Name] = nd
	}
	nodeObj := func(name string) corev1.Node {
		var n corev1.Node
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: name}, &n))
		return n
	}
	want := map[string]struct {
		gpus    int32
		product string
		nics    int32
	}{
		"dgx-0": {8, "NVIDIA-H100-80GB-HBM3", 12}, "dgx-1": {8, "NVIDIA-H100-80GB-HBM3", 12},
		"a100-0": {8, "NVIDIA-A100-SXM4-80GB", 12}, "l40s-0": {8, "NVIDIA-L40S", 4}, "plain": {8, "NVIDIA-L40S", 4},
		"bridged-0": {8, "NVIDIA-A100-80GB-PCIe", 2},
		"gb-0":      {4, "NVIDIA-GB200", 4}, "gb-1": {4, "NVIDIA-GB200", 4}, "gb-2": {4, "NVIDIA-GB200", 4},
	}
	for name, w := range want {
		nd, ok := byName[name]
		require.True(t, ok, name)
		n := nodeObj(name)
		assert.Equal(t, []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: n.UID}}, nd.OwnerReferences, name)
		assert.Equal(t, w.gpus, nd.Status.GPUCount, name)
		assert.Len(t, nd.Status.GPUs, int(w.gpus), name)
		assert.Equal(t, w.nics, nd.Status.NICCount, name)
		assert.Equal(t, w.product, n.Labels[devicev1.LabelGPUProduct], name)
		assert.Equal(t, w.product, nd.Status.GPUProduct, name)
		require.Len(t, nd.Status.Conditions, 1)
		assert.Equal(t, metav1.ConditionTrue, nd.Status.Conditions[0].Status)
	}
	// The stored object is exactly what discovery produced (the CRD schema prunes nothing).
	assert.Equal(t, "PIX", string(byName["dgx-0"].Status.GPUs[0].NICs[0].Level))
	assert.Equal(t, devicev1.NVLinkPeer{Index: 1, Links: 12, Via: devicev1.NVLinkViaBridge}, byName["bridged-0"].Status.GPUs[0].NVLink.Peers[0])
	assert.NotEqual(t, byName["dgx-0"].Status.GPUs[0].UUID, byName["dgx-1"].Status.GPUs[0].UUID)
	// GB200: trays 0 and 17 share a rack's clique, tray 18 is the next rack.
	gb0, gb1, gb2 := nodeObj("gb-0"), nodeObj("gb-1"), nodeObj("gb-2")
	assert.NotEmpty(t, gb0.Labels[devicev1.LabelGPUClique])
	assert.Equal(t, gb0.Labels[devicev1.LabelGPUClique], gb1.Labels[devicev1.LabelGPUClique])
	assert.NotEqual(t, gb0.Labels[devicev1.LabelGPUClique], gb2.Labels[devicev1.LabelGPUClique])
	assert.Equal(t, "189471", gb0.Labels[devicev1.LabelGPUMemory])
	assert.Equal(t, "4", gb0.Labels[devicev1.LabelGPUCount])
	_, hasClique := nodeObj("dgx-0").Labels[devicev1.LabelGPUClique]
	assert.False(t, hasClique, "single-node NVSwitch has no multi-node clique")

	versions := func() map[string]string {
		rv := map[string]string{}
		var nds devicev1.NodeDevicesList
		require.NoError(t, c.List(ctx, &nds))
		for _, nd := range nds.Items {
			rv["nd/"+nd.Name] = nd.ResourceVersion
		}
		var ns corev1.NodeList
		require.NoError(t, c.List(ctx, &ns))
		for _, n := range ns.Items {
			rv["node/"+n.Name] = n.ResourceVersion
		}
		return rv
	}
	before := versions()

	// Restart: a new agent rediscovers the same machines and writes nothing.
	st, err = agent().SyncOnce(ctx)
	require.NoError(t, err)
	assert.Equal(t, publisher.Stats{Nodes: 9, Unchanged: 9}, st)
	assert.Equal(t, before, versions(), "restart must not update any object")

	// The scheduler's annotation on a pod bound to dgx-1 shows up in its inUse list, and only there.
	dgx1 := byName["dgx-1"].Status.GPUs
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "trainer", Annotations: map[string]string{
			devicev1.AnnotationGPUs: devicev1.FormatGPUAnnotation([]devicev1.GPURef{{Index: 2, UUID: dgx1[2].UUID}, {Index: 5, UUID: dgx1[5].UUID}}),
			devicev1.AnnotationNICs: "mlx5_4,mlx5_9",
		}},
		Spec: corev1.PodSpec{NodeName: "dgx-1", Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	require.NoError(t, c.Create(ctx, pod))
	st, err = agent().SyncOnce(ctx)
	require.NoError(t, err)
	assert.Equal(t, publisher.Stats{Nodes: 9, Updated: 1, Unchanged: 8}, st)
	var nd devicev1.NodeDevices
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "dgx-1"}, &nd))
	assert.Equal(t, []devicev1.GPUAllocation{
		{Index: 2, UUID: dgx1[2].UUID, Namespace: "default", Pod: "trainer"},
		{Index: 5, UUID: dgx1[5].UUID, Namespace: "default", Pod: "trainer"},
	}, nd.Status.InUse)

	// A real node without a driver (this machine): the single-node path publishes zero GPUs and says why.
	d := device.NewDiscoverer(device.Options{SysfsRoot: t.TempDir()})
	d.Init()
	res, err := (&publisher.Publisher{Client: c, PublishLabels: true}).Publish(ctx, "real-gpu-node", d.Discover())
	require.NoError(t, err)
	assert.True(t, res.Created)
	require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "real-gpu-node"}, &nd))
	assert.Equal(t, int32(0), nd.Status.GPUCount)
	require.Len(t, nd.Status.Conditions, 1)
	assert.Equal(t, devicev1.ReasonNVMLNotFound, nd.Status.Conditions[0].Reason)
	assert.Equal(t, devicev1.MessageNVMLNotFound, nd.Status.Conditions[0].Message)
	assert.False(t, nd.Status.Conditions[0].LastTransitionTime.IsZero())
}

// TestDeviceAgentManifests creates manifests/device-agent on the apiserver (its validation is the
// schema check) and then does the agent's work as the DaemonSet's ServiceAccount: the ClusterRole
// must allow publishing, labelling, and finding and marking the pod being admitted, and no more.
func TestDeviceAgentManifests(t *testing.T) {
	cp := startControlPlane(t)
	ctx := context.Background()
	s := runtime.NewScheme()
	require.NoError(t, clientgoscheme.AddToScheme(s))
	require.NoError(t, devicev1.AddToScheme(s))
	admin, err := client.New(cp.Config, client.Options{Scheme: s})
	require.NoError(t, err)
	require.NoError(t, admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "t9k-device-agent"}}))

	root, err := controlplane.ModuleRoot()
	require.NoError(t, err)
	decode := serializer.NewCodecFactory(s).UniversalDeserializer()
	for _, f := range []string{"serviceaccount.yaml", "clusterrole.yaml", "clusterrolebinding.yaml", "daemonset.yaml"} {
		data, err := os.ReadFile(filepath.Join(root, "manifests", "device-agent", f))
		require.NoError(t, err)
		obj, _, err := decode.Decode(data, nil, nil)
		require.NoError(t, err, f)
		require.NoError(t, admin.Create(ctx, obj.(client.Object)), f)
	}

	const node = "gpu-0"
	require.NoError(t, admin.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}}))
	m, err := fixtures.New("pcie-l40s", fixtures.Options{Seed: node})
	require.NoError(t, err)
	sys := t.TempDir()
	require.NoError(t, m.Sysfs.Write(sys))
	disc := device.NewDiscoverer(device.Options{NVML: m.NVML, SysfsRoot: sys, Fixture: "pcie-l40s"})
	disc.Init()
	defer disc.Shutdown()
	st := disc.Discover()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p",
			Annotations: map[string]string{devicev1.AnnotationGPUs: devicev1.FormatGPUAnnotation([]devicev1.GPURef{{Index: 2, UUID: st.GPUs[2].UUID}})}},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "x",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resource.MustParse("1")}}}}},
	}
	require.NoError(t, admin.Create(ctx, pod))

	cfg := rest.CopyConfig(cp.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:t9k-device-agent:t9k-device-agent"}
	sa, err := client.New(cfg, client.Options{Scheme: s})
	require.NoError(t, err)

	pods, err := publisher.ListPodsOnNode(ctx, sa, node)
	require.NoError(t, err)
	st.InUse = publisher.InUseFromPods(pods, st.GPUs)
	res, err := (&publisher.Publisher{Client: sa, PublishLabels: true}).Publish(ctx, node, st)
	require.NoError(t, err)
	assert.True(t, res.Created)
	assert.True(t, res.LabelsChanged)
	kp := &deviceplugin.KubePods{Client: sa, NodeName: node}
	a, err := kp.Candidate(ctx, "nvidia.com/gpu", 1)
	require.NoError(t, err)
	require.NotNil(t, a)
	require.NoError(t, kp.MarkAssigned(ctx, a))

	// RBAC is enforced: the agent cannot delete nodes or read secrets.
	err = sa.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node}})
	assert.True(t, apierrors.IsForbidden(err), "delete node: %v", err)
	err = sa.List(ctx, &corev1.SecretList{})
	assert.True(t, apierrors.IsForbidden(err), "list secrets: %v", err)
}
