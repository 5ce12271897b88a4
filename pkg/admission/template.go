package admission

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	schemavalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	podutil "k8s.io/kubernetes/pkg/api/pod"
	"k8s.io/kubernetes/pkg/apis/core"
	corev1internal "k8s.io/kubernetes/pkg/apis/core/v1"
	corevalidation "k8s.io/kubernetes/pkg/apis/core/validation"
	"k8s.io/kubernetes/pkg/capabilities"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	batchv1beta1 "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
	"github.com/tensorstack/t9k/pkg/workloads"
)

func init() {
	// Whether privileged containers are allowed is the cluster's policy (kube-apiserver
	// --allow-privileged, Pod Security), not something a job's template can be refused for here;
	// a pod the cluster refuses is reported on the job (FailedCreatePod).
	capabilities.Setup(true, 0)
}

//go:embed templateschema/admission.t9k.internal_podtemplateholders.yaml
var podTemplateHolderCRD []byte

// templateSchema is the structural schema of a PodTemplateSpec (see package templateschema), with
// container names optional: the manuals' templates omit them and the controller names them.
var templateSchema = sync.OnceValues(func() (schemavalidation.SchemaValidator, error) {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.Unmarshal(podTemplateHolderCRD, &crd); err != nil {
		return nil, fmt.Errorf("pod template schema: %w", err)
	}
	if len(crd.Spec.Versions) != 1 || crd.Spec.Versions[0].Schema == nil {
		return nil, fmt.Errorf("pod template schema: want one version with a schema")
	}
	props, ok := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["template"]
	if !ok {
		return nil, fmt.Errorf("pod template schema: no template property")
	}
	spec := props.Properties["spec"]
	for _, list := range []string{"containers", "initContainers"} {
		c := spec.Properties[list]
		c.Items.Schema.Required = slices.DeleteFunc(c.Items.Schema.Required, func(s string) bool { return s == "name" })
		spec.Properties[list] = c
	}
	props.Properties["spec"] = spec
	var internal apiextensions.JSONSchemaProps
	if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(&props, &internal, nil); err != nil {
		return nil, err
	}
	v, _, err := schemavalidation.NewSchemaValidator(&internal)
	return v, err
})

var (
	podTemplateType = reflect.TypeOf(batchv1beta1.PodTemplate{})
	jobTemplateType = reflect.TypeOf(batchv1beta1.JobTemplate{})
)

// validateStoredTemplates checks every template of a job as the apiserver would if the CRD
// carried the PodTemplateSpec schema: types, formats and quantity patterns, with the full path
// (spec.replicaSpecs[0].template.spec.containers[0].resources.requests.cpu). raw is the object
// as sent; typ the Go type of its kind, which says where the templates are.
func validateStoredTemplates(raw []byte, typ reflect.Type) (field.ErrorList, error) {
	v, err := templateSchema()
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return field.ErrorList{field.Invalid(field.NewPath(""), "", err.Error())}, nil
	}
	var errs field.ErrorList
	visitTemplates(typ, obj, nil, func(p *field.Path, node any, isJob bool) {
		if isJob {
			// BeamJob's submit Job: its pod template is checked here; the rest of the Job by
			// decoding (below).
			m, _ := node.(map[string]any)
			spec, _ := m["spec"].(map[string]any)
			if spec == nil {
				return
			}
			node, p = spec["template"], p.Child("spec", "template")
			if node == nil {
				return
			}
		}
		for _, e := range schemavalidation.ValidateCustomResource(p, node, v) {
			// The schema validator repeats the path relative to the template ("spec.x in body
			// should match ..."); the field already says where.
			if _, rest, ok := strings.Cut(e.Detail, " in body "); ok {
				e.Detail = rest
			}
			errs = append(errs, e)
		}
	})
	return errs, nil
}

