package workloads

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

func TestTorchrunCommand(t *testing.T) {
	c := NewCluster("PyTorchTrainingJob", "j", "ns", []Replicas{{Type: "node", Count: 2}})
	g := c.Group("node")
	for _, tc := range []struct {
		name string
		tr   batch.TorchrunConfig
		el   *batch.ElasticConfig
		gpus int64
		want string
		err  bool
	}{
		{name: "defaults", want: "torchrun --nnodes=2 --rdzv_backend=c10d --rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT) --rdzv_id=id"},
		{name: "procs per gpu", tr: batch.TorchrunConfig{ProcPerNode: ptr.To(intstr.FromString("gpu")), MaxRestarts: ptr.To[int32](3)}, gpus: 8,
			want: "torchrun --nnodes=2 --nproc_per_node=8 --rdzv_backend=c10d --rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT) --rdzv_id=id --max_restarts=3"},
		{name: "gpu without gpus", tr: batch.TorchrunConfig{ProcPerNode: ptr.To(intstr.FromString("gpu"))}, err: true},
		{name: "number, etcd, extra", tr: batch.TorchrunConfig{ProcPerNode: ptr.To(intstr.FromString("4")), RdzvBackend: "etcd", ExtraOptions: []string{"--log_dir=/tmp"}},
			want: "torchrun --nnodes=2 --nproc_per_node=4 --rdzv_backend=etcd --rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT) --rdzv_id=id --log_dir=/tmp"},
		{name: "elastic", el: &batch.ElasticConfig{Enabled: true, MinReplicas: ptr.To[int32](1), MaxReplicas: ptr.To[int32](4)},
			want: "torchrun --nnodes=1:4 --rdzv_backend=c10d --rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT) --rdzv_id=id"},
		{name: "old minNodes", tr: batch.TorchrunConfig{MinNodes: ptr.To[int32](1)},
			want: "torchrun --nnodes=1:2 --rdzv_backend=c10d --rdzv_endpoint=$(MASTER_ADDR):$(MASTER_PORT) --rdzv_id=id"},
	} {
		got, err := torchrunCommand(&tc.tr, tc.el, c, g, tc.gpus, "id")
		if (err != nil) != tc.err || strings.Join(got, " ") != tc.want {
			t.Errorf("%s: %q %v, want %q", tc.name, strings.Join(got, " "), err, tc.want)
		}
	}
}

