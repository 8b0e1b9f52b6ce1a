//! Every preset's probe against the real daemon from Debian's packages, under a contained
//! systemd: healthy when running, down when stopped, timed out when hung (SIGSTOP), not healthy
//! when another program listens on its port; and hung services healed by the daemon.
//!
//! These tests need root, overlayfs and cgroup2 (see rig/). Without them they fail, never skip.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::rig::Rig;

const SELFHEAL: &str = env!("CARGO_BIN_EXE_selfheal");

/// Preset name and the unit that runs it on Debian 12.
const SERVICES: [(&str, &str); 10] = [
    ("postfix", "postfix@-.service"),
    ("dovecot", "dovecot.service"),
    ("opendkim", "opendkim.service"),
    ("mariadb", "mariadb.service"),
    ("spamd", "spamd.service"),
    ("spamass-milter", "spamass-milter.service"),
    ("nginx", "nginx.service"),
    ("unbound", "unbound.service"),
    ("rsyslog", "rsyslog.service"),
    ("fail2ban", "fail2ban.service"),
];

/// Boots a rig running the whole mail stack, and writes a config enabling every preset.
fn stack(name: &str, extra: &str) -> (Rig, String) {
    let rig = Rig::boot(name);
    let mut units = vec!["dbus.socket"];
    units.extend(SERVICES.iter().map(|(_, unit)| *unit));
    rig.start_units(&units);
    let config = rig.dir().join("selfheal.toml").display().to_string();
    let mut text = format!(
        "state_dir = \"{}\"\nprobe_timeout = \"2s\"\n{extra}\n",
        rig.dir().join("state").display()
    );
    for (service, _) in SERVICES {
        text.push_str(&format!("[services.{service}]\n"));
    }
    std::fs::write(&config, text).expect("write config");
    (rig, config)
}

/// `selfheal check --json`, as rows keyed by service.
fn check(rig: &Rig, config: &str, service: Option<&str>) -> Vec<Value> {
    let mut argv = vec![SELFHEAL, "-c", config, "check", "--json"];
    argv.extend(service);
    let output = rig.exec(&argv);
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "check printed no JSON ({error}): {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    rows.as_array().cloned().unwrap_or_default()
}

fn row<'a>(rows: &'a [Value], service: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["service"] == service)
        .unwrap_or_else(|| panic!("no row for {service}: {rows:?}"))
}

fn outcomes(row: &Value) -> Vec<String> {
    row["probes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| p["outcome"]["outcome"].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn every_preset_probe_passes_on_running_stack() {
    let (rig, config) = stack("probes-healthy", "");
    // Some daemons open their sockets a moment after systemd reports them started.
    rig.wait_until("every service healthy", Duration::from_secs(60), || {
        check(&rig, &config, None)
            .iter()
            .all(|r| r["state"] == "healthy")
    });
    let rows = check(&rig, &config, None);
    for (service, _) in SERVICES {
        let row = row(&rows, service);
        assert_eq!(row["state"], "healthy", "{row}");
        for probe in row["probes"].as_array().cloned().unwrap_or_default() {
            println!(
                "{service:<15} {:<60} {:>7.1} ms  {}",
                probe["endpoint"].as_str().unwrap_or(""),
                probe["outcome"]["latency_ms"].as_f64().unwrap_or(f64::NAN),
                probe["outcome"]["detail"].as_str().unwrap_or("")
            );
        }
    }
}

#[test]
fn stopped_services_are_down() {
    let (rig, config) = stack("probes-stopped", "");
    for (service, unit) in SERVICES {
        rig.exec_ok(&["systemctl", "stop", unit]);
        if service == "rsyslog" {
            // syslog.socket would start rsyslog again on the probe's message (socket activation).
            rig.exec_ok(&["systemctl", "stop", "syslog.socket", unit]);
        }
        let rows = check(&rig, &config, Some(service));
        let row = row(&rows, service);
        assert_eq!(row["state"], "down", "{row}");
        // The probe itself must also fail: nothing listens for a stopped service.
        let outcomes = outcomes(row);
        assert!(
            outcomes.iter().all(|o| o != "healthy"),
            "{service}: {outcomes:?}"
        );
    }
}

#[test]
fn hung_services_time_out() {
    let (rig, config) = stack("probes-hung", "");
    rig.wait_until("every service healthy", Duration::from_secs(60), || {
        check(&rig, &config, None)
            .iter()
            .all(|r| r["state"] == "healthy")
    });
    for (service, unit) in SERVICES {
        rig.exec_ok(&["systemctl", "kill", "--signal=SIGSTOP", unit]);
        let rows = check(&rig, &config, Some(service));
        rig.exec_ok(&["systemctl", "kill", "--signal=SIGCONT", unit]);
        let row = row(&rows, service);
        assert_eq!(row["state"], "not answering", "{service}: {row}");
        let outcomes = outcomes(row);
        assert!(
            outcomes.iter().any(|o| o == "timed_out"),
            "{service}: {outcomes:?} {row}"
        );
        println!("{service:<15} hung: {}", row["probes"][0]["outcome"]);
    }
}

/// A program that accepts connections on `port` and answers every one with an HTTP error, as a
/// stray web server or a debugging tool might.
fn squat(rig: &Rig, port: u16) {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('127.0.0.1', {port}))\n\
         s.listen()\n\
         while True:\n\
         \x20   c, _ = s.accept()\n\
         \x20   c.sendall(b'HTTP/1.1 400 Bad Request\\r\\n\\r\\n')\n\
         \x20   c.close()\n"
    );
    let path = format!("/etc/squat-{port}.py");
    rig.write_file(&path, &script);
    rig.run_transient(&format!("squat-{port}"), &["/usr/bin/python3", &path]);
    rig.wait_until(
        &format!("squatter on {port}"),
        Duration::from_secs(10),
        || rig.banner(port).is_some(),
    );
}

