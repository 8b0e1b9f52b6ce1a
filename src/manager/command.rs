//! Per-service commands for hosts without systemd (sysvinit, OpenRC, containers).
//!
//! The state comes from a pidfile or a process name; restarts run the configured commands. A
//! command runs without a shell, in its own process group, and the whole group is killed when the
//! restart timeout expires.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::process::{ChildStderr, Command};
use tokio::time::Instant;

use super::{pid_alive, ActiveState, ManagerError, RestartError, RestartReport, UnitStatus};

/// Commands and the process check of a service not managed by systemd. Each command is an
/// argument vector run without a shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandSpec {
    pub start: Option<Vec<String>>,
    pub stop: Option<Vec<String>>,
    pub restart: Option<Vec<String>>,
    /// File holding the main PID; the service runs while that process lives.
    pub pidfile: Option<PathBuf>,
    /// Process name (as in `/proc/PID/comm`) to look for when there is no pidfile.
    pub process: Option<String>,
}

impl CommandSpec {
    pub fn label(&self) -> String {
        match (&self.restart, &self.start) {
            (Some(cmd), _) | (None, Some(cmd)) => cmd.join(" "),
            (None, None) => "commands".to_string(),
        }
    }
}

/// The kernel keeps at most 15 bytes of a process name in `/proc/PID/comm`.
const COMM_MAX_BYTES: usize = 15;

/// Bytes of a command's stderr kept for the error message; older output is dropped.
const STDERR_KEEP_BYTES: usize = 8 * 1024;

/// How long to keep reading stderr after a command exited. A daemon the command started may
/// inherit the pipe and hold it open for its whole life, so end of file cannot be awaited.
const STDERR_GRACE: Duration = Duration::from_millis(200);

/// Reads the service's state: from the pidfile when one is configured, else by looking for a
/// process whose `/proc/PID/comm` equals `process`.
///
/// A missing, empty or malformed pidfile, or one naming a dead process, gives an inactive
/// status with the reason in `result`. Only an unreadable pidfile or `/proc` is an error.
pub async fn status(spec: &CommandSpec) -> Result<UnitStatus, ManagerError> {
    if let Some(pidfile) = &spec.pidfile {
        return status_from_pidfile(pidfile).await;
    }
    if let Some(name) = &spec.process {
        let process_name = name.clone();
        let found = tokio::task::spawn_blocking(move || find_process(&process_name))
            .await
            .map_err(|err| ManagerError(format!("scanning /proc for {}: {err}", spec.label())))?
            .map_err(|err| ManagerError(format!("scanning /proc for {}: {err}", spec.label())))?;
        return Ok(match found {
            Some(pid) => running(pid),
            None => stopped(format!("no process named {name:?} is running"), None),
        });
    }
    Err(ManagerError(format!(
        "{}: neither pidfile nor process is configured; set one of them so selfheal can tell \
         whether the service runs",
        spec.label()
    )))
}

/// Restarts the service: the `restart` command if configured, else `stop` (a failure is logged
/// and tolerated) followed by `start`. `timeout` bounds all commands together.
pub async fn restart(spec: &CommandSpec, timeout: Duration) -> Result<RestartReport, RestartError> {
    let started = Instant::now();
    let deadline = started + timeout;

    if let Some(restart) = &spec.restart {
        run_step("restart", restart, deadline, timeout).await?;
    } else if let Some(start) = &spec.start {
        if let Some(stop) = &spec.stop {
            match run_step("stop", stop, deadline, timeout).await {
                Ok(()) => {}
                Err(err @ RestartError::Timeout(_)) => return Err(err),
                Err(err) => {
                    tracing::warn!(service = %spec.label(), error = %err, "stop command failed, running the start command anyway");
                }
            }
        }
        run_step("start", start, deadline, timeout).await?;
    } else {
        return Err(RestartError::Manager(format!(
            "{}: no restart or start command is configured; set restart, or start (and \
             optionally stop)",
            spec.label()
        )));
    }

    Ok(RestartReport {
        reset_failed: false,
        job_result: "exit 0".to_string(),
        elapsed: started.elapsed(),
        retried_after_rate_limit: false,
        killed: false,
    })
}

async fn status_from_pidfile(pidfile: &Path) -> Result<UnitStatus, ManagerError> {
    let content = match tokio::fs::read(pidfile).await {
        Ok(content) => content,
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Ok(stopped(
                format!("pidfile {} does not exist", pidfile.display()),
                None,
            ))
        }
        Err(err) => {
            return Err(ManagerError(format!(
                "cannot read pidfile {}: {err}; check its permissions",
                pidfile.display()
            )))
        }
    };
    let pid = match parse_pid(&content) {
        Ok(pid) => pid,
        Err(reason) => {
            return Ok(stopped(
                format!("pidfile {} {reason}", pidfile.display()),
                None,
            ))
        }
    };
    if pid_alive(pid) {
        Ok(running(pid))
    } else {
        Ok(stopped(
            format!(
                "PID {pid} from pidfile {} is not running",
                pidfile.display()
            ),
            Some(pid),
        ))
    }
}

