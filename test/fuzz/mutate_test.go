package fuzz

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func yamlToObject(doc string, u *unstructured.Unstructured) error {
	if strings.TrimSpace(doc) == "" {
		return nil
	}
	return yaml.Unmarshal([]byte(doc), &u.Object)
}

// step is one element of a path into a JSON object: a map key or a list index.
type step struct {
	key   string
	index int
}

type path []step

func (p path) String() string {
	var b strings.Builder
	for _, s := range p {
		if s.key != "" {
			b.WriteString("." + s.key)
		} else {
			fmt.Fprintf(&b, "[%d]", s.index)
		}
	}
	return strings.TrimPrefix(b.String(), ".")
}

// paths lists every value under spec and metadata.labels/annotations, in a stable order.
func paths(obj map[string]any) []path {
	var out []path
	var walk func(v any, p path)
	walk = func(v any, p path) {
		out = append(out, append(path(nil), p...))
		switch x := v.(type) {
		case map[string]any:
			keys := make([]string, 0, len(x))
			for k := range x {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				walk(x[k], append(p, step{key: k}))
			}
		case []any:
			for i, e := range x {
				walk(e, append(p, step{index: i}))
			}
		}
	}
	if s, ok := obj["spec"]; ok {
		walk(s, path{{key: "spec"}})
	}
	if m, ok := obj["metadata"].(map[string]any); ok {
		for _, k := range []string{"labels", "annotations"} {
			if v, ok := m[k]; ok {
				walk(v, path{{key: "metadata"}, {key: k}})
			}
		}
	}
	return out
}

// hostile values: what a careless or hostile user writes.
var hostile = []struct {
	name string
	val  func(old any) any
}{
	{"negative", func(any) any { return int64(-1) }},
	{"big negative", func(any) any { return int64(-2147483649) }},
	{"huge", func(any) any { return int64(999999999999999) }},
	{"zero", func(any) any { return int64(0) }},
	{"float", func(any) any { return 1.5 }},
	{"empty string", func(any) any { return "" }},
	{"long string", func(any) any { return strings.Repeat("a", 70000) }},
	{"NaN", func(any) any { return "NaN" }},
	{"null", func(any) any { return nil }},
	{"wrong type", func(old any) any {
		switch old.(type) {
		case string:
			return int64(12345)
		case map[string]any:
			return "x"
		case []any:
			return map[string]any{"a": int64(1)}
		case bool:
			return "yes"
		}
		return "x"
	}},
	{"empty map", func(any) any { return map[string]any{} }},
	{"empty list", func(any) any { return []any{} }},
}

// mutate changes one value of obj (or removes it) and says what it did.
func mutate(rng *rand.Rand, obj map[string]any) string {
	ps := paths(obj)
	if len(ps) == 0 {
		return "nothing to mutate"
	}
	p := ps[rng.IntN(len(ps))]
	parent, last := lookup(obj, p)
	if parent == nil {
		return "nothing at " + p.String()
	}
	old := get(parent, last)
	// Most hostile values keep the type, so that they get past the schema and reach the
	// webhook, the controllers and the scheduler; the rest break it.
	if same := sameType(old); len(same) > 0 && rng.IntN(10) < 6 {
		h := same[rng.IntN(len(same))]
		set(parent, last, h.val)
		return h.name + " at " + p.String()
	}
	if rng.IntN(len(hostile)+1) == 0 {
		remove(parent, last)
		return "remove " + p.String()
	}
	h := hostile[rng.IntN(len(hostile))]
	set(parent, last, h.val(old))
	return h.name + " at " + p.String()
}

type namedValue struct {
	name string
	val  any
}

// sameType lists hostile values of the old value's JSON type.
func sameType(old any) []namedValue {
	switch old.(type) {
	case int64, float64:
		return []namedValue{{"negative", int64(-1)}, {"zero", int64(0)}, {"huge", int64(1 << 40)},
			{"big", int64(100000)}, {"int32 overflow", int64(2147483648)}}
	case string:
		return []namedValue{{"empty string", ""}, {"long string", strings.Repeat("x", 70000)}, {"NaN", "NaN"},
			{"negative string", "-1"}, {"huge string", "1e400"}, {"spaces", "a b"}, {"upper", "UPPER_CASE"}}
	case bool:
		return []namedValue{{"flipped", !old.(bool)}}
	case []any:
		return []namedValue{{"empty list", []any{}}}
	case map[string]any:
		return []namedValue{{"empty map", map[string]any{}}}
	}
	return nil
}

// lookup returns the container holding the value at p, and the last step.
func lookup(obj map[string]any, p path) (any, step) {
	var cur any = obj
	for _, s := range p[:len(p)-1] {
		switch x := cur.(type) {
		case map[string]any:
			cur = x[s.key]
		case []any:
			if s.index >= len(x) {
				return nil, step{}
			}
			cur = x[s.index]
		default:
			return nil, step{}
		}
	}
	return cur, p[len(p)-1]
}

func get(parent any, s step) any {
	switch x := parent.(type) {
	case map[string]any:
		return x[s.key]
	case []any:
		if s.index < len(x) {
			return x[s.index]
		}
	}
	return nil
}

func set(parent any, s step, v any) {
	switch x := parent.(type) {
	case map[string]any:
		x[s.key] = v
	case []any:
		if s.index < len(x) {
			x[s.index] = v
		}
	}
}

// remove deletes a map key; in a list it sets the element to null (the list keeps its length).
func remove(parent any, s step) {
	switch x := parent.(type) {
	case map[string]any:
		delete(x, s.key)
	case []any:
		if s.index < len(x) {
			x[s.index] = nil
		}
	}
}
