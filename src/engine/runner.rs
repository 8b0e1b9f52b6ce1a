//! The task of one service: observe, feed the policy, carry out its commands, record events.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant};

use super::events::record;
use super::notify::{AlertJob, AlertSender};
use super::rediagnosis::{Schedule, Symptoms};
use super::{PauseView, Request, RestartOutcome, ServiceView, MANAGER_CALL_TIMEOUT};
use crate::config::ServiceConfig;
use crate::diagnose::{Evidence, Finding, RestartAfterFix};
use crate::manager::{Managers, Target};
use crate::metrics::Metrics;
use crate::policy::{
    Command, Decision, Event, Health, Input, Observation, Phase, ServicePolicy, Verdict,
};
use crate::probe;
use crate::store::{unix_ms, ServiceStateRow, Store};

/// Read the unit's state and run every probe, concurrently, each under its own timeout.
pub async fn observe(managers: &Managers, target: &Target, service: &ServiceConfig) -> Observation {
    let status = async {
        match timeout(MANAGER_CALL_TIMEOUT, managers.status(target)).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "status call timed out after {}",
                humantime::format_duration(MANAGER_CALL_TIMEOUT)
            )),
        }
    };
    let probes = probe::run_all(&service.probes, service.probe_timeout);
    let (unit, probes) = tokio::join!(status, probes);
    Observation {
        unit,
        probes,
        blockers: Vec::new(),
    }
}

/// Journal lines the diagnosis reads: enough to reach past systemd's own lines to the
/// daemon's last error.
const DIAGNOSIS_JOURNAL_LINES: usize = 100;

/// Gathers the evidence for `service` (its unit's state, the journal of the unit's latest
/// start, the other services' states and its open incident's verdict) and runs the diagnosis.
pub async fn diagnose(
    managers: &Managers,
    target: &Target,
    service: &ServiceConfig,
    store: Option<&Store>,
) -> Vec<Finding> {
    let unit = match timeout(MANAGER_CALL_TIMEOUT, managers.status(target)).await {
        Ok(Ok(status)) => Some(status),
        _ => None,
    };
    let journal = managers
        .journal_of_latest_start(target, unit.as_ref(), DIAGNOSIS_JOURNAL_LINES)
        .await;
    let states = store
        .and_then(|store| store.service_states().ok())
        .unwrap_or_default();
    let verdict = store
        .and_then(|store| store.open_incident_for(&service.name).ok().flatten())
        .and_then(|incident| incident.verdict)
        .and_then(|verdict| Verdict::parse(&verdict));
    let unit_name = match target {
        Target::Unit(unit) => Some(unit.clone()),
        Target::Commands(_) => None,
    };
    let evidence = Evidence {
        service,
        unit: unit.as_ref(),
        journal: &journal,
        states: &states,
        unit_name,
        after_fix: RestartAfterFix::for_state(service.mode, verdict),
    };
    crate::diagnose::diagnose(&evidence).await
}

pub struct ServiceRunner {
    service: ServiceConfig,
    target: Target,
    policy: ServicePolicy,
    managers: Arc<Managers>,
    store: Arc<Store>,
    alerts: AlertSender,
    journal_lines: usize,
    view: Arc<Mutex<ServiceView>>,
    /// Id of the open incident in the store.
    incident: Option<i64>,
    last: Option<Observation>,
    /// Admin waiting for the outcome of a manual restart.
    waiting_admin: Option<oneshot::Sender<RestartOutcome>>,
    /// Findings of the diagnosis for the open incident.
    diagnosis: Vec<Finding>,
    /// When the diagnosis of the open incident runs again.
    rediagnosis: Schedule,
    /// Bumped after every change of the view, for the dashboard's live feed.
    changed: Arc<watch::Sender<u64>>,
    /// The admin or token that requested the manual restart in progress, for the incident
    /// history.
    requested_by: Option<String>,
    /// The state and its start before a pause, restored when the service is in that state
    /// again after it, so that a pause does not reset "healthy since".
    before_pause: Option<(String, i64)>,
    metrics: Arc<Metrics>,
}

