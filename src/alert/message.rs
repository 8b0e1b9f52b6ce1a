//! Composition of the alert email: subject, headers, and a plain text and an HTML body that
//! carry the same facts.

use std::collections::hash_map::RandomState;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::Message;

use super::Alert;
use crate::config::AlertConfig;
use crate::policy::Verdict;

/// Maximum length of the subject in characters, so it stays readable in a mail list and on
/// a phone.
pub(super) const MAX_SUBJECT_CHARS: usize = 160;

/// Maximum length in characters of one field (host, service, verdict, reason) in the subject,
/// so that one long field cannot push the others out.
pub(super) const MAX_SUBJECT_FIELD_CHARS: usize = 60;

/// Maximum length in characters of one line of the body. A journal line can reach 48 KiB
/// (journald's default LineMax, see journald.conf(5)), and the alert only needs its start.
const MAX_BODY_LINE_CHARS: usize = 1000;

/// Maximum length of a Message-ID in bytes, well below the 998-byte header line limit of
/// RFC 5322.
const MAX_MESSAGE_ID_BYTES: usize = 250;

/// Problem that keeps an alert from being composed.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("alert sender {address:?} is invalid: {reason}; set alerts.from to an address such as \"selfheal@mail1.example.org\"")]
    InvalidFrom { address: String, reason: String },

    #[error(
        "no alert recipient is configured; set alerts.to, for example to = [\"admin@example.org\"]"
    )]
    NoRecipients,

    #[error("alert recipient {address:?} is invalid: {reason}; fix it in alerts.to")]
    InvalidRecipient { address: String, reason: String },

    #[error("message id {id:?} is invalid: it must look like <unique@host>, be printable ASCII without spaces and at most {MAX_MESSAGE_ID_BYTES} bytes; create one with new_message_id")]
    InvalidMessageId { id: String },

    #[error("building the alert message failed: {0}")]
    Build(#[from] lettre::error::Error),
}

/// `Auto-Submitted: auto-generated` header (RFC 3834). It marks the message as automatic, so
/// vacation responders and other auto-responders do not reply to it.
#[derive(Debug, Clone, Copy)]
pub(super) struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(value: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        if value.trim().eq_ignore_ascii_case("auto-generated") {
            Ok(AutoSubmitted)
        } else {
            Err(format!("Auto-Submitted value {value:?} is not auto-generated").into())
        }
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".to_string())
    }
}

/// Builds the alert email for `alert`.
///
/// The sender is `config.from`, or `selfheal@HOST` when it is not set. Every address in
/// `config.to` becomes a recipient. `message_id` must have the form `<unique@host>`, and
/// [`new_message_id`] creates one. The caller stores it so that a resend carries the same id.
pub fn compose(
    config: &AlertConfig,
    alert: &Alert,
    message_id: &str,
) -> Result<Message, ComposeError> {
    let body = Body::new(config, alert);
    let builder = headers(
        config,
        &alert.host,
        subject(alert),
        message_id,
        SystemTime::now(),
    )?;
    let message =
        builder.multipart(MultiPart::alternative_plain_html(body.plain(), body.html()))?;
    Ok(message)
}

/// Starts a message with selfheal's headers: From, To, Subject, Message-ID, Date,
/// Auto-Submitted and User-Agent.
///
/// The sender is `config.from`, or `selfheal@HOST` when it is not set. `date` is when the
/// alert was created, so that a resend carries the same Date as the first attempt.
pub(super) fn headers(
    config: &AlertConfig,
    host: &str,
    subject: String,
    message_id: &str,
    date: SystemTime,
) -> Result<lettre::message::MessageBuilder, ComposeError> {
    validate_message_id(message_id)?;

    let from_address = match &config.from {
        Some(address) => address.clone(),
        None => format!("selfheal@{}", id_domain(host)),
    };
    let from = from_address
        .parse::<Mailbox>()
        .map_err(|error| ComposeError::InvalidFrom {
            address: from_address.clone(),
            reason: error.to_string(),
        })?;

    if config.to.is_empty() {
        return Err(ComposeError::NoRecipients);
    }

    let mut builder = Message::builder()
        .from(from)
        .subject(subject)
        .date(date)
        .message_id(Some(message_id.to_string()))
        .header(AutoSubmitted)
        .user_agent(format!("selfheal {}", env!("CARGO_PKG_VERSION")));
    for address in &config.to {
        let mailbox =
            address
                .parse::<Mailbox>()
                .map_err(|error| ComposeError::InvalidRecipient {
                    address: address.clone(),
                    reason: error.to_string(),
                })?;
        builder = builder.to(mailbox);
    }
    Ok(builder)
}

