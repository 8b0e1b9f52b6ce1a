//! Runs the milter, MySQL, DNS, fail2ban, syslog or command probe against a real service and
//! prints each report.
//!
//! ```text
//! probe_b milter /run/opendkim/opendkim.sock
//! probe_b mysql /run/mysqld/mysqld.sock --credentials /etc/mysql/debian.cnf
//! probe_b dns 127.0.0.1:53 --name localhost. --outside-name debian.org.
//! probe_b fail2ban /run/fail2ban/fail2ban.sock
//! probe_b syslog /run/systemd/journal/syslog --verify-file /var/log/syslog
//! probe_b command - -- /usr/bin/test -S /run/mysqld/mysqld.sock
//! ```
//!
//! `--repeat N` runs the probe N times in a row and prints the latency range of the healthy
//! runs. Exits with status 0 when every run is healthy and 1 otherwise.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use selfheal::probe::{self, Endpoint, Outcome, ProbeSpec, Protocol};

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Milter,
    Mysql,
    Dns,
    Fail2ban,
    Syslog,
    Command,
}

#[derive(Parser)]
#[command(about = "Run a selfheal milter, mysql, dns, fail2ban, syslog or command probe")]
struct Args {
    /// Protocol to speak.
    #[arg(value_enum)]
    protocol: Kind,
    /// host:port, [v6]:port or an absolute Unix socket path; `-` for the command probe.
    endpoint: String,
    /// Limit of each probe step, in seconds.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Number of runs, one after the other.
    #[arg(long, default_value_t = 1)]
    repeat: u32,
    /// MySQL: option file with user and password in its [client] group, such as debian.cnf.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// DNS: name to query for A records.
    #[arg(long, default_value = "localhost.")]
    name: String,
    /// DNS: a name outside the local zones, to tell an unreachable upstream apart.
    #[arg(long)]
    outside_name: Option<String>,
    /// syslog: log file in which the test message must appear.
    #[arg(long)]
    verify_file: Option<PathBuf>,
    /// Command: program and arguments, after `--`.
    #[arg(last = true)]
    argv: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let Some(timeout) = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|timeout| !timeout.is_zero())
    else {
        eprintln!(
            "probe_b: invalid --timeout {}: expected a positive number of seconds",
            args.timeout
        );
        return ExitCode::from(2);
    };
    let endpoint = match (args.protocol, args.endpoint.as_str()) {
        (Kind::Command, "-") => None,
        (_, text) => match Endpoint::parse(text) {
            Ok(endpoint) => Some(endpoint),
            Err(error) => {
                eprintln!("probe_b: {error}");
                return ExitCode::from(2);
            }
        },
    };
    let protocol = match args.protocol {
        Kind::Milter => Protocol::Milter,
        Kind::Mysql => Protocol::Mysql {
            credentials: args.credentials,
        },
        Kind::Dns => Protocol::Dns {
            name: args.name,
            outside_name: args.outside_name,
        },
        Kind::Fail2ban => Protocol::Fail2ban,
        Kind::Syslog => Protocol::Syslog {
            verify_file: args.verify_file,
        },
        Kind::Command => Protocol::Command { argv: args.argv },
    };
    let spec = ProbeSpec::new(protocol, endpoint, "probe_b");

    let mut latencies = Vec::new();
    let mut all_healthy = true;
    for _ in 0..args.repeat.max(1) {
        let report = probe::run(&spec, timeout).await;
        println!("{report}");
        match report.outcome {
            Outcome::Healthy { latency, .. } => latencies.push(latency),
            _ => all_healthy = false,
        }
    }

    // Report the spread over repeated runs, because the first run is often slower than the rest.
    if latencies.len() > 1 {
        latencies.sort();
        let milliseconds = |duration: &Duration| duration.as_secs_f64() * 1000.0;
        println!(
            "{} healthy runs: min {:.2} ms, median {:.2} ms, max {:.2} ms",
            latencies.len(),
            milliseconds(&latencies[0]),
            milliseconds(&latencies[latencies.len() / 2]),
            milliseconds(&latencies[latencies.len() - 1]),
        );
    }
    if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
