//! Configuration: the TOML model, built-in presets for the covered services, and validation
//! that reports every problem at once with file, line and key.

pub mod detect;
pub mod discover;
mod parse;
pub mod presets;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use crate::manager::CommandSpec;
use crate::policy::Recovery;
use crate::probe::ProbeSpec;

pub use detect::{detect, detect_with, render_config, Detection};
pub use discover::{describe_source, Discovery};
pub use presets::{preset, presets, Preset, PresetProbe};

pub const DEFAULT_PATH: &str = "/etc/selfheal/selfheal.toml";

/// Default time between two checks of every service.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_STATE_DIR: &str = "/var/lib/selfheal";
pub const DEFAULT_CONTROL_SOCKET: &str = "/run/selfheal/control.sock";
/// Sendmail binary used for alerts when the config does not name one and this file exists.
pub const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail";
pub const DEFAULT_JOURNAL_LINES: usize = 20;
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_RESTART_TIMEOUT: Duration = Duration::from_secs(2 * 60);
/// Default time allowed for one delivery attempt through a relay.
pub const DEFAULT_RELAY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time allowed for one webhook request, connection included.
pub const DEFAULT_WEBHOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Name sent in EHLO and LHLO by smtp and lmtp probes without `helo_name`. The `.invalid`
/// top-level domain never resolves (RFC 2606), so the name cannot belong to a real host, and
/// its fully qualified form passes Postfix's `reject_non_fqdn_helo_hostname`.
pub const DEFAULT_HELO_NAME: &str = "selfheal.invalid";
/// Name a dns probe queries without `name`. Unbound resolves it from its built-in `localhost`
/// local zone, so the reply does not depend on any upstream server.
pub const DEFAULT_DNS_NAME: &str = "localhost.";
/// [`ProbeSpec::source`] of a preset's default probe.
pub const PRESET_SOURCE: &str = "preset";
/// [`ProbeSpec::source`] of a probe set in the config file.
pub const CONFIG_SOURCE: &str = "config";

/// Heal restarts a service found down; watch only tracks and alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Heal,
    Watch,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Heal => "heal",
            Mode::Watch => "watch",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// File the config came from; `None` when running on detected presets without a file.
    pub path: Option<PathBuf>,
    /// Time between two checks of every service (`interval`, default 30 s, never zero).
    pub interval: Duration,
    /// Default mode of every service (`mode`, default heal).
    pub mode: Mode,
    /// Directory of the state database `state.db` (`state_dir`, default `/var/lib/selfheal`).
    pub state_dir: PathBuf,
    /// Unix socket the daemon serves the CLI on (`control_socket`, default
    /// `/run/selfheal/control.sock`).
    pub control_socket: PathBuf,
    /// Alert recipients and channels: mail and webhooks (`[alerts]`).
    pub alerts: AlertConfig,
    /// The web dashboard (`[dashboard]`).
    pub dashboard: DashboardConfig,
    /// Enabled services, in the order the file names them.
    pub services: Vec<ServiceConfig>,
    /// Names of the service tables turned off with `enabled = false`.
    pub disabled: Vec<String>,
    /// Problems that do not stop selfheal from running, such as a password file readable by
    /// other users. `load` returns them with a valid config; the caller logs them.
    pub warnings: Vec<ConfigError>,
}

impl Config {
    pub fn state_db(&self) -> PathBuf {
        self.state_dir.join("state.db")
    }

