//! Built-in presets: the covered services with their systemd units, probes and timing.
//!
//! Unit candidates list the Debian/Ubuntu name first, then the RHEL/Fedora name where it
//! differs. Probe endpoints are the Debian defaults.

use std::path::PathBuf;
use std::time::Duration;

use super::Timing;
use crate::probe::ProbeSpec;

/// One covered service with the values a `[services.NAME]` table starts from.
#[derive(Debug, PartialEq, Eq)]
pub struct Preset {
    /// Name under `[services]`, such as `postfix`.
    pub name: &'static str,
    /// Human-readable name for reports and generated configs.
    pub title: &'static str,
    /// Candidate systemd units in order; the first one systemd knows is used.
    pub units: &'static [&'static str],
    /// Endpoints probed by default; empty means the unit state alone decides.
    pub probes: &'static [PresetProbe],
    /// Whether the service is critical by default.
    pub critical: bool,
    /// Timing values that differ from the defaults. They take precedence over the top-level
    /// timing keys, and a key in the service table overrides them.
    pub timing: Timing,
}

impl Preset {
    pub fn probe_specs(&self) -> Vec<ProbeSpec> {
        self.probes.iter().map(PresetProbe::spec).collect()
    }
}

/// A default probe endpoint of a preset, in a form usable in a `static`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetProbe {
    /// TCP `host:port`.
    Tcp(&'static str),
    /// Absolute path of a Unix stream socket.
    Unix(&'static str),
}

impl PresetProbe {
    pub fn spec(&self) -> ProbeSpec {
        match self {
            // The preset table only holds valid addresses; the test below checks each one.
            PresetProbe::Tcp(address) => ProbeSpec::tcp(address, "preset")
                .unwrap_or_else(|error| panic!("preset probe address {address}: {error}")),
            PresetProbe::Unix(path) => ProbeSpec::unix(PathBuf::from(path), "preset"),
        }
    }
}

static PRESETS: [Preset; 11] = [
    Preset {
        name: "postfix",
        title: "Postfix mail transfer agent",
        // Debian's postfix package runs the master process in the instance unit
        // postfix@-.service. postfix.service is a oneshot wrapper that stays "active (exited)"
        // while the master is dead, so it only serves hosts without the instance unit (RHEL).
        units: &["postfix@-.service", "postfix.service"],
        probes: &[PresetProbe::Tcp("127.0.0.1:25")],
        critical: true,
        timing: Timing::NONE,
    },
    Preset {
        name: "dovecot",
        title: "Dovecot IMAP and POP3 server",
        units: &["dovecot.service"],
        probes: &[PresetProbe::Tcp("127.0.0.1:143")],
        critical: true,
        timing: Timing::NONE,
    },
    Preset {
        name: "opendkim",
        title: "OpenDKIM signing milter",
        units: &["opendkim.service"],
        probes: &[PresetProbe::Unix("/run/opendkim/opendkim.sock")],
        critical: true,
        timing: Timing::NONE,
    },
    Preset {
        name: "mariadb",
        title: "MariaDB or MySQL database server",
        units: &["mariadb.service", "mysql.service", "mysqld.service"],
        // NOTE: RHEL's default socket is /var/lib/mysql/mysql.sock; set `probe` there.
        probes: &[PresetProbe::Unix("/run/mysqld/mysqld.sock")],
        critical: true,
        // InnoDB crash recovery after an unclean stop can take minutes, and a restart in the
        // middle only makes the next start recover again, so verify and restart get long bounds.
        timing: Timing {
            verify_timeout: Some(Duration::from_secs(5 * 60)),
            restart_timeout: Some(Duration::from_secs(10 * 60)),
            ..Timing::NONE
        },
    },
    Preset {
        name: "spamd",
        title: "SpamAssassin daemon",
        units: &["spamd.service", "spamassassin.service"],
        probes: &[PresetProbe::Tcp("127.0.0.1:783")],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "spamass-milter",
        title: "SpamAssassin milter for Postfix",
        units: &["spamass-milter.service"],
        probes: &[PresetProbe::Unix("/var/spool/postfix/spamass/spamass.sock")],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "nginx",
        title: "nginx web server",
        units: &["nginx.service"],
        probes: &[PresetProbe::Tcp("127.0.0.1:80")],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "apache",
        title: "Apache HTTP Server",
        units: &["apache2.service", "httpd.service"],
        probes: &[PresetProbe::Tcp("127.0.0.1:80")],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "unbound",
        title: "Unbound DNS resolver",
        units: &["unbound.service"],
        probes: &[PresetProbe::Tcp("127.0.0.1:53")],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "rsyslog",
        title: "rsyslog system logger",
        units: &["rsyslog.service"],
        // TODO: probe the log socket; the unit state alone decides for now.
        probes: &[],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "fail2ban",
        title: "Fail2ban intrusion prevention",
        units: &["fail2ban.service"],
        probes: &[PresetProbe::Unix("/run/fail2ban/fail2ban.sock")],
        critical: false,
        timing: Timing::NONE,
    },
];

/// Returns every built-in preset, in the order `selfheal detect` reports them.
pub fn presets() -> &'static [Preset] {
    &PRESETS
}

/// Looks up the preset with this name.
pub fn preset(name: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|preset| preset.name == name)
}

/// Preset names joined with ", ", for error messages.
pub(super) fn preset_names() -> String {
    PRESETS
        .iter()
        .map(|preset| preset.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        for (i, first) in PRESETS.iter().enumerate() {
            for second in &PRESETS[i + 1..] {
                assert_ne!(first.name, second.name);
            }
        }
    }

    #[test]
    fn postfix_instance_unit_first() {
        let postfix = preset("postfix").map(|p| p.units);
        assert_eq!(postfix, Some(&["postfix@-.service", "postfix.service"][..]));
    }

    #[test]
    fn mariadb_waits_for_recovery() {
        let Some(mariadb) = preset("mariadb") else {
            panic!("mariadb preset missing");
        };
        assert_eq!(
            mariadb.timing.verify_timeout,
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            mariadb.timing.restart_timeout,
            Some(Duration::from_secs(600))
        );
        assert_eq!(mariadb.units[0], "mariadb.service");
    }

    #[test]
    fn critical_set_matches_mail_path() {
        let critical: Vec<&str> = PRESETS
            .iter()
            .filter(|p| p.critical)
            .map(|p| p.name)
            .collect();
        assert_eq!(critical, ["postfix", "dovecot", "opendkim", "mariadb"]);
    }

    #[test]
    fn every_preset_has_a_unit() {
        for preset in presets() {
            assert!(!preset.units.is_empty(), "{} has no unit", preset.name);
            for unit in preset.units {
                assert!(unit.ends_with(".service"), "{}: {unit}", preset.name);
            }
        }
    }

    #[test]
    fn probe_specs_convert() {
        let Some(opendkim) = preset("opendkim") else {
            panic!("opendkim preset missing");
        };
        assert_eq!(
            opendkim.probe_specs(),
            [ProbeSpec::unix(
                PathBuf::from("/run/opendkim/opendkim.sock"),
                "preset"
            )]
        );
        assert!(preset("rsyslog").is_some_and(|p| p.probe_specs().is_empty()));
    }

    #[test]
    fn unknown_preset_is_none() {
        assert!(preset("sendmail").is_none());
        assert!(preset("").is_none());
    }
}
