//! syslog probe: a test message to a syslog datagram socket, optionally found again in the
//! log file that rsyslog writes.
//!
//! What each variant proves:
//!
//! - Without `verify_file`, only that a process has the socket bound and its receive queue had
//!   room. On Debian 12, journald owns /dev/log, so a message sent there proves that journald
//!   runs, not rsyslog. rsyslog reads /run/systemd/journal/syslog, but systemd owns that
//!   socket (syslog.socket) and queues datagrams while rsyslog is hung, so a send there
//!   succeeds until the queue is full. A datagram there also makes systemd start a stopped
//!   rsyslog (socket activation).
//! - With `verify_file` (such as /var/log/syslog), that the message went all the way through:
//!   rsyslog read it and wrote it to the file within the timeout. The probe searches only what
//!   was appended after the send, so every check adds one line to that file.
//!
//! The message follows RFC 3164 as local senders such as glibc's syslog(3) write it, without a
//! host name: `<30>Dec  4 21:05:02 selfheal[PID]: syslog health check TOKEN`, with facility
//! daemon and severity info. TOKEN is unique per check.

use std::io::{self, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::fs::File;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::net::UnixDatagram;

use super::io::step;
use super::{Context, Endpoint, Outcome, Passed};

/// Priority of the test message: facility daemon (3) times 8 plus severity info (6).
const PRIORITY: u8 = 30;

/// Interval between two looks at the verify file.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Bytes read from the verify file at a time.
const CHUNK: usize = 64 * 1024;

/// Maximum bytes read from the verify file in one check. A log that grows faster than this
/// within the timeout is being written, but the probe stops searching it for its message.
const MAX_VERIFY_BYTES: u64 = 8 * 1024 * 1024;

/// Numbers the checks of this process, so two checks in the same nanosecond differ too.
static CHECKS: AtomicU64 = AtomicU64::new(0);

/// Sends a test message to the endpoint's datagram socket and, with `verify_file`, waits until
/// the message appears in that file.
pub(super) async fn check(
    context: &Context<'_>,
    verify_file: Option<&Path>,
) -> Result<Passed, Outcome> {
    let socket_path = match context.endpoint()? {
        Endpoint::Unix { path } => path,
        Endpoint::Tcp { host, port } => {
            return Err(Outcome::Failed {
                error: format!(
                    "syslog probe needs a Unix datagram socket path such as \
                     /run/systemd/journal/syslog, got {host}:{port}"
                ),
            })
        }
    };
    let token = new_token();
    let message = format_message(&local_timestamp(), std::process::id(), &token);

    // Take the file's end before the send, so that only lines written afterwards count.
    let mut tail = match verify_file {
        Some(path) => Some(
            LogTail::at_end(path)
                .await
                .map_err(|error| unreadable(path, error))?,
        ),
        None => None,
    };

    // Send the message. A missing socket, or one that no process has bound, is refused.
    let socket = UnixDatagram::unbound().map_err(|error| Outcome::Failed {
        error: format!("cannot create a Unix datagram socket: {error}"),
    })?;
    step(
        "send",
        context.timeout,
        socket.send_to(message.as_bytes(), socket_path),
    )
    .await?;

    let Some(tail) = tail.as_mut() else {
        return Ok(Passed {
            detail: Some(
                "message accepted by the socket; not checked in a log file without verify_file"
                    .to_string(),
            ),
            warning: None,
        });
    };

    // Wait until the token shows up in what was appended to the file.
    let path = tail.path.display().to_string();
    let wait = async {
        loop {
            match tail.scan(token.as_bytes()).await? {
                Scan::Found => return Ok(true),
                Scan::Exhausted => return Ok(false),
                Scan::NotYet => tokio::time::sleep(POLL_INTERVAL).await,
            }
        }
    };
    match step("verify", context.timeout, wait).await {
        Ok(true) => Ok(Passed {
            detail: Some(format!("message written to {path}")),
            warning: None,
        }),
        Ok(false) => Ok(Passed {
            detail: Some(format!("message accepted, {path} is being written")),
            warning: Some(format!(
                "{path} grew by more than {MAX_VERIFY_BYTES} bytes after the send without the \
                 test message, so the probe stopped searching it"
            )),
        }),
        Err(Outcome::TimedOut { .. }) if !tail.exists() => Err(Outcome::Failed {
            error: format!(
                "verify_file {path} does not exist; check the path against the rsyslog rules \
                 in /etc/rsyslog.conf"
            ),
        }),
        Err(outcome) => Err(outcome),
    }
}

fn unreadable(path: &Path, error: io::Error) -> Outcome {
    Outcome::Failed {
        error: format!(
            "cannot read verify_file {}: {error}; selfheal needs read access to it, for example \
             as root or in group adm",
            path.display()
        ),
    }
}

/// Returns a token that no other check of any process uses: process id, time and a counter.
fn new_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let count = CHECKS.fetch_add(1, Ordering::Relaxed);
    format!("selfheal-{:x}-{nanos:x}-{count:x}", std::process::id())
}

