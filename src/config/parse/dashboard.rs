//! The `[dashboard]` table and its `[[dashboard.token]]` entries.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::checker::{example_of, join_key, Checker, Field, Keys};
use crate::config::{ApiToken, DashboardConfig, MetricsAccess, Role};

const DASHBOARD_KEYS: Keys = &[
    ("enabled", "enabled = true"),
    ("listen", r#"listen = "127.0.0.1:8750""#),
    (
        "public_url",
        r#"public_url = "https://mail.example.org/selfheal/""#,
    ),
    (
        "admin_password_hash",
        r#"admin_password_hash = "$argon2id$v=19$m=19456,t=2,p=1$...""#,
    ),
    (
        "readonly_password_hash",
        r#"readonly_password_hash = "$argon2id$v=19$m=19456,t=2,p=1$...""#,
    ),
    ("token", "[[dashboard.token]]"),
    ("metrics", r#"metrics = "loopback""#),
    ("allow_plain_http", "allow_plain_http = false"),
    ("tls_cert", r#"tls_cert = "/etc/selfheal/dashboard.crt""#),
    ("tls_key", r#"tls_key = "/etc/selfheal/dashboard.key""#),
    (
        "trusted_proxies",
        r#"trusted_proxies = ["127.0.0.1", "::1"]"#,
    ),
    ("session_idle", r#"session_idle = "2h""#),
];

const TOKEN_KEYS: Keys = &[
    ("name", r#"name = "prometheus""#),
    ("sha256", r#"sha256 = "9f86d081884c7d65...""#),
    ("role", r#"role = "metrics""#),
];

/// Bounds of `session_idle`: shorter logs the admin out while reading, longer keeps a
/// forgotten browser logged in for days.
const SESSION_IDLE_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(7 * 86400));

impl Checker<'_> {
    pub(super) fn dashboard(&mut self, field: &Field<'_>) -> DashboardConfig {
        let mut dashboard = DashboardConfig::default();
        let Some(table) = self.table(field, "a table such as [dashboard]") else {
            return dashboard;
        };
        let mut listen_line = field.line;
        let mut tls_cert = None;
        let mut tls_key = None;
        // Whether each TLS key is present, readable or not: an unreadable file has its own error.
        let mut tls_keys = (false, false);
        let mut plain_line = None;
        for entry in self.fields(table, &field.path, field.line, &[DASHBOARD_KEYS]) {
            match entry.name {
                "enabled" => dashboard.enabled = self.boolean(&entry).unwrap_or(true),
                "listen" => {
                    listen_line = entry.line;
                    if let Some(listen) = self.listen_address(&entry) {
                        dashboard.listen = listen;
                    }
                }
                "public_url" => dashboard.public_url = self.public_url(&entry),
                "admin_password_hash" => dashboard.admin_password_hash = self.password_hash(&entry),
                "readonly_password_hash" => {
                    dashboard.readonly_password_hash = self.password_hash(&entry)
                }
                "token" => dashboard.tokens = self.tokens(&entry),
                "metrics" => {
                    if let Some(access) = self.metrics_access(&entry) {
                        dashboard.metrics = access;
                    }
                }
                "allow_plain_http" => {
                    plain_line = Some(entry.line);
                    dashboard.allow_plain_http = self.boolean(&entry).unwrap_or(false);
                }
                "tls_cert" => {
                    tls_keys.0 = true;
                    tls_cert = self.readable_file(&entry).map(|p| (p, entry.line));
                }
                "tls_key" => {
                    tls_keys.1 = true;
                    tls_key = self.readable_file(&entry).map(|p| (p, entry.line));
                }
                "trusted_proxies" => {
                    if let Some(proxies) = self.addresses(&entry) {
                        dashboard.trusted_proxies = proxies;
                    }
                }
                "session_idle" => {
                    if let Some(idle) = self.duration(&entry, false) {
                        let (low, high) = SESSION_IDLE_RANGE;
                        if idle < low || idle > high {
                            let written = entry
                                .node
                                .value()
                                .and_then(toml_edit::Value::as_str)
                                .unwrap_or_default();
                            self.invalid(
                                &entry,
                                format!("session_idle \"{written}\" is outside 1m to 7d"),
                            );
                        } else {
                            dashboard.session_idle = idle;
                        }
                    }
                }
                _ => self.unknown_key(&entry, &[DASHBOARD_KEYS]),
            }
        }
        match (tls_cert, tls_key) {
            (Some((cert, _)), Some((key, _))) => dashboard.tls = Some((cert, key)),
            (Some((_, line)), None) if !tls_keys.1 => self.error(
                line,
                &join_key(&field.path, "tls_cert"),
                "tls_cert is set without tls_key; HTTPS needs both the certificate and its \
                 private key"
                    .to_string(),
                example_of(DASHBOARD_KEYS, "tls_key"),
            ),
            (None, Some((_, line))) if !tls_keys.0 => self.error(
                line,
                &join_key(&field.path, "tls_key"),
                "tls_key is set without tls_cert; HTTPS needs both the certificate and its \
                 private key"
                    .to_string(),
                example_of(DASHBOARD_KEYS, "tls_cert"),
            ),
            _ => {}
        }
        if dashboard.enabled
            && !dashboard.listen.ip().is_loopback()
            && tls_keys != (true, true)
            && !dashboard.allow_plain_http
        {
            self.error(
                listen_line,
                &join_key(&field.path, "listen"),
                format!(
                    "the dashboard would listen on {} without TLS, so passwords and session \
                     cookies would cross the network in clear text; listen on 127.0.0.1 behind \
                     the web server's HTTPS reverse proxy (recommended), set tls_cert and \
                     tls_key, or set allow_plain_http = true if a trusted network carries it",
                    dashboard.listen
                ),
                example_of(DASHBOARD_KEYS, "listen"),
            );
        }
        if let Some(line) = plain_line.filter(|_| dashboard.allow_plain_http) {
            if !dashboard.listen.ip().is_loopback() && dashboard.tls.is_none() {
                self.warn(
                    line,
                    &join_key(&field.path, "allow_plain_http"),
                    format!(
                        "the dashboard serves plain HTTP on {}: anyone on the network path can \
                         read passwords and take over sessions",
                        dashboard.listen
                    ),
                    example_of(DASHBOARD_KEYS, "allow_plain_http"),
                );
            }
        }
        dashboard
    }

    /// Reads an absolute http or https URL without spaces, as alerts link to it.
    fn public_url(&mut self, field: &Field<'_>) -> Option<String> {
        let url = self.string(field)?;
        let has_scheme = url.starts_with("https://") || url.starts_with("http://");
        let host_present = url
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty() && !rest.starts_with('/'));
        if !has_scheme || !host_present || url.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            self.invalid(
                field,
                format!(
                    "public_url \"{url}\" is not an absolute http or https URL; write the \
                     address admins open, such as \"https://mail.example.org/selfheal/\""
                ),
            );
            return None;
        }
        Some(url.to_string())
    }

    fn listen_address(&mut self, field: &Field<'_>) -> Option<SocketAddr> {
        let text = self.string(field)?;
        match text.parse::<SocketAddr>() {
            Ok(address) => Some(address),
            Err(_) => {
                self.invalid(
                    field,
                    format!(
                        "listen \"{text}\" is not an IP address and port; write \
                         \"127.0.0.1:8750\", or \"[::1]:8750\" for IPv6"
                    ),
                );
                None
            }
        }
    }

    /// Reads an Argon2 hash in PHC form, as `selfheal passwd` prints it.
    fn password_hash(&mut self, field: &Field<'_>) -> Option<String> {
        let text = self.string(field)?;
        // A hash cut off after its salt still parses as PHC, but nothing matches it.
        let valid = argon2::PasswordHash::new(text).is_ok_and(|hash| {
            hash.algorithm.as_str().starts_with("argon2")
                && hash.salt.is_some()
                && hash.hash.is_some()
        });
        if !valid {
            // The value is a secret's hash: it is not repeated in the message.
            self.invalid(
                field,
                "is not a complete Argon2 hash; paste the whole line `selfheal passwd` prints, \
                 which starts with $argon2id$ and ends after the last $ with the hash itself"
                    .to_string(),
            );
            return None;
        }
        Some(text.to_string())
    }

    fn metrics_access(&mut self, field: &Field<'_>) -> Option<MetricsAccess> {
        match self.string(field)? {
            "loopback" => Some(MetricsAccess::Loopback),
            "token" => Some(MetricsAccess::Token),
            other => {
                self.invalid(
                    field,
                    format!(
                        "metrics \"{other}\" is not known; use \"loopback\" (local scrapers \
                         without a token, others with one) or \"token\" (a token always)"
                    ),
                );
                None
            }
        }
    }

    fn readable_file(&mut self, field: &Field<'_>) -> Option<std::path::PathBuf> {
        let path = self.absolute_path(field)?;
        if let Err(error) = std::fs::File::open(&path) {
            self.invalid(field, format!("cannot read {}: {error}", path.display()));
            return None;
        }
        Some(path)
    }

    fn addresses(&mut self, field: &Field<'_>) -> Option<Vec<IpAddr>> {
        let texts = self.string_list(field)?;
        let mut addresses = Vec::new();
        for text in texts {
            match text.parse::<IpAddr>() {
                Ok(address) => addresses.push(address),
                Err(_) => {
                    self.invalid(
                        field,
                        format!(
                            "\"{text}\" is not an IP address; list the addresses the reverse \
                             proxy connects from, such as [\"127.0.0.1\", \"::1\"]"
                        ),
                    );
                    return None;
                }
            }
        }
        Some(addresses)
    }

    fn tokens(&mut self, field: &Field<'_>) -> Vec<ApiToken> {
        if field.node.table().is_some() {
            self.invalid(
                field,
                "a token is an entry of an array of tables; write the header with double \
                 brackets, [[dashboard.token]]"
                    .to_string(),
            );
            return Vec::new();
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "an array of tables such as [[dashboard.token]]");
            return Vec::new();
        };
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut tokens = Vec::new();
        for element in &elements {
            if let Some(token) = self.token(element, &mut names) {
                tokens.push(token);
            }
        }
        tokens
    }

    fn token(&mut self, field: &Field<'_>, names: &mut HashMap<String, usize>) -> Option<ApiToken> {
        let table = self.table(field, "a table such as [[dashboard.token]]")?;
        let mut name = None;
        let mut sha256 = None;
        let mut role = None;
        let mut complete = true;
        for entry in self.fields(table, &field.path, field.line, &[TOKEN_KEYS]) {
            match entry.name {
                "name" => {
                    let Some(text) = self.word(&entry) else {
                        complete = false;
                        continue;
                    };
                    if let Some(first) = names.get(text) {
                        self.invalid(
                            &entry,
                            format!(
                                "token name \"{text}\" is already used on line {first}; give \
                                 each token its own name, as the audit log shows it"
                            ),
                        );
                        complete = false;
                    } else {
                        names.insert(text.to_string(), entry.line);
                        name = Some(text.to_string());
                    }
                }
                "sha256" => {
                    sha256 = self.sha256(&entry);
                    complete &= sha256.is_some();
                }
                "role" => {
                    role = self.role(&entry);
                    complete &= role.is_some();
                }
                _ => self.unknown_key(&entry, &[TOKEN_KEYS]),
            }
        }
        for (key, present) in [
            ("name", name.is_some()),
            ("sha256", sha256.is_some()),
            ("role", role.is_some()),
        ] {
            if !present && complete {
                self.error(
                    field.line,
                    &join_key(&field.path, key),
                    format!("a [[dashboard.token]] needs {key}"),
                    example_of(TOKEN_KEYS, key),
                );
            }
        }
        Some(ApiToken {
            name: name?,
            sha256: sha256?,
            role: role?,
        })
    }

    fn sha256(&mut self, field: &Field<'_>) -> Option<[u8; 32]> {
        let text = self.string(field)?;
        if text.starts_with(crate::config::TOKEN_PREFIX) {
            self.invalid(
                field,
                "is the token itself, which must stay with the client; write the sha256 line \
                 that `selfheal token` printed next to it"
                    .to_string(),
            );
            return None;
        }
        let digits = text.strip_prefix("sha256:").unwrap_or(text);
        let mut hash = [0u8; 32];
        let valid = digits.len() == 64
            && digits.is_ascii()
            && hash.iter_mut().enumerate().all(|(index, byte)| {
                u8::from_str_radix(&digits[index * 2..index * 2 + 2], 16)
                    .map(|value| *byte = value)
                    .is_ok()
            });
        if !valid {
            self.invalid(
                field,
                "is not a SHA-256 digest (64 hexadecimal digits); paste the sha256 line that \
                 `selfheal token` prints, never the token itself"
                    .to_string(),
            );
            return None;
        }
        Some(hash)
    }

    fn role(&mut self, field: &Field<'_>) -> Option<Role> {
        match self.string(field)? {
            "admin" => Some(Role::Admin),
            "read-only" => Some(Role::ReadOnly),
            "metrics" => Some(Role::Metrics),
            other => {
                self.invalid(
                    field,
                    format!(
                        "role \"{other}\" is not known; use \"admin\" (may restart and pause), \
                         \"read-only\" (sees everything) or \"metrics\" (reads /metrics only)"
                    ),
                );
                None
            }
        }
    }
}
