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
	"bytes"
	stdjson "encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/json"
)

// PodTemplate is a replica's pod template as stored in a job. The CRDs keep templates schemaless
// (real manifests omit container names, which the typed schema requires), so the apiserver can
// store a template that is not a valid core/v1 PodTemplateSpec ("cpu: NaN", a securityContext
// that is a string). Such a template must not fail the decoding of the whole object: a typed
// informer would then fail its LIST, and every job of the kind in every namespace would stop
// being reconciled. A template that does not decode is therefore left empty, with the reason in
// DecodeError and the stored bytes kept, so that the object still round-trips unchanged.
type PodTemplate struct {
	corev1.PodTemplateSpec `json:",inline"`

	// DecodeError is why the stored template is not a valid PodTemplateSpec; "" when it is.
	DecodeError string `json:"-"`
	// Raw is the stored template when DecodeError is set, written back as it was.
	Raw []byte `json:"-"`
}

// UnmarshalJSON never fails on a malformed template: see PodTemplate.
//
// One shape of the public manuals (the XGBoostTrainingJob example's worker) puts the pod spec's
// fields straight under template, without spec; such a template is read as if they were under
// spec, so that the manual's job runs as its author meant.
func (t *PodTemplate) UnmarshalJSON(b []byte) error {
	*t = PodTemplate{}
	t.DecodeError, t.Raw = lenientUnmarshal(b, &t.PodTemplateSpec)
	if t.DecodeError == "" && len(t.Spec.Containers) == 0 {
		var probe struct {
			Spec       stdjson.RawMessage `json:"spec"`
			Containers stdjson.RawMessage `json:"containers"`
		}
		if stdjson.Unmarshal(b, &probe) == nil && probe.Spec == nil && probe.Containers != nil {
			var spec corev1.PodSpec
			if msg, _ := lenientUnmarshal(b, &spec); msg == "" {
				t.Spec = spec
			}
		}
	}
	return nil
}

// MarshalJSON writes an undecodable template back as it was stored.
func (t PodTemplate) MarshalJSON() ([]byte, error) {
	if t.Raw != nil {
		return t.Raw, nil
	}
	return json.Marshal(t.PodTemplateSpec)
}

// JobTemplate is BeamJob's submit Job template, schemaless in the CRD like the pod templates and
// decoded as leniently (see PodTemplate).
type JobTemplate struct {
	batchv1.JobTemplateSpec `json:",inline"`

	// DecodeError is why the stored template is not a valid JobTemplateSpec; "" when it is.
	DecodeError string `json:"-"`
	// Raw is the stored template when DecodeError is set, written back as it was.
	Raw []byte `json:"-"`
}

// UnmarshalJSON never fails on a malformed template: see PodTemplate.
func (t *JobTemplate) UnmarshalJSON(b []byte) error {
	*t = JobTemplate{}
	t.DecodeError, t.Raw = lenientUnmarshal(b, &t.JobTemplateSpec)
	return nil
}

// MarshalJSON writes an undecodable template back as it was stored.
func (t JobTemplate) MarshalJSON() ([]byte, error) {
	if t.Raw != nil {
		return t.Raw, nil
	}
	return json.Marshal(t.JobTemplateSpec)
}

// lenientUnmarshal decodes b into v with the apimachinery decoder (case-sensitive names,
// int64-preserving numbers, as the apiserver's codec). When that fails, v is reset to its zero
// value and the error and a copy of b are returned.
func lenientUnmarshal[T any](b []byte, v *T) (decodeErr string, raw []byte) {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		return "", nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		var zero T
		*v = zero
		return err.Error(), append([]byte(nil), b...)
	}
	return "", nil
}

// TemplateRef is one template inside a job object.
type TemplateRef struct {
	// Path is the template's JSON path in the object, e.g. spec.replicaSpecs[0].template.
	Path string
	// Pod or Job is the template (one of them is set).
	Pod *PodTemplate
	Job *JobTemplate
}

// DecodeError is the template's decoding error, "" when it decoded.
func (r TemplateRef) DecodeError() string {
	if r.Pod != nil {
		return r.Pod.DecodeError
	}
	return r.Job.DecodeError
}

var (
	podTemplateType = reflect.TypeOf(PodTemplate{})
	jobTemplateType = reflect.TypeOf(JobTemplate{})
)

// Templates lists every template of a job object (a pointer to one of the kinds), in field order,
// found through the Go type so that no kind has to list its own.
func Templates(obj any) []TemplateRef {
	var out []TemplateRef
	walkTemplates(reflect.ValueOf(obj), "", &out)
	return out
}

func walkTemplates(v reflect.Value, path string, out *[]TemplateRef) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkTemplates(v.Elem(), path, out)
		}
	case reflect.Slice:
		for i := 0; i < v.Len(); i++ {
			walkTemplates(v.Index(i), fmt.Sprintf("%s[%d]", path, i), out)
		}
	case reflect.Struct:
		switch v.Type() {
		case podTemplateType:
			*out = append(*out, TemplateRef{Path: path, Pod: v.Addr().Interface().(*PodTemplate)})
			return
		case jobTemplateType:
			*out = append(*out, TemplateRef{Path: path, Job: v.Addr().Interface().(*JobTemplate)})
			return
		}
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, inline := JSONName(f)
			if name == "-" || !f.IsExported() || !HoldsTemplate(f.Type) || name == "status" {
				continue
			}
			p := path
			if !inline {
				p = joinPath(path, name)
			}
			walkTemplates(v.Field(i), p, out)
		}
	}
}

func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// JSONName is a struct field's JSON name and whether it is inlined (embedded without a name, or
// tagged ",inline").
func JSONName(f reflect.StructField) (name string, inline bool) {
	tag := f.Tag.Get("json")
	name, _, _ = strings.Cut(tag, ",")
	if name == "" && (f.Anonymous || strings.Contains(tag, ",inline")) {
		return "", true
	}
	if name == "" {
		name = f.Name
	}
	return name, false
}

var (
	holdsMu sync.Mutex
	holds   = map[reflect.Type]bool{}
)

// HoldsTemplate says whether a type contains a PodTemplate or JobTemplate anywhere.
func HoldsTemplate(t reflect.Type) bool {
	holdsMu.Lock()
	defer holdsMu.Unlock()
	return holdsTemplateLocked(t)
}

func holdsTemplateLocked(t reflect.Type) bool {
	if v, ok := holds[t]; ok {
		return v
	}
	holds[t] = false // recursive types: not (yet) known to hold one
	var r bool
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Array:
		r = holdsTemplateLocked(t.Elem())
	case reflect.Struct:
		if t == podTemplateType || t == jobTemplateType {
			r = true
			break
		}
		for i := 0; i < t.NumField() && !r; i++ {
			r = holdsTemplateLocked(t.Field(i).Type)
		}
	}
	holds[t] = r
	return r
}
