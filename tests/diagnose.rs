//! `selfheal diagnose` against real services from Debian's packages under a contained systemd,
//! each failure injected for real: broken config files, a full spool filesystem, a port held by
//! another program or by a copy of Postfix started by hand, a damaged MariaDB table, a removed
//! socket directory, and spamass-milter without spamd. Also that a cause fixed since is no
//! longer reported, that the daemon's cause follows later changes, and that it follows a
//! socket moved in the service's own config.
//!
//! These tests need root, overlayfs and cgroup2 (see rig/). Without them they fail, never skip.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::rig::{unfold_mail, Rig};

const SELFHEAL: &str = env!("CARGO_BIN_EXE_selfheal");

/// Boots a rig running `units`, with a config that watches `services` in watch mode.
fn rig(name: &str, units: &[&str], services: &[&str]) -> (Rig, String) {
    let rig = Rig::boot(name);
    let mut all = vec!["dbus.socket"];
    all.extend_from_slice(units);
    rig.start_units(&all);
    let config = rig.dir().join("selfheal.toml").display().to_string();
    let mut text = format!(
        "mode = \"watch\"\ninterval = \"2s\"\nstate_dir = \"{}\"\ncontrol_socket = \"{}\"\n",
        rig.dir().join("state").display(),
        rig.dir().join("control.sock").display()
    );
    for service in services {
        text.push_str(&format!("[services.{service}]\n"));
    }
    std::fs::write(&config, text).expect("write config");
    (rig, config)
}

/// `selfheal diagnose SERVICE --json`: the findings, most specific first.
fn diagnose(rig: &Rig, config: &str, service: &str) -> Vec<Value> {
    let output = rig.exec(&[SELFHEAL, "-c", config, "diagnose", service, "--json"]);
    let findings: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "diagnose printed no JSON ({error}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    findings.as_array().cloned().unwrap_or_default()
}

/// Returns the first finding of `cause`, or panics showing every finding.
fn finding<'a>(findings: &'a [Value], cause: &str) -> &'a Value {
    findings
        .iter()
        .find(|finding| finding["cause"] == cause)
        .unwrap_or_else(|| panic!("no {cause} finding in {findings:#?}"))
}

fn summary(finding: &Value) -> String {
    finding["summary"].as_str().unwrap_or_default().to_string()
}

/// Starts another program, `squatter-PORT.service`, that listens on `port` on every address,
/// and waits until it does. SO_REUSEADDR lets it bind while connections of the service's
/// probes linger in TIME_WAIT on the port; it retries while the port is still being released.
fn squat(rig: &Rig, port: u16) {
    let script = format!(
        "import socket, time\n\
         s = socket.socket(socket.AF_INET6)\n\
         s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         while True:\n\
         \x20   try:\n\
         \x20       s.bind(('::', {port}))\n\
         \x20       break\n\
         \x20   except OSError:\n\
         \x20       time.sleep(0.2)\n\
         s.listen()\n\
         time.sleep(3600)\n"
    );
    rig.run_transient(
        &format!("squatter-{port}"),
        &["/usr/bin/python3", "-c", &script],
    );
    rig.wait_until(
        &format!("the squatter on port {port}"),
        Duration::from_secs(30),
        || {
            let out = rig.sh(&format!("ss -Hltn 'sport = :{port}'"));
            !String::from_utf8_lossy(&out.stdout).trim().is_empty()
        },
    );
}

