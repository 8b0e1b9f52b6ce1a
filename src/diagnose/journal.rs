//! Known messages in the unit's journal, and what systemd recorded about how the unit ended.
//!
//! The patterns are the messages the covered services print, as seen from Debian 12's
//! packages: Postfix and Dovecot config errors, "Address already in use" from any daemon,
//! InnoDB and Aria/MyISAM corruption from MariaDB, damaged Postfix lookup tables, sockets that
//! cannot be created, and systemd's own lines for the OOM killer and failed exec steps.

use std::path::Path;

use super::config_test::locate;
use super::{Cause, Finding};
use crate::manager::UnitStatus;

/// Findings of a journal scan.
#[derive(Debug, Default)]
pub struct Scan {
    pub findings: Vec<Finding>,
    /// Ports a daemon could not bind because they were in use, with the line that said so.
    pub ports_in_use: Vec<(u16, String)>,
}

/// Looks for known messages in `lines`, oldest first. Later lines win over earlier ones of
/// the same kind, because they describe the last attempt. A line whose claim no longer holds
/// (a missing directory that exists now) is left out.
pub fn scan(lines: &[String]) -> Scan {
    scan_with(lines, &|directory| directory.is_dir())
}

/// [`scan`] with `is_dir` telling whether a directory exists now.
fn scan_with(lines: &[String], is_dir: &dyn Fn(&Path) -> bool) -> Scan {
    let mut scan = Scan::default();
    for line in lines.iter().rev() {
        let text = message_of(line);
        if text.contains("Address already in use") {
            if let Some(port) = port_in(text) {
                if !scan.ports_in_use.iter().any(|(known, _)| *known == port) {
                    scan.ports_in_use.push((port, line.clone()));
                }
            }
        } else if let Some(finding) = corrupt_data(text, line) {
            scan.findings.push(finding);
        } else if let Some(finding) = config_error(text, line) {
            scan.findings.push(finding);
        } else if let Some(finding) = failed_exec(text, line) {
            scan.findings.push(finding);
        } else if let Some(finding) = socket_path(text, line, is_dir) {
            scan.findings.push(finding);
        } else if text.contains("killed by the OOM killer")
            || text.contains("Out of memory: Killed")
        {
            scan.findings.push(out_of_memory(line));
        }
    }
    scan
}

/// Returns the message part of a journal line in `short-iso` form: what follows `PROGRAM[PID]: `.
fn message_of(line: &str) -> &str {
    line.split_once("]: ")
        .map(|(_, message)| message)
        .unwrap_or(line)
}

/// Returns the port of a failed bind, in the forms Postfix (`bind 127.0.0.1 port 25: ...`), Dovecot
/// (`bind(0.0.0.0, 143) failed: ...`), nginx (`bind() to 0.0.0.0:80 failed`) and MariaDB
/// (`Can't start server: Bind on TCP/IP port. ... port: 3306`) print.
pub fn port_in(text: &str) -> Option<u16> {
    let number_after = |marker: &str| -> Option<u16> {
        let (_, rest) = text.rsplit_once(marker)?;
        let digits: String = rest
            .trim_start()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().ok()
    };
    number_after(" port ")
        .or_else(|| number_after("port: "))
        .or_else(|| {
            // "bind(0.0.0.0, 143)" and "bind() to 0.0.0.0:80"
            let (_, rest) = text.split_once("bind(")?;
            let inner = rest.split(')').next()?;
            inner
                .rsplit([',', ' '])
                .next()
                .and_then(|part| part.trim().parse().ok())
                .or_else(|| {
                    let (_, after) = text.split_once(") to ")?;
                    let address = after.split_whitespace().next()?;
                    address.rsplit_once(':')?.1.parse().ok()
                })
        })
}

