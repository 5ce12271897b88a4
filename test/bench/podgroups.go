package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
)

// PodGroupWrites is how often a scheduler wrote the PodGroups of a run. Nothing else updates them
// here: the harness only creates and deletes PodGroups and no controller runs, so every update
// (a MODIFIED watch event) is the scheduler's (t9k-scheduler applies its PodGroup conditions;
// Coscheduling leaves status to scheduler-plugins' controller, so it writes none).
type PodGroupWrites struct {
	// Groups is how many PodGroups existed during the run; Updates the MODIFIED events seen.
	Groups  int `json:"groups"`
	Updates int `json:"updates"`
	// GangMinutes is the sum over PodGroups of the minutes each existed during the run (from its
	// ADDED event, or the start, to its DELETED event, or the end). For a burst workload that is
	// Groups × the run's minutes.
	GangMinutes float64 `json:"gangMinutes"`
	// PerGangMinute is Updates / GangMinutes.
	PerGangMinute float64 `json:"perGangMinute"`
}

// podGroupWatch counts PodGroup events of one namespace through an informer (which re-lists and
// re-watches if the watch breaks; a re-list may fold several updates into one, so Updates is a
// lower bound then).
type podGroupWatch struct {
	mu      sync.Mutex
	added   map[string]time.Time // live PodGroups: when they appeared
	live    float64              // seconds of PodGroups already deleted
	groups  int
	updates int
	stop    context.CancelFunc
	done    chan struct{}
}

func (h *harness) watchPodGroups(ctx context.Context, ns, gang string) (*podGroupWatch, error) {
	w := &podGroupWatch{added: map[string]time.Time{}, done: make(chan struct{})}
	ctx, w.stop = context.WithCancel(ctx)
	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(h.dyn, 0, ns, nil)
	inf := factory.ForResource(podGroupGVR(gang)).Informer()
	name := func(obj any) string {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if u, ok := obj.(*unstructured.Unstructured); ok {
			return u.GetName()
		}
		return ""
	}
	if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			w.mu.Lock()
			w.added[name(obj)] = time.Now()
			w.groups++
			w.mu.Unlock()
		},
		UpdateFunc: func(old, obj any) {
			if old.(*unstructured.Unstructured).GetResourceVersion() == obj.(*unstructured.Unstructured).GetResourceVersion() {
				return // a resync, not a write (none with resync 0, but cheap to be sure)
			}
			w.mu.Lock()
			w.updates++
			w.mu.Unlock()
		},
		DeleteFunc: func(obj any) {
			w.mu.Lock()
			if t, ok := w.added[name(obj)]; ok {
				w.live += time.Since(t).Seconds()
				delete(w.added, name(obj))
			}
			w.mu.Unlock()
		},
	}); err != nil {
		w.stop()
		return nil, err
	}
	go func() { defer close(w.done); inf.Run(ctx.Done()) }()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		w.stop()
		<-w.done
		return nil, ctx.Err()
	}
	return w, nil
}

// String is the log's summary, "" when the run had no PodGroup.
func (p *PodGroupWrites) String() string {
	if p == nil || p.Groups == 0 {
		return ""
	}
	return fmt.Sprintf("; %d PodGroup updates over %.1f gang-minutes (%d groups): %.1f per gang-minute", p.Updates, p.GangMinutes, p.Groups, p.PerGangMinute)
}

// finish stops the watch and returns its counts.
func (w *podGroupWatch) finish() *PodGroupWrites {
	w.stop()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	seconds := w.live
	for _, t := range w.added {
		seconds += now.Sub(t).Seconds()
	}
	out := &PodGroupWrites{Groups: w.groups, Updates: w.updates, GangMinutes: seconds / 60}
	if out.GangMinutes > 0 {
		out.PerGangMinute = float64(out.Updates) / out.GangMinutes
	}
	return out
}
