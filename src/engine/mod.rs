//! The engine wires observers, the policy and the action executor together: one task per
//! service (so a hung service never delays another), woken by its own timer, by systemd's unit
//! change signals and by manual requests.

mod events;
mod notify;
mod rediagnosis;
mod runner;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, ServiceConfig};
use crate::manager::{Managers, Target};
use crate::metrics::Metrics;
use crate::policy::{Recovery, Restored, ServicePolicy, Verdict};
use crate::store::Store;

pub use notify::{AlertJob, AlertSender};
pub use runner::{diagnose, observe, ServiceRunner};

/// Bound on one status read from the service manager.
pub const MANAGER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Status of one service, as `selfheal status` prints it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServiceView {
    pub service: String,
    pub unit: String,
    pub mode: String,
    pub critical: bool,
    pub state: String,
    /// Wall time (Unix ms) the service entered `state`.
    pub since_ms: i64,
    pub checked_ms: Option<i64>,
    /// Checks made since this daemon started.
    pub checks: u64,
    pub last_probe: Option<String>,
    pub last_action: Option<String>,
    pub last_action_ms: Option<i64>,
    /// Verdict and reason while the service needs attention.
    pub verdict: Option<String>,
    pub reason: Option<String>,
    pub incident: Option<i64>,
    /// The most specific cause the diagnosis found while the service needs attention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<String>,
    /// Every finding of that diagnosis, most specific first, with its evidence and next step;
    /// empty when there is none. A daemon from before this field sends none.
    #[serde(default)]
    pub findings: Vec<crate::diagnose::Finding>,
    /// Reason the alert about this service has not reached the admin yet, while it has not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert_undelivered: Option<String>,
    /// Latency of the slowest probe at the last check, in milliseconds, when all passed.
    #[serde(default)]
    pub probe_ms: Option<f64>,
    /// Wall time (Unix ms) of the last restart selfheal issued.
    #[serde(default)]
    pub last_restart_ms: Option<i64>,
    /// The maintenance window, while healing is paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<PauseView>,
}

/// An open maintenance window, as status and the dashboard show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PauseView {
    /// End of the window (Unix ms); none until resumed.
    pub until_ms: Option<i64>,
    /// The admin or token that paused it.
    pub by: String,
    pub since_ms: i64,
}

/// Outcome of a manual restart, as the CLI prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestartOutcome {
    pub service: String,
    pub healthy: bool,
    pub state: String,
    pub message: String,
    /// The unit's last journal lines when the restart did not produce a healthy service.
    #[serde(default)]
    pub journal: Vec<String>,
}

pub enum Request {
    /// systemd reported a change of the unit: check now.
    Wake,
    /// Restart on behalf of an admin (`by`, for the incident history) and reply once
    /// verification has ended.
    Restart {
        by: String,
        reply: oneshot::Sender<RestartOutcome>,
    },
    /// Pause healing for a while (none: until resumed) on behalf of `by`; replies with the
    /// new view.
    Pause {
        length: Option<Duration>,
        by: String,
        reply: oneshot::Sender<ServiceView>,
    },
    /// Resume healing on behalf of `by`; replies with the new view.
    Resume {
        by: String,
        reply: oneshot::Sender<ServiceView>,
    },
}

struct Handle {
    requests: mpsc::Sender<Request>,
    view: Arc<Mutex<ServiceView>>,
}

/// The running engine: one task per service.
pub struct Engine {
    handles: HashMap<String, Handle>,
    order: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
    /// Monotonic time of the last finished check of any service, for the systemd watchdog.
    heartbeat: Arc<Mutex<Instant>>,
    /// Counts changes of any service's view, so that the dashboard's live feed wakes up.
    changes: watch::Receiver<u64>,
    metrics: Arc<Metrics>,
    stall_limit: Duration,
}