    pub fn service(&self, name: &str) -> Option<&ServiceConfig> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn service_names(&self) -> Vec<&str> {
        self.services.iter().map(|s| s.name.as_str()).collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ServiceConfig {
    /// Name the admin uses: the table name under `[services]`.
    pub name: String,
    /// Built-in preset this service starts from, if any (the table name or `preset`).
    pub preset: Option<String>,
    /// Heal or watch this service (`mode`, default: the top-level `mode`).
    pub mode: Mode,
    /// Critical services are alerted in watch mode when they go down (`critical`, default: the
    /// preset's flag, false for a custom service).
    pub critical: bool,
    /// Candidate systemd unit names, tried in order; the first one systemd has loaded is used.
    /// Empty for a service managed by commands.
    pub units: Vec<String>,
    /// Start, stop and restart commands with the process check, for hosts without systemd.
    pub commands: Option<CommandSpec>,
    /// Endpoints that must pass their probe; empty means the unit state alone decides.
    pub probes: Vec<ProbeSpec>,
    /// Timeout of one probe run (`probe_timeout`, default 5 s).
    pub probe_timeout: Duration,
    /// Upper bound on one restart call, stop and start together (`restart_timeout`, default
    /// 2 min).
    pub restart_timeout: Duration,
    /// Verify window, restart budget and probe retries.
    pub recovery: Recovery,
    /// Command that checks the service's config (`config_test`); `None` uses the preset's.
    pub config_test: Option<Vec<String>>,
    /// Root directory the probes were discovered under (`/` on a live host): the probes come
    /// from the service's own config files, which the engine reads again at each check to
    /// follow a moved socket or port. `None` when the config file sets the probes, or the
    /// preset has no discovery.
    #[serde(skip)]
    pub discovered_under: Option<PathBuf>,
}

impl ServiceConfig {
    /// Returns the TCP ports the service's probes connect to.
    pub fn probe_ports(&self) -> Vec<u16> {
        self.probes
            .iter()
            .filter_map(|probe| match probe.endpoint {
                Some(crate::probe::Endpoint::Tcp { port, .. }) => Some(port),
                _ => None,
            })
            .collect()
    }

    /// Builds a service from a preset with nothing overridden. `defaults` are the top-level
    /// timing keys; the preset's own timing values take precedence over them.
    pub fn from_preset(preset: &Preset, name: &str, mode: Mode, defaults: Timing) -> Self {
        let timing = preset.timing.or(defaults);
        ServiceConfig {
            name: name.to_string(),
            preset: Some(preset.name.to_string()),
            mode,
            critical: preset.critical,
            units: preset.units.iter().map(|unit| unit.to_string()).collect(),
            commands: None,
            probes: preset.probe_specs(),
            probe_timeout: timing.probe_timeout.unwrap_or(DEFAULT_PROBE_TIMEOUT),
            restart_timeout: timing.restart_timeout.unwrap_or(DEFAULT_RESTART_TIMEOUT),
            recovery: timing.recovery(),
            config_test: None,
            discovered_under: None,
        }
    }
}

/// Timing keys set at one level of the config: the top level, a preset or a service table.
/// `None` leaves the value to the level below, and finally to the built-in default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    pub probe_timeout: Option<Duration>,
    pub probe_retries: Option<u32>,
    pub retry_interval: Option<Duration>,
    pub verify_after: Option<Duration>,
    pub verify_timeout: Option<Duration>,
    pub max_restarts: Option<u32>,
    pub restart_window: Option<Duration>,
    pub restart_timeout: Option<Duration>,
}

impl Timing {
    /// Nothing set; usable in `const` presets, where `Default` is not.
    pub const NONE: Timing = Timing {
        probe_timeout: None,
        probe_retries: None,
        retry_interval: None,
        verify_after: None,
        verify_timeout: None,
        max_restarts: None,
        restart_window: None,
        restart_timeout: None,
    };

    /// Fills each value left unset here from `lower`.
    pub fn or(self, lower: Timing) -> Timing {
        Timing {
            probe_timeout: self.probe_timeout.or(lower.probe_timeout),
            probe_retries: self.probe_retries.or(lower.probe_retries),
            retry_interval: self.retry_interval.or(lower.retry_interval),
            verify_after: self.verify_after.or(lower.verify_after),
            verify_timeout: self.verify_timeout.or(lower.verify_timeout),
            max_restarts: self.max_restarts.or(lower.max_restarts),
            restart_window: self.restart_window.or(lower.restart_window),
            restart_timeout: self.restart_timeout.or(lower.restart_timeout),
        }
    }

