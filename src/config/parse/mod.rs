//! Config file parser and its top-level keys. It walks the `toml_edit` document key by key instead
//! of deserializing it, so one run reports every problem, each with the line of its key or value.

mod alerts;
mod checker;
mod dashboard;
mod probes;
mod services;
#[cfg(test)]
mod tests;
mod webhooks;

use std::path::{Path, PathBuf};

use toml_edit::{ImDocument, Table};

use crate::config::{ServiceConfig, SMTP_PORTS};

pub(super) use self::checker::closest_key;
use self::checker::{Checker, Keys};
use self::services::TIMING_KEYS;
use super::presets;
use super::{
    default_sendmail, AlertConfig, Config, ConfigErrors, DashboardConfig, Mode, Timing,
    DEFAULT_CONTROL_SOCKET, DEFAULT_INTERVAL, DEFAULT_JOURNAL_LINES, DEFAULT_STATE_DIR,
};

const TOP_KEYS: Keys = &[
    ("interval", r#"interval = "30s""#),
    ("mode", r#"mode = "heal""#),
    ("state_dir", r#"state_dir = "/var/lib/selfheal""#),
    (
        "control_socket",
        r#"control_socket = "/run/selfheal/control.sock""#,
    ),
    ("alerts", r#"[alerts]"#),
    ("dashboard", r#"[dashboard]"#),
    ("services", r#"[services.postfix]"#),
];

/// Parses and validates config text; see [`super::load`].
pub(super) fn parse(text: &str, file: &Path) -> Result<Config, ConfigErrors> {
    let mut checker = Checker::new(file, text);
    let document = match ImDocument::parse(text) {
        Ok(document) => document,
        Err(err) => return Err(ConfigErrors(vec![checker.syntax_error(&err)])),
    };

    let mut config = checker.config(document.as_table());
    checker.errors.sort_by_key(|error| error.line);
    checker.warnings.sort_by_key(|warning| warning.line);
    if !checker.errors.is_empty() {
        return Err(ConfigErrors(checker.errors));
    }
    config.warnings = checker.warnings;
    Ok(config)
}

impl Checker<'_> {
    fn config(&mut self, root: &Table) -> Config {
        let mut interval = None;
        let mut mode = None;
        let mut state_dir = None;
        let mut control_socket = None;
        let mut timing = Timing::NONE;
        let mut alerts_field = None;
        let mut dashboard = DashboardConfig::default();
        let mut services_field = None;

        for field in self.fields(root, "", 1, &[TOP_KEYS, TIMING_KEYS]) {
            match field.name {
                "interval" => interval = self.duration(&field, false),
                "mode" => mode = self.mode(&field),
                "state_dir" => state_dir = self.absolute_path(&field),
                "control_socket" => control_socket = self.socket_path(&field),
                "alerts" => alerts_field = Some(field),
                "dashboard" => dashboard = self.dashboard(&field),
                "services" => services_field = Some(field),
                name if presets::preset(name).is_some() => self.error(
                    field.key_line,
                    &field.path,
                    format!("unknown key `{name}`; a service goes under [services.{name}]"),
                    &format!("[services.{name}]"),
                ),
                _ => {
                    if !self.timing_key(&field, &mut timing) {
                        self.unknown_key(&field, &[TOP_KEYS, TIMING_KEYS]);
                    }
                }
            }
        }

        let mode = mode.unwrap_or(Mode::Heal);
        let alerts = match &alerts_field {
            Some(field) => self.alerts(field),
            None => AlertConfig {
                sendmail: default_sendmail(),
                journal_lines: DEFAULT_JOURNAL_LINES,
                ..AlertConfig::default()
            },
        };
        let (services, disabled) = match &services_field {
            Some(field) => self.services(field, mode, timing),
            None => (Vec::new(), Vec::new()),
        };
        if services.is_empty() {
            self.warn(
                0,
                "services",
                "no service is configured, so selfheal has nothing to watch".to_string(),
                "[services.postfix]",
            );
        }
        if let Some(field) = &alerts_field {
            if only_through_local_postfix(&alerts, &services) {
                self.warn(
                    field.line,
                    "alerts",
                    "every alert channel hands mail to this host's Postfix, so no alert can \
                     go out while Postfix is down; add a relay on another host or a webhook"
                        .to_string(),
                    r#"[[alerts.relay]] host = "smtp.example.net""#,
                );
            }
        }

        Config {
            path: Some(self.file.clone()),
            interval: interval.unwrap_or(DEFAULT_INTERVAL),
            mode,
            state_dir: state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            control_socket: control_socket.unwrap_or_else(|| PathBuf::from(DEFAULT_CONTROL_SOCKET)),
            dashboard,
            alerts,
            services,
            disabled,
            warnings: Vec::new(),
        }
    }
}

/// Returns whether alert mail can only leave through the watched Postfix: every relay is on this host
/// at a port Postfix serves, and there is no webhook.
fn only_through_local_postfix(alerts: &AlertConfig, services: &[ServiceConfig]) -> bool {
    let Some(postfix) = services
        .iter()
        .find(|service| service.preset.as_deref() == Some("postfix"))
    else {
        return false;
    };
    if alerts.to.is_empty() || !alerts.webhooks.is_empty() || !alerts.has_mail_channel() {
        return false;
    }
    let mut ports = SMTP_PORTS.to_vec();
    ports.extend(postfix.probe_ports());
    alerts
        .relays
        .iter()
        .all(|relay| relay.is_local() && ports.contains(&relay.port))
}
