//! One message to the admin that carries one or more items: problems, reminders and
//! recoveries that happened close together, or the summary of what the hourly cap held back.
//! Rendered as a mail (plain text and HTML) and as a webhook message.

use std::fmt::Write as _;
use std::time::SystemTime;

use lettre::message::MultiPart;
use lettre::Message;
use serde::{Deserialize, Serialize};

use super::message::{
    escape_html, headers, html_end, html_start, one_line, truncate, truncate_words, utc, Body,
    ComposeError, MAX_SUBJECT_CHARS, MAX_SUBJECT_FIELD_CHARS,
};
use super::planner::ItemKind;
use super::webhook::{WebhookMessage, WebhookService};
use super::Alert;
use crate::config::AlertConfig;

/// One thing to tell the admin about, stored in the spool as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub kind: ItemKind,
    pub alert: Alert,
    /// For a reminder: which one, from 1.
    #[serde(default)]
    pub nth: u32,
    /// For a recovery: when the incident closed.
    #[serde(default)]
    pub closed_at: Option<SystemTime>,
    /// For a recovery: how it ended, such as "recovered" or "healed".
    #[serde(default)]
    pub resolution: Option<String>,
    /// When the item was queued.
    pub queued_at: SystemTime,
}

/// Content of one message, stored with it so that every attempt renders the same content.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Digest {
    pub host: String,
    pub items: Vec<Item>,
    /// True for the summary of items the hourly cap held back.
    #[serde(default)]
    pub summary: bool,
    /// The hourly cap, for the summary's text.
    #[serde(default)]
    pub max_per_hour: u32,
    pub dashboard_url: Option<String>,
    /// True for the message of `selfheal alert test`.
    #[serde(default)]
    pub test: bool,
    /// Message-ID of the alert a reminder or recovery follows up, so mail clients thread them.
    #[serde(default)]
    pub in_reply_to: Option<String>,
}

impl Digest {
    /// Builds the message `selfheal alert test` sends.
    pub fn test(host: &str, dashboard_url: Option<String>) -> Digest {
        Digest {
            host: host.to_string(),
            items: Vec::new(),
            summary: false,
            max_per_hour: 0,
            dashboard_url,
            test: true,
            in_reply_to: None,
        }
    }

