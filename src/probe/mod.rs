//! Probes: does the service work the way its clients use it?
//!
//! A probe is one short protocol exchange with one endpoint (greeting, command, reply, quit),
//! each step bounded by the probe timeout. It ends in an [`Outcome`] that names the failing step,
//! so that "refused", "timed out at greeting" and "bad reply" read differently in `selfheal
//! check`, the logs and the alert. One module per protocol.

pub(crate) mod command;
mod connect;
mod dns;
mod fail2ban;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod io;
mod mail;
mod milter;
mod mysql;
mod spamd;
mod syslog;
pub(crate) mod tls;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Address a probe connects to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    Tcp { host: String, port: u16 },
    Unix { path: PathBuf },
}

impl Endpoint {
    /// Parses `host:port`, `[v6]:port` or an absolute Unix socket path.
    pub fn parse(text: &str) -> Result<Endpoint, String> {
        if text.starts_with('/') {
            return Ok(Endpoint::Unix {
                path: PathBuf::from(text),
            });
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| {
            format!("missing port in {text:?}; expected host:port such as 127.0.0.1:25")
        })?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!(
                "missing host in {text:?}; expected host:port such as 127.0.0.1:25"
            ));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("invalid port in {text:?}; expected 1 to 65535"))?;
        Ok(Endpoint::Tcp {
            host: host.to_string(),
            port,
        })
    }

    /// Host name for TLS SNI and certificate checks; `localhost` for Unix sockets.
    pub fn host(&self) -> &str {
        match self {
            Endpoint::Tcp { host, .. } => host,
            Endpoint::Unix { .. } => "localhost",
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Endpoint::Tcp { host, port } => write!(f, "{host}:{port}"),
            Endpoint::Unix { path } => write!(f, "{}", path.display()),
        }
    }
}

/// TLS use of a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    #[default]
    Off,
    /// TLS from the first byte (465, 993, 995, 443).
    Implicit,
    /// Plain greeting, then the protocol's STARTTLS (SMTP, LMTP, IMAP, POP3 STLS).
    Starttls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsOptions {
    pub mode: TlsMode,
    /// Name sent in SNI and checked against the certificate; the endpoint's host by default.
    pub server_name: Option<String>,
    /// Verify the chain against the system's CA store (off by default: see `tls`).
    pub verify: bool,
    /// A certificate expiring within this many days is a warning.
    pub warn_days: u32,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions {
            mode: TlsMode::Off,
            server_name: None,
            verify: false,
            warn_days: 14,
        }
    }
}

/// Expected class of an HTTP status code: 2 for 2xx, 3 for 3xx, ...
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusClass(pub u8);

/// The protocol exchange a probe runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "protocol", rename_all = "snake_case")]
pub enum Protocol {
    /// The connection is accepted (and the TLS handshake done, with TLS on).
    Connect,
    /// 220 greeting, EHLO, 250, QUIT.
    Smtp { helo_name: String },
    /// 220 greeting, LHLO, 250, QUIT.
    Lmtp { helo_name: String },
    /// `* OK` greeting, CAPABILITY, LOGOUT.
    Imap,
    /// `+OK` greeting, QUIT.
    Pop3,
    /// GET `path` with `Host: host`; the status must be in `expect`.
    Http {
        path: String,
        host: String,
        expect: StatusClass,
    },
    /// `PING SPAMC/1.5`, expect `PONG`.
    Spamd,
    /// Milter option negotiation (SMFIC_OPTNEG).
    Milter,
    /// The server's handshake packet (protocol 10); with credentials, a login and `SELECT 1`.
    Mysql { credentials: Option<PathBuf> },
    /// A UDP query for `name`. With `outside_name`, a second query separates "upstream
    /// unreachable" (SERVFAIL) from "resolver down".
    Dns {
        name: String,
        outside_name: Option<String>,
    },
    /// `fail2ban-client ping` against the control socket.
    Fail2ban,
    /// A test message to a syslog datagram socket such as /run/systemd/journal/syslog; with
    /// `verify_file`, the message must then appear in that log file.
    Syslog { verify_file: Option<PathBuf> },
    /// Send `send` (may be empty), expect a reply line containing `expect`.
    SendExpect { send: String, expect: String },
    /// Run a program; exit status 0 is healthy.
    Command { argv: Vec<String> },
}

impl Protocol {
    pub fn name(&self) -> &'static str {
        match self {
            Protocol::Connect => "connect",
            Protocol::Smtp { .. } => "smtp",
            Protocol::Lmtp { .. } => "lmtp",
            Protocol::Imap => "imap",
            Protocol::Pop3 => "pop3",
            Protocol::Http { .. } => "http",
            Protocol::Spamd => "spamd",
            Protocol::Milter => "milter",
            Protocol::Mysql { .. } => "mysql",
            Protocol::Dns { .. } => "dns",
            Protocol::Fail2ban => "fail2ban",
            Protocol::Syslog { .. } => "syslog",
            Protocol::SendExpect { .. } => "send/expect",
            Protocol::Command { .. } => "command",
        }
    }
}

