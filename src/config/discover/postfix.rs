//! Postfix: SMTP listeners from master.cf, their address from main.cf's `inet_interfaces`, and
//! milter addresses as Postfix's daemons reach them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::root::Root;
use super::{fallback, file_source, parse_milter_address, relocated, warning, Discovery};
use crate::config::ConfigError;
use crate::probe::{Endpoint, ProbeSpec, TlsMode};

const PRESET: &str = "postfix";
const MASTER_CF: &str = "/etc/postfix/master.cf";
const MAIN_CF: &str = "/etc/postfix/main.cf";
const SERVICES: &str = "/etc/services";
/// Postfix's `queue_directory` unless main.cf sets it; chrooted daemons use it as their root.
const DEFAULT_QUEUE_DIRECTORY: &str = "/var/spool/postfix";
const EXAMPLE: &str = r#"probe = { smtp = "127.0.0.1:25" }"#;

/// Ports of the service names master.cf uses for SMTP, for a root without /etc/services.
/// `smtps` is an alias of `submissions` in Debian's /etc/services.
const SMTP_PORTS: [(&str, u16); 4] = [
    ("smtp", 25),
    ("submission", 587),
    ("submissions", 465),
    ("smtps", 465),
];

/// Depth of `$name` expansion in main.cf values, against definitions that refer to each other.
const MAX_EXPANSION_DEPTH: usize = 8;

/// Finds Postfix's SMTP listeners: one smtp probe for each `inet` service in master.cf that
/// runs smtpd or postscreen.
pub(super) fn discover(root: &Root) -> Discovery {
    let master_path = Path::new(MASTER_CF);
    let master_text = match root.read(master_path) {
        Ok(text) => text,
        Err(err) => {
            return Discovery {
                probes: fallback(PRESET, &err.describe(master_path)),
                warnings: Vec::new(),
            }
        }
    };
    let mut warnings = Vec::new();
    let main = MainCf::read(root, &mut warnings);
    let entries = master_entries(&master_text, &mut warnings);
    let default_host = main.listen_host();

    let mut probes = Vec::new();
    for entry in &entries {
        if entry.kind != "inet" || !matches!(entry.command.as_str(), "smtpd" | "postscreen") {
            continue;
        }
        match listener(root, entry, &default_host) {
            Ok(probe) => probes.push(probe),
            Err(message) => warnings.push(warning(
                PRESET,
                master_path,
                entry.line,
                format!("{message}; this listener is not probed"),
                EXAMPLE,
            )),
        }
    }
    if probes.is_empty() {
        warnings.push(warning(
            PRESET,
            master_path,
            0,
            "no smtpd or postscreen inet listener is enabled, so Postfix is checked by its \
             unit state only; set `probe = false` to confirm, or name the listener"
                .to_string(),
            EXAMPLE,
        ));
    }
    Discovery { probes, warnings }
}

/// Builds the smtp probe of one master.cf listener.
fn listener(root: &Root, entry: &MasterEntry, default_host: &str) -> Result<ProbeSpec, String> {
    let (host, service) = match entry.service.rsplit_once(':') {
        Some((host, service)) => (Some(host), service),
        None => (None, entry.service.as_str()),
    };
    let port = service_port(root, service).ok_or_else(|| {
        format!(
            "unknown port \"{service}\" in service {}; write the port number or add the name \
             to /etc/services",
            entry.service
        )
    })?;
    let host = match host {
        Some(host) => probe_host(host)
            .ok_or_else(|| format!("invalid host \"{host}\" in service {}", entry.service))?,
        None => default_host.to_string(),
    };

    let wrapper_mode = entry.has_setting("smtpd_tls_wrappermode", "yes");
    let tls_off = entry.has_setting("smtpd_tls_security_level", "none");
    let tls = if wrapper_mode || port == 465 {
        TlsMode::Implicit
    } else if (port == 587 && !tls_off) || entry.has_setting("smtpd_tls_security_level", "encrypt")
    {
        TlsMode::Starttls
    } else {
        TlsMode::Off
    };

    let endpoint = Endpoint::Tcp { host, port };
    let source = file_source(Path::new(MASTER_CF), entry.line);
    let mut probes = relocated(PRESET, endpoint, source);
    let mut probe = probes
        .pop()
        .ok_or_else(|| "the postfix preset has no probe".to_string())?;
    probe.tls.mode = tls;
    Ok(probe)
}

