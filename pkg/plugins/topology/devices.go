package topology

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device/topospec"
	"github.com/tensorstack/t9k/pkg/topology"
)

// devicesView is what the scheduler keeps of a node's NodeDevices: the GPU interconnect derived
// from it. A NodeDevices object is about 12 KiB for 8 GPUs, most of it never read here; the
// informer (newDevicesInformer) turns each one into its view as it is decoded, a page of a list
// or one watch event at a time, so neither its store nor a full list ever holds the objects of
// every node. ObjectMeta keeps only the name and resourceVersion, for the informer.
type devicesView struct {
	metav1.ObjectMeta
	topo *topology.GPUTopology // nil when the NodeDevices don't describe the GPUs
	// index and uuids map a topology position to the device's NVML index and UUID (NodeDevices
	// lists GPUs by index, with gaps when a GPU fell off the bus).
	index     []int
	uuids     []string
	nics      []string // by NIC position, as the topology numbers them
	unhealthy []int    // topology positions of GPUs NVML reports unhealthy
}

// GetObjectKind and DeepCopyObject make the view a runtime.Object for the informer. A view is
// never changed once made, so a copy may share its slices and topology.
func (v *devicesView) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (v *devicesView) DeepCopyObject() runtime.Object {
	c := *v
	c.ObjectMeta = *v.ObjectMeta.DeepCopy()
	return &c
}

// devicesViewList is a list of views, as the informer's ListFunc returns it.
type devicesViewList struct {
	metav1.ListMeta
	Items []devicesView
}

func (l *devicesViewList) GetObjectKind() schema.ObjectKind { return schema.EmptyObjectKind }
func (l *devicesViewList) DeepCopyObject() runtime.Object {
	c := &devicesViewList{ListMeta: *l.ListMeta.DeepCopy(), Items: make([]devicesView, len(l.Items))}
	for i := range l.Items {
		c.Items[i] = *l.Items[i].DeepCopyObject().(*devicesView)
	}
	return c
}

// newDevicesView derives the view of one NodeDevices.
func newDevicesView(d *devicev1beta1.NodeDevices) *devicesView {
	v := &devicesView{ObjectMeta: metav1.ObjectMeta{Name: d.Name, ResourceVersion: d.ResourceVersion}}
	spec := topospec.FromInventory(d.Status.GPUs, d.Status.NICs)
	if len(spec.GPUs) == 0 {
		return v
	}
	t, err := topology.NewGPUTopology(spec)
	if err != nil {
		return v
	}
	v.topo = topology.Share(t) // nodes of one model share it, and its Score memo
	for pos, g := range d.Status.GPUs {
		v.index = append(v.index, int(g.Index))
		v.uuids = append(v.uuids, g.UUID)
		if !g.Health.Healthy {
			v.unhealthy = append(v.unhealthy, pos)
		}
	}
	for _, n := range spec.NICs {
		v.nics = append(v.nics, n.Name)
	}
	return v
}

// devicesPage is how many NodeDevices one list request reads.
const devicesPage = 500

// newDevicesInformer is an informer of NodeDevices that stores and delivers devicesViews. Lists
// are read in pages (a consistent read: the apiserver serves an unpaginated list from its cache
// when asked at resourceVersion 0), each page turned into views before the next is read.
func newDevicesInformer(cfg *rest.Config) (toolscache.SharedIndexInformer, error) {
	scheme := runtime.NewScheme()
	if err := devicev1beta1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("NodeDevices client: %w", err)
	}
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, _ metav1.ListOptions) (runtime.Object, error) {
			return listViews(ctx, c, devicesPage)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			w, err := c.Watch(ctx, &devicev1beta1.NodeDevicesList{}, &client.ListOptions{Raw: &opts})
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
				if d, ok := e.Object.(*devicev1beta1.NodeDevices); ok {
					e.Object = newDevicesView(d) // a bookmark too: it carries the resourceVersion
				}
				return e, true
			}), nil
		},
	}
	return toolscache.NewSharedIndexInformer(lw, &devicesView{}, 0, toolscache.Indexers{}), nil
}

// listViews lists every NodeDevices in pages of pageSize, turning each page into views before the
// next is read.
func listViews(ctx context.Context, c client.Reader, pageSize int64) (*devicesViewList, error) {
	out := &devicesViewList{}
	// Limit and Continue as ListOptions fields: controller-runtime writes those over a Raw
	// ListOptions' own (as 0 and ""), so a Raw limit would read every object at once.
	page := &client.ListOptions{Limit: pageSize}
	for {
		l := &devicev1beta1.NodeDevicesList{}
		if err := c.List(ctx, l, page); err != nil {
			return nil, err
		}
		for i := range l.Items {
			out.Items = append(out.Items, *newDevicesView(&l.Items[i]))
		}
		out.ResourceVersion = l.ResourceVersion
		if l.Continue == "" {
			return out, nil
		}
		page = &client.ListOptions{Limit: pageSize, Continue: l.Continue}
	}
}
