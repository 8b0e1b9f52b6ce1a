//! The service's own config test (`postconf -n`, `doveconf -n`, `unbound-checkconf`, ...), run
//! without a shell and under a timeout, with the file and line of the error when the tool
//! prints them.

use std::path::Path;
use std::time::Duration;

use super::knowledge::{config_tests, quick_config_test};
use super::{Cause, Finding, RestartAfterFix};
use crate::config::ServiceConfig;
use crate::probe::command::{describe_status, run_program};

/// Time allowed for one config test. `spamassassin --lint` compiles every rule set, which
/// takes several seconds on a small machine.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Result of a service's config tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// At least one test ran, and every test that ran passed.
    Passed,
    /// A test failed, and the finding carries what it printed.
    Failed(Finding),
    /// No result: the service has no test, its program is not installed, or a test did not
    /// finish.
    NotRun,
}

/// Returns whether the service's config test runs before every automatic restart: a custom
/// `config_test`, or a preset test that takes well under a second. Only then does selfheal
/// restart the service by itself once the test passes.
pub fn runs_before_restart(service: &ServiceConfig) -> bool {
    service.config_test.is_some() || quick_config_test(service.preset.as_deref().unwrap_or(""))
}

/// Runs the service's config tests in order and stops at the first that fails. `after_fix`
/// words the next step of a failure.
pub async fn run(service: &ServiceConfig, after_fix: RestartAfterFix) -> Outcome {
    let custom = service.config_test.as_deref();
    let preset = service.preset.as_deref().unwrap_or("");
    let commands: Vec<Vec<String>> = match custom {
        Some(argv) => vec![argv.to_vec()],
        None => config_tests(preset)
            .iter()
            .map(|argv| argv.iter().map(|arg| arg.to_string()).collect())
            .collect(),
    };
    // A slow test does not run before restarts, so nothing restarts the service when it
    // passes again.
    let after_fix = if runs_before_restart(service) {
        after_fix
    } else {
        RestartAfterFix::Manual
    };
    let mut passed = 0;
    let mut unfinished = false;
    for argv in commands {
        match run_one(&argv, after_fix).await {
            Some(Outcome::Failed(finding)) => return Outcome::Failed(finding),
            Some(Outcome::Passed) => passed += 1,
            Some(Outcome::NotRun) => unfinished = true,
            None => {}
        }
    }
    if passed > 0 && !unfinished {
        Outcome::Passed
    } else {
        Outcome::NotRun
    }
}

/// Runs one test command. `None` when its program is not installed.
async fn run_one(argv: &[String], after_fix: RestartAfterFix) -> Option<Outcome> {
    let (program, args) = argv.split_first()?;
    let program = find_program(program)?;
    let command = argv.join(" ");
    let finished = match run_program(&program, args, "config test", TIMEOUT).await {
        Ok(finished) => finished,
        Err(outcome) => {
            tracing::warn!(%command, %outcome, "config test did not finish");
            return Some(Outcome::NotRun);
        }
    };
    if finished.status.success() {
        return Some(Outcome::Passed);
    }
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&finished.stderr),
        String::from_utf8_lossy(&finished.stdout)
    );
    Some(Outcome::Failed(finding(
        &command,
        &describe_status(finished.status),
        &output,
        after_fix,
    )))
}

