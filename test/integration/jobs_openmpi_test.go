package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	batch "github.com/tensorstack/t9k/pkg/apis/batch/v1beta1"
)

// requireMpirun returns the path of OpenMPI's mpirun, installing Debian's openmpi-bin when it is
// missing (make test's prerequisites do so too). The test is skipped only where it cannot be had.
func requireMpirun(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("mpirun"); err == nil {
		return p
	}
	if _, err := exec.LookPath("apt-get"); err != nil || os.Geteuid() != 0 {
		t.Skip("OpenMPI's mpirun is not installed and cannot be (no apt-get, or not root): install openmpi-bin to run this test")
	}
	cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", "openmpi-bin")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "installing openmpi-bin: %s", out)
	p, err := exec.LookPath("mpirun")
	require.NoError(t, err)
	return p
}

// localRsh is an "ssh" for mpirun that starts the command on this machine and records the host it
// was asked to reach, one per line, in log. Every "node" is this machine, so each daemon gets its
// own temporary directory: in a shared /tmp the daemons race to create the same session directory
// (ompi.<hostname>.<uid>/jf.<job>) and one of them fails with "File exists".
func localRsh(t *testing.T, dir string) (agent, log string) {
	agent, log = filepath.Join(dir, "rsh"), filepath.Join(dir, "hosts")
	script := fmt.Sprintf(`#!/bin/sh
echo "$1" >> %[1]s
d=%[2]s/"$1"
mkdir -p "$d"
export TMPDIR="$d" OMPI_MCA_orte_tmpdir_base="$d"
shift
exec sh -c "$*"
`, log, filepath.Join(dir, "tmp"))
	require.NoError(t, os.WriteFile(agent, []byte(script), 0o755))
	return agent, log
}

// TestJobMPIRunsWithOpenMPI runs what the controller gives an MPIJob's launcher (its command, its
// env and the hostfile ConfigMap), both API shapes, with the real OpenMPI mpirun; ssh is replaced
// by a local agent that records the host names mpirun reaches. Every worker must keep its full DNS
// name (the short one does not resolve in a pod) and offer the slots that -N 3 asks for, and the
// program must run 3 times on each worker.
func TestJobMPIRunsWithOpenMPI(t *testing.T) {
	mpirun := requireMpirun(t)
	home := filepath.Dir(filepath.Dir(mpirun)) // /usr for /usr/bin/mpirun
	e := startJobs(t)
	for _, tc := range []struct {
		file, name string
		workers    int
	}{
		{"mpi-example.yaml", "mpi-example", 5},
		{"mpi-example-2025.yaml", "mpi-example-2025", 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			e.apply(tc.file, func(o client.Object) {
				j := o.(*batch.MPIJob)
				// The program each rank runs, and where this machine's OpenMPI lives.
				if j.Spec.Worker != nil {
					j.Spec.Worker.Cmd, j.Spec.MPIHome = []string{"hostname"}, home
				} else {
					j.Spec.MPIConfig.Script, j.Spec.MPIConfig.Home = []string{"hostname"}, home
				}
			})
			var workers []string
			for i := 0; i < tc.workers; i++ {
				workers = append(workers, fmt.Sprintf("%s-worker-%d", tc.name, i))
			}
			e.runAll(podNames(e.waitPods(tc.name, workers...))...)
			launcherName := tc.name + "-launcher"
			e.waitPods(tc.name, append([]string{launcherName}, workers...)...)
			launcher := container(e.pod(launcherName), "launcher")
			var cm corev1.ConfigMap
			require.NoError(t, e.c.Get(e.ctx, client.ObjectKey{Namespace: e.ns, Name: tc.name + "-hostfile"}, &cm))

			dir := t.TempDir()
			hostfile := filepath.Join(dir, "hostfile")
			require.NoError(t, os.WriteFile(hostfile, []byte(cm.Data["hostfile"]), 0o644))
			agent, hostLog := localRsh(t, dir)
			// The launcher's command as the controller made it, reading the hostfile where this
			// test wrote it, and showing the allocation.
			require.Equal(t, mpirun, launcher.Command[0])
			args := []string{"--display-allocation"}
			for _, a := range launcher.Command[1:] {
				args = append(args, strings.ReplaceAll(a, "/etc/mpi/hostfile", hostfile))
			}
			ctx, cancel := context.WithTimeout(e.ctx, 90*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, mpirun, args...)
			cmd.Dir = dir
			cmd.Env = os.Environ()
			for _, v := range launcher.Env {
				cmd.Env = append(cmd.Env, v.Name+"="+strings.ReplaceAll(v.Value, "/etc/mpi/hostfile", hostfile))
			}
			// The local agent instead of ssh; every "node" is this machine, so the daemons' PMIx
			// stores must not share memory segments.
			cmd.Env = append(cmd.Env, "OMPI_MCA_plm_rsh_agent="+agent, "PMIX_MCA_gds=hash")
			out, err := cmd.CombinedOutput()
			t.Logf("%s %s\n%s", mpirun, strings.Join(args, " "), out)
			require.NoError(t, err, "mpirun failed")

			hostname, err := os.Hostname()
			require.NoError(t, err)
			for _, w := range workers {
				full := w + "." + tc.name
				require.Regexp(t, regexp.MustCompile(`(?m)^\s*`+regexp.QuoteMeta(full)+`: flags=\S+ slots=3 `), string(out),
					"worker %s in the allocation with its full name and 3 slots", w)
			}
			reached, err := os.ReadFile(hostLog)
			require.NoError(t, err)
			var want []string // the launcher is none of the workers, so mpirun reaches each through ssh
			for _, w := range workers {
				want = append(want, w+"."+tc.name)
			}
			got := strings.Fields(string(reached))
			require.ElementsMatch(t, want, got, "hosts mpirun asked ssh to reach")
			require.Equal(t, 3*tc.workers, strings.Count(string(out), hostname+"\n"), "ranks that ran")
		})
	}
}
