//! HTTP channels: selfheal's JSON document, ntfy, Slack-compatible incoming webhooks and Matrix.
//!
//! A webhook counts as delivered only when the endpoint replies with a 2xx status. Redirects
//! are not followed, because a POST that silently lands elsewhere is not a delivery. Errors are
//! one line that names the endpoint by host and port, never by its full URL or token.

use std::path::Path;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, LOCATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::Serialize;

use super::message::{one_line, truncate};
use crate::config::{WebhookConfig, WebhookKind};

mod request;

use request::build_request;

/// Content a webhook posts: the facts of the alert mail, in the forms chat services show.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookMessage {
    /// The alert mail's Message-ID. It stays the same on every retry, so a receiver can drop
    /// a duplicate.
    pub id: String,
    /// "problem", "reminder", "recovered", "suppressed" or "test".
    pub kind: String,
    pub host: String,
    /// The mail's subject.
    pub title: String,
    /// The mail's plain text body.
    pub text: String,
    /// The mail's HTML body.
    pub html: String,
    /// The services the alert is about.
    pub services: Vec<WebhookService>,
    /// Link to the dashboard, when its public URL is configured.
    pub dashboard_url: Option<String>,
    /// When the alert was created; the same on every retry.
    pub created: SystemTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebhookService {
    pub name: String,
    /// systemd unit; empty for a service managed by commands.
    pub unit: String,
    /// "restart failed", "crash loop", "cannot restart", "down", or "recovered".
    pub verdict: String,
    /// Short cause, such as "port 25 refused".
    pub reason: String,
    /// When the incident opened.
    pub started: SystemTime,
}

/// Maximum length in characters of the reply body quoted in a result or an error.
const MAX_EXCERPT_CHARS: usize = 200;

/// Bytes of the reply body read at most. The excerpt needs only its start, and a reply that
/// never ends must not fill memory.
const MAX_REPLY_BYTES: usize = 4096;

/// Extra time after `hook.timeout` before the outer bound ends an attempt. reqwest enforces
/// `hook.timeout` itself, so the outer bound only catches a step that reqwest does not time,
/// such as reading the token file.
const OUTER_TIMEOUT_MARGIN: Duration = Duration::from_secs(2);

/// Names the webhook as logs show it: `webhook NAME (KIND)`.
pub(super) fn channel_name(hook: &WebhookConfig) -> String {
    format!("webhook {} ({})", hook.name, hook.kind.as_str())
}

/// Posts `message` to `hook` and returns the reply's status line, such as `HTTP 200 OK`,
/// followed by up to 200 characters of the reply body on one line.
///
/// The token file is read on every call, so a changed token applies without a restart. The
/// call takes at most `hook.timeout`, connection included, plus 2 s of margin. A 3xx reply is
/// an error that names the `Location`, and so is any other status outside 2xx.
pub(super) async fn send(hook: &WebhookConfig, message: &WebhookMessage) -> Result<String, String> {
    let bound = hook.timeout + OUTER_TIMEOUT_MARGIN;
    match tokio::time::timeout(bound, attempt(hook, message)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(timed_out(hook)),
    }
}

async fn attempt(hook: &WebhookConfig, message: &WebhookMessage) -> Result<String, String> {
    let token = match &hook.token_file {
        Some(path) => Some(read_token(path).await?),
        None => None,
    };
    let request = build_request(hook, message, token.as_deref())?;
    // Building a client reads the system CA store from disk, so it runs off the async workers.
    let timeout = hook.timeout;
    let client = tokio::task::spawn_blocking(move || client(timeout))
        .await
        .map_err(|error| format!("building the HTTP client failed: {error}"))??;

    let response = client
        .request(request.method, request.url)
        .headers(request.headers)
        .body(request.body)
        .send()
        .await
        .map_err(|error| describe_error(hook, &error))?;

    let status = response.status();
    let location = header_text(response.headers(), LOCATION);
    let retry_after = header_text(response.headers(), RETRY_AFTER);
    let excerpt = read_excerpt(response).await;
    outcome(hook, status, &excerpt, location, retry_after)
}

/// Builds a client that follows no redirect and uses no proxy. Proxy variables such as
/// `HTTPS_PROXY` are ignored, so the daemon connects the same way as its SMTP relays do.
fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("selfheal/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|error| {
            format!(
                "building the HTTP client failed: {error}; check the system CA store in \
                 /etc/ssl/certs"
            )
        })
}

// ---- token ----

/// Reads the first line of the token file, without surrounding whitespace, as the token.
async fn read_token(path: &Path) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path).await.map_err(|error| {
        format!(
            "reading token file {} failed: {error}; create it with the token on its first \
             line, readable by selfheal",
            path.display()
        )
    })?;
    match text.lines().next().map(str::trim) {
        Some(token) if !token.is_empty() => Ok(token.to_string()),
        _ => Err(format!(
            "token file {} has an empty first line; write the token on it",
            path.display()
        )),
    }
}

// ---- reply and errors ----

