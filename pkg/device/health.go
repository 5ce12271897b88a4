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

package device

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"k8s.io/klog/v2"

	v1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
)

// criticalXIDs are the XIDs after which a GPU must not get new work until it is reset: the device
// needs operator action, unlike application XIDs (13, 31, 43, 45, 68, ...) that only kill one process.
var criticalXIDs = map[uint64]string{
	48:  "double-bit ECC error",
	63:  "ECC page retirement or row remapping event",
	64:  "ECC page retirement or row remapping failure",
	74:  "NVLink error",
	79:  "GPU has fallen off the bus",
	95:  "uncontained ECC error",
	119: "GSP RPC timeout",
	120: "GSP error",
}

// HealthForXID maps an XID to the GPU health it implies. ok is false for XIDs that leave the GPU healthy.
func HealthForXID(xid uint64) (h v1.GPUHealth, critical bool) {
	msg, critical := criticalXIDs[xid]
	if !critical {
		return v1.GPUHealth{Healthy: true}, false
	}
	return v1.GPUHealth{Healthy: false, Reason: fmt.Sprintf("XID%d", xid), Message: fmt.Sprintf("XID %d: %s", xid, msg)}, true
}

// HealthTracker remembers GPU health by UUID. A GPU marked unhealthy stays so for the life of the
// process: critical XIDs need a GPU reset, after which the agent restarts with the driver anyway.
type HealthTracker struct {
	mu      sync.Mutex
	health  map[string]v1.GPUHealth
	lastXID map[string]uint64
	changed chan struct{}
	subs    []chan struct{}
}

// NewHealthTracker returns a tracker in which every GPU is healthy.
func NewHealthTracker() *HealthTracker {
	return &HealthTracker{health: map[string]v1.GPUHealth{}, lastXID: map[string]uint64{}, changed: make(chan struct{}, 1)}
}

// Get returns the health of a GPU.
func (t *HealthTracker) Get(uuid string) v1.GPUHealth {
	t.mu.Lock()
	defer t.mu.Unlock()
	if h, ok := t.health[uuid]; ok {
		return h
	}
	return v1.GPUHealth{Healthy: true}
}

// ObserveXID records an XID event for a GPU and reports whether it made the GPU unhealthy.
func (t *HealthTracker) ObserveXID(uuid string, xid uint64) bool {
	t.mu.Lock()
	t.lastXID[uuid] = xid
	t.mu.Unlock()
	h, critical := HealthForXID(xid)
	if !critical {
		klog.V(2).InfoS("non-critical XID", "uuid", uuid, "xid", xid)
		return false
	}
	t.mu.Lock()
	if old, ok := t.health[uuid]; ok && !old.Healthy {
		t.mu.Unlock()
		return false // keep the first reason
	}
	t.health[uuid] = h
	subs := append([]chan struct{}{t.changed}, t.subs...)
	t.mu.Unlock()
	klog.InfoS("GPU unhealthy", "uuid", uuid, "xid", xid, "reason", h.Reason, "message", h.Message)
	for _, c := range subs {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	return true
}

// Changed is signalled (coalesced) whenever a GPU becomes unhealthy. It has one reader (the
// publisher loop); other consumers use Subscribe.
func (t *HealthTracker) Changed() <-chan struct{} { return t.changed }

// Subscribe returns a new channel signalled (coalesced) whenever a GPU becomes unhealthy, so the
// device plugin and the publisher each see every change.
func (t *HealthTracker) Subscribe() <-chan struct{} {
	c := make(chan struct{}, 1)
	t.mu.Lock()
	t.subs = append(t.subs, c)
	t.mu.Unlock()
	return c
}

// LastXID is the most recent XID seen on a GPU, critical or not (DCGM_FI_DEV_XID_ERRORS).
func (t *HealthTracker) LastXID(uuid string) (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	x, ok := t.lastXID[uuid]
	return x, ok
}

// WatchXIDs registers for critical XID events on every GPU and feeds them to the tracker until ctx
// ends. It returns early, with an error, when the driver cannot deliver events.
func WatchXIDs(ctx context.Context, lib nvml.Interface, t *HealthTracker) (err error) {
	var set nvml.EventSet
	var uuids []string // for events that name no device
	if err := safely("event registration", func() {
		s, ret := lib.EventSetCreate()
		if ret != nvml.SUCCESS {
			panic(fmt.Sprintf("EventSetCreate: %s", ret.Error()))
		}
		set = s
		n, ret := lib.DeviceGetCount()
		if ret != nvml.SUCCESS {
			panic(fmt.Sprintf("DeviceGetCount: %s", ret.Error()))
		}
		for i := 0; i < n; i++ {
			dev, ret := lib.DeviceGetHandleByIndex(i)
			if ret != nvml.SUCCESS {
				continue
			}
			u, _ := dev.GetUUID()
			uuids = append(uuids, u)
			if sup, ret := dev.GetSupportedEventTypes(); ret == nvml.SUCCESS && sup&nvml.EventTypeXidCriticalError == 0 {
				continue
			}
			if ret := dev.RegisterEvents(nvml.EventTypeXidCriticalError, set); ret != nvml.SUCCESS {
				klog.InfoS("cannot watch XIDs", "uuid", u, "ret", ret.Error())
			}
		}
	}); err != nil {
		return err
	}
	defer func() { _ = safely("EventSet.Free", func() { set.Free() }) }()
	for ctx.Err() == nil {
		var ev nvml.EventData
		var ret nvml.Return
		if err := safely("EventSet.Wait", func() { ev, ret = set.Wait(1000) }); err != nil {
			return err
		}
		switch {
		case ret == nvml.ERROR_TIMEOUT:
			continue
		case ret != nvml.SUCCESS:
			klog.V(2).InfoS("EventSet.Wait failed", "ret", ret.Error())
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		case ev.EventType != nvml.EventTypeXidCriticalError:
			continue
		}
		if ev.Device == nil { // NVML: an event without a device concerns all of them
			for _, u := range uuids {
				t.ObserveXID(u, ev.EventData)
			}
			continue
		}
		var u string
		_ = safely("GetUUID", func() { u, _ = ev.Device.GetUUID() })
		t.ObserveXID(u, ev.EventData)
	}
	return nil
}