/// Maps the host part of a master.cf service or of `inet_interfaces` to the address a probe
/// connects to. Wildcards and `localhost` become loopback.
fn probe_host(host: &str) -> Option<String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.is_empty() || bare.contains(char::is_whitespace) {
        return None;
    }
    if bare.eq_ignore_ascii_case("localhost") {
        return Some("127.0.0.1".to_string());
    }
    match bare.parse::<IpAddr>() {
        Ok(IpAddr::V4(address)) if address.is_unspecified() => Some("127.0.0.1".to_string()),
        Ok(IpAddr::V6(address)) if address.is_unspecified() => Some("::1".to_string()),
        Ok(address) => Some(address.to_string()),
        Err(_) if bare.contains(':') => None,
        Err(_) => Some(bare.to_string()),
    }
}

/// Looks up a master.cf service name or number as a TCP port: a number, a name in
/// /etc/services below the root, or one of the SMTP names Postfix ships with.
fn service_port(root: &Root, service: &str) -> Option<u16> {
    if let Ok(port) = service.parse::<u16>() {
        return (port > 0).then_some(port);
    }
    if let Ok(text) = root.read(Path::new(SERVICES)) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut fields = line.split_whitespace();
            let (Some(name), Some(port_protocol)) = (fields.next(), fields.next()) else {
                continue;
            };
            let Some(port) = port_protocol.strip_suffix("/tcp") else {
                continue;
            };
            if name == service || fields.any(|alias| alias == service) {
                if let Ok(port) = port.parse::<u16>() {
                    return Some(port);
                }
            }
        }
    }
    SMTP_PORTS
        .iter()
        .find(|(name, _)| *name == service)
        .map(|(_, port)| *port)
}

/// A logical line of master.cf or main.cf: a line that starts with non-whitespace text and the
/// lines that continue it, which start with whitespace. Comment lines (first non-whitespace
/// `#`) and blank lines are skipped, also between continuation lines, as Postfix does.
struct LogicalLine {
    /// 1-based number of the first line.
    line: usize,
    text: String,
}

fn logical_lines(text: &str) -> Vec<LogicalLine> {
    let mut lines: Vec<LogicalLine> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let continues = raw.starts_with(char::is_whitespace);
        match lines.last_mut() {
            Some(last) if continues => {
                last.text.push(' ');
                last.text.push_str(trimmed);
            }
            _ => lines.push(LogicalLine {
                line: index + 1,
                text: trimmed.to_string(),
            }),
        }
    }
    lines
}

/// One service entry of master.cf.
struct MasterEntry {
    line: usize,
    /// Field 1: the service name, `[host:]port` for an inet service.
    service: String,
    /// Field 2: inet, unix, unix-dgram, fifo or pass.
    kind: String,
    /// Field 5: whether the daemon runs chrooted in the queue directory. `-` means no, the
    /// default since Postfix 3.0.
    chroot: bool,
    /// Field 8: the daemon program, such as smtpd.
    command: String,
    /// The program's arguments, `-o name=value` overrides among them.
    arguments: Vec<String>,
}

impl MasterEntry {
    /// Checks whether the arguments override `name` with `value` (`-o name=value`, also written with
    /// spaces around `=` inside braces). Values compare without case.
    fn has_setting(&self, name: &str, value: &str) -> bool {
        let joined = self.arguments.join(" ");
        let mut compact = joined.replace(['{', '}'], " ");
        while compact.contains(" =") || compact.contains("= ") {
            compact = compact.replace(" =", "=").replace("= ", "=");
        }
        compact.split_whitespace().any(|token| {
            token
                .split_once('=')
                .is_some_and(|(key, found)| key == name && found.eq_ignore_ascii_case(value))
        })
    }
}

