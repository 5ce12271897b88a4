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

// Package sysfs reads PCI and RDMA facts from a sysfs tree whose root is configurable, so that tests and
// fixtures can point it at a fake tree.
package sysfs

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
)

// FS is a sysfs tree rooted at Root ("/" on a real node).
type FS struct {
	Root string
}

// New returns an FS rooted at root ("" means "/").
func New(root string) FS {
	if root == "" {
		root = "/"
	}
	return FS{Root: root}
}

func (f FS) path(p ...string) string {
	return filepath.Join(append([]string{f.Root}, p...)...)
}

// PCIDevice is where a PCI function sits in the PCI tree.
type PCIDevice struct {
	// BusID in sysfs form, 0000:18:00.0.
	BusID string
	// Path is the resolved device path below /sys/devices: root complex, bridges..., the device itself,
	// e.g. [pci0000:15 0000:15:01.0 0000:16:00.0 0000:17:00.0 0000:18:00.0].
	Path []string
	// NUMANode from numa_node; -1 when unknown.
	NUMANode int32
}

// Root is the root complex, "pci<domain>:<bus>".
func (d PCIDevice) Root() string {
	if len(d.Path) == 0 {
		return ""
	}
	return d.Path[0]
}

// Switch is the upstream port of the PCIe switch right above the device: the device's parent is a
// downstream port, whose parent is the upstream port. Empty when the device hangs off a root port.
func (d PCIDevice) Switch() string {
	// [root complex, root port, upstream port, downstream port, device]
	if len(d.Path) < 5 {
		return ""
	}
	return d.Path[len(d.Path)-3]
}

// PCIDevice resolves /sys/bus/pci/devices/<busID>.
func (f FS) PCIDevice(busID string) (PCIDevice, error) {
	busID = NormalizeBusID(busID)
	dev := PCIDevice{BusID: busID, NUMANode: -1}
	p, err := f.resolve(f.path("sys", "bus", "pci", "devices", busID))
	if err != nil {
		return dev, err
	}
	dev.Path = p
	if n, err := readInt(f.path("sys", "bus", "pci", "devices", busID, "numa_node")); err == nil {
		dev.NUMANode = int32(n)
	}
	return dev, nil
}

// resolve follows symlinks and returns the components below <root>/sys/devices.
func (f FS) resolve(p string) ([]string, error) {
	real, err := filepath.EvalSymlinks(p)
	if err != nil {
		return nil, err
	}
	base, err := filepath.EvalSymlinks(f.path("sys", "devices"))
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(base, real)
	if err != nil || strings.HasPrefix(rel, "..") {
		return nil, fmt.Errorf("%s resolves to %s, outside %s", p, real, base)
	}
	var comps []string
	for _, c := range strings.Split(rel, string(filepath.Separator)) {
		// Virtual devices and non-PCI nodes (e.g. platform) are kept; only the PCI prefix matters
		// for levels and it is always first.
		if c != "" && c != "." {
			comps = append(comps, c)
		}
	}
	if len(comps) == 0 {
		return nil, fmt.Errorf("%s: empty device path", p)
	}
	return comps, nil
}

// Level is the PCIe distance between two devices, as nvidia-smi topo -m names it.
func Level(a, b PCIDevice) devicev1beta1.PCIeLevel {
	if len(a.Path) == 0 || len(b.Path) == 0 || a.Path[0] != b.Path[0] {
		if a.NUMANode == b.NUMANode {
			return devicev1beta1.PCIeLevelNODE
		}
		return devicev1beta1.PCIeLevelSYS
	}
	common := 0
	for common < len(a.Path) && common < len(b.Path) && a.Path[common] == b.Path[common] {
		common++
	}
	if common == 1 { // only the root complex
		return devicev1beta1.PCIeLevelPHB
	}
	// Below the deepest common bridge each side has at most [downstream port, device]: one switch.
	if len(a.Path)-common <= 2 && len(b.Path)-common <= 2 {
		return devicev1beta1.PCIeLevelPIX
	}
	return devicev1beta1.PCIeLevelPXB
}

