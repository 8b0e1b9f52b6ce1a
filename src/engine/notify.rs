//! Turns the facts a service's task has at the moment of a verdict into an alert item and hands
//! it to the alert outbox, which stores it before anything else happens.

use std::time::SystemTime;

use crate::alert::dispatch::{incident_actions, Outbox};
use crate::alert::{Alert, Item, ItemKind};
use crate::config::ServiceConfig;
use crate::diagnose::Finding;
use crate::policy::Verdict;
use crate::store::{from_unix_ms, Store};

/// An alert the policy asked for, with what the runner knew at that moment.
#[derive(Debug, Clone)]
pub struct AlertJob {
    pub incident: Option<i64>,
    pub service: ServiceConfig,
    pub unit: String,
    pub verdict: Verdict,
    /// The policy's full reason for the verdict.
    pub reason: String,
    /// The main problem in a few words, for the subject.
    pub headline: String,
    pub seen: String,
    pub last_probe: String,
    pub journal: Vec<String>,
    /// Findings of the diagnosis, most specific first.
    pub diagnosis: Vec<Finding>,
}

/// The engine's side of alerting: cheap to clone, one per service task.
#[derive(Clone)]
pub struct AlertSender {
    outbox: Outbox,
    host: String,
}

impl AlertSender {
    pub fn new(outbox: Outbox, host: String) -> AlertSender {
        AlertSender { outbox, host }
    }

    /// Stores the alert in the spool. Never waits on the network.
    pub fn queue(&self, store: &Store, job: AlertJob) {
        let (started_at, actions) = match job.incident {
            Some(id) => incident_history(store, id),
            None => (SystemTime::now(), Vec::new()),
        };
        let service = job.service.name.clone();
        let alert = Alert {
            host: self.host.clone(),
            service: service.clone(),
            unit: job.unit,
            verdict: job.verdict.to_string(),
            // The most specific finding explains more than the probe's headline.
            reason: job
                .diagnosis
                .first()
                .map(|finding| finding.summary.clone())
                .unwrap_or(job.headline),
            started_at,
            seen: seen_lines(&job.reason, &job.seen, &job.diagnosis),
            actions,
            last_probe: job.last_probe,
            journal: job.journal,
            mode: job.service.mode.to_string(),
            diagnosis: job.diagnosis,
        };
        let item = Item {
            kind: ItemKind::Problem,
            alert,
            nth: 0,
            closed_at: None,
            resolution: None,
            queued_at: SystemTime::now(),
        };
        if let Err(error) = self.outbox.queue(job.incident, &item) {
            tracing::error!(service, %error, "cannot store the alert; it is lost");
        }
    }

    /// Queues a recovery alert for an incident closed with `verdict`, if it had been alerted.
    pub fn incident_closed(&self, incident: i64, verdict: Verdict) {
        self.outbox
            .incident_closed(incident, verdict.as_str(), SystemTime::now());
    }
}

/// Builds the alert's "What was seen" lines: the parts of the policy's reason that the
/// observation's own lines (`seen`) and the diagnosis do not already state, then `seen`. The
/// reason joins its parts with "; ", such as `restart job finished with "failed"; unit
/// failed, result exit-code; mysql ...: refused`, and the unit state and the probe results
/// among them are lines of `seen` too.
fn seen_lines(reason: &str, seen: &str, diagnosis: &[Finding]) -> String {
    let known: Vec<&str> = seen
        .lines()
        .flat_map(|line| {
            let line = line.trim();
            // A line of several probe results joins them with "; ", as the reason does.
            [line].into_iter().chain(line.split("; "))
        })
        .chain(diagnosis.iter().map(|finding| finding.summary.as_str()))
        .collect();
    let mut lines: Vec<&str> = reason
        .split("; ")
        .map(str::trim)
        .filter(|part| !part.is_empty() && !known.contains(part))
        .collect();
    lines.extend(seen.lines().filter(|line| !line.trim().is_empty()));
    lines.join("\n")
}

/// When the incident opened and what happened since, for the alert body.
fn incident_history(store: &Store, incident: i64) -> (SystemTime, Vec<(SystemTime, String)>) {
    let opened = store
        .incident(incident)
        .ok()
        .flatten()
        .map(|row| from_unix_ms(row.opened_ms))
        .unwrap_or_else(SystemTime::now);
    (opened, incident_actions(store, incident))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::Cause;

    #[test]
    fn seen_states_each_part_once() {
        let seen = seen_lines(
            "restart job finished with \"failed\"; unit failed, result exit-code; mysql /run/x.sock: refused",
            "unit failed, result exit-code\nmysql /run/x.sock: refused",
            &[],
        );
        assert_eq!(
            seen,
            "restart job finished with \"failed\"\nunit failed, result exit-code\nmysql /run/x.sock: refused"
        );
    }

    #[test]
    fn seen_leaves_cause_to_diagnosis() {
        let cause = "config error: /etc/postfix/main.cf line 50: missing '='";
        let finding = Finding::new(Cause::ConfigError, cause, "fix line 50");
        let seen = seen_lines(
            cause,
            "unit failed, result exit-code\nsmtp 127.0.0.1:25: refused",
            &[finding],
        );
        assert_eq!(
            seen,
            "unit failed, result exit-code\nsmtp 127.0.0.1:25: refused"
        );
    }
}
