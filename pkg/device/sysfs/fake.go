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

package sysfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// FakeTree describes a sysfs tree to write for fixtures and tests: PCI functions and RDMA devices, laid
// out with the same symlinks the kernel makes.
type FakeTree struct {
	PCI  []FakePCI
	RDMA []FakeRDMA
}

// FakePCI is one PCI function.
type FakePCI struct {
	// Path from the root complex to the function, e.g. [pci0000:15 0000:15:01.0 0000:16:00.0 0000:17:00.0 0000:18:00.0].
	Path     []string
	NUMANode int
	// LocalCPUList is written to local_cpulist when set.
	LocalCPUList string
	// NetDevs are created under net/.
	NetDevs []string
}

// FakeRDMA is one RDMA device of a PCI function.
type FakeRDMA struct {
	Name  string
	BusID string
	Ports []FakePort
}

// FakePort is one port of an RDMA device. State is the sysfs form ("4: ACTIVE").
type FakePort struct {
	LinkLayer string
	State     string
	Rate      string
	// NetDev, when set, is written to gid_attrs/ndevs/0 (RoCE ports).
	NetDev string
}

// Write creates the tree under root.
func (t FakeTree) Write(root string) error {
	devices := filepath.Join(root, "sys", "devices")
	busDir := filepath.Join(root, "sys", "bus", "pci", "devices")
	classDir := filepath.Join(root, "sys", "class", "infiniband")
	for _, d := range []string{devices, busDir, classDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	where := map[string]string{} // bus id -> path below sys/devices
	for _, p := range t.PCI {
		if len(p.Path) < 2 {
			return fmt.Errorf("fake pci path %v: need a root complex and a device", p.Path)
		}
		rel := filepath.Join(p.Path...)
		dir := filepath.Join(devices, rel)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		// Every bridge on the way is a PCI function too.
		for i := 1; i < len(p.Path); i++ {
			where[p.Path[i]] = filepath.Join(p.Path[:i+1]...)
		}
		if err := writeFile(filepath.Join(dir, "numa_node"), strconv.Itoa(p.NUMANode)); err != nil {
			return err
		}
		if p.LocalCPUList != "" {
			if err := writeFile(filepath.Join(dir, "local_cpulist"), p.LocalCPUList); err != nil {
				return err
			}
		}
		for _, nd := range p.NetDevs {
			if err := os.MkdirAll(filepath.Join(dir, "net", nd), 0o755); err != nil {
				return err
			}
		}
	}
	for bdf, rel := range where {
		link := filepath.Join(busDir, bdf)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..", "..", "..", "devices", rel), link); err != nil {
			return err
		}
	}
	for _, r := range t.RDMA {
		rel, ok := where[r.BusID]
		if !ok {
			return fmt.Errorf("fake rdma %s: unknown pci function %s", r.Name, r.BusID)
		}
		ibDir := filepath.Join(devices, rel, "infiniband", r.Name)
		if err := os.MkdirAll(ibDir, 0o755); err != nil {
			return err
		}
		if err := os.Symlink(filepath.Join("..", ".."), filepath.Join(ibDir, "device")); err != nil {
			return err
		}
		up := strings.Repeat("../", 2) // sys/class/infiniband -> sys
		if err := os.Symlink(up+filepath.Join("devices", rel, "infiniband", r.Name), filepath.Join(classDir, r.Name)); err != nil {
			return err
		}
		for i, port := range r.Ports {
			pdir := filepath.Join(ibDir, "ports", strconv.Itoa(i+1))
			if err := os.MkdirAll(pdir, 0o755); err != nil {
				return err
			}
			for name, v := range map[string]string{"link_layer": port.LinkLayer, "state": port.State, "rate": port.Rate} {
				if err := writeFile(filepath.Join(pdir, name), v); err != nil {
					return err
				}
			}
			if port.NetDev != "" {
				nd := filepath.Join(pdir, "gid_attrs", "ndevs")
				if err := os.MkdirAll(nd, 0o755); err != nil {
					return err
				}
				if err := writeFile(filepath.Join(nd, "0"), port.NetDev); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func writeFile(p, v string) error {
	return os.WriteFile(p, []byte(v+"\n"), 0o644)
}
