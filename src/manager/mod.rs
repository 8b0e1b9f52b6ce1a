//! Service managers: how selfheal reads a service's state and restarts it.
//!
//! Three backends exist. `systemd` talks D-Bus to PID 1 through the system bus and also
//! streams unit changes; `systemctl` runs the `systemctl` command when no bus is reachable (poll
//! only); `command` runs per-service start/stop/restart commands on hosts without systemd.

pub mod command;
pub mod systemctl;
pub mod systemd;

use std::time::Duration;

use serde::Serialize;
use tokio::sync::mpsc;

pub use command::CommandSpec;

/// systemd's `ActiveState` of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ActiveState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Maintenance,
    Refreshing,
    Other(String),
}

impl ActiveState {
    pub fn parse(value: &str) -> Self {
        match value {
            "active" => Self::Active,
            "reloading" => Self::Reloading,
            "inactive" => Self::Inactive,
            "failed" => Self::Failed,
            "activating" => Self::Activating,
            "deactivating" => Self::Deactivating,
            "maintenance" => Self::Maintenance,
            "refreshing" => Self::Refreshing,
            other => Self::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Reloading => "reloading",
            Self::Inactive => "inactive",
            Self::Failed => "failed",
            Self::Activating => "activating",
            Self::Deactivating => "deactivating",
            Self::Maintenance => "maintenance",
            Self::Refreshing => "refreshing",
            Self::Other(s) => s,
        }
    }
}

/// One reading of a unit's state, as systemd (or the command backend) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitStatus {
    /// `LoadState`: "loaded", "not-found", "masked", ...
    pub load_state: String,
    pub active_state: ActiveState,
    /// `SubState`: "running", "exited", "dead", "auto-restart", ...
    pub sub_state: String,
    /// The service's `Result`: "success", "exit-code", "signal", "start-limit-hit", ...
    pub result: String,
    /// `MainPID`, or `None` when systemd tracks no main process (0 on the bus).
    pub main_pid: Option<u32>,
    /// Whether `main_pid` names a live process; `None` when there is no main PID.
    pub main_pid_alive: Option<bool>,
    /// `NRestarts`: automatic restarts systemd made since the last manual start.
    pub n_restarts: Option<u32>,
    /// `ExecMainStatus`: exit code or signal number of the main process.
    pub exec_main_status: Option<i32>,
    /// `InactiveExitTimestampMonotonic` in microseconds: changes each time the unit leaves the
    /// inactive or failed state, so an unchanged value after a failed start job means the unit
    /// never entered `activating` (the start rate limit refused it).
    pub inactive_exit_usec: u64,
    /// `InvocationID` as 32 lowercase hex digits: the id of the unit's latest start, which
    /// systemd and journald attach to the journal entries of that run. `None` before the
    /// unit's first start since boot, and for a service managed by commands.
    pub invocation_id: Option<String>,
}

impl UnitStatus {
    /// systemd is in the middle of changing this unit's state; restarting now would cancel
    /// its own job.
    pub fn is_transitional(&self) -> bool {
        matches!(
            self.active_state,
            ActiveState::Activating
                | ActiveState::Deactivating
                | ActiveState::Reloading
                | ActiveState::Refreshing
        ) || self.sub_state == "auto-restart"
    }

    /// Active, and its main process (where systemd tracks one) is alive.
    pub fn is_running(&self) -> bool {
        self.active_state == ActiveState::Active && self.main_pid_alive != Some(false)
    }

    pub fn describe(&self) -> String {
        if self.load_state == "not-found" {
            return "not found: no such unit is installed; check the unit name in the config"
                .to_string();
        }
        let mut text = if self.sub_state.is_empty() || self.sub_state == self.active_state.as_str()
        {
            self.active_state.as_str().to_string()
        } else {
            format!("{} ({})", self.active_state.as_str(), self.sub_state)
        };
        if !self.result.is_empty() && self.result != "success" {
            text.push_str(&format!(", result {}", self.result));
        }
        if let (Some(pid), Some(false)) = (self.main_pid, self.main_pid_alive) {
            text.push_str(&format!(", main PID {pid} is gone"));
        }
        text
    }
}

