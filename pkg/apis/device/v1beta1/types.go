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

package v1beta1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NodeDevices is the GPU and RDMA NIC inventory of one Node and their topology, as the device-agent on
// that node discovered it. It is cluster-scoped, named after its Node and owned by it (deleted with it).
//
// All content is observed state, so it lives in status and there is no spec. The status subresource is
// deliberately NOT enabled: the agent is the only writer, and without the subresource it creates or
// updates the whole object in one request; with it, every create would need a second write to /status.
//
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=nd
// +kubebuilder:printcolumn:name="GPUs",type=integer,JSONPath=`.status.gpuCount`
// +kubebuilder:printcolumn:name="Product",type=string,JSONPath=`.status.gpuProduct`
// +kubebuilder:printcolumn:name="NICs",type=integer,JSONPath=`.status.nicCount`,priority=1
// +kubebuilder:printcolumn:name="Clique",type=string,JSONPath=`.status.clique`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type NodeDevices struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Status NodeDevicesStatus `json:"status,omitempty"`
}

// NodeDevicesStatus is everything the agent observed on the node.
type NodeDevicesStatus struct {
	// Fixture names the simulated machine this inventory came from; empty on real hardware.
	// +optional
	Fixture string `json:"fixture,omitempty"`

	// Driver holds the NVIDIA driver and CUDA versions; empty when NVML is not available.
	// +optional
	Driver DriverInfo `json:"driver,omitempty"`

	// GPUCount is len(gpus), kept as a field for printer columns and the nvidia.com/gpu.count label.
	GPUCount int32 `json:"gpuCount"`

	// GPUProduct is the GFD-style product name (nvidia.com/gpu.product) shared by all GPUs, or "mixed".
	// +optional
	GPUProduct string `json:"gpuProduct,omitempty"`

	// GPUMemoryMiB is the smallest GPU's framebuffer in MiB (nvidia.com/gpu.memory).
	// +optional
	GPUMemoryMiB int64 `json:"gpuMemoryMiB,omitempty"`

	// Clique is the multi-node NVLink domain "<clusterUUID>.<cliqueID>" (nvidia.com/gpu.clique), set
	// only when every GPU of the node reports the same one, as GFD does.
	// +optional
	Clique string `json:"clique,omitempty"`

	// NICCount is len(nics).
	NICCount int32 `json:"nicCount"`

	// GPUs, ordered by NVML index.
	// +listType=map
	// +listMapKey=index
	// +optional
	GPUs []GPU `json:"gpus,omitempty"`

	// NICs are the RDMA devices (one entry per ibdev port), ordered by name and port.
	// +listType=map
	// +listMapKey=name
	// +listMapKey=port
	// +optional
	NICs []NIC `json:"nics,omitempty"`

	// InUse lists the GPUs allocated to pods on this node, ordered by GPU index.
	// +listType=map
	// +listMapKey=index
	// +optional
	InUse []GPUAllocation `json:"inUse,omitempty"`

	// Conditions of the discovery itself, e.g. NVMLAvailable.
	// +listType=map
	// +listMapKey=type
	// +optional
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// DriverInfo holds driver-level versions as NVML reports them.
type DriverInfo struct {
	// +optional
	DriverVersion string `json:"driverVersion,omitempty"`
	// +optional
	CUDADriverVersion string `json:"cudaDriverVersion,omitempty"`
	// +optional
	NVMLVersion string `json:"nvmlVersion,omitempty"`
}

// GPU is one physical GPU.
type GPU struct {
	// Index is the NVML device index (what nvidia-smi shows; the CUDA order with CUDA_DEVICE_ORDER=PCI_BUS_ID).
	// +kubebuilder:validation:Minimum=0
	Index int32 `json:"index"`
	// UUID is the NVML UUID, "GPU-<uuid>".
	UUID string `json:"uuid"`
	// Product is the NVML name in GFD form: spaces replaced by dashes, e.g. NVIDIA-H100-80GB-HBM3.
	Product string `json:"product"`
	// MemoryMiB is the total framebuffer in MiB.
	MemoryMiB int64 `json:"memoryMiB"`
	// PCIBusID in sysfs form, "0000:1b:00.0".
	PCIBusID string `json:"pciBusID"`
	// NUMANode the GPU is attached to; -1 when unknown.
	NUMANode int32 `json:"numaNode"`
	// CPUAffinity is the CPU list (as in /sys/.../local_cpulist) closest to the GPU, e.g. "0-55,112-167".
	// +optional
	CPUAffinity string `json:"cpuAffinity,omitempty"`
	// PCIeRoot is the PCI root complex, "pci<domain>:<bus>" (as resource.kubernetes.io/pcieRoot).
	// +optional
	PCIeRoot string `json:"pcieRoot,omitempty"`
	// PCIeSwitch is the bus id of the upstream port of the PCIe switch nearest to the GPU; devices with
	// the same value are PIX to each other. Empty when the GPU hangs directly off a root port.
	// +optional
	PCIeSwitch string `json:"pcieSwitch,omitempty"`
	// NVLink describes the GPU's NVLinks; absent when it has none.
	// +optional
	NVLink *GPUNVLink `json:"nvlink,omitempty"`
	// Clique is the multi-node NVLink domain "<clusterUUID>.<cliqueID>" from the GPU's fabric info
	// (GB200 NVL72: shared by the 72 GPUs of the 18 trays of a rack). Empty when not fabric-attached.
	// +optional
	Clique string `json:"clique,omitempty"`
	// MIG is the GPU's MIG state; absent when the GPU does not support MIG.
	// +optional
	MIG *GPUMIG `json:"mig,omitempty"`
	// Health of the GPU.
	Health GPUHealth `json:"health"`
	// NICs gives the PCIe distance from this GPU to every RDMA NIC of the node, ordered by NIC name.
	// +listType=map
	// +listMapKey=nic
	// +optional
	NICs []GPUNICLevel `json:"nics,omitempty"`
}

// GPUNVLink describes the NVLinks of one GPU.
type GPUNVLink struct {
	// Version is the NVLink version (3 on A100, 4 on H100, 5 on B200/GB200).
	// +optional
	Version int32 `json:"version,omitempty"`
	// ActiveLinks is the number of links in state enabled.
	ActiveLinks int32 `json:"activeLinks"`
	// NVSwitchDomain is set when the links end at NVSwitches: GPUs with the same value reach each other at
	// full NVLink bandwidth. "node" for an NVSwitch baseboard inside this node (DGX/HGX); the clique
	// "<clusterUUID>.<cliqueID>" for a multi-node NVLink domain (GB200 NVL72).
	// +optional
	NVSwitchDomain string `json:"nvswitchDomain,omitempty"`
	// Peers are the GPUs of this node reachable over NVLink, ordered by index.
	// +listType=map
	// +listMapKey=index
	// +optional
	Peers []NVLinkPeer `json:"peers,omitempty"`
}

// NVLinkVia says how an NVLink peer is reached.
// +kubebuilder:validation:Enum=Bridge;NVSwitch
type NVLinkVia string

const (
	// NVLinkViaBridge: direct GPU-to-GPU links (NVLink bridge cards, or a direct mesh).
	NVLinkViaBridge NVLinkVia = "Bridge"
	// NVLinkViaNVSwitch: both GPUs' links end at NVSwitches.
	NVLinkViaNVSwitch NVLinkVia = "NVSwitch"
)

// NVLinkPeer is one GPU reachable over NVLink.
type NVLinkPeer struct {
	// Index of the peer GPU.
	Index int32 `json:"index"`
	// Links is the effective number of links between the pair: counted links for bridges, the smaller of
	// the two GPUs' active switch links through NVSwitches (nvidia-smi topo -m shows NV<Links>).
	Links int32 `json:"links"`
	// Via is Bridge or NVSwitch.
	Via NVLinkVia `json:"via"`
}

// MIGMode is whether MIG is on.
// +kubebuilder:validation:Enum=Enabled;Disabled
type MIGMode string

const (
	MIGEnabled  MIGMode = "Enabled"
	MIGDisabled MIGMode = "Disabled"
)

// GPUMIG is the MIG state of a MIG-capable GPU.
type GPUMIG struct {
	// Mode is the current MIG mode.
	Mode MIGMode `json:"mode"`
	// PendingMode is set when a mode change waits for a GPU reset.
	// +optional
	PendingMode MIGMode `json:"pendingMode,omitempty"`
	// Devices are the GPU instances, ordered by GPU instance id.
	// +listType=map
	// +listMapKey=gpuInstanceID
	// +optional
	Devices []MIGDevice `json:"devices,omitempty"`
}

// MIGDevice is one GPU instance.
type MIGDevice struct {
	// Profile in the nvidia.com/mig-<profile> form, e.g. "1g.10gb".
	Profile string `json:"profile"`
	// GPUInstanceID is the NVML GPU instance id.
	GPUInstanceID int32 `json:"gpuInstanceID"`
	// MemoryMiB of the instance.
	MemoryMiB int64 `json:"memoryMiB"`
	// ComputeInstances is the number of compute instances created in it.
	// +optional
	ComputeInstances int32 `json:"computeInstances,omitempty"`
	// UUIDs of its MIG devices ("MIG-<uuid>", one per compute instance), what NVIDIA_VISIBLE_DEVICES
	// takes. Empty when the driver only lets privileged callers enumerate MIG.
	// +optional
	UUIDs []string `json:"uuids,omitempty"`
}

// GPUHealth is the agent's verdict on a GPU.
type GPUHealth struct {
	// Healthy is false once a critical XID (48, 63, 64, 74, 79, ...) was seen; a GPU stays unhealthy until
	// the agent restarts (the GPU needs a reset or the node a reboot anyway).
	Healthy bool `json:"healthy"`
	// Reason is a CamelCase reason when unhealthy, e.g. "XID79".
	// +optional
	Reason string `json:"reason,omitempty"`
	// Message says what happened, for people.
	// +optional
	Message string `json:"message,omitempty"`
}

// PCIeLevel is the PCIe distance between two devices, named as nvidia-smi topo -m and NCCL do.
// +kubebuilder:validation:Enum=PIX;PXB;PHB;NODE;SYS
type PCIeLevel string

const (
	// PCIeLevelPIX: at most one PCIe switch between them.
	PCIeLevelPIX PCIeLevel = "PIX"
	// PCIeLevelPXB: several PCIe switches, not crossing a host bridge.
	PCIeLevelPXB PCIeLevel = "PXB"
	// PCIeLevelPHB: through a PCIe host bridge (the CPU root complex).
	PCIeLevelPHB PCIeLevel = "PHB"
	// PCIeLevelNODE: between host bridges within one NUMA node.
	PCIeLevelNODE PCIeLevel = "NODE"
	// PCIeLevelSYS: across NUMA nodes (SMP interconnect).
	PCIeLevelSYS PCIeLevel = "SYS"
)

// GPUNICLevel is the PCIe distance from a GPU to one NIC.
type GPUNICLevel struct {
	// NIC is the ibdev name, e.g. mlx5_0.
	NIC string `json:"nic"`
	// Level is the PCIe distance.
	Level PCIeLevel `json:"level"`
}

// LinkLayer of an RDMA port.
// +kubebuilder:validation:Enum=InfiniBand;Ethernet;Unknown
type LinkLayer string

const (
	LinkLayerInfiniBand LinkLayer = "InfiniBand"
	// LinkLayerEthernet is RoCE.
	LinkLayerEthernet LinkLayer = "Ethernet"
	LinkLayerUnknown  LinkLayer = "Unknown"
)

// NIC is one port of an RDMA device, from /sys/class/infiniband.
type NIC struct {
	// Name is the ibdev name, e.g. mlx5_0.
	Name string `json:"name"`
	// Port is the port number (1-based).
	Port int32 `json:"port"`
	// NetDev is the network interface of the PCI function, e.g. ibp24s0 or ens1f0np0.
	// +optional
	NetDev string `json:"netdev,omitempty"`
	// LinkLayer is InfiniBand or Ethernet (RoCE).
	LinkLayer LinkLayer `json:"linkLayer"`
	// State is the logical port state without its number, e.g. ACTIVE or DOWN.
	State string `json:"state"`
	// Rate is the port rate as sysfs shows it, e.g. "400 Gb/sec (4X NDR)".
	// +optional
	Rate string `json:"rate,omitempty"`
	// RateGbps is the numeric part of Rate.
	// +optional
	RateGbps int32 `json:"rateGbps,omitempty"`
	// PCIBusID in sysfs form, "0000:18:00.0".
	PCIBusID string `json:"pciBusID"`
	// NUMANode; -1 when unknown.
	NUMANode int32 `json:"numaNode"`
	// PCIeRoot is the PCI root complex, "pci<domain>:<bus>".
	// +optional
	PCIeRoot string `json:"pcieRoot,omitempty"`
	// PCIeSwitch is the upstream port of the nearest PCIe switch (see GPU.PCIeSwitch).
	// +optional
	PCIeSwitch string `json:"pcieSwitch,omitempty"`
}

// GPUAllocation says which pod holds a GPU.
type GPUAllocation struct {
	// Index of the GPU.
	Index int32 `json:"index"`
	// UUID of the GPU.
	// +optional
	UUID string `json:"uuid,omitempty"`
	// Namespace of the pod.
	Namespace string `json:"namespace"`
	// Pod name.
	Pod string `json:"pod"`
}

// +kubebuilder:object:root=true

// NodeDevicesList is a list of NodeDevices.
type NodeDevicesList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NodeDevices `json:"items"`
}