/// Reads up to [`MAX_REPLY_BYTES`] of the reply body and returns it as one printable line of
/// at most [`MAX_EXCERPT_CHARS`] characters. A body that fails midway keeps what arrived,
/// because the status has already decided the outcome.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_REPLY_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    bytes.truncate(MAX_REPLY_BYTES);
    excerpt(&String::from_utf8_lossy(&bytes))
}

fn excerpt(text: &str) -> String {
    truncate(&one_line(text), MAX_EXCERPT_CHARS)
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    let value = headers.get(name)?;
    Some(excerpt(&String::from_utf8_lossy(value.as_bytes())))
}

/// Turns the reply's status into the result: the status line and body excerpt, and for a
/// failure a hint at the fix.
fn outcome(
    hook: &WebhookConfig,
    status: StatusCode,
    excerpt: &str,
    location: Option<String>,
    retry_after: Option<String>,
) -> Result<String, String> {
    let mut summary = format!("HTTP {}", status.as_u16());
    if let Some(reason) = status.canonical_reason() {
        summary.push(' ');
        summary.push_str(reason);
    }
    if !excerpt.is_empty() {
        summary.push_str(": ");
        summary.push_str(excerpt);
    }
    if status.is_success() {
        return Ok(summary);
    }

    let hint = match status.as_u16() {
        300..=399 => match location {
            Some(location) => format!(
                "redirect to {location} not followed; set url to the address that accepts \
                 the request"
            ),
            None => "redirect without a Location header not followed; check url".to_string(),
        },
        401 | 403 => match &hook.token_file {
            Some(path) => format!(
                "check the token in {}{}",
                path.display(),
                if hook.kind == WebhookKind::Matrix {
                    " and that its account has joined the room"
                } else {
                    ""
                }
            ),
            None => "the endpoint requires a token; set token_file".to_string(),
        },
        404 if hook.kind == WebhookKind::Matrix => {
            "check url (the homeserver's base URL) and room".to_string()
        }
        404 => "check url".to_string(),
        413 => "the message is too large for this endpoint; lower alerts.journal_lines".to_string(),
        // Retry-After is a number of seconds or an HTTP date (RFC 9110, section 10.2.3).
        429 => match retry_after {
            Some(seconds) if seconds.parse::<u64>().is_ok() => {
                format!("rate limited; the endpoint asks to retry after {seconds} s")
            }
            Some(date) => format!("rate limited; the endpoint asks to retry after {date}"),
            None => "rate limited; retry later".to_string(),
        },
        500..=599 => "the endpoint failed; check its logs, or retry later".to_string(),
        _ => format!(
            "the endpoint rejected the request; check that kind = \"{}\" matches the \
             service at url",
            hook.kind.as_str()
        ),
    };
    Err(format!("{summary}; {hint}"))
}

/// Names the endpoint as `host:port` for errors. The path stays out: an ntfy topic or a Slack
/// webhook path is as secret as a token.
fn endpoint(hook: &WebhookConfig) -> String {
    let Ok(url) = Url::parse(&hook.url) else {
        return "the configured URL".to_string();
    };
    let host = url.host_str().unwrap_or_default();
    match url.port_or_known_default() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

fn timed_out(hook: &WebhookConfig) -> String {
    format!(
        "timed out after {} waiting for {}; check that the endpoint responds, or raise this \
         webhook's timeout",
        humantime::format_duration(hook.timeout),
        endpoint(hook)
    )
}

/// Turns a reqwest error into one line that names the endpoint by host and port. reqwest's
/// own text contains the full URL, so only the causes below it are quoted.
fn describe_error(hook: &WebhookConfig, error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return timed_out(hook);
    }
    let cause = root_cause(error);
    let target = endpoint(hook);
    if error.is_connect() {
        let hint = if cause.contains("certificate") {
            "the endpoint's certificate is not trusted by the system CA store or does not \
             name this host"
        } else {
            "check url and that the endpoint is reachable from this host"
        };
        return format!("connecting to {target} failed: {cause}; {hint}");
    }
    format!("request to {target} failed: {cause}")
}

