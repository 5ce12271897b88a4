package queuestatus

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// Cache indexes. Membership of a pod in a queue needs its PodGroup, so pods are indexed by the two
// labels and PodGroups by queue, and QueuePods joins them.
const (
	IndexPodQueueLabel = "t9k.queue-label"    // pod → its scheduler.tensorstack.dev/queue label
	IndexPodGroup      = "t9k.group"          // pod → "<namespace>/<group-name label>"
	IndexPodGroupQueue = "t9k.podgroup-queue" // PodGroup → spec.queue (defaulted)
)

// SetupIndexes registers the indexes with the manager's cache. Call once, before Start.
func SetupIndexes(ctx context.Context, idx client.FieldIndexer) error {
	if err := idx.IndexField(ctx, &corev1.Pod{}, IndexPodQueueLabel, func(o client.Object) []string {
		p := o.(*corev1.Pod)
		if q := p.Labels[schedv1beta1.LabelQueue]; q != "" && p.Spec.SchedulerName == schedv1beta1.SchedulerName {
			return []string{q}
		}
		return nil
	}); err != nil {
		return err
	}
	if err := idx.IndexField(ctx, &corev1.Pod{}, IndexPodGroup, func(o client.Object) []string {
		p := o.(*corev1.Pod)
		if g := p.Labels[schedv1beta1.LabelGroupName]; g != "" && p.Spec.SchedulerName == schedv1beta1.SchedulerName {
			return []string{p.Namespace + "/" + g}
		}
		return nil
	}); err != nil {
		return err
	}
	return idx.IndexField(ctx, &schedv1beta1.PodGroup{}, IndexPodGroupQueue, func(o client.Object) []string {
		return []string{GroupQueue(o.(*schedv1beta1.PodGroup))}
	})
}

// GroupQueue is the PodGroup's queue with the API default applied.
func GroupQueue(pg *schedv1beta1.PodGroup) string {
	if pg.Spec.Queue == "" {
		return schedv1beta1.DefaultQueue
	}
	return pg.Spec.Queue
}

// QueueOf says which queue a pod belongs to, "" for none: the queue of its PodGroup when it names
// one that exists (the scheduler schedules the group as a whole), else its queue label. Only pods
// for the t9k scheduler are in queues.
func QueueOf(ctx context.Context, r client.Reader, pod *corev1.Pod) (string, error) {
	if pod.Spec.SchedulerName != schedv1beta1.SchedulerName {
		return "", nil
	}
	if g := pod.Labels[schedv1beta1.LabelGroupName]; g != "" {
		var pg schedv1beta1.PodGroup
		err := r.Get(ctx, types.NamespacedName{Namespace: pod.Namespace, Name: g}, &pg)
		if err == nil {
			return GroupQueue(&pg), nil
		}
		if !apierrors.IsNotFound(err) {
			return "", err
		}
	}
	return pod.Labels[schedv1beta1.LabelQueue], nil
}

// Members is what a queue holds: its pods (each once) and its PodGroup objects.
type Members struct {
	Pods      []corev1.Pod
	PodGroups []schedv1beta1.PodGroup
}

// QueuePods lists the members of a queue from an indexed cache.
func QueuePods(ctx context.Context, r client.Reader, queue string) (Members, error) {
	var m Members
	var groups schedv1beta1.PodGroupList
	if err := r.List(ctx, &groups, client.MatchingFields{IndexPodGroupQueue: queue}); err != nil {
		return m, err
	}
	m.PodGroups = groups.Items
	seen := map[types.UID]bool{}
	for i := range groups.Items {
		pg := &groups.Items[i]
		var pods corev1.PodList
		if err := r.List(ctx, &pods, client.InNamespace(pg.Namespace),
			client.MatchingFields{IndexPodGroup: pg.Namespace + "/" + pg.Name}); err != nil {
			return m, err
		}
		for _, p := range pods.Items {
			if !seen[p.UID] {
				seen[p.UID] = true
				m.Pods = append(m.Pods, p)
			}
		}
	}
	var labelled corev1.PodList
	if err := r.List(ctx, &labelled, client.MatchingFields{IndexPodQueueLabel: queue}); err != nil {
		return m, err
	}
	for i := range labelled.Items {
		p := &labelled.Items[i]
		if seen[p.UID] {
			continue
		}
		// A pod whose existing PodGroup names another queue belongs there.
		if q, err := QueueOf(ctx, r, p); err != nil {
			return m, err
		} else if q != queue {
			continue
		}
		seen[p.UID] = true
		m.Pods = append(m.Pods, *p)
	}
	return m, nil
}

// GroupPods lists the pods of one PodGroup from an indexed cache.
func GroupPods(ctx context.Context, r client.Reader, namespace, name string) ([]corev1.Pod, error) {
	var pods corev1.PodList
	err := r.List(ctx, &pods, client.InNamespace(namespace), client.MatchingFields{IndexPodGroup: namespace + "/" + name})
	return pods.Items, err
}
