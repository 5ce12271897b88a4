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

package deviceplugin

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"k8s.io/klog/v2"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
)

// controlDevices are shared by every CUDA process; without them /dev/nvidiaN alone is useless.
var controlDevices = []string{"nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"}

// NVMLDeviceSpecs returns the DeviceSpecs function for real GPUs: /dev/nvidia<minor> of each GPU
// (the minor number, not the NVML index: they differ when the driver numbers devices otherwise) plus
// the control devices present under devRoot ("/dev" normally). Needed when the runtime does not
// inject devices from NVIDIA_VISIBLE_DEVICES itself (no NVIDIA runtime or CDI).
func NVMLDeviceSpecs(lib nvml.Interface, devRoot string) func([]v1.GPU) []*pluginapi.DeviceSpec {
	return func(gpus []v1.GPU) []*pluginapi.DeviceSpec {
		var out []*pluginapi.DeviceSpec
		add := func(name string) {
			host := filepath.Join(devRoot, name)
			out = append(out, &pluginapi.DeviceSpec{ContainerPath: "/dev/" + name, HostPath: host, Permissions: "rw"})
		}
		for _, g := range gpus {
			minor, err := minorNumber(lib, g.UUID)
			if err != nil {
				klog.ErrorS(err, "no device node for GPU", "uuid", g.UUID)
				continue
			}
			add(fmt.Sprintf("nvidia%d", minor))
		}
		for _, c := range controlDevices {
			if _, err := os.Stat(filepath.Join(devRoot, c)); err == nil {
				add(c)
			}
		}
		return out
	}
}

func minorNumber(lib nvml.Interface, uuid string) (minor int, err error) {
	defer func() {
		if r := recover(); r != nil { // a mock without the call
			err = fmt.Errorf("NVML minor number of %s: %v", uuid, r)
		}
	}()
	dev, ret := lib.DeviceGetHandleByUUID(uuid)
	if ret != nvml.SUCCESS {
		return 0, fmt.Errorf("NVML handle of %s: %s", uuid, ret.Error())
	}
	m, ret := dev.GetMinorNumber()
	if ret != nvml.SUCCESS {
		return 0, fmt.Errorf("NVML minor number of %s: %s", uuid, ret.Error())
	}
	return m, nil
}
