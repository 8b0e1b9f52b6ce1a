//! Diagnosis: why a service could not be healed, with the evidence and the admin's next step.
//!
//! Each source of evidence has its own module: the service's own config test
//! ([`config_test`]), free space and inodes ([`disk`]), who holds a port ([`ports`]), known
//! messages in the unit's journal ([`journal`]), and the other covered services it depends on
//! ([`knowledge`]). [`diagnose`] runs them all; each finding is a typed cause. A finding that
//! `blocks_restart` names a condition a restart cannot fix, such as a config error or a full
//! disk.

pub mod config_test;
pub mod disk;
pub mod journal;
pub mod knowledge;
pub mod ports;

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{Mode, ServiceConfig};
use crate::manager::UnitStatus;
use crate::policy::Verdict;
use crate::store::ServiceStateRow;

/// Maximum evidence lines kept per finding.
pub const MAX_EVIDENCE_LINES: usize = 8;

/// Maximum length of one evidence line in characters.
const MAX_EVIDENCE_CHARS: usize = 300;

/// Kind of problem found, as a type the policy, the alert and the dashboard can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The service's own config test fails, or its log reports a config error.
    ConfigError,
    /// A filesystem the service writes to has no space or no inodes left.
    DiskFull,
    /// Another program holds a port the service must listen on.
    PortConflict,
    /// A database table or lookup table is damaged.
    CorruptData,
    /// A covered service this one needs is down.
    DependencyDown,
    /// The kernel's OOM killer ended the service.
    OutOfMemory,
    /// The program to start is missing.
    MissingProgram,
    /// The user the service runs as is missing.
    MissingUser,
    /// The service cannot create its socket or file: a directory is missing or not writable.
    SocketPath,
    /// The service's systemd unit is not installed.
    UnitNotFound,
    /// The unit failed and nothing more specific was found.
    Exited,
    /// The config test could not run: its program is missing, or it timed out. The config is
    /// then untested, which is no cause of a failure by itself.
    ConfigTestNotRun,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::ConfigError => "config error",
            Cause::DiskFull => "disk full",
            Cause::PortConflict => "port conflict",
            Cause::CorruptData => "corrupted data",
            Cause::DependencyDown => "dependency down",
            Cause::OutOfMemory => "out of memory",
            Cause::MissingProgram => "missing program",
            Cause::MissingUser => "missing user",
            Cause::SocketPath => "socket path",
            Cause::UnitNotFound => "unit not found",
            Cause::Exited => "exited",
            Cause::ConfigTestNotRun => "config test not run",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One cause found, with what proves it and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub cause: Cause,
    /// One line for the subject and the status table, such as
    /// "config error: /etc/postfix/main.cf line 50: missing '=' after attribute name".
    pub summary: String,
    /// The lines that prove it, trimmed, at most [`MAX_EVIDENCE_LINES`].
    pub evidence: Vec<String>,
    /// The admin's next step.
    pub next_step: String,
    /// A restart cannot help until the admin acts.
    pub blocks_restart: bool,
}

impl Finding {
    pub fn new(cause: Cause, summary: impl Into<String>, next_step: impl Into<String>) -> Finding {
        Finding {
            cause,
            summary: summary.into(),
            evidence: Vec::new(),
            next_step: next_step.into(),
            blocks_restart: false,
        }
    }

    pub fn with_evidence<S: AsRef<str>>(mut self, lines: impl IntoIterator<Item = S>) -> Finding {
        for line in lines {
            if self.evidence.len() >= MAX_EVIDENCE_LINES {
                break;
            }
            let line = clean_line(line.as_ref());
            if !line.is_empty() && !self.evidence.contains(&line) {
                self.evidence.push(line);
            }
        }
        self
    }

    pub fn blocking(mut self) -> Finding {
        self.blocks_restart = true;
        self
    }
}

/// Makes one line of evidence printable and bounded: control characters become spaces and a
/// long line is cut.
pub fn clean_line(line: &str) -> String {
    let cleaned: String = line
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if cleaned.chars().count() > MAX_EVIDENCE_CHARS {
        let mut cut: String = cleaned.chars().take(MAX_EVIDENCE_CHARS - 1).collect();
        cut.push('…');
        cut
    } else {
        cleaned
    }
}

