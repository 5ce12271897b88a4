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

import "testing"

// The old spelling "enable" is still in real manifests; Enabled wins when both are set.
func TestIsEnabledOldSpelling(t *testing.T) {
	yes, no := true, false
	for _, tc := range []struct {
		enabled, enable *bool
		want            bool
	}{
		{nil, nil, false},
		{&yes, nil, true},
		{nil, &yes, true},
		{&no, &yes, false},
		{&yes, &no, true},
	} {
		if got := (&DebugMode{Enabled: tc.enabled, Enable: tc.enable}).IsEnabled(); got != tc.want {
			t.Errorf("DebugMode{enabled: %v, enable: %v}.IsEnabled() = %v", tc.enabled, tc.enable, got)
		}
		if got := (&TorchrunConfig{Enabled: tc.enabled, Enable: tc.enable}).IsEnabled(); got != tc.want {
			t.Errorf("TorchrunConfig{enabled: %v, enable: %v}.IsEnabled() = %v", tc.enabled, tc.enable, got)
		}
	}
	if (*DebugMode)(nil).IsEnabled() || (*TorchrunConfig)(nil).IsEnabled() {
		t.Error("nil config reports enabled")
	}
}
