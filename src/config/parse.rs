//! Config file parser. It walks the `toml_edit` document key by key instead of deserializing
//! it, so that one run reports every problem, each with the line of its key or value.

use std::fs::{self, File};
use std::net::Ipv6Addr;
use std::ops::{Range, RangeInclusive};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::ServerName;
use toml_edit::{ImDocument, Item, Table, TableLike, TomlError, Value};

use super::discover::parse_milter_address;
use super::presets::{self, Preset};
use super::{
    default_sendmail, AlertConfig, Config, ConfigError, ConfigErrors, Mode, RelayConfig,
    ServiceConfig, Timing, TlsMode, CONFIG_SOURCE, DEFAULT_CONTROL_SOCKET, DEFAULT_DNS_NAME,
    DEFAULT_HELO_NAME, DEFAULT_INTERVAL, DEFAULT_JOURNAL_LINES, DEFAULT_PROBE_TIMEOUT,
    DEFAULT_RELAY_TIMEOUT, DEFAULT_RESTART_TIMEOUT, DEFAULT_SENDMAIL, DEFAULT_STATE_DIR,
};
use crate::manager::CommandSpec;
use crate::probe::{Endpoint, ProbeSpec, Protocol, StatusClass, TlsMode as ProbeTlsMode};

/// Known keys of one kind of table, each with the example shown when it is wrong.
type Keys = &'static [(&'static str, &'static str)];

