//! The recovery policy: a pure state machine per service.

use std::time::Duration;

use serde::Serialize;

/// Timing and budget of recovery for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// First re-check after a restart.
    pub verify_after: Duration,
    /// A restart that has not produced a healthy service by then failed.
    pub verify_timeout: Duration,
    /// Restarts allowed within `restart_window`, counting systemd's own automatic restarts.
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// Extra probe attempts, `retry_interval` apart, before an active unit whose probe fails
    /// counts as down: a slow service is not a dead one.
    pub probe_retries: u32,
    pub retry_interval: Duration,
}

impl Default for Recovery {
    fn default() -> Self {
        Recovery {
            verify_after: Duration::from_secs(5),
            verify_timeout: Duration::from_secs(30),
            max_restarts: 3,
            restart_window: Duration::from_secs(15 * 60),
            probe_retries: 2,
            retry_interval: Duration::from_secs(2),
        }
    }
}
