package admission

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// Replica is one group of identical pods of a workload.
type Replica struct {
	Name  string // replica type ("worker"); the pod's name for a Pod
	Count int64
	Spec  *corev1.PodSpec
}

// JobReplicas returns a T9k job's queue (ok false when the job does not use the t9k scheduler)
// and its pod groups, as the controllers will create them. Counted: every replica type of the
// kind's replicaSpecs (2024 shapes: worker, and the ColossalAI launcher container), replicas as
// written (an elastic job asks for what it starts with), and BeamJob's Flink cluster (its job and
// task managers as workloads.BeamClusterPods reads them from the FlinkCluster template) beside its
// submit pods. Not counted: the launcher MPIJob and DeepSpeedJob's controllers add on their own,
// and TensorBoard side-cars.
func JobReplicas(obj any) (queue string, reps []Replica, ok bool) {
	var common *batchv1beta1.CommonJobSpec
	add := func(name string, n *int32, spec *corev1.PodSpec) {
		reps = append(reps, Replica{Name: name, Count: int64(ptr.Deref(n, 1)), Spec: spec})
	}
	switch j := obj.(type) {
	case *batchv1beta1.GenericJob:
		common = &j.Spec.CommonJobSpec
		for i := range j.Spec.ReplicaSpecs {
			r := &j.Spec.ReplicaSpecs[i]
			add(string(r.Type), r.Replicas, &r.Template.Spec)
		}
	case *batchv1beta1.PyTorchTrainingJob:
		common = &j.Spec.CommonJobSpec
		for i := range j.Spec.ReplicaSpecs {
			r := &j.Spec.ReplicaSpecs[i]
			add(string(r.Type), r.Replicas, &r.Template.Spec)
		}
	case *batchv1beta1.TensorFlowTrainingJob:
		common = &j.Spec.CommonJobSpec
		for i := range j.Spec.ReplicaSpecs {
			r := &j.Spec.ReplicaSpecs[i]
			add(string(r.Type), r.Replicas, &r.Template.Spec)
		}
	case *batchv1beta1.XGBoostTrainingJob:
		common = &j.Spec.CommonJobSpec
		for i := range j.Spec.ReplicaSpecs {
			r := &j.Spec.ReplicaSpecs[i]
			add(string(r.Type), r.Replicas, &r.Template.Spec)
		}
	case *batchv1beta1.MPIJob:
		common = &j.Spec.CommonJobSpec
		for i := range j.Spec.ReplicaSpecs {
			r := &j.Spec.ReplicaSpecs[i]
			add(string(r.Type), r.Replicas, &r.Template.Spec)
		}
		if j.Spec.Worker != nil {
			add("worker", j.Spec.Worker.Replicas, &j.Spec.Worker.Template.Spec)
		}
	case *batchv1beta1.ColossalAIJob:
		common = &j.Spec.CommonJobSpec
		for i := range j.Spec.ReplicaSpecs {
			r := &j.Spec.ReplicaSpecs[i]
			add(string(r.Type), r.Replicas, &r.Template.Spec)
		}
		if j.Spec.Worker != nil {
			add("worker", j.Spec.Worker.Replicas, &j.Spec.Worker.Template.Spec)
		}
		if l := j.Spec.Launcher; l != nil {
			add("launcher", nil, &corev1.PodSpec{Containers: []corev1.Container{{Name: "launcher", Resources: l.Resources}}})
		}
	case *batchv1beta1.DeepSpeedJob:
		common = &j.Spec.CommonJobSpec
		add("worker", j.Spec.Worker.Replicas, &j.Spec.Worker.Template.Spec)
	case *batchv1beta1.BeamJob:
		common = &j.Spec.CommonJobSpec
		for _, p := range workloads.BeamClusterPods(j) {
			add(p.Type, &p.Count, p.Spec)
		}
		add(workloads.BeamSubmitter, j.Spec.JobTemplate.Spec.Parallelism, &j.Spec.JobTemplate.Spec.Template.Spec)
	default:
		return "", nil, false
	}
	if common.Scheduler == nil || common.Scheduler.T9kScheduler == nil {
		return "", reps, false
	}
	queue = common.Scheduler.T9kScheduler.Queue
	if queue == "" {
		queue = "default"
	}
	return queue, reps, true
}
