package groupstate

import (
	"context"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// FieldManager owns the scheduler's PodGroup conditions (server-side apply), so the controllers
// can own the member counts in the same status without either overwriting the other.
const FieldManager = "t9k-scheduler"

var podGroupResource = v1beta1.GroupVersion.WithResource("podgroups")

// statusWriter applies the GroupScheduled / SufficientGroupMember conditions asynchronously: the
// scheduling cycle only records what it wants, and a worker writes changes (deduplicated, so a gang
// retried every second does not write every second).
type statusWriter struct {
	dyn      dynamic.Interface
	recorder events.EventRecorder
	queue    workqueue.TypedRateLimitingInterface[GroupKey]
}

type pgStatus struct {
	uid        string
	conditions map[string]metav1.Condition
	// reservation is T9kTopology's reservation for the gang (status.reservation), nil for none.
	reservation *v1beta1.PodGroupReservation
}

// SetCondition records a condition of a PodGroup; when it changed, the condition is applied to the
// apiserver and an event (Normal for True, Warning for False) is recorded on the PodGroup. Virtual
// groups have no object: the scheduler's own FailedScheduling events on the pod carry the reason.
func (s *State) SetCondition(key GroupKey, condType string, status metav1.ConditionStatus, reason, message string) {
	if key.Pod {
		return
	}
	s.mu.Lock()
	pg := s.podGroups[nsName{key.Namespace, key.Name}]
	if pg == nil {
		s.mu.Unlock()
		return
	}
	st := s.desiredLocked(key, pg)
	old, had := st.conditions[condType]
	if had && old.Status == status && old.Reason == reason && old.Message == message {
		s.mu.Unlock()
		return
	}
	c := metav1.Condition{Type: condType, Status: status, Reason: reason, Message: message, LastTransitionTime: metav1.NewTime(s.now())}
	if had && old.Status == status {
		c.LastTransitionTime = old.LastTransitionTime
	}
	st.conditions[condType] = c
	s.mu.Unlock()
	s.afterSetCondition(key, pg, condType, status, reason, message)
}

// desiredLocked is the status the scheduler wants for a PodGroup, started from what the object
// says, so a restarted scheduler does not rewrite it all.
func (s *State) desiredLocked(key GroupKey, pg *v1beta1.PodGroup) *pgStatus {
	st := s.desired[key]
	if st == nil || st.uid != string(pg.UID) {
		st = &pgStatus{uid: string(pg.UID), conditions: map[string]metav1.Condition{}, reservation: pg.Status.Reservation}
		for _, c := range pg.Status.Conditions {
			if c.Type == v1beta1.PodGroupConditionScheduled || c.Type == v1beta1.PodGroupConditionSufficientMember || c.Type == v1beta1.PodGroupConditionReserved {
				st.conditions[c.Type] = c
			}
		}
		s.desired[key] = st
	}
	return st
}

// afterSetCondition queues the apply and records the event of a changed condition.
func (s *State) afterSetCondition(key GroupKey, pg *v1beta1.PodGroup, condType string, status metav1.ConditionStatus, reason, message string) {
	if s.status == nil {
		return
	}
	s.status.queue.Add(key)
	if s.status.recorder != nil && conditionEvent(condType, reason) {
		ref := &v1.ObjectReference{APIVersion: v1beta1.GroupVersion.String(), Kind: "PodGroup", Namespace: pg.Namespace, Name: pg.Name, UID: pg.UID}
		kind := v1.EventTypeNormal
		if status == metav1.ConditionFalse {
			kind = v1.EventTypeWarning
		}
		s.status.recorder.Eventf(ref, nil, kind, reason, "Scheduling", "%s", message)
	}
}

// conditionEvent says whether a condition change is worth an event of its own. Not for what
// every gang passes through on its way to being placed: members still being created
// (SufficientGroupMember, and GroupScheduled's InsufficientMemberPod, whose message changes with
// each member: a gang of 64 made an event per member) and GroupScheduled's "Scheduling" (every
// member exists); the conditions still say so. At 5000 nodes a backlog of 533 gangs made about a
// thousand such events in its first second, each its own goroutine and POST (client-go's event
// broadcaster), past the apiserver's 100 streams per connection: a burst of extra connections
// and goroutines in the scheduler. Not for Reserved either: its message follows the drain, and
// its events are T9kTopology's own (made, released).
func conditionEvent(condType, reason string) bool {
	if condType == v1beta1.PodGroupConditionSufficientMember || condType == v1beta1.PodGroupConditionReserved {
		return false
	}
	return reason != v1beta1.ReasonScheduling && reason != v1beta1.ReasonInsufficientMemberPod
}

// SetReservation records the gang's reservation (nil: none) for its status, applied with the
// conditions.
func (s *State) SetReservation(key GroupKey, r *v1beta1.PodGroupReservation) {
	if key.Pod {
		return
	}
	s.mu.Lock()
	pg := s.podGroups[nsName{key.Namespace, key.Name}]
	if pg == nil {
		s.mu.Unlock()
		return
	}
	s.desiredLocked(key, pg).reservation = r
	s.mu.Unlock()
	if s.status != nil {
		s.status.queue.Add(key)
	}
}

// PodGroups returns the PodGroups the scheduler knows.
func (s *State) PodGroups() []*v1beta1.PodGroup {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]*v1beta1.PodGroup, 0, len(s.podGroups))
	for _, pg := range s.podGroups {
		out = append(out, pg)
	}
	return out
}

