//! MySQL/MariaDB probe.
//!
//! Without credentials the probe reads the server's first packet, which a server sends to
//! every new connection before any login: the initial handshake (protocol version 10) with
//! the server version, or an error packet such as "Too many connections". Either shows whether
//! the server accepts clients, without an account.
//!
//! With a credentials file in the format of Debian's `/etc/mysql/debian.cnf`, the probe logs in
//! with `mysql_async` instead and runs `SELECT 1, VERSION()`, which also proves that the server
//! executes queries. On Debian, root logs in over the Unix socket through the unix_socket
//! plugin, so that file names the user without a password. Prefer this variant where selfheal
//! can read such a file, for the reasons below.
//!
//! NOTE: the handshake-only check closes the connection without logging in, which servers
//! treat as an aborted connection. MariaDB 10.11 at its default `log_warnings = 2` logs a
//! warning "Aborted connection ... closed normally without authentication" for every check
//! (seen in the test rig). MySQL also counts it as a connection error of the client host and
//! blocks the host after `max_connect_errors` (100 by default). The host cache that counts them
//! skips Unix sockets and loopback addresses, so only probes from another host are at risk, and
//! a successful login resets the count.

use std::path::Path;
use std::time::Duration;

use mysql_async::prelude::Queryable;

use super::io::{self, bad_reply, closed_early, step, Stream};
use super::{connect, Context, Endpoint, Outcome, Passed};

/// Maximum payload of the first packet, in bytes. A handshake takes about 100 bytes and an
/// error packet carries a message of at most 512 bytes, while the 3-byte length field allows
/// 16 MiB.
const MAX_FIRST_PACKET: usize = 4096;

/// Maximum size of the credentials file, in bytes. debian.cnf takes a few hundred.
const MAX_CREDENTIALS_FILE: u64 = 64 * 1024;

/// Protocol version of the initial handshake that MySQL 5.x and 8.x and MariaDB send.
const PROTOCOL_VERSION: u8 = 10;

/// First byte of an error packet.
const ERROR_PACKET: u8 = 0xff;

/// Fixed handshake fields after the server version: connection id (4), first part of the
/// scramble (8), filler (1) and the lower capability flags (2).
const FIXED_FIELDS_LEN: usize = 15;

/// Prefix that MariaDB 10.x puts before its version for clients that expect MySQL 5.5 or later.
const MARIADB_PREFIX: &str = "5.5.5-";

const HANDSHAKE: &str = "handshake";

/// Reads the server's handshake or, with `credentials`, logs in and runs a query.
pub(super) async fn check(
    context: &Context<'_>,
    credentials: Option<&Path>,
) -> Result<Passed, Outcome> {
    let endpoint = context.endpoint()?;

    // With credentials, log in and run a query. A broken file fails before any connection.
    if let Some(path) = credentials {
        let credentials = read_credentials(path).await?;
        let version = log_in(endpoint, &credentials, path, context.timeout).await?;
        return Ok(Passed {
            detail: Some(format!(
                "{}; SELECT 1 as {}",
                describe_server(&version),
                credentials.user
            )),
            warning: None,
        });
    }

    // Without, read the handshake (or error) that the server sends to every new connection.
    let (mut stream, warning) = connect::open(context).await?;
    let (sequence, payload) = read_first_packet(&mut stream, context.timeout).await?;
    let version = parse_first_packet(sequence, &payload)?;
    Ok(Passed {
        detail: Some(describe_server(&version)),
        warning,
    })
}

