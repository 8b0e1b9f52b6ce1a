//! systemd over D-Bus (`org.freedesktop.systemd1` on the system bus).

use std::time::Duration;

use tokio::sync::mpsc;

use super::{ManagerError, RestartError, RestartReport, UnitStatus};

pub struct Systemd {
    #[allow(dead_code)]
    call_timeout: Duration,
}

impl Systemd {
    pub async fn connect(call_timeout: Duration) -> Result<Self, ManagerError> {
        let _ = call_timeout;
        Err(ManagerError("not implemented yet".into()))
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

    pub async fn watch(&self, _units: Vec<String>) -> Result<mpsc::Receiver<String>, ManagerError> {
        Err(ManagerError("not implemented yet".into()))
    }
}
