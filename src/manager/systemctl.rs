//! The `systemctl` command, used when no system bus is reachable.
//!
//! systemctl reaches PID 1 through systemd's private socket, so it works while dbus-daemon is
//! down, but it cannot stream unit changes: with this backend the engine only polls. Every command
//! runs with `LC_ALL=C` under a timeout and is killed when the timeout expires.

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::{start_limit_hit, ActiveState, ManagerError, RestartError, RestartReport, UnitStatus};

/// Properties `status` requests from `systemctl show`, and the only keys the parser accepts.
const STATUS_PROPERTIES: [&str; 9] = [
    "LoadState",
    "ActiveState",
    "SubState",
    "InactiveExitTimestampMonotonic",
    "InvocationID",
    "Result",
    "MainPID",
    "NRestarts",
    "ExecMainStatus",
];

/// systemctl's exit status for a unit that does not exist (the LSB "not installed" code).
const EXIT_UNIT_NOT_FOUND: i32 = 5;

/// Bound on one `journalctl` run in [`journal_tail`].
const JOURNAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The `systemctl` command as a service-manager backend.
pub struct Systemctl {
    /// Bound on `show` and `reset-failed`; `restart` gets the caller's timeout.
    call_timeout: Duration,
    /// Program and leading arguments run as systemctl. Tests run a fake script through `sh`.
    program: Vec<String>,
}

impl Systemctl {
    pub fn new(call_timeout: Duration) -> Self {
        Systemctl {
            call_timeout,
            program: vec!["systemctl".to_string()],
        }
    }

    /// Returns whether the unit's file was found and loaded (`LoadState` is "loaded"). Any error
    /// counts as a missing unit and is logged at debug level.
    pub async fn unit_exists(&self, unit: &str) -> bool {
        match self.status(unit).await {
            Ok(status) => status.load_state == "loaded",
            Err(err) => {
                tracing::debug!(unit, error = %err, "cannot read the load state, treating the unit as missing");
                false
            }
        }
    }

