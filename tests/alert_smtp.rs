//! Alert delivery against real SMTP servers on 127.0.0.1: the aiosmtpd sink in
//! tests/support/smtp_sink.py, small tokio mocks that stall, and a fake sendmail script.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

mod support;

use selfheal::alert::{self, Alert, SendError};
use selfheal::config::{AlertConfig, RelayConfig, TlsMode};
use support::sink::{free_port, parse_message, private_ca_cert, self_signed_cert, Sink};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Upper bound on every test, so a hang fails the test instead of blocking the run.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn within<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, future)
        .await
        .expect("test did not finish within TEST_TIMEOUT")
}

/// A tokio task serving a mock relay, aborted when the guard drops.
struct Mock {
    port: u16,
    task: JoinHandle<()>,
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a relay that accepts TCP connections and never sends a byte.
async fn silent_relay() -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            open.push(stream);
        }
    });
    Mock { port, task }
}

/// Starts a relay that sends the greeting and replies to EHLO, MAIL, RCPT and DATA, then reads
/// the message and never sends the final reply.
async fn data_stalling_relay() -> Mock {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut lines = BufReader::new(reader).lines();
                writer.write_all(b"220 mock ESMTP\r\n").await.ok()?;
                while let Some(line) = lines.next_line().await.ok()? {
                    let verb = line.get(..4).unwrap_or_default().to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "EHLO" => b"250-mock\r\n250 8BITMIME\r\n",
                        "MAIL" | "RCPT" => b"250 2.1.0 ok\r\n",
                        "DATA" => b"354 end with <CRLF>.<CRLF>\r\n",
                        _ => continue,
                    };
                    writer.write_all(reply).await.ok()?;
                    if verb == "DATA" {
                        // Swallow the message and never send the final reply.
                        while lines.next_line().await.ok()?.is_some() {}
                        return Some(());
                    }
                }
                Some(())
            });
        }
    });
    Mock { port, task }
}

/// Builds a relay on 127.0.0.1:`port` without TLS.
fn relay(port: u16, timeout: Duration) -> RelayConfig {
    RelayConfig {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        username: None,
        password_file: None,
        timeout,
        ca_file: None,
    }
}

fn config(relays: Vec<RelayConfig>, sendmail: Option<PathBuf>) -> AlertConfig {
    AlertConfig {
        from: Some("selfheal@mail1.example.org".into()),
        to: vec!["admin@example.org".into(), "ops@example.org".into()],
        relays,
        sendmail,
        journal_lines: 20,
        ..AlertConfig::default()
    }
}

fn sample_alert() -> Alert {
    let start = UNIX_EPOCH + Duration::from_secs(1_714_557_600); // 2024-05-01T10:00:00Z
    Alert {
        host: "mail1".into(),
        service: "postfix".into(),
        unit: "postfix@-.service".into(),
        verdict: "restart failed".into(),
        reason: "port 25 refused".into(),
        started_at: start,
        seen: "unit failed (Result: exit-code)\ntcp 127.0.0.1:25: refused".into(),
        actions: vec![
            (
                start + Duration::from_secs(2),
                "restart: failed (exit 1)".into(),
            ),
            (
                start + Duration::from_secs(30),
                "restart: start rate limit hit".into(),
            ),
        ],
        last_probe: "tcp 127.0.0.1:25: refused: connection refused".into(),
        journal: vec![
            "postfix/master[812]: fatal: bind 0.0.0.0 port 25: Address already in use".into(),
            "systemd[1]: postfix@-.service: Failed with result 'exit-code'.".into(),
        ],
        mode: "heal".into(),
        diagnosis: Vec::new(),
    }
}

fn sample_message(config: &AlertConfig) -> (lettre::Message, String) {
    let id = alert::new_message_id("mail1.example.org");
    let message = alert::compose(config, &sample_alert(), &id).unwrap();
    (message, id)
}

/// Writes an executable shell script named `sendmail` into `dir`.
fn fake_sendmail(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("sendmail");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn attempt_error<'a>(error: &'a SendError, channel: &str) -> &'a str {
    error
        .attempts
        .iter()
        .find(|(name, _)| name == channel)
        .map(|(_, text)| text.as_str())
        .unwrap_or_else(|| panic!("no attempt on {channel} in {error:?}"))
}

