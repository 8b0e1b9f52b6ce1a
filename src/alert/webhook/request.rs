//! The HTTP request of each webhook kind: method, URL, headers and body, with the text cut to
//! what the receiving service accepts.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Method, Url};
use serde::Serialize;

use super::super::message::{escape_html, one_line, truncate};
use super::{channel_name, WebhookMessage};
use crate::config::{WebhookConfig, WebhookKind};

/// Version of the JSON document posted by `kind = "json"`. It changes only when a field
/// changes meaning or goes away; new fields keep the version.
const JSON_VERSION: u32 = 1;

/// ntfy's default message size limit, 4096 bytes since ntfy 1.11. ntfy turns a longer body
/// into a file attachment, which phones show as a download instead of the text.
pub(super) const NTFY_MAX_BODY_BYTES: usize = 4096;

/// Maximum length in characters of the alert text in a Slack message. Slack recommends that
/// clients keep a message under 4000 characters, which leaves 500 for the title and the cut
/// notice.
pub(super) const SLACK_MAX_TEXT_CHARS: usize = 3500;

/// Maximum size in bytes of the serialized Matrix event content. The Matrix spec limits a
/// whole event to 65536 bytes, and the homeserver adds the sender, room, signatures and hashes
/// to the content.
pub(super) const MATRIX_MAX_CONTENT_BYTES: usize = 48_000;

/// Maximum length in characters of an RFC 2047 encoded-word's base64 part, so that the whole
/// word `=?UTF-8?B?...?=` stays within the 75 characters RFC 2047 allows.
const ENCODED_WORD_BASE64_CHARS: usize = 60;

/// One HTTP request, built before any I/O so that the tests can check its parts.
#[derive(Debug)]
pub(super) struct Request {
    pub(super) method: Method,
    pub(super) url: Url,
    pub(super) headers: HeaderMap,
    pub(super) body: Vec<u8>,
}

/// Builds the request of `hook.kind` for `message`, with `Authorization: Bearer TOKEN` when
/// a token is given.
pub(super) fn build_request(
    hook: &WebhookConfig,
    message: &WebhookMessage,
    token: Option<&str>,
) -> Result<Request, String> {
    let mut request = match hook.kind {
        WebhookKind::Json => json_request(hook, message)?,
        WebhookKind::Ntfy => ntfy_request(hook, message)?,
        WebhookKind::Slack => slack_request(hook, message)?,
        WebhookKind::Matrix => matrix_request(hook, message)?,
    };
    match token {
        Some(token) => {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                format!(
                    "the first line of token file {} contains characters that an HTTP header \
                     cannot carry; write only the token on it",
                    token_path(hook)
                )
            })?;
            value.set_sensitive(true);
            request.headers.insert(AUTHORIZATION, value);
        }
        None if hook.kind == WebhookKind::Matrix => {
            let message = "kind = \"matrix\" needs token_file, a file whose first line is \
                           the access token of the account that posts";
            return Err(message.to_string());
        }
        None => {}
    }
    Ok(request)
}

fn token_path(hook: &WebhookConfig) -> String {
    hook.token_file
        .as_deref()
        .map(|path| path.display().to_string())
        .unwrap_or_default()
}

fn parse_url(text: &str) -> Result<Url, String> {
    Url::parse(text).map_err(|error| {
        format!("invalid webhook URL: {error}; fix url in this [[alerts.webhook]]")
    })
}

fn json_body(value: &impl Serialize) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|error| format!("encoding the JSON body failed: {error}"))
}

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers
}

// ---- kind = "json" ----

/// selfheal's own JSON document, whose schema docs/config.md documents for receivers.
#[derive(Debug, Serialize)]
pub(super) struct JsonDocument<'a> {
    version: u32,
    id: &'a str,
    kind: &'a str,
    host: &'a str,
    title: &'a str,
    text: &'a str,
    services: Vec<JsonService<'a>>,
    dashboard_url: Option<&'a str>,
    /// RFC 3339 UTC time, or null when the clock is outside 1970..9999.
    created: Option<String>,
}

