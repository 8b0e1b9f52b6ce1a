//! The heal loop end to end. selfheal runs inside a contained systemd that manages Postfix and
//! Dovecot from Debian's packages, and its alerts go to a real SMTP server on the rig's loopback.
//!
//! These tests need root, overlayfs and cgroup2 (see rig/). Without them they fail, never skip.

mod support;

use std::process::Output;
use std::time::{Duration, Instant};

use support::rig::{unfold_mail, Rig};

const SELFHEAL: &str = env!("CARGO_BIN_EXE_selfheal");
const SINK: &str = "127.0.0.1:2525";

/// A rig running Postfix, Dovecot and the SMTP sink, with selfheal's config written.
struct Stack {
    rig: Rig,
    config: String,
}

impl Stack {
    fn boot(name: &str, extra: &str) -> Stack {
        Stack::boot_with_relays(name, extra, &[SINK])
    }

    /// Boots with alerts going through `relays` (HOST:PORT, plain SMTP) in this order.
    fn boot_with_relays(name: &str, extra: &str, relays: &[&str]) -> Stack {
        let rig = Rig::boot(name);
        rig.start_units(&["dbus.socket", "postfix@-.service", "dovecot.service"]);
        rig.start_smtp_sink(SINK);
        let state = rig.dir().join("selfheal-state");
        let config = rig.dir().join("selfheal.toml").display().to_string();
        let text = format!(
            r#"interval = "10s"
state_dir = "{state}"
verify_after = "1s"
verify_timeout = "10s"
retry_interval = "1s"
{extra}

[alerts]
from = "selfheal@rig.test"
to = ["admin@rig.test"]
sendmail = false

{relays}
[services.postfix]
[services.dovecot]
"#,
            state = state.display(),
            relays = relays
                .iter()
                .map(|relay| {
                    let (host, port) = relay.rsplit_once(':').expect("HOST:PORT");
                    format!(
                        "[[alerts.relay]]\nhost = \"{host}\"\nport = {port}\ntls = \"none\"\n\
                         timeout = \"10s\"\n\n"
                    )
                })
                .collect::<String>(),
        );
        std::fs::write(&config, text).expect("write selfheal config");
        Stack { rig, config }
    }

