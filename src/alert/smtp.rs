//! SMTP relay channel, built on lettre's `AsyncSmtpTransport`.

use std::path::Path;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{RelayConfig, TlsMode};

/// Names the relay as logs and [`super::Delivery`] show it: `relay HOST:PORT (TLS MODE)`.
pub(super) fn channel_name(relay: &RelayConfig) -> String {
    let host = if relay.host.contains(':') {
        format!("[{}]", relay.host)
    } else {
        relay.host.clone()
    };
    format!("relay {host}:{} ({})", relay.port, tls_name(relay.tls))
}

fn tls_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Tls => "tls",
        TlsMode::Starttls => "starttls",
        TlsMode::None => "none",
    }
}

/// Sends `message` through one relay and returns the relay's reply to the end of DATA.
///
/// `relay.timeout` bounds each step that lettre times (the TCP connect) and also the whole
/// attempt, because lettre 0.11 puts no timeout on reading the relay's replies. Without that
/// outer bound, a relay that stops responding would block the caller forever.
///
/// NOTE: lettre's transport sends QUIT after the final 2xx reply and waits for the reply
/// inside this bound. A relay that accepts the message and then stalls on QUIT counts as
/// failed, so the next channel sends the alert a second time, with the same Message-ID.
pub(super) async fn send(relay: &RelayConfig, message: &Message) -> Result<String, String> {
    match tokio::time::timeout(relay.timeout, attempt(relay, message)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(format!(
            "timed out after {} before the SMTP exchange finished; check that an SMTP \
             server responds on port {} or raise this relay's timeout",
            humantime::format_duration(relay.timeout),
            relay.port,
        )),
    }
}

async fn attempt(relay: &RelayConfig, message: &Message) -> Result<String, String> {
    let transport = transport(relay).await?;
    let response = transport
        .send_raw(message.envelope(), &message.formatted())
        .await
        .map_err(|error| describe_error(relay, &error))?;
    Ok(reply_text(&response))
}

async fn transport(relay: &RelayConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let tls_setup_failed = |error: lettre::transport::smtp::Error| {
        format!(
            "TLS setup for {:?} failed: {error}; check the host name and the system CA store",
            relay.host
        )
    };

    // The certificate is checked against the system CA store, because lettre is built with
    // the rustls-native-certs feature, and against the relay's own CA file when it has one.
    let parameters = |relay: &RelayConfig| -> Result<TlsParameters, String> {
        let mut builder = TlsParameters::builder(relay.host.clone());
        if let Some(path) = &relay.ca_file {
            for certificate in read_ca_file(path)? {
                builder = builder.add_root_certificate(certificate);
            }
        }
        builder.build().map_err(tls_setup_failed)
    };
    let plain = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&relay.host);
    let builder = match relay.tls {
        TlsMode::Tls => plain.tls(Tls::Wrapper(parameters(relay)?)),
        TlsMode::Starttls => plain.tls(Tls::Required(parameters(relay)?)),
        TlsMode::None => plain,
    };
    let mut builder = builder.port(relay.port).timeout(Some(relay.timeout));

    if let Some(credentials) = credentials(relay).await? {
        builder = builder.credentials(credentials);
    }
    Ok(builder.build())
}

/// Reads the relay's credentials. The password file is read on every send, so a changed
/// password applies without a restart.
async fn credentials(relay: &RelayConfig) -> Result<Option<Credentials>, String> {
    match (&relay.username, &relay.password_file) {
        (None, None) => Ok(None),
        (Some(username), Some(path)) => {
            let password = read_password(path).await?;
            Ok(Some(Credentials::new(username.clone(), password)))
        }
        (Some(_), None) => Err("username is set but password_file is missing; set \
                                password_file to a file whose first line is the password"
            .to_string()),
        (None, Some(path)) => Err(format!(
            "password_file {} is set but username is missing; set the relay's username",
            path.display()
        )),
    }
}

/// Reads every certificate of a PEM file. Read on every send, like the password, so a renewed
/// CA certificate applies without a restart.
fn read_ca_file(path: &Path) -> Result<Vec<Certificate>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        format!(
            "reading CA file {} failed: {error}; make it readable by selfheal",
            path.display()
        )
    })?;
    const END: &str = "-----END CERTIFICATE-----";
    let mut certificates = Vec::new();
    for block in text
        .split_inclusive(END)
        .filter(|block| block.contains(END))
    {
        let certificate = Certificate::from_pem(block.trim_start().as_bytes()).map_err(|error| {
            format!(
                "CA file {} contains a certificate that cannot be read: {error}; write it in PEM form",
                path.display()
            )
        })?;
        certificates.push(certificate);
    }
    if certificates.is_empty() {
        return Err(format!(
            "CA file {} contains no PEM certificate; write the CA certificate in PEM form",
            path.display()
        ));
    }
    Ok(certificates)
}

