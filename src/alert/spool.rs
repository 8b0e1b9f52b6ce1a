//! The delivery worker of the alert spool: sends each spooled message on each of its routes,
//! retries a failed route with exponential backoff and jitter, and gives up once the message
//! expires.
//!
//! The spool lives in the state database, so nothing is lost when selfheal stops or dies. An
//! attempt is recorded as started before any byte goes out; after a crash mid-attempt the
//! message is sent again with its stored Message-ID and Date, so a receiver that saw the first
//! copy can tell the second is the same message.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::digest::{delivery_note, Digest};
use super::{mail_ladder, send_ladder, send_via, Channel, Outgoing, SendError, WebhookMessage};
use crate::config::{AlertConfig, Config, SMTP_PORTS};
use crate::store::{from_unix_ms, DueDelivery, Store};

/// Route name of the mail ladder.
pub const MAIL_ROUTE: &str = "mail";

/// Maximum sleep between two looks at the spool, so that a delivery due at a wall-clock time
/// is not missed when the clock jumps.
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Maximum wait before the next attempt while the local mail server is down, so the alert
/// goes out soon after it recovers.
const LOCAL_RETRY: Duration = Duration::from_secs(30);

/// Lists the routes a message takes: the mail ladder when it has a channel, and each webhook that is
/// not a fallback.
pub fn routes(config: &AlertConfig) -> Vec<String> {
    let mut routes = Vec::new();
    if !mail_ladder(config).is_empty() {
        routes.push(MAIL_ROUTE.to_string());
    }
    routes.extend(
        config
            .webhooks
            .iter()
            .filter(|hook| !hook.fallback)
            .map(|hook| webhook_route(&hook.name)),
    );
    routes
}

fn webhook_route(name: &str) -> String {
    format!("webhook {name}")
}

/// Returns the wait after failed attempt number `attempt` (from 1): `initial` doubled per earlier
/// failure, at most `max`, then cut to a random point in its upper half so that many alerts
/// failing together do not retry together.
pub fn backoff(attempt: u32, initial: Duration, max: Duration, random: u64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(31);
    let full = initial.saturating_mul(1 << doublings).min(max);
    let half = full / 2;
    // random / u64::MAX in [0, 1], scaled to the other half.
    let fraction = random as f64 / u64::MAX as f64;
    half + half.mul_f64(fraction)
}

fn random() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.finish()
}

/// The watched service that a relay on this host or the sendmail binary hands mail to, such
/// as Postfix. While it is down, those channels are passed over: the mail would only wait in
/// its queue.
#[derive(Debug, Clone)]
pub struct LocalMta {
    pub service: String,
    /// TCP ports its probes check; a loopback relay on one of them is served by it.
    pub ports: Vec<u16>,
}

impl LocalMta {
    /// Finds the watched Postfix service of `config`, if there is one.
    pub fn from_config(config: &Config) -> Option<LocalMta> {
        let service = config
            .services
            .iter()
            .find(|service| service.preset.as_deref() == Some("postfix"))?;
        let mut ports = service.probe_ports();
        if ports.is_empty() {
            ports = SMTP_PORTS.to_vec();
        }
        Some(LocalMta {
            service: service.name.clone(),
            ports,
        })
    }

    /// Returns whether `channel` hands its mail to this service.
    fn serves(&self, channel: &Channel<'_>) -> bool {
        match channel {
            Channel::Relay(relay) => relay.is_local() && self.ports.contains(&relay.port),
            Channel::Sendmail(_) => true,
            Channel::Webhook(_) => false,
        }
    }
}

/// Handle to wake the worker when a new message was spooled.
#[derive(Clone, Default)]
pub struct SpoolWaker(Arc<Notify>);