/// Creates a Message-ID of the form `<selfheal.SECONDS.NANOS.PID.COUNTER.RANDOM@HOST>`.
///
/// The time, process id and a per-process counter make it unique on this host. The random
/// part, taken from the standard library's hash seed, guards against a clock set back. It is
/// not meant to be unpredictable.
pub fn new_message_id(host: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);

    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(count);
    hasher.write_u128(since_epoch.as_nanos());

    format!(
        "<selfheal.{}.{:09}.{}.{}.{:016x}@{}>",
        since_epoch.as_secs(),
        since_epoch.subsec_nanos(),
        std::process::id(),
        count,
        hasher.finish(),
        id_domain(host),
    )
}

/// Turns a hostname into a domain usable in a Message-ID or an address: letters, digits,
/// `-` and `.` are kept and every other character becomes `-`.
pub(super) fn id_domain(host: &str) -> String {
    let domain: String = host
        .trim()
        .trim_matches('.')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if domain.is_empty() {
        "localhost".to_string()
    } else {
        domain
    }
}

pub(super) fn validate_message_id(id: &str) -> Result<(), ComposeError> {
    let invalid = || ComposeError::InvalidMessageId { id: id.to_string() };

    if id.len() > MAX_MESSAGE_ID_BYTES {
        return Err(invalid());
    }
    let inner = id
        .strip_prefix('<')
        .and_then(|rest| rest.strip_suffix('>'))
        .ok_or_else(invalid)?;
    let (left, right) = inner.split_once('@').ok_or_else(invalid)?;
    let part_is_valid = |part: &str| {
        !part.is_empty()
            && part
                .chars()
                .all(|c| c.is_ascii_graphic() && !matches!(c, '<' | '>' | '@'))
    };
    if part_is_valid(left) && part_is_valid(right) {
        Ok(())
    } else {
        Err(invalid())
    }
}

/// Builds `[selfheal] HOST: SERVICE VERDICT (REASON)` on one line of bounded length.
pub fn subject(alert: &Alert) -> String {
    let field = |text: &str| truncate_words(&one_line(text), MAX_SUBJECT_FIELD_CHARS);

    let mut subject = format!(
        "[selfheal] {}: {} {}",
        field(&alert.host),
        field(&alert.service),
        field(&alert.verdict),
    );
    let reason = field(&alert.reason);
    if !reason.is_empty() {
        subject.push_str(&format!(" ({reason})"));
    }
    truncate_words(&subject, MAX_SUBJECT_CHARS)
}

/// Replaces every control character, CR and LF included, with a space and collapses runs of
/// whitespace, so that the text fits on one header line.
pub(super) fn one_line(text: &str) -> String {
    text.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Replaces control characters other than tab with U+FFFD, so that escape sequences from a
/// journal line cannot reach the reader's terminal or mail client.
pub(super) fn printable(line: &str) -> String {
    line.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Cuts `text` to at most `max` characters, the last one being `…` when something was cut.
pub(super) fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Cuts a subject or one of its fields to at most `max` characters at a word boundary, ending
/// in "...". ASCII dots keep an otherwise ASCII subject free of RFC 2047 encoding, which some
/// clients and ntfy's Title header show less well.
pub(super) fn truncate_words(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let room = max.saturating_sub(3);
    let cut: String = text.chars().take(room).collect();
    let cut = match cut.rfind(' ') {
        // Keep at least half of the room, or a long word would leave almost nothing.
        Some(space) if space >= room / 2 => &cut[..space],
        _ => cut.as_str(),
    };
    format!("{}...", cut.trim_end().trim_end_matches('.'))
}

/// Splits multi-line text into printable lines of bounded length.
pub(super) fn body_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| truncate(&printable(line), MAX_BODY_LINE_CHARS))
        .collect()
}