#[tokio::test]
async fn plain_relay_delivers() {
    within(async {
        let sink = Sink::start().await;
        let config = config(vec![sink.relay()], None);
        let (message, id) = sample_message(&config);

        let delivery = alert::send(&config, &message).await.unwrap();

        assert_eq!(
            delivery.channel,
            format!("relay 127.0.0.1:{} (none)", sink.port)
        );
        assert!(
            delivery.reply.starts_with("250 2.0.0 stored as"),
            "{}",
            delivery.reply
        );
        let stored = sink.messages();
        assert_eq!(stored.len(), 1);
        let parsed = parse_message(&stored[0]);
        assert_eq!(
            parsed.header("Subject"),
            ["[selfheal] mail1: postfix restart failed (port 25 refused)"]
        );
        assert_eq!(parsed.header("Auto-Submitted"), ["auto-generated"]);
        assert_eq!(parsed.header("Message-ID"), [id.as_str()]);
        assert_eq!(parsed.header("From"), ["selfheal@mail1.example.org"]);
        assert_eq!(parsed.header("To"), ["admin@example.org, ops@example.org"]);
        assert_eq!(parsed.header("Date").len(), 1);
        assert_eq!(parsed.content_type, "multipart/alternative");

        let plain = parsed.part("text/plain");
        let html = parsed.part("text/html");
        for body in [plain, html] {
            assert!(
                body.contains("fatal: bind 0.0.0.0 port 25: Address already in use"),
                "{body}"
            );
            assert!(body.contains("2024-05-01T10:00:02Z"), "{body}");
            assert!(body.contains("restart: failed (exit 1)"), "{body}");
            assert!(body.contains("restart: start rate limit hit"), "{body}");
            assert!(body.contains("2024-05-01T10:00:00Z"), "{body}");
            assert!(body.contains("journalctl -u postfix@-.service"), "{body}");
        }
        assert!(plain.contains("Failed with result 'exit-code'."), "{plain}");
        assert!(
            html.contains("Failed with result &#39;exit-code&#39;."),
            "{html}"
        );
        assert!(html.contains("<pre"), "{html}");
    })
    .await;
}

#[tokio::test]
async fn second_relay_after_refused() {
    within(async {
        let sink = Sink::start().await;
        let closed = free_port();
        let config = config(
            vec![relay(closed, Duration::from_secs(5)), sink.relay()],
            None,
        );
        let (message, _) = sample_message(&config);

        let delivery = alert::send(&config, &message).await.unwrap();

        assert_eq!(
            delivery.channel,
            format!("relay 127.0.0.1:{} (none)", sink.port)
        );
        assert_eq!(sink.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn sendmail_after_relays_down() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sendmail.out");
        let script = fake_sendmail(
            dir.path(),
            &format!("echo \"argv: $*\" > '{0}'\ncat >> '{0}'", out.display()),
        );
        let config = config(
            vec![
                relay(free_port(), Duration::from_secs(5)),
                relay(free_port(), Duration::from_secs(5)),
            ],
            Some(script.clone()),
        );
        let (message, id) = sample_message(&config);

        let delivery = alert::send(&config, &message).await.unwrap();

        assert_eq!(delivery.channel, format!("sendmail {}", script.display()));
        assert_eq!(delivery.reply, "exit status 0");
        let written = std::fs::read_to_string(&out).unwrap();
        assert!(
            written.starts_with(
                "argv: -i -f selfheal@mail1.example.org -- admin@example.org ops@example.org\n"
            ),
            "{written}"
        );
        assert!(written.contains(&format!("Message-ID: {id}")), "{written}");
        assert!(
            written.contains("Auto-Submitted: auto-generated"),
            "{written}"
        );
    })
    .await;
}

#[tokio::test]
async fn all_channels_fail() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let script = fake_sendmail(
            dir.path(),
            "cat > /dev/null\necho 'queue file write error' >&2\nexit 75",
        );
        let first = free_port();
        let second = free_port();
        let config = config(
            vec![
                relay(first, Duration::from_secs(5)),
                relay(second, Duration::from_secs(5)),
            ],
            Some(script.clone()),
        );
        let (message, _) = sample_message(&config);

        let error = alert::send(&config, &message).await.unwrap_err();

        let channels: Vec<&str> = error
            .attempts
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        let first_name = format!("relay 127.0.0.1:{first} (none)");
        let second_name = format!("relay 127.0.0.1:{second} (none)");
        let sendmail_name = format!("sendmail {}", script.display());
        assert_eq!(channels, [&first_name, &second_name, &sendmail_name]);
        assert_eq!(
            attempt_error(&error, &first_name),
            "Connection error: Connection refused (os error 111)"
        );
        assert!(attempt_error(&error, &second_name).contains("Connection refused"));
        assert_eq!(
            attempt_error(&error, &sendmail_name),
            "failed: queue file write error"
        );
        let text = error.to_string();
        assert!(text.contains("all 3 channels failed"), "{text}");
        for name in [&first_name, &second_name, &sendmail_name] {
            assert!(text.contains(name.as_str()), "{text}");
        }
    })
    .await;
}

