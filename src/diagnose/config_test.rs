//! The service's own config test (`postconf -n`, `doveconf -n`, `unbound-checkconf`, ...), run
//! without a shell and under a timeout, with the file and line of the error when the tool
//! prints them.

use std::path::Path;
use std::time::Duration;

use super::knowledge::{config_test_hint, config_tests, quick_config_test};
use super::{Cause, Finding, RestartAfterFix};
use crate::config::ServiceConfig;
use crate::probe::command::{describe_status, run_program};

/// Time allowed for one config test. `spamassassin --lint` compiles every rule set, which
/// takes several seconds on a small machine.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Result of a service's config tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every test ran and passed.
    Passed,
    /// A test failed, and the finding carries what it printed.
    Failed(Finding),
    /// No test failed, but one could not run because its program is missing or it did not
    /// finish. The finding reports that, because an untested config must never read as a
    /// passing one.
    NotRun(Finding),
    /// The service has no config test.
    NoTest,
}

/// Returns whether the service's config test runs before every automatic restart: a custom
/// `config_test`, or a preset test that takes well under a second. Only then does selfheal
/// restart the service by itself once the test passes.
pub fn runs_before_restart(service: &ServiceConfig) -> bool {
    service.config_test.is_some() || quick_config_test(service.preset.as_deref().unwrap_or(""))
}

/// Runs the service's config tests in order and stops at the first that fails. A test that
/// could not run is reported when no other test failed. `after_fix` words the next step of a
/// failure.
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
    if commands.is_empty() {
        return Outcome::NoTest;
    }
    // A slow test does not run before restarts, so nothing restarts the service when it
    // passes again.
    let after_fix = if runs_before_restart(service) {
        after_fix
    } else {
        RestartAfterFix::Manual
    };
    let mut not_run = None;
    for argv in commands {
        match run_one(&argv, after_fix).await {
            Tested::Passed => {}
            Tested::Failed(finding) => return Outcome::Failed(finding),
            Tested::NotRun(reason) => {
                not_run.get_or_insert_with(|| not_run_finding(service, &argv, &reason));
            }
        }
    }
    match not_run {
        Some(finding) => Outcome::NotRun(finding),
        None => Outcome::Passed,
    }
}

/// Result of one config test command.
enum Tested {
    Passed,
    Failed(Finding),
    /// The test did not run to its end, for the reason given.
    NotRun(String),
}

async fn run_one(argv: &[String], after_fix: RestartAfterFix) -> Tested {
    let Some((program, args)) = argv.split_first() else {
        return Tested::Passed;
    };
    let Some(path) = find_program(program) else {
        return Tested::NotRun(format!("{program} not found"));
    };
    let command = argv.join(" ");
    let finished = match run_program(&path, args, "config test", TIMEOUT).await {
        Ok(finished) => finished,
        Err(outcome) => {
            tracing::warn!(%command, %outcome, "config test did not finish");
            return Tested::NotRun(format!("`{command}` {outcome}"));
        }
    };
    if finished.status.success() {
        return Tested::Passed;
    }
    let output = format!(
        "{}\n{}",
        String::from_utf8_lossy(&finished.stderr),
        String::from_utf8_lossy(&finished.stdout)
    );
    Tested::Failed(finding(
        argv,
        &describe_status(finished.status),
        &output,
        after_fix,
    ))
}

/// Builds the finding of a config test that could not run. It does not block a restart: the
/// config may be fine, it is only untested.
fn not_run_finding(service: &ServiceConfig, argv: &[String], reason: &str) -> Finding {
    let program = argv.first().map(String::as_str).unwrap_or("");
    let next_step = if service.config_test.is_some() {
        format!(
            "install {program} or fix `config_test` in [services.{}] of the selfheal config; \
             until then {}'s config is not tested",
            service.name, service.name
        )
    } else {
        format!(
            "run `{}` by hand to see why it does not finish, or reinstall the package that \
             provides {program}; until then {}'s config is not tested",
            argv.join(" "),
            service.name
        )
    };
    Finding::new(
        Cause::ConfigTestNotRun,
        format!("config test not run: {reason}"),
        next_step,
    )
    .with_evidence([format!("config test: {}", argv.join(" "))])
}

