//! The dispatcher: stores every alert item in the spool the moment it is raised, feeds the
//! planner, and turns its plans into spooled messages for the delivery worker.
//!
//! It never touches the network, so a stalled relay cannot hold up an item being stored or
//! grouped, and the service tasks that raise items never wait on it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::digest::{Digest, Item};
use super::planner::{ItemKind, Limits, Plan, Planner, Queued, CAP_WINDOW};
use super::spool::{routes, SpoolWaker};
use super::{new_message_id, Alert};
use crate::config::AlertConfig;
use crate::store::{from_unix_ms, EventRow, NewMessage, SpoolItem, Store};

/// Wait when the planner has nothing scheduled.
const IDLE: Duration = Duration::from_secs(3600);

enum Notice {
    Queued(Queued),
    /// An incident closed and no recovery item follows: stop its reminders.
    Closed(i64),
    /// selfheal stops: send what is being grouped now, then reply.
    Flush(oneshot::Sender<()>),
}

/// Handle the engine passes alerts to. Cheap to clone, and every clone feeds the same
/// dispatcher.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<Store>,
    config: Arc<AlertConfig>,
    notices: mpsc::UnboundedSender<Notice>,
}

impl Outbox {
    /// Stores `item` in the spool, then hands it to the planner. Once this returns `Ok`, the
    /// item survives a crash of selfheal.
    pub fn queue(&self, incident: Option<i64>, item: &Item) -> anyhow::Result<i64> {
        let payload = serde_json::to_string(item)?;
        let id = self.store.spool_item(
            incident,
            &item.alert.service,
            item.kind.as_str(),
            &item.alert.verdict,
            &payload,
            item.queued_at,
        )?;
        let queued = Queued {
            item: id,
            incident,
            kind: item.kind,
        };
        if self.notices.send(Notice::Queued(queued)).is_err() {
            tracing::warn!(
                "alert dispatcher has stopped; the alert waits in the spool for the next start"
            );
        }
        Ok(id)
    }

    /// Records that an incident closed with `resolution` ("recovered", "healed", ...). If it had been
    /// alerted and recovery mails are on, a "recovered" item is queued; in any case its
    /// reminders stop.
    pub fn incident_closed(&self, incident: i64, resolution: &str, at: SystemTime) {
        let recovered = if self.config.recovered {
            match problem_alert(&self.store, incident) {
                Ok(found) => found,
                Err(error) => {
                    tracing::error!(incident, %error, "cannot read the incident's alert");
                    None
                }
            }
        } else {
            None
        };
        let Some(mut alert) = recovered else {
            let _ = self.notices.send(Notice::Closed(incident));
            return;
        };
        alert.actions = incident_actions(&self.store, incident);
        // The close itself is recorded after this call; the mail shows it already.
        alert
            .actions
            .push((at, format!("healthy again: {resolution}")));
        if let Some(probe) = self
            .store
            .service_states()
            .ok()
            .and_then(|states| states.into_iter().find(|row| row.service == alert.service))
            .and_then(|row| row.last_probe)
        {
            alert.last_probe = probe;
        }
        let item = Item {
            kind: ItemKind::Recovered,
            alert,
            nth: 0,
            closed_at: Some(at),
            resolution: Some(resolution.to_string()),
            queued_at: at,
        };
        if let Err(error) = self.queue(Some(incident), &item) {
            tracing::error!(incident, %error, "cannot store the recovery alert");
        }
    }

    /// Sends what is being grouped at once and waits (at most `limit`) until it is spooled as
    /// a message. For shutdown.
    pub async fn flush(&self, limit: Duration) {
        let (done, wait) = oneshot::channel();
        if self.notices.send(Notice::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(limit, wait).await;
        }
    }
}

/// Returns the latest problem alert stored for `incident`, if it was alerted.
fn problem_alert(store: &Store, incident: i64) -> anyhow::Result<Option<Alert>> {
    let Some(item) = store.problem_item(incident)? else {
        return Ok(None);
    };
    Ok(Some(decode(&item, "").alert))
}

/// Lists the incident's history as the alert shows it.
pub fn incident_actions(store: &Store, incident: i64) -> Vec<(SystemTime, String)> {
    store
        .events(incident)
        .map(|events| {
            without_repeats(events)
                .into_iter()
                .map(|event| (from_unix_ms(event.at_ms), event.detail))
                .collect()
        })
        .unwrap_or_default()
}

/// Drops a verdict event that only repeats the skipped restart recorded just before it. When a
/// blocker keeps a restart from happening, the policy records "not restarted: a restart cannot
/// fix this: CAUSE" and then the verdict "not restarted: CAUSE" in the same check.
pub fn without_repeats(events: Vec<EventRow>) -> Vec<EventRow> {
    /// Events further apart than this are separate facts, even with the same text.
    const SAME_CHECK_MS: i64 = 1000;
    let mut history: Vec<EventRow> = Vec::with_capacity(events.len());
    for event in events {
        let repeats = event.kind == "needs_attention"
            && history.last().is_some_and(|previous| {
                previous.kind == "restart_skipped"
                    && event.at_ms - previous.at_ms <= SAME_CHECK_MS
                    && event
                        .detail
                        .split_once(": ")
                        .is_some_and(|(_, reason)| previous.detail.ends_with(reason))
            });
        if !repeats {
            history.push(event);
        }
    }
    history
}

