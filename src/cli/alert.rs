//! `selfheal alert test` and the alert lines of `selfheal status`.

use std::process::ExitCode;
use std::time::SystemTime;

use crate::alert::planner::CAP_WINDOW;
use crate::alert::{self, all_channels, new_message_id, Channel, Digest, Outgoing};
use crate::config::{AlertConfig, Config};
use crate::store::{PendingRoute, Store};

use super::{time_text, EXIT_USAGE};

/// Sends a test alert through each channel (or only `wanted`) and prints each reply.
/// Exit 1 when a channel failed, 2 when `wanted` names no channel.
pub async fn test(config: &Config, wanted: Option<&str>) -> anyhow::Result<ExitCode> {
    let alerts = &config.alerts;
    // Without recipients sendmail is no channel: it is only there because the binary is
    // installed. Relays are listed anyway, since the admin configured them.
    let usable =
        |channel: &Channel<'_>| !(matches!(channel, Channel::Sendmail(_)) && alerts.to.is_empty());
    let channels: Vec<Channel<'_>> = all_channels(alerts)
        .into_iter()
        .filter(usable)
        .filter(|channel| wanted.is_none_or(|name| channel.matches(name)))
        .collect();
    if channels.is_empty() {
        match wanted {
            Some(name) => {
                let names: Vec<String> = all_channels(alerts)
                    .into_iter()
                    .filter(usable)
                    .map(|channel| channel_key(&channel))
                    .collect();
                eprintln!(
                    "selfheal: no alert channel is named {name:?}; configured: {}",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                );
            }
            None => eprintln!(
                "selfheal: no alert channel is configured; add an [[alerts.relay]] (with \
                 [alerts] to and from) or an [[alerts.webhook]]"
            ),
        }
        return Ok(ExitCode::from(EXIT_USAGE));
    }

    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let mut failed = 0;
    for channel in &channels {
        let name = channel.name();
        let mail_channel = !matches!(channel, Channel::Webhook(_));
        if mail_channel && alerts.to.is_empty() {
            outln!("{name}: not tried: [alerts] to names no recipient");
            failed += 1;
            continue;
        }
        let message_id = new_message_id(&host);
        let test = TestAlert {
            config: alerts,
            digest: Digest::test(&host, config.dashboard.public_url.clone()),
            message_id,
            created: SystemTime::now(),
        };
        match alert::send_via(*channel, &test, &[]).await {
            Ok(delivery) => outln!(
                "{name}: accepted: {} (Message-ID {})",
                delivery.reply,
                test.message_id
            ),
            Err(error) => {
                outln!("{name}: FAILED: {error}");
                failed += 1;
            }
        }
    }
    if failed == channels.len() {
        outln!("every channel tried failed: no alert can reach you now");
        return Ok(ExitCode::FAILURE);
    }
    if failed > 0 {
        outln!(
            "{failed} of {} channel(s) failed; alerts still go out while one channel works",
            channels.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Returns the name `--channel` accepts for `channel`.
fn channel_key(channel: &Channel<'_>) -> String {
    match channel {
        Channel::Relay(relay) => format!("{}:{}", relay.host, relay.port),
        Channel::Sendmail(_) => "sendmail".to_string(),
        Channel::Webhook(hook) => hook.name.clone(),
    }
}

struct TestAlert<'a> {
    config: &'a AlertConfig,
    digest: Digest,
    message_id: String,
    created: SystemTime,
}

impl Outgoing for TestAlert<'_> {
    fn mail(
        &self,
        channel: &str,
        _earlier: &[(String, String)],
    ) -> Result<lettre::Message, String> {
        self.digest
            .compose(
                self.config,
                &self.message_id,
                self.created,
                &format!("sent through {channel} by `selfheal alert test`"),
            )
            .map_err(|error| format!("cannot compose the test alert: {error}"))
    }

    fn webhook(
        &self,
        _channel: &str,
        _earlier: &[(String, String)],
    ) -> Option<alert::WebhookMessage> {
        Some(
            self.digest
                .webhook_message(self.config, &self.message_id, self.created, ""),
        )
    }
}

/// Prints, for each route, the alerts that have not reached the admin yet, as `status` shows
/// them.
pub fn print_undelivered(rows: &[PendingRoute]) {
    for row in rows {
        let reason = row.last_error.as_deref().unwrap_or("not tried yet");
        if row.status == "expired" {
            outln!("alert expired undelivered ({}): {}", row.route, row.subject);
            outln!(
                "  {} attempt(s) since {}: {reason}",
                row.attempts,
                time_text(row.created_ms)
            );
            continue;
        }
        outln!("alert not delivered yet ({}): {}", row.route, row.subject);
        let next = row
            .next_attempt_ms
            .map(|ms| format!(", next attempt {}", time_text(ms)))
            .unwrap_or_default();
        outln!(
            "  {} attempt(s) since {}{next}: {reason}",
            row.attempts,
            time_text(row.created_ms)
        );
    }
}

/// Reads the undelivered alerts, one row per route, from the state database, if it exists.
pub fn undelivered(config: &Config) -> Vec<PendingRoute> {
    match Store::open_existing(&config.state_db()) {
        Ok(Some(store)) => store.undelivered_routes().unwrap_or_else(|error| {
            eprintln!("selfheal: cannot read the alert spool: {error:#}");
            Vec::new()
        }),
        Ok(None) => Vec::new(),
        Err(error) => {
            eprintln!("selfheal: cannot read the alert spool: {error:#}");
            Vec::new()
        }
    }
}

/// Prints how many alerts the hourly cap holds back, and when their summary goes out.
pub fn print_held(config: &Config) {
    let Ok(Some(store)) = Store::open_existing(&config.state_db()) else {
        return;
    };
    let now = SystemTime::now();
    let Ok(state) = store.spool_state(now - CAP_WINDOW) else {
        return;
    };
    if state.suppressed.is_empty() {
        return;
    }
    let cap = CAP_WINDOW.as_millis() as i64;
    let summary_at = match state.recent_messages_ms.first() {
        Some(first) => time_text(first + cap),
        None => "the next minute".to_string(),
    };
    outln!(
        "{} alert(s) held back by the hourly limit (alerts.max_per_hour = {}); one summary \
         lists them at {summary_at}",
        state.suppressed.len(),
        config.alerts.max_per_hour
    );
}
