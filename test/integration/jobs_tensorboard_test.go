package integration

import (
	"testing"

	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// TestJobTensorBoard: tensorboardSpec gives a TensorBoard Deployment and Service owned by the job
// (the garbage collector removes them with it), the image from the spec, reading the job's log
// folder from its PVC read-only; status.tensorboard follows the Deployment (Pending, then Running
// and ready with its URL) and suspend scales it to zero.
func TestJobTensorBoard(t *testing.T) {
	e := startJobs(t)
	job := e.apply("mnist-tensorboard.yaml", nil).(*batch.PyTorchTrainingJob)
	name := "mnist-tb-tensorboard"

	d := &appsv1.Deployment{}
	e.eventually("tensorboard deployment", func() bool {
		return e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, d) == nil
	})
	owner := metav1.GetControllerOf(d)
	require.NotNil(t, owner)
	require.Equal(t, job.UID, owner.UID)
	require.True(t, *owner.BlockOwnerDeletion)
	require.Equal(t, int32(1), *d.Spec.Replicas)
	c := d.Spec.Template.Spec.Containers[0]
	require.Equal(t, "tensorflow/tensorflow:2.14.0", c.Image)
	require.Equal(t, []string{"tensorboard"}, c.Command)
	require.Contains(t, c.Args, "--logdir=/t9k/logs/mnist-data/runs/mnist/log")
	require.Equal(t, "500m", c.Resources.Limits.Cpu().String())
	require.Len(t, d.Spec.Template.Spec.Volumes, 1)
	v := d.Spec.Template.Spec.Volumes[0]
	require.Equal(t, "mnist-data", v.PersistentVolumeClaim.ClaimName)
	require.True(t, v.PersistentVolumeClaim.ReadOnly)
	require.Equal(t, []corev1.VolumeMount{{Name: v.Name, MountPath: "/t9k/logs/mnist-data", ReadOnly: true}}, c.VolumeMounts)
	require.NotContains(t, d.Spec.Template.Labels, workloads.LabelOwnerName, "the job's replicas are selected by owner labels")

	svc := &corev1.Service{}
	require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: name}, svc))
	require.Equal(t, job.UID, metav1.GetControllerOf(svc).UID)
	require.Equal(t, int32(6006), svc.Spec.Ports[0].Port)
	require.Equal(t, d.Spec.Selector.MatchLabels, svc.Spec.Selector)

	get := func() *batch.DependentStatus {
		j := &batch.PyTorchTrainingJob{}
		if e.c.Get(e.ctx, client.ObjectKeyFromObject(job), j) != nil {
			return nil
		}
		return j.Status.Tensorboard
	}
	url := "http://" + name + "." + e.ns + ".svc:6006/"
	e.eventually("tensorboard pending", func() bool { s := get(); return s != nil && s.Phase == "Pending" && s.Dependent != nil })
	s := get()
	require.False(t, s.Ready)
	require.Equal(t, url, s.URL)
	require.Equal(t, d.UID, s.Dependent.UID)

	d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas = 1, 1, 1
	require.NoError(t, e.c.Status().Update(e.ctx, d))
	e.eventually("tensorboard ready", func() bool { s := get(); return s != nil && s.Ready })
	s = get()
	require.Equal(t, &batch.DependentStatus{Type: "Normal", Action: "NOP", Ready: true, Reason: workloads.ReasonDependentReady,
		Note: "TensorBoard [" + name + "] is ready", Phase: "Running", URL: url,
		Dependent: &corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name, Namespace: e.ns, UID: d.UID}}, s)

	// suspend scales it to zero.
	e.eventually("suspend", func() bool {
		j := &batch.PyTorchTrainingJob{}
		if e.c.Get(e.ctx, client.ObjectKeyFromObject(job), j) != nil {
			return false
		}
		j.Spec.TensorboardSpec.Suspend = true
		return e.c.Update(e.ctx, j) == nil
	})
	e.eventually("suspended", func() bool {
		s := get()
		return s != nil && s.Phase == "Suspended" &&
			e.c.Get(e.ctx, client.ObjectKeyFromObject(d), d) == nil && *d.Spec.Replicas == 0
	})
}
