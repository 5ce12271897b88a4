package scheduler

import (
	"context"
	"fmt"

	"golang.org/x/time/rate"
	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/reference"
	"k8s.io/klog/v2"
	kubescheduler "k8s.io/kubernetes/pkg/scheduler"
	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// The scheduler's own events (Scheduled, FailedScheduling) reach client-go's broadcaster at most
// eventsPerSecond, with bursts of eventsBurst; the rest wait, in order, in a queue of at most
// eventsQueued compact entries (past that they are dropped, as the broadcaster drops events when
// its own queue is full).
//
// Why: the broadcaster starts a goroutine per event and writes each to the apiserver at once. When
// thousands of pods fail or bind within a second (a stream's top-up at 5000 nodes, a gang
// backlog) that is thousands of concurrent POSTs: past kube-apiserver's 100 streams per HTTP/2
// connection the client dials a TLS connection for each overflow, and every goroutine holds its
// event and its request. In a 5000-node stream that was the largest part of t9k's peak heap
// (README "Memory"). kube-scheduler meets the same code at the pace it fails pods, one every
// 10–20 ms at that size; t9k fails a gang's siblings and a full cluster's new pods much faster.
// An event is stamped when it leaves the queue, so in a burst its time lags the attempt (the
// pod's PodScheduled condition carries the attempt's message and time).
//
// The burst is small because events compete with binds for the apiserver: in a 500-node gang
// backlog (347 pods bound in ~0.3 s) a burst of 200 Scheduled events made the last bind come
// ~20% later than a burst of 10 (5 runs each: median 0.355 s vs 0.253 s). A bind is what the
// workload waits for; its event can follow at 200/s.
const (
	eventsPerSecond = 200
	eventsBurst     = 10
	eventsQueued    = 10000
)

type pacedEvent struct {
	regarding, related              *v1.ObjectReference
	eventtype, reason, action, note string
}

// pacedRecorder is an events.EventRecorder that passes events on to next at the pace above.
type pacedRecorder struct {
	next    events.EventRecorder
	limiter *rate.Limiter
	queue   chan pacedEvent
}

func newPacedRecorder(next events.EventRecorder, perSecond float64, burst, queued int) *pacedRecorder {
	return &pacedRecorder{next: next, limiter: rate.NewLimiter(rate.Limit(perSecond), burst), queue: make(chan pacedEvent, queued)}
}

// Eventf queues the event with references in place of the objects (the queue holds no pod).
func (r *pacedRecorder) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...interface{}) {
	ref, err := reference.GetReference(scheme.Scheme, regarding)
	if err != nil {
		r.next.Eventf(regarding, related, eventtype, reason, action, note, args...) // it reports the error
		return
	}
	e := pacedEvent{regarding: ref, eventtype: eventtype, reason: reason, action: action, note: fmt.Sprintf(note, args...)}
	if related != nil {
		e.related, _ = reference.GetReference(scheme.Scheme, related) // nil when it has none, as upstream
	}
	select {
	case r.queue <- e:
	default:
		klog.V(3).InfoS("Dropped an event: the scheduler's event queue is full", "object", klog.KRef(ref.Namespace, ref.Name), "reason", reason)
	}
}

// run passes the queued events on until ctx ends.
func (r *pacedRecorder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-r.queue:
			if err := r.limiter.Wait(ctx); err != nil {
				return
			}
			var related runtime.Object // a nil *ObjectReference in the interface would not be nil
			if e.related != nil {
				related = e.related
			}
			r.next.Eventf(e.regarding, related, e.eventtype, e.reason, e.action, "%s", e.note)
		}
	}
}

// pacedProfile is a profile whose EventRecorder is paced; every other method is the profile's.
// The scheduler records Scheduled and FailedScheduling through its profiles' EventRecorder;
// plugins record through their own handle, unchanged.
type pacedProfile struct {
	framework.Framework
	rec *pacedRecorder
}

func (p pacedProfile) EventRecorder() events.EventRecorder { return p.rec }

// paceEvents gives each of sched's profiles a paced EventRecorder, running until ctx ends.
func paceEvents(ctx context.Context, sched *kubescheduler.Scheduler) {
	for name, prof := range sched.Profiles {
		rec := newPacedRecorder(prof.EventRecorder(), eventsPerSecond, eventsBurst, eventsQueued)
		go rec.run(ctx)
		sched.Profiles[name] = pacedProfile{Framework: prof, rec: rec}
	}
}