#[test]
fn port_held_by_another_program_is_not_healthy() {
    let (rig, config) = stack("probes-squat", "");
    for (service, unit, port) in [
        ("postfix", "postfix@-.service", 25),
        ("dovecot", "dovecot.service", 143),
        ("spamd", "spamd.service", 783),
    ] {
        rig.exec_ok(&["systemctl", "stop", unit]);
        squat(&rig, port);
        let rows = check(&rig, &config, Some(service));
        let row = row(&rows, service);
        assert_ne!(row["state"], "healthy", "{row}");
        let outcomes = outcomes(row);
        assert!(
            outcomes.iter().any(|o| o == "bad_reply"),
            "{service}: {outcomes:?}"
        );
        println!("{service:<15} squatted: {}", row["probes"][0]["outcome"]);
    }
    // nginx's own probe would pass against an HTTP squatter that answers 200, so the squatter
    // answers 400: a 4xx is not the 2xx the preset expects.
    rig.exec_ok(&["systemctl", "stop", "nginx.service"]);
    squat(&rig, 80);
    let rows = check(&rig, &config, Some("nginx"));
    assert_ne!(row(&rows, "nginx")["state"], "healthy");
}

#[test]
fn sigstopped_services_are_restarted() {
    let (rig, config) = stack(
        "probes-heal-hung",
        "interval = \"5s\"\nretry_interval = \"1s\"\nverify_after = \"1s\"",
    );
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    rig.wait_until("every service healthy", Duration::from_secs(90), || {
        let out = rig.exec(&[SELFHEAL, "-c", &config, "status", "--json"]);
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|rows| {
                rows.len() == SERVICES.len() && rows.iter().all(|r| r["state"] == "healthy")
            })
    });

    for (service, unit) in [
        ("dovecot", "dovecot.service"),
        ("spamd", "spamd.service"),
        ("opendkim", "opendkim.service"),
    ] {
        let old = rig.unit_property(unit, "MainPID");
        rig.exec_ok(&["systemctl", "kill", "--signal=SIGSTOP", unit]);
        // One cycle, then the probe timeout on each of the first try and two retries.
        let took = rig.wait_until(
            &format!("{service} restarted after SIGSTOP"),
            Duration::from_secs(60),
            || {
                let pid = rig.unit_property(unit, "MainPID");
                pid != old && pid != "0" && rig.unit_property(unit, "ActiveState") == "active"
            },
        );
        rig.wait_until(
            &format!("{service} healthy again"),
            Duration::from_secs(30),
            || {
                let rows = check(&rig, &config, Some(service));
                row(&rows, service)["state"] == "healthy"
            },
        );
        println!(
            "{service:<15} SIGSTOP to restart: {:.1} s",
            took.as_secs_f64()
        );
    }

    let out = rig.exec(&[SELFHEAL, "-c", &config, "incidents", "--json"]);
    let incidents: Value = serde_json::from_slice(&out.stdout).expect("incidents --json");
    for service in ["dovecot", "spamd", "opendkim"] {
        let incident = incidents
            .as_array()
            .and_then(|list| list.iter().find(|i| i["incident"]["service"] == service))
            .unwrap_or_else(|| panic!("no incident for {service}: {incidents}"));
        assert!(
            incident["incident"]["problem"]
                .as_str()
                .is_some_and(|p| p.contains("timed out")),
            "{incident}"
        );
    }
}
