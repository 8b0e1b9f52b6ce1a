//! Building blocks every probe uses: connecting to an endpoint, bounding each step by a
//! timeout, reading lines with a size limit, and quoting what a peer sent.

use std::future::Future;
use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::{timeout, Instant};

use super::{Endpoint, Outcome};

/// Longest reply line a probe accepts, in bytes. Protocol lines are far shorter (SMTP allows
/// 512), so anything longer is a misbehaving peer, not a slow one.
pub const MAX_LINE: usize = 4096;

/// Maximum length of a peer's reply quoted in an outcome, in characters.
const QUOTE_LEN: usize = 120;

pub trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

/// A connected byte stream: TCP, Unix or TLS.
pub type Stream = Box<dyn AsyncStream>;

/// Runs one step of a probe under `limit`. A timeout becomes `TimedOut` naming the step; an I/O
/// error becomes `Failed` (or `Refused` for a refused connection), also naming the step.
pub async fn step<T>(
    name: &str,
    limit: Duration,
    future: impl Future<Output = io::Result<T>>,
) -> Result<T, Outcome> {
    match timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(io_error(name, error)),
        Err(_) => Err(Outcome::TimedOut {
            step: name.to_string(),
            after: limit,
        }),
    }
}

fn io_error(step: &str, error: io::Error) -> Outcome {
    match error.kind() {
        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => Outcome::Refused {
            error: error.to_string(),
        },
        _ => Outcome::Failed {
            error: format!("{step}: {error}"),
        },
    }
}

/// Connects to a TCP or Unix stream endpoint.
pub async fn connect(endpoint: &Endpoint, limit: Duration) -> Result<Stream, Outcome> {
    match endpoint {
        Endpoint::Tcp { host, port } => {
            let stream = step("connect", limit, TcpStream::connect((host.as_str(), *port))).await?;
            // Probes write small commands and wait for the reply: do not let Nagle delay them.
            let _ = stream.set_nodelay(true);
            Ok(Box::new(stream))
        }
        Endpoint::Unix { path } => {
            let stream = step("connect", limit, UnixStream::connect(path))
                .await
                .map_err(|outcome| match outcome {
                    // "No such file or directory" reads like a bug; say what is missing.
                    Outcome::Refused { .. } if !path.exists() => Outcome::Refused {
                        error: format!("no socket at {}", path.display()),
                    },
                    other => other,
                })?;
            Ok(Box::new(stream))
        }
    }
}

/// Quotes bytes a peer sent: printable ASCII kept, everything else escaped, at most
/// `QUOTE_LEN` characters.
pub fn quote(bytes: &[u8]) -> String {
    let mut text = String::new();
    for &byte in bytes {
        match byte {
            b'\r' => text.push_str("\\r"),
            b'\n' => text.push_str("\\n"),
            b'\t' => text.push_str("\\t"),
            b'"' => text.push_str("\\\""),
            b'\\' => text.push_str("\\\\"),
            0x20..=0x7e => text.push(byte as char),
            other => text.push_str(&format!("\\x{other:02x}")),
        }
        if text.len() >= QUOTE_LEN {
            text.truncate(QUOTE_LEN);
            text.push_str("...");
            break;
        }
    }
    format!("\"{text}\"")
}

/// Maximum length of the detail that a healthy outcome keeps, in characters.
const DETAIL_LEN: usize = 80;

/// Turns what a peer sent about itself (an SMTP greeting, an HTTP status line) into a short
/// detail: printable ASCII kept, any other byte shown as `?`, at most `DETAIL_LEN` characters.
pub fn detail_text(bytes: &[u8]) -> String {
    let printable: String = bytes
        .iter()
        .map(|&byte| match byte {
            0x20..=0x7e => byte as char,
            _ => '?',
        })
        .collect();
    // Every character is ASCII, so truncating at a byte count cannot split one.
    let mut text = printable.trim().to_string();
    if text.len() > DETAIL_LEN {
        text.truncate(DETAIL_LEN);
        text.push_str("...");
    }
    text
}

/// Builds the outcome for a reply that breaks the protocol: the step, what was expected, and a
/// quote of what arrived.
pub fn bad_reply(step: &str, expected: &str, got: &[u8]) -> Outcome {
    Outcome::BadReply {
        step: step.to_string(),
        expected: expected.to_string(),
        got: quote(got),
    }
}

