package workloads

import (
	"context"
	"fmt"
	"maps"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	schedv1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete

// JobWithTensorBoard is implemented by the kinds with spec.tensorboardSpec (PyTorch and
// TensorFlow): the reconciler runs a TensorBoard beside the job, a Deployment and a Service named
// <job>-tensorboard owned by the job (removed with it), and reports it in status.tensorboard.
type JobWithTensorBoard interface {
	TensorBoard() *batch.TensorBoardSpec
	TensorBoardStatus() **batch.DependentStatus
}

const (
	tensorboardPort = 6006
	// DefaultTensorBoardImage runs TensorBoard when tensorboardSpec.image is empty (the manuals'
	// example image; the reference gives no default).
	DefaultTensorBoardImage = "tensorflow/tensorflow:2.14.0"
	// LabelTensorBoard selects a job's TensorBoard pods.
	LabelTensorBoard = "tensorstack.dev/tensorboard"
	// tensorboardLogRoot is where the log volumes are mounted, read-only, one folder per PVC.
	tensorboardLogRoot = "/t9k/logs"

	ReasonDependentReady    = "DependentReady"
	ReasonDependentNotReady = "DependentNotReady"
	ReasonDependentInvalid  = "DependentInvalid"
)

func tensorboardName(jobName string) string { return dnsLabel(jobName + "-tensorboard") }

// tensorboardLogs turns the spec's log locations into TensorBoard's --logdir_spec entries and the
// volumes, mounts and environment that reach them: logDir.pvc and trainingLogFilesets
// t9k://pvc/<pvc>/<path> mount the PVC read-only at /t9k/logs/<pvc>; logDir.s3 and
// t9k://minio/<secret>/<bucket>/<path> read s3://<bucket>/<path> with the Secret's keys in the
// environment. logDir.http is refused: TensorBoard cannot read logs over HTTP.
func tensorboardLogs(tb *batch.TensorBoardSpec) (dirs []string, vols []corev1.Volume, mounts []corev1.VolumeMount, envFrom []corev1.EnvFromSource, err error) {
	pvcs := map[string]bool{}
	addPVC := func(pvc, sub string) {
		if !pvcs[pvc] {
			pvcs[pvc] = true
			vols = append(vols, corev1.Volume{Name: dnsLabel("log-" + pvc), VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: pvc, ReadOnly: true}}})
			mounts = append(mounts, corev1.VolumeMount{Name: dnsLabel("log-" + pvc), MountPath: tensorboardLogRoot + "/" + pvc, ReadOnly: true})
		}
		dir := tensorboardLogRoot + "/" + pvc
		if sub = strings.Trim(strings.TrimPrefix(sub, "./"), "/"); sub != "" && sub != "." {
			dir += "/" + sub
		}
		dirs = append(dirs, dir)
	}
	secrets := map[string]bool{}
	addSecret := func(name string) {
		if !secrets[name] {
			secrets[name] = true
			envFrom = append(envFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}})
		}
	}
	for _, f := range tb.TrainingLogFilesets {
		rest, ok := strings.CutPrefix(f, "t9k://")
		parts := strings.SplitN(rest, "/", 4)
		switch {
		case ok && parts[0] == "pvc" && len(parts) >= 2 && parts[1] != "":
			addPVC(parts[1], strings.Join(parts[2:], "/"))
		case ok && parts[0] == "minio" && len(parts) >= 3 && parts[1] != "" && parts[2] != "":
			addSecret(parts[1])
			dirs = append(dirs, "s3://"+strings.Join(parts[2:], "/"))
		default:
			return nil, nil, nil, nil, fmt.Errorf("tensorboardSpec.trainingLogFilesets: %q is neither t9k://pvc/<pvc>/<path> nor t9k://minio/<secret>/<bucket>/<path>", f)
		}
	}
	if d := tb.LogDir; d != nil {
		for _, p := range d.PVC {
			if len(p.SubPath) == 0 {
				addPVC(p.Name, "")
			}
			for _, s := range p.SubPath {
				addPVC(p.Name, s)
			}
		}
		if d.S3 != nil {
			addSecret(d.S3.SecretRef.Name)
			dirs = append(dirs, d.S3.URI...)
		}
		if d.HTTP != nil && len(d.HTTP.URL) > 0 {
			return nil, nil, nil, nil, fmt.Errorf("tensorboardSpec.logDir.http: TensorBoard cannot read logs over HTTP; use logDir.pvc or logDir.s3")
		}
	}
	if len(dirs) == 0 {
		return nil, nil, nil, nil, fmt.Errorf("tensorboardSpec: no logs to read (set logDir.pvc, logDir.s3 or trainingLogFilesets)")
	}
	return dirs, vols, mounts, envFrom, nil
}

