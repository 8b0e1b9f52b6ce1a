//! Discovery: where a preset's service listens, read from the service's own config files
//! instead of assumed.
//!
//! Each discovered probe records its origin in [`ProbeSpec::source`] as `FILE:LINE`, such as
//! `/etc/postfix/master.cf:12`. When a file is missing or unreadable, or names no endpoint,
//! the preset's default probes stay, with the reason in the source:
//! `preset (/etc/opendkim.conf not found)`. A file that cannot be parsed adds a warning and
//! never fails the config. Every function takes the root directory the files live under, `/`
//! on a live host and a fixture tree in tests.

mod mariadb;
mod milter;
mod opendkim;
mod postfix;
mod root;
mod spamass;
mod unbound;

use std::path::{Path, PathBuf};

use super::{preset, Config, ConfigError, ServiceConfig, CONFIG_SOURCE, PRESET_SOURCE};
use crate::probe::{Endpoint, ProbeSpec};

pub use mariadb::find_server_option;
pub(in crate::config) use milter::parse_milter_address;
use root::Root;

/// Root of the live host's config files.
pub const HOST_ROOT: &str = "/";

/// Probes found for one service, with the problems met on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Probes to run: the discovered ones, or the preset's defaults with the reason in their
    /// source. Empty when the service's config shows it listens nowhere a probe could reach.
    pub probes: Vec<ProbeSpec>,
    /// Problems in the service's config files; they never make the config invalid.
    pub warnings: Vec<ConfigError>,
}

/// Reads the config files of the preset's service below `root`. Returns `None` for a preset
/// without discovery (dovecot, spamd, nginx, apache, rsyslog, fail2ban), whose defaults stay.
pub fn discover(preset_name: &str, root: &Path) -> Option<Discovery> {
    let root = Root::new(root);
    match preset_name {
        "postfix" => Some(postfix::discover(&root)),
        "opendkim" => Some(opendkim::discover(&root)),
        "spamass-milter" => Some(spamass::discover(&root)),
        "mariadb" => Some(mariadb::discover(&root)),
        "unbound" => Some(unbound::discover(&root)),
        _ => None,
    }
}

/// Replaces the default probes of each service that still has them with the discovered ones,
/// and adds the discovery warnings to [`Config::warnings`].
///
/// Discovery applies to a service whose table is named after its preset (`[services.postfix]`)
/// and whose probes all have the source "preset", that is, whose table sets neither `probe` nor
/// `probes`. A table of another name, such as `[services.postfix-out]` with
/// `preset = "postfix"`, is another instance with its own config files, so it keeps the
/// preset's probes.
pub fn apply(config: &mut Config, root: &Path) {
    for service in &mut config.services {
        let named_after_preset = service.preset.as_deref() == Some(service.name.as_str());
        let has_defaults = !service.probes.is_empty()
            && service
                .probes
                .iter()
                .all(|probe| probe.source == PRESET_SOURCE);
        if !named_after_preset || !has_defaults {
            continue;
        }
        if let Some(found) = discover(&service.name, root) {
            let mut warnings = found.warnings;
            // Say what the warning leaves selfheal doing: a warning about another program's
            // file must not read like a reason to stop.
            if !found.probes.is_empty() {
                let probes: Vec<String> = found
                    .probes
                    .iter()
                    .map(|probe| format!("{probe} ({})", describe_source(probe)))
                    .collect();
                for warning in &mut warnings {
                    warning
                        .message
                        .push_str(&format!("; selfheal probes {}", probes.join(", ")));
                }
            }
            service.probes = found.probes;
            service.discovered_under = Some(root.to_path_buf());
            config.warnings.extend(warnings);
        }
    }
}

/// Reads the config files of a service whose probes were discovered again, so that a socket
/// or port moved since selfheal started is followed. `None` for a service whose probes were
/// not discovered ([`ServiceConfig::discovered_under`]).
pub fn rediscover(service: &ServiceConfig) -> Option<Discovery> {
    let root = service.discovered_under.as_deref()?;
    discover(service.preset.as_deref()?, root)
}

/// Describes where a probe's endpoint came from, for `selfheal check` and logs: "preset
/// default", "set in the config file", "from /etc/postfix/master.cf:12", or "preset default:
/// /etc/opendkim.conf not found".
pub fn describe_source(spec: &ProbeSpec) -> String {
    let source = spec.source.as_str();
    if source == PRESET_SOURCE {
        return "preset default".to_string();
    }
    if source == CONFIG_SOURCE {
        return "set in the config file".to_string();
    }
    let note = source
        .strip_prefix(PRESET_SOURCE)
        .and_then(|rest| rest.strip_prefix(" ("))
        .and_then(|rest| rest.strip_suffix(')'));
    match note {
        Some(note) => format!("preset default: {note}"),
        None => format!("from {source}"),
    }
}