/// Reads a stored item. One that cannot be read still goes out with what its row contains, so an
/// alert is never dropped for a damaged payload.
fn decode(row: &SpoolItem, host: &str) -> Item {
    match serde_json::from_str::<Item>(&row.payload) {
        Ok(item) => item,
        Err(error) => {
            tracing::error!(item = row.id, %error, "stored alert details cannot be read");
            let at = from_unix_ms(row.created_ms);
            Item {
                kind: ItemKind::parse(&row.kind).unwrap_or(ItemKind::Problem),
                alert: Alert {
                    host: host.to_string(),
                    service: row.service.clone(),
                    unit: String::new(),
                    verdict: row.verdict.clone(),
                    reason: String::new(),
                    started_at: at,
                    seen: format!("the stored details of this alert cannot be read: {error}"),
                    actions: Vec::new(),
                    last_probe: String::new(),
                    journal: Vec::new(),
                    mode: String::new(),
                    diagnosis: Vec::new(),
                },
                nth: 0,
                closed_at: None,
                resolution: None,
                queued_at: at,
            }
        }
    }
}

/// Starts the dispatcher. It picks up what the spool held when selfheal last stopped: items
/// not yet sent, items held by the hourly cap, and the reminder clocks of open incidents.
pub fn start(
    config: Arc<AlertConfig>,
    store: Arc<Store>,
    host: String,
    dashboard_url: Option<String>,
    waker: SpoolWaker,
) -> anyhow::Result<(Outbox, JoinHandle<()>)> {
    let mut planner = Planner::new(Limits::from(config.as_ref()));
    let now = Instant::now();
    let wall = SystemTime::now();
    let state = store.spool_state(wall - CAP_WINDOW)?;
    let ago = |ms: i64| {
        let age = wall.duration_since(from_unix_ms(ms)).unwrap_or_default();
        now.checked_sub(age).unwrap_or(now)
    };
    let sent: Vec<Instant> = state.recent_messages_ms.iter().map(|ms| ago(*ms)).collect();
    planner.restore_window(
        &sent,
        state.suppressed.iter().map(|item| item.id).collect(),
        now,
    );
    for (incident, alerted_ms, reminders) in &state.alerted_open {
        planner.restore_reminders(*incident, ago(*alerted_ms), *reminders);
    }
    for item in &state.queued {
        planner.queue(
            Queued {
                item: item.id,
                incident: item.incident_id,
                kind: ItemKind::parse(&item.kind).unwrap_or(ItemKind::Problem),
            },
            now,
        );
    }
    if !state.queued.is_empty() {
        tracing::info!(
            items = state.queued.len(),
            "alerts stored before the last stop will be sent"
        );
    }

    let (notices, queue) = mpsc::unbounded_channel();
    let outbox = Outbox {
        store: store.clone(),
        config: config.clone(),
        notices,
    };
    let dispatcher = Dispatcher {
        planner,
        store,
        config,
        host,
        dashboard_url,
        waker,
        outbox: outbox.clone(),
    };
    Ok((outbox, tokio::spawn(dispatcher.run(queue))))
}

struct Dispatcher {
    planner: Planner,
    store: Arc<Store>,
    config: Arc<AlertConfig>,
    host: String,
    dashboard_url: Option<String>,
    waker: SpoolWaker,
    /// For reminders, which are stored like any other item.
    outbox: Outbox,
}

impl Dispatcher {
    async fn run(mut self, mut queue: mpsc::UnboundedReceiver<Notice>) {
        loop {
            let wake = self
                .planner
                .next_wake()
                .unwrap_or_else(|| Instant::now() + IDLE);
            let mut flushed = None;
            tokio::select! {
                notice = queue.recv() => match notice {
                    Some(Notice::Queued(queued)) => self.planner.queue(queued, Instant::now()),
                    Some(Notice::Closed(incident)) => self.planner.closed(incident),
                    Some(Notice::Flush(done)) => {
                        self.planner.flush();
                        flushed = Some(done);
                    }
                    // Every Outbox is gone, but this task keeps one, so this does not happen
                    // before the task is aborted.
                    None => return,
                },
                _ = tokio::time::sleep_until(wake) => {}
            }
            for plan in self.planner.poll(Instant::now()) {
                self.carry_out(plan);
            }
            if let Some(done) = flushed {
                let _ = done.send(());
            }
        }
    }

    fn carry_out(&mut self, plan: Plan) {
        match plan {
            Plan::Send(items) => self.spool_message(&items, false),
            Plan::Summary(items) => self.spool_message(&items, true),
            Plan::Suppress(items) => {
                tracing::warn!(
                    items = items.len(),
                    max_per_hour = self.config.max_per_hour,
                    "hourly alert limit reached; held back for a summary at the end of the hour"
                );
                if let Err(error) = self.store.suppress_items(&items) {
                    tracing::error!(%error, "cannot record the held-back alerts");
                }
            }
            Plan::Remind { incident, nth } => self.remind(incident, nth),
        }
    }

