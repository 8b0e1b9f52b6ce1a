//! The command line run as a program, without a daemon or a rig: output to a pipe the reader
//! has closed, usage errors for service names, and the load-time check of `config_test`.

use std::path::Path;
use std::process::{Command, Output, Stdio};

const SELFHEAL: &str = env!("CARGO_BIN_EXE_selfheal");

/// Writes a config that keeps the state database and the control socket in `dir`, with the
/// service tables in `services`.
fn write_config(dir: &Path, services: &str) -> String {
    let path = dir.join("selfheal.toml");
    let text = format!(
        "state_dir = \"{}\"\ncontrol_socket = \"{}\"\n{services}",
        dir.join("state").display(),
        dir.join("control.sock").display()
    );
    std::fs::write(&path, text).expect("write the config");
    path.display().to_string()
}

fn run(args: &[&str]) -> Output {
    Command::new(SELFHEAL)
        .args(args)
        .output()
        .expect("run selfheal")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn closed_stdout_ends_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "[services.dovecot]\n");
    for args in [
        vec!["-c", &config, "status", "--json"],
        vec!["-c", &config, "status"],
        vec!["-c", &config, "incidents", "--json"],
    ] {
        let mut child = Command::new(SELFHEAL)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start selfheal");
        // The reader goes away before selfheal writes a byte, as `| head -0` would.
        drop(child.stdout.take());
        let output = child.wait_with_output().expect("wait for selfheal");
        let stderr = text(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(output.status.code(), Some(141), "{args:?}: {stderr}");
    }
}

#[test]
fn open_stdout_still_prints() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "[services.dovecot]\n");
    let output = run(&["-c", &config, "status", "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "[]");
}

#[test]
fn unknown_service_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[services.postfix]\n[services.dovecot]\nenabled = false\n",
    );

    let output = run(&["-c", &config, "diagnose", "postfx"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(
            "unknown service \"postfx\"; configured services: postfix; did you mean \"postfix\"?"
        ),
        "{stderr}"
    );

    let output = run(&["-c", &config, "diagnose", "dovecot"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("service \"dovecot\" is turned off with `enabled = false`"),
        "{stderr}"
    );

    let output = run(&["-c", &config, "diagnose", "unbound"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("service \"unbound\" is not configured; add [services.unbound]"),
        "{stderr}"
    );
}

#[test]
fn missing_config_test_program_is_invalid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "[services.ai3]\nunit = \"ai3.service\"\nconfig_test = \"/usr/local/bin/nope --check\"\n",
    );
    let output = run(&["-c", &config, "config", "check"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{config}:5: services.ai3.config_test: config test program /usr/local/bin/nope not \
             found; install it or fix the path (example: config_test ="
        )),
        "{stderr}"
    );
}