    /// Whether the unit starts at boot: its unit file is enabled, or another unit wants or
    /// requires it.
    pub async fn unit_enabled(&self, unit: &str) -> Result<bool, ManagerError> {
        let output = self
            .run(
                &[
                    "show",
                    "--property=UnitFileState,WantedBy,RequiredBy",
                    "--",
                    unit,
                ],
                self.call_timeout,
            )
            .await
            .map_err(ManagerError)?;
        if !output.status.success() {
            return Err(ManagerError(format!(
                "systemctl show {unit} failed: {}",
                output.failure()
            )));
        }
        let text = &output.stdout;
        let mut enabled = false;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("UnitFileState", state)) => enabled |= super::enabled_file_state(state),
                Some(("WantedBy" | "RequiredBy", units)) => enabled |= !units.trim().is_empty(),
                _ => {}
            }
        }
        Ok(enabled)
    }

    /// Reads the unit's state with one `systemctl show --property=...` run.
    pub async fn status(&self, unit: &str) -> Result<UnitStatus, ManagerError> {
        let properties = format!("--property={}", STATUS_PROPERTIES.join(","));
        let output = self
            .run(&["show", &properties, "--", unit], self.call_timeout)
            .await
            .map_err(ManagerError)?;
        if !output.status.success() {
            return Err(ManagerError(format!(
                "systemctl show {unit} failed: {}",
                output.failure()
            )));
        }
        parse_show(&output.stdout)
            .map_err(|err| ManagerError(format!("parsing systemctl show output for {unit}: {err}")))
    }

    /// Restarts the unit with `systemctl restart`, which waits for the job to finish.
    ///
    /// Same steps as the D-Bus backend: a failed unit is reset first, and a start the rate limit
    /// rejected is retried once after `reset-failed`. systemctl's message for a rejected start names
    /// the unit's stale `Result` (often "exit-code"), so the state before and after decides.
    pub async fn restart(
        &self,
        unit: &str,
        timeout: Duration,
    ) -> Result<RestartReport, RestartError> {
        self.restart_killing(unit, timeout, None).await
    }

    /// Like [`Systemctl::restart`], and runs `systemctl kill --signal=KILL` when the unit is still
    /// deactivating `kill_after` into the restart.
    pub async fn restart_killing(
        &self,
        unit: &str,
        timeout: Duration,
        kill_after: Option<Duration>,
    ) -> Result<RestartReport, RestartError> {
        // NOTE: killing systemctl on timeout leaves its job queued in systemd, which runs it to
        // the end; the next restart replaces it.
        match tokio::time::timeout(timeout, self.restart_unbounded(unit, timeout, kill_after)).await
        {
            Ok(result) => result,
            Err(_) => Err(RestartError::Timeout(timeout)),
        }
    }

    // NOTE: these steps repeat the D-Bus backend's restart_unbounded in systemd.rs; a change to
    // one (reset, rate-limit retry, kill of a hung stop) must be made in both until they share
    // one implementation over a small backend trait.
    async fn restart_unbounded(
        &self,
        unit: &str,
        timeout: Duration,
        kill_after: Option<Duration>,
    ) -> Result<RestartReport, RestartError> {
        let started = Instant::now();
        let before = self.restart_status(unit).await?;

        let mut reset_failed = false;
        if before.active_state == ActiveState::Failed {
            tracing::info!(unit, result = %before.result, "unit is failed, resetting it before the restart");
            self.reset_failed(unit).await?;
            reset_failed = true;
        }

        let (job_result, killed) = self.run_restart(unit, timeout, kill_after).await?;
        if job_result == "done" {
            return Ok(RestartReport {
                reset_failed,
                job_result,
                elapsed: started.elapsed(),
                retried_after_rate_limit: false,
                killed,
            });
        }

        let after = self.restart_status(unit).await?;
        if !start_limit_hit(&job_result, &before, &after) {
            return Err(RestartError::JobFailed { result: job_result });
        }

        tracing::info!(
            unit,
            "start rejected by the start rate limit, resetting the unit and restarting once more"
        );
        self.reset_failed(unit).await?;
        let (job_result, killed) = self.run_restart(unit, timeout, kill_after).await?;
        if job_result == "done" {
            return Ok(RestartReport {
                reset_failed,
                job_result,
                elapsed: started.elapsed(),
                retried_after_rate_limit: true,
                killed,
            });
        }

        let again = self.restart_status(unit).await?;
        if start_limit_hit(&job_result, &after, &again) {
            Err(RestartError::StartLimit)
        } else {
            Err(RestartError::JobFailed { result: job_result })
        }
    }

    /// Reads the state during a restart, turning a unit without a unit file into `NotFound`.
    async fn restart_status(&self, unit: &str) -> Result<UnitStatus, RestartError> {
        let status = self
            .status(unit)
            .await
            .map_err(|err| RestartError::Manager(err.0))?;
        if status.load_state == "not-found" {
            return Err(RestartError::NotFound(unit.to_string()));
        }
        Ok(status)
    }

    async fn reset_failed(&self, unit: &str) -> Result<(), RestartError> {
        let output = self
            .run(&["reset-failed", "--", unit], self.call_timeout)
            .await
            .map_err(RestartError::Manager)?;
        if output.status.success() {
            Ok(())
        } else {
            Err(RestartError::Manager(format!(
                "systemctl reset-failed {unit} failed: {}",
                output.failure()
            )))
        }
    }

    /// Runs `systemctl restart` and returns the job result ("done" on success, otherwise the
    /// result named by systemctl's message) and whether a hung stop was killed.
    async fn run_restart(
        &self,
        unit: &str,
        timeout: Duration,
        kill_after: Option<Duration>,
    ) -> Result<(String, bool), RestartError> {
        let args = ["restart", "--no-ask-password", "--", unit];
        let restart = self.run(&args, timeout);
        tokio::pin!(restart);
        let mut killed = false;
        let output = match kill_after {
            Some(delay) => match tokio::time::timeout(delay, &mut restart).await {
                Ok(output) => output,
                Err(_) => {
                    killed = self.kill_if_stopping(unit).await?;
                    restart.await
                }
            },
            None => restart.await,
        }
        .map_err(RestartError::Manager)?;
        if output.status.success() {
            return Ok(("done".to_string(), killed));
        }
        if output.status.code() == Some(EXIT_UNIT_NOT_FOUND) {
            return Err(RestartError::NotFound(unit.to_string()));
        }
        job_result_from_message(&output.stderr)
            .map(|result| (result.to_string(), killed))
            .ok_or_else(|| {
                RestartError::Manager(format!(
                    "systemctl restart {unit} failed: {}",
                    output.failure()
                ))
            })
    }

    /// Sends SIGKILL to every process of the unit when it is still deactivating. Returns whether
    /// it did.
    async fn kill_if_stopping(&self, unit: &str) -> Result<bool, RestartError> {
        let status = self.restart_status(unit).await?;
        if status.active_state != ActiveState::Deactivating {
            return Ok(false);
        }
        tracing::warn!(unit, sub_state = %status.sub_state, "stop is hanging, sending SIGKILL to the unit's processes");
        let output = self
            .run(
                &["kill", "--signal=KILL", "--kill-whom=all", "--", unit],
                self.call_timeout,
            )
            .await
            .map_err(RestartError::Manager)?;
        if !output.status.success() {
            return Err(RestartError::Manager(format!(
                "systemctl kill {unit} failed: {}",
                output.failure()
            )));
        }
        Ok(true)
    }

    async fn run(&self, args: &[&str], timeout: Duration) -> Result<CommandOutput, String> {
        let (program, leading) = self
            .program
            .split_first()
            .ok_or_else(|| "no systemctl program configured".to_string())?;
        let mut argv: Vec<&str> = leading.iter().map(String::as_str).collect();
        argv.extend_from_slice(args);
        run(program, &argv, timeout).await
    }
}