    fn spool_message(&self, ids: &[i64], summary: bool) {
        let rows = match self.store.spool_items(ids) {
            Ok(rows) => rows,
            Err(error) => {
                tracing::error!(%error, "cannot read spooled alerts; they stay queued");
                return;
            }
        };
        if rows.is_empty() {
            return;
        }

        let digest = Digest {
            host: self.host.clone(),
            items: rows.iter().map(|row| decode(row, &self.host)).collect(),
            summary,
            max_per_hour: self.config.max_per_hour,
            dashboard_url: self.dashboard_url.clone(),
            test: false,
            in_reply_to: self.original_message(&rows),
        };
        let payload = match serde_json::to_string(&digest) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::error!(%error, "cannot store the alert message");
                return;
            }
        };

        let message_id = new_message_id(&self.host);
        let subject = digest.subject();
        let routes = routes(&self.config);
        let single_incident = match rows.as_slice() {
            [row] => row.incident_id,
            _ => None,
        };
        let verdict = match rows.as_slice() {
            [row] => row.verdict.clone(),
            _ => "several".to_string(),
        };

        let created = SystemTime::now();
        let message = NewMessage {
            kind: digest.kind(),
            message_id: &message_id,
            subject: &subject,
            service: &digest.services(),
            verdict: &verdict,
            incident: single_incident,
            payload: &payload,
            items: ids,
            routes: &routes,
            created,
            expires: created + self.config.expire_after,
        };

        match self.store.spool_message(&message) {
            Ok(_) if routes.is_empty() => tracing::error!(
                %subject,
                "alert not sent: no alert channel is configured; set [alerts] to and a \
                 [[alerts.relay]], or add an [[alerts.webhook]]"
            ),
            Ok(_) => {
                tracing::info!(%subject, %message_id, "alert spooled");
                self.waker.wake();
            }
            Err(error) => tracing::error!(%error, %subject, "cannot spool the alert message"),
        }
    }

    /// Returns the Message-ID of the problem alert that follow-ups about one incident reply to.
    fn original_message(&self, rows: &[SpoolItem]) -> Option<String> {
        let incident = rows.first()?.incident_id?;
        let follow_ups = rows
            .iter()
            .all(|row| row.incident_id == Some(incident) && row.kind != "problem");
        if !follow_ups {
            return None;
        }
        self.store.problem_message_id(incident).ok().flatten()
    }

    fn remind(&self, incident: i64, nth: u32) {
        let open = self
            .store
            .incident(incident)
            .ok()
            .flatten()
            .is_some_and(|row| row.closed_ms.is_none());
        if !open {
            return;
        }
        let mut alert = match problem_alert(&self.store, incident) {
            Ok(Some(alert)) => alert,
            Ok(None) => return,
            Err(error) => {
                tracing::error!(incident, %error, "cannot read the incident's alert for a reminder");
                return;
            }
        };
        alert.actions = incident_actions(&self.store, incident);
        if let Ok(states) = self.store.service_states() {
            if let Some(state) = states.iter().find(|row| row.service == alert.service) {
                if let Some(probe) = &state.last_probe {
                    alert.last_probe = probe.clone();
                }
                alert.seen = format!("{}\nstate now: {}", alert.seen, state.state);
            }
        }
        let item = Item {
            kind: ItemKind::Reminder,
            alert,
            nth,
            closed_at: None,
            resolution: None,
            queued_at: SystemTime::now(),
        };
        if let Err(error) = self.outbox.queue(Some(incident), &item) {
            tracing::error!(incident, %error, "cannot store the reminder");
        }
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;

    fn event(at_ms: i64, kind: &str, detail: &str) -> EventRow {
        EventRow {
            at_ms,
            kind: kind.into(),
            detail: detail.into(),
        }
    }

    #[test]
    fn verdict_after_skipped_restart_is_dropped() {
        let cause = "config error: /etc/postfix/main.cf line 50: missing '='";
        let kept = without_repeats(vec![
            event(1_000, "incident_opened", "incident opened: unit failed"),
            event(
                1_200,
                "restart_skipped",
                &format!("not restarted: a restart cannot fix this: {cause}"),
            ),
            event(1_300, "needs_attention", &format!("not restarted: {cause}")),
        ]);
        let kinds: Vec<&str> = kept.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(kinds, ["incident_opened", "restart_skipped"]);
    }

    #[test]
    fn different_facts_are_kept() {
        let kept = without_repeats(vec![
            event(1_000, "restart_skipped", "not restarted: watch mode"),
            event(1_000, "needs_attention", "down: unit failed"),
            event(
                5_000,
                "restart_skipped",
                "not restarted: a restart cannot fix this: x",
            ),
            event(9_000, "needs_attention", "not restarted: x"),
        ]);
        assert_eq!(kept.len(), 4);
    }
}