/// Reads the service entries of master.cf; a line with fewer than 8 fields is skipped with a
/// warning.
fn master_entries(text: &str, warnings: &mut Vec<ConfigError>) -> Vec<MasterEntry> {
    let mut entries = Vec::new();
    for logical in logical_lines(text) {
        let fields: Vec<&str> = logical.text.split_whitespace().collect();
        let [service, kind, _private, _unprivileged, chroot, _wakeup, _max_processes, command, arguments @ ..] =
            fields.as_slice()
        else {
            warnings.push(warning(
                PRESET,
                Path::new(MASTER_CF),
                logical.line,
                format!(
                    "expected 8 fields (service, type, private, unpriv, chroot, wakeup, \
                     maxproc, command), found {}; line skipped",
                    fields.len()
                ),
                EXAMPLE,
            ));
            continue;
        };
        entries.push(MasterEntry {
            line: logical.line,
            service: (*service).to_string(),
            kind: (*kind).to_string(),
            chroot: *chroot == "y",
            command: (*command).to_string(),
            arguments: arguments
                .iter()
                .map(|argument| argument.to_string())
                .collect(),
        });
    }
    entries
}

/// Parameters of main.cf, each with the line of its last definition, which is the one Postfix
/// uses.
struct MainCf {
    parameters: HashMap<String, (String, usize)>,
}

impl MainCf {
    /// Reads main.cf; a missing or unreadable file leaves every parameter at its default.
    fn read(root: &Root, warnings: &mut Vec<ConfigError>) -> MainCf {
        let text = root.read(Path::new(MAIN_CF)).unwrap_or_default();
        MainCf::parse(&text, warnings)
    }

    fn parse(text: &str, warnings: &mut Vec<ConfigError>) -> MainCf {
        let mut parameters = HashMap::new();
        for logical in logical_lines(text) {
            match logical.text.split_once('=') {
                Some((name, value)) if !name.trim().is_empty() => {
                    parameters.insert(
                        name.trim().to_string(),
                        (value.trim().to_string(), logical.line),
                    );
                }
                _ => warnings.push(warning(
                    PRESET,
                    Path::new(MAIN_CF),
                    logical.line,
                    format!(
                        "expected `name = value`, found \"{}\"; line skipped",
                        logical.text
                    ),
                    "",
                )),
            }
        }
        MainCf { parameters }
    }

    /// Returns the value of a parameter, with each whole-word `$name` or `${name}` expanded, and the
    /// line of its definition.
    fn get(&self, name: &str) -> Option<(Vec<String>, usize)> {
        let (value, line) = self.parameters.get(name)?;
        Some((self.expand(value, 0), *line))
    }

    /// Splits a list value on commas and whitespace, expanding whole-word references. Group
    /// braces of Postfix 3 (`{ inet:host:port, default_action=accept }`) are dropped.
    fn expand(&self, value: &str, depth: usize) -> Vec<String> {
        let mut words = Vec::new();
        for word in value.split(|c: char| c == ',' || c == '{' || c == '}' || c.is_whitespace()) {
            if word.is_empty() {
                continue;
            }
            let reference = word
                .strip_prefix("${")
                .and_then(|rest| rest.strip_suffix('}'))
                .or_else(|| word.strip_prefix('$'));
            match reference.and_then(|name| self.parameters.get(name)) {
                Some((inner, _)) if depth < MAX_EXPANSION_DEPTH => {
                    words.extend(self.expand(inner, depth + 1));
                }
                _ => words.push(word.to_string()),
            }
        }
        words
    }

    /// Chooses the address a probe of a listener without a host connects to, from
    /// `inet_interfaces`
    /// (default `all`) and `inet_protocols` (default `all`): loopback when Postfix listens on
    /// all interfaces or on loopback, otherwise the first address it lists.
    fn listen_host(&self) -> String {
        let protocols = self
            .get("inet_protocols")
            .map_or_else(|| vec!["all".to_string()], |(words, _)| words);
        let ipv4 = protocols
            .iter()
            .any(|protocol| protocol == "all" || protocol == "ipv4");
        let loopback = if ipv4 { "127.0.0.1" } else { "::1" };
        let interfaces = self
            .get("inet_interfaces")
            .map_or_else(|| vec!["all".to_string()], |(words, _)| words);

        let mut hosts = Vec::new();
        for interface in &interfaces {
            let lower = interface.to_ascii_lowercase();
            if matches!(lower.as_str(), "all" | "loopback-only" | "localhost") {
                return loopback.to_string();
            }
            if !interface.starts_with('$') {
                hosts.extend(probe_host(interface));
            }
        }
        let is_loopback = |host: &&String| {
            host.parse::<IpAddr>()
                .is_ok_and(|address| address.is_loopback())
        };
        let first_loopback = hosts.iter().find(is_loopback);
        first_loopback
            .or(hosts.first())
            .cloned()
            .unwrap_or_else(|| loopback.to_string())
    }
}