/// Formats the source of a probe found at `line` of `file`.
fn file_source(file: &Path, line: usize) -> String {
    format!("{}:{line}", file.display())
}

/// Returns the preset's default probes with `note` in their source, for a service whose files
/// name no endpoint.
fn fallback(preset_name: &str, note: &str) -> Vec<ProbeSpec> {
    let mut probes = preset(preset_name).map_or_else(Vec::new, |found| found.probe_specs());
    for probe in &mut probes {
        probe.source = format!("{PRESET_SOURCE} ({note})");
    }
    probes
}

/// Moves the preset's first default probe to `endpoint`, keeping its protocol settings.
fn relocated(preset_name: &str, endpoint: Endpoint, source: String) -> Vec<ProbeSpec> {
    let default = preset(preset_name).and_then(|found| found.probe_specs().into_iter().next());
    default
        .map(|mut probe| {
            probe.endpoint = Some(endpoint);
            probe.source = source;
            probe
        })
        .into_iter()
        .collect()
}

/// Builds a warning about a service's own config file, met while looking for its probe
/// endpoints. It names that file and line and no selfheal key, because the selfheal config is
/// not at fault. The example shows the service's `probe` key, where the admin sets the
/// endpoint when discovery cannot find it.
fn warning(
    preset_name: &str,
    file: &Path,
    line: usize,
    message: String,
    example: &str,
) -> ConfigError {
    ConfigError {
        file: PathBuf::from(file),
        line,
        key: String::new(),
        message: format!(
            "while reading {preset_name}'s own config to find what to probe: {message}"
        ),
        example: (!example.is_empty()).then(|| format!("[services.{preset_name}] {example}")),
    }
}

/// Strips one pair of matching double or single quotes around a value.
fn unquote(value: &str) -> &str {
    for quote in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(quote)
            .and_then(|rest| rest.strip_suffix(quote))
        {
            return inner;
        }
    }
    value
}

#[cfg(test)]
pub(super) mod fixture {
    //! Fixture trees for discovery tests: a tempdir standing for `/`.

    use std::fs;
    use std::path::Path;

