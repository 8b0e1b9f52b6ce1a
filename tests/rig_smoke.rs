//! Checks of the end-to-end test rig itself: the real mail services start and accept
//! connections inside it, the helpers reach them, and the host stays untouched. Timings are printed, so run with
//! `--nocapture` to see them. Needs root: see `scripts/test.sh`.

mod support;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::rig::{Rig, SELFHEAL_BIN};

/// Starts `units` and prints how long that took.
fn start(rig: &Rig, units: &[&str]) {
    let started = Instant::now();
    rig.start_units(units);
    println!(
        "{}: started {} in {:.2} s",
        rig.name(),
        units.join(" "),
        started.elapsed().as_secs_f64()
    );
}

/// Returns true while the host process `pid` runs; a zombie counts as ended.
fn host_process_runs(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

#[test]
fn mail_services_answer() {
    let rig = Rig::boot("smoke-mail");
    start(
        &rig,
        &["dbus.service", "postfix.service", "dovecot.service"],
    );

    for unit in ["dbus.service", "postfix@-.service", "dovecot.service"] {
        assert_eq!(rig.unit_property(unit, "ActiveState"), "active", "{unit}");
    }
    let smtp = rig.banner(25);
    assert!(
        smtp.as_deref().is_some_and(|line| line.starts_with("220 ")),
        "SMTP banner on port 25: {smtp:?}"
    );
    let imap = rig.banner(143);
    assert!(
        imap.as_deref().is_some_and(|line| line.starts_with("* OK")),
        "IMAP banner on port 143: {imap:?}"
    );
    assert_eq!(rig.banner(9), None, "nothing listens on port 9");
}

#[test]
fn busctl_reaches_systemd() {
    let rig = Rig::boot("smoke-bus");
    // dbus.socket starts the system bus on the first connection.
    let reply = rig.exec_ok(&[
        "busctl",
        "call",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        "GetUnit",
        "s",
        "dbus.socket",
    ]);
    assert_eq!(
        reply.trim(),
        r#"o "/org/freedesktop/systemd1/unit/dbus_2esocket""#
    );
}

#[test]
fn smtp_sink_stores_mail() {
    let rig = Rig::boot("smoke-sink");
    let started = Instant::now();
    let mail_dir = rig.start_smtp_sink("127.0.0.1:2525");
    println!(
        "smoke-sink: SMTP sink listening after {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(mail_dir.starts_with(rig.dir()), "{}", mail_dir.display());
    assert!(rig.received_mail().is_empty());

    let send = r#"
import smtplib
from email.message import EmailMessage
message = EmailMessage()
message["From"] = "selfheal@rig.test"
message["To"] = "admin@rig.test"
message["Subject"] = "rig smoke"
message.set_content("sent from inside the rig")
with smtplib.SMTP("127.0.0.1", 2525, timeout=10) as smtp:
    smtp.send_message(message)
"#;
    rig.exec_ok(&["/usr/bin/python3", "-c", send]);
    let took = rig.wait_until(
        "the sink to store the message",
        Duration::from_secs(10),
        || !rig.received_mail().is_empty(),
    );
    println!(
        "smoke-sink: message stored after {:.3} s",
        took.as_secs_f64()
    );

    let mail = rig.received_mail();
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert!(mail[0].contains("Subject: rig smoke"), "{}", mail[0]);
    assert!(mail[0].contains("sent from inside the rig"), "{}", mail[0]);

    rig.stop_transient("smtp-sink-2525");
    assert_eq!(
        rig.unit_property("smtp-sink-2525.service", "ActiveState"),
        "inactive"
    );
}

#[test]
fn postfix_kill_fails_unit() {
    let rig = Rig::boot("smoke-kill");
    start(&rig, &["postfix.service"]);
    // postfix@-.service is Type=forking without a PID file, so systemd has no main PID.
    assert_eq!(rig.main_pid("postfix@-.service"), None);
    let master = rig.exec_ok(&["cat", "/var/spool/postfix/pid/master.pid"]);
    let master: u32 = master.trim().parse().expect("master.pid contains a PID");

    rig.kill(master, "KILL");
    let took = rig.wait_until("postfix@-.service to fail", Duration::from_secs(15), || {
        rig.unit_property("postfix@-.service", "ActiveState") == "failed"
    });
    println!(
        "smoke-kill: postfix@-.service failed {:.2} s after kill -9 of the master",
        took.as_secs_f64()
    );
    // The oneshot wrapper does not notice: it stays active (exited).
    assert_eq!(
        rig.unit_property("postfix.service", "ActiveState"),
        "active"
    );
    assert_eq!(rig.banner(25), None);
}

#[test]
fn dovecot_main_pid_known() {
    let rig = Rig::boot("smoke-dovecot");
    start(&rig, &["dovecot.service"]);
    let pid = rig
        .main_pid("dovecot.service")
        .expect("dovecot.service has a main PID");
    let command = rig.exec_ok(&["cat", &format!("/proc/{pid}/comm")]);
    assert_eq!(command.trim(), "dovecot");

    rig.kill(pid, "KILL");
    let took = rig.wait_until("dovecot.service to fail", Duration::from_secs(10), || {
        rig.unit_property("dovecot.service", "ActiveState") == "failed"
    });
    println!(
        "smoke-dovecot: dovecot.service failed {:.2} s after kill -9",
        took.as_secs_f64()
    );
    assert_eq!(rig.unit_property("dovecot.service", "Result"), "signal");
}

#[test]
fn rig_dir_shared_with_host() {
    let rig = Rig::boot("smoke-dir");
    let dir = rig.dir().to_str().expect("ASCII rig path").to_owned();

    rig.sh(&format!("echo inside >{dir}/from-inside"));
    assert_eq!(
        fs::read_to_string(rig.dir().join("from-inside")).unwrap(),
        "inside\n"
    );
    fs::write(rig.dir().join("from-host"), "host\n").unwrap();
    assert_eq!(rig.exec_ok(&["cat", &format!("{dir}/from-host")]), "host\n");

    // Files under /etc land in the rig's overlay, not on the host.
    rig.write_file("/etc/selfheal-rig-test/probe.conf", "written inside\n");
    assert_eq!(
        rig.exec_ok(&["cat", "/etc/selfheal-rig-test/probe.conf"]),
        "written inside\n"
    );
    assert!(!Path::new("/etc/selfheal-rig-test").exists());
    assert!(rig
        .dir()
        .join("ovl/etc/upper/selfheal-rig-test/probe.conf")
        .exists());

    // The root file system is read-only inside.
    let touch = rig.exec(&["touch", "/selfheal-rig-probe"]);
    assert!(!touch.status.success());
    assert!(!Path::new("/selfheal-rig-probe").exists());
}

#[test]
fn binary_runs_inside() {
    let rig = Rig::boot("smoke-bin");
    let output = rig.exec(&[SELFHEAL_BIN, "--help"]);
    assert!(
        output.status.success(),
        "{SELFHEAL_BIN} --help inside the rig: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn host_untouched_by_rig() {
    let canary = tempfile::Builder::new()
        .prefix("selfheal-rig-canary")
        .tempfile_in("/tmp")
        .expect("create a file in the host's /tmp");
    let rig = Rig::boot("smoke-host");
    start(&rig, &["postfix.service"]);
    drop(rig);

    assert!(
        canary.path().exists(),
        "the rig removed {}",
        canary.path().display()
    );
    let root_options = Command::new("findmnt")
        .args(["-n", "-o", "OPTIONS", "--mountpoint", "/"])
        .output()
        .expect("run findmnt");
    let root_options = String::from_utf8_lossy(&root_options.stdout);
    assert!(
        root_options.split(',').any(|option| option.trim() == "rw"),
        "the host's / is no longer read-write: {root_options}"
    );
}

#[test]
fn panic_stops_rig() {
    let mut systemd_pid = 0;
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let rig = Rig::boot("smoke-panic");
        systemd_pid = rig.systemd_pid();
        panic!("deliberate panic with a running rig");
    }));
    assert!(result.is_err());
    assert_ne!(systemd_pid, 0);
    assert!(
        !host_process_runs(systemd_pid),
        "systemd {systemd_pid} still runs"
    );

    // The panic poisoned the lock that serializes rigs. The next boot must still work.
    let rig = Rig::boot("smoke-panic");
    assert_ne!(rig.systemd_pid(), systemd_pid);
}
