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
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A list with one malformed template still decodes: the bad item carries the error and keeps its
// stored bytes; the good one decodes fully.
func TestMalformedTemplateDoesNotFailTheList(t *testing.T) {
	list := `{"items":[
	  {"metadata":{"name":"bad"},"spec":{"replicaSpecs":[{"type":"w","template":{"spec":{"containers":[{"image":"x","resources":{"requests":{"cpu":"NaN"}}}]}}}]}},
	  {"metadata":{"name":"sc"},"spec":{"replicaSpecs":[{"type":"w","template":{"spec":{"securityContext":"x","containers":[{"image":"x"}]}}}]}},
	  {"metadata":{"name":"good"},"spec":{"replicaSpecs":[{"type":"w","template":{"spec":{"containers":[{"image":"busybox","resources":{"requests":{"cpu":"2"}}}]}}}]}}]}`
	var l GenericJobList
	require.NoError(t, json.Unmarshal([]byte(list), &l))
	require.Len(t, l.Items, 3)

	bad := l.Items[0].Spec.ReplicaSpecs[0].Template
	assert.Contains(t, bad.DecodeError, "quantities must match")
	assert.Empty(t, bad.Spec.Containers)
	assert.Contains(t, l.Items[1].Spec.ReplicaSpecs[0].Template.DecodeError, "securityContext")

	good := l.Items[2].Spec.ReplicaSpecs[0].Template
	assert.Empty(t, good.DecodeError)
	assert.Equal(t, "2", good.Spec.Containers[0].Resources.Requests.Cpu().String())

	// The bad template is written back as stored, not as an empty template.
	out, err := json.Marshal(l.Items[0])
	require.NoError(t, err)
	assert.Contains(t, string(out), `"cpu":"NaN"`)

	// Templates finds both, with their paths and errors.
	refs := Templates(&l.Items[0])
	require.Len(t, refs, 1)
	assert.Equal(t, "spec.replicaSpecs[0].template", refs[0].Path)
	assert.NotEmpty(t, refs[0].DecodeError())
	// A copy keeps the error (deepcopy of the hidden fields).
	cp := l.Items[0].DeepCopy()
	assert.Equal(t, bad.DecodeError, cp.Spec.ReplicaSpecs[0].Template.DecodeError)
}

// Templates walks every kind's template fields, inline and nested, and nothing else.
func TestTemplatesPaths(t *testing.T) {
	mpi := &MPIJob{Spec: MPIJobSpec{Worker: &MPIWorker{}, ReplicaSpecs: []ReplicaSpec{{Type: "worker"}, {Type: "launcher"}}}}
	var paths []string
	for _, r := range Templates(mpi) {
		paths = append(paths, r.Path)
	}
	assert.Equal(t, "spec.replicaSpecs[0].template spec.replicaSpecs[1].template spec.worker.template", strings.Join(paths, " "))

	beam := &BeamJob{}
	refs := Templates(beam)
	require.Len(t, refs, 1)
	assert.Equal(t, "spec.jobTemplate", refs[0].Path)
	assert.NotNil(t, refs[0].Job)
}

// The manuals' XGBoost example writes the worker's containers straight under template.
func TestTemplateWithoutSpec(t *testing.T) {
	var rs ReplicaSpec
	require.NoError(t, json.Unmarshal([]byte(`{"type":"worker","template":{"containers":[{"name":"xgboost","image":"x"}]}}`), &rs))
	require.Empty(t, rs.Template.DecodeError)
	require.Len(t, rs.Template.Spec.Containers, 1)
	assert.Equal(t, "x", rs.Template.Spec.Containers[0].Image)
	// A template with spec is read as written, even when spec has no containers.
	require.NoError(t, json.Unmarshal([]byte(`{"type":"worker","template":{"spec":{},"containers":[{"image":"x"}]}}`), &rs))
	assert.Empty(t, rs.Template.Spec.Containers)
}
