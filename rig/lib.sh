# shellcheck shell=bash disable=SC2034
# Shared helpers for up.sh, down.sh, exec.sh and ns-init.sh. Source it, do not run it.
#
# Layout of a rig directory DIR (the same path on the host and inside the rig):
#   .selfheal-rig   marker: up.sh wipes only directories that carry it (or are empty)
#   .owner.lock     flock held by up.sh during boot and by the guard for the rig's life
#   .ops.lock       flock held while up.sh or down.sh changes the rig's state
#   state/          systemd.pid + systemd.start (host PID and start time of the rig's systemd),
#                   unshare.pid + unshare.start, cgroup, guarded, *.log
#   ovl/etc, ovl/var  overlayfs upper and work dirs: every write the rig makes to /etc and /var

# Capabilities removed from the bounding set of the rig's systemd and of every command run
# inside. Each one reaches the host kernel even from new namespaces: module loading, the
# system clock and RTC alarms, raw I/O ports, the kernel log (syslog(2) and /proc/kmsg drain
# the host's ring buffer), kexec and MAC policy loading. systemd 252 in container mode exits
# cleanly when reboot(2) fails for lack of CAP_SYS_BOOT.
RIG_DROP_CAPS=-sys_module,-sys_time,-wake_alarm,-sys_rawio,-syslog,-sys_boot,-mac_admin

# Value of $container for the rig's systemd: it puts systemd 252 in container mode, so that
# `systemctl exit` skips remounting file systems read-only and arming a hardware watchdog.
RIG_CONTAINER=selfheal-rig

# Seconds that down.sh waits for the rig's systemd to exit after `systemctl exit` before it
# sends SIGKILL. Stopping the whole mail stack took 5.2 s on a 2-core VM, most of it in the
# SysV stop script of spamass-milter.
RIG_STOP_TIMEOUT=${RIG_STOP_TIMEOUT:-30}

rig_die() {
  echo "rig: $*" >&2
  exit 1
}

rig_now() {
  echo "$EPOCHREALTIME"
}

# Print the seconds elapsed since START (a value of rig_now) with two decimals.
rig_elapsed() {
  awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.2f", now - start }'
}