/// Reads one packet within `limit`: a 3-byte little-endian payload length, a sequence id and
/// the payload. Returns the sequence id and the payload. The length is checked against
/// `MAX_FIRST_PACKET` before anything is allocated.
pub(super) async fn read_first_packet(
    stream: &mut Stream,
    limit: Duration,
) -> Result<(u8, Vec<u8>), Outcome> {
    let read = async {
        let mut header = [0u8; 4];
        let filled = io::read_full(stream, &mut header).await?;
        if filled < header.len() {
            return Ok(Err(closed_early(
                HANDSHAKE,
                "a handshake packet",
                &header[..filled],
            )));
        }
        let length =
            usize::from(header[0]) | usize::from(header[1]) << 8 | usize::from(header[2]) << 16;
        if length == 0 || length > MAX_FIRST_PACKET {
            return Ok(Err(Outcome::BadReply {
                step: HANDSHAKE.to_string(),
                expected: format!("a packet of 1 to {MAX_FIRST_PACKET} bytes"),
                got: format!("length {length} ({})", io::quote(&header)),
            }));
        }
        let mut payload = vec![0u8; length];
        let filled = io::read_full(stream, &mut payload).await?;
        if filled < length {
            return Ok(Err(closed_early(
                HANDSHAKE,
                &format!("a handshake packet of {length} bytes"),
                &payload[..filled],
            )));
        }
        Ok(Ok((header[3], payload)))
    };
    step(HANDSHAKE, limit, read).await?
}

/// Checks the first packet and returns the server version it announces. An error packet is a
/// bad reply that quotes the server's message.
pub(super) fn parse_first_packet(sequence: u8, payload: &[u8]) -> Result<String, Outcome> {
    if payload.first() == Some(&ERROR_PACKET) {
        return Err(Outcome::BadReply {
            step: HANDSHAKE.to_string(),
            expected: "a handshake packet".to_string(),
            got: describe_error_packet(payload),
        });
    }
    if sequence != 0 {
        return Err(Outcome::BadReply {
            step: HANDSHAKE.to_string(),
            expected: "sequence id 0".to_string(),
            got: format!("sequence id {sequence} with {}", io::quote(payload)),
        });
    }
    if payload[0] != PROTOCOL_VERSION {
        return Err(Outcome::BadReply {
            step: HANDSHAKE.to_string(),
            expected: format!("protocol version {PROTOCOL_VERSION}"),
            got: format!("protocol version {} in {}", payload[0], io::quote(payload)),
        });
    }

    // The server version is a NUL-terminated string, followed by fixed-size fields.
    let rest = &payload[1..];
    let Some(end) = rest.iter().position(|&byte| byte == 0) else {
        return Err(bad_reply(
            HANDSHAKE,
            "a NUL-terminated server version",
            payload,
        ));
    };
    let version = &rest[..end];
    if !is_printable(version) {
        return Err(bad_reply(
            HANDSHAKE,
            "a server version of printable characters",
            version,
        ));
    }
    if rest.len() - end - 1 < FIXED_FIELDS_LEN {
        return Err(bad_reply(HANDSHAKE, "a complete handshake packet", payload));
    }
    Ok(String::from_utf8_lossy(version).into_owned())
}

/// Describes an error packet: error code, SQL state when present, and the quoted message.
fn describe_error_packet(payload: &[u8]) -> String {
    let Some(code) = payload.get(1..3) else {
        return format!("a truncated error packet {}", io::quote(payload));
    };
    let code = u16::from_le_bytes([code[0], code[1]]);
    let mut message = &payload[3..];
    let mut state = String::new();
    // After the handshake, an error packet carries '#' and a 5-character SQL state of digits
    // and capital letters. Other bytes after a '#' stay in the quoted message, so that a
    // control character from the peer never reaches the outcome unescaped.
    let state_bytes = message.get(1..6).filter(|state| {
        state
            .iter()
            .all(|byte| byte.is_ascii_digit() || byte.is_ascii_uppercase())
    });
    if let (Some(b'#'), Some(state_bytes)) = (message.first(), state_bytes) {
        state = format!(" ({})", String::from_utf8_lossy(state_bytes));
        message = &message[6..];
    }
    format!("error {code}{state}: {}", io::quote(message))
}

/// Names the server product and version: "MariaDB 10.11.6" or "MySQL 8.0.36".
pub(super) fn describe_server(version: &str) -> String {
    let version = version.strip_prefix(MARIADB_PREFIX).unwrap_or(version);
    match version.split_once("-MariaDB") {
        Some((number, _build)) => format!("MariaDB {number}"),
        None => format!("MySQL {version}"),
    }
}

