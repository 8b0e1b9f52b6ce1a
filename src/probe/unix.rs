//! Unix stream socket connect probe (milter sockets, MariaDB's socket, fail2ban's control socket).

use std::path::Path;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::time::{timeout, Instant};

use super::{connect_error, Outcome};

pub(super) async fn connect(path: &Path, limit: Duration) -> Outcome {
    let started = Instant::now();
    match timeout(limit, UnixStream::connect(path)).await {
        Ok(Ok(_stream)) => Outcome::Healthy {
            latency: started.elapsed(),
        },
        Ok(Err(error)) => connect_error(error),
        Err(_) => Outcome::TimedOut {
            step: "connect".to_string(),
            after: limit,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn listening_socket_is_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let outcome = connect(&path, Duration::from_secs(2)).await;
        assert!(outcome.is_healthy(), "{outcome}");
    }

    #[tokio::test]
    async fn missing_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = connect(&dir.path().join("absent.sock"), Duration::from_secs(2)).await;
        assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome}");
    }

    #[tokio::test]
    async fn stale_socket_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let outcome = connect(&path, Duration::from_secs(2)).await;
        assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome}");
    }
}