fn corrupt_data(text: &str, line: &str) -> Option<Finding> {
    // InnoDB names the file: "... read in from ./scratch/t.ibd are [page id: ...]".
    let innodb = [
        "InnoDB: Database page corruption",
        "InnoDB: Space id and page no stored in the page",
        "is corrupted",
        "InnoDB: Corrupted page",
    ];
    if text.contains("InnoDB") && innodb.iter().any(|marker| text.contains(marker)) {
        let file = text
            .split_once(" from ")
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .or_else(|| quoted(text))
            .unwrap_or("an InnoDB tablespace");
        return Some(
            Finding::new(
                Cause::CorruptData,
                format!("corrupted data: InnoDB reports a damaged page in {file}"),
                "do not restart in a loop; back up /var/lib/mysql, then check the table with \
                 `mariadb-check` or restore it from a backup (innodb_force_recovery helps only \
                 to dump data)",
            )
            .with_evidence([line]),
        );
    }
    for marker in [
        "is marked as crashed",
        "Incorrect information in file",
        "Incorrect file format",
    ] {
        if text.contains(marker) {
            let table = quoted(text).unwrap_or("a table");
            return Some(
                Finding::new(
                    Cause::CorruptData,
                    format!("corrupted data: MariaDB reports table {table}: {marker}"),
                    format!(
                        "back up the database, then run `mariadb-check --repair` on {table} or \
                         restore it from a backup"
                    ),
                )
                .with_evidence([line]),
            );
        }
    }
    // Postfix: "fatal: open database /etc/postfix/virtual.db: Invalid argument".
    if let Some((_, rest)) = text.split_once("open database ") {
        let file = rest.split(':').next().unwrap_or(rest).trim();
        let map = file
            .strip_suffix(".db")
            .or_else(|| file.strip_suffix(".lmdb"))
            .unwrap_or(file);
        return Some(
            Finding::new(
                Cause::CorruptData,
                format!("corrupted data: Postfix cannot open lookup table {file}"),
                format!("rebuild it with `postmap {map}` (or `postalias` for an alias table)"),
            )
            .with_evidence([line]),
        );
    }
    None
}

/// Returns the first text in single quotes, as MariaDB quotes table and file names.
fn quoted(text: &str) -> Option<&str> {
    let (_, rest) = text.split_once('\'')?;
    let (inside, _) = rest.split_once('\'')?;
    (!inside.is_empty()).then_some(inside)
}

fn config_error(text: &str, line: &str) -> Option<Finding> {
    let markers = [
        "Error in configuration file",
        "fatal: /etc/",
        "[emerg]",
        "Syntax error on line",
    ];
    if !markers.iter().any(|marker| text.contains(marker)) {
        return None;
    }
    let summary = match locate(text) {
        Some(location) => format!(
            "config error: {} line {}: {}",
            location.file, location.line, location.message
        ),
        None => format!("config error: {}", super::clean_line(text)),
    };
    Some(
        Finding::new(
            Cause::ConfigError,
            summary,
            "fix the config file the log names, then run `selfheal restart SERVICE`",
        )
        .with_evidence([line])
        .blocking(),
    )
}

/// Recognises systemd's report of a start that failed before the program ran: "Failed at
/// step EXEC spawning /usr/sbin/x: No such file or directory" (a missing program) and "Failed
/// at step USER spawning ...: No such process" or "Failed to determine user credentials" (a
/// missing user).
fn failed_exec(text: &str, line: &str) -> Option<Finding> {
    if text.contains("Failed at step EXEC spawning") {
        let program = text
            .split_once("spawning ")
            .and_then(|(_, rest)| rest.split(':').next())
            .unwrap_or("the service's program");
        return Some(
            Finding::new(
                Cause::MissingProgram,
                format!("missing program: systemd could not execute {program}"),
                "reinstall the package or fix ExecStart= (`systemctl cat UNIT` shows it)",
            )
            .with_evidence([line])
            .blocking(),
        );
    }
    if text.contains("Failed at step USER spawning")
        || text.contains("Failed to determine user credentials")
    {
        return Some(missing_user().with_evidence([line]));
    }
    None
}

fn missing_user() -> Finding {
    Finding::new(
        Cause::MissingUser,
        "missing user: the user the service runs as does not exist",
        "create the user or fix User= in the unit (`systemctl cat UNIT`); reinstalling the \
         package usually creates it",
    )
    .blocking()
}

