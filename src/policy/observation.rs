//! One check of a service: the unit's state and every probe's result, and what they add up to.

use crate::manager::{ActiveState, UnitStatus};
use crate::probe::ProbeReport;

/// Result of one check of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// The unit's state, or why it could not be read.
    pub unit: Result<UnitStatus, String>,
    pub probes: Vec<ProbeReport>,
    /// Conditions a restart cannot fix, found when the service looked down (a config error, a
    /// full disk, a port held by another program), each as a one-line summary.
    pub blockers: Vec<String>,
}

/// Meaning of an observation for recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Unit running and every probe passed.
    Healthy,
    /// systemd is starting, stopping or auto-restarting the unit: wait for it.
    Transitional,
    /// The unit is active but a probe failed: slow or hung, re-try before acting.
    Unresponsive,
    /// The unit failed, is inactive, or its main process is gone.
    Dead,
}

impl Observation {
    pub fn health(&self) -> Health {
        let probes_pass = self.probes.iter().all(|p| p.outcome.passes());
        let unit = match &self.unit {
            Ok(unit) => unit,
            // Without the unit's state only the probes can tell; with none, assume the worst
            // after the usual retries.
            Err(_) if probes_pass && !self.probes.is_empty() => return Health::Healthy,
            Err(_) => return Health::Unresponsive,
        };
        if unit.active_state == ActiveState::Reloading && unit.sub_state != "auto-restart" {
            return if probes_pass {
                Health::Healthy
            } else {
                Health::Transitional
            };
        }
        if unit.is_transitional() {
            return Health::Transitional;
        }
        if unit.active_state != ActiveState::Active || unit.main_pid_alive == Some(false) {
            return Health::Dead;
        }
        if probes_pass {
            Health::Healthy
        } else {
            Health::Unresponsive
        }
    }

    /// `systemd`'s NRestarts, when known.
    pub fn n_restarts(&self) -> Option<u32> {
        self.unit.as_ref().ok().and_then(|u| u.n_restarts)
    }

    /// Describes the unit's state in systemctl's words: "activating (auto-restart)".
    pub fn unit_state(&self) -> String {
        match &self.unit {
            Ok(unit) => unit.describe(),
            Err(error) => format!("unknown ({error})"),
        }
    }

    /// Describes the problem in one line: the unit's state when it is not running, then every
    /// failing probe.
    pub fn problem(&self) -> String {
        let mut parts = Vec::new();
        match &self.unit {
            Ok(unit) if unit.is_running() => {}
            Ok(unit) => parts.push(format!("unit {}", unit.describe())),
            Err(error) => parts.push(format!("unit state unknown: {error}")),
        }
        parts.extend(
            self.probes
                .iter()
                .filter(|p| !p.outcome.passes())
                .map(|p| p.to_string()),
        );
        if parts.is_empty() {
            "no problem seen".to_string()
        } else {
            parts.join("; ")
        }
    }

    /// The main problem in a few words, for a mail subject: the unit's state when it is not
    /// running, else the first failing probe.
    pub fn headline(&self) -> String {
        match &self.unit {
            Ok(unit) if unit.load_state == "not-found" => "unit not found".to_string(),
            Ok(unit) if !unit.is_running() => {
                let mut text = format!("unit {}", unit.active_state.as_str());
                if !unit.result.is_empty() && unit.result != "success" {
                    text.push_str(&format!(", {}", unit.result));
                }
                text
            }
            Err(_) => "unit state unknown".to_string(),
            Ok(_) => match self.probes.iter().find(|p| !p.outcome.passes()) {
                Some(probe) => {
                    let kind = match &probe.outcome {
                        crate::probe::Outcome::Refused { .. } => "refused",
                        crate::probe::Outcome::TimedOut { .. } => "timed out",
                        crate::probe::Outcome::BadReply { .. } => "bad reply",
                        crate::probe::Outcome::TlsFailed { .. } => "TLS failed",
                        _ => "failed",
                    };
                    format!("{} {kind}", probe.endpoint)
                }
                None => "no problem seen".to_string(),
            },
        }
    }

    /// Lists every probe result, verbatim, one per line.
    pub fn probe_summary(&self) -> String {
        if self.probes.is_empty() {
            return "no probe configured (unit state only)".to_string();
        }
        self.probes
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }
}
