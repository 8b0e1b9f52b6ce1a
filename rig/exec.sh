#!/bin/bash
# Run a command inside a running rig: in all namespaces of the rig's systemd, with its root
# and working directory, and with the same reduced capability bounding set.
#
# usage: exec.sh DIR CMD [ARG...]
#
# The command keeps the caller's environment and standard streams, and its exit status is
# returned. Only short-lived commands belong here: a daemon started this way is not part of
# any unit, so run long-lived helpers with systemd-run inside, which the rig's shutdown stops.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=rig/lib.sh
. "$HERE/lib.sh"

[ $# -ge 2 ] || rig_die "usage: exec.sh DIR CMD [ARG...]"
dir=$(rig_check_dir "$1")
shift
pid=$(rig_systemd_pid "$dir") || rig_die "no rig is running in $dir (start one with rig/up.sh $dir)"
exec nsenter -t "$pid" -a -- setpriv --bounding-set "$RIG_DROP_CAPS" -- "$@"
