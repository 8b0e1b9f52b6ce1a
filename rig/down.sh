#!/bin/bash
# Stop a rig: `systemctl exit` inside, SIGKILL of the rig's systemd (that one host PID) only if
# it still runs after RIG_STOP_TIMEOUT seconds (default 30), then removal of its cgroup.
# The overlay upper dirs in DIR/ovl stay for inspection until the next up.sh wipes them.
#
# usage: down.sh [DIR]            stop the rig in DIR (default /tmp/selfheal-rig/default)
#        down.sh --guard DIR      wait until standard input reaches end of file, then stop
#                                 the rig (up.sh --guard starts this)
#        down.sh --sweep BASE     stop every rig in BASE/* that up.sh --guard started and
#                                 whose guard is gone. Rigs started without --guard, and rigs
#                                 whose owner still runs after 60 s, are left alone.
#
# Only processes recorded by up.sh are signalled, and only while their start time matches.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=rig/lib.sh
. "$HERE/lib.sh"

[ "$(id -u)" = 0 ] || rig_die "must run as root: stopping a rig signals its systemd and removes its cgroup"

# Stop the rig in DIR while holding DIR/.ops.lock, so that up.sh and other down.sh calls wait.
stop_rig() {
  local dir=$1
  [ -e "$dir/.selfheal-rig" ] || return 0
  exec 8>"$dir/.ops.lock"
  flock -w 120 8 || rig_die "another up.sh or down.sh has been working on $dir for 120 s"
  rig_teardown "$dir"
  exec 8>&-
}

mode=stop
case "${1:-}" in
  --guard) mode=guard; shift ;;
  --sweep) mode=sweep; shift ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  -*) rig_die "unknown option: $1 (see --help)" ;;
esac

case "$mode" in
  stop)
    stop_rig "$(rig_check_dir "${1:-/tmp/selfheal-rig/default}")"
    ;;

  guard)
    dir=$(rig_check_dir "${1:?--guard needs the rig directory}")
    # Keep running through the caller's Ctrl-C and hangup, and stop the rig on SIGTERM too.
    trap '' INT HUP
    trap 'terminated=1' TERM
    terminated=0
    # The builtin read returns on end of file and, unlike an external cat, lets the TERM
    # trap run while it waits.
    while [ "$terminated" = 0 ] && IFS= read -r _; do :; done
    echo "guard: owner of $dir is gone, stopping the rig"
    stop_rig "$dir"
    # Exiting closes fd 9, the owner lock inherited from up.sh.
    ;;

  sweep)
    base=${1:?--sweep needs the directory that contains the rigs}
    for dir in "$base"/*/; do
      dir=${dir%/}
      [ -e "$dir/.selfheal-rig" ] || continue
      # The owner lock passes from up.sh to the guard without a gap. Once it is free, no boot
      # is in progress in DIR and no guard is still stopping its rig: a boot whose caller died
      # stops its rig itself, and a guard stops it when the caller is gone.
      exec 9>"$dir/.owner.lock"
      if ! flock -w 60 9; then
        echo "sweep: $dir still belongs to a running process, left alone" >&2
        exec 9>&-
        continue
      fi
      if [ -e "$dir/state/guarded" ] && rig_recorded_alive "$dir/state" systemd; then
        echo "sweep: stopping the rig left running in $dir"
        stop_rig "$dir"
      fi
      exec 9>&-
    done
    ;;
esac