/// Restart path of a service once the admin has removed a cause that blocks restarts. Next
/// steps promise an automatic restart only where the policy makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartAfterFix {
    /// selfheal restarts it: heal mode, while the service has no verdict or waits for a
    /// blocker to go away (verdict "not restarted").
    Automatic,
    /// The admin restarts it: watch mode, or a verdict after which selfheal leaves the service
    /// alone ("restart failed", "crash loop", "cannot restart").
    Manual,
}

impl RestartAfterFix {
    /// Returns who restarts a service in `mode` whose open incident has `verdict`.
    pub fn for_state(mode: Mode, verdict: Option<Verdict>) -> RestartAfterFix {
        match (mode, verdict) {
            (Mode::Watch, _) => RestartAfterFix::Manual,
            (Mode::Heal, None | Some(Verdict::NotRestarted)) => RestartAfterFix::Automatic,
            (Mode::Heal, Some(verdict)) if !verdict.needs_attention() => RestartAfterFix::Automatic,
            (Mode::Heal, Some(_)) => RestartAfterFix::Manual,
        }
    }
}

/// Evidence the diagnosis reads, gathered by the caller.
pub struct Evidence<'a> {
    pub service: &'a ServiceConfig,
    /// The unit's state, when the service has a unit and it could be read.
    pub unit: Option<&'a UnitStatus>,
    /// The journal lines of the unit's latest start, oldest first.
    pub journal: &'a [String],
    /// The last known state of every watched service.
    pub states: &'a [ServiceStateRow],
    /// The service's systemd unit, such as `dovecot.service`, to tell its own processes from
    /// others by their cgroup; `None` for a service managed by commands.
    pub unit_name: Option<String>,
    /// Restart path once a blocking cause is gone, for the wording of next steps.
    pub after_fix: RestartAfterFix,
}

/// Runs every check that applies to the service and returns the findings, the most specific
/// first. Takes at most the config test's timeout plus a moment for the file reads.
pub async fn diagnose(evidence: &Evidence<'_>) -> Vec<Finding> {
    let service = evidence.service;
    let preset = service.preset.as_deref().unwrap_or("");
    let after_fix = evidence.after_fix;
    let mut findings = Vec::new();

    if let (Some(unit), Some(name)) = (evidence.unit, &evidence.unit_name) {
        if unit.load_state == "not-found" {
            findings.push(unit_not_found(service, name));
        }
    }
    findings.extend(disk::check_service(service, after_fix));
    let config_test = config_test::run(service, after_fix).await;
    let mut scanned = journal::scan(evidence.journal);
    match config_test {
        config_test::Outcome::Failed(finding) => findings.push(finding),
        config_test::Outcome::Passed => {
            // A config error in the journal belongs to the start it describes. The config has
            // been fixed since, so it is no cause now.
            scanned
                .findings
                .retain(|finding| finding.cause != Cause::ConfigError);
        }
        // An untested config proves nothing either way, so the journal's claim is kept.
        config_test::Outcome::NotRun(finding) => findings.push(finding),
        config_test::Outcome::NoTest => {}
    }
    findings.extend(ports::explain(
        service,
        &scanned.ports_in_use,
        evidence.unit_name.as_deref(),
        after_fix,
    ));
    findings.extend(scanned.findings);
    findings.extend(knowledge::dependencies_down(
        service,
        preset,
        evidence.states,
        after_fix,
    ));
    if let Some(unit) = evidence.unit {
        findings.extend(journal::from_unit(unit, evidence.journal));
    }

    // The checks write SERVICE and UNIT in next steps; put in the real names.
    for finding in &mut findings {
        finding.next_step = finding.next_step.replace(
            "selfheal restart SERVICE",
            &format!("selfheal restart {}", service.name),
        );
        if let Some(unit) = &evidence.unit_name {
            finding.next_step = finding
                .next_step
                .replace("systemctl cat UNIT", &format!("systemctl cat {unit}"))
                .replace("journalctl -u UNIT", &format!("journalctl -u {unit}"));
        }
    }
    if findings
        .iter()
        .any(|finding| finding.next_step.contains(knowledge::USER_PLACEHOLDER))
    {
        if let Some(user) = knowledge::service_user(service, evidence.unit_name.as_deref()).await {
            for finding in &mut findings {
                finding.next_step = finding
                    .next_step
                    .replace(knowledge::USER_PLACEHOLDER, &format!("-o {user} "));
            }
        }
    }
    dedupe(&mut findings);
    findings.sort_by_key(|finding| rank(finding.cause));
    // "The unit failed" adds nothing next to a real cause, but an untested config is no
    // cause, so the exit status stays next to it.
    if findings
        .iter()
        .any(|finding| !matches!(finding.cause, Cause::Exited | Cause::ConfigTestNotRun))
    {
        findings.retain(|finding| finding.cause != Cause::Exited);
    }
    findings
}