impl Engine {
    /// Resolve each service's unit, restore its state from the store and start its task.
    pub async fn start(
        config: Arc<Config>,
        managers: Arc<Managers>,
        store: Arc<Store>,
        alerts: AlertSender,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Engine> {
        let heartbeat = Arc::new(Mutex::new(Instant::now()));
        let (changed, changes) = watch::channel(0u64);
        let changed = Arc::new(changed);
        let watched = config.service_names();
        let closed = store.close_unwatched(&watched, SystemTime::now())?;
        if closed > 0 {
            tracing::info!(
                closed,
                "closed the open incidents of services no longer configured"
            );
        }
        let mut handles = HashMap::new();
        let mut order = Vec::new();
        let mut tasks = Vec::new();
        let mut unit_routes: HashMap<String, mpsc::Sender<Request>> = HashMap::new();

        for service in &config.services {
            let target = resolve_target(&managers, service).await;
            let policy = restore_policy(&store, service)?;
            let (tx, rx) = mpsc::channel(16);
            let runner = ServiceRunner::new(
                service.clone(),
                target.clone(),
                policy,
                managers.clone(),
                store.clone(),
                alerts.clone(),
                config.alerts.journal_lines,
            )?
            .with_feedback(changed.clone(), metrics.clone());
            let view = runner.view();
            if let Target::Unit(unit) = &target {
                unit_routes.insert(unit.clone(), tx.clone());
            }
            tasks.push(tokio::spawn(runner.run(
                rx,
                config.interval,
                heartbeat.clone(),
            )));
            handles.insert(service.name.clone(), Handle { requests: tx, view });
            order.push(service.name.clone());
        }

        let units: Vec<String> = unit_routes.keys().cloned().collect();
        match managers.watch(units).await {
            Some(mut changes) => {
                tracing::info!(
                    units = unit_routes.len(),
                    "subscribed to systemd unit changes"
                );
                tasks.push(tokio::spawn(async move {
                    while let Some(unit) = changes.recv().await {
                        if let Some(tx) = unit_routes.get(&unit) {
                            // A full queue already contains a wake-up.
                            let _ = tx.try_send(Request::Wake);
                        }
                    }
                    tracing::warn!("systemd unit change stream ended; polling only");
                }));
            }
            None => tracing::info!("no unit change stream; crashes are found by the poll"),
        }

        Ok(Engine {
            handles,
            order,
            tasks,
            heartbeat,
            changes,
            metrics,
            stall_limit: config.interval * 2
                + config
                    .services
                    .iter()
                    .map(|s| s.restart_timeout + s.recovery.verify_timeout)
                    .max()
                    .unwrap_or_default()
                + MANAGER_CALL_TIMEOUT,
        })
    }

    pub fn views(&self) -> Vec<ServiceView> {
        self.order
            .iter()
            .filter_map(|name| self.handles.get(name))
            .map(|h| h.view.lock().unwrap_or_else(|p| p.into_inner()).clone())
            .collect()
    }

    pub fn service_names(&self) -> Vec<String> {
        self.order.clone()
    }

    /// Ask a service's task for a manual restart and wait for its verified outcome.
    pub async fn restart(&self, service: &str, by: &str) -> Result<RestartOutcome, String> {
        let (reply, rx) = oneshot::channel();
        let by = by.to_string();
        self.send(service, Request::Restart { by, reply }).await?;
        rx.await
            .map_err(|_| format!("the task of service {service} ended before the restart finished"))
    }

    /// Pauses healing of `service` for `length` (none: until resumed) on behalf of `by`.
    pub async fn pause(
        &self,
        service: &str,
        length: Option<Duration>,
        by: &str,
    ) -> Result<ServiceView, String> {
        let (reply, rx) = oneshot::channel();
        self.send(
            service,
            Request::Pause {
                length,
                by: by.to_string(),
                reply,
            },
        )
        .await?;
        rx.await
            .map_err(|_| format!("the task of service {service} ended before pausing"))
    }

    /// Resumes healing of `service` on behalf of `by`.
    pub async fn resume(&self, service: &str, by: &str) -> Result<ServiceView, String> {
        let (reply, rx) = oneshot::channel();
        self.send(
            service,
            Request::Resume {
                by: by.to_string(),
                reply,
            },
        )
        .await?;
        rx.await
            .map_err(|_| format!("the task of service {service} ended before resuming"))
    }

    async fn send(&self, service: &str, request: Request) -> Result<(), String> {
        let handle = self.handle(service)?;
        handle
            .requests
            .send(request)
            .await
            .map_err(|_| format!("the task of service {service} has stopped"))
    }

    fn handle(&self, service: &str) -> Result<&Handle, String> {
        self.handles.get(service).ok_or_else(|| {
            format!(
                "unknown service \"{service}\"; configured services: {}",
                self.order.join(", ")
            )
        })
    }

    /// Returns the view of one service.
    pub fn view(&self, service: &str) -> Result<ServiceView, String> {
        let handle = self.handle(service)?;
        Ok(handle
            .view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    /// Returns a receiver that changes whenever any service's view changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Returns how long no check has finished, when that is longer than a healthy daemon ever
    /// takes: two intervals plus the longest restart and verification plus a status call.
    pub fn stalled(&self) -> Option<Duration> {
        let stalled = self.since_last_check();
        (stalled >= self.stall_limit).then_some(stalled)
    }

    /// Time since the last finished check of any service.
    pub fn since_last_check(&self) -> Duration {
        self.heartbeat
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .elapsed()
    }

    pub fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Picks the first candidate unit that systemd has loaded, or the first candidate when none is
/// installed (its checks then report "not-found").
pub async fn resolve_target(managers: &Managers, service: &ServiceConfig) -> Target {
    if let Some(commands) = &service.commands {
        return Target::Commands(commands.clone());
    }
    for unit in &service.units {
        if managers.unit_exists(unit).await {
            return Target::Unit(unit.clone());
        }
    }
    let first = service.units.first().cloned().unwrap_or_default();
    tracing::warn!(
        service = %service.name,
        candidates = %service.units.join(", "),
        "no candidate unit is installed; the service will show as not found"
    );
    Target::Unit(first)
}

/// Rebuild a service's policy from its open incident and recent restarts in the store.
pub fn restore_policy(store: &Store, service: &ServiceConfig) -> anyhow::Result<ServicePolicy> {
    let now_wall = SystemTime::now();
    let recovery: &Recovery = &service.recovery;
    let age = |t: SystemTime| now_wall.duration_since(t).unwrap_or(Duration::ZERO);
    let window_start = now_wall
        .checked_sub(recovery.restart_window)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let restart_ages = store
        .restarts_since(&service.name, window_start)?
        .into_iter()
        .map(age)
        .collect();
    let open_incident = store.open_incident_for(&service.name)?.map(|row| {
        let verdict = row.verdict.as_deref().and_then(Verdict::parse);
        (
            verdict,
            row.reason.unwrap_or_default(),
            row.alert_status != "none",
            age(crate::store::from_unix_ms(row.opened_ms)),
        )
    });
    let crash_loop_alert_age = store.last_crash_loop_alert(&service.name)?.map(age);
    Ok(ServicePolicy::restore(
        service.mode,
        service.critical,
        recovery.clone(),
        Restored {
            open_incident,
            restart_ages,
            crash_loop_alert_age,
        },
        Instant::now(),
    ))
}
