//! Command probe: runs a program without a shell, and exit status 0 means healthy.
//!
//! The program runs in its own process group, so that a timeout kills the children of a
//! script as well. [`run_program`] is shared with probes that wrap a client program, such as
//! `fail2ban`.

use std::ffi::OsStr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio::task::JoinHandle;

use super::io::quote;
use super::{Context, Outcome, Passed};

/// Bytes kept of each output stream; older output is dropped.
const OUTPUT_KEEP_BYTES: usize = 8 * 1024;

/// How long to keep reading output after the program exited. A daemon that the program
/// started may inherit the pipes and hold them open for its whole life.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// Runs `argv` within the timeout: exit status 0 is healthy, anything else fails with the
/// status and the last line of standard error.
pub(super) async fn check(context: &Context<'_>, argv: &[String]) -> Result<Passed, Outcome> {
    let Some((program, args)) = argv.split_first() else {
        return Err(Outcome::Failed {
            error: "the command probe has an empty command; give the program and its \
                    arguments as a list"
                .to_string(),
        });
    };

    // Run the program and collect the end of its output.
    let finished = run_program(Path::new(program), args, "command", context.timeout).await?;

    // Exit status 0 is healthy; otherwise report the status and what the program printed last.
    if finished.status.success() {
        return Ok(Passed::default());
    }
    let mut error = format!("{} {}", argv.join(" "), describe_status(finished.status));
    if let Some(line) = last_line(&finished.stderr) {
        error.push_str(&format!(": {}", quote(line.as_bytes())));
    }
    Err(Outcome::Failed { error })
}

/// A program that exited, with the last `OUTPUT_KEEP_BYTES` of each output stream.
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `program` with `args` and no standard input until it exits or `limit` passes. On
/// timeout, kills the program's process group and returns `TimedOut` at `step_name`. A
/// program that cannot be started is `Failed`, naming it.
pub(crate) async fn run_program<S: AsRef<OsStr>>(
    program: &Path,
    args: &[S],
    step_name: &str,
    limit: Duration,
) -> Result<Finished, Outcome> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A group of its own, so that a timeout also reaches the program's children.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Outcome::Failed {
            error: format!(
                "cannot run {}: {error}; check that the program exists and is executable",
                program.display()
            ),
        })?;
    let group = child.id().and_then(|pid| i32::try_from(pid).ok());
    let mut stdout = tokio::spawn(keep_tail(child.stdout.take()));
    let mut stderr = tokio::spawn(keep_tail(child.stderr.take()));

    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(error)) => {
            stdout.abort();
            stderr.abort();
            return Err(Outcome::Failed {
                error: format!("waiting for {} failed: {error}", program.display()),
            });
        }
        Err(_) => {
            // The child is not reaped yet, so its PID, which is also the group ID, cannot
            // have been reused.
            if let Some(group) = group {
                crate::manager::command::kill_process_group(group);
            }
            stdout.abort();
            stderr.abort();
            return Err(Outcome::TimedOut {
                step: step_name.to_string(),
                after: limit,
            });
        }
    };

    Ok(Finished {
        status,
        stdout: collect(&mut stdout).await,
        stderr: collect(&mut stderr).await,
    })
}

/// Reads a stream to its end and returns its last `OUTPUT_KEEP_BYTES`.
async fn keep_tail<R: AsyncRead + Unpin>(stream: Option<R>) -> Vec<u8> {
    let mut tail = Vec::new();
    let Some(mut stream) = stream else {
        return tail;
    };
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return tail,
            Ok(count) => {
                tail.extend_from_slice(&chunk[..count]);
                if tail.len() > OUTPUT_KEEP_BYTES {
                    tail.drain(..tail.len() - OUTPUT_KEEP_BYTES);
                }
            }
        }
    }
}

/// Waits up to `OUTPUT_GRACE` for a reader task. A stream still held open by a background
/// process then counts as empty.
async fn collect(reader: &mut JoinHandle<Vec<u8>>) -> Vec<u8> {
    match tokio::time::timeout(OUTPUT_GRACE, &mut *reader).await {
        Ok(Ok(tail)) => tail,
        Ok(Err(_)) => Vec::new(),
        Err(_) => {
            reader.abort();
            Vec::new()
        }
    }
}

