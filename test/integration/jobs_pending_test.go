package integration

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/controllers"
	"github.com/tensorstack/t9k/pkg/controlplane"
)

// TestJobShowsWhyItIsPending: a DeepSpeedJob whose gang the scheduler cannot place (3 workers of 8
// GPUs, two nodes of 8) carries its PodGroup's reason: condition Scheduled mirrors the PodGroup's
// GroupScheduled, `kubectl get dj` shows the message, and a Warning event on the job says it.
func TestJobShowsWhyItIsPending(t *testing.T) {
	ge := newGangEnv(t, 2, 8)
	ge.queue("default", 0, nil)
	startScheduler(t, ge.cp)
	c, err := client.New(ge.cp.Config, client.Options{Scheme: controllers.Scheme()})
	require.NoError(t, err)
	e := &jobEnv{t: t, ctx: ge.ctx, cp: ge.cp, c: c, ns: "default"}
	e.stop = e.startControllers()

	name := "actor-multi-node"
	job := e.apply("actor-multi-node.yaml", func(o client.Object) {
		j := o.(*batch.DeepSpeedJob)
		j.Spec.Worker.Replicas = ptr.To[int32](3)
		j.Spec.Scheduler.T9kScheduler.Queue = "default"
	})
	var pg schedv1.PodGroup
	var why *schedv1.PodGroup
	e.eventually("the PodGroup says why it waits", func() bool {
		if e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &pg) != nil {
			return false
		}
		c := meta.FindStatusCondition(pg.Status.Conditions, schedv1.PodGroupConditionScheduled)
		if c == nil || c.Status != "False" || c.Reason == schedv1.ReasonInsufficientMemberPod || c.Reason == schedv1.ReasonScheduling {
			return false
		}
		why = pg.DeepCopy()
		return true
	})
	want := meta.FindStatusCondition(why.Status.Conditions, schedv1.PodGroupConditionScheduled)
	t.Logf("PodGroup: %s: %s", want.Reason, want.Message)

	// The job's condition mirrors the PodGroup's (its latest words: the message may be refined).
	st := e.waitJob(job, "condition Scheduled", func(s *batch.JobStatus) bool {
		c := condition(s, batch.JobConditionScheduled)
		return c != nil && c.Status == corev1.ConditionFalse && c.Reason == want.Reason && c.Message != ""
	})
	require.Equal(t, batch.JobPending, st.Phase)
	msg := condition(st, batch.JobConditionScheduled).Message
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, &pg))
	require.Equal(t, meta.FindStatusCondition(pg.Status.Conditions, schedv1.PodGroupConditionScheduled).Message, msg)

	// kubectl get dj shows it.
	bin, err := controlplane.BinDir()
	require.NoError(t, err)
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, ge.cp.WriteKubeconfig(kubeconfig))
	out, err := exec.Command(filepath.Join(bin, "kubectl"), "--kubeconfig", kubeconfig, "get", "dj", "-n", e.ns).CombinedOutput()
	require.NoError(t, err, "%s", out)
	t.Logf("kubectl get dj:\n%s", out)
	require.Contains(t, string(out), "SCHEDULING")
	require.Contains(t, string(out), msg)

	// And an event on the job says it.
	e.eventually("a Warning event on the job with the PodGroup's reason", func() bool {
		var events corev1.EventList
		if e.c.List(e.ctx, &events, client.InNamespace(e.ns)) != nil {
			return false
		}
		for _, ev := range events.Items {
			if ev.InvolvedObject.Kind == "DeepSpeedJob" && ev.InvolvedObject.Name == name && ev.Type == corev1.EventTypeWarning &&
				ev.Reason == want.Reason && strings.Contains(ev.Message, strings.SplitN(msg, ";", 2)[0]) {
				return true
			}
		}
		return false
	})
}