impl SpoolWaker {
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

pub struct Spool {
    config: Arc<AlertConfig>,
    store: Arc<Store>,
    local_mta: Option<LocalMta>,
    waker: SpoolWaker,
}

impl Spool {
    pub fn new(config: Arc<AlertConfig>, store: Arc<Store>, local_mta: Option<LocalMta>) -> Spool {
        Spool {
            config,
            store,
            local_mta,
            waker: SpoolWaker::default(),
        }
    }

    pub fn waker(&self) -> SpoolWaker {
        self.waker.clone()
    }

    /// Runs the worker until the task is aborted. Each attempt is recorded before it starts
    /// and after it ends, so an abort at any point loses nothing.
    pub fn start(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                self.deliver_due().await;
                let idle = match self.store.next_delivery_due() {
                    Ok(Some(due)) => due
                        .duration_since(SystemTime::now())
                        .unwrap_or_default()
                        .min(MAX_IDLE),
                    Ok(None) => MAX_IDLE,
                    Err(error) => {
                        tracing::error!(%error, "cannot read the alert spool");
                        MAX_IDLE
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(idle) => {}
                    _ = self.waker.0.notified() => {}
                }
            }
        })
    }

    /// Attempts every delivery that is due now, one at a time.
    pub async fn deliver_due(&self) {
        let due = match self.store.due_deliveries(SystemTime::now()) {
            Ok(due) => due,
            Err(error) => {
                tracing::error!(%error, "cannot read the alert spool");
                return;
            }
        };
        // The query returns only the oldest pending message of each route, so one pass sends
        // at most one message per route. The next pass follows at once when one was sent.
        let mut sent_any = false;
        for delivery in due {
            sent_any |= self.attempt(delivery).await;
        }
        if sent_any {
            self.waker.wake();
        }
    }

    /// Attempts one delivery; returns whether it is done (sent or given up), so that the next
    /// message on its route may go.
    async fn attempt(&self, delivery: DueDelivery) -> bool {
        let digest: Digest = match serde_json::from_str(&delivery.payload) {
            Ok(digest) => digest,
            Err(error) => {
                let error = format!(
                    "the stored alert cannot be read ({error}); it was written by another \
                     selfheal version or damaged"
                );
                self.expire(&delivery, &error);
                return true;
            }
        };
        if delivery.outcome_unknown {
            tracing::warn!(
                message_id = %delivery.message_id,
                route = %delivery.route,
                "an earlier attempt was cut short; sending again with the same Message-ID"
            );
        }
        if let Err(error) = self.store.delivery_started(delivery.id, SystemTime::now()) {
            tracing::error!(%error, "cannot record the alert attempt; trying later");
            return false;
        }
        let attempt = delivery.attempts + 1;
        let outgoing = Message {
            config: &self.config,
            digest: &digest,
            message_id: &delivery.message_id,
            created: from_unix_ms(delivery.created_ms),
            attempt,
            previous_error: delivery.last_error.as_deref(),
        };
        let result = if delivery.route == MAIL_ROUTE {
            let ladder = mail_ladder(&self.config);
            send_ladder(&ladder, &outgoing, &|channel| self.skip(channel)).await
        } else {
            let hook = self
                .config
                .webhooks
                .iter()
                .find(|hook| webhook_route(&hook.name) == delivery.route);
            match hook {
                Some(hook) => send_via(Channel::Webhook(hook), &outgoing, &[])
                    .await
                    .map_err(|error| SendError {
                        attempts: vec![(super::webhook::channel_name(hook), error)],
                    }),
                None => {
                    let error = format!(
                        "{} is no longer configured; add it back to deliver this alert",
                        delivery.route
                    );
                    self.expire(&delivery, &error);
                    return true;
                }
            }
        };

        let now = SystemTime::now();
        match result {
            Ok(sent) => {
                tracing::info!(
                    message_id = %delivery.message_id,
                    channel = %sent.channel,
                    reply = %sent.reply,
                    attempt,
                    subject = %digest.subject(),
                    "alert sent"
                );
                if let Err(error) =
                    self.store
                        .delivery_sent(delivery.id, &sent.channel, &sent.reply, now)
                {
                    // The relay has the message, so a resend would duplicate it; the same
                    // Message-ID lets the receiver drop it.
                    tracing::error!(%error, "cannot record the sent alert; it may go out again");
                }
                true
            }
            Err(error) => {
                let text = error.to_string();
                let expires = from_unix_ms(delivery.expires_ms);
                if now >= expires {
                    self.expire(&delivery, &text);
                    return true;
                }
                let mut wait = backoff(
                    attempt,
                    self.config.retry_initial,
                    self.config.retry_max,
                    random(),
                );
                if error.skipped_local() {
                    wait = wait.min(LOCAL_RETRY);
                }
                let next = (now + wait).min(expires);
                tracing::warn!(
                    message_id = %delivery.message_id,
                    route = %delivery.route,
                    attempt,
                    retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs())),
                    error = %text,
                    "alert not delivered yet"
                );
                if let Err(error) = self.store.delivery_failed(delivery.id, &text, next) {
                    tracing::error!(%error, "cannot record the failed alert attempt");
                }
                false
            }
        }
    }

    fn expire(&self, delivery: &DueDelivery, error: &str) {
        let error = format!("given up after {} attempts: {error}", delivery.attempts + 1);
        tracing::error!(
            message_id = %delivery.message_id,
            route = %delivery.route,
            %error,
            "alert expired undelivered"
        );
        if let Err(store_error) = self.store.delivery_expired(delivery.id, &error) {
            tracing::error!(error = %store_error, "cannot record the expired alert");
        }
    }

    /// Returns why `channel` is passed over now, if it is.
    fn skip(&self, channel: &Channel<'_>) -> Option<String> {
        let mta = self.local_mta.as_ref()?;
        if !mta.serves(channel) {
            return None;
        }
        let states = self.store.service_states().ok()?;
        let state = states.iter().find(|row| row.service == mta.service)?;
        // Suspect means one probe failed and is being retried: the service may still work.
        if matches!(state.state.as_str(), "healthy" | "suspect") {
            return None;
        }
        Some(format!(
            "{} is not healthy ({}), so mail handed to it would wait in its queue",
            mta.service, state.state
        ))
    }
}

