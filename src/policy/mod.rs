//! The recovery policy: a pure state machine per service.
//!
//! Observations (unit state and probe results), restart outcomes and manual requests go in,
//! each with the monotonic time it was taken at. Commands (restart, alert), events (for the log,
//! the store and the status view) and the time of the next check come out. Nothing here touches
//! the outside world or reads a clock, so every rule is tested on paused time.

mod observation;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::config::Mode;
use crate::manager::{RestartError, RestartReport};

pub use observation::{Health, Observation};

/// Timing and budget of recovery for one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recovery {
    /// First re-check after a restart.
    pub verify_after: Duration,
    /// A restart that has not produced a healthy service by then failed. Also how long selfheal
    /// waits for systemd's own restart of a unit before acting.
    pub verify_timeout: Duration,
    /// Restarts allowed within `restart_window`, counting systemd's own automatic restarts.
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// Extra probe attempts, `retry_interval` apart, before an active unit whose probe fails
    /// counts as down: a slow service is not a dead one.
    pub probe_retries: u32,
    /// Time between probe retries, and between re-checks while verifying or waiting.
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

/// Outcome of an incident, or the reason it needs the admin. The text forms are stored in the
/// state database and must keep their meaning across versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// selfheal restarted the service and the probe passed afterwards.
    Healed,
    /// systemd's own `Restart=` brought the unit back.
    RestartedBySystemd,
    /// The service came back without a restart by anyone we know of.
    Recovered,
    /// Down in watch mode: nothing is restarted.
    Down,
    /// A restart did not produce a healthy service within the verify window.
    RestartFailed,
    /// The service keeps dying: restart budget used up, or it died again right after a restart.
    CrashLoop,
    /// The service manager refused or could not run the restart.
    CannotRestart,
    /// Not restarted because a restart cannot fix what is wrong: a config error, a full disk,
    /// a port held by another program. Restarted once that is gone.
    NotRestarted,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healed => "healed",
            Verdict::RestartedBySystemd => "restarted by systemd",
            Verdict::Recovered => "recovered",
            Verdict::Down => "down",
            Verdict::RestartFailed => "restart failed",
            Verdict::CrashLoop => "crash loop",
            Verdict::CannotRestart => "cannot restart",
            Verdict::NotRestarted => "not restarted",
        }
    }

    pub fn parse(text: &str) -> Option<Verdict> {
        [
            Verdict::Healed,
            Verdict::RestartedBySystemd,
            Verdict::Recovered,
            Verdict::Down,
            Verdict::RestartFailed,
            Verdict::CrashLoop,
            Verdict::CannotRestart,
            Verdict::NotRestarted,
        ]
        .into_iter()
        .find(|v| v.as_str() == text)
    }

    /// Verdicts that leave the service marked "needs attention" until it is healthy again.
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            Verdict::Down
                | Verdict::RestartFailed
                | Verdict::CrashLoop
                | Verdict::CannotRestart
                | Verdict::NotRestarted
        )
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Recovery state of a service, as shown by `selfheal status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Phase {
    Healthy,
    /// The probe failed while the unit is active; re-trying before counting it down.
    Suspect {
        failures: u32,
    },
    /// systemd is starting, stopping or auto-restarting the unit; selfheal waits for it.
    WaitingForSystemd {
        #[serde(skip)]
        since: Instant,
    },
    /// A restart call is running.
    Restarting {
        manual: bool,
    },
    /// Restarted; re-checking until the probe passes or the verify window ends.
    Verifying {
        manual: bool,
        #[serde(skip)]
        deadline: Instant,
        /// Result of a restart job that did not finish with "done", for the failure reason.
        job_failure: Option<String>,
    },
    /// Recovery failed or is not allowed; checked every cycle, never restarted automatically.
    NeedsAttention {
        verdict: Verdict,
        reason: String,
    },
}

impl Phase {
    pub fn label(&self) -> &'static str {
        match self {
            Phase::Healthy => "healthy",
            Phase::Suspect { .. } => "suspect",
            Phase::WaitingForSystemd { .. } => "waiting for systemd",
            Phase::Restarting { .. } => "restarting",
            Phase::Verifying { .. } => "verifying",
            Phase::NeedsAttention { verdict, .. } if *verdict == Verdict::Down => "down",
            Phase::NeedsAttention { .. } => "needs attention",
        }
    }
}

/// Something the engine must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Restart through the service manager (resetting a failed unit first), then feed the result
    /// back as [`Input::RestartFinished`].
    Restart,
    /// Tell the admin: one alert per incident.
    Alert { verdict: Verdict, reason: String },
}

/// One occurrence worth a log line and a row in the incident history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// An active unit's probe failed; it is re-tried before the service counts as down.
    ProbeRetry {
        attempt: u32,
        of: u32,
        problem: String,
    },
    /// The probe passed again on a retry: slow, not dead. No incident.
    ProbeRecovered {
        retries: u32,
    },
    IncidentOpened {
        problem: String,
    },
    WaitingForSystemd {
        state: String,
    },
    /// systemd restarted the unit by itself `count` times since the last check.
    SystemdRestarted {
        count: u32,
    },
    RestartIssued {
        manual: bool,
    },
    RestartDone {
        report: RestartReport,
    },
    RestartError {
        error: String,
    },
    /// A restart was wanted but not done.
    RestartSkipped {
        reason: String,
    },
    /// The incident closed: the service is healthy again.
    IncidentClosed {
        verdict: Verdict,
        after: Duration,
    },
    NeedsAttention {
        verdict: Verdict,
        reason: String,
    },
    /// An alert was not sent because one for the same verdict went out recently.
    AlertSuppressed {
        verdict: Verdict,
        reason: String,
    },
    /// A manual restart verified without an open incident.
    ManualRestartVerified,
    /// The blocker that kept a restart from helping is gone, so the service is restarted now.
    BlockerCleared {
        blocker: String,
    },
    /// An admin paused healing: checks go on, restarts and alerts stop. `for_` is the window's
    /// length, none until resumed.
    Paused {
        #[serde(rename = "for")]
        for_: Option<Duration>,
    },
    /// Healing resumed: by an admin, or because the pause window ended (`expired`).
    Resumed {
        expired: bool,
    },
}

/// Input to the policy.
#[derive(Debug, Clone)]
pub enum Input {
    Checked(Observation),
    RestartFinished(Result<RestartReport, RestartError>),
    /// An admin asked for a restart (CLI or dashboard). It bypasses the restart budget.
    RestartRequested,
    /// An admin opened a maintenance window: no restarts and no alerts until `until` (none:
    /// until resumed). Checks go on, so the status stays current.
    Pause {
        until: Option<Instant>,
    },
    /// An admin ended the maintenance window.
    Resume,
}

/// Output of one policy step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub commands: Vec<Command>,
    pub events: Vec<Event>,
    /// Check again at this time, earlier than the next regular cycle.
    pub next_check: Option<Instant>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Incident {
    opened: Instant,
    alerted: bool,
    /// systemd was seen working on the unit during this incident.
    saw_systemd_working: bool,
}

/// State carried over from the state database when selfheal starts.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    /// The open incident's verdict, if it had reached one, its reason, whether it was alerted,
    /// and its age.
    pub open_incident: Option<(Option<Verdict>, String, bool, Duration)>,
    /// Age of each restart still inside the restart window.
    pub restart_ages: Vec<Duration>,
    /// Age of the last crash-loop alert, for its suppression window.
    pub crash_loop_alert_age: Option<Duration>,
}

/// The policy of one service.
#[derive(Debug, Clone)]
pub struct ServicePolicy {
    mode: Mode,
    critical: bool,
    recovery: Recovery,
    phase: Phase,
    incident: Option<Incident>,
    /// Times of restarts (selfheal's and systemd's automatic ones) within the restart window.
    restarts: VecDeque<Instant>,
    /// The last restart selfheal issued, for "died again right after the restart".
    last_restart: Option<Instant>,
    last_crash_loop_alert: Option<Instant>,
    /// systemd's `NRestarts` at the previous check.
    last_n_restarts: Option<u32>,
    /// While a service that needs attention is coming back (started by an admin or by
    /// systemd), it is re-checked every `retry_interval` until this time.
    quick_checks_until: Option<Instant>,
    /// Blockers the last check found: conditions a restart cannot fix.
    blockers: Vec<String>,
    /// The blocker the service needs attention for; it is restarted once the blocker is gone.
    blocked: Option<String>,
    /// A maintenance window is open: `Some(None)` until resumed, `Some(Some(t))` until `t`.
    paused: Option<Option<Instant>>,
}

impl ServicePolicy {
    pub fn new(mode: Mode, critical: bool, recovery: Recovery) -> Self {
        ServicePolicy {
            mode,
            critical,
            recovery,
            phase: Phase::Healthy,
            incident: None,
            restarts: VecDeque::new(),
            last_restart: None,
            last_crash_loop_alert: None,
            last_n_restarts: None,
            quick_checks_until: None,
            blockers: Vec::new(),
            blocked: None,
            paused: None,
        }
    }

    /// Rebuild the policy of a service from the state database after selfheal restarted. An open
    /// incident that had reached a verdict stays "needs attention" (no second alert, no restart);
    /// one that had not is re-evaluated at the first check.
    pub fn restore(
        mode: Mode,
        critical: bool,
        recovery: Recovery,
        restored: Restored,
        now: Instant,
    ) -> Self {
        let mut policy = ServicePolicy::new(mode, critical, recovery);
        let ago = |age: Duration| now.checked_sub(age).unwrap_or(now);
        let mut ages = restored.restart_ages;
        ages.sort_by(|a, b| b.cmp(a));
        policy.restarts = ages.into_iter().map(ago).collect();
        policy.last_restart = policy.restarts.back().copied();
        policy.last_crash_loop_alert = restored.crash_loop_alert_age.map(ago);
        if let Some((verdict, reason, alerted, age)) = restored.open_incident {
            policy.incident = Some(Incident {
                opened: ago(age),
                alerted,
                saw_systemd_working: false,
            });
            if let Some(verdict) = verdict.filter(|v| v.needs_attention()) {
                policy.blocked = (verdict == Verdict::NotRestarted).then(|| reason.clone());
                policy.phase = Phase::NeedsAttention { verdict, reason };
            }
        }
        policy
    }

    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Returns whether the next check should look for blockers: before a restart the policy
    /// may issue, and while it waits for a blocker to go away, but not while it leaves a failed
    /// service to the admin anyway.
    pub fn wants_blockers(&self) -> bool {
        self.mode == Mode::Heal
            && self.paused.is_none()
            && (self.blocked.is_some() || !matches!(self.phase, Phase::NeedsAttention { .. }))
    }

    /// Returns the open maintenance window: `Some(None)` until resumed, `Some(Some(t))` until
    /// `t`.
    pub fn paused(&self) -> Option<Option<Instant>> {
        self.paused
    }

    pub fn has_open_incident(&self) -> bool {
        self.incident.is_some()
    }

    /// Restarts counted against the budget at `now`.
    pub fn restarts_in_window(&self, now: Instant) -> usize {
        self.restarts
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < self.recovery.restart_window)
            .count()
    }

    /// Feed one input taken at monotonic time `now`.
    pub fn step(&mut self, input: Input, now: Instant) -> Decision {
        let mut out = Decision::default();
        self.forget_old_restarts(now);
        match input {
            Input::Checked(observation) => self.on_check(observation, now, &mut out),
            Input::RestartFinished(result) => self.on_restart_finished(result, now, &mut out),
            Input::RestartRequested => self.on_manual_restart(now, &mut out),
            Input::Pause { until } => self.on_pause(until, now, &mut out),
            Input::Resume => self.resume(false, now, &mut out),
        }
        if self.paused.is_some() {
            // The admin who paused the service is working on it, so there is nothing to tell. An incident
            // that stays open is alerted after the window if it still needs attention.
            out.commands
                .retain(|command| !matches!(command, Command::Alert { .. }));
        }
        out
    }

    fn on_pause(&mut self, until: Option<Instant>, now: Instant, out: &mut Decision) {
        self.paused = Some(until);
        out.events.push(Event::Paused {
            for_: until.map(|t| t.saturating_duration_since(now)),
        });
        // A restart already running finishes and is verified; anything else waits for the
        // window to end, and is judged afresh then.
        if !matches!(
            self.phase,
            Phase::Restarting { .. } | Phase::Verifying { .. }
        ) {
            self.phase = Phase::Healthy;
        }
        self.blocked = None;
        self.quick_checks_until = None;
        out.next_check = until;
    }

    /// Ends the maintenance window. The next check judges the service afresh: a service still
    /// down is healed (heal mode) or reported, and an incident left open is alerted again if
    /// it still needs attention.
    fn resume(&mut self, expired: bool, now: Instant, out: &mut Decision) {
        if self.paused.take().is_none() {
            return;
        }
        out.events.push(Event::Resumed { expired });
        if !matches!(
            self.phase,
            Phase::Restarting { .. } | Phase::Verifying { .. }
        ) {
            self.phase = Phase::Healthy;
        }
        if let Some(incident) = &mut self.incident {
            incident.alerted = false;
        }
        // Restarts an admin made during the window are no crash loop.
        self.last_restart = None;
        if !expired {
            out.next_check = Some(now);
        }
    }

    fn forget_old_restarts(&mut self, now: Instant) {
        while let Some(first) = self.restarts.front() {
            if now.saturating_duration_since(*first) >= self.recovery.restart_window {
                self.restarts.pop_front();
            } else {
                break;
            }
        }
    }

    fn on_check(&mut self, observation: Observation, now: Instant, out: &mut Decision) {
        if let Some(Some(until)) = self.paused {
            if now >= until {
                self.resume(true, now, out);
            }
        }
        if let Some(until) = self.paused {
            // Paused: only a manual restart's verification goes on. systemd's restarts in the
            // window move the baseline without counting against the budget.
            if !matches!(self.phase, Phase::Verifying { .. }) {
                self.last_n_restarts = observation.n_restarts().or(self.last_n_restarts);
                out.next_check = until;
                return;
            }
        }
        self.blockers.clone_from(&observation.blockers);
        let systemd_restarts = self.count_systemd_restarts(&observation, now);
        if systemd_restarts > 0 {
            out.events.push(Event::SystemdRestarted {
                count: systemd_restarts,
            });
        }
        let health = observation.health();

        match self.phase.clone() {
            Phase::Healthy => match health {
                Health::Healthy => {
                    // An incident restored from the store before any verdict: it is over.
                    if self.incident.is_some() {
                        self.close_incident(Verdict::Recovered, now, out);
                    }
                    if systemd_restarts > 0 {
                        // A crash systemd healed between two checks is still an incident.
                        self.open_incident(now, "crashed and restarted by systemd", out);
                        self.close_incident(Verdict::RestartedBySystemd, now, out);
                        self.check_flapping(now, out);
                    }
                }
                Health::Transitional => self.wait_for_systemd(&observation, now, out),
                Health::Unresponsive => self.suspect(1, &observation, now, out),
                Health::Dead => self.go_down(observation.problem(), now, out),
            },
            Phase::Suspect { failures } => match health {
                Health::Healthy => {
                    out.events.push(Event::ProbeRecovered { retries: failures });
                    self.phase = Phase::Healthy;
                }
                Health::Transitional => self.wait_for_systemd(&observation, now, out),
                Health::Unresponsive => self.suspect(failures + 1, &observation, now, out),
                Health::Dead => self.go_down(observation.problem(), now, out),
            },
            Phase::WaitingForSystemd { since } => match health {
                Health::Healthy => {
                    self.close_incident(Verdict::RestartedBySystemd, now, out);
                    self.check_flapping(now, out);
                }
                Health::Transitional | Health::Unresponsive
                    if now.saturating_duration_since(since) < self.recovery.verify_timeout =>
                {
                    out.next_check = Some(now + self.recovery.retry_interval);
                }
                Health::Transitional if self.mode == Mode::Watch => {
                    self.go_down(observation.problem(), now, out)
                }
                Health::Transitional => {
                    // systemd's own start never finished; restarting would cancel a start that
                    // may be a long recovery (InnoDB), so leave it to the admin.
                    let reason = format!(
                        "unit still {} after {}",
                        observation.unit_state(),
                        format_secs(now.saturating_duration_since(since))
                    );
                    self.needs_attention(Verdict::RestartFailed, reason, now, out);
                }
                Health::Unresponsive | Health::Dead => {
                    self.go_down(observation.problem(), now, out)
                }
            },
            Phase::Restarting { .. } => {
                // The engine does not check while its restart call runs; a stray observation
                // changes nothing.
            }
            Phase::Verifying {
                manual,
                deadline,
                job_failure,
            } => match health {
                Health::Healthy => {
                    if self.incident.is_some() {
                        self.close_incident(Verdict::Healed, now, out);
                    } else {
                        out.events.push(Event::ManualRestartVerified);
                        self.phase = Phase::Healthy;
                    }
                }
                Health::Transitional | Health::Unresponsive if now < deadline => {
                    out.next_check = Some((now + self.recovery.retry_interval).min(deadline));
                }
                _ => {
                    let mut reason = observation.problem();
                    if let Some(result) = job_failure {
                        reason = format!("restart job {result}; {reason}");
                    }
                    if manual && self.incident.is_none() {
                        self.open_incident(now, &reason, out);
                    }
                    // A manual restart while the blocker is still there fails for that reason:
                    // the verdict stays "not restarted", restarted by itself once it is gone.
                    match (&self.blocked, self.blockers.first()) {
                        (Some(_), Some(blocker)) if manual => {
                            let blocker = blocker.clone();
                            self.blocked = Some(blocker.clone());
                            self.needs_attention(Verdict::NotRestarted, blocker, now, out);
                        }
                        _ => self.needs_attention(Verdict::RestartFailed, reason, now, out),
                    }
                }
            },
            Phase::NeedsAttention { .. } => match health {
                Health::Healthy => self.close_incident(Verdict::Recovered, now, out),
                Health::Transitional | Health::Unresponsive => {
                    // Coming back: look again soon rather than at the next cycle, for at most
                    // one verify window (a port squatter would keep it "unresponsive").
                    let until = *self
                        .quick_checks_until
                        .get_or_insert(now + self.recovery.verify_timeout);
                    if now < until {
                        out.next_check = Some(now + self.recovery.retry_interval);
                    }
                }
                Health::Dead => {
                    self.quick_checks_until = None;
                    if self.blocked.is_some() && self.blockers.is_empty() && self.mode == Mode::Heal
                    {
                        self.unblock(out);
                    }
                }
            },
        }
        self.last_n_restarts = observation.n_restarts().or(self.last_n_restarts);
    }

    /// Count the automatic restarts systemd made since the last check (`NRestarts` grew) into the
    /// restart budget. The counter starts over when the unit is started by hand, so a smaller
    /// value only moves the baseline.
    fn count_systemd_restarts(&mut self, observation: &Observation, now: Instant) -> u32 {
        let (Some(previous), Some(current)) = (self.last_n_restarts, observation.n_restarts())
        else {
            return 0;
        };
        let count = current.saturating_sub(previous);
        for _ in 0..count.min(self.recovery.max_restarts + 1) {
            self.restarts.push_back(now);
        }
        count
    }

    fn suspect(
        &mut self,
        failures: u32,
        observation: &Observation,
        now: Instant,
        out: &mut Decision,
    ) {
        if failures > self.recovery.probe_retries {
            let problem = format!("{} ({} attempts)", observation.problem(), failures);
            self.go_down(problem, now, out);
            return;
        }
        out.events.push(Event::ProbeRetry {
            attempt: failures,
            of: self.recovery.probe_retries,
            problem: observation.problem(),
        });
        self.phase = Phase::Suspect { failures };
        out.next_check = Some(now + self.recovery.retry_interval);
    }

    fn wait_for_systemd(&mut self, observation: &Observation, now: Instant, out: &mut Decision) {
        self.open_incident(now, &observation.problem(), out);
        if let Some(incident) = &mut self.incident {
            incident.saw_systemd_working = true;
        }
        out.events.push(Event::WaitingForSystemd {
            state: observation.unit_state(),
        });
        self.phase = Phase::WaitingForSystemd { since: now };
        out.next_check = Some(now + self.recovery.retry_interval);
    }

    /// Counts the service as down: restarts it in heal mode if the budget allows, else reports.
    fn go_down(&mut self, problem: String, now: Instant, out: &mut Decision) {
        self.open_incident(now, &problem, out);
        if self.mode == Mode::Watch {
            out.events.push(Event::RestartSkipped {
                reason: "watch mode".to_string(),
            });
            self.needs_attention(Verdict::Down, problem, now, out);
            return;
        }
        if let Some(blocker) = self.blockers.first().cloned() {
            out.events.push(Event::RestartSkipped {
                reason: format!("a restart cannot fix this: {blocker}"),
            });
            self.blocked = Some(blocker.clone());
            self.needs_attention(Verdict::NotRestarted, blocker, now, out);
            return;
        }
        if let Some(restarted) = self.last_restart {
            let since = now.saturating_duration_since(restarted);
            if since < self.recovery.verify_timeout {
                let reason = format!(
                    "came back and died again {} after the restart: {problem}",
                    format_secs(since)
                );
                self.needs_attention(Verdict::CrashLoop, reason, now, out);
                return;
            }
        }
        let used = self.restarts_in_window(now);
        if used >= self.recovery.max_restarts as usize {
            let reason = format!(
                "{used} restarts within {} used up the budget: {problem}",
                humantime::format_duration(self.recovery.restart_window)
            );
            self.needs_attention(Verdict::CrashLoop, reason, now, out);
            return;
        }
        self.restart(false, now, out);
    }

    /// Restarts a service that waited for a blocker to go away. The incident stays open, and
    /// a failure of this restart is alerted again: it is news to the admin.
    fn unblock(&mut self, out: &mut Decision) {
        // A manual restart may have failed meanwhile: the event names the blocker, not that.
        let blocker = self.blocked.take().unwrap_or_default();
        if let Some(incident) = &mut self.incident {
            incident.alerted = false;
        }
        out.events.push(Event::BlockerCleared { blocker });
        // The admin removed the cause, so this restart is theirs in effect: like a manual one
        // it neither uses the budget nor counts as "died again", and earlier heals that used
        // up the budget cannot turn it into a crash loop.
        self.phase = Phase::Restarting { manual: false };
        out.events.push(Event::RestartIssued { manual: false });
        out.commands.push(Command::Restart);
    }

    fn restart(&mut self, manual: bool, now: Instant, out: &mut Decision) {
        // An admin's restart neither uses the budget nor starts the "died again right after
        // the restart" window: a death after it is a new failure, healed as usual.
        if !manual {
            self.restarts.push_back(now);
            self.last_restart = Some(now);
        }
        self.phase = Phase::Restarting { manual };
        out.events.push(Event::RestartIssued { manual });
        out.commands.push(Command::Restart);
    }

    fn on_restart_finished(
        &mut self,
        result: Result<RestartReport, RestartError>,
        now: Instant,
        out: &mut Decision,
    ) {
        let Phase::Restarting { manual } = self.phase else {
            return;
        };
        let deadline = now + self.recovery.verify_timeout;
        let verify_at = now + self.recovery.verify_after;
        match result {
            Ok(report) => {
                out.events.push(Event::RestartDone { report });
                self.phase = Phase::Verifying {
                    manual,
                    deadline,
                    job_failure: None,
                };
                out.next_check = Some(verify_at);
            }
            // The job did run: a unit with Restart= may still come up, so verify as usual.
            Err(error @ (RestartError::JobFailed { .. } | RestartError::Timeout(_))) => {
                out.events.push(Event::RestartError {
                    error: error.to_string(),
                });
                let job_failure = match &error {
                    RestartError::JobFailed { result } => {
                        Some(format!("finished with \"{result}\""))
                    }
                    _ => Some(error.to_string()),
                };
                self.phase = Phase::Verifying {
                    manual,
                    deadline,
                    job_failure,
                };
                out.next_check = Some(verify_at);
            }
            Err(error) => {
                out.events.push(Event::RestartError {
                    error: error.to_string(),
                });
                if self.incident.is_none() {
                    self.open_incident(now, &error.to_string(), out);
                }
                self.needs_attention(Verdict::CannotRestart, error.to_string(), now, out);
            }
        }
    }

    fn on_manual_restart(&mut self, now: Instant, out: &mut Decision) {
        if matches!(
            self.phase,
            Phase::Restarting { .. } | Phase::Verifying { .. }
        ) {
            out.events.push(Event::RestartSkipped {
                reason: "a restart is already in progress".to_string(),
            });
            return;
        }
        self.restart(true, now, out);
    }

    /// Reports a crash loop when systemd keeps restarting the service by itself, even though
    /// each crash was healed.
    fn check_flapping(&mut self, now: Instant, out: &mut Decision) {
        let used = self.restarts_in_window(now);
        if self.mode == Mode::Heal && used > self.recovery.max_restarts as usize {
            let reason = format!(
                "systemd restarted it {used} times within {}",
                humantime::format_duration(self.recovery.restart_window)
            );
            self.alert_once(Verdict::CrashLoop, reason, now, out);
        }
    }

    fn open_incident(&mut self, now: Instant, problem: &str, out: &mut Decision) {
        if self.incident.is_none() {
            self.incident = Some(Incident {
                opened: now,
                alerted: false,
                saw_systemd_working: false,
            });
            out.events.push(Event::IncidentOpened {
                problem: problem.to_string(),
            });
        }
    }

    fn close_incident(&mut self, verdict: Verdict, now: Instant, out: &mut Decision) {
        self.blocked = None;
        if let Some(incident) = self.incident.take() {
            let verdict = match verdict {
                Verdict::Recovered if incident.saw_systemd_working => Verdict::RestartedBySystemd,
                other => other,
            };
            out.events.push(Event::IncidentClosed {
                verdict,
                after: now.saturating_duration_since(incident.opened),
            });
        }
        self.phase = Phase::Healthy;
    }

    fn needs_attention(
        &mut self,
        verdict: Verdict,
        reason: String,
        now: Instant,
        out: &mut Decision,
    ) {
        out.events.push(Event::NeedsAttention {
            verdict,
            reason: reason.clone(),
        });
        self.phase = Phase::NeedsAttention {
            verdict,
            reason: reason.clone(),
        };
        let alert_needed = match verdict {
            Verdict::Down => self.critical,
            _ => true,
        };
        if alert_needed {
            self.alert_once(verdict, reason, now, out);
        }
    }

    /// Alerts at most once per incident. A crash loop alerts at most once per restart window,
    /// so a service that flaps between crash loop and healthy does not mail on every flap.
    fn alert_once(&mut self, verdict: Verdict, reason: String, now: Instant, out: &mut Decision) {
        let recent_crash_loop_alert = self
            .last_crash_loop_alert
            .is_some_and(|t| now.saturating_duration_since(t) < self.recovery.restart_window);
        if verdict == Verdict::CrashLoop && recent_crash_loop_alert {
            out.events.push(Event::AlertSuppressed { verdict, reason });
            return;
        }
        match &mut self.incident {
            Some(incident) if incident.alerted => return,
            Some(incident) => incident.alerted = true,
            // A flapping service alerts between incidents: no incident to mark.
            None => {}
        }
        if verdict == Verdict::CrashLoop {
            self.last_crash_loop_alert = Some(now);
        }
        out.commands.push(Command::Alert { verdict, reason });
    }
}

/// Whole seconds, or tenths below ten seconds: "2.5 s", "42 s".
pub fn format_secs(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    if secs < 10.0 {
        format!("{secs:.1} s")
    } else {
        format!("{secs:.0} s")
    }
}
