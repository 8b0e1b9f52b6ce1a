//! Alerts: the messages selfheal sends the admin when it cannot heal a service, and their delivery.
//!
//! - [`planner`] decides when: grouping, the hourly cap, reminders (pure, no I/O).
//! - [`dispatch`] stores each item in the spool and turns the planner's plans into messages.
//! - [`spool`] delivers spooled messages, retrying with backoff until they expire.
//! - [`digest`] and `message` render a message as mail and as a webhook message.
//! - The channels: SMTP relays (`smtp`), the local sendmail binary (`sendmail`) and webhooks
//!   (`webhook`).
//!
//! A message counts as delivered only when one channel accepted it: a relay replied 2xx to the
//! end of DATA, sendmail exited with status 0, or a webhook returned 2xx. Every failed
//! channel is logged and kept in [`SendError`], so the admin can see why nothing went out.

pub mod digest;
pub mod dispatch;
mod message;
pub mod planner;
mod sendmail;
mod smtp;
pub mod spool;
mod webhook;

use std::fmt;
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::config::{AlertConfig, RelayConfig, WebhookConfig};

pub use digest::{Digest, Item};
pub use message::{compose, new_message_id, subject, ComposeError};
pub use planner::ItemKind;
pub use webhook::{WebhookMessage, WebhookService};

/// Facts an alert contains. Built by the engine when an incident needs the admin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    /// This server's hostname.
    pub host: String,
    /// Service name as the config names it, such as `postfix`.
    pub service: String,
    /// systemd unit, such as `postfix@-.service`; empty for a service managed by commands.
    pub unit: String,
    /// Outcome of the incident: "restart failed", "crash loop", "cannot restart", or "down"
    /// in watch mode.
    pub verdict: String,
    /// Short cause shown in the subject, such as "port 25 refused".
    pub reason: String,
    /// Time the incident opened.
    pub started_at: SystemTime,
    /// Observed unit state and probe results, one or more lines.
    pub seen: String,
    /// Recovery steps selfheal took, each with its time and outcome, oldest first.
    pub actions: Vec<(SystemTime, String)>,
    /// Last probe result, verbatim.
    pub last_probe: String,
    /// Last journal lines of the unit, oldest first.
    pub journal: Vec<String>,
    /// "heal" or "watch".
    pub mode: String,
    /// Findings of the diagnosis, most specific first. Empty when nothing was found.
    #[serde(default)]
    pub diagnosis: Vec<crate::diagnose::Finding>,
}

/// Channel that accepted an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Path that delivered, such as `relay smtp.example.net:587 (starttls)`,
    /// `sendmail /usr/sbin/sendmail` or `webhook ops (ntfy)`.
    pub channel: String,
    /// The relay's final reply to DATA, `exit status 0` for sendmail, or the HTTP status.
    pub reply: String,
}

/// Failure of every channel tried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SendError {
    /// Each channel tried or skipped, in order, with its error text.
    pub attempts: Vec<(String, String)>,
}

impl SendError {
    /// Returns whether a channel was passed over because the local mail server is down, so a
    /// retry soon after it recovers may succeed.
    pub fn skipped_local(&self) -> bool {
        self.attempts
            .iter()
            .any(|(_, error)| error.starts_with(SKIPPED))
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.attempts.is_empty() {
            return f.write_str(
                "alert not sent: no channel is configured; add an [[alerts.relay]] or set alerts.sendmail",
            );
        }
        match self.attempts.len() {
            1 => f.write_str("alert not sent: the only channel failed")?,
            count => write!(f, "alert not sent: all {count} channels failed")?,
        }
        for (channel, error) in &self.attempts {
            write!(f, "; {channel}: {error}")?;
        }
        Ok(())
    }
}

/// Start of the error text of a channel passed over because the local mail server is down.
const SKIPPED: &str = "skipped: ";

