package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// settleExtensionCap bounds how long a settle window is held open for a scheduler's reserved,
// unbound pods: a little more than the 60 s both gang schedulers' shipped profiles let placed
// members wait at Permit (T9kGang scheduleTimeoutSeconds, Coscheduling permitWaitingTimeSeconds),
// so any wait present when the cluster first looks settled has ended by then, bound or released.
const settleExtensionCap = 75 * time.Second

// settlePoll is how often waitSettled reads the scheduler's gauges while it holds pods.
var settlePoll = 500 * time.Millisecond

// waitSettled waits until no pod has bound for quiet (counting from since), then, while read
// (nil: a scheduler without metrics) says the scheduler holds reserved, unbound pods and
// extensionCap has not passed since that first quiet moment, polls it and waits for quiet again.
// It returns the scheduler's state when it stopped waiting (nil if unread), how long it waited
// past the first quiet moment, and why the gauges could not be read, if they could not.
func waitSettled(ctx context.Context, rec *recorder, since time.Time, quiet, extensionCap time.Duration,
	read func(context.Context) (SchedulerState, error), progress func(int)) (*SchedulerState, time.Duration, error) {
	rec.waitQuiet(ctx, since, quiet, progress)
	quietAt := time.Now()
	var sched *SchedulerState
	for read != nil && ctx.Err() == nil {
		st, err := read(ctx)
		if err != nil {
			return sched, time.Since(quietAt), err
		}
		sched = &st
		if st.Reserved == 0 || time.Since(quietAt) >= extensionCap {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(settlePoll):
		}
		rec.waitQuiet(ctx, since, quiet, progress) // a Permit wait that ended in binds: quiet again
	}
	return sched, time.Since(quietAt), nil
}

// stream runs a saturating stream workload (see StreamSpec) and returns every job it submitted and
// the settled states it sampled.
//
// A state counts as settled when no pod has bound for SettleSeconds and the scheduler holds no
// reserved, unbound pod (scheduler_goroutines{operation="binding"} on its /metrics is 0: no
// member waiting at Permit, no bind in flight, so no live t9k gang plan with a placed member);
// while it holds some, the window stays open, up to settleExtensionCap, after which the sample is
// taken anyway and the pods still held are recorded with it.
func (h *harness) stream(ctx context.Context, ns string, w Workload, s schedulerUnderTest, rs *running, rec *recorder) ([]Job, *Saturation, error) {
	spec := *w.Stream
	if h.opts.StreamRounds != nil {
		spec.Rounds = *h.opts.StreamRounds
	}
	next := w.Generator(h.totalGPUs)
	quiet := time.Duration(spec.SettleSeconds * float64(time.Second))
	if h.opts.StreamSettle > 0 {
		quiet = h.opts.StreamSettle
	}
	target := int(spec.OfferedLoad * float64(h.totalGPUs))
	start := time.Now()
	var all []Job
	var live []Job // submitted and not finished, in submission order
	sat := &Saturation{}

	topUp := func() error {
		offered := 0
		for _, j := range live {
			offered += j.Pods * j.GPUs
		}
		var batch []Job
		for offered < target {
			j := next()
			if j.Pods == 0 {
				return fmt.Errorf("workload %s has no job that fits %d GPUs", w.Name, h.totalGPUs)
			}
			batch = append(batch, j)
			live = append(live, j)
			all = append(all, j)
			offered += j.Pods * j.GPUs
		}
		sat.JobsSubmitted += len(batch)
		return h.submit(ctx, ns, batch, s, rec)
	}
	sample := func(round string) {
		since := time.Now()
		progress := func(n int) { h.logf("%s / %s: %s, %d pods bound so far", w.Name, s.Name, round, n) }
		var read func(context.Context) (SchedulerState, error)
		if rs.metricsURL != "" {
			read = func(ctx context.Context) (SchedulerState, error) { return readSchedulerState(ctx, rs.metricsURL) }
		}
		sched, extended, metricsErr := waitSettled(ctx, rec, since, quiet, settleExtensionCap, read, progress)
		st := h.streamState(live, rec)
		st.Seconds = time.Since(start).Seconds()
		st.ExtendedSeconds = extended.Seconds()
		st.Scheduler = sched
		held := ""
		if metricsErr != nil {
			st.MetricsError = metricsErr.Error()
			held = "; scheduler metrics unreadable: " + st.MetricsError
		} else if sched != nil {
			held = fmt.Sprintf("; scheduler: %d reserved unbound, queues active %d, backoff %d, unschedulable %d (settle window extended %.1fs)",
				sched.Reserved, sched.Active, sched.Backoff, sched.Unschedulable, st.ExtendedSeconds)
		}
		sat.Samples = append(sat.Samples, st)
		h.logf("%s / %s: %s settled at %.0fs: %.1f%% of GPUs allocated, %.1f%% in fully bound jobs, %d partial jobs, %d pods pending%s",
			w.Name, s.Name, round, st.Seconds, 100*st.Allocated, 100*st.Useful, st.PartialJobs, st.PendingPods, held)
	}

	h.logf("%s / %s: offering %d GPUs (%.0f%% of %d), %d rounds finishing %.0f%% of running jobs", w.Name, s.Name,
		target, 100*spec.OfferedLoad, h.totalGPUs, spec.Rounds, 100*spec.FinishShare)
	if err := topUp(); err != nil {
		return nil, nil, err
	}
	sample("fill")
	for r := 1; r <= spec.Rounds && ctx.Err() == nil; r++ {
		var done []Job
		live, done = h.pickFinished(live, spec.FinishShare, rec)
		if err := h.finish(ctx, ns, done, s, rec); err != nil {
			return nil, nil, err
		}
		sat.JobsFinished += len(done)
		if err := topUp(); err != nil {
			return nil, nil, err
		}
		sample(fmt.Sprintf("round %d/%d (%d jobs finished)", r, spec.Rounds, len(done)))
	}
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	for _, st := range sat.Samples {
		sat.GPUAllocation += st.Allocated / float64(len(sat.Samples))
		sat.UsefulAllocation += st.Useful / float64(len(sat.Samples))
	}
	last := sat.Samples[len(sat.Samples)-1]
	sat.PartialJobs, sat.PendingPods = last.PartialJobs, last.PendingPods
	sat.PendingReasons = pendingReasons(live, rec, 3)
	for _, r := range sat.PendingReasons {
		h.logf("%s / %s: pending at the end: %s", w.Name, s.Name, r)
	}
	return all, sat, nil
}

