package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/controlplane"
	"github.com/tensorstack/t9k/pkg/scheduler"
)

// gangEnv is a control plane with the t9k-system namespace, a typed client for our CRDs and a
// stand-in kubelet that completes graceful deletions (no kubelet runs here).
type gangEnv struct {
	t   *testing.T
	cp  *controlplane.ControlPlane
	kc  kubernetes.Interface
	c   client.Client
	ctx context.Context
}

func newGangEnv(t *testing.T, nodes int, gpus int64) *gangEnv {
	t.Helper()
	cp := startControlPlane(t)
	kc, err := kubernetes.NewForConfig(cp.Config)
	require.NoError(t, err)
	s := runtime.NewScheme()
	require.NoError(t, v1beta1.AddToScheme(s))
	c, err := client.New(cp.Config, client.Options{Scheme: s})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &gangEnv{t: t, cp: cp, kc: kc, c: c, ctx: ctx}
	e.namespace("t9k-system", nil)
	for i := range nodes {
		_, err := kc.CoreV1().Nodes().Create(ctx, readyNode(fmt.Sprintf("node-%d", i), gpus), metav1.CreateOptions{})
		require.NoError(t, err)
	}
	go e.kubelet()
	return e
}

// kubelet finishes what a kubelet would: a pod being deleted goes away at once.
func (e *gangEnv) kubelet() {
	_ = wait.PollUntilContextCancel(e.ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := e.kc.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp != nil {
				_ = e.kc.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, *metav1.NewDeleteOptions(0))
			}
		}
		return false, nil
	})
}

func (e *gangEnv) namespace(name string, lbls map[string]string) {
	_, err := e.kc.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: lbls}}, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		require.NoError(e.t, err)
	}
}

// queue creates a Queue in t9k-system open to the "default" namespace unless edit changes it.
func (e *gangEnv) queue(name string, prio int32, edit func(*v1beta1.QueueSpec)) {
	q := &v1beta1.Queue{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "t9k-system"}, Spec: v1beta1.QueueSpec{
		Priority:          prio,
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: "default"}},
	}}
	if edit != nil {
		edit(&q.Spec)
	}
	require.NoError(e.t, e.c.Create(e.ctx, q))
}

// gang creates PodGroup ns/name with minMember and members pods requesting gpus each.
func (e *gangEnv) gang(ns, name, queue string, minMember, members int, gpus int64, edit func(*v1beta1.PodGroup)) {
	pg := &v1beta1.PodGroup{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: v1beta1.PodGroupSpec{MinMember: int32(minMember), Queue: queue}}
	if edit != nil {
		edit(pg)
	}
	require.NoError(e.t, e.c.Create(e.ctx, pg))
	e.members(ns, name, queue, 0, members, gpus, nil)
}

// created is the creationTimestamp of a PodGroup.
func (e *gangEnv) created(ns, name string) metav1.Time {
	var pg v1beta1.PodGroup
	require.NoError(e.t, e.c.Get(e.ctx, types.NamespacedName{Namespace: ns, Name: name}, &pg))
	return pg.CreationTimestamp
}

// members adds pods <group>-<from>..<group>-<from+n-1> to a group.
func (e *gangEnv) members(ns, group, queue string, from, n int, gpus int64, edit func(*corev1.Pod)) {
	for i := from; i < from+n; i++ {
		p := gangPod(ns, fmt.Sprintf("%s-%d", group, i), group, queue, gpus)
		if edit != nil {
			edit(p)
		}
		_, err := e.kc.CoreV1().Pods(ns).Create(e.ctx, p, metav1.CreateOptions{})
		require.NoError(e.t, err)
	}
}

func gangPod(ns, name, group, queue string, gpus int64) *corev1.Pod {
	lbls := map[string]string{v1beta1.LabelQueue: queue}
	if group != "" {
		lbls[v1beta1.LabelGroupName] = group
	}
	req := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	if gpus > 0 {
		req["nvidia.com/gpu"] = *resource.NewQuantity(gpus, resource.DecimalSI)
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbls},
		Spec: corev1.PodSpec{
			SchedulerName: scheduler.SchedulerName,
			Containers:    []corev1.Container{{Name: "main", Image: "busybox", Resources: corev1.ResourceRequirements{Requests: req, Limits: req}}},
		},
	}
}

