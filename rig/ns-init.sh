#!/bin/bash
# Init of the rig: runs as PID 1 of the new pid/mount/net/uts/ipc/cgroup namespaces that
# up.sh creates, builds a contained file system view and then execs systemd.
#
# usage: ns-init.sh DIR [KEEP...]
#   DIR   rig directory: contains the overlay upper dirs, stays writable at the same path inside
#   KEEP  host directories under /tmp that must stay visible (read-only) inside, such as the
#         source tree or the cargo target directory, which the private /tmp would hide
#
# What the host keeps, and why each step is needed:
#   - The root file system is shared with the host even in a new mount namespace, so / is
#     remounted read-only here (a per-mount flag, the host's mount stays read-write).
#   - /etc and /var become overlayfs mounts whose upper dirs live in DIR/ovl, so package
#     config edits, spools, databases and the journal never reach the host.
#   - /run, /tmp and a minimal /dev are private tmpfs mounts. systemd-tmpfiles runs with
#     --remove at boot and would otherwise empty the host's /tmp.
#   - /proc/sys, /proc/sysrq-trigger and sysfs are read-only, /proc/kmsg is hidden.
#   - Units and generators that act on the host (sysctl, modules, udev, clock, fstab, ...)
#     are masked in the /etc overlay.
#   - $container puts systemd in container mode, and the capability bounding set is reduced.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=rig/lib.sh
. "$HERE/lib.sh"

DIR=$1
shift
KEEP=("$@")
OVL=$DIR/ovl

# Nothing mounted below may propagate back to the host (unshare already sets this, but a
# second time costs nothing and does not depend on how this script was started).
mount --make-rprivate /

# The host's /proc, /sys (with its cgroup v1 hierarchies) and /dev (with its block devices)
# are detached, not only covered, so that no later umount inside can uncover them.
umount -R -l /proc
mount -t proc -o nosuid,nodev,noexec proc /proc
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
if [ -e /proc/sysrq-trigger ]; then
  mount --bind /proc/sysrq-trigger /proc/sysrq-trigger
  mount -o remount,bind,ro /proc/sysrq-trigger
fi
# Reading /proc/kmsg consumes the host's kernel log, so show an empty device there instead.
mount --bind /dev/null /proc/kmsg
# A fresh sysfs shows only this network namespace's devices.
umount -R -l /sys
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs /sys
# The cgroup namespace makes the host cgroup that up.sh created the root of this mount.
mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 /sys/fs/cgroup

for d in etc var; do
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$OVL/$d/upper,workdir=$OVL/$d/work" "/$d"
done

