package workloads

import (
	"fmt"
	"strings"
)

// Elastic DeepSpeed. The launcher (deepspeed, or config.customCommand) runs on worker-0 and
// reaches every host of the hostfile over ssh (pdsh); it reads the hostfile once, when it starts.
// So that scaling neither leaves new pods idle (holding GPUs) nor kills pods under it:
//
//   - The ConfigMap is mounted as a directory (deepspeedConfigDir), and the hostfile is read from
//     there, never through a subPath mount: the kubelet refreshes the files of a directory mount
//     in running pods, while a subPath mount keeps the file it found at the start forever. The
//     documented /t9k/hostfile is a symlink into it.
//   - Worker-0 runs a supervisor (deepspeedSupervisor) instead of exec'ing the launcher: when the
//     hostfile changes it waits for the sshd of every new host (the old launcher runs on
//     meanwhile), stops the launcher and starts it again on the new hosts. The training script
//     resumes from its checkpoint, as with torch elastic.
//   - While it does, the marker file exists and worker-0's readiness probe fails: the controller
//     deletes surplus workers of a scale-down only once worker-0 is Ready again after the
//     ConfigMap changed (JobWithScaleDownAck; the reconciler's removeSurplus).

const (
	// deepspeedConfigDir is where the job's ConfigMap (hostfile, deepspeed_env) is mounted whole.
	deepspeedConfigDir = "/t9k/config"
	// deepspeedRelaunchMarker exists while the launcher does not run on the current hostfile.
	deepspeedRelaunchMarker = "/tmp/t9k-relaunch"
)

// deepspeedLinkHostfile makes the documented hostfile path a symlink into the refreshed mount.
var deepspeedLinkHostfile = fmt.Sprintf("ln -sfn %s/hostfile %s", deepspeedConfigDir, deepspeedHostfile)

// deepspeedSupervisor is worker-0's program in an elastic DeepSpeedJob; its fields are the
// script's parameters (tests run it with their own paths and shorter times).
type deepspeedSupervisor struct {
	// Launch is the launcher's command line (shell syntax).
	Launch string
	// Hostfile is the hostfile the kubelet keeps current; Link, if set, is made a symlink to it.
	Hostfile, Link string
	// Marker exists while the launcher does not run on the current hostfile (readiness probe).
	Marker string
	// SSHD is started as a daemon: worker-0 is one of the hosts too.
	SSHD string
	// Poll is the seconds between two looks at the launcher and the hostfile (sleep's argument).
	Poll string
	// Hold is the seconds the marker stays after a (re)launch, so that the readiness probe
	// (period 1 s) cannot miss it; Grace the seconds the launcher has to stop after SIGTERM.
	Hold, Grace int
}

func newDeepSpeedSupervisor(launch string) deepspeedSupervisor {
	return deepspeedSupervisor{
		Launch: launch, Hostfile: deepspeedConfigDir + "/hostfile", Link: deepspeedHostfile,
		Marker: deepspeedRelaunchMarker, SSHD: defaultSSHD, Poll: "2", Hold: 5, Grace: 20,
	}
}

// Script is the supervisor as a POSIX sh script: its parameters, then supervisorBody.
func (s deepspeedSupervisor) Script() string {
	params := []string{
		"HOSTFILE=" + shellQuote(s.Hostfile),
		"LINK=" + shellQuote(s.Link),
		"MARKER=" + shellQuote(s.Marker),
		"SSHD=" + shellQuote(s.SSHD),
		"POLL=" + shellQuote(s.Poll),
		fmt.Sprintf("HOLD=%d", s.Hold),
		fmt.Sprintf("GRACE=%d", s.Grace),
		"LAUNCH=" + shellQuote(s.Launch),
	}
	return strings.Join(params, "\n") + "\n" + supervisorBody
}

// readinessCommand is worker-0's readiness probe: ready unless the marker exists.
func (s deepspeedSupervisor) readinessCommand() []string {
	return []string{"/bin/sh", "-c", "test ! -e " + shellQuote(s.Marker)}
}