// NormalizeBusID turns NVML's "00000000:1B:00.0" into sysfs's "0000:1b:00.0".
func NormalizeBusID(id string) string {
	id = strings.ToLower(strings.TrimSpace(id))
	dom, rest, ok := strings.Cut(id, ":")
	if !ok || !strings.Contains(rest, ":") {
		return id
	}
	if len(dom) > 4 {
		dom = dom[len(dom)-4:]
	}
	for len(dom) < 4 {
		dom = "0" + dom
	}
	return dom + ":" + rest
}

// RDMADevices lists every port of every device under /sys/class/infiniband, ordered by name and port.
// A missing class directory (no RDMA stack) is not an error.
func (f FS) RDMADevices() ([]devicev1beta1.NIC, map[string]PCIDevice, error) {
	classDir := f.path("sys", "class", "infiniband")
	entries, err := os.ReadDir(classDir)
	if os.IsNotExist(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var nics []devicev1beta1.NIC
	pci := map[string]PCIDevice{}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	// mlx5_2 before mlx5_10, as nvidia-smi numbers them.
	sort.Slice(names, func(i, j int) bool { return NaturalLess(names[i], names[j]) })
	for _, name := range names {
		devDir := filepath.Join(classDir, name)
		comps, err := f.resolve(filepath.Join(devDir, "device"))
		if err != nil {
			return nil, nil, fmt.Errorf("rdma device %s: %w", name, err)
		}
		pd, err := f.PCIDevice(comps[len(comps)-1])
		if err != nil {
			return nil, nil, fmt.Errorf("rdma device %s: %w", name, err)
		}
		pci[name] = pd
		netdevs := listDir(filepath.Join(devDir, "device", "net"))
		ports := listDir(filepath.Join(devDir, "ports"))
		sortNumeric(ports)
		for i, port := range ports {
			pn, err := strconv.Atoi(port)
			if err != nil {
				continue
			}
			pdir := filepath.Join(devDir, "ports", port)
			nic := devicev1beta1.NIC{
				Name:       name,
				Port:       int32(pn),
				LinkLayer:  linkLayer(readString(filepath.Join(pdir, "link_layer"))),
				State:      portState(readString(filepath.Join(pdir, "state"))),
				Rate:       readString(filepath.Join(pdir, "rate")),
				PCIBusID:   pd.BusID,
				NUMANode:   pd.NUMANode,
				PCIeRoot:   pd.Root(),
				PCIeSwitch: pd.Switch(),
			}
			nic.RateGbps = rateGbps(nic.Rate)
			// The GID table names the netdev of a RoCE port; otherwise the PCI function's netdevs are
			// in port order.
			if nd := readString(filepath.Join(pdir, "gid_attrs", "ndevs", "0")); nd != "" {
				nic.NetDev = nd
			} else if i < len(netdevs) {
				nic.NetDev = netdevs[i]
			}
			nics = append(nics, nic)
		}
	}
	return nics, pci, nil
}

func linkLayer(s string) devicev1beta1.LinkLayer {
	switch strings.ToLower(s) {
	case "infiniband":
		return devicev1beta1.LinkLayerInfiniBand
	case "ethernet":
		return devicev1beta1.LinkLayerEthernet
	}
	return devicev1beta1.LinkLayerUnknown
}

// portState turns "4: ACTIVE" into "ACTIVE".
func portState(s string) string {
	if _, after, ok := strings.Cut(s, ":"); ok {
		return strings.TrimSpace(after)
	}
	if s == "" {
		return "UNKNOWN"
	}
	return s
}

// rateGbps reads the number of "400 Gb/sec (4X NDR)".
func rateGbps(s string) int32 {
	f := strings.Fields(s)
	if len(f) == 0 {
		return 0
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0
	}
	return int32(v)
}

func readString(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func readInt(p string) (int, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func listDir(p string) []string {
	entries, err := os.ReadDir(p)
	if err != nil {
		return nil
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// NaturalLess orders names by their text, then by their trailing number: mlx5_2 < mlx5_10.
func NaturalLess(a, b string) bool {
	ap, an := splitNum(a)
	bp, bn := splitNum(b)
	if ap != bp {
		return ap < bp
	}
	if an != bn {
		return an < bn
	}
	return a < b
}

func splitNum(s string) (string, int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == len(s) {
		return s, -1
	}
	n, _ := strconv.Atoi(s[i:])
	return s[:i], n
}

func sortNumeric(s []string) {
	num := func(x string) int { n, _ := strconv.Atoi(x); return n }
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && num(s[j]) < num(s[j-1]); j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