// MembersSynced says whether the State has been told of every pod the scheduler's informer listed
// at start (the scheduler starts its informers after building its plugins): until then a gang may
// show fewer members than it has. Always true for a State fed by hand (tests).
func (s *State) MembersSynced() bool { return s.podsSynced == nil || s.podsSynced() }

// Condition returns the condition the scheduler last recorded for a PodGroup (for tests).
func (s *State) Condition(key GroupKey, condType string) *metav1.Condition {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if st := s.desired[key]; st != nil {
		if c, ok := st.conditions[condType]; ok {
			return &c
		}
	}
	return nil
}

// Event records an event on a PodGroup (no-op for virtual groups or without a recorder).
func (s *State) Event(key GroupKey, eventType, reason, message string) {
	if key.Pod || s.status == nil || s.status.recorder == nil {
		return
	}
	s.mu.RLock()
	pg := s.podGroups[nsName{key.Namespace, key.Name}]
	s.mu.RUnlock()
	if pg == nil {
		return
	}
	ref := &v1.ObjectReference{APIVersion: v1beta1.GroupVersion.String(), Kind: "PodGroup", Namespace: pg.Namespace, Name: pg.Name, UID: pg.UID}
	s.status.recorder.Eventf(ref, nil, eventType, reason, "Scheduling", "%s", message)
}

func (s *State) runStatusWriter(ctx context.Context) {
	defer s.status.queue.ShutDown()
	go func() {
		<-ctx.Done()
		s.status.queue.ShutDown()
	}()
	for {
		key, quit := s.status.queue.Get()
		if quit {
			return
		}
		err := s.applyStatus(ctx, key)
		switch {
		case err == nil || apierrors.IsNotFound(err):
			s.status.queue.Forget(key)
		case ctx.Err() == nil:
			klog.FromContext(ctx).V(2).Info("Applying PodGroup conditions failed; will retry", "podGroup", key, "err", err)
			s.status.queue.AddRateLimited(key)
		}
		s.status.queue.Done(key)
	}
}

func (s *State) applyStatus(ctx context.Context, key GroupKey) error {
	s.mu.RLock()
	st := s.desired[key]
	var conds []any
	if st != nil {
		for _, t := range sortedKeys(st.conditions) {
			c := st.conditions[t]
			conds = append(conds, map[string]any{
				"type": c.Type, "status": string(c.Status), "reason": c.Reason, "message": c.Message,
				"lastTransitionTime": c.LastTransitionTime.UTC().Format(time.RFC3339),
			})
		}
	}
	status := map[string]any{"conditions": conds}
	if st != nil && st.reservation != nil {
		var nodes []any
		for _, n := range st.reservation.Nodes {
			nodes = append(nodes, map[string]any{"name": n.Name, "gpus": int64(n.GPUs)})
		}
		status["reservation"] = map[string]any{"domain": st.reservation.Domain, "nodes": nodes,
			"since": st.reservation.Since.UTC().Format(time.RFC3339)}
	}
	s.mu.RUnlock()
	if len(conds) == 0 {
		return nil
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1beta1.GroupVersion.String(),
		"kind":       "PodGroup",
		"metadata":   map[string]any{"name": key.Name, "namespace": key.Namespace},
		"status":     status,
	}}
	_, err := s.status.dyn.Resource(podGroupResource).Namespace(key.Namespace).ApplyStatus(ctx, key.Name, obj,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	return err
}