impl ServiceRunner {
    pub fn new(
        service: ServiceConfig,
        target: Target,
        policy: ServicePolicy,
        managers: Arc<Managers>,
        store: Arc<Store>,
        alerts: AlertSender,
        journal_lines: usize,
    ) -> anyhow::Result<Self> {
        let open = store.open_incident_for(&service.name)?;
        let state = policy.phase().label().to_string();
        // After a restart of selfheal, a service still in the state it was stored in keeps
        // its "since" and its last action, so status does not show the daemon's start instead.
        let stored = store
            .service_states()?
            .into_iter()
            .find(|row| row.service == service.name && row.state == state);
        let view = ServiceView {
            service: service.name.clone(),
            unit: target.label(),
            mode: service.mode.to_string(),
            critical: service.critical,
            state,
            since_ms: stored
                .as_ref()
                .map_or_else(|| unix_ms(SystemTime::now()), |row| row.since_ms),
            checked_ms: None,
            checks: 0,
            last_probe: stored.as_ref().and_then(|row| row.last_probe.clone()),
            last_action: stored.as_ref().and_then(|row| row.last_action.clone()),
            last_action_ms: stored.as_ref().and_then(|row| row.last_action_ms),
            verdict: open.as_ref().and_then(|row| row.verdict.clone()),
            reason: open.as_ref().and_then(|row| row.reason.clone()),
            incident: open.as_ref().map(|row| row.id),
            alert_undelivered: None,
            probe_ms: None,
            last_restart_ms: store
                .restarts_since(&service.name, SystemTime::UNIX_EPOCH)?
                .last()
                .map(|at| unix_ms(*at)),
            paused: None,
            diagnosis: open
                .as_ref()
                .and_then(|row| row.diagnosis.first())
                .map(|finding| finding.summary.clone()),
            findings: open
                .as_ref()
                .map(|row| row.diagnosis.clone())
                .unwrap_or_default(),
        };
        let diagnosis = open
            .as_ref()
            .map(|row| row.diagnosis.clone())
            .unwrap_or_default();
        let mut runner = ServiceRunner {
            incident: open.map(|row| row.id),
            rediagnosis: Schedule::new(&service),
            service,
            target,
            policy,
            managers,
            store,
            alerts,
            journal_lines,
            view: Arc::new(Mutex::new(view)),
            last: None,
            waiting_admin: None,
            diagnosis,
            changed: Arc::new(watch::channel(0).0),
            requested_by: None,
            before_pause: None,
            metrics: Arc::new(Metrics::new()),
        };
        runner.restore_pause()?;
        Ok(runner)
    }

    /// Reports view changes to `changed` and records into `metrics`, both shared by every
    /// service's runner.
    pub fn with_feedback(
        mut self,
        changed: Arc<watch::Sender<u64>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        self.changed = changed;
        self.metrics = metrics;
        self
    }

    /// Reopens a maintenance window stored before selfheal restarted.
    fn restore_pause(&mut self) -> anyhow::Result<()> {
        let now = SystemTime::now();
        let Some(pause) = self.store.pause_for(&self.service.name, now)? else {
            return Ok(());
        };
        let until = pause.until_ms.map(|until_ms| {
            let left = crate::store::from_unix_ms(until_ms)
                .duration_since(now)
                .unwrap_or(Duration::ZERO);
            Instant::now() + left
        });
        self.policy.step(Input::Pause { until }, Instant::now());
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        view.state = "paused".to_string();
        view.paused = Some(PauseView {
            until_ms: pause.until_ms,
            by: pause.actor,
            since_ms: pause.at_ms,
        });
        Ok(())
    }

    pub fn view(&self) -> Arc<Mutex<ServiceView>> {
        self.view.clone()
    }

    pub fn phase(&self) -> &Phase {
        self.policy.phase()
    }