/// Service manager entry of a service, resolved once at startup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// A systemd unit name such as `postfix@-.service`.
    Unit(String),
    /// Commands for hosts without systemd.
    Commands(CommandSpec),
}

impl Target {
    pub fn label(&self) -> String {
        match self {
            Target::Unit(unit) => unit.clone(),
            Target::Commands(spec) => spec.label(),
        }
    }
}

/// Outcome of a restart, as far as the service manager can tell. Success here is not success of
/// the recovery: only a passing probe is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartReport {
    /// A failed unit was reset (`ResetFailedUnit`) before the restart.
    pub reset_failed: bool,
    /// The restart job's result ("done" for systemd; "exit 0" for a command).
    pub job_result: String,
    #[serde(rename = "elapsed_ms", serialize_with = "crate::probe::millis")]
    pub elapsed: Duration,
    /// The first start job was refused by the unit's start rate limit, the unit was reset and
    /// started once more.
    pub retried_after_rate_limit: bool,
    /// The stop hung past the kill delay, so selfheal sent SIGKILL to the unit's processes.
    pub killed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum RestartError {
    #[error("unit {0} not found")]
    NotFound(String),
    #[error("start rate limit hit: systemd refused to start the unit even after reset-failed")]
    StartLimit,
    #[error("restart job finished with result \"{result}\"")]
    JobFailed { result: String },
    #[error("restart did not finish within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    #[error("service manager error: {0}")]
    Manager(String),
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ManagerError(pub String);

/// Unit-based backend in use: D-Bus when the system bus is reachable, else `systemctl`.
pub enum UnitBackend {
    Dbus(systemd::Systemd),
    Systemctl(systemctl::Systemctl),
}

/// Entry point the engine and the CLI use for every service, whatever backend manages it.
pub struct Managers {
    units: UnitBackend,
}

impl Managers {
    /// Connects to systemd over the system bus, or falls back to `systemctl` and logs why.
    pub async fn connect(call_timeout: Duration) -> Self {
        match systemd::Systemd::connect(call_timeout).await {
            Ok(dbus) => Managers {
                units: UnitBackend::Dbus(dbus),
            },
            Err(err) => {
                tracing::warn!(
                    error = %err,
                    "system bus not reachable, falling back to the systemctl command (no crash signals, poll only)"
                );
                Managers {
                    units: UnitBackend::Systemctl(systemctl::Systemctl::new(call_timeout)),
                }
            }
        }
    }

    /// Use the `systemctl` command without trying the bus (tests, and hosts without D-Bus).
    pub fn without_bus(call_timeout: Duration) -> Self {
        Managers {
            units: UnitBackend::Systemctl(systemctl::Systemctl::new(call_timeout)),
        }
    }

    pub fn backend_name(&self) -> &'static str {
        match self.units {
            UnitBackend::Dbus(_) => "systemd (D-Bus)",
            UnitBackend::Systemctl(_) => "systemctl command",
        }
    }

    /// Returns whether the service manager has a unit file with this name.
    pub async fn unit_exists(&self, unit: &str) -> bool {
        match &self.units {
            UnitBackend::Dbus(d) => d.unit_exists(unit).await,
            UnitBackend::Systemctl(s) => s.unit_exists(unit).await,
        }
    }

    /// Whether a unit is in use on this host: running, failed (it ran and crashed), being
    /// started or stopped, or enabled to start at boot. A unit the admin disabled and stopped is
    /// not, and selfheal must not start it on its own. When systemd cannot tell, it counts as in
    /// use.
    pub async fn unit_in_use(&self, unit: &str) -> bool {
        let target = Target::Unit(unit.to_string());
        if let Ok(status) = self.status(&target).await {
            if status.active_state != ActiveState::Inactive {
                return true;
            }
        }
        let enabled = match &self.units {
            UnitBackend::Dbus(d) => d.unit_enabled(unit).await,
            UnitBackend::Systemctl(s) => s.unit_enabled(unit).await,
        };
        enabled.unwrap_or_else(|error| {
            tracing::debug!(unit, %error, "cannot tell whether the unit is enabled; counting it as in use");
            true
        })
    }

    pub async fn status(&self, target: &Target) -> Result<UnitStatus, ManagerError> {
        match (target, &self.units) {
            (Target::Unit(unit), UnitBackend::Dbus(d)) => d.status(unit).await,
            (Target::Unit(unit), UnitBackend::Systemctl(s)) => s.status(unit).await,
            (Target::Commands(spec), _) => command::status(spec).await,
        }
    }

    /// Restart through the service manager, resetting a failed unit first. `timeout` bounds the
    /// whole call. A unit still stopping after `kill_after` gets SIGKILL (systemd's own
    /// TimeoutStopSec would do the same later, 90 s by default).
    pub async fn restart(
        &self,
        target: &Target,
        timeout: Duration,
        kill_after: Duration,
    ) -> Result<RestartReport, RestartError> {
        match (target, &self.units) {
            (Target::Unit(unit), UnitBackend::Dbus(d)) => {
                d.restart_killing(unit, timeout, Some(kill_after)).await
            }
            (Target::Unit(unit), UnitBackend::Systemctl(s)) => {
                s.restart_killing(unit, timeout, Some(kill_after)).await
            }
            (Target::Commands(spec), _) => command::restart(spec, timeout).await,
        }
    }

    /// Returns the unit's last journal lines, oldest first, or none when the journal cannot be
    /// read.
    pub async fn journal_tail(&self, target: &Target, lines: usize) -> Vec<String> {
        match target {
            Target::Unit(unit) => systemctl::journal_tail(unit, lines).await,
            Target::Commands(_) => Vec::new(),
        }
    }

    /// Returns the last journal lines of the unit's latest start, oldest first: the run that
    /// `status` names by its invocation id, or the current boot when `status` has none. A
    /// diagnosis reads these, so that an error of an earlier run is not reported as the present
    /// cause. Empty for a service managed by commands, or when the journal cannot be read.
    pub async fn journal_of_latest_start(
        &self,
        target: &Target,
        status: Option<&UnitStatus>,
        lines: usize,
    ) -> Vec<String> {
        match target {
            Target::Unit(unit) => {
                let invocation = status.and_then(|status| status.invocation_id.as_deref());
                systemctl::journal_of_latest_start(unit, invocation, lines).await
            }
            Target::Commands(_) => Vec::new(),
        }
    }

    /// Stream of unit names whose state changed, for the units given. `None` when the backend
    /// cannot watch (systemctl, command): the poll alone finds failures then.
    pub async fn watch(&self, units: Vec<String>) -> Option<mpsc::Receiver<String>> {
        match &self.units {
            UnitBackend::Dbus(d) => match d.watch(units).await {
                Ok(rx) => Some(rx),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot subscribe to systemd unit changes, poll only");
                    None
                }
            },
            UnitBackend::Systemctl(_) => None,
        }
    }
}

