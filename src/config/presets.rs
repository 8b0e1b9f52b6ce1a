//! Built-in presets: the covered services with their systemd units, probes and timing.
//!
//! Unit candidates list the Debian/Ubuntu name first, then the RHEL/Fedora name where it
//! differs. Probe endpoints are the Debian defaults; `discover` replaces them with what the
//! service's own config files name, where it can read them.

use std::path::PathBuf;
use std::time::Duration;

use super::{Timing, DEFAULT_DNS_NAME, DEFAULT_HELO_NAME, PRESET_SOURCE};
use crate::probe::{Endpoint, ProbeSpec, Protocol, StatusClass};

/// One covered service with the values a `[services.NAME]` table starts from.
#[derive(Debug, PartialEq, Eq)]
pub struct Preset {
    /// Name under `[services]`, such as `postfix`.
    pub name: &'static str,
    /// Human-readable name for reports and generated configs.
    pub title: &'static str,
    /// Candidate systemd units in order; the first one systemd knows is used.
    pub units: &'static [&'static str],
    /// Probes run by default; empty means the unit state alone decides.
    pub probes: &'static [PresetProbe],
    /// Whether the service is critical by default.
    pub critical: bool,
    /// Timing values that differ from the defaults. They take precedence over the top-level
    /// timing keys, and a key in the service table overrides them.
    pub timing: Timing,
}

impl Preset {
    /// Builds the preset's default probes, each with the source "preset".
    pub fn probe_specs(&self) -> Vec<ProbeSpec> {
        self.probes.iter().map(PresetProbe::spec).collect()
    }
}

/// A default probe of a preset, in a form usable in a `static`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PresetProbe {
    pub protocol: PresetProtocol,
    /// `host:port` or the absolute path of a Unix socket, as [`Endpoint::parse`] reads it.
    pub endpoint: &'static str,
}

/// The protocols presets use, with their settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetProtocol {
    Smtp,
    Imap,
    Http {
        path: &'static str,
        host: &'static str,
        /// Status class: 2 for 2xx.
        expect: u8,
    },
    Spamd,
    Milter,
    Mysql,
    Dns,
    Fail2ban,
    Syslog {
        /// Log file the test message must appear in.
        verify_file: Option<&'static str>,
    },
}

impl PresetProbe {
    pub fn spec(&self) -> ProbeSpec {
        // The preset table contains only valid endpoints; `preset_endpoints_parse` checks each.
        let endpoint = Endpoint::parse(self.endpoint)
            .unwrap_or_else(|error| panic!("preset probe endpoint {}: {error}", self.endpoint));
        let protocol = match self.protocol {
            PresetProtocol::Smtp => Protocol::Smtp {
                helo_name: DEFAULT_HELO_NAME.to_string(),
            },
            PresetProtocol::Imap => Protocol::Imap,
            PresetProtocol::Http { path, host, expect } => Protocol::Http {
                path: path.to_string(),
                host: host.to_string(),
                expect: StatusClass(expect),
            },
            PresetProtocol::Spamd => Protocol::Spamd,
            PresetProtocol::Milter => Protocol::Milter,
            PresetProtocol::Mysql => Protocol::Mysql { credentials: None },
            PresetProtocol::Dns => Protocol::Dns {
                name: DEFAULT_DNS_NAME.to_string(),
                outside_name: None,
            },
            PresetProtocol::Fail2ban => Protocol::Fail2ban,
            PresetProtocol::Syslog { verify_file } => Protocol::Syslog {
                verify_file: verify_file.map(PathBuf::from),
            },
        };
        ProbeSpec::new(protocol, Some(endpoint), PRESET_SOURCE)
    }
}

/// The web server probe of the nginx and apache presets. Debian's default site of both answers
/// `GET /` with 200, so 2xx passes on a fresh install. A server that redirects all plain HTTP
/// to HTTPS answers 301 and needs `expect = "3xx"` in its service table.
const WEB_PROBE: PresetProbe = PresetProbe {
    protocol: PresetProtocol::Http {
        path: "/",
        host: "localhost",
        expect: 2,
    },
    endpoint: "127.0.0.1:80",
};

