//! End-to-end test rig: a real systemd, contained in its own namespaces, that manages the real
//! Debian mail services installed on the host.
//!
//! `Rig::boot` runs `rig/up.sh`, every other method runs commands inside through `rig/exec.sh`,
//! and dropping the rig runs `rig/down.sh`. Those scripts describe what the rig isolates from
//! the host. The rig needs root, overlayfs, cgroup v2 and the packages that
//! `rig/install-packages.sh` installs; `scripts/test.sh` provides all of that.
//!
//! A rig named NAME lives in `$SELFHEAL_RIG_BASE/NAME` (default `/tmp/selfheal-rig/NAME`),
//! which is the same path on the host and inside the rig and is writable from both sides.
//! Every boot wipes that directory first, so a test starts from the packages as installed.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use std::cell::RefCell;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// Path of the selfheal binary under test. It lives in the cargo target directory, which is
/// visible read-only inside the rig at the same path.
pub const SELFHEAL_BIN: &str = env!("CARGO_BIN_EXE_selfheal");

const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Undoes quoted-printable soft line breaks and `=3D`, and joins folded header lines, so that
/// a test can look for a sentence of a stored mail in one piece.
pub fn unfold_mail(mail: &str) -> String {
    mail.replace("=\r\n", "")
        .replace("=\n", "")
        .replace("\r\n ", " ")
        .replace("\n ", " ")
        .replace("=3D", "=")
}
const DEFAULT_BASE: &str = "/tmp/selfheal-rig";