    /// Checks every `interval`, and earlier when the policy requests it or systemd signals a
    /// unit change.
    pub async fn run(
        mut self,
        mut requests: mpsc::Receiver<Request>,
        interval: Duration,
        heartbeat: Arc<Mutex<Instant>>,
    ) {
        let mut next_regular = Instant::now();
        let mut next_requested: Option<Instant> = None;
        loop {
            let due = next_requested.map_or(next_regular, |t| t.min(next_regular));
            tokio::select! {
                _ = sleep_until(due) => {}
                request = requests.recv() => match request {
                    None => return,
                    Some(Request::Wake) => {
                        // Several changes arrive at once (deactivating, failed): one check.
                        while let Ok(Request::Wake) = requests.try_recv() {}
                        tracing::debug!(service = %self.service.name, "unit changed, checking now");
                    }
                    Some(Request::Restart { by, reply }) => {
                        next_requested = self.manual_restart(reply, &by).await;
                        continue;
                    }
                    Some(Request::Pause { length, by, reply }) => {
                        next_requested = self.pause(length, &by).await;
                        let _ = reply.send(self.current_view());
                        continue;
                    }
                    Some(Request::Resume { by, reply }) => {
                        // Check at once, so that the reply shows the service as it is now
                        // (and, in heal mode, what was done about it), not "healthy".
                        self.resume(&by).await;
                        next_requested = self.check().await;
                        let _ = reply.send(self.current_view());
                        continue;
                    }
                },
            }
            next_requested = self.check().await;
            // The next regular check counts from now, so a stalled or suspended clock never
            // causes a burst of catch-up checks.
            next_regular = Instant::now() + interval;
            *heartbeat.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
    }

    fn current_view(&self) -> ServiceView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Opens a maintenance window of `length` (none: until resumed), stored so that it
    /// outlives a restart of selfheal.
    async fn pause(&mut self, length: Option<Duration>, by: &str) -> Option<Instant> {
        let now = SystemTime::now();
        let pause = crate::store::PauseRow {
            service: self.service.name.clone(),
            until_ms: length.map(|length| unix_ms(now + length)),
            actor: by.to_string(),
            at_ms: unix_ms(now),
        };
        if let Err(error) = self.store.set_pause(&pause) {
            tracing::error!(service = %self.service.name, %error, "cannot store the pause");
        }
        tracing::info!(service = %self.service.name, by, "healing paused");
        let until = length.map(|length| Instant::now() + length);
        let decision = self.policy.step(Input::Pause { until }, Instant::now());
        self.view.lock().unwrap_or_else(|p| p.into_inner()).paused = Some(PauseView {
            until_ms: pause.until_ms,
            by: pause.actor,
            since_ms: pause.at_ms,
        });
        self.apply(decision).await
    }

    async fn resume(&mut self, by: &str) -> Option<Instant> {
        tracing::info!(service = %self.service.name, by, "healing resumed");
        let decision = self.policy.step(Input::Resume, Instant::now());
        self.apply(decision).await
    }

    /// Observes, decides and acts once. Returns the time of the next check the policy requests.
    pub async fn check(&mut self) -> Option<Instant> {
        let started = Instant::now();
        self.rediscover_probes();
        let mut observation = observe(&self.managers, &self.target, &self.service).await;
        // A service that is down in heal mode is about to be restarted, or waits for a
        // blocker to go away: look for what a restart cannot fix.
        if self.policy.wants_blockers() && observation.health() == Health::Dead {
            let unit = match &self.target {
                Target::Unit(unit) => Some(unit.as_str()),
                Target::Commands(_) => None,
            };
            observation.blockers = crate::diagnose::blockers(&self.service, unit)
                .await
                .into_iter()
                .map(|finding| finding.summary)
                .collect();
        }
        tracing::debug!(
            service = %self.service.name,
            unit = %observation.unit_state(),
            probe = %observation.probe_summary(),
            "checked"
        );
        let probe_seconds = slowest_probe(&observation);
        self.metrics.observe_check(
            &self.service.name,
            started.elapsed().as_secs_f64(),
            probe_seconds,
        );
        self.last = Some(observation.clone());
        {
            let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
            view.checks += 1;
            view.probe_ms = probe_seconds.map(|seconds| (seconds * 1e4).round() / 10.0);
        }
        let decision = self
            .policy
            .step(Input::Checked(observation), Instant::now());
        let next = self.apply(decision).await;
        self.refresh_diagnosis().await;
        next
    }

    /// Reads the service's own config files again when its probes were discovered from them,
    /// and probes what they name now. A socket or port moved since selfheal started is thus
    /// followed at the next check, including the checks that verify a restart. A change is
    /// logged once, with the discovery's warnings.
    ///
    /// It runs at every check because discovery only reads a few small files: 30 to 90 µs per
    /// service for Debian 12's default files in a release build on a 2-core VM (a loop of 2000
    /// `discover` calls per preset with the files in the page cache).
    ///
    /// NOTE: a file read halfway through a save that rewrites it in place can give one check a
    /// wrong endpoint, such as the preset's default. The probe's retries read the file again.
    fn rediscover_probes(&mut self) {
        let Some(found) = crate::config::discover::rediscover(&self.service) else {
            return;
        };
        if found.probes == self.service.probes {
            return;
        }
        let before = describe_endpoints(&self.service.probes);
        let after = describe_endpoints(&found.probes);
        if before == after {
            // Only a line number in a source moved.
            tracing::debug!(service = %self.service.name, "probe sources changed: {after}");
        } else {
            let sources: Vec<String> = found
                .probes
                .iter()
                .map(crate::config::describe_source)
                .collect();
            tracing::info!(
                service = %self.service.name,
                source = %sources.join(", "),
                "{}'s config moved its endpoints from {before} to {after}; probing {after}",
                self.service.name
            );
            for warning in &found.warnings {
                tracing::warn!(service = %self.service.name, "{warning}");
            }
        }
        self.service.probes = found.probes;
    }

    /// Restarts on behalf of an admin, through the same path as an automatic restart.
    pub async fn manual_restart(
        &mut self,
        reply: oneshot::Sender<RestartOutcome>,
        by: &str,
    ) -> Option<Instant> {
        tracing::info!(service = %self.service.name, by, "manual restart requested");
        self.waiting_admin = Some(reply);
        let decision = self.policy.step(Input::RestartRequested, Instant::now());
        self.requested_by = Some(by.to_string());
        let next = self.apply(decision).await;
        self.requested_by = None;
        self.answer_admin().await;
        next
    }

    /// Carry out a decision and everything that follows from it (a restart feeds its result
    /// back into the policy). Returns the earliest check the policy asked for.
    async fn apply(&mut self, mut decision: Decision) -> Option<Instant> {
        loop {
            for event in &decision.events {
                if let (Event::IncidentClosed { verdict, .. }, Some(incident)) =
                    (event, self.incident)
                {
                    self.alerts.incident_closed(incident, *verdict);
                    self.diagnosis.clear();
                    self.rediagnosis.last = None;
                }
                self.count(event);
                self.incident = record(
                    &self.store,
                    &self.service.name,
                    &self.target.label(),
                    self.incident,
                    event,
                    self.requested_by.as_deref(),
                );
            }
            if decision
                .events
                .iter()
                .any(|event| matches!(event, Event::NeedsAttention { .. }))
            {
                self.run_diagnosis().await;
            }
            let mut restart = false;
            for command in &decision.commands {
                match command {
                    Command::Restart => restart = true,
                    Command::Alert { verdict, reason } => self.queue_alert(*verdict, reason).await,
                }
            }
            self.update_view(&decision);
            if !restart {
                self.answer_admin().await;
                return decision.next_check;
            }
            let manual = matches!(self.policy.phase(), Phase::Restarting { manual: true });
            self.view
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .last_restart_ms = Some(unix_ms(SystemTime::now()));
            if let Err(error) =
                self.store
                    .record_restart(&self.service.name, SystemTime::now(), manual)
            {
                tracing::error!(service = %self.service.name, %error, "cannot store restart");
            }
            // A stop still hanging after a quarter of the restart timeout gets SIGKILL: 30 s of
            // the default 2 min, 2.5 min of MariaDB's 10 min that leave InnoDB time to flush.
            let kill_after = self.service.restart_timeout / 4;
            let result = self
                .managers
                .restart(&self.target, self.service.restart_timeout, kill_after)
                .await;
            decision = self
                .policy
                .step(Input::RestartFinished(result), Instant::now());
        }
    }

    /// Counts restarts and their outcomes into the metrics, and ends a stored pause when the
    /// policy resumes.
    fn count(&self, event: &Event) {
        let name = &self.service.name;
        match event {
            Event::RestartIssued { manual } => self.metrics.restart_issued(name, *manual),
            Event::IncidentClosed {
                verdict: Verdict::Healed,
                ..
            }
            | Event::ManualRestartVerified => self.metrics.restart_outcome(name, "healed"),
            Event::NeedsAttention {
                verdict: Verdict::RestartFailed,
                ..
            } => self.metrics.restart_outcome(name, "failed"),
            Event::NeedsAttention {
                verdict: Verdict::CannotRestart,
                ..
            } => self.metrics.restart_outcome(name, "cannot_restart"),
            Event::Resumed { .. } => {
                if let Err(error) = self.store.clear_pause(name) {
                    tracing::error!(service = %name, %error, "cannot remove the stored pause");
                }
                self.view.lock().unwrap_or_else(|p| p.into_inner()).paused = None;
            }
            _ => {}
        }
    }

    /// Diagnoses the service now that it needs the admin, and records what was found with
    /// the incident and in the status view. Findings that differ from the last diagnosis are
    /// logged, and an empty list clears the cause.
    async fn run_diagnosis(&mut self) {
        let findings = diagnose(
            &self.managers,
            &self.target,
            &self.service,
            Some(&self.store),
        )
        .await;
        self.rediagnosis
            .ran(self.last.as_ref().map(Symptoms::of), Instant::now());
        if findings == self.diagnosis {
            tracing::debug!(service = %self.service.name, "diagnosis unchanged");
            return;
        }
        for finding in &findings {
            tracing::warn!(
                service = %self.service.name,
                cause = %finding.cause,
                next_step = %finding.next_step,
                "diagnosis: {}",
                finding.summary
            );
        }
        if findings.is_empty() {
            tracing::info!(service = %self.service.name, "diagnosis: the earlier cause is gone, and no other was found");
        }
        if let Some(incident) = self.incident {
            if let Err(error) = self.store.set_diagnosis(incident, &findings) {
                tracing::error!(service = %self.service.name, %error, "cannot store the diagnosis");
            }
        }
        {
            let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
            view.diagnosis = findings.first().map(|finding| finding.summary.clone());
            view.findings = findings.clone();
        }
        self.diagnosis = findings;
        // A diagnosis run again after a check changes the view outside `update_view`, so this
        // notifies the dashboard's live feed itself.
        self.changed
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Diagnoses a service that still needs attention again when [`Schedule::due`] returns true:
    /// what the checks see has changed (the unit's state, a new start, the probes' errors), or the
    /// last diagnosis has grown old. The cause in the incident and the status then follows
    /// what the admin changed meanwhile, such as a config that was fixed or a port that
    /// another program took. No new alert is sent.
    async fn refresh_diagnosis(&mut self) {
        if self.incident.is_none() || !matches!(self.policy.phase(), Phase::NeedsAttention { .. }) {
            return;
        }
        let Some(observation) = &self.last else {
            return;
        };
        if !self
            .rediagnosis
            .due(&Symptoms::of(observation), Instant::now())
        {
            return;
        }
        tracing::debug!(service = %self.service.name, problem = %observation.problem(), "diagnosing again");
        self.run_diagnosis().await;
    }

    async fn queue_alert(&mut self, verdict: crate::policy::Verdict, reason: &str) {
        let journal = self
            .managers
            .journal_tail(&self.target, self.journal_lines)
            .await;
        let (seen, last_probe, headline) = match &self.last {
            Some(observation) => (
                format!(
                    "unit {}\n{}",
                    observation.unit_state(),
                    observation.probe_summary()
                ),
                observation.probe_summary(),
                observation.headline(),
            ),
            None => (
                "not checked yet".to_string(),
                String::new(),
                reason.to_string(),
            ),
        };
        // A service managed by commands has no unit: its start command is no name for it.
        let unit = match &self.target {
            Target::Unit(unit) => unit.clone(),
            Target::Commands(_) => String::new(),
        };
        let job = AlertJob {
            incident: self.incident,
            service: self.service.clone(),
            unit,
            verdict,
            reason: reason.to_string(),
            headline,
            seen,
            last_probe,
            journal,
            diagnosis: self.diagnosis.clone(),
        };
        self.alerts.queue(&self.store, job);
    }

    /// Once the policy has left restarting and verifying, tell a waiting admin how it went.
    async fn answer_admin(&mut self) {
        if matches!(
            self.policy.phase(),
            Phase::Restarting { .. } | Phase::Verifying { .. }
        ) {
            return;
        }
        let Some(reply) = self.waiting_admin.take() else {
            return;
        };
        let phase = self.policy.phase();
        let healthy = *phase == Phase::Healthy;
        let message = match phase {
            Phase::Healthy => format!("{} restarted and verified healthy", self.service.name),
            Phase::NeedsAttention { verdict, reason } => {
                format!("{}: {verdict}: {reason}", self.service.name)
            }
            other => format!("{}: {}", self.service.name, other.label()),
        };
        let state = phase.label().to_string();
        let journal = if healthy {
            Vec::new()
        } else {
            self.managers
                .journal_tail(&self.target, self.journal_lines)
                .await
        };
        let _ = reply.send(RestartOutcome {
            service: self.service.name.clone(),
            healthy,
            state,
            message,
            journal,
        });
    }

    fn update_view(&mut self, decision: &Decision) {
        let now = unix_ms(SystemTime::now());
        let mut view = self.view.lock().unwrap_or_else(|p| p.into_inner());
        let paused = self.policy.paused().is_some()
            && !matches!(
                self.policy.phase(),
                Phase::Restarting { .. } | Phase::Verifying { .. }
            );
        let state = if paused {
            "paused".to_string()
        } else {
            self.policy.phase().label().to_string()
        };
        if view.state != state {
            let resumed_as_before = view.state == "paused"
                && self
                    .before_pause
                    .as_ref()
                    .is_some_and(|(before, _)| *before == state);
            if state == "paused" {
                self.before_pause = Some((view.state.clone(), view.since_ms));
                view.since_ms = now;
            } else if resumed_as_before {
                view.since_ms = self.before_pause.take().map_or(now, |(_, since)| since);
            } else {
                self.before_pause = None;
                view.since_ms = now;
            }
            view.state = state;
        }
        view.checked_ms = Some(now);
        view.incident = self.incident;
        if let Some(observation) = &self.last {
            view.last_probe = Some(observation.probe_summary());
        }
        match self.policy.phase() {
            Phase::NeedsAttention { verdict, reason } => {
                view.verdict = Some(verdict.to_string());
                view.reason = Some(reason.clone());
            }
            _ => {
                view.verdict = None;
                view.reason = None;
            }
        }
        view.diagnosis = self
            .diagnosis
            .first()
            .map(|finding| finding.summary.clone());
        view.findings = self.diagnosis.clone();
        if let Some(action) = decision
            .events
            .iter()
            .rev()
            .find_map(super::events::action_text)
        {
            view.last_action = Some(action);
            view.last_action_ms = Some(now);
        }
        let row = ServiceStateRow {
            service: view.service.clone(),
            state: view.state.clone(),
            since_ms: view.since_ms,
            checked_ms: view.checked_ms,
            last_probe: view.last_probe.clone(),
            last_action: view.last_action.clone(),
            last_action_ms: view.last_action_ms,
        };
        let needs_attention = matches!(self.policy.phase(), Phase::NeedsAttention { .. });
        self.metrics.set_state(
            &self.service.name,
            view.state == "healthy",
            needs_attention && !paused,
            self.policy.paused().is_some(),
        );
        self.metrics
            .set_incident_open(&self.service.name, self.incident.is_some());
        drop(view);
        if let Err(error) = self.store.save_service_state(&row) {
            tracing::error!(service = %self.service.name, %error, "cannot store service state");
        }
        self.changed
            .send_modify(|count| *count = count.wrapping_add(1));
    }
}

/// Lists the endpoints of `probes` with their protocols, such as "milter
/// /run/opendkim/opendkim.sock", or "no endpoint".
fn describe_endpoints(probes: &[crate::probe::ProbeSpec]) -> String {
    let endpoints: Vec<String> = probes
        .iter()
        .map(|probe| match &probe.endpoint {
            Some(endpoint) => format!("{} {endpoint}", probe.protocol.name()),
            None => probe.protocol.name().to_string(),
        })
        .collect();
    if endpoints.is_empty() {
        "no endpoint".to_string()
    } else {
        endpoints.join(", ")
    }
}

/// Returns the slowest probe's latency in seconds when every probe passed; none when one
/// failed or the service has none.
fn slowest_probe(observation: &Observation) -> Option<f64> {
    let mut slowest: Option<Duration> = None;
    for report in &observation.probes {
        match &report.outcome {
            probe::Outcome::Healthy { latency, .. } => {
                slowest = Some(slowest.map_or(*latency, |seen| seen.max(*latency)));
            }
            _ => return None,
        }
    }
    slowest.map(|latency| latency.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;
    use crate::manager::CommandSpec;
    use crate::policy::Recovery;

    /// Builds a runner for a service managed by commands whose pidfile names this test process.
    /// It is always running and has no probe, so each check is one pidfile read.
    fn runner(dir: &std::path::Path) -> (ServiceRunner, tokio::task::JoinHandle<()>) {
        runner_with(dir, Arc::new(Store::open_in_memory().unwrap()))
    }

    fn runner_with(
        dir: &std::path::Path,
        store: Arc<Store>,
    ) -> (ServiceRunner, tokio::task::JoinHandle<()>) {
        let pidfile = dir.join("service.pid");
        std::fs::write(&pidfile, std::process::id().to_string()).unwrap();
        runner_for(filter_service(dir), store)
    }

    /// Builds a service managed by commands whose state comes from `DIR/service.pid`, in heal
    /// mode.
    fn filter_service(dir: &std::path::Path) -> ServiceConfig {
        ServiceConfig {
            name: "filter".into(),
            preset: None,
            mode: Mode::Heal,
            critical: false,
            units: vec![],
            commands: Some(CommandSpec {
                start: Some(vec!["/bin/true".into()]),
                stop: None,
                restart: None,
                pidfile: Some(dir.join("service.pid")),
                process: None,
            }),
            probes: vec![],
            probe_timeout: Duration::from_secs(5),
            restart_timeout: Duration::from_secs(30),
            recovery: Recovery::default(),
            config_test: None,
            discovered_under: None,
        }
    }

    fn runner_for(
        service: ServiceConfig,
        store: Arc<Store>,
    ) -> (ServiceRunner, tokio::task::JoinHandle<()>) {
        let (outbox, alert_task) = crate::alert::dispatch::start(
            Arc::new(Default::default()),
            store.clone(),
            "test".into(),
            None,
            Default::default(),
        )
        .unwrap();
        let alerts = AlertSender::new(outbox, "test".into());
        let policy = ServicePolicy::new(service.mode, false, Recovery::default());
        let target = Target::Commands(service.commands.clone().unwrap());
        let managers = Arc::new(Managers::without_bus(Duration::from_secs(5)));
        let runner =
            ServiceRunner::new(service, target, policy, managers, store, alerts, 10).unwrap();
        (runner, alert_task)
    }

    fn checks(view: &Arc<Mutex<ServiceView>>) -> u64 {
        view.lock().unwrap().checks
    }

    #[tokio::test]
    async fn restart_of_selfheal_keeps_since() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in_memory().unwrap());
        store
            .save_service_state(&ServiceStateRow {
                service: "filter".into(),
                state: "healthy".into(),
                since_ms: 1_700_000_000_000,
                checked_ms: Some(1_700_000_100_000),
                last_probe: Some("pidfile ok".into()),
                last_action: Some("healed after 1.2 s".into()),
                last_action_ms: Some(1_700_000_000_000),
            })
            .unwrap();
        let (runner, _alerts) = runner_with(dir.path(), store);
        let view = runner.view().lock().unwrap().clone();
        assert_eq!(view.since_ms, 1_700_000_000_000);
        assert_eq!(view.last_action.as_deref(), Some("healed after 1.2 s"));
    }

    #[tokio::test(start_paused = true)]
    async fn checks_once_per_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (runner, _alerts) = runner(dir.path());
        let view = runner.view();
        let (_requests, rx) = mpsc::channel(4);
        let heartbeat = Arc::new(Mutex::new(Instant::now()));
        tokio::spawn(runner.run(rx, Duration::from_secs(30), heartbeat));

        // One check at start, then one every 30 s: 21 in ten minutes and a bit.
        for _ in 0..615 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(checks(&view), 21);
        assert_eq!(view.lock().unwrap().state, "healthy");
    }