/// Returns the unit's last `lines` journal lines, oldest first. The list is empty when journalctl
/// fails or runs longer than 5 s, and the reason is logged at debug level.
pub async fn journal_tail(unit: &str, lines: usize) -> Vec<String> {
    let selection = [format!("--unit={unit}")];
    journal_with("journalctl", &[], unit, &selection, lines, JOURNAL_TIMEOUT).await
}

/// Returns the last `lines` journal lines of the unit's latest start, oldest first: the entries
/// of the run whose `InvocationID` is `invocation`. journald stores that id with each line
/// the unit's processes log (`_SYSTEMD_INVOCATION_ID`), and systemd with each line it logs
/// about the run (`INVOCATION_ID`), so lines of earlier runs are left out even when they
/// came a moment before. Each of systemd's automatic restarts (`Restart=`) is a run of its
/// own.
///
/// Without an id (the unit has not started since boot, or its state could not be read), or
/// with one that is not 32 hex digits, it returns the unit's lines of the current boot.
/// Empty when journalctl fails or runs longer than 5 s.
pub async fn journal_of_latest_start(
    unit: &str,
    invocation: Option<&str>,
    lines: usize,
) -> Vec<String> {
    let selection = latest_start_selection(unit, invocation);
    journal_with("journalctl", &[], unit, &selection, lines, JOURNAL_TIMEOUT).await
}

/// Builds journalctl's match arguments for [`journal_of_latest_start`]. A `+` between two
/// matches makes journalctl show the entries that fit either one.
fn latest_start_selection(unit: &str, invocation: Option<&str>) -> Vec<String> {
    match invocation.filter(|id| id.len() == 32 && id.bytes().all(|c| c.is_ascii_hexdigit())) {
        Some(id) => vec![
            format!("_SYSTEMD_INVOCATION_ID={id}"),
            "+".to_string(),
            format!("INVOCATION_ID={id}"),
        ],
        None => vec![format!("--unit={unit}"), "--boot".to_string()],
    }
}

/// Runs `program` (journalctl) with `selection` and returns the lines it printed. `unit` only
/// names the unit in log messages.
async fn journal_with(
    program: &str,
    leading: &[&str],
    unit: &str,
    selection: &[String],
    lines: usize,
    timeout: Duration,
) -> Vec<String> {
    if lines == 0 {
        return Vec::new();
    }
    let lines_arg = format!("--lines={lines}");
    let mut argv = leading.to_vec();
    argv.extend(selection.iter().map(String::as_str));
    // --quiet drops informational lines such as "-- No entries --".
    argv.extend_from_slice(&[&lines_arg, "--no-pager", "--quiet", "--output=short-iso"]);
    match run(program, &argv, timeout).await {
        Ok(output) if output.status.success() => output
            .stdout
            .lines()
            .filter(|line| !line.is_empty() && !is_journal_marker(line))
            .map(str::to_string)
            .collect(),
        Ok(output) => {
            tracing::debug!(unit, error = %output.failure(), "cannot read the unit's journal");
            Vec::new()
        }
        Err(err) => {
            tracing::debug!(unit, error = %err, "cannot read the unit's journal");
            Vec::new()
        }
    }
}

/// journalctl's own lines between entries, such as "-- Boot 5f3c... --".
fn is_journal_marker(line: &str) -> bool {
    line.starts_with("-- ") && line.ends_with(" --")
}

