//! TCP connect probe: a listener accepts the connection.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};

use super::{connect_error, Outcome};

pub(super) async fn connect(address: &str, limit: Duration) -> Outcome {
    let started = Instant::now();
    match timeout(limit, TcpStream::connect(address)).await {
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
    async fn listening_port_is_healthy() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let outcome = connect(&address, Duration::from_secs(2)).await;
        assert!(outcome.is_healthy(), "{outcome}");
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let outcome = connect(&address, Duration::from_secs(2)).await;
        assert!(matches!(outcome, Outcome::Refused { .. }), "{outcome}");
    }
}