/// Returns whether a restart job failed because the start rate limit rejected the start, judged
/// from the unit's state before and after the job.
///
/// A start job the rate limit rejects ends with "failed" without the unit ever entering
/// `activating`, so `InactiveExitTimestampMonotonic` keeps its value. `Result` alone is no evidence: systemd 252
/// sets "start-limit-hit" only when the previous result was "success", so it often keeps the
/// "exit-code" of the failures that used up the limit.
pub(crate) fn start_limit_hit(job_result: &str, before: &UnitStatus, after: &UnitStatus) -> bool {
    job_result == "failed"
        && (after.inactive_exit_usec == before.inactive_exit_usec
            || after.result == "start-limit-hit")
}

/// Unit file states that make a unit start at boot (`systemctl is-enabled` succeeds for them).
fn enabled_file_state(state: &str) -> bool {
    matches!(
        state,
        "enabled" | "enabled-runtime" | "alias" | "linked" | "linked-runtime"
    )
}

/// Returns whether `/proc/PID` exists and the process is not a zombie.
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name, which may itself contain
        // spaces or parentheses, so search from the last ')'.
        Ok(stat) => match stat.rfind(')') {
            Some(end) => !matches!(stat[end + 1..].trim_start().chars().next(), Some('Z' | 'X')),
            None => true,
        },
        Err(_) => false,
    }
}
