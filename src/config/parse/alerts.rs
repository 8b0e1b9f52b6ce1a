//! The `[alerts]` table and its `[[alerts.relay]]` entries: sender, recipients, sendmail and
//! SMTP relays. The `[[alerts.webhook]]` entries are read in `webhooks.rs`.

use std::fs;
use std::net::Ipv6Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use toml_edit::Value;

use super::checker::{example_of, join_key, Checker, Field, Keys};
use super::webhooks::Webhooks;
use crate::config::{
    default_sendmail, AlertConfig, RelayConfig, TlsMode, DEFAULT_JOURNAL_LINES,
    DEFAULT_RELAY_TIMEOUT, DEFAULT_SENDMAIL,
};

const ALERT_KEYS: Keys = &[
    ("from", r#"from = "selfheal@mail.example.org""#),
    ("to", r#"to = ["admin@example.org"]"#),
    ("journal_lines", "journal_lines = 20"),
    ("sendmail", r#"sendmail = "/usr/sbin/sendmail""#),
    ("relay", r#"[[alerts.relay]]"#),
    ("group_window", r#"group_window = "10s""#),
    ("max_per_hour", "max_per_hour = 10"),
    ("reminders", r#"reminders = ["1h", "6h", "24h"]"#),
    ("reminder_repeat", r#"reminder_repeat = "24h""#),
    ("recovered", "recovered = true"),
    ("retry_initial", r#"retry_initial = "30s""#),
    ("retry_max", r#"retry_max = "30m""#),
    ("expire_after", r#"expire_after = "3d""#),
    ("webhook", "[[alerts.webhook]]"),
];

/// Upper bound of `max_per_hour`: more mails than this in an hour help no reader.
const MAX_MAILS_PER_HOUR: i64 = 1000;

/// Upper bound of `group_window`: a longer wait would delay the first alert too much.
const MAX_GROUP_WINDOW: Duration = Duration::from_secs(600);

/// Shortest `expire_after`, so that at least a few retries fit.
const MIN_EXPIRY: Duration = Duration::from_secs(600);

/// Shortest `retry_initial`: faster retries only flood the log and the relay.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// Shortest reminder offset and `reminder_repeat`.
const MIN_REMINDER: Duration = Duration::from_secs(60);

const RELAY_KEYS: Keys = &[
    ("host", r#"host = "smtp.example.net""#),
    ("port", "port = 587"),
    ("tls", r#"tls = "starttls""#),
    ("username", r#"username = "selfheal""#),
    (
        "password_file",
        r#"password_file = "/etc/selfheal/relay-password""#,
    ),
    ("timeout", r#"timeout = "30s""#),
    ("ca_file", r#"ca_file = "/etc/selfheal/relay-ca.pem""#),
];

/// Upper bound of `journal_lines`. At about 100 bytes per journal line, it keeps the journal
/// part of an alert mail to roughly 1 MB.
const MAX_JOURNAL_LINES: i64 = 10_000;

impl Checker<'_> {
    pub(super) fn alerts(&mut self, field: &Field<'_>) -> AlertConfig {
        let mut alerts = AlertConfig {
            journal_lines: DEFAULT_JOURNAL_LINES,
            ..AlertConfig::default()
        };
        let mut retry_max_line = None;
        let Some(table) = self.table(field, "a table such as [alerts]") else {
            alerts.sendmail = default_sendmail();
            return alerts;
        };

        let mut from_present = false;
        let mut to_line = None;
        let mut sendmail_present = false;
        let mut relay_count = 0;
        let mut webhooks = Webhooks::default();
        for entry in self.fields(table, &field.path, field.line, &[ALERT_KEYS]) {
            match entry.name {
                "from" => {
                    from_present = true;
                    alerts.from = self.address(&entry);
                }
                "to" => {
                    to_line = Some(entry.line);
                    alerts.to = self.recipients(&entry);
                }
                "journal_lines" => {
                    if let Some(lines) = self.integer(&entry, 0..=MAX_JOURNAL_LINES) {
                        alerts.journal_lines = usize::try_from(lines).unwrap_or_default();
                    }
                }
                "sendmail" => {
                    sendmail_present = true;
                    alerts.sendmail = self.sendmail(&entry);
                }
                "relay" => {
                    let (relays, count) = self.relays(&entry);
                    alerts.relays = relays;
                    relay_count = count;
                }
                "group_window" => {
                    if let Some(window) = self.duration(&entry, true) {
                        if window > MAX_GROUP_WINDOW {
                            self.invalid(
                                &entry,
                                format!(
                                    "group_window {} would hold every alert back that long; \
                                     use at most {}",
                                    humantime::format_duration(window),
                                    humantime::format_duration(MAX_GROUP_WINDOW)
                                ),
                            );
                        } else {
                            alerts.group_window = window;
                        }
                    }
                }
                "max_per_hour" => {
                    if let Some(max) = self.count(&entry, 1..=MAX_MAILS_PER_HOUR) {
                        alerts.max_per_hour = max;
                    }
                }
                "reminders" => {
                    if let Some(reminders) = self.reminders(&entry) {
                        alerts.reminders = reminders;
                    }
                }
                "reminder_repeat" => match entry.node.value().and_then(Value::as_bool) {
                    Some(false) => alerts.reminder_repeat = None,
                    _ => {
                        if let Some(repeat) = self.at_least(&entry, MIN_REMINDER) {
                            alerts.reminder_repeat = Some(repeat);
                        }
                    }
                },
                "recovered" => {
                    if let Some(recovered) = self.boolean(&entry) {
                        alerts.recovered = recovered;
                    }
                }
                "retry_initial" => {
                    if let Some(initial) = self.at_least(&entry, MIN_RETRY) {
                        alerts.retry_initial = initial;
                    }
                }
                "retry_max" => {
                    retry_max_line = Some(entry.line);
                    if let Some(max) = self.at_least(&entry, MIN_RETRY) {
                        alerts.retry_max = max;
                    }
                }
                "expire_after" => {
                    if let Some(expiry) = self.duration(&entry, false) {
                        if expiry < MIN_EXPIRY {
                            self.invalid(
                                &entry,
                                format!(
                                    "expire_after {} leaves no time for retries; use at least {}",
                                    humantime::format_duration(expiry),
                                    humantime::format_duration(MIN_EXPIRY)
                                ),
                            );
                        } else {
                            alerts.expire_after = expiry;
                        }
                    }
                }
                "webhook" => webhooks = self.webhooks(&entry),
                _ => self.unknown_key(&entry, &[ALERT_KEYS]),
            }
        }
        if let Some(line) = retry_max_line {
            if alerts.retry_max > alerts.expire_after {
                self.warn(
                    line,
                    &join_key(&field.path, "retry_max"),
                    format!(
                        "retry_max {} is longer than expire_after {}, so an alert may expire \
                         before its next retry",
                        humantime::format_duration(alerts.retry_max),
                        humantime::format_duration(alerts.expire_after)
                    ),
                    example_of(ALERT_KEYS, "retry_max"),
                );
            }
            if alerts.retry_max < alerts.retry_initial {
                self.error(
                    line,
                    &join_key(&field.path, "retry_max"),
                    format!(
                        "retry_max {} is shorter than retry_initial {}; the wait between \
                         retries grows from retry_initial up to retry_max",
                        humantime::format_duration(alerts.retry_max),
                        humantime::format_duration(alerts.retry_initial)
                    ),
                    example_of(ALERT_KEYS, "retry_max"),
                );
            }
        }
        if !sendmail_present {
            alerts.sendmail = default_sendmail();
        }
        alerts.webhooks = std::mem::take(&mut webhooks.configs);

        let from_key = join_key(&field.path, "from");
        if !alerts.to.is_empty() && !from_present {
            self.error(
                field.line,
                &from_key,
                "missing sender address; `from` is required when `to` names recipients".to_string(),
                example_of(ALERT_KEYS, "from"),
            );
        }
        self.channel_warnings(field, &alerts, to_line, relay_count, &webhooks);
        alerts
    }

    /// Warns about channels that cannot deliver: recipients without a relay or sendmail,
    /// relays without a recipient, and fallback webhooks with no mail to fall back from.
    ///
    /// Webhooks alone are a valid set of channels, so these warnings only name what the admin
    /// loses: alert mail, or every alert when there is no webhook either.
    fn channel_warnings(
        &mut self,
        field: &Field<'_>,
        alerts: &AlertConfig,
        to_line: Option<usize>,
        relay_count: usize,
        webhooks: &Webhooks,
    ) {
        let (lost, only_webhooks) = if webhooks.count > 0 {
            ("alert mail", "; alerts go only to the webhooks")
        } else {
            ("alert", "")
        };
        let mail_deliverable =
            !alerts.to.is_empty() && (relay_count > 0 || alerts.sendmail.is_some());
        if let Some(line) = to_line {
            if !alerts.to.is_empty() && !mail_deliverable {
                self.warn(
                    line,
                    &join_key(&field.path, "to"),
                    format!(
                        "no {lost} can be delivered: there is no [[alerts.relay]] and no \
                         sendmail ({DEFAULT_SENDMAIL} is not installed or sendmail = false)\
                         {only_webhooks}"
                    ),
                    example_of(ALERT_KEYS, "relay"),
                );
            }
        }
        if alerts.to.is_empty() && relay_count > 0 {
            self.warn(
                field.line,
                &join_key(&field.path, "to"),
                format!(
                    "relays are configured but no recipient, so no {lost} is sent{only_webhooks}"
                ),
                example_of(ALERT_KEYS, "to"),
            );
        }
        if !mail_deliverable {
            for (key, line) in &webhooks.fallback_lines {
                self.warn(
                    *line,
                    key,
                    "fallback = true has no mail channel to back up (alert mail needs `to` and \
                     a relay or sendmail), so this webhook gets every alert; set \
                     fallback = false to say so"
                        .to_string(),
                    "fallback = false",
                );
            }
        }
    }

    /// Checks that `path` is a readable file with at least one PEM certificate.
    fn check_ca_file(&mut self, field: &Field<'_>, path: &std::path::Path) -> bool {
        match fs::read_to_string(path) {
            Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => true,
            Ok(_) => {
                self.invalid(
                    field,
                    format!(
                        "{} contains no PEM certificate; point ca_file at the CA certificate in \
                         PEM form (it starts with -----BEGIN CERTIFICATE-----)",
                        path.display()
                    ),
                );
                false
            }
            Err(error) => {
                self.invalid(
                    field,
                    format!(
                        "cannot read CA file {}: {error}; make it readable by the user selfheal \
                         runs as",
                        path.display()
                    ),
                );
                false
            }
        }
    }

    /// Reads a duration of at least `floor`.
    fn at_least(&mut self, field: &Field<'_>, floor: Duration) -> Option<Duration> {
        let duration = self.duration(field, false)?;
        if duration < floor {
            self.invalid(
                field,
                format!(
                    "{} is too short; use at least {}",
                    humantime::format_duration(duration),
                    humantime::format_duration(floor)
                ),
            );
            return None;
        }
        Some(duration)
    }

    /// Reads `reminders`: false, or an array of increasing durations.
    fn reminders(&mut self, field: &Field<'_>) -> Option<Vec<Duration>> {
        if field.node.value().and_then(Value::as_bool) == Some(false) {
            return Some(Vec::new());
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(
                field,
                "an array of durations such as [\"1h\", \"6h\"], or false",
            );
            return None;
        };
        let mut reminders: Vec<Duration> = Vec::new();
        for element in &elements {
            let reminder = self.at_least(element, MIN_REMINDER)?;
            if let Some(previous) = reminders.last() {
                if reminder <= *previous {
                    self.invalid(
                        element,
                        format!(
                            "reminder {} does not come after {}; each reminder is a time since \
                             the first alert, so list them in increasing order",
                            humantime::format_duration(reminder),
                            humantime::format_duration(*previous)
                        ),
                    );
                    return None;
                }
            }
            reminders.push(reminder);
        }
        Some(reminders)
    }

    fn recipients(&mut self, field: &Field<'_>) -> Vec<String> {
        if field.node.value().is_some_and(Value::is_str) {
            return self.address(field).into_iter().collect();
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "an array of addresses");
            return Vec::new();
        };
        elements
            .iter()
            .filter_map(|element| self.address(element))
            .collect()
    }

    fn sendmail(&mut self, field: &Field<'_>) -> Option<PathBuf> {
        match field.node.value().and_then(Value::as_bool) {
            Some(false) => return None,
            Some(true) => {
                self.invalid(
                    field,
                    "expected the path of the sendmail binary, or false to disable it, \
                     found true"
                        .to_string(),
                );
                return None;
            }
            None => {}
        }
        if !field.node.value().is_some_and(Value::is_str) {
            self.wrong_type(field, "a path or false");
            return None;
        }
        let path = self.absolute_path(field)?;
        match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() && metadata.permissions().mode() & 0o111 != 0 => {
                Some(path)
            }
            Ok(_) => {
                self.invalid(
                    field,
                    format!(
                        "{} is not an executable file; point sendmail at the binary or set \
                         sendmail = false",
                        path.display()
                    ),
                );
                None
            }
            Err(err) => {
                self.invalid(
                    field,
                    format!(
                        "sendmail binary {} not found: {err}; install it or set \
                         sendmail = false",
                        path.display()
                    ),
                );
                None
            }
        }
    }

    /// Reads `[[alerts.relay]]`; returns the valid relays and the number of relay tables.
    fn relays(&mut self, field: &Field<'_>) -> (Vec<RelayConfig>, usize) {
        if field.node.table().is_some() {
            self.invalid(
                field,
                "a relay is an entry of an array of tables; write the header with double \
                 brackets, [[alerts.relay]]"
                    .to_string(),
            );
            return (Vec::new(), 0);
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "an array of tables such as [[alerts.relay]]");
            return (Vec::new(), 0);
        };
        let relays = elements
            .iter()
            .filter_map(|element| self.relay(element))
            .collect();
        (relays, elements.len())
    }

    fn relay(&mut self, field: &Field<'_>) -> Option<RelayConfig> {
        let table = self.table(field, "a table such as [[alerts.relay]]")?;
        let mut host_present = false;
        let mut host = None;
        let mut port = None;
        let mut tls = None;
        let mut username_line = None;
        let mut username = None;
        let mut password_line = None;
        let mut password_file = None;
        let mut timeout = None;
        let mut ca_line = None;
        let mut ca_file = None;
        for entry in self.fields(table, &field.path, field.line, &[RELAY_KEYS]) {
            match entry.name {
                "host" => {
                    host_present = true;
                    host = self.relay_host(&entry);
                }
                "port" => {
                    port = self
                        .integer(&entry, 1..=65535)
                        .and_then(|port| u16::try_from(port).ok());
                }
                "tls" => tls = self.tls(&entry),
                "username" => {
                    username_line = Some(entry.line);
                    username = self.word(&entry).map(str::to_string);
                }
                "password_file" => {
                    password_line = Some(entry.line);
                    password_file = self.absolute_path(&entry);
                    if let Some(path) = &password_file {
                        self.check_secret_file(&entry, path, "password file");
                    }
                }
                "timeout" => timeout = self.duration(&entry, false),
                "ca_file" => {
                    ca_line = Some(entry.line);
                    ca_file = self
                        .absolute_path(&entry)
                        .filter(|path| self.check_ca_file(&entry, path));
                }
                _ => self.unknown_key(&entry, &[RELAY_KEYS]),
            }
        }

        if !host_present {
            self.error(
                field.line,
                &join_key(&field.path, "host"),
                "missing relay host; every [[alerts.relay]] needs one".to_string(),
                example_of(RELAY_KEYS, "host"),
            );
        }
        match (username_line, password_line) {
            (Some(line), None) => self.error(
                line,
                &join_key(&field.path, "username"),
                "`username` needs `password_file`, the file with the relay password".to_string(),
                example_of(RELAY_KEYS, "password_file"),
            ),
            (None, Some(line)) => self.error(
                line,
                &join_key(&field.path, "password_file"),
                "`password_file` needs `username`, the user to log in to the relay as".to_string(),
                example_of(RELAY_KEYS, "username"),
            ),
            _ => {}
        }
        let tls = tls.unwrap_or(TlsMode::Starttls);
        if let (TlsMode::None, Some(line)) = (tls, username_line) {
            self.warn(
                line,
                &join_key(&field.path, "tls"),
                "tls = \"none\" sends the relay password unencrypted".to_string(),
                example_of(RELAY_KEYS, "tls"),
            );
        }

        if let (TlsMode::None, Some(line)) = (tls, ca_line) {
            self.warn(
                line,
                &join_key(&field.path, "ca_file"),
                "ca_file has no effect with tls = \"none\", which never checks a certificate"
                    .to_string(),
                example_of(RELAY_KEYS, "tls"),
            );
        }

        let default_port = match tls {
            TlsMode::Tls => 465,
            TlsMode::Starttls => 587,
            TlsMode::None => 25,
        };
        Some(RelayConfig {
            host: host?,
            port: port.unwrap_or(default_port),
            tls,
            username,
            password_file,
            timeout: timeout.unwrap_or(DEFAULT_RELAY_TIMEOUT),
            ca_file,
        })
    }

    fn relay_host(&mut self, field: &Field<'_>) -> Option<String> {
        let host = self.word(field)?;
        if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
            self.invalid(
                field,
                format!("host \"{host}\" contains a port or brackets; set the port with `port`"),
            );
            return None;
        }
        Some(host.to_string())
    }

    /// Reads a mail address: one `@` with text on both sides, and no spaces or angle brackets.
    fn address(&mut self, field: &Field<'_>) -> Option<String> {
        let text = self.string(field)?;
        match check_address(text) {
            Ok(()) => Some(text.to_string()),
            Err(reason) => {
                self.invalid(field, format!("invalid address \"{text}\": {reason}"));
                None
            }
        }
    }

    fn tls(&mut self, field: &Field<'_>) -> Option<TlsMode> {
        match self.string(field)? {
            "tls" => Some(TlsMode::Tls),
            "starttls" => Some(TlsMode::Starttls),
            "none" => Some(TlsMode::None),
            other => {
                self.invalid(
                    field,
                    format!(
                        "invalid tls mode \"{other}\"; expected \"tls\" (port 465), \
                         \"starttls\" (port 587) or \"none\""
                    ),
                );
                None
            }
        }
    }
}

fn check_address(address: &str) -> Result<(), &'static str> {
    if address
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | ',' | ';'))
    {
        return Err("an address has no spaces, angle brackets, commas or semicolons");
    }
    match address.split_once('@') {
        None => Err("an address needs one @"),
        Some((_, domain)) if domain.contains('@') => Err("an address has exactly one @"),
        Some((local, domain)) if local.is_empty() || domain.is_empty() => {
            Err("an address needs text on both sides of the @")
        }
        Some(_) => Ok(()),
    }
}
