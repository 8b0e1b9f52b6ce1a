//! HTTP(S) probe: one GET request, judged by the class of its status code.

use tokio::time::Instant;

use super::connect;
use super::io::{bad_reply, detail_text, LineReader};
use super::{Context, Outcome, Passed, StatusClass};

/// Interim (1xx) responses skipped before the final one. RFC 9110 lets a server send any
/// number, such as 103 Early Hints. A few are plausible, and more means a broken server.
const MAX_INTERIM_RESPONSES: usize = 4;

/// Header lines read while skipping one interim response.
const MAX_INTERIM_HEADERS: usize = 100;

/// Sends `GET path` with `Host: host` and checks that the status code is in class `expect`.
/// Implicit TLS gives HTTPS. The detail is the status line. Only the status line is read,
/// never the body.
pub(super) async fn check(
    context: &Context<'_>,
    path: &str,
    host: &str,
    expect: StatusClass,
) -> Result<Passed, Outcome> {
    let limit = context.timeout;
    let request = build_request(path, host)?;

    // Connect, with the TLS handshake here for HTTPS.
    let (stream, warning) = connect::open(context).await?;
    let mut reader = LineReader::new(stream);

    // "Connection: close" makes the server close the connection after its response.
    reader
        .write_all("request", request.as_bytes(), limit)
        .await?;

    // The status line of the final response, after any interim 1xx ones.
    let (status_line, code) = read_final_status(&mut reader, limit).await?;
    if code / 100 != u16::from(expect.0) {
        return Err(bad_reply(
            "status line",
            &format!("a {}xx status", expect.0),
            &status_line,
        ));
    }
    Ok(Passed {
        detail: Some(detail_text(&status_line)),
        warning,
    })
}

/// Builds the GET request. `path` and `host` come from the config, so reject anything that
/// would end the request line or a header early.
fn build_request(path: &str, host: &str) -> Result<String, Outcome> {
    let unsafe_byte = |byte: u8| byte.is_ascii_control() || byte == b' ' || !byte.is_ascii();
    if !path.starts_with('/') || path.bytes().any(unsafe_byte) {
        return Err(Outcome::Failed {
            error: format!(
                "invalid HTTP path {path:?}: it must start with '/' and contain no spaces or \
                 control characters (percent-encode them)"
            ),
        });
    }
    if host.is_empty() || host.bytes().any(unsafe_byte) {
        return Err(Outcome::Failed {
            error: format!(
                "invalid HTTP Host header {host:?}: set a host name such as localhost, \
                 without spaces or control characters"
            ),
        });
    }
    Ok(format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: selfheal\r\nConnection: close\r\n\r\n"
    ))
}

/// Reads status lines until a final one, skipping interim 1xx responses with their headers,
/// all within `limit`. Returns the final status line and its code.
pub(super) async fn read_final_status(
    reader: &mut LineReader,
    limit: std::time::Duration,
) -> Result<(Vec<u8>, u16), Outcome> {
    const STEP: &str = "status line";
    let started = Instant::now();
    for _ in 0..=MAX_INTERIM_RESPONSES {
        let line = reader.read_line_within(STEP, started, limit).await?;
        let code = parse_status_line(&line)
            .ok_or_else(|| bad_reply(STEP, "an \"HTTP/1.x NNN reason\" status line", &line))?;
        // 101 Switching Protocols is final: the server stops speaking HTTP after it.
        if !(100..200).contains(&code) || code == 101 {
            return Ok((line, code));
        }
        skip_headers(reader, started, limit).await?;
    }
    Err(Outcome::BadReply {
        step: STEP.to_string(),
        expected: format!("a final status after at most {MAX_INTERIM_RESPONSES} interim ones"),
        got: format!("more than {MAX_INTERIM_RESPONSES} 1xx responses"),
    })
}