/// Reads until `buffer` is full or the peer closes the connection, and returns the number of
/// bytes read. A count below `buffer.len()` means the peer closed early.
pub async fn read_full<R>(reader: &mut R, buffer: &mut [u8]) -> io::Result<usize>
where
    R: AsyncRead + Unpin + ?Sized,
{
    let mut filled = 0;
    while filled < buffer.len() {
        let count = reader.read(&mut buffer[filled..]).await?;
        if count == 0 {
            break;
        }
        filled += count;
    }
    Ok(filled)
}

/// A peer that closed the connection before sending what `step` expected, quoting the bytes
/// that did arrive.
pub fn closed_early(step: &str, expected: &str, received: &[u8]) -> Outcome {
    let got = if received.is_empty() {
        "connection closed".to_string()
    } else {
        format!("{} then connection closed", quote(received))
    };
    Outcome::BadReply {
        step: step.to_string(),
        expected: expected.to_string(),
        got,
    }
}

/// Builds the bad reply for a line longer than `MAX_LINE`, quoting its start.
fn line_too_long(step: &str, line: &[u8]) -> Outcome {
    Outcome::BadReply {
        step: step.to_string(),
        expected: format!("a line of at most {MAX_LINE} bytes"),
        got: quote(line),
    }
}

/// A line-oriented connection (SMTP, IMAP, POP3, spamd, HTTP headers) with bounded reads.
pub struct LineReader {
    stream: Stream,
    buffer: Vec<u8>,
}

impl LineReader {
    pub fn new(stream: Stream) -> Self {
        LineReader {
            stream,
            buffer: Vec::new(),
        }
    }

    /// Reads one line ending in LF, without its CR LF, within `limit` for the whole line. A
    /// line longer than `MAX_LINE`, or a close before the line ends, is a bad reply.
    pub async fn read_line(
        &mut self,
        step_name: &str,
        limit: Duration,
    ) -> Result<Vec<u8>, Outcome> {
        let read = async {
            loop {
                if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                    let mut line: Vec<u8> = self.buffer.drain(..=end).collect();
                    line.pop();
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    // The end of a long line can arrive in the same read as its LF.
                    if line.len() > MAX_LINE {
                        return Ok(Err(line_too_long(step_name, &line)));
                    }
                    return Ok(Ok(line));
                }
                // Without an LF, MAX_LINE bytes and a CR are still a valid line once the LF
                // arrives. Anything longer is not.
                if self.buffer.len() > MAX_LINE + 1 {
                    return Ok(Err(line_too_long(step_name, &self.buffer)));
                }
                let mut chunk = [0u8; 1024];
                let count = self.stream.read(&mut chunk).await?;
                if count == 0 {
                    let got = if self.buffer.is_empty() {
                        "connection closed".to_string()
                    } else {
                        format!("{} then connection closed", quote(&self.buffer))
                    };
                    return Ok(Err(Outcome::BadReply {
                        step: step_name.to_string(),
                        expected: "a complete line".to_string(),
                        got,
                    }));
                }
                self.buffer.extend_from_slice(&chunk[..count]);
            }
        };
        step(step_name, limit, read).await?
    }

    /// Reads one line of a reply that may span several lines, all of which must arrive within
    /// `limit` of `started`. A peer that sends each line just before the timeout thus cannot
    /// stretch the step, and a timeout reports the whole `limit`.
    pub async fn read_line_within(
        &mut self,
        step_name: &str,
        started: Instant,
        limit: Duration,
    ) -> Result<Vec<u8>, Outcome> {
        let left = limit.saturating_sub(started.elapsed());
        match self.read_line(step_name, left).await {
            Err(Outcome::TimedOut { step, .. }) => Err(Outcome::TimedOut { step, after: limit }),
            other => other,
        }
    }

    pub async fn write_all(
        &mut self,
        step_name: &str,
        data: &[u8],
        limit: Duration,
    ) -> Result<(), Outcome> {
        step(step_name, limit, async {
            self.stream.write_all(data).await?;
            self.stream.flush().await
        })
        .await
    }

    /// Whether bytes arrived beyond the lines read so far (a peer that pipelines before a TLS
    /// upgrade is broken or hostile).
    pub fn has_buffered(&self) -> bool {
        !self.buffer.is_empty()
    }

    pub fn into_stream(self) -> Stream {
        self.stream
    }
}

