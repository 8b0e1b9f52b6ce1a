#!/bin/bash
# Run the whole test suite of selfheal: unit tests and every integration test, including the
# end-to-end tests that boot a contained systemd with the real Debian mail services (rig/).
#
# usage: sudo scripts/test.sh [CARGO TEST ARGUMENTS...]
#
# Needs root, overlayfs and cgroup v2 (a VM or a VM-based CI runner, not an unprivileged
# container) on Debian 12 with the Rust toolchain. Installs the mail packages on first use
# without starting them on the host. Exits non-zero when any test fails. No rig is left
# running afterwards, also after Ctrl-C.
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"

if [ "$(id -u)" != 0 ]; then
  cat >&2 <<'EOF'
scripts/test.sh: must run as root. The end-to-end tests boot a contained systemd that manages
the real mail services (rig/up.sh), which needs root, overlayfs and cgroup v2.
Run: sudo scripts/test.sh
EOF
  exit 1
fi

# Under sudo, root's PATH usually lacks the invoking user's rustup toolchain.
cargo_home_of_user=
if ! command -v cargo >/dev/null && [ -n "${SUDO_USER:-}" ]; then
  user_home=$(getent passwd "$SUDO_USER" | cut -d: -f6)
  if [ -x "$user_home/.cargo/bin/cargo" ]; then
    export PATH=$user_home/.cargo/bin:$PATH
    export CARGO_HOME=${CARGO_HOME:-$user_home/.cargo}
    export RUSTUP_HOME=${RUSTUP_HOME:-$user_home/.rustup}
    cargo_home_of_user=$CARGO_HOME
  fi
fi
command -v cargo >/dev/null ||
  { echo "scripts/test.sh: cargo not found: install Rust with rustup, or put cargo on root's PATH" >&2; exit 1; }

# Must match the default of tests/support/rig.rs.
rig_base=${SELFHEAL_RIG_BASE:-/tmp/selfheal-rig}

# shellcheck disable=SC2317 # called by the EXIT trap
finish() {
  local status=$?
  # A second Ctrl-C must not cut the sweep short and leave a rig running.
  trap '' INT TERM
  # Each test binary's rigs have a guard that stops them when the binary dies. The sweep
  # waits for those guards and stops any rig whose guard is gone as well.
  if [ -d "$rig_base" ]; then
    rig/down.sh --sweep "$rig_base" || status=1
  fi
  # Files that this root run created in the user's target dir or cargo home go back to the
  # user, so that their own cargo can still write there.
  if [ -n "${SUDO_UID:-}" ] && [ "$SUDO_UID" != 0 ]; then
    find "$repo/target" "$repo/Cargo.lock" ${cargo_home_of_user:+"$cargo_home_of_user"} -user 0 \
      -exec chown -h "$SUDO_UID:${SUDO_GID:-$SUDO_UID}" {} + 2>/dev/null || true
  fi
  exit "$status"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

elapsed() {
  awk -v start="$1" -v now="$EPOCHREALTIME" 'BEGIN { printf "%.1f", now - start }'
}

started=$EPOCHREALTIME
rig/install-packages.sh
echo "test.sh: packages ready after $(elapsed "$started") s"

# Rigs that a killed earlier run left behind would only cost memory, but stop them anyway.
if [ -d "$rig_base" ]; then
  rig/down.sh --sweep "$rig_base"
fi

tests_started=$EPOCHREALTIME
status=0
cargo test --no-fail-fast "$@" || status=$?
echo "test.sh: cargo test finished after $(elapsed "$tests_started") s with status $status" \
  "(total $(elapsed "$started") s)"
exit "$status"
