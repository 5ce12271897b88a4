package localcluster

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/tensorstack/t9k/pkg/device/fixtures"
)

// Level is a topology level a cluster file can name.
type Level string

// The topology levels, with the node label each sets (NVIDIA GFD and topograph conventions).
const (
	LevelClique Level = "clique"
	LevelBlock  Level = "block"
	LevelSpine  Level = "spine"
	LevelZone   Level = "zone"
)

// AllLevels are the levels innermost first, as the scheduler's T9kTopology takes them by default.
var AllLevels = []Level{LevelClique, LevelBlock, LevelSpine, LevelZone}

// Label is the node label naming the node's domain at this level.
func (l Level) Label() string {
	switch l {
	case LevelClique:
		return LabelClique
	case LevelBlock:
		return LabelBlock
	case LevelSpine:
		return LabelSpine
	case LevelZone:
		return LabelZone
	}
	return ""
}

// plural is the field of the level one out that lists domains of this level.
func (l Level) plural() string { return string(l) + "s" }

// letter starts the node-name part of a domain of this level: s0-b1-c2-n3.
func (l Level) letter() string { return string(l)[:1] }

func (l Level) rank() int {
	for i, x := range AllLevels {
		if x == l {
			return i
		}
	}
	return -1
}

// Layout is a simulated cluster: its topology levels (innermost first) and its nodes.
type Layout struct {
	Levels []Level
	Nodes  []*corev1.Node
}

// LevelLabels are the node labels of the levels, innermost first: the scheduler's T9kTopology
// args.levels and t9k-controllers' --topology-levels.
func (l *Layout) LevelLabels() []string {
	out := make([]string, len(l.Levels))
	for i, lv := range l.Levels {
		out[i] = lv.Label()
	}
	return out
}

// GPUs is the number of GPUs on all nodes.
func (l *Layout) GPUs() int {
	n := 0
	for _, node := range l.Nodes {
		q := node.Status.Capacity[ResourceGPU]
		n += int(q.Value())
	}
	return n
}

// Summary says what the cluster is made of, e.g. "72 nodes, 288 GPUs (72 gb200-nvl72); 4 cliques,
// 2 blocks, 1 spine, 1 zone".
func (l *Layout) Summary() string {
	kinds := map[string]int{}
	for _, n := range l.Nodes {
		kinds[n.Labels[LabelFixture]]++
	}
	names := make([]string, 0, len(kinds))
	for k := range kinds {
		names = append(names, k)
	}
	sort.Strings(names)
	var machines []string
	for _, k := range names {
		machines = append(machines, fmt.Sprintf("%d %s", kinds[k], k))
	}
	var levels []string
	for _, lv := range l.Levels {
		domains := map[string]bool{}
		for _, n := range l.Nodes {
			if v, ok := n.Labels[lv.Label()]; ok {
				domains[v] = true
			}
		}
		word := string(lv)
		if len(domains) != 1 {
			word = lv.plural()
		}
		levels = append(levels, fmt.Sprintf("%d %s", len(domains), word))
	}
	return fmt.Sprintf("%d nodes, %d GPUs (%s); %s", len(l.Nodes), l.GPUs(), strings.Join(machines, ", "), strings.Join(levels, ", "))
}

// MaxClusterFileNodes bounds the nodes of a cluster file (a typo in a count should not start a
// hundred thousand nodes).
const MaxClusterFileNodes = 10000

// LoadClusterFile reads and parses a cluster file; see ParseClusterFile.
func LoadClusterFile(path string) (*Layout, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseClusterFile(path, data)
}

