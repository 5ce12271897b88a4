package podpreemption

import (
	"testing"

	"github.com/stretchr/testify/require"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/apis/scheduling"
	"k8s.io/kubernetes/pkg/scheduler/framework"
	"k8s.io/utils/ptr"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

func prioPod(name string, prio int32, group string) *v1.Pod {
	p := &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", UID: types.UID("u-" + name)}, Spec: v1.PodSpec{Priority: ptr.To(prio)}}
	if group != "" {
		p.Labels = map[string]string{schedv1beta1.LabelGroupName: group}
	}
	return p
}

// The dry run is skipped only when no pod could be a victim: none of lower priority, or those of
// lower priority all in gangs (which a plain pod may not preempt, unless system-critical).
func TestAnyVictim(t *testing.T) {
	node := func(pods ...*v1.Pod) fwk.NodeInfo {
		ni := framework.NewNodeInfo(pods...)
		ni.SetNode(&v1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n"}})
		return ni
	}
	equal := []fwk.NodeInfo{node(prioPod("a", 10, ""), prioPod("b", 20, "")), node()}
	require.False(t, anyVictim(prioPod("p", 10, ""), equal), "no pod of lower priority")
	require.True(t, anyVictim(prioPod("p", 11, ""), equal), "a plain pod of lower priority")

	gang := []fwk.NodeInfo{node(prioPod("m", 0, "train"))}
	require.False(t, anyVictim(prioPod("p", 100, ""), gang), "a gang member is not a plain pod's victim")
	require.True(t, anyVictim(prioPod("p", scheduling.SystemCriticalPriority, ""), gang), "system-critical pods may preempt gangs")
	require.False(t, anyVictim(prioPod("p", 100, ""), nil))
}