// supervisorBody is the supervisor's logic; it reads its parameters from the variables above it.
// Launcher processes are found by process group: setsid gives the launcher a session of its own
// when the image has setsid (a background job of a non-interactive sh is no group leader, so
// setsid needs no fork and $! is the launcher).
const supervisorBody = `
# Worker-0 of an elastic DeepSpeedJob (written by t9k-controllers). The launcher reads the
# hostfile once; this script restarts it on the new hosts whenever the hostfile changes. $MARKER
# exists while the launcher does not run on the current hostfile: worker-0's readiness probe fails
# then, and the controller removes the workers of a scale-down only once worker-0 is ready again.

if [ -n "$LINK" ]; then
  mkdir -p "${LINK%/*}" && ln -sfn "$HOSTFILE" "$LINK" || echo "t9k: cannot link $LINK to $HOSTFILE" >&2
fi
touch "$MARKER"
"$SSHD" || exit
launcher=
running=

# hosts prints the host of every line of the hostfile content $1.
hosts() {
  printf '%s\n' "$1" | while read -r h _; do
    case $h in ''|'#'*) ;; *) echo "$h" ;; esac
  done
}

# alive: the launcher started last is still running.
alive() { [ -n "$launcher" ] && kill -0 "$launcher" 2>/dev/null; }

# wait_hosts waits until every host of the hostfile answers on ssh, starting over with the new
# content whenever the hostfile changes meanwhile; $want is the content it checked. It returns 1
# as soon as the running launcher exits.
wait_hosts() {
  while :; do
    want=$(cat "$HOSTFILE" 2>/dev/null)
    n=0 down=
    for h in $(hosts "$want"); do
      n=$((n + 1))
      ssh -o ConnectTimeout=2 "$h" true </dev/null >/dev/null 2>&1 || { down=$h; break; }
    done
    [ "$n" -gt 0 ] && [ -z "$down" ] && return 0
    if [ -n "$launcher" ] && ! alive; then return 1; fi
    echo "t9k: waiting for ${down:-a hostfile}"
    sleep "$POLL"
  done
}

# start runs the launcher on the hosts of $want, in a process group of its own when it can.
start() {
  echo "t9k: starting the launcher on" $(hosts "$want")
  if command -v setsid >/dev/null 2>&1; then
    setsid /bin/sh -c "$LAUNCH" &
  else
    /bin/sh -c "$LAUNCH" &
  fi
  launcher=$! running=$want ready_at=$(($(date +%s) + HOLD))
}

# in_group: a process of process group $1 has not ended (zombies, which an init that is not this
# script may be slow to reap, aside).
in_group() {
  for f in /proc/[0-9]*/stat; do
    { read -r s <"$f"; } 2>/dev/null || continue
    set -- "$1" ${s##*) }
    [ "$4" = "$1" ] && [ "$2" != Z ] && return 0
  done
  return 1
}

# stop sends SIGTERM to the launcher's process group (to the launcher alone when it leads none),
# waits up to $GRACE seconds for all of it to end (the sh -c that leads the group ends at once,
# deepspeed after cleaning up), and sends SIGKILL to what is left.
stop() {
  [ -n "$launcher" ] || return 0
  target=$launcher
  if { read -r s <"/proc/$launcher/stat"; } 2>/dev/null; then
    set -- ${s##*) }
    [ "$3" = "$launcher" ] && target=-$launcher
  fi
  end=$(($(date +%s) + GRACE))
  kill -TERM "$target" 2>/dev/null
  while stopping && [ "$(date +%s)" -lt "$end" ]; do sleep "$POLL"; done
  if stopping; then kill -KILL "$target" 2>/dev/null; fi
  wait "$launcher" 2>/dev/null
  launcher=
}
stopping() { if [ "$target" = "$launcher" ]; then alive; else in_group "$launcher"; fi; }

# The kubelet stops the pod with SIGTERM to this script: pass it on, so that the launcher stops
# its processes on the other hosts.
trap 'stop; exit 143' TERM INT

wait_hosts
start
while :; do
  sleep "$POLL"
  if ! alive; then
    wait "$launcher"
    exit $?
  fi
  if [ -e "$MARKER" ] && [ "$(date +%s)" -ge "$ready_at" ]; then rm -f "$MARKER"; fi
  now=$(cat "$HOSTFILE" 2>/dev/null)
  if [ -z "$now" ] || [ "$now" = "$running" ]; then continue; fi
  echo "t9k: the hostfile changed; the launcher restarts once every host answers"
  touch "$MARKER"
  if ! wait_hosts; then
    wait "$launcher"
    exit $?
  fi
  if [ "$want" != "$running" ]; then
    stop
    start
  else
    ready_at=$(($(date +%s) + HOLD))
  fi
done
`