/// Returns the lines of a section of an alert mail's plain part, such as "What was seen",
/// without its heading: up to the next blank line. `mail` is as received: the section's
/// lines are indented, so [`unfold_mail`] would join them like folded header lines.
fn mail_section(mail: &str, heading: &str) -> Vec<String> {
    let text = mail
        .replace("=\r\n", "")
        .replace("=\n", "")
        .replace("=3D", "=");
    let start = text
        .find(&format!("\n{heading}:"))
        .unwrap_or_else(|| panic!("no section {heading:?} in:\n{text}"));
    text[start + 1..]
        .lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// Runs `selfheal ARGS` in the rig and returns its exit code, standard output and error.
fn selfheal(rig: &Rig, args: &[&str]) -> (Option<i32>, String, String) {
    let mut argv = vec![SELFHEAL];
    argv.extend_from_slice(args);
    let output = rig.exec(&argv);
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Restarts `unit` and waits until systemd has given up on it.
fn restart_fails(rig: &Rig, unit: &str) {
    rig.exec(&["systemctl", "restart", unit]);
    rig.wait_until(&format!("{unit} failed"), Duration::from_secs(30), || {
        rig.unit_property(unit, "ActiveState") == "failed"
    });
}

#[test]
fn config_errors_name_file_and_line() {
    let (rig, config) = rig(
        "diag-config",
        &["postfix@-.service", "dovecot.service", "unbound.service"],
        &["postfix", "dovecot", "unbound"],
    );
    for service in ["postfix", "dovecot", "unbound"] {
        let findings = diagnose(&rig, &config, service);
        assert!(findings.is_empty(), "{service}: {findings:#?}");
    }

    rig.sh("echo 'this line is not a parameter' >> /etc/postfix/main.cf");
    // Discovery reads main.cf too, and warns about the line as Postfix's, not selfheal's.
    let (_, _, stderr) = selfheal(&rig, &["-c", &config, "status"]);
    let warning = stderr
        .lines()
        .find(|line| line.starts_with("warning: /etc/postfix/main.cf:"))
        .unwrap_or_else(|| panic!("no main.cf warning in:\n{stderr}"));
    assert!(
        warning.contains(
            ": while reading postfix's own config to find what to probe: expected `name = \
             value`, found \"this line is not a parameter\"; line skipped; selfheal probes \
             smtp 127.0.0.1:25 (from /etc/postfix/master.cf:"
        ),
        "{warning}"
    );
    assert!(!warning.contains("services.postfix"), "{warning}");
    let findings = diagnose(&rig, &config, "postfix");
    let error = finding(&findings, "config_error");
    assert!(
        summary(error).starts_with("config error: /etc/postfix/main.cf line "),
        "{error:#}"
    );
    assert!(summary(error).contains("missing '='"), "{error:#}");
    assert_eq!(error["blocks_restart"], true);

    rig.sh("echo 'bogus_setting = yes' >> /etc/dovecot/conf.d/10-mail.conf");
    let findings = diagnose(&rig, &config, "dovecot");
    let error = finding(&findings, "config_error");
    assert!(
        summary(error).starts_with("config error: /etc/dovecot/conf.d/10-mail.conf line "),
        "{error:#}"
    );
    assert!(
        summary(error).contains("Unknown setting: bogus_setting"),
        "{error:#}"
    );

    rig.sh("echo 'server: bogus-option: 1' >> /etc/unbound/unbound.conf");
    let findings = diagnose(&rig, &config, "unbound");
    let error = finding(&findings, "config_error");
    assert!(
        summary(error).starts_with("config error: /etc/unbound/unbound.conf line "),
        "{error:#}"
    );
    assert!(summary(error).contains("bogus-option"), "{error:#}");
}

#[test]
fn port_held_by_another_program() {
    let (rig, config) = rig(
        "diag-ports",
        &["postfix@-.service", "dovecot.service"],
        &["postfix", "dovecot"],
    );

    for (service, unit, port) in [
        ("dovecot", "dovecot.service", 143),
        ("postfix", "postfix@-.service", 25),
    ] {
        rig.exec(&["systemctl", "stop", unit]);
        squat(&rig, port);
        rig.exec(&["systemctl", "start", unit]);
        rig.wait_until(
            &format!("{service} to give up on port {port}"),
            Duration::from_secs(30),
            || {
                let journal = rig.journal(unit);
                journal.contains("Address already in use")
                    && rig.unit_property(unit, "ActiveState") != "activating"
            },
        );
        let findings = diagnose(&rig, &config, service);
        let conflict = finding(&findings, "port_conflict");
        let text = summary(conflict);
        assert!(
            text.starts_with(&format!(
                "port conflict: port {port} is held by python3 (PID "
            )),
            "{conflict:#}"
        );
        assert!(text.ends_with(&format!("not by {service}")), "{conflict:#}");
        assert_eq!(conflict["blocks_restart"], true);
        let squatter = rig.main_pid(&format!("squatter-{port}.service"));
        assert!(
            text.contains(&format!("(PID {})", squatter.expect("squatter PID"))),
            "{conflict:#}"
        );
    }
}

#[test]
fn damaged_mariadb_table() {
    let (rig, config) = rig("diag-mariadb", &["mariadb.service"], &["mariadb"]);
    rig.sh("mysql -e \"CREATE DATABASE scratch; \
         CREATE TABLE scratch.t (id INT PRIMARY KEY, v VARCHAR(100)) ENGINE=InnoDB; \
         INSERT INTO scratch.t VALUES (1, 'a'), (2, 'b');\"");
    assert!(diagnose(&rig, &config, "mariadb").is_empty());

    rig.exec(&["systemctl", "stop", "mariadb.service"]);
    // Overwrite the second 16 KiB page of the table's tablespace with random bytes.
    rig.sh(
        "dd if=/dev/urandom of=/var/lib/mysql/scratch/t.ibd bs=1 count=4000 seek=16384 \
         conv=notrunc 2>/dev/null",
    );
    rig.exec(&["systemctl", "start", "mariadb.service"]);
    rig.sh("mysql -e 'SELECT * FROM scratch.t' || true");
    let findings = diagnose(&rig, &config, "mariadb");
    let corrupt = finding(&findings, "corrupt_data");
    assert!(summary(corrupt).contains("./scratch/t.ibd"), "{corrupt:#}");
    // selfheal never repairs data on its own.
    assert!(corrupt["next_step"]
        .as_str()
        .unwrap_or("")
        .contains("back up"));
}

#[test]
fn opendkim_socket_directory_removed() {
    let (rig, config) = rig("diag-opendkim", &["opendkim.service"], &["opendkim"]);
    rig.sh(
        "sed -i 's|^Socket.*|Socket local:/var/spool/postfix/opendkim/opendkim.sock|' \
         /etc/opendkim.conf && rm -rf /var/spool/postfix/opendkim",
    );
    restart_fails(&rig, "opendkim.service");
    let findings = diagnose(&rig, &config, "opendkim");
    let socket = finding(&findings, "socket_path");
    assert_eq!(
        summary(socket),
        "cannot create /var/spool/postfix/opendkim/opendkim.sock: directory \
         /var/spool/postfix/opendkim is missing"
    );
    // Debian's unit sets no User=; opendkim.conf's UserID names the user.
    let next_step = socket["next_step"].as_str().unwrap_or_default();
    assert!(
        next_step
            .contains("`install -d -o opendkim -g postfix -m 750 /var/spool/postfix/opendkim`"),
        "{socket:#}"
    );

    // A User= in the unit wins over opendkim.conf.
    drop_in(&rig, "opendkim.service", "User=postfix");
    let findings = diagnose(&rig, &config, "opendkim");
    let socket = finding(&findings, "socket_path");
    let next_step = socket["next_step"].as_str().unwrap_or_default();
    assert!(
        next_step.contains("install -d -o postfix -g postfix"),
        "{socket:#}"
    );

    // Back to the unit's own user, so that the start below can create the socket.
    rig.sh("rm -r /etc/systemd/system/opendkim.service.d && systemctl daemon-reload");
    // The directory is back. The failed start's journal still reports it missing, but that is
    // no cause any more, and after a good start nothing is.
    rig.sh("install -d -o opendkim -g opendkim -m 750 /var/spool/postfix/opendkim");
    let findings = diagnose(&rig, &config, "opendkim");
    assert!(
        findings
            .iter()
            .all(|finding| finding["cause"] != "socket_path"),
        "{findings:#?}"
    );
    rig.exec_ok(&["systemctl", "reset-failed", "opendkim.service"]);
    rig.start_units(&["opendkim.service"]);
    let findings = diagnose(&rig, &config, "opendkim");
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn fixed_main_cf_is_no_cause() {
    let (rig, config) = rig("diag-fixed-postfix", &["postfix@-.service"], &["postfix"]);
    rig.sh("echo 'this line is not a parameter' >> /etc/postfix/main.cf");
    restart_fails(&rig, "postfix@-.service");
    finding(&diagnose(&rig, &config, "postfix"), "config_error");

    // Fixed but not started yet: the failed start's journal still names the broken line, and
    // the config test that passes now outweighs it.
    rig.sh("sed -i '$d' /etc/postfix/main.cf");
    let findings = diagnose(&rig, &config, "postfix");
    assert!(
        findings
            .iter()
            .all(|finding| finding["cause"] != "config_error"),
        "{findings:#?}"
    );

    rig.exec_ok(&["systemctl", "reset-failed", "postfix@-.service"]);
    rig.start_units(&["postfix@-.service"]);
    let output = rig.exec(&[SELFHEAL, "-c", &config, "diagnose", "postfix"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("postfix: no cause found"), "{stdout}");
}

#[test]
fn healthy_after_missing_program_has_no_cause() {
    let (rig, config) = rig("diag-latest-start", &["opendkim.service"], &["opendkim"]);
    drop_in(
        &rig,
        "opendkim.service",
        "ExecStart=\\nExecStart=/usr/sbin/opendkim-not-installed",
    );
    restart_fails(&rig, "opendkim.service");
    finding(&diagnose(&rig, &config, "opendkim"), "missing_program");

    // The unit starts its real program again. systemd's "Failed at step EXEC" lines stay in
    // the journal, but they belong to the start before, which the diagnosis no longer reads.
    rig.sh(
        "rm -r /etc/systemd/system/opendkim.service.d && systemctl daemon-reload && \
         systemctl reset-failed opendkim.service",
    );
    rig.start_units(&["opendkim.service"]);
    assert!(rig
        .journal("opendkim.service")
        .contains("Failed at step EXEC spawning /usr/sbin/opendkim-not-installed"));
    let findings = diagnose(&rig, &config, "opendkim");
    assert!(findings.is_empty(), "{findings:#?}");
}

/// Returns the `selfheal status --json` entry of `service`.
fn status_of(rig: &Rig, config: &str, service: &str) -> Value {
    let output = rig.exec(&[SELFHEAL, "-c", config, "status", "--json"]);
    let views: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    views
        .as_array()
        .into_iter()
        .flatten()
        .find(|view| view["service"] == service)
        .cloned()
        .unwrap_or(Value::Null)
}

fn cause_of(rig: &Rig, config: &str, service: &str) -> String {
    status_of(rig, config, service)["diagnosis"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn status_cause_follows_changes_in_watch_mode() {
    let (rig, config) = rig(
        "diag-refresh",
        &["dovecot.service", "unbound.service"],
        &["dovecot", "unbound"],
    );
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    rig.wait_until(
        "selfheal sees both healthy",
        Duration::from_secs(30),
        || {
            status_of(&rig, &config, "dovecot")["state"] == "healthy"
                && status_of(&rig, &config, "unbound")["state"] == "healthy"
        },
    );

    rig.exec(&["systemctl", "stop", "dovecot.service"]);
    rig.sh("echo 'server: bogus-option: 1' >> /etc/unbound/unbound.conf");
    restart_fails(&rig, "unbound.service");
    rig.wait_until("both down", Duration::from_secs(30), || {
        status_of(&rig, &config, "dovecot")["state"] == "down"
            && cause_of(&rig, &config, "unbound").starts_with("config error: ")
    });
    assert_eq!(cause_of(&rig, &config, "dovecot"), "");

    // Watch mode restarts nothing, and the next step tells the admin to restart.
    let output = rig.exec(&[SELFHEAL, "-c", &config, "incidents", "--open", "--json"]);
    let incidents: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    let unbound = incidents
        .as_array()
        .into_iter()
        .flatten()
        .find(|incident| incident["incident"]["service"] == "unbound")
        .unwrap_or_else(|| panic!("no open unbound incident: {incidents:#}"));
    let next_step = unbound["incident"]["diagnosis"][0]["next_step"]
        .as_str()
        .unwrap_or_default();
    assert!(
        next_step.ends_with(", then run `selfheal restart unbound`"),
        "{next_step}"
    );
    assert!(!next_step.contains("selfheal restarts"), "{next_step}");

    // Another program takes Dovecot's port before a start by hand, and the admin fixes
    // unbound.conf without starting Unbound. Both causes follow within a minute or two.
    squat(&rig, 143);
    rig.exec(&["systemctl", "start", "dovecot.service"]);
    rig.sh("sed -i '$d' /etc/unbound/unbound.conf");
    let waited = rig.wait_until("the causes to follow", Duration::from_secs(150), || {
        cause_of(&rig, &config, "dovecot").starts_with("port conflict: port 143 is held by python3")
            && !cause_of(&rig, &config, "unbound").starts_with("config error: ")
    });
    println!("causes followed after {:.1} s", waited.as_secs_f64());
    assert_eq!(status_of(&rig, &config, "dovecot")["state"], "down");
    assert_eq!(status_of(&rig, &config, "unbound")["state"], "down");
}

#[test]
fn moved_opendkim_socket_is_followed() {
    let (rig, config) = heal_rig_for("diag-moved-socket", "opendkim.service", "opendkim");
    rig.sh(
        "sed -i 's|^Socket.*|Socket local:/run/opendkim/moved.sock|' /etc/opendkim.conf && \
         systemctl restart opendkim.service",
    );

    let restart = rig.exec(&[SELFHEAL, "-c", &config, "restart", "opendkim"]);
    let stdout = String::from_utf8_lossy(&restart.stdout);
    assert!(restart.status.success(), "{stdout}");
    assert!(
        stdout.contains("opendkim restarted and verified healthy"),
        "{stdout}"
    );
    let log = rig.journal("selfheal-test.service");
    let moved: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("config moved its endpoints"))
        .collect();
    assert_eq!(moved.len(), 1, "{log}");
    assert!(
        moved[0]
            .contains("from milter /run/opendkim/opendkim.sock to milter /run/opendkim/moved.sock"),
        "{}",
        moved[0]
    );
}

#[test]
fn spamass_milter_without_spamd() {
    let (rig, config) = rig(
        "diag-milter",
        &["spamd.service", "spamass-milter.service"],
        &["spamd", "spamass-milter"],
    );
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    rig.exec(&["systemctl", "stop", "spamd.service"]);
    rig.wait_until(
        "selfheal to see spamd down",
        Duration::from_secs(30),
        || {
            let status = rig.exec(&[SELFHEAL, "-c", &config, "status"]);
            String::from_utf8_lossy(&status.stdout)
                .lines()
                .any(|line| line.starts_with("spamd ") && line.contains(" down "))
        },
    );
    let findings = diagnose(&rig, &config, "spamass-milter");
    let dependency = finding(&findings, "dependency_down");
    assert!(
        summary(dependency).starts_with("dependency down: spamd is not healthy (down)"),
        "{dependency:#}"
    );
}

#[test]
fn full_spool_filesystem() {
    let (rig, config) = rig("diag-disk", &["postfix@-.service"], &["postfix"]);
    rig.exec(&["systemctl", "stop", "postfix@-.service"]);
    // A 4 MiB tmpfs with the spool's content, then filled up.
    rig.sh("cp -a /var/spool/postfix /tmp/spool-copy && \
         mount -t tmpfs -o size=4m tmpfs /var/spool/postfix && \
         cp -a /tmp/spool-copy/. /var/spool/postfix/ && \
         dd if=/dev/zero of=/var/spool/postfix/filler bs=64k 2>/dev/null; true");
    let findings = diagnose(&rig, &config, "postfix");
    let full = finding(&findings, "disk_full");
    assert!(
        summary(full).starts_with("disk full on /var/spool/postfix (100 %, 0 B free, "),
        "{full:#}"
    );
    assert_eq!(full["blocks_restart"], true);
    let evidence = full["evidence"][0].as_str().unwrap_or_default();
    assert!(
        evidence.starts_with("/var/spool/postfix: tmpfs filesystem, 0 B of 4.0 MiB available"),
        "{full:#}"
    );
}

/// Boots a rig running Postfix and the SMTP sink, with selfheal in heal mode alerting the sink.
fn heal_rig(name: &str) -> (Rig, String) {
    let rig = Rig::boot(name);
    rig.start_units(&["dbus.socket", "postfix@-.service"]);
    rig.start_smtp_sink("127.0.0.1:2525");
    let config = rig.dir().join("selfheal.toml").display().to_string();
    let text = format!(
        "interval = \"3s\"\nverify_after = \"1s\"\nretry_interval = \"1s\"\n\
         state_dir = \"{}\"\ncontrol_socket = \"{}\"\n\n\
         [alerts]\nfrom = \"selfheal@rig.test\"\nto = [\"admin@rig.test\"]\nsendmail = false\n\
         group_window = \"0s\"\n\n\
         [[alerts.relay]]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\n\n\
         [services.postfix]\n",
        rig.dir().join("state").display(),
        rig.dir().join("control.sock").display()
    );
    std::fs::write(&config, text).expect("write config");
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    (rig, config)
}

fn restarts_of(rig: &Rig, config: &str, service: &str) -> usize {
    let output = rig.exec(&[SELFHEAL, "-c", config, "incidents", "--json"]);
    let incidents: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    incidents
        .as_array()
        .into_iter()
        .flatten()
        .filter(|incident| incident["incident"]["service"] == service)
        .flat_map(|incident| incident["events"].as_array().cloned().unwrap_or_default())
        .filter(|event| event["kind"] == "restart_issued")
        .count()
}

#[test]
fn full_disk_blocks_restart_until_space_returns() {
    let (rig, config) = heal_rig("diag-disk-heal");
    rig.wait_until(
        "selfheal sees postfix healthy",
        Duration::from_secs(30),
        || {
            let status = rig.exec(&[SELFHEAL, "-c", &config, "status"]);
            String::from_utf8_lossy(&status.stdout).contains(" healthy ")
        },
    );
    // Fill the disk first, so that selfheal, woken by the stop, already finds it full. The
    // tmpfs leaves room for what Debian's Postfix copies into its chroot when it starts.
    rig.sh("cp -a /var/spool/postfix /tmp/spool-copy && \
         mount -t tmpfs -o size=64m tmpfs /var/spool/postfix && \
         cp -a /tmp/spool-copy/. /var/spool/postfix/ && \
         dd if=/dev/zero of=/var/spool/postfix/filler bs=64k 2>/dev/null; true");
    rig.exec(&["systemctl", "kill", "--signal=KILL", "postfix@-.service"]);

    rig.wait_until("the disk-full alert", Duration::from_secs(60), || {
        !rig.received_mail().is_empty()
    });
    let mail = rig.received_mail().remove(0);
    let unfolded = unfold_mail(&mail);
    assert!(
        unfolded.contains("postfix not restarted (disk full on /var/spool/postfix"),
        "{unfolded}"
    );
    assert!(
        unfolded.contains("Next: free space on /var/spool/postfix"),
        "{unfolded}"
    );
    // Three more checks: still full, so still no restart and no second mail.
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(restarts_of(&rig, &config, "postfix"), 0);
    assert_eq!(rig.received_mail().len(), 1);

    rig.sh("rm -f /var/spool/postfix/filler");
    rig.wait_until("postfix healed", Duration::from_secs(60), || {
        rig.banner(25).is_some_and(|line| line.starts_with("220"))
    });
    assert_eq!(restarts_of(&rig, &config, "postfix"), 1);
}

/// Boots a rig running `unit` and the SMTP sink, with selfheal healing `service`.
fn heal_rig_for(name: &str, unit: &str, service: &str) -> (Rig, String) {
    let rig = Rig::boot(name);
    rig.start_units(&["dbus.socket", unit]);
    rig.start_smtp_sink("127.0.0.1:2525");
    let config = rig.dir().join("selfheal.toml").display().to_string();
    let text = format!(
        "interval = \"3s\"\nverify_after = \"1s\"\nverify_timeout = \"10s\"\n\
         retry_interval = \"1s\"\nstate_dir = \"{}\"\ncontrol_socket = \"{}\"\n\n\
         [alerts]\nfrom = \"selfheal@rig.test\"\nto = [\"admin@rig.test\"]\nsendmail = false\n\
         group_window = \"0s\"\n\n\
         [[alerts.relay]]\nhost = \"127.0.0.1\"\nport = 2525\ntls = \"none\"\n\n\
         [services.{service}]\n",
        rig.dir().join("state").display(),
        rig.dir().join("control.sock").display()
    );
    std::fs::write(&config, text).expect("write config");
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    rig.wait_until(
        &format!("selfheal sees {service} healthy"),
        Duration::from_secs(30),
        || {
            let status = rig.exec(&[SELFHEAL, "-c", &config, "status"]);
            String::from_utf8_lossy(&status.stdout).contains(" healthy ")
        },
    );
    (rig, config)
}

/// Returns the only alert mail received, unfolded, after two more check intervals to catch a
/// second one.
fn only_alert(rig: &Rig) -> String {
    rig.wait_until("the alert", Duration::from_secs(60), || {
        !rig.received_mail().is_empty()
    });
    std::thread::sleep(Duration::from_secs(7));
    let mails = rig.received_mail();
    assert_eq!(mails.len(), 1, "{mails:#?}");
    unfold_mail(&mails[0])
}

#[test]
fn broken_dovecot_config_is_alerted_without_restart() {
    let (rig, config) = heal_rig_for("diag-dovecot-heal", "dovecot.service", "dovecot");
    rig.sh("echo 'bogus_setting = yes' >> /etc/dovecot/conf.d/10-mail.conf");
    rig.exec(&["systemctl", "kill", "--signal=KILL", "dovecot.service"]);
    let mail = only_alert(&rig);
    assert!(
        mail.contains("dovecot not restarted (config error:"),
        "{mail}"
    );
    assert!(
        mail.contains("/etc/dovecot/conf.d/10-mail.conf line "),
        "{mail}"
    );
    assert!(mail.contains("Unknown setting: bogus_setting"), "{mail}");
    assert_eq!(restarts_of(&rig, &config, "dovecot"), 0);

    // selfheal restarts it by itself once the config is fixed, as the mail states.
    assert!(
        mail.contains("Once the cause is gone, selfheal restarts dovecot by itself"),
        "{mail}"
    );
    assert!(!mail.contains("will not restart"), "{mail}");
    // The cause is the verdict's reason and the diagnosis: "What was seen" and the history
    // state it no second time.
    let raw = rig.received_mail().remove(0);
    let seen = mail_section(&raw, "What was seen");
    assert!(
        seen.iter().all(|line| !line.contains("config error")),
        "{seen:#?}"
    );
    let tried = mail_section(&raw, "What selfheal tried");
    let mentions = tried
        .iter()
        .filter(|line| line.contains("Unknown setting: bogus_setting"))
        .count();
    assert_eq!(mentions, 1, "{tried:#?}");

    // `status` states the cause and the next step once each; `--json` has the findings.
    let (_, status, _) = selfheal(&rig, &["-c", &config, "status"]);
    assert_eq!(status.matches("bogus_setting").count(), 1, "{status}");
    assert!(
        status.contains("cause: config error: /etc/dovecot/conf.d/10-mail.conf line "),
        "{status}"
    );
    assert!(
        status.contains("next: fix line ") && status.contains("`doveconf -n`"),
        "{status}"
    );
    let (_, json, _) = selfheal(&rig, &["-c", &config, "status", "--json"]);
    let views: Value = serde_json::from_str(&json).unwrap_or(Value::Null);
    let dovecot = &views[0];
    assert_eq!(dovecot["findings"][0]["cause"], "config_error", "{json}");
    assert!(
        dovecot["findings"][0]["evidence"]
            .as_array()
            .is_some_and(|lines| !lines.is_empty()),
        "{json}"
    );
    assert!(dovecot["diagnosis"].is_string(), "{json}");

    // Fixed: selfheal restarts it by itself, and the recovery mail requests nothing more.
    rig.sh("sed -i '/^bogus_setting = yes$/d' /etc/dovecot/conf.d/10-mail.conf");
    rig.wait_until("the recovery mail", Duration::from_secs(60), || {
        rig.received_mail().len() >= 2
    });
    let recovered = unfold_mail(&rig.received_mail()[1]);
    assert!(recovered.contains("dovecot recovered"), "{recovered}");
    assert!(
        recovered.contains("Diagnosis while it was down (resolved):"),
        "{recovered}"
    );
    assert!(!recovered.contains("Next: fix line"), "{recovered}");
    assert_eq!(restarts_of(&rig, &config, "dovecot"), 1);
}

#[test]
fn squatted_imap_port_is_alerted_without_restart() {
    let (rig, config) = heal_rig_for("diag-squat-heal", "dovecot.service", "dovecot");
    // selfheal would restart the stopped Dovecot before the other program takes its port, so
    // it is stopped meanwhile and started again once the port is taken.
    rig.stop_transient("selfheal-test.service");
    rig.exec(&["systemctl", "stop", "dovecot.service"]);
    squat(&rig, 143);
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    let mail = only_alert(&rig);
    assert!(
        mail.contains("dovecot not restarted (port conflict: port 143 is held by python3"),
        "{mail}"
    );
    assert!(mail.contains("selfheal never kills it"), "{mail}");
    assert_eq!(restarts_of(&rig, &config, "dovecot"), 0);

    // The other program goes away: dovecot is restarted by itself.
    rig.stop_transient("squatter-143.service");
    rig.wait_until("dovecot healed", Duration::from_secs(60), || {
        rig.banner(143).is_some_and(|line| line.starts_with("* OK"))
    });
    assert_eq!(restarts_of(&rig, &config, "dovecot"), 1);
}

#[test]
fn postfix_started_by_hand_is_alerted_without_restart() {
    let (rig, config) = heal_rig_for("diag-stray-heal", "postfix@-.service", "postfix");
    // An admin stops the unit and then runs `postfix start` from a shell: the master runs in
    // a scope of its own, outside postfix@-.service, and holds port 25.
    rig.stop_transient("selfheal-test.service");
    rig.exec(&["systemctl", "stop", "postfix@-.service"]);
    rig.exec_ok(&[
        "systemd-run",
        "--scope",
        "--unit",
        "by-hand",
        "/usr/sbin/postfix",
        "start",
    ]);
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    let mail = only_alert(&rig);
    assert!(
        mail.contains(
            "Verdict: not restarted (port conflict: port 25 is held by a second copy of postfix"
        ),
        "{mail}"
    );
    assert!(mail.contains("running outside postfix@-.service"), "{mail}");
    assert!(
        mail.contains("cgroup /system.slice/by-hand.scope"),
        "{mail}"
    );
    assert!(mail.contains("`postfix stop`"), "{mail}");
    assert_eq!(restarts_of(&rig, &config, "postfix"), 0);

    // The admin stops the copy: selfheal starts Postfix under its unit by itself.
    rig.exec_ok(&["/usr/sbin/postfix", "stop"]);
    rig.wait_until(
        "postfix back under its unit",
        Duration::from_secs(60),
        || rig.unit_property("postfix@-.service", "ActiveState") == "active",
    );
    assert_eq!(restarts_of(&rig, &config, "postfix"), 1);
}

#[test]
fn missing_opendkim_socket_directory_is_alerted_once() {
    let (rig, config) = heal_rig_for("diag-opendkim-heal", "opendkim.service", "opendkim");
    rig.sh(
        "sed -i 's|^Socket.*|Socket local:/var/spool/postfix/opendkim/opendkim.sock|' \
         /etc/opendkim.conf && rm -rf /var/spool/postfix/opendkim",
    );
    rig.exec(&["systemctl", "kill", "--signal=KILL", "opendkim.service"]);
    let mail = only_alert(&rig);
    assert!(
        mail.contains("cannot create /var/spool/postfix/opendkim/opendkim.sock: directory /var/spool/postfix/opendkim is missing"),
        "{mail}"
    );
    assert!(
        mail.contains("Unable to bind to port local:/var/spool/postfix/opendkim/opendkim.sock"),
        "{mail}"
    );
    // systemd's own restarts (Restart=on-failure) count into the budget, so selfheal restarts
    // at most once, and no loop follows.
    assert!(restarts_of(&rig, &config, "opendkim") <= 1);
}

/// Writes a drop-in for `unit` and makes systemd read it.
fn drop_in(rig: &Rig, unit: &str, body: &str) {
    rig.sh(&format!(
        "mkdir -p /etc/systemd/system/{unit}.d && \
         printf '[Service]\\n{body}\\n' > /etc/systemd/system/{unit}.d/test.conf && \
         systemctl daemon-reload"
    ));
}

#[test]
fn missing_program_and_user() {
    let (rig, config) = rig("diag-unit", &["opendkim.service"], &["opendkim"]);

    drop_in(
        &rig,
        "opendkim.service",
        "ExecStart=\\nExecStart=/usr/sbin/opendkim-not-installed",
    );
    restart_fails(&rig, "opendkim.service");
    let findings = diagnose(&rig, &config, "opendkim");
    let missing = finding(&findings, "missing_program");
    assert_eq!(missing["blocks_restart"], true);

    // The drop-in replaces the one above: the program is back, its user is not.
    drop_in(&rig, "opendkim.service", "User=no-such-user");
    rig.exec(&["systemctl", "reset-failed", "opendkim.service"]);
    restart_fails(&rig, "opendkim.service");
    let findings = diagnose(&rig, &config, "opendkim");
    finding(&findings, "missing_user");
}

#[test]
fn broken_unbound_config_is_alerted_without_restart() {
    let (rig, config) = heal_rig_for("diag-unbound-heal", "unbound.service", "unbound");
    rig.sh("echo 'server: bogus-option: 1' >> /etc/unbound/unbound.conf");
    rig.exec(&["systemctl", "kill", "--signal=KILL", "unbound.service"]);
    let mail = only_alert(&rig);
    assert!(
        mail.contains("unbound not restarted (config error:"),
        "{mail}"
    );
    assert!(mail.contains("/etc/unbound/unbound.conf line "), "{mail}");
    assert!(mail.contains("bogus-option"), "{mail}");
    assert_eq!(restarts_of(&rig, &config, "unbound"), 0);
}

#[test]
fn broken_mariadb_option_is_alerted_once() {
    let (rig, config) = heal_rig_for("diag-mariadb-heal", "mariadb.service", "mariadb");
    rig.write_file(
        "/etc/mysql/mariadb.conf.d/99-broken.cnf",
        "[mysqld]\n# more memory for InnoDB, misspelt\ninnodb_buffer_pool_sise = 256M\n",
    );
    rig.exec(&["systemctl", "kill", "--signal=KILL", "mariadb.service"]);
    let mail = only_alert(&rig);
    let verdict = mail
        .lines()
        .find(|line| line.starts_with("Verdict: "))
        .unwrap_or_else(|| panic!("no verdict in:\n{mail}"));
    assert!(
        verdict.ends_with(
            "(config error: /etc/mysql/mariadb.conf.d/99-broken.cnf line 3: unknown variable \
             'innodb_buffer_pool_sise')"
        ),
        "{mail}"
    );
    let raw = rig.received_mail().remove(0);
    let diagnosis = mail_section(&raw, "Diagnosis");
    for line in &diagnosis {
        assert!(!line.contains("[Warning]"), "{diagnosis:#?}");
        assert!(
            !line.contains("wsrep-ignore-apply-errors"),
            "{diagnosis:#?}"
        );
    }
    assert!(
        diagnosis.iter().any(|line| line.contains(
            "[ERROR] /usr/sbin/mariadbd: unknown variable 'innodb_buffer_pool_sise=256M'"
        )),
        "{diagnosis:#?}"
    );
    assert!(
        mail.contains(
            "Next: fix line 3 of /etc/mysql/mariadb.conf.d/99-broken.cnf and check it with \
             `mariadbd --help --verbose >/dev/null`"
        ),
        "{mail}"
    );
    // MariaDB's config test is too slow to run before every restart: one restart finds the
    // error, and no loop follows.
    assert!(restarts_of(&rig, &config, "mariadb") <= 1);
}

#[test]
fn custom_service_without_unit() {
    let (rig, config) = rig("diag-no-unit", &[], &["postfix"]);
    let mut text = std::fs::read_to_string(&config).expect("read config");
    text.push_str("[services.ai3]\nunit = \"ai3.service\"\n");
    std::fs::write(&config, text).expect("write config");

    let (code, stdout, stderr) = selfheal(&rig, &["-c", &config, "diagnose", "ai3"]);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("unit not found: ai3.service is not installed\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("fix `unit` in [services.ai3] of the selfheal config"),
        "{stdout}"
    );

    let (code, _, stderr) = selfheal(&rig, &["-c", &config, "diagnose", "ai4"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "unknown service \"ai4\"; configured services: postfix, ai3; did you mean \"ai3\"?"
        ),
        "{stderr}"
    );
}
