//! Generic probes for any service: connect (TCP, Unix, optionally TLS) and send/expect.

use super::io::{self, bad_reply, LineReader, Stream};
use super::{tls, Context, Outcome, Passed, TlsMode};

/// Lines read while looking for the expected text before giving up.
const MAX_EXPECT_LINES: usize = 20;

/// Connects, and with TLS on completes the handshake.
pub(super) async fn open(context: &Context<'_>) -> Result<(Stream, Option<String>), Outcome> {
    let endpoint = context.endpoint()?;
    let stream = io::connect(endpoint, context.timeout).await?;
    match context.spec.tls.mode {
        TlsMode::Implicit => {
            tls::handshake(stream, endpoint.host(), &context.spec.tls, context.timeout).await
        }
        TlsMode::Off | TlsMode::Starttls => Ok((stream, None)),
    }
}

/// Checks that the connection is accepted (and TLS negotiated when configured).
pub(super) async fn check(context: &Context<'_>) -> Result<Passed, Outcome> {
    let (_stream, warning) = open(context).await?;
    Ok(Passed {
        detail: None,
        warning,
    })
}

/// Sends `send` (nothing when empty), then reads lines until one contains `expect`.
pub(super) async fn send_expect(
    context: &Context<'_>,
    send: &str,
    expect: &str,
) -> Result<Passed, Outcome> {
    let (stream, warning) = open(context).await?;
    let mut reader = LineReader::new(stream);
    if !send.is_empty() {
        reader
            .write_all("send", send.as_bytes(), context.timeout)
            .await?;
    }
    let mut last = Vec::new();
    for _ in 0..MAX_EXPECT_LINES {
        let line = reader.read_line("reply", context.timeout).await?;
        if line
            .windows(expect.len().max(1))
            .any(|window| window == expect.as_bytes())
        {
            return Ok(Passed {
                detail: None,
                warning,
            });
        }
        last = line;
    }
    Err(bad_reply(
        "reply",
        &format!("a line containing {}", io::quote(expect.as_bytes())),
        &last,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::super::{run, Endpoint, ProbeSpec, Protocol};
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    #[tokio::test]
    async fn listening_port_is_healthy() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let report = run(&ProbeSpec::tcp(&address, "test").unwrap(), LIMIT).await;
        assert!(report.outcome.is_healthy(), "{report}");
    }

    #[tokio::test]
    async fn closed_port_is_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let report = run(&ProbeSpec::tcp(&address, "test").unwrap(), LIMIT).await;
        assert!(
            matches!(report.outcome, Outcome::Refused { .. }),
            "{report}"
        );
    }

    #[tokio::test]
    async fn missing_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ProbeSpec::unix(dir.path().join("absent.sock"), "test");
        let report = run(&spec, LIMIT).await;
        assert!(
            matches!(report.outcome, Outcome::Refused { .. }),
            "{report}"
        );
    }

    #[tokio::test]
    async fn stale_socket_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let report = run(&ProbeSpec::unix(path, "test"), LIMIT).await;
        assert!(
            matches!(report.outcome, Outcome::Refused { .. }),
            "{report}"
        );
    }

    #[tokio::test]
    async fn listening_socket_is_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("probe.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let report = run(&ProbeSpec::unix(path, "test"), LIMIT).await;
        assert!(report.outcome.is_healthy(), "{report}");
    }

    async fn send_expect_spec(reply: &'static [u8]) -> ProbeSpec {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = [0u8; 64];
            let _ = socket.read(&mut request).await;
            let _ = socket.write_all(reply).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
        });
        ProbeSpec::new(
            Protocol::SendExpect {
                send: "STATUS\r\n".into(),
                expect: "READY".into(),
            },
            Some(Endpoint::parse(&address).unwrap()),
            "test",
        )
    }

    #[tokio::test]
    async fn send_expect_finds_text() {
        let spec = send_expect_spec(b"hello\r\nfilter READY 3 workers\r\n").await;
        let report = run(&spec, LIMIT).await;
        assert!(report.outcome.is_healthy(), "{report}");
    }

    #[tokio::test]
    async fn send_expect_wrong_reply_times_out_or_fails() {
        let spec = send_expect_spec(b"filter BUSY\r\n").await;
        let report = run(&spec, Duration::from_millis(300)).await;
        assert!(
            matches!(report.outcome, Outcome::TimedOut { ref step, .. } if step == "reply"),
            "{report}"
        );
    }
}
