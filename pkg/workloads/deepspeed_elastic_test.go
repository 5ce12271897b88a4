package workloads

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// supervisorRig runs the real supervisor script with /bin/sh in a temporary directory, where
// sshd, ssh and deepspeed are stubs on PATH:
//   - ssh succeeds unless down/<host> exists (that host's sshd is not up yet);
//   - deepspeed logs "start <n> <argv>" and copies the hostfile it was given to hostfile.<n>,
//     logs "term <n>" and exits 143 on SIGTERM, and exits with the code in the file "exit" once
//     that exists.
type supervisorRig struct {
	t                   *testing.T
	dir, hostfile, link string
	marker              string
	cmd                 *exec.Cmd
	out                 bytes.Buffer
	exited              chan struct{} // closed once the script ended; waitErr is then its end
	waitErr             error
}

const deepspeedStub = `#!/bin/sh
n=$(($(cat "$T/count" 2>/dev/null || echo 0) + 1))
echo "$n" >"$T/count"
trap 'echo "term $n" >>"$T/log"; exit 143' TERM
cp "${1#--hostfile=}" "$T/hostfile.$n"
echo "start $n $*" >>"$T/log"
while :; do
  if [ -e "$T/exit" ]; then echo "exit $n" >>"$T/log"; exit "$(cat "$T/exit")"; fi
  sleep 0.05
done
`

