package admission

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

// maxReported bounds the field errors in one rejection: a hostile object can have thousands.
const maxReported = 10

// specChanged says whether an UPDATE touches spec. Objects stored before a rule existed must stay
// editable (labels, finalizers, deletion), so an update is validated only when its spec changes.
func specChanged(req admission.Request) bool {
	if req.Operation != admissionv1.Update {
		return true
	}
	var oldObj, newObj struct {
		Spec json.RawMessage `json:"spec"`
	}
	if json.Unmarshal(req.OldObject.Raw, &oldObj) != nil || json.Unmarshal(req.Object.Raw, &newObj) != nil {
		return true
	}
	return !jsonEqual(oldObj.Spec, newObj.Spec)
}

func jsonEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// validateJob checks what the apiserver cannot, since the CRDs keep pod templates schemaless:
// each template against the PodTemplateSpec schema, the pods the controller will build from them
// against the apiserver's pod validation, that the job has something to run, and the topology
// level it asks for. obj is the decoded job.
func (v *Validator) validateJob(req admission.Request, obj client.Object) (field.ErrorList, error) {
	errs, err := validateStoredTemplates(req.Object.Raw, reflect.TypeOf(obj))
	if err != nil || len(errs) > 0 {
		return errs, err
	}
	if errs = decodeErrors(obj); len(errs) > 0 {
		return errs, nil
	}
	errs = append(errs, workloads.ValidateReplicas(obj)...)
	errs = append(errs, v.validateLevelAnnotation(obj)...)
	if len(errs) > 0 {
		return errs, nil
	}
	return validatePods(obj, req.Namespace), nil
}

// validateLevelAnnotation checks a job's topology-policy annotation.
func (v *Validator) validateLevelAnnotation(obj client.Object) field.ErrorList {
	a, ok := obj.GetAnnotations()[schedv1beta1.AnnotationTopologyPolicy]
	if !ok {
		return nil
	}
	p := field.NewPath("metadata", "annotations").Key(schedv1beta1.AnnotationTopologyPolicy)
	tp, err := schedv1beta1.ParseTopologyPolicy(a)
	if err != nil {
		return field.ErrorList{field.Invalid(p, a, err.Error())}
	}
	return v.validateLevel(p, tp)
}

// validateLevel refuses a Required level the scheduler is not configured with, when the
// controllers were told the scheduler's levels (--topology-levels).
func (v *Validator) validateLevel(p *field.Path, tp schedv1beta1.TopologyPolicy) field.ErrorList {
	if tp.Mode != schedv1beta1.TopologyRequired || len(v.TopologyLevels) == 0 || slices.Contains(v.TopologyLevels, tp.Level) {
		return nil
	}
	return field.ErrorList{field.NotSupported(p, tp.Level, v.TopologyLevels)}
}

// invalid is the kubectl-style 422 rejection: `The GenericJob "x" is invalid: <field>: <why>`.
func invalid(req admission.Request, errs field.ErrorList) admission.Response {
	if len(errs) > maxReported {
		n := len(errs)
		errs = append(errs[:maxReported:maxReported], field.Invalid(field.NewPath(""), "", fmt.Sprintf("and %d more errors", n-maxReported)))
	}
	st := apierrors.NewInvalid(schema.GroupKind{Group: req.Kind.Group, Kind: req.Kind.Kind}, req.Name, errs).ErrStatus
	// Keep the message readable when the list is long.
	st.Message = strings.TrimSpace(st.Message)
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &st}}
}