    /// Resolves the recovery policy values, taking [`Recovery::default`] for those left unset.
    pub fn recovery(&self) -> Recovery {
        let default = Recovery::default();
        Recovery {
            verify_after: self.verify_after.unwrap_or(default.verify_after),
            verify_timeout: self.verify_timeout.unwrap_or(default.verify_timeout),
            max_restarts: self.max_restarts.unwrap_or(default.max_restarts),
            restart_window: self.restart_window.unwrap_or(default.restart_window),
            probe_retries: self.probe_retries.unwrap_or(default.probe_retries),
            retry_interval: self.retry_interval.unwrap_or(default.retry_interval),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertConfig {
    /// Sender address (`from`); always set when `to` is not empty.
    pub from: Option<String>,
    /// Recipient addresses (`to`); empty means no alert mail is sent.
    pub to: Vec<String>,
    /// SMTP relays (`[[alerts.relay]]`), tried in order.
    pub relays: Vec<RelayConfig>,
    /// Local sendmail binary used after every relay failed; `None` disables it.
    pub sendmail: Option<PathBuf>,
    /// Journal lines of the unit included in an alert (`journal_lines`, default 20).
    pub journal_lines: usize,
    /// HTTP channels (`[[alerts.webhook]]`), in config order.
    pub webhooks: Vec<WebhookConfig>,
    /// Alerts within this time of the first one go out as one message (`group_window`,
    /// default 10 s; 0 sends each at once).
    pub group_window: Duration,
    /// Mails per hour; beyond it alerts are held back for one summary at the end of the hour
    /// (`max_per_hour`, default 10).
    pub max_per_hour: u32,
    /// Reminders for an incident still open, as offsets from its first alert (`reminders`,
    /// default 1 h, 6 h, 24 h); empty turns reminders off.
    pub reminders: Vec<Duration>,
    /// After the last reminder offset, one more every this long (`reminder_repeat`, default
    /// 24 h); `None` stops after the last offset.
    pub reminder_repeat: Option<Duration>,
    /// Send one mail when an alerted incident closes (`recovered`, default true).
    pub recovered: bool,
    /// Wait before the first retry of a failed delivery; it doubles with each failure
    /// (`retry_initial`, default 30 s).
    pub retry_initial: Duration,
    /// Maximum wait between retries (`retry_max`, default 30 min).
    pub retry_max: Duration,
    /// After this time from its creation an undelivered alert is given up (`expire_after`,
    /// default 3 days).
    pub expire_after: Duration,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            from: None,
            to: Vec::new(),
            relays: Vec::new(),
            sendmail: None,
            journal_lines: DEFAULT_JOURNAL_LINES,
            webhooks: Vec::new(),
            group_window: Duration::from_secs(10),
            max_per_hour: 10,
            reminders: vec![
                Duration::from_secs(3600),
                Duration::from_secs(6 * 3600),
                Duration::from_secs(24 * 3600),
            ],
            reminder_repeat: Some(Duration::from_secs(24 * 3600)),
            recovered: true,
            retry_initial: Duration::from_secs(30),
            retry_max: Duration::from_secs(30 * 60),
            expire_after: Duration::from_secs(3 * 24 * 3600),
        }
    }
}

impl AlertConfig {
    /// Returns whether any channel could deliver an alert: mail with a recipient and a relay or
    /// sendmail, or any webhook.
    pub fn has_channel(&self) -> bool {
        self.has_mail_channel() || !self.webhooks.is_empty()
    }