/// Formats `time` as RFC 3339 in UTC, to the second.
pub(super) fn utc(time: SystemTime) -> String {
    // humantime 2.4 panics on times before 1970. From year 10000 on its Display returns
    // fmt::Error, which makes to_string panic.
    const YEAR_10000: u64 = 253_402_300_800;
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) if since.as_secs() < YEAR_10000 => {
            humantime::format_rfc3339_seconds(time).to_string()
        }
        _ => "unknown time (clock outside 1970..9999)".to_string(),
    }
}

pub(super) fn escape_html(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

/// Facts of the body, cleaned once and rendered twice: as plain text and as HTML.
pub(super) struct Body {
    /// First paragraph: what happened and what the admin should do.
    pub(super) summary: String,
    /// Extra labelled facts shown after the mode, such as when the incident closed.
    pub(super) extra: Vec<(&'static str, String)>,
    host: String,
    service: String,
    unit: String,
    verdict: String,
    started: String,
    mode: String,
    seen: Vec<String>,
    /// Each finding of the diagnosis as (summary, evidence lines, next step).
    diagnosis: Vec<(String, Vec<String>, String)>,
    /// The service is healthy again: the diagnosis is shown as what was found, without next
    /// steps, because there is nothing left to fix.
    pub(super) diagnosis_resolved: bool,
    /// Each action as (RFC 3339 time, text).
    actions: Vec<(String, String)>,
    no_actions: &'static str,
    last_probe: Vec<String>,
    journal_heading: String,
    journal: Vec<String>,
    no_journal: String,
    /// Commands the admin can run next, each with what it shows.
    pub(super) next_steps: Vec<(String, &'static str)>,
}

impl Body {
    pub(super) fn new(config: &AlertConfig, alert: &Alert) -> Body {
        let host = one_line(&alert.host);
        let service = one_line(&alert.service);
        let unit = one_line(&alert.unit);
        let mode = one_line(&alert.mode);
        let watch = mode == "watch";

        let summary = if watch {
            format!(
                "{service} on {host} needs attention. {service} is in watch mode, \
                 so selfheal did not restart it."
            )
        } else if alert.verdict == Verdict::NotRestarted.as_str() {
            // The policy checks the blocker at every check and restarts the service by itself
            // once it is gone.
            format!(
                "selfheal did not restart {service} on {host}, because a restart cannot fix \
                 the cause below. Once the cause is gone, selfheal restarts {service} by \
                 itself at its next check; after fixing it you can also run \
                 `selfheal restart {service}` at once. This incident closes as soon as \
                 {service} is healthy."
            )
        } else {
            format!(
                "selfheal could not heal {service} on {host} and needs you. It will not \
                 restart {service} again on its own; once the cause is fixed, \
                 `selfheal restart {service}` restarts and verifies it, and this incident \
                 closes as soon as {service} is healthy."
            )
        };

        let mut verdict = one_line(&alert.verdict);
        let reason = one_line(&alert.reason);
        if !reason.is_empty() {
            verdict.push_str(&format!(" ({reason})"));
        }

        let actions = alert
            .actions
            .iter()
            .flat_map(|(time, text)| {
                let time = utc(*time);
                // A multi-line outcome keeps the action's time on its first line only.
                body_lines(text)
                    .into_iter()
                    .enumerate()
                    .map(move |(i, line)| (if i == 0 { time.clone() } else { String::new() }, line))
            })
            .collect();
        let no_actions = if watch {
            "none: watch mode does not restart services"
        } else {
            "none"
        };

        // The engine may pass more lines than configured, and the alert keeps only the last ones.
        let skip = alert.journal.len().saturating_sub(config.journal_lines);
        let journal: Vec<String> = alert.journal[skip..]
            .iter()
            .flat_map(|line| body_lines(line))
            .collect();
        let journal_heading = if unit.is_empty() {
            "Last journal lines".to_string()
        } else {
            format!("Last journal lines of {unit}")
        };
        let no_journal = if unit.is_empty() {
            "none: this service is managed by commands, so it has no unit journal".to_string()
        } else if config.journal_lines == 0 {
            "journal lines are turned off (alerts.journal_lines = 0)".to_string()
        } else {
            "no journal lines were found".to_string()
        };

        let mut next_steps = vec![("selfheal status".to_string(), "for the current state")];
        if !unit.is_empty() {
            next_steps.push((format!("journalctl -u {unit}"), "for the full log"));
        }

        Body {
            summary,
            extra: Vec::new(),
            host,
            service,
            unit,
            verdict,
            started: utc(alert.started_at),
            mode,
            seen: body_lines(&alert.seen),
            diagnosis: alert
                .diagnosis
                .iter()
                .map(|finding| {
                    (
                        one_line(&finding.summary),
                        finding
                            .evidence
                            .iter()
                            .flat_map(|line| body_lines(line))
                            .collect(),
                        one_line(&finding.next_step),
                    )
                })
                .collect(),
            diagnosis_resolved: false,
            actions,
            no_actions,
            last_probe: body_lines(&alert.last_probe),
            journal_heading,
            journal,
            no_journal,
            next_steps,
        }
    }

    fn diagnosis_heading(&self) -> &'static str {
        if self.diagnosis_resolved {
            "Diagnosis while it was down (resolved)"
        } else {
            "Diagnosis"
        }
    }

    fn service_and_unit(&self) -> String {
        if self.unit.is_empty() {
            self.service.clone()
        } else {
            format!("{} (unit {})", self.service, self.unit)
        }
    }

    /// Renders the plain text part: short labelled lines that read well on a phone.
    pub(super) fn plain(&self) -> String {
        let mut out = String::new();
        let mut line = |text: &str| {
            out.push_str(text);
            out.push('\n');
        };

        line(&self.summary);
        line("");
        line(&format!("Host: {}", self.host));
        line(&format!("Service: {}", self.service_and_unit()));
        line(&format!("Verdict: {}", self.verdict));
        line(&format!("Started: {}", self.started));
        line(&format!("Mode: {}", self.mode));
        for (label, value) in &self.extra {
            line(&format!("{label}: {value}"));
        }

        if !self.diagnosis.is_empty() {
            line("");
            line(&format!("{}:", self.diagnosis_heading()));
            for (summary, evidence, next_step) in &self.diagnosis {
                line(&format!("  {summary}"));
                for text in evidence {
                    line(&format!("    | {text}"));
                }
                if !self.diagnosis_resolved {
                    line(&format!("    Next: {next_step}"));
                }
            }
        }

        line("");
        line("What was seen:");
        plain_block(&mut line, &self.seen, "nothing was recorded");

        line("");
        line("What selfheal tried:");
        if self.actions.is_empty() {
            line(&format!("  {}", self.no_actions));
        }
        for (time, text) in &self.actions {
            if time.is_empty() {
                line(&format!("    {text}"));
            } else {
                line(&format!("  {time}  {text}"));
            }
        }

        line("");
        line("Last probe:");
        plain_block(&mut line, &self.last_probe, "no probe result");

        line("");
        line(&format!("{}:", self.journal_heading));
        plain_block(&mut line, &self.journal, &self.no_journal);

        if !self.next_steps.is_empty() {
            line("");
            let steps: Vec<String> = self
                .next_steps
                .iter()
                .map(|(command, purpose)| format!("`{command}` {purpose}"))
                .collect();
            line(&format!("Next: run {}.", steps.join(" and ")));
        }
        out
    }

    /// Renders the HTML part. Every text from the alert passes through [`escape_html`].
    pub(super) fn html(&self) -> String {
        let mut out = html_start();
        self.html_section(&mut out);
        html_end(&mut out);
        out
    }

    /// Appends this alert's part of the HTML body, without the document around it.
    pub(super) fn html_section(&self, out: &mut String) {
        let _ = writeln!(out, "<p>{}</p>", code_spans(&self.summary));

        out.push_str("<table>\n");
        for (label, value) in [
            ("Host", self.host.clone()),
            ("Service", self.service_and_unit()),
            ("Verdict", self.verdict.clone()),
            ("Started", self.started.clone()),
            ("Mode", self.mode.clone()),
        ]
        .into_iter()
        .chain(self.extra.iter().cloned())
        {
            let _ = writeln!(
                out,
                "<tr><th align=\"left\">{label}</th><td>{}</td></tr>",
                escape_html(&value)
            );
        }
        out.push_str("</table>\n");

        if !self.diagnosis.is_empty() {
            let _ = writeln!(out, "<h3>{}</h3>\n<ul>", self.diagnosis_heading());
            for (summary, evidence, next_step) in &self.diagnosis {
                let _ = writeln!(out, "<li><strong>{}</strong>", escape_html(summary));
                html_pre(out, evidence, "");
                if self.diagnosis_resolved {
                    out.push_str("</li>\n");
                } else {
                    let _ = writeln!(out, "<p>Next: {}</p></li>", escape_html(next_step));
                }
            }
            out.push_str("</ul>\n");
        }

        out.push_str("<h3>What was seen</h3>\n");
        html_pre(out, &self.seen, "nothing was recorded");

        out.push_str("<h3>What selfheal tried</h3>\n<ul>\n");
        if self.actions.is_empty() {
            let _ = writeln!(out, "<li>{}</li>", escape_html(self.no_actions));
        }
        for (time, text) in &self.actions {
            if time.is_empty() {
                let _ = writeln!(out, "<li>{}</li>", escape_html(text));
            } else {
                let _ = writeln!(
                    out,
                    "<li><code>{}</code> {}</li>",
                    escape_html(time),
                    escape_html(text)
                );
            }
        }
        out.push_str("</ul>\n");

        out.push_str("<h3>Last probe</h3>\n");
        html_pre(out, &self.last_probe, "no probe result");

        let _ = writeln!(out, "<h3>{}</h3>", escape_html(&self.journal_heading));
        html_pre(out, &self.journal, &self.no_journal);

        if !self.next_steps.is_empty() {
            let steps: Vec<String> = self
                .next_steps
                .iter()
                .map(|(command, purpose)| {
                    format!("<code>{}</code> {purpose}", escape_html(command))
                })
                .collect();
            let _ = writeln!(out, "<p>Next: run {}.</p>", steps.join(" and "));
        }
    }
}

/// Escapes `text` for HTML and shows each `command` in backticks as code.
pub(super) fn code_spans(text: &str) -> String {
    let mut out = String::new();
    for (index, part) in escape_html(text).split('`').enumerate() {
        if index % 2 == 1 {
            let _ = write!(out, "<code>{part}</code>");
        } else {
            out.push_str(part);
        }
    }
    out
}

/// Opens an HTML mail body that reads well on a phone.
pub(super) fn html_start() -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("</head>\n<body style=\"font-family: sans-serif; line-height: 1.4\">\n");
    out
}

pub(super) fn html_end(out: &mut String) {
    out.push_str("</body>\n</html>\n");
}

/// Writes `lines` indented by two spaces, or `empty` when there are none.
pub(super) fn plain_block(line: &mut impl FnMut(&str), lines: &[String], empty: &str) {
    if lines.is_empty() {
        line(&format!("  {empty}"));
    }
    for text in lines {
        line(&format!("  {text}"));
    }
}

/// Writes `lines` as a `pre` block that wraps on narrow screens, or `empty` as a paragraph.
pub(super) fn html_pre(out: &mut String, lines: &[String], empty: &str) {
    if lines.is_empty() {
        let _ = writeln!(out, "<p>{}</p>", escape_html(empty));
        return;
    }
    out.push_str("<pre style=\"white-space: pre-wrap; overflow-wrap: anywhere\">");
    for (i, text) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&escape_html(text));
    }
    out.push_str("</pre>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn alert() -> Alert {
        let start = UNIX_EPOCH + Duration::from_secs(1_714_557_600); // 2024-05-01T10:00:00Z
        Alert {
            host: "mail1".into(),
            service: "postfix".into(),
            unit: "postfix@-.service".into(),
            verdict: "restart failed".into(),
            reason: "port 25 refused".into(),
            started_at: start,
            seen: "unit failed (Result: exit-code)\ntcp 127.0.0.1:25: refused".into(),
            actions: vec![
                (
                    start + Duration::from_secs(2),
                    "restart: failed (exit 1)".into(),
                ),
                (
                    start + Duration::from_secs(30),
                    "restart: failed (exit 1)".into(),
                ),
            ],
            last_probe: "tcp 127.0.0.1:25: refused: connection refused".into(),
            journal: vec![
                "postfix/master[812]: fatal: bind 0.0.0.0 port 25: Address in use".into(),
                "<script>alert(1)</script> & \"quoted\"".into(),
            ],
            mode: "heal".into(),
            diagnosis: Vec::new(),
        }
    }

    fn config() -> AlertConfig {
        AlertConfig {
            from: Some("selfheal <selfheal@mail1.example.org>".into()),
            to: vec!["admin@example.org".into(), "ops@example.org".into()],
            journal_lines: 20,
            ..AlertConfig::default()
        }
    }

    fn formatted(message: &Message) -> String {
        String::from_utf8_lossy(&message.formatted()).into_owned()
    }

    #[test]
    fn subject_format() {
        assert_eq!(
            subject(&alert()),
            "[selfheal] mail1: postfix restart failed (port 25 refused)"
        );
    }

    #[test]
    fn subject_strips_line_breaks() {
        let mut alert = alert();
        alert.service = "postfix\r\nBcc: victim@example.org\r\n".into();

        let subject = subject(&alert);

        assert!(!subject.contains('\r'), "{subject:?}");
        assert!(!subject.contains('\n'), "{subject:?}");
        assert_eq!(
            subject,
            "[selfheal] mail1: postfix Bcc: victim@example.org restart failed (port 25 refused)"
        );
    }

    #[test]
    fn subject_injection_adds_no_header() {
        let mut alert = alert();
        alert.service = "postfix\r\nBcc: victim@example.org".into();

        let message = compose(&config(), &alert, "<a.1@mail1>").unwrap();
        let text = formatted(&message);

        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(message
            .envelope()
            .to()
            .iter()
            .all(|to| to.domain() == "example.org" && to.user() != "victim"));
    }

    #[test]
    fn subject_is_bounded() {
        let mut alert = alert();
        alert.service = "s".repeat(500);
        alert.reason = "r".repeat(500);
        alert.host = "h".repeat(500);
        alert.verdict = "v".repeat(500);

        let subject = subject(&alert);

        assert!(subject.chars().count() <= MAX_SUBJECT_CHARS, "{subject}");
        assert!(subject.ends_with("s..."), "{subject}");
        assert!(subject.is_ascii(), "{subject}");
    }

    #[test]
    fn subject_cut_at_word() {
        assert_eq!(
            truncate_words(
                "unit inactive, pidfile /tmp/x/filter.pid does not exist",
                40
            ),
            "unit inactive, pidfile..."
        );
        assert_eq!(truncate_words("short", 40), "short");
        assert_eq!(truncate_words(&"x".repeat(50), 10), "xxxxxxx...");
    }

    #[test]
    fn subject_without_reason() {
        let mut alert = alert();
        alert.reason = " ".into();

        assert_eq!(subject(&alert), "[selfheal] mail1: postfix restart failed");
    }

    #[test]
    fn diagnosis_in_both_parts() {
        let mut alert = alert();
        alert.diagnosis = vec![crate::diagnose::Finding::new(
            crate::diagnose::Cause::ConfigError,
            "config error: /etc/postfix/main.cf line 50: missing '='",
            "fix line 50 of /etc/postfix/main.cf",
        )
        .with_evidence(["postconf: fatal: <bad> line"])];
        let body = Body::new(&config(), &alert);
        let plain = body.plain();
        assert!(
            plain.contains("Diagnosis:\n  config error: /etc/postfix/main.cf line 50: missing '='\n    | postconf: fatal: <bad> line\n    Next: fix line 50 of /etc/postfix/main.cf\n"),
            "{plain}"
        );
        let html = body.html();
        assert!(html.contains("<h3>Diagnosis</h3>"), "{html}");
        assert!(html.contains("postconf: fatal: &lt;bad&gt; line"), "{html}");
    }

    #[test]
    fn not_restarted_says_it_restarts_by_itself() {
        let mut alert = alert();
        alert.verdict = "not restarted".into();
        let plain = Body::new(&config(), &alert).plain();
        assert!(
            plain.starts_with(
                "selfheal did not restart postfix on mail1, because a restart cannot fix the \
                 cause below. Once the cause is gone, selfheal restarts postfix by itself"
            ),
            "{plain}"
        );
        assert!(plain.contains("`selfheal restart postfix`"), "{plain}");
        assert!(!plain.contains("will not restart"), "{plain}");
    }

    #[test]
    fn failed_restart_says_it_waits() {
        let plain = Body::new(&config(), &alert()).plain();
        assert!(
            plain.contains("It will not restart postfix again on its own"),
            "{plain}"
        );
    }

    #[test]
    fn html_escapes_script() {
        let html = Body::new(&config(), &alert()).html();

        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quoted&quot;"),
            "{html}"
        );
    }

    #[test]
    fn html_journal_in_pre() {
        let html = Body::new(&config(), &alert()).html();
        let start = html
            .find("<h3>Last journal lines of postfix@-.service</h3>\n<pre")
            .unwrap();
        let block = &html[start..];
        let end = block.find("</pre>").unwrap();

        assert!(
            block[..end].contains("fatal: bind 0.0.0.0 port 25"),
            "{html}"
        );
    }

    #[test]
    fn plain_has_every_fact() {
        let plain = Body::new(&config(), &alert()).plain();

        for expected in [
            "Host: mail1",
            "Service: postfix (unit postfix@-.service)",
            "Verdict: restart failed (port 25 refused)",
            "Started: 2024-05-01T10:00:00Z",
            "Mode: heal",
            "  unit failed (Result: exit-code)",
            "  tcp 127.0.0.1:25: refused",
            "  2024-05-01T10:00:02Z  restart: failed (exit 1)",
            "  2024-05-01T10:00:30Z  restart: failed (exit 1)",
            "  tcp 127.0.0.1:25: refused: connection refused",
            "  postfix/master[812]: fatal: bind 0.0.0.0 port 25: Address in use",
            "  <script>alert(1)</script> & \"quoted\"",
            "Next: run `selfheal status` for the current state and \
             `journalctl -u postfix@-.service` for the full log.",
        ] {
            assert!(
                plain.contains(expected),
                "missing {expected:?} in:\n{plain}"
            );
        }
    }

    #[test]
    fn plain_not_restarted_promises_restart() {
        let mut alert = alert();
        alert.verdict = "not restarted".into();
        alert.actions.clear();

        let plain = Body::new(&config(), &alert).plain();

        assert!(
            plain.contains("Once the cause is gone, selfheal restarts postfix by itself"),
            "{plain}"
        );
        assert!(!plain.contains("will not restart"), "{plain}");
    }

    #[test]
    fn plain_watch_mode() {
        let mut alert = alert();
        alert.mode = "watch".into();
        alert.actions.clear();
        alert.unit.clear();

        let plain = Body::new(&config(), &alert).plain();

        assert!(
            plain.contains("is in watch mode, so selfheal did not restart it"),
            "{plain}"
        );
        assert!(
            plain.contains("none: watch mode does not restart services"),
            "{plain}"
        );
        assert!(
            plain.contains("Next: run `selfheal status` for the current state.\n"),
            "{plain}"
        );
        assert!(plain.contains("Service: postfix\n"), "{plain}");
    }

    #[test]
    fn journal_keeps_last_lines() {
        let mut config = config();
        config.journal_lines = 1;

        let plain = Body::new(&config, &alert()).plain();

        assert!(!plain.contains("fatal: bind"), "{plain}");
        assert!(plain.contains("<script>"), "{plain}");
    }

    #[test]
    fn journal_turned_off() {
        let mut config = config();
        config.journal_lines = 0;

        let plain = Body::new(&config, &alert()).plain();

        assert!(!plain.contains("fatal: bind"), "{plain}");
        assert!(plain.contains("alerts.journal_lines = 0"), "{plain}");
    }

    #[test]
    fn body_replaces_control_chars() {
        let mut alert = alert();
        alert.journal = vec!["\u{1b}[31mred\u{1b}[0m\tcolumn".into()];

        let plain = Body::new(&config(), &alert).plain();

        assert!(!plain.contains('\u{1b}'), "{plain:?}");
        assert!(
            plain.contains("\u{FFFD}[31mred\u{FFFD}[0m\tcolumn"),
            "{plain:?}"
        );
    }

    #[test]
    fn body_line_is_bounded() {
        let mut alert = alert();
        alert.journal = vec!["x".repeat(50_000)];

        let plain = Body::new(&config(), &alert).plain();

        assert!(plain.len() < 10_000, "body is {} bytes", plain.len());
        assert!(plain.contains('…'));
    }

    #[test]
    fn utc_outside_range() {
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
        let far_future = UNIX_EPOCH + Duration::from_secs(300_000_000_000);

        assert!(utc(before_epoch).starts_with("unknown time"));
        assert!(utc(far_future).starts_with("unknown time"));
        assert_eq!(utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn compose_sets_headers() {
        let message = compose(&config(), &alert(), "<a.1@mail1>").unwrap();
        let text = formatted(&message);

        assert!(text.contains("Message-ID: <a.1@mail1>\r\n"), "{text}");
        assert!(
            text.contains("Auto-Submitted: auto-generated\r\n"),
            "{text}"
        );
        assert!(text.contains("Date: "), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
        assert!(text.contains("text/plain"), "{text}");
        assert!(text.contains("text/html"), "{text}");
        assert_eq!(message.envelope().to().len(), 2);
    }

    #[test]
    fn compose_default_sender() {
        let mut config = config();
        config.from = None;

        let message = compose(&config, &alert(), "<a.1@mail1>").unwrap();

        let from = message.envelope().from().unwrap();
        assert_eq!(from.to_string(), "selfheal@mail1");
    }

    #[test]
    fn compose_rejects_bad_addresses() {
        let mut config = config();
        config.to.clear();
        assert!(matches!(
            compose(&config, &alert(), "<a.1@mail1>"),
            Err(ComposeError::NoRecipients)
        ));

        config.to = vec!["not an address".into()];
        let error = compose(&config, &alert(), "<a.1@mail1>").unwrap_err();
        assert!(error.to_string().contains("\"not an address\""), "{error}");

        let mut config = self::config();
        config.from = Some("selfheal@".into());
        let error = compose(&config, &alert(), "<a.1@mail1>").unwrap_err();
        assert!(error.to_string().contains("\"selfheal@\""), "{error}");
    }

    #[test]
    fn compose_rejects_bad_message_ids() {
        for id in [
            "",
            "a@b",
            "<ab>",
            "<@b>",
            "<a@>",
            "<a@b@c>",
            "<a b@c>",
            "<a@b>\r\nBcc: x@y",
            "<a\r\n@b>",
            &format!("<{}@b>", "a".repeat(300)),
        ] {
            let result = compose(&config(), &alert(), id);
            assert!(
                matches!(result, Err(ComposeError::InvalidMessageId { .. })),
                "{id:?} was accepted"
            );
        }
    }

    #[test]
    fn message_id_is_valid_and_unique() {
        let first = new_message_id("mail1.example.org");
        let second = new_message_id("mail1.example.org");

        assert_ne!(first, second);
        assert!(first.starts_with("<selfheal."), "{first}");
        assert!(first.ends_with("@mail1.example.org>"), "{first}");
        assert!(validate_message_id(&first).is_ok(), "{first}");
    }

    #[test]
    fn message_id_cleans_host() {
        let id = new_message_id("bad host\r\n>name");

        assert!(id.ends_with("@bad-host---name>"), "{id}");
        assert!(validate_message_id(&id).is_ok(), "{id}");
        assert!(new_message_id("").ends_with("@localhost>"));
    }
}