// ParseClusterFile reads a cluster file: the topology levels the cluster has, innermost first, and
// its domains from the outermost level in, each holding domains of the next level in and/or
// machines directly:
//
//	levels: [clique, block, spine, zone]
//	zones:
//	- name: zone-a            # optional; count > 1 repeats the entry (then without a name)
//	  spines:
//	  - count: 2
//	    blocks:
//	    - cliques:
//	      - count: 2
//	        nodes: [{machine: gb200-nvl72, count: 18}]
//	      nodes: [{machine: dgx-h100, count: 4}]   # in the block, in no clique
//
// Machines are the device-agent's fixtures (MachineKinds). Only machines with a multi-node NVLink
// domain (gb200-nvl72, up to 18 trays a rack) go in cliques, and they go nowhere else; a clique's
// label is the NVLink fabric's <cluster UUID>.<clique id>, as GFD and the device-agent report it.
// Every error names the file and line: "x.yaml:12: unknown field \"gpuz\"".
func ParseClusterFile(path string, data []byte) (*Layout, error) {
	p := &fileParser{path: path, ordinal: map[Level]int{}, names: map[Level]map[string]int{}}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, p.yamlError(err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, fmt.Errorf("%s: empty cluster file: want levels and the outermost level's domains", path)
	}
	p.parse(doc.Content[0])
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return &Layout{Levels: p.levels, Nodes: p.nodes}, nil
}

// maxErrors is how many errors a bad file reports.
const maxErrors = 10

type fileParser struct {
	path    string
	levels  []Level
	nodes   []*corev1.Node
	errs    []error
	tooMany bool
	ordinal map[Level]int            // domains numbered across the cluster, per level
	names   map[Level]map[string]int // given names → line, per level
}

// domainRef is a domain on the path from the outermost level to a node.
type domainRef struct {
	level Level
	index int    // across the cluster
	name  string // label value
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func (p *fileParser) yamlError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		return fmt.Errorf("%s:%s: %s", p.path, m[1], m[2])
	}
	return fmt.Errorf("%s: %s", p.path, strings.TrimPrefix(msg, "yaml: "))
}

func (p *fileParser) errorf(n *yaml.Node, format string, args ...any) {
	if len(p.errs) == maxErrors {
		p.errs = append(p.errs, fmt.Errorf("%s: more errors follow", p.path))
	}
	if len(p.errs) > maxErrors {
		return
	}
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s", p.path, n.Line, fmt.Sprintf(format, args...)))
}

func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// fields checks that n is a mapping with only the allowed keys and returns key → (key, value).
func (p *fileParser) fields(n *yaml.Node, what string, allowed ...string) (map[string][2]*yaml.Node, bool) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n, "%s: want a mapping with %s", what, strings.Join(allowed, ", "))
		return nil, false
	}
	out := map[string][2]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		switch {
		case !contains(allowed, k.Value):
			p.errorf(k, "unknown field %q (%s takes %s)", k.Value, what, strings.Join(allowed, ", "))
		case out[k.Value][0] != nil:
			p.errorf(k, "field %q given twice", k.Value)
		default:
			out[k.Value] = [2]*yaml.Node{k, v}
		}
	}
	return out, true
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// count reads an optional "count" (default 1), which must be a whole number > 0.
func (p *fileParser) count(f map[string][2]*yaml.Node) (int, bool) {
	kv, ok := f["count"]
	if !ok {
		return 1, true
	}
	v := kv[1]
	n, err := strconv.Atoi(v.Value)
	if v.Kind != yaml.ScalarNode || err != nil {
		p.errorf(v, "count must be a whole number, got %q", v.Value)
		return 0, false
	}
	if n <= 0 {
		p.errorf(v, "count must be > 0, got %d", n)
		return 0, false
	}
	return n, true
}

// list checks that v is a non-empty sequence.
func (p *fileParser) list(k, v *yaml.Node) ([]*yaml.Node, bool) {
	if v.Kind != yaml.SequenceNode {
		p.errorf(v, "%s: want a list", k.Value)
		return nil, false
	}
	if len(v.Content) == 0 {
		p.errorf(v, "%s: the list is empty", k.Value)
		return nil, false
	}
	return v.Content, true
}

func (p *fileParser) parse(root *yaml.Node) {
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		p.errorf(root, "want a mapping with levels and the outermost level's domains (e.g. zones)")
		return
	}
	// levels first: they decide which other field is allowed.
	var levelsNode *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "levels" {
			levelsNode = deref(root.Content[i+1])
		}
	}
	if levelsNode == nil {
		p.errorf(root, "missing field \"levels\": the topology levels, innermost first, from %s", levelNames(AllLevels))
		return
	}
	if !p.parseLevels(levelsNode) {
		return
	}
	outer := p.levels[len(p.levels)-1]
	f, ok := p.fields(root, "a cluster file", "levels", outer.plural())
	if !ok {
		return
	}
	kv, ok := f[outer.plural()]
	if !ok {
		p.errorf(root, "missing field %q: the cluster's %s (the outermost level)", outer.plural(), outer.plural())
		return
	}
	p.domains(kv[0], kv[1], len(p.levels)-1, nil)
}