struct CommandOutput {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl CommandOutput {
    /// Exit status and the last line of stderr, for error messages.
    fn failure(&self) -> String {
        let reason = match self.status.code() {
            Some(code) => format!("exit status {code}"),
            None => format!("{}", self.status),
        };
        match self
            .stderr
            .lines()
            .rev()
            .find(|line| !line.trim().is_empty())
        {
            Some(line) => format!("{reason}: {}", line.trim()),
            None => reason,
        }
    }
}

/// Runs a program without a shell, killing it when `timeout` expires.
async fn run(program: &str, args: &[&str], timeout: Duration) -> Result<CommandOutput, String> {
    let command_line = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let child = Command::new(program)
        .args(args)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| format!("cannot run {command_line}: {err}"))?;
    // Dropping the future on timeout drops the child, and kill_on_drop sends it SIGKILL.
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => Ok(CommandOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }),
        Ok(Err(err)) => Err(format!("waiting for {command_line} failed: {err}")),
        Err(_) => Err(format!(
            "{command_line} timed out after {} and was killed",
            humantime::format_duration(timeout)
        )),
    }
}

/// Maps the message of a failed `systemctl restart` to the job result it reports, or returns
/// `None` when the message names no job result. The texts come from `check_wait_response()` in
/// systemd's `src/shared/bus-wait-for-jobs.c`, and the "Job for ... failed" one was seen from
/// systemctl 252. The more specific texts are tried first.
fn job_result_from_message(stderr: &str) -> Option<&'static str> {
    let table: [(&str, &str); 9] = [
        ("A dependency job for ", "dependency"),
        (" canceled.", "canceled"),
        (" timed out.", "timeout"),
        ("Assertion failed on job for ", "assert"),
        (" not supported on this system.", "unsupported"),
        (" was garbage collected.", "collected"),
        (" was started already once ", "once"),
        (" is not active, cannot reload.", "invalid"),
        ("Job for ", "failed"),
    ];
    table
        .iter()
        .find(|(text, _)| stderr.contains(text))
        .map(|(_, result)| *result)
}

/// Parses `systemctl show --property=...` output for one unit: one `KEY=VALUE` per line, keys
/// from [`STATUS_PROPERTIES`] only, each at most once. The Unit properties are required. Other
/// unit types than services lack `MainPID`, `NRestarts` and `ExecMainStatus`, which become `None`.
fn parse_show(output: &str) -> Result<UnitStatus, String> {
    let mut values: HashMap<&str, &str> = HashMap::new();
    for (index, line) in output.lines().enumerate() {
        let number = index + 1;
        if line.is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {number} is not KEY=VALUE: {line:?}"));
        };
        if !STATUS_PROPERTIES.contains(&key) {
            return Err(format!("line {number} has the unexpected property {key:?}"));
        }
        if values.insert(key, value).is_some() {
            return Err(format!("line {number} repeats the property {key}"));
        }
    }

    let required = |key: &str| {
        values
            .get(key)
            .copied()
            .ok_or_else(|| format!("property {key} is missing"))
    };
    let main_pid: Option<u32> = parse_number(&values, "MainPID")?.filter(|pid| *pid != 0);
    Ok(UnitStatus {
        load_state: required("LoadState")?.to_string(),
        active_state: ActiveState::parse(required("ActiveState")?),
        sub_state: required("SubState")?.to_string(),
        result: values
            .get("Result")
            .copied()
            .unwrap_or_default()
            .to_string(),
        main_pid,
        main_pid_alive: main_pid.map(super::pid_alive),
        n_restarts: parse_number(&values, "NRestarts")?,
        exec_main_status: parse_number(&values, "ExecMainStatus")?,
        inactive_exit_usec: parse_number(&values, "InactiveExitTimestampMonotonic")?
            .ok_or_else(|| "property InactiveExitTimestampMonotonic is missing".to_string())?,
        // systemctl prints "InvocationID=" for a unit that has not started since boot.
        invocation_id: values
            .get("InvocationID")
            .filter(|id| !id.is_empty())
            .map(|id| id.to_string()),
    })
}

