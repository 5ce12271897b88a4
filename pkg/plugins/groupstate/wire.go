package groupstate

import (
	"context"
	"fmt"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	crcache "sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

var (
	crLogOnce sync.Once
	regMu     sync.Mutex
	states    = map[framework.Handle]*State{}
)

// For returns the State of the scheduler profile behind h, creating and starting it on the first
// call: the gang and queue plugins of one profile share one. It lives until ctx (the scheduler's)
// ends.
func For(ctx context.Context, h framework.Handle) (*State, error) {
	regMu.Lock()
	defer regMu.Unlock()
	if s, ok := states[h]; ok {
		return s, nil
	}
	s := New()
	s.activate = func(pods map[string]*v1.Pod) { h.Activate(klog.Background(), pods) }
	logger := klog.FromContext(ctx).WithName("groupstate")
	// controller-runtime's cache logs through its own logger; route it to klog like the rest.
	crLogOnce.Do(func() { crlog.SetLogger(klog.NewKlogr()) })

	pods := h.SharedInformerFactory().Core().V1().Pods()
	s.podLister = pods.Lister()
	reg, err := pods.Informer().AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { s.onPod(o, false) },
		UpdateFunc: func(_, o any) { s.onPod(o, false) },
		DeleteFunc: func(o any) { s.onPod(o, true) },
	})
	if err != nil {
		return nil, err
	}
	s.podsSynced = reg.HasSynced

	scheme := runtime.NewScheme()
	if err := v1beta1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := crcache.New(h.KubeConfig(), crcache.Options{Scheme: scheme,
		// managedFields are never read here, and are most of a small object's size.
		DefaultTransform: crcache.TransformStripManagedFields()})
	if err != nil {
		return nil, fmt.Errorf("PodGroup/Queue cache: %w", err)
	}
	for _, obj := range []client.Object{&v1beta1.PodGroup{}, &v1beta1.Queue{}} {
		inf, err := c.GetInformer(ctx, obj)
		if err != nil {
			return nil, err
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    func(o any) { s.onAPIObject(o, false) },
			UpdateFunc: func(_, o any) { s.onAPIObject(o, false) },
			DeleteFunc: func(o any) { s.onAPIObject(o, true) },
		}); err != nil {
			return nil, err
		}
	}
	go func() {
		if err := c.Start(ctx); err != nil {
			logger.Error(err, "PodGroup/Queue cache stopped")
		}
	}()
	syncCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if !c.WaitForCacheSync(syncCtx) {
		return nil, fmt.Errorf("PodGroup/Queue cache did not sync within a minute (are the scheduler.tensorstack.dev CRDs installed?)")
	}

	dyn, err := dynamic.NewForConfig(h.KubeConfig())
	if err != nil {
		return nil, err
	}
	s.status = &statusWriter{
		dyn:      dyn,
		recorder: h.EventRecorder(),
		queue:    workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[GroupKey]()),
	}
	go s.runStatusWriter(ctx)
	go wait.UntilWithContext(ctx, func(context.Context) { s.ReleaseHeld() }, heldSweep)
	unregister := registerMetrics(s)

	states[h] = s
	go func() {
		<-ctx.Done()
		unregister()
		regMu.Lock()
		delete(states, h)
		regMu.Unlock()
	}()
	return s, nil
}

// heldSweep is how often members held at PreEnqueue are checked for an open gate (ReleaseHeld):
// a backstop, cheap (only held groups are looked at).
const heldSweep = 15 * time.Second

func (s *State) onPod(o any, deleted bool) {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o, deleted = t.Obj, true
	}
	p, ok := o.(*v1.Pod)
	if !ok {
		return
	}
	if deleted {
		s.DeletePod(p)
	} else {
		s.UpsertPod(p)
	}
}

func (s *State) onAPIObject(o any, deleted bool) {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		o, deleted = t.Obj, true
	}
	switch obj := o.(type) {
	case *v1beta1.PodGroup:
		if deleted {
			s.DeletePodGroup(obj)
		} else {
			s.UpsertPodGroup(obj)
		}
	case *v1beta1.Queue:
		if deleted {
			s.DeleteQueue(obj)
		} else {
			s.UpsertQueue(obj)
		}
	}
}
