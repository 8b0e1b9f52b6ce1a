//! selfheal's daemon as a child process on the host, for tests whose services are managed by
//! commands and so need no systemd. It never talks to the host's system bus: its address points
//! at a socket that does not exist, so the daemon falls back to the systemctl command, which a
//! service managed by commands never calls.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use selfheal::store::Store;

pub const SELFHEAL_BIN: &str = env!("CARGO_BIN_EXE_selfheal");

/// A running `selfheal run`, killed by its PID when the guard drops, also when the test panics.
pub struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
}

impl Daemon {
    /// Writes `config` to DIR/selfheal.toml and starts the daemon on it. The log of every
    /// start goes to DIR/daemon.log.
    pub fn start(dir: &Path, config: &str) -> Daemon {
        fs::write(dir.join("selfheal.toml"), config).expect("write the config");
        let mut daemon = Daemon {
            child: None,
            dir: dir.to_path_buf(),
        };
        daemon.restart();
        daemon
    }

    /// Starts the daemon again after [`Daemon::kill`] or [`Daemon::stop`].
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the daemon is still running");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("daemon.log"))
            .expect("open the daemon log");
        let child = Command::new(SELFHEAL_BIN)
            .arg("-c")
            .arg(self.config_path())
            .arg("run")
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", self.dir.join("no-bus").display()),
            )
            .env("RUST_LOG", "selfheal=debug")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start selfheal run");
        self.child = Some(child);
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("selfheal.toml")
    }

    pub fn state_db(&self) -> PathBuf {
        self.dir.join("state").join("state.db")
    }

    /// Everything the daemon logged so far, over all its starts.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    /// Kills the daemon with SIGKILL, as a crash would, and waits until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon with SIGTERM and waits until it exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id() as i32;
            // SAFETY: kill(2) with the PID of a child this guard started and has not reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let _ = child.wait();
        }
    }

    /// Opens the state database next to the running daemon.
    pub fn store(&self) -> Store {
        Store::open(&self.state_db()).expect("open the state database")
    }

    /// Runs the selfheal CLI with this daemon's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(SELFHEAL_BIN)
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                format!("unix:path={}", self.dir.join("no-bus").display()),
            )
            .output()
            .expect("run the selfheal CLI")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `condition` every 100 ms until it holds; panics with `what` and the daemon's log
/// after `limit`.
pub fn wait_for(daemon: &Daemon, what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}\n--- daemon log ---\n{}",
                daemon.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