#[tokio::test]
async fn silent_relay_times_out() {
    within(async {
        let mock = silent_relay().await;
        let timeout = Duration::from_secs(1);
        let config = config(vec![relay(mock.port, timeout)], None);
        let (message, _) = sample_message(&config);

        let started = Instant::now();
        let error = alert::send(&config, &message).await.unwrap_err();
        let elapsed = started.elapsed();

        eprintln!("silent relay failed after {elapsed:?} with timeout {timeout:?}");
        assert!(elapsed >= timeout, "failed early, after {elapsed:?}");
        assert!(
            elapsed < timeout + Duration::from_millis(500),
            "failed late, after {elapsed:?}"
        );
        let text = attempt_error(&error, &format!("relay 127.0.0.1:{} (none)", mock.port));
        assert!(text.starts_with("timed out after 1s"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn data_stall_uses_next() {
    within(async {
        let mock = data_stalling_relay().await;
        let sink = Sink::start().await;
        let timeout = Duration::from_secs(1);
        let config = config(vec![relay(mock.port, timeout), sink.relay()], None);
        let (message, _) = sample_message(&config);

        let started = Instant::now();
        let delivery = alert::send(&config, &message).await.unwrap();
        let elapsed = started.elapsed();

        eprintln!("stalled relay plus delivery took {elapsed:?} with timeout {timeout:?}");
        assert_eq!(
            delivery.channel,
            format!("relay 127.0.0.1:{} (none)", sink.port)
        );
        assert!(elapsed >= timeout, "moved on early, after {elapsed:?}");
        assert!(
            elapsed < timeout + Duration::from_secs(2),
            "moved on late, after {elapsed:?}"
        );
        assert_eq!(sink.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn auth_correct_password() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("relay.password");
        std::fs::write(&password_file, "correct horse\n").unwrap();
        let sink = Sink::start_with_auth("alerts", &password_file).await;
        let mut relay = sink.relay();
        relay.username = Some("alerts".into());
        relay.password_file = Some(password_file);
        let config = config(vec![relay], None);
        let (message, _) = sample_message(&config);

        let delivery = alert::send(&config, &message).await.unwrap();

        assert!(delivery.reply.starts_with("250"), "{}", delivery.reply);
        assert_eq!(sink.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn auth_without_credentials() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("relay.password");
        std::fs::write(&password_file, "correct horse\n").unwrap();
        let sink = Sink::start_with_auth("alerts", &password_file).await;
        let config = config(vec![sink.relay()], None);
        let (message, _) = sample_message(&config);

        let error = alert::send(&config, &message).await.unwrap_err();

        let text = attempt_error(&error, &format!("relay 127.0.0.1:{} (none)", sink.port));
        assert!(text.contains("(530)"), "{text}");
        assert!(text.contains("requires authentication"), "{text}");
        assert!(sink.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn auth_wrong_password() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let server_password = dir.path().join("server.password");
        std::fs::write(&server_password, "correct horse\n").unwrap();
        let client_password = dir.path().join("client.password");
        std::fs::write(&client_password, "wrong horse\n").unwrap();
        let sink = Sink::start_with_auth("alerts", &server_password).await;
        let mut relay = sink.relay();
        relay.username = Some("alerts".into());
        relay.password_file = Some(client_password.clone());
        let config = config(vec![relay], None);
        let (message, _) = sample_message(&config);

        let error = alert::send(&config, &message).await.unwrap_err();

        let channel = format!("relay 127.0.0.1:{} (none)", sink.port);
        let text = attempt_error(&error, &channel);
        assert!(text.contains("(535)"), "{text}");
        assert!(text.contains("authentication failed"), "{text}");
        assert!(
            text.contains(&client_password.display().to_string()),
            "{text}"
        );
        assert!(!text.contains("wrong horse"), "{text}");
        assert!(error.to_string().contains(&channel), "{error}");
        assert!(sink.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn missing_password_file() {
    within(async {
        let sink = Sink::start().await;
        let dir = tempfile::tempdir().unwrap();
        let absent = dir.path().join("absent.password");
        let mut relay = sink.relay();
        relay.username = Some("alerts".into());
        relay.password_file = Some(absent.clone());
        let config = config(vec![relay], None);
        let (message, _) = sample_message(&config);

        let error = alert::send(&config, &message).await.unwrap_err();

        let text = attempt_error(&error, &format!("relay 127.0.0.1:{} (none)", sink.port));
        assert!(text.contains(&absent.display().to_string()), "{text}");
        assert!(text.contains("No such file"), "{text}");
        assert!(sink.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn subject_line_breaks_stripped() {
    within(async {
        let sink = Sink::start().await;
        let config = config(vec![sink.relay()], None);
        let mut alert = sample_alert();
        alert.service = "postfix\r\nBcc: intruder@example.net\r\nX-Injected: yes".into();
        let id = alert::new_message_id("mail1");
        let message = alert::compose(&config, &alert, &id).unwrap();

        alert::send(&config, &message).await.unwrap();

        let stored = sink.messages();
        assert_eq!(stored.len(), 1);
        let parsed = parse_message(&stored[0]);
        assert_eq!(
            parsed.header("Subject"),
            ["[selfheal] mail1: postfix Bcc: intruder@example.net X-Injected: yes restart failed (port 25 refused)"]
        );
        assert!(parsed.header("Bcc").is_empty(), "{parsed:?}");
        assert!(parsed.header("X-Injected").is_empty(), "{parsed:?}");
        let recipients: Vec<String> = message
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(recipients, ["admin@example.org", "ops@example.org"]);
    })
    .await;
}

#[tokio::test]
async fn message_id_reused_on_resend() {
    within(async {
        let sink = Sink::start().await;
        let config = config(vec![sink.relay()], None);
        let id = alert::new_message_id("mail1");

        for _ in 0..2 {
            let message = alert::compose(&config, &sample_alert(), &id).unwrap();
            alert::send(&config, &message).await.unwrap();
        }

        let stored = sink.messages();
        assert_eq!(stored.len(), 2);
        for path in &stored {
            assert_eq!(parse_message(path).header("Message-ID"), [id.as_str()]);
        }
    })
    .await;
}

#[tokio::test]
async fn starttls_self_signed_rejected() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed_cert(dir.path());
        let sink = Sink::start_with_tls("--starttls", &cert, &key).await;
        let mut relay = sink.relay();
        relay.tls = TlsMode::Starttls;
        let config = config(vec![relay], None);
        let (message, _) = sample_message(&config);

        let error = alert::send(&config, &message).await.unwrap_err();

        let text = attempt_error(&error, &format!("relay 127.0.0.1:{} (starttls)", sink.port));
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(text.contains("not trusted"), "{text}");
        assert!(sink.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn starttls_with_private_ca_and_login() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = private_ca_cert(dir.path());
        let password = dir.path().join("password");
        std::fs::write(&password, "s3cret\n").unwrap();
        let cert = cert.to_str().unwrap();
        let key = key.to_str().unwrap();
        let sink = Sink::start_with(&[
            "--starttls",
            cert,
            key,
            "--auth-user",
            "alerts",
            "--auth-password-file",
            password.to_str().unwrap(),
        ])
        .await;
        let mut relay = sink.relay();
        relay.tls = TlsMode::Starttls;
        relay.ca_file = Some(ca);
        relay.username = Some("alerts".into());
        relay.password_file = Some(password.clone());
        let config = config(vec![relay.clone()], None);
        let (message, id) = sample_message(&config);

        let delivery = alert::send(&config, &message).await.unwrap();

        assert!(delivery.reply.starts_with("250"), "{delivery:?}");
        let stored = sink.messages();
        assert_eq!(stored.len(), 1);
        assert_eq!(
            parse_message(&stored[0]).header("Message-ID"),
            [id.as_str()]
        );

        // The same relay with a wrong password: a clear error, nothing stored.
        std::fs::write(&password, "wrong\n").unwrap();
        let error = alert::send(&config, &message).await.unwrap_err();
        let text = attempt_error(&error, &format!("relay 127.0.0.1:{} (starttls)", sink.port));
        assert!(text.contains("authentication failed"), "{text}");
        assert_eq!(sink.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn implicit_tls_with_private_ca() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = private_ca_cert(dir.path());
        let sink = Sink::start_with_tls("--implicit-tls", &cert, &key).await;
        let mut relay = sink.relay();
        relay.tls = TlsMode::Tls;
        relay.ca_file = Some(ca);
        let config = config(vec![relay], None);
        let (message, _) = sample_message(&config);

        let delivery = alert::send(&config, &message).await.unwrap();

        assert_eq!(
            delivery.channel,
            format!("relay 127.0.0.1:{} (tls)", sink.port)
        );
        assert_eq!(sink.messages().len(), 1);
    })
    .await;
}

#[tokio::test]
async fn ca_file_without_certificate() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let (_, cert, key) = private_ca_cert(dir.path());
        let sink = Sink::start_with_tls("--starttls", &cert, &key).await;
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let mut relay = sink.relay();
        relay.tls = TlsMode::Starttls;
        relay.ca_file = Some(empty.clone());
        let config = config(vec![relay], None);
        let (message, _) = sample_message(&config);

        let error = alert::send(&config, &message).await.unwrap_err();

        let text = attempt_error(&error, &format!("relay 127.0.0.1:{} (starttls)", sink.port));
        assert!(text.contains(&empty.display().to_string()), "{text}");
        assert!(text.contains("contains no PEM certificate"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn implicit_tls_self_signed_rejected() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed_cert(dir.path());
        let sink = Sink::start_with_tls("--implicit-tls", &cert, &key).await;
        let mut relay = sink.relay();
        relay.tls = TlsMode::Tls;
        let config = config(vec![relay], None);
        let (message, _) = sample_message(&config);

        let error = alert::send(&config, &message).await.unwrap_err();

        let text = attempt_error(&error, &format!("relay 127.0.0.1:{} (tls)", sink.port));
        assert!(text.contains("UnknownIssuer"), "{text}");
        assert!(sink.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn starttls_required_no_fallback() {
    within(async {
        let sink = Sink::start().await;
        let mut relay = sink.relay();
        relay.tls = TlsMode::Starttls;
        let config = config(vec![relay], None);
        let (message, _) = sample_message(&config);

        let error = alert::send(&config, &message).await.unwrap_err();

        let text = attempt_error(&error, &format!("relay 127.0.0.1:{} (starttls)", sink.port));
        assert!(text.contains("STARTTLS is not supported"), "{text}");
        assert!(text.contains("does not offer STARTTLS"), "{text}");
        assert!(sink.messages().is_empty());
    })
    .await;
}

#[tokio::test]
async fn implicit_tls_to_plain_server() {
    within(async {
        let sink = Sink::start().await;
        let mut relay = sink.relay();
        relay.tls = TlsMode::Tls;
        relay.timeout = Duration::from_secs(5);
        let config = config(vec![relay], None);
        let (message, _) = sample_message(&config);

        let error = alert::send(&config, &message).await.unwrap_err();

        let text = attempt_error(&error, &format!("relay 127.0.0.1:{} (tls)", sink.port));
        assert!(text.contains("did not answer with TLS"), "{text}");
        assert!(sink.messages().is_empty());
    })
    .await;
}