# Print DIR as a normalized absolute path, or exit with a message when the rig cannot live
# there. The overlay options reject ',' ':' and spaces, /etc and /var would put an overlay's
# upper dir inside its own lower dir, and /run /dev /proc /sys are replaced inside the rig.
rig_check_dir() {
  local dir
  case "$1" in
    /*) ;;
    *) rig_die "rig directory must be an absolute path: '$1'" ;;
  esac
  dir=$(realpath -m -- "$1")
  [[ "$dir" =~ ^[A-Za-z0-9._/-]+$ ]] ||
    rig_die "rig directory may contain only letters, digits and ._-/: '$dir'"
  case "$dir" in
    / | /tmp | /home | /root | /work | /srv | /opt | /mnt)
      rig_die "rig directory must be a dedicated directory, not '$dir'" ;;
    /etc | /etc/* | /var | /var/* | /run | /run/* | /dev | /dev/* | /proc | /proc/* | /sys | /sys/* | \
      /usr | /usr/* | /boot | /boot/* | /bin | /bin/* | /sbin | /sbin/* | /lib | /lib/* | /lib64 | /lib64/*)
      rig_die "rig directory cannot be under /etc, /var, /run, /dev, /proc, /sys, /usr, /boot or /lib*: '$dir'" ;;
  esac
  echo "$dir"
}

# Print the start time (clock ticks after boot, field 22 of /proc/PID/stat) of a running
# process. Fails for a missing PID and for a zombie, which `kill -0` would still report.
rig_start_time() {
  local stat rest
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  # The command name in field 2 may contain spaces and ')', so split after its last ')'.
  rest=${stat##*) }
  # shellcheck disable=SC2086
  set -- $rest
  case "$1" in Z | X) return 1 ;; esac
  echo "${20}"
}

# Succeed when the process recorded in STATE/NAME.pid and NAME.start still runs. Comparing the
# start time keeps the rig from signalling an unrelated process that reuses a recorded PID.
rig_recorded_alive() {
  local state=$1 name=$2 pid start now
  pid=$(cat "$state/$name.pid" 2>/dev/null) || return 1
  start=$(cat "$state/$name.start" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  now=$(rig_start_time "$pid") || return 1
  [ "$now" = "$start" ]
}

# Print the host PID of the rig's systemd, or fail when the rig in DIR is not running.
rig_systemd_pid() {
  rig_recorded_alive "$1/state" systemd || return 1
  cat "$1/state/systemd.pid"
}

# Remove the cgroup sub-tree CG that up.sh created. Only directories named selfheal-rig-* are
# touched, and rmdir fails with EBUSY on a cgroup that still contains processes.
rig_remove_cgroup() {
  local cg=$1
  case "$(basename -- "$cg")" in
    selfheal-rig-*) ;;
    *) return 0 ;;
  esac
  [ -d "$cg" ] || return 0
  find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
  if [ -d "$cg" ]; then
    echo "rig: cgroup $cg not removed, it still contains processes: $(tr '\n' ' ' <"$cg/cgroup.procs")" >&2
    return 1
  fi
}

# Kill what is left in the rig's own cgroup CG after the recorded processes are gone. That
# happens only when up.sh was killed between launching the rig and recording its systemd.
# Only up.sh puts processes into a selfheal-rig-* cgroup (commands run with exec.sh stay in
# their caller's cgroup), so everything in it belongs to the rig. Needs cgroup.kill (Linux 5.14).
rig_kill_unrecorded() {
  local cg=$1 waited=0
  case "$(basename -- "$cg")" in
    selfheal-rig-*) ;;
    *) return 0 ;;
  esac
  grep -qx 'populated 1' "$cg/cgroup.events" 2>/dev/null || return 0
  [ -e "$cg/cgroup.kill" ] || return 0
  echo "rig: cgroup $cg still contains unrecorded rig processes, killing them with cgroup.kill" >&2
  echo 1 >"$cg/cgroup.kill"
  while grep -qx 'populated 1' "$cg/cgroup.events" 2>/dev/null && [ "$waited" -lt 50 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
}

# Stop the rig recorded in DIR/state and remove its cgroup. The caller holds DIR/.ops.lock.
# Only the processes recorded by up.sh are signalled, and only while their start time matches.
rig_teardown() {
  local dir=$1 state=$1/state pid started waited
  if rig_recorded_alive "$state" systemd; then
    pid=$(cat "$state/systemd.pid")
    started=$(rig_now)
    # Container mode makes `systemctl exit` stop every unit and then end systemd itself.
    timeout 10 nsenter -t "$pid" -a systemctl exit >/dev/null 2>&1 || true
    waited=0
    while rig_recorded_alive "$state" systemd && [ "$waited" -lt $((RIG_STOP_TIMEOUT * 10)) ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    if rig_recorded_alive "$state" systemd; then
      echo "rig: systemd (host PID $pid) still runs ${RIG_STOP_TIMEOUT} s after 'systemctl exit', sending SIGKILL" >&2
      # SIGKILL to the init of a PID namespace kills every process in that namespace.
      kill -KILL "$pid" 2>/dev/null || true
      waited=0
      while rig_recorded_alive "$state" systemd && [ "$waited" -lt 50 ]; do
        sleep 0.1
        waited=$((waited + 1))
      done
    fi
    echo "rig down: $dir, systemd stopped after $(rig_elapsed "$started") s"
  fi

  # unshare exits as soon as its child, the rig's PID 1, is gone.
  waited=0
  while rig_recorded_alive "$state" unshare && [ "$waited" -lt 50 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  if rig_recorded_alive "$state" unshare; then
    kill -TERM "$(cat "$state/unshare.pid")" 2>/dev/null || true
  fi

  if rig_recorded_alive "$state" systemd; then
    rig_die "systemd of the rig in $dir (host PID $(cat "$state/systemd.pid")) did not stop"
  fi
  if [ -s "$state/cgroup" ]; then
    rig_kill_unrecorded "$(cat "$state/cgroup")"
    rig_remove_cgroup "$(cat "$state/cgroup")" || return 1
  fi
  rm -f "$state/systemd.pid" "$state/systemd.start" "$state/unshare.pid" "$state/unshare.start" "$state/cgroup"
}