/// Reads the header lines of an interim response up to the empty line that ends them.
async fn skip_headers(
    reader: &mut LineReader,
    started: Instant,
    limit: std::time::Duration,
) -> Result<(), Outcome> {
    for _ in 0..MAX_INTERIM_HEADERS {
        let line = reader
            .read_line_within("status line", started, limit)
            .await?;
        if line.is_empty() {
            return Ok(());
        }
    }
    Err(Outcome::BadReply {
        step: "status line".to_string(),
        expected: format!("an interim response of at most {MAX_INTERIM_HEADERS} header lines"),
        got: "more header lines".to_string(),
    })
}

/// Returns the status code of an `HTTP/1.x NNN reason` line, or None for anything else. The
/// reason phrase may be empty or missing (RFC 9112, section 4).
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let (minor, rest) = rest.split_first()?;
    if !minor.is_ascii_digit() {
        return None;
    }
    let rest = rest.strip_prefix(b" ")?;
    let digits = rest.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !matches!(rest.get(3), None | Some(b' ')) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
    (100..600).contains(&code).then_some(code)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::io::fake::{self, days_from_now, within, Peer};
    use super::super::{run, Protocol, TlsMode};
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);
    const SHORT: Duration = Duration::from_millis(300);

    fn http_protocol(expect: u8) -> Protocol {
        Protocol::Http {
            path: "/health".into(),
            host: "localhost".into(),
            expect: StatusClass(expect),
        }
    }

    async fn probe(expect: u8, address: &str, mode: TlsMode, limit: Duration) -> Outcome {
        run(&fake::spec(http_protocol(expect), address, mode), limit)
            .await
            .outcome
    }

    /// Reads the request and checks every line of it.
    async fn expect_request(peer: &mut Peer) {
        peer.expect("GET /health HTTP/1.1").await;
        peer.expect("Host: localhost").await;
        peer.expect("User-Agent: selfheal").await;
        peer.expect("Connection: close").await;
        peer.expect("").await;
    }

    /// Starts a server that reads the request, sends `response` and waits for the close.
    async fn responding_server(response: &'static [u8]) -> (String, tokio::task::JoinHandle<()>) {
        fake::serve(move |mut peer: Peer| async move {
            expect_request(&mut peer).await;
            peer.send(response).await;
            peer.wait_for_close().await;
        })
        .await
    }

    #[tokio::test]
    async fn http_200_healthy() {
        within(async {
            let (address, server) =
                responding_server(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            let outcome = probe(2, &address, TlsMode::Off, LIMIT).await;
            match &outcome {
                Outcome::Healthy {
                    detail, warning, ..
                } => {
                    assert_eq!(detail.as_deref(), Some("HTTP/1.1 200 OK"));
                    assert_eq!(warning, &None);
                }
                other => panic!("expected healthy, got: {other}"),
            }
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn http_503_bad_reply() {
        within(async {
            let (address, _server) =
                responding_server(b"HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
            let outcome = probe(2, &address, TlsMode::Off, LIMIT).await;
            assert_eq!(
                outcome,
                Outcome::BadReply {
                    step: "status line".into(),
                    expected: "a 2xx status".into(),
                    got: "\"HTTP/1.1 503 Service Unavailable\"".into(),
                }
            );
        })
        .await;
    }

    #[tokio::test]
    async fn http_redirect_expect_2() {
        within(async {
            let (address, _server) =
                responding_server(b"HTTP/1.1 301 Moved Permanently\r\nLocation: /\r\n\r\n").await;
            let outcome = probe(2, &address, TlsMode::Off, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::BadReply { got, .. } if got.contains("301 Moved")),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn http_redirect_expect_3() {
        within(async {
            let (address, _server) = responding_server(b"HTTP/1.0 302 Found\r\n\r\n").await;
            let outcome = probe(3, &address, TlsMode::Off, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::Healthy { detail: Some(detail), .. }
                    if detail == "HTTP/1.0 302 Found"),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn http_interim_response_skipped() {
        within(async {
            let (address, _server) = responding_server(
                b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 204 No Content\r\n\r\n",
            )
            .await;
            let outcome = probe(2, &address, TlsMode::Off, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::Healthy { detail: Some(detail), .. }
                    if detail == "HTTP/1.1 204 No Content"),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn http_status_bytewise() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                expect_request(&mut peer).await;
                peer.send_bytewise(b"HTTP/1.1 200 OK\r\n\r\n").await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(2, &address, TlsMode::Off, LIMIT).await;
            assert!(outcome.is_healthy(), "{outcome}");
        })
        .await;
    }

    #[tokio::test]
    async fn http_partial_status_times_out() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                expect_request(&mut peer).await;
                peer.send(b"HTTP/1.1 20").await;
                peer.wait_for_close().await;
            })
            .await;
            let started = tokio::time::Instant::now();
            let outcome = probe(2, &address, TlsMode::Off, SHORT).await;
            assert_eq!(
                outcome,
                Outcome::TimedOut {
                    step: "status line".into(),
                    after: SHORT
                }
            );
            assert!(started.elapsed() < Duration::from_secs(1));
        })
        .await;
    }

    #[tokio::test]
    async fn http_endless_status_line() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                expect_request(&mut peer).await;
                peer.send(b"HTTP/1.1 200 ").await;
                peer.send_forever(b'x').await;
            })
            .await;
            let outcome = probe(2, &address, TlsMode::Off, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::BadReply { expected, .. }
                    if expected.contains("at most 4096 bytes")),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn http_binary_garbage() {
        within(async {
            let (address, _server) = responding_server(b"\x15\x03\x01\x00\x02\x02\x0a\r\n").await;
            let outcome = probe(2, &address, TlsMode::Off, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::BadReply { step, got, .. }
                    if step == "status line" && got.contains("\\x15\\x03")),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn http_early_close() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                expect_request(&mut peer).await;
            })
            .await;
            let outcome = probe(2, &address, TlsMode::Off, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::BadReply { step, got, .. }
                    if step == "status line" && got.contains("connection closed")),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn https_expiry_warning() {
        within(async {
            let acceptor = fake::tls_acceptor(days_from_now(5));
            let (address, server) = fake::serve(move |peer: Peer| async move {
                let mut peer = peer.start_tls(&acceptor).await;
                expect_request(&mut peer).await;
                peer.send(b"HTTP/1.1 200 OK\r\n\r\n").await;
            })
            .await;
            let outcome = probe(2, &address, TlsMode::Implicit, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::Healthy { warning: Some(warning), .. }
                    if warning.contains("expires in 5 day(s)")),
                "{outcome}"
            );
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn https_expired_certificate() {
        within(async {
            let expired = std::time::SystemTime::now() - Duration::from_secs(86_400);
            let acceptor = fake::tls_acceptor(expired);
            let (address, _server) = fake::serve(move |peer: Peer| async move {
                let mut peer = peer.start_tls(&acceptor).await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(2, &address, TlsMode::Implicit, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::TlsFailed { error } if error.contains("expired")),
                "{outcome}"
            );
        })
        .await;
    }

    #[test]
    fn http_request_rejects_injection() {
        assert!(build_request("/health", "localhost").is_ok());
        assert!(build_request("/a?b=c%20d", "[::1]:8080").is_ok());
        for (path, host) in [
            ("health", "localhost"),
            ("/a b", "localhost"),
            ("/a\r\nX-Injected: 1", "localhost"),
            ("/", ""),
            ("/", "localhost\r\nX-Injected: 1"),
            ("/", "local host"),
        ] {
            let outcome = build_request(path, host).unwrap_err();
            assert!(
                matches!(&outcome, Outcome::Failed { error } if error.starts_with("invalid HTTP")),
                "{path:?} {host:?}: {outcome}"
            );
        }
    }

    #[test]
    fn http_status_line_parsing() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 404 Not Found"), Some(404));
        assert_eq!(parse_status_line(b"HTTP/1.1 204"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.1 204 "), Some(204));
        assert_eq!(parse_status_line(b"HTTP/2 200"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 20 OK"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 700 Odd"), None);
        assert_eq!(parse_status_line(b"http/1.1 200 OK"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH_9.2"), None);
    }
}