    fn start_selfheal(&self) {
        self.rig
            .run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &self.config]);
        self.rig.wait_until(
            "selfheal sees both services healthy",
            Duration::from_secs(30),
            || {
                let status = self.selfheal(&["status"]);
                let text = String::from_utf8_lossy(&status.stdout);
                text.lines().filter(|l| l.contains(" healthy ")).count() == 2
            },
        );
    }

    /// Kill selfheal itself with SIGKILL, as a crash would.
    fn kill_selfheal(&self) {
        self.rig.exec(&[
            "systemctl",
            "kill",
            "--signal=KILL",
            "selfheal-test.service",
        ]);
        self.rig
            .wait_until("selfheal is gone", Duration::from_secs(10), || {
                self.rig
                    .unit_property("selfheal-test.service", "ActiveState")
                    != "active"
            });
    }

    fn selfheal(&self, args: &[&str]) -> Output {
        let mut argv = vec![SELFHEAL, "-c", &self.config];
        argv.extend_from_slice(args);
        self.rig.exec(&argv)
    }

    fn selfheal_json(&self, args: &[&str]) -> serde_json::Value {
        let output = self.selfheal(args);
        serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
            panic!(
                "selfheal {args:?} printed no JSON ({error}): {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        })
    }

    fn postfix_master(&self) -> Option<u32> {
        let out = self
            .rig
            .sh("cat /var/spool/postfix/pid/master.pid 2>/dev/null");
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    }

    fn smtp_answers(&self) -> bool {
        self.rig
            .banner(25)
            .is_some_and(|line| line.starts_with("220"))
    }

    /// Kill the Postfix master with SIGKILL and return when that happened.
    fn kill_postfix(&self) -> (u32, Instant) {
        let master = self.postfix_master().expect("postfix master pid");
        self.rig.kill(master, "KILL");
        (master, Instant::now())
    }

    fn break_main_cf(&self) {
        self.rig
            .sh("echo 'this line is not a parameter' >> /etc/postfix/main.cf");
    }

    fn fix_main_cf(&self) {
        self.rig
            .sh("sed -i '/this line is not a parameter/d' /etc/postfix/main.cf");
    }

    fn incidents(&self) -> Vec<serde_json::Value> {
        self.selfheal_json(&["incidents", "--json"])
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Messages the SMTP sink received whose subject names `service`.
    fn alerts_for(&self, service: &str) -> Vec<String> {
        self.rig
            .received_mail()
            .into_iter()
            .filter(|m| m.contains(&format!(": {service} ")))
            .collect()
    }

    /// Number of restarts selfheal issued for a service, from its incident history.
    fn restarts_of(&self, service: &str) -> usize {
        self.incidents()
            .iter()
            .filter(|i| i["incident"]["service"] == service)
            .flat_map(|i| i["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["kind"] == "restart_issued")
            .count()
    }
}

fn incident_of<'a>(incidents: &'a [serde_json::Value], service: &str) -> &'a serde_json::Value {
    incidents
        .iter()
        .find(|i| i["incident"]["service"] == service)
        .unwrap_or_else(|| panic!("no incident for {service}: {incidents:?}"))
}

#[test]
fn killed_postfix_is_healed_without_alert() {
    let stack = Stack::boot("heal-postfix", "max_restarts = 10");
    stack.start_selfheal();

    let mut took = Vec::new();
    for _ in 0..5 {
        let (old, killed) = stack.kill_postfix();
        stack.rig.wait_until(
            "postfix answers again on 25",
            Duration::from_secs(30),
            || stack.postfix_master().is_some_and(|pid| pid != old) && stack.smtp_answers(),
        );
        took.push(killed.elapsed());
        // Outside the verify window, so the next kill is a new crash, not a crash loop.
        std::thread::sleep(Duration::from_secs(11));
    }
    took.sort();
    println!(
        "kill -9 of the postfix master to port 25 answering: median {:.2} s, all {:?}",
        took[took.len() / 2].as_secs_f64(),
        took
    );
    // The interval is 10 s: recovery must come from the crash signal, not the next poll.
    assert!(took[took.len() / 2] < Duration::from_secs(10), "{took:?}");

    let incidents = stack.incidents();
    let postfix: Vec<_> = incidents
        .iter()
        .filter(|i| i["incident"]["service"] == "postfix")
        .collect();
    assert_eq!(postfix.len(), 5, "{incidents:?}");
    for incident in postfix {
        assert_eq!(incident["incident"]["verdict"], "healed", "{incident}");
        assert!(incident["incident"]["closed_ms"].is_i64(), "{incident}");
    }
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        stack.rig.received_mail().is_empty(),
        "a healed crash sent mail"
    );
}