/// Parses a pidfile: one decimal PID greater than 0, with optional surrounding whitespace.
fn parse_pid(content: &[u8]) -> Result<u32, String> {
    let Ok(text) = std::str::from_utf8(content) else {
        return Err("is not text".to_string());
    };
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".to_string());
    }
    let invalid = || {
        let excerpt: String = text.chars().take(40).collect();
        format!("does not contain a valid PID: {excerpt:?}")
    };
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(invalid());
    }
    match text.parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(invalid()),
    }
}

/// Returns the lowest PID whose `/proc/PID/comm` equals `name`, skipping zombies. A `name`
/// longer than the kernel keeps in `comm` is compared by its first 15 bytes.
fn find_process(name: &str) -> io::Result<Option<u32>> {
    let expected_comm = &name.as_bytes()[..name.len().min(COMM_MAX_BYTES)];
    let mut found: Option<u32> = None;
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // The process may exit between read_dir and this read.
        let Ok(comm) = std::fs::read(entry.path().join("comm")) else {
            continue;
        };
        let comm = comm.strip_suffix(b"\n").unwrap_or(&comm);
        if comm == expected_comm && pid_alive(pid) && found.is_none_or(|lowest| pid < lowest) {
            found = Some(pid);
        }
    }
    Ok(found)
}

fn running(pid: u32) -> UnitStatus {
    UnitStatus {
        load_state: "loaded".to_string(),
        active_state: ActiveState::Active,
        sub_state: "running".to_string(),
        result: "success".to_string(),
        main_pid: Some(pid),
        main_pid_alive: Some(true),
        n_restarts: None,
        exec_main_status: None,
        inactive_exit_usec: 0,
        invocation_id: None,
    }
}

/// Builds an inactive status with `reason` in `result`. `dead_pid` is a PID that was found but is
/// not alive.
fn stopped(reason: String, dead_pid: Option<u32>) -> UnitStatus {
    UnitStatus {
        load_state: "loaded".to_string(),
        active_state: ActiveState::Inactive,
        sub_state: "dead".to_string(),
        result: reason,
        main_pid: dead_pid,
        main_pid_alive: dead_pid.map(|_| false),
        n_restarts: None,
        exec_main_status: None,
        inactive_exit_usec: 0,
        invocation_id: None,
    }
}

/// Runs one command until it exits or `deadline` passes. `timeout` is the caller's whole budget,
/// reported in `RestartError::Timeout`.
async fn run_step(
    step: &str,
    argv: &[String],
    deadline: Instant,
    timeout: Duration,
) -> Result<(), RestartError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(RestartError::Manager(format!(
            "the {step} command is empty; give the program and its arguments as a list"
        )));
    };
    let command_line = argv.join(" ");

    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout can kill the children of a script as well.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| {
            RestartError::Manager(format!(
                "cannot run the {step} command {command_line}: {err}"
            ))
        })?;
    let group = child.id().and_then(|pid| i32::try_from(pid).ok());

    let stderr_tail = Arc::new(Mutex::new(Vec::new()));
    let mut reader = tokio::spawn(keep_stderr_tail(
        child.stderr.take(),
        Arc::clone(&stderr_tail),
    ));

    let status = match tokio::time::timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(err)) => {
            reader.abort();
            return Err(RestartError::Manager(format!(
                "waiting for the {step} command {command_line} failed: {err}"
            )));
        }
        Err(_) => {
            // The child has not been reaped, so its PID, and with it the group ID, cannot have
            // been reused yet.
            if let Some(group) = group {
                kill_process_group(group);
            }
            reader.abort();
            tracing::warn!(step, command = %command_line, "command timed out, killed its process group");
            return Err(RestartError::Timeout(timeout));
        }
    };

    if tokio::time::timeout(STDERR_GRACE, &mut reader)
        .await
        .is_err()
    {
        reader.abort();
    }
    if status.success() {
        tracing::debug!(step, command = %command_line, "command succeeded");
        return Ok(());
    }
    let tail = match stderr_tail.lock() {
        Ok(tail) => last_line(&tail),
        Err(poisoned) => last_line(&poisoned.into_inner()),
    };
    Err(RestartError::JobFailed {
        result: describe_failure(status, tail.as_deref()),
    })
}