    /// Returns whether alert mail could be delivered: a recipient, and a relay or sendmail.
    pub fn has_mail_channel(&self) -> bool {
        !self.to.is_empty() && (!self.relays.is_empty() || self.sendmail.is_some())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// TLS from the first byte (port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS, which must succeed.
    Starttls,
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct RelayConfig {
    /// Host name or IP address of the relay.
    pub host: String,
    /// TCP port (default by `tls`: 465 for tls, 587 for starttls, 25 for none).
    pub port: u16,
    /// Transport security (default starttls).
    pub tls: TlsMode,
    /// SMTP AUTH user name; `password_file` is always set along with it.
    pub username: Option<String>,
    /// File whose content is the SMTP AUTH password, checked readable at load time.
    pub password_file: Option<PathBuf>,
    /// PEM file with the certificates of a private CA that signed the relay's certificate
    /// (`ca_file`), trusted in addition to the system CA store.
    pub ca_file: Option<PathBuf>,
    /// Time allowed for the connection and for the whole delivery attempt through this relay
    /// (default 30 s).
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct DashboardConfig {
    /// Serve the dashboard, the API and the metrics (`enabled`, default true).
    pub enabled: bool,
    /// Address and port to listen on (`listen`, default 127.0.0.1:8750).
    pub listen: SocketAddr,
    /// Address the admin opens the dashboard at, through the web server's reverse proxy
    /// (`public_url`); alerts link to it.
    pub public_url: Option<String>,
    /// Argon2 PHC string of the `admin` user's password (`admin_password_hash`).
    #[serde(skip)]
    pub admin_password_hash: Option<String>,
    /// Argon2 PHC string of the read-only `viewer` user's password (`readonly_password_hash`).
    #[serde(skip)]
    pub readonly_password_hash: Option<String>,
    /// Bearer tokens for the API and the metrics (`[[dashboard.token]]`).
    pub tokens: Vec<ApiToken>,
    /// Access to `/metrics` (`metrics`, default loopback).
    pub metrics: MetricsAccess,
    /// Serve plain HTTP on an address other than loopback (`allow_plain_http`, default false).
    pub allow_plain_http: bool,
    /// PEM certificate chain and private key for HTTPS (`tls_cert`, `tls_key`).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Peers whose `X-Forwarded-For` and `X-Forwarded-Proto` headers are believed: the
    /// reverse proxy (`trusted_proxies`, default 127.0.0.1 and ::1).
    pub trusted_proxies: Vec<IpAddr>,
    /// How long a login lasts without use (`session_idle`, default 2 h).
    pub session_idle: Duration,
}

/// Default dashboard address: loopback only, reached through the web server's reverse proxy.
pub const DEFAULT_DASHBOARD_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 8750);

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            enabled: true,
            listen: DEFAULT_DASHBOARD_LISTEN,
            public_url: None,
            admin_password_hash: None,
            readonly_password_hash: None,
            tokens: Vec::new(),
            metrics: MetricsAccess::Loopback,
            allow_plain_http: false,
            tls: None,
            trusted_proxies: vec![
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ],
            session_idle: Duration::from_secs(2 * 3600),
        }
    }
}

/// Role of a dashboard user or an API token: what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Everything, including restart, pause and resume.
    Admin,
    /// Sees everything, changes nothing.
    ReadOnly,
    /// Reads `/metrics` only.
    Metrics,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::ReadOnly => "read-only",
            Role::Metrics => "metrics",
        }
    }
}

/// Start of every API token `selfheal token` prints, so that a token is never mistaken for
/// the digest the config holds.
pub const TOKEN_PREFIX: &str = "shtk_";

/// A bearer token: its name for the audit log, the SHA-256 of the token, and its role.
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    pub name: String,
    #[serde(skip)]
    pub sha256: [u8; 32],
    pub role: Role,
}

/// Access rule of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Clients on this host that connect directly, not through the reverse proxy, and any
    /// client with a token.
    Loopback,
    /// Only clients with a token.
    Token,
}

/// Kind of HTTP endpoint a webhook posts to; each gets the body it expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// selfheal's own JSON document, POSTed to `url` (schema in docs/config.md).
    Json,
    /// An ntfy topic: `url` is the topic URL, such as `https://ntfy.sh/mail1-alerts`.
    Ntfy,
    /// A Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat).
    Slack,
    /// A Matrix room: `url` is the homeserver base URL and `room` the room ID.
    Matrix,
}