static PRESETS: [Preset; 11] = [
    Preset {
        name: "postfix",
        title: "Postfix mail transfer agent",
        // Debian's postfix package runs the master process in the instance unit
        // postfix@-.service. postfix.service is a oneshot wrapper that stays "active (exited)"
        // while the master is dead, so it only serves hosts without the instance unit (RHEL).
        units: &["postfix@-.service", "postfix.service"],
        probes: &[PresetProbe {
            protocol: PresetProtocol::Smtp,
            endpoint: "127.0.0.1:25",
        }],
        critical: true,
        timing: Timing::NONE,
    },
    Preset {
        name: "dovecot",
        title: "Dovecot IMAP and POP3 server",
        units: &["dovecot.service"],
        probes: &[PresetProbe {
            protocol: PresetProtocol::Imap,
            endpoint: "127.0.0.1:143",
        }],
        critical: true,
        timing: Timing::NONE,
    },
    Preset {
        name: "opendkim",
        title: "OpenDKIM signing milter",
        units: &["opendkim.service"],
        probes: &[PresetProbe {
            protocol: PresetProtocol::Milter,
            endpoint: "/run/opendkim/opendkim.sock",
        }],
        critical: true,
        timing: Timing::NONE,
    },
    Preset {
        name: "mariadb",
        title: "MariaDB or MySQL database server",
        units: &["mariadb.service", "mysql.service", "mysqld.service"],
        // NOTE: RHEL's default socket is /var/lib/mysql/mysql.sock. Discovery finds it only where
        // the option files name it; otherwise set `probe` there.
        probes: &[PresetProbe {
            protocol: PresetProtocol::Mysql,
            endpoint: "/run/mysqld/mysqld.sock",
        }],
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
        probes: &[PresetProbe {
            protocol: PresetProtocol::Spamd,
            endpoint: "127.0.0.1:783",
        }],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "spamass-milter",
        title: "SpamAssassin milter for Postfix",
        units: &["spamass-milter.service"],
        // Debian's init script uses this socket when Postfix is installed and
        // /etc/default/spamass-milter does not set SOCKET.
        probes: &[PresetProbe {
            protocol: PresetProtocol::Milter,
            endpoint: "/var/spool/postfix/spamass/spamass.sock",
        }],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "nginx",
        title: "nginx web server",
        units: &["nginx.service"],
        probes: &[WEB_PROBE],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "apache",
        title: "Apache HTTP Server",
        units: &["apache2.service", "httpd.service"],
        probes: &[WEB_PROBE],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "unbound",
        title: "Unbound DNS resolver",
        units: &["unbound.service"],
        probes: &[PresetProbe {
            protocol: PresetProtocol::Dns,
            endpoint: "127.0.0.1:53",
        }],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "rsyslog",
        title: "rsyslog system logger",
        units: &["rsyslog.service"],
        // Journald forwards to rsyslog through this socket, which systemd's syslog.socket
        // holds, so a send alone succeeds while rsyslog is stopped. rsyslog logs the test
        // message to /var/log/syslog by Debian's default rules whether or not the probe looks
        // for it, so the probe reads it back there: one line per check either way, and only
        // this proves that rsyslog writes.
        probes: &[PresetProbe {
            protocol: PresetProtocol::Syslog {
                verify_file: Some("/var/log/syslog"),
            },
            endpoint: "/run/systemd/journal/syslog",
        }],
        critical: false,
        timing: Timing::NONE,
    },
    Preset {
        name: "fail2ban",
        title: "Fail2ban intrusion prevention",
        units: &["fail2ban.service"],
        probes: &[PresetProbe {
            protocol: PresetProtocol::Fail2ban,
            endpoint: "/run/fail2ban/fail2ban.sock",
        }],
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

    /// Returns the one default probe of a preset.
    fn only_probe(name: &str) -> ProbeSpec {
        let Some(found) = preset(name) else {
            panic!("{name} preset missing");
        };
        let mut specs = found.probe_specs();
        assert_eq!(specs.len(), 1, "{name}: {specs:?}");
        specs.remove(0)
    }

    fn tcp(address: &str) -> Option<Endpoint> {
        Endpoint::parse(address).ok()
    }

    fn unix(path: &str) -> Option<Endpoint> {
        Some(Endpoint::Unix { path: path.into() })
    }

    #[test]
    fn preset_endpoints_parse() {
        for preset in presets() {
            for probe in preset.probes {
                assert!(
                    Endpoint::parse(probe.endpoint).is_ok(),
                    "{}: {}",
                    preset.name,
                    probe.endpoint
                );
            }
        }
    }

    #[test]
    fn every_preset_probes_a_protocol() {
        for preset in presets() {
            let specs = preset.probe_specs();
            assert!(!specs.is_empty(), "{} has no probe", preset.name);
            for spec in specs {
                assert_ne!(spec.protocol, Protocol::Connect, "{}", preset.name);
                assert_eq!(spec.source, "preset", "{}", preset.name);
                assert_eq!(spec.tls, crate::probe::TlsOptions::default());
            }
        }
    }

    #[test]
    fn mail_presets_speak_protocols() {
        let postfix = only_probe("postfix");
        assert_eq!(
            postfix.protocol,
            Protocol::Smtp {
                helo_name: "selfheal.invalid".into()
            }
        );
        assert_eq!(postfix.endpoint, tcp("127.0.0.1:25"));

        let dovecot = only_probe("dovecot");
        assert_eq!(dovecot.protocol, Protocol::Imap);
        assert_eq!(dovecot.endpoint, tcp("127.0.0.1:143"));

        let opendkim = only_probe("opendkim");
        assert_eq!(opendkim.protocol, Protocol::Milter);
        assert_eq!(opendkim.endpoint, unix("/run/opendkim/opendkim.sock"));

        let spamass = only_probe("spamass-milter");
        assert_eq!(spamass.protocol, Protocol::Milter);
        assert_eq!(
            spamass.endpoint,
            unix("/var/spool/postfix/spamass/spamass.sock")
        );

        let spamd = only_probe("spamd");
        assert_eq!(spamd.protocol, Protocol::Spamd);
        assert_eq!(spamd.endpoint, tcp("127.0.0.1:783"));
    }

    #[test]
    fn other_presets_speak_protocols() {
        let mariadb = only_probe("mariadb");
        assert_eq!(mariadb.protocol, Protocol::Mysql { credentials: None });
        assert_eq!(mariadb.endpoint, unix("/run/mysqld/mysqld.sock"));

        for name in ["nginx", "apache"] {
            let web = only_probe(name);
            assert_eq!(
                web.protocol,
                Protocol::Http {
                    path: "/".into(),
                    host: "localhost".into(),
                    expect: StatusClass(2),
                },
                "{name}"
            );
            assert_eq!(web.endpoint, tcp("127.0.0.1:80"), "{name}");
        }

        let unbound = only_probe("unbound");
        assert_eq!(
            unbound.protocol,
            Protocol::Dns {
                name: "localhost.".into(),
                outside_name: None
            }
        );
        assert_eq!(unbound.endpoint, tcp("127.0.0.1:53"));

        let fail2ban = only_probe("fail2ban");
        assert_eq!(fail2ban.protocol, Protocol::Fail2ban);
        assert_eq!(fail2ban.endpoint, unix("/run/fail2ban/fail2ban.sock"));

        let rsyslog = only_probe("rsyslog");
        assert_eq!(
            rsyslog.protocol,
            Protocol::Syslog {
                verify_file: Some("/var/log/syslog".into())
            }
        );
        assert_eq!(rsyslog.endpoint, unix("/run/systemd/journal/syslog"));
    }

    #[test]
    fn unknown_preset_is_none() {
        assert!(preset("sendmail").is_none());
        assert!(preset("").is_none());
    }
}