func TestDeepSpeedCommand(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  batch.DeepSpeedConfig
		el   *batch.ElasticConfig
		want string
	}{
		{"python", batch.DeepSpeedConfig{Run: &batch.DeepSpeedRun{Python: []string{"train.py", "--lr", "1e-4"}}},
			nil, "deepspeed --hostfile=/t9k/hostfile train.py --lr 1e-4"},
		{"module, no local rank, autotune, other args", batch.DeepSpeedConfig{LocalRank: ptr.To(false), Autotune: batch.DeepSpeedAutotuneTune,
			OtherArgs: []string{"--master_port=12346"}, Run: &batch.DeepSpeedRun{Module: []string{"pkg.train"}}},
			nil, "deepspeed --hostfile=/t9k/hostfile --no_local_rank --autotuning=tune --master_port=12346 --module pkg.train"},
		{"exec", batch.DeepSpeedConfig{Run: &batch.DeepSpeedRun{Exec: []string{"bash", "run.sh"}}},
			nil, "deepspeed --hostfile=/t9k/hostfile --no_python bash run.sh"},
		{"elastic", batch.DeepSpeedConfig{Run: &batch.DeepSpeedRun{Python: []string{"t.py"}}},
			&batch.ElasticConfig{Enabled: true, MinReplicas: ptr.To[int32](1), MaxReplicas: ptr.To[int32](3)},
			"deepspeed --hostfile=/t9k/hostfile --elastic_training --min_elastic_nodes=1 --max_elastic_nodes=3 t.py"},
		{"quoting", batch.DeepSpeedConfig{Run: &batch.DeepSpeedRun{Python: []string{"t.py", "--name", "it's a test"}}},
			nil, `deepspeed --hostfile=/t9k/hostfile t.py --name 'it'"'"'s a test'`},
		{"custom", batch.DeepSpeedConfig{CustomCommand: "python x.py && echo done", Run: &batch.DeepSpeedRun{Python: []string{"ignored"}}},
			nil, "python x.py && echo done"},
	} {
		if got := deepspeedCommand(&tc.cfg, tc.el); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestMPIRunAndColossalAICommands(t *testing.T) {
	got := mpirunCommand("/usr/local", map[string]string{"pml": "ob1", "btl": "^openib"}, []string{"-N", "1"}, []string{"python", "t.py"})
	want := []string{"/usr/local/bin/mpirun", "--hostfile", "/etc/mpi/hostfile", "--mca", "btl", "^openib", "--mca", "pml", "ob1", "-N", "1", "python", "t.py"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("mpirun: %q", got)
	}
	if got := mpirunCommand("", nil, nil, []string{"./a"}); !reflect.DeepEqual(got, []string{"mpirun", "--hostfile", "/etc/mpi/hostfile", "./a"}) {
		t.Errorf("mpirun without home: %q", got)
	}
	got = colossalaiCommand([]string{"w0.j", "w1.j"}, 2, []string{"--master_port=29501"}, []string{"train.py", "arg1"})
	want = []string{"colossalai", "run", "--nproc_per_node", "2", "--host", "w0.j,w1.j", "--master_addr", "w0.j", "--master_port=29501", "train.py", "arg1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("colossalai: %q", got)
	}
}

func TestColossalAITorchArgs(t *testing.T) {
	got := colossalaiCommand([]string{"w0.j"}, 1, []string{"--master_port", "29501", "--max_restarts=3", "--rdzv_backend", "c10d", "--standalone"}, []string{"train.py"})
	want := []string{"colossalai", "run", "--nproc_per_node", "1", "--host", "w0.j", "--master_addr", "w0.j",
		"--master_port", "29501", "--extra_launch_args", "max_restarts=3,rdzv_backend=c10d,standalone", "train.py"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("colossalai: %q", got)
	}
}

func TestMPIProcessRecovery(t *testing.T) {
	j := mpiJob{MPIJob: &batch.MPIJob{Spec: batch.MPIJobSpec{Worker: &batch.MPIWorker{
		ProcessesPerWorker: ptr.To[int32](4), ExtraMPIArgs: []string{"-N", "1"},
		ProcessRecovery: &batch.ProcessRecovery{Enable: true, Limit: ptr.To[int32](5)},
	}}}}
	_, _, extra, _, slots := j.config()
	if !reflect.DeepEqual(extra, []string{"-N", "1", "--enable-recovery", "--max-restarts", "5"}) || slots != 4 {
		t.Errorf("extra %q slots %d", extra, slots)
	}
}

func TestTFConfigAndHostfile(t *testing.T) {
	tmpl := &batch.PodTemplate{PodTemplateSpec: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "tensorflow",
		Ports: []corev1.ContainerPort{{Name: "tfjob-port", ContainerPort: 3333}}}}}}}
	c := NewCluster("TensorFlowTrainingJob", "tf", "ns", []Replicas{
		{Type: "chief", Count: 1, MainContainer: "tensorflow"},
		{Type: "worker", Count: 2, MainContainer: "tensorflow", Template: tmpl},
		{Type: "evaluator", Count: 1, MainContainer: "tensorflow"},
	})
	got, err := tfConfig(c, "worker", 1)
	want := `{"cluster":{"chief":["tf-chief-0.tf:2222"],"worker":["tf-worker-0.tf:3333","tf-worker-1.tf:3333"]},"task":{"index":1,"type":"worker"}}`
	if err != nil || got != want {
		t.Errorf("TF_CONFIG %s", got)
	}
	if h := hostfile(c, "worker", 8); h != "tf-worker-0.tf slots=8\ntf-worker-1.tf slots=8\n" {
		t.Errorf("hostfile %q", h)
	}
}

