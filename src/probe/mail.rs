//! SMTP, LMTP, IMAP and POP3 probes.
//!
//! Each probe reads the greeting, sends one command that shows the server parses commands
//! (EHLO or LHLO, CAPABILITY), upgrades to TLS with STARTTLS or STLS when configured, and says
//! goodbye. It never logs in and never sends mail.

use std::time::Duration;

use tokio::time::Instant;

use super::connect;
use super::io::{bad_reply, detail_text, LineReader, Stream};
use super::{tls, Context, Outcome, Passed, TlsMode};

/// Lines accepted in one multi-line reply: an SMTP reply, or the untagged IMAP responses before
/// the tagged one. Real servers send far fewer (an EHLO reply has one line per extension), so
/// more means a peer that never ends its reply.
const MAX_REPLY_LINES: usize = 100;

/// Runs the SMTP probe, or the LMTP probe when `verb` is "LHLO" (RFC 5321, RFC 2033): 220
/// greeting, `verb helo_name` and its 250 reply, optionally STARTTLS (RFC 3207) and a second
/// `verb` over TLS, then QUIT. The detail is the greeting's first line without its code.
pub(super) async fn smtp(
    context: &Context<'_>,
    helo_name: &str,
    verb: &str,
) -> Result<Passed, Outcome> {
    let limit = context.timeout;

    // The name comes from the config. A space or line break in it would change the command.
    if helo_name.is_empty() || !helo_name.bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err(Outcome::Failed {
            error: format!(
                "invalid {verb} name {helo_name:?}: set a host name such as mail.example.org, \
                 without spaces or control characters"
            ),
        });
    }
    let hello = format!("{verb} {helo_name}\r\n");

    // Connect, with the TLS handshake here when the mode is Implicit (port 465).
    let (stream, mut warning) = connect::open(context).await?;
    let mut reader = LineReader::new(stream);

    // The greeting may span several "220-" lines. Its first line names the server.
    let greeting = read_smtp_reply(&mut reader, "greeting", 220, limit).await?;
    let detail = greeting.texts.first().map(|text| detail_text(text));

    // EHLO (LHLO for LMTP) lists the extensions, STARTTLS among them.
    reader.write_all(verb, hello.as_bytes(), limit).await?;
    let extensions = read_smtp_reply(&mut reader, verb, 250, limit).await?;

    if context.spec.tls.mode == TlsMode::Starttls {
        // A server that does not offer STARTTLS cannot upgrade, usually because TLS is off.
        if !extensions.offers("STARTTLS") {
            return Err(bad_reply(
                verb,
                "STARTTLS offered",
                extensions.keywords().join(" ").as_bytes(),
            ));
        }

        // STARTTLS and its 220 reply, then the handshake on the same connection.
        reader.write_all("STARTTLS", b"STARTTLS\r\n", limit).await?;
        read_smtp_reply(&mut reader, "STARTTLS", 220, limit).await?;
        let (stream, tls_warning) = upgrade(reader, "STARTTLS", context).await?;
        reader = LineReader::new(stream);
        warning = tls_warning;

        // The upgrade resets the session (RFC 3207), so greet the server again over TLS.
        let step = format!("{verb} over TLS");
        reader.write_all(&step, hello.as_bytes(), limit).await?;
        read_smtp_reply(&mut reader, &step, 250, limit).await?;
    }

    // QUIT ends the session without an error in the server's log.
    say_goodbye(&mut reader, context, "QUIT", b"QUIT\r\n").await;
    Ok(Passed { detail, warning })
}

/// Runs the IMAP probe (RFC 9051): `* OK` or `* PREAUTH` greeting, CAPABILITY, optionally
/// STARTTLS, then LOGOUT. The detail is the greeting text without its response code.
pub(super) async fn imap(context: &Context<'_>) -> Result<Passed, Outcome> {
    let limit = context.timeout;

    // Connect, with the TLS handshake here when the mode is Implicit (port 993).
    let (stream, mut warning) = connect::open(context).await?;
    let mut reader = LineReader::new(stream);

    // The greeting is "* OK" or "* PREAUTH". "* BYE" means the server turns clients away.
    let greeting = reader.read_line("greeting", limit).await?;
    let text = imap_greeting_text(&greeting)
        .ok_or_else(|| bad_reply("greeting", "\"* OK\" or \"* PREAUTH\"", &greeting))?;
    let detail = Some(detail_text(text)).filter(|detail| !detail.is_empty());

    // CAPABILITY shows that the server parses commands, and whether it offers STARTTLS.
    reader
        .write_all("CAPABILITY", b"a1 CAPABILITY\r\n", limit)
        .await?;
    let capabilities = read_imap_reply(&mut reader, "a1", "CAPABILITY", limit).await?;

    if context.spec.tls.mode == TlsMode::Starttls {
        // A server that does not offer STARTTLS cannot upgrade, usually because TLS is off.
        if !capabilities
            .iter()
            .any(|capability| capability.eq_ignore_ascii_case("STARTTLS"))
        {
            return Err(bad_reply(
                "CAPABILITY",
                "STARTTLS offered",
                capabilities.join(" ").as_bytes(),
            ));
        }

        // STARTTLS and its tagged OK, then the handshake on the same connection.
        reader
            .write_all("STARTTLS", b"a2 STARTTLS\r\n", limit)
            .await?;
        read_imap_reply(&mut reader, "a2", "STARTTLS", limit).await?;
        let (stream, tls_warning) = upgrade(reader, "STARTTLS", context).await?;
        reader = LineReader::new(stream);
        warning = tls_warning;
    }

    // LOGOUT ends the session without an error in the server's log.
    say_goodbye(&mut reader, context, "LOGOUT", b"a3 LOGOUT\r\n").await;
    Ok(Passed { detail, warning })
}

