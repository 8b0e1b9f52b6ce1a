//! The `systemctl` command, used when no system bus is reachable.

use std::time::Duration;

use super::{ManagerError, RestartError, RestartReport, UnitStatus};

pub struct Systemctl {
    #[allow(dead_code)]
    call_timeout: Duration,
}

impl Systemctl {
    pub fn new(call_timeout: Duration) -> Self {
        Systemctl { call_timeout }
    }

    pub async fn unit_exists(&self, _unit: &str) -> bool {
        false
    }

    pub async fn status(&self, unit: &str) -> Result<UnitStatus, ManagerError> {
        Err(ManagerError(format!("{unit}: not implemented yet")))
    }

    pub async fn restart(&self, unit: &str, _timeout: Duration) -> Result<RestartReport, RestartError> {
        Err(RestartError::Manager(format!("{unit}: not implemented yet")))
    }
}

/// The unit's last `lines` journal lines, oldest first; empty when journalctl fails.
pub async fn journal_tail(_unit: &str, _lines: usize) -> Vec<String> {
    Vec::new()
}