#[derive(Debug, Serialize)]
pub(super) struct JsonService<'a> {
    name: &'a str,
    unit: &'a str,
    verdict: &'a str,
    reason: &'a str,
    /// RFC 3339 UTC time, or null when the clock is outside 1970..9999.
    started: Option<String>,
}

pub(super) fn json_document(message: &WebhookMessage) -> JsonDocument<'_> {
    JsonDocument {
        version: JSON_VERSION,
        id: &message.id,
        kind: &message.kind,
        host: &message.host,
        title: &message.title,
        text: &message.text,
        services: message
            .services
            .iter()
            .map(|service| JsonService {
                name: &service.name,
                unit: &service.unit,
                verdict: &service.verdict,
                reason: &service.reason,
                started: rfc3339(service.started),
            })
            .collect(),
        dashboard_url: message.dashboard_url.as_deref(),
        created: rfc3339(message.created),
    }
}

fn json_request(hook: &WebhookConfig, message: &WebhookMessage) -> Result<Request, String> {
    let mut headers = json_headers();
    // The message ID stays the same on a retry, so a receiver that honours Idempotency-Key
    // drops the duplicate.
    let key = HeaderValue::from_str(&message.id).map_err(|_| {
        format!(
            "message id {:?} cannot be an HTTP header value; it must be printable ASCII",
            message.id
        )
    })?;
    headers.insert(HeaderName::from_static("idempotency-key"), key);
    Ok(Request {
        method: Method::POST,
        url: parse_url(&hook.url)?,
        headers,
        body: json_body(&json_document(message))?,
    })
}

/// Formats `time` as RFC 3339 in UTC with whole seconds, or `None` outside 1970..9999.
pub(super) fn rfc3339(time: SystemTime) -> Option<String> {
    // humantime 2 panics on times before 1970, and from year 10000 on its Display returns
    // fmt::Error, which makes to_string panic.
    const YEAR_10000: u64 = 253_402_300_800;
    match time.duration_since(UNIX_EPOCH) {
        Ok(since) if since.as_secs() < YEAR_10000 => {
            Some(humantime::format_rfc3339_seconds(time).to_string())
        }
        _ => None,
    }
}

// ---- kind = "ntfy" ----

fn ntfy_request(hook: &WebhookConfig, message: &WebhookMessage) -> Result<Request, String> {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    let title = header_safe(&message.title);
    if !title.is_empty() {
        // header_safe returns visible ASCII and spaces only, which HeaderValue accepts.
        if let Ok(value) = HeaderValue::from_str(&title) {
            headers.insert(HeaderName::from_static("title"), value);
        }
    }
    let (priority, tags) = ntfy_priority_and_tags(&message.kind);
    headers.insert(
        HeaderName::from_static("priority"),
        HeaderValue::from_static(priority),
    );
    headers.insert(
        HeaderName::from_static("tags"),
        HeaderValue::from_static(tags),
    );
    if let Some(click) = click_url(hook, message) {
        headers.insert(HeaderName::from_static("click"), click);
    }

    let notice = format!("\n[cut to fit ntfy's {NTFY_MAX_BODY_BYTES}-byte message limit]");
    let body = cut_with_notice(&message.text, NTFY_MAX_BODY_BYTES, &notice);
    Ok(Request {
        method: Method::POST,
        url: parse_url(&hook.url)?,
        headers,
        body: body.into_bytes(),
    })
}

/// Returns ntfy's priority name and the tags (shown as emoji) for an alert kind.
pub(super) fn ntfy_priority_and_tags(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "problem" => ("urgent", "rotating_light"),
        "recovered" => ("default", "white_check_mark"),
        "reminder" => ("high", "warning"),
        "suppressed" => ("high", "no_bell"),
        "test" => ("low", "test_tube"),
        _ => ("default", "bell"),
    }
}