func levelNames(ls []Level) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = string(l)
	}
	return strings.Join(s, ", ")
}

func (p *fileParser) parseLevels(n *yaml.Node) bool {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		p.errorf(n, "levels: want a list of topology levels, innermost first, from %s", levelNames(AllLevels))
		return false
	}
	ok := true
	for _, item := range n.Content {
		item = deref(item)
		l := Level(item.Value)
		switch {
		case item.Kind != yaml.ScalarNode || l.rank() < 0:
			p.errorf(item, "unknown level %q (known: %s)", item.Value, levelNames(AllLevels))
			ok = false
		case len(p.levels) > 0 && l.rank() <= p.levels[len(p.levels)-1].rank():
			p.errorf(item, "levels must go innermost first without repeats (%s): %q after %q", levelNames(AllLevels), l, p.levels[len(p.levels)-1])
			ok = false
		default:
			p.levels = append(p.levels, l)
		}
	}
	return ok
}

// domains reads the list (under key k) of domains of level p.levels[li], inside path.
func (p *fileParser) domains(k, v *yaml.Node, li int, path []domainRef) {
	items, ok := p.list(k, v)
	if !ok {
		return
	}
	level := p.levels[li]
	allowed := []string{"name", "count"}
	if li > 0 {
		allowed = append(allowed, p.levels[li-1].plural())
	}
	allowed = append(allowed, "nodes")
	if level == LevelClique {
		allowed = []string{"count", "nodes"}
	}
	for _, item := range items {
		if p.tooMany {
			return
		}
		item = deref(item)
		f, ok := p.fields(item, "a "+string(level), allowed...)
		if !ok {
			continue
		}
		count, ok := p.count(f)
		if !ok {
			continue
		}
		name := ""
		if kv, ok := f["name"]; ok {
			name = p.domainName(level, kv[1], count)
		}
		_, hasNodes := f["nodes"]
		hasInner := false
		if li > 0 {
			_, hasInner = f[p.levels[li-1].plural()]
		}
		if !hasNodes && !hasInner {
			what := "nodes"
			if li > 0 {
				what = p.levels[li-1].plural() + " or nodes"
			}
			p.errorf(item, "a %s needs %s", level, what)
			continue
		}
		for r := 0; r < count; r++ {
			idx := p.ordinal[level]
			p.ordinal[level]++
			d := domainRef{level: level, index: idx, name: name}
			if d.name == "" {
				d.name = defaultDomainName(level, idx)
			}
			inner := append(append([]domainRef(nil), path...), d)
			if hasInner {
				kv := f[p.levels[li-1].plural()]
				p.domains(kv[0], kv[1], li-1, inner)
			}
			if hasNodes {
				kv := f["nodes"]
				p.machines(kv[0], kv[1], inner)
			}
			if len(p.errs) > 0 || p.tooMany {
				// One copy of a repeated entry tells everything wrong with it.
				break
			}
		}
	}
}

// domainName checks a given name: a label value, used once per level, on an entry of count 1.
func (p *fileParser) domainName(level Level, v *yaml.Node, count int) string {
	if v.Kind != yaml.ScalarNode || v.Value == "" {
		p.errorf(v, "name: want a non-empty string")
		return ""
	}
	if errs := validation.IsValidLabelValue(v.Value); len(errs) > 0 {
		p.errorf(v, "name %q is not a valid label value: %s", v.Value, strings.Join(errs, "; "))
		return ""
	}
	if count > 1 {
		p.errorf(v, "name %q with count %d: a name is for one %s (leave it out to number them)", v.Value, count, level)
		return ""
	}
	if p.names[level] == nil {
		p.names[level] = map[string]int{}
	}
	if line, dup := p.names[level][v.Value]; dup {
		p.errorf(v, "%s name %q already used on line %d", level, v.Value, line)
		return ""
	}
	p.names[level][v.Value] = v.Line
	return v.Value
}