const TOP_KEYS: Keys = &[
    ("interval", r#"interval = "30s""#),
    ("mode", r#"mode = "heal""#),
    ("state_dir", r#"state_dir = "/var/lib/selfheal""#),
    (
        "control_socket",
        r#"control_socket = "/run/selfheal/control.sock""#,
    ),
    ("alerts", r#"[alerts]"#),
    ("services", r#"[services.postfix]"#),
];

/// Keys allowed both at the top level, as defaults, and in a service table.
const TIMING_KEYS: Keys = &[
    ("probe_timeout", r#"probe_timeout = "5s""#),
    ("probe_retries", "probe_retries = 2"),
    ("retry_interval", r#"retry_interval = "2s""#),
    ("verify_after", r#"verify_after = "5s""#),
    ("verify_timeout", r#"verify_timeout = "30s""#),
    ("max_restarts", "max_restarts = 3"),
    ("restart_window", r#"restart_window = "15min""#),
    ("restart_timeout", r#"restart_timeout = "2min""#),
];

const ALERT_KEYS: Keys = &[
    ("from", r#"from = "selfheal@mail.example.org""#),
    ("to", r#"to = ["admin@example.org"]"#),
    ("journal_lines", "journal_lines = 20"),
    ("sendmail", r#"sendmail = "/usr/sbin/sendmail""#),
    ("relay", r#"[[alerts.relay]]"#),
];

const RELAY_KEYS: Keys = &[
    ("host", r#"host = "smtp.example.net""#),
    ("port", "port = 587"),
    ("tls", r#"tls = "starttls""#),
    ("username", r#"username = "selfheal""#),
    (
        "password_file",
        r#"password_file = "/etc/selfheal/relay-password""#,
    ),
    ("timeout", r#"timeout = "30s""#),
];

const SERVICE_KEYS: Keys = &[
    ("enabled", "enabled = true"),
    ("preset", r#"preset = "postfix""#),
    ("mode", r#"mode = "watch""#),
    ("critical", "critical = true"),
    ("unit", r#"unit = "ai-filter.service""#),
    ("units", r#"units = ["mariadb.service", "mysql.service"]"#),
    ("probe", r#"probe = { tcp = "127.0.0.1:10030" }"#),
    (
        "probes",
        r#"probes = [{ tcp = "127.0.0.1:25" }, { unix = "/run/x.sock" }]"#,
    ),
    ("start", r#"start = "/etc/init.d/ai-filter start""#),
    ("stop", r#"stop = "/etc/init.d/ai-filter stop""#),
    (
        "restart",
        r#"restart = ["/etc/init.d/ai-filter", "restart"]"#,
    ),
    ("pidfile", r#"pidfile = "/run/ai-filter.pid""#),
    ("process", r#"process = "ai-filter""#),
];

/// Service keys that make a service managed by commands instead of a systemd unit.
const COMMAND_KEYS: [&str; 5] = ["start", "stop", "restart", "pidfile", "process"];

/// Keys that name a probe's kind and endpoint, such as `smtp = "127.0.0.1:25"`; one per probe.
const PROBE_KIND_KEYS: Keys = &[
    ("tcp", r#"probe = { tcp = "127.0.0.1:10030" }"#),
    (
        "unix",
        r#"probe = { unix = "/run/opendkim/opendkim.sock" }"#,
    ),
    ("tls", r#"probe = { tls = "127.0.0.1:10031" }"#),
    ("smtp", r#"probe = { smtp = "127.0.0.1:25" }"#),
    (
        "lmtp",
        r#"probe = { lmtp = "/var/spool/postfix/private/dovecot-lmtp" }"#,
    ),
    ("imap", r#"probe = { imap = "127.0.0.1:143" }"#),
    ("pop3", r#"probe = { pop3 = "127.0.0.1:110" }"#),
    ("http", r#"probe = { http = "127.0.0.1:80" }"#),
    ("spamd", r#"probe = { spamd = "127.0.0.1:783" }"#),
    ("milter", r#"probe = { milter = "inet:8891@localhost" }"#),
    ("mysql", r#"probe = { mysql = "/run/mysqld/mysqld.sock" }"#),
    ("dns", r#"probe = { dns = "127.0.0.1:53" }"#),
    (
        "fail2ban",
        r#"probe = { fail2ban = "/run/fail2ban/fail2ban.sock" }"#,
    ),
    (
        "syslog",
        r#"probe = { syslog = "/run/systemd/journal/syslog" }"#,
    ),
    (
        "command",
        r#"probe = { command = ["/usr/local/bin/filter-check", "--quick"] }"#,
    ),
];

/// Keys that set options of a probe; which kinds take each is in [`ProbeKind::options`].
const PROBE_OPTION_KEYS: Keys = &[
    ("tls", r#"probe = { smtp = "127.0.0.1:465", tls = true }"#),
    (
        "starttls",
        r#"probe = { smtp = "127.0.0.1:587", starttls = true }"#,
    ),
    (
        "server_name",
        r#"probe = { imap = "127.0.0.1:993", tls = true, server_name = "mail.example.org" }"#,
    ),
    (
        "verify_cert",
        r#"probe = { smtp = "127.0.0.1:465", tls = true, verify_cert = true }"#,
    ),
    (
        "cert_warn_days",
        r#"probe = { tls = "127.0.0.1:443", cert_warn_days = 14 }"#,
    ),
    (
        "helo_name",
        r#"probe = { smtp = "127.0.0.1:25", helo_name = "selfheal.invalid" }"#,
    ),
    ("path", r#"probe = { http = "127.0.0.1:80", path = "/" }"#),
    (
        "host",
        r#"probe = { http = "127.0.0.1:80", host = "localhost" }"#,
    ),
    (
        "expect",
        r#"probe = { http = "127.0.0.1:80", expect = "2xx" }"#,
    ),
    ("send", SEND_EXPECT_EXAMPLE),
    (
        "name",
        r#"probe = { dns = "127.0.0.1:53", name = "localhost." }"#,
    ),
    (
        "outside_name",
        r#"probe = { dns = "127.0.0.1:53", outside_name = "debian.org." }"#,
    ),
    (
        "credentials",
        r#"probe = { mysql = "/run/mysqld/mysqld.sock", credentials = "/etc/mysql/debian.cnf" }"#,
    ),
    (
        "verify_file",
        r#"probe = { syslog = "/run/systemd/journal/syslog", verify_file = "/var/log/syslog" }"#,
    ),
];

/// Example of `send` and `expect` on a tcp or unix probe.
const SEND_EXPECT_EXAMPLE: &str =
    r#"probe = { tcp = "127.0.0.1:10030", send = "PING\r\n", expect = "PONG" }"#;

/// Probe options that only mean something once TLS is on.
const TLS_ONLY_OPTIONS: [&str; 3] = ["server_name", "verify_cert", "cert_warn_days"];

/// Upper bound of `cert_warn_days`, one year, so that a typo such as 1400 is reported instead
/// of turning every certificate into a warning.
const MAX_CERT_WARN_DAYS: i64 = 365;

/// Maximum length in bytes of a DNS name in text form, without the final dot (RFC 1035).
const MAX_DNS_NAME: usize = 253;

/// Maximum length in bytes of one label of a DNS name (RFC 1035).
const MAX_DNS_LABEL: usize = 63;

/// The kind of a probe, named by the key that gives its endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProbeKind {
    Tcp,
    Unix,
    Tls,
    Smtp,
    Lmtp,
    Imap,
    Pop3,
    Http,
    Spamd,
    Milter,
    Mysql,
    Dns,
    Fail2ban,
    Syslog,
    Command,
}

/// Form of the value of a probe kind's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EndpointForm {
    /// `host:port`.
    Tcp,
    /// An absolute Unix socket path.
    Unix,
    /// `host:port` or an absolute Unix socket path.
    Either,
    /// Milter notation (`inet:PORT@HOST`, `unix:/path`), or `host:port` or a socket path.
    Milter,
    /// A program with its arguments instead of an endpoint.
    Command,
}

impl ProbeKind {
    const ALL: [ProbeKind; 15] = [
        ProbeKind::Tcp,
        ProbeKind::Unix,
        ProbeKind::Tls,
        ProbeKind::Smtp,
        ProbeKind::Lmtp,
        ProbeKind::Imap,
        ProbeKind::Pop3,
        ProbeKind::Http,
        ProbeKind::Spamd,
        ProbeKind::Milter,
        ProbeKind::Mysql,
        ProbeKind::Dns,
        ProbeKind::Fail2ban,
        ProbeKind::Syslog,
        ProbeKind::Command,
    ];

    fn key(self) -> &'static str {
        match self {
            ProbeKind::Tcp => "tcp",
            ProbeKind::Unix => "unix",
            ProbeKind::Tls => "tls",
            ProbeKind::Smtp => "smtp",
            ProbeKind::Lmtp => "lmtp",
            ProbeKind::Imap => "imap",
            ProbeKind::Pop3 => "pop3",
            ProbeKind::Http => "http",
            ProbeKind::Spamd => "spamd",
            ProbeKind::Milter => "milter",
            ProbeKind::Mysql => "mysql",
            ProbeKind::Dns => "dns",
            ProbeKind::Fail2ban => "fail2ban",
            ProbeKind::Syslog => "syslog",
            ProbeKind::Command => "command",
        }
    }

    /// Finds the kind a probe table entry names. `tls` names the TLS probe only with a string
    /// value; `tls = true` is the option that turns on implicit TLS.
    fn of(name: &str, value: Option<&Value>) -> Option<ProbeKind> {
        if name == "tls" && !value.is_some_and(Value::is_str) {
            return None;
        }
        ProbeKind::ALL.into_iter().find(|kind| kind.key() == name)
    }

    fn form(self) -> EndpointForm {
        match self {
            ProbeKind::Tcp | ProbeKind::Tls | ProbeKind::Dns => EndpointForm::Tcp,
            ProbeKind::Unix | ProbeKind::Fail2ban | ProbeKind::Syslog => EndpointForm::Unix,
            ProbeKind::Smtp
            | ProbeKind::Lmtp
            | ProbeKind::Imap
            | ProbeKind::Pop3
            | ProbeKind::Http
            | ProbeKind::Spamd
            | ProbeKind::Mysql => EndpointForm::Either,
            ProbeKind::Milter => EndpointForm::Milter,
            ProbeKind::Command => EndpointForm::Command,
        }
    }

    /// Option keys this kind takes.
    fn options(self) -> &'static [&'static str] {
        match self {
            ProbeKind::Tcp => &[
                "tls",
                "server_name",
                "verify_cert",
                "cert_warn_days",
                "send",
                "expect",
            ],
            ProbeKind::Unix => &["send", "expect"],
            ProbeKind::Tls => &["server_name", "verify_cert", "cert_warn_days"],
            ProbeKind::Smtp | ProbeKind::Lmtp => &[
                "tls",
                "starttls",
                "server_name",
                "verify_cert",
                "cert_warn_days",
                "helo_name",
            ],
            ProbeKind::Imap | ProbeKind::Pop3 => &[
                "tls",
                "starttls",
                "server_name",
                "verify_cert",
                "cert_warn_days",
            ],
            ProbeKind::Http => &[
                "tls",
                "server_name",
                "verify_cert",
                "cert_warn_days",
                "path",
                "host",
                "expect",
            ],
            ProbeKind::Mysql => &["credentials"],
            ProbeKind::Dns => &["name", "outside_name"],
            ProbeKind::Syslog => &["verify_file"],
            ProbeKind::Spamd | ProbeKind::Milter | ProbeKind::Fail2ban | ProbeKind::Command => &[],
        }
    }

    /// Checks whether the kind's protocol has a STARTTLS command.
    fn has_starttls(self) -> bool {
        self.options().contains(&"starttls")
    }
}

/// Endpoint of a probe, or the program of a command probe.
enum ProbeTarget {
    Endpoint(Endpoint),
    Command(Vec<String>),
}

/// Option keys read from one probe table, each already validated on its own.
#[derive(Default)]
struct ProbeOptions {
    tls: bool,
    /// Key line and path of `starttls = true`, for the conflict with `tls = true`.
    starttls: Option<(usize, String)>,
    /// TLS-only options present, with their key lines and paths, for the check that TLS is on.
    tls_only: Vec<(&'static str, usize, String)>,
    server_name: Option<String>,
    verify_cert: Option<bool>,
    cert_warn_days: Option<u32>,
    helo_name: Option<String>,
    path: Option<String>,
    host: Option<String>,
    /// `expect` of an http probe.
    status: Option<StatusClass>,
    send: Option<String>,
    /// Key line and path of `send`, for the check that `expect` comes with it.
    send_key: Option<(usize, String)>,
    /// `expect` of a tcp or unix probe.
    expect_text: Option<String>,
    name: Option<String>,
    outside_name: Option<String>,
    credentials: Option<PathBuf>,
    verify_file: Option<PathBuf>,
}

/// Unit types of systemd, which end a unit name as its suffix.
const UNIT_SUFFIXES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "path",
    "timer",
    "slice",
    "scope",
];

/// Unknown keys that are common names for a known key, with the key they mean.
const ALIASES: [(&str, &str); 7] = [
    ("user", "username"),
    ("password", "password_file"),
    ("server", "host"),
    ("hostname", "host"),
    ("recipients", "to"),
    ("sender", "from"),
    ("relays", "relay"),
];

/// Maximum length in bytes of a Unix socket path: `sun_path` is 108 bytes on Linux, including
/// the NUL.
const MAX_SOCKET_PATH: usize = 107;

/// Maximum length in bytes of a process name that can match, because Linux keeps only the
/// first 15 bytes in `/proc/PID/comm`.
const MAX_PROCESS_NAME: usize = 15;

/// Upper bound of `max_restarts` and `probe_retries`. Higher values only delay the alert about
/// a service that keeps failing.
const MAX_COUNT: i64 = 100;

/// Upper bound of `journal_lines`. At about 100 bytes per journal line, it keeps the journal
/// part of an alert mail to roughly 1 MB.
const MAX_JOURNAL_LINES: i64 = 10_000;

/// Parses and validates config text; see [`super::load`].
pub(super) fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let mut checker = Checker::new(file, text);
    let document = match ImDocument::parse(text) {
        Ok(document) => document,
        Err(err) => return Err(ConfigErrors(vec![checker.syntax_error(&err)])),
    };

    let mut config = checker.config(document.as_table());
    checker.errors.sort_by_key(|error| error.line);
    checker.warnings.sort_by_key(|warning| warning.line);
    if !checker.errors.is_empty() {
        return Err(ConfigErrors(checker.errors));
    }
    config.warnings = checker.warnings;
    Ok(config)
}

/// One key of the document with its location. Array elements are fields too, named by their
/// array's key and found at their own line.
struct Field<'a> {
    /// Key as written in its table.
    name: &'a str,
    /// Dotted path from the root, such as `services.dovecot.mode` or `alerts.relay[1].port`.
    path: String,
    /// 1-based line of the key.
    key_line: usize,
    /// 1-based line of the value; the key's line when the value has no span.
    line: usize,
    node: Node<'a>,
    /// Valid example for this key; empty when the key is unknown.
    example: &'static str,
}

/// A value in the document: `toml_edit` stores table entries, array elements and the tables of
/// an array of tables as three different types.
#[derive(Clone, Copy)]
enum Node<'a> {
    Item(&'a Item),
    Value(&'a Value),
    Table(&'a Table),
}

impl<'a> Node<'a> {
    fn value(self) -> Option<&'a Value> {
        match self {
            Node::Item(item) => item.as_value(),
            Node::Value(value) => Some(value),
            Node::Table(_) => None,
        }
    }

    fn table(self) -> Option<&'a dyn TableLike> {
        match self {
            Node::Item(item) => item.as_table_like(),
            Node::Value(value) => value.as_inline_table().map(|table| table as &dyn TableLike),
            Node::Table(table) => Some(table),
        }
    }

    fn type_name(self) -> &'static str {
        match self {
            Node::Item(item) => item.type_name(),
            Node::Value(value) => value.type_name(),
            Node::Table(_) => "table",
        }
    }

    fn span(self) -> Option<Range<usize>> {
        match self {
            Node::Item(item) => item.span(),
            Node::Value(value) => value.span(),
            Node::Table(table) => table.span(),
        }
    }
}

/// Keys read from one service table, each already validated on its own.
#[derive(Default)]
struct ServiceKeys {
    enabled: Option<bool>,
    /// Whether a `preset` key is present, even one naming no preset.
    preset_key: bool,
    preset: Option<&'static Preset>,
    mode: Option<Mode>,
    critical: Option<bool>,
    /// Lines of the `unit` and `units` keys when present.
    unit_line: Option<usize>,
    units_line: Option<usize>,
    units: Option<Vec<String>>,
    probe_line: Option<usize>,
    probes_line: Option<usize>,
    probes: Option<Vec<ProbeSpec>>,
    timing: Timing,
    /// Command keys present, in file order, with their lines.
    command_keys: Vec<(&'static str, usize)>,
    start: Option<Vec<String>>,
    stop: Option<Vec<String>>,
    restart: Option<Vec<String>>,
    pidfile: Option<PathBuf>,
    process: Option<String>,
}

impl ServiceKeys {
    fn has_command_key(&self, name: &str) -> bool {
        self.command_keys.iter().any(|(key, _)| *key == name)
    }
}

/// Collects errors and warnings while the document is walked.
struct Checker<'t> {
    file: PathBuf,
    text: &'t str,
    /// Byte offset where each line starts, for turning spans into line numbers.
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
}

impl<'t> Checker<'t> {
    fn new(file: &Path, text: &'t str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(offset, _)| offset + 1))
            .collect();
        Checker {
            file: file.to_path_buf(),
            text,
            line_starts,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// 1-based line of a byte offset.
    fn line(&self, offset: usize) -> usize {
        self.line_starts.partition_point(|&start| start <= offset)
    }

    fn problem(&self, line: usize, key: &str, message: String, example: &str) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            line,
            key: key.to_string(),
            message,
            example: (!example.is_empty()).then(|| example.to_string()),
        }
    }

    fn error(&mut self, line: usize, key: &str, message: String, example: &str) {
        let problem = self.problem(line, key, message, example);
        self.errors.push(problem);
    }

    fn warn(&mut self, line: usize, key: &str, message: String, example: &str) {
        let problem = self.problem(line, key, message, example);
        self.warnings.push(problem);
    }

    fn syntax_error(&self, err: &TomlError) -> ConfigError {
        let offset = err.span().map_or(0, |span| span.start);
        let line = self.line(offset);
        let line_start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let column = self
            .text
            .get(line_start..offset)
            .map_or(1, |before| before.chars().count() + 1);
        let detail = err
            .message()
            .lines()
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        self.problem(
            line,
            "",
            format!("invalid TOML at column {column}: {detail}"),
            "",
        )
    }

    /// Lists the entries of a table as fields under `prefix`, with each known key's example.
    fn fields<'a>(
        &self,
        table: &'a dyn TableLike,
        prefix: &str,
        table_line: usize,
        known: &[Keys],
    ) -> Vec<Field<'a>> {
        table
            .iter()
            .map(|(name, item)| {
                let key_line = table
                    .key(name)
                    .and_then(|key| key.span())
                    .map_or(table_line, |span| self.line(span.start));
                let line = item.span().map_or(key_line, |span| self.line(span.start));
                let example = known_example(known, name);
                Field {
                    name,
                    path: join_key(prefix, name),
                    key_line,
                    line,
                    node: Node::Item(item),
                    example,
                }
            })
            .collect()
    }

    /// Lists the elements of an array or array of tables as fields, or `None` for any other
    /// value.
    fn elements<'a>(&self, field: &Field<'a>) -> Option<Vec<Field<'a>>> {
        let element = |index: usize, node: Node<'a>| {
            let line = node.span().map_or(field.line, |span| self.line(span.start));
            Field {
                name: field.name,
                path: format!("{}[{index}]", field.path),
                key_line: line,
                line,
                node,
                example: field.example,
            }
        };
        if let Node::Item(Item::ArrayOfTables(array)) = field.node {
            return Some(
                array
                    .iter()
                    .enumerate()
                    .map(|(index, table)| element(index, Node::Table(table)))
                    .collect(),
            );
        }
        let array = field.node.value()?.as_array()?;
        Some(
            array
                .iter()
                .enumerate()
                .map(|(index, value)| element(index, Node::Value(value)))
                .collect(),
        )
    }

    /// Describes a value for "found ..." in a message: its type, and its text when short.
    fn describe(&self, node: Node<'_>) -> String {
        let kind = node.type_name();
        let scalar = node
            .value()
            .is_some_and(|value| !value.is_array() && !value.is_inline_table());
        let text = node
            .span()
            .and_then(|span| self.text.get(span))
            .filter(|text| scalar && text.len() <= 40 && !text.contains('\n'));
        match text {
            Some(text) => format!("{kind} {text}"),
            None => kind.to_string(),
        }
    }

    fn wrong_type(&mut self, field: &Field<'_>, expected: &str) {
        let found = self.describe(field.node);
        self.error(
            field.line,
            &field.path,
            format!("expected {expected}, found {found}"),
            field.example,
        );
    }

    fn invalid(&mut self, field: &Field<'_>, message: String) {
        self.error(field.line, &field.path, message, field.example);
    }

    fn unknown_key(&mut self, field: &Field<'_>, known: &[Keys]) {
        let names: Vec<&str> = known
            .iter()
            .flat_map(|keys| keys.iter())
            .map(|(key, _)| *key)
            .collect();
        match closest_key(field.name, &names) {
            Some(suggestion) => {
                let example = known_example(known, suggestion);
                self.error(
                    field.key_line,
                    &field.path,
                    format!("unknown key `{}`; did you mean `{suggestion}`?", field.name),
                    example,
                );
            }
            None => self.error(
                field.key_line,
                &field.path,
                format!(
                    "unknown key `{}`; the keys allowed here are: {}",
                    field.name,
                    names.join(", ")
                ),
                "",
            ),
        }
    }

    fn table<'a>(&mut self, field: &Field<'a>, expected: &str) -> Option<&'a dyn TableLike> {
        let table = field.node.table();
        if table.is_none() {
            self.wrong_type(field, expected);
        }
        table
    }

    fn string<'a>(&mut self, field: &Field<'a>) -> Option<&'a str> {
        let string = field.node.value().and_then(Value::as_str);
        if string.is_none() {
            self.wrong_type(field, "a string");
        }
        string
    }

    /// Reads a string that is not empty and has no whitespace or control characters.
    fn word<'a>(&mut self, field: &Field<'a>) -> Option<&'a str> {
        let word = self.string(field)?;
        if word.is_empty() {
            self.invalid(field, "must not be empty".to_string());
            return None;
        }
        if word.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.invalid(
                field,
                format!("{word:?} must not contain spaces or control characters"),
            );
            return None;
        }
        Some(word)
    }

    fn boolean(&mut self, field: &Field<'_>) -> Option<bool> {
        let boolean = field.node.value().and_then(Value::as_bool);
        if boolean.is_none() {
            self.wrong_type(field, "true or false");
        }
        boolean
    }

    fn integer(&mut self, field: &Field<'_>, range: RangeInclusive<i64>) -> Option<i64> {
        let Some(number) = field.node.value().and_then(Value::as_integer) else {
            self.wrong_type(field, "an integer");
            return None;
        };
        if !range.contains(&number) {
            let mut message = format!(
                "must be from {} to {}, found {number}",
                range.start(),
                range.end()
            );
            if field.name == "max_restarts" && number == 0 {
                message.push_str(r#"; to never restart a service, set mode = "watch""#);
            }
            self.invalid(field, message);
            return None;
        }
        Some(number)
    }

    /// Reads a count such as `max_restarts`, within `range`.
    fn count(&mut self, field: &Field<'_>, range: RangeInclusive<i64>) -> Option<u32> {
        self.integer(field, range)
            .and_then(|number| u32::try_from(number).ok())
    }

    /// Reads a duration written as a string with units ("30s", "5min", "500ms").
    fn duration(&mut self, field: &Field<'_>, allow_zero: bool) -> Option<Duration> {
        let text = match field.node.value() {
            Some(Value::String(text)) => text.value(),
            Some(Value::Integer(number)) => {
                let number = number.value();
                self.invalid(
                    field,
                    format!(
                        "a duration needs a unit, found the bare number {number}; \
                         write it as a string such as \"{number}s\""
                    ),
                );
                return None;
            }
            _ => {
                self.wrong_type(field, "a duration string such as \"30s\"");
                return None;
            }
        };
        match humantime::parse_duration(text) {
            Ok(duration) if duration.is_zero() && !allow_zero => {
                self.invalid(
                    field,
                    format!("must be greater than zero, found \"{text}\""),
                );
                None
            }
            Ok(duration) => Some(duration),
            Err(err) => {
                self.invalid(
                    field,
                    format!(
                        "invalid duration \"{text}\": {err}; write a number with a unit \
                         such as ms, s, min or h"
                    ),
                );
                None
            }
        }
    }

    fn mode(&mut self, field: &Field<'_>) -> Option<Mode> {
        match self.string(field)? {
            "heal" => Some(Mode::Heal),
            "watch" => Some(Mode::Watch),
            other => {
                self.invalid(
                    field,
                    format!("invalid mode \"{other}\"; expected \"heal\" or \"watch\""),
                );
                None
            }
        }
    }

    fn tls(&mut self, field: &Field<'_>) -> Option<TlsMode> {
        match self.string(field)? {
            "tls" => Some(TlsMode::Tls),
            "starttls" => Some(TlsMode::Starttls),
            "none" => Some(TlsMode::None),
            other => {
                self.invalid(
                    field,
                    format!(
                        "invalid tls mode \"{other}\"; expected \"tls\" (port 465), \
                         \"starttls\" (port 587) or \"none\""
                    ),
                );
                None
            }
        }
    }

    /// Reads an absolute path. The daemon runs from `/`, so a relative path would not mean what
    /// it means in the admin's shell.
    fn absolute_path(&mut self, field: &Field<'_>) -> Option<PathBuf> {
        let text = self.string(field)?;
        if !text.starts_with('/') {
            self.invalid(
                field,
                format!("must be an absolute path starting with /, found \"{text}\""),
            );
            return None;
        }
        Some(PathBuf::from(text))
    }

    fn socket_path(&mut self, field: &Field<'_>) -> Option<PathBuf> {
        let path = self.absolute_path(field)?;
        let length = path.as_os_str().len();
        if length > MAX_SOCKET_PATH {
            self.invalid(
                field,
                format!(
                    "is {length} bytes long, but a Unix socket path holds at most \
                     {MAX_SOCKET_PATH} bytes"
                ),
            );
            return None;
        }
        Some(path)
    }

    /// Reads one string or an array of strings.
    fn string_list(&mut self, field: &Field<'_>) -> Option<Vec<String>> {
        if let Some(text) = field.node.value().and_then(Value::as_str) {
            return Some(vec![text.to_string()]);
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "a string or an array of strings");
            return None;
        };
        let mut list = Vec::new();
        for element in &elements {
            if let Some(text) = self.string(element) {
                list.push(text.to_string());
            }
        }
        (list.len() == elements.len()).then_some(list)
    }

    /// Reads a command: a string split on whitespace, or an array of arguments. No shell runs
    /// it.
    fn command(&mut self, field: &Field<'_>) -> Option<Vec<String>> {
        if let Some(text) = field.node.value().and_then(Value::as_str) {
            if text.contains(['"', '\'', '\\', '|', ';', '&', '$', '>', '<']) {
                self.invalid(
                    field,
                    format!(
                        "command \"{text}\" contains quotes or shell syntax, but a command \
                         string is only split on whitespace and never run by a shell; \
                         write it as an array of arguments"
                    ),
                );
                return None;
            }
            let command: Vec<String> = text.split_whitespace().map(str::to_string).collect();
            if command.is_empty() {
                self.invalid(field, "command must not be empty".to_string());
                return None;
            }
            return Some(command);
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "a command string or an array of arguments");
            return None;
        };
        if elements.is_empty() {
            self.invalid(field, "command must not be empty".to_string());
            return None;
        }
        let mut command = Vec::new();
        for element in &elements {
            if let Some(argument) = self.string(element) {
                command.push(argument.to_string());
            }
        }
        if command.first().is_some_and(|program| program.is_empty()) {
            self.invalid(field, "the program name must not be empty".to_string());
            return None;
        }
        (command.len() == elements.len()).then_some(command)
    }

    /// Reads a mail address: one `@` with text on both sides, and no spaces or angle brackets.
    fn address(&mut self, field: &Field<'_>) -> Option<String> {
        let text = self.string(field)?;
        match check_address(text) {
            Ok(()) => Some(text.to_string()),
            Err(reason) => {
                self.invalid(field, format!("invalid address \"{text}\": {reason}"));
                None
            }
        }
    }

    fn config(&mut self, root: &Table) -> Config {
        let mut interval = None;
        let mut mode = None;
        let mut state_dir = None;
        let mut control_socket = None;
        let mut timing = Timing::NONE;
        let mut alerts_field = None;
        let mut services_field = None;

        for field in self.fields(root, "", 1, &[TOP_KEYS, TIMING_KEYS]) {
            match field.name {
                "interval" => interval = self.duration(&field, false),
                "mode" => mode = self.mode(&field),
                "state_dir" => state_dir = self.absolute_path(&field),
                "control_socket" => control_socket = self.socket_path(&field),
                "alerts" => alerts_field = Some(field),
                "services" => services_field = Some(field),
                name if presets::preset(name).is_some() => self.error(
                    field.key_line,
                    &field.path,
                    format!("unknown key `{name}`; a service goes under [services.{name}]"),
                    &format!("[services.{name}]"),
                ),
                _ => {
                    if !self.timing_key(&field, &mut timing) {
                        self.unknown_key(&field, &[TOP_KEYS, TIMING_KEYS]);
                    }
                }
            }
        }

        let mode = mode.unwrap_or(Mode::Heal);
        let alerts = match &alerts_field {
            Some(field) => self.alerts(field),
            None => AlertConfig {
                sendmail: default_sendmail(),
                journal_lines: DEFAULT_JOURNAL_LINES,
                ..AlertConfig::default()
            },
        };
        let services = match &services_field {
            Some(field) => self.services(field, mode, timing),
            None => Vec::new(),
        };
        if services.is_empty() {
            self.warn(
                0,
                "services",
                "no service is configured, so selfheal has nothing to watch".to_string(),
                "[services.postfix]",
            );
        }

        Config {
            path: Some(self.file.clone()),
            interval: interval.unwrap_or(DEFAULT_INTERVAL),
            mode,
            state_dir: state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            control_socket: control_socket.unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
            alerts,
            services,
            warnings: Vec::new(),
        }
    }

    /// Reads `field` into `timing` when it is a timing key; returns false for any other key.
    fn timing_key(&mut self, field: &Field<'_>, timing: &mut Timing) -> bool {
        match field.name {
            "probe_timeout" => timing.probe_timeout = self.duration(field, false),
            "probe_retries" => timing.probe_retries = self.count(field, 0..=MAX_COUNT),
            "retry_interval" => timing.retry_interval = self.duration(field, true),
            "verify_after" => timing.verify_after = self.duration(field, true),
            "verify_timeout" => timing.verify_timeout = self.duration(field, false),
            "max_restarts" => timing.max_restarts = self.count(field, 1..=MAX_COUNT),
            "restart_window" => timing.restart_window = self.duration(field, false),
            "restart_timeout" => timing.restart_timeout = self.duration(field, false),
            _ => return false,
        }
        true
    }

    fn alerts(&mut self, field: &Field<'_>) -> AlertConfig {
        let mut alerts = AlertConfig {
            journal_lines: DEFAULT_JOURNAL_LINES,
            ..AlertConfig::default()
        };
        let Some(table) = self.table(field, "a table such as [alerts]") else {
            alerts.sendmail = default_sendmail();
            return alerts;
        };

        let mut from_present = false;
        let mut to_line = None;
        let mut sendmail_present = false;
        let mut relay_count = 0;
        for entry in self.fields(table, &field.path, field.line, &[ALERT_KEYS]) {
            match entry.name {
                "from" => {
                    from_present = true;
                    alerts.from = self.address(&entry);
                }
                "to" => {
                    to_line = Some(entry.line);
                    alerts.to = self.recipients(&entry);
                }
                "journal_lines" => {
                    if let Some(lines) = self.integer(&entry, 0..=MAX_JOURNAL_LINES) {
                        alerts.journal_lines = usize::try_from(lines).unwrap_or_default();
                    }
                }
                "sendmail" => {
                    sendmail_present = true;
                    alerts.sendmail = self.sendmail(&entry);
                }
                "relay" => {
                    let (relays, count) = self.relays(&entry);
                    alerts.relays = relays;
                    relay_count = count;
                }
                _ => self.unknown_key(&entry, &[ALERT_KEYS]),
            }
        }
        if !sendmail_present {
            alerts.sendmail = default_sendmail();
        }

        let from_key = join_key(&field.path, "from");
        if !alerts.to.is_empty() && !from_present {
            self.error(
                field.line,
                &from_key,
                "missing sender address; `from` is required when `to` names recipients".to_string(),
                example_of(ALERT_KEYS, "from"),
            );
        }
        if let Some(line) = to_line {
            if !alerts.to.is_empty() && relay_count == 0 && alerts.sendmail.is_none() {
                self.warn(
                    line,
                    &join_key(&field.path, "to"),
                    format!(
                        "no alert can be delivered: there is no [[alerts.relay]] and no \
                         sendmail ({DEFAULT_SENDMAIL} is not installed or sendmail = false)"
                    ),
                    example_of(ALERT_KEYS, "relay"),
                );
            }
        }
        if alerts.to.is_empty() && relay_count > 0 {
            self.warn(
                field.line,
                &join_key(&field.path, "to"),
                "relays are configured but no recipient, so no alert is sent".to_string(),
                example_of(ALERT_KEYS, "to"),
            );
        }
        alerts
    }

    fn recipients(&mut self, field: &Field<'_>) -> Vec<String> {
        if field.node.value().is_some_and(Value::is_str) {
            return self.address(field).into_iter().collect();
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "an array of addresses");
            return Vec::new();
        };
        elements
            .iter()
            .filter_map(|element| self.address(element))
            .collect()
    }

    fn sendmail(&mut self, field: &Field<'_>) -> Option<PathBuf> {
        match field.node.value().and_then(Value::as_bool) {
            Some(false) => return None,
            Some(true) => {
                self.invalid(
                    field,
                    "expected the path of the sendmail binary, or false to disable it, \
                     found true"
                        .to_string(),
                );
                return None;
            }
            None => {}
        }
        if !field.node.value().is_some_and(Value::is_str) {
            self.wrong_type(field, "a path or false");
            return None;
        }
        let path = self.absolute_path(field)?;
        match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 => {
                Some(path)
            }
            Ok(_) => {
                self.invalid(
                    field,
                    format!(
                        "{} is not an executable file; point sendmail at the binary or set \
                         sendmail = false",
                        path.display()
                    ),
                );
                None
            }
            Err(err) => {
                self.invalid(
                    field,
                    format!(
                        "sendmail binary {} not found: {err}; install it or set \
                         sendmail = false",
                        path.display()
                    ),
                );
                None
            }
        }
    }

    /// Reads `[[alerts.relay]]`; returns the valid relays and the number of relay tables.
    fn relays(&mut self, field: &Field<'_>) -> (Vec<RelayConfig>, usize) {
        if field.node.table().is_some() {
            self.invalid(
                field,
                "a relay is an entry of an array of tables; write the header with double \
                 brackets, [[alerts.relay]]"
                    .to_string(),
            );
            return (Vec::new(), 0);
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "an array of tables such as [[alerts.relay]]");
            return (Vec::new(), 0);
        };
        let relays = elements
            .iter()
            .filter_map(|element| self.relay(element))
            .collect();
        (relays, elements.len())
    }

    fn relay(&mut self, field: &Field<'_>) -> Option<RelayConfig> {
        let table = self.table(field, "a table such as [[alerts.relay]]")?;
        let mut host_present = false;
        let mut host = None;
        let mut port = None;
        let mut tls = None;
        let mut username_line = None;
        let mut username = None;
        let mut password_line = None;
        let mut password_file = None;
        let mut timeout = None;
        for entry in self.fields(table, &field.path, field.line, &[RELAY_KEYS]) {
            match entry.name {
                "host" => {
                    host_present = true;
                    host = self.relay_host(&entry);
                }
                "port" => {
                    port = self
                        .integer(&entry, 1..=65535)
                        .and_then(|port| u16::try_from(port).ok());
                }
                "tls" => tls = self.tls(&entry),
                "username" => {
                    username_line = Some(entry.line);
                    username = self.word(&entry).map(str::to_string);
                }
                "password_file" => {
                    password_line = Some(entry.line);
                    password_file = self.absolute_path(&entry);
                    if let Some(path) = &password_file {
                        self.check_secret_file(&entry, path, "password file");
                    }
                }
                "timeout" => timeout = self.duration(&entry, false),
                _ => self.unknown_key(&entry, &[RELAY_KEYS]),
            }
        }

        if !host_present {
            self.error(
                field.line,
                &join_key(&field.path, "host"),
                "missing relay host; every [[alerts.relay]] needs one".to_string(),
                example_of(RELAY_KEYS, "host"),
            );
        }
        match (username_line, password_line) {
            (Some(line), None) => self.error(
                line,
                &join_key(&field.path, "username"),
                "`username` needs `password_file`, the file with the relay password".to_string(),
                example_of(RELAY_KEYS, "password_file"),
            ),
            (None, Some(line)) => self.error(
                line,
                &join_key(&field.path, "password_file"),
                "`password_file` needs `username`, the user to log in to the relay as".to_string(),
                example_of(RELAY_KEYS, "username"),
            ),
            _ => {}
        }
        let tls = tls.unwrap_or(TlsMode::Starttls);
        if let (TlsMode::None, Some(line)) = (tls, username_line) {
            self.warn(
                line,
                &join_key(&field.path, "tls"),
                "tls = \"none\" sends the relay password unencrypted".to_string(),
                example_of(RELAY_KEYS, "tls"),
            );
        }

        let default_port = match tls {
            TlsMode::Tls => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        };
        Some(RelayConfig {
            host: host?,
            port: port.unwrap_or(default_port),
            tls,
            username,
            password_file,
            timeout: timeout.unwrap_or(DEFAULT_RELAY_TIMEOUT),
        })
    }

    fn relay_host(&mut self, field: &Field<'_>) -> Option<String> {
        let host = self.word(field)?;
        if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
            self.invalid(
                field,
                format!("host \"{host}\" contains a port or brackets; set the port with `port`"),
            );
            return None;
        }
        Some(host.to_string())
    }

    /// Checks that a file with a secret can be read now, and warns when other users can read
    /// it. `noun` names the file in messages, such as "password file". Returns whether the file
    /// is readable.
    fn check_secret_file(&mut self, field: &Field<'_>, path: &Path, noun: &str) -> bool {
        let display = path.display();
        let metadata = match fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(err) => {
                self.invalid(field, format!("cannot read {noun} {display}: {err}"));
                return false;
            }
        };
        if !metadata.is_file() {
            self.invalid(field, format!("{noun} {display} is not a regular file"));
            return false;
        }
        if let Err(err) = File::open(path) {
            self.invalid(
                field,
                format!(
                    "cannot read {noun} {display}: {err}; make it readable by the user \
                     selfheal runs as"
                ),
            );
            return false;
        }
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            self.warn(
                field.line,
                &field.path,
                format!(
                    "{noun} {display} has mode {mode:04o}, so other users may read it; \
                     run `chmod 600 {display}`"
                ),
                "",
            );
        }
        true
    }

    fn services(&mut self, field: &Field<'_>, mode: Mode, defaults: Timing) -> Vec<ServiceConfig> {
        let Some(table) = self.table(field, "a table of services such as [services.postfix]")
        else {
            return Vec::new();
        };

        let mut enabled: Vec<(ServiceConfig, usize)> = Vec::new();
        for entry in self.fields(table, &field.path, field.line, &[]) {
            let Some((service, is_enabled)) = self.service(&entry, mode, defaults) else {
                continue;
            };
            if !is_enabled {
                continue;
            }
            if let Some((other, _)) = enabled
                .iter()
                .find(|(other, _)| !other.units.is_empty() && other.units == service.units)
            {
                let message = format!(
                    "service `{}` has the same units as `{}`, so both would restart the same \
                     unit; set `unit` to the one this service watches",
                    service.name, other.name
                );
                self.warn(
                    entry.key_line,
                    &entry.path,
                    message,
                    example_of(SERVICE_KEYS, "unit"),
                );
            }
            enabled.push((service, entry.key_line));
        }
        enabled.into_iter().map(|(service, _)| service).collect()
    }

    /// Reads one `[services.NAME]` table; returns the service and whether it is enabled.
    fn service(
        &mut self,
        field: &Field<'_>,
        mode: Mode,
        defaults: Timing,
    ) -> Option<(ServiceConfig, bool)> {
        let name = field.name;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.error(
                field.key_line,
                &field.path,
                format!("invalid service name {name:?}; use letters, digits, - and _ only"),
                "[services.postfix-out]",
            );
        }
        let Some(table) = field.node.table() else {
            self.error(
                field.line,
                &field.path,
                format!(
                    "expected a table, found {}; a service is a table such as \
                     [services.{name}]",
                    self.describe(field.node)
                ),
                &format!("[services.{name}]"),
            );
            return None;
        };

        let keys = self.service_keys(table, field);
        let preset = if keys.preset_key {
            keys.preset
        } else {
            presets::preset(name)
        };
        self.check_service_kind(field, &keys, preset);

        let has_commands = !keys.command_keys.is_empty();
        let commands = has_commands.then(|| CommandSpec {
            start: keys.start.clone(),
            stop: keys.stop.clone(),
            restart: keys.restart.clone(),
            pidfile: keys.pidfile.clone(),
            process: keys.process.clone(),
        });
        let units = if has_commands {
            Vec::new()
        } else {
            keys.units.clone().unwrap_or_else(|| {
                preset.map_or_else(Vec::new, |preset| {
                    preset.units.iter().map(|unit| unit.to_string()).collect()
                })
            })
        };
        let probes = keys
            .probes
            .clone()
            .unwrap_or_else(|| preset.map_or_else(Vec::new, Preset::probe_specs));
        let timing = keys
            .timing
            .or(preset.map_or(Timing::NONE, |preset| preset.timing))
            .or(defaults);

        let service = ServiceConfig {
            name: name.to_string(),
            preset: preset.map(|preset| preset.name.to_string()),
            mode: keys.mode.unwrap_or(mode),
            critical: keys
                .critical
                .unwrap_or(preset.is_some_and(|preset| preset.critical)),
            units,
            commands,
            probes,
            probe_timeout: timing.probe_timeout.unwrap_or(DEFAULT_PROBE_TIMEOUT),
            restart_timeout: timing.restart_timeout.unwrap_or(DEFAULT_RESTART_TIMEOUT),
            recovery: timing.recovery(),
        };
        Some((service, keys.enabled.unwrap_or(true)))
    }

    fn service_keys(&mut self, table: &dyn TableLike, field: &Field<'_>) -> ServiceKeys {
        let mut keys = ServiceKeys::default();
        for entry in self.fields(table, &field.path, field.line, &[SERVICE_KEYS, TIMING_KEYS]) {
            if let Some(command_key) = COMMAND_KEYS.iter().find(|key| **key == entry.name) {
                keys.command_keys.push((command_key, entry.key_line));
            }
            match entry.name {
                "enabled" => keys.enabled = self.boolean(&entry),
                "preset" => {
                    keys.preset_key = true;
                    keys.preset = self.preset_key(&entry);
                }
                "mode" => keys.mode = self.mode(&entry),
                "critical" => keys.critical = self.boolean(&entry),
                "unit" => {
                    keys.unit_line = Some(entry.key_line);
                    keys.units = self.unit_names(&entry);
                }
                "units" => {
                    keys.units_line = Some(entry.key_line);
                    if keys.unit_line.is_none() {
                        keys.units = self.unit_names(&entry);
                    } else {
                        self.unit_names(&entry);
                    }
                }
                "probe" => {
                    keys.probe_line = Some(entry.key_line);
                    keys.probes = self.probe_key(&entry);
                }
                "probes" => {
                    keys.probes_line = Some(entry.key_line);
                    keys.probes = self.probes_key(&entry);
                }
                "start" => keys.start = self.command(&entry),
                "stop" => keys.stop = self.command(&entry),
                "restart" => keys.restart = self.command(&entry),
                "pidfile" => keys.pidfile = self.absolute_path(&entry),
                "process" => keys.process = self.process_name(&entry),
                _ => {
                    if !self.timing_key(&entry, &mut keys.timing) {
                        self.unknown_key(&entry, &[SERVICE_KEYS, TIMING_KEYS]);
                    }
                }
            }
        }
        keys
    }

    /// Reports keys that do not fit together: unit and commands, unit and units, probe and
    /// probes, commands without a way to start or to find the process, and a table that is
    /// neither a preset nor a custom service.
    fn check_service_kind(
        &mut self,
        field: &Field<'_>,
        keys: &ServiceKeys,
        preset: Option<&'static Preset>,
    ) {
        let path = &field.path;
        if let (Some(_), Some(line)) = (keys.unit_line, keys.units_line) {
            self.error(
                line,
                &join_key(path, "units"),
                "`unit` and `units` are both set; keep `units` to list several candidates"
                    .to_string(),
                example_of(SERVICE_KEYS, "units"),
            );
        }
        if let (Some(_), Some(line)) = (keys.probe_line, keys.probes_line) {
            self.error(
                line,
                &join_key(path, "probes"),
                "`probe` and `probes` are both set; keep `probes` to list several endpoints"
                    .to_string(),
                example_of(SERVICE_KEYS, "probes"),
            );
        }

        let unit_key = match (keys.unit_line, keys.units_line) {
            (Some(_), _) => Some("unit"),
            (None, Some(_)) => Some("units"),
            (None, None) => None,
        };
        if let (Some(unit_key), Some((command_key, line))) = (unit_key, keys.command_keys.first()) {
            self.error(
                *line,
                &join_key(path, command_key),
                format!(
                    "`{command_key}` belongs to a service managed by commands, but `{unit_key}` \
                     makes it a systemd service; keep one of them"
                ),
                &format!(r#"unit = "{}.service""#, field.name),
            );
        }

        // With a unit key as well, the conflict above is the one problem to fix.
        if !keys.command_keys.is_empty() && unit_key.is_none() {
            if !keys.has_command_key("start") && !keys.has_command_key("restart") {
                self.error(
                    field.line,
                    path,
                    "a service managed by commands needs a `start` or `restart` command"
                        .to_string(),
                    &format!(r#"restart = "/etc/init.d/{} restart""#, field.name),
                );
            }
            if !keys.has_command_key("pidfile") && !keys.has_command_key("process") {
                self.error(
                    field.line,
                    path,
                    "a service managed by commands needs `pidfile` or `process`, so selfheal \
                     can tell whether it runs"
                        .to_string(),
                    &format!(r#"pidfile = "/run/{}.pid""#, field.name),
                );
            }
        }

        let custom = unit_key.is_some() || !keys.command_keys.is_empty();
        if !custom && preset.is_none() && !keys.preset_key {
            self.error(
                field.line,
                path,
                format!(
                    "unknown preset \"{}\"; the presets are: {}; a custom service needs \
                     `unit` or `start`/`restart` commands",
                    field.name,
                    presets::preset_names()
                ),
                &format!(r#"unit = "{}.service""#, field.name),
            );
        }
    }

    fn preset_key(&mut self, field: &Field<'_>) -> Option<&'static Preset> {
        let name = self.string(field)?;
        let preset = presets::preset(name);
        if preset.is_none() {
            self.invalid(
                field,
                format!(
                    "unknown preset \"{name}\"; the presets are: {}",
                    presets::preset_names()
                ),
            );
        }
        preset
    }

    fn unit_names(&mut self, field: &Field<'_>) -> Option<Vec<String>> {
        let units = self.string_list(field)?;
        if units.is_empty() {
            self.invalid(field, "must name at least one unit".to_string());
            return None;
        }
        let mut valid = true;
        for unit in &units {
            if let Err(reason) = check_unit_name(unit) {
                self.invalid(field, format!("invalid unit name \"{unit}\": {reason}"));
                valid = false;
            }
        }
        valid.then_some(units)
    }

    fn process_name(&mut self, field: &Field<'_>) -> Option<String> {
        let name = self.word(field)?;
        if name.contains('/') {
            self.invalid(
                field,
                format!("process name \"{name}\" contains /; give the name, not the path"),
            );
            return None;
        }
        if name.len() > MAX_PROCESS_NAME {
            self.invalid(
                field,
                format!(
                    "process name \"{name}\" is longer than {MAX_PROCESS_NAME} bytes, and Linux \
                     keeps only that much in /proc/PID/comm, so it never matches; give the \
                     first {MAX_PROCESS_NAME} bytes"
                ),
            );
            return None;
        }
        Some(name.to_string())
    }

    /// Reads the `probe` key: one probe table, or `false` for none.
    fn probe_key(&mut self, field: &Field<'_>) -> Option<Vec<ProbeSpec>> {
        match field.node.value().and_then(Value::as_bool) {
            Some(false) => return Some(Vec::new()),
            Some(true) => {
                self.invalid(
                    field,
                    "`probe = true` names no endpoint; give a probe table such as \
                     { smtp = \"127.0.0.1:25\" }, or false for none"
                        .to_string(),
                );
                return None;
            }
            None => {}
        }
        if field.node.table().is_none() {
            self.wrong_type(
                field,
                "a probe table such as { smtp = \"127.0.0.1:25\" }, or false",
            );
            return None;
        }
        self.probe(field).map(|probe| vec![probe])
    }

    /// Reads the `probes` key: an array of probe tables, empty for none.
    fn probes_key(&mut self, field: &Field<'_>) -> Option<Vec<ProbeSpec>> {
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "an array of probe tables");
            return None;
        };
        let probes: Vec<ProbeSpec> = elements
            .iter()
            .filter_map(|element| self.probe(element))
            .collect();
        (probes.len() == elements.len()).then_some(probes)
    }
}

/// Probe tables: `probe = { smtp = "127.0.0.1:25", starttls = true }` and the elements of
/// `probes`.
impl Checker<'_> {
    /// Reads one probe table: exactly one kind key with its endpoint, and the options that kind
    /// takes. Returns `None` after reporting any problem.
    fn probe(&mut self, field: &Field<'_>) -> Option<ProbeSpec> {
        let table = self.table(field, "a probe table such as { smtp = \"127.0.0.1:25\" }")?;
        let known = [PROBE_KIND_KEYS, PROBE_OPTION_KEYS];
        let mut kinds = Vec::new();
        let mut option_fields = Vec::new();
        let mut valid = true;
        for entry in self.fields(table, &field.path, field.line, &known) {
            match ProbeKind::of(entry.name, entry.node.value()) {
                Some(kind) => kinds.push((kind, entry)),
                None if known_example(&[PROBE_OPTION_KEYS], entry.name).is_empty() => {
                    valid = false;
                    self.unknown_key(&entry, &known);
                }
                None => option_fields.push(entry),
            }
        }

        let (kind, kind_field) = match kinds.len() {
            // A misspelt kind key is already reported as unknown.
            0 if !valid => return None,
            0 => {
                self.error(
                    field.line,
                    &field.path,
                    "a probe needs an endpoint: one protocol key such as `smtp`, `tcp` or \
                     `unix`"
                        .to_string(),
                    example_of(SERVICE_KEYS, "probe"),
                );
                return None;
            }
            1 => kinds.remove(0),
            _ => {
                let (first, _) = &kinds[0];
                let (second, second_field) = &kinds[1];
                self.error(
                    second_field.key_line,
                    &second_field.path,
                    format!(
                        "a probe has one endpoint, but `{}` and `{}` both name one; list \
                         several probes with `probes`",
                        first.key(),
                        second.key()
                    ),
                    example_of(SERVICE_KEYS, "probes"),
                );
                return None;
            }
        };

        let target = self.probe_target(kind, &kind_field);
        let options = self.probe_options(kind, &option_fields);
        let (target, options) = (target?, options?);
        valid.then(|| build_probe(kind, target, options))
    }

    /// Reads the value of the kind key: the endpoint, or the command of a command probe.
    fn probe_target(&mut self, kind: ProbeKind, field: &Field<'_>) -> Option<ProbeTarget> {
        let form = kind.form();
        if form == EndpointForm::Command {
            return self.probe_command(field).map(ProbeTarget::Command);
        }
        let text = self.string(field)?;
        let takes_path = matches!(
            form,
            EndpointForm::Unix | EndpointForm::Either | EndpointForm::Milter
        );
        if form == EndpointForm::Unix || (takes_path && text.starts_with('/')) {
            let path = self.socket_path(field)?;
            return Some(ProbeTarget::Endpoint(Endpoint::Unix { path }));
        }

        let parsed = if form == EndpointForm::Milter && is_milter_notation(text) {
            parse_milter_address(text)
        } else if text.starts_with('/') {
            Err(format!(
                "a {} probe needs host:port, not a socket path",
                kind.key()
            ))
        } else if takes_path && !text.contains(':') {
            let milter = if form == EndpointForm::Milter {
                ", or milter notation such as inet:8891@localhost or unix:/path"
            } else {
                ""
            };
            Err(format!(
                "expected host:port such as 127.0.0.1:25, or an absolute socket path{milter}"
            ))
        } else {
            check_tcp_address(text)
                .map_err(str::to_string)
                .and_then(|()| Endpoint::parse(text))
        };
        match parsed {
            Ok(Endpoint::Unix { path }) if path.as_os_str().len() > MAX_SOCKET_PATH => {
                self.invalid(
                    field,
                    format!(
                        "socket path {} is {} bytes long, but a Unix socket path holds at \
                         most {MAX_SOCKET_PATH} bytes",
                        path.display(),
                        path.as_os_str().len()
                    ),
                );
                None
            }
            Ok(endpoint) => Some(ProbeTarget::Endpoint(endpoint)),
            Err(reason) => {
                self.invalid(
                    field,
                    format!("invalid {} probe address \"{text}\": {reason}", kind.key()),
                );
                None
            }
        }
    }

    /// Reads the program and arguments of a command probe. The program is an absolute path to
    /// an executable file, because no shell or PATH lookup runs it.
    fn probe_command(&mut self, field: &Field<'_>) -> Option<Vec<String>> {
        let argv = self.command(field)?;
        let program = argv.first()?;
        if !program.starts_with('/') {
            self.invalid(
                field,
                format!(
                    "the program must be an absolute path such as \
                     /usr/local/bin/filter-check, found \"{program}\""
                ),
            );
            return None;
        }
        match fs::metadata(program) {
            Ok(metadata) if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 => {
                Some(argv)
            }
            Ok(_) => {
                self.invalid(
                    field,
                    format!("{program} is not an executable file; check the path and its mode"),
                );
                None
            }
            Err(err) => {
                self.invalid(
                    field,
                    format!("probe program {program} not found: {err}; check the path"),
                );
                None
            }
        }
    }

    /// Reads the option keys of a probe of `kind` and checks the ones that depend on each
    /// other. Returns `None` after reporting any problem.
    fn probe_options(&mut self, kind: ProbeKind, fields: &[Field<'_>]) -> Option<ProbeOptions> {
        let mut options = ProbeOptions::default();
        let mut valid = true;
        for field in fields {
            if !kind.options().contains(&field.name) {
                self.misplaced_option(kind, field);
                valid = false;
                continue;
            }
            valid &= self.probe_option(kind, field, &mut options).is_some();
        }

        let tls_on = options.tls || options.starttls.is_some() || kind == ProbeKind::Tls;
        if let (true, Some((line, path))) = (options.tls, &options.starttls) {
            self.error(
                *line,
                path,
                "`starttls = true` and `tls = true` are both set; keep `tls` for TLS from the \
                 first byte (ports 465, 993, 995) or `starttls` for an upgrade after the \
                 greeting (ports 587, 143, 110)"
                    .to_string(),
                example_of(PROBE_OPTION_KEYS, "starttls"),
            );
            valid = false;
        }
        if !tls_on {
            let turn_on = if kind.has_starttls() {
                "`tls = true` or `starttls = true`"
            } else {
                "`tls = true`"
            };
            for (name, line, path) in &options.tls_only {
                self.error(
                    *line,
                    path,
                    format!("`{name}` applies only to a probe with TLS; add {turn_on}"),
                    example_of(PROBE_OPTION_KEYS, name),
                );
                valid = false;
            }
        }
        if let (Some((line, path)), None) = (&options.send_key, &options.expect_text) {
            self.error(
                *line,
                path,
                "`send` needs `expect`, the text a reply line must contain".to_string(),
                SEND_EXPECT_EXAMPLE,
            );
            valid = false;
        }
        valid.then_some(options)
    }

    /// Reports an option key that the probe's kind does not take, with the kinds that do.
    fn misplaced_option(&mut self, kind: ProbeKind, field: &Field<'_>) {
        let takers: Vec<&str> = ProbeKind::ALL
            .into_iter()
            .filter(|other| other.options().contains(&field.name))
            .map(ProbeKind::key)
            .collect();
        let mut message = format!(
            "`{}` does not apply to {} probes; it applies to {} probes",
            field.name,
            kind.key(),
            join_with_and(&takers)
        );
        if field.name == "tls" {
            message.push_str(", and a string value makes a tls probe of its own");
        }
        let example = if field.name == "expect" && kind != ProbeKind::Http {
            SEND_EXPECT_EXAMPLE
        } else {
            example_of(PROBE_OPTION_KEYS, field.name)
        };
        self.error(field.key_line, &field.path, message, example);
    }

    /// Reads one option key that `kind` takes into `options`; `None` when it is invalid.
    fn probe_option(
        &mut self,
        kind: ProbeKind,
        field: &Field<'_>,
        options: &mut ProbeOptions,
    ) -> Option<()> {
        if let Some(name) = TLS_ONLY_OPTIONS.iter().find(|name| **name == field.name) {
            options
                .tls_only
                .push((*name, field.key_line, field.path.clone()));
        }
        match field.name {
            "tls" => {
                let Some(tls) = field.node.value().and_then(Value::as_bool) else {
                    self.wrong_type(field, "true or false");
                    return None;
                };
                options.tls = tls;
            }
            "starttls" => {
                if self.boolean(field)? {
                    options.starttls = Some((field.key_line, field.path.clone()));
                }
            }
            "server_name" => {
                let name = self.word(field)?;
                if ServerName::try_from(name).is_err() {
                    self.invalid(
                        field,
                        format!(
                            "invalid server name \"{name}\"; expected a DNS name such as \
                             mail.example.org or an IP address"
                        ),
                    );
                    return None;
                }
                options.server_name = Some(name.to_string());
            }
            "verify_cert" => options.verify_cert = Some(self.boolean(field)?),
            "cert_warn_days" => {
                options.cert_warn_days = Some(self.count(field, 0..=MAX_CERT_WARN_DAYS)?);
            }
            "helo_name" => {
                let name = self.word(field)?;
                if let Err(reason) = check_helo_name(name) {
                    self.invalid(field, format!("invalid helo_name \"{name}\": {reason}"));
                    return None;
                }
                options.helo_name = Some(name.to_string());
            }
            "path" => {
                let path = self.word(field)?;
                if !path.starts_with('/') {
                    self.invalid(
                        field,
                        format!("an HTTP path starts with /, found \"{path}\""),
                    );
                    return None;
                }
                options.path = Some(path.to_string());
            }
            "host" => {
                let host = self.word(field)?;
                if host.contains('/') {
                    self.invalid(
                        field,
                        format!(
                            "host \"{host}\" contains /; give the Host header value only, \
                             such as localhost or mail.example.org"
                        ),
                    );
                    return None;
                }
                options.host = Some(host.to_string());
            }
            "expect" if kind == ProbeKind::Http => {
                let text = self.string(field)?;
                match parse_status_class(text) {
                    Some(class) => options.status = Some(class),
                    None => {
                        self.invalid(
                            field,
                            format!(
                                "invalid status class \"{text}\"; expected \"2xx\", \"3xx\", \
                                 \"4xx\" or \"5xx\""
                            ),
                        );
                        return None;
                    }
                }
            }
            "expect" => {
                let Some(text) = field.node.value().and_then(Value::as_str) else {
                    let found = self.describe(field.node);
                    self.error(
                        field.line,
                        &field.path,
                        format!("expected a string, found {found}"),
                        SEND_EXPECT_EXAMPLE,
                    );
                    return None;
                };
                if text.is_empty() || text.contains(['\r', '\n']) {
                    self.error(
                        field.line,
                        &field.path,
                        format!(
                            "`expect` is matched against one reply line at a time, so it must \
                             be non-empty and without line breaks, found {text:?}"
                        ),
                        SEND_EXPECT_EXAMPLE,
                    );
                    return None;
                }
                options.expect_text = Some(text.to_string());
            }
            "send" => {
                options.send_key = Some((field.key_line, field.path.clone()));
                options.send = Some(self.string(field)?.to_string());
            }
            "name" => options.name = Some(self.dns_name(field)?),
            "outside_name" => options.outside_name = Some(self.dns_name(field)?),
            "credentials" => {
                let path = self.absolute_path(field)?;
                if !self.check_secret_file(field, &path, "credentials file") {
                    return None;
                }
                options.credentials = Some(path);
            }
            "verify_file" => options.verify_file = Some(self.absolute_path(field)?),
            _ => return None,
        }
        Some(())
    }

    /// Reads a DNS name, adding the final dot when it is missing.
    fn dns_name(&mut self, field: &Field<'_>) -> Option<String> {
        let name = self.word(field)?;
        match check_dns_name(name) {
            Ok(()) if name.ends_with('.') => Some(name.to_string()),
            Ok(()) => Some(format!("{name}.")),
            Err(reason) => {
                self.invalid(field, format!("invalid DNS name \"{name}\": {reason}"));
                None
            }
        }
    }
}

/// Builds the probe from checked parts.
fn build_probe(kind: ProbeKind, target: ProbeTarget, options: ProbeOptions) -> ProbeSpec {
    let helo_name = || {
        options
            .helo_name
            .clone()
            .unwrap_or_else(|| DEFAULT_HELO_NAME.to_string())
    };
    let (argv, endpoint) = match target {
        ProbeTarget::Command(argv) => (argv, None),
        ProbeTarget::Endpoint(endpoint) => (Vec::new(), Some(endpoint)),
    };
    let protocol = match kind {
        ProbeKind::Tcp | ProbeKind::Unix => match &options.expect_text {
            Some(expect) => Protocol::SendExpect {
                send: options.send.clone().unwrap_or_default(),
                expect: expect.clone(),
            },
            None => Protocol::Connect,
        },
        ProbeKind::Tls => Protocol::Connect,
        ProbeKind::Smtp => Protocol::Smtp {
            helo_name: helo_name(),
        },
        ProbeKind::Lmtp => Protocol::Lmtp {
            helo_name: helo_name(),
        },
        ProbeKind::Imap => Protocol::Imap,
        ProbeKind::Pop3 => Protocol::Pop3,
        ProbeKind::Http => Protocol::Http {
            path: options.path.clone().unwrap_or_else(|| "/".to_string()),
            host: options
                .host
                .clone()
                .unwrap_or_else(|| "localhost".to_string()),
            expect: options.status.unwrap_or(StatusClass(2)),
        },
        ProbeKind::Spamd => Protocol::Spamd,
        ProbeKind::Milter => Protocol::Milter,
        ProbeKind::Mysql => Protocol::Mysql {
            credentials: options.credentials.clone(),
        },
        ProbeKind::Dns => Protocol::Dns {
            name: options
                .name
                .clone()
                .unwrap_or_else(|| DEFAULT_DNS_NAME.to_string()),
            outside_name: options.outside_name.clone(),
        },
        ProbeKind::Fail2ban => Protocol::Fail2ban,
        ProbeKind::Syslog => Protocol::Syslog {
            verify_file: options.verify_file.clone(),
        },
        ProbeKind::Command => Protocol::Command { argv },
    };

    let mut spec = ProbeSpec::new(protocol, endpoint, CONFIG_SOURCE);
    spec.tls.mode = if kind == ProbeKind::Tls || options.tls {
        ProbeTlsMode::Implicit
    } else if options.starttls.is_some() {
        ProbeTlsMode::Starttls
    } else {
        ProbeTlsMode::Off
    };
    spec.tls.server_name = options.server_name;
    if let Some(verify) = options.verify_cert {
        spec.tls.verify = verify;
    }
    if let Some(days) = options.cert_warn_days {
        spec.tls.warn_days = days;
    }
    spec
}

/// Returns the example of a key in `keys`; empty when `keys` does not have it.
fn example_of(keys: Keys, name: &str) -> &'static str {
    keys.iter()
        .find(|(key, _)| *key == name)
        .map_or("", |(_, example)| *example)
}

/// Returns the example of a key in any of the `known` key lists; empty when none has it.
fn known_example(known: &[Keys], name: &str) -> &'static str {
    known
        .iter()
        .map(|keys| example_of(keys, name))
        .find(|example| !example.is_empty())
        .unwrap_or("")
}

/// Appends a key to a dotted path, quoting it when it is not a bare TOML key.
fn join_key(prefix: &str, name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let name = if bare {
        name.to_string()
    } else {
        format!("{name:?}")
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}.{name}")
    }
}

/// Finds the known key that an unknown key most likely means: a common alias, or the nearest key by
/// edit distance when the distance is small for the key's length.
fn closest_key<'k>(unknown: &str, known: &[&'k str]) -> Option<&'k str> {
    if let Some((_, meant)) = ALIASES.iter().find(|(alias, _)| *alias == unknown) {
        if let Some(key) = known.iter().find(|key| *key == meant) {
            return Some(key);
        }
    }
    let length = unknown.chars().count();
    let max_distance = match length {
        0..=4 => 1,
        5..=10 => 2,
        _ => 3,
    };
    known
        .iter()
        .map(|key| (edit_distance(unknown, key), *key))
        .filter(|(distance, _)| *distance <= max_distance)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key)
}

/// Edit distance in characters, counting a swap of two adjacent characters as one edit
/// (optimal string alignment), because swapped letters are a common typo.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // distances[i][j] is the distance between the first i characters of a and the first j of b.
    let mut distances = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in distances.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in distances[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut distance = (distances[i - 1][j] + 1)
                .min(distances[i][j - 1] + 1)
                .min(distances[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                distance = distance.min(distances[i - 2][j - 2] + 1);
            }
            distances[i][j] = distance;
        }
    }
    distances[a.len()][b.len()]
}

fn check_address(address: &str) -> Result<(), &'static str> {
    if address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
    {
        return Err("an address has no spaces, angle brackets, commas or semicolons");
    }
    match address.split_once('@') {
        None => Err("an address needs one @"),
        Some((_, domain)) if domain.contains('@') => Err("an address has exactly one @"),
        Some((local, domain)) if local.is_empty() || domain.is_empty() => {
            Err("an address needs text on both sides of the @")
        }
        Some(_) => Ok(()),
    }
}

fn check_tcp_address(address: &str) -> Result<(), &'static str> {
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("missing port; expected host:port such as 127.0.0.1:25");
    };
    if !matches!(port.parse::<u16>(), Ok(1..)) {
        return Err("the port must be a number from 1 to 65535");
    }
    if host.is_empty() {
        return Err("missing host; expected host:port such as 127.0.0.1:25");
    }
    if let Some(inner) = host.strip_prefix('[') {
        let valid = inner
            .strip_suffix(']')
            .is_some_and(|inner| inner.parse::<Ipv6Addr>().is_ok());
        return if valid {
            Ok(())
        } else {
            Err("invalid IPv6 address in brackets")
        };
    }
    if host.contains(':') {
        return Err("an IPv6 address needs brackets, as in [::1]:25");
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the host must not contain spaces");
    }
    Ok(())
}

/// Checks an EHLO/LHLO name: a host name, or an address literal such as `[127.0.0.1]`.
fn check_helo_name(name: &str) -> Result<(), &'static str> {
    if let Some(literal) = name.strip_prefix('[') {
        let valid = literal.strip_suffix(']').is_some_and(|address| {
            address.parse::<std::net::Ipv4Addr>().is_ok()
                || address
                    .strip_prefix("IPv6:")
                    .is_some_and(|v6| v6.parse::<Ipv6Addr>().is_ok())
        });
        return if valid {
            Ok(())
        } else {
            Err("an address literal is [IPv4] or [IPv6:address], such as [127.0.0.1]")
        };
    }
    check_dns_name(name).map_err(|_| "expected a host name such as mail.example.org")
}

/// Checks a DNS name in text form, with or without the final dot: labels of letters, digits,
/// `-` and `_`, each 1 to 63 bytes, at most 253 bytes in all. `.` alone is the root.
fn check_dns_name(name: &str) -> Result<(), String> {
    if name == "." {
        return Ok(());
    }
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("the name is empty".to_string());
    }
    if bare.len() > MAX_DNS_NAME {
        return Err(format!(
            "it is {} bytes long, but a DNS name has at most {MAX_DNS_NAME}",
            bare.len()
        ));
    }
    for label in bare.split('.') {
        if label.is_empty() {
            return Err("it has an empty label (two dots in a row, or a leading dot)".to_string());
        }
        if label.len() > MAX_DNS_LABEL {
            return Err(format!(
                "label \"{label}\" is longer than {MAX_DNS_LABEL} bytes"
            ));
        }
        if !label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "label \"{label}\" has characters other than letters, digits, - and _"
            ));
        }
    }
    Ok(())
}