/// Returns the dashboard link as a header value, or `None` when there is none. A link that is
/// not an http or https URL is left out with a warning, because the alert matters more.
fn click_url(hook: &WebhookConfig, message: &WebhookMessage) -> Option<HeaderValue> {
    let link = message.dashboard_url.as_deref()?;
    // Url serializes non-ASCII characters percent-encoded, so its text fits in a header.
    let parsed = Url::parse(link)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"));
    let value = parsed.and_then(|url| HeaderValue::from_str(url.as_str()).ok());
    if value.is_none() {
        tracing::warn!(
            channel = %channel_name(hook),
            "dashboard URL is not a valid http or https URL; ntfy's Click header left out"
        );
    }
    value
}

/// Makes `text` fit in an HTTP header value. Control characters become spaces. Text with
/// other non-ASCII characters becomes RFC 2047 encoded-words (`=?UTF-8?B?...?=`), which ntfy
/// decodes for its Title header (ntfy 2.4.0 and later).
fn header_safe(text: &str) -> String {
    let text = one_line(text);
    if text.is_ascii() {
        return text;
    }
    // Each word contains at most 45 bytes of UTF-8, which base64 turns into 60 characters, and
    // never splits a character.
    let max_bytes = ENCODED_WORD_BASE64_CHARS / 4 * 3;
    let mut words = Vec::new();
    let mut rest = text.as_str();
    while !rest.is_empty() {
        let chunk = cut_at_char(rest, max_bytes);
        words.push(format!("=?UTF-8?B?{}?=", base64(chunk.as_bytes())));
        rest = &rest[chunk.len()..];
    }
    // A decoder ignores the spaces between adjacent encoded-words (RFC 2047, section 6.2).
    words.join(" ")
}

/// Encodes `bytes` as standard base64 with padding (RFC 4648, section 4).
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b0 = group[0];
        let b1 = group.get(1).copied().unwrap_or(0);
        let b2 = group.get(2).copied().unwrap_or(0);
        let indices = [
            b0 >> 2,
            ((b0 & 0b11) << 4) | (b1 >> 4),
            ((b1 & 0b1111) << 2) | (b2 >> 6),
            b2 & 0b11_1111,
        ];
        // A group of n bytes gives n + 1 characters; `=` pads the rest of the four.
        for (position, index) in indices.iter().enumerate() {
            if position <= group.len() {
                out.push(char::from(ALPHABET[usize::from(*index)]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---- kind = "slack" ----

#[derive(Debug, Serialize)]
struct SlackMessage {
    text: String,
}

fn slack_request(hook: &WebhookConfig, message: &WebhookMessage) -> Result<Request, String> {
    let text = if message.text.chars().count() > SLACK_MAX_TEXT_CHARS {
        let mut cut = truncate(&message.text, SLACK_MAX_TEXT_CHARS);
        cut.push_str(&format!("\n[cut to {SLACK_MAX_TEXT_CHARS} characters]"));
        cut
    } else {
        message.text.clone()
    };
    let body = SlackMessage {
        text: format!(
            "*{}*\n{}",
            escape_slack(&one_line(&message.title)),
            escape_slack(&text)
        ),
    };
    Ok(Request {
        method: Method::POST,
        url: parse_url(&hook.url)?,
        headers: json_headers(),
        body: json_body(&body)?,
    })
}

/// Escapes the three characters that Slack's mrkdwn reads as markup: `&`, `<` and `>`.
fn escape_slack(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            _ => escaped.push(c),
        }
    }
    escaped
}

// ---- kind = "matrix" ----

/// Content of an `m.room.message` event of type `m.text`.
#[derive(Debug, Serialize)]
pub(super) struct MatrixMessage {
    pub(super) msgtype: &'static str,
    pub(super) body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) format: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) formatted_body: Option<String>,
}

