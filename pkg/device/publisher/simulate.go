/*
Copyright 2026 The t9k Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package publisher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	"github.com/tensorstack/t9k/pkg/device"
	"github.com/tensorstack/t9k/pkg/device/fixtures"
)

// Simulator publishes NodeDevices for every Node matching Selector from one process, each from the
// fixture its device.tensorstack.dev/fixture label names (or DefaultFixture), with the instance index
// from device.tensorstack.dev/fixture-index or, without it, the node's position among the nodes of
// that fixture sorted by name. Hundreds of agent processes would not fit on a small test machine.
type Simulator struct {
	Publisher *Publisher
	Selector  labels.Selector
	// DefaultFixture is used for nodes without the fixture label; such nodes are skipped when empty.
	DefaultFixture string
	// SysfsDir holds one fake sysfs tree per fixture.
	SysfsDir string
	// TrackInUse fills status.inUse from the pods' GPU annotations.
	TrackInUse bool

	mu    sync.Mutex
	nodes map[string]*simNode
	trees map[string]string
}

type simNode struct {
	fixture string
	index   int
	disc    *device.Discoverer
}

// Stats counts what one sync did.
type Stats struct {
	Nodes, Created, Updated, Unchanged, LabelsChanged, Skipped int
}

// SyncOnce publishes for every matching node once.
func (s *Simulator) SyncOnce(ctx context.Context) (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nodes == nil {
		s.nodes, s.trees = map[string]*simNode{}, map[string]string{}
	}
	var st Stats
	var list corev1.NodeList
	if err := s.Publisher.Client.List(ctx, &list, client.MatchingLabelsSelector{Selector: s.selector()}); err != nil {
		return st, fmt.Errorf("list nodes: %w", err)
	}
	nodes := list.Items
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Name < nodes[j].Name })

	var inUse map[string][]corev1.Pod
	if s.TrackInUse {
		var pods corev1.PodList
		if err := s.Publisher.Client.List(ctx, &pods); err != nil {
			return st, fmt.Errorf("list pods: %w", err)
		}
		inUse = map[string][]corev1.Pod{}
		for _, p := range pods.Items {
			if _, ok := p.Annotations[v1.AnnotationGPUs]; ok && p.Spec.NodeName != "" {
				inUse[p.Spec.NodeName] = append(inUse[p.Spec.NodeName], p)
			}
		}
	}

	ordinal := map[string]int{}
	var errs []error
	for i := range nodes {
		node := &nodes[i]
		fixture := node.Labels[v1.LabelFixture]
		if fixture == "" {
			fixture = s.DefaultFixture
		}
		if fixture == "" {
			st.Skipped++
			continue
		}
		index := ordinal[fixture]
		ordinal[fixture]++
		if v, ok := node.Labels[v1.LabelFixtureIndex]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				errs = append(errs, fmt.Errorf("node %s: bad %s %q", node.Name, v1.LabelFixtureIndex, v))
				continue
			}
			index = n
		}
		sim, err := s.node(node.Name, fixture, index)
		if err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", node.Name, err))
			continue
		}
		status := sim.disc.Discover()
		status.InUse = InUseFromPods(inUse[node.Name], status.GPUs)
		res, err := s.Publisher.PublishForNode(ctx, node, status)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.Nodes++
		switch {
		case res.Created:
			st.Created++
		case res.Updated:
			st.Updated++
		default:
			st.Unchanged++
		}
		if res.LabelsChanged {
			st.LabelsChanged++
		}
	}
	return st, errors.Join(errs...)
}

func (s *Simulator) selector() labels.Selector {
	if s.Selector == nil {
		return labels.Everything()
	}
	return s.Selector
}

// node returns the simulated machine of a node, building it on first use or when its fixture changed.
func (s *Simulator) node(name, fixture string, index int) (*simNode, error) {
	if n, ok := s.nodes[name]; ok && n.fixture == fixture && n.index == index {
		return n, nil
	}
	m, err := fixtures.New(fixture, fixtures.Options{Seed: name, Index: index})
	if err != nil {
		return nil, err
	}
	root, err := s.tree(fixture, m)
	if err != nil {
		return nil, err
	}
	d := device.NewDiscoverer(device.Options{NVML: m.NVML, SysfsRoot: root, Fixture: fixture})
	d.Init()
	n := &simNode{fixture: fixture, index: index, disc: d}
	s.nodes[name] = n
	klog.V(1).InfoS("simulating node", "node", name, "fixture", fixture, "index", index)
	return n, nil
}

// tree writes a fixture's sysfs once; every instance of a fixture has the same PCI and RDMA layout.
func (s *Simulator) tree(fixture string, m *fixtures.Machine) (string, error) {
	if root, ok := s.trees[fixture]; ok {
		return root, nil
	}
	root := filepath.Join(s.SysfsDir, fixture)
	if err := os.RemoveAll(root); err != nil {
		return "", err
	}
	if err := m.Sysfs.Write(root); err != nil {
		return "", fmt.Errorf("write fake sysfs for %s: %w", fixture, err)
	}
	s.trees[fixture] = root
	return root, nil
}