func defaultDomainName(level Level, i int) string {
	switch level {
	case LevelZone:
		if i < 26 {
			return "zone-" + string(rune('a'+i))
		}
		return fmt.Sprintf("zone-%d", i)
	case LevelClique:
		// The NVLink fabric of rack i, as the device-agent publishes it for the GB200 trays
		// 18i..18i+17: <cluster UUID>.<clique id>.
		return fmt.Sprintf("%s.1", fixtures.RackClusterUUID(i))
	}
	return fmt.Sprintf("%s-%d", level, i)
}

// machines reads a nodes list (under key k) of the innermost domain of path and adds its nodes.
func (p *fileParser) machines(k, v *yaml.Node, path []domainRef) {
	items, ok := p.list(k, v)
	if !ok {
		return
	}
	in := path[len(path)-1]
	// Node names: the letter and number of each domain on the path (the zone only when the nodes
	// sit in it directly; spine, block and clique numbers are unique across the cluster), then n<i>.
	var prefix []string
	for i, d := range path {
		if d.level == LevelZone && i < len(path)-1 {
			continue
		}
		prefix = append(prefix, fmt.Sprintf("%s%d", d.level.letter(), d.index))
	}
	labels := map[string]string{}
	for _, d := range path {
		labels[d.level.Label()] = d.name
	}
	next := 0
	for _, item := range items {
		item = deref(item)
		f, ok := p.fields(item, "a nodes entry", "machine", "count")
		if !ok {
			continue
		}
		count, ok := p.count(f)
		if !ok {
			continue
		}
		kv, ok := f["machine"]
		if !ok {
			p.errorf(item, "missing field \"machine\" (one of %s)", strings.Join(MachineKinds(), ", "))
			continue
		}
		m, ok := Machines[kv[1].Value]
		if kv[1].Kind != yaml.ScalarNode || !ok {
			p.errorf(kv[1], "unknown machine kind %q (known: %s)", kv[1].Value, strings.Join(MachineKinds(), ", "))
			continue
		}
		switch {
		case in.level == LevelClique && m.CliqueSize == 0:
			p.errorf(kv[1], "machine %s cannot be in a clique: its NVLink ends at the node (only %s trays share a multi-node NVLink domain); list it in the %s's nodes", m.Fixture, strings.Join(cliqueKinds(), ", "), p.outOf(LevelClique))
			continue
		case in.level != LevelClique && m.CliqueSize > 0:
			where := "list it under cliques"
			if !containsLevel(p.levels, LevelClique) {
				where = "add clique to levels and list it under cliques"
			}
			p.errorf(kv[1], "machine %s must be in a clique: its trays share an NVLink domain of up to %d (%s)", m.Fixture, m.CliqueSize, where)
			continue
		case in.level == LevelClique && next+count > m.CliqueSize:
			at := kv[1]
			if c, ok := f["count"]; ok {
				at = c[1]
			}
			p.errorf(at, "%d %s trays in one clique: an NVLink domain holds at most %d", next+count, m.Fixture, m.CliqueSize)
			continue
		case len(p.nodes)+count > MaxClusterFileNodes:
			p.errorf(kv[1], "more than %d nodes in the cluster", MaxClusterFileNodes)
			p.tooMany = true
			return
		}
		for j := 0; j < count; j++ {
			name := strings.Join(append(append([]string(nil), prefix...), fmt.Sprintf("n%d", next)), "-")
			node := newNode(name, m, labels)
			if in.level == LevelClique {
				node.Labels[LabelFixtureIndex] = strconv.Itoa(in.index*m.CliqueSize + next)
			}
			p.nodes = append(p.nodes, node)
			next++
		}
	}
}

// outOf is the level that holds domains of level l in this file ("block" for cliques).
func (p *fileParser) outOf(l Level) string {
	for i, x := range p.levels {
		if x == l && i+1 < len(p.levels) {
			return string(p.levels[i+1])
		}
	}
	return "outer level"
}

func containsLevel(ls []Level, l Level) bool {
	for _, x := range ls {
		if x == l {
			return true
		}
	}
	return false
}

func cliqueKinds() []string {
	var out []string
	for _, k := range MachineKinds() {
		if Machines[k].CliqueSize > 0 {
			out = append(out, k)
		}
	}
	return out
}