func TestGenericSubstitution(t *testing.T) {
	c := NewCluster("GenericJob", "g", "ns", []Replicas{{Type: "master", Count: 1}, {Type: "worker", Count: 3}})
	svc := &batch.ServiceOption{Ports: []corev1.ServicePort{{Name: "http", Port: 2222}}}
	for _, tc := range []struct {
		svc      *batch.ServiceOption
		in, want string
	}{
		{svc, "$(type)/$(rank)/$(replicas[worker])/$(replicas[master])", "worker/2/3/1"},
		{svc, "$(service.master[0].host):$(service.port[http])", "g-master-0:2222"},
		{nil, "$(service.worker[1].host)", "g-worker-1.g"},
		{svc, "$(service.port[grpc]) $(HOME) $(replicas[ps])", "$(service.port[grpc]) $(HOME) 0"},
	} {
		s := genericSubstitution{c: c, service: tc.svc, replicaType: "worker", rank: 2}
		if got := s.expand(tc.in); got != tc.want {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestGenericOutcome(t *testing.T) {
	j := genericJob{&batch.GenericJob{Spec: batch.GenericJobSpec{
		SuccessRules: []batch.FinishRule{{"worker": {0}}},
		FailureRules: []batch.FinishRule{{"worker": {0, 1}}},
	}}}
	c, v := viewWith(corev1.PodFailed, corev1.PodRunning)
	v.All()[0].Exhausted = true
	if out := j.Outcome(c, v); !out.Done || !out.Failed || !strings.HasPrefix(out.Message, "GenericJob j has failed: j-worker-0") {
		t.Errorf("worker-0 exhausted breaks the only success rule: %+v", out)
	}
	c, v = viewWith(corev1.PodSucceeded, corev1.PodRunning)
	if out := j.Outcome(c, v); !out.Done || out.Failed {
		t.Errorf("success rule: %+v", out)
	}
	c, v = viewWith(corev1.PodFailed, corev1.PodFailed)
	v.All()[0].Exhausted, v.All()[1].Exhausted = true, true
	if out := j.Outcome(c, v); out.Message != `The job is failed with rule: {"worker":["0","1"]}` {
		t.Errorf("failure rule: %+v", out)
	}
	// No rules: all must succeed; one exhausted replica fails the job.
	j = genericJob{&batch.GenericJob{}}
	c, v = viewWith(corev1.PodSucceeded, corev1.PodRunning)
	if out := j.Outcome(c, v); out.Done {
		t.Errorf("not all succeeded: %+v", out)
	}
}

func TestPodGroupFor(t *testing.T) {
	j := mpiJob{MPIJob: &batch.MPIJob{Spec: batch.MPIJobSpec{
		CommonJobSpec: batch.CommonJobSpec{Scheduler: &batch.SchedulePolicy{T9kScheduler: &batch.T9kScheduler{Priority: 7}}},
		Worker:        &batch.MPIWorker{Replicas: ptr.To[int32](4)},
	}}}
	j.Name = "m"
	j.Annotations = map[string]string{"scheduler.tensorstack.dev/topology-policy": "Required:nvidia.com/gpu.clique"}
	pg, err := podGroupFor(j, clusterOf(j))
	if err != nil || pg.Spec.MinMember != 4 || pg.Spec.Queue != "default" || pg.Spec.Priority != 7 ||
		len(pg.Spec.Roles) != 1 || pg.Spec.TopologyPolicy.Level != "nvidia.com/gpu.clique" {
		t.Errorf("the launcher is gated and not counted: %+v %v", pg.Spec, err)
	}
	d := deepspeedJob{&batch.DeepSpeedJob{Spec: batch.DeepSpeedJobSpec{
		CommonJobSpec: batch.CommonJobSpec{Scheduler: &batch.SchedulePolicy{T9kScheduler: &batch.T9kScheduler{Queue: "q"}}},
		Worker:        batch.DeepSpeedWorker{Replicas: ptr.To[int32](1)},
		Elastic:       &batch.ElasticConfig{Enabled: true, MinReplicas: ptr.To[int32](2), MaxReplicas: ptr.To[int32](6), ExpectedReplicas: ptr.To[int32](5)},
	}}}
	c := clusterOf(d)
	if c.Count("worker") != 5 {
		t.Errorf("elastic count %d", c.Count("worker"))
	}
	if pg, _ := podGroupFor(d, c); pg.Spec.MinMember != 2 || pg.Spec.Queue != "q" {
		t.Errorf("elastic minMember: %+v", pg.Spec)
	}
}

func TestElasticCount(t *testing.T) {
	el := &batch.ElasticConfig{MinReplicas: ptr.To[int32](2), MaxReplicas: ptr.To[int32](4)}
	for _, tc := range []struct{ expected, spec, want int32 }{{0, 3, 3}, {9, 1, 4}, {1, 1, 2}} {
		el.ExpectedReplicas = nil
		if tc.expected != 0 {
			el.ExpectedReplicas = ptr.To(tc.expected)
		}
		if got := elasticCount(el, tc.spec); got != tc.want {
			t.Errorf("elasticCount(%d, %d) = %d", tc.expected, tc.spec, got)
		}
	}
}

func TestNamesAndQuoting(t *testing.T) {
	long := strings.Repeat("a", 70)
	if l := dnsLabel(long); len(l) > 63 || dnsLabel(long) != l {
		t.Errorf("dnsLabel(long) = %q", l)
	}
	if l := dnsLabel("my.job"); l == "my.job" || strings.Contains(l, ".") {
		t.Errorf("dots are not allowed in a label: %q", l)
	}
	if dnsLabel("ok-name") != "ok-name" {
		t.Error("a valid label is kept")
	}
	c := NewCluster("MPIJob", "m", "ns", []Replicas{{Type: "launcher", Count: 1, Singleton: true}, {Type: "worker", Count: 2}})
	if c.PodName("launcher", 0) != "m-launcher" || c.PodName("worker", 1) != "m-worker-1" || c.Rank("worker", 1) != 2 {
		t.Error("pod names or ranks")
	}
	if shellQuote("a b") != "'a b'" || shellQuote("--x=1") != "--x=1" || shellQuote("") != "''" {
		t.Error("shellQuote")
	}
}

func TestProcPerNodeFromGPUs(t *testing.T) {
	c := &corev1.Container{Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
		"nvidia.com/gpu": resource.MustParse("4"), "cpu": resource.MustParse("8")}}}
	if gpuCount(c) != 4 {
		t.Errorf("gpuCount %d", gpuCount(c))
	}
}
