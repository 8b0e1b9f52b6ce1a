#!/bin/bash
# Apply the minimal config fixes that let every mail service of Debian 12 start in the rig.
# Runs inside the rig (up.sh calls `exec.sh DIR configure.sh`), so every write lands in the
# /etc and /var overlays of the rig, never on the host. Running it twice changes nothing.
set -euo pipefail

[ "${container:-}" = selfheal-rig ] || [ "$(cat /run/systemd/container 2>/dev/null)" = selfheal-rig ] ||
  { echo "configure.sh: run it inside a rig (rig/exec.sh DIR rig/configure.sh)" >&2; exit 1; }

# rsyslog: imklog reads /proc/kmsg, which would consume the host's kernel log. The rig hides
# /proc/kmsg and lacks CAP_SYSLOG, so imklog would only fail at every start.
sed -i 's/^module(load="imklog")/#&/' /etc/rsyslog.conf

# fail2ban: Debian enables only the sshd jail, whose log /var/log/auth.log does not exist
# here, so fail2ban exits with status 255. Enable the mail jails instead, which read
# /var/log/mail.log from rsyslog. banaction "dummy" only records bans, so no address is blocked.
cat >/etc/fail2ban/jail.d/selfheal-rig.local <<'EOF'
[DEFAULT]
banaction = dummy
banaction_allports = dummy

[sshd]
enabled = false

[postfix]
enabled = true

[dovecot]
enabled = true
EOF
# The jails fail when their log file is missing, and rsyslog creates it only on the first
# mail log line.
touch /var/log/mail.log

# OpenDKIM starts without a key and then only verifies. A 2048-bit key for the selector "rig"
# of rig.test makes it sign too.
if [ ! -s /etc/dkimkeys/rig.private ]; then
  opendkim-genkey -b 2048 -D /etc/dkimkeys -d rig.test -s rig
  chown opendkim:opendkim /etc/dkimkeys/rig.private
fi
if ! grep -q '^KeyFile' /etc/opendkim.conf; then
  printf 'Domain\t\t\trig.test\nSelector\t\trig\nKeyFile\t\t\t/etc/dkimkeys/rig.private\n' >>/etc/opendkim.conf
fi