/// Builds the finding for a service whose systemd unit is not installed. A service can name
/// several candidate units; `unit` is the one selfheal checked, the first when none exists.
fn unit_not_found(service: &ServiceConfig, unit: &str) -> Finding {
    let units = if service.units.len() > 1 {
        format!("none of {} is installed", service.units.join(", "))
    } else {
        format!("{unit} is not installed")
    };
    let key = if service.units.len() > 1 {
        "units"
    } else {
        "unit"
    };
    let next_step = format!(
        "install the package that provides the unit, or fix `{key}` in [services.{}] of the \
         selfheal config (`systemctl list-unit-files '*.service'` lists the installed units)",
        service.name
    );
    Finding::new(
        Cause::UnitNotFound,
        format!("unit not found: {units}"),
        next_step,
    )
    .with_evidence([format!("systemd reports {unit} with load state not-found")])
    .blocking()
}

/// Finds what keeps a restart of a service that is down from helping: a full filesystem, a
/// port of its probes held by another program, and a failing config test where the test is
/// quick. Runs before every automatic restart and while the service waits for the admin, so
/// it leaves out the slow checks.
pub async fn blockers(service: &ServiceConfig, unit_name: Option<&str>) -> Vec<Finding> {
    // The policy requests blockers only where it restarts the service once they are gone.
    let after_fix = RestartAfterFix::Automatic;
    let mut found = disk::check_service(service, after_fix);
    found.extend(ports::explain(service, &[], unit_name, after_fix));
    if config_test::runs_before_restart(service) {
        if let config_test::Outcome::Failed(finding) = config_test::run(service, after_fix).await {
            found.push(finding);
        }
    }
    found.retain(|finding| finding.blocks_restart);
    found
}