/// A milter named in main.cf, with the address Postfix's daemon reaches it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PostfixMilter {
    /// The address as main.cf writes it, such as `unix:/opendkim/opendkim.sock`.
    pub(super) written: String,
    pub(super) endpoint: Endpoint,
    /// `smtpd_milters` or `non_smtpd_milters`.
    pub(super) parameter: &'static str,
    pub(super) line: usize,
    /// The queue directory the path was resolved in, when the daemon runs chrooted there.
    pub(super) chroot: Option<PathBuf>,
}

/// Lists the milters in main.cf's `smtpd_milters` (used by smtpd) and `non_smtpd_milters`
/// (used by cleanup), each resolved the way the daemon reaches it. Addresses that cannot be
/// parsed and a missing main.cf give no entry.
pub(super) fn postfix_milters(root: &Root) -> Vec<PostfixMilter> {
    let mut ignored = Vec::new();
    let main = MainCf::read(root, &mut ignored);
    let entries = match root.read(Path::new(MASTER_CF)) {
        Ok(text) => master_entries(&text, &mut ignored),
        Err(_) => Vec::new(),
    };
    let queue_directory = main
        .get("queue_directory")
        .and_then(|(words, _)| words.into_iter().next())
        .map_or_else(|| PathBuf::from(DEFAULT_QUEUE_DIRECTORY), PathBuf::from);
    let chrooted = |command: &str| {
        entries
            .iter()
            .find(|entry| entry.command == command)
            .is_some_and(|entry| entry.chroot)
    };

    let mut milters = Vec::new();
    for (parameter, daemon) in [("smtpd_milters", "smtpd"), ("non_smtpd_milters", "cleanup")] {
        let Some((words, line)) = main.get(parameter) else {
            continue;
        };
        let chroot = chrooted(daemon).then(|| queue_directory.clone());
        for word in words {
            let Some(endpoint) =
                postfix_milter_endpoint(&word, chroot.as_deref(), &queue_directory)
            else {
                continue;
            };
            milters.push(PostfixMilter {
                written: word,
                endpoint,
                parameter,
                line,
                chroot: chroot.clone(),
            });
        }
    }
    milters
}

/// Resolves one milter address of main.cf. A `unix:` path is below the queue directory when
/// the daemon runs chrooted there, or when the path is relative, because Postfix daemons run
/// with the queue directory as working directory.
fn postfix_milter_endpoint(
    word: &str,
    chroot: Option<&Path>,
    queue_directory: &Path,
) -> Option<Endpoint> {
    let (kind, rest) = word.split_once(':')?;
    if matches!(kind, "unix" | "local") {
        let path = Path::new(rest);
        let path = match chroot {
            Some(chroot) => chroot.join(path.strip_prefix("/").unwrap_or(path)),
            None if path.is_relative() => queue_directory.join(path),
            None => path.to_path_buf(),
        };
        return Some(Endpoint::Unix { path });
    }
    if matches!(kind, "inet" | "inet6") {
        return parse_milter_address(word).ok();
    }
    None
}

/// Checks that Postfix reaches a milter where it listens. Postfix names the milter when a
/// `unix:` address contains `name_hint` (such as "opendkim") or an inet address has the
/// listener's port. Returns a warning when every address that names it leads elsewhere.
pub(super) fn check_milter(
    root: &Root,
    service: &str,
    name_hint: &str,
    listen: &Endpoint,
    listen_source: &str,
) -> Option<ConfigError> {
    let naming: Vec<PostfixMilter> = postfix_milters(root)
        .into_iter()
        .filter(|milter| match (&milter.endpoint, listen) {
            (Endpoint::Unix { .. }, _) => milter.written.contains(name_hint),
            (
                Endpoint::Tcp { port, .. },
                Endpoint::Tcp {
                    port: listen_port, ..
                },
            ) => port == listen_port,
            (Endpoint::Tcp { .. }, Endpoint::Unix { .. }) => false,
        })
        .collect();
    if naming
        .iter()
        .any(|milter| same_endpoint(&milter.endpoint, listen))
    {
        return None;
    }
    let milter = naming.first()?;
    let chroot_note = match &milter.chroot {
        Some(chroot) => format!(", because the daemon runs chrooted in {}", chroot.display()),
        None => String::new(),
    };
    Some(ConfigError {
        file: PathBuf::from(MAIN_CF),
        line: milter.line,
        key: format!("services.{service}"),
        message: format!(
            "Postfix reaches the milter {} in {} at {}{chroot_note}, but {service} listens on \
             {listen} ({listen_source}); make both name the same socket",
            milter.written, milter.parameter, milter.endpoint
        ),
        example: None,
    })
}