/// Formats the RFC 3164 message, without a host name as for a local socket.
fn format_message(timestamp: &str, pid: u32, token: &str) -> String {
    format!("<{PRIORITY}>{timestamp} selfheal[{pid}]: syslog health check {token}")
}

/// Formats the current local time as RFC 3164 writes it: "Dec  4 21:05:02", with the day
/// padded by a space. Falls back to UTC when the local time cannot be computed.
fn local_timestamp() -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let now = libc::time_t::try_from(seconds).unwrap_or(0);
    // SAFETY: `tm` is a plain C struct for which all zero bytes are valid. localtime_r and
    // gmtime_r write only into `tm`, which lives on this stack frame, and read `now`.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let converted = unsafe { !libc::localtime_r(&now, &mut tm).is_null() }
        || unsafe { !libc::gmtime_r(&now, &mut tm).is_null() };
    let month = usize::try_from(tm.tm_mon)
        .ok()
        .and_then(|index| MONTHS.get(index))
        .filter(|_| converted)
        .unwrap_or(&"Jan");
    format!(
        "{month} {:>2} {:02}:{:02}:{:02}",
        tm.tm_mday.max(1),
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Result of one look at the verify file.
#[derive(Debug, PartialEq, Eq)]
enum Scan {
    Found,
    NotYet,
    /// `MAX_VERIFY_BYTES` were read without finding the token.
    Exhausted,
}

/// A read position in a log file that follows the file through rotation (the path names a new
/// file) and truncation (the file shrank below the position).
struct LogTail {
    path: PathBuf,
    /// The file at `path`, or `None` while the path names no file.
    file: Option<File>,
    /// Device and inode of `file`, to notice that `path` names another file.
    identity: Option<(u64, u64)>,
    /// Next byte to read in `file`.
    offset: u64,
    /// The last bytes read, so that a token split between two reads is found.
    window: Vec<u8>,
    buffer: Vec<u8>,
    read_total: u64,
}

impl LogTail {
    /// Opens `path` at its current end. A missing file is fine: the search then starts at the
    /// beginning of the file once it appears.
    async fn at_end(path: &Path) -> io::Result<LogTail> {
        let mut tail = LogTail {
            path: path.to_path_buf(),
            file: None,
            identity: None,
            offset: 0,
            window: Vec::new(),
            buffer: vec![0u8; CHUNK],
            read_total: 0,
        };
        if let Some(length) = tail.open().await? {
            tail.offset = length;
        }
        Ok(tail)
    }

    fn exists(&self) -> bool {
        self.file.is_some()
    }

    /// Opens the file that `path` names now, positioned at its start. Returns the file's
    /// length, or `None` when no file is there.
    async fn open(&mut self) -> io::Result<Option<u64>> {
        let file = match File::open(&self.path).await {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let metadata = file.metadata().await?;
        self.identity = Some((metadata.dev(), metadata.ino()));
        self.file = Some(file);
        self.offset = 0;
        self.window.clear();
        Ok(Some(metadata.len()))
    }

    /// Searches what was appended since the last look, following a rotation or truncation.
    async fn scan(&mut self, token: &[u8]) -> io::Result<Scan> {
        // Lines written before a rotation are still in the file that is open.
        if self.read_appended(token).await? {
            return Ok(Scan::Found);
        }
        match tokio::fs::metadata(&self.path).await {
            Ok(metadata) => {
                let identity = (metadata.dev(), metadata.ino());
                let replaced = self.identity != Some(identity);
                let truncated = !replaced && metadata.len() < self.offset;
                if replaced {
                    self.open().await?;
                } else if truncated {
                    self.offset = 0;
                    self.window.clear();
                }
                if (replaced || truncated) && self.read_appended(token).await? {
                    return Ok(Scan::Found);
                }
            }
            // Rotated away and not created again yet.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        if self.read_total >= MAX_VERIFY_BYTES {
            Ok(Scan::Exhausted)
        } else {
            Ok(Scan::NotYet)
        }
    }

    /// Reads from `offset` to the end of the open file, at most up to `MAX_VERIFY_BYTES` in
    /// total, and returns whether `token` appeared.
    async fn read_appended(&mut self, token: &[u8]) -> io::Result<bool> {
        let Some(file) = self.file.as_mut() else {
            return Ok(false);
        };
        file.seek(SeekFrom::Start(self.offset)).await?;
        loop {
            let budget = MAX_VERIFY_BYTES.saturating_sub(self.read_total);
            let want = usize::try_from(budget).map_or(CHUNK, |budget| budget.min(CHUNK));
            if want == 0 {
                return Ok(false);
            }
            let count = file.read(&mut self.buffer[..want]).await?;
            if count == 0 {
                return Ok(false);
            }
            let count_u64 = u64::try_from(count).unwrap_or(u64::MAX);
            self.offset += count_u64;
            self.read_total += count_u64;
            self.window.extend_from_slice(&self.buffer[..count]);
            if contains(&self.window, token) {
                return Ok(true);
            }
            let keep = token.len().saturating_sub(1).min(self.window.len());
            self.window.drain(..self.window.len() - keep);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::super::{run, ProbeReport, ProbeSpec, Protocol};
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    /// Bound on each test, so that a probe that hangs fails the test.
    const TEST_LIMIT: Duration = Duration::from_secs(20);

    /// What the fake logger does with the token of the first message it receives.
    type Action = fn(&Path, &str);

    /// A fake syslog daemon: a datagram socket in `dir` that passes the token of the first
    /// message to `action` and returns the message.
    fn fake(
        dir: &Path,
        log: PathBuf,
        action: Action,
    ) -> (PathBuf, tokio::task::JoinHandle<String>) {
        let socket_path = dir.join("log.sock");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        let handle = tokio::spawn(async move {
            let mut buffer = vec![0u8; 2048];
            let count = socket.recv(&mut buffer).await.unwrap();
            let message = String::from_utf8_lossy(&buffer[..count]).into_owned();
            let token = message.rsplit(' ').next().unwrap_or_default().to_string();
            tokio::task::spawn_blocking(move || action(&log, &token))
                .await
                .unwrap();
            message
        });
        (socket_path, handle)
    }

    fn append(path: &Path, text: &str) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    fn log_line(token: &str) -> String {
        format!("2026-12-04T21:05:02.123456+00:00 mail selfheal[7]: syslog health check {token}\n")
    }

    async fn probe(socket: PathBuf, verify: Option<&Path>, limit: Duration) -> ProbeReport {
        let spec = ProbeSpec::new(
            Protocol::Syslog {
                verify_file: verify.map(Path::to_path_buf),
            },
            Some(Endpoint::Unix { path: socket }),
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
    async fn accepted_without_verify() {
        let dir = tempfile::tempdir().unwrap();
        let (socket, received) = fake(dir.path(), dir.path().join("unused"), |_, _| {});

        let report = probe(socket, None, LIMIT).await;

        assert!(
            detail(&report).contains("not checked in a log file"),
            "{report}"
        );
        let message = tokio::time::timeout(TEST_LIMIT, received)
            .await
            .unwrap()
            .unwrap();
        let pid = std::process::id();
        assert!(message.starts_with("<30>"), "{message}");
        assert!(
            message.contains(&format!(" selfheal[{pid}]: syslog health check selfheal-")),
            "{message}"
        );
    }

    #[test]
    fn message_format() {
        let message = format_message("Dec  4 21:05:02", 42, "selfheal-1-2-3");

        assert_eq!(
            message,
            "<30>Dec  4 21:05:02 selfheal[42]: syslog health check selfheal-1-2-3"
        );
    }

    #[test]
    fn timestamp_shape() {
        let stamp = local_timestamp();

        assert_eq!(stamp.len(), 15, "{stamp:?}");
        let bytes = stamp.as_bytes();
        assert!(bytes[..3].iter().all(u8::is_ascii_alphabetic), "{stamp:?}");
        assert_eq!(bytes[3], b' ', "{stamp:?}");
        assert!(bytes[5].is_ascii_digit(), "{stamp:?}");
        assert_eq!(&stamp[9..10], ":", "{stamp:?}");
        assert_eq!(&stamp[12..13], ":", "{stamp:?}");
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(new_token(), new_token());
    }

    #[tokio::test]
    async fn verified_in_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("syslog");
        append(&log, "older line\n");
        let (socket, _) = fake(dir.path(), log.clone(), |log, token| {
            append(log, "another program\n");
            append(log, &log_line(token));
        });

        let report = probe(socket, Some(&log), LIMIT).await;

        assert_eq!(
            detail(&report),
            format!("message written to {}", log.display())
        );
    }

    #[tokio::test]
    async fn token_before_send_ignored() {
        // A line with the token that is already in the file before the send must not count.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("syslog");
        append(&log, "x\n");
        let mut tail = LogTail::at_end(&log).await.unwrap();
        let token = b"selfheal-token";

        append(&log, "selfheal-tok");
        let mut early = LogTail::at_end(&log).await.unwrap();
        append(&log, "en\n");

        assert_eq!(tail.scan(token).await.unwrap(), Scan::Found);
        assert_eq!(early.scan(token).await.unwrap(), Scan::NotYet);
    }

    #[tokio::test]
    async fn token_split_across_reads() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("syslog");
        append(&log, "");
        let mut tail = LogTail::at_end(&log).await.unwrap();
        let token = "selfheal-split-token";

        append(&log, &"a".repeat(CHUNK - 7));
        append(&log, &log_line(token));

        assert_eq!(tail.scan(token.as_bytes()).await.unwrap(), Scan::Found);
    }

    #[tokio::test]
    async fn unverified_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("syslog");
        append(&log, "line\n");
        let (socket, _) = fake(dir.path(), log.clone(), |log, _| {
            append(log, "some other line\n");
        });

        let report = probe(socket, Some(&log), Duration::from_millis(400)).await;

        assert_eq!(
            report.outcome,
            Outcome::TimedOut {
                step: "verify".into(),
                after: Duration::from_millis(400)
            }
        );
    }

    #[tokio::test]
    async fn rotated_file_followed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("syslog");
        append(&log, "before rotation\n");
        let (socket, _) = fake(dir.path(), log.clone(), |log, token| {
            std::fs::rename(log, log.with_extension("1")).unwrap();
            append(log, &log_line(token));
        });

        let report = probe(socket, Some(&log), LIMIT).await;

        assert!(
            detail(&report).starts_with("message written to"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn truncated_file_followed() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("syslog");
        append(&log, &"old line\n".repeat(1000));
        let (socket, _) = fake(dir.path(), log.clone(), |log, token| {
            std::fs::write(log, log_line(token)).unwrap();
        });

        let report = probe(socket, Some(&log), LIMIT).await;

        assert!(
            detail(&report).starts_with("message written to"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn file_created_after_send() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("syslog");
        let (socket, _) = fake(dir.path(), log.clone(), |log, token| {
            append(log, &log_line(token));
        });

        let report = probe(socket, Some(&log), LIMIT).await;

        assert!(
            detail(&report).starts_with("message written to"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn file_never_created() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("absent.log");
        let (socket, _) = fake(dir.path(), log.clone(), |_, _| {});

        let report = probe(socket, Some(&log), Duration::from_millis(300)).await;

        assert!(
            matches!(&report.outcome, Outcome::Failed { error }
                if error.contains("absent.log does not exist")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn busy_log_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("syslog");
        append(&log, "");
        let (socket, _) = fake(dir.path(), log.clone(), |log, _| {
            let junk = "x".repeat(1024 * 1024);
            for _ in 0..9 {
                append(log, &junk);
            }
        });

        let report = probe(socket, Some(&log), Duration::from_secs(5)).await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { warning: Some(w), .. }
                if w.contains("stopped searching")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn missing_socket_refused() {
        let dir = tempfile::tempdir().unwrap();

        let report = probe(dir.path().join("absent.sock"), None, LIMIT).await;

        assert!(
            matches!(report.outcome, Outcome::Refused { .. }),
            "{report}"
        );
    }

    #[tokio::test]
    async fn stale_socket_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixDatagram::bind(&path).unwrap());

        let report = probe(path, None, LIMIT).await;

        assert!(
            matches!(report.outcome, Outcome::Refused { .. }),
            "{report}"
        );
    }

    #[tokio::test]
    async fn stream_socket_fails() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stream.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();

        let report = probe(path, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Failed { error } if error.starts_with("send:")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn tcp_endpoint_fails() {
        let spec = ProbeSpec::new(
            Protocol::Syslog { verify_file: None },
            Some(Endpoint::parse("127.0.0.1:514").unwrap()),
            "test",
        );

        let report = tokio::time::timeout(TEST_LIMIT, run(&spec, LIMIT))
            .await
            .unwrap();

        assert!(
            matches!(&report.outcome, Outcome::Failed { error } if error.contains("Unix datagram socket")),
            "{report}"
        );
    }
}
