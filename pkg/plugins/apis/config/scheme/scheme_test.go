package scheme

import (
	"os"
	"testing"

	schedconfig "k8s.io/kubernetes/pkg/scheduler/apis/config"
	kubeschedulerscheme "k8s.io/kubernetes/pkg/scheduler/apis/config/scheme"

	"github.com/tensorstack/t9k/pkg/plugins/apis/config"
)

func decode(t *testing.T, data []byte) *schedconfig.KubeSchedulerConfiguration {
	t.Helper()
	obj, _, err := kubeschedulerscheme.Codecs.UniversalDecoder().Decode(data, nil, nil)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return obj.(*schedconfig.KubeSchedulerConfiguration)
}

func args(cfg *schedconfig.KubeSchedulerConfiguration, name string) any {
	for _, pc := range cfg.Profiles[0].PluginConfig {
		if pc.Name == name {
			return pc.Args
		}
	}
	return nil
}

// The shipped profiles decode into our typed args.
func TestShippedProfilesDecode(t *testing.T) {
	for _, f := range []string{"../../../../../manifests/scheduler/t9k-scheduler.yaml", "../../../../../manifests/scheduler/t9k-scheduler-binpack.yaml"} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cfg := decode(t, data)
		g, ok := args(cfg, "T9kGang").(*config.T9kGangArgs)
		if !ok || g.ScheduleTimeoutSeconds != 60 || config.ValidateT9kGangArgs(g) != nil {
			t.Errorf("%s: T9kGang args = %#v", f, args(cfg, "T9kGang"))
		}
		q, ok := args(cfg, "T9kQueue").(*config.T9kQueueArgs)
		if !ok || q.QueueNamespace != "t9k-system" || !q.Preemption {
			t.Errorf("%s: T9kQueue args = %#v", f, args(cfg, "T9kQueue"))
		}
	}
}

// Unset args are defaulted; bad ones decode but fail validation; unknown fields are refused.
func TestArgsDefaultsAndValidation(t *testing.T) {
	base := `apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
profiles:
  - schedulerName: t9k-scheduler
    plugins:
      multiPoint:
        enabled: [{name: T9kQueue}, {name: T9kGang}]
        disabled: [{name: PrioritySort}]
`
	cfg := decode(t, []byte(base))
	if g, ok := args(cfg, "T9kGang").(*config.T9kGangArgs); !ok || g.ScheduleTimeoutSeconds != 60 {
		t.Errorf("defaulted T9kGang args = %#v", args(cfg, "T9kGang"))
	}
	if q, ok := args(cfg, "T9kQueue").(*config.T9kQueueArgs); !ok || q.QueueNamespace != "t9k-system" || !q.Preemption {
		t.Errorf("defaulted T9kQueue args = %#v", args(cfg, "T9kQueue"))
	}

	cfg = decode(t, []byte(base+`    pluginConfig:
      - name: T9kGang
        args: {scheduleTimeoutSeconds: 0}
      - name: T9kQueue
        args: {queueNamespace: "", preemption: false}
`))
	if err := config.ValidateT9kGangArgs(args(cfg, "T9kGang").(*config.T9kGangArgs)); err == nil {
		t.Error("scheduleTimeoutSeconds 0 passed validation")
	}
	q := args(cfg, "T9kQueue").(*config.T9kQueueArgs)
	if q.Preemption || config.ValidateT9kQueueArgs(q) == nil {
		t.Errorf("T9kQueue args %#v: want preemption off and an empty namespace refused", q)
	}

	if _, _, err := kubeschedulerscheme.Codecs.UniversalDecoder().Decode([]byte(base+`    pluginConfig:
      - name: T9kGang
        args: {scheduleTimeout: 5}
`), nil, nil); err == nil {
		t.Error("an unknown T9kGang arg was accepted")
	}
}