/// Reads a command's stderr to its end, keeping the last [`STDERR_KEEP_BYTES`] in `tail`.
async fn keep_stderr_tail(stderr: Option<ChildStderr>, tail: Arc<Mutex<Vec<u8>>>) {
    let Some(mut stderr) = stderr else {
        return;
    };
    let mut chunk = [0u8; 4096];
    loop {
        match stderr.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                let mut tail = match tail.lock() {
                    Ok(tail) => tail,
                    Err(poisoned) => poisoned.into_inner(),
                };
                tail.extend_from_slice(&chunk[..read]);
                if tail.len() > STDERR_KEEP_BYTES {
                    let excess = tail.len() - STDERR_KEEP_BYTES;
                    tail.drain(..excess);
                }
            }
        }
    }
}

fn last_line(output: &[u8]) -> Option<String> {
    String::from_utf8_lossy(output)
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_string)
}

/// "exit status N: <last stderr line>", or "killed by signal N" when no exit code exists.
fn describe_failure(status: ExitStatus, stderr_line: Option<&str>) -> String {
    let reason = match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    };
    match stderr_line {
        Some(line) => format!("{reason}: {line}"),
        None => reason,
    }
}

/// Sends SIGKILL to a process group, so that a timed-out command's children die with it.
/// Shared with the command probe.
pub(crate) fn kill_process_group(group: i32) {
    // SAFETY: kill(2) takes two integers and reads no memory of this process. A negative PID
    // addresses the process group, which the caller guarantees is still the command's.
    let rc = unsafe { libc::kill(-group, libc::SIGKILL) };
    if rc != 0 {
        tracing::debug!(group, error = %io::Error::last_os_error(), "cannot kill the command's process group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    use tokio::process::Child;

    /// Bound on each test, so a hung command or /proc scan fails the test instead of stalling it.
    const TEST_TIMEOUT: Duration = Duration::from_secs(20);

    fn spec() -> CommandSpec {
        CommandSpec {
            start: None,
            stop: None,
            restart: None,
            pidfile: None,
            process: None,
        }
    }

    /// An argv running `body` as a shell script file through `/bin/sh`. The script is not executed
    /// directly, so writing it cannot race with a fork in another test thread (ETXTBSY).
    fn script(dir: &Path, name: &str, body: &str) -> Vec<String> {
        let path = dir.join(name);
        std::fs::write(&path, format!("set -e\n{body}\n")).expect("write test script");
        vec!["/bin/sh".to_string(), path.display().to_string()]
    }

    fn sleeper(program: &Path) -> Child {
        Command::new(program)
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .expect("start sleep")
    }

    async fn with_timeout<F: std::future::Future>(future: F) -> F::Output {
        tokio::time::timeout(TEST_TIMEOUT, future)
            .await
            .expect("test timed out")
    }

    #[tokio::test]
    async fn pidfile_with_live_pid_is_running() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = sleeper(Path::new("sleep"));
        let pid = child.id().unwrap();
        let pidfile = dir.path().join("service.pid");
        std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
        let spec = CommandSpec {
            pidfile: Some(pidfile),
            ..spec()
        };

        let status = with_timeout(status(&spec)).await.unwrap();

        assert_eq!(status.active_state, ActiveState::Active);
        assert_eq!(status.sub_state, "running");
        assert_eq!(status.main_pid, Some(pid));
        assert_eq!(status.main_pid_alive, Some(true));
        assert!(status.is_running());
        child.kill().await.unwrap();
    }

    #[tokio::test]
    async fn pidfile_with_dead_pid_is_inactive() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id().unwrap();
        child.wait().await.unwrap();
        let pidfile = dir.path().join("service.pid");
        std::fs::write(&pidfile, pid.to_string()).unwrap();
        let spec = CommandSpec {
            pidfile: Some(pidfile),
            ..spec()
        };

        let status = with_timeout(status(&spec)).await.unwrap();

        assert_eq!(status.active_state, ActiveState::Inactive);
        assert_eq!(status.main_pid, Some(pid));
        assert_eq!(status.main_pid_alive, Some(false));
        assert!(
            status.result.contains("is not running"),
            "{}",
            status.result
        );
        assert!(!status.is_running());
    }

    #[tokio::test]
    async fn pidfile_garbage_is_inactive() {
        let dir = tempfile::tempdir().unwrap();
        let cases: [(&[u8], &str); 8] = [
            (b"", "is empty"),
            (b" \n", "is empty"),
            (b"abc\n", "does not contain a valid PID"),
            (b"-5\n", "does not contain a valid PID"),
            (b"0\n", "does not contain a valid PID"),
            (b"12 34\n", "does not contain a valid PID"),
            (b"99999999999\n", "does not contain a valid PID"),
            (b"\xff\xfe", "is not text"),
        ];
        for (content, reason) in cases {
            let pidfile = dir.path().join("service.pid");
            std::fs::write(&pidfile, content).unwrap();
            let spec = CommandSpec {
                pidfile: Some(pidfile),
                ..spec()
            };

            let status = with_timeout(status(&spec)).await.unwrap();

            assert_eq!(status.active_state, ActiveState::Inactive, "{content:?}");
            assert_eq!(status.main_pid, None, "{content:?}");
            assert!(
                status.result.contains(reason),
                "{content:?}: {}",
                status.result
            );
        }
    }

    #[tokio::test]
    async fn pidfile_missing_is_inactive() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CommandSpec {
            pidfile: Some(dir.path().join("absent.pid")),
            ..spec()
        };

        let status = with_timeout(status(&spec)).await.unwrap();

        assert_eq!(status.active_state, ActiveState::Inactive);
        assert!(
            status.result.contains("does not exist"),
            "{}",
            status.result
        );
    }

    #[test]
    fn parse_pid_accepts_whitespace() {
        assert_eq!(parse_pid(b"4242\n"), Ok(4242));
        assert_eq!(parse_pid(b"  17  \n"), Ok(17));
        assert!(parse_pid(b"+17").is_err());
        assert!(parse_pid(b"17\n18\n").is_err());
    }

    #[tokio::test]
    async fn process_name_found() {
        // comm is the name of the executed file, so a uniquely named link to sleep gives a
        // process no other test or host program shares.
        let dir = tempfile::tempdir().unwrap();
        let name = format!("shp{}", std::process::id());
        let link = dir.path().join(&name);
        std::os::unix::fs::symlink(which_sleep(), &link).unwrap();
        let mut child = sleeper(&link);
        let pid = child.id().unwrap();
        let spec = CommandSpec {
            process: Some(name),
            ..spec()
        };

        let status = with_timeout(status(&spec)).await.unwrap();

        assert_eq!(status.active_state, ActiveState::Active);
        assert_eq!(status.main_pid, Some(pid));
        child.kill().await.unwrap();
    }

    #[tokio::test]
    async fn process_name_longer_than_comm() {
        let dir = tempfile::tempdir().unwrap();
        let name = format!("selfheal-long-process-name-{}", std::process::id());
        let link = dir.path().join(&name);
        std::os::unix::fs::symlink(which_sleep(), &link).unwrap();
        let mut child = sleeper(&link);
        let pid = child.id().unwrap();
        let spec = CommandSpec {
            process: Some(name),
            ..spec()
        };

        let status = with_timeout(status(&spec)).await.unwrap();

        assert_eq!(status.main_pid, Some(pid));
        child.kill().await.unwrap();
    }

    #[tokio::test]
    async fn process_name_absent_is_inactive() {
        let spec = CommandSpec {
            process: Some(format!("nothing{}", std::process::id())),
            ..spec()
        };

        let status = with_timeout(status(&spec)).await.unwrap();

        assert_eq!(status.active_state, ActiveState::Inactive);
        assert!(
            status.result.contains("no process named"),
            "{}",
            status.result
        );
    }

    #[tokio::test]
    async fn status_without_pidfile_or_process() {
        let err = with_timeout(status(&spec())).await.unwrap_err();

        assert!(err.0.contains("neither pidfile nor process"), "{err}");
    }

    #[tokio::test]
    async fn restart_command_runs() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("restarted");
        let spec = CommandSpec {
            restart: Some(script(
                dir.path(),
                "restart.sh",
                &format!("touch {}", marker.display()),
            )),
            // Never run: restart takes precedence.
            start: Some(vec!["/bin/false".to_string()]),
            ..spec()
        };

        let report = with_timeout(restart(&spec, Duration::from_secs(5)))
            .await
            .unwrap();

        assert_eq!(report.job_result, "exit 0");
        assert!(!report.reset_failed);
        assert!(!report.retried_after_rate_limit);
        assert!(marker.exists());
    }

    #[tokio::test]
    async fn stop_failure_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let spec = CommandSpec {
            stop: Some(script(
                dir.path(),
                "stop.sh",
                &format!(
                    "echo stop >> {}\necho 'not running' >&2\nexit 7",
                    log.display()
                ),
            )),
            start: Some(script(
                dir.path(),
                "start.sh",
                &format!("echo start >> {}", log.display()),
            )),
            ..spec()
        };

        let report = with_timeout(restart(&spec, Duration::from_secs(5)))
            .await
            .unwrap();

        assert_eq!(report.job_result, "exit 0");
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "stop\nstart\n");
    }

    #[tokio::test]
    async fn start_failure_names_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let spec = CommandSpec {
            start: Some(script(
                dir.path(),
                "start.sh",
                "echo 'checking config' >&2\necho 'main.cf line 3: bad value' >&2\necho '' >&2\nexit 3",
            )),
            ..spec()
        };

        let err = with_timeout(restart(&spec, Duration::from_secs(5)))
            .await
            .unwrap_err();

        assert_eq!(
            err,
            RestartError::JobFailed {
                result: "exit status 3: main.cf line 3: bad value".to_string()
            }
        );
    }

    #[tokio::test]
    async fn start_failure_without_stderr() {
        let spec = CommandSpec {
            start: Some(vec!["/bin/false".to_string()]),
            ..spec()
        };

        let err = with_timeout(restart(&spec, Duration::from_secs(5)))
            .await
            .unwrap_err();

        assert_eq!(
            err,
            RestartError::JobFailed {
                result: "exit status 1".to_string()
            }
        );
    }

    #[tokio::test]
    async fn hanging_command_killed() {
        let dir = tempfile::tempdir().unwrap();
        let child_pidfile = dir.path().join("child.pid");
        // The script's child is in the same process group, and both must die on timeout.
        let spec = CommandSpec {
            restart: Some(script(
                dir.path(),
                "hang.sh",
                &format!("sleep 30 &\necho $! > {}\nwait", child_pidfile.display()),
            )),
            ..spec()
        };
        let started = Instant::now();

        let err = with_timeout(restart(&spec, Duration::from_millis(500)))
            .await
            .unwrap_err();

        assert_eq!(err, RestartError::Timeout(Duration::from_millis(500)));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let child_pid: u32 = std::fs::read_to_string(&child_pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is delivered at once, but the child lingers as a zombie until init reaps it.
        let gone_by = Instant::now() + Duration::from_secs(5);
        while pid_alive(child_pid) && Instant::now() < gone_by {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !pid_alive(child_pid),
            "child {child_pid} of the timed-out script survived"
        );
    }

    #[tokio::test]
    async fn daemon_holding_stderr_does_not_block() {
        // A start command that leaves a background process with its stderr still open must
        // return when the command exits, not when the daemon closes the pipe.
        let dir = tempfile::tempdir().unwrap();
        let daemon_pidfile = dir.path().join("daemon.pid");
        let spec = CommandSpec {
            start: Some(script(
                dir.path(),
                "start.sh",
                &format!("sleep 30 &\necho $! > {}", daemon_pidfile.display()),
            )),
            ..spec()
        };
        let started = Instant::now();

        let report = with_timeout(restart(&spec, Duration::from_secs(10))).await;

        let daemon_pid: i32 = std::fs::read_to_string(&daemon_pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let daemon_alive = pid_alive(daemon_pid as u32);
        // SAFETY: kill(2) on the PID of the test's own sleep, which is still alive (checked above
        // or harmlessly gone).
        unsafe { libc::kill(daemon_pid, libc::SIGKILL) };
        assert_eq!(report.unwrap().job_result, "exit 0");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            daemon_alive,
            "a successful start must not kill what it started"
        );
    }

    #[tokio::test]
    async fn missing_program_is_manager_error() {
        let spec = CommandSpec {
            restart: Some(vec!["/nonexistent/selfheal-test-program".to_string()]),
            ..spec()
        };

        let err = with_timeout(restart(&spec, Duration::from_secs(5)))
            .await
            .unwrap_err();

        assert!(
            matches!(&err, RestartError::Manager(text) if text.contains("cannot run the restart command")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn empty_command_rejected() {
        let spec = CommandSpec {
            restart: Some(Vec::new()),
            ..spec()
        };

        let err = with_timeout(restart(&spec, Duration::from_secs(5)))
            .await
            .unwrap_err();

        assert!(
            matches!(&err, RestartError::Manager(text) if text.contains("restart command is empty")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn restart_without_commands() {
        let spec = CommandSpec {
            stop: Some(vec!["/bin/true".to_string()]),
            ..spec()
        };

        let err = with_timeout(restart(&spec, Duration::from_secs(5)))
            .await
            .unwrap_err();

        assert!(
            matches!(&err, RestartError::Manager(text) if text.contains("no restart or start command")),
            "{err:?}"
        );
    }

    fn which_sleep() -> PathBuf {
        ["/usr/bin/sleep", "/bin/sleep"]
            .iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .expect("sleep binary in /usr/bin or /bin")
    }
}
