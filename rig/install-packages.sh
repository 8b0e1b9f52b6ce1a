#!/bin/bash
# Install the Debian 12 packages that the rig and the end-to-end tests need, without starting
# any of their services on the host. Idempotent and non-interactive: when every package is
# already installed it does not run apt at all.
#
# usage: install-packages.sh        (as root)
set -euo pipefail
export LC_ALL=C

# The mail stack that selfheal watches, the rig's own tools (systemd as the rig's PID 1,
# util-linux for unshare/nsenter/setpriv/flock, procps for kill inside), python3-aiosmtpd
# for tests/support/smtp_sink.py, bc, gawk and iproute2 for the scripts and for tests,
# Chromium with its ChromeDriver for the dashboard's browser test, and promtool and amtool
# (from prometheus and prometheus-alertmanager) to check the shipped alerting rules.
packages=(
  postfix dovecot-imapd dovecot-pop3d opendkim opendkim-tools unbound nginx spamassassin spamd
  spamass-milter fail2ban rsyslog mariadb-server dbus python3 python3-aiosmtpd bc
  systemd util-linux mount procps gawk iproute2 chromium chromium-driver fonts-liberation
  prometheus prometheus-alertmanager
)
# Services of those packages that must stay off on a host whose PID 1 is systemd.
services=(
  postfix dovecot opendkim unbound nginx spamd spamass-milter fail2ban rsyslog mariadb
  prometheus prometheus-alertmanager
)

[ "$(id -u)" = 0 ] || { echo "install-packages.sh: must run as root (it runs apt-get)" >&2; exit 1; }

missing=()
for package in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$package")
done
if [ ${#missing[@]} = 0 ]; then
  echo "install-packages: all ${#packages[@]} packages are installed"
  exit 0
fi
echo "install-packages: installing ${missing[*]}"

# invoke-rc.d runs policy-rc.d before it starts a service, and exit status 101 means
# "not allowed". A policy-rc.d that was already there stays as it is.
created_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\n# Temporary: keeps apt-get from starting services (rig/install-packages.sh).\nexit 101\n' \
    >/usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ "$created_policy" = 0 ] || rm -f /usr/sbin/policy-rc.d' EXIT

# Postfix prompts for its configuration type on install. "Local only" listens on port 25 without
# relaying anywhere, and rig.test is the domain the tests mail to.
debconf-set-selections <<'EOF'
postfix postfix/main_mailer_type select Local only
postfix postfix/mailname string rig.test
EOF

# Succeed when SERVICE has a unit file or a SysV init script (spamass-milter has only the latter).
service_installed() {
  [ -e "/lib/systemd/system/$1.service" ] || [ -e "/etc/init.d/$1" ]
}

# Services that exist before the install: only the new ones are disabled below.
preinstalled=()
for service in "${services[@]}"; do
  if service_installed "$service"; then preinstalled+=("$service"); fi
done

export DEBIAN_FRONTEND=noninteractive
started=$EPOCHREALTIME
apt-get update -q
apt-get install -y -q --no-install-recommends \
  -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"

# On a systemd host the packages enable their units even though policy-rc.d kept them from
# starting, so they would start at the next boot. Disable and stop the units that this run
# installed. Services installed before keep the state their admin gave them.
if [ -d /run/systemd/system ]; then
  for service in "${services[@]}"; do
    service_installed "$service" || continue
    case " ${preinstalled[*]} " in *" $service "*) continue ;; esac
    systemctl disable --now "$service.service" >/dev/null 2>&1 || true
    echo "install-packages: disabled $service.service on the host"
  done
fi
awk -v start="$started" -v now="$EPOCHREALTIME" \
  'BEGIN { printf "install-packages: done in %.1f s\n", now - start }'
