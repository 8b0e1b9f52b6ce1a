//! The shipped Prometheus rules and Alertmanager route, checked by the tools that will load
//! them (promtool and amtool from Debian's packages), with promtool's rule unit tests feeding
//! series shaped as selfheal exports them.

use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .current_dir(REPO)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {program} ({error}); rig/install-packages.sh installs it")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{program} {args:?} failed:\n{text}"
    );
    text
}

#[test]
fn rules_load_and_fire_as_documented() {
    let checked = run(
        "promtool",
        &["check", "rules", "dist/prometheus/selfheal.rules.yml"],
    );
    assert!(checked.contains("SUCCESS: 7 rules found"), "{checked}");
    let tested = run(
        "promtool",
        &["test", "rules", "tests/data/selfheal-rules-test.yml"],
    );
    assert!(tested.contains("SUCCESS"), "{tested}");
}

#[test]
fn alertmanager_route_is_valid() {
    let checked = run(
        "amtool",
        &["check-config", "dist/prometheus/alertmanager.yml"],
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
}

#[test]
fn scrape_job_is_valid() {
    // promtool checks a whole prometheus.yml; the example job needs its token file to exist.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("selfheal-token");
    std::fs::write(&token, "token\n").unwrap();
    let example = std::fs::read_to_string(format!("{REPO}/dist/prometheus/prometheus-scrape.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/selfheal-token",
            &token.display().to_string(),
        );
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, example).unwrap();
    let checked = run(
        "promtool",
        &["check", "config", &config.display().to_string()],
    );
    assert!(checked.contains("SUCCESS"), "{checked}");
}