// tensorboardObjects are the Deployment and Service of a job's TensorBoard.
func tensorboardObjects(job Job, tb *batch.TensorBoardSpec) (*appsv1.Deployment, *corev1.Service, error) {
	dirs, vols, mounts, envFrom, err := tensorboardLogs(tb)
	if err != nil {
		return nil, nil, err
	}
	name := tensorboardName(job.Object().GetName())
	args := []string{"--bind_all", fmt.Sprintf("--port=%d", tensorboardPort)}
	if len(dirs) == 1 {
		args = append(args, "--logdir="+dirs[0])
	} else {
		spec := make([]string, len(dirs))
		for i, d := range dirs {
			spec[i] = fmt.Sprintf("log%d:%s", i, d)
		}
		args = append(args, "--logdir_spec="+strings.Join(spec, ","))
	}
	image := tb.Image
	if image == "" {
		image = DefaultTensorBoardImage
	}
	c := corev1.Container{
		Name: "tensorboard", Image: image, Command: []string{"tensorboard"}, Args: args,
		Ports:        []corev1.ContainerPort{{Name: "http", ContainerPort: tensorboardPort}},
		VolumeMounts: mounts, EnvFrom: envFrom,
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/", Port: intstr.FromInt32(tensorboardPort)}}},
	}
	if tb.Resources != nil {
		c.Resources = *tb.Resources
	}
	// The pods carry no owner labels: those select the job's replicas (its headless Service,
	// kubectl logs -l tensorstack.dev/owner-name=<job>). The Deployment and Service get them.
	selector := map[string]string{LabelTensorBoard: name}
	labels := maps.Clone(selector)
	labels[LabelComponent] = "tensorboard"
	labels[LabelComponentType] = "system"
	pod := corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, Volumes: vols},
	}
	if s := tb.Scheduler; s != nil && s.T9kScheduler != nil {
		// A TensorBoard is one pod in the queue (a virtual group of one), no PodGroup.
		pod.Spec.SchedulerName = schedv1.SchedulerName
		pod.Labels[schedv1.LabelQueue] = queueOf(s.T9kScheduler)
	}
	replicas := int32(1)
	if tb.Suspend {
		replicas = 0
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: maps.Clone(selector)},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			Template: pod,
		},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: maps.Clone(selector)},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: tensorboardPort, TargetPort: intstr.FromString("http")}},
		},
	}
	return d, svc, nil
}

// reconcileTensorBoard creates the job's TensorBoard (if the spec asks for one) and sets
// status.tensorboard from its Deployment. It reports whether the status changed.
func (r *JobReconciler) reconcileTensorBoard(ctx context.Context, job Job) (bool, error) {
	j, ok := job.(JobWithTensorBoard)
	if !ok {
		return false, nil
	}
	stp := j.TensorBoardStatus()
	orig := (*stp).DeepCopy()
	tb := j.TensorBoard()
	if tb == nil {
		*stp = nil
		return !equality.Semantic.DeepEqual(orig, *stp), nil
	}
	name := tensorboardName(job.Object().GetName())
	ns := job.Object().GetNamespace()
	st := &batch.DependentStatus{Action: "NOP",
		URL: fmt.Sprintf("http://%s.%s.svc:%d/", name, ns, tensorboardPort)}
	d, svc, err := tensorboardObjects(job, tb)
	if err != nil {
		st.Type, st.Phase, st.Reason, st.Note = corev1.EventTypeWarning, "Failed", ReasonDependentInvalid, err.Error()
		st.URL = ""
		*stp = st
		changed := !equality.Semantic.DeepEqual(orig, st)
		if changed {
			r.Recorder.Eventf(job.Object(), corev1.EventTypeWarning, ReasonDependentInvalid, "TensorBoard: %v", err)
		}
		return changed, nil
	}
	if err := r.apply(ctx, job, svc); err != nil {
		return false, fmt.Errorf("tensorboard service: %w", err)
	}
	if err := r.apply(ctx, job, d); err != nil {
		return false, fmt.Errorf("tensorboard deployment: %w", err)
	}
	have := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, client.ObjectKeyFromObject(d), have); err != nil && !apierrors.IsNotFound(err) {
		return false, err
	}
	if have.UID != "" { // else just created, not in the cache yet: its watch event brings it
		st.Dependent = &corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: name, Namespace: ns, UID: have.UID}
	}
	switch {
	case tb.Suspend:
		st.Type, st.Phase, st.Reason = corev1.EventTypeNormal, "Suspended", ReasonDependentNotReady
		st.Note, st.URL = fmt.Sprintf("TensorBoard [%s] is suspended", name), ""
	case have.Status.ReadyReplicas > 0:
		st.Type, st.Phase, st.Ready, st.Reason = corev1.EventTypeNormal, "Running", true, ReasonDependentReady
		st.Note = fmt.Sprintf("TensorBoard [%s] is ready", name)
	default:
		st.Type, st.Phase, st.Reason = corev1.EventTypeNormal, "Pending", ReasonDependentNotReady
		st.Note = fmt.Sprintf("TensorBoard [%s] is not ready yet", name)
	}
	*stp = st
	return !equality.Semantic.DeepEqual(orig, st), nil
}
