//! Endpoint probes: does the service answer where its clients reach it?
//!
//! A probe is one short sequence against one endpoint, bounded by a timeout, that ends in an
//! [`Outcome`]. The outcome names the step that failed so that "refused", "timed out" and "bad
//! reply" read differently in `selfheal check`, the logs and the alert.

mod tcp;
mod unix;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

/// Where and how to probe a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeSpec {
    /// Connect over TCP to `host:port`.
    Tcp { address: String },
    /// Connect to a Unix stream socket.
    Unix { path: PathBuf },
}

impl fmt::Display for ProbeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeSpec::Tcp { address } => write!(f, "tcp {address}"),
            ProbeSpec::Unix { path } => write!(f, "unix {}", path.display()),
        }
    }
}

/// Result of one probe run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Healthy {
        latency: Duration,
    },
    /// Nothing listens there (connection refused, socket file missing).
    Refused {
        error: String,
    },
    /// A step did not finish within the timeout: `step` says which ("connect", "greeting").
    TimedOut {
        step: String,
        after: Duration,
    },
    /// The peer answered something other than the protocol requires.
    BadReply {
        expected: String,
        got: String,
    },
    /// Any other I/O failure.
    Failed {
        error: String,
    },
}

impl Outcome {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Outcome::Healthy { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Healthy { latency } => {
                write!(f, "healthy in {:.1} ms", latency.as_secs_f64() * 1000.0)
            }
            Outcome::Refused { error } => write!(f, "refused: {error}"),
            Outcome::TimedOut { step, after } => {
                write!(f, "timed out after {:.1} s at {step}", after.as_secs_f64())
            }
            Outcome::BadReply { expected, got } => {
                write!(f, "bad reply: expected {expected}, got {got}")
            }
            Outcome::Failed { error } => write!(f, "failed: {error}"),
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

/// Run one probe. Never takes longer than `timeout` (plus scheduling delay).
pub async fn run(spec: &ProbeSpec, timeout: Duration) -> ProbeReport {
    let outcome = match spec {
        ProbeSpec::Tcp { address } => tcp::connect(address, timeout).await,
        ProbeSpec::Unix { path } => unix::connect(path, timeout).await,
    };
    ProbeReport {
        endpoint: spec.to_string(),
        outcome,
    }
}

/// Run all probes of a service concurrently; the service answers only when every one passes.
pub async fn run_all(specs: &[ProbeSpec], timeout: Duration) -> Vec<ProbeReport> {
    futures_util::future::join_all(specs.iter().map(|spec| run(spec, timeout))).await
}

/// Map a connect error to an outcome: "refused" for nothing listening, "failed" otherwise.
fn connect_error(error: std::io::Error) -> Outcome {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused | ErrorKind::NotFound => Outcome::Refused {
            error: error.to_string(),
        },
        _ => Outcome::Failed {
            error: error.to_string(),
        },
    }
}