/// Scripted fake servers on 127.0.0.1 for the tests of the protocol modules.
#[cfg(test)]
pub(super) mod fake {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_rustls::TlsAcceptor;

    use super::Stream;
    use crate::probe::{Endpoint, ProbeSpec, Protocol, TlsMode};

    /// Upper bound of a whole test, so that a probe that hangs fails instead of blocking.
    const TEST_LIMIT: Duration = Duration::from_secs(10);

    /// Runs `future`, failing the test when it takes longer than `TEST_LIMIT`.
    pub async fn within<T>(future: impl Future<Output = T>) -> T {
        tokio::time::timeout(TEST_LIMIT, future)
            .await
            .expect("test did not finish within 10 s")
    }

    /// The server side of one accepted connection.
    pub struct Peer {
        stream: BufReader<Stream>,
    }

    impl Peer {
        fn new(stream: Stream) -> Peer {
            Peer {
                stream: BufReader::new(stream),
            }
        }

        pub async fn send(&mut self, bytes: &[u8]) {
            let stream = self.stream.get_mut();
            stream.write_all(bytes).await.expect("fake server: send");
            stream.flush().await.expect("fake server: flush");
        }

        /// Sends `bytes` one at a time with a pause between them, so that each arrives in a
        /// read of its own.
        pub async fn send_bytewise(&mut self, bytes: &[u8]) {
            for byte in bytes {
                self.send(std::slice::from_ref(byte)).await;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }

        /// Sends `byte` in 1 KiB chunks until the client closes the connection.
        pub async fn send_forever(&mut self, byte: u8) {
            let chunk = [byte; 1024];
            let stream = self.stream.get_mut();
            while stream.write_all(&chunk).await.is_ok() {}
        }

        /// Reads one line without its CR LF, or returns None when the client has closed.
        pub async fn read_line(&mut self) -> Option<String> {
            let mut line = String::new();
            let count = self
                .stream
                .read_line(&mut line)
                .await
                .expect("fake server: read");
            (count > 0).then(|| line.trim_end_matches(['\r', '\n']).to_string())
        }

        /// Reads one line and fails the server task unless it equals `expected`.
        pub async fn expect(&mut self, expected: &str) {
            let line = self.read_line().await;
            assert_eq!(line.as_deref(), Some(expected), "fake server: client sent");
        }

        /// Completes a TLS handshake as the server and returns the peer over TLS.
        pub async fn start_tls(self, acceptor: &TlsAcceptor) -> Peer {
            assert!(
                self.stream.buffer().is_empty(),
                "fake server: client sent data before the TLS handshake"
            );
            let tls = acceptor
                .accept(self.stream.into_inner())
                .await
                .expect("fake server: TLS handshake");
            Peer::new(Box::new(tls))
        }

        /// Reads and discards whatever the client sends until it closes the connection.
        pub async fn wait_for_close(&mut self) {
            let mut sink = [0u8; 1024];
            while matches!(self.stream.read(&mut sink).await, Ok(count) if count > 0) {}
        }
    }

