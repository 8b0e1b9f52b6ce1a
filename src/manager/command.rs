//! Per-service commands for hosts without systemd (sysvinit, OpenRC, containers).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{ManagerError, RestartError, RestartReport, UnitStatus};

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

pub async fn status(spec: &CommandSpec) -> Result<UnitStatus, ManagerError> {
    Err(ManagerError(format!("{}: not implemented yet", spec.label())))
}

pub async fn restart(spec: &CommandSpec, _timeout: Duration) -> Result<RestartReport, RestartError> {
    Err(RestartError::Manager(format!("{}: not implemented yet", spec.label())))
}
