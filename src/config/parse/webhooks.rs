//! The `[[alerts.webhook]]` entries: HTTP alert channels that post to selfheal's JSON receiver,
//! an ntfy topic, a Slack-compatible incoming webhook or a Matrix room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use reqwest::Url;

use super::checker::{example_of, join_key, Checker, Field, Keys};
use crate::config::{WebhookConfig, WebhookKind, DEFAULT_WEBHOOK_TIMEOUT};

const WEBHOOK_KEYS: Keys = &[
    ("name", r#"name = "ops-phone""#),
    ("kind", r#"kind = "ntfy""#),
    ("url", r#"url = "https://ntfy.example.org/mail1-alerts""#),
    (
        "token_file",
        r#"token_file = "/etc/selfheal/webhook-token""#,
    ),
    ("room", r#"room = "!AbCdEfGhIjKlMnOp:example.org""#),
    ("fallback", "fallback = false"),
    ("timeout", r#"timeout = "30s""#),
];

/// Length of the part after `!` in a room ID of room version 12 and later: the unpadded
/// URL-safe base64 of a SHA-256 hash (Matrix spec v1.16, room version 12).
const HASH_ROOM_ID_CHARS: usize = 43;

/// Contents of `[[alerts.webhook]]`, with the facts that the `[alerts]` checks need.
#[derive(Default)]
pub(super) struct Webhooks {
    /// The valid webhooks, in file order.
    pub(super) configs: Vec<WebhookConfig>,
    /// Number of webhook tables, valid or not.
    pub(super) count: usize,
    /// Key and line of each `fallback = true`.
    pub(super) fallback_lines: Vec<(String, usize)>,
}

impl Checker<'_> {
    /// Reads `[[alerts.webhook]]`.
    pub(super) fn webhooks(&mut self, field: &Field<'_>) -> Webhooks {
        let mut webhooks = Webhooks::default();
        if field.node.table().is_some() {
            self.invalid(
                field,
                "a webhook is an entry of an array of tables; write the header with double \
                 brackets, [[alerts.webhook]]"
                    .to_string(),
            );
            return webhooks;
        }
        let Some(elements) = self.elements(field) else {
            self.wrong_type(field, "an array of tables such as [[alerts.webhook]]");
            return webhooks;
        };
        webhooks.count = elements.len();
        // Line of each name already taken, for the message about a duplicate.
        let mut names = HashMap::new();
        for element in &elements {
            if let Some(webhook) = self.webhook(element, &mut names, &mut webhooks.fallback_lines) {
                webhooks.configs.push(webhook);
            }
        }
        webhooks
    }

    fn webhook(
        &mut self,
        field: &Field<'_>,
        names: &mut HashMap<String, usize>,
        fallback_lines: &mut Vec<(String, usize)>,
    ) -> Option<WebhookConfig> {
        let table = self.table(field, "a table such as [[alerts.webhook]]")?;
        let mut name_present = false;
        let mut name = None;
        let mut kind_present = false;
        let mut kind = None;
        let mut url_present = false;
        let mut url = None;
        let mut token_line = None;
        let mut token_file = None;
        let mut room_line = None;
        let mut room = None;
        let mut fallback = None;
        let mut timeout = None;
        for entry in self.fields(table, &field.path, field.line, &[WEBHOOK_KEYS]) {
            match entry.name {
                "name" => {
                    name_present = true;
                    name = self.webhook_name(&entry, names);
                }
                "kind" => {
                    kind_present = true;
                    kind = self.webhook_kind(&entry);
                }
                "url" => {
                    url_present = true;
                    url = self.webhook_url(&entry).map(|parsed| (parsed, entry.line));
                }
                "token_file" => {
                    token_line = Some(entry.line);
                    token_file = self.token_file(&entry);
                }
                "room" => {
                    room_line = Some(entry.line);
                    room = self.matrix_room(&entry);
                }
                "fallback" => {
                    fallback = self.boolean(&entry);
                    if fallback == Some(true) {
                        fallback_lines.push((entry.path.clone(), entry.line));
                    }
                }
                "timeout" => timeout = self.duration(&entry, false),
                _ => self.unknown_key(&entry, &[WEBHOOK_KEYS]),
            }
        }

        let key = |name: &str| join_key(&field.path, name);
        if !name_present {
            self.error(
                field.line,
                &key("name"),
                "missing webhook name; every [[alerts.webhook]] needs one, and logs use it"
                    .to_string(),
                example_of(WEBHOOK_KEYS, "name"),
            );
        }
        if !kind_present {
            self.error(
                field.line,
                &key("kind"),
                "missing webhook kind; expected \"json\", \"ntfy\", \"slack\" or \"matrix\""
                    .to_string(),
                example_of(WEBHOOK_KEYS, "kind"),
            );
        }
        if !url_present {
            self.error(
                field.line,
                &key("url"),
                "missing webhook URL; every [[alerts.webhook]] needs one".to_string(),
                example_of(WEBHOOK_KEYS, "url"),
            );
        }

        match kind {
            Some(WebhookKind::Matrix) => {
                if room_line.is_none() {
                    self.error(
                        field.line,
                        &key("room"),
                        "kind = \"matrix\" needs `room`, the ID of the room to post in".to_string(),
                        example_of(WEBHOOK_KEYS, "room"),
                    );
                }
                if token_line.is_none() {
                    self.error(
                        field.line,
                        &key("token_file"),
                        "kind = \"matrix\" needs `token_file`, a file whose first line is the \
                         access token of the account that posts"
                            .to_string(),
                        example_of(WEBHOOK_KEYS, "token_file"),
                    );
                }
                if let Some((parsed, line)) = &url {
                    if parsed.query().is_some() || parsed.fragment().is_some() {
                        self.error(
                            *line,
                            &key("url"),
                            "a Matrix url is the homeserver's base URL, without ? or #".to_string(),
                            r#"url = "https://matrix.example.org""#,
                        );
                    }
                }
            }
            Some(other) => {
                if let (WebhookKind::Ntfy, Some((parsed, line))) = (other, &url) {
                    if parsed.path() == "/" {
                        self.error(
                            *line,
                            &key("url"),
                            "an ntfy url is the topic's URL, with the topic as its path"
                                .to_string(),
                            example_of(WEBHOOK_KEYS, "url"),
                        );
                    }
                }
                if let Some(line) = room_line {
                    self.error(
                        line,
                        &key("room"),
                        format!(
                            "`room` is only used by kind = \"matrix\", but this webhook has \
                             kind = \"{}\"; remove it",
                            other.as_str()
                        ),
                        "",
                    );
                }
            }
            None => {}
        }

        if let Some((parsed, line)) = &url {
            if parsed.scheme() == "http" && !is_loopback(parsed) {
                let host = parsed.host_str().unwrap_or_default();
                let exposed = if token_line.is_some() {
                    "alerts and the token"
                } else {
                    "alerts"
                };
                self.warn(
                    *line,
                    &key("url"),
                    format!(
                        "plain http:// to {host}: {exposed} would cross the network \
                         unencrypted; use https://"
                    ),
                    example_of(WEBHOOK_KEYS, "url"),
                );
            }
        }

        Some(WebhookConfig {
            name: name?,
            kind: kind?,
            url: url?.0.as_str().to_string(),
            token_file,
            room,
            fallback: fallback.unwrap_or(false),
            timeout: timeout.unwrap_or(DEFAULT_WEBHOOK_TIMEOUT),
        })
    }

    /// Reads a webhook name: a word not used by an earlier webhook.
    fn webhook_name(
        &mut self,
        field: &Field<'_>,
        names: &mut HashMap<String, usize>,
    ) -> Option<String> {
        let name = self.word(field)?;
        if let Some(first) = names.get(name) {
            self.invalid(
                field,
                format!(
                    "webhook name \"{name}\" is already used on line {first}; give each \
                     webhook its own name"
                ),
            );
            return None;
        }
        names.insert(name.to_string(), field.line);
        Some(name.to_string())
    }

    fn webhook_kind(&mut self, field: &Field<'_>) -> Option<WebhookKind> {
        match self.string(field)? {
            "json" => Some(WebhookKind::Json),
            "ntfy" => Some(WebhookKind::Ntfy),
            "slack" => Some(WebhookKind::Slack),
            "matrix" => Some(WebhookKind::Matrix),
            other => {
                self.invalid(
                    field,
                    format!(
                        "invalid webhook kind \"{other}\"; expected \"json\", \"ntfy\", \
                         \"slack\" (also Mattermost and Rocket.Chat) or \"matrix\""
                    ),
                );
                None
            }
        }
    }

    /// Reads an http or https URL without a user name or password. Messages show the URL with
    /// any user name and password replaced by `***`.
    fn webhook_url(&mut self, field: &Field<'_>) -> Option<Url> {
        let text = self.string(field)?;
        let redacted = redact_userinfo(text);
        if text.is_empty() {
            self.invalid(field, "must not be empty".to_string());
            return None;
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            self.invalid(
                field,
                format!(
                    "URL \"{redacted}\" contains spaces or control characters; percent-encode \
                     a space as %20"
                ),
            );
            return None;
        }
        let url = match Url::parse(text) {
            Ok(url) => url,
            Err(err) => {
                self.invalid(
                    field,
                    format!(
                        "invalid URL \"{redacted}\": {err}; a webhook URL starts with https:// \
                         or http:// and names a host"
                    ),
                );
                return None;
            }
        };
        if !matches!(url.scheme(), "http" | "https") {
            self.invalid(
                field,
                format!(
                    "URL scheme \"{}\" is not supported; use https://, or http:// for a \
                     receiver on this host",
                    url.scheme()
                ),
            );
            return None;
        }
        if !url.username().is_empty() || url.password().is_some() {
            self.invalid(
                field,
                format!(
                    "URL \"{redacted}\" contains a user name or password, which would show up \
                     wherever the URL is printed; remove it and put the token in token_file, \
                     which is sent as Authorization: Bearer"
                ),
            );
            return None;
        }
        Some(url)
    }

    fn token_file(&mut self, field: &Field<'_>) -> Option<PathBuf> {
        let path = self.absolute_path(field)?;
        self.check_secret_file(field, &path, "token file");
        Some(path)
    }

    /// Reads a Matrix room ID: `!opaque:server` up to room version 11, or `!` and a 43-character
    /// hash from room version 12 on.
    fn matrix_room(&mut self, field: &Field<'_>) -> Option<String> {
        let room = self.word(field)?;
        if room.starts_with('#') {
            self.invalid(
                field,
                format!(
                    "\"{room}\" is a room alias, not a room ID; use the ID that starts with !, \
                     which Element shows under the room's Settings, Advanced"
                ),
            );
            return None;
        }
        if !is_room_id(room) {
            self.invalid(
                field,
                format!(
                    "invalid room ID \"{room}\"; a Matrix room ID starts with ! and contains \
                     :, such as \"!AbCdEfGhIjKlMnOp:example.org\" (rooms of version 12 and \
                     later have ! and 43 letters, digits, - or _ instead)"
                ),
            );
            return None;
        }
        Some(room.to_string())
    }
}

/// Returns whether `room` has the form of a Matrix room ID. Room versions 1 to 11 use
/// `!opaque:server`. Room version 12 (Matrix spec v1.16) drops the server and uses `!` with the
/// unpadded URL-safe base64 of the create event's hash.
fn is_room_id(room: &str) -> bool {
    let Some(rest) = room.strip_prefix('!') else {
        return false;
    };
    if let Some((opaque, server)) = rest.split_once(':') {
        return !opaque.is_empty() && !server.is_empty();
    }
    rest.len() == HASH_ROOM_ID_CHARS
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Returns whether the URL's host is this machine: `localhost`, a name under `.localhost` (RFC 6761
/// reserves both for loopback), 127.0.0.0/8 or ::1.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let address = host.trim_start_matches('[').trim_end_matches(']');
    address
        .parse::<IpAddr>()
        .is_ok_and(|address| address.is_loopback())
}

/// Replaces the user name and password of a URL written as `scheme://user:password@host/...`
/// with `***`, so that a message about the URL does not print the secret.
fn redact_userinfo(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rfind('@') {
        Some(at) => format!("{scheme}://***{}{path}", &authority[at..]),
        None => text.to_string(),
    }
}