/// Builds the finding of a failed config test from what it printed. `after_fix` decides whether
/// the next step may promise that selfheal restarts the service once the test passes.
pub fn finding(command: &str, status: &str, output: &str, after_fix: RestartAfterFix) -> Finding {
    let lines = error_lines(output);
    let located = lines.iter().find_map(|line| locate(line));
    let summary = match (&located, lines.first()) {
        (Some(location), _) => format!(
            "config error: {} line {}: {}",
            location.file, location.line, location.message
        ),
        (None, Some(line)) => format!("config error: {}", super::clean_line(line)),
        (None, None) => format!("config error: `{command}` {status} and printed nothing"),
    };
    let fix = match &located {
        Some(location) => format!(
            "fix line {} of {} and check it with `{command}`",
            location.line, location.file
        ),
        None => format!("run `{command}` and fix what it reports"),
    };
    let next_step = match after_fix {
        RestartAfterFix::Automatic => format!(
            "{fix}; selfheal restarts the service once the test passes, or run `selfheal \
             restart SERVICE`"
        ),
        RestartAfterFix::Manual => format!("{fix}, then run `selfheal restart SERVICE`"),
    };
    let mut evidence = vec![format!("`{command}` {status}")];
    evidence.extend(lines);
    Finding::new(Cause::ConfigError, summary, next_step)
        .with_evidence(evidence)
        .blocking()
}

/// Returns the lines of a config test's output that report a problem, most telling first, or
/// the last lines when none carries a known marker.
fn error_lines(output: &str) -> Vec<String> {
    const MARKERS: &[&str] = &[
        "fatal",
        "Fatal",
        "error",
        "Error",
        "ERROR",
        "[emerg]",
        "Syntax error",
        "unknown",
        "Unknown",
        "failed",
        "invalid",
        "not valid",
    ];
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let marked: Vec<String> = lines
        .iter()
        .filter(|line| MARKERS.iter().any(|marker| line.contains(marker)))
        .map(|line| line.to_string())
        .collect();
    if !marked.is_empty() {
        return marked;
    }
    let skip = lines.len().saturating_sub(3);
    lines[skip..].iter().map(|line| line.to_string()).collect()
}

/// A file and line named in an error message, with the message that follows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: u32,
    pub message: String,
}

/// Finds `FILE` and `LINE` in the forms the covered services print:
///
/// - `postconf: fatal: /etc/postfix/main.cf, line 50: missing '=' ...` (Postfix)
/// - `Error in configuration file /etc/dovecot/conf.d/10-mail.conf line 422: Unknown ...` (Dovecot)
/// - `/etc/unbound/unbound.conf:11: error: unknown keyword 'x'` (Unbound)
/// - `[emerg] unknown directive "x" in /etc/nginx/sites-enabled/default:12` (nginx)
/// - `Syntax error on line 12 of /etc/apache2/sites-enabled/x.conf:` (Apache)
/// - `error during parsing file /etc/rsyslog.conf, on or before line 12: ...` (rsyslog)
pub fn locate(text: &str) -> Option<Location> {
    for (start, _) in text.match_indices('/') {
        // A path starts at the beginning or after a space, quote or parenthesis.
        let before = text[..start].chars().next_back();
        if !matches!(before, None | Some(' ' | '\'' | '"' | '(' | '\t')) {
            continue;
        }
        let rest = &text[start..];
        let end = rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ':' | '\'' | '"' | ')'))
            .unwrap_or(rest.len());
        let file = &rest[..end];
        if file.len() < 2 || !Path::new(file).is_absolute() {
            continue;
        }
        let after = &rest[end..];
        let named_after = if let Some(tail) = after.strip_prefix(':') {
            split_number(tail)
        } else if let Some(tail) = after
            .strip_prefix(", line ")
            .or_else(|| after.strip_prefix(" line "))
            .or_else(|| after.strip_prefix(", on or before line "))
        {
            split_number(tail)
        } else {
            None
        };
        // Apache names the line first: "Syntax error on line N of FILE:".
        let named_before = || {
            let number = number_before(&text[..start], " of ")?;
            let message = text
                .split_once("Syntax error")
                .map(|(_, rest)| format!("syntax error{}", rest.trim_end_matches(':')))
                .unwrap_or_default();
            Some((number, message))
        };
        let Some((line, message)) = named_after.or_else(named_before) else {
            continue;
        };
        let message = message.trim_start_matches([':', ' ']).trim().to_string();
        let message = if message.is_empty() {
            // nginx names the file at the end: the message is what came before it.
            text[..start]
                .trim_end()
                .trim_end_matches(" in")
                .rsplit("] ")
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        } else {
            message
        };
        return Some(Location {
            file: file.to_string(),
            line,
            message,
        });
    }
    None
}