/// User and password from the `[client]` group of a MySQL option file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Credentials {
    user: String,
    password: Option<String>,
}

/// Reads and parses the credentials file. The file's host, port and socket options are
/// ignored, because the probe logs in at its own endpoint.
async fn read_credentials(path: &Path) -> Result<Credentials, Outcome> {
    let failed = |reason: String| Outcome::Failed {
        error: format!(
            "cannot read MySQL credentials from {}: {reason}",
            path.display()
        ),
    };
    let metadata = tokio::fs::metadata(path)
        .await
        .map_err(|error| failed(format!("{error}; check the path and its permissions")))?;
    if metadata.len() > MAX_CREDENTIALS_FILE {
        return Err(failed(format!(
            "the file has {} bytes, more than the maximum of {MAX_CREDENTIALS_FILE}; \
             point the probe at a file like /etc/mysql/debian.cnf",
            metadata.len()
        )));
    }
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|error| failed(format!("{error}; it must be a readable UTF-8 text file")))?;
    parse_credentials(&text).map_err(failed)
}

/// Parses the `[client]` group of a MySQL option file: `user` and optionally `password`.
///
/// Follows the option file syntax of MySQL 8.0 and MariaDB 10.11: `#` and `;` start comment
/// lines, `#` also starts a comment after an unquoted value, and values may be quoted.
/// `!include` directives are not followed.
fn parse_credentials(text: &str) -> Result<Credentials, String> {
    let mut in_client = false;
    let mut user = None;
    let mut password = None;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[') {
            let Some(group) = group.strip_suffix(']') else {
                return Err(format!(
                    "line {}: invalid group header {line:?}; expected [client]",
                    index + 1
                ));
            };
            in_client = group.trim() == "client";
            continue;
        }
        if !in_client || line.starts_with('!') {
            continue;
        }
        let (name, value) = match line.split_once('=') {
            Some((name, value)) => (name.trim(), parse_value(value.trim())),
            None => (line, String::new()),
        };
        match name {
            "user" => user = Some(value),
            "password" => password = Some(value),
            _ => {}
        }
    }
    let user = user.filter(|user| !user.is_empty()).ok_or_else(|| {
        "no user in its [client] group; add a line such as `user = root`".to_string()
    })?;
    Ok(Credentials {
        user,
        password: password.filter(|password| !password.is_empty()),
    })
}

/// Parses an option value: a quoted string with backslash escapes, or an unquoted value that
/// ends at a `#` comment.
fn parse_value(raw: &str) -> String {
    let Some(quote) = raw.chars().next().filter(|c| *c == '"' || *c == '\'') else {
        let value = raw.split_once('#').map_or(raw, |(value, _comment)| value);
        return value.trim_end().to_string();
    };
    let mut value = String::new();
    let mut chars = raw[1..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some('r') => value.push('\r'),
                Some('b') => value.push('\u{8}'),
                Some('s') => value.push(' '),
                Some(other) => value.push(other),
                None => value.push('\\'),
            },
            c if c == quote => break,
            c => value.push(c),
        }
    }
    value
}