/// Builds the finding of a failed config test from what it printed. MariaDB's options are
/// looked up in the option files under `/`. `after_fix` decides whether the next step may
/// promise that selfheal restarts the service once the test passes.
pub fn finding(argv: &[String], status: &str, output: &str, after_fix: RestartAfterFix) -> Finding {
    finding_in(Path::new("/"), argv, status, output, after_fix)
}

/// [`finding`] with MariaDB's option files read below `root`.
fn finding_in(
    root: &Path,
    argv: &[String],
    status: &str,
    output: &str,
    after_fix: RestartAfterFix,
) -> Finding {
    let command = argv.join(" ");
    let hint = config_test_hint(argv);
    let lines = error_lines(output);
    let located = lines.iter().find_map(|line| locate(line)).or_else(|| {
        lines
            .iter()
            .find_map(|line| locate_mariadb_option(root, line))
    });
    let summary = match (&located, lines.first()) {
        (Some(location), _) => format!(
            "config error: {} line {}: {}",
            location.file, location.line, location.message
        ),
        (None, Some(line)) => format!("config error: {}", super::clean_line(message_of(line))),
        (None, None) => format!("config error: `{command}` {status} and printed nothing"),
    };
    let fix = match &located {
        Some(location) => format!(
            "fix line {} of {} and check it with `{hint}`",
            location.line, location.file
        ),
        None => format!("run `{hint}` and fix what it reports"),
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

/// Returns the message of a MariaDB log line without its time, thread and severity prefix
/// and the program's path: "unknown variable 'x=1'" from "2026-12-05  2:22:11 0 [ERROR]
/// /usr/sbin/mariadbd: unknown variable 'x=1'". Other lines come back unchanged.
fn message_of(line: &str) -> &str {
    let Some((_, message)) = line.split_once("[ERROR] ") else {
        return line;
    };
    match message.split_once(": ") {
        Some((program, rest)) if program.starts_with('/') && !program.contains(' ') => rest,
        _ => message,
    }
}

/// Finds the option file and line of an option MariaDB rejects: "unknown variable
/// 'KEY=VALUE'" or "unknown option '--KEY'".
fn locate_mariadb_option(root: &Path, line: &str) -> Option<Location> {
    let message = message_of(line);
    let quoted = message
        .strip_prefix("unknown variable '")
        .or_else(|| message.strip_prefix("unknown option '--"))?;
    let (setting, _) = quoted.split_once('\'')?;
    let name = setting.split('=').next().unwrap_or(setting).trim();
    if name.is_empty() {
        return None;
    }
    let (file, line) = crate::config::discover::find_server_option(name, root)?;
    let kind = if message.starts_with("unknown variable") {
        "variable"
    } else {
        "option"
    };
    Some(Location {
        file: file.display().to_string(),
        line: u32::try_from(line).ok()?,
        message: format!("unknown {kind} '{name}'"),
    })
}

/// Returns the lines of a config test's output that report a problem, most telling first, or
/// the last lines when none carries a known marker.
///
/// MariaDB tags each message with its severity: its `[ERROR]` lines are the problem, with
/// "Aborting" last, and its `[Warning]` and `[Note]` lines never are. `mariadbd --help
/// --verbose` also prints a table of every variable and its value, whose rows
/// (`wsrep-ignore-apply-errors   7`) would match the markers, so such rows are left out.
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
        .filter(|line| !line.contains("[Warning]") && !line.contains("[Note]"))
        .filter(|line| !is_variable_row(line))
        .collect();
    let mut severe: Vec<String> = lines
        .iter()
        .filter(|line| line.contains("[ERROR]"))
        .map(|line| line.to_string())
        .collect();
    if !severe.is_empty() {
        severe.sort_by_key(|line| line.ends_with("[ERROR] Aborting"));
        return severe;
    }
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

/// Returns whether `line` is a row of the variable table of `mariadbd --help --verbose`: a
/// lower-case variable name, two or more spaces, and its value.
fn is_variable_row(line: &str) -> bool {
    let Some((name, value)) = line.split_once("  ") else {
        return false;
    };
    // The name starts with a letter: MariaDB's log lines start with a date, which is followed
    // by two spaces before a one-digit hour ("2026-12-05  2:22:11").
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
        && !value.trim().is_empty()
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

/// Directories searched for a program named without a path. selfheal may run with a minimal
/// PATH under systemd, so the sbin directories are searched too.
pub const PROGRAM_DIRS: [&str; 6] = [
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
];

/// Looks `program` up: an absolute path as it is, a bare name in [`PROGRAM_DIRS`]. `None`
/// when it is not installed.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.starts_with('/') {
        return Path::new(program).exists().then(|| program.into());
    }
    PROGRAM_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|path| path.exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(command: &str) -> Vec<String> {
        command.split_whitespace().map(str::to_string).collect()
    }

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
            &argv("doveconf -n"),
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
        assert!(
            finding
                .next_step
                .ends_with("selfheal restarts the service once the test passes, or run `selfheal restart SERVICE`"),
            "{}",
            finding.next_step
        );
    }

    #[test]
    fn next_step_by_restart_after_fix() {
        let output = "/etc/unbound/unbound.conf:11: error: unknown keyword 'bogus-option'\n";
        let automatic = finding(
            &argv("unbound-checkconf"),
            "exited with status 1",
            output,
            RestartAfterFix::Automatic,
        );
        let manual = finding(
            &argv("unbound-checkconf"),
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
        let mut untested = tested_by("exit 0");
        untested.config_test = None;
        let no_test = run(&untested, RestartAfterFix::Automatic).await;

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
        let Outcome::NotRun(not_run) = not_installed else {
            panic!("expected a test that did not run, got {not_installed:?}");
        };
        assert_eq!(not_run.cause, Cause::ConfigTestNotRun);
        assert_eq!(no_test, Outcome::NoTest);
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
            &argv("spamassassin --lint"),
            "exited with status 255",
            "config: SpamAssassin failed to parse line, \"bogus\" is not valid for \"required_score\", skipping: required_score bogus\nlint: 1 issues detected, please rerun with debug enabled for more information\n",
            RestartAfterFix::Manual,
        );
        assert_eq!(
            finding.summary,
            "config error: config: SpamAssassin failed to parse line, \"bogus\" is not valid for \"required_score\", skipping: required_score bogus"
        );
        assert!(
            finding
                .next_step
                .ends_with("and fix what it reports, then run `selfheal restart SERVICE`"),
            "{}",
            finding.next_step
        );
        let silent = super::finding(
            &argv("postfix check"),
            "exited with status 1",
            "",
            RestartAfterFix::Automatic,
        );
        assert_eq!(
            silent.summary,
            "config error: `postfix check` exited with status 1 and printed nothing"
        );
    }

    /// What `mariadbd --help --verbose` prints for an option it does not know: a warning
    /// first, the error, and the variable table on standard output.
    const MARIADB_OUTPUT: &str =
        "2026-12-05  2:22:11 0 [Warning] failed to retrieve the MAC address
2026-12-05  2:22:11 0 [ERROR] /usr/sbin/mariadbd: unknown variable 'innodb_buffer_pool_sise=256M'
2026-12-05  2:22:11 0 [ERROR] Aborting

Variables (--variable-name=value)
and boolean options {FALSE|TRUE}                             Value (after reading options)
------------------------------------------------------------ -------------
system-versioning-alter-history                              ERROR
wsrep-ignore-apply-errors                                    7
";

    #[test]
    fn mariadb_error_lines_only() {
        let lines = error_lines(MARIADB_OUTPUT);
        assert_eq!(
            lines,
            vec![
                "2026-12-05  2:22:11 0 [ERROR] /usr/sbin/mariadbd: unknown variable 'innodb_buffer_pool_sise=256M'",
                "2026-12-05  2:22:11 0 [ERROR] Aborting",
            ]
        );
    }

    #[test]
    fn mariadb_option_names_file_and_line() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let host = root.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(host.parent().unwrap()).unwrap();
            std::fs::write(host, text).unwrap();
        };
        write(
            "/etc/mysql/my.cnf",
            "[client-server]\nsocket = /run/mysqld/mysqld.sock\n!includedir /etc/mysql/mariadb.conf.d/\n",
        );
        write(
            "/etc/mysql/mariadb.conf.d/99-x.cnf",
            "[mysqld]\n# more memory\ninnodb_buffer_pool_sise = 256M\n",
        );
        let finding = finding_in(
            root.path(),
            &argv("mariadbd --help --verbose"),
            "exited with status 7",
            MARIADB_OUTPUT,
            RestartAfterFix::Manual,
        );
        assert_eq!(
            finding.summary,
            "config error: /etc/mysql/mariadb.conf.d/99-x.cnf line 3: unknown variable 'innodb_buffer_pool_sise'"
        );
        assert!(
            finding.next_step
                == "fix line 3 of /etc/mysql/mariadb.conf.d/99-x.cnf and check it with \
                    `mariadbd --help --verbose >/dev/null`, then run `selfheal restart SERVICE`",
            "{}",
            finding.next_step
        );
        for line in &finding.evidence {
            assert!(!line.contains("[Warning]"), "{line}");
            assert!(!line.contains("wsrep-ignore-apply-errors"), "{line}");
        }
    }

    #[test]
    fn mariadb_option_without_file() {
        let root = tempfile::tempdir().unwrap();
        let finding = finding_in(
            root.path(),
            &argv("mariadbd --help --verbose"),
            "exited with status 7",
            MARIADB_OUTPUT,
            RestartAfterFix::Manual,
        );
        assert_eq!(
            finding.summary,
            "config error: unknown variable 'innodb_buffer_pool_sise=256M'"
        );
        assert!(finding
            .next_step
            .starts_with("run `mariadbd --help --verbose >/dev/null` and fix"));
    }

    #[test]
    fn variable_rows() {
        assert!(is_variable_row(
            "wsrep-ignore-apply-errors                                    7"
        ));
        assert!(!is_variable_row("ERROR   Failed during configuration: x"));
        assert!(!is_variable_row("postconf: fatal: x  y"));
        assert!(!is_variable_row("unknown variable"));
        assert!(!is_variable_row(
            "2026-12-05  2:22:11 0 [ERROR] /usr/sbin/mariadbd: unknown variable 'x=1'"
        ));
    }

    fn custom(program: &str) -> ServiceConfig {
        let mut service = ServiceConfig::from_preset(
            crate::config::presets::preset("dovecot").unwrap(),
            "ai3",
            crate::config::Mode::Heal,
            crate::config::Timing::NONE,
        );
        service.preset = None;
        service.config_test = Some(vec![program.to_string(), "--check".to_string()]);
        service
    }

    #[tokio::test]
    async fn missing_program_is_not_a_pass() {
        let outcome = run(&custom("/nonexistent/bin/nope"), RestartAfterFix::Automatic).await;
        let Outcome::NotRun(finding) = outcome else {
            panic!("expected a finding for the missing program, got {outcome:?}");
        };
        assert_eq!(finding.cause, Cause::ConfigTestNotRun);
        assert!(!finding.blocks_restart);
        assert_eq!(
            finding.summary,
            "config test not run: /nonexistent/bin/nope not found"
        );
        assert!(
            finding
                .next_step
                .contains("fix `config_test` in [services.ai3]"),
            "{}",
            finding.next_step
        );
    }

    #[tokio::test]
    async fn passing_and_failing_custom_tests() {
        assert_eq!(
            run(&custom("/bin/true"), RestartAfterFix::Automatic).await,
            Outcome::Passed
        );
        let outcome = run(&custom("/bin/false"), RestartAfterFix::Automatic).await;
        let Outcome::Failed(failed) = outcome else {
            panic!("expected a failure, got {outcome:?}");
        };
        assert_eq!(failed.cause, Cause::ConfigError);
        assert!(failed.blocks_restart);
    }
}