func startSupervisor(t *testing.T, hostfile string) *supervisorRig {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	dir := t.TempDir()
	r := &supervisorRig{t: t, dir: dir, hostfile: filepath.Join(dir, "config", "hostfile"),
		link: filepath.Join(dir, "t9k", "hostfile"), marker: filepath.Join(dir, "relaunch"), exited: make(chan struct{})}
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{bin, filepath.Join(dir, "config"), filepath.Join(dir, "down")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stubs := map[string]string{
		"sshd":      "#!/bin/sh\nexit 0\n",
		"ssh":       "#!/bin/sh\n# ssh -o ConnectTimeout=2 <host> true\n[ ! -e \"$T/down/$3\" ]\n",
		"deepspeed": deepspeedStub,
	}
	for name, body := range stubs {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.writeHostfile(hostfile)
	sup := newDeepSpeedSupervisor("deepspeed --hostfile=" + r.link + " train.py --resume")
	sup.Hostfile, sup.Link, sup.Marker, sup.SSHD = r.hostfile, r.link, r.marker, filepath.Join(bin, "sshd")
	sup.Poll, sup.Hold, sup.Grace = "0.1", 1, 5
	r.cmd = exec.Command("/bin/sh", "-c", sup.Script())
	r.cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"), "T="+dir)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.waitErr = r.cmd.Wait(); close(r.exited) }()
	t.Cleanup(func() {
		// The stubs run in sessions of their own: tell them to end, then the script.
		_ = os.WriteFile(filepath.Join(dir, "exit"), []byte("0"), 0o644)
		_ = r.cmd.Process.Kill()
		<-r.exited
		time.Sleep(200 * time.Millisecond)
		if t.Failed() {
			t.Logf("supervisor output:\n%s\nlog:\n%s", r.out.String(), r.read("log"))
		}
	})
	return r
}

// writeHostfile replaces the hostfile the way the kubelet does: a new file renamed into place.
func (r *supervisorRig) writeHostfile(content string) {
	tmp := r.hostfile + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.hostfile); err != nil {
		r.t.Fatal(err)
	}
}

func (r *supervisorRig) read(name string) string {
	b, _ := os.ReadFile(filepath.Join(r.dir, name))
	return string(b)
}

func (r *supervisorRig) markerExists() bool {
	_, err := os.Stat(r.marker)
	return err == nil
}

func (r *supervisorRig) eventually(what string, cond func() bool) {
	r.t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	r.t.Fatalf("timed out waiting for %s", what)
}

// wantExit waits up to 10 s for the script to end, with exit code code; late says what failed
// if it does not end.
func (r *supervisorRig) wantExit(code int, late string) {
	r.t.Helper()
	select {
	case <-r.exited:
		var ee *exec.ExitError
		if !errors.As(r.waitErr, &ee) || ee.ExitCode() != code {
			r.t.Fatalf("script ended with %v, want exit code %d", r.waitErr, code)
		}
	case <-time.After(10 * time.Second):
		r.t.Fatal(late)
	}
}

func (r *supervisorRig) logHas(line string) bool {
	for _, l := range strings.Split(r.read("log"), "\n") {
		if l == line {
			return true
		}
	}
	return false
}

// TestDeepSpeedSupervisor runs the script worker-0 runs in an elastic DeepSpeedJob through a
// scale-down (3→2) and a scale-up (2→4) of its hostfile and to the launcher's end.
func TestDeepSpeedSupervisor(t *testing.T) {
	three := "w0 slots=2\nw1 slots=2\nw2 slots=2\n"
	two := "w0 slots=2\nw1 slots=2\n"
	four := two + "w2 slots=2\nw3 slots=2\n"
	r := startSupervisor(t, three)

	launch := "start %d --hostfile=" + r.link + " train.py --resume"
	start := func(n int) string { return strings.Replace(launch, "%d", string(rune('0'+n)), 1) }
	r.eventually("the first launcher", func() bool { return r.logHas(start(1)) })
	if got := r.read("hostfile.1"); got != three {
		t.Fatalf("first launcher's hostfile (through %s) = %q, want %q", r.link, got, three)
	}
	if target, err := os.Readlink(r.link); err != nil || target != r.hostfile {
		t.Fatalf("%s -> %q (%v), want a symlink to %s", r.link, target, err, r.hostfile)
	}
	r.eventually("ready once the launcher runs", func() bool { return !r.markerExists() })

	// 3→2: the launcher is stopped with SIGTERM and started on the two hosts; the marker (worker-0
	// unready) exists until it runs again, and is gone after the hold.
	r.writeHostfile(two)
	r.eventually("the marker", r.markerExists)
	r.eventually("the second launcher", func() bool { return r.logHas(start(2)) })
	if !r.logHas("term 1") {
		t.Fatalf("the first launcher got no SIGTERM before the second started:\n%s", r.read("log"))
	}
	if !r.markerExists() {
		t.Fatal("the marker is gone at once after the relaunch; the readiness probe could miss it")
	}
	if got := r.read("hostfile.2"); got != two {
		t.Fatalf("second launcher's hostfile = %q, want %q", got, two)
	}
	r.eventually("ready after the relaunch", func() bool { return !r.markerExists() })

	// 2→4 while w3's sshd is not up: the old launcher runs on (unready) until every host answers.
	if err := os.WriteFile(filepath.Join(r.dir, "down", "w3"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r.writeHostfile(four)
	r.eventually("the marker", r.markerExists)
	time.Sleep(500 * time.Millisecond)
	if r.logHas("term 2") || r.read("count") != "2\n" || !r.markerExists() {
		t.Fatalf("relaunched before w3 answered on ssh:\n%s", r.read("log"))
	}
	if err := os.Remove(filepath.Join(r.dir, "down", "w3")); err != nil {
		t.Fatal(err)
	}
	r.eventually("the third launcher", func() bool { return r.logHas(start(3)) })
	if !r.logHas("term 2") {
		t.Fatalf("the second launcher got no SIGTERM:\n%s", r.read("log"))
	}
	if got := r.read("hostfile.3"); got != four {
		t.Fatalf("third launcher's hostfile = %q, want %q", got, four)
	}
	r.eventually("ready after the relaunch", func() bool { return !r.markerExists() })

	// The launcher decides: its exit code is the script's.
	if err := os.WriteFile(filepath.Join(r.dir, "exit"), []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.wantExit(3, "the script did not end with its launcher")
	if r.read("count") != "3\n" {
		t.Fatalf("launchers started: %q, want 3", r.read("count"))
	}
}

// TestDeepSpeedSupervisorStopped: the kubelet's SIGTERM to the script reaches the launcher.
func TestDeepSpeedSupervisorStopped(t *testing.T) {
	r := startSupervisor(t, "w0 slots=1\n")
	r.eventually("the launcher", func() bool { return strings.HasPrefix(r.read("log"), "start 1 ") })
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	r.wantExit(143, "the script did not stop on SIGTERM")
	if !r.logHas("term 1") {
		t.Fatalf("the launcher got no SIGTERM:\n%s", r.read("log"))
	}
}