/// Returns the message of the innermost error below `error`, such as "Connection refused
/// (os error 111)". The layers above it only repeat which step failed.
fn root_cause(error: &reqwest::Error) -> String {
    let mut innermost: Option<&dyn std::error::Error> = None;
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        innermost = Some(cause);
        source = cause.source();
    }
    match innermost {
        Some(cause) => one_line(&cause.to_string()),
        None => "unknown error".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::request::*;
    use super::*;

    use std::path::PathBuf;
    use std::time::{Instant, UNIX_EPOCH};

    use reqwest::header::AUTHORIZATION;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;
    use tokio::task::JoinHandle;

    /// Bound on every test's network part, so that a hang fails the test.
    const TEST_BOUND: Duration = Duration::from_secs(10);

    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(TEST_BOUND, future).await.unwrap()
    }

    /// One request as the mock receiver read it.
    #[derive(Debug)]
    struct Received {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Received {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        }

        fn json(&self) -> serde_json::Value {
            serde_json::from_slice(&self.body).unwrap()
        }

        fn text(&self) -> String {
            String::from_utf8(self.body.clone()).unwrap()
        }
    }

    /// Behaviour of the mock receiver on one connection.
    enum Reply {
        /// Replies with this status, reason phrase, extra headers and body.
        Status(u16, &'static str, Vec<(&'static str, String)>, String),
        /// Reads the request and never replies, holding the connection open.
        Silent,
    }

    fn status(code: u16, reason: &'static str, body: &str) -> Reply {
        Reply::Status(code, reason, Vec::new(), body.to_string())
    }

    /// A minimal HTTP/1.1 receiver on 127.0.0.1 with an ephemeral port. It serves one
    /// connection per reply, in order, and sends each request it read to `requests`.
    struct Receiver {
        base: String,
        port: u16,
        requests: mpsc::UnboundedReceiver<Received>,
        task: JoinHandle<()>,
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Receiver {
        async fn start(replies: Vec<Reply>) -> Receiver {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let (sender, requests) = mpsc::unbounded_channel();
            let task = tokio::spawn(async move {
                // Silent connections stay here, open, until the test ends.
                let mut open_connections = Vec::new();
                for reply in replies {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    let request = read_request(&mut stream).await;
                    let _ = sender.send(request);
                    match reply {
                        Reply::Status(code, reason, headers, body) => {
                            let mut head = format!(
                                "HTTP/1.1 {code} {reason}\r\nContent-Length: {}\r\n\
                                 Connection: close\r\n",
                                body.len()
                            );
                            for (name, value) in headers {
                                head.push_str(&format!("{name}: {value}\r\n"));
                            }
                            head.push_str("\r\n");
                            stream.write_all(head.as_bytes()).await.unwrap();
                            stream.write_all(body.as_bytes()).await.unwrap();
                            stream.shutdown().await.unwrap();
                        }
                        Reply::Silent => open_connections.push(stream),
                    }
                }
                std::future::pending::<()>().await;
            });
            Receiver {
                base: format!("http://127.0.0.1:{port}"),
                port,
                requests,
                task,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        async fn next(&mut self) -> Received {
            within(self.requests.recv()).await.unwrap()
        }
    }

    /// Reads one request: the head up to the blank line, then Content-Length bytes of body.
    async fn read_request(stream: &mut TcpStream) -> Received {
        let mut data = Vec::new();
        let mut buffer = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = data.windows(4).position(|window| window == b"\r\n\r\n") {
                break at;
            }
            let count = stream.read(&mut buffer).await.unwrap();
            assert!(count > 0, "connection closed inside the request head");
            data.extend_from_slice(&buffer[..count]);
        };

        let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let mut request_line = lines.next().unwrap().split(' ');
        let method = request_line.next().unwrap().to_string();
        let path = request_line.next().unwrap().to_string();
        let headers: Vec<(String, String)> = lines
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap();
                (name.trim().to_string(), value.trim().to_string())
            })
            .collect();

        let length: usize = headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, value)| value.parse().unwrap());
        let mut body = data[head_end + 4..].to_vec();
        while body.len() < length {
            let count = stream.read(&mut buffer).await.unwrap();
            assert!(count > 0, "connection closed inside the request body");
            body.extend_from_slice(&buffer[..count]);
        }

        Received {
            method,
            path,
            headers,
            body,
        }
    }

    const STARTED_SECS: u64 = 1_714_557_600; // 2024-05-01T10:00:00Z

    fn message() -> WebhookMessage {
        WebhookMessage {
            id: "<selfheal.1a2b.3c@mail1.example.org>".into(),
            kind: "problem".into(),
            host: "mail1".into(),
            title: "[selfheal] mail1: postfix restart failed (port 25 refused)".into(),
            text: "Host: mail1\nService: postfix\nSeen: <script> & \"quoted\"\n".into(),
            html: "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n</head>\n\
                   <body style=\"font-family: sans-serif\">\n<p>postfix is down</p>\n\
                   </body>\n</html>\n"
                .into(),
            services: vec![WebhookService {
                name: "postfix".into(),
                unit: "postfix@-.service".into(),
                verdict: "restart failed".into(),
                reason: "port 25 refused".into(),
                started: UNIX_EPOCH + Duration::from_secs(STARTED_SECS),
            }],
            dashboard_url: Some("http://127.0.0.1:8080/incidents/7".into()),
            created: UNIX_EPOCH + Duration::from_secs(STARTED_SECS + 90),
        }
    }

    fn hook(kind: WebhookKind, url: String) -> WebhookConfig {
        WebhookConfig {
            name: "test".into(),
            kind,
            url,
            token_file: None,
            room: (kind == WebhookKind::Matrix).then(|| "!room:example.org".to_string()),
            fallback: false,
            timeout: Duration::from_secs(5),
        }
    }

    /// Writes a token file into `dir` and returns its path.
    fn token_file(dir: &tempfile::TempDir, content: &str) -> PathBuf {
        let path = dir.path().join("token");
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Sends `message` to a receiver that replies with `reply`, and returns the result with
    /// the request the receiver read.
    async fn exchange(
        kind: WebhookKind,
        path: &str,
        token: Option<PathBuf>,
        message: &WebhookMessage,
        reply: Reply,
    ) -> (Result<String, String>, Received) {
        let mut receiver = Receiver::start(vec![reply]).await;
        let mut hook = hook(kind, receiver.url(path));
        hook.token_file = token;
        let result = within(send(&hook, message)).await;
        (result, receiver.next().await)
    }

    fn user_agent() -> String {
        format!("selfheal/{}", env!("CARGO_PKG_VERSION"))
    }

    #[test]
    fn channel_names() {
        let hook = hook(WebhookKind::Ntfy, "http://127.0.0.1:1/alerts".into());
        assert_eq!(channel_name(&hook), "webhook test (ntfy)");
    }

    // ---- json ----

    #[tokio::test]
    async fn json_request_shape() {
        let dir = tempfile::tempdir().unwrap();
        let token = token_file(&dir, "s3cret-token\nsecond line\n");

        let (result, request) = exchange(
            WebhookKind::Json,
            "/hooks/selfheal",
            Some(token),
            &message(),
            status(200, "OK", "{\"ok\":true}"),
        )
        .await;

        assert_eq!(result, Ok("HTTP 200 OK: {\"ok\":true}".to_string()));
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hooks/selfheal");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(
            request.header("idempotency-key"),
            Some("<selfheal.1a2b.3c@mail1.example.org>")
        );
        assert_eq!(request.header("authorization"), Some("Bearer s3cret-token"));
        assert_eq!(request.header("user-agent"), Some(user_agent().as_str()));

        let expected = serde_json::json!({
            "version": 1,
            "id": "<selfheal.1a2b.3c@mail1.example.org>",
            "kind": "problem",
            "host": "mail1",
            "title": "[selfheal] mail1: postfix restart failed (port 25 refused)",
            "text": "Host: mail1\nService: postfix\nSeen: <script> & \"quoted\"\n",
            "services": [{
                "name": "postfix",
                "unit": "postfix@-.service",
                "verdict": "restart failed",
                "reason": "port 25 refused",
                "started": "2024-05-01T10:00:00Z",
            }],
            "dashboard_url": "http://127.0.0.1:8080/incidents/7",
            "created": "2024-05-01T10:01:30Z",
        });
        assert_eq!(request.json(), expected);
    }

    #[tokio::test]
    async fn json_without_token() {
        let mut message = message();
        message.dashboard_url = None;

        let (result, request) = exchange(
            WebhookKind::Json,
            "/",
            None,
            &message,
            status(204, "No Content", ""),
        )
        .await;

        assert_eq!(result, Ok("HTTP 204 No Content".to_string()));
        assert_eq!(request.header("authorization"), None);
        assert_eq!(request.json()["dashboard_url"], serde_json::Value::Null);
    }

    #[test]
    fn json_times_outside_range() {
        let mut message = message();
        message.created = UNIX_EPOCH - Duration::from_secs(1);
        message.services[0].started = UNIX_EPOCH + Duration::from_secs(300_000_000_000);

        let document = serde_json::to_value(json_document(&message)).unwrap();

        assert_eq!(document["created"], serde_json::Value::Null);
        assert_eq!(document["services"][0]["started"], serde_json::Value::Null);
        assert_eq!(rfc3339(UNIX_EPOCH).as_deref(), Some("1970-01-01T00:00:00Z"));
    }

    // ---- ntfy ----

    #[tokio::test]
    async fn ntfy_request_shape() {
        let dir = tempfile::tempdir().unwrap();
        let token = token_file(&dir, "tk_ntfy\n");

        let (result, request) = exchange(
            WebhookKind::Ntfy,
            "/mail1-alerts",
            Some(token),
            &message(),
            status(200, "OK", "{\"id\":\"abc\",\"event\":\"message\"}\n"),
        )
        .await;

        assert_eq!(
            result,
            Ok("HTTP 200 OK: {\"id\":\"abc\",\"event\":\"message\"}".to_string())
        );
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/mail1-alerts");
        assert_eq!(
            request.header("title"),
            Some("[selfheal] mail1: postfix restart failed (port 25 refused)")
        );
        assert_eq!(request.header("priority"), Some("urgent"));
        assert_eq!(request.header("tags"), Some("rotating_light"));
        assert_eq!(
            request.header("click"),
            Some("http://127.0.0.1:8080/incidents/7")
        );
        assert_eq!(request.header("authorization"), Some("Bearer tk_ntfy"));
        assert_eq!(
            request.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(request.text(), message().text);
    }

    #[test]
    fn ntfy_priority_by_kind() {
        for (kind, priority, tags) in [
            ("problem", "urgent", "rotating_light"),
            ("recovered", "default", "white_check_mark"),
            ("reminder", "high", "warning"),
            ("suppressed", "high", "no_bell"),
            ("test", "low", "test_tube"),
            ("something new", "default", "bell"),
        ] {
            assert_eq!(ntfy_priority_and_tags(kind), (priority, tags), "{kind}");
        }
    }

    #[test]
    fn ntfy_without_dashboard_or_title() {
        let mut message = message();
        message.dashboard_url = None;
        message.title = " \r\n".into();
        let hook = hook(WebhookKind::Ntfy, "http://127.0.0.1:1/alerts".into());

        let request = build_request(&hook, &message, None).unwrap();

        assert!(request.headers.get("click").is_none());
        assert!(request.headers.get("title").is_none());
        assert!(request.headers.get(AUTHORIZATION).is_none());
    }

    #[test]
    fn ntfy_invalid_dashboard_left_out() {
        let mut message = message();
        message.dashboard_url = Some("javascript:alert(1)".into());
        let hook = hook(WebhookKind::Ntfy, "http://127.0.0.1:1/alerts".into());

        let request = build_request(&hook, &message, None).unwrap();

        assert!(request.headers.get("click").is_none());
    }

    /// Decodes a header of RFC 2047 `B` encoded-words separated by spaces, as ntfy does.
    fn decode_encoded_words(header: &str) -> String {
        let mut bytes = Vec::new();
        for word in header.split(' ') {
            let payload = word
                .strip_prefix("=?UTF-8?B?")
                .and_then(|rest| rest.strip_suffix("?="))
                .unwrap();
            bytes.extend(decode_base64(payload));
        }
        String::from_utf8(bytes).unwrap()
    }

    fn decode_base64(text: &str) -> Vec<u8> {
        const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let values: Vec<u32> = text
            .trim_end_matches('=')
            .chars()
            .map(|c| u32::try_from(ALPHABET.find(c).unwrap()).unwrap())
            .collect();
        let mut bytes = Vec::new();
        for group in values.chunks(4) {
            let mut bits = 0u32;
            for (index, value) in group.iter().enumerate() {
                bits |= value << (18 - 6 * index);
            }
            let [_, b0, b1, b2] = bits.to_be_bytes();
            bytes.extend(&[b0, b1, b2][..group.len() - 1]);
        }
        bytes
    }

    #[tokio::test]
    async fn ntfy_non_ascii_title() {
        let mut message = message();
        message.title =
            "[selfheal] mäil1: pöstfix — Neustart fehlgeschlagen ✓ (Port 25 verweigert)\r\nX: y"
                .into();

        let (result, request) = exchange(
            WebhookKind::Ntfy,
            "/alerts",
            None,
            &message,
            status(200, "OK", ""),
        )
        .await;

        assert_eq!(result, Ok("HTTP 200 OK".to_string()));
        let title = request.header("title").unwrap();
        assert!(title.is_ascii(), "{title}");
        assert!(title.starts_with("=?UTF-8?B?"), "{title}");
        assert!(
            title.split(' ').all(|word| word.len() <= 75),
            "an encoded-word is longer than 75 characters: {title}"
        );
        assert_eq!(
            decode_encoded_words(title),
            "[selfheal] mäil1: pöstfix — Neustart fehlgeschlagen ✓ (Port 25 verweigert) X: y"
        );
        assert!(request.header("x").is_none());
    }

    #[test]
    fn base64_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected, "{input:?}");
        }
    }

    #[tokio::test]
    async fn ntfy_long_text_trimmed() {
        let mut message = message();
        message.text = "é".repeat(10_000);

        let (result, request) = exchange(
            WebhookKind::Ntfy,
            "/alerts",
            None,
            &message,
            status(200, "OK", ""),
        )
        .await;

        assert!(result.is_ok(), "{result:?}");
        assert!(
            request.body.len() <= NTFY_MAX_BODY_BYTES,
            "{}",
            request.body.len()
        );
        let text = request.text();
        assert!(text.starts_with("éé"), "{text}");
        assert!(
            text.ends_with("\n[cut to fit ntfy's 4096-byte message limit]"),
            "{text}"
        );
    }

    // ---- slack ----

    #[tokio::test]
    async fn slack_request_shape() {
        let (result, request) = exchange(
            WebhookKind::Slack,
            "/services/T0/B0/x",
            None,
            &message(),
            status(200, "OK", "ok"),
        )
        .await;

        assert_eq!(result, Ok("HTTP 200 OK: ok".to_string()));
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/services/T0/B0/x");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), None);
        assert_eq!(
            request.json(),
            serde_json::json!({
                "text": "*[selfheal] mail1: postfix restart failed (port 25 refused)*\n\
                         Host: mail1\nService: postfix\nSeen: &lt;script&gt; &amp; \"quoted\"\n"
            })
        );
    }

    #[test]
    fn slack_long_text_trimmed() {
        let mut message = message();
        message.text = "x".repeat(10_000);
        let hook = hook(WebhookKind::Slack, "http://127.0.0.1:1/x".into());

        let request = build_request(&hook, &message, None).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let text = body["text"].as_str().unwrap();

        let (title, rest) = text.split_once('\n').unwrap();
        assert!(title.starts_with('*'), "{title}");
        assert!(title.ends_with('*'), "{title}");
        assert!(rest.ends_with("…\n[cut to 3500 characters]"), "{rest}");
        assert_eq!(rest.matches('x').count(), SLACK_MAX_TEXT_CHARS - 1);
    }

    // ---- matrix ----

    #[tokio::test]
    async fn matrix_request_shape() {
        let dir = tempfile::tempdir().unwrap();
        let token = token_file(&dir, "syt_matrix_token\n");
        let expected_path = format!(
            "/_matrix/client/v3/rooms/%21room%3Aexample.org/send/m.room.message/{}",
            transaction_id(&message().id)
        );

        for base in ["", "/"] {
            let (result, request) = exchange(
                WebhookKind::Matrix,
                base,
                Some(token.clone()),
                &message(),
                status(200, "OK", "{\"event_id\":\"$abc\"}"),
            )
            .await;

            assert_eq!(
                result,
                Ok("HTTP 200 OK: {\"event_id\":\"$abc\"}".to_string()),
                "{base:?}"
            );
            assert_eq!(request.method, "PUT", "{base:?}");
            assert_eq!(request.path, expected_path, "{base:?}");
            assert_eq!(
                request.header("authorization"),
                Some("Bearer syt_matrix_token")
            );
            assert_eq!(request.header("content-type"), Some("application/json"));

            let body = request.json();
            assert_eq!(body["msgtype"], "m.text");
            assert_eq!(
                body["body"],
                "[selfheal] mail1: postfix restart failed (port 25 refused)\n\n\
                 Host: mail1\nService: postfix\nSeen: <script> & \"quoted\"\n"
            );
            assert_eq!(body["format"], "org.matrix.custom.html");
            assert_eq!(
                body["formatted_body"],
                "<p><strong>[selfheal] mail1: postfix restart failed (port 25 refused)\
                 </strong></p>\n<p>postfix is down</p>"
            );
        }
    }

    #[tokio::test]
    async fn matrix_base_url_with_path() {
        let dir = tempfile::tempdir().unwrap();
        let token = token_file(&dir, "syt_matrix_token\n");

        let (result, request) = exchange(
            WebhookKind::Matrix,
            "/matrix/",
            Some(token),
            &message(),
            status(200, "OK", ""),
        )
        .await;

        assert!(result.is_ok(), "{result:?}");
        assert!(
            request
                .path
                .starts_with("/matrix/_matrix/client/v3/rooms/%21room%3Aexample.org/send/"),
            "{}",
            request.path
        );
    }

    #[test]
    fn matrix_txn_id_stable() {
        let first = transaction_id("<selfheal.1@mail1>");

        assert_eq!(first, transaction_id("<selfheal.1@mail1>"));
        assert_ne!(first, transaction_id("<selfheal.2@mail1>"));
        assert!(first.starts_with("selfheal-"), "{first}");
        assert_eq!(first.len(), "selfheal-".len() + 32);
        assert!(first
            .trim_start_matches("selfheal-")
            .chars()
            .all(|c| c.is_ascii_hexdigit()));
    }

    #[tokio::test]
    async fn matrix_retry_same_path() {
        let dir = tempfile::tempdir().unwrap();
        let token = token_file(&dir, "syt_matrix_token\n");
        let mut receiver = Receiver::start(vec![
            status(502, "Bad Gateway", ""),
            status(200, "OK", ""),
            status(200, "OK", ""),
        ])
        .await;
        let mut hook = hook(WebhookKind::Matrix, receiver.url(""));
        hook.token_file = Some(token);
        let mut other = message();
        other.id = "<selfheal.other@mail1.example.org>".into();

        assert!(within(send(&hook, &message())).await.is_err());
        assert!(within(send(&hook, &message())).await.is_ok());
        assert!(within(send(&hook, &other)).await.is_ok());

        let first = receiver.next().await.path;
        let retry = receiver.next().await.path;
        let other_path = receiver.next().await.path;
        assert_eq!(first, retry);
        assert_ne!(first, other_path);
    }

    #[test]
    fn matrix_needs_token() {
        let hook = hook(WebhookKind::Matrix, "http://127.0.0.1:1".into());

        let error = build_request(&hook, &message(), None).unwrap_err();

        assert!(error.contains("needs token_file"), "{error}");
    }

    #[test]
    fn matrix_oversized_html_dropped() {
        let mut message = message();
        message.html = format!("<body>{}</body>", "<p>line</p>".repeat(10_000));

        let content = matrix_message(&message);

        assert_eq!(content.format, None);
        assert_eq!(content.formatted_body, None);
        assert!(content.body.ends_with(&message.text), "text was cut");
    }

    #[test]
    fn matrix_oversized_text_cut() {
        let mut message = message();
        message.text = "\"quoted\"\n".repeat(20_000);

        let content = matrix_message(&message);

        assert!(serialized_len(&content) <= MATRIX_MAX_CONTENT_BYTES);
        assert!(
            content
                .body
                .ends_with("\n[cut to fit Matrix's event size limit]"),
            "{}",
            &content.body[content.body.len() - 60..]
        );
    }

    #[test]
    fn html_fragment_forms() {
        assert_eq!(
            html_fragment("<html><BODY class=\"a\">\n<p>x</p>\n</BODY></html>"),
            "\n<p>x</p>\n"
        );
        assert_eq!(html_fragment("<p>no document</p>"), "<p>no document</p>");
        assert_eq!(html_fragment("<body><p>open"), "<p>open");
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("!abc:example.org"), "%21abc%3Aexample.org");
        assert_eq!(percent_encode("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(percent_encode("ä/?#"), "%C3%A4%2F%3F%23");
    }

    // ---- replies ----

    #[tokio::test]
    async fn http_errors_have_hints() {
        let dir = tempfile::tempdir().unwrap();
        let token = token_file(&dir, "s3cret-token\n");
        let token_shown = token.display().to_string();

        for (kind, reply, expected) in [
            (
                WebhookKind::Json,
                status(401, "Unauthorized", "{\"error\":\"bad token\"}"),
                vec![
                    "HTTP 401 Unauthorized: {\"error\":\"bad token\"}; check the token in ",
                    &token_shown,
                ],
            ),
            (
                WebhookKind::Matrix,
                status(403, "Forbidden", "{\"errcode\":\"M_FORBIDDEN\"}"),
                vec![
                    "HTTP 403 Forbidden: {\"errcode\":\"M_FORBIDDEN\"}; check the token in ",
                    "and that its account has joined the room",
                ],
            ),
            (
                WebhookKind::Ntfy,
                status(404, "Not Found", "page not found"),
                vec!["HTTP 404 Not Found: page not found; check url"],
            ),
            (
                WebhookKind::Matrix,
                status(404, "Not Found", "{\"errcode\":\"M_NOT_FOUND\"}"),
                vec!["; check url (the homeserver's base URL) and room"],
            ),
            (
                WebhookKind::Slack,
                status(413, "Payload Too Large", ""),
                vec!["HTTP 413 Payload Too Large; the message is too large"],
            ),
            (
                WebhookKind::Ntfy,
                Reply::Status(
                    429,
                    "Too Many Requests",
                    vec![("Retry-After", "30".to_string())],
                    "limit reached".to_string(),
                ),
                vec!["HTTP 429 Too Many Requests: limit reached; rate limited; the endpoint asks to retry after 30 s"],
            ),
            (
                WebhookKind::Json,
                status(500, "Internal Server Error", "boom"),
                vec!["HTTP 500 Internal Server Error: boom; the endpoint failed"],
            ),
            (
                WebhookKind::Slack,
                status(400, "Bad Request", "invalid_payload"),
                vec!["HTTP 400 Bad Request: invalid_payload; the endpoint rejected the request; check that kind = \"slack\""],
            ),
        ] {
            let (result, _) =
                exchange(kind, "/x", Some(token.clone()), &message(), reply).await;

            let error = result.unwrap_err();
            for part in expected {
                assert!(error.contains(part), "{kind:?}: missing {part:?} in {error}");
            }
            assert!(!error.contains("s3cret-token"), "{error}");
            assert!(!error.contains('\n'), "{error}");
        }
    }

    #[tokio::test]
    async fn unauthorized_without_token_file() {
        let (result, _) = exchange(
            WebhookKind::Json,
            "/x",
            None,
            &message(),
            status(401, "Unauthorized", ""),
        )
        .await;

        assert_eq!(
            result,
            Err("HTTP 401 Unauthorized; the endpoint requires a token; set token_file".into())
        );
    }

    #[tokio::test]
    async fn reply_excerpt_one_line() {
        let body = format!(
            "first line\r\n\tsecond\u{1b}[31m line\n{}",
            "y".repeat(5000)
        );

        let (result, _) = exchange(
            WebhookKind::Json,
            "/x",
            None,
            &message(),
            status(500, "Internal Server Error", &body),
        )
        .await;

        let error = result.unwrap_err();
        let (_, rest) = error.split_once(": ").unwrap();
        let (quoted, _) = rest.split_once("; ").unwrap();
        assert!(
            quoted.starts_with("first line second [31m line yyy"),
            "{quoted}"
        );
        assert!(quoted.ends_with('…'), "{quoted}");
        assert_eq!(quoted.chars().count(), MAX_EXCERPT_CHARS);
        assert!(!error.contains('\u{1b}'), "{error:?}");
    }

    #[tokio::test]
    async fn redirect_not_followed() {
        let mut receiver = Receiver::start(vec![Reply::Status(
            302,
            "Found",
            vec![("Location", "http://127.0.0.1:1/elsewhere".to_string())],
            String::new(),
        )])
        .await;
        let hook = hook(WebhookKind::Json, receiver.url("/x"));

        let error = within(send(&hook, &message())).await.unwrap_err();

        assert_eq!(
            error,
            "HTTP 302 Found; redirect to http://127.0.0.1:1/elsewhere not followed; set url \
             to the address that accepts the request"
        );
        assert_eq!(receiver.next().await.path, "/x");
        assert!(receiver.requests.try_recv().is_err());
    }

    #[tokio::test]
    async fn silent_receiver_times_out() {
        let mut receiver = Receiver::start(vec![Reply::Silent]).await;
        let mut hook = hook(WebhookKind::Json, receiver.url("/x"));
        hook.timeout = Duration::from_millis(500);
        let start = Instant::now();

        let error = within(send(&hook, &message())).await.unwrap_err();

        let elapsed = start.elapsed();
        assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
        assert!(
            elapsed < Duration::from_millis(500) + Duration::from_secs(2),
            "{elapsed:?}"
        );
        assert_eq!(
            error,
            format!(
                "timed out after 500ms waiting for 127.0.0.1:{}; check that the endpoint \
                 responds, or raise this webhook's timeout",
                receiver.port
            )
        );
        // The request arrived, but no reply was sent.
        assert_eq!(receiver.next().await.method, "POST");
    }

    #[tokio::test]
    async fn connection_refused() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let hook = hook(
            WebhookKind::Ntfy,
            format!("http://127.0.0.1:{port}/secret-topic"),
        );

        let error = within(send(&hook, &message())).await.unwrap_err();

        assert!(
            error.starts_with(&format!(
                "connecting to 127.0.0.1:{port} failed: Connection refused"
            )),
            "{error}"
        );
        assert!(error.contains("check url"), "{error}");
        assert!(!error.contains("secret-topic"), "{error}");
        assert!(!error.contains('\n'), "{error}");
    }

    #[tokio::test]
    async fn untrusted_certificate_rejected() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let private_key = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        );
        // The ring provider, as reqwest uses. rustls 0.23.48 deprecates it only for lacking
        // post-quantum key exchange, which this test does not need.
        #[allow(deprecated)]
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], private_key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            // The client rejects the certificate, so the handshake fails on this side too.
            let _ = acceptor.accept(socket).await;
        });
        let hook = hook(WebhookKind::Json, format!("https://127.0.0.1:{port}/x"));

        let error = within(send(&hook, &message())).await.unwrap_err();
        server.abort();

        assert!(
            error.starts_with(&format!(
                "connecting to 127.0.0.1:{port} failed: invalid peer certificate"
            )),
            "{error}"
        );
        assert!(
            error.ends_with("not trusted by the system CA store or does not name this host"),
            "{error}"
        );
    }

    // ---- token ----

    #[tokio::test]
    async fn token_file_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let mut hook = hook(WebhookKind::Json, "http://127.0.0.1:1/x".into());
        hook.token_file = Some(path.clone());

        let error = within(send(&hook, &message())).await.unwrap_err();

        assert!(
            error.starts_with(&format!("reading token file {} failed", path.display())),
            "{error}"
        );
        assert!(error.contains("No such file"), "{error}");
    }

    #[tokio::test]
    async fn token_file_empty_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(&dir, "  \nsecond-line-token\n");
        let mut hook = hook(WebhookKind::Json, "http://127.0.0.1:1/x".into());
        hook.token_file = Some(path.clone());

        let error = within(send(&hook, &message())).await.unwrap_err();

        assert_eq!(
            error,
            format!(
                "token file {} has an empty first line; write the token on it",
                path.display()
            )
        );
    }

    #[tokio::test]
    async fn token_first_line_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        for (content, expected) in [
            ("abc\n", "abc"),
            ("abc", "abc"),
            ("  abc \r\nnext\n", "abc"),
        ] {
            let path = token_file(&dir, content);
            assert_eq!(within(read_token(&path)).await.unwrap(), expected);
        }
    }

    #[test]
    fn token_invalid_for_header() {
        let hook = WebhookConfig {
            token_file: Some("/etc/selfheal/webhook-token".into()),
            ..hook(WebhookKind::Json, "http://127.0.0.1:1/x".into())
        };

        let error = build_request(&hook, &message(), Some("s3cret\u{7f}")).unwrap_err();

        assert!(error.contains("/etc/selfheal/webhook-token"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
    }

    #[test]
    fn authorization_is_sensitive() {
        let hook = hook(WebhookKind::Json, "http://127.0.0.1:1/x".into());

        let request = build_request(&hook, &message(), Some("s3cret")).unwrap();

        let value = request.headers.get(AUTHORIZATION).unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{request:?}").contains("s3cret"));
    }

    #[test]
    fn cut_keeps_char_boundary() {
        assert_eq!(cut_at_char("aé", 2), "a");
        assert_eq!(cut_at_char("aé", 3), "aé");
        assert_eq!(cut_with_notice("short", 10, "[cut]"), "short");
        assert_eq!(cut_with_notice("ééééé", 8, "[cut]"), "é[cut]");
    }
}