/// Runs the POP3 probe (RFC 1939): `+OK` greeting, optionally STLS (RFC 2595), then QUIT.
/// The detail is the greeting text.
pub(super) async fn pop3(context: &Context<'_>) -> Result<Passed, Outcome> {
    let limit = context.timeout;

    // Connect, with the TLS handshake here when the mode is Implicit (port 995).
    let (stream, mut warning) = connect::open(context).await?;
    let mut reader = LineReader::new(stream);

    // The greeting is "+OK". "-ERR" means the server turns clients away.
    let greeting = reader.read_line("greeting", limit).await?;
    let text =
        pop3_ok_text(&greeting).ok_or_else(|| bad_reply("greeting", "\"+OK\"", &greeting))?;
    let detail = Some(detail_text(text)).filter(|detail| !detail.is_empty());

    if context.spec.tls.mode == TlsMode::Starttls {
        // STLS and its "+OK", then the handshake on the same connection. A server without
        // TLS replies "-ERR".
        reader.write_all("STLS", b"STLS\r\n", limit).await?;
        let reply = reader.read_line("STLS", limit).await?;
        pop3_ok_text(&reply).ok_or_else(|| bad_reply("STLS", "\"+OK\"", &reply))?;
        let (stream, tls_warning) = upgrade(reader, "STLS", context).await?;
        reader = LineReader::new(stream);
        warning = tls_warning;
    }

    // QUIT ends the session without an error in the server's log.
    say_goodbye(&mut reader, context, "QUIT", b"QUIT\r\n").await;
    Ok(Passed { detail, warning })
}

/// One SMTP reply: the text of each line after the code and separator.
pub(super) struct SmtpReply {
    pub(super) texts: Vec<Vec<u8>>,
}

impl SmtpReply {
    /// Returns the EHLO keywords, uppercased: the first word of every line but the first.
    pub(super) fn keywords(&self) -> Vec<String> {
        self.texts
            .iter()
            .skip(1)
            .filter_map(|text| text.split(|&byte| byte == b' ').next())
            .map(|keyword| String::from_utf8_lossy(keyword).to_ascii_uppercase())
            .collect()
    }

    pub(super) fn offers(&self, keyword: &str) -> bool {
        self.keywords().iter().any(|offered| offered == keyword)
    }
}

/// Reads one SMTP reply of one or more lines (`250-...` then `250 ...`) within `limit`, and
/// requires every line to carry `code`.
pub(super) async fn read_smtp_reply(
    reader: &mut LineReader,
    step: &str,
    code: u16,
    limit: Duration,
) -> Result<SmtpReply, Outcome> {
    let started = Instant::now();
    let expected = format!("reply code {code}");
    let mut texts = Vec::new();
    for _ in 0..MAX_REPLY_LINES {
        let line = reader.read_line_within(step, started, limit).await?;
        let (more, text) = match parse_smtp_line(&line) {
            Some((line_code, more, text)) if line_code == code => (more, text),
            _ => return Err(bad_reply(step, &expected, &line)),
        };
        texts.push(text.to_vec());
        if !more {
            return Ok(SmtpReply { texts });
        }
    }
    Err(Outcome::BadReply {
        step: step.to_string(),
        expected: format!("a reply of at most {MAX_REPLY_LINES} lines"),
        got: format!("more than {MAX_REPLY_LINES} lines"),
    })
}

/// Splits an SMTP reply line into its three-digit code, whether more lines follow (`250-`)
/// and the text after the separator. Returns None for anything else.
fn parse_smtp_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |code, digit| code * 10 + u16::from(digit - b'0'));
    match line.get(3) {
        None => Some((code, false, &[])),
        Some(b' ') => Some((code, false, &line[4..])),
        Some(b'-') => Some((code, true, &line[4..])),
        Some(_) => None,
    }
}