/// Splits `12: rest` into 12 and `: rest`.
fn split_number(text: &str) -> Option<(u32, String)> {
    let digits = text.chars().take_while(char::is_ascii_digit).count();
    let number = text[..digits].parse().ok()?;
    Some((number, text[digits..].to_string()))
}

/// Finds `line N` right before `marker` at the end of `text`, as in "on line 12 of ".
fn number_before(text: &str, marker: &str) -> Option<u32> {
    let head = text.strip_suffix(marker)?;
    let digits: String = head
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let number = digits.parse().ok()?;
    head[..head.len() - digits.len()]
        .ends_with("line ")
        .then_some(number)
}

/// Looks `program` up on the usual system paths; `None` when it is not installed. selfheal
/// may run with a minimal PATH under systemd, so the sbin directories are searched too.
fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.starts_with('/') {
        return Path::new(program).exists().then(|| program.into());
    }
    [
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
        "/usr/local/sbin",
        "/usr/local/bin",
    ]
    .iter()
    .map(|dir| Path::new(dir).join(program))
    .find(|path| path.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(file: &str, line: u32, message: &str) -> Option<Location> {
        Some(Location {
            file: file.into(),
            line,
            message: message.into(),
        })
    }

    #[test]
    fn locates_postfix() {
        assert_eq!(
            locate("postconf: fatal: /etc/postfix/main.cf, line 50: missing '=' after attribute name: \"this line\""),
            at("/etc/postfix/main.cf", 50, "missing '=' after attribute name: \"this line\"")
        );
    }

    #[test]
    fn locates_dovecot() {
        assert_eq!(
            locate("doveconf: Fatal: Error in configuration file /etc/dovecot/conf.d/10-mail.conf line 422: Unknown setting: bogus_setting"),
            at("/etc/dovecot/conf.d/10-mail.conf", 422, "Unknown setting: bogus_setting")
        );
    }

    #[test]
    fn locates_unbound() {
        assert_eq!(
            locate("/etc/unbound/unbound.conf:11: error: unknown keyword 'bogus-option'"),
            at(
                "/etc/unbound/unbound.conf",
                11,
                "error: unknown keyword 'bogus-option'"
            )
        );
    }

    #[test]
    fn locates_nginx() {
        assert_eq!(
            locate(
                "nginx: [emerg] unknown directive \"bogus\" in /etc/nginx/sites-enabled/default:12"
            ),
            at(
                "/etc/nginx/sites-enabled/default",
                12,
                "unknown directive \"bogus\""
            )
        );
    }

    #[test]
    fn locates_apache() {
        assert_eq!(
            locate(
                "AH00526: Syntax error on line 12 of /etc/apache2/sites-enabled/000-default.conf:"
            ),
            at(
                "/etc/apache2/sites-enabled/000-default.conf",
                12,
                "syntax error on line 12 of /etc/apache2/sites-enabled/000-default.conf"
            )
        );
    }

    #[test]
    fn locates_rsyslog() {
        assert_eq!(
            locate("rsyslogd: error during parsing file /etc/rsyslog.conf, on or before line 12: invalid character"),
            at("/etc/rsyslog.conf", 12, "invalid character")
        );
    }

    #[test]
    fn no_location() {
        assert_eq!(locate("spamassassin: lint: 2 issues detected"), None);
        assert_eq!(locate("see /usr/share/doc for help"), None);
        assert_eq!(locate("http://example.org/x:80"), None);
    }

    #[test]
    fn finding_names_file_and_line() {
        let finding = finding(
            "doveconf -n",
            "exited with status 89",
            "doveconf: Fatal: Error in configuration file /etc/dovecot/conf.d/10-mail.conf line 422: Unknown setting: bogus_setting\n",
            RestartAfterFix::Automatic,
        );
        assert_eq!(finding.cause, Cause::ConfigError);
        assert!(finding.blocks_restart);
        assert_eq!(
            finding.summary,
            "config error: /etc/dovecot/conf.d/10-mail.conf line 422: Unknown setting: bogus_setting"
        );
        assert_eq!(finding.evidence[0], "`doveconf -n` exited with status 89");
        assert!(finding
            .next_step
            .starts_with("fix line 422 of /etc/dovecot/conf.d/10-mail.conf"));
    }

    #[test]
    fn next_step_by_restart_after_fix() {
        let output = "/etc/unbound/unbound.conf:11: error: unknown keyword 'bogus-option'\n";
        let automatic = finding(
            "unbound-checkconf",
            "exited with status 1",
            output,
            RestartAfterFix::Automatic,
        );
        let manual = finding(
            "unbound-checkconf",
            "exited with status 1",
            output,
            RestartAfterFix::Manual,
        );

        assert_eq!(
            automatic.next_step,
            "fix line 11 of /etc/unbound/unbound.conf and check it with `unbound-checkconf`; \
             selfheal restarts the service once the test passes, or run `selfheal restart SERVICE`"
        );
        assert_eq!(
            manual.next_step,
            "fix line 11 of /etc/unbound/unbound.conf and check it with `unbound-checkconf`, \
             then run `selfheal restart SERVICE`"
        );
    }

    /// Builds a custom service whose config test is `script`, run by /bin/sh.
    fn tested_by(script: &str) -> ServiceConfig {
        let mut service = ServiceConfig::from_preset(
            crate::config::presets::preset("unbound").unwrap(),
            "filter",
            crate::config::Mode::Heal,
            crate::config::Timing::NONE,
        );
        service.preset = None;
        service.config_test = Some(vec!["/bin/sh".into(), "-c".into(), script.into()]);
        service
    }

    #[tokio::test]
    async fn outcome_of_custom_test() {
        let passing = run(&tested_by("exit 0"), RestartAfterFix::Automatic).await;
        let failing = run(
            &tested_by("echo '/etc/filter.conf:3: error: bad value' >&2; exit 1"),
            RestartAfterFix::Manual,
        )
        .await;
        let mut missing = tested_by("exit 0");
        missing.config_test = Some(vec!["/nonexistent/filter-check".into()]);
        let not_installed = run(&missing, RestartAfterFix::Automatic).await;

        assert_eq!(passing, Outcome::Passed);
        let Outcome::Failed(finding) = failing else {
            panic!("expected a failure, got {failing:?}");
        };
        assert_eq!(
            finding.summary,
            "config error: /etc/filter.conf line 3: error: bad value"
        );
        assert!(finding
            .next_step
            .ends_with(", then run `selfheal restart SERVICE`"));
        assert_eq!(not_installed, Outcome::NotRun);
    }

    #[test]
    fn tests_before_restart() {
        let mut service = tested_by("exit 0");
        assert!(runs_before_restart(&service), "a custom test always runs");
        service.config_test = None;
        for (preset, quick) in [("unbound", true), ("postfix", true), ("spamd", false)] {
            service.preset = Some(preset.into());
            assert_eq!(runs_before_restart(&service), quick, "{preset}");
        }
    }

    #[test]
    fn finding_without_location() {
        let finding = finding(
            "spamassassin --lint",
            "exited with status 255",
            "config: SpamAssassin failed to parse line, \"bogus\" is not valid for \"required_score\", skipping: required_score bogus\nlint: 1 issues detected, please rerun with debug enabled for more information\n",
            RestartAfterFix::Manual,
        );
        assert_eq!(
            finding.summary,
            "config error: config: SpamAssassin failed to parse line, \"bogus\" is not valid for \"required_score\", skipping: required_score bogus"
        );
        let silent = super::finding(
            "postfix check",
            "exited with status 1",
            "",
            RestartAfterFix::Automatic,
        );
        assert_eq!(
            silent.summary,
            "config error: `postfix check` exited with status 1 and printed nothing"
        );
    }
}