    /// Returns the message kind stored in the spool: the items' common kind, `summary` or `mixed`.
    pub fn kind(&self) -> &'static str {
        if self.test {
            return "test";
        }
        if self.summary {
            return "summary";
        }
        match self.items.first().map(|item| item.kind) {
            Some(first) if self.items.iter().all(|item| item.kind == first) => first.as_str(),
            _ => "mixed",
        }
    }

    /// Services named, in order, without repeats: `postfix, dovecot`.
    pub fn services(&self) -> String {
        let mut names: Vec<&str> = Vec::new();
        for item in &self.items {
            if !names.contains(&item.alert.service.as_str()) {
                names.push(&item.alert.service);
            }
        }
        names.join(", ")
    }

    /// Builds the subject on one line of bounded length.
    ///
    /// One problem: `[selfheal] HOST: SERVICE VERDICT (REASON)`. Several items: each as
    /// `SERVICE VERDICT`, comma-separated. A summary: how many items the cap held back.
    pub fn subject(&self) -> String {
        let field = |text: &str| truncate_words(&one_line(text), MAX_SUBJECT_FIELD_CHARS);
        let host = field(&self.host);
        let subject = if self.test {
            format!("[selfheal] {host}: test alert")
        } else if self.summary {
            format!(
                "[selfheal] {host}: {} held back by the hourly limit",
                count(self.items.len(), "alert")
            )
        } else if let [item] = self.items.as_slice() {
            let alert = &item.alert;
            let reason = field(&alert.reason);
            let reason = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            let service = field(&alert.service);
            let verdict = field(&alert.verdict);
            match item.kind {
                ItemKind::Problem => format!("[selfheal] {host}: {service} {verdict}{reason}"),
                ItemKind::Reminder => {
                    format!("[selfheal] {host}: reminder: {service} {verdict}{reason}")
                }
                ItemKind::Recovered => {
                    format!("[selfheal] {host}: {service} recovered (was {verdict})")
                }
            }
        } else {
            let parts: Vec<String> = self
                .items
                .iter()
                .map(|item| {
                    let what = match item.kind {
                        ItemKind::Recovered => "recovered".to_string(),
                        _ => field(&item.alert.verdict),
                    };
                    format!("{} {what}", field(&item.alert.service))
                })
                .collect();
            format!("[selfheal] {host}: {}", parts.join(", "))
        };
        truncate_words(&subject, MAX_SUBJECT_CHARS)
    }

    /// Renders the plain text and HTML bodies. `delivery` names the path that carries this attempt.
    pub fn bodies(&self, config: &AlertConfig, delivery: &str) -> (String, String) {
        let mut plain = String::new();
        let mut html = html_start();

        if self.test {
            let text = format!(
                "This is a test alert from selfheal on {}, sent by `selfheal alert test`. \
                 Real alerts take the same way, so they reach you too.",
                one_line(&self.host)
            );
            let _ = writeln!(plain, "{text}\n");
            let _ = writeln!(html, "<p>{}</p>", escape_html(&text));
        } else if self.summary {
            self.summary_bodies(&mut plain, &mut html);
        } else {
            let total = self.items.len();
            if total > 1 {
                let intro = format!(
                    "{} on {} changed within moments of each other: {}.",
                    count(total, "service"),
                    one_line(&self.host),
                    one_line(&self.subject_list()),
                );
                let _ = writeln!(plain, "{intro}\n");
                let _ = writeln!(html, "<p>{}</p>", escape_html(&intro));
            }
            for (index, item) in self.items.iter().enumerate() {
                let body = item_body(config, item);
                if total > 1 {
                    let heading = format!(
                        "{} of {total}: {} {}",
                        index + 1,
                        one_line(&item.alert.service),
                        item_verdict(item),
                    );
                    let _ = writeln!(plain, "=== {heading} ===\n");
                    let _ = writeln!(html, "<h2>{}</h2>", escape_html(&heading));
                }
                plain.push_str(&body.plain());
                plain.push('\n');
                body.html_section(&mut html);
            }
        }

        if let Some(url) = &self.dashboard_url {
            let _ = writeln!(plain, "Dashboard: {url}");
            let _ = writeln!(
                html,
                "<p>Dashboard: <a href=\"{0}\">{0}</a></p>",
                escape_html(url)
            );
        }
        let delivery = one_line(delivery);
        if !delivery.is_empty() {
            let _ = writeln!(plain, "Delivery: {delivery}");
            let _ = writeln!(
                html,
                "<p style=\"color: #555\">Delivery: {}</p>",
                escape_html(&delivery)
            );
        }
        html_end(&mut html);
        (plain, html)
    }

    fn subject_list(&self) -> String {
        self.items
            .iter()
            .map(|item| format!("{} {}", item.alert.service, item_verdict(item)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn summary_bodies(&self, plain: &mut String, html: &mut String) {
        let intro = format!(
            "selfheal held back {} on {} because it had already sent {} mails within the \
             hour (alerts.max_per_hour). This is what they said; `selfheal status` shows the \
             state now.",
            count(self.items.len(), "alert"),
            one_line(&self.host),
            self.max_per_hour,
        );
        let _ = writeln!(plain, "{intro}\n");
        let _ = writeln!(html, "<p>{}</p>\n<ul>", escape_html(&intro));
        for item in &self.items {
            let reason = one_line(&item.alert.reason);
            let line = format!(
                "{}  {} {}{}",
                utc(item.queued_at),
                one_line(&item.alert.service),
                item_verdict(item),
                if reason.is_empty() || item.kind == ItemKind::Recovered {
                    String::new()
                } else {
                    format!(" ({reason})")
                },
            );
            let _ = writeln!(plain, "  {line}");
            let _ = writeln!(html, "<li>{}</li>", escape_html(&line));
        }
        plain.push('\n');
        html.push_str("</ul>\n");
    }

    /// Builds the mail for one attempt. The Message-ID and the Date are the spooled ones, so a
    /// resend is recognisably the same message.
    pub fn compose(
        &self,
        config: &AlertConfig,
        message_id: &str,
        created: SystemTime,
        delivery: &str,
    ) -> Result<Message, ComposeError> {
        let mut builder = headers(config, &self.host, self.subject(), message_id, created)?;
        if let Some(original) = &self.in_reply_to {
            builder = builder
                .in_reply_to(original.clone())
                .references(original.clone());
        }
        let (plain, html) = self.bodies(config, delivery);
        Ok(builder.multipart(MultiPart::alternative_plain_html(plain, html))?)
    }

    /// Builds what a webhook posts for this message.
    pub fn webhook_message(
        &self,
        config: &AlertConfig,
        message_id: &str,
        created: SystemTime,
        delivery: &str,
    ) -> WebhookMessage {
        let (text, html) = self.bodies(config, delivery);
        // The webhook schema names a summary of held-back alerts "suppressed", and a message
        // that mixes kinds counts as a problem, the most urgent of them.
        let kind = match self.kind() {
            "mixed" => "problem",
            "summary" => "suppressed",
            other => other,
        };
        WebhookMessage {
            id: message_id.to_string(),
            kind: kind.to_string(),
            host: self.host.clone(),
            title: self.subject(),
            text,
            html,
            services: self
                .items
                .iter()
                .map(|item| WebhookService {
                    name: item.alert.service.clone(),
                    unit: item.alert.unit.clone(),
                    verdict: match item.kind {
                        ItemKind::Recovered => "recovered".to_string(),
                        _ => item.alert.verdict.clone(),
                    },
                    reason: item.alert.reason.clone(),
                    started: item.alert.started_at,
                })
                .collect(),
            dashboard_url: self.dashboard_url.clone(),
            created,
        }
    }
}

fn item_verdict(item: &Item) -> String {
    match item.kind {
        ItemKind::Problem => one_line(&item.alert.verdict),
        ItemKind::Reminder => format!("still {}", one_line(&item.alert.verdict)),
        ItemKind::Recovered => "recovered".to_string(),
    }
}

/// Builds the body of one item: the facts of its alert under a first paragraph for its kind.
fn item_body(config: &AlertConfig, item: &Item) -> Body {
    let mut body = Body::new(config, &item.alert);
    let service = one_line(&item.alert.service);
    let host = one_line(&item.alert.host);
    let open_for = |until: SystemTime| {
        until
            .duration_since(item.alert.started_at)
            .map(|open| humantime::format_duration(round_to_minutes(open)).to_string())
            .unwrap_or_else(|_| "an unknown time".to_string())
    };
    match item.kind {
        ItemKind::Problem => {}
        ItemKind::Reminder => {
            body.summary = format!(
                "Reminder {}: the incident of {service} on {host} has been open for {}. {}",
                item.nth,
                open_for(item.queued_at),
                body.summary,
            );
        }
        ItemKind::Recovered => {
            let closed = item.closed_at.unwrap_or(item.queued_at);
            let how = item.resolution.as_deref().unwrap_or("recovered");
            body.summary = format!(
                "{service} on {host} is healthy again ({}). The incident selfheal alerted you \
                 about closed after {}; nothing more is needed.",
                one_line(how),
                open_for(closed),
            );
            body.extra.push(("Closed", utc(closed)));
            body.next_steps.clear();
            body.diagnosis_resolved = true;
        }
    }
    body
}

/// Keeps whole seconds below an hour and whole minutes above, so "1m 37s" and "2h 5m" read
/// better than "2h 5m 13s 200ms".
fn round_to_minutes(duration: std::time::Duration) -> std::time::Duration {
    let secs = duration.as_secs();
    if secs < 3600 {
        return std::time::Duration::from_secs(secs);
    }
    std::time::Duration::from_secs(secs / 60 * 60)
}

fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Text for the "Delivery" line: which path carries this attempt, why the attempt before it
/// failed, and which channels this attempt passed over.
pub fn delivery_note(
    channel: &str,
    attempt: u32,
    previous_error: Option<&str>,
    earlier: &[(String, String)],
) -> String {
    let mut note = format!("sent through {channel}");
    if attempt > 1 {
        let _ = write!(note, " (attempt {attempt})");
        if let Some(error) = previous_error {
            let _ = write!(
                note,
                "; the attempt before failed: {}",
                truncate(&one_line(error), 300)
            );
        }
    }
    if !earlier.is_empty() {
        let skipped: Vec<String> = earlier
            .iter()
            .map(|(channel, error)| format!("{channel}: {}", truncate(&one_line(error), 160)))
            .collect();
        let _ = write!(note, "; before it: {}", skipped.join("; "));
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn alert(service: &str, verdict: &str) -> Alert {
        let start = UNIX_EPOCH + Duration::from_secs(1_714_557_600); // 2024-05-01T10:00:00Z
        Alert {
            host: "mail1".into(),
            service: service.into(),
            unit: format!("{service}.service"),
            verdict: verdict.into(),
            reason: "port refused".into(),
            started_at: start,
            seen: "unit failed".into(),
            actions: vec![(start + Duration::from_secs(2), "restart: failed".into())],
            last_probe: "tcp 127.0.0.1:25: refused".into(),
            journal: vec!["fatal: bad config".into()],
            mode: "heal".into(),
            diagnosis: Vec::new(),
        }
    }

    fn item(kind: ItemKind, service: &str, verdict: &str) -> Item {
        let alert = alert(service, verdict);
        Item {
            kind,
            queued_at: alert.started_at + Duration::from_secs(3600),
            nth: 1,
            closed_at: None,
            resolution: None,
            alert,
        }
    }

    fn digest(items: Vec<Item>) -> Digest {
        Digest {
            host: "mail1".into(),
            items,
            summary: false,
            max_per_hour: 10,
            dashboard_url: None,
            test: false,
            in_reply_to: None,
        }
    }

    fn config() -> AlertConfig {
        AlertConfig {
            from: Some("selfheal@mail1.example.org".into()),
            to: vec!["admin@example.org".into()],
            journal_lines: 20,
            ..AlertConfig::default()
        }
    }

    #[test]
    fn single_item_subjects() {
        let problem = digest(vec![item(ItemKind::Problem, "postfix", "restart failed")]);
        assert_eq!(
            problem.subject(),
            "[selfheal] mail1: postfix restart failed (port refused)"
        );
        assert_eq!(problem.kind(), "problem");
        let reminder = digest(vec![item(ItemKind::Reminder, "postfix", "crash loop")]);
        assert_eq!(
            reminder.subject(),
            "[selfheal] mail1: reminder: postfix crash loop (port refused)"
        );
        let recovered = digest(vec![item(ItemKind::Recovered, "dovecot", "restart failed")]);
        assert_eq!(
            recovered.subject(),
            "[selfheal] mail1: dovecot recovered (was restart failed)"
        );
    }

    #[test]
    fn group_names_every_service() {
        let group = digest(vec![
            item(ItemKind::Problem, "postfix", "restart failed"),
            item(ItemKind::Problem, "dovecot", "crash loop"),
            item(ItemKind::Recovered, "opendkim", "down"),
        ]);
        assert_eq!(
            group.subject(),
            "[selfheal] mail1: postfix restart failed, dovecot crash loop, opendkim recovered"
        );
        assert_eq!(group.kind(), "mixed");
        assert_eq!(group.services(), "postfix, dovecot, opendkim");
        let (plain, html) = group.bodies(&config(), "sent through relay a");
        assert!(plain.starts_with("3 services on mail1 changed"), "{plain}");
        for heading in [
            "=== 1 of 3: postfix restart failed ===",
            "=== 2 of 3: dovecot crash loop ===",
            "=== 3 of 3: opendkim recovered ===",
        ] {
            assert!(plain.contains(heading), "{plain}");
        }
        assert!(plain.contains("Delivery: sent through relay a"), "{plain}");
        assert!(
            html.contains("<h2>2 of 3: dovecot crash loop</h2>"),
            "{html}"
        );
    }

    #[test]
    fn recovered_body_says_closed() {
        let mut recovered = item(ItemKind::Recovered, "dovecot", "restart failed");
        recovered.closed_at = Some(recovered.alert.started_at + Duration::from_secs(750));
        recovered.resolution = Some("recovered".into());
        let (plain, _) = digest(vec![recovered]).bodies(&config(), "");
        assert!(
            plain.starts_with("dovecot on mail1 is healthy again (recovered). The incident selfheal alerted you about closed after 12m 30s; nothing more is needed."),
            "{plain}"
        );
        assert!(plain.contains("Closed: 2024-05-01T10:12:30Z"), "{plain}");
        assert!(!plain.contains("Next:"), "{plain}");
    }

    #[test]
    fn recovered_body_has_no_next_step() {
        let mut recovered = item(ItemKind::Recovered, "postfix", "not restarted");
        recovered.alert.diagnosis = vec![crate::diagnose::Finding::new(
            crate::diagnose::Cause::ConfigError,
            "config error: /etc/postfix/main.cf line 50: missing '='",
            "fix line 50 of /etc/postfix/main.cf",
        )];
        let (plain, html) = digest(vec![recovered]).bodies(&config(), "");
        assert!(
            plain.contains(
                "Diagnosis while it was down (resolved):\n  config error: /etc/postfix/main.cf \
                 line 50: missing '='\n"
            ),
            "{plain}"
        );
        assert!(!plain.contains("fix line 50"), "{plain}");
        assert!(!html.contains("fix line 50"), "{html}");
    }

    #[test]
    fn reminder_body_says_how_long() {
        let (plain, _) = digest(vec![item(ItemKind::Reminder, "postfix", "restart failed")])
            .bodies(&config(), "");
        assert!(
            plain.starts_with("Reminder 1: the incident of postfix on mail1 has been open for 1h."),
            "{plain}"
        );
    }

    #[test]
    fn summary_lists_held_items() {
        let mut summary = digest(vec![
            item(ItemKind::Problem, "postfix", "crash loop"),
            item(ItemKind::Recovered, "postfix", "crash loop"),
        ]);
        summary.summary = true;
        assert_eq!(
            summary.subject(),
            "[selfheal] mail1: 2 alerts held back by the hourly limit"
        );
        assert_eq!(summary.kind(), "summary");
        let (plain, _) = summary.bodies(&config(), "");
        assert!(plain.contains("already sent 10 mails"), "{plain}");
        assert!(
            plain.contains("  2024-05-01T11:00:00Z  postfix crash loop (port refused)\n"),
            "{plain}"
        );
        assert!(
            plain.contains("  2024-05-01T11:00:00Z  postfix recovered\n"),
            "{plain}"
        );
    }

    #[test]
    fn compose_keeps_id_and_date() {
        let created = UNIX_EPOCH + Duration::from_secs(1_714_557_600);
        let message = digest(vec![item(ItemKind::Problem, "postfix", "restart failed")])
            .compose(&config(), "<a.1@mail1>", created, "sent through relay a")
            .unwrap();
        let text = String::from_utf8_lossy(&message.formatted()).into_owned();
        assert!(text.contains("Message-ID: <a.1@mail1>"), "{text}");
        assert!(
            text.contains("Date: Wed, 01 May 2024 10:00:00 +0000"),
            "{text}"
        );
        assert!(text.contains("Auto-Submitted: auto-generated"), "{text}");
    }

    #[test]
    fn test_message() {
        let test = Digest::test("mail1", None);
        assert_eq!(test.subject(), "[selfheal] mail1: test alert");
        assert_eq!(test.kind(), "test");
        let (plain, _) = test.bodies(&config(), "sent through relay a");
        assert!(
            plain.starts_with("This is a test alert from selfheal on mail1"),
            "{plain}"
        );
        assert_eq!(
            test.webhook_message(&config(), "<a@b>", UNIX_EPOCH, "")
                .kind,
            "test"
        );
    }

    #[test]
    fn follow_up_threads() {
        let mut recovered = digest(vec![item(ItemKind::Recovered, "postfix", "restart failed")]);
        recovered.in_reply_to = Some("<a.1@mail1>".into());
        let message = recovered
            .compose(&config(), "<a.2@mail1>", UNIX_EPOCH, "")
            .unwrap();
        let text = String::from_utf8_lossy(&message.formatted()).into_owned();
        assert!(text.contains("In-Reply-To: <a.1@mail1>"), "{text}");
        assert!(text.contains("References: <a.1@mail1>"), "{text}");
    }

    #[test]
    fn dashboard_link() {
        let mut one = digest(vec![item(ItemKind::Problem, "postfix", "restart failed")]);
        one.dashboard_url = Some("https://mail1.example.org/selfheal/".into());
        let (plain, html) = one.bodies(&config(), "");
        assert!(
            plain.contains("Dashboard: https://mail1.example.org/selfheal/"),
            "{plain}"
        );
        assert!(
            html.contains("<a href=\"https://mail1.example.org/selfheal/\">"),
            "{html}"
        );
    }

    #[test]
    fn webhook_message_carries_services() {
        let group = digest(vec![
            item(ItemKind::Problem, "postfix", "restart failed"),
            item(ItemKind::Recovered, "dovecot", "down"),
        ]);
        let message = group.webhook_message(&config(), "<a.1@mail1>", UNIX_EPOCH, "");
        assert_eq!(message.kind, "problem");
        assert_eq!(message.services.len(), 2);
        assert_eq!(message.services[1].verdict, "recovered");
        assert_eq!(message.title, group.subject());
        assert!(!message.text.contains("Delivery:"));
    }

    #[test]
    fn delivery_note_lists_earlier_channels() {
        assert_eq!(
            delivery_note("relay a:587 (starttls)", 1, None, &[]),
            "sent through relay a:587 (starttls)"
        );
        assert_eq!(
            delivery_note(
                "sendmail /usr/sbin/sendmail",
                3,
                None,
                &[("relay 127.0.0.1:25 (none)".into(), "skipped: postfix is down".into())]
            ),
            "sent through sendmail /usr/sbin/sendmail (attempt 3); before it: relay 127.0.0.1:25 (none): skipped: postfix is down"
        );
    }
}