/// Returns the text of an IMAP greeting without its response code (`* OK [CAPABILITY ...]
/// Dovecot ready.` gives `Dovecot ready.`), or None unless the status is OK or PREAUTH.
pub(super) fn imap_greeting_text(line: &[u8]) -> Option<&[u8]> {
    let (status, text) = split_word(line.strip_prefix(b"* ")?);
    if !status.eq_ignore_ascii_case(b"OK") && !status.eq_ignore_ascii_case(b"PREAUTH") {
        return None;
    }
    let Some(code) = text.strip_prefix(b"[") else {
        return Some(text);
    };
    match code.iter().position(|&byte| byte == b']') {
        Some(end) => Some(code[end + 1..].trim_ascii_start()),
        None => Some(text),
    }
}

/// Reads the untagged responses to the IMAP command tagged `tag`, then its tagged status,
/// which must be OK, all within `limit`. Returns the capabilities that `* CAPABILITY` lines
/// listed.
pub(super) async fn read_imap_reply(
    reader: &mut LineReader,
    tag: &str,
    step: &str,
    limit: Duration,
) -> Result<Vec<String>, Outcome> {
    let started = Instant::now();
    let expected = format!("\"{tag} OK\"");
    let mut capabilities = Vec::new();
    for _ in 0..MAX_REPLY_LINES {
        let line = reader.read_line_within(step, started, limit).await?;
        if let Some(untagged) = line.strip_prefix(b"* ") {
            let (name, listed) = split_word(untagged);
            if name.eq_ignore_ascii_case(b"CAPABILITY") {
                capabilities.extend(
                    listed
                        .split(|&byte| byte == b' ')
                        .filter(|word| !word.is_empty())
                        .map(|word| String::from_utf8_lossy(word).into_owned()),
                );
            }
            continue;
        }
        let (line_tag, rest) = split_word(&line);
        let (status, _) = split_word(rest);
        if line_tag == tag.as_bytes() && status.eq_ignore_ascii_case(b"OK") {
            return Ok(capabilities);
        }
        return Err(bad_reply(step, &expected, &line));
    }
    Err(Outcome::BadReply {
        step: step.to_string(),
        expected: format!("{expected} within {MAX_REPLY_LINES} lines"),
        got: format!("more than {MAX_REPLY_LINES} untagged lines"),
    })
}

/// Returns the text after a POP3 `+OK`, or None for `-ERR` and anything else.
pub(super) fn pop3_ok_text(line: &[u8]) -> Option<&[u8]> {
    if line == b"+OK" {
        return Some(&[]);
    }
    line.strip_prefix(b"+OK ")
}

/// Splits `bytes` at the first space into a word and the rest.
fn split_word(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|&byte| byte == b' ') {
        Some(space) => (&bytes[..space], &bytes[space + 1..]),
        None => (bytes, &[]),
    }
}

/// Checks that the server sent nothing after the reply that accepted the TLS upgrade, then
/// performs the TLS handshake. Returns the encrypted stream and the certificate warning.
async fn upgrade(
    reader: LineReader,
    step: &str,
    context: &Context<'_>,
) -> Result<(Stream, Option<String>), Outcome> {
    // Bytes already buffered would be taken as if they came over TLS. Only a broken server
    // sends them, or a man in the middle who injects replies before the handshake.
    if reader.has_buffered() {
        return Err(Outcome::BadReply {
            step: step.to_string(),
            expected: "no data between the reply and the TLS handshake".to_string(),
            got: "more data after the reply".to_string(),
        });
    }
    let host = context.endpoint()?.host();
    tls::handshake(
        reader.into_stream(),
        host,
        &context.spec.tls,
        context.timeout,
    )
    .await
}

