// Package podpreemption is the T9kPodPreemption scheduler plugin: Kubernetes' own PriorityClass
// preemption (the DefaultPreemption plugin, unchanged: PDBs, nominated nodes, preemptionPolicy,
// victim order) for plain pods, those in no Queue and no PodGroup.
//
// How it coexists with T9kQueue's gang-aware preemption:
//   - A pod of a queue or a gang is preempted, and preempts, only through T9kQueue (whole gangs of
//     lower-priority preemptible queues); this plugin leaves such preemptors to it.
//   - A plain pod may evict only plain pods of lower priority: evicting one member of a gang would
//     break the gang while its other members keep their GPUs. The exception is a pod of
//     system-critical priority (system-node-critical, system-cluster-critical), which may evict
//     anything of lower priority, as upstream asks of every customization.
//   - A queue's gang never evicts plain pods (T9kQueue only picks whole gangs of queues).
package podpreemption

import (
	"context"
	"fmt"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilfeature "k8s.io/apiserver/pkg/util/feature"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/apis/scheduling"
	kubeschedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/defaultpreemption"
	"k8s.io/kubernetes/pkg/scheduler/framework/plugins/feature"

	"github.com/tensorstack/t9k/pkg/plugins/groupstate"
)

// Name is the plugin's name in KubeSchedulerConfiguration.
const Name = "T9kPodPreemption"

// Plugin is DefaultPreemption restricted as the package comment says.
type Plugin struct {
	*defaultpreemption.DefaultPreemption
	handle framework.Handle
	// prios counts the pods holding a node by priority: with none below the preemptor's there is
	// no victim, which it tells without a look at every pod.
	prios *groupstate.Priorities
}

var _ framework.PostFilterPlugin = &Plugin{}

// New builds the plugin with DefaultPreemption's default args (10% / 100 candidate nodes).
func New(ctx context.Context, _ runtime.Object, h framework.Handle) (framework.Plugin, error) {
	args := &kubeschedconfig.DefaultPreemptionArgs{MinCandidateNodesPercentage: 10, MinCandidateNodesAbsolute: 100}
	dp, err := defaultpreemption.New(ctx, args, h, feature.NewSchedulerFeaturesFromGates(utilfeature.DefaultFeatureGate))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	dp.IsEligiblePod = eligible
	groups, err := groupstate.For(ctx, h)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	return &Plugin{DefaultPreemption: dp, handle: h, prios: groups.Priorities()}, nil
}

// eligible says whether victim may be evicted for preemptor (besides having a lower priority,
// which DefaultPreemption checks).
func eligible(_ fwk.NodeInfo, victim fwk.PodInfo, preemptor *v1.Pod) bool {
	if corev1helpers.PodPriority(preemptor) >= scheduling.SystemCriticalPriority {
		return true
	}
	_, inGang := groupstate.KeyOf(victim.GetPod())
	return !inGang
}

// Name implements framework.Plugin.
func (p *Plugin) Name() string { return Name }

// PostFilter preempts for plain pods only; queue and gang pods are T9kQueue's.
func (p *Plugin) PostFilter(ctx context.Context, cs fwk.CycleState, pod *v1.Pod, m framework.NodeToStatusReader) (*framework.PostFilterResult, *fwk.Status) {
	if _, ok := groupstate.KeyOf(pod); ok {
		return nil, fwk.NewStatus(fwk.Unschedulable)
	}
	all, err := p.handle.SnapshotSharedLister().NodeInfos().List()
	if err == nil && (!p.prios.MayPreempt(pod) || !anyVictim(pod, all)) {
		// What DefaultPreemption would conclude, without its dry run: a copy of every node's state
		// for each node, about 20 ms per failing attempt at 5000 nodes, which in a saturated
		// cluster of equal priorities every pending pod paid on every retry.
		return framework.NewPostFilterResultWithNominatedNode(""), fwk.NewStatus(fwk.Unschedulable,
			fmt.Sprintf("0/%d nodes are available: %d No preemption victims found for incoming pod.", len(all), len(all)))
	}
	return p.DefaultPreemption.PostFilter(ctx, cs, pod, m)
}

// anyVictim reports whether some pod on the nodes has a lower priority than the preemptor and may
// be preempted by it (eligible). One pass over the pods, stopping at the first.
func anyVictim(pod *v1.Pod, nodes []fwk.NodeInfo) bool {
	prio := corev1helpers.PodPriority(pod)
	for _, ni := range nodes {
		for _, pi := range ni.GetPods() {
			if corev1helpers.PodPriority(pi.GetPod()) < prio && eligible(ni, pi, pod) {
				return true
			}
		}
	}
	return false
}