fn parse_number<T: std::str::FromStr>(
    values: &HashMap<&str, &str>,
    key: &str,
) -> Result<Option<T>, String> {
    match values.get(key) {
        None => Ok(None),
        Some(value) => value
            .parse()
            .map(Some)
            .map_err(|_| format!("property {key} is not a number: {value:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::path::Path;

    /// Bound on each test, so a hung fake command fails the test instead of stalling it.
    const TEST_TIMEOUT: Duration = Duration::from_secs(20);

    // Outputs of `systemctl show --property=<STATUS_PROPERTIES> -- UNIT` captured from systemd
    // 252 on Debian 12.
    const DOVECOT_RUNNING: &str = "MainPID=133\nResult=success\nNRestarts=0\nExecMainStatus=0\n\
        LoadState=loaded\nActiveState=active\nSubState=running\n\
        InactiveExitTimestampMonotonic=758182569\nInvocationID=fbfa157f0d5344178f9470b6d54414ca\n";
    const POSTFIX_RUNNING: &str = "MainPID=0\nResult=success\nNRestarts=0\nExecMainStatus=0\n\
        LoadState=loaded\nActiveState=active\nSubState=running\n\
        InactiveExitTimestampMonotonic=758180310\n";
    const DOVECOT_KILLED: &str = "MainPID=0\nResult=signal\nNRestarts=0\nExecMainStatus=9\n\
        LoadState=loaded\nActiveState=failed\nSubState=failed\n\
        InactiveExitTimestampMonotonic=758182569\n";
    const DOVECOT_RATE_LIMITED: &str = "MainPID=0\nResult=exit-code\nNRestarts=0\n\
        ExecMainStatus=89\nLoadState=loaded\nActiveState=failed\nSubState=failed\n\
        InactiveExitTimestampMonotonic=768609002\n";
    const NOT_FOUND: &str = "MainPID=0\nResult=success\nNRestarts=0\nExecMainStatus=0\n\
        LoadState=not-found\nActiveState=inactive\nSubState=dead\n\
        InactiveExitTimestampMonotonic=0\nInvocationID=\n";
    const DBUS_SOCKET: &str = "Result=success\nLoadState=loaded\nActiveState=active\n\
        SubState=listening\nInactiveExitTimestampMonotonic=755704562\n";

    #[test]
    fn parse_running_service() {
        let status = parse_show(DOVECOT_RUNNING).unwrap();

        assert_eq!(status.load_state, "loaded");
        assert_eq!(status.active_state, ActiveState::Active);
        assert_eq!(status.sub_state, "running");
        assert_eq!(status.result, "success");
        assert_eq!(status.main_pid, Some(133));
        assert_eq!(status.n_restarts, Some(0));
        assert_eq!(status.exec_main_status, Some(0));
        assert_eq!(status.inactive_exit_usec, 758_182_569);
        assert_eq!(
            status.invocation_id.as_deref(),
            Some("fbfa157f0d5344178f9470b6d54414ca")
        );
    }

    #[test]
    fn parse_zero_main_pid_as_none() {
        let status = parse_show(POSTFIX_RUNNING).unwrap();

        assert_eq!(status.main_pid, None);
        assert_eq!(status.main_pid_alive, None);
        assert!(status.is_running());
    }

    #[test]
    fn parse_failed_services() {
        let killed = parse_show(DOVECOT_KILLED).unwrap();
        let limited = parse_show(DOVECOT_RATE_LIMITED).unwrap();

        assert_eq!(killed.active_state, ActiveState::Failed);
        assert_eq!(killed.result, "signal");
        assert_eq!(killed.exec_main_status, Some(9));
        assert_eq!(limited.active_state, ActiveState::Failed);
        assert_eq!(limited.result, "exit-code");
        assert_eq!(limited.exec_main_status, Some(89));
    }

    #[test]
    fn parse_missing_unit() {
        let status = parse_show(NOT_FOUND).unwrap();

        assert_eq!(status.load_state, "not-found");
        assert_eq!(status.active_state, ActiveState::Inactive);
        assert_eq!(status.inactive_exit_usec, 0);
        assert_eq!(status.invocation_id, None);
    }

    #[test]
    fn parse_socket_without_service_fields() {
        let status = parse_show(DBUS_SOCKET).unwrap();

        assert_eq!(status.sub_state, "listening");
        assert_eq!(status.main_pid, None);
        assert_eq!(status.n_restarts, None);
        assert_eq!(status.exec_main_status, None);
    }

    #[test]
    fn parse_rejects_malformed_output() {
        let cases = [
            ("", "property LoadState is missing"),
            (
                "LoadState=loaded\nno equals sign\n",
                "line 2 is not KEY=VALUE",
            ),
            (
                "LoadState=loaded\nLoadState=masked\n",
                "line 2 repeats the property LoadState",
            ),
            ("Id=dovecot.service\n", "unexpected property \"Id\""),
            (
                "LoadState=loaded\nActiveState=active\nSubState=running\n\
                 InactiveExitTimestampMonotonic=soon\n",
                "InactiveExitTimestampMonotonic is not a number",
            ),
            (
                "LoadState=loaded\nActiveState=active\nSubState=running\n\
                 InactiveExitTimestampMonotonic=1\nMainPID=-1\n",
                "MainPID is not a number",
            ),
            (
                "LoadState=loaded\nActiveState=active\nSubState=running\n",
                "InactiveExitTimestampMonotonic is missing",
            ),
        ];
        for (output, expected) in cases {
            let err = parse_show(output).unwrap_err();
            assert!(err.contains(expected), "{output:?}: {err}");
        }
    }

    #[test]
    fn job_results_from_messages() {
        let cases = [
            (
                "Job for dovecot.service failed because the control process exited with error code.\n\
                 See \"systemctl status dovecot.service\" and \"journalctl -xeu dovecot.service\" for details.\n",
                Some("failed"),
            ),
            ("Job for dovecot.service canceled.\n", Some("canceled")),
            ("Job for dovecot.service timed out.\n", Some("timeout")),
            (
                "A dependency job for dovecot.service failed. See 'journalctl -xe' for details.\n",
                Some("dependency"),
            ),
            ("Failed to restart x.service: Access denied\n", None),
        ];
        for (message, expected) in cases {
            assert_eq!(job_result_from_message(message), expected, "{message:?}");
        }
    }

    /// A shell script standing in for systemctl, for one unit whose state lives in files of the
    /// script's directory:
    /// - `active`, `sub`, `result` and `ts` (InactiveExitTimestampMonotonic);
    /// - `limited`: start jobs the rate limit still rejects. Unlike systemd, reset-failed keeps
    ///   this count, so a test can make the retry fail too;
    /// - the flags `start-fails`, `hang-show` and `hang-restart`;
    /// - `log`: one "COMMAND UNIT" line per run.
    ///
    /// `nosuch.service` behaves like a unit without a unit file.
    const FAKE_SYSTEMCTL: &str = r#"
S=$(dirname "$0")
cmd=$1
for arg in "$@"; do unit=$arg; done
echo "$cmd $unit" >> "$S/log"
if [ "$unit" = nosuch.service ]; then
  case $cmd in
    show) printf 'MainPID=0\nResult=success\nNRestarts=0\nExecMainStatus=0\nLoadState=not-found\nActiveState=inactive\nSubState=dead\nInactiveExitTimestampMonotonic=0\n'; exit 0;;
    restart) echo "Failed to restart $unit: Unit $unit not found." >&2; exit 5;;
    *) echo "Failed to reset failed state of unit $unit: Unit $unit not loaded." >&2; exit 1;;
  esac
fi
case $cmd in
  show)
    [ -e "$S/hang-show" ] && exec sleep 30
    printf 'MainPID=0\nResult=%s\nNRestarts=0\nExecMainStatus=0\nLoadState=loaded\nActiveState=%s\nSubState=%s\nInactiveExitTimestampMonotonic=%s\n' \
      "$(cat "$S/result")" "$(cat "$S/active")" "$(cat "$S/sub")" "$(cat "$S/ts")";;
  reset-failed)
    if [ "$(cat "$S/active")" = failed ]; then echo inactive > "$S/active"; echo dead > "$S/sub"; fi
    echo success > "$S/result";;
  restart)
    [ -e "$S/hang-restart" ] && exec sleep 30
    limited=$(cat "$S/limited")
    if [ "$limited" -gt 0 ]; then
      echo $((limited - 1)) > "$S/limited"
      echo failed > "$S/active"; echo failed > "$S/sub"
      [ "$(cat "$S/result")" = success ] && echo start-limit-hit > "$S/result"
      echo "Job for $unit failed because the control process exited with error code." >&2
      exit 1
    fi
    echo $(($(cat "$S/ts") + 1000)) > "$S/ts"
    if [ -e "$S/start-fails" ]; then
      echo failed > "$S/active"; echo failed > "$S/sub"; echo exit-code > "$S/result"
      echo "Job for $unit failed because the control process exited with error code." >&2
      exit 1
    fi
    echo active > "$S/active"; echo running > "$S/sub"; echo success > "$S/result";;
  *) echo "unknown command $cmd" >&2; exit 1;;