// streamState measures the live jobs: GPUs held by bound pods, GPUs of fully bound jobs, partial
// jobs and pending pods.
func (h *harness) streamState(live []Job, rec *recorder) SaturationSample {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var st SaturationSample
	held, useful := 0, 0
	for _, j := range live {
		bound, _ := rec.boundOfLocked(j)
		held += bound * j.GPUs
		st.PendingPods += j.Pods - bound
		switch {
		case bound == j.Pods:
			useful += bound * j.GPUs
		case bound > 0:
			st.PartialJobs++
		}
	}
	st.Allocated = float64(held) / float64(h.totalGPUs)
	st.Useful = float64(useful) / float64(h.totalGPUs)
	return st
}

// pickFinished splits off the share of fully bound jobs that finish this round: the ones that have
// been running longest, earlier submissions first on a tie. Jobs not fully bound never finish
// (their pods could not start).
func (h *harness) pickFinished(live []Job, share float64, rec *recorder) (keep, done []Job) {
	type running struct {
		idx   int // in live, which is in submission order
		since time.Time
	}
	var runs []running
	rec.mu.Lock()
	for k, j := range live {
		if bound, since := rec.boundOfLocked(j); bound == j.Pods {
			runs = append(runs, running{k, since})
		}
	}
	rec.mu.Unlock()
	sort.SliceStable(runs, func(a, b int) bool { return runs[a].since.Before(runs[b].since) })
	n := int(math.Ceil(share * float64(len(runs))))
	finished := map[int]bool{}
	for _, r := range runs[:n] {
		finished[r.idx] = true
	}
	for k, j := range live {
		if finished[k] {
			done = append(done, j)
		} else {
			keep = append(keep, j)
		}
	}
	return keep, done
}

// finish deletes the jobs' pods (force, as no kubelet runs) and PodGroups.
func (h *harness) finish(ctx context.Context, ns string, jobs []Job, s schedulerUnderTest, rec *recorder) error {
	zero := int64(0)
	err := inParallel(func(send func(string)) error {
		for _, j := range jobs {
			for i := 0; i < j.Pods; i++ {
				send(podName(j, i))
			}
		}
		return nil
	}, func(pod string) error {
		rec.noteDeleted(pod, time.Now())
		err := h.client.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	for _, j := range jobs {
		if j.Pods > 1 && s.Gang != gangNone {
			if err := h.dyn.Resource(podGroupGVR(s.Gang)).Namespace(ns).Delete(ctx, j.Name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return nil
}

func podName(j Job, i int) string { return fmt.Sprintf("%s-%d", j.Name, i) }

// pendingReasons counts the scheduler's messages for the live jobs' unbound pods and returns the
// most common, as "<count> × <message>".
func pendingReasons(live []Job, rec *recorder, top int) []string {
	rec.mu.Lock()
	counts := map[string]int{}
	for _, j := range live {
		for i := 0; i < j.Pods; i++ {
			pod := podName(j, i)
			if _, ok := rec.bound[pod]; ok {
				continue
			}
			msg := rec.pending[pod]
			if msg == "" {
				msg = "(no PodScheduled condition yet)"
			}
			counts[msg]++
		}
	}
	rec.mu.Unlock()
	msgs := make([]string, 0, len(counts))
	for m := range counts {
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(a, b int) bool {
		if counts[msgs[a]] != counts[msgs[b]] {
			return counts[msgs[a]] > counts[msgs[b]]
		}
		return msgs[a] < msgs[b]
	})
	var out []string
	for _, m := range msgs[:min(top, len(msgs))] {
		out = append(out, fmt.Sprintf("%d × %s", counts[m], m))
	}
	return out
}
