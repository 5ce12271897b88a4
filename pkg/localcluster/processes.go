package localcluster

// How nothing the local cluster starts outlives it, however the process that runs it ends.
//
// Every child runs in its own process group (Stop kills the group, so anything a child spawned
// goes with it) and carries a parent-death signal: SIGKILL when this process dies, even by
// SIGKILL. Linux ties that signal to the OS *thread* that forked the child, not to the process
// (golang/go#27505): the Go runtime ends a thread when a goroutine that locked it returns, and the
// child would be killed then, or never if the signal were set from a thread that outlived the
// process's other threads. So every fork happens on one goroutine that locks its thread and never
// returns (spawn): that thread lives exactly as long as the process.
//
// kube-apiserver and etcd are started by envtest, which sets no parent-death signal. With
// Options.Reexec they are started through this executable under their own names (symlinks in
// Dir/controlplane/bin); ExecGuardedChild, first in main, sets the signal and execs the real
// binary, keeping the pid, so they die with this process too.
//
// A run killed before Stop leaves its etcd data and certificates in Dir/controlplane (cleared at the
// next start) and Dir/processes, the process groups it started: the next Start kills whatever is
// still in them (a grandchild, say) before it starts. Dir/lock keeps a second cluster out of a
// directory in use; the kernel drops the lock when its holder dies.

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

var spawner struct {
	once sync.Once
	work chan func()
}

// spawn runs f on the spawner thread: every child process is forked there (see above).
func spawn(f func()) {
	spawner.once.Do(func() {
		spawner.work = make(chan func())
		go func() {
			// Never unlocked and the goroutine never returns, so the runtime never ends this thread.
			runtime.LockOSThread()
			for f := range spawner.work {
				f()
			}
		}()
	})
	done := make(chan struct{})
	spawner.work <- func() { defer close(done); f() }
	<-done
}

// Environment of a guarded child (see ExecGuardedChild).
const (
	envGuardBinDir = "T9K_LOCAL_GUARD_BIN_DIR"
	envGuardParent = "T9K_LOCAL_GUARD_PARENT"
)

// envLocalDir marks every process a cluster starts with the cluster's Dir: reapLeftovers kills
// only processes that carry their directory's mark, never an unrelated process that happens to
// reuse a recorded process group id.
const envLocalDir = "T9K_LOCAL_DIR"

// marked reports whether the process was started (directly or not) by the cluster in dir.
func marked(pid int, dir string) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range strings.Split(string(data), "\x00") {
		if kv == envLocalDir+"="+dir {
			return true
		}
	}
	return false
}

// guardedNames are the binaries ExecGuardedChild stands in for.
var guardedNames = []string{"etcd", "kube-apiserver"}

// ExecGuardedChild must be called first in the main of a program that starts a local cluster with
// Options.Reexec. When this process was started in place of kube-apiserver or etcd, it arranges to
// be killed when its parent dies and execs the real binary (it does not return then); otherwise it
// returns at once.
func ExecGuardedChild() {
	dir := os.Getenv(envGuardBinDir)
	name := filepath.Base(os.Args[0])
	if dir == "" || !contains(guardedNames, name) {
		return
	}
	// The parent-death signal belongs to the thread that sets it, and survives exec only on it.
	runtime.LockOSThread()
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, syscall.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0); errno != 0 {
		fmt.Fprintf(os.Stderr, "t9k-local: %s: setting the parent-death signal: %v\n", name, errno)
		os.Exit(126)
	}
	if strconv.Itoa(os.Getppid()) != os.Getenv(envGuardParent) {
		os.Exit(1) // the parent died before the signal was set
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envGuardBinDir+"=") && !strings.HasPrefix(kv, envGuardParent+"=") {
			env = append(env, kv)
		}
	}
	path := filepath.Join(dir, name)
	err := syscall.Exec(path, append([]string{path}, os.Args[1:]...), env)
	fmt.Fprintf(os.Stderr, "t9k-local: exec %s: %v\n", path, err)
	os.Exit(127)
}

// guardedPaths makes dir/<name> links to this executable for kube-apiserver and etcd and sets the
// environment that makes ExecGuardedChild run binDir/<name> and marks them as the cluster's in
// clusterDir; undo clears that environment.
func guardedPaths(dir, binDir, clusterDir string) (apiserver, etcd string, undo func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return "", "", nil, err
	}
	realDir, err := filepath.Abs(binDir)
	if err != nil {
		return "", "", nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", nil, err
	}
	for _, n := range guardedNames {
		if _, err := os.Stat(filepath.Join(realDir, n)); err != nil {
			return "", "", nil, fmt.Errorf("%s not found in %s: run `make tools` first", n, realDir)
		}
		link := filepath.Join(dir, n)
		_ = os.Remove(link)
		if err := os.Symlink(self, link); err != nil {
			return "", "", nil, err
		}
	}
	os.Setenv(envGuardBinDir, realDir)
	os.Setenv(envGuardParent, strconv.Itoa(os.Getpid()))
	os.Setenv(envLocalDir, clusterDir)
	undo = func() {
		os.Unsetenv(envGuardBinDir)
		os.Unsetenv(envGuardParent)
		os.Unsetenv(envLocalDir)
	}
	return filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "etcd"), undo, nil
}

