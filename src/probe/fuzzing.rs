//! Entry points for the fuzz targets in `fuzz/`, one per reply parser. Not a stable API.
//!
//! Parsers that read from a connection get the fuzz input as everything the server sends
//! before it closes the connection, through an in-memory stream, so that the probes' own
//! read functions run unchanged. The probe's commands are never written: the parsers under
//! test only read.

use std::future::Future;
use std::time::{Duration, SystemTime};

use hickory_proto::rr::Name;
use tokio::io::AsyncWriteExt;

use super::io::{detail_text, LineReader, Stream};
use super::{command, dns, http, mail, milter, mysql, spamd, tls, Outcome};

/// Step timeout passed to the parsers. The server's bytes are all queued before the close, so
/// a step that times out waited for data after the end of the stream.
pub const STEP_LIMIT: Duration = Duration::from_secs(5);

/// Capacity of the in-memory stream, in bytes. It is small and odd, so that lines and packets
/// arrive split across several reads, as they can over TCP.
const PEER_CHUNK: usize = 29;

/// Lines that `read_lines` reads at most.
const MAX_LINES: usize = 1000;

/// Runs `exchange` on a new current-thread runtime, against a peer that sends `server_bytes`
/// and then closes the connection.
fn with_peer<T, F, Fut>(server_bytes: &[u8], exchange: F) -> T
where
    F: FnOnce(Stream) -> Fut,
    Fut: Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("build a current-thread tokio runtime");
    let (client, mut server) = tokio::io::duplex(PEER_CHUNK);
    let bytes = server_bytes.to_vec();
    runtime.block_on(async move {
        // Dropping `server` at the end of the task closes the connection.
        let peer = tokio::spawn(async move {
            let _ = server.write_all(&bytes).await;
        });
        let result = exchange(Box::new(client)).await;
        peer.abort();
        result
    })
}

/// Reads lines with `LineReader::read_line` until it returns an error, at most `MAX_LINES` of
/// them. Returns the lines and the error, or `None` after `MAX_LINES` lines.
pub fn read_lines(server_bytes: &[u8]) -> (Vec<Vec<u8>>, Option<Outcome>) {
    with_peer(server_bytes, |stream| async move {
        let mut reader = LineReader::new(stream);
        let mut lines = Vec::new();
        while lines.len() < MAX_LINES {
            match reader.read_line("line", STEP_LIMIT).await {
                Ok(line) => lines.push(line),
                Err(outcome) => return (lines, Some(outcome)),
            }
        }
        (lines, None)
    })
}

/// Results of the SMTP parsers for a greeting and an EHLO reply.
#[derive(Debug)]
pub struct SmtpSummary {
    pub detail: Option<String>,
    pub keywords: Vec<String>,
    pub offers_starttls: bool,
}

/// Parses a 220 greeting and then a 250 EHLO reply, as `mail::smtp` does.
pub fn smtp_session(server_bytes: &[u8]) -> Result<SmtpSummary, Outcome> {
    with_peer(server_bytes, |stream| async move {
        let mut reader = LineReader::new(stream);
        let greeting = mail::read_smtp_reply(&mut reader, "greeting", 220, STEP_LIMIT).await?;
        let detail = greeting.texts.first().map(|text| detail_text(text));
        let extensions = mail::read_smtp_reply(&mut reader, "EHLO", 250, STEP_LIMIT).await?;
        Ok(SmtpSummary {
            detail,
            keywords: extensions.keywords(),
            offers_starttls: extensions.offers("STARTTLS"),
        })
    })
}

/// Parses an IMAP greeting line and then the reply to `a1 CAPABILITY`, as `mail::imap` does.
/// Returns the greeting's detail and the capabilities.
pub fn imap_session(server_bytes: &[u8]) -> Result<(String, Vec<String>), Outcome> {
    with_peer(server_bytes, |stream| async move {
        let mut reader = LineReader::new(stream);
        let greeting = reader.read_line("greeting", STEP_LIMIT).await?;
        let Some(text) = mail::imap_greeting_text(&greeting) else {
            return Ok((String::new(), Vec::new()));
        };
        let detail = detail_text(text);
        let capabilities =
            mail::read_imap_reply(&mut reader, "a1", "CAPABILITY", STEP_LIMIT).await?;
        Ok((detail, capabilities))
    })
}

/// Parses a POP3 greeting and then the reply to STLS, as `mail::pop3` does. Returns the
/// greeting's detail and whether the second line was `+OK`.
pub fn pop3_session(server_bytes: &[u8]) -> Result<(String, bool), Outcome> {
    with_peer(server_bytes, |stream| async move {
        let mut reader = LineReader::new(stream);
        let greeting = reader.read_line("greeting", STEP_LIMIT).await?;
        let Some(text) = mail::pop3_ok_text(&greeting) else {
            return Ok((String::new(), false));
        };
        let detail = detail_text(text);
        let reply = reader.read_line("STLS", STEP_LIMIT).await?;
        Ok((detail, mail::pop3_ok_text(&reply).is_some()))
    })
}

/// Reads an HTTP response up to its final status line, as `http::check` does. Returns the
/// detail made of the status line, and the status code.
pub fn http_status(server_bytes: &[u8]) -> Result<(String, u16), Outcome> {
    with_peer(server_bytes, |stream| async move {
        let mut reader = LineReader::new(stream);
        let (line, code) = http::read_final_status(&mut reader, STEP_LIMIT).await?;
        Ok((detail_text(&line), code))
    })
}