/// Returns the last line of `output` that is not blank, trimmed.
pub(super) fn last_line(output: &[u8]) -> Option<String> {
    String::from_utf8_lossy(output)
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty())
        .map(str::to_string)
}

/// Describes an exit status: "exited with status N" or "was killed by signal N".
pub(crate) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::super::{run, ProbeReport, ProbeSpec, Protocol};
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    /// Bound on each test, so that a probe that hangs fails the test.
    const TEST_LIMIT: Duration = Duration::from_secs(20);

    async fn probe(argv: &[&str], limit: Duration) -> ProbeReport {
        let spec = ProbeSpec::new(
            Protocol::Command {
                argv: argv.iter().map(|arg| arg.to_string()).collect(),
            },
            None,
            "test",
        );
        tokio::time::timeout(TEST_LIMIT, run(&spec, limit))
            .await
            .expect("probe hung")
    }

    #[tokio::test]
    async fn true_healthy() {
        let report = probe(&["true"], LIMIT).await;

        assert!(report.outcome.is_healthy(), "{report}");
    }

    #[tokio::test]
    async fn false_fails() {
        let report = probe(&["false"], LIMIT).await;

        assert_eq!(
            report.outcome,
            Outcome::Failed {
                error: "false exited with status 1".into()
            }
        );
    }

    #[tokio::test]
    async fn stderr_last_line_quoted() {
        let script = "echo first >&2; echo 'database \"mail\" unreachable' >&2; echo >&2; exit 3";

        let report = probe(&["sh", "-c", script], LIMIT).await;

        let Outcome::Failed { error } = &report.outcome else {
            panic!("expected failed, got {report}");
        };
        assert!(error.contains("exited with status 3"), "{error}");
        assert!(
            error.ends_with(": \"database \\\"mail\\\" unreachable\""),
            "{error}"
        );
    }

    #[tokio::test]
    async fn no_shell_used() {
        // Without a shell, `;` and `$HOME` reach echo as they are, and the probe passes.
        let report = probe(&["echo", "a;", "false", "$HOME"], LIMIT).await;

        assert!(report.outcome.is_healthy(), "{report}");
    }

    #[tokio::test]
    async fn signal_reported() {
        let report = probe(&["sh", "-c", "kill -TERM $$"], LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Failed { error } if error.ends_with("was killed by signal 15")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn sleep_times_out() {
        let started = Instant::now();

        let report = probe(&["sleep", "30"], Duration::from_millis(300)).await;

        assert_eq!(
            report.outcome,
            Outcome::TimedOut {
                step: "command".into(),
                after: Duration::from_millis(300)
            }
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn timeout_kills_children() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());

        let report = probe(&["sh", "-c", &script], Duration::from_millis(500)).await;

        assert!(
            matches!(report.outcome, Outcome::TimedOut { .. }),
            "{report}"
        );
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The killed child stays a zombie until its parent's parent reaps it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!alive(pid), "child {pid} of the timed-out command survived");
    }

    fn alive(pid: i32) -> bool {
        crate::manager::pid_alive(pid as u32)
    }

    #[tokio::test]
    async fn background_pipe_holder() {
        // A command that leaves a process holding stdout open must finish when it exits.
        let started = Instant::now();

        let report = probe(&["sh", "-c", "sleep 3 & exit 0"], LIMIT).await;

        assert!(report.outcome.is_healthy(), "{report}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn missing_program_fails() {
        let report = probe(&["/nonexistent/selfheal-probe-program"], LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Failed { error }
                if error.starts_with("cannot run /nonexistent/selfheal-probe-program:")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn empty_argv_fails() {
        let report = probe(&[], LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Failed { error } if error.contains("empty command")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn output_tail_bounded() {
        let finished = tokio::time::timeout(
            TEST_LIMIT,
            run_program(
                Path::new("sh"),
                &["-c", "head -c 100000 /dev/zero; echo end"],
                "command",
                LIMIT,
            ),
        )
        .await
        .unwrap()
        .unwrap();

        assert_eq!(finished.stdout.len(), OUTPUT_KEEP_BYTES);
        assert!(finished.stdout.ends_with(b"end\n"));
        assert!(finished.stderr.is_empty());
    }

    #[test]
    fn last_line_skips_blank() {
        assert_eq!(last_line(b"a\n  b  \n\n \n"), Some("b".into()));
        assert_eq!(last_line(b"\n\n"), None);
    }
}