// procStat is what the local cluster reads of /proc/<pid>/stat.
type procStat struct {
	pid, ppid, pgid int
	start           uint64 // clock ticks after boot
	state           byte
	comm            string
}

func readProcStat(pid int) (procStat, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, false
	}
	s := string(data)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return procStat{}, false
	}
	// After the command: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
	// utime stime cutime cstime priority nice num_threads itrealvalue starttime ...
	f := strings.Fields(s[closing+1:])
	if len(f) < 20 {
		return procStat{}, false
	}
	st := procStat{pid: pid, comm: s[open+1 : closing], state: f[0][0]}
	st.ppid, _ = strconv.Atoi(f[1])
	st.pgid, _ = strconv.Atoi(f[2])
	st.start, _ = strconv.ParseUint(f[19], 10, 64)
	return st, true
}

// allProcs lists the processes in /proc.
func allProcs() []procStat {
	entries, _ := os.ReadDir("/proc")
	var out []procStat
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readProcStat(pid); ok {
			out = append(out, st)
		}
	}
	return out
}

// processesFile lists the process groups this cluster started: "<pid> <start time> <command>".
func (c *Cluster) processesFile() string { return filepath.Join(c.Dir, "processes") }

// childGroups are the children of this process that lead their own process group, by pid.
func childGroups() map[int]procStat {
	self := os.Getpid()
	out := map[int]procStat{}
	for _, p := range allProcs() {
		if p.ppid == self && p.pgid == p.pid {
			out[p.pid] = p
		}
	}
	return out
}

// recordChildren writes the process groups this cluster started to processesFile, so that a next
// run can clean up after a killed one.
func (c *Cluster) recordChildren() {
	c.mu.Lock()
	list := append([]procStat(nil), c.others...)
	for _, p := range c.procs {
		if st, ok := readProcStat(p.cmd.Process.Pid); ok {
			list = append(list, st)
		}
	}
	c.mu.Unlock()
	var b strings.Builder
	for _, p := range list {
		fmt.Fprintf(&b, "%d %d %s\n", p.pid, p.start, p.comm)
	}
	_ = os.WriteFile(c.processesFile(), []byte(b.String()), 0o644)
}

// reapLeftovers kills what is left in the process groups a killed earlier run recorded: processes
// in such a group, started no earlier than its leader, that carry this directory's mark.
func (c *Cluster) reapLeftovers() {
	f, err := os.Open(c.processesFile())
	if err != nil {
		return
	}
	type group struct {
		start uint64
		comm  string
	}
	groups := map[int]group{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var pid int
		var g group
		if n, _ := fmt.Sscanf(sc.Text(), "%d %d %s", &pid, &g.start, &g.comm); n >= 2 {
			groups[pid] = g
		}
	}
	f.Close()
	var killed []string
	var victims []procStat
	for _, p := range allProcs() {
		g, ok := groups[p.pgid]
		if !ok || p.start < g.start || p.state == 'Z' || !marked(p.pid, c.Dir) {
			continue
		}
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		killed = append(killed, fmt.Sprintf("%s (pid %d)", p.comm, p.pid))
		victims = append(victims, p)
	}
	if len(killed) > 0 {
		c.step("killed %d processes left by an earlier run in %s: %s", len(killed), c.Dir, strings.Join(killed, ", "))
		deadline := time.Now().Add(5 * time.Second)
		for _, v := range victims {
			for time.Now().Before(deadline) {
				st, ok := readProcStat(v.pid)
				if !ok || st.start != v.start || st.state == 'Z' {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	}
	_ = os.Remove(c.processesFile())
}

// lockDir takes Dir/lock for this process, or says who holds it.
func (c *Cluster) lockDir() error {
	path := filepath.Join(c.Dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		holder, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("another local cluster (pid %s) is running in %s; stop it or use another --dir", strings.TrimSpace(string(holder)), c.Dir)
		}
		return fmt.Errorf("locking %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	c.lock = f
	return nil
}

func (c *Cluster) unlockDir() {
	if c.lock != nil {
		// The file stays: removing it could let two runs lock two different files.
		c.lock.Close()
		c.lock = nil
	}
}