fn matrix_request(hook: &WebhookConfig, message: &WebhookMessage) -> Result<Request, String> {
    let Some(room) = hook.room.as_deref() else {
        return Err("kind = \"matrix\" needs room, the ID of the room to post in".to_string());
    };
    let base = hook.url.trim_end_matches('/');
    let url = parse_url(&format!(
        "{base}/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        percent_encode(room),
        transaction_id(&message.id)
    ))?;
    Ok(Request {
        method: Method::PUT,
        url,
        headers: json_headers(),
        body: json_body(&matrix_message(message))?,
    })
}

/// Builds the event content: the title and text as `body`, and the title and the mail's HTML
/// as `formatted_body`. Content over [`MATRIX_MAX_CONTENT_BYTES`] loses the HTML first, then
/// the end of the text.
pub(super) fn matrix_message(message: &WebhookMessage) -> MatrixMessage {
    let title = one_line(&message.title);
    let body = format!("{title}\n\n{}", message.text);
    let fragment = html_fragment(&message.html).trim();
    let formatted_body = (!fragment.is_empty()).then(|| {
        format!(
            "<p><strong>{}</strong></p>\n{fragment}",
            escape_html(&title)
        )
    });
    let mut content = MatrixMessage {
        msgtype: "m.text",
        body,
        format: formatted_body.is_some().then_some("org.matrix.custom.html"),
        formatted_body,
    };
    if serialized_len(&content) <= MATRIX_MAX_CONTENT_BYTES {
        return content;
    }

    content.format = None;
    content.formatted_body = None;
    // JSON escaping can make the text longer than its UTF-8, so the cut is checked and
    // halved until the content fits.
    let notice = "\n[cut to fit Matrix's event size limit]";
    let mut max_bytes = MATRIX_MAX_CONTENT_BYTES;
    let full = std::mem::take(&mut content.body);
    loop {
        content.body = cut_with_notice(&full, max_bytes, notice);
        if serialized_len(&content) <= MATRIX_MAX_CONTENT_BYTES || max_bytes <= notice.len() {
            return content;
        }
        max_bytes /= 2;
    }
}

/// Returns the length in bytes of `value` as JSON.
pub(super) fn serialized_len(value: &impl Serialize) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// Returns what lies between `<body ...>` and `</body>` of an HTML document, or all of `html`
/// when it has no body element. Matrix's `formatted_body` is a fragment, not a document.
pub(super) fn html_fragment(html: &str) -> &str {
    let lower = html.to_ascii_lowercase();
    let Some(open) = lower.find("<body") else {
        return html;
    };
    let Some(start) = lower[open..].find('>').map(|end| open + end + 1) else {
        return html;
    };
    let end = lower[start..]
        .find("</body>")
        .map_or(html.len(), |end| start + end);
    &html[start..end]
}

/// Derives the Matrix transaction ID from the message ID, so a retry of the same alert reuses
/// it and the homeserver drops the duplicate. The hash is 128-bit FNV-1a, whose constants are
/// fixed by its definition, so the ID stays the same across restarts and selfheal versions.
pub(super) fn transaction_id(message_id: &str) -> String {
    const OFFSET_BASIS: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET_BASIS;
    for byte in message_id.bytes() {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(PRIME);
    }
    format!("selfheal-{hash:032x}")
}

/// Percent-encodes every byte except the unreserved characters of RFC 3986, so that a room ID
/// such as `!abc:example.org` is one path segment.
pub(super) fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

// ---- text limits ----

/// Returns the longest start of `text` of at most `max_bytes` bytes that ends on a character
/// boundary.
pub(super) fn cut_at_char(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Returns `text` unchanged when it fits in `max_bytes`, or else its start and `notice`,
/// together at most `max_bytes` bytes.
pub(super) fn cut_with_notice(text: &str, max_bytes: usize, notice: &str) -> String {
    if text.len() <= max_bytes {
        return text.to_string();
    }
    let mut cut = cut_at_char(text, max_bytes.saturating_sub(notice.len())).to_string();
    cut.push_str(notice);
    cut
}