/// Recognises a socket or file the daemon cannot create: "Unable to bind to port
/// local:/var/spool/postfix/opendkim/opendkim.sock: No such file or directory" (OpenDKIM), or
/// a "Permission denied" on a path. A missing directory that `is_dir` finds now gives `None`.
fn socket_path(text: &str, line: &str, is_dir: &dyn Fn(&Path) -> bool) -> Option<Finding> {
    let missing = text.contains("No such file or directory");
    let denied = text.contains("Permission denied");
    let about_socket = ["bind", "socket", "sock", "listen"]
        .iter()
        .any(|word| text.contains(word));
    if !(missing || denied) || !about_socket {
        return None;
    }
    let path = text
        .split(|c: char| c.is_whitespace() || c == '\'' || c == '"')
        .map(|word| word.trim_start_matches("local:").trim_end_matches(':'))
        .find(|word| word.starts_with('/') && word.len() > 1)?;
    let parent = Path::new(path).parent().unwrap_or(Path::new("/"));
    if missing && is_dir(parent) {
        tracing::debug!(
            directory = %parent.display(),
            "the journal reports a missing directory that exists now; not a cause"
        );
        return None;
    }
    let directory = parent.display().to_string();
    let (summary, next_step) = if missing {
        (
            format!("cannot create {path}: directory {directory} is missing"),
            format!(
                "create {directory} owned by the user the service runs as (for a socket inside \
                 Postfix's chroot: `install -d -o USER -g postfix -m 750 {directory}`), then \
                 `selfheal restart SERVICE`"
            ),
        )
    } else {
        (
            format!("cannot create {path}: permission denied in {directory}"),
            format!(
                "give the service's user write access to {directory} (`ls -ld {directory}` \
                 shows the owner), then `selfheal restart SERVICE`"
            ),
        )
    };
    Some(
        Finding::new(Cause::SocketPath, summary, next_step)
            .with_evidence([line])
            .blocking(),
    )
}

fn out_of_memory(line: &str) -> Finding {
    Finding::new(
        Cause::OutOfMemory,
        "out of memory: the kernel's OOM killer ended the service",
        "find what uses the memory (`journalctl -k | grep -i oom`, `ps aux --sort=-rss | head`), \
         add memory or swap, or lower the service's limits",
    )
    .with_evidence([line])
}