    /// Listens on 127.0.0.1 on a free port and runs `script` on the first connection.
    /// Returns the address and the server task, whose join error reports a failed assertion.
    pub async fn serve<F, Fut>(script: F) -> (String, JoinHandle<()>)
    where
        F: FnOnce(Peer) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address").to_string();
        let task = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("fake server: accept");
            socket.set_nodelay(true).expect("fake server: TCP_NODELAY");
            script(Peer::new(Box::new(socket))).await;
        });
        (address, task)
    }

    /// Builds a probe of `protocol` against a fake server at `address`.
    pub fn spec(protocol: Protocol, address: &str, mode: TlsMode) -> ProbeSpec {
        let endpoint = Endpoint::parse(address).expect("fake server address");
        ProbeSpec::new(protocol, Some(endpoint), "test").with_tls(mode)
    }

    /// Builds a TLS acceptor with a fresh self-signed certificate for localhost, valid from
    /// 30 days ago until `not_after`.
    pub fn tls_acceptor(not_after: SystemTime) -> TlsAcceptor {
        let key = rcgen::KeyPair::generate().expect("generate key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_before = (SystemTime::now() - Duration::from_secs(30 * 86_400)).into();
        params.not_after = not_after.into();
        let certificate = params.self_signed(&key).expect("self-sign certificate");
        let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        // The ring provider, as on the client side. `tls::provider` explains its deprecation.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], private_key)
            .expect("server certificate");
        TlsAcceptor::from(Arc::new(config))
    }

    /// Returns the time `days` days and one hour from now. The extra hour keeps the whole
    /// days left at `days` while the test runs.
    pub fn days_from_now(days: u64) -> SystemTime {
        SystemTime::now() + Duration::from_secs(days * 86_400 + 3_600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_escapes_and_truncates() {
        assert_eq!(quote(b"220 ok\r\n"), "\"220 ok\\r\\n\"");
        assert_eq!(quote(&[0, 0xff]), "\"\\x00\\xff\"");
        let long = quote(&[b'a'; 500]);
        assert!(long.len() < 130, "{long}");
        assert!(long.ends_with("...\""), "{long}");
    }

    async fn reader_for(bytes: &'static [u8]) -> LineReader {
        let (client, mut server) = tokio::io::duplex(64);
        tokio::spawn(async move {
            for chunk in bytes.chunks(3) {
                let _ = server.write_all(chunk).await;
            }
        });
        LineReader::new(Box::new(client))
    }

    #[tokio::test]
    async fn line_split_across_reads() {
        let mut reader = reader_for(b"220 mail ESMTP\r\n250 next\r\n").await;
        let limit = Duration::from_secs(2);
        assert_eq!(
            reader.read_line("greeting", limit).await.unwrap(),
            b"220 mail ESMTP"
        );
        assert_eq!(reader.read_line("next", limit).await.unwrap(), b"250 next");
    }

    #[tokio::test]
    async fn early_close_is_bad_reply() {
        let mut reader = reader_for(b"220 partial").await;
        let outcome = reader
            .read_line("greeting", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(&outcome, Outcome::BadReply { got, .. } if got.contains("connection closed")),
            "{outcome}"
        );
    }

    #[tokio::test]
    async fn endless_line_is_bounded() {
        let (client, mut server) = tokio::io::duplex(8192);
        tokio::spawn(async move {
            let junk = vec![b'x'; 1024];
            while server.write_all(&junk).await.is_ok() {}
        });
        let mut reader = LineReader::new(Box::new(client));
        let outcome = reader
            .read_line("greeting", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(outcome, Outcome::BadReply { .. }), "{outcome}");
    }

    /// Sends `chunks` through a stream with room for all of them, so that each read returns
    /// as much as has arrived, and then closes the stream.
    async fn reader_for_chunks(chunks: Vec<Vec<u8>>) -> LineReader {
        let (client, mut server) = tokio::io::duplex(16 * 1024);
        tokio::spawn(async move {
            for chunk in chunks {
                let _ = server.write_all(&chunk).await;
                tokio::task::yield_now().await;
            }
        });
        LineReader::new(Box::new(client))
    }

    #[tokio::test]
    async fn overlong_line_with_newline_in_same_read() {
        // 4100 bytes and CR LF arrive in one read, so the LF is found before the length check.
        let mut line = vec![b'x'; MAX_LINE + 4];
        line.extend_from_slice(b"\r\n");
        let mut reader = reader_for_chunks(vec![line]).await;
        let outcome = reader
            .read_line("greeting", Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(
            matches!(&outcome, Outcome::BadReply { expected, .. }
                if expected == "a line of at most 4096 bytes"),
            "{outcome}"
        );
    }

    #[tokio::test]
    async fn max_line_with_newline_in_next_read() {
        // MAX_LINE bytes and the CR arrive in one read and the LF in the next, a valid line.
        let mut first = vec![b'x'; MAX_LINE];
        first.push(b'\r');
        let mut reader = reader_for_chunks(vec![first, b"\n".to_vec()]).await;
        let line = reader
            .read_line("greeting", Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(line.len(), MAX_LINE);
    }

    #[tokio::test]
    async fn silent_peer_times_out() {
        let (client, _server) = tokio::io::duplex(64);
        let mut reader = LineReader::new(Box::new(client));
        let outcome = reader
            .read_line("greeting", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(
            outcome,
            Outcome::TimedOut {
                step: "greeting".into(),
                after: Duration::from_millis(100)
            }
        );
    }
}