// visitTemplates walks a decoded JSON object along the Go type of its kind and calls visit for
// each value at a PodTemplate (isJob false) or JobTemplate (isJob true) field.
func visitTemplates(t reflect.Type, node any, p *field.Path, visit func(*field.Path, any, bool)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Slice:
		l, _ := node.([]any)
		for i, e := range l {
			visitTemplates(t.Elem(), e, p.Index(i), visit)
		}
	case reflect.Struct:
		if t == podTemplateType || t == jobTemplateType {
			visit(p, node, t == jobTemplateType)
			return
		}
		m, _ := node.(map[string]any)
		if m == nil {
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, inline := batchv1beta1.JSONName(f)
			if name == "-" || name == "status" || !f.IsExported() || !batchv1beta1.HoldsTemplate(f.Type) {
				continue
			}
			if inline {
				visitTemplates(f.Type, m, p, visit)
				continue
			}
			if child, ok := m[name]; ok && child != nil {
				next := field.NewPath(name)
				if p != nil {
					next = p.Child(name)
				}
				visitTemplates(f.Type, child, next, visit)
			}
		}
	}
}

// validatePods checks the pods the controller will build from a decoded job, with the apiserver's
// own pod validation, and reports each error at the template it comes from. Only the first and
// last pod of each replica group are built: the others differ from them only in index.
func validatePods(job client.Object, namespace string) field.ErrorList {
	previews, err := workloads.Preview(job, namespace)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("spec"), err)}
	}
	var errs field.ErrorList
	seen := map[string]bool{}
	for _, pv := range previews {
		base := workloads.FieldPath(pv.TemplatePath)
		if pv.TemplatePath == "" {
			// A template the kind derives (the MPI launcher from the worker's): speak of the pod.
			base = field.NewPath(fmt.Sprintf("pod %s", pv.Pod.Name))
		}
		for _, e := range validatePod(pv.Pod) {
			e = rebase(e, base, pv.Pod.Name)
			if k := e.Error(); !seen[k] {
				seen[k] = true
				errs = append(errs, e)
			}
		}
	}
	return errs
}

// validatePod runs the apiserver's create validation of a pod: defaults, conversion to the internal
// type, ValidatePodCreate with the options the apiserver derives from the pod.
func validatePod(pod *corev1.Pod) field.ErrorList {
	pod = pod.DeepCopy()
	corev1internal.SetObjectDefaults_Pod(pod)
	var in core.Pod
	if err := corev1internal.Convert_v1_Pod_To_core_Pod(pod, &in, nil); err != nil {
		return field.ErrorList{field.Invalid(field.NewPath("spec"), "", err.Error())}
	}
	opts := podutil.GetValidationOptionsFromPodSpecAndMeta(&in.Spec, nil, &in.ObjectMeta, nil)
	return corevalidation.ValidatePodCreate(&in, opts)
}

// rebase moves a pod validation error to the job's field: spec.* and metadata.labels/annotations
// to the template's; the pod's name (derived from the job's) to metadata.name.
func rebase(e *field.Error, tmpl *field.Path, podName string) *field.Error {
	out := *e
	switch {
	case strings.HasPrefix(e.Field, "spec"), strings.HasPrefix(e.Field, "metadata.labels"), strings.HasPrefix(e.Field, "metadata.annotations"):
		out.Field = tmpl.String() + "." + e.Field
	case strings.HasPrefix(e.Field, "metadata"):
		out.Field = "metadata.name"
		out.Detail = fmt.Sprintf("the pod name %q made from it: %s", podName, e.Detail)
	}
	return &out
}

// decodeErrors reports templates that passed the schema but still did not decode.
func decodeErrors(obj any) field.ErrorList {
	var errs field.ErrorList
	for _, t := range batchv1beta1.Templates(obj) {
		if msg := t.DecodeError(); msg != "" {
			errs = append(errs, field.Invalid(workloads.FieldPath(t.Path), "", msg))
		}
	}
	return errs
}