// bound returns how many pods of the group are bound, and to which nodes.
func (e *gangEnv) bound(ns, group string) (int, []string) {
	pods, err := e.kc.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{LabelSelector: labels.Set{v1beta1.LabelGroupName: group}.String()})
	require.NoError(e.t, err)
	var nodes []string
	for _, p := range pods.Items {
		if p.Spec.NodeName != "" {
			nodes = append(nodes, p.Spec.NodeName)
		}
	}
	return len(nodes), nodes
}

func (e *gangEnv) waitBound(ns, group string, n int, timeout time.Duration) {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		b, _ := e.bound(ns, group)
		return b >= n, nil
	})
	b, _ := e.bound(ns, group)
	require.NoError(e.t, err, "group %s/%s: %d bound, want %d; GroupScheduled: %v", ns, group, b, n, e.condition(ns, group, v1beta1.PodGroupConditionScheduled))
}

// finish moves every bound pod of the group to Succeeded, as a kubelet would when they exit.
func (e *gangEnv) finish(ns, group string) {
	pods, err := e.kc.CoreV1().Pods(ns).List(e.ctx, metav1.ListOptions{LabelSelector: labels.Set{v1beta1.LabelGroupName: group}.String()})
	require.NoError(e.t, err)
	for i := range pods.Items {
		p := &pods.Items[i]
		p.Status.Phase = corev1.PodSucceeded
		_, err := e.kc.CoreV1().Pods(ns).UpdateStatus(e.ctx, p, metav1.UpdateOptions{})
		require.NoError(e.t, err)
	}
}

func (e *gangEnv) condition(ns, group, typ string) *metav1.Condition {
	var pg v1beta1.PodGroup
	if err := e.c.Get(e.ctx, types.NamespacedName{Namespace: ns, Name: group}, &pg); err != nil {
		return nil
	}
	return meta.FindStatusCondition(pg.Status.Conditions, typ)
}

// waitCondition waits until the PodGroup's condition has the reason and a message containing
// every part, and returns it.
func (e *gangEnv) waitCondition(ns, group, typ, reason string, parts ...string) *metav1.Condition {
	e.t.Helper()
	var c *metav1.Condition
	err := wait.PollUntilContextTimeout(e.ctx, 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		c = e.condition(ns, group, typ)
		if c == nil || c.Reason != reason {
			return false, nil
		}
		for _, p := range parts {
			if !strings.Contains(c.Message, p) {
				return false, nil
			}
		}
		return true, nil
	})
	require.NoError(e.t, err, "PodGroup %s/%s condition %s: got %+v, want reason %s with %q", ns, group, typ, c, reason, parts)
	return c
}

// sampler polls the apiserver and remembers, per group, every bound count it saw and when.
type sampler struct {
	mu      sync.Mutex
	samples map[string][]sample
	stop    context.CancelFunc
	done    chan struct{}
}

type sample struct {
	at    time.Time
	bound int
}

func (e *gangEnv) sample(ns string, groups ...string) *sampler {
	ctx, cancel := context.WithCancel(e.ctx)
	s := &sampler{samples: map[string][]sample{}, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			pods, err := e.kc.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				counts := map[string]int{}
				for _, p := range pods.Items {
					if p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded {
						counts[p.Labels[v1beta1.LabelGroupName]]++
					}
				}
				now := time.Now()
				s.mu.Lock()
				for _, g := range groups {
					s.samples[g] = append(s.samples[g], sample{now, counts[g]})
				}
				s.mu.Unlock()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return s
}

// waitFor waits until the sampler itself has seen group with n pods bound, so that what the
// test asserts next was observed by the samples and not only by a separate read.
func (s *sampler) waitFor(t *testing.T, group string, n int, timeout time.Duration) {
	t.Helper()
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		ss := s.samples[group]
		return len(ss) > 0 && ss[len(ss)-1].bound == n
	}, timeout, 20*time.Millisecond, "the sampler never saw %s with %d pods bound", group, n)
}

func (s *sampler) finish() map[string][]sample {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples
}

// maxInFlightSamples is how many consecutive samples (20 ms apart, plus a LIST each) may see a
// gang partly bound while its binds are in flight: binds are separate API calls, so a gang admitted
// at once still becomes bound over a few tens of milliseconds.
const maxInFlightSamples = 10

