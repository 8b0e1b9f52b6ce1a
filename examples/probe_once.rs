//! Runs one probe once against a real service and prints its report.
//!
//! ```text
//! probe_once smtp 127.0.0.1:25 --starttls
//! probe_once imap 127.0.0.1:993 --tls
//! probe_once http 127.0.0.1:80 --path / --host localhost --expect 2
//! ```
//!
//! Exits with status 0 when the probe is healthy and 1 otherwise.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use selfheal::probe::{self, Endpoint, ProbeSpec, Protocol, StatusClass, TlsMode};

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Tcp,
    Smtp,
    Lmtp,
    Imap,
    Pop3,
    Http,
    Spamd,
}

#[derive(Parser)]
#[command(about = "Run one selfheal probe once and print its report")]
struct Args {
    /// Protocol to speak.
    #[arg(value_enum)]
    protocol: Kind,
    /// host:port, [v6]:port or an absolute Unix socket path.
    endpoint: String,
    /// Upgrade to TLS with STARTTLS (SMTP, LMTP, IMAP) or STLS (POP3).
    #[arg(long, conflicts_with = "tls")]
    starttls: bool,
    /// Speak TLS from the first byte (SMTPS, IMAPS, POP3S, HTTPS).
    #[arg(long)]
    tls: bool,
    /// Warn when the TLS certificate expires within this many days.
    #[arg(long, default_value_t = 14)]
    warn_days: u32,
    /// Limit of each probe step, in seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Name sent with EHLO or LHLO.
    #[arg(long, default_value = "selfheal")]
    helo: String,
    /// Path of the HTTP request.
    #[arg(long, default_value = "/")]
    path: String,
    /// Host header of the HTTP request.
    #[arg(long, default_value = "localhost")]
    host: String,
    /// Expected class of the HTTP status: 2 for 2xx, 3 for 3xx.
    #[arg(long, default_value_t = 2)]
    expect: u8,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let endpoint = match Endpoint::parse(&args.endpoint) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            eprintln!("probe_once: {error}");
            return ExitCode::from(2);
        }
    };
    let timeout = match Duration::try_from_secs_f64(args.timeout) {
        Ok(timeout) if !timeout.is_zero() => timeout,
        _ => {
            eprintln!(
                "probe_once: invalid --timeout {}: expected a positive number of seconds",
                args.timeout
            );
            return ExitCode::from(2);
        }
    };
    let protocol = match args.protocol {
        Kind::Tcp => Protocol::Connect,
        Kind::Smtp => Protocol::Smtp {
            helo_name: args.helo,
        },
        Kind::Lmtp => Protocol::Lmtp {
            helo_name: args.helo,
        },
        Kind::Imap => Protocol::Imap,
        Kind::Pop3 => Protocol::Pop3,
        Kind::Http => Protocol::Http {
            path: args.path,
            host: args.host,
            expect: StatusClass(args.expect),
        },
        Kind::Spamd => Protocol::Spamd,
    };
    let mode = if args.tls {
        TlsMode::Implicit
    } else if args.starttls {
        TlsMode::Starttls
    } else {
        TlsMode::Off
    };
    let mut spec = ProbeSpec::new(protocol, Some(endpoint), "command line").with_tls(mode);
    spec.tls.warn_days = args.warn_days;

    let report = probe::run(&spec, timeout).await;
    println!("{report}");
    if report.outcome.is_healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