    pub(in crate::config) fn tree() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("creating a tempdir: {err}"),
        }
    }

    /// Writes `text` to the host path `path` below `root`, creating directories.
    pub(in crate::config) fn write(root: &Path, path: &str, text: &str) {
        let host = root.join(path.trim_start_matches('/'));
        if let Some(parent) = host.parent() {
            if let Err(err) = fs::create_dir_all(parent) {
                panic!("creating {}: {err}", parent.display());
            }
        }
        if let Err(err) = fs::write(&host, text) {
            panic!("writing {}: {err}", host.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::fixture::{tree, write};
    use super::*;
    use crate::config::{parse_str, Mode, ServiceConfig, Timing};
    use crate::probe::Protocol;

    fn spec_with_source(source: &str) -> ProbeSpec {
        ProbeSpec::new(Protocol::Milter, None, source)
    }

    #[test]
    fn describe_each_source() {
        let cases = [
            ("preset", "preset default"),
            ("config", "set in the config file"),
            (
                "/etc/postfix/master.cf:12",
                "from /etc/postfix/master.cf:12",
            ),
            (
                "preset (/etc/opendkim.conf not found)",
                "preset default: /etc/opendkim.conf not found",
            ),
        ];
        for (source, expected) in cases {
            assert_eq!(describe_source(&spec_with_source(source)), expected);
        }
    }

    #[test]
    fn presets_without_discovery() {
        let dir = tree();
        for name in ["dovecot", "spamd", "nginx", "apache", "rsyslog", "fail2ban"] {
            assert_eq!(discover(name, dir.path()), None, "{name}");
        }
        assert!(discover("postfix", dir.path()).is_some());
    }

    #[test]
    fn fallback_notes_reason() {
        let probes = fallback("opendkim", "/etc/opendkim.conf not found");
        assert_eq!(probes.len(), 1);
        assert_eq!(probes[0].source, "preset (/etc/opendkim.conf not found)");
        assert_eq!(probes[0].protocol, Protocol::Milter);
    }

    #[test]
    fn unquote_cases() {
        assert_eq!(unquote("\"/run/x\""), "/run/x");
        assert_eq!(unquote("'/run/x'"), "/run/x");
        assert_eq!(unquote("\"/run/x'"), "\"/run/x'");
        assert_eq!(unquote("/run/x"), "/run/x");
        assert_eq!(unquote("\""), "\"");
    }

    fn opendkim_tree() -> tempfile::TempDir {
        let dir = tree();
        write(
            dir.path(),
            "/etc/opendkim.conf",
            "Syslog yes\nSocket inet:8891@localhost\n",
        );
        dir
    }

    #[test]
    fn apply_replaces_defaults() {
        let dir = opendkim_tree();
        let text = "[services.opendkim]\n[services.dovecot]\n";
        let mut config = match parse_str(text, Path::new("selfheal.toml")) {
            Ok(config) => config,
            Err(errors) => panic!("{errors}"),
        };
        apply(&mut config, dir.path());
        let opendkim = &config.services[0].probes;
        assert_eq!(opendkim.len(), 1);
        assert_eq!(opendkim[0].source, "/etc/opendkim.conf:2");
        assert_eq!(
            opendkim[0].endpoint,
            Some(Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 8891
            })
        );
        assert_eq!(config.services[1].probes[0].source, "preset");
        assert_eq!(
            config.services[0].discovered_under.as_deref(),
            Some(dir.path())
        );
        assert_eq!(config.services[1].discovered_under, None);
    }

    #[test]
    fn rediscover_follows_moved_socket() {
        let dir = opendkim_tree();
        let mut config = match parse_str("[services.opendkim]\n", Path::new("selfheal.toml")) {
            Ok(config) => config,
            Err(errors) => panic!("{errors}"),
        };
        apply(&mut config, dir.path());
        let service = &config.services[0];
        write(
            dir.path(),
            "/etc/opendkim.conf",
            "Syslog yes\nSocket local:/var/spool/postfix/opendkim/opendkim.sock\n",
        );

        let Some(found) = rediscover(service) else {
            panic!("no rediscovery for a discovered service");
        };

        assert_eq!(
            found.probes[0].endpoint,
            Some(Endpoint::Unix {
                path: "/var/spool/postfix/opendkim/opendkim.sock".into()
            })
        );
        assert_eq!(found.probes[0].source, "/etc/opendkim.conf:2");
        let mut set_by_admin = service.clone();
        set_by_admin.discovered_under = None;
        assert_eq!(rediscover(&set_by_admin), None);
    }

    #[test]
    fn apply_skips_explicit_probes() {
        let dir = opendkim_tree();
        let text = "[services.opendkim]\nprobe = { milter = \"unix:/run/x.sock\" }\n\
                    [services.dkim2]\npreset = \"opendkim\"\n";
        let mut config = match parse_str(text, Path::new("selfheal.toml")) {
            Ok(config) => config,
            Err(errors) => panic!("{errors}"),
        };
        apply(&mut config, dir.path());
        assert_eq!(config.services[0].probes[0].source, "config");
        assert_eq!(config.services[1].probes[0].source, "preset");
        assert_eq!(config.services[0].discovered_under, None);
        assert_eq!(config.services[1].discovered_under, None);
    }

    #[test]
    fn apply_skips_probes_off() {
        let dir = opendkim_tree();
        let mut config = match parse_str("[services.opendkim]\nprobe = false\n", Path::new("x")) {
            Ok(config) => config,
            Err(errors) => panic!("{errors}"),
        };
        apply(&mut config, dir.path());
        assert!(config.services[0].probes.is_empty());
    }

    #[test]
    fn apply_collects_warnings() {
        let dir = tree();
        write(dir.path(), "/etc/opendkim.conf", "Socket tcp:8891\n");
        let Some(opendkim) = preset("opendkim") else {
            panic!("opendkim preset missing");
        };
        let mut config = crate::config::from_presets_with_root(&[], dir.path());
        config.services.push(ServiceConfig::from_preset(
            opendkim,
            "opendkim",
            Mode::Heal,
            Timing::NONE,
        ));
        apply(&mut config, dir.path());
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert_eq!(config.warnings[0].file, Path::new("/etc/opendkim.conf"));
        assert_eq!(config.warnings[0].line, 1);
        assert_eq!(config.warnings[0].key, "");
        let text = config.warnings[0].to_string();
        assert!(
            text.starts_with(
                "/etc/opendkim.conf:1: while reading opendkim's own config to find what to \
                 probe: cannot use Socket \"tcp:8891\""
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "probing the preset default; selfheal probes milter /run/opendkim/opendkim.sock \
                 (preset default: invalid Socket in /etc/opendkim.conf)"
            ),
            "{text}"
        );
        assert!(
            text.ends_with("(example: [services.opendkim] probe = { milter = \"local:/run/opendkim/opendkim.sock\" })"),
            "{text}"
        );
    }
}
