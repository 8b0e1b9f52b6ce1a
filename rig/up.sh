#!/bin/bash
# Boot a fresh rig: a real systemd in new namespaces that manages the Debian mail services
# installed on the host, without starting any of them on the host.
#
# usage: up.sh [--guard] [--wait SECONDS] [--keep PATH]... [--no-configure] [DIR]
#   DIR             rig directory, default /tmp/selfheal-rig/default. Its earlier contents
#                   are wiped: every boot starts from the host's /etc and /var as installed.
#   --guard         tear the rig down as soon as standard input reaches end of file. A test
#                   harness passes a pipe that it keeps open, so the rig stops even when the
#                   harness is killed.
#   --wait SECONDS  how long to wait while another process owns a rig in DIR (default 0)
#   --keep PATH     keep a host directory under /tmp visible read-only inside (repeatable).
#                   The source tree that contains this script is always kept.
#   --no-configure  skip configure.sh (the minimal fixes that let every service start)
#
# Prints the host PID of the rig's systemd and the boot time. Run commands inside with
# exec.sh DIR CMD..., stop with down.sh DIR. Needs root, overlayfs and cgroup v2.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=rig/lib.sh
. "$HERE/lib.sh"

guard=0
wait_seconds=0
configure=1
keep=("$(dirname "$HERE")")
dir=/tmp/selfheal-rig/default
while [ $# -gt 0 ]; do
  case "$1" in
    --guard) guard=1 ;;
    --wait) wait_seconds=${2:?--wait needs a number of seconds}; shift ;;
    --keep) keep+=("$(realpath -m -- "${2:?--keep needs a path}")"); shift ;;
    --no-configure) configure=0 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) rig_die "unknown option: $1 (see --help)" ;;
    *) dir=$1 ;;
  esac
  shift
done

# ---- Preflight: report what is missing before a boot fails halfway.
[ "$(id -u)" = 0 ] ||
  rig_die "must run as root: the rig mounts file systems and creates namespaces and a cgroup"
for tool in unshare nsenter setpriv flock findmnt mount awk timeout realpath; do
  command -v "$tool" >/dev/null || rig_die "$tool not found: install util-linux, mount, gawk or coreutils"
done
[ -x /lib/systemd/systemd ] || rig_die "/lib/systemd/systemd not found: run rig/install-packages.sh"
grep -qw overlay /proc/filesystems || modprobe overlay 2>/dev/null || true
grep -qw overlay /proc/filesystems ||
  rig_die "overlayfs is not available in this kernel (no 'overlay' in /proc/filesystems)"
grep -qw cgroup2 /proc/filesystems ||
  rig_die "cgroup v2 is not available in this kernel (no 'cgroup2' in /proc/filesystems)"
[ "$wait_seconds" -ge 0 ] 2>/dev/null || rig_die "--wait needs a number of seconds, got '$wait_seconds'"