// requireAllOrNothing fails unless the group reached its full count in the samples, and every
// stretch of partial binding that starts from nothing bound ends at the full count within
// maxInFlightSamples samples. Stretches after the group was full (its pods finishing or being
// evicted) are not binding and are left to the caller. It returns the longest binding stretch.
func requireAllOrNothing(t testingT, samples []sample, minMember int, group string) time.Duration {
	t.Helper()
	require.NotEmpty(t, samples, "no samples of group %s", group)
	var longest time.Duration
	start, full := -1, false // start: index of the first partial sample of a binding stretch
	for i, s := range samples {
		switch {
		case s.bound >= minMember:
			if start >= 0 {
				n := i - start
				require.LessOrEqual(t, n, maxInFlightSamples, "group %s was partly bound for %d samples (%s) before it was whole",
					group, n, s.at.Sub(samples[start].at))
				longest = max(longest, s.at.Sub(samples[start].at))
				start = -1
			}
			full = true
		case s.bound == 0:
			require.Less(t, start, 0, "group %s went from partly bound (%d from %s) back to nothing without being whole",
				group, samples[max(start, 0)].bound, samples[max(start, 0)].at.Format(time.StampMilli))
			full = false
		default: // partial
			if start < 0 && !full {
				start = i
			}
		}
	}
	require.Less(t, start, 0, "group %s ended the samples partly bound (%d of %d)", group, samples[len(samples)-1].bound, minMember)
	require.True(t, slices.ContainsFunc(samples, func(s sample) bool { return s.bound >= minMember }),
		"no sample saw group %s whole (%d members)", group, minMember)
	return longest
}

// testingT is what the sample checks need of a test, so that they can be tested themselves.
type testingT interface {
	require.TestingT
	Helper()
}

func requireNeverBound(t testingT, samples []sample, group string) {
	t.Helper()
	require.NotEmpty(t, samples)
	for _, s := range samples {
		require.Zero(t, s.bound, "group %s had %d pods bound at %s", group, s.bound, s.at.Format(time.StampMilli))
	}
}

// groupEvents lists the events about the PodGroup, as the apiserver has them now.
func (e *gangEnv) groupEvents(ctx context.Context, ns, group string) ([]eventsv1.Event, error) {
	evs, err := e.kc.EventsV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	var out []eventsv1.Event
	for _, ev := range evs.Items {
		if ev.Regarding.Kind == "PodGroup" && ev.Regarding.Name == group {
			out = append(out, ev)
		}
	}
	return out, nil
}

// eventNotes lists the notes of the PodGroup's events with the reason, as the apiserver has them now.
func (e *gangEnv) eventNotes(ns, group, reason string) []string {
	e.t.Helper()
	evs, err := e.groupEvents(e.ctx, ns, group)
	require.NoError(e.t, err)
	var notes []string
	for _, ev := range evs {
		if ev.Reason == reason {
			notes = append(notes, ev.Note)
		}
	}
	return notes
}

// waitEvent waits for an event about the PodGroup with the reason and a note containing every
// part (conditions move on; events stay), and returns its note.
func (e *gangEnv) waitEvent(ns, group, reason string, parts ...string) string {
	e.t.Helper()
	var seen []string
	var note string
	err := wait.PollUntilContextTimeout(e.ctx, 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := e.groupEvents(ctx, ns, group)
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
	next:
		for _, ev := range evs {
			seen = append(seen, ev.Reason+": "+ev.Note)
			if ev.Reason != reason {
				continue
			}
			for _, p := range parts {
				if !strings.Contains(ev.Note, p) {
					continue next
				}
			}
			note = ev.Note
			return true, nil
		}
		return false, nil
	})
	require.NoError(e.t, err, "no %s event on PodGroup %s/%s with %q; saw %q", reason, ns, group, parts, seen)
	return note
}

// eventTime returns when the first event about the PodGroup with the reason was recorded.
func (e *gangEnv) eventTime(ns, group, reason string) time.Time {
	e.t.Helper()
	evs, err := e.groupEvents(e.ctx, ns, group)
	require.NoError(e.t, err)
	var first time.Time
	for _, ev := range evs {
		if ev.Reason == reason {
			if at := ev.EventTime.Time; first.IsZero() || at.Before(first) {
				first = at
			}
		}
	}
	require.False(e.t, first.IsZero(), "no %s event on PodGroup %s/%s", reason, ns, group)
	return first
}

// schedulerExtraArgs lets a run raise the scheduler's log level: T9K_SCHEDULER_V=5.
func schedulerExtraArgs() []string {
	if v := os.Getenv("T9K_SCHEDULER_V"); v != "" {
		return []string{"--v=" + v}
	}
	return nil
}
