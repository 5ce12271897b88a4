// Package topology holds the pure placement algorithms of the t9k scheduler: the cluster's
// topology domain tree, the whole-gang planner, and the choice of GPUs (and RDMA NICs) on one
// node. It imports nothing from Kubernetes; a scheduler-plugin adapter turns Nodes and
// NodeDevices into NodeSpec and GPUTopologySpec values, keeps a Cluster in step with its cache
// (SetNode/RemoveNode/Allocate/Release) and asks Cluster.Plan once per gang.
//
// # Cluster model
//
// Levels are node label keys, innermost first: nvidia.com/gpu.clique (a GB200 NVL72 NVLink
// domain spans 18 trays), network.topology.nvidia.com/block, …/spine, topology.kubernetes.io/zone,
// then the whole cluster. A node missing a level's label is its own domain there — more
// precisely it takes its domain one level in, so a lone node is a singleton all the way up while
// a clique whose nodes lack block labels stays whole. Keys are paths from the outermost level,
// so the domains always form a tree.
//
// Every domain keeps its node count, total and free GPUs, and a histogram hist[f] of its nodes by
// free GPUs. Adding, removing, allocating on or releasing a node walks its path: O(levels). From
// the histogram, "how many pods of g GPUs fit" is Σ_f hist[f]·⌊f/g⌋ in O(G) (G = max GPUs per
// node + 1), without touching nodes.
//
// # Gang planning (Cluster.Plan)
//
// A gang is groups of identical members (count, GPUs, NICs, scalar resources such as cpu and
// memory). Policies: None (the whole cluster), Preferred (the smallest domain that fits, climbing
// levels), Required(level) (one domain of that level or smaller, else an UnschedulableError whose
// reason reads like "needs 64 GPUs (8 pods x 8) in one block; best block b1 has 48 free").
//
// Objective: among feasible candidate domains minimise (level, free GPUs − gang GPUs, key) —
// smallest level, then best fit (least capacity left over, against fragmentation). Candidates are
// screened with the histograms (a necessary condition, exact for one GPU size without binding
// scalars), ordered by the objective, and packed one by one until one succeeds: pods largest
// first, each to the node with the fewest free GPUs that fit (several members may share a node;
// the plan tracks what it took, so it never double-books), ties in locality order. Gang.Exclude
// lets the adapter rule out nodes its filters reject.
//
// Cost: O(domains·G) for screening plus O(nodes in the domain + pods·(G + log nodes)) per domain
// packed — O(nodes) per gang, not O(nodes × pods). Plan does not change the cluster; Apply (or
// Allocate per member at Reserve) does.
//
// # GPUs on one node (GPUTopology.Choose)
//
// A node's GPUs form a weighted graph: effective NVLinks per pair — min(active links) for two
// GPUs in one NVSwitch domain (NVML shows the switch, not the peer, as the remote end; NVIDIA's
// go-gpuallocator misses this and sees no NVLink on DGX/HGX/GB200) plus direct bridge links —
// and PCIe points per pair (PIX 50, PXB 40, PHB 30, NODE 20, SYS 10, as go-gpuallocator scores
// them). Quality orders k-sets lexicographically by: NVLink sum over pairs, PCIe sum over pairs,
// NIC closeness (when the pod wants RDMA NICs), then the same two sums over the free GPUs left
// behind (so bridged pairs and switch groups are not broken needlessly), then the smallest index
// list. Choose enumerates all C(free, k) sets (≤ 70 on an 8-GPU node, microseconds) with the sums
// carried incrementally; above ExactSearchLimit subsets it falls back to a greedy search. The NICs
// for a pod are those with the best level to any of its GPUs. Quality.NodeScore feeds a Score
// plugin.
package topology
