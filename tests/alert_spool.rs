//! The alert spool end to end: selfheal's daemon runs on this host with services it manages by
//! commands (a start command that fails, so no systemd is needed), and its alerts go to the SMTP
//! sink (Python's aiosmtpd) on 127.0.0.1. The daemon is killed and started again, the relay is
//! stopped, stalled and made to refuse the login, and each test counts the Message-IDs the sink
//! received.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use selfheal::store::AlertRow;
use support::daemon::{wait_for, Daemon};
use support::http_sink::HttpSink;
use support::sink::{free_port, parse_message, Sink};

/// Relay settings of a test config.
struct Relay<'a> {
    port: u16,
    timeout: &'a str,
    login: Option<(&'a str, &'a Path)>,
}

/// Writes a config with `services` failing services managed by commands, checked every second, that
/// alerts through `relay` only. `alerts` adds keys to the `[alerts]` table.
fn config(dir: &Path, services: &[&str], relay: &Relay<'_>, alerts: &str) -> String {
    let mut text = format!(
        r#"interval = "1s"
state_dir = "{dir}/state"
control_socket = "{dir}/control.sock"
verify_after = "1s"
verify_timeout = "2s"
retry_interval = "1s"

[alerts]
from = "selfheal@spool.test"
to = ["admin@spool.test"]
sendmail = false
retry_initial = "1s"
retry_max = "2s"
{alerts}

[[alerts.relay]]
host = "127.0.0.1"
port = {port}
tls = "none"
timeout = "{timeout}"
"#,
        dir = dir.display(),
        port = relay.port,
        timeout = relay.timeout,
    );
    if let Some((user, password_file)) = relay.login {
        text.push_str(&format!(
            "username = \"{user}\"\npassword_file = \"{}\"\n",
            password_file.display()
        ));
    }
    for service in services {
        // No process ever writes the pidfile, so the service is down, and its start command
        // fails, so no restart can heal it.
        text.push_str(&format!(
            "\n[services.{service}]\nstart = [\"/bin/false\"]\npidfile = \"{}/{service}.pid\"\n",
            dir.display()
        ));
    }
    text
}

fn plain_relay(port: u16) -> Relay<'static> {
    Relay {
        port,
        timeout: "10s",
        login: None,
    }
}

fn alerts(daemon: &Daemon) -> Vec<AlertRow> {
    if !daemon.state_db().exists() {
        return Vec::new();
    }
    daemon.store().alerts(100).unwrap_or_default()
}

/// Message-ID header of each message the sink stored, oldest first.
fn received_ids(sink: &Sink) -> Vec<String> {
    sink.messages()
        .iter()
        .map(|path| {
            let parsed = parse_message(path);
            parsed.header("Message-ID").join(" ").trim().to_string()
        })
        .collect()
}

/// Waits until the sink has `count` messages, then a little longer to catch a duplicate.
fn settle(daemon: &Daemon, sink: &Sink, count: usize) -> Vec<String> {
    wait_for(
        daemon,
        &format!("{count} message(s) at the sink"),
        Duration::from_secs(60),
        || sink.messages().len() >= count,
    );
    std::thread::sleep(Duration::from_secs(4));
    received_ids(sink)
}