/// One way out for an alert.
#[derive(Debug, Clone, Copy)]
pub enum Channel<'a> {
    Relay(&'a RelayConfig),
    Sendmail(&'a Path),
    Webhook(&'a WebhookConfig),
}

impl Channel<'_> {
    /// Name as logs, `selfheal alert test` and the delivery line show it.
    pub fn name(&self) -> String {
        match self {
            Channel::Relay(relay) => smtp::channel_name(relay),
            Channel::Sendmail(path) => sendmail::channel_name(path),
            Channel::Webhook(hook) => webhook::channel_name(hook),
        }
    }

    /// Returns whether `--channel NAME` picks this channel: a webhook by its name, a relay by its host
    /// or `host:port`, sendmail by `sendmail`.
    pub fn matches(&self, wanted: &str) -> bool {
        match self {
            Channel::Relay(relay) => {
                wanted == relay.host || wanted == format!("{}:{}", relay.host, relay.port)
            }
            Channel::Sendmail(_) => wanted == "sendmail",
            Channel::Webhook(hook) => wanted == hook.name,
        }
    }
}

/// Lists the mail route in order: the relays, then sendmail, then the fallback webhooks. Relays and
/// sendmail need recipients, so they are left out when `to` is empty.
pub fn mail_ladder(config: &AlertConfig) -> Vec<Channel<'_>> {
    let mut ladder = Vec::new();
    if !config.to.is_empty() {
        ladder.extend(config.relays.iter().map(Channel::Relay));
        if let Some(path) = &config.sendmail {
            ladder.push(Channel::Sendmail(path));
        }
    }
    ladder.extend(
        config
            .webhooks
            .iter()
            .filter(|hook| hook.fallback)
            .map(Channel::Webhook),
    );
    ladder
}

/// Lists every channel once, in config order: the ones `selfheal alert test` tries.
pub fn all_channels(config: &AlertConfig) -> Vec<Channel<'_>> {
    let mut channels: Vec<Channel<'_>> = config.relays.iter().map(Channel::Relay).collect();
    if let Some(path) = &config.sendmail {
        channels.push(Channel::Sendmail(path));
    }
    channels.extend(config.webhooks.iter().map(Channel::Webhook));
    channels
}

/// Content a channel needs to send one message: the mail for SMTP and sendmail (rendered with the
/// delivery line for that channel), the webhook message for HTTP.
pub trait Outgoing {
    /// Builds the mail as this attempt sends it through `channel`, after `earlier` channels
    /// failed.
    fn mail(&self, channel: &str, earlier: &[(String, String)]) -> Result<lettre::Message, String>;
    /// Builds the webhook message as this attempt posts it to `channel`, after `earlier`
    /// channels failed. `None` when this message has no webhook form.
    fn webhook(&self, channel: &str, earlier: &[(String, String)]) -> Option<WebhookMessage>;
}

/// Sends through one channel and returns its reply.
pub async fn send_via(
    channel: Channel<'_>,
    outgoing: &(dyn Outgoing + Sync),
    earlier: &[(String, String)],
) -> Result<Delivery, String> {
    let name = channel.name();
    let reply = match channel {
        Channel::Relay(relay) => {
            let message = outgoing.mail(&name, earlier)?;
            smtp::send(relay, &message).await?
        }
        Channel::Sendmail(path) => {
            let message = outgoing.mail(&name, earlier)?;
            sendmail::send(path, &message).await?
        }
        Channel::Webhook(hook) => {
            let message = outgoing
                .webhook(&name, earlier)
                .ok_or_else(|| "this message cannot be posted to a webhook".to_string())?;
            webhook::send(hook, &message).await?
        }
    };
    tracing::debug!(channel = %name, reply = %reply, "alert delivered");
    Ok(Delivery {
        channel: name,
        reply,
    })
}