/// Reports what systemd recorded about how the unit ended: the OOM killer, a missing program (exit
/// status 203/EXEC) or user (217/USER), or plain exit codes when nothing else is known.
pub fn from_unit(unit: &UnitStatus, journal: &[String]) -> Vec<Finding> {
    let evidence: Vec<&String> = journal
        .iter()
        .filter(|line| line.contains("systemd["))
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let result = format!(
        "unit result {}, main process status {}",
        unit.result,
        unit.exec_main_status
            .map(|status| status.to_string())
            .unwrap_or_else(|| "unknown".to_string())
    );
    let finding = if unit.result == "oom-kill" {
        out_of_memory(&result)
    } else if unit.exec_main_status == Some(203) {
        Finding::new(
            Cause::MissingProgram,
            "missing program: systemd could not execute the service's program (status 203/EXEC)",
            "reinstall the package or fix ExecStart= (`systemctl cat UNIT` shows it)",
        )
        .blocking()
    } else if unit.exec_main_status == Some(217) {
        missing_user()
    } else if matches!(
        unit.result.as_str(),
        "exit-code" | "signal" | "core-dump" | "timeout"
    ) {
        Finding::new(
            Cause::Exited,
            format!("the unit failed: {result}"),
            "read the unit's journal (`journalctl -u UNIT -n 50`) for the reason",
        )
    } else {
        return Vec::new();
    };
    vec![finding.with_evidence(std::iter::once(&result).chain(evidence))]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| line.to_string()).collect()
    }

    #[test]
    fn ports_in_bind_errors() {
        for (text, port) in [
            ("fatal: bind 127.0.0.1 port 25: Address already in use", 25),
            ("Error: bind(0.0.0.0, 143) failed: Address already in use", 143),
            ("Error: bind(::, 993) failed: Address already in use", 993),
            ("[emerg] bind() to 0.0.0.0:80 failed (98: Address already in use)", 80),
            ("[ERROR] Can't start server: Bind on TCP/IP port. Got error: 98: Address already in use; port: 3306", 3306),
        ] {
            assert_eq!(port_in(text), Some(port), "{text}");
        }
        assert_eq!(port_in("Address already in use"), None);
    }

    #[test]
    fn port_conflict_lines_are_collected() {
        let scan = scan(&lines(&[
            "2026-12-04T23:47:30+0000 vm dovecot[2713]: master: Error: service(imap-login): listen(*, 143) failed: Address already in use",
            "2026-12-04T23:47:30+0000 vm dovecot[2713]: Error: bind(0.0.0.0, 143) failed: Address already in use",
        ]));
        assert_eq!(scan.ports_in_use.len(), 1);
        assert_eq!(scan.ports_in_use[0].0, 143);
    }

    #[test]
    fn innodb_corruption_names_file() {
        let scan = scan(&lines(&["2026-12-04T23:47:39+0000 vm mariadbd[2781]: 2026-12-04 23:47:39 0 [ERROR] InnoDB: Space id and page no stored in the page, read in from ./scratch/t.ibd are [page id: space=1290960597, page number=2424736260], should be [page id: space=5, page number=1]"]));
        assert_eq!(scan.findings.len(), 1);
        assert_eq!(scan.findings[0].cause, Cause::CorruptData);
        assert_eq!(
            scan.findings[0].summary,
            "corrupted data: InnoDB reports a damaged page in ./scratch/t.ibd"
        );
    }

    #[test]
    fn crashed_table_names_table() {
        let scan = scan(&lines(&["mariadbd[1]: [ERROR] mariadbd: Table './scratch/m' is marked as crashed and should be repaired"]));
        assert_eq!(
            scan.findings[0].summary,
            "corrupted data: MariaDB reports table ./scratch/m: is marked as crashed"
        );
    }

    #[test]
    fn postfix_lookup_table() {
        let scan = scan(&lines(&[
            "postfix/smtpd[9]: fatal: open database /etc/postfix/virtual.db: Invalid argument",
        ]));
        assert_eq!(
            scan.findings[0].summary,
            "corrupted data: Postfix cannot open lookup table /etc/postfix/virtual.db"
        );
        assert!(scan.findings[0]
            .next_step
            .contains("postmap /etc/postfix/virtual"));
    }

    #[test]
    fn dovecot_config_error_from_journal() {
        let scan = scan(&lines(&["2026-12-04T23:47:30+0000 vm dovecot[2713]: doveconf: Fatal: Error in configuration file /etc/dovecot/conf.d/10-mail.conf line 422: Unknown setting: bogus_setting"]));
        assert_eq!(scan.findings[0].cause, Cause::ConfigError);
        assert_eq!(
            scan.findings[0].summary,
            "config error: /etc/dovecot/conf.d/10-mail.conf line 422: Unknown setting: bogus_setting"
        );
    }

    #[test]
    fn opendkim_socket_directory_missing() {
        let journal = lines(&["2026-12-04T23:47:56+0000 vm opendkim[2882]: OpenDKIM Filter: Unable to bind to port local:/var/spool/postfix/opendkim/opendkim.sock: No such file or directory"]);
        let scan = scan_with(&journal, &|_| false);
        let finding = &scan.findings[0];
        assert_eq!(finding.cause, Cause::SocketPath);
        assert_eq!(
            finding.summary,
            "cannot create /var/spool/postfix/opendkim/opendkim.sock: directory /var/spool/postfix/opendkim is missing"
        );
        assert!(finding.blocks_restart);

        // The directory has been created since that start: the line is no cause any more.
        let recreated = scan_with(&journal, &|directory| {
            directory == Path::new("/var/spool/postfix/opendkim")
        });
        assert!(recreated.findings.is_empty(), "{:?}", recreated.findings);
    }

    #[test]
    fn failed_exec_steps() {
        let scan = scan(&lines(&["2026-12-05T00:41:20+0000 vm (nstalled)[226]: opendkim.service: Failed at step EXEC spawning /usr/sbin/opendkim-not-installed: No such file or directory"]));
        assert_eq!(scan.findings.len(), 1);
        assert_eq!(scan.findings[0].cause, Cause::MissingProgram);
        assert_eq!(
            scan.findings[0].summary,
            "missing program: systemd could not execute /usr/sbin/opendkim-not-installed"
        );
        let scan = scan_user();
        assert_eq!(scan.findings[0].cause, Cause::MissingUser);
    }

    fn scan_user() -> Scan {
        scan(&lines(&["vm (opendkim)[9]: opendkim.service: Failed to determine user credentials: No such process"]))
    }

    #[test]
    fn oom_from_unit_result() {
        let unit = UnitStatus {
            load_state: "loaded".into(),
            active_state: crate::manager::ActiveState::parse("failed"),
            sub_state: "failed".into(),
            result: "oom-kill".into(),
            main_pid: None,
            main_pid_alive: None,
            n_restarts: None,
            exec_main_status: Some(9),
            inactive_exit_usec: 0,
            invocation_id: None,
        };
        let findings = from_unit(&unit, &[]);
        assert_eq!(findings[0].cause, Cause::OutOfMemory);
        let missing = UnitStatus {
            result: "exit-code".into(),
            exec_main_status: Some(203),
            ..unit.clone()
        };
        assert_eq!(from_unit(&missing, &[])[0].cause, Cause::MissingProgram);
        let exited = UnitStatus {
            result: "exit-code".into(),
            exec_main_status: Some(89),
            ..unit
        };
        let findings = from_unit(&exited, &[]);
        assert_eq!(findings[0].cause, Cause::Exited);
        assert_eq!(
            findings[0].summary,
            "the unit failed: unit result exit-code, main process status 89"
        );
    }
}
