//! Alert email: composes the message that notifies the admin when selfheal cannot heal a
//! service, and delivers it through the configured SMTP relays, then the local sendmail binary.
//!
//! An alert counts as sent only when one channel accepted it: a relay answered the end of
//! DATA with a 2xx reply, or sendmail exited with status 0. Every failed channel is logged and
//! kept in [`SendError`], so the caller can show why nothing went out.

mod message;
mod sendmail;
mod smtp;
mod webhook;

use std::fmt;
use std::time::SystemTime;

use crate::config::AlertConfig;

pub use message::{compose, new_message_id, subject, ComposeError};
pub use webhook::{WebhookMessage, WebhookService};

/// Facts an alert email contains. Built by the engine when an incident needs the admin.
#[derive(Debug, Clone)]
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
}

/// Channel that accepted an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Path that delivered, such as `relay smtp.example.net:587 (starttls)` or
    /// `sendmail /usr/sbin/sendmail`.
    pub channel: String,
    /// The relay's final reply to DATA, or `exit status 0` for sendmail.
    pub reply: String,
}

/// Failure of every configured channel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SendError {
    /// Each channel tried, in order, with its error text.
    pub attempts: Vec<(String, String)>,
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

/// Sends `message` through each relay in the configured order, then through sendmail, and
/// stops at the first channel that accepts it.
///
/// Each relay attempt takes at most that relay's timeout and the sendmail attempt at most
/// 30 s, so the whole call is bounded by their sum plus scheduling delay.
pub async fn send(config: &AlertConfig, message: &lettre::Message) -> Result<Delivery, SendError> {
    let mut attempts = Vec::new();

    for relay in &config.relays {
        let channel = smtp::channel_name(relay);
        match smtp::send(relay, message).await {
            Ok(reply) => return Ok(delivered(channel, reply)),
            Err(error) => {
                tracing::warn!(channel = %channel, error = %error, "alert channel failed");
                attempts.push((channel, error));
            }
        }
    }

    if let Some(path) = &config.sendmail {
        let channel = sendmail::channel_name(path);
        match sendmail::send(path, message).await {
            Ok(reply) => return Ok(delivered(channel, reply)),
            Err(error) => {
                tracing::warn!(channel = %channel, error = %error, "alert channel failed");
                attempts.push((channel, error));
            }
        }
    }

    Err(SendError { attempts })
}

fn delivered(channel: String, reply: String) -> Delivery {
    tracing::debug!(channel = %channel, reply = %reply, "alert delivered");
    Delivery { channel, reply }
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
