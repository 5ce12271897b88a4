// Package templateschema holds the structural OpenAPI schema of a core/v1 PodTemplateSpec, made by
// controller-gen from the type below (`make generate`). The job CRDs keep their pod templates
// schemaless; admission validates each template against this schema instead, exactly as the
// apiserver would validate a CRD that embedded it, so a wrong type or a malformed quantity is
// refused with the field's full path. Keeping the schema out of the CRDs keeps each CRD small
// enough for `kubectl apply` (embedding it would add about 300 KiB per template).
//
// +groupName=admission.t9k.internal
// +versionName=v1
// +kubebuilder:object:generate=false
package templateschema

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PodTemplateHolder exists only to carry a PodTemplateSpec through controller-gen.
// +kubebuilder:object:root=true
type PodTemplateHolder struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Template          corev1.PodTemplateSpec `json:"template"`
}