/// One configured probe of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeSpec {
    pub protocol: Protocol,
    /// Endpoint to connect to; `None` only for `Command`.
    pub endpoint: Option<Endpoint>,
    pub tls: TlsOptions,
    /// Origin of the endpoint: "preset", "config", or the service's own config file and line,
    /// such as "/etc/postfix/master.cf:17".
    pub source: String,
}

impl ProbeSpec {
    pub fn new(protocol: Protocol, endpoint: Option<Endpoint>, source: &str) -> ProbeSpec {
        ProbeSpec {
            protocol,
            endpoint,
            tls: TlsOptions::default(),
            source: source.to_string(),
        }
    }

    pub fn with_tls(mut self, mode: TlsMode) -> ProbeSpec {
        self.tls.mode = mode;
        self
    }

    /// Builds a plain TCP connect probe of `host:port`.
    pub fn tcp(address: &str, source: &str) -> Result<ProbeSpec, String> {
        match Endpoint::parse(address)? {
            endpoint @ Endpoint::Tcp { .. } => {
                Ok(ProbeSpec::new(Protocol::Connect, Some(endpoint), source))
            }
            Endpoint::Unix { .. } => Err(format!("{address:?} is a path, not host:port")),
        }
    }

    /// Builds a Unix stream socket connect probe.
    pub fn unix(path: PathBuf, source: &str) -> ProbeSpec {
        ProbeSpec::new(Protocol::Connect, Some(Endpoint::Unix { path }), source)
    }
}

impl fmt::Display for ProbeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match (&self.protocol, &self.endpoint) {
            (Protocol::Connect, Some(Endpoint::Tcp { .. })) => "tcp",
            (Protocol::Connect, Some(Endpoint::Unix { .. })) => "unix",
            (protocol, _) => protocol.name(),
        };
        write!(f, "{name}")?;
        match &self.protocol {
            Protocol::Command { argv } => write!(f, " {}", argv.join(" "))?,
            _ => {
                if let Some(endpoint) = &self.endpoint {
                    write!(f, " {endpoint}")?;
                }
            }
        }
        match self.tls.mode {
            TlsMode::Off => Ok(()),
            TlsMode::Implicit => write!(f, " (tls)"),
            TlsMode::Starttls => write!(f, " (starttls)"),
        }
    }
}

/// Result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Healthy {
        #[serde(rename = "latency_ms", serialize_with = "millis")]
        latency: Duration,
        /// Facts the service reported about itself: "MariaDB 10.11.6", "SERVFAIL upstream".
        detail: Option<String>,
        /// A problem that is not a failure yet: a certificate about to expire.
        warning: Option<String>,
    },
    /// Nothing listens there (connection refused, socket file missing).
    Refused {
        error: String,
    },
    /// A step did not finish within the timeout; `step` names it ("connect", "greeting").
    TimedOut {
        step: String,
        #[serde(rename = "after_ms", serialize_with = "millis")]
        after: Duration,
    },
    /// The peer sent something other than the protocol requires.
    BadReply {
        step: String,
        expected: String,
        got: String,
    },
    TlsFailed {
        error: String,
    },
    /// Any other failure (I/O error, failing command).
    Failed {
        error: String,
    },
    /// The probe has no result here; it does not count against the service.
    NotApplicable {
        reason: String,
    },
}

/// Writes a duration as fractional milliseconds, the unit JSON consumers expect for latency.
pub fn millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64() * 1000.0)
}

impl Outcome {
    pub fn healthy(latency: Duration) -> Outcome {
        Outcome::Healthy {
            latency,
            detail: None,
            warning: None,
        }
    }

    pub fn is_healthy(&self) -> bool {
        matches!(self, Outcome::Healthy { .. })
    }

    /// Healthy, or not applicable: nothing that counts against the service.
    pub fn passes(&self) -> bool {
        matches!(
            self,
            Outcome::Healthy { .. } | Outcome::NotApplicable { .. }
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Healthy {
                latency,
                detail,
                warning,
            } => {
                write!(f, "healthy in {:.1} ms", latency.as_secs_f64() * 1000.0)?;
                if let Some(detail) = detail {
                    write!(f, " ({detail})")?;
                }
                if let Some(warning) = warning {
                    write!(f, "; warning: {warning}")?;
                }
                Ok(())
            }
            Outcome::Refused { error } => write!(f, "refused: {error}"),
            Outcome::TimedOut { step, after } => {
                write!(f, "timed out after {:.1} s at {step}", after.as_secs_f64())
            }
            Outcome::BadReply {
                step,
                expected,
                got,
            } => write!(f, "bad reply at {step}: expected {expected}, got {got}"),
            Outcome::TlsFailed { error } => write!(f, "TLS failed: {error}"),
            Outcome::Failed { error } => write!(f, "failed: {error}"),
            Outcome::NotApplicable { reason } => write!(f, "not applicable: {reason}"),
        }
    }
}