dir=$(rig_check_dir "$dir")
for path in "${keep[@]}"; do
  case "$path" in
    /run/* | /dev/* | /proc/* | /sys/*)
      rig_die "--keep $path: paths under /run, /dev, /proc and /sys cannot be kept visible" ;;
  esac
done
if [ -e "$dir" ] && [ ! -e "$dir/.selfheal-rig" ] && [ -n "$(ls -A "$dir")" ]; then
  rig_die "$dir exists, is not empty and has no .selfheal-rig marker, so it is not wiped: choose another rig directory"
fi
mkdir -p "$dir"
touch "$dir/.selfheal-rig"
state=$dir/state

# ---- Locks. The owner lock stays with the guard for the rig's life, so a second user of the
# same DIR waits here instead of wiping a running rig.
exec 9>"$dir/.owner.lock"
if ! flock -n 9; then
  echo "rig: $dir is in use by another process, waiting up to $wait_seconds s" >&2
  flock -w "$wait_seconds" 9 || rig_die "$dir is still in use by another process after $wait_seconds s"
fi
exec 8>"$dir/.ops.lock"
flock -w 120 8 || rig_die "another up.sh or down.sh has been working on $dir for 120 s"

# ---- Leftovers of an earlier run: stop a rig still running from this DIR (only the recorded
# processes, checked by start time), remove its cgroup, then wipe everything but the locks.
if rig_recorded_alive "$state" systemd; then
  echo "rig: stopping the rig left running in $dir (systemd host PID $(cat "$state/systemd.pid"))" >&2
fi
rig_teardown "$dir"
find "$dir" -mindepth 1 -maxdepth 1 ! -name .selfheal-rig ! -name .owner.lock ! -name .ops.lock \
  -exec rm -rf -- {} +
mkdir -p "$state" "$dir"/ovl/{etc,var}/{upper,work}

# ---- The host cgroup that becomes the root of the rig's cgroup namespace. Its name derives
# from DIR, so a leftover from a killed run is found and removed instead of piling up.
cgroup_name=selfheal-rig-$(printf '%s' "$dir" | sha256sum | cut -c1-12)
cgroup=
if [ -d /run/systemd/system ]; then
  # The host runs systemd: let it delegate a scope rather than creating cgroups behind its back.
  # NOTE: this branch has not been run yet. It needs a host whose PID 1 is systemd.
  systemctl reset-failed "$cgroup_name.scope" >/dev/null 2>&1 || true
elif [ "$(stat -fc %T /sys/fs/cgroup/unified 2>/dev/null)" = cgroup2fs ]; then
  cgroup=/sys/fs/cgroup/unified/$cgroup_name   # hybrid hierarchy: v1 controllers plus v2
elif [ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ]; then
  cgroup=/sys/fs/cgroup/$cgroup_name
else
  rig_die "no cgroup v2 hierarchy is mounted (looked at /sys/fs/cgroup and /sys/fs/cgroup/unified)"
fi
if [ -n "$cgroup" ]; then
  rig_kill_unrecorded "$cgroup"
  rig_remove_cgroup "$cgroup" || rig_die "cannot reuse cgroup $cgroup"
  mkdir "$cgroup"
  echo "$cgroup" >"$state/cgroup"
fi

# A boot that fails after this point must not leave a half-started rig behind. The teardown
# output goes to a file because the caller's pipes may be gone: a harness killed during the
# boot makes every write to its pipe fail.
booted=0
trap '[ "$booted" = 1 ] || rig_teardown "$dir" >>"$state/failed-boot.log" 2>&1 || true' EXIT
trap 'exit 130' INT
trap 'exit 129' HUP
trap 'exit 143' TERM

# ---- Boot. setsid gives the rig a session of its own, so a Ctrl-C in the caller's terminal
# never reaches it. The rig does not inherit locks 8 and 9, which stay with this script.
started=$(rig_now)
# shellcheck disable=SC2016 # expanded by the bash that becomes unshare, not here
launch='echo $$ >"$1/unshare.pid"; shift;
  exec unshare --pid --fork --mount --net --uts --ipc --cgroup --propagation private -- "$@"'
if [ -n "$cgroup" ]; then
  setsid bash -c "echo \$\$ >'$cgroup/cgroup.procs'; $launch" rig "$state" "$HERE/ns-init.sh" "$dir" "${keep[@]}" \
    >"$state/ns-init.log" 2>&1 </dev/null 8>&- 9>&- &
else
  setsid systemd-run --quiet --scope -p Delegate=yes --unit="$cgroup_name" \
    bash -c "$launch" rig "$state" "$HERE/ns-init.sh" "$dir" "${keep[@]}" \
    >"$state/ns-init.log" 2>&1 </dev/null 8>&- 9>&- &
fi

if [ "$guard" = 1 ]; then
  # The guard stops the rig once the caller is gone, so a caller killed by Ctrl-C or a closed
  # pipe must not cut this boot short halfway. Writes to a closed pipe fail with EPIPE instead.
  # Set only now because ignored signals stay ignored in the rig launched above.
  trap '' INT HUP PIPE
fi

# The rig's systemd is the only child of unshare: ns-init.sh execs it under the same PID.
systemd_pid=
for _ in $(seq 300); do
  unshare_pid=$(cat "$state/unshare.pid" 2>/dev/null || true)
  if [ -n "$unshare_pid" ] && [ -z "${unshare_start:-}" ]; then
    unshare_start=$(rig_start_time "$unshare_pid" || true)
    echo "$unshare_start" >"$state/unshare.start"
  fi
  if [ -n "$unshare_pid" ]; then
    child=$(cat "/proc/$unshare_pid/task/$unshare_pid/children" 2>/dev/null || true)
    child=${child%% *}
    if [ -n "$child" ] && [ "$(cat "/proc/$child/comm" 2>/dev/null)" = systemd ]; then
      systemd_pid=$child
      break
    fi
  fi
  if [ -n "$unshare_pid" ] && ! rig_start_time "$unshare_pid" >/dev/null; then
    break
  fi
  sleep 0.1
done
if [ -z "$systemd_pid" ]; then
  rig_die "the rig's init did not start systemd within 30 s; its output ($state/ns-init.log):
$(cat "$state/ns-init.log")"
fi
echo "$systemd_pid" >"$state/systemd.pid"
rig_start_time "$systemd_pid" >"$state/systemd.start"

# is-system-running prints "offline" until systemd listens on its private socket, then
# --wait blocks until the boot job of basic.target has finished.
system_state=
deadline=$((SECONDS + 120))
while [ $SECONDS -lt $deadline ]; do
  rig_recorded_alive "$state" systemd ||
    rig_die "the rig's systemd exited during boot; its output: $(cat "$state/ns-init.log")"
  system_state=$(timeout 60 nsenter -t "$systemd_pid" -a systemctl is-system-running --wait 2>/dev/null || true)
  case "$system_state" in
    running | degraded) break ;;
  esac
  sleep 0.1
done
case "$system_state" in
  running) ;;
  degraded)
    echo "rig: booted degraded, failed units:" >&2
    nsenter -t "$systemd_pid" -a systemctl --failed --no-legend >&2 || true ;;
  *) rig_die "the rig's systemd did not finish booting within 120 s (state: '${system_state:-none}')" ;;
esac
echo "systemd host PID: $systemd_pid"
echo "boot time: $(rig_elapsed "$started") s ($system_state)"

if [ "$configure" = 1 ]; then
  started=$(rig_now)
  "$HERE/exec.sh" "$dir" "$HERE/configure.sh"
  echo "configure time: $(rig_elapsed "$started") s"
fi

if [ "$guard" = 1 ]; then
  # The guard inherits standard input and the owner lock (fd 9), and lives in its own
  # session so that a Ctrl-C aimed at the caller does not end it before the rig is down.
  touch "$state/guarded"
  # Without job control bash gives a background command /dev/null as standard input unless
  # it is redirected explicitly, hence the 0<&0.
  setsid "$HERE/down.sh" --guard "$dir" 0<&0 >>"$state/guard.log" 2>&1 8>&- &
fi
booted=1
