package integration

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/controllers"
	"github.com/tensorstack/t9k/pkg/device/publisher"
)

// A node deleted and registered again under the same name gets a new UID; the device-agent's
// NodeDevices follow it (their owner reference names the new node), on the real apiserver.
func TestPublisherAdoptsRecreatedNode(t *testing.T) {
	ctx := context.Background()
	cp := startControlPlane(t)
	c, err := client.New(cp.Config, client.Options{Scheme: controllers.Scheme()})
	require.NoError(t, err)
	p := &publisher.Publisher{Client: c}
	st := devicev1.NodeDevicesStatus{GPUCount: 1, GPUs: []devicev1.GPU{{Index: 0, UUID: "GPU-a", Health: devicev1.GPUHealth{Healthy: true}}}}

	owner := func() []metav1.OwnerReference {
		var nd devicev1.NodeDevices
		require.NoError(t, c.Get(ctx, client.ObjectKey{Name: "n1"}, &nd))
		return nd.OwnerReferences
	}
	first := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	require.NoError(t, c.Create(ctx, first))
	_, err = p.Publish(ctx, "n1", st)
	require.NoError(t, err)
	require.Equal(t, []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n1", UID: first.UID}}, owner())

	// No garbage collector runs here, so the NodeDevices outlive the first node.
	require.NoError(t, c.Delete(ctx, first))
	second := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}
	require.NoError(t, c.Create(ctx, second))
	require.NotEqual(t, first.UID, second.UID)
	res, err := p.Publish(ctx, "n1", st)
	require.NoError(t, err)
	require.True(t, res.Updated, "the owner changed, so the object was written")
	require.Equal(t, []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "n1", UID: second.UID}}, owner())
}