/// Keeps the first finding of each cause, except causes that can come more than once (two
/// full filesystems, two held ports).
fn dedupe(findings: &mut Vec<Finding>) {
    let mut seen: Vec<(Cause, String)> = Vec::new();
    findings.retain(|finding| {
        let key = match finding.cause {
            Cause::DiskFull | Cause::PortConflict | Cause::DependencyDown | Cause::CorruptData => {
                (finding.cause, finding.summary.clone())
            }
            other => (other, String::new()),
        };
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
}

/// Order of findings: what blocks a restart and what the admin must fix first comes first.
fn rank(cause: Cause) -> u8 {
    match cause {
        Cause::UnitNotFound => 0,
        Cause::DiskFull => 1,
        Cause::ConfigError => 2,
        Cause::PortConflict => 3,
        Cause::CorruptData => 4,
        Cause::SocketPath => 5,
        Cause::MissingProgram => 6,
        Cause::MissingUser => 7,
        Cause::OutOfMemory => 8,
        Cause::DependencyDown => 9,
        Cause::Exited => 10,
        Cause::ConfigTestNotRun => 11,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evidence_is_bounded_and_clean() {
        let finding = Finding::new(Cause::Exited, "x", "y")
            .with_evidence(std::iter::repeat_n("line\u{1b}[31m", 3).chain(["a"; 20]));
        assert_eq!(finding.evidence[0], "line [31m");
        assert_eq!(finding.evidence.len(), 2, "duplicates are dropped");
        let long = "x".repeat(1000);
        let finding = Finding::new(Cause::Exited, "x", "y").with_evidence([long.as_str()]);
        assert_eq!(finding.evidence[0].chars().count(), MAX_EVIDENCE_CHARS);
    }

    fn custom_service() -> ServiceConfig {
        let mut service = ServiceConfig::from_preset(
            crate::config::presets::preset("dovecot").unwrap(),
            "ai3",
            crate::config::Mode::Heal,
            crate::config::Timing::NONE,
        );
        service.preset = None;
        service.units = vec!["ai3.service".into()];
        service.probes.clear();
        service
    }

    fn unit(load_state: &str, result: &str) -> UnitStatus {
        UnitStatus {
            load_state: load_state.into(),
            active_state: crate::manager::ActiveState::parse("inactive"),
            sub_state: "dead".into(),
            result: result.into(),
            main_pid: None,
            main_pid_alive: None,
            n_restarts: None,
            exec_main_status: Some(1),
            inactive_exit_usec: 0,
            invocation_id: None,
        }
    }

    #[tokio::test]
    async fn missing_unit_is_a_cause() {
        let service = custom_service();
        let status = unit("not-found", "success");
        let evidence = Evidence {
            service: &service,
            unit: Some(&status),
            journal: &[],
            states: &[],
            unit_name: Some("ai3.service".into()),
            after_fix: RestartAfterFix::Automatic,
        };
        let findings = diagnose(&evidence).await;
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].cause, Cause::UnitNotFound);
        assert_eq!(
            findings[0].summary,
            "unit not found: ai3.service is not installed"
        );
        assert!(
            findings[0]
                .next_step
                .contains("fix `unit` in [services.ai3] of the selfheal config"),
            "{}",
            findings[0].next_step
        );
    }

    #[tokio::test]
    async fn untested_config_keeps_exit_status() {
        let mut service = custom_service();
        service.config_test = Some(vec!["/nonexistent/bin/check".into()]);
        let status = unit("loaded", "exit-code");
        let evidence = Evidence {
            service: &service,
            unit: Some(&status),
            journal: &[],
            states: &[],
            unit_name: Some("ai3.service".into()),
            after_fix: RestartAfterFix::Automatic,
        };
        let causes: Vec<Cause> = diagnose(&evidence)
            .await
            .iter()
            .map(|finding| finding.cause)
            .collect();
        assert_eq!(causes, [Cause::Exited, Cause::ConfigTestNotRun]);
    }

    #[test]
    fn restart_after_fix_by_mode_and_verdict() {
        use RestartAfterFix::{Automatic, Manual};
        let cases = [
            (Mode::Heal, None, Automatic),
            (Mode::Heal, Some(Verdict::NotRestarted), Automatic),
            (Mode::Heal, Some(Verdict::Healed), Automatic),
            (Mode::Heal, Some(Verdict::RestartFailed), Manual),
            (Mode::Heal, Some(Verdict::CrashLoop), Manual),
            (Mode::Heal, Some(Verdict::CannotRestart), Manual),
            (Mode::Watch, None, Manual),
            (Mode::Watch, Some(Verdict::Down), Manual),
        ];
        for (mode, verdict, expected) in cases {
            assert_eq!(
                RestartAfterFix::for_state(mode, verdict),
                expected,
                "{mode} {verdict:?}"
            );
        }
    }

    #[test]
    fn findings_rank_and_dedupe() {
        let mut findings = vec![
            Finding::new(Cause::Exited, "unit failed", ""),
            Finding::new(Cause::ConfigError, "a", ""),
            Finding::new(Cause::ConfigError, "b", ""),
            Finding::new(Cause::DiskFull, "disk full on /var", ""),
            Finding::new(Cause::DiskFull, "disk full on /tmp", ""),
        ];
        dedupe(&mut findings);
        findings.sort_by_key(|finding| rank(finding.cause));
        let summaries: Vec<&str> = findings.iter().map(|f| f.summary.as_str()).collect();
        assert_eq!(
            summaries,
            vec!["disk full on /var", "disk full on /tmp", "a", "unit failed"]
        );
    }
}
