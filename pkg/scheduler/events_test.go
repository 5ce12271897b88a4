package scheduler

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// capture records what reaches the broadcaster's recorder.
type capture struct {
	mu  sync.Mutex
	got []string
}

func (c *capture) Eventf(regarding, related runtime.Object, eventtype, reason, action, note string, args ...interface{}) {
	ref := regarding.(*v1.ObjectReference)
	rel := "-"
	if related != nil {
		rel = related.(*v1.ObjectReference).Name
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, fmt.Sprintf("%s %s/%s rel=%s %s %s %s: %s", ref.Kind, ref.Namespace, ref.Name, rel, eventtype, reason, action, fmt.Sprintf(note, args...)))
}

func (c *capture) events() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

func testPod(name string) *v1.Pod {
	return &v1.Pod{TypeMeta: metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}, ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
}

// Events reach the recorder in order, as references, with their notes formatted; past the
// queue's bound they are dropped.
func TestPacedRecorderPassesEventsInOrder(t *testing.T) {
	next := &capture{}
	r := newPacedRecorder(next, 1e6, 1e6, 3)
	for i := range 5 {
		r.Eventf(testPod(fmt.Sprintf("p%d", i)), nil, v1.EventTypeWarning, "FailedScheduling", "Scheduling", "attempt %d: %s", i, "no room")
	}
	r.Eventf(testPod("q"), testPod("rel"), v1.EventTypeNormal, "Scheduled", "Binding", "bound")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)
	want := []string{
		"Pod ns/p0 rel=- Warning FailedScheduling Scheduling: attempt 0: no room",
		"Pod ns/p1 rel=- Warning FailedScheduling Scheduling: attempt 1: no room",
		"Pod ns/p2 rel=- Warning FailedScheduling Scheduling: attempt 2: no room",
	}
	require.Eventually(t, func() bool { return len(next.events()) == 3 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, want, next.events(), "events past the queue's bound of 3 were kept")

	r.Eventf(testPod("q"), testPod("rel"), v1.EventTypeNormal, "Scheduled", "Binding", "bound %d%%", 100)
	require.Eventually(t, func() bool { return len(next.events()) == 4 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "Pod ns/q rel=rel Normal Scheduled Binding: bound 100%", next.events()[3])
}

// Past its burst the recorder passes events on only at its rate: at one per 1000 s, a burst of
// 2 lets 2 of 5 through.
func TestPacedRecorderHoldsEventsPastItsBurst(t *testing.T) {
	next := &capture{}
	r := newPacedRecorder(next, 0.001, 2, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)
	for i := range 5 {
		r.Eventf(testPod(fmt.Sprintf("p%d", i)), nil, v1.EventTypeWarning, "FailedScheduling", "Scheduling", "x")
	}
	require.Eventually(t, func() bool { return len(next.events()) == 2 }, 10*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool { return len(next.events()) > 2 }, 300*time.Millisecond, 10*time.Millisecond)
}
