package localcluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/controller-runtime/pkg/client"

	devicev1beta1 "github.com/tensorstack/t9k/pkg/apis/device/v1beta1"
	schedv1beta1 "github.com/tensorstack/t9k/pkg/apis/scheduler/v1beta1"
)

// Labels the job controllers put on the pods they create (pkg/workloads).
const (
	labelOwnerName = "tensorstack.dev/owner-name"
	labelOwnerKind = "tensorstack.dev/owner-kind"
)

// ApplyDir server-side applies every YAML document of the *.yaml files in dir, in name order, as
// `kubectl apply --server-side -f dir` would. It returns "kind/name" of each object applied.
func (c *Cluster) ApplyDir(ctx context.Context, dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no *.yaml files in %s", dir)
	}
	sort.Strings(files)
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	var applied []string
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return applied, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
		for {
			var obj unstructured.Unstructured
			if err := dec.Decode(&obj.Object); err != nil {
				if err == io.EOF {
					break
				}
				return applied, fmt.Errorf("%s: %w", f, err)
			}
			if len(obj.Object) == 0 {
				continue
			}
			gvk := obj.GroupVersionKind()
			m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
			if err != nil {
				return applied, fmt.Errorf("%s: %s: %w", f, gvk.Kind, err)
			}
			body, err := obj.MarshalJSON()
			if err != nil {
				return applied, err
			}
			ri := dyn.Resource(m.Resource)
			var target dynamic.ResourceInterface = ri
			if ns := obj.GetNamespace(); ns != "" {
				target = ri.Namespace(ns)
			}
			force := true
			if _, err := target.Patch(ctx, obj.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: "t9k-local", Force: &force}); err != nil {
				return applied, fmt.Errorf("%s: applying %s %s: %w", filepath.Base(f), gvk.Kind, obj.GetName(), err)
			}
			applied = append(applied, strings.ToLower(gvk.Kind)+"/"+obj.GetName())
		}
	}
	return applied, nil
}

// jobPlacement is one row of the placement table.
type jobPlacement struct {
	job, queue   string
	pods, bound  int
	nodes        map[string]bool
	blocks       map[string]bool
	spines       map[string]bool
	gpusPerPod   map[int]int // GPUs per pod → pods
	interconnect map[string]int
	phases       map[corev1.PodPhase]int
}

// PrintPlacement writes, per job of the job controllers, its queue, pods bound, the nodes, blocks
// and spines it spans, GPUs per pod and how those GPUs are connected.
func (c *Cluster) PrintPlacement(ctx context.Context, w io.Writer) error {
	cl, err := client.New(c.Config, client.Options{})
	if err != nil {
		return err
	}
	if err := devicev1beta1.AddToScheme(cl.Scheme()); err != nil {
		return err
	}
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.HasLabels{labelOwnerName}); err != nil {
		return err
	}
	var nodes corev1.NodeList
	if err := cl.List(ctx, &nodes); err != nil {
		return err
	}
	nodeLabels := map[string]map[string]string{}
	for _, n := range nodes.Items {
		nodeLabels[n.Name] = n.Labels
	}
	var devs devicev1beta1.NodeDevicesList
	_ = cl.List(ctx, &devs) // without the agent, interconnect is just unknown
	devices := map[string]*devicev1beta1.NodeDevices{}
	for i := range devs.Items {
		devices[devs.Items[i].Name] = &devs.Items[i]
	}

	rows := map[string]*jobPlacement{}
	for _, p := range pods.Items {
		key := fmt.Sprintf("%s/%s/%s", p.Namespace, strings.ToLower(p.Labels[labelOwnerKind]), p.Labels[labelOwnerName])
		r := rows[key]
		if r == nil {
			r = &jobPlacement{job: key, queue: p.Labels[schedv1beta1.LabelQueue], nodes: map[string]bool{}, blocks: map[string]bool{},
				spines: map[string]bool{}, gpusPerPod: map[int]int{}, interconnect: map[string]int{}, phases: map[corev1.PodPhase]int{}}
			rows[key] = r
		}
		r.pods++
		r.phases[p.Status.Phase]++
		if p.Spec.NodeName == "" {
			continue
		}
		r.bound++
		r.nodes[p.Spec.NodeName] = true
		refs, _ := devicev1beta1.ParseGPUAnnotation(p.Annotations[devicev1beta1.AnnotationGPUs])
		r.gpusPerPod[len(refs)]++
		if len(refs) > 0 {
			// Blocks and spines of the GPU pods: the ones topology placement is about (a CPU-only
			// launcher may sit anywhere).
			r.blocks[nodeLabels[p.Spec.NodeName][LabelBlock]] = true
			r.spines[nodeLabels[p.Spec.NodeName][LabelSpine]] = true
			r.interconnect[interconnect(devices[p.Spec.NodeName], refs)]++
		}
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tQUEUE\tBOUND\tPHASES\tNODES\tGPU BLOCKS\tGPU SPINES\tGPUS/POD\tINTERCONNECT")
	for _, k := range keys {
		r := rows[k]
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%d\t%s\t%s\t%s\t%s\n", r.job, r.queue, r.bound, r.pods, counts(r.phases),
			len(r.nodes), joinKeys(r.blocks), joinKeys(r.spines), counts(r.gpusPerPod), counts(r.interconnect))
	}
	if len(keys) == 0 {
		fmt.Fprintln(tw, "(no job pods yet)")
	}
	return tw.Flush()
}

// interconnect names how a pod's GPUs talk to each other, from the node's NodeDevices.
func interconnect(d *devicev1beta1.NodeDevices, refs []devicev1beta1.GPURef) string {
	if len(refs) == 1 {
		return "single GPU"
	}
	if d == nil {
		return "unknown"
	}
	byIndex := map[int32]devicev1beta1.GPU{}
	for _, g := range d.Status.GPUs {
		byIndex[g.Index] = g
	}
	domain, bridged := "", true
	for i, r := range refs {
		g := byIndex[r.Index]
		if g.NVLink == nil || g.NVLink.NVSwitchDomain == "" || (i > 0 && g.NVLink.NVSwitchDomain != domain) {
			domain = "-"
		} else if i == 0 {
			domain = g.NVLink.NVSwitchDomain
		}
		for _, o := range refs {
			if o.Index != r.Index && !hasBridge(g, o.Index) {
				bridged = false
			}
		}
	}
	switch {
	case domain != "-" && domain != "":
		return "NVSwitch"
	case bridged:
		return "NVLink bridge"
	}
	return "PCIe"
}

func hasBridge(g devicev1beta1.GPU, peer int32) bool {
	if g.NVLink == nil {
		return false
	}
	for _, p := range g.NVLink.Peers {
		if p.Index == peer && p.Via == devicev1beta1.NVLinkViaBridge {
			return true
		}
	}
	return false
}

func joinKeys(m map[string]bool) string {
	var ks []string
	for k := range m {
		if k != "" {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	if len(ks) == 0 {
		return "-"
	}
	return strings.Join(ks, ",")
}

// counts renders a histogram as "a×3 b×1", largest key first.
func counts[K comparable](m map[K]int) string {
	type kv struct {
		k string
		v int
	}
	var out []kv
	for k, v := range m {
		out = append(out, kv{fmt.Sprint(k), v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].k > out[j].k })
	var parts []string
	for _, e := range out {
		if e.k == "" {
			e.k = "Pending"
		}
		parts = append(parts, fmt.Sprintf("%s×%d", e.k, e.v))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}