/// Reads a spamd reply line and parses it as a PONG, as `spamd::check` does. Returns the
/// detail made of the protocol version, or `None` for another reply.
pub fn spamd_pong(server_bytes: &[u8]) -> Result<Option<String>, Outcome> {
    with_peer(server_bytes, |stream| async move {
        let mut reader = LineReader::new(stream);
        let reply = reader.read_line("PONG", STEP_LIMIT).await?;
        Ok(spamd::parse_pong(&reply).map(detail_text))
    })
}

/// Reads one milter packet and checks it as the reply to option negotiation, as
/// `milter::check` does. Returns the protocol version.
pub fn milter_reply(server_bytes: &[u8]) -> Result<u32, Outcome> {
    with_peer(server_bytes, |mut stream| async move {
        let (command, data) = milter::read_packet(&mut stream, "negotiate", STEP_LIMIT).await?;
        milter::parse_optneg_reply(command, &data)
    })
}

/// Reads the first MySQL packet and parses it as a handshake, as `mysql::check` does. Returns
/// the server description, such as "MariaDB 10.11.6".
pub fn mysql_handshake(server_bytes: &[u8]) -> Result<String, Outcome> {
    with_peer(server_bytes, |mut stream| async move {
        let (sequence, payload) = mysql::read_first_packet(&mut stream, STEP_LIMIT).await?;
        let version = mysql::parse_first_packet(sequence, &payload)?;
        Ok(mysql::describe_server(&version))
    })
}

/// Checks `datagram` as the reply to an A query for `localhost.`, as the DNS probe does. The
/// query id is taken from the datagram itself, so that every datagram of 12 bytes or more
/// reaches the message parser. Returns the summary of a matching reply.
pub fn dns_reply(datagram: &[u8]) -> Result<Option<String>, Outcome> {
    let id = match datagram {
        [high, low, ..] => u16::from_be_bytes([*high, *low]),
        _ => 0,
    };
    let name = Name::from_ascii("localhost.").expect("a valid DNS name");
    let reply = dns::match_reply(datagram, id, &name, "reply")?;
    Ok(reply.as_ref().map(dns::summarize))
}

/// Checks the expiry of a DER certificate as the TLS handshake does, with a fixed clock
/// (2025-01-01T00:00:00Z) and the default warning of 14 days.
pub fn certificate_expiry(der: &[u8]) -> Result<Option<String>, Outcome> {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    tls::expiry_check(der, 14, now)
}

/// Returns the last line that is not blank of a program's output, as the fail2ban probe reports
/// it.
pub fn command_last_line(output: &[u8]) -> Option<String> {
    command::last_line(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_lines_until_close() {
        let (lines, outcome) = read_lines(b"first\r\nsecond\n");
        assert_eq!(lines, vec![b"first".to_vec(), b"second".to_vec()]);
        assert!(
            matches!(&outcome, Some(Outcome::BadReply { got, .. }) if got == "connection closed"),
            "{outcome:?}"
        );
    }

    #[test]
    fn smtp_session_healthy() {
        let summary =
            smtp_session(b"220 mail.example.org ESMTP\r\n250-mail.example.org\r\n250 STARTTLS\r\n")
                .unwrap();
        assert_eq!(summary.detail.as_deref(), Some("mail.example.org ESMTP"));
        assert_eq!(summary.keywords, vec!["STARTTLS".to_string()]);
        assert!(summary.offers_starttls);
    }

    #[test]
    fn imap_session_healthy() {
        let (detail, capabilities) =
            imap_session(b"* OK ready\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK\r\n").unwrap();
        assert_eq!(detail, "ready");
        assert_eq!(capabilities, vec!["IMAP4rev1", "STARTTLS"]);
    }

    #[test]
    fn pop3_session_healthy() {
        let (detail, upgraded) = pop3_session(b"+OK ready\r\n+OK begin TLS\r\n").unwrap();
        assert_eq!(detail, "ready");
        assert!(upgraded);
    }

    #[test]
    fn http_status_after_interim() {
        let (detail, code) =
            http_status(b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 \r\n")
                .unwrap();
        assert_eq!(code, 204);
        assert_eq!(detail, "HTTP/1.1 204");
    }

    #[test]
    fn spamd_pong_healthy() {
        let detail = spamd_pong(b"SPAMD/1.5 0 PONG\r\n").unwrap();
        assert_eq!(detail.as_deref(), Some("SPAMD/1.5"));
    }

    #[test]
    fn milter_reply_healthy() {
        let mut packet = vec![0, 0, 0, 13, b'O'];
        packet.extend_from_slice(&[0, 0, 0, 6, 0, 0, 0, 0x11, 0, 0x1f, 0, 0]);
        assert_eq!(milter_reply(&packet).unwrap(), 6);
    }

    #[test]
    fn mysql_handshake_healthy() {
        let mut payload = vec![10];
        payload.extend_from_slice(b"5.5.5-10.11.6-MariaDB-0+deb12u1\0");
        payload.extend_from_slice(&[0; 15]);
        let mut packet = vec![u8::try_from(payload.len()).unwrap(), 0, 0, 0];
        packet.extend_from_slice(&payload);
        assert_eq!(mysql_handshake(&packet).unwrap(), "MariaDB 10.11.6");
    }

    #[test]
    fn dns_reply_short_datagram() {
        assert!(matches!(dns_reply(&[0; 4]), Err(Outcome::BadReply { .. })));
    }

    #[test]
    fn certificate_expiry_garbage() {
        assert!(matches!(
            certificate_expiry(b"not DER"),
            Err(Outcome::TlsFailed { .. })
        ));
    }
}
