//! The alert sender task: stores each alert as pending, then sends it, apart from the checks so
//! that a stalled relay never delays a check or a restart.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::alert::{self, Alert};
use crate::config::{AlertConfig, ServiceConfig};
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
}

#[derive(Clone)]
pub struct AlertSender {
    jobs: mpsc::Sender<AlertJob>,
}

impl AlertSender {
    /// Start the sender task. It ends once every `AlertSender` clone is dropped and the queue
    /// is drained.
    pub fn start(
        config: AlertConfig,
        store: Arc<Store>,
        host: String,
    ) -> (AlertSender, JoinHandle<()>) {
        let (jobs, mut queue) = mpsc::channel::<AlertJob>(64);
        let task = tokio::spawn(async move {
            while let Some(job) = queue.recv().await {
                deliver(&config, &store, &host, job).await;
            }
        });
        (AlertSender { jobs }, task)
    }

    pub async fn queue(&self, job: AlertJob) {
        if self.jobs.send(job).await.is_err() {
            tracing::error!("alert sender has stopped; alert not sent");
        }
    }
}

async fn deliver(config: &AlertConfig, store: &Store, host: &str, job: AlertJob) {
    let service = job.service.name.clone();
    let (started_at, actions) = match job.incident {
        Some(id) => incident_history(store, id),
        None => (SystemTime::now(), Vec::new()),
    };
    let alert = Alert {
        host: host.to_string(),
        service: service.clone(),
        unit: job.unit,
        verdict: job.verdict.to_string(),
        reason: job.headline,
        started_at,
        seen: format!("{}\n{}", job.reason, job.seen),
        actions,
        last_probe: job.last_probe,
        journal: job.journal,
        mode: job.service.mode.to_string(),
    };
    let message_id = alert::new_message_id(host);
    let subject = alert::subject(&alert);

    // Stored before any attempt, so a failed or interrupted send is still on record.
    let alert_id = match store.insert_alert(
        job.incident,
        &service,
        job.verdict.as_str(),
        &message_id,
        &subject,
        SystemTime::now(),
    ) {
        Ok(id) => Some(id),
        Err(error) => {
            tracing::error!(service, %error, "cannot store alert; sending it anyway");
            None
        }
    };
    let set_incident_status = |status: &str| {
        if let Some(incident) = job.incident {
            if let Err(error) = store.set_alert_status(incident, status) {
                tracing::error!(service, %error, "cannot store alert status");
            }
        }
    };
    set_incident_status("pending");

    let outcome = if !config.has_channel() {
        Err("no alert channel configured: set [alerts] to, from and a [[alerts.relay]] (or sendmail)".to_string())
    } else {
        match alert::compose(config, &alert, &message_id) {
            Err(error) => Err(format!("cannot compose alert: {error}")),
            Ok(message) => alert::send(config, &message)
                .await
                .map_err(|error| error.to_string()),
        }
    };
    match outcome {
        Ok(delivery) => {
            tracing::info!(service, channel = %delivery.channel, %subject, "alert sent");
            if let Some(id) = alert_id {
                if let Err(error) =
                    store.mark_alert_sent(id, &delivery.channel, &delivery.reply, SystemTime::now())
                {
                    tracing::error!(service, %error, "cannot store alert status");
                }
            }
            set_incident_status("sent");
        }
        Err(error) => {
            tracing::error!(service, %subject, %error, "alert not sent");
            if let Some(id) = alert_id {
                if let Err(store_error) = store.mark_alert_failed(id, &error) {
                    tracing::error!(service, error = %store_error, "cannot store alert status");
                }
            }
            set_incident_status("failed");
        }
    }
}

/// When the incident opened and what happened since, for the alert body.
fn incident_history(store: &Store, incident: i64) -> (SystemTime, Vec<(SystemTime, String)>) {
    let opened = store
        .incident(incident)
        .ok()
        .flatten()
        .map(|row| from_unix_ms(row.opened_ms))
        .unwrap_or_else(SystemTime::now);
    let actions = store
        .events(incident)
        .map(|events| {
            events
                .into_iter()
                .map(|event| (from_unix_ms(event.at_ms), event.detail))
                .collect()
        })
        .unwrap_or_default();
    (opened, actions)
}