/// Reads an HTTP status class written as `"2xx"` (also `"2XX"`); 1xx is never a final status,
/// so only 2 to 5 are accepted.
fn parse_status_class(text: &str) -> Option<StatusClass> {
    let mut chars = text.chars();
    let digit = chars.next()?.to_digit(10)?;
    let rest: String = chars.collect();
    let class = u8::try_from(digit).ok()?;
    ((2..=5).contains(&class) && rest.eq_ignore_ascii_case("xx")).then_some(StatusClass(class))
}

/// Checks whether an address uses milter notation, such as `inet:8891@localhost` or `unix:/path`.
fn is_milter_notation(text: &str) -> bool {
    ["unix:", "local:", "inet:", "inet6:"].iter().any(|prefix| {
        text.get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    })
}

/// Joins names as "a, b and c".
fn join_with_and(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn check_unit_name(unit: &str) -> Result<(), String> {
    if !unit
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '-' | '_' | '.' | '@' | '\\'))
    {
        return Err(
            "a unit name has only letters, digits and the characters : - _ . @ \\".to_string(),
        );
    }
    match unit.rsplit_once('.') {
        Some((stem, suffix)) if !stem.is_empty() && UNIT_SUFFIXES.contains(&suffix) => Ok(()),
        _ => Err(format!(
            "a unit name ends in its type, such as .service; the types are: {}",
            UNIT_SUFFIXES.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;

    const FILE: &str = "/etc/selfheal/selfheal.toml";

    fn ok(text: &str) -> Config {
        match parse(text, Path::new(FILE)) {
            Ok(config) => config,
            Err(errors) => panic!("unexpected errors:\n{errors}"),
        }
    }

    fn errors(text: &str) -> Vec<ConfigError> {
        match parse(text, Path::new(FILE)) {
            Ok(config) => panic!("expected errors, got {config:#?}"),
            Err(errors) => errors.0,
        }
    }

    fn single(text: &str) -> ConfigError {
        let mut found = errors(text);
        assert_eq!(found.len(), 1, "expected one error, got {found:#?}");
        found.remove(0)
    }

    /// Writes a file with the given mode into `dir` and returns its path.
    fn write_file(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        if let Err(err) = fs::write(&path, content) {
            panic!("writing {}: {err}", path.display());
        }
        if let Err(err) = fs::set_permissions(&path, fs::Permissions::from_mode(mode)) {
            panic!("chmod {}: {err}", path.display());
        }
        path
    }

    fn tempdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("creating a tempdir: {err}"),
        }
    }

    fn full_example(password_file: &Path, sendmail: &Path) -> String {
        format!(
            r#"interval = "30s"
mode = "heal"
state_dir = "/var/lib/selfheal"
control_socket = "/run/selfheal/control.sock"
probe_timeout = "5s"
probe_retries = 2
retry_interval = "2s"
verify_after = "5s"
verify_timeout = "30s"
max_restarts = 3
restart_window = "15min"
restart_timeout = "2min"

[alerts]
from = "selfheal@mail.example.org"
to = ["admin@example.org"]
journal_lines = 20
sendmail = "{}"

[[alerts.relay]]
host = "smtp.example.net"
port = 587
tls = "starttls"
username = "selfheal"
password_file = "{}"
timeout = "30s"

[services.postfix]
[services.dovecot]
mode = "watch"
[services.ai-filter]
unit = "ai-filter.service"
probe = {{ tcp = "127.0.0.1:10030" }}
critical = true
"#,
            sendmail.display(),
            password_file.display()
        )
    }

    #[test]
    fn full_example_parses() {
        let dir = tempdir();
        let password = write_file(dir.path(), "relay-password", "secret\n", 0o600);
        let sendmail = write_file(dir.path(), "sendmail", "#!/bin/sh\n", 0o755);
        let config = ok(&full_example(&password, &sendmail));

        assert_eq!(config.path.as_deref(), Some(Path::new(FILE)));
        assert_eq!(config.interval, Duration::from_secs(30));
        assert_eq!(config.mode, Mode::Heal);
        assert_eq!(config.state_dir, Path::new("/var/lib/selfheal"));
        assert_eq!(
            config.control_socket,
            Path::new("/run/selfheal/control.sock")
        );
        assert!(config.warnings.is_empty(), "{:?}", config.warnings);

        let alerts = &config.alerts;
        assert_eq!(alerts.from.as_deref(), Some("selfheal@mail.example.org"));
        assert_eq!(alerts.to, ["admin@example.org"]);
        assert_eq!(alerts.journal_lines, 20);
        assert_eq!(alerts.sendmail.as_deref(), Some(sendmail.as_path()));
        assert_eq!(alerts.relays.len(), 1);
        let relay = &alerts.relays[0];
        assert_eq!(relay.host, "smtp.example.net");
        assert_eq!(relay.port, 587);
        assert_eq!(relay.tls, TlsMode::Starttls);
        assert_eq!(relay.username.as_deref(), Some("selfheal"));
        assert_eq!(relay.password_file.as_deref(), Some(password.as_path()));
        assert_eq!(relay.timeout, Duration::from_secs(30));

        assert_eq!(config.service_names(), ["postfix", "dovecot", "ai-filter"]);
        let Some(postfix) = config.service("postfix") else {
            panic!("postfix missing");
        };
        assert_eq!(postfix.preset.as_deref(), Some("postfix"));
        assert_eq!(postfix.units, ["postfix@-.service", "postfix.service"]);
        assert_eq!(
            postfix.probes,
            presets::preset("postfix").map_or_else(Vec::new, Preset::probe_specs)
        );
        assert_eq!(postfix.probes[0].protocol.name(), "smtp");
        assert!(postfix.critical);
        assert_eq!(postfix.mode, Mode::Heal);
        assert_eq!(postfix.probe_timeout, Duration::from_secs(5));
        assert_eq!(postfix.restart_timeout, Duration::from_secs(120));
        assert_eq!(postfix.recovery, crate::policy::Recovery::default());

        let Some(dovecot) = config.service("dovecot") else {
            panic!("dovecot missing");
        };
        assert_eq!(dovecot.mode, Mode::Watch);

        let Some(filter) = config.service("ai-filter") else {
            panic!("ai-filter missing");
        };
        assert_eq!(filter.preset, None);
        assert_eq!(filter.units, ["ai-filter.service"]);
        assert!(filter.critical);
        assert!(filter.commands.is_none());
        assert_eq!(
            filter.probes,
            [ProbeSpec::tcp("127.0.0.1:10030", "config").unwrap()]
        );
    }

    #[test]
    fn empty_file_gets_defaults() {
        let config = ok("");
        assert_eq!(config.interval, Duration::from_secs(30));
        assert_eq!(config.mode, Mode::Heal);
        assert_eq!(config.state_dir, Path::new("/var/lib/selfheal"));
        assert_eq!(
            config.control_socket,
            Path::new("/run/selfheal/control.sock")
        );
        assert_eq!(config.alerts.journal_lines, 20);
        assert!(config.alerts.to.is_empty());
        assert!(config.services.is_empty());
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(config.warnings[0].key, "services");
    }

    #[test]
    fn unknown_key_names_line() {
        let error = single("mode = \"heal\"\nintervall = \"30s\"\n");
        assert_eq!(error.line, 2);
        assert_eq!(error.key, "intervall");
        assert!(error.message.contains("did you mean `interval`"), "{error}");
        assert_eq!(error.example.as_deref(), Some("interval = \"30s\""));
        assert_eq!(error.file, Path::new(FILE));
    }

    #[test]
    fn unknown_key_lists_allowed() {
        let error = single("[services.postfix]\nzzzzzzzz = 1\n");
        assert_eq!(error.line, 2);
        assert_eq!(error.key, "services.postfix.zzzzzzzz");
        assert!(error.message.contains("critical"), "{error}");
        assert!(error.message.contains("restart_window"), "{error}");
    }

    #[test]
    fn alias_suggests_key() {
        let text = "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nuser = \"x\"\n";
        let error = single(text);
        assert_eq!(error.line, 5);
        assert_eq!(error.key, "alerts.relay[0].user");
        assert!(error.message.contains("did you mean `username`"), "{error}");
    }

    #[test]
    fn preset_name_at_top_level() {
        let error = single("[postfix]\n");
        assert_eq!(error.key, "postfix");
        assert_eq!(error.line, 1);
        assert_eq!(error.example.as_deref(), Some("[services.postfix]"));
    }

    #[test]
    fn wrong_type_shows_value() {
        let error = single("probe_retries = \"2\"\n");
        assert_eq!(error.key, "probe_retries");
        assert_eq!(error.message, "expected an integer, found string \"2\"");
        assert_eq!(error.example.as_deref(), Some("probe_retries = 2"));
    }

    #[test]
    fn bare_integer_duration() {
        let error = single("\n\ninterval = 30\n");
        assert_eq!(error.line, 3);
        assert_eq!(error.key, "interval");
        assert!(error.message.contains("needs a unit"), "{error}");
        assert!(error.message.contains("\"30s\""), "{error}");
        assert_eq!(error.example.as_deref(), Some("interval = \"30s\""));
    }

    #[test]
    fn durations_with_units() {
        let config =
            ok("interval = \"500ms\"\nrestart_window = \"2h\"\nverify_timeout = \"5min\"\n");
        assert_eq!(config.interval, Duration::from_millis(500));
        let text = "restart_window = \"2h\"\n[services.postfix]\n";
        let config = ok(text);
        assert_eq!(
            config.services[0].recovery.restart_window,
            Duration::from_secs(7200)
        );
    }

    #[test]
    fn bad_duration_text() {
        let error = single("[services.postfix]\nverify_after = \"5 parsecs\"\n");
        assert_eq!(error.line, 2);
        assert_eq!(error.key, "services.postfix.verify_after");
        assert!(
            error.message.starts_with("invalid duration \"5 parsecs\""),
            "{error}"
        );
        assert_eq!(error.example.as_deref(), Some("verify_after = \"5s\""));
    }

    #[test]
    fn zero_interval_rejected() {
        let error = single("interval = \"0s\"\n");
        assert_eq!(error.key, "interval");
        assert!(error.message.contains("greater than zero"), "{error}");
    }

    #[test]
    fn zero_verify_after_allowed() {
        let config = ok("verify_after = \"0s\"\n[services.postfix]\n");
        assert_eq!(config.services[0].recovery.verify_after, Duration::ZERO);
    }

    #[test]
    fn invalid_mode_names_key() {
        let error = single("[services.postfix]\n[services.dovecot]\nmode = \"fix\"\n");
        assert_eq!(error.line, 3);
        assert_eq!(error.key, "services.dovecot.mode");
        assert_eq!(
            error.message,
            "invalid mode \"fix\"; expected \"heal\" or \"watch\""
        );
        assert_eq!(error.example.as_deref(), Some("mode = \"watch\""));
    }

    #[test]
    fn dotted_key_line() {
        let error = single("interval = \"30s\"\nservices.dovecot.mode = \"fix\"\n");
        assert_eq!(error.line, 2);
        assert_eq!(error.key, "services.dovecot.mode");
    }

    #[test]
    fn bad_tls_value() {
        let text = "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\ntls = \"ssl\"\n";
        let error = single(text);
        assert_eq!(error.line, 5);
        assert_eq!(error.key, "alerts.relay[0].tls");
        assert!(
            error.message.contains("invalid tls mode \"ssl\""),
            "{error}"
        );
    }

    #[test]
    fn port_out_of_range() {
        for port in ["0", "65536", "-25"] {
            let text = format!(
                "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nport = {port}\n"
            );
            let error = single(&text);
            assert_eq!(error.line, 5, "port {port}");
            assert_eq!(error.key, "alerts.relay[0].port");
            assert!(error.message.contains("from 1 to 65535"), "{error}");
        }
    }

    #[test]
    fn relay_port_follows_tls() {
        let text = "[alerts]\nsendmail = false\n\
                    [[alerts.relay]]\nhost = \"a\"\ntls = \"tls\"\n\
                    [[alerts.relay]]\nhost = \"b\"\n\
                    [[alerts.relay]]\nhost = \"c\"\ntls = \"none\"\n\
                    [[alerts.relay]]\nhost = \"d\"\ntls = \"tls\"\nport = 2465\n";
        let config = ok(text);
        let ports: Vec<u16> = config.alerts.relays.iter().map(|r| r.port).collect();
        assert_eq!(ports, [465, 587, 25, 2465]);
        assert_eq!(config.alerts.relays[1].tls, TlsMode::Starttls);
        assert_eq!(config.alerts.relays[1].timeout, Duration::from_secs(30));
    }

    #[test]
    fn relay_single_brackets() {
        let error = single("[alerts]\nsendmail = false\n[alerts.relay]\nhost = \"h\"\n");
        assert_eq!(error.line, 3);
        assert_eq!(error.key, "alerts.relay");
        assert!(error.message.contains("[[alerts.relay]]"), "{error}");
    }

    #[test]
    fn relay_needs_host() {
        let error = single("[alerts]\nsendmail = false\n[[alerts.relay]]\nport = 25\n");
        assert_eq!(error.line, 3);
        assert_eq!(error.key, "alerts.relay[0].host");
        assert_eq!(
            error.example.as_deref(),
            Some("host = \"smtp.example.net\"")
        );
    }

    #[test]
    fn relay_host_with_port() {
        let text =
            "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"smtp.example.net:587\"\n";
        let error = single(text);
        assert_eq!(error.key, "alerts.relay[0].host");
        assert!(error.message.contains("`port`"), "{error}");
        let config = ok("[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"2001:db8::1\"\n");
        assert_eq!(config.alerts.relays[0].host, "2001:db8::1");
    }

    #[test]
    fn username_needs_password_file() {
        let text = "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nusername = \"u\"\n";
        let error = single(text);
        assert_eq!(error.line, 5);
        assert_eq!(error.key, "alerts.relay[0].username");
        assert!(error.message.contains("password_file"), "{error}");
    }

    #[test]
    fn password_file_needs_username() {
        let dir = tempdir();
        let password = write_file(dir.path(), "pw", "secret", 0o600);
        let text = format!(
            "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\npassword_file = \"{}\"\n",
            password.display()
        );
        let error = single(&text);
        assert_eq!(error.key, "alerts.relay[0].password_file");
        assert!(error.message.contains("`username`"), "{error}");
    }

    #[test]
    fn missing_password_file() {
        let dir = tempdir();
        let missing = dir.path().join("nope");
        let text = format!(
            "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nusername = \"u\"\n\
             password_file = \"{}\"\n",
            missing.display()
        );
        let error = single(&text);
        assert_eq!(error.line, 6);
        assert_eq!(error.key, "alerts.relay[0].password_file");
        assert!(
            error.message.starts_with("cannot read password file"),
            "{error}"
        );
        assert!(error.message.contains("nope"), "{error}");
    }

    #[test]
    fn password_file_is_directory() {
        let dir = tempdir();
        let text = format!(
            "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nusername = \"u\"\n\
             password_file = \"{}\"\n",
            dir.path().display()
        );
        let error = single(&text);
        assert!(error.message.contains("not a regular file"), "{error}");
    }

    #[test]
    fn wide_password_file_warns() {
        let dir = tempdir();
        let password = write_file(dir.path(), "pw", "secret", 0o644);
        let text = format!(
            "[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = \"a@x\"\n[[alerts.relay]]\n\
             host = \"h\"\nusername = \"u\"\npassword_file = \"{}\"\n[services.postfix]\n",
            password.display()
        );
        let config = ok(&text);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        let warning = &config.warnings[0];
        assert_eq!(warning.line, 8);
        assert_eq!(warning.key, "alerts.relay[0].password_file");
        assert!(warning.message.contains("0644"), "{warning}");
        assert!(warning.message.contains("chmod 600"), "{warning}");
    }

    #[test]
    fn plain_relay_login_warns() {
        let dir = tempdir();
        let password = write_file(dir.path(), "pw", "secret", 0o600);
        let text = format!(
            "[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = \"a@x\"\n[[alerts.relay]]\n\
             host = \"h\"\ntls = \"none\"\nusername = \"u\"\npassword_file = \"{}\"\n\
             [services.postfix]\n",
            password.display()
        );
        let config = ok(&text);
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert!(config.warnings[0].message.contains("unencrypted"));
    }

    #[test]
    fn malformed_addresses() {
        for address in [
            "admin",
            "a@b@c",
            "@example.org",
            "admin@",
            "ad min@x",
            "<a@b>",
            "a@b,c@d",
        ] {
            let text =
                format!("[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = [\"{address}\"]\n");
            let error = single(&text);
            assert_eq!(error.line, 4, "{address}");
            assert_eq!(error.key, "alerts.to[0]", "{address}");
            assert!(error.message.starts_with("invalid address"), "{error}");
        }
        let error = single("[alerts]\nsendmail = false\nfrom = \"nobody\"\n");
        assert_eq!(error.key, "alerts.from");
    }

    #[test]
    fn address_element_line() {
        let text =
            "[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = [\n  \"a@x\",\n  \"bad\",\n]\n";
        let error = single(text);
        assert_eq!(error.line, 6);
        assert_eq!(error.key, "alerts.to[1]");
    }

    #[test]
    fn single_recipient_string() {
        let config = ok("[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = \"admin@x\"\n");
        assert_eq!(config.alerts.to, ["admin@x"]);
    }

    #[test]
    fn recipients_need_sender() {
        let error = single("[alerts]\nsendmail = false\nto = [\"admin@x\"]\n");
        assert_eq!(error.line, 1);
        assert_eq!(error.key, "alerts.from");
        assert!(error.message.contains("`from` is required"), "{error}");
    }

    #[test]
    fn recipients_without_channel_warn() {
        let config =
            ok("[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = [\"a@x\"]\n[services.postfix]\n");
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert_eq!(config.warnings[0].key, "alerts.to");
        assert_eq!(config.warnings[0].line, 4);
        assert!(!config.alerts.has_channel());
    }

    #[test]
    fn sendmail_checks() {
        let dir = tempdir();
        let script = write_file(dir.path(), "sendmail", "#!/bin/sh\n", 0o755);
        let config = ok(&format!("[alerts]\nsendmail = \"{}\"\n", script.display()));
        assert_eq!(config.alerts.sendmail.as_deref(), Some(script.as_path()));

        let config = ok("[alerts]\nsendmail = false\n");
        assert_eq!(config.alerts.sendmail, None);

        let plain = write_file(dir.path(), "plain", "", 0o644);
        let error = single(&format!("[alerts]\nsendmail = \"{}\"\n", plain.display()));
        assert!(error.message.contains("not an executable file"), "{error}");

        let missing = dir.path().join("missing");
        let error = single(&format!("[alerts]\nsendmail = \"{}\"\n", missing.display()));
        assert!(error.message.starts_with("sendmail binary"), "{error}");
        assert!(error.message.contains("not found"), "{error}");

        let error = single("[alerts]\nsendmail = true\n");
        assert_eq!(error.key, "alerts.sendmail");
        assert!(error.message.contains("false to disable"), "{error}");

        let error = single("[alerts]\nsendmail = \"sendmail\"\n");
        assert!(error.message.contains("absolute path"), "{error}");
    }

    #[test]
    fn journal_lines_range() {
        let config = ok("[alerts]\nsendmail = false\njournal_lines = 0\n");
        assert_eq!(config.alerts.journal_lines, 0);
        let error = single("[alerts]\nsendmail = false\njournal_lines = -1\n");
        assert_eq!(error.key, "alerts.journal_lines");
    }

    #[test]
    fn control_socket_checks() {
        let error = single("control_socket = \"control.sock\"\n");
        assert_eq!(error.key, "control_socket");
        assert!(error.message.contains("absolute path"), "{error}");
        let long = format!("/run/{}.sock", "x".repeat(110));
        let error = single(&format!("control_socket = \"{long}\"\n"));
        assert!(error.message.contains("at most 107 bytes"), "{error}");
    }

    #[test]
    fn state_dir_relative_rejected() {
        let error = single("state_dir = \"var/lib/selfheal\"\n");
        assert_eq!(error.key, "state_dir");
        assert_eq!(
            error.example.as_deref(),
            Some("state_dir = \"/var/lib/selfheal\"")
        );
    }

    #[test]
    fn max_restarts_zero_hints_watch() {
        let error = single("max_restarts = 0\n");
        assert!(error.message.contains("mode = \"watch\""), "{error}");
        let error = single("probe_retries = 101\n");
        assert!(error.message.contains("from 0 to 100"), "{error}");
    }

    #[test]
    fn unknown_preset_message() {
        let error = single("[services.postfix]\n\n[services.ai-filter]\ncritical = true\n");
        assert_eq!(error.line, 3);
        assert_eq!(error.key, "services.ai-filter");
        assert!(
            error
                .message
                .starts_with("unknown preset \"ai-filter\"; the presets are: postfix, dovecot,"),
            "{error}"
        );
        assert!(
            error
                .message
                .contains("a custom service needs `unit` or `start`/`restart` commands"),
            "{error}"
        );
        assert_eq!(
            error.example.as_deref(),
            Some("unit = \"ai-filter.service\"")
        );
    }

    #[test]
    fn unknown_preset_key() {
        let error = single("[services.mail]\npreset = \"exim\"\n");
        assert_eq!(error.line, 2);
        assert_eq!(error.key, "services.mail.preset");
        assert!(error.message.contains("unknown preset \"exim\""), "{error}");
    }

    #[test]
    fn preset_under_other_name() {
        let config =
            ok("[services.postfix-out]\npreset = \"postfix\"\nunit = \"postfix@out.service\"\n");
        let service = &config.services[0];
        assert_eq!(service.name, "postfix-out");
        assert_eq!(service.preset.as_deref(), Some("postfix"));
        assert_eq!(service.units, ["postfix@out.service"]);
        assert!(service.critical);
        assert_eq!(service.probes.len(), 1);
    }

    #[test]
    fn preset_overridden_per_key() {
        let text = "[services.mariadb]\nmode = \"watch\"\ncritical = false\nprobe = false\n\
                    units = [\"mysqld.service\"]\nverify_timeout = \"7min\"\nmax_restarts = 5\n";
        let config = ok(text);
        let service = &config.services[0];
        assert_eq!(service.preset.as_deref(), Some("mariadb"));
        assert_eq!(service.mode, Mode::Watch);
        assert!(!service.critical);
        assert!(service.probes.is_empty());
        assert_eq!(service.units, ["mysqld.service"]);
        assert_eq!(service.recovery.verify_timeout, Duration::from_secs(420));
        assert_eq!(service.recovery.max_restarts, 5);
        // Not overridden here, so the preset's value stays.
        assert_eq!(service.restart_timeout, Duration::from_secs(600));
    }

    #[test]
    fn timing_precedence() {
        let text = "restart_timeout = \"1min\"\nprobe_timeout = \"3s\"\n\
                    [services.mariadb]\n[services.dovecot]\n\
                    [services.nginx]\nrestart_timeout = \"20s\"\n";
        let config = ok(text);
        let timeouts: Vec<(Duration, Duration)> = config
            .services
            .iter()
            .map(|s| (s.restart_timeout, s.probe_timeout))
            .collect();
        assert_eq!(
            timeouts,
            [
                (Duration::from_secs(600), Duration::from_secs(3)),
                (Duration::from_secs(60), Duration::from_secs(3)),
                (Duration::from_secs(20), Duration::from_secs(3)),
            ]
        );
    }

    #[test]
    fn top_mode_is_service_default() {
        let config =
            ok("mode = \"watch\"\n[services.postfix]\n[services.dovecot]\nmode = \"heal\"\n");
        assert_eq!(config.mode, Mode::Watch);
        assert_eq!(config.services[0].mode, Mode::Watch);
        assert_eq!(config.services[1].mode, Mode::Heal);
    }

    #[test]
    fn disabled_service_left_out() {
        let config = ok("[services.postfix]\nenabled = false\n[services.dovecot]\n");
        assert_eq!(config.service_names(), ["dovecot"]);
        let error = single("[services.postfix]\nenabled = \"no\"\n");
        assert_eq!(error.key, "services.postfix.enabled");
    }

    #[test]
    fn disabled_service_still_checked() {
        let error = single("[services.postfix]\nenabled = false\nmode = \"off\"\n");
        assert_eq!(error.key, "services.postfix.mode");
    }

    #[test]
    fn unit_and_commands_conflict() {
        let text = "[services.x]\nunit = \"x.service\"\nrestart = \"/etc/init.d/x restart\"\nprocess = \"x\"\n";
        let error = single(text);
        assert_eq!(error.line, 3);
        assert_eq!(error.key, "services.x.restart");
        assert!(error.message.contains("keep one of them"), "{error}");
    }

    #[test]
    fn conflict_reported_once() {
        let error = single("[services.x]\nunit = \"x.service\"\nrestart = \"/bin/x\"\n");
        assert_eq!(error.key, "services.x.restart");
        assert_eq!(error.example.as_deref(), Some("unit = \"x.service\""));
    }

    #[test]
    fn unit_and_units_conflict() {
        let error = single("[services.x]\nunit = \"x.service\"\nunits = [\"y.service\"]\n");
        assert_eq!(error.line, 3);
        assert_eq!(error.key, "services.x.units");
    }

    #[test]
    fn commands_need_process_check() {
        let error = single("[services.x]\nrestart = \"/etc/init.d/x restart\"\n");
        assert_eq!(error.line, 1);
        assert_eq!(error.key, "services.x");
        assert!(error.message.contains("`pidfile` or `process`"), "{error}");
    }

    #[test]
    fn commands_need_start_or_restart() {
        let error =
            single("[services.x]\nstop = \"/etc/init.d/x stop\"\npidfile = \"/run/x.pid\"\n");
        assert_eq!(error.key, "services.x");
        assert!(error.message.contains("`start` or `restart`"), "{error}");
    }

    #[test]
    fn command_service_parses() {
        let text = "[services.x]\nstart = \"/etc/init.d/x  start\"\n\
                    restart = [\"/etc/init.d/x\", \"restart now\"]\npidfile = \"/run/x.pid\"\n";
        let config = ok(text);
        let service = &config.services[0];
        assert!(service.units.is_empty());
        let Some(commands) = &service.commands else {
            panic!("commands missing");
        };
        assert_eq!(
            commands.start.as_deref(),
            Some(&["/etc/init.d/x".to_string(), "start".to_string()][..])
        );
        assert_eq!(
            commands.restart.as_deref(),
            Some(&["/etc/init.d/x".to_string(), "restart now".to_string()][..])
        );
        assert_eq!(commands.pidfile.as_deref(), Some(Path::new("/run/x.pid")));
        assert_eq!(commands.stop, None);
    }

    #[test]
    fn preset_with_commands() {
        let text =
            "[services.postfix]\nrestart = \"/etc/init.d/postfix restart\"\nprocess = \"master\"\n";
        let config = ok(text);
        let service = &config.services[0];
        assert!(service.units.is_empty());
        assert!(service.commands.is_some());
        assert_eq!(service.probes.len(), 1);
        assert!(service.critical);
    }

    #[test]
    fn command_shell_syntax_rejected() {
        let error = single("[services.x]\nstart = \"/bin/x --name 'a b'\"\nprocess = \"x\"\n");
        assert_eq!(error.key, "services.x.start");
        assert!(error.message.contains("array of arguments"), "{error}");
        let error = single("[services.x]\nstart = \"   \"\nprocess = \"x\"\n");
        assert!(error.message.contains("must not be empty"), "{error}");
        let error = single("[services.x]\nstart = []\nprocess = \"x\"\n");
        assert!(error.message.contains("must not be empty"), "{error}");
    }

    #[test]
    fn process_name_checks() {
        let error = single("[services.x]\nstart = \"/bin/x\"\nprocess = \"/usr/sbin/x\"\n");
        assert_eq!(error.key, "services.x.process");
        let error =
            single("[services.x]\nstart = \"/bin/x\"\nprocess = \"a-very-long-daemon-name\"\n");
        assert!(error.message.contains("15 bytes"), "{error}");
    }

    #[test]
    fn pidfile_must_be_absolute() {
        let error = single("[services.x]\nstart = \"/bin/x\"\npidfile = \"run/x.pid\"\n");
        assert_eq!(error.line, 3);
        assert_eq!(error.key, "services.x.pidfile");
    }

    #[test]
    fn tcp_probe_needs_numeric_port() {
        for address in [
            "127.0.0.1",
            "127.0.0.1:smtp",
            "127.0.0.1:0",
            ":25",
            "::1:25",
            "[::1:25",
            "127.0.0.1:99999",
        ] {
            let text =
                format!("[services.x]\nunit = \"x.service\"\nprobe = {{ tcp = \"{address}\" }}\n");
            let error = single(&text);
            assert_eq!(error.line, 3, "{address}");
            assert_eq!(error.key, "services.x.probe.tcp", "{address}");
            assert!(
                error.message.starts_with("invalid tcp probe address"),
                "{error}"
            );
        }
        for address in ["127.0.0.1:25", "[::1]:25", "localhost:10030"] {
            let text =
                format!("[services.x]\nunit = \"x.service\"\nprobe = {{ tcp = \"{address}\" }}\n");
            let config = ok(&text);
            assert_eq!(config.services[0].probes.len(), 1, "{address}");
        }
    }

    #[test]
    fn unix_probe_must_be_absolute() {
        let error =
            single("[services.x]\nunit = \"x.service\"\nprobe = { unix = \"run/x.sock\" }\n");
        assert_eq!(error.line, 3);
        assert_eq!(error.key, "services.x.probe.unix");
        assert!(error.message.contains("absolute path"), "{error}");
    }

    #[test]
    fn probe_table_checks() {
        let error = single("[services.x]\nunit = \"x.service\"\nprobe = {}\n");
        assert!(error.message.contains("needs an endpoint"), "{error}");
        let text = "[services.x]\nunit = \"x.service\"\nprobe = { tcp = \"h:1\", unix = \"/s\" }\n";
        let error = single(text);
        assert!(error.message.contains("one endpoint"), "{error}");
        let error = single("[services.x]\nunit = \"x.service\"\nprobe = true\n");
        assert!(error.message.contains("names no endpoint"), "{error}");
        let error = single("[services.x]\nunit = \"x.service\"\nprobe = \"tcp:1\"\n");
        assert!(
            error.message.starts_with("expected a probe table"),
            "{error}"
        );
        let error = single("[services.x]\nunit = \"x.service\"\nprobe = { tpc = \"h:1\" }\n");
        assert_eq!(error.key, "services.x.probe.tpc");
        assert!(error.message.contains("did you mean `tcp`"), "{error}");
    }

    #[test]
    fn several_probes() {
        let text = "[services.x]\nunit = \"x.service\"\n\
                    probes = [{ tcp = \"127.0.0.1:25\" }, { unix = \"/run/x.sock\" }]\n";
        let config = ok(text);
        assert_eq!(config.services[0].probes.len(), 2);

        let text =
            "[services.x]\nunit = \"x.service\"\n[[services.x.probes]]\ntcp = \"127.0.0.1:25\"\n\
                    [[services.x.probes]]\nunix = \"x.sock\"\n";
        let error = single(text);
        assert_eq!(error.line, 6);
        assert_eq!(error.key, "services.x.probes[1].unix");

        let config = ok("[services.postfix]\nprobes = []\n");
        assert!(config.services[0].probes.is_empty());

        let text = "[services.x]\nunit = \"x.service\"\nprobe = false\nprobes = []\n";
        let error = single(text);
        assert_eq!(error.key, "services.x.probes");
    }

    #[test]
    fn unit_name_checks() {
        let error = single("[services.x]\nunit = \"x\"\n");
        assert_eq!(error.key, "services.x.unit");
        assert!(error.message.contains(".service"), "{error}");
        let error = single("[services.x]\nunits = []\n");
        assert!(error.message.contains("at least one unit"), "{error}");
        let error = single("[services.x]\nunit = \"x y.service\"\n");
        assert!(error.message.starts_with("invalid unit name"), "{error}");
        let config = ok("[services.x]\nunit = \"x.service\"\n");
        assert_eq!(config.services[0].units, ["x.service"]);
        assert!(!config.services[0].critical);
    }

    #[test]
    fn service_name_checks() {
        let error = single("[services.\"my filter\"]\nunit = \"x.service\"\n");
        assert_eq!(error.key, "services.\"my filter\"");
        assert!(error.message.starts_with("invalid service name"), "{error}");
        let error = single("[services]\npostfix = true\n");
        assert_eq!(error.key, "services.postfix");
        assert!(
            error
                .message
                .contains("expected a table, found boolean true"),
            "{error}"
        );
    }

    #[test]
    fn services_not_a_table() {
        let error = single("services = [\"postfix\"]\n");
        assert_eq!(error.key, "services");
        assert!(
            error.message.starts_with("expected a table of services"),
            "{error}"
        );
    }

    #[test]
    fn same_units_warn() {
        let config = ok("[services.postfix]\n[services.postfix-out]\npreset = \"postfix\"\n");
        assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
        assert_eq!(config.warnings[0].key, "services.postfix-out");
        assert_eq!(config.warnings[0].line, 2);
    }

    #[test]
    fn services_keep_file_order() {
        let config = ok("[services.unbound]\n[services.apache]\n[services.postfix]\n");
        assert_eq!(config.service_names(), ["unbound", "apache", "postfix"]);
    }

    #[test]
    fn five_problems_all_reported() {
        let text = "interval = 30\n\
                    mode = \"fix\"\n\
                    \n\
                    [alerts]\n\
                    to = [\"admin\"]\n\
                    \n\
                    [services.postfix]\n\
                    critcal = true\n\
                    \n\
                    [services.ai-filter]\n\
                    unit = \"ai-filter.service\"\n\
                    probe = { tcp = \"127.0.0.1\" }\n";
        let found = errors(text);
        let located: Vec<(usize, &str)> = found.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            located,
            [
                (1, "interval"),
                (2, "mode"),
                (5, "alerts.to[0]"),
                (8, "services.postfix.critcal"),
                (12, "services.ai-filter.probe.tcp"),
            ]
        );
        assert!(found.iter().all(|e| e.example.is_some()), "{found:#?}");
    }

    #[test]
    fn syntax_error_one_line() {
        let error = single("interval = \"30s\"\n\n[services.postfix]\nmode = watch\n");
        assert_eq!(error.line, 4);
        assert_eq!(error.key, "");
        assert!(
            error.message.starts_with("invalid TOML at column 8: "),
            "{error}"
        );
        assert!(!error.message.contains('\n'), "{error}");
    }

    #[test]
    fn duplicate_key_is_syntax_error() {
        let error = single("[services.postfix]\nmode = \"heal\"\nmode = \"watch\"\n");
        assert_eq!(error.line, 3);
        assert!(error.message.contains("duplicate key"), "{error}");
    }

    #[test]
    fn line_numbers() {
        let checker = Checker::new(Path::new(FILE), "a\nbc\n\nd");
        let lines: Vec<usize> = (0..7).map(|offset| checker.line(offset)).collect();
        assert_eq!(lines, [1, 1, 2, 2, 2, 3, 4]);
    }

    #[test]
    fn key_quoting() {
        assert_eq!(join_key("", "interval"), "interval");
        assert_eq!(join_key("services", "ai-filter"), "services.ai-filter");
        assert_eq!(join_key("services", "a.b"), "services.\"a.b\"");
        assert_eq!(join_key("services", ""), "services.\"\"");
    }

    #[test]
    fn closest_key_limits() {
        let known = ["interval", "mode", "restart_timeout", "to"];
        assert_eq!(closest_key("intervall", &known), Some("interval"));
        assert_eq!(closest_key("mdoe", &known), Some("mode"));
        assert_eq!(closest_key("mdeo", &known), None);
        assert_eq!(closest_key("moda", &known), Some("mode"));
        assert_eq!(
            closest_key("restart_timout", &known),
            Some("restart_timeout")
        );
        assert_eq!(closest_key("recipients", &known), Some("to"));
        assert_eq!(closest_key("xyz", &known), None);
    }

    #[test]
    fn edit_distance_cases() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("mode", "mdoe"), 1);
        assert_eq!(edit_distance("tpc", "tcp"), 1);
    }

    /// Parses one probe table given in TOML inline form, in a custom service at line 3.
    fn probe_of(table: &str) -> ProbeSpec {
        let config = ok(&format!(
            "[services.x]\nunit = \"x.service\"\nprobe = {table}\n"
        ));
        assert_eq!(config.services[0].probes.len(), 1, "{table}");
        config.services[0].probes[0].clone()
    }

    /// Returns the one error of a probe table given in TOML inline form, at line 3.
    fn probe_error(table: &str) -> ConfigError {
        single(&format!(
            "[services.x]\nunit = \"x.service\"\nprobe = {table}\n"
        ))
    }

    fn endpoint(text: &str) -> Option<Endpoint> {
        match Endpoint::parse(text) {
            Ok(endpoint) => Some(endpoint),
            Err(err) => panic!("{text}: {err}"),
        }
    }

    fn spec(protocol: Protocol, address: &str, tls: ProbeTlsMode) -> ProbeSpec {
        ProbeSpec::new(protocol, endpoint(address), "config").with_tls(tls)
    }

    fn smtp() -> Protocol {
        Protocol::Smtp {
            helo_name: "selfheal.invalid".into(),
        }
    }

    #[test]
    fn connect_kinds_parse() {
        use ProbeTlsMode::{Implicit, Off};
        let cases = [
            (
                r#"{ tcp = "127.0.0.1:10030" }"#,
                spec(Protocol::Connect, "127.0.0.1:10030", Off),
            ),
            (
                r#"{ unix = "/run/filter.sock" }"#,
                spec(Protocol::Connect, "/run/filter.sock", Off),
            ),
            (
                r#"{ tls = "127.0.0.1:10031" }"#,
                spec(Protocol::Connect, "127.0.0.1:10031", Implicit),
            ),
            (
                r#"{ tcp = "127.0.0.1:10031", tls = true }"#,
                spec(Protocol::Connect, "127.0.0.1:10031", Implicit),
            ),
            (
                r#"{ send = "PING\r\n", expect = "PONG", tcp = "127.0.0.1:10030" }"#,
                spec(
                    Protocol::SendExpect {
                        send: "PING\r\n".into(),
                        expect: "PONG".into(),
                    },
                    "127.0.0.1:10030",
                    Off,
                ),
            ),
            (
                r#"{ unix = "/run/filter.sock", expect = "220 " }"#,
                spec(
                    Protocol::SendExpect {
                        send: String::new(),
                        expect: "220 ".into(),
                    },
                    "/run/filter.sock",
                    Off,
                ),
            ),
        ];
        for (table, expected) in cases {
            assert_eq!(probe_of(table), expected, "{table}");
        }
    }

    #[test]
    fn mail_kinds_parse() {
        use ProbeTlsMode::{Implicit, Off, Starttls};
        let cases = [
            (
                r#"{ smtp = "127.0.0.1:25" }"#,
                spec(smtp(), "127.0.0.1:25", Off),
            ),
            (
                r#"{ smtp = "127.0.0.1:587", starttls = true }"#,
                spec(smtp(), "127.0.0.1:587", Starttls),
            ),
            (
                r#"{ smtp = "127.0.0.1:465", tls = true }"#,
                spec(smtp(), "127.0.0.1:465", Implicit),
            ),
            (
                r#"{ smtp = "127.0.0.1:25", starttls = false, tls = false }"#,
                spec(smtp(), "127.0.0.1:25", Off),
            ),
            (
                r#"{ smtp = "[::1]:25", helo_name = "probe.example.org" }"#,
                spec(
                    Protocol::Smtp {
                        helo_name: "probe.example.org".into(),
                    },
                    "[::1]:25",
                    Off,
                ),
            ),
            (
                r#"{ lmtp = "/var/spool/postfix/private/dovecot-lmtp" }"#,
                spec(
                    Protocol::Lmtp {
                        helo_name: "selfheal.invalid".into(),
                    },
                    "/var/spool/postfix/private/dovecot-lmtp",
                    Off,
                ),
            ),
            (
                r#"{ imap = "127.0.0.1:143", starttls = true }"#,
                spec(Protocol::Imap, "127.0.0.1:143", Starttls),
            ),
            (
                r#"{ imap = "127.0.0.1:993", tls = true }"#,
                spec(Protocol::Imap, "127.0.0.1:993", Implicit),
            ),
            (
                r#"{ pop3 = "127.0.0.1:110" }"#,
                spec(Protocol::Pop3, "127.0.0.1:110", Off),
            ),
            (
                r#"{ spamd = "127.0.0.1:783" }"#,
                spec(Protocol::Spamd, "127.0.0.1:783", Off),
            ),
            (
                r#"{ spamd = "/run/spamd.sock" }"#,
                spec(Protocol::Spamd, "/run/spamd.sock", Off),
            ),
        ];
        for (table, expected) in cases {
            assert_eq!(probe_of(table), expected, "{table}");
        }
    }

    #[test]
    fn milter_addresses_parse() {
        let cases = [
            ("inet:8891@localhost", "127.0.0.1:8891"),
            ("inet:8891", "127.0.0.1:8891"),
            ("inet6:8891@::1", "[::1]:8891"),
            ("inet:localhost:8892", "127.0.0.1:8892"),
            (
                "unix:/run/opendkim/opendkim.sock",
                "/run/opendkim/opendkim.sock",
            ),
            (
                "local:/run/opendkim/opendkim.sock",
                "/run/opendkim/opendkim.sock",
            ),
            ("127.0.0.1:8891", "127.0.0.1:8891"),
            ("/run/milter.sock", "/run/milter.sock"),
        ];
        for (address, expected) in cases {
            let probe = probe_of(&format!("{{ milter = \"{address}\" }}"));
            assert_eq!(
                probe,
                spec(Protocol::Milter, expected, ProbeTlsMode::Off),
                "{address}"
            );
        }
    }

    #[test]
    fn http_kind_parses() {
        let probe = probe_of(
            r#"{ http = "127.0.0.1:80", path = "/", host = "localhost", expect = "2xx" }"#,
        );
        let expected = Protocol::Http {
            path: "/".into(),
            host: "localhost".into(),
            expect: StatusClass(2),
        };
        assert_eq!(
            probe,
            spec(expected.clone(), "127.0.0.1:80", ProbeTlsMode::Off)
        );
        // The same values are the defaults.
        assert_eq!(probe_of(r#"{ http = "127.0.0.1:80" }"#).protocol, expected);

        let probe = probe_of(
            r#"{ http = "127.0.0.1:443", tls = true, path = "/healthz?full=1", host = "mail.example.org", expect = "3XX" }"#,
        );
        assert_eq!(
            probe.protocol,
            Protocol::Http {
                path: "/healthz?full=1".into(),
                host: "mail.example.org".into(),
                expect: StatusClass(3),
            }
        );
        assert_eq!(probe.tls.mode, ProbeTlsMode::Implicit);
    }

    #[test]
    fn service_kinds_parse() {
        let cases = [
            (
                r#"{ dns = "127.0.0.1:53", name = "localhost.", outside_name = "debian.org." }"#,
                spec(
                    Protocol::Dns {
                        name: "localhost.".into(),
                        outside_name: Some("debian.org.".into()),
                    },
                    "127.0.0.1:53",
                    ProbeTlsMode::Off,
                ),
            ),
            (
                r#"{ dns = "127.0.0.1:53", name = "mail.example.org", outside_name = "debian.org" }"#,
                spec(
                    Protocol::Dns {
                        name: "mail.example.org.".into(),
                        outside_name: Some("debian.org.".into()),
                    },
                    "127.0.0.1:53",
                    ProbeTlsMode::Off,
                ),
            ),
            (
                r#"{ dns = "[::1]:53" }"#,
                spec(
                    Protocol::Dns {
                        name: "localhost.".into(),
                        outside_name: None,
                    },
                    "[::1]:53",
                    ProbeTlsMode::Off,
                ),
            ),
            (
                r#"{ fail2ban = "/run/fail2ban/fail2ban.sock" }"#,
                spec(
                    Protocol::Fail2ban,
                    "/run/fail2ban/fail2ban.sock",
                    ProbeTlsMode::Off,
                ),
            ),
            (
                r#"{ syslog = "/run/systemd/journal/syslog", verify_file = "/var/log/syslog" }"#,
                spec(
                    Protocol::Syslog {
                        verify_file: Some("/var/log/syslog".into()),
                    },
                    "/run/systemd/journal/syslog",
                    ProbeTlsMode::Off,
                ),
            ),
            (
                r#"{ syslog = "/dev/log" }"#,
                spec(
                    Protocol::Syslog { verify_file: None },
                    "/dev/log",
                    ProbeTlsMode::Off,
                ),
            ),
            (
                r#"{ mysql = "127.0.0.1:3306" }"#,
                spec(
                    Protocol::Mysql { credentials: None },
                    "127.0.0.1:3306",
                    ProbeTlsMode::Off,
                ),
            ),
        ];
        for (table, expected) in cases {
            assert_eq!(probe_of(table), expected, "{table}");
        }
    }

    #[test]
    fn mysql_credentials_file() {
        let dir = tempdir();
        let credentials = write_file(dir.path(), "debian.cnf", "[client]\nuser = root\n", 0o600);
        let probe = probe_of(&format!(
            "{{ mysql = \"/run/mysqld/mysqld.sock\", credentials = \"{}\" }}",
            credentials.display()
        ));
        assert_eq!(
            probe,
            spec(
                Protocol::Mysql {
                    credentials: Some(credentials.clone()),
                },
                "/run/mysqld/mysqld.sock",
                ProbeTlsMode::Off,
            )
        );

        let missing = dir.path().join("absent.cnf");
        let error = probe_error(&format!(
            "{{ mysql = \"/run/mysqld/mysqld.sock\", credentials = \"{}\" }}",
            missing.display()
        ));
        assert_eq!(error.key, "services.x.probe.credentials");
        assert!(
            error.message.starts_with("cannot read credentials file"),
            "{error}"
        );

        let error = probe_error(&format!(
            "{{ mysql = \"/run/mysqld/mysqld.sock\", credentials = \"{}\" }}",
            dir.path().display()
        ));
        assert!(error.message.contains("is not a regular file"), "{error}");
    }

    #[test]
    fn readable_credentials_warn() {
        let dir = tempdir();
        let credentials = write_file(dir.path(), "my.cnf", "[client]\npassword = x\n", 0o644);
        let config = ok(&format!(
            "[services.x]\nunit = \"x.service\"\n\
             probe = {{ mysql = \"/run/mysqld/mysqld.sock\", credentials = \"{}\" }}\n",
            credentials.display()
        ));
        assert_eq!(config.warnings.len(), 1);
        assert_eq!(config.warnings[0].line, 3);
        assert!(
            config.warnings[0].message.contains("mode 0644"),
            "{}",
            config.warnings[0].message
        );
    }

    #[test]
    fn command_kind_parses() {
        let dir = tempdir();
        let program = write_file(dir.path(), "filter-check", "#!/bin/sh\nexit 0\n", 0o755);
        let probe = probe_of(&format!(
            "{{ command = [\"{}\", \"--quick\"] }}",
            program.display()
        ));
        let argv = vec![program.display().to_string(), "--quick".to_string()];
        assert_eq!(
            probe,
            ProbeSpec::new(Protocol::Command { argv }, None, "config")
        );

        let probe = probe_of(&format!(
            "{{ command = \"{} --quick\" }}",
            program.display()
        ));
        assert_eq!(probe.protocol.name(), "command");
    }

    #[test]
    fn command_checks() {
        let dir = tempdir();
        let plain = write_file(dir.path(), "notes.txt", "x\n", 0o644);
        let cases = [
            (r#"{ command = [] }"#.to_string(), "must not be empty"),
            (
                r#"{ command = ["filter-check", "--quick"] }"#.to_string(),
                "must be an absolute path",
            ),
            (
                format!("{{ command = [\"{}/absent\"] }}", dir.path().display()),
                "not found",
            ),
            (
                format!("{{ command = [\"{}\"] }}", plain.display()),
                "is not an executable file",
            ),
            (
                r#"{ command = "/bin/x 'a b'" }"#.to_string(),
                "array of arguments",
            ),
        ];
        for (table, expected) in cases {
            let error = probe_error(&table);
            assert_eq!(error.line, 3, "{table}");
            assert_eq!(error.key, "services.x.probe.command", "{table}");
            assert!(error.message.contains(expected), "{table}: {error}");
        }
    }

    #[test]
    fn tls_options_parse() {
        let probe = probe_of(
            r#"{ imap = "127.0.0.1:993", tls = true, server_name = "mail.example.org", verify_cert = true, cert_warn_days = 30 }"#,
        );
        assert_eq!(probe.tls.mode, ProbeTlsMode::Implicit);
        assert_eq!(probe.tls.server_name.as_deref(), Some("mail.example.org"));
        assert!(probe.tls.verify);
        assert_eq!(probe.tls.warn_days, 30);

        let probe = probe_of(r#"{ tls = "127.0.0.1:443", cert_warn_days = 0 }"#);
        assert_eq!(probe.tls.warn_days, 0);
        assert!(!probe.tls.verify);
        assert_eq!(probe.tls.server_name, None);

        let probe =
            probe_of(r#"{ smtp = "127.0.0.1:587", starttls = true, server_name = "192.0.2.1" }"#);
        assert_eq!(probe.tls.server_name.as_deref(), Some("192.0.2.1"));
    }

    #[test]
    fn misplaced_options_rejected() {
        let cases = [
            (
                r#"{ http = "127.0.0.1:80", starttls = true }"#,
                "starttls",
                "`starttls` does not apply to http probes; it applies to smtp, lmtp, imap and \
                 pop3 probes",
            ),
            (
                r#"{ smtp = "127.0.0.1:25", name = "localhost." }"#,
                "name",
                "`name` does not apply to smtp probes; it applies to dns probes",
            ),
            (
                r#"{ milter = "inet:8891", tls = true }"#,
                "tls",
                "`tls` does not apply to milter probes; it applies to tcp, smtp, lmtp, imap, \
                 pop3 and http probes, and a string value makes a tls probe of its own",
            ),
            (
                r#"{ unix = "/run/x.sock", credentials = "/etc/mysql/debian.cnf" }"#,
                "credentials",
                "`credentials` does not apply to unix probes; it applies to mysql probes",
            ),
            (
                r#"{ dns = "127.0.0.1:53", verify_file = "/var/log/syslog" }"#,
                "verify_file",
                "`verify_file` does not apply to dns probes; it applies to syslog probes",
            ),
            (
                r#"{ imap = "127.0.0.1:143", helo_name = "x.example" }"#,
                "helo_name",
                "`helo_name` does not apply to imap probes; it applies to smtp and lmtp probes",
            ),
            (
                r#"{ tls = "127.0.0.1:443", send = "x" }"#,
                "send",
                "`send` does not apply to tls probes; it applies to tcp and unix probes",
            ),
        ];
        for (table, key, message) in cases {
            let error = probe_error(table);
            assert_eq!(error.line, 3, "{table}");
            assert_eq!(error.key, format!("services.x.probe.{key}"), "{table}");
            assert_eq!(error.message, message, "{table}");
            assert!(error.example.is_some(), "{table}");
        }
        let error = probe_error(r#"{ smtp = "127.0.0.1:25", expect = "250" }"#);
        assert_eq!(error.example.as_deref(), Some(SEND_EXPECT_EXAMPLE));
    }

    #[test]
    fn starttls_and_tls_conflict() {
        let text = "[services.x]\nunit = \"x.service\"\n[services.x.probe]\n\
                    smtp = \"127.0.0.1:587\"\ntls = true\nstarttls = true\n";
        let error = single(text);
        assert_eq!(error.line, 6);
        assert_eq!(error.key, "services.x.probe.starttls");
        assert!(error.message.contains("are both set"), "{error}");
    }

    #[test]
    fn tls_only_options_need_tls() {
        for option in [
            "server_name = \"mail.example.org\"",
            "verify_cert = true",
            "cert_warn_days = 7",
        ] {
            let error = probe_error(&format!("{{ smtp = \"127.0.0.1:25\", {option} }}"));
            let name = option.split(' ').next().unwrap_or_default();
            assert_eq!(error.key, format!("services.x.probe.{name}"));
            assert_eq!(
                error.message,
                format!(
                    "`{name}` applies only to a probe with TLS; add `tls = true` or \
                     `starttls = true`"
                )
            );
        }
        let error = probe_error(r#"{ tcp = "127.0.0.1:25", verify_cert = true }"#);
        assert!(error.message.ends_with("add `tls = true`"), "{error}");
    }

    #[test]
    fn option_values_checked() {
        let cases = [
            (
                r#"{ http = "127.0.0.1:80", expect = "200" }"#,
                "expect",
                "invalid status class \"200\"",
            ),
            (
                r#"{ http = "127.0.0.1:80", expect = "1xx" }"#,
                "expect",
                "invalid status class",
            ),
            (
                r#"{ http = "127.0.0.1:80", expect = 2 }"#,
                "expect",
                "expected a string",
            ),
            (
                r#"{ http = "127.0.0.1:80", path = "index.html" }"#,
                "path",
                "starts with /",
            ),
            (
                r#"{ http = "127.0.0.1:80", host = "localhost/x" }"#,
                "host",
                "contains /",
            ),
            (
                r#"{ http = "127.0.0.1:80", host = "" }"#,
                "host",
                "must not be empty",
            ),
            (
                r#"{ dns = "127.0.0.1:53", name = "a..b" }"#,
                "name",
                "empty label",
            ),
            (
                r#"{ dns = "127.0.0.1:53", name = "bad name." }"#,
                "name",
                "spaces",
            ),
            (
                r#"{ dns = "127.0.0.1:53", outside_name = "x!.org" }"#,
                "outside_name",
                "characters other than",
            ),
            (
                r#"{ smtp = "127.0.0.1:25", helo_name = "[300.1.1.1]" }"#,
                "helo_name",
                "address literal",
            ),
            (
                r#"{ smtp = "127.0.0.1:25", helo_name = "a..b" }"#,
                "helo_name",
                "host name",
            ),
            (
                r#"{ smtp = "127.0.0.1:25", starttls = "yes" }"#,
                "starttls",
                "expected true or false",
            ),
            (
                r#"{ smtp = "127.0.0.1:25", tls = 1 }"#,
                "tls",
                "expected true or false",
            ),
            (
                r#"{ tls = "127.0.0.1:443", cert_warn_days = 400 }"#,
                "cert_warn_days",
                "from 0 to 365",
            ),
            (
                r#"{ tls = "127.0.0.1:443", server_name = "a..b" }"#,
                "server_name",
                "invalid server name",
            ),
            (
                r#"{ tcp = "127.0.0.1:1", expect = "a\nb" }"#,
                "expect",
                "without line breaks",
            ),
            (
                r#"{ tcp = "127.0.0.1:1", expect = "" }"#,
                "expect",
                "non-empty",
            ),
            (
                r#"{ tcp = "127.0.0.1:1", send = "PING" }"#,
                "send",
                "`send` needs `expect`",
            ),
            (
                r#"{ syslog = "/dev/log", verify_file = "syslog" }"#,
                "verify_file",
                "absolute path",
            ),
        ];
        for (table, key, expected) in cases {
            let error = probe_error(table);
            assert_eq!(error.line, 3, "{table}");
            assert_eq!(error.key, format!("services.x.probe.{key}"), "{table}");
            assert!(error.message.contains(expected), "{table}: {error}");
        }
    }

    #[test]
    fn endpoint_forms_checked() {
        let cases = [
            (
                r#"{ tcp = "/run/x.sock" }"#,
                "tcp",
                "needs host:port, not a socket path",
            ),
            (r#"{ tls = "/run/x.sock" }"#, "tls", "needs host:port"),
            (r#"{ dns = "/run/x.sock" }"#, "dns", "needs host:port"),
            (r#"{ dns = "127.0.0.1" }"#, "dns", "missing port"),
            (
                r#"{ smtp = "run/x.sock" }"#,
                "smtp",
                "or an absolute socket path",
            ),
            (
                r#"{ smtp = "127.0.0.1:smtp" }"#,
                "smtp",
                "port must be a number",
            ),
            (
                r#"{ mysql = "mysqld.sock" }"#,
                "mysql",
                "or an absolute socket path",
            ),
            (
                r#"{ milter = "inet:dkim@localhost" }"#,
                "milter",
                "invalid milter probe address",
            ),
            (
                r#"{ milter = "unix:run/x.sock" }"#,
                "milter",
                "not absolute",
            ),
            (
                r#"{ milter = "opendkim.sock" }"#,
                "milter",
                "milter notation",
            ),
            (
                r#"{ fail2ban = "127.0.0.1:1" }"#,
                "fail2ban",
                "absolute path",
            ),
            (r#"{ syslog = "127.0.0.1:514" }"#, "syslog", "absolute path"),
            (r#"{ unix = 25 }"#, "unix", "expected a string"),
        ];
        for (table, key, expected) in cases {
            let error = probe_error(table);
            assert_eq!(error.line, 3, "{table}");
            assert_eq!(error.key, format!("services.x.probe.{key}"), "{table}");
            assert!(error.message.contains(expected), "{table}: {error}");
        }
        let long = format!("/run/{}.sock", "x".repeat(110));
        let error = probe_error(&format!("{{ milter = \"unix:{long}\" }}"));
        assert!(error.message.contains("at most 107 bytes"), "{error}");
    }

    #[test]
    fn one_kind_per_probe() {
        let error = probe_error(r#"{ smtp = "127.0.0.1:25", imap = "127.0.0.1:143" }"#);
        assert_eq!(error.key, "services.x.probe.imap");
        assert_eq!(
            error.message,
            "a probe has one endpoint, but `smtp` and `imap` both name one; list several \
             probes with `probes`"
        );
        let error = probe_error(r#"{ smtp = "127.0.0.1:25", tls = "127.0.0.1:465" }"#);
        assert_eq!(error.key, "services.x.probe.tls");

        let error = probe_error(r#"{ starttls = true }"#);
        assert!(
            error.message.starts_with("a probe needs an endpoint"),
            "{error}"
        );
        assert_eq!(error.key, "services.x.probe");
    }

    #[test]
    fn unknown_probe_option() {
        let error = probe_error(r#"{ tcp = "127.0.0.1:1", sned = "x", expect = "y" }"#);
        assert_eq!(error.key, "services.x.probe.sned");
        assert!(error.message.contains("did you mean `send`"), "{error}");
        let error = probe_error(r#"{ smtps = "127.0.0.1:465" }"#);
        assert!(error.message.contains("did you mean `smtp`"), "{error}");
    }

    #[test]
    fn probe_errors_in_array_lines() {
        let text = "[services.x]\n\
                    unit = \"x.service\"\n\
                    probes = [\n\
                    \x20 { smtp = \"127.0.0.1:25\" },\n\
                    \x20 { http = \"127.0.0.1:80\", starttls = true },\n\
                    \x20 { dns = \"127.0.0.1:53\", name = \"a..b\" },\n\
                    ]\n";
        let found = errors(text);
        let located: Vec<(usize, &str)> = found.iter().map(|e| (e.line, e.key.as_str())).collect();
        assert_eq!(
            located,
            [
                (5, "services.x.probes[1].starttls"),
                (6, "services.x.probes[2].name"),
            ]
        );
    }

    #[test]
    fn probe_sub_table_lines() {
        let text = "[services.x]\n\
                    unit = \"x.service\"\n\
                    \n\
                    [[services.x.probes]]\n\
                    smtp = \"127.0.0.1:587\"\n\
                    starttls = true\n\
                    \n\
                    [[services.x.probes]]\n\
                    imap = \"127.0.0.1:143\"\n\
                    helo_name = \"x.example\"\n";
        let error = single(text);
        assert_eq!(error.line, 10);
        assert_eq!(error.key, "services.x.probes[1].helo_name");
    }

    #[test]
    fn preset_probe_override_kinds() {
        let config = ok("[services.postfix]\n\
                         probes = [\n\
                         \x20 { smtp = \"127.0.0.1:25\" },\n\
                         \x20 { smtp = \"127.0.0.1:587\", starttls = true },\n\
                         \x20 { smtp = \"127.0.0.1:465\", tls = true },\n\
                         ]\n");
        let modes: Vec<ProbeTlsMode> = config.services[0]
            .probes
            .iter()
            .map(|probe| probe.tls.mode)
            .collect();
        assert_eq!(
            modes,
            [
                ProbeTlsMode::Off,
                ProbeTlsMode::Starttls,
                ProbeTlsMode::Implicit
            ]
        );
        assert!(config.services[0]
            .probes
            .iter()
            .all(|p| p.source == "config"));
    }

    #[test]
    fn check_dns_name_limits() {
        assert_eq!(check_dns_name("."), Ok(()));
        assert_eq!(check_dns_name("localhost"), Ok(()));
        assert_eq!(check_dns_name("_dmarc.example.org."), Ok(()));
        assert!(check_dns_name("").is_err());
        assert!(check_dns_name("..").is_err());
        assert!(check_dns_name(&format!("{}.org", "a".repeat(64))).is_err());
        let long = vec!["a".repeat(63); 4].join(".");
        assert_eq!(long.len(), 255);
        assert!(check_dns_name(&long).is_err());
    }

    #[test]
    fn status_class_forms() {
        assert_eq!(parse_status_class("2xx"), Some(StatusClass(2)));
        assert_eq!(parse_status_class("5XX"), Some(StatusClass(5)));
        assert_eq!(parse_status_class("1xx"), None);
        assert_eq!(parse_status_class("6xx"), None);
        assert_eq!(parse_status_class("2x"), None);
        assert_eq!(parse_status_class("200"), None);
        assert_eq!(parse_status_class(""), None);
    }

    #[test]
    fn join_with_and_forms() {
        assert_eq!(join_with_and(&[]), "");
        assert_eq!(join_with_and(&["a"]), "a");
        assert_eq!(join_with_and(&["a", "b"]), "a and b");
        assert_eq!(join_with_and(&["a", "b", "c"]), "a, b and c");
    }
}
