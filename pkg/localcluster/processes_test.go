package localcluster

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestReapLeftovers: a group recorded by a killed run is emptied by the next start, its
// grandchildren included, and nothing else is touched.
func TestReapLeftovers(t *testing.T) {
	dir := t.TempDir()
	// A leader that spawns a grandchild and waits, in its own group, as a child of a killed run
	// would have been; and an unrelated process.
	leader := exec.Command("sh", "-c", "sleep 300 & wait")
	leader.Env = append(os.Environ(), envLocalDir+"="+dir)
	leader.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, leader.Start())
	t.Cleanup(func() { _ = syscall.Kill(-leader.Process.Pid, syscall.SIGKILL); _ = leader.Wait() })
	other := exec.Command("sleep", "300")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, other.Start())
	t.Cleanup(func() { _ = other.Process.Kill(); _ = other.Wait() })
	// A process in the recorded group without the directory's mark (the group id reused by
	// someone else): left alone.
	stranger := exec.Command("sleep", "301")
	stranger.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: leader.Process.Pid}
	require.NoError(t, stranger.Start())
	t.Cleanup(func() { _ = stranger.Process.Kill(); _ = stranger.Wait() })

	var members []procStat
	require.Eventually(t, func() bool {
		members = nil
		for _, p := range allProcs() {
			if p.pgid == leader.Process.Pid && p.pid != stranger.Process.Pid {
				members = append(members, p)
			}
		}
		return len(members) == 2
	}, 5*time.Second, 20*time.Millisecond, "leader and grandchild")

	c := &Cluster{Dir: dir, progress: io.Discard}
	for _, m := range members {
		if m.pid == leader.Process.Pid {
			c.others = []procStat{m} // group leaders are what a run records
		}
	}
	c.recordChildren()
	data, err := os.ReadFile(c.processesFile())
	require.NoError(t, err)
	require.Contains(t, string(data), "sh")

	var out strings.Builder
	c.progress = &out
	c.reapLeftovers()
	require.Contains(t, out.String(), "killed 2 processes left by an earlier run")
	for _, m := range members {
		st, ok := readProcStat(m.pid)
		require.True(t, !ok || st.state == 'Z' || st.start != m.start, "pid %d (%s) still alive", m.pid, m.comm)
	}
	for _, p := range []*exec.Cmd{other, stranger} {
		st, ok := readProcStat(p.Process.Pid)
		require.True(t, ok && st.state != 'Z', "an unrelated process (pid %d) was killed", p.Process.Pid)
	}
	_, err = os.Stat(c.processesFile())
	require.True(t, os.IsNotExist(err), "the record is gone once used")
}

func TestOneClusterPerDir(t *testing.T) {
	dir := t.TempDir()
	a := &Cluster{Dir: dir}
	require.NoError(t, a.lockDir())
	b := &Cluster{Dir: dir}
	err := b.lockDir()
	require.ErrorContains(t, err, "another local cluster (pid "+strconv.Itoa(os.Getpid())+") is running in "+dir)
	a.unlockDir()
	require.NoError(t, b.lockDir())
	b.unlockDir()
	_, err = os.Stat(filepath.Join(dir, "lock"))
	require.NoError(t, err)
}
