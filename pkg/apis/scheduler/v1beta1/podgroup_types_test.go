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

func TestParseTopologyPolicy(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    TopologyPolicy
		wantErr bool
	}{
		{in: "None", want: TopologyPolicy{Mode: TopologyNone}},
		{in: "Preferred", want: TopologyPolicy{Mode: TopologyPreferred}},
		{in: " Required:nvidia.com/gpu.clique ", want: TopologyPolicy{Mode: TopologyRequired, Level: "nvidia.com/gpu.clique"}},
		{in: "Required", wantErr: true},
		{in: "Required:", wantErr: true},
		{in: "Preferred:topology.kubernetes.io/zone", wantErr: true},
		{in: "required:x", wantErr: true},
		{in: "", wantErr: true},
	} {
		got, err := ParseTopologyPolicy(tc.in)
		if (err != nil) != tc.wantErr {
			t.Errorf("ParseTopologyPolicy(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			continue
		}
		if err == nil {
			if got != tc.want {
				t.Errorf("ParseTopologyPolicy(%q) = %+v, want %+v", tc.in, got, tc.want)
			}
			if back, _ := ParseTopologyPolicy(got.String()); back != got {
				t.Errorf("String() of %+v does not parse back: %q", got, got.String())
			}
		}
	}
}
