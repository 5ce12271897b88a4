package topology

// Fixtures and helpers for the external test package (topology_test), which compares with
// pkg/topology/baseline (that package imports this one, so the comparison cannot live inside).
var (
	DGXH100Spec         = dgxH100Spec
	HGXA100Spec         = hgxA100Spec
	PCIeA100BridgedSpec = pcieA100BridgedSpec
	L40SSpec            = l40sSpec
	GB200TraySpec       = gb200TraySpec
	MustTopo            = mustTopo
	MaskOf              = maskOf
	MaskIndices         = maskIndices
)
