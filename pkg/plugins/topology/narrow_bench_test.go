package topology

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"
	fwk "k8s.io/kube-scheduler/framework"
	"k8s.io/kubernetes/pkg/scheduler/framework"
)

// PreFilter's scan of a saturated 5000-node snapshot (every node full) for a 1-GPU pod: a fresh
// scan reads each node's counts; the memo reads each node's generation.
func BenchmarkGPUCandidates5000Full(b *testing.B) {
	var nodes []fwk.NodeInfo
	for i := 0; i < 5000; i++ {
		name := fmt.Sprintf("n%d", i)
		ni := framework.NewNodeInfo()
		ni.SetNode(testNode(name, fmt.Sprintf("b%d", i/16), fmt.Sprintf("s%d", i/64), 8))
		p := gpuPod(name+"-p", types.UID(name+"-p"), name, 8, "")
		p.Spec.Containers[0].Resources.Requests = p.Spec.Containers[0].Resources.Limits
		ni.AddPod(p)
		nodes = append(nodes, ni)
	}
	for _, tc := range []struct {
		name string
		memo *freeMemo
	}{{"fresh", nil}, {"memo", &freeMemo{}}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, n := gpuCandidates(nodes, gpuRes, 1, 1250, tc.memo); n != 0 {
					b.Fatal(n)
				}
			}
		})
	}
}