/// Sends the closing command and waits for the first line of its reply, each within the
/// probe's step timeout. A failure here is only logged at debug level, because the server
/// has already replied to the probe and the reply to QUIT or LOGOUT adds nothing.
async fn say_goodbye(reader: &mut LineReader, context: &Context<'_>, step: &str, command: &[u8]) {
    let limit = context.timeout;
    let result = async {
        reader.write_all(step, command, limit).await?;
        reader.read_line(step, limit).await
    }
    .await;
    if let Err(outcome) = result {
        tracing::debug!(
            probe = %context.spec,
            %outcome,
            "ignoring a failed {step} at the end of a probe"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::super::io::fake::{self, days_from_now, within, Peer};
    use super::super::{run, Protocol};
    use super::*;

    /// Step timeout of the exchanges that should pass.
    const LIMIT: Duration = Duration::from_secs(2);
    /// Step timeout of the exchanges that should time out, so that each test ends quickly.
    const SHORT: Duration = Duration::from_millis(300);

    fn smtp_protocol() -> Protocol {
        Protocol::Smtp {
            helo_name: "selfheal".into(),
        }
    }

    async fn probe(protocol: Protocol, address: &str, mode: TlsMode, limit: Duration) -> Outcome {
        run(&fake::spec(protocol, address, mode), limit)
            .await
            .outcome
    }

    fn assert_bad_reply(outcome: &Outcome, expected_step: &str, got_contains: &str) {
        match outcome {
            Outcome::BadReply { step, got, .. } => {
                assert_eq!(step, expected_step, "{outcome}");
                assert!(got.contains(got_contains), "{outcome}");
            }
            other => panic!("expected a bad reply at {expected_step}, got: {other}"),
        }
    }

    /// Runs `protocol` against a server that sends `partial` without a line end and then
    /// stays silent, and checks that the probe times out at the greeting within `SHORT`.
    async fn assert_greeting_times_out(protocol: Protocol, partial: &'static [u8]) {
        let (address, _server) = fake::serve(move |mut peer: Peer| async move {
            peer.send(partial).await;
            peer.wait_for_close().await;
        })
        .await;
        let started = Instant::now();
        let outcome = probe(protocol, &address, TlsMode::Off, SHORT).await;
        let elapsed = started.elapsed();
        assert_eq!(
            outcome,
            Outcome::TimedOut {
                step: "greeting".into(),
                after: SHORT
            }
        );
        assert_eq!(outcome.to_string(), "timed out after 0.3 s at greeting");
        assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    }

    /// Runs `protocol` against a server whose greeting never ends.
    async fn assert_endless_greeting_rejected(protocol: Protocol, first: &'static [u8]) {
        let (address, _server) = fake::serve(move |mut peer: Peer| async move {
            peer.send(first).await;
            peer.send_forever(b'x').await;
        })
        .await;
        let outcome = probe(protocol, &address, TlsMode::Off, LIMIT).await;
        match &outcome {
            Outcome::BadReply { step, expected, .. } => {
                assert_eq!(step, "greeting");
                assert!(expected.contains("at most 4096 bytes"), "{outcome}");
            }
            other => panic!("expected a bad reply, got: {other}"),
        }
    }

    /// Binary bytes that start like a TLS record, plus a line end so that the probe reads a
    /// whole line.
    const GARBAGE: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xff\r\n";

    async fn assert_garbage_rejected(protocol: Protocol) {
        let (address, _server) = fake::serve(|mut peer: Peer| async move {
            peer.send(GARBAGE).await;
            peer.wait_for_close().await;
        })
        .await;
        let outcome = probe(protocol, &address, TlsMode::Off, LIMIT).await;
        assert_bad_reply(&outcome, "greeting", "\\x16\\x03");
    }

    async fn assert_early_close_rejected(protocol: Protocol) {
        let (address, _server) = fake::serve(|peer: Peer| async move { drop(peer) }).await;
        let outcome = probe(protocol, &address, TlsMode::Off, LIMIT).await;
        assert_bad_reply(&outcome, "greeting", "connection closed");
    }

    // ---- SMTP and LMTP

    #[tokio::test]
    async fn smtp_healthy_exchange() {
        within(async {
            let (address, server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220 mail.example.org ESMTP Postfix (Debian/GNU)\r\n")
                    .await;
                peer.expect("EHLO selfheal").await;
                peer.send(b"250-mail.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                    .await;
                peer.expect("QUIT").await;
                peer.send(b"221 2.0.0 Bye\r\n").await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Off, LIMIT).await;
            match &outcome {
                Outcome::Healthy {
                    detail, warning, ..
                } => {
                    assert_eq!(
                        detail.as_deref(),
                        Some("mail.example.org ESMTP Postfix (Debian/GNU)")
                    );
                    assert_eq!(warning, &None);
                }
                other => panic!("expected healthy, got: {other}"),
            }
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn lmtp_sends_lhlo() {
        within(async {
            let (address, server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220 mail.example.org LMTP Dovecot ready\r\n")
                    .await;
                peer.expect("LHLO selfheal").await;
                peer.send(b"250-mail.example.org\r\n250 PIPELINING\r\n")
                    .await;
                peer.expect("QUIT").await;
                peer.send(b"221 2.0.0 Bye\r\n").await;
            })
            .await;
            let protocol = Protocol::Lmtp {
                helo_name: "selfheal".into(),
            };
            let outcome = probe(protocol, &address, TlsMode::Off, LIMIT).await;
            assert!(outcome.is_healthy(), "{outcome}");
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_multiline_greeting() {
        within(async {
            let (address, server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220-mail.example.org ESMTP\r\n220-no UCE\r\n220 ready\r\n")
                    .await;
                peer.expect("EHLO selfheal").await;
                peer.send(b"250 mail.example.org\r\n").await;
                peer.expect("QUIT").await;
                peer.send(b"221 Bye\r\n").await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Off, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::Healthy { detail: Some(detail), .. }
                    if detail == "mail.example.org ESMTP"),
                "{outcome}"
            );
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_rejecting_greetings() {
        within(async {
            for greeting in [
                &b"554 5.3.2 mail.example.org Service unavailable\r\n"[..],
                &b"421 4.3.2 Service shutting down\r\n"[..],
                &b"220-mail.example.org\r\n554 no service\r\n"[..],
            ] {
                let (address, _server) = fake::serve(move |mut peer: Peer| async move {
                    peer.send(greeting).await;
                    peer.wait_for_close().await;
                })
                .await;
                let outcome = probe(smtp_protocol(), &address, TlsMode::Off, LIMIT).await;
                match &outcome {
                    Outcome::BadReply {
                        step,
                        expected,
                        got,
                    } => {
                        assert_eq!(step, "greeting");
                        assert_eq!(expected, "reply code 220");
                        assert!(
                            got.contains(" no service") || got.contains("Service"),
                            "{got}"
                        );
                    }
                    other => panic!("expected a bad reply, got: {other}"),
                }
            }
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_greeting_bytewise() {
        within(async {
            let (address, server) = fake::serve(|mut peer: Peer| async move {
                peer.send_bytewise(b"220 mail.example.org ESMTP\r\n").await;
                peer.expect("EHLO selfheal").await;
                peer.send_bytewise(b"250-mail.example.org\r\n250 SIZE 10240000\r\n")
                    .await;
                peer.expect("QUIT").await;
                peer.send_bytewise(b"221 Bye\r\n").await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Off, LIMIT).await;
            assert!(outcome.is_healthy(), "{outcome}");
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_partial_greeting_times_out() {
        within(assert_greeting_times_out(smtp_protocol(), b"220 mail.exa")).await;
    }

    #[tokio::test]
    async fn smtp_endless_greeting() {
        within(assert_endless_greeting_rejected(smtp_protocol(), b"220 ")).await;
    }

    #[tokio::test]
    async fn smtp_binary_garbage() {
        within(assert_garbage_rejected(smtp_protocol())).await;
    }

    #[tokio::test]
    async fn smtp_early_close() {
        within(assert_early_close_rejected(smtp_protocol())).await;
    }

    #[tokio::test]
    async fn smtp_silent_after_ehlo_times_out() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220 mail.example.org ESMTP\r\n").await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Off, SHORT).await;
            assert_eq!(
                outcome,
                Outcome::TimedOut {
                    step: "EHLO".into(),
                    after: SHORT
                }
            );
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_slow_reply_lines_share_limit() {
        within(async {
            // Each line comes within the step limit, but the whole reply does not.
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                for _ in 0..10 {
                    peer.send(b"220-still greeting\r\n").await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                peer.wait_for_close().await;
            })
            .await;
            let started = Instant::now();
            let outcome = probe(smtp_protocol(), &address, TlsMode::Off, SHORT).await;
            assert_eq!(
                outcome,
                Outcome::TimedOut {
                    step: "greeting".into(),
                    after: SHORT
                }
            );
            assert!(started.elapsed() < Duration::from_secs(1));
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_ehlo_rejected() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220 mail.example.org ESMTP\r\n").await;
                peer.expect("EHLO selfheal").await;
                peer.send(b"502 5.5.2 Error: command not recognized\r\n")
                    .await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Off, LIMIT).await;
            assert_bad_reply(&outcome, "EHLO", "502 5.5.2");
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_mixed_reply_codes() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220 mail.example.org ESMTP\r\n").await;
                peer.expect("EHLO selfheal").await;
                peer.send(b"250-mail.example.org\r\n550 oops\r\n").await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Off, LIMIT).await;
            assert_bad_reply(&outcome, "EHLO", "550 oops");
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_quit_unanswered() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220 mail.example.org ESMTP\r\n").await;
                peer.expect("EHLO selfheal").await;
                peer.send(b"250 mail.example.org\r\n").await;
                peer.expect("QUIT").await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Off, SHORT).await;
            assert!(outcome.is_healthy(), "{outcome}");
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_starttls_not_offered() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220 mail.example.org ESMTP\r\n").await;
                peer.expect("EHLO selfheal").await;
                peer.send(b"250-mail.example.org\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                    .await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Starttls, LIMIT).await;
            assert_eq!(
                outcome,
                Outcome::BadReply {
                    step: "EHLO".into(),
                    expected: "STARTTLS offered".into(),
                    got: "\"PIPELINING 8BITMIME\"".into(),
                }
            );
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_starttls_rejected() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220 mail.example.org ESMTP\r\n").await;
                peer.expect("EHLO selfheal").await;
                peer.send(b"250-mail.example.org\r\n250 STARTTLS\r\n").await;
                peer.expect("STARTTLS").await;
                peer.send(b"454 4.7.0 TLS not available due to local problem\r\n")
                    .await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Starttls, LIMIT).await;
            assert_bad_reply(&outcome, "STARTTLS", "454 4.7.0");
        })
        .await;
    }

    /// Starts a server that offers STARTTLS and then speaks SMTP over TLS, with a certificate
    /// that expires at `not_after`. Returns its address and task.
    async fn smtp_starttls_server(
        not_after: std::time::SystemTime,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let acceptor = fake::tls_acceptor(not_after);
        fake::serve(move |mut peer: Peer| async move {
            peer.send(b"220 mail.example.org ESMTP Postfix\r\n").await;
            peer.expect("EHLO selfheal").await;
            peer.send(b"250-mail.example.org\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
                .await;
            peer.expect("STARTTLS").await;
            peer.send(b"220 2.0.0 Ready to start TLS\r\n").await;
            let mut peer = peer.start_tls(&acceptor).await;
            peer.expect("EHLO selfheal").await;
            peer.send(b"250-mail.example.org\r\n250 8BITMIME\r\n").await;
            peer.expect("QUIT").await;
            peer.send(b"221 2.0.0 Bye\r\n").await;
        })
        .await
    }

    #[tokio::test]
    async fn smtp_starttls_healthy() {
        within(async {
            let (address, server) = smtp_starttls_server(days_from_now(365)).await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Starttls, LIMIT).await;
            match &outcome {
                Outcome::Healthy {
                    detail, warning, ..
                } => {
                    assert_eq!(detail.as_deref(), Some("mail.example.org ESMTP Postfix"));
                    assert_eq!(warning, &None);
                }
                other => panic!("expected healthy, got: {other}"),
            }
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_starttls_expiry_warning() {
        within(async {
            let (address, server) = smtp_starttls_server(days_from_now(5)).await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Starttls, LIMIT).await;
            match &outcome {
                Outcome::Healthy {
                    warning: Some(warning),
                    ..
                } => assert!(warning.contains("expires in 5 day(s)"), "{warning}"),
                other => panic!("expected healthy with a warning, got: {other}"),
            }
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_starttls_expired_certificate() {
        within(async {
            let expired = std::time::SystemTime::now() - Duration::from_secs(86_400);
            let (address, _server) = smtp_starttls_server(expired).await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Starttls, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::TlsFailed { error } if error.contains("expired")),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_starttls_pipelined_reply() {
        within(async {
            // A server (or a man in the middle) that sends a reply before the handshake.
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"220 mail.example.org ESMTP\r\n").await;
                peer.expect("EHLO selfheal").await;
                peer.send(b"250-mail.example.org\r\n250 STARTTLS\r\n").await;
                peer.expect("STARTTLS").await;
                peer.send(b"220 Ready to start TLS\r\n250 injected\r\n")
                    .await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Starttls, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::BadReply { step, .. } if step == "STARTTLS"),
                "{outcome}"
            );
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_implicit_tls() {
        within(async {
            let acceptor = fake::tls_acceptor(days_from_now(365));
            let (address, server) = fake::serve(move |peer: Peer| async move {
                let mut peer = peer.start_tls(&acceptor).await;
                peer.send(b"220 mail.example.org ESMTP\r\n").await;
                peer.expect("EHLO selfheal").await;
                peer.send(b"250 mail.example.org\r\n").await;
                peer.expect("QUIT").await;
                peer.send(b"221 Bye\r\n").await;
            })
            .await;
            let outcome = probe(smtp_protocol(), &address, TlsMode::Implicit, LIMIT).await;
            assert!(outcome.is_healthy(), "{outcome}");
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn smtp_invalid_helo_name() {
        within(async {
            // The probe rejects the name before it connects, so no server is needed.
            for name in ["", "mail example", "mail\r\nRCPT TO:<x@example.org>"] {
                let protocol = Protocol::Smtp {
                    helo_name: name.into(),
                };
                let outcome = probe(protocol, "127.0.0.1:9", TlsMode::Off, LIMIT).await;
                assert!(
                    matches!(&outcome, Outcome::Failed { error }
                        if error.starts_with("invalid EHLO name")),
                    "{name:?}: {outcome}"
                );
            }
        })
        .await;
    }

    #[test]
    fn smtp_line_parsing() {
        assert_eq!(
            parse_smtp_line(b"250-SIZE 100"),
            Some((250, true, &b"SIZE 100"[..]))
        );
        assert_eq!(parse_smtp_line(b"250 OK"), Some((250, false, &b"OK"[..])));
        assert_eq!(parse_smtp_line(b"250"), Some((250, false, &b""[..])));
        assert_eq!(parse_smtp_line(b"25"), None);
        assert_eq!(parse_smtp_line(b"2x0 OK"), None);
        assert_eq!(parse_smtp_line(b"250_OK"), None);
    }

    // ---- IMAP

    #[tokio::test]
    async fn imap_healthy_exchange() {
        within(async {
            let (address, server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot (Debian) ready.\r\n")
                    .await;
                peer.expect("a1 CAPABILITY").await;
                peer.send(b"* CAPABILITY IMAP4rev1 SASL-IR STARTTLS\r\na1 OK done\r\n")
                    .await;
                peer.expect("a3 LOGOUT").await;
                peer.send(b"* BYE Logging out\r\na3 OK Logout completed.\r\n")
                    .await;
            })
            .await;
            let outcome = probe(Protocol::Imap, &address, TlsMode::Off, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::Healthy { detail: Some(detail), .. }
                    if detail == "Dovecot (Debian) ready."),
                "{outcome}"
            );
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn imap_preauth_greeting() {
        within(async {
            let (address, server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"* PREAUTH IMAP4rev2 server logged in as smith\r\n")
                    .await;
                peer.expect("a1 CAPABILITY").await;
                peer.send(b"* CAPABILITY IMAP4rev2\r\na1 OK done\r\n").await;
                peer.expect("a3 LOGOUT").await;
                peer.send(b"* BYE\r\na3 OK\r\n").await;
            })
            .await;
            let outcome = probe(Protocol::Imap, &address, TlsMode::Off, LIMIT).await;
            assert!(outcome.is_healthy(), "{outcome}");
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn imap_bye_greeting() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"* BYE Too many connections\r\n").await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(Protocol::Imap, &address, TlsMode::Off, LIMIT).await;
            assert_bad_reply(&outcome, "greeting", "* BYE Too many connections");
        })
        .await;
    }

    #[tokio::test]
    async fn imap_greeting_bytewise() {
        within(async {
            let (address, server) = fake::serve(|mut peer: Peer| async move {
                peer.send_bytewise(b"* OK ready\r\n").await;
                peer.expect("a1 CAPABILITY").await;
                peer.send_bytewise(b"* CAPABILITY IMAP4rev1\r\na1 OK\r\n")
                    .await;
                peer.expect("a3 LOGOUT").await;
                // The probe closes after the first line of this reply.
                peer.send(b"* BYE\r\na3 OK\r\n").await;
            })
            .await;
            let outcome = probe(Protocol::Imap, &address, TlsMode::Off, LIMIT).await;
            assert!(outcome.is_healthy(), "{outcome}");
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn imap_partial_greeting_times_out() {
        within(assert_greeting_times_out(Protocol::Imap, b"* OK Dove")).await;
    }

    #[tokio::test]
    async fn imap_endless_greeting() {
        within(assert_endless_greeting_rejected(Protocol::Imap, b"* OK ")).await;
    }

    #[tokio::test]
    async fn imap_binary_garbage() {
        within(assert_garbage_rejected(Protocol::Imap)).await;
    }

    #[tokio::test]
    async fn imap_early_close() {
        within(assert_early_close_rejected(Protocol::Imap)).await;
    }

    #[tokio::test]
    async fn imap_capability_rejected() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"* OK ready\r\n").await;
                peer.expect("a1 CAPABILITY").await;
                peer.send(b"a1 BAD Error in IMAP command\r\n").await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(Protocol::Imap, &address, TlsMode::Off, LIMIT).await;
            assert_bad_reply(&outcome, "CAPABILITY", "a1 BAD");
        })
        .await;
    }

    #[tokio::test]
    async fn imap_starttls_not_offered() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"* OK ready\r\n").await;
                peer.expect("a1 CAPABILITY").await;
                peer.send(b"* CAPABILITY IMAP4rev1 IDLE\r\na1 OK\r\n").await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(Protocol::Imap, &address, TlsMode::Starttls, LIMIT).await;
            assert_eq!(
                outcome,
                Outcome::BadReply {
                    step: "CAPABILITY".into(),
                    expected: "STARTTLS offered".into(),
                    got: "\"IMAP4rev1 IDLE\"".into(),
                }
            );
        })
        .await;
    }

    async fn imap_starttls_server(
        not_after: std::time::SystemTime,
    ) -> (String, tokio::task::JoinHandle<()>) {
        let acceptor = fake::tls_acceptor(not_after);
        fake::serve(move |mut peer: Peer| async move {
            peer.send(b"* OK Dovecot ready.\r\n").await;
            peer.expect("a1 CAPABILITY").await;
            peer.send(b"* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK\r\n")
                .await;
            peer.expect("a2 STARTTLS").await;
            peer.send(b"a2 OK Begin TLS negotiation now.\r\n").await;
            let mut peer = peer.start_tls(&acceptor).await;
            peer.expect("a3 LOGOUT").await;
            peer.send(b"* BYE\r\na3 OK\r\n").await;
        })
        .await
    }

    #[tokio::test]
    async fn imap_starttls_expiry_warning() {
        within(async {
            let (address, server) = imap_starttls_server(days_from_now(5)).await;
            let outcome = probe(Protocol::Imap, &address, TlsMode::Starttls, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::Healthy { warning: Some(warning), .. }
                    if warning.contains("expires in 5 day(s)")),
                "{outcome}"
            );
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn imap_starttls_expired_certificate() {
        within(async {
            let expired = std::time::SystemTime::now() - Duration::from_secs(86_400);
            let (address, _server) = imap_starttls_server(expired).await;
            let outcome = probe(Protocol::Imap, &address, TlsMode::Starttls, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::TlsFailed { error } if error.contains("expired")),
                "{outcome}"
            );
        })
        .await;
    }

    #[test]
    fn imap_greeting_forms() {
        assert_eq!(
            imap_greeting_text(b"* OK [CAPABILITY IMAP4rev1] Dovecot ready."),
            Some(&b"Dovecot ready."[..])
        );
        assert_eq!(imap_greeting_text(b"* ok hi"), Some(&b"hi"[..]));
        assert_eq!(imap_greeting_text(b"* PREAUTH"), Some(&b""[..]));
        assert_eq!(
            imap_greeting_text(b"* OK [unclosed"),
            Some(&b"[unclosed"[..])
        );
        assert_eq!(imap_greeting_text(b"* BYE busy"), None);
        assert_eq!(imap_greeting_text(b"OK"), None);
    }

    // ---- POP3

    #[tokio::test]
    async fn pop3_healthy_exchange() {
        within(async {
            let (address, server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"+OK Dovecot (Debian) ready.\r\n").await;
                peer.expect("QUIT").await;
                peer.send(b"+OK Logging out.\r\n").await;
            })
            .await;
            let outcome = probe(Protocol::Pop3, &address, TlsMode::Off, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::Healthy { detail: Some(detail), .. }
                    if detail == "Dovecot (Debian) ready."),
                "{outcome}"
            );
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn pop3_err_greeting() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"-ERR [SYS/TEMP] Server shutting down.\r\n")
                    .await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(Protocol::Pop3, &address, TlsMode::Off, LIMIT).await;
            assert_bad_reply(&outcome, "greeting", "-ERR [SYS/TEMP]");
        })
        .await;
    }

    #[tokio::test]
    async fn pop3_greeting_bytewise() {
        within(async {
            let (address, server) = fake::serve(|mut peer: Peer| async move {
                peer.send_bytewise(b"+OK ready\r\n").await;
                peer.expect("QUIT").await;
                peer.send_bytewise(b"+OK bye\r\n").await;
            })
            .await;
            let outcome = probe(Protocol::Pop3, &address, TlsMode::Off, LIMIT).await;
            assert!(outcome.is_healthy(), "{outcome}");
            server.await.expect("server script");
        })
        .await;
    }

    #[tokio::test]
    async fn pop3_partial_greeting_times_out() {
        within(assert_greeting_times_out(Protocol::Pop3, b"+OK Dov")).await;
    }

    #[tokio::test]
    async fn pop3_endless_greeting() {
        within(assert_endless_greeting_rejected(Protocol::Pop3, b"+OK ")).await;
    }

    #[tokio::test]
    async fn pop3_binary_garbage() {
        within(assert_garbage_rejected(Protocol::Pop3)).await;
    }

    #[tokio::test]
    async fn pop3_early_close() {
        within(assert_early_close_rejected(Protocol::Pop3)).await;
    }

    #[tokio::test]
    async fn pop3_stls_rejected() {
        within(async {
            let (address, _server) = fake::serve(|mut peer: Peer| async move {
                peer.send(b"+OK ready\r\n").await;
                peer.expect("STLS").await;
                peer.send(b"-ERR Unknown command.\r\n").await;
                peer.wait_for_close().await;
            })
            .await;
            let outcome = probe(Protocol::Pop3, &address, TlsMode::Starttls, LIMIT).await;
            assert_bad_reply(&outcome, "STLS", "-ERR Unknown command.");
        })
        .await;
    }

    #[tokio::test]
    async fn pop3_stls_expiry_warning() {
        within(async {
            let acceptor = fake::tls_acceptor(days_from_now(5));
            let (address, server) = fake::serve(move |mut peer: Peer| async move {
                peer.send(b"+OK ready\r\n").await;
                peer.expect("STLS").await;
                peer.send(b"+OK Begin TLS negotiation now.\r\n").await;
                let mut peer = peer.start_tls(&acceptor).await;
                peer.expect("QUIT").await;
                peer.send(b"+OK bye\r\n").await;
            })
            .await;
            let outcome = probe(Protocol::Pop3, &address, TlsMode::Starttls, LIMIT).await;
            assert!(
                matches!(&outcome, Outcome::Healthy { warning: Some(warning), .. }
                    if warning.contains("expires in 5 day(s)")),
                "{outcome}"
            );
            server.await.expect("server script");
        })
        .await;
    }
}