/// One spooled message as one attempt sends it.
struct Message<'a> {
    config: &'a AlertConfig,
    digest: &'a Digest,
    message_id: &'a str,
    created: SystemTime,
    attempt: u32,
    /// Error of the attempt before this one.
    previous_error: Option<&'a str>,
}

impl Outgoing for Message<'_> {
    fn mail(&self, channel: &str, earlier: &[(String, String)]) -> Result<lettre::Message, String> {
        let note = delivery_note(channel, self.attempt, self.previous_error, earlier);
        self.digest
            .compose(self.config, self.message_id, self.created, &note)
            .map_err(|error| format!("cannot compose the alert: {error}"))
    }

    fn webhook(&self, channel: &str, earlier: &[(String, String)]) -> Option<WebhookMessage> {
        // A fallback webhook explains why mail did not carry the alert.
        let note = if earlier.is_empty() && self.attempt == 1 {
            String::new()
        } else {
            delivery_note(channel, self.attempt, self.previous_error, earlier)
        };
        Some(
            self.digest
                .webhook_message(self.config, self.message_id, self.created, &note),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn backoff_doubles_up_to_max() {
        let initial = 30 * S;
        let max = 1800 * S;
        // With the largest random value the wait is the full step.
        let full: Vec<u64> = (1..=9)
            .map(|attempt| backoff(attempt, initial, max, u64::MAX).as_secs())
            .collect();
        assert_eq!(full, vec![30, 60, 120, 240, 480, 960, 1800, 1800, 1800]);
        // With the smallest it is half of it.
        assert_eq!(backoff(1, initial, max, 0), 15 * S);
        assert_eq!(backoff(20, initial, max, 0), 900 * S);
        assert_eq!(backoff(u32::MAX, initial, max, 0), 900 * S);
    }

    #[test]
    fn jitter_spreads_retries() {
        let waits: std::collections::BTreeSet<u128> = (0..50)
            .map(|_| backoff(3, 30 * S, 1800 * S, random()).as_millis())
            .collect();
        assert!(waits.len() > 40, "{waits:?}");
        assert!(waits.iter().all(|wait| (60_000..=120_000).contains(wait)));
    }

    #[test]
    fn routes_follow_config() {
        let mut config = AlertConfig {
            to: vec!["admin@example.org".into()],
            sendmail: Some("/usr/sbin/sendmail".into()),
            ..AlertConfig::default()
        };
        assert_eq!(routes(&config), vec!["mail"]);
        config.webhooks.push(crate::config::WebhookConfig {
            name: "ops".into(),
            kind: crate::config::WebhookKind::Ntfy,
            url: "http://127.0.0.1:9/topic".into(),
            token_file: None,
            room: None,
            fallback: false,
            timeout: 30 * S,
        });
        assert_eq!(routes(&config), vec!["mail", "webhook ops"]);
        config.webhooks[0].fallback = true;
        config.to.clear();
        assert_eq!(
            routes(&config),
            vec!["mail"],
            "the fallback alone is the mail route"
        );
        config.webhooks.clear();
        assert!(routes(&config).is_empty());
    }

    fn relay(host: &str, port: u16) -> crate::config::RelayConfig {
        crate::config::RelayConfig {
            host: host.into(),
            port,
            tls: crate::config::TlsMode::None,
            username: None,
            password_file: None,
            ca_file: None,
            timeout: 30 * S,
        }
    }

    #[test]
    fn local_channels_skipped_while_postfix_is_down() {
        let store = Arc::new(Store::open_in_memory().unwrap());
        let spool = Spool::new(
            Arc::new(AlertConfig::default()),
            store.clone(),
            Some(LocalMta {
                service: "postfix".into(),
                ports: vec![25, 587],
            }),
        );
        let set_state = |state: &str| {
            store
                .save_service_state(&crate::store::ServiceStateRow {
                    service: "postfix".into(),
                    state: state.into(),
                    since_ms: 0,
                    checked_ms: None,
                    last_probe: None,
                    last_action: None,
                    last_action_ms: None,
                })
                .unwrap();
        };
        let local = relay("127.0.0.1", 25);
        let submission = relay("localhost", 587);
        let sink = relay("127.0.0.1", 2525);
        let outside = relay("smtp.example.net", 25);
        let sendmail = std::path::PathBuf::from("/usr/sbin/sendmail");

        // Nothing known about Postfix yet: nothing is skipped.
        assert_eq!(spool.skip(&Channel::Relay(&local)), None);

        set_state("needs attention");
        let reason = spool.skip(&Channel::Relay(&local)).unwrap();
        assert_eq!(
            reason,
            "postfix is not healthy (needs attention), so mail handed to it would wait in its queue"
        );
        assert!(spool.skip(&Channel::Relay(&submission)).is_some());
        assert!(spool.skip(&Channel::Sendmail(&sendmail)).is_some());
        assert_eq!(spool.skip(&Channel::Relay(&sink)), None);
        assert_eq!(spool.skip(&Channel::Relay(&outside)), None);

        for usable in ["healthy", "suspect"] {
            set_state(usable);
            assert_eq!(spool.skip(&Channel::Relay(&local)), None, "{usable}");
            assert_eq!(spool.skip(&Channel::Sendmail(&sendmail)), None, "{usable}");
        }
    }

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "127.0.0.1", "127.0.1.1", "::1"] {
            assert!(relay(host, 25).is_local(), "{host}");
        }
        for host in ["smtp.example.net", "192.0.2.1", "::2"] {
            assert!(!relay(host, 25).is_local(), "{host}");
        }
    }
}