impl WebhookKind {
    /// Returns the name the config uses for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::Json => "json",
            WebhookKind::Ntfy => "ntfy",
            WebhookKind::Slack => "slack",
            WebhookKind::Matrix => "matrix",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookConfig {
    /// Name used in logs and by `selfheal alert test --channel NAME`; unique among channels.
    pub name: String,
    pub kind: WebhookKind,
    /// Endpoint: `http` or `https`.
    pub url: String,
    /// File whose first line is the access token sent as `Authorization: Bearer`; required
    /// for Matrix, optional for the others.
    pub token_file: Option<PathBuf>,
    /// Matrix room ID, such as `!abc:example.org`; only for Matrix.
    pub room: Option<String>,
    /// When true, the webhook is used only after every mail channel failed; when false (the
    /// default), every alert is posted here as well as mailed.
    pub fallback: bool,
    /// Time allowed for one request, connection included (default 30 s).
    pub timeout: Duration,
}

impl RelayConfig {
    /// Returns whether the relay is on this host: `localhost` or a loopback address.
    pub fn is_local(&self) -> bool {
        self.host.eq_ignore_ascii_case("localhost")
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback())
    }
}

/// The ports Postfix serves mail on by default: SMTP, submissions and submission.
pub const SMTP_PORTS: [u16; 3] = [25, 465, 587];

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigError {
    /// Config file; empty for a config built from presets without a file.
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is not tied to a line (unreadable file).
    pub line: usize,
    /// Dotted key path, such as `services.postfix.mode`; empty for file-level problems.
    pub key: String,
    pub message: String,
    /// A valid example for the key, shown as the fix.
    pub example: Option<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut location = self.file.display().to_string();
        if self.line > 0 {
            location.push_str(&format!(":{}", self.line));
        }
        if !self.key.is_empty() {
            if !location.is_empty() {
                location.push_str(": ");
            }
            location.push_str(&self.key);
        }
        if !location.is_empty() {
            write!(f, "{location}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(example) = &self.example {
            write!(f, " (example: {example})")?;
        }
        Ok(())
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Reads and validates a config file, returning every problem found at once, sorted by line,
/// and replaces the default probes of presets with what the services' own config files name
/// (see [`discover`]).
///
/// Paths the config names (sendmail, password files) are checked on this host's filesystem.
/// Non-fatal problems come back in [`Config::warnings`].
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_root(path, Path::new(discover::HOST_ROOT))
}

/// [`load`] with the services' config files read below `root` instead of `/`.
pub fn load_with_root(path: &Path, root: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|err| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            key: String::new(),
            message: format!(
                "failed to read the config file: {err}; check the path and that selfheal may read it"
            ),
            example: None,
        }])
    })?;
    let mut config = parse_str(&text, path)?;
    discover::apply(&mut config, root);
    Ok(config)
}

/// Validates config text as [`load`] does, without discovery; `path` is only used in errors and
/// [`Config::path`].
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    parse::parse(text, path)
}

/// Builds the config used when no config file exists: the named presets with all defaults,
/// heal mode and no alert recipient, with probes discovered from the services' config files.
/// A name that is not a preset is skipped with a warning.
pub fn from_presets(names: &[&str]) -> Config {
    from_presets_with_root(names, Path::new(discover::HOST_ROOT))
}

/// [`from_presets`] with the services' config files read below `root` instead of `/`.
pub fn from_presets_with_root(names: &[&str], root: &Path) -> Config {
    let mut services = Vec::new();
    let mut warnings = Vec::new();
    for name in names {
        match preset(name) {
            Some(found) => services.push(ServiceConfig::from_preset(
                found,
                name,
                Mode::Heal,
                Timing::NONE,
            )),
            None => warnings.push(ConfigError {
                file: PathBuf::new(),
                line: 0,
                key: format!("services.{name}"),
                message: format!(
                    "unknown preset \"{name}\", skipped; the presets are: {}",
                    presets::preset_names()
                ),
                example: None,
            }),
        }
    }
    let mut config = Config {
        path: None,
        interval: DEFAULT_INTERVAL,
        mode: Mode::Heal,
        state_dir: PathBuf::from(DEFAULT_STATE_DIR),
        control_socket: PathBuf::from(DEFAULT_CONTROL_SOCKET),
        dashboard: DashboardConfig::default(),
        alerts: AlertConfig {
            sendmail: default_sendmail(),
            journal_lines: DEFAULT_JOURNAL_LINES,
            ..AlertConfig::default()
        },
        services,
        disabled: Vec::new(),
        warnings,
    };
    discover::apply(&mut config, root);
    config
}