#[test]
fn broken_main_cf_alerts_once() {
    // The first relay is the watched Postfix itself: while it is down, it is passed over.
    let stack = Stack::boot_with_relays("broken-postfix", "", &["127.0.0.1:25", SINK]);
    stack.start_selfheal();
    stack.break_main_cf();
    stack.kill_postfix();

    stack
        .rig
        .wait_until("one alert for postfix", Duration::from_secs(60), || {
            !stack.alerts_for("postfix").is_empty()
        });
    // Two more intervals: no second alert, no further restart.
    std::thread::sleep(Duration::from_secs(22));
    let alerts = stack.alerts_for("postfix");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let mail = &alerts[0];
    let unfolded = unfold_mail(mail);
    // The config test runs before the restart, so the broken main.cf is found and Postfix is
    // not restarted into the same error.
    assert!(
        unfolded.contains("postfix not restarted (config error:"),
        "{mail}"
    );
    assert!(mail.contains("Auto-Submitted: auto-generated"), "{mail}");
    assert!(mail.contains("postfix@-.service"), "{mail}");
    assert!(
        unfolded.contains("Delivery: sent through relay 127.0.0.1:2525 (none); before it: relay 127.0.0.1:25 (none): skipped: postfix is not healthy (needs attention)"),
        "{unfolded}"
    );
    // The diagnosis names the file and line, with the evidence and the next step.
    assert!(unfolded.contains("Diagnosis:"), "{unfolded}");
    assert!(
        unfolded.contains("config error: /etc/postfix/main.cf line "),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("postconf: fatal: /etc/postfix/main.cf, line "),
        "{unfolded}"
    );
    assert!(unfolded.contains("Next: fix line "), "{unfolded}");
    assert_eq!(stack.restarts_of("postfix"), 0);
    assert!(!stack.smtp_answers());

    let incidents = stack.incidents();
    let incident = incident_of(&incidents, "postfix");
    assert_eq!(incident["incident"]["verdict"], "not restarted");
    assert_eq!(
        incident["incident"]["diagnosis"][0]["cause"],
        "config_error"
    );
    assert_eq!(incident["incident"]["alert_status"], "sent");
    assert!(incident["incident"]["closed_ms"].is_null());

    let status = stack.selfheal(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("needs attention"), "{text}");
    assert!(
        text.contains("cause: config error: /etc/postfix/main.cf line "),
        "{text}"
    );

    // Once main.cf is fixed, the next check restarts Postfix by itself.
    stack.fix_main_cf();
    stack
        .rig
        .wait_until("postfix healed", Duration::from_secs(60), || {
            stack.smtp_answers()
        });
    assert_eq!(stack.restarts_of("postfix"), 1);
}

#[test]
fn watch_mode_alerts_without_restart() {
    let stack = Stack::boot("watch-postfix", "mode = \"watch\"");
    stack.start_selfheal();
    stack.kill_postfix();

    stack
        .rig
        .wait_until("an alert for postfix", Duration::from_secs(60), || {
            !stack.alerts_for("postfix").is_empty()
        });
    std::thread::sleep(Duration::from_secs(22));
    let alerts = stack.alerts_for("postfix");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("postfix down"), "{}", alerts[0]);
    assert_eq!(stack.restarts_of("postfix"), 0);
    assert!(!stack.smtp_answers(), "watch mode restarted postfix");
    assert_eq!(
        stack.rig.unit_property("postfix@-.service", "ActiveState"),
        "failed"
    );
}

#[test]
fn crash_loop_stops_restarting() {
    let stack = Stack::boot("crash-loop", "max_restarts = 2");
    stack.start_selfheal();

    // Killed again each time it is back, but outside the verify window: the budget decides.
    for round in 0..2 {
        let (old, _) = stack.kill_postfix();
        stack.rig.wait_until(
            &format!("postfix back, round {round}"),
            Duration::from_secs(30),
            || stack.postfix_master().is_some_and(|pid| pid != old) && stack.smtp_answers(),
        );
        std::thread::sleep(Duration::from_secs(11));
    }
    stack.kill_postfix();
    stack
        .rig
        .wait_until("a crash loop alert", Duration::from_secs(60), || {
            !stack.alerts_for("postfix").is_empty()
        });
    std::thread::sleep(Duration::from_secs(22));
    let alerts = stack.alerts_for("postfix");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("postfix crash loop"), "{}", alerts[0]);
    assert_eq!(stack.restarts_of("postfix"), 2);
    assert!(
        !stack.smtp_answers(),
        "restarted after the budget was used up"
    );
}

#[test]
fn start_limit_hit_unit_is_reset_and_restarted() {
    let stack = Stack::boot("start-limit", "");
    // Make dovecot fail to start until systemd's start rate limit refuses it.
    stack
        .rig
        .sh("cp /etc/dovecot/dovecot.conf /root/dovecot.conf.good && echo 'broken {' >> /etc/dovecot/dovecot.conf");
    for _ in 0..8 {
        stack.rig.exec(&["systemctl", "restart", "dovecot.service"]);
    }
    let refused = stack.rig.exec(&["systemctl", "start", "dovecot.service"]);
    let journal = stack.rig.journal("dovecot.service");
    assert!(
        !refused.status.success() && journal.contains("Start request repeated too quickly"),
        "dovecot did not hit its start limit: {journal}"
    );
    stack
        .rig
        .sh("cp /root/dovecot.conf.good /etc/dovecot/dovecot.conf");

    stack
        .rig
        .run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &stack.config]);
    stack.rig.wait_until(
        "dovecot answers on 143 again",
        Duration::from_secs(60),
        || stack.rig.banner(143).is_some_and(|l| l.starts_with("* OK")),
    );
    stack.rig.wait_until(
        "the incident closes as healed",
        Duration::from_secs(30),
        || {
            stack.incidents().iter().any(|i| {
                i["incident"]["service"] == "dovecot" && i["incident"]["verdict"] == "healed"
            })
        },
    );
    let incidents = stack.incidents();
    let events = incident_of(&incidents, "dovecot")["events"].to_string();
    assert!(events.contains("reset-failed"), "{events}");
    assert!(stack.alerts_for("dovecot").is_empty());
}