/// Logs in at `endpoint` as the file's user, runs `SELECT 1, VERSION()`, disconnects, and
/// returns the server version.
async fn log_in(
    endpoint: &Endpoint,
    credentials: &Credentials,
    path: &Path,
    limit: Duration,
) -> Result<String, Outcome> {
    // Connect exactly to the endpoint: with prefer_socket, mysql_async would switch a TCP
    // connection to the server's Unix socket.
    let mut options = mysql_async::OptsBuilder::default()
        .user(Some(credentials.user.clone()))
        .pass(credentials.password.clone())
        .prefer_socket(false);
    options = match endpoint {
        Endpoint::Unix { path: socket } => {
            let Some(socket) = socket.to_str() else {
                return Err(Outcome::Failed {
                    error: format!(
                        "MySQL socket path {} is not valid UTF-8, which mysql_async requires; \
                         use a socket path of UTF-8 characters",
                        socket.display()
                    ),
                });
            };
            options.socket(Some(socket))
        }
        Endpoint::Tcp { host, port } => options.ip_or_hostname(host.clone()).tcp_port(*port),
    };

    // Log in, including the auth switch that MariaDB's unix_socket plugin requests.
    let mut connection = tokio::time::timeout(limit, mysql_async::Conn::new(options))
        .await
        .map_err(|_| timed_out("login", limit))?
        .map_err(|error| match error {
            // Nothing listens there, as in `io::connect`.
            mysql_async::Error::Io(mysql_async::IoError::Io(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Outcome::Refused {
                    error: format!("{endpoint}: {error}"),
                }
            }
            other => login_failed("login", &credentials.user, path, other),
        })?;

    // Run a query that every server answers with 1 and its version.
    let row = tokio::time::timeout(
        limit,
        connection.query_first::<(i64, String), _>("SELECT 1, VERSION()"),
    )
    .await
    .map_err(|_| timed_out("query", limit))?
    .map_err(|error| login_failed("query", &credentials.user, path, error))?;
    let version = match row {
        Some((1, version)) if is_printable(version.as_bytes()) => version,
        other => {
            return Err(Outcome::BadReply {
                step: "query".to_string(),
                expected: "1 and a printable version from SELECT 1, VERSION()".to_string(),
                got: io::quote(format!("{other:?}").as_bytes()),
            })
        }
    };

    // Send COM_QUIT. The query already proved the server works, so a failure here is ignored.
    let _ = tokio::time::timeout(limit, connection.disconnect()).await;
    Ok(version)
}

/// Whether a server version is non-empty, printable ASCII without spaces, like "10.11.6".
fn is_printable(version: &[u8]) -> bool {
    !version.is_empty() && version.iter().all(u8::is_ascii_graphic)
}

fn timed_out(step: &str, after: Duration) -> Outcome {
    Outcome::TimedOut {
        step: step.to_string(),
        after,
    }
}

/// Server error codes that mean the account cannot log in: ER_DBACCESS_DENIED_ERROR,
/// ER_ACCESS_DENIED_ERROR, ER_SPECIFIC_ACCESS_DENIED_ERROR and
/// ER_ACCESS_DENIED_NO_PASSWORD_ERROR.
const ACCESS_DENIED_CODES: [u16; 4] = [1044, 1045, 1227, 1698];

/// Turns a mysql_async error into an outcome. A server error quotes the server's message, and
/// an access error also names the credentials file to check.
fn login_failed(step: &str, user: &str, path: &Path, error: mysql_async::Error) -> Outcome {
    let error = match error {
        mysql_async::Error::Server(server) => {
            let mut text = format!(
                "{step} as {user} failed with error {} ({}): {}",
                server.code,
                server.state,
                io::quote(server.message.as_bytes()),
            );
            if ACCESS_DENIED_CODES.contains(&server.code) {
                text.push_str(&format!(
                    "; check the user and password in {} and the user's privileges",
                    path.display()
                ));
            }
            text
        }
        // mysql_async's own text repeats "Input/output error".
        mysql_async::Error::Io(mysql_async::IoError::Io(error)) => {
            format!("{step} as {user} failed: {error}")
        }
        other => format!("{step} as {user} failed: {other}"),
    };
    Outcome::Failed { error }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::super::{run, ProbeReport, ProbeSpec, Protocol};
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    /// Bound on each test, so that a probe that hangs fails the test.
    const TEST_LIMIT: Duration = Duration::from_secs(10);

    /// A handshake payload as MySQL 8.0 and MariaDB 10.11 send it.
    fn handshake(version: &str, plugin: &str, mariadb: bool) -> Vec<u8> {
        let mut payload = vec![PROTOCOL_VERSION];
        payload.extend_from_slice(version.as_bytes());
        payload.push(0);
        payload.extend_from_slice(&42u32.to_le_bytes());
        payload.extend_from_slice(b"abcdefgh");
        payload.push(0);
        // Lower capabilities include CLIENT_PROTOCOL_41 and CLIENT_SECURE_CONNECTION.
        payload.extend_from_slice(&0xf7ffu16.to_le_bytes());
        payload.push(0x2d);
        payload.extend_from_slice(&2u16.to_le_bytes());
        // Upper capabilities include CLIENT_PLUGIN_AUTH.
        payload.extend_from_slice(&0x81bfu16.to_le_bytes());
        payload.push(21);
        payload.extend_from_slice(&[0; 6]);
        // MariaDB puts its extended capabilities in the last 4 reserved bytes.
        let extended: u32 = if mariadb { 0x1d } else { 0 };
        payload.extend_from_slice(&extended.to_le_bytes());
        payload.extend_from_slice(b"ijklmnopqrst\0");
        payload.extend_from_slice(plugin.as_bytes());
        payload.push(0);
        payload
    }

    /// A packet: 3-byte little-endian length, sequence id, payload.
    fn packet(sequence: u8, payload: &[u8]) -> Vec<u8> {
        let length = payload.len().to_le_bytes();
        let mut bytes = vec![length[0], length[1], length[2], sequence];
        bytes.extend_from_slice(payload);
        bytes
    }

    fn error_payload(code: u16, state: Option<&str>, message: &str) -> Vec<u8> {
        let mut payload = vec![ERROR_PACKET];
        payload.extend_from_slice(&code.to_le_bytes());
        if let Some(state) = state {
            payload.push(b'#');
            payload.extend_from_slice(state.as_bytes());
        }
        payload.extend_from_slice(message.as_bytes());
        payload
    }

    /// A fake server on 127.0.0.1 that writes `first` to each connection and, with `login`,
    /// answers the login response with `login` as well. Keeps each connection open for 5 s.
    async fn fake(first: Vec<u8>, login: Option<Vec<u8>>) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, first.clone(), login.clone()));
            }
        });
        Endpoint::parse(&address).unwrap()
    }

    async fn serve(mut stream: TcpStream, first: Vec<u8>, login: Option<Vec<u8>>) {
        let _ = stream.write_all(&first).await;
        if let Some(reply) = login {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let _ = stream.write_all(&reply).await;
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    }

    async fn probe(endpoint: Endpoint, credentials: Option<&Path>, limit: Duration) -> ProbeReport {
        let spec = ProbeSpec::new(
            Protocol::Mysql {
                credentials: credentials.map(Path::to_path_buf),
            },
            Some(endpoint),
            "test",
        );
        tokio::time::timeout(TEST_LIMIT, run(&spec, limit))
            .await
            .expect("probe hung")
    }

    fn detail(report: &ProbeReport) -> &str {
        match &report.outcome {
            Outcome::Healthy {
                detail: Some(detail),
                ..
            } => detail,
            _ => panic!("expected healthy with a detail, got {report}"),
        }
    }

    #[tokio::test]
    async fn mysql8_handshake() {
        let first = packet(0, &handshake("8.0.36", "caching_sha2_password", false));
        let report = probe(fake(first, None).await, None, LIMIT).await;

        assert_eq!(detail(&report), "MySQL 8.0.36");
    }

    #[tokio::test]
    async fn mariadb_handshake() {
        let version = "5.5.5-10.11.6-MariaDB-0+deb12u1";
        let first = packet(0, &handshake(version, "mysql_native_password", true));
        let report = probe(fake(first, None).await, None, LIMIT).await;

        assert_eq!(detail(&report), "MariaDB 10.11.6");
    }

    #[test]
    fn server_names() {
        assert_eq!(describe_server("11.4.2-MariaDB-ubu2404"), "MariaDB 11.4.2");
        assert_eq!(describe_server("5.5.5-10.6.18-MariaDB"), "MariaDB 10.6.18");
        assert_eq!(
            describe_server("8.0.36-0ubuntu0.22.04.1"),
            "MySQL 8.0.36-0ubuntu0.22.04.1"
        );
        assert_eq!(describe_server("5.7.44-log"), "MySQL 5.7.44-log");
    }

    #[tokio::test]
    async fn error_packet_quoted() {
        let first = packet(0, &error_payload(1040, None, "Too many connections"));
        let report = probe(fake(first, None).await, None, LIMIT).await;

        assert_eq!(
            report.outcome,
            Outcome::BadReply {
                step: HANDSHAKE.into(),
                expected: "a handshake packet".into(),
                got: "error 1040: \"Too many connections\"".into(),
            }
        );
    }

    #[tokio::test]
    async fn error_packet_with_state() {
        let message = "Host '192.0.2.7' is blocked because of many connection errors";
        let first = packet(0, &error_payload(1129, Some("HY000"), message));
        let report = probe(fake(first, None).await, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { got, .. }
                if got.starts_with("error 1129 (HY000): \"Host '192.0.2.7' is blocked")),
            "{report}"
        );
    }

    #[test]
    fn error_packet_state_with_control_bytes() {
        // Bytes after a '#' that are no SQL state stay in the quoted message.
        let payload = error_payload(1045, Some("28\0\n\x1b"), "denied");
        assert_eq!(
            describe_error_packet(&payload),
            "error 1045: \"#28\\x00\\n\\x1bdenied\""
        );
    }

    #[tokio::test]
    async fn truncated_packet() {
        // The length promises the whole handshake, half of it arrives, then the server closes.
        let payload = handshake("8.0.36", "caching_sha2_password", false);
        let mut first = packet(0, &payload);
        first.truncate(first.len() / 2);
        let endpoint = fake(first, None).await;

        let report = probe(endpoint, None, Duration::from_millis(300)).await;

        // The fake keeps the connection open for 5 s, so a short limit shows the timeout.
        assert!(
            matches!(&report.outcome, Outcome::TimedOut { step, .. } if step == HANDSHAKE),
            "{report}"
        );
    }

    #[tokio::test]
    async fn truncated_then_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let first = packet(0, &handshake("8.0.36", "caching_sha2_password", false));
            let _ = stream.write_all(&first[..20]).await;
        });

        let report = probe(Endpoint::parse(&address).unwrap(), None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { got, .. } if got.ends_with("then connection closed")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn missing_fields_rejected() {
        // A complete packet that ends right after the server version.
        let first = packet(0, b"\x0a8.0.36\0\x01\x00");
        let report = probe(fake(first, None).await, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { expected, .. } if expected == "a complete handshake packet"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn unterminated_version() {
        let first = packet(0, b"\x0a8.0.36");
        let report = probe(fake(first, None).await, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { expected, .. } if expected.contains("NUL-terminated")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn huge_length_rejected() {
        let first = vec![0xff, 0xff, 0xff, 0];
        let report = probe(fake(first, None).await, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { got, .. } if got.starts_with("length 16777215")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn wrong_protocol_or_sequence() {
        let mut old = handshake("3.22", "", false);
        old[0] = 9;
        let cases = [
            (packet(0, &old), "protocol version 10"),
            (packet(1, &handshake("8.0.36", "x", false)), "sequence id 0"),
            (
                packet(0, b"\x0a8.0\x01\x02\x00123456789012345"),
                "printable",
            ),
        ];
        for (first, expected_text) in cases {
            let report = probe(fake(first, None).await, None, LIMIT).await;

            assert!(
                matches!(&report.outcome, Outcome::BadReply { expected, .. } if expected.contains(expected_text)),
                "{expected_text}: {report}"
            );
        }
    }

    #[tokio::test]
    async fn garbage_rejected() {
        let report = probe(
            fake(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n".to_vec(), None).await,
            None,
            LIMIT,
        )
        .await;

        assert!(
            matches!(report.outcome, Outcome::BadReply { .. }),
            "{report}"
        );
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let report = probe(
            fake(Vec::new(), None).await,
            None,
            Duration::from_millis(300),
        )
        .await;

        assert_eq!(
            report.outcome,
            Outcome::TimedOut {
                step: HANDSHAKE.into(),
                after: Duration::from_millis(300)
            }
        );
    }

    #[tokio::test]
    async fn access_denied_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("debian.cnf");
        std::fs::write(&path, "[client]\nuser = probe\npassword = wrong\n").unwrap();
        let first = packet(0, &handshake("8.0.36", "mysql_native_password", false));
        let denied = packet(
            2,
            &error_payload(
                1045,
                Some("28000"),
                "Access denied for user 'probe'@'localhost'",
            ),
        );

        let report = probe(fake(first, Some(denied)).await, Some(&path), LIMIT).await;

        let Outcome::Failed { error } = &report.outcome else {
            panic!("expected failed, got {report}");
        };
        assert!(
            error.starts_with("login as probe failed with error 1045 (28000)"),
            "{error}"
        );
        assert!(error.contains("Access denied"), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
    }

    #[tokio::test]
    async fn login_too_many_connections() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("debian.cnf");
        std::fs::write(&path, "[client]\nuser = root\n").unwrap();
        let first = packet(0, &error_payload(1040, None, "Too many connections"));

        let report = probe(fake(first, None).await, Some(&path), LIMIT).await;

        let Outcome::Failed { error } = &report.outcome else {
            panic!("expected failed, got {report}");
        };
        assert!(error.starts_with("login as root failed"), "{error}");
        assert!(error.contains("Too many connections"), "{error}");
        assert!(!error.contains("check the user"), "{error}");
    }

    #[tokio::test]
    async fn silent_server_login_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("debian.cnf");
        std::fs::write(&path, "[client]\nuser = root\n").unwrap();

        let report = probe(
            fake(Vec::new(), None).await,
            Some(&path),
            Duration::from_millis(300),
        )
        .await;

        assert_eq!(
            report.outcome,
            Outcome::TimedOut {
                step: "login".into(),
                after: Duration::from_millis(300)
            }
        );
    }

    #[tokio::test]
    async fn login_missing_socket_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("debian.cnf");
        std::fs::write(&path, "[client]\nuser = root\n").unwrap();
        let socket = dir.path().join("mysqld.sock");

        let report = probe(Endpoint::Unix { path: socket }, Some(&path), LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Refused { error } if error.contains("mysqld.sock")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn missing_credentials_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.cnf");
        let first = packet(0, &handshake("8.0.36", "x", false));

        let report = probe(fake(first, None).await, Some(&path), LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Failed { error }
                if error.contains("absent.cnf") && error.contains("check the path")),
            "{report}"
        );
    }

    #[test]
    fn debian_cnf_parsed() {
        let text = "# Automatically generated for Debian scripts. DO NOT TOUCH!\n\
                    [client]\nhost     = localhost\nuser     = root\n\
                    socket   = /var/run/mysqld/mysqld.sock\n\
                    [mysql_upgrade]\nuser = other\npassword = secret\n";

        assert_eq!(
            parse_credentials(text),
            Ok(Credentials {
                user: "root".into(),
                password: None
            })
        );
    }

    #[test]
    fn password_forms() {
        let cases = [
            ("password = plain", Some("plain")),
            ("password=plain # comment", Some("plain")),
            ("password = \"with # and space\"", Some("with # and space")),
            ("password = 'it\\'s'", Some("it's")),
            ("password = \"tab\\there\"", Some("tab\there")),
            ("password =", None),
            ("password", None),
        ];
        for (line, expected) in cases {
            let text = format!("[client]\nuser = u\n{line}\n");

            let credentials = parse_credentials(&text).unwrap();

            assert_eq!(credentials.password.as_deref(), expected, "{line}");
        }
    }

    #[test]
    fn user_required() {
        let error =
            parse_credentials("[mysql]\nuser = root\n[client]\npassword = x\n").unwrap_err();

        assert!(error.contains("no user"), "{error}");
    }

    #[test]
    fn bad_group_header() {
        let error = parse_credentials("[client\nuser = root\n").unwrap_err();

        assert!(error.starts_with("line 1:"), "{error}");
    }

    #[test]
    fn spaces_around_names() {
        let credentials = parse_credentials("[client]\n  user =  a \n").unwrap();

        assert_eq!(credentials.user, "a");
    }
}
