package localcluster

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// TopologyPlugin is the name of the scheduler plugin whose args.levels name the topology levels.
const TopologyPlugin = "T9kTopology"

// WriteSchedulerConfig copies a KubeSchedulerConfiguration from src to dst, pointing its client at
// kubeconfig and turning leader election off (one scheduler per local cluster). kube-scheduler
// ignores --kubeconfig once --config is given, so the path has to be inside the file.
func WriteSchedulerConfig(src, dst, kubeconfig string) error {
	return WriteSchedulerConfigWithLevels(src, dst, kubeconfig, nil)
}

// WriteSchedulerConfigWithLevels is WriteSchedulerConfig that also sets T9kTopology's
// args.levels to levels (node labels, innermost first) in every profile that runs T9kTopology,
// so the scheduler plans in the levels the cluster's nodes carry. nil levels leave the file's.
func WriteSchedulerConfigWithLevels(src, dst, kubeconfig string, levels []string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	cc, _ := cfg["clientConnection"].(map[string]any)
	if cc == nil {
		cc = map[string]any{}
	}
	cc["kubeconfig"] = kubeconfig
	cfg["clientConnection"] = cc
	cfg["leaderElection"] = map[string]any{"leaderElect": false}
	if levels != nil {
		profiles, _ := cfg["profiles"].([]any)
		for _, p := range profiles {
			if prof, ok := p.(map[string]any); ok {
				setTopologyLevels(prof, levels)
			}
		}
	}
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}

// setTopologyLevels sets args.levels of the profile's T9kTopology pluginConfig, adding the entry
// when the profile enables the plugin without one.
func setTopologyLevels(prof map[string]any, levels []string) {
	list := make([]any, len(levels))
	for i, l := range levels {
		list[i] = l
	}
	pcs, _ := prof["pluginConfig"].([]any)
	for _, pc := range pcs {
		entry, ok := pc.(map[string]any)
		if !ok || entry["name"] != TopologyPlugin {
			continue
		}
		args, _ := entry["args"].(map[string]any)
		if args == nil {
			args = map[string]any{}
		}
		args["levels"] = list
		entry["args"] = args
		return
	}
	if mentions(prof["plugins"], TopologyPlugin) {
		prof["pluginConfig"] = append(pcs, map[string]any{"name": TopologyPlugin, "args": map[string]any{"levels": list}})
	}
}

// mentions reports whether a plugin set (any nesting of maps and lists) enables the named plugin.
func mentions(v any, name string) bool {
	switch v := v.(type) {
	case map[string]any:
		if v["name"] == name {
			return true
		}
		for k, x := range v {
			if k != "disabled" && mentions(x, name) {
				return true
			}
		}
	case []any:
		for _, x := range v {
			if mentions(x, name) {
				return true
			}
		}
	}
	return false
}
