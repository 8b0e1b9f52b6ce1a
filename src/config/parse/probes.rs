//! Probe tables such as `{ smtp = "127.0.0.1:25", starttls = true }`: every probe kind, its
//! endpoint form and the options it takes, and the checks of those values.

use std::fs;
use std::net::Ipv6Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use rustls::pki_types::ServerName;
use toml_edit::Value;

use super::checker::{example_of, known_example, Checker, Field, Keys, MAX_SOCKET_PATH};
use super::services::SERVICE_KEYS;
use crate::config::discover::parse_milter_address;
use crate::config::{CONFIG_SOURCE, DEFAULT_DNS_NAME, DEFAULT_HELO_NAME};
use crate::probe::{Endpoint, ProbeSpec, Protocol, StatusClass, TlsMode as ProbeTlsMode};

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
pub(super) const SEND_EXPECT_EXAMPLE: &str =
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

/// Probe tables: `probe = { smtp = "127.0.0.1:25", starttls = true }` and the elements of
/// `probes`.
impl Checker<'_> {
    /// Reads one probe table: exactly one kind key with its endpoint, and the options that kind
    /// takes. Returns `None` after reporting any problem.
    pub(super) fn probe(&mut self, field: &Field<'_>) -> Option<ProbeSpec> {
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
pub(super) fn check_dns_name(name: &str) -> Result<(), String> {
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
pub(super) fn parse_status_class(text: &str) -> Option<StatusClass> {
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
pub(super) fn join_with_and(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}