# The private /run also stages bind mounts of DIR and of the KEEP paths under /tmp, because the
# tmpfs mounted on /tmp next hides them. Parents come first so that a child mounts on top.
mount -t tmpfs -o mode=755,nosuid,nodev,size=256m tmpfs /run
mapfile -t binds < <(printf '%s\n' "${KEEP[@]}" | awk 'NF' | sort -u)
staged=()
for path in "${binds[@]}" "$DIR"; do
  case "$path" in
    /tmp/*) ;;
    *) continue ;;
  esac
  [ -d "$path" ] || rig_die "directory to keep visible inside the rig does not exist: $path"
  stage=/run/rig-bind/${#staged[@]}
  mkdir -p "$stage"
  mount --bind "$path" "$stage"
  staged+=("$path")
done
mount -t tmpfs -o mode=1777,nosuid,nodev,size=512m tmpfs /tmp
for i in "${!staged[@]}"; do
  path=${staged[$i]}
  mkdir -p "$path"
  mount --move "/run/rig-bind/$i" "$path"
  if [ "$path" != "$DIR" ]; then
    mount -o remount,bind,ro "$path"
  fi
done
rm -rf /run/rig-bind
# DIR outside /tmp is on the root file system: a bind mount of its own keeps it writable
# after / turns read-only below.
case "$DIR" in
  /tmp/*) ;;
  *) mount --bind "$DIR" "$DIR" ;;
esac

# A private /dev with only the usual character devices: no host block devices, and /dev/log
# and /dev/console written inside never reach the host.
umount -R -l /dev
mount -t tmpfs -o mode=755,nosuid,size=4m tmpfs /dev
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r name major minor <<<"$node"
  mknod -m 666 "/dev/$name" c "$major" "$minor"
done
touch /dev/console
mount --bind /dev/null /dev/console
mkdir /dev/pts /dev/shm /dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5 devpts /dev/pts
ln -s pts/ptmx /dev/ptmx
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
mount -t mqueue -o nosuid,nodev,noexec mqueue /dev/mqueue || true
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr

mount -o remount,bind,ro /

# Units that act on the host kernel, clock, devices or disks, and timers the tests do not need.
# Masks are symlinks to /dev/null in the /etc overlay.
units=(
  systemd-sysctl.service procps.service systemd-modules-load.service kmod-static-nodes.service
  systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
  systemd-timesyncd.service systemd-time-wait-sync.service hwclock.service
  systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket
  systemd-udev-trigger.service systemd-udev-settle.service systemd-hwdb-update.service
  systemd-tmpfiles-setup-dev.service systemd-random-seed.service systemd-pstore.service
  systemd-remount-fs.service systemd-fsck-root.service systemd-firstboot.service
  systemd-repart.service systemd-pcrphase.service systemd-pcrphase-sysinit.service
  systemd-machine-id-commit.service systemd-boot-update.service systemd-journald-audit.socket
  systemd-ask-password-console.path systemd-ask-password-wall.path
  systemd-rfkill.service systemd-rfkill.socket systemd-vconsole-setup.service
  keyboard-setup.service console-setup.service setvtrgb.service apparmor.service
  lvm2-monitor.service lvm2-lvmpolld.socket dm-event.socket blk-availability.service
  rc-local.service
  dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount
  sys-fs-fuse-connections.mount
  getty.target console-getty.service getty@tty1.service serial-getty@ttyS0.service
  timers.target fstrim.timer fstrim.service e2scrub_all.timer e2scrub_reap.service
  apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer man-db.timer logrotate.timer
  systemd-tmpfiles-clean.timer spamassassin-maintenance.timer
  unbound-resolvconf.service postfix-resolvconf.path postfix-resolvconf.service
  postgresql.service remote-fs.target cryptsetup.target veritysetup.target integritysetup.target
)
system=/etc/systemd/system
for unit in "${units[@]}"; do
  ln -sfn /dev/null "$system/$unit"
done
# Generators that turn host block devices, fstab entries or rc.local into units.
mkdir -p /etc/systemd/system-generators
for generator in systemd-fstab-generator systemd-gpt-auto-generator systemd-cryptsetup-generator \
  systemd-veritysetup-generator systemd-integritysetup-generator systemd-hibernate-resume-generator \
  systemd-bless-boot-generator systemd-rc-local-generator; do
  ln -sfn /dev/null "/etc/systemd/system-generators/$generator"
done

# systemd-tmpfiles may only create or remove files inside the private or overlay trees.
mkdir -p "$system/systemd-tmpfiles-setup.service.d"
cat >"$system/systemd-tmpfiles-setup.service.d/rig.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=systemd-tmpfiles --create --remove --boot --prefix=/run --prefix=/tmp --prefix=/var --prefix=/etc
EOF
# Debian's tmp.conf has "D /tmp", which makes --remove empty /tmp, DIR below it included. The
# rig's /tmp is a fresh tmpfs anyway, and "d" without an age only creates the directory.
mkdir -p /etc/tmpfiles.d
echo 'd /tmp 1777 root root -' >/etc/tmpfiles.d/tmp.conf

# Refuse to start systemd unless the containment above is really in place. findmnt lists
# every mount stacked on a path, bottom first, so the last line is the one in effect.
for mountpoint in /etc:overlay /var:overlay /run:tmpfs /tmp:tmpfs /dev:tmpfs; do
  IFS=: read -r path fstype <<<"$mountpoint"
  [ "$(findmnt -n -o FSTYPE --mountpoint "$path" | tail -n 1)" = "$fstype" ] ||
    rig_die "$path is not a $fstype mount inside the rig, not starting systemd"
done
case ",$(findmnt -n -o OPTIONS --mountpoint / | tail -n 1)," in
  *,ro,*) ;;
  *) rig_die "/ is not read-only inside the rig, not starting systemd" ;;
esac

export container=$RIG_CONTAINER
exec setpriv --bounding-set "$RIG_DROP_CAPS" -- \
  /lib/systemd/systemd --system --unit=basic.target --show-status=no