#[test]
fn restarted_selfheal_keeps_incident() {
    let stack = Stack::boot("keeps-state", "");
    stack.start_selfheal();
    stack.break_main_cf();
    stack.kill_postfix();
    stack
        .rig
        .wait_until("the postfix alert", Duration::from_secs(60), || {
            !stack.alerts_for("postfix").is_empty()
        });
    let before = incident_of(&stack.incidents(), "postfix")["incident"]["id"].clone();

    stack.kill_selfheal();
    stack
        .rig
        .run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &stack.config]);
    std::thread::sleep(Duration::from_secs(22));

    // Same open incident, no second alert, no new restart.
    let open = stack.selfheal_json(&["incidents", "--open", "--json"]);
    let open = open.as_array().cloned().unwrap_or_default();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0]["incident"]["id"], before);
    assert_eq!(stack.alerts_for("postfix").len(), 1);
    assert_eq!(stack.restarts_of("postfix"), 0);
    let status = stack.selfheal(&["status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("needs attention"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );

    // The admin fixes main.cf and restarts through the daemon: verified, incident closed.
    stack.fix_main_cf();
    let restart = stack.selfheal(&["restart", "postfix"]);
    assert!(
        restart.status.success(),
        "{}{}",
        String::from_utf8_lossy(&restart.stdout),
        String::from_utf8_lossy(&restart.stderr)
    );
    assert!(stack.smtp_answers());
    let incidents = stack.incidents();
    let incident = incident_of(&incidents, "postfix");
    assert!(incident["incident"]["closed_ms"].is_i64(), "{incident}");
    assert_eq!(incident["incident"]["resolution"], "healed");
    // The admin hears once more: the alerted incident has closed.
    stack
        .rig
        .wait_until("the recovery mail", Duration::from_secs(60), || {
            stack.alerts_for("postfix").len() == 2
        });
    let mails = stack.alerts_for("postfix");
    assert!(mails[0].contains("postfix not restarted"), "{}", mails[0]);
    assert!(
        mails[1].contains("postfix recovered (was not restarted)"),
        "{}",
        mails[1]
    );
}

#[test]
fn check_command_reports_down_service() {
    let stack = Stack::boot("check-cmd", "");
    let healthy = stack.selfheal(&["check"]);
    assert_eq!(
        healthy.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&healthy.stdout)
    );

    stack.rig.exec(&["systemctl", "stop", "dovecot.service"]);
    let down = stack.selfheal(&["check", "--json"]);
    assert_eq!(down.status.code(), Some(1));
    let rows: serde_json::Value = serde_json::from_slice(&down.stdout).expect("check --json");
    let dovecot = rows
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["service"] == "dovecot"))
        .expect("dovecot row");
    assert_eq!(dovecot["state"], "down");
    // check never restarts anything.
    assert_eq!(
        stack.rig.unit_property("dovecot.service", "ActiveState"),
        "inactive"
    );

    let unknown = stack.selfheal(&["check", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(2));
    let text = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        text.contains("unknown service \"nosuch\"") && text.contains("postfix, dovecot"),
        "{text}"
    );
}