/// Waits until an alert item is in the spool, before the grouping window has passed.
fn wait_until_queued(daemon: &Daemon) {
    wait_for(
        daemon,
        "the alert in the spool",
        Duration::from_secs(60),
        || {
            daemon.state_db().exists()
                && daemon
                    .store()
                    .incidents(true, 10)
                    .unwrap_or_default()
                    .iter()
                    .any(|incident| incident.alert_status == "queued")
        },
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn relay_down_then_back_delivers_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let text = config(
        dir.path(),
        &["filter"],
        &plain_relay(port),
        r#"group_window = "0s""#,
    );
    let daemon = Daemon::start(dir.path(), &text);

    wait_for(
        &daemon,
        "two failed attempts",
        Duration::from_secs(60),
        || {
            alerts(&daemon)
                .first()
                .is_some_and(|row| row.attempts >= 2 && row.status == "pending")
        },
    );
    let row = alerts(&daemon).remove(0);
    let error = row.last_error.clone().unwrap_or_default();
    assert!(error.contains("Connection refused"), "{error}");
    let status = daemon.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("alert not delivered yet (mail): [selfheal]"),
        "{text}"
    );
    assert!(text.contains("Connection refused"), "{text}");
    let json = daemon.cli(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let undelivered = json[0]["alert_undelivered"].as_str().unwrap_or_default();
    assert!(
        undelivered.starts_with("alert not delivered yet (mail): "),
        "{json}"
    );

    let sink = Sink::start_on(port, &[]).await;
    let ids = settle(&daemon, &sink, 1);
    assert_eq!(ids, vec![row.message_id.clone()]);
    let row = alerts(&daemon).remove(0);
    assert_eq!(row.status, "sent");
    assert!(row.attempts >= 3, "{row:?}");
    let mail = parse_message(&sink.messages()[0]);
    let plain = mail.part("text/plain");
    assert!(
        plain.contains(&format!(
            "Delivery: sent through relay 127.0.0.1:{port} (none) (attempt {})",
            row.attempts
        )),
        "{plain}"
    );
    let status = daemon.cli(&["status"]);
    assert!(!String::from_utf8_lossy(&status.stdout).contains("not delivered"));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_before_sending_then_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    // The grouping window keeps the stored alert back long enough to kill selfheal first.
    let text = config(
        dir.path(),
        &["filter"],
        &plain_relay(sink.port),
        r#"group_window = "8s""#,
    );
    let mut daemon = Daemon::start(dir.path(), &text);

    wait_until_queued(&daemon);
    daemon.kill();
    assert!(sink.messages().is_empty());
    assert!(alerts(&daemon).is_empty(), "no message was made yet");

    daemon.restart();
    let ids = settle(&daemon, &sink, 1);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let rows = alerts(&daemon);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(ids[0], rows[0].message_id);
    assert!(daemon
        .log()
        .contains("alerts stored before the last stop will be sent"));
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_during_data_then_delivered_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start_with(&["--stall-data", "1"]).await;
    let relay = Relay {
        port: sink.port,
        timeout: "60s",
        login: None,
    };
    let text = config(dir.path(), &["filter"], &relay, r#"group_window = "0s""#);
    let mut daemon = Daemon::start(dir.path(), &text);

    let stalled = sink.mail_dir().join("stalled.1");
    wait_for(
        &daemon,
        "the relay holding the message",
        Duration::from_secs(60),
        || stalled.exists(),
    );
    let before = alerts(&daemon);
    assert_eq!(before.len(), 1);
    assert_eq!(before[0].status, "pending");
    daemon.kill();

    daemon.restart();
    let ids = settle(&daemon, &sink, 1);
    assert_eq!(ids, vec![before[0].message_id.clone()]);
    let after = alerts(&daemon);
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].status, "sent");
    assert_eq!(after[0].attempts, 2);
    assert!(
        daemon
            .log()
            .contains("sending again with the same Message-ID"),
        "{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stalled_relay_times_out_while_checks_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start_with(&["--stall-data", "1"]).await;
    let relay = Relay {
        port: sink.port,
        timeout: "4s",
        login: None,
    };
    let text = config(dir.path(), &["filter"], &relay, r#"group_window = "0s""#);
    let daemon = Daemon::start(dir.path(), &text);

    let stalled = sink.mail_dir().join("stalled.1");
    wait_for(
        &daemon,
        "the relay stalling",
        Duration::from_secs(60),
        || stalled.exists(),
    );
    let stalled_at = Instant::now();
    let checked = || {
        daemon
            .store()
            .service_states()
            .unwrap_or_default()
            .first()
            .and_then(|row| row.checked_ms)
            .unwrap_or(0)
    };
    // While the relay keeps the message, the service is still checked every second.
    let first = checked();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(
        checked() >= first + 1000,
        "no check while the relay stalled"
    );
    assert!(sink.messages().is_empty());

    let ids = settle(&daemon, &sink, 1);
    eprintln!(
        "stalled relay: delivered {:.1} s after the stall began (relay timeout 4 s)",
        stalled_at.elapsed().as_secs_f64() - 4.0
    );
    let rows = alerts(&daemon);
    assert_eq!(ids, vec![rows[0].message_id.clone()]);
    assert_eq!(rows[0].attempts, 2);
    assert!(
        daemon.log().contains("timed out after 4s"),
        "{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_login_retries_until_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let server_password = dir.path().join("server-password");
    std::fs::write(&server_password, "right horse\n").unwrap();
    let sink = Sink::start_with_auth("alerts", &server_password).await;
    let client_password = dir.path().join("relay-password");
    std::fs::write(&client_password, "wrong horse\n").unwrap();
    std::fs::set_permissions(&client_password, std::fs::Permissions::from_mode(0o600)).unwrap();
    let relay = Relay {
        port: sink.port,
        timeout: "10s",
        login: Some(("alerts", &client_password)),
    };
    let text = config(dir.path(), &["filter"], &relay, r#"group_window = "0s""#);
    let daemon = Daemon::start(dir.path(), &text);

    wait_for(&daemon, "refused logins", Duration::from_secs(60), || {
        alerts(&daemon).first().is_some_and(|row| row.attempts >= 2)
    });
    let error = alerts(&daemon)[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("authentication failed"), "{error}");
    assert!(error.contains("relay-password"), "{error}");
    assert!(
        !error.contains("wrong horse"),
        "the password leaked: {error}"
    );
    assert!(sink.messages().is_empty());

    // The password file is read on every attempt, so fixing it is enough.
    std::fs::write(&client_password, "right horse\n").unwrap();
    let ids = settle(&daemon, &sink, 1);
    assert_eq!(ids.len(), 1);
    assert_eq!(alerts(&daemon)[0].status, "sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_services_down_together_share_one_mail() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let text = config(
        dir.path(),
        &["filter", "archiver", "greylist"],
        &plain_relay(sink.port),
        r#"group_window = "5s""#,
    );
    let daemon = Daemon::start(dir.path(), &text);

    let ids = settle(&daemon, &sink, 1);
    assert_eq!(ids.len(), 1, "{ids:?}");
    let mail = parse_message(&sink.messages()[0]);
    let subject = mail.header("Subject").join(" ");
    for service in ["filter", "archiver", "greylist"] {
        assert!(subject.contains(service), "{subject}");
    }
    let plain = mail.part("text/plain");
    assert!(plain.starts_with("3 services on "), "{plain}");
    let incidents = daemon.store().incidents(true, 10).unwrap();
    assert_eq!(incidents.len(), 3);
    assert!(incidents
        .iter()
        .all(|incident| incident.alert_status == "sent"));
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_is_mailed_once() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let text = config(
        dir.path(),
        &["filter"],
        &plain_relay(sink.port),
        r#"group_window = "0s""#,
    );
    let daemon = Daemon::start(dir.path(), &text);
    settle(&daemon, &sink, 1);

    // The admin brings the service back: its pidfile names a live process (this test).
    std::fs::write(
        dir.path().join("filter.pid"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    let ids = settle(&daemon, &sink, 2);
    assert_eq!(ids.len(), 2, "{ids:?}");
    let recovered = parse_message(&sink.messages()[1]);
    let subject = recovered.header("Subject").join(" ");
    assert!(subject.contains("filter recovered"), "{subject}");
    // The recovery replies to the alert, so mail clients show them as one thread.
    assert_eq!(recovered.header("In-Reply-To").join(" "), ids[0]);
    assert!(!recovered.part("text/plain").contains("Next:"));
    assert!(daemon.store().incidents(true, 10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn alert_test_command_reports_each_channel() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let closed = free_port();
    let mut text = config(dir.path(), &[], &plain_relay(sink.port), "");
    text.push_str(&format!(
        "\n[[alerts.relay]]\nhost = \"127.0.0.1\"\nport = {closed}\ntls = \"none\"\n"
    ));
    std::fs::write(dir.path().join("selfheal.toml"), &text).unwrap();
    let cli = |args: &[&str]| {
        std::process::Command::new(support::daemon::SELFHEAL_BIN)
            .arg("-c")
            .arg(dir.path().join("selfheal.toml"))
            .args(args)
            .output()
            .unwrap()
    };

    let all = cli(&["alert", "test"]);
    let out = String::from_utf8_lossy(&all.stdout);
    assert_eq!(all.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "relay 127.0.0.1:{} (none): accepted: 250",
            sink.port
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!("relay 127.0.0.1:{closed} (none): FAILED:")),
        "{out}"
    );
    assert_eq!(sink.messages().len(), 1);
    let mail = parse_message(&sink.messages()[0]);
    assert!(mail.header("Subject").join(" ").ends_with(": test alert"));

    let one = cli(&[
        "alert",
        "test",
        "--channel",
        &format!("127.0.0.1:{}", sink.port),
    ]);
    assert_eq!(
        one.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&one.stdout)
    );
    assert_eq!(sink.messages().len(), 2);

    let unknown = cli(&["alert", "test", "--channel", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(err.contains("no alert channel is named \"nope\""), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{closed}")), "{err}");
}

/// Measures the time from the verdict that needs the admin to the relay's 250, with no
/// grouping window, over several incidents. Prints the figures; asserts only that each alert
/// arrived once.
#[tokio::test(flavor = "multi_thread")]
async fn verdict_to_relay_latency() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    // Each round is a new incident, so the restart budget must last five of them.
    let text = format!(
        "max_restarts = 20\n{}",
        config(
            dir.path(),
            &["filter"],
            &plain_relay(sink.port),
            "group_window = \"0s\"\nrecovered = false",
        )
    );
    let daemon = Daemon::start(dir.path(), &text);
    let pidfile = dir.path().join("filter.pid");
    let mut latencies = Vec::new();
    for round in 1..=5 {
        settle(&daemon, &sink, round);
        let store = daemon.store();
        let incident = store.incidents(false, 1).unwrap().remove(0);
        let verdict_ms = store
            .events(incident.id)
            .unwrap()
            .iter()
            .find(|event| event.kind == "needs_attention")
            .map(|event| event.at_ms)
            .expect("a needs_attention event");
        // The sink names each file by the nanosecond it stored the message.
        let newest = sink.messages().pop().unwrap();
        let stored_ns: i64 = newest
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|stem| stem.parse().ok())
            .unwrap();
        latencies.push(stored_ns / 1_000_000 - verdict_ms);
        // Heal it by hand, then let it fail again for the next round.
        std::fs::write(&pidfile, format!("{}\n", std::process::id())).unwrap();
        wait_for(
            &daemon,
            "the incident to close",
            Duration::from_secs(30),
            || daemon.store().incidents(true, 1).unwrap().is_empty(),
        );
        std::fs::remove_file(&pidfile).unwrap();
    }
    assert_eq!(received_ids(&sink).len(), 5);
    let mut sorted = latencies.clone();
    sorted.sort();
    eprintln!(
        "verdict to relay 250: median {} ms, each {latencies:?} ms (group_window 0 s)",
        sorted[sorted.len() / 2]
    );
}

/// Writes a `[[alerts.webhook]]` table posting to `url`.
fn webhook(name: &str, kind: &str, url: &str, fallback: bool) -> String {
    format!(
        "\n[[alerts.webhook]]\nname = \"{name}\"\nkind = \"{kind}\"\nurl = \"{url}\"\n\
         fallback = {fallback}\ntimeout = \"5s\"\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_gets_every_alert_next_to_mail() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    // The receiver fails the first post, so the webhook's route is retried on its own.
    let receiver = HttpSink::start(&[500]);
    let mut text = config(
        dir.path(),
        &["filter"],
        &plain_relay(sink.port),
        r#"group_window = "0s""#,
    );
    text.push_str(&webhook("receiver", "json", &receiver.url("/hook"), false));
    let daemon = Daemon::start(dir.path(), &text);

    let ids = settle(&daemon, &sink, 1);
    wait_for(
        &daemon,
        "the webhook delivered",
        Duration::from_secs(60),
        || {
            receiver
                .requests()
                .iter()
                .any(|request| request.status == 200)
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let requests = receiver.requests();
    assert_eq!(
        requests
            .iter()
            .map(|request| request.status)
            .collect::<Vec<_>>(),
        vec![500, 200]
    );
    let posted = &requests[1];
    assert_eq!(posted.method, "POST");
    assert_eq!(posted.path, "/hook");
    let document: serde_json::Value = serde_json::from_str(&posted.body).unwrap();
    assert_eq!(document["id"], ids[0].as_str());
    assert_eq!(posted.header("idempotency-key"), Some(ids[0].as_str()));
    assert_eq!(document["kind"], "problem");
    assert_eq!(document["services"][0]["name"], "filter");
    let row = alerts(&daemon).remove(0);
    assert_eq!(row.status, "sent");
    let channel = row.channel.unwrap_or_default();
    assert!(channel.contains("relay 127.0.0.1"), "{channel}");
    assert!(channel.contains("webhook receiver (json)"), "{channel}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fallback_webhook_when_relay_down() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = HttpSink::start(&[]);
    let mut text = config(
        dir.path(),
        &["filter"],
        &plain_relay(free_port()),
        r#"group_window = "0s""#,
    );
    text.push_str(&webhook(
        "phone",
        "ntfy",
        &receiver.url("/mail1-alerts"),
        true,
    ));
    let daemon = Daemon::start(dir.path(), &text);

    wait_for(&daemon, "the ntfy post", Duration::from_secs(60), || {
        !receiver.requests().is_empty()
    });
    std::thread::sleep(Duration::from_secs(3));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let post = &requests[0];
    assert_eq!(post.path, "/mail1-alerts");
    let title = post.header("title").unwrap_or_default();
    assert!(title.contains("filter restart failed"), "{title}");
    assert!(
        post.body.contains("selfheal could not heal filter"),
        "{}",
        post.body
    );
    assert_eq!(post.header("priority"), Some("urgent"));
    let row = alerts(&daemon).remove(0);
    assert_eq!(row.status, "sent");
    assert_eq!(row.channel.as_deref(), Some("webhook phone (ntfy)"));
    assert_eq!(row.attempts, 1, "the relay failed within the same attempt");
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_sends_the_waiting_group_first() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::start().await;
    let text = config(
        dir.path(),
        &["filter"],
        &plain_relay(sink.port),
        r#"group_window = "5min""#,
    );
    let mut daemon = Daemon::start(dir.path(), &text);

    wait_until_queued(&daemon);
    // SIGTERM does not wait for the grouping window: the alert goes out before the exit.
    daemon.stop();
    assert_eq!(received_ids(&sink).len(), 1);
    assert_eq!(alerts(&daemon)[0].status, "sent");
}