    #[tokio::test(start_paused = true)]
    async fn long_stall_causes_no_burst() {
        let dir = tempfile::tempdir().unwrap();
        let (runner, _alerts) = runner(dir.path());
        let view = runner.view();
        let (_requests, rx) = mpsc::channel(4);
        let heartbeat = Arc::new(Mutex::new(Instant::now()));
        tokio::spawn(runner.run(rx, Duration::from_secs(30), heartbeat));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(checks(&view), 1);

        // The clock jumps an hour at once (a suspended VM, a stalled host): one check follows,
        // not the 120 that were "missed".
        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        assert_eq!(checks(&view), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn wake_checks_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (runner, _alerts) = runner(dir.path());
        let view = runner.view();
        let (requests, rx) = mpsc::channel(4);
        let heartbeat = Arc::new(Mutex::new(Instant::now()));
        tokio::spawn(runner.run(rx, Duration::from_secs(30), heartbeat));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(checks(&view), 1);

        // Three change signals in a burst lead to one check, long before the next tick.
        for _ in 0..3 {
            requests.send(Request::Wake).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(checks(&view), 2);
    }

    /// Builds a runner for `filter` in watch mode, down (no pidfile), whose config test fails
    /// until `DIR/fixed` exists. The diagnosis schedule allows a new diagnosis after `gap`, and
    /// one without a change after `refresh`.
    fn watched_filter(
        dir: &std::path::Path,
        store: Arc<Store>,
        gap: Duration,
        refresh: Duration,
    ) -> (ServiceRunner, tokio::task::JoinHandle<()>) {
        let mut service = filter_service(dir);
        service.mode = Mode::Watch;
        let script = format!(
            "test -e {dir}/fixed || {{ echo '{dir}/filter.conf:3: error: bad value' >&2; exit 1; }}",
            dir = dir.display()
        );
        service.config_test = Some(vec!["/bin/sh".into(), "-c".into(), script]);
        let (mut runner, alerts) = runner_for(service, store);
        runner.rediagnosis.min_gap = gap;
        runner.rediagnosis.refresh = refresh;
        (runner, alerts)
    }

    fn cause(runner: &ServiceRunner) -> Option<String> {
        runner.view().lock().unwrap().diagnosis.clone()
    }

    fn stored_causes(store: &Store, runner: &ServiceRunner) -> Vec<String> {
        let incident = runner.incident.expect("an open incident");
        store
            .incident(incident)
            .unwrap()
            .expect("the incident is stored")
            .diagnosis
            .into_iter()
            .map(|finding| finding.summary)
            .collect()
    }

    #[tokio::test]
    async fn fixed_config_clears_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in_memory().unwrap());
        let gap = Duration::from_millis(300);
        let (mut runner, _alerts) = watched_filter(dir.path(), store.clone(), gap, gap);
        let error = format!(
            "config error: {}/filter.conf line 3: error: bad value",
            dir.path().display()
        );

        runner.check().await;
        assert_eq!(runner.phase().label(), "down");
        assert_eq!(cause(&runner).as_deref(), Some(error.as_str()));
        assert_eq!(stored_causes(&store, &runner), [error.as_str()]);

        // The admin fixes the config. The unit stays down, so the checks see no change.
        std::fs::write(dir.path().join("fixed"), "").unwrap();
        runner.check().await;
        assert_eq!(
            cause(&runner).as_deref(),
            Some(error.as_str()),
            "diagnosed again before the gap"
        );

        tokio::time::sleep(gap).await;
        runner.check().await;
        assert_eq!(cause(&runner), None);
        assert!(stored_causes(&store, &runner).is_empty());
        assert_eq!(runner.phase().label(), "down");
    }