#[test]
fn detect_finds_installed_presets() {
    let rig = Rig::boot("detect");
    rig.start_units(&["dbus.socket"]);
    let output = rig.exec(&[SELFHEAL, "detect"]);
    let config = String::from_utf8_lossy(&output.stdout).to_string();
    for service in [
        "postfix", "dovecot", "opendkim", "mariadb", "unbound", "fail2ban",
    ] {
        assert!(
            config.contains(&format!("[services.{service}]")),
            "{service} missing from: {config}"
        );
    }
    // Apache is installed but disabled: left alone.
    assert!(!config.contains("\n[services.apache]"), "{config}");
    let path = rig.dir().join("detected.toml");
    std::fs::write(&path, &config).expect("write detected config");
    let check = rig.exec(&[
        SELFHEAL,
        "config",
        "check",
        "-c",
        &path.display().to_string(),
    ]);
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn restart_without_daemon_verifies() {
    let stack = Stack::boot("restart-direct", "");
    stack.rig.exec(&["systemctl", "stop", "dovecot.service"]);

    let restart = stack.selfheal(&["restart", "dovecot"]);
    let stdout = String::from_utf8_lossy(&restart.stdout);
    let stderr = String::from_utf8_lossy(&restart.stderr);
    assert!(restart.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("daemon not running"), "{stderr}");
    assert!(
        stdout.contains("dovecot restarted and verified healthy"),
        "{stdout}"
    );
    assert!(stack
        .rig
        .banner(143)
        .is_some_and(|line| line.starts_with("* OK")));

    // Without the daemon, status reads the last state the restart stored.
    let status = stack.selfheal(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    let dovecot = text
        .lines()
        .find(|l| l.starts_with("dovecot"))
        .unwrap_or_else(|| panic!("no dovecot row: {text}"));
    assert!(dovecot.contains("healthy"), "{text}");
    assert!(
        dovecot.contains("manual restart verified healthy"),
        "{text}"
    );

    let unknown = stack.selfheal(&["restart", "nosuch"]);
    assert_eq!(unknown.status.code(), Some(2));
}

#[test]
fn runs_without_config_file() {
    let rig = Rig::boot("no-config");
    rig.start_units(&["dbus.socket", "postfix@-.service", "dovecot.service"]);
    assert!(!rig
        .sh("test -e /etc/selfheal/selfheal.toml")
        .status
        .success());
    rig.run_transient("selfheal-test", &[SELFHEAL, "run"]);

    rig.wait_until("selfheal serves status", Duration::from_secs(30), || {
        String::from_utf8_lossy(&rig.exec(&[SELFHEAL, "status"]).stdout).contains("postfix")
    });
    let journal = rig.journal("selfheal-test.service");
    assert!(journal.contains("no config file"), "{journal}");
    assert!(journal.contains("no alert channel configured"), "{journal}");
    let status = String::from_utf8_lossy(&rig.exec(&[SELFHEAL, "status"]).stdout).to_string();
    for service in ["postfix", "dovecot", "opendkim", "unbound"] {
        assert!(
            status.lines().any(|l| l.starts_with(service)),
            "{service} not watched: {status}"
        );
    }
}

#[test]
fn shipped_unit_notifies_and_pings_watchdog() {
    let rig = Rig::boot("service-unit");
    rig.start_units(&["dbus.socket", "postfix@-.service", "dovecot.service"]);

    // The unit as shipped, with the binary copied where PrivateTmp cannot hide it and a short
    // watchdog so that missing pings would show within the test.
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/dist/selfheal.service"
    ))
    .expect("read dist/selfheal.service");
    rig.write_file("/etc/systemd/system/selfheal.service", &unit);
    rig.write_file(
        "/etc/systemd/system/selfheal.service.d/test.conf",
        "[Service]\nExecStart=\nExecStart=/var/lib/selfheal-test/selfheal run\nWatchdogSec=3s\n",
    );
    rig.write_file(
        "/etc/selfheal/selfheal.toml",
        "interval = \"5s\"\n[services.postfix]\n[services.dovecot]\n",
    );
    rig.exec_ok(&[
        "install",
        "-D",
        "-m",
        "755",
        SELFHEAL,
        "/var/lib/selfheal-test/selfheal",
    ]);
    rig.exec_ok(&["systemctl", "daemon-reload"]);

    // Type=notify: the start job returns only once selfheal sent READY=1.
    let started = Instant::now();
    rig.exec_ok(&["systemctl", "start", "selfheal.service"]);
    println!(
        "selfheal.service ready after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        rig.unit_property("selfheal.service", "ActiveState"),
        "active"
    );

    // Four watchdog periods later it still runs and was never restarted.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(
        rig.unit_property("selfheal.service", "ActiveState"),
        "active"
    );
    assert_eq!(rig.unit_property("selfheal.service", "NRestarts"), "0");
    let journal = rig.journal("selfheal.service");
    assert!(!journal.contains("watchdog timeout"), "{journal}");

    let pid = rig.unit_property("selfheal.service", "MainPID");
    let status = rig.exec_ok(&["cat", &format!("/proc/{pid}/status")]);
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap_or("VmRSS: unknown");
    println!(
        "selfheal idle with 2 services ({} build): {rss}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );

    // SIGTERM stops it cleanly and removes its control socket.
    rig.exec_ok(&["systemctl", "stop", "selfheal.service"]);
    assert_eq!(rig.unit_property("selfheal.service", "Result"), "success");
    assert!(!rig
        .sh("test -e /run/selfheal/control.sock")
        .status
        .success());
}

