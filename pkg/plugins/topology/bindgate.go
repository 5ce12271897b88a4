package topology

import (
	"context"
	"sync"
)

// bindGate bounds what T9kTopology's Bind lets through to the apiserver, and what may queue up
// behind it.
//
// slots bounds the Binding requests in flight. A gang's members are let through Permit together,
// so hundreds of binds can start at once; kube-apiserver takes 100 streams per HTTP/2 connection,
// and past that the client dials more connections (a TLS handshake each, dropped again when
// idle). In a 5000-node gang backlog, with PodGroup events already cut (groupstate's
// conditionEvent), this bound took the scheduler from 52 sockets and 2275 goroutines at its peak
// to 3 and 1467, and peak RSS from 292 to 277 MiB.
//
// Behind the slots, pods past Permit wait for one. The scheduling loop places gangs faster than
// the apiserver binds them, and every pod between Reserve and the end of its bind holds its
// cycle state, its copies and a goroutine: in that backlog 1305 pods were in binding at the peak
// and the live heap rose with them. Reserve therefore holds the scheduling loop (admit) while
// maxQueued pods wait for a slot. Those pods need nothing from the loop to go on (only binds in
// flight ending), so holding it cannot deadlock; pods waiting at Permit for their gang's other
// members are not counted, since they do need the loop.
type bindGate struct {
	slots     chan struct{}
	maxQueued int

	mu     sync.Mutex
	queued int           // pods in Bind waiting for a slot
	room   chan struct{} // closed when queued drops below maxQueued; nil when nobody waits
}

// maxBindsInFlight leaves room under the apiserver's 100 streams per connection for the
// scheduler's other requests (status patches, events, PodGroup writes share the connection).
// maxBindsQueued keeps the slots busy while the loop is held: the queue lasts about as long
// again as the binds in flight take.
const (
	maxBindsInFlight = 64
	maxBindsQueued   = 2 * maxBindsInFlight
)

func newBindGate(inFlight, queued int) *bindGate {
	return &bindGate{slots: make(chan struct{}, inFlight), maxQueued: queued}
}

// acquire takes a slot for a Binding request, waiting in the queue for one; release gives it back.
func (g *bindGate) acquire(ctx context.Context) error {
	g.mu.Lock()
	g.queued++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.queued--
		if g.queued < g.maxQueued && g.room != nil {
			close(g.room)
			g.room = nil
		}
		g.mu.Unlock()
	}()
	select {
	case g.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *bindGate) release() { <-g.slots }

// admit returns once fewer than maxQueued pods wait for a slot (or ctx ends).
func (g *bindGate) admit(ctx context.Context) error {
	for {
		g.mu.Lock()
		if g.queued < g.maxQueued {
			g.mu.Unlock()
			return nil
		}
		if g.room == nil {
			g.room = make(chan struct{})
		}
		room := g.room
		g.mu.Unlock()
		select {
		case <-room:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