    #[tokio::test]
    async fn new_symptoms_are_diagnosed_after_the_gap() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open_in_memory().unwrap());
        let gap = Duration::from_millis(300);
        let hour = Duration::from_secs(3600);
        let (mut runner, _alerts) = watched_filter(dir.path(), store.clone(), gap, hour);

        runner.check().await;
        assert!(cause(&runner).is_some_and(|cause| cause.starts_with("config error: ")));

        // The config is fixed and the pidfile now names a process that has exited: the
        // problem text changes, but within the gap nothing runs.
        std::fs::write(dir.path().join("fixed"), "").unwrap();
        let mut exited = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = exited.id();
        exited.wait().unwrap();
        std::fs::write(dir.path().join("service.pid"), pid.to_string()).unwrap();
        runner.check().await;
        assert!(cause(&runner).is_some_and(|cause| cause.starts_with("config error: ")));

        // After the gap the change is still pending and is diagnosed.
        tokio::time::sleep(gap).await;
        runner.check().await;
        assert_eq!(cause(&runner), None);
        assert!(stored_causes(&store, &runner).is_empty());

        // Unchanged again: no diagnosis before the hour is up, even with the config broken.
        std::fs::remove_file(dir.path().join("fixed")).unwrap();
        tokio::time::sleep(gap).await;
        runner.check().await;
        assert_eq!(cause(&runner), None);
    }

    #[tokio::test]
    async fn moved_socket_is_probed_at_next_check() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let conf = root.join("etc/opendkim.conf");
        let old_socket = dir.path().join("old.sock");
        let new_socket = dir.path().join("new.sock");
        std::fs::write(&conf, format!("Socket local:{}\n", old_socket.display())).unwrap();
        std::fs::write(
            dir.path().join("service.pid"),
            std::process::id().to_string(),
        )
        .unwrap();
        let mut config = crate::config::parse_str(
            &format!(
                "[services.opendkim]\npidfile = \"{}\"\nstart = [\"/bin/true\"]\n",
                dir.path().join("service.pid").display()
            ),
            std::path::Path::new("selfheal.toml"),
        )
        .unwrap();
        crate::config::discover::apply(&mut config, &root);
        let service = config.services.remove(0);
        let (mut runner, _alerts) = runner_for(service, Arc::new(Store::open_in_memory().unwrap()));
        let probed = |runner: &ServiceRunner| {
            runner
                .last
                .as_ref()
                .map(|observation| observation.probes[0].endpoint.clone())
                .unwrap_or_default()
        };

        runner.check().await;
        let before = probed(&runner);
        std::fs::write(&conf, format!("Socket local:{}\n", new_socket.display())).unwrap();
        runner.check().await;
        let after = probed(&runner);

        assert!(before.contains("old.sock"), "{before}");
        assert!(after.contains("new.sock"), "{after}");
        assert_eq!(
            runner.service.probes[0].source,
            format!("{}:1", "/etc/opendkim.conf")
        );
    }
}