/// Checks whether two endpoints reach the same listener: equal paths, or equal ports on equal hosts,
/// counting every IPv4 loopback spelling as one.
fn same_endpoint(left: &Endpoint, right: &Endpoint) -> bool {
    match (left, right) {
        (Endpoint::Unix { path: a }, Endpoint::Unix { path: b }) => a == b,
        (Endpoint::Tcp { host: a, port: p }, Endpoint::Tcp { host: b, port: q }) => {
            p == q && (a == b || (is_ipv4_loopback(a) && is_ipv4_loopback(b)))
        }
        _ => false,
    }
}

fn is_ipv4_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{tree, write};
    use super::*;

    /// Builds the service table of a master.cf, in the layout Debian ships, with `body` below
    /// it.
    fn master_cf(body: &str) -> String {
        format!(
            "#\n\
             # Postfix master process configuration file.\n\
             #\n\
             # ====================================================================\n\
             # service type  private unpriv  chroot  wakeup  maxproc command + args\n\
             #               (yes)   (yes)   (no)    (never) (100)\n\
             # ====================================================================\n\
             {body}\
             pickup    unix  n       -       y       60      1       pickup\n\
             cleanup   unix  n       -       y       -       0       cleanup\n\
             qmgr      unix  n       -       n       300     1       qmgr\n\
             relay     unix  -       -       y       -       -       smtp\n\
             \x20       -o syslog_name=postfix/$service_name\n\
             local     unix  -       n       n       -       -       local\n"
        )
    }

    /// Writes master.cf and main.cf into a fresh tree and runs discovery on it.
    fn discover_with(master_body: &str, main: &str) -> Discovery {
        let dir = tree();
        write(dir.path(), MASTER_CF, &master_cf(master_body));
        write(dir.path(), MAIN_CF, main);
        discover(&Root::new(dir.path()))
    }

    fn endpoint(probe: &ProbeSpec) -> String {
        probe
            .endpoint
            .as_ref()
            .map_or_else(String::new, ToString::to_string)
    }

    const MAIN_LOOPBACK: &str = "myhostname = mail.example.org\n\
                                 inet_interfaces = loopback-only\n\
                                 inet_protocols = all\n";

    #[test]
    fn debian_default_smtp() {
        let found = discover_with(
            "smtp      inet  n       -       y       -       -       smtpd\n\
             #smtp      inet  n       -       y       -       1       postscreen\n\
             #submission inet n       -       y       -       -       smtpd\n\
             #  -o syslog_name=postfix/submission\n",
            MAIN_LOOPBACK,
        );
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
        assert_eq!(found.probes.len(), 1);
        let probe = &found.probes[0];
        assert_eq!(probe.protocol.name(), "smtp");
        assert_eq!(endpoint(probe), "127.0.0.1:25");
        assert_eq!(probe.tls.mode, TlsMode::Off);
        assert_eq!(probe.source, "/etc/postfix/master.cf:8");
    }

    #[test]
    fn submission_ports_get_tls() {
        let found = discover_with(
            "smtp      inet  n       -       y       -       -       smtpd\n\
             submission inet n       -       y       -       -       smtpd\n\
             \x20 -o syslog_name=postfix/submission\n\
             #  -o smtpd_tls_security_level=none\n\
             \x20 -o smtpd_sasl_auth_enable=yes\n\
             submissions     inet  n       -       y       -       -       smtpd\n\
             \x20 -o syslog_name=postfix/submissions\n\
             \x20 -o smtpd_tls_wrappermode=yes\n",
            MAIN_LOOPBACK,
        );
        let summary: Vec<(String, TlsMode, &str)> = found
            .probes
            .iter()
            .map(|probe| (endpoint(probe), probe.tls.mode, probe.source.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "127.0.0.1:25".to_string(),
                    TlsMode::Off,
                    "/etc/postfix/master.cf:8"
                ),
                (
                    "127.0.0.1:587".to_string(),
                    TlsMode::Starttls,
                    "/etc/postfix/master.cf:9"
                ),
                (
                    "127.0.0.1:465".to_string(),
                    TlsMode::Implicit,
                    "/etc/postfix/master.cf:13"
                ),
            ]
        );
    }

    #[test]
    fn wrappermode_and_tls_overrides() {
        let found = discover_with(
            "2465      inet  n       -       y       -       -       smtpd\n\
             \x20 -o { smtpd_tls_wrappermode = yes }\n\
             submission inet n       -       y       -       -       smtpd\n\
             \x20 -o smtpd_tls_security_level=none\n\
             2525      inet  n       -       y       -       -       smtpd\n\
             \x20 -o smtpd_tls_security_level=encrypt\n",
            MAIN_LOOPBACK,
        );
        let modes: Vec<(String, TlsMode)> = found
            .probes
            .iter()
            .map(|probe| (endpoint(probe), probe.tls.mode))
            .collect();
        assert_eq!(
            modes,
            [
                ("127.0.0.1:2465".to_string(), TlsMode::Implicit),
                ("127.0.0.1:587".to_string(), TlsMode::Off),
                ("127.0.0.1:2525".to_string(), TlsMode::Starttls),
            ]
        );
    }

    #[test]
    fn host_in_service_field() {
        let found = discover_with(
            "127.0.0.1:submission inet n -   y       -       -       smtpd\n\
             [::1]:2525 inet n       -       y       -       -       smtpd\n\
             0.0.0.0:smtp inet n     -       y       -       -       smtpd\n\
             localhost:10025 inet n  -       n       -       -       smtpd\n",
            "inet_interfaces = 192.0.2.10\n",
        );
        let endpoints: Vec<String> = found.probes.iter().map(endpoint).collect();
        assert_eq!(
            endpoints,
            [
                "127.0.0.1:587",
                "[::1]:2525",
                "127.0.0.1:25",
                "127.0.0.1:10025"
            ]
        );
    }

    #[test]
    fn inet_interfaces_choose_host() {
        let smtp = "smtp      inet  n       -       y       -       -       smtpd\n";
        let cases = [
            ("", "127.0.0.1:25"),
            ("inet_interfaces = all\n", "127.0.0.1:25"),
            ("inet_interfaces = localhost\n", "127.0.0.1:25"),
            ("inet_interfaces = 192.0.2.10\n", "192.0.2.10:25"),
            ("inet_interfaces = 192.0.2.10, 127.0.0.1\n", "127.0.0.1:25"),
            ("inet_interfaces = [2001:db8::1]\n", "[2001:db8::1]:25"),
            ("inet_interfaces = all\ninet_protocols = ipv6\n", "[::1]:25"),
            (
                "inet_interfaces = $myhostname\nmyhostname = 192.0.2.7\n",
                "192.0.2.7:25",
            ),
            ("inet_interfaces = $undefined\n", "127.0.0.1:25"),
            (
                "inet_interfaces = 192.0.2.1\ninet_interfaces = loopback-only\n",
                "127.0.0.1:25",
            ),
        ];
        for (main, expected) in cases {
            let found = discover_with(smtp, main);
            assert_eq!(found.probes.len(), 1, "{main}");
            assert_eq!(endpoint(&found.probes[0]), expected, "{main}");
        }
    }

    #[test]
    fn postscreen_is_smtp_listener() {
        let found = discover_with(
            "#smtp      inet  n       -       y       -       -       smtpd\n\
             smtp      inet  n       -       y       -       1       postscreen\n\
             smtpd     pass  -       -       y       -       -       smtpd\n\
             dnsblog   unix  -       -       y       -       0       dnsblog\n",
            MAIN_LOOPBACK,
        );
        assert_eq!(found.probes.len(), 1);
        assert_eq!(endpoint(&found.probes[0]), "127.0.0.1:25");
        assert_eq!(found.probes[0].source, "/etc/postfix/master.cf:9");
    }

    #[test]
    fn missing_master_falls_back() {
        let dir = tree();
        let found = discover(&Root::new(dir.path()));
        assert!(found.warnings.is_empty());
        assert_eq!(found.probes.len(), 1);
        assert_eq!(
            found.probes[0].source,
            "preset (/etc/postfix/master.cf not found)"
        );
        assert_eq!(endpoint(&found.probes[0]), "127.0.0.1:25");
    }

    #[test]
    fn missing_main_uses_defaults() {
        let dir = tree();
        write(
            dir.path(),
            MASTER_CF,
            &master_cf("smtp      inet  n       -       y       -       -       smtpd\n"),
        );
        let found = discover(&Root::new(dir.path()));
        assert_eq!(found.probes.len(), 1);
        assert_eq!(endpoint(&found.probes[0]), "127.0.0.1:25");
    }

    #[test]
    fn all_commented_warns() {
        let found = discover_with(
            "#smtp      inet  n       -       y       -       -       smtpd\n",
            MAIN_LOOPBACK,
        );
        assert!(found.probes.is_empty());
        assert_eq!(found.warnings.len(), 1);
        assert_eq!(found.warnings[0].key, "");
        assert!(
            found.warnings[0].message.contains("unit state only"),
            "{}",
            found.warnings[0].message
        );
    }

    #[test]
    fn malformed_lines_warn() {
        let found = discover_with(
            "smtp      inet  n       -       y\n\
             mysmtp    inet  n       -       y       -       -       smtpd\n\
             smtp      inet  n       -       y       -       -       smtpd\n",
            "inet_interfaces loopback-only\n",
        );
        let located: Vec<(&Path, usize)> = found
            .warnings
            .iter()
            .map(|warning| (warning.file.as_path(), warning.line))
            .collect();
        assert_eq!(
            located,
            [
                (Path::new(MAIN_CF), 1),
                (Path::new(MASTER_CF), 8),
                (Path::new(MASTER_CF), 9),
            ]
        );
        assert!(found.warnings[2]
            .message
            .contains("unknown port \"mysmtp\""));
        assert_eq!(found.probes.len(), 1);
        assert_eq!(found.probes[0].source, "/etc/postfix/master.cf:10");
    }

    #[test]
    fn services_file_names_port() {
        let dir = tree();
        write(
            dir.path(),
            MASTER_CF,
            &master_cf("mysmtp    inet  n       -       y       -       -       smtpd\n"),
        );
        write(
            dir.path(),
            SERVICES,
            "# local additions\nmysmtp\t\t2526/udp\nmysmtp\t\t2525/tcp\talt-smtp # test\n",
        );
        let found = discover(&Root::new(dir.path()));
        assert_eq!(found.probes.len(), 1, "{:?}", found.warnings);
        assert_eq!(endpoint(&found.probes[0]), "127.0.0.1:2525");
        let root = Root::new(dir.path());
        assert_eq!(service_port(&root, "alt-smtp"), Some(2525));
        assert_eq!(service_port(&root, "submissions"), Some(465));
        assert_eq!(service_port(&root, "0"), None);
        assert_eq!(service_port(&root, "imap"), None);
    }

    #[test]
    fn main_cf_continuation_and_override() {
        let mut warnings = Vec::new();
        let main = MainCf::parse(
            "# comment\n\
             smtpd_milters = unix:/opendkim/opendkim.sock,\n\
             \x20   inet:localhost:8891\n\
             # a comment between does not end the list\n\
             \x20   unix:/spamass/spamass.sock\n\
             mydomain = example.org\n\
             mydomain = example.net\n",
            &mut warnings,
        );
        assert!(warnings.is_empty());
        assert_eq!(
            main.get("smtpd_milters"),
            Some((
                vec![
                    "unix:/opendkim/opendkim.sock".to_string(),
                    "inet:localhost:8891".to_string(),
                    "unix:/spamass/spamass.sock".to_string(),
                ],
                2
            ))
        );
        assert_eq!(
            main.get("mydomain"),
            Some((vec!["example.net".to_string()], 7))
        );
    }

    fn milter_tree(main: &str, smtpd_chroot: &str) -> tempfile::TempDir {
        let dir = tree();
        let line =
            format!("smtp      inet  n       -       {smtpd_chroot}       -       -       smtpd\n");
        write(dir.path(), MASTER_CF, &master_cf(&line));
        write(dir.path(), MAIN_CF, main);
        dir
    }

    fn unix(path: &str) -> Endpoint {
        Endpoint::Unix { path: path.into() }
    }

    #[test]
    fn milters_resolved_in_chroot() {
        let dir = milter_tree(
            "smtpd_milters = unix:/opendkim/opendkim.sock, { inet:localhost:8891, \
             default_action = accept }\nnon_smtpd_milters = $smtpd_milters\n",
            "y",
        );
        let milters = postfix_milters(&Root::new(dir.path()));
        let summary: Vec<(&str, Endpoint, Option<PathBuf>)> = milters
            .iter()
            .map(|milter| {
                (
                    milter.parameter,
                    milter.endpoint.clone(),
                    milter.chroot.clone(),
                )
            })
            .collect();
        let chroot = Some(PathBuf::from("/var/spool/postfix"));
        let loopback = Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 8891,
        };
        assert_eq!(
            summary,
            [
                (
                    "smtpd_milters",
                    unix("/var/spool/postfix/opendkim/opendkim.sock"),
                    chroot.clone()
                ),
                ("smtpd_milters", loopback.clone(), chroot.clone()),
                // cleanup runs chrooted in the master.cf fixture too.
                (
                    "non_smtpd_milters",
                    unix("/var/spool/postfix/opendkim/opendkim.sock"),
                    chroot.clone()
                ),
                ("non_smtpd_milters", loopback, chroot),
            ]
        );
    }

    #[test]
    fn milters_without_chroot() {
        let dir = milter_tree(
            "queue_directory = /srv/postfix\n\
             smtpd_milters = local:/run/opendkim/opendkim.sock unix:private/filter\n",
            "n",
        );
        let milters = postfix_milters(&Root::new(dir.path()));
        let endpoints: Vec<Endpoint> = milters.into_iter().map(|milter| milter.endpoint).collect();
        assert_eq!(
            endpoints,
            [
                unix("/run/opendkim/opendkim.sock"),
                unix("/srv/postfix/private/filter"),
            ]
        );
    }

    #[test]
    fn check_milter_cases() {
        let dir = milter_tree("smtpd_milters = unix:/run/opendkim/opendkim.sock\n", "y");
        let root = Root::new(dir.path());
        let listen = unix("/run/opendkim/opendkim.sock");
        let Some(problem) = check_milter(
            &root,
            "opendkim",
            "opendkim",
            &listen,
            "/etc/opendkim.conf:3",
        ) else {
            panic!("chrooted mismatch not reported");
        };
        assert_eq!(problem.file, Path::new(MAIN_CF));
        assert_eq!(problem.line, 1);
        assert_eq!(problem.key, "services.opendkim");
        assert!(
            problem
                .message
                .contains("at /var/spool/postfix/run/opendkim/opendkim.sock, because"),
            "{}",
            problem.message
        );

        let inside = unix("/var/spool/postfix/run/opendkim/opendkim.sock");
        assert_eq!(
            check_milter(&root, "opendkim", "opendkim", &inside, "x"),
            None
        );

        // A milter Postfix does not name is no concern of this check.
        let other = unix("/run/other/other.sock");
        assert_eq!(check_milter(&root, "other", "spamass", &other, "x"), None);
    }

    #[test]
    fn check_milter_inet_ports() {
        let dir = milter_tree("smtpd_milters = inet:localhost:8891\n", "y");
        let root = Root::new(dir.path());
        let same = Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 8891,
        };
        assert_eq!(
            check_milter(&root, "opendkim", "opendkim", &same, "x"),
            None
        );
        let elsewhere = Endpoint::Tcp {
            host: "192.0.2.1".into(),
            port: 8891,
        };
        assert!(check_milter(&root, "opendkim", "opendkim", &elsewhere, "x").is_some());
        let other_port = Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port: 8892,
        };
        assert_eq!(
            check_milter(&root, "opendkim", "opendkim", &other_port, "x"),
            None
        );
    }

    #[test]
    fn probe_host_forms() {
        assert_eq!(probe_host("[::]").as_deref(), Some("::1"));
        assert_eq!(probe_host("0.0.0.0").as_deref(), Some("127.0.0.1"));
        assert_eq!(probe_host("LOCALHOST").as_deref(), Some("127.0.0.1"));
        assert_eq!(
            probe_host("mail.example.org").as_deref(),
            Some("mail.example.org")
        );
        assert_eq!(probe_host("::1:bad:x"), None);
        assert_eq!(probe_host(""), None);
    }
}