esac
"#;

    struct FakeUnit {
        dir: tempfile::TempDir,
    }

    impl FakeUnit {
        fn new(active: &str, result: &str, limited: u32) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let sub = match active {
                "active" => "running",
                "failed" => "failed",
                _ => "dead",
            };
            for (name, value) in [
                ("active", active.to_string()),
                ("sub", sub.to_string()),
                ("result", result.to_string()),
                ("ts", "5000".to_string()),
                ("limited", limited.to_string()),
            ] {
                std::fs::write(dir.path().join(name), format!("{value}\n")).unwrap();
            }
            std::fs::write(dir.path().join("log"), "").unwrap();
            std::fs::write(dir.path().join("systemctl"), FAKE_SYSTEMCTL).unwrap();
            FakeUnit { dir }
        }

        fn flag(&self, name: &str) {
            std::fs::write(self.dir.path().join(name), "").unwrap();
        }

        fn systemctl(&self, call_timeout: Duration) -> Systemctl {
            Systemctl {
                call_timeout,
                program: vec![
                    "/bin/sh".to_string(),
                    self.dir.path().join("systemctl").display().to_string(),
                ],
            }
        }

        fn log(&self) -> Vec<String> {
            std::fs::read_to_string(self.dir.path().join("log"))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        }

        fn count(&self, command: &str) -> usize {
            self.log()
                .iter()
                .filter(|line| line.starts_with(command))
                .count()
        }
    }

    async fn restart_fake(
        fake: &FakeUnit,
        timeout: Duration,
    ) -> Result<RestartReport, RestartError> {
        let systemctl = fake.systemctl(Duration::from_secs(5));
        tokio::time::timeout(TEST_TIMEOUT, systemctl.restart("mail.service", timeout))
            .await
            .expect("test timed out")
    }

    #[tokio::test]
    async fn restart_resets_failed_unit() {
        let fake = FakeUnit::new("failed", "signal", 0);

        let report = restart_fake(&fake, Duration::from_secs(10)).await.unwrap();

        assert!(report.reset_failed);
        assert!(!report.retried_after_rate_limit);
        assert_eq!(report.job_result, "done");
        assert_eq!(
            fake.log(),
            [
                "show mail.service",
                "reset-failed mail.service",
                "restart mail.service"
            ]
        );
    }

    #[tokio::test]
    async fn restart_retries_after_rate_limit() {
        let fake = FakeUnit::new("active", "success", 1);

        let report = restart_fake(&fake, Duration::from_secs(10)).await.unwrap();

        assert!(!report.reset_failed);
        assert!(report.retried_after_rate_limit);
        assert_eq!(report.job_result, "done");
        assert_eq!(fake.count("restart"), 2);
        assert_eq!(fake.count("reset-failed"), 1);
    }

    #[tokio::test]
    async fn restart_rejected_twice_is_start_limit() {
        let fake = FakeUnit::new("active", "success", 2);

        let err = restart_fake(&fake, Duration::from_secs(10))
            .await
            .unwrap_err();

        assert_eq!(err, RestartError::StartLimit);
        assert_eq!(fake.count("restart"), 2);
    }

    #[tokio::test]
    async fn failed_start_not_retried() {
        // The unit entered activating (its timestamp moved), so the start itself failed and a
        // second attempt would fail the same way.
        let fake = FakeUnit::new("active", "success", 0);
        fake.flag("start-fails");

        let err = restart_fake(&fake, Duration::from_secs(10))
            .await
            .unwrap_err();

        assert_eq!(
            err,
            RestartError::JobFailed {
                result: "failed".to_string()
            }
        );
        assert_eq!(fake.count("restart"), 1);
    }

    #[tokio::test]
    async fn restart_missing_unit() {
        let fake = FakeUnit::new("active", "success", 0);
        let systemctl = fake.systemctl(Duration::from_secs(5));

        let err = tokio::time::timeout(
            TEST_TIMEOUT,
            systemctl.restart("nosuch.service", Duration::from_secs(5)),
        )
        .await
        .unwrap()
        .unwrap_err();

        assert_eq!(err, RestartError::NotFound("nosuch.service".to_string()));
        assert_eq!(fake.count("restart"), 0);
    }

    #[tokio::test]
    async fn restart_hang_times_out() {
        let fake = FakeUnit::new("active", "success", 0);
        fake.flag("hang-restart");
        let started = Instant::now();

        let err = restart_fake(&fake, Duration::from_millis(400))
            .await
            .unwrap_err();

        assert_eq!(err, RestartError::Timeout(Duration::from_millis(400)));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn show_hang_times_out() {
        let fake = FakeUnit::new("active", "success", 0);
        fake.flag("hang-show");
        let systemctl = fake.systemctl(Duration::from_millis(300));

        let status = tokio::time::timeout(TEST_TIMEOUT, systemctl.status("mail.service")).await;
        let exists =
            tokio::time::timeout(TEST_TIMEOUT, systemctl.unit_exists("mail.service")).await;

        let err = status.unwrap().unwrap_err();
        assert!(err.0.contains("timed out after 300ms"), "{err}");
        assert!(!exists.unwrap());
    }

    #[tokio::test]
    async fn unit_exists_reads_load_state() {
        let fake = FakeUnit::new("inactive", "success", 0);
        let systemctl = fake.systemctl(Duration::from_secs(5));

        let loaded =
            tokio::time::timeout(TEST_TIMEOUT, systemctl.unit_exists("mail.service")).await;
        let missing =
            tokio::time::timeout(TEST_TIMEOUT, systemctl.unit_exists("nosuch.service")).await;

        assert!(loaded.unwrap());
        assert!(!missing.unwrap());
    }

    fn fake_journalctl(dir: &Path, body: &str) -> String {
        let path = dir.join("journalctl");
        std::fs::write(&path, body).unwrap();
        path.display().to_string()
    }

    #[tokio::test]
    async fn journal_tail_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        // Prints its arguments first, so the test can check the journalctl command line.
        let script = fake_journalctl(
            dir.path(),
            "echo \"$*\"\n\
             echo '-- Boot 0123456789abcdef --'\n\
             echo '2026-12-04T20:16:47+0000 vm systemd[1]: dovecot.service: Start request repeated too quickly.'\n\
             echo '2026-12-04T20:16:47+0000 vm systemd[1]: Failed to start dovecot.service - Dovecot IMAP/POP3 email server.'\n",
        );

        let lines = tokio::time::timeout(
            TEST_TIMEOUT,
            journal_with(
                "/bin/sh",
                &[&script],
                "dovecot.service",
                &["--unit=dovecot.service".to_string()],
                2,
                JOURNAL_TIMEOUT,
            ),
        )
        .await
        .unwrap();

        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(
            lines[0],
            "--unit=dovecot.service --lines=2 --no-pager --quiet --output=short-iso"
        );
        assert!(lines[1].ends_with("Start request repeated too quickly."));
        assert!(lines[2].contains("Failed to start dovecot.service"));
    }

    #[test]
    fn latest_start_selection_by_invocation() {
        let id = "fbfa157f0d5344178f9470b6d54414ca";

        let by_id = latest_start_selection("dovecot.service", Some(id));
        let never_started = latest_start_selection("dovecot.service", None);
        let malformed = latest_start_selection("dovecot.service", Some("fbfa+INVOCATION_ID=x"));

        assert_eq!(
            by_id,
            [
                "_SYSTEMD_INVOCATION_ID=fbfa157f0d5344178f9470b6d54414ca",
                "+",
                "INVOCATION_ID=fbfa157f0d5344178f9470b6d54414ca"
            ]
        );
        assert_eq!(never_started, ["--unit=dovecot.service", "--boot"]);
        assert_eq!(malformed, never_started);
    }

    #[tokio::test]
    async fn journal_tail_empty_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let failing = fake_journalctl(dir.path(), "echo 'a line'\necho 'no journal' >&2\nexit 1\n");
        let hanging = dir.path().join("hang");
        std::fs::write(&hanging, "echo 'a line'\nexec sleep 30\n").unwrap();
        let hanging = hanging.display().to_string();
        let short = Duration::from_millis(300);

        let unit = ["--unit=x.service".to_string()];

        let failed = journal_with("/bin/sh", &[&failing], "x.service", &unit, 5, short).await;
        let started = Instant::now();
        let hung = journal_with("/bin/sh", &[&hanging], "x.service", &unit, 5, short).await;
        let hang_elapsed = started.elapsed();
        let missing =
            journal_with("/nonexistent/journalctl", &[], "x.service", &unit, 5, short).await;
        let zero = journal_with("/bin/sh", &[&failing], "x.service", &unit, 0, short).await;

        assert!(failed.is_empty(), "{failed:?}");
        assert!(hung.is_empty(), "{hung:?}");
        assert!(hang_elapsed < Duration::from_secs(3), "{hang_elapsed:?}");
        assert!(missing.is_empty(), "{missing:?}");
        assert!(zero.is_empty(), "{zero:?}");
    }
}
