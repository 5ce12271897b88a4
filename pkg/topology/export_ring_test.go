package topology

// Random machines for the external test package's ring-yardstick property test
// (ring_prop_test.go), which needs pkg/topology/baseline and so cannot live inside.
var RandomSpec = randomSpec
