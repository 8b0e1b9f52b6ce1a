//! spamd probe: the PING command of the spamc protocol, which spamd replies to without
//! scanning a message.

use super::connect;
use super::io::{bad_reply, detail_text, LineReader};
use super::{Context, Outcome, Passed};

/// The request: a PING with protocol version 1.5 and an empty header block.
const PING: &[u8] = b"PING SPAMC/1.5\r\n\r\n";

/// Sends PING and expects `SPAMD/1.x 0 PONG`. The detail is the protocol version in the
/// reply, such as `SPAMD/1.5`. spamd sends nothing before the request, so there is no
/// greeting step.
pub(super) async fn check(context: &Context<'_>) -> Result<Passed, Outcome> {
    let limit = context.timeout;

    // Connect, with the TLS handshake here when spamd runs with --ssl.
    let (stream, warning) = connect::open(context).await?;
    let mut reader = LineReader::new(stream);

    // PING, then one reply line.
    reader.write_all("PING", PING, limit).await?;
    let reply = reader.read_line("PONG", limit).await?;
    let version =
        parse_pong(&reply).ok_or_else(|| bad_reply("PONG", "\"SPAMD/1.x 0 PONG\"", &reply))?;
    Ok(Passed {
        detail: Some(detail_text(version)),
        warning,
    })
}

/// Returns the protocol version (`SPAMD/1.5`) of a `SPAMD/1.x 0 PONG` reply, or None for
/// anything else, such as an error `SPAMD/1.0 76 Bad header line`.
pub(super) fn parse_pong(line: &[u8]) -> Option<&[u8]> {
    let mut words = line.split(|&byte| byte == b' ');
    let version = words.next()?;
    let number = version.strip_prefix(b"SPAMD/1.")?;
    if number.is_empty() || !number.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let fields = (words.next()?, words.next()?, words.next());
    (fields == (&b"0"[..], &b"PONG"[..], None)).then_some(version)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::io::fake::{self, within, Peer};
    use super::super::{run, Protocol, TlsMode};
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);
    const SHORT: Duration = Duration::from_millis(300);

    async fn probe(address: &str, limit: Duration) -> Outcome {
        run(&fake::spec(Protocol::Spamd, address, TlsMode::Off), limit)
            .await
            .outcome
    }

    /// Starts a server that reads the PING, sends `reply` and waits for the close.
    async fn replying_server(reply: &'static [u8]) -> (String, tokio::task::JoinHandle<()>) {
        fake::serve(move |mut peer: Peer| async move {
            peer.expect("PING SPAMC/1.5").await;
            peer.expect("").await;
            peer.send(reply).await;
            peer.wait_for_close().await;
        })
        .await
    }

    #[tokio::test]
    async fn spamd_pong_healthy() {
        within(async {
            let (address, server) = replying_server(b"SPAMD/1.5 0 PONG\r\n").await;
            let outcome = probe(&address, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::Healthy { detail: Some(detail), .. }
                    if detail == "SPAMD/1.5"),
                "{outcome}"
            );
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn spamd_error_reply() {
        within(async {
            let (address, _server) =
                replying_server(b"SPAMD/1.0 76 Bad header line: PING\r\n").await;
            let outcome = probe(&address, LIMIT).await;
            assert_eq!(
                outcome,
                Outcome::BadReply {
                    step: "PONG".into(),
                    expected: "\"SPAMD/1.x 0 PONG\"".into(),
                    got: "\"SPAMD/1.0 76 Bad header line: PING\"".into(),
                }
            );
        })
        .await;
    }

    #[tokio::test]
    async fn spamd_other_service() {
        within(async {
            let (address, _server) = replying_server(b"HTTP/1.1 400 Bad Request\r\n").await;
            let outcome = probe(&address, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::BadReply { step, .. } if step == "PONG"),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn spamd_pong_bytewise() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.expect("PING SPAMC/1.5").await;
                peer.expect("").await;
                peer.send_bytewise(b"SPAMD/1.5 0 PONG\r\n").await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(&address, LIMIT).await;
            assert!(outcome.is_healthy(), "{outcome}");
        })
        .await;
    }

    #[tokio::test]
    async fn spamd_partial_reply_times_out() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.expect("PING SPAMC/1.5").await;
                peer.send(b"SPAMD/1.5 0 PO").await;
                peer.wait_for_close().await;
            })
            .await;
            let started = tokio::time::Instant::now();
            let outcome = probe(&address, SHORT).await;
            assert_eq!(
                outcome,
                Outcome::TimedOut {
                    step: "PONG".into(),
                    after: SHORT
                }
            );
            assert!(started.elapsed() < Duration::from_secs(1));
        })
        .await;
    }

    #[tokio::test]
    async fn spamd_endless_reply() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.expect("PING SPAMC/1.5").await;
                peer.send_forever(b'x').await;
            })
            .await;
            let outcome = probe(&address, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::BadReply { step, expected, .. }
                    if step == "PONG" && expected.contains("at most 4096 bytes")),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn spamd_binary_garbage() {
        within(async {
            let (address, _server) = replying_server(b"\x00\x01\xfe\xff\r\n").await;
            let outcome = probe(&address, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::BadReply { got, .. } if got.contains("\\x00\\x01")),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn spamd_early_close() {
        within(async {
            let (address, _server) = fake::serve(|peer: Peer| async move { drop(peer) }).await;
            let outcome = probe(&address, LIMIT).await;
            // The close may come before or after the PING is written, and writing to a closed
            // socket can fail with a reset.
            assert!(
                matches!(&outcome,
                    Outcome::BadReply { step, got, .. }
                        if step == "PONG" && got.contains("connection closed"))
                    || matches!(&outcome, Outcome::Failed { .. }),
                "{outcome}"
            );
        })
        .await;
    }

    #[test]
    fn spamd_pong_parsing() {
        assert_eq!(parse_pong(b"SPAMD/1.5 0 PONG"), Some(&b"SPAMD/1.5"[..]));
        assert_eq!(parse_pong(b"SPAMD/1.12 0 PONG"), Some(&b"SPAMD/1.12"[..]));
        assert_eq!(parse_pong(b"SPAMD/1.5 0 PONG extra"), None);
        assert_eq!(parse_pong(b"SPAMD/1.5 76 PONG"), None);
        assert_eq!(parse_pong(b"SPAMD/2.0 0 PONG"), None);
        assert_eq!(parse_pong(b"SPAMD/1. 0 PONG"), None);
        assert_eq!(parse_pong(b"SPAMD/1.5 0"), None);
        assert_eq!(parse_pong(b"PONG"), None);
    }
}