/// A daemon that ignores SIGTERM and stops listening on SIGUSR1: active but not answering, and
/// its stop hangs until SIGKILL.
const STUBBORN: &str = r#"import signal, socket, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", 10030))
listener.listen()
def close(*_):
    listener.close()
signal.signal(signal.SIGUSR1, close)
while True:
    time.sleep(1)
"#;

#[test]
fn hung_stop_is_killed() {
    let rig = Rig::boot("hung-stop");
    rig.start_units(&["dbus.socket"]);
    rig.write_file("/etc/stubborn.py", STUBBORN);
    rig.write_file(
        "/etc/systemd/system/stubborn.service",
        "[Service]\nExecStart=/usr/bin/python3 /etc/stubborn.py\n",
    );
    rig.exec_ok(&["systemctl", "daemon-reload"]);
    rig.start_units(&["stubborn.service"]);
    let config = rig.dir().join("selfheal.toml").display().to_string();
    let state = rig.dir().join("selfheal-state");
    std::fs::write(
        &config,
        format!(
            r#"interval = "5s"
state_dir = "{}"
retry_interval = "1s"
verify_after = "1s"
[services.stubborn]
unit = "stubborn.service"
probe = {{ tcp = "127.0.0.1:10030" }}
restart_timeout = "20s"
"#,
            state.display()
        ),
    )
    .expect("write config");
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    std::thread::sleep(Duration::from_secs(2));

    let old = rig.main_pid("stubborn.service").expect("stubborn main pid");
    rig.kill(old, "USR1");
    let took = rig.wait_until(
        "a new stubborn process listens again",
        Duration::from_secs(60),
        || {
            rig.main_pid("stubborn.service")
                .is_some_and(|pid| pid != old)
                && rig.sh("exec 3<>/dev/tcp/127.0.0.1/10030").status.success()
        },
    );
    println!(
        "hung stop killed and service back after {:.1} s",
        took.as_secs_f64()
    );

    let incidents = rig.exec(&[SELFHEAL, "-c", &config, "incidents", "--json"]);
    let text = String::from_utf8_lossy(&incidents.stdout);
    assert!(text.contains("killed with SIGKILL"), "{text}");
    rig.wait_until(
        "the incident closes as healed",
        Duration::from_secs(20),
        || {
            let out = rig.exec(&[SELFHEAL, "-c", &config, "incidents", "--json"]);
            String::from_utf8_lossy(&out.stdout).contains("\"verdict\": \"healed\"")
        },
    );
    // systemd's own stop timeout (90 s) was not what ended the stop.
    assert!(took < Duration::from_secs(40), "{took:?}");
    // It ignores SIGTERM: kill it so the rig's shutdown does not wait for it.
    rig.stop_transient("selfheal-test");
    rig.exec(&["systemctl", "kill", "--signal=KILL", "stubborn.service"]);
}