/// Reads the first line of `path`, without its line ending, as the password.
async fn read_password(path: &Path) -> Result<String, String> {
    let text = tokio::fs::read_to_string(path).await.map_err(|error| {
        format!(
            "reading password file {} failed: {error}; create it with the relay password on \
             its first line, readable by selfheal",
            path.display()
        )
    })?;
    match text.lines().next() {
        Some(password) if !password.is_empty() => Ok(password.to_string()),
        _ => Err(format!(
            "password file {} has an empty first line; write the relay password on it",
            path.display()
        )),
    }
}

/// Turns a lettre error into text that names the cause and, where one is known, the fix.
/// The text never contains the password, because lettre's errors carry only replies and
/// I/O errors.
fn describe_error(relay: &RelayConfig, error: &lettre::transport::smtp::Error) -> String {
    // lettre 0.11 nests a connection error in another one and prints
    // "Connection error: Connection error: ...", so the repeated prefix is dropped.
    let text = error.to_string();
    let text = match text.strip_prefix("Connection error: Connection error: ") {
        Some(rest) => format!("Connection error: {rest}"),
        None => text,
    };

    // NOTE: the last three cases match the wording of lettre 0.11 and rustls 0.23, because
    // lettre reports these failures as client or connection errors without a finer kind.
    // Should the wording change, only the hint is lost.
    let code = error.status().map(u16::from);
    let hint = if code == Some(535) {
        let user = relay.username.as_deref().unwrap_or_default();
        let file = relay
            .password_file
            .as_deref()
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        format!("authentication failed; check username {user:?} and the password in {file}")
    } else if code == Some(530) {
        "the relay requires authentication; set username and password_file".to_string()
    } else if error.is_timeout() {
        format!(
            "connecting timed out; check that {}:{} is reachable",
            relay.host, relay.port
        )
    } else if error.is_tls() {
        format!(
            "TLS failed; check that tls = \"{}\" matches what port {} offers",
            tls_name(relay.tls),
            relay.port,
        )
    } else if text.contains("invalid peer certificate") {
        format!(
            "the relay's certificate is not trusted by the system CA store or not valid for \
             {:?}; install the CA that signed it or set host to a name the certificate covers",
            relay.host
        )
    } else if text.contains("STARTTLS is not supported") {
        format!(
            "port {} does not offer STARTTLS; use tls = \"tls\" if it expects TLS from the \
             first byte (port 465)",
            relay.port
        )
    } else if relay.tls == TlsMode::Tls && text.contains("corrupt message") {
        format!(
            "port {} did not answer with TLS; use tls = \"starttls\" if it expects plain SMTP \
             first (ports 25 and 587)",
            relay.port
        )
    } else {
        return text;
    };
    format!("{text}; {hint}")
}

/// Formats a reply as `CODE TEXT`, its lines joined by spaces.
fn reply_text(response: &Response) -> String {
    let lines: Vec<&str> = response.message().collect();
    format!("{} {}", response.code(), lines.join(" "))
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn relay(host: &str, tls: TlsMode) -> RelayConfig {
        RelayConfig {
            host: host.into(),
            port: 587,
            tls,
            username: None,
            password_file: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
        }
    }

    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .unwrap()
    }

    #[test]
    fn channel_names() {
        assert_eq!(
            channel_name(&relay("smtp.example.net", TlsMode::Starttls)),
            "relay smtp.example.net:587 (starttls)"
        );
        assert_eq!(
            channel_name(&relay("::1", TlsMode::None)),
            "relay [::1]:587 (none)"
        );
        assert_eq!(
            channel_name(&relay("127.0.0.1", TlsMode::Tls)),
            "relay 127.0.0.1:587 (tls)"
        );
    }

    #[tokio::test]
    async fn password_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");

        for (content, expected) in [
            ("s3cret\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("s3cret\r\nsecond line\n", "s3cret"),
            (" with spaces \n", " with spaces "),
        ] {
            std::fs::write(&path, content).unwrap();
            assert_eq!(within(read_password(&path)).await.unwrap(), expected);
        }
    }

    #[tokio::test]
    async fn password_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("password");
        std::fs::write(&path, "\nsecond\n").unwrap();

        let error = within(read_password(&path)).await.unwrap_err();

        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("empty first line"), "{error}");
    }

    #[tokio::test]
    async fn password_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");

        let error = within(read_password(&path)).await.unwrap_err();

        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("No such file"), "{error}");
    }

    #[tokio::test]
    async fn credentials_need_both() {
        let mut only_user = relay("127.0.0.1", TlsMode::None);
        only_user.username = Some("alerts".into());
        let error = within(credentials(&only_user)).await.unwrap_err();
        assert!(error.contains("password_file is missing"), "{error}");

        let mut only_file = relay("127.0.0.1", TlsMode::None);
        only_file.password_file = Some("/etc/selfheal/relay.password".into());
        let error = within(credentials(&only_file)).await.unwrap_err();
        assert!(error.contains("username is missing"), "{error}");
    }
}
