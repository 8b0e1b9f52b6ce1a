//! The service's own config test (`postconf -n`, `doveconf -n`, `unbound-checkconf`, ...), run
//! without a shell and under a timeout, with the file and line of the error when the tool
//! prints them.

use std::path::Path;
use std::time::Duration;

use super::knowledge::config_tests;
use super::{Cause, Finding};
use crate::config::ServiceConfig;
use crate::probe::command::{describe_status, run_program};

/// Time allowed for one config test. `spamassassin --lint` compiles every rule set, which
/// takes several seconds on a small machine.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the service's config tests in order and reports the first that fails. `None` when
/// every test passed, or when the service has none or its test program is not installed.
pub async fn run(service: &ServiceConfig) -> Option<Finding> {
    let custom = service.config_test.as_deref();
    let preset = service.preset.as_deref().unwrap_or("");
    let commands: Vec<Vec<String>> = match custom {
        Some(argv) => vec![argv.to_vec()],
        None => config_tests(preset)
            .iter()
            .map(|argv| argv.iter().map(|arg| arg.to_string()).collect())
            .collect(),
    };
    for argv in commands {
        if let Some(finding) = run_one(&argv).await {
            return Some(finding);
        }
    }
    None
}

async fn run_one(argv: &[String]) -> Option<Finding> {
    let (program, args) = argv.split_first()?;
    let program = find_program(program)?;
    let command = argv.join(" ");
    let finished = match run_program(&program, args, "config test", TIMEOUT).await {
        Ok(finished) => finished,
        Err(outcome) => {
            tracing::warn!(%command, %outcome, "config test did not finish");
            return None;
        }
    };
    if finished.status.success() {
        return None;
    }
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&finished.stderr),
        String::from_utf8_lossy(&finished.stdout)
    );
    Some(finding(
        &command,
        &describe_status(finished.status),
        &output,
    ))
}

/// Builds the finding of a failed config test from what it printed.
pub fn finding(command: &str, status: &str, output: &str) -> Finding {
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
    let next_step = match &located {
        Some(location) => format!(
            "fix line {} of {} and check it with `{command}`; selfheal restarts the service \
             once the test passes, or run `selfheal restart SERVICE`",
            location.line, location.file
        ),
        None => format!(
            "run `{command}` and fix what it reports; selfheal restarts the service once the \
             test passes, or run `selfheal restart SERVICE`"
        ),
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
    fn finding_without_location() {
        let finding = finding(
            "spamassassin --lint",
            "exited with status 255",
            "config: SpamAssassin failed to parse line, \"bogus\" is not valid for \"required_score\", skipping: required_score bogus\nlint: 1 issues detected, please rerun with debug enabled for more information\n",
        );
        assert_eq!(
            finding.summary,
            "config error: config: SpamAssassin failed to parse line, \"bogus\" is not valid for \"required_score\", skipping: required_score bogus"
        );
        let silent = super::finding("postfix check", "exited with status 1", "");
        assert_eq!(
            silent.summary,
            "config error: `postfix check` exited with status 1 and printed nothing"
        );
    }
}
