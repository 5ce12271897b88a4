package localcluster

import (
	"fmt"
	"os"

	"sigs.k8s.io/yaml"
)

// WriteSchedulerConfig copies a KubeSchedulerConfiguration from src to dst, pointing its client at
// kubeconfig and turning leader election off (one scheduler per local cluster). kube-scheduler
// ignores --kubeconfig once --config is given, so the path has to be inside the file.
func WriteSchedulerConfig(src, dst, kubeconfig string) error {
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
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, out, 0o644)
}