/// One probe result together with the endpoint it was taken on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    pub endpoint: String,
    pub outcome: Outcome,
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.endpoint, self.outcome)
    }
}

/// Result of a successful protocol exchange besides its latency.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passed {
    pub detail: Option<String>,
    pub warning: Option<String>,
}

/// Everything a protocol module needs for one run.
pub struct Context<'a> {
    pub spec: &'a ProbeSpec,
    /// Limit of each step.
    pub timeout: Duration,
}

impl Context<'_> {
    /// Returns the endpoint, which the config guarantees for every protocol but `Command`.
    pub fn endpoint(&self) -> Result<&Endpoint, Outcome> {
        self.spec.endpoint.as_ref().ok_or_else(|| Outcome::Failed {
            error: format!("{} probe without an endpoint", self.spec.protocol.name()),
        })
    }
}

/// Steps a probe may take at most; bounds the whole run at this many step timeouts.
const MAX_STEPS: u32 = 8;

/// Runs one probe. Each step is bounded by `timeout`, the whole run by `MAX_STEPS` of them.
pub async fn run(spec: &ProbeSpec, timeout: Duration) -> ProbeReport {
    let started = Instant::now();
    let context = Context { spec, timeout };
    let exchange = async {
        match &spec.protocol {
            Protocol::Connect => connect::check(&context).await,
            Protocol::Smtp { helo_name } => mail::smtp(&context, helo_name, "EHLO").await,
            Protocol::Lmtp { helo_name } => mail::smtp(&context, helo_name, "LHLO").await,
            Protocol::Imap => mail::imap(&context).await,
            Protocol::Pop3 => mail::pop3(&context).await,
            Protocol::Http { path, host, expect } => {
                http::check(&context, path, host, *expect).await
            }
            Protocol::Spamd => spamd::check(&context).await,
            Protocol::Milter => milter::check(&context).await,
            Protocol::Mysql { credentials } => mysql::check(&context, credentials.as_deref()).await,
            Protocol::Dns { name, outside_name } => {
                dns::check(&context, name, outside_name.as_deref()).await
            }
            Protocol::Fail2ban => fail2ban::check(&context).await,
            Protocol::Syslog { verify_file } => {
                syslog::check(&context, verify_file.as_deref()).await
            }
            Protocol::SendExpect { send, expect } => {
                connect::send_expect(&context, send, expect).await
            }
            Protocol::Command { argv } => command::check(&context, argv).await,
        }
    };
    let overall = timeout.saturating_mul(MAX_STEPS);
    let outcome = match tokio::time::timeout(overall, exchange).await {
        Ok(Ok(passed)) => Outcome::Healthy {
            latency: started.elapsed(),
            detail: passed.detail,
            warning: passed.warning,
        },
        Ok(Err(outcome)) => outcome,
        Err(_) => Outcome::TimedOut {
            step: "the whole probe".to_string(),
            after: overall,
        },
    };
    ProbeReport {
        endpoint: spec.to_string(),
        outcome,
    }
}

/// Runs all probes of a service concurrently. The service works only when every one passes.
pub async fn run_all(specs: &[ProbeSpec], timeout: Duration) -> Vec<ProbeReport> {
    futures_util::future::join_all(specs.iter().map(|spec| run(spec, timeout))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parse_forms() {
        assert_eq!(
            Endpoint::parse("127.0.0.1:25").unwrap(),
            Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 25
            }
        );
        assert_eq!(
            Endpoint::parse("[::1]:993").unwrap().to_string(),
            "[::1]:993"
        );
        assert_eq!(
            Endpoint::parse("/run/x.sock").unwrap(),
            Endpoint::Unix {
                path: "/run/x.sock".into()
            }
        );
        assert!(Endpoint::parse("127.0.0.1").is_err());
        assert!(Endpoint::parse("127.0.0.1:0").is_err());
        assert!(Endpoint::parse("127.0.0.1:99999").is_err());
        assert!(Endpoint::parse(":25").is_err());
    }

    #[test]
    fn spec_display_names_protocol_and_tls() {
        let spec = ProbeSpec::new(
            Protocol::Smtp {
                helo_name: "selfheal".into(),
            },
            Some(Endpoint::parse("127.0.0.1:587").unwrap()),
            "preset",
        )
        .with_tls(TlsMode::Starttls);
        assert_eq!(spec.to_string(), "smtp 127.0.0.1:587 (starttls)");
        assert_eq!(
            ProbeSpec::tcp("127.0.0.1:25", "config")
                .unwrap()
                .to_string(),
            "tcp 127.0.0.1:25"
        );
    }
}