/// PATH for commands run inside the rig: systemd's default, so that commands find Debian's
/// programs rather than whatever the caller's PATH puts first (pyenv's python3, say).
const RIG_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Seconds that `Rig::boot` waits while another process (another test binary or another
/// checkout of the project) uses a rig of the same name.
const OWNER_WAIT_SECONDS: &str = "600";

/// Serializes rigs within one test binary. A rig runs a whole mail stack, and the test
/// machines have 2 cores.
static RIG_LOCK: Mutex<()> = Mutex::new(());

/// A running rig. Dropping it stops the rig, also while a test panics.
pub struct Rig {
    name: String,
    dir: PathBuf,
    systemd_pid: u32,
    /// Write end of the pipe that `rig/up.sh --guard` left on the guard's standard input.
    /// The kernel closes it when this process dies in any way, and the guard then stops the
    /// rig, so a killed test run leaves no rig behind.
    guard: Option<ChildStdin>,
    sink_dirs: RefCell<Vec<PathBuf>>,
    _serial: MutexGuard<'static, ()>,
}

impl Rig {
    /// Boots a fresh rig named `name` and applies `rig/configure.sh` inside.
    ///
    /// Waits for other rigs of this test binary to end first. A rig of the same name that an
    /// earlier, killed run left behind is stopped and wiped. Panics with the output of
    /// `rig/up.sh`, which names what is missing, when the rig cannot boot: not root, no
    /// overlayfs or cgroup v2, packages not installed.
    pub fn boot(name: &str) -> Rig {
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "invalid rig name {name:?}: use letters, digits, '-' and '_'"
        );
        // A test that panicked while holding a rig poisons the lock, but its rig is already
        // down because `Drop` ran during the unwinding, so the lock can be taken over.
        let lock_requested = Instant::now();
        let serial = RIG_LOCK.lock().unwrap_or_else(PoisonError::into_inner);
        let lock_wait = lock_requested.elapsed();
        let dir = rig_base().join(name);
        let bin_dir = Path::new(SELFHEAL_BIN)
            .parent()
            .expect("CARGO_BIN_EXE_selfheal has a parent directory");

        let started = Instant::now();
        let mut up = script("up.sh");
        up.args([
            "--guard",
            "--wait",
            OWNER_WAIT_SECONDS,
            "--keep",
            REPO,
            "--keep",
        ])
        .arg(bin_dir)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = up
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {REPO}/rig/up.sh: {error}"));
        // Taken before waiting, because wait_with_output closes a standard input it still owns.
        let guard = child.stdin.take();
        let output = child
            .wait_with_output()
            .unwrap_or_else(|error| panic!("cannot wait for rig/up.sh: {error}"));
        if !output.status.success() {
            panic!(
                "rig {name} did not boot: rig/up.sh {}\n{}{}\n\
                 End-to-end tests need root, overlayfs, cgroup v2 and the packages of \
                 rig/install-packages.sh: run them with `sudo scripts/test.sh`.",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
        print!("{}", String::from_utf8_lossy(&output.stdout));
        eprint!("{}", String::from_utf8_lossy(&output.stderr));

        let pid_file = dir.join("state/systemd.pid");
        let systemd_pid = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or_else(|| panic!("rig/up.sh succeeded but {} has no PID", pid_file.display()));
        println!(
            "rig {name}: ready in {:.2} s, after waiting {:.2} s for other rigs of this test binary",
            started.elapsed().as_secs_f64(),
            lock_wait.as_secs_f64()
        );

        Rig {
            name: name.to_owned(),
            dir,
            systemd_pid,
            guard,
            sink_dirs: RefCell::new(Vec::new()),
            _serial: serial,
        }
    }

    /// Rig directory: the same path on the host and inside the rig, writable from both.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Host PID of the rig's systemd, which is PID 1 inside the rig.
    pub fn systemd_pid(&self) -> u32 {
        self.systemd_pid
    }

    /// Runs `argv` inside the rig and returns its output. The caller checks the exit status.
    /// The command gets RIG_PATH, HOME=/root and LANG=C.UTF-8, and RUST_LOG, RUST_BACKTRACE and
    /// RIG_STOP_TIMEOUT when the test has them, but no other variable of the test process.
    pub fn exec(&self, argv: &[&str]) -> Output {
        assert!(!argv.is_empty(), "Rig::exec needs a command");
        script("exec.sh")
            .arg(&self.dir)
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|error| panic!("cannot run rig/exec.sh {argv:?}: {error}"))
    }

    /// Runs `script` with `bash -c` inside the rig.
    pub fn sh(&self, script: &str) -> Output {
        self.exec(&["bash", "-c", script])
    }

    /// Runs `argv` inside the rig and returns its standard output, or panics with its
    /// standard error when it fails.
    pub fn exec_ok(&self, argv: &[&str]) -> String {
        let output = self.exec(argv);
        if !output.status.success() {
            panic!(
                "{argv:?} failed inside rig {} ({}):\n{}{}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            );
        }
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Starts `units` with one `systemctl start`. On failure, panics with the status and the
    /// last 50 journal lines of each unit.
    pub fn start_units(&self, units: &[&str]) {
        let mut argv = vec!["systemctl", "start"];
        argv.extend_from_slice(units);
        let output = self.exec(&argv);
        if output.status.success() {
            return;
        }
        let mut message = format!(
            "systemctl start {} failed inside rig {}: {}",
            units.join(" "),
            self.name,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        for unit in units {
            let status = self.exec(&["systemctl", "status", "--no-pager", "--lines=0", unit]);
            let journal = self.exec(&["journalctl", "-u", unit, "--no-pager", "-n", "50"]);
            message.push_str(&format!(
                "\n--- systemctl status {unit}\n{}--- journalctl -u {unit} (last 50 lines)\n{}",
                String::from_utf8_lossy(&status.stdout),
                String::from_utf8_lossy(&journal.stdout),
            ));
        }
        panic!("{message}");
    }

    /// Returns the value of one unit property (`systemctl show -p PROPERTY --value UNIT`).
    pub fn unit_property(&self, unit: &str, property: &str) -> String {
        self.exec_ok(&["systemctl", "show", "-p", property, "--value", unit])
            .trim_end()
            .to_owned()
    }

    /// Returns the main PID of `unit` inside the rig's PID namespace, or None when systemd
    /// has none (MainPID=0). Debian's `postfix@-.service` is Type=forking without a PID file, so use
    /// /var/spool/postfix/pid/master.pid for Postfix.
    pub fn main_pid(&self, unit: &str) -> Option<u32> {
        let value = self.unit_property(unit, "MainPID");
        let pid: u32 = value
            .parse()
            .unwrap_or_else(|_| panic!("MainPID of {unit} is not a number: {value:?}"));
        (pid != 0).then_some(pid)
    }

    /// Sends `signal` ("KILL", "SIGTERM", "9", ...) to `pid` of the rig's PID namespace.
    pub fn kill(&self, pid: u32, signal: &str) {
        self.exec_ok(&["kill", "-s", signal, &pid.to_string()]);
    }

    /// Returns the first line that a TCP server on 127.0.0.1:`port` inside the rig sends,
    /// without the line end, or None when the connection is refused or no line arrives
    /// within 2 s.
    pub fn banner(&self, port: u16) -> Option<String> {
        let read_line =
            r#"exec 3<>"/dev/tcp/127.0.0.1/$0" && IFS= read -r line <&3 && printf '%s' "$line""#;
        let output = self.exec(&["timeout", "2", "bash", "-c", read_line, &port.to_string()]);
        let line = String::from_utf8_lossy(&output.stdout)
            .trim_end_matches('\r')
            .to_owned();
        (output.status.success() && !line.is_empty()).then_some(line)
    }

    /// Writes `content` to the absolute `path` inside the rig, creating missing parent
    /// directories. Under /etc or /var the file lands in the rig's overlay, not on the host.
    pub fn write_file(&self, path: &str, content: &str) {
        assert!(
            path.starts_with('/'),
            "Rig::write_file needs an absolute path, got {path:?}"
        );
        let write = r#"mkdir -p -- "$(dirname -- "$1")" && cat >"$1""#;
        let mut child = script("exec.sh")
            .arg(&self.dir)
            .args(["bash", "-c", write, "bash", path])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run rig/exec.sh to write {path}: {error}"));
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(content.as_bytes()).unwrap_or_else(|error| {
            panic!(
                "cannot send the content of {path} into rig {}: {error}",
                self.name
            )
        });
        drop(stdin);
        let output = child.wait_with_output().expect("wait for rig/exec.sh");
        assert!(
            output.status.success(),
            "writing {path} inside rig {} failed: {}",
            self.name,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Returns the journal of `unit` (`journalctl -u UNIT --no-pager`).
    pub fn journal(&self, unit: &str) -> String {
        self.exec_ok(&["journalctl", "-u", unit, "--no-pager"])
    }

    /// Runs `argv` as the transient service `unit` inside the rig. Unlike a process started
    /// through `exec`, the service is stopped by the rig's shutdown. `--collect` unloads the
    /// unit after it stops, even when it failed, so the name can be used again.
    pub fn run_transient(&self, unit: &str, argv: &[&str]) {
        let unit_option = format!("--unit={unit}");
        let mut command = vec![
            "systemd-run",
            "--quiet",
            "--collect",
            "--service-type=exec",
            &unit_option,
            "--",
        ];
        command.extend_from_slice(argv);
        let output = self.exec(&command);
        if !output.status.success() {
            panic!(
                "systemd-run {unit} failed inside rig {}: {}\n--- journalctl -u {unit}\n{}",
                self.name,
                String::from_utf8_lossy(&output.stderr).trim(),
                String::from_utf8_lossy(
                    &self.exec(&["journalctl", "-u", unit, "--no-pager"]).stdout
                ),
            );
        }
    }

    /// Stops a transient service started with `run_transient`. A unit that has already
    /// ended and been unloaded counts as stopped.
    pub fn stop_transient(&self, unit: &str) {
        let output = self.exec(&["systemctl", "stop", unit]);
        // systemctl exits with 5 when the unit is not loaded.
        if !output.status.success() && output.status.code() != Some(5) {
            panic!(
                "systemctl stop {unit} failed inside rig {}: {}",
                self.name,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }

    /// Starts tests/support/smtp_sink.py inside the rig as the transient service
    /// `smtp-sink-PORT`, listening on `listen` ("127.0.0.1:2525"), and waits until it
    /// listens. Returns the directory under the rig directory where it stores each message.
    pub fn start_smtp_sink(&self, listen: &str) -> PathBuf {
        let port = listen
            .rsplit_once(':')
            .and_then(|(_, port)| port.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("invalid SMTP sink address {listen:?}, expected HOST:PORT"));
        let mail_dir = self.dir.join(format!("smtp-sink-{port}"));
        let mail_dir_text = mail_dir.to_str().expect("rig paths are ASCII");
        let sink = format!("{REPO}/tests/support/smtp_sink.py");
        self.run_transient(
            &format!("smtp-sink-{port}"),
            &[
                "/usr/bin/python3",
                &sink,
                "--listen",
                listen,
                "--dir",
                mail_dir_text,
            ],
        );
        let ready = mail_dir.join("ready");
        self.wait_until(
            &format!("SMTP sink on {listen} to listen"),
            Duration::from_secs(20),
            || ready.exists(),
        );
        self.sink_dirs.borrow_mut().push(mail_dir.clone());
        mail_dir
    }

    /// Returns the raw messages that the SMTP sinks of this rig stored, oldest first.
    pub fn received_mail(&self) -> Vec<String> {
        // The sink names each file after its arrival time in nanoseconds.
        let mut messages: Vec<(u128, PathBuf)> = Vec::new();
        for dir in self.sink_dirs.borrow().iter() {
            let entries = fs::read_dir(dir).unwrap_or_else(|error| {
                panic!("cannot list SMTP sink directory {}: {error}", dir.display())
            });
            for entry in entries {
                let path = entry.expect("read SMTP sink directory entry").path();
                if path.extension() != Some(OsStr::new("eml")) {
                    continue;
                }
                let arrival = path
                    .file_stem()
                    .and_then(OsStr::to_str)
                    .and_then(|stem| stem.parse().ok())
                    .unwrap_or(u128::MAX);
                messages.push((arrival, path));
            }
        }
        messages.sort();
        messages
            .into_iter()
            .map(|(_, path)| {
                let bytes = fs::read(&path).unwrap_or_else(|error| {
                    panic!("cannot read message {}: {error}", path.display())
                });
                String::from_utf8_lossy(&bytes).into_owned()
            })
            .collect()
    }

    /// Calls `check` every 50 ms until it returns true and returns the time that took.
    /// Panics naming `what` when `timeout` passes first.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            if check() {
                return started.elapsed();
            }
            if started.elapsed() >= timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what} in rig {}",
                    self.name
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Rig {
    /// Stops the rig with rig/down.sh, then releases the guard and waits until it has exited,
    /// so that the next boot of the same name finds the owner lock free.
    fn drop(&mut self) {
        let result = script("down.sh").arg(&self.dir).output();
        drop(self.guard.take());
        let owner_lock = self.dir.join(".owner.lock");
        let _ = Command::new("flock")
            .args(["-w", "60"])
            .arg(&owner_lock)
            .arg("true")
            .status();

        let failure = match result {
            Ok(output) if output.status.success() => {
                print!("{}", String::from_utf8_lossy(&output.stdout));
                return;
            }
            Ok(output) => format!(
                "rig/down.sh {} failed ({}):\n{}{}",
                self.dir.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr),
            ),
            Err(error) => format!("cannot run rig/down.sh {}: {error}", self.dir.display()),
        };
        // A second panic while unwinding would abort the test binary and hide the first.
        if thread::panicking() {
            eprintln!("{failure}");
        } else {
            panic!("{failure}");
        }
    }
}

/// Returns the directory that contains the rigs: $SELFHEAL_RIG_BASE or /tmp/selfheal-rig.
fn rig_base() -> PathBuf {
    std::env::var_os("SELFHEAL_RIG_BASE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BASE))
}

/// Builds a command for one of the rig/ scripts with the environment described at `Rig::exec`.
fn script(name: &str) -> Command {
    let mut command = Command::new(Path::new(REPO).join("rig").join(name));
    command
        .env_clear()
        .env("PATH", RIG_PATH)
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8");
    for variable in ["RUST_LOG", "RUST_BACKTRACE", "RIG_STOP_TIMEOUT"] {
        if let Some(value) = std::env::var_os(variable) {
            command.env(variable, value);
        }
    }
    command
}