/// Tries `ladder` in order and stops at the first channel that accepts the message.
/// `skip` names a reason to pass a channel over without trying it.
///
/// Each relay attempt takes at most that relay's timeout, sendmail at most 30 s and a webhook
/// its timeout, so the whole call is bounded by their sum plus scheduling delay.
pub async fn send_ladder(
    ladder: &[Channel<'_>],
    outgoing: &(dyn Outgoing + Sync),
    skip: &(dyn Fn(&Channel<'_>) -> Option<String> + Sync),
) -> Result<Delivery, SendError> {
    let mut attempts: Vec<(String, String)> = Vec::new();
    for channel in ladder {
        let name = channel.name();
        if let Some(reason) = skip(channel) {
            tracing::info!(channel = %name, %reason, "alert channel skipped");
            attempts.push((name, format!("{SKIPPED}{reason}")));
            continue;
        }
        match send_via(*channel, outgoing, &attempts).await {
            Ok(delivery) => return Ok(delivery),
            Err(error) => {
                tracing::warn!(channel = %name, error = %error, "alert channel failed");
                attempts.push((name, error));
            }
        }
    }
    Err(SendError { attempts })
}

/// The running alert machinery: the dispatcher and the delivery worker.
pub struct Alerting {
    pub outbox: dispatch::Outbox,
    store: std::sync::Arc<crate::store::Store>,
    waker: spool::SpoolWaker,
    dispatcher: tokio::task::JoinHandle<()>,
    worker: tokio::task::JoinHandle<()>,
}

impl Alerting {
    /// Starts the dispatcher and the delivery worker on `store`'s spool, which sends what an
    /// earlier run left undelivered.
    pub fn start(
        config: &crate::config::Config,
        store: std::sync::Arc<crate::store::Store>,
        host: String,
    ) -> anyhow::Result<Alerting> {
        let alerts = std::sync::Arc::new(config.alerts.clone());
        let spool = spool::Spool::new(
            alerts.clone(),
            store.clone(),
            spool::LocalMta::from_config(config),
        );
        let waker = spool.waker();
        let (outbox, dispatcher) = dispatch::start(
            alerts,
            store.clone(),
            host,
            config.dashboard.public_url.clone(),
            waker.clone(),
        )?;
        Ok(Alerting {
            outbox,
            store,
            waker,
            dispatcher,
            worker: spool.start(),
        })
    }

    /// Stops alerting: what is being grouped becomes a message now, and the worker gets up
    /// to `grace` to deliver what is due. Whatever is left stays in the spool for the next
    /// start; an attempt cut short is resent then with the same Message-ID.
    pub async fn shutdown(self, grace: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        self.outbox.flush(grace).await;
        self.waker.wake();
        loop {
            let waiting = self
                .store
                .due_deliveries(SystemTime::now())
                // Not tried yet, or an attempt is running right now.
                .map(|due| {
                    due.iter()
                        .any(|delivery| delivery.attempts == 0 || delivery.outcome_unknown)
                })
                .unwrap_or(false);
            if !waiting || tokio::time::Instant::now() >= deadline {
                if waiting {
                    tracing::warn!(
                        "alerts not sent by shutdown stay in the spool and go out at the next start"
                    );
                }
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.dispatcher.abort();
        self.worker.abort();
    }
}

/// A ready-made mail, sent as it is; for callers that compose it themselves.
struct FixedMail<'a>(&'a lettre::Message);

impl Outgoing for FixedMail<'_> {
    fn mail(
        &self,
        _channel: &str,
        _earlier: &[(String, String)],
    ) -> Result<lettre::Message, String> {
        Ok(self.0.clone())
    }

    fn webhook(&self, _channel: &str, _earlier: &[(String, String)]) -> Option<WebhookMessage> {
        None
    }
}

/// Sends a composed `message` through each relay in the configured order, then through
/// sendmail, and stops at the first channel that accepts it.
pub async fn send(config: &AlertConfig, message: &lettre::Message) -> Result<Delivery, SendError> {
    let ladder: Vec<Channel<'_>> = mail_ladder(config)
        .into_iter()
        .filter(|channel| !matches!(channel, Channel::Webhook(_)))
        .collect();
    send_ladder(&ladder, &FixedMail(message), &|_| None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_error_lists_attempts() {
        let error = SendError {
            attempts: vec![
                ("relay a:25 (none)".into(), "connection refused".into()),
                ("sendmail /bin/false".into(), "exit status 1".into()),
            ],
        };
        let text = error.to_string();

        assert!(text.contains("all 2 channels failed"), "{text}");
        assert!(
            text.contains("relay a:25 (none): connection refused"),
            "{text}"
        );
        assert!(
            text.contains("sendmail /bin/false: exit status 1"),
            "{text}"
        );
    }

    #[test]
    fn send_error_one_attempt() {
        let error = SendError {
            attempts: vec![("relay a:25 (none)".into(), "connection refused".into())],
        };

        assert_eq!(
            error.to_string(),
            "alert not sent: the only channel failed; relay a:25 (none): connection refused"
        );
    }

    #[test]
    fn send_error_without_channels() {
        let text = SendError { attempts: vec![] }.to_string();

        assert!(text.contains("no channel is configured"), "{text}");
    }

    #[tokio::test]
    async fn send_without_channels_fails() {
        let config = AlertConfig {
            from: Some("selfheal@mail1.example.org".into()),
            to: vec!["admin@example.org".into()],
            ..AlertConfig::default()
        };
        let message = lettre::Message::builder()
            .from("selfheal@mail1.example.org".parse().unwrap())
            .to("admin@example.org".parse().unwrap())
            .body(String::from("test"))
            .unwrap();

        let result =
            tokio::time::timeout(std::time::Duration::from_secs(5), send(&config, &message))
                .await
                .unwrap();

        assert_eq!(result, Err(SendError { attempts: vec![] }));
    }
}
