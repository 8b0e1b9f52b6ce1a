//! Policy events to log lines and incident history rows, from one place.

use std::time::{Duration, SystemTime};

use crate::policy::{format_secs, Event};
use crate::store::Store;

/// Returns the event's stored kind and its text.
fn describe(event: &Event) -> (&'static str, String) {
    match event {
        Event::ProbeRetry {
            attempt,
            of,
            problem,
        } => (
            "probe_retry",
            format!("probe failed, retry {attempt} of {of}: {problem}"),
        ),
        Event::ProbeRecovered { retries } => (
            "probe_recovered",
            format!("probe passed again after {retries} failed attempt(s)"),
        ),
        Event::IncidentOpened { problem } => {
            ("incident_opened", format!("incident opened: {problem}"))
        }
        Event::WaitingForSystemd { state } => (
            "waiting_for_systemd",
            format!("unit is {state}; waiting for systemd instead of restarting"),
        ),
        Event::SystemdRestarted { count } => (
            "systemd_restarted",
            format!("systemd restarted the unit by itself {count} time(s) since the last check"),
        ),
        Event::RestartIssued { manual } => (
            "restart_issued",
            if *manual {
                "restart requested by an admin".to_string()
            } else {
                "restarting".to_string()
            },
        ),
        Event::RestartDone { report } => {
            let mut text = format!(
                "restart job {} in {}",
                report.job_result,
                format_secs(report.elapsed)
            );
            if report.reset_failed {
                text.push_str(", after reset-failed");
            }
            if report.retried_after_rate_limit {
                text.push_str(", retried once after the start rate limit");
            }
            if report.killed {
                text.push_str(", the stop hung so its processes were killed with SIGKILL");
            }
            ("restart_done", text)
        }
        Event::RestartError { error } => ("restart_error", format!("restart: {error}")),
        Event::RestartSkipped { reason } => ("restart_skipped", format!("not restarted: {reason}")),
        Event::IncidentClosed { verdict, after } => (
            "incident_closed",
            format!("{verdict} after {}", format_secs(*after)),
        ),
        Event::NeedsAttention { verdict, reason } => {
            ("needs_attention", format!("{verdict}: {reason}"))
        }
        Event::AlertSuppressed { verdict, reason } => (
            "alert_suppressed",
            format!("no new {verdict} alert, one was sent recently: {reason}"),
        ),
        Event::BlockerCleared { blocker } => (
            "blocker_cleared",
            format!("restarting: no longer blocked by {blocker}"),
        ),
        Event::Paused { for_: Some(length) } => (
            "paused",
            format!(
                "healing paused for {}",
                // Whole seconds, rounded: the window was measured a moment after it began.
                humantime::format_duration(Duration::from_secs(
                    (length.as_millis() as u64).div_ceil(1000)
                ))
            ),
        ),
        Event::Paused { for_: None } => ("paused", "healing paused until resumed".to_string()),
        Event::Resumed { expired: true } => {
            ("resumed", "healing resumed: the pause ended".to_string())
        }
        Event::Resumed { expired: false } => ("resumed", "healing resumed".to_string()),
        Event::ManualRestartVerified => (
            "manual_restart_verified",
            "manual restart verified healthy".to_string(),
        ),
    }
}

/// Text for the "last action" column, for events that are actions or their outcomes.
pub fn action_text(event: &Event) -> Option<String> {
    match event {
        Event::RestartIssued { .. }
        | Event::RestartDone { .. }
        | Event::RestartError { .. }
        | Event::IncidentClosed { .. }
        | Event::NeedsAttention { .. }
        | Event::Paused { .. }
        | Event::Resumed { .. }
        | Event::ManualRestartVerified => Some(describe(event).1),
        _ => None,
    }
}

/// Log one event and store it with the service's open incident. Returns the open incident's
/// id afterwards. Store failures are logged, never fatal: the heal loop goes on.
pub fn record(
    store: &Store,
    service: &str,
    unit: &str,
    incident: Option<i64>,
    event: &Event,
    requested_by: Option<&str>,
) -> Option<i64> {
    let (kind, mut text) = describe(event);
    if let (Event::RestartIssued { manual: true }, Some(by)) = (event, requested_by) {
        text = format!("restart requested by {by}");
    }
    match event {
        Event::IncidentOpened { .. }
        | Event::NeedsAttention { .. }
        | Event::RestartError { .. } => tracing::warn!(service, unit, "{text}"),
        _ => tracing::info!(service, unit, "{text}"),
    }

    let now = SystemTime::now();
    let mut incident = incident;
    let result = (|| -> anyhow::Result<()> {
        match event {
            Event::IncidentOpened { problem } => {
                let id = store.open_incident(service, unit, problem, now)?;
                incident = Some(id);
                store.add_event(id, now, kind, &text)?;
            }
            Event::IncidentClosed { verdict, .. } => {
                if let Some(id) = incident.take() {
                    store.add_event(id, now, kind, &text)?;
                    store.close_incident(id, now, verdict.as_str())?;
                }
            }
            Event::NeedsAttention { verdict, reason } => {
                if let Some(id) = incident {
                    store.add_event(id, now, kind, &text)?;
                    store.set_verdict(id, verdict.as_str(), reason)?;
                }
            }
            _ => {
                if let Some(id) = incident {
                    store.add_event(id, now, kind, &text)?;
                }
            }
        }
        Ok(())
    })();
    if let Err(error) = result {
        tracing::error!(service, %error, "cannot store event \"{text}\"");
    }
    incident
}