/// Finds the name in `known` that `unknown` most likely misspells, the same way `config check`
/// suggests a key for an unknown one.
pub fn closest_name<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    parse::closest_key(unknown, known)
}

/// [`DEFAULT_SENDMAIL`] when that file exists on this host.
fn default_sendmail() -> Option<PathBuf> {
    let path = Path::new(DEFAULT_SENDMAIL);
    path.is_file().then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("creating a tempdir: {err}"),
        }
    }

    #[test]
    fn from_presets_uses_defaults() {
        let root = tempdir();
        let config = from_presets_with_root(&["postfix", "mariadb"], root.path());
        assert_eq!(config.path, None);
        assert_eq!(config.mode, Mode::Heal);
        assert_eq!(config.interval, DEFAULT_INTERVAL);
        assert_eq!(config.state_db(), Path::new("/var/lib/selfheal/state.db"));
        assert!(config.alerts.to.is_empty());
        assert!(!config.alerts.has_channel());
        assert!(config.warnings.is_empty());
        assert_eq!(config.service_names(), ["postfix", "mariadb"]);

        let Some(mariadb) = config.service("mariadb") else {
            panic!("mariadb missing");
        };
        assert_eq!(mariadb.preset.as_deref(), Some("mariadb"));
        assert_eq!(mariadb.units[0], "mariadb.service");
        assert!(mariadb.critical);
        assert_eq!(mariadb.restart_timeout, Duration::from_secs(600));
        assert_eq!(mariadb.recovery.verify_timeout, Duration::from_secs(300));
        assert_eq!(
            mariadb.recovery.max_restarts,
            Recovery::default().max_restarts
        );
        assert_eq!(mariadb.probe_timeout, DEFAULT_PROBE_TIMEOUT);
    }

    #[test]
    fn from_presets_skips_unknown() {
        let root = tempdir();
        let config = from_presets_with_root(&["exim", "dovecot"], root.path());
        assert_eq!(config.service_names(), ["dovecot"]);
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(config.warnings[0].key, "services.exim");
        assert!(config.warnings[0]
            .to_string()
            .starts_with("services.exim: unknown preset"));
    }

    #[test]
    fn load_reads_file() {
        let dir = tempdir();
        let path = dir.path().join("selfheal.toml");
        if let Err(err) = std::fs::write(&path, "interval = \"1min\"\n[services.dovecot]\n") {
            panic!("writing the config: {err}");
        }
        let config = match load_with_root(&path, dir.path()) {
            Ok(config) => config,
            Err(errors) => panic!("unexpected errors:\n{errors}"),
        };
        assert_eq!(config.path.as_deref(), Some(path.as_path()));
        assert_eq!(config.interval, Duration::from_secs(60));
        assert_eq!(config.service_names(), ["dovecot"]);
    }

    #[test]
    fn load_missing_file() {
        let path = Path::new("/nonexistent/selfheal.toml");
        let errors = match load(path) {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(errors) => errors.0,
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 0);
        assert!(errors[0]
            .message
            .starts_with("failed to read the config file"));
        assert!(errors[0]
            .to_string()
            .starts_with("/nonexistent/selfheal.toml: failed"));
    }

    #[test]
    fn error_display_format() {
        let error = ConfigError {
            file: PathBuf::from("/etc/selfheal/selfheal.toml"),
            line: 3,
            key: "services.dovecot.mode".into(),
            message: "invalid mode \"fix\"".into(),
            example: Some("mode = \"watch\"".into()),
        };
        assert_eq!(
            error.to_string(),
            "/etc/selfheal/selfheal.toml:3: services.dovecot.mode: invalid mode \"fix\" \
             (example: mode = \"watch\")"
        );
        let errors = ConfigErrors(vec![error.clone(), error]);
        assert_eq!(errors.to_string().lines().count(), 2);
    }

    #[test]
    fn timing_fills_from_lower() {
        let upper = Timing {
            probe_retries: Some(7),
            ..Timing::NONE
        };
        let lower = Timing {
            probe_retries: Some(1),
            max_restarts: Some(9),
            ..Timing::NONE
        };
        let merged = upper.or(lower);
        assert_eq!(merged.probe_retries, Some(7));
        assert_eq!(merged.max_restarts, Some(9));
        assert_eq!(merged.verify_after, None);
        let recovery = merged.recovery();
        assert_eq!(recovery.max_restarts, 9);
        assert_eq!(recovery.verify_after, Recovery::default().verify_after);
    }

    /// Writes `text` to the host path `path` below `root`.
    fn write_below(root: &Path, path: &str, text: &str) {
        let host = root.join(path.trim_start_matches('/'));
        if let Some(parent) = host.parent() {
            if let Err(err) = std::fs::create_dir_all(parent) {
                panic!("creating {}: {err}", parent.display());
            }
        }
        if let Err(err) = std::fs::write(&host, text) {
            panic!("writing {}: {err}", host.display());
        }
    }

    /// Builds a root whose Postfix listens on 25 and 587 and whose OpenDKIM config is missing.
    fn postfix_root() -> tempfile::TempDir {
        let root = tempdir();
        write_below(
            root.path(),
            "/etc/postfix/master.cf",
            "smtp      inet  n       -       y       -       -       smtpd\n\
             submission inet n       -       y       -       -       smtpd\n\
             \x20 -o syslog_name=postfix/submission\n",
        );
        write_below(
            root.path(),
            "/etc/postfix/main.cf",
            "inet_interfaces = loopback-only\n",
        );
        root
    }

    fn sources(service: &ServiceConfig) -> Vec<String> {
        service
            .probes
            .iter()
            .map(|probe| format!("{probe} <- {}", describe_source(probe)))
            .collect()
    }

    #[test]
    fn load_applies_discovery() {
        let root = postfix_root();
        let path = root.path().join("selfheal.toml");
        write_below(
            root.path(),
            "/selfheal.toml",
            "[services.postfix]\n[services.opendkim]\n[services.dovecot]\n",
        );
        let config = match load_with_root(&path, root.path()) {
            Ok(config) => config,
            Err(errors) => panic!("unexpected errors:\n{errors}"),
        };
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);
        let listed: Vec<Vec<String>> = config.services.iter().map(sources).collect();
        assert_eq!(
            listed,
            [
                vec![
                    "smtp 127.0.0.1:25 <- from /etc/postfix/master.cf:1".to_string(),
                    "smtp 127.0.0.1:587 (starttls) <- from /etc/postfix/master.cf:2".to_string(),
                ],
                vec![
                    "milter /run/opendkim/opendkim.sock <- preset default: /etc/opendkim.conf \
                     not found"
                        .to_string()
                ],
                vec!["imap 127.0.0.1:143 <- preset default".to_string()],
            ]
        );
    }

    #[test]
    fn from_presets_applies_discovery() {
        let root = postfix_root();
        let config = from_presets_with_root(&["postfix"], root.path());
        let Some(postfix) = config.service("postfix") else {
            panic!("postfix missing");
        };
        assert_eq!(postfix.probes.len(), 2);
        assert_eq!(postfix.probes[1].source, "/etc/postfix/master.cf:2");
    }

    #[tokio::test]
    async fn rendered_config_loads_with_discovery() {
        let found = detect_with(|_| std::future::ready(true)).await;
        assert_eq!(found.len(), presets().len());
        let root = postfix_root();
        write_below(root.path(), "/selfheal.toml", &render_config(&found));
        let path = root.path().join("selfheal.toml");
        let config = match load_with_root(&path, root.path()) {
            Ok(config) => config,
            Err(errors) => panic!("rendered config has errors:\n{errors}"),
        };
        let Some(postfix) = config.service("postfix") else {
            panic!("postfix missing from the rendered config");
        };
        assert_eq!(postfix.probes[0].source, "/etc/postfix/master.cf:1");
        for service in &config.services {
            assert!(!service.probes.is_empty(), "{} has no probe", service.name);
        }
    }
}
