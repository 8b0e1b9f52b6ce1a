//! Milter probe: the option negotiation (SMFIC_OPTNEG) an MTA opens every milter connection
//! with, as OpenDKIM, spamass-milter and other libmilter filters expect it.
//!
//! A milter packet is a 4-byte big-endian length, a command byte and the data, and the length
//! counts the command byte. Constants follow Sendmail's libmilter `mfdef.h` (8.40). A healthy
//! milter replies to our `O` packet with its own `O` packet, which carries the protocol version
//! it speaks. After that the probe sends SMFIC_QUIT to close the connection as an MTA does.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::connect;
use super::io::{self, bad_reply, closed_early, step, Stream};
use super::{Context, Outcome, Passed};

/// SMFIC_OPTNEG: option negotiation, which the MTA sends first and the milter replies to.
const OPTNEG: u8 = b'O';

/// SMFIC_QUIT: the MTA closes the milter connection.
const QUIT: u8 = b'Q';

/// Protocol version offered: 6 is the current one (SMFI_PROT_VERSION in `mfdef.h`).
const OFFERED_VERSION: u32 = 6;

/// Oldest protocol version that libmilter accepts (SMFI_PROT_VERSION_MIN).
const MIN_VERSION: u32 = 2;

/// Every action an MTA of protocol version 6 allows a milter to take (SMFI_CURR_ACTS).
const OFFERED_ACTIONS: u32 = 0x0000_01ff;

/// Every protocol flag defined for version 6 (SMFI_CURR_PROT). Offering all of them lets each
/// milter choose the steps it skips, so that no milter rejects the negotiation for a missing flag.
const OFFERED_PROTOCOL: u32 = 0x001f_ffff;

/// Maximum length of the milter's reply packet, in bytes. The reply carries three 32-bit fields
/// and optional macro lists, and libmilter caps the data of any packet at 64 KiB - 1
/// (MILTER_MAX_DATA_SIZE).
const MAX_PACKET: usize = 64 * 1024;

/// Bytes of version, actions and protocol flags at the start of an OPTNEG reply.
const OPTIONS_LEN: usize = 12;

const NEGOTIATE: &str = "option negotiation";

/// Negotiates options with the milter and then quits.
pub(super) async fn check(context: &Context<'_>) -> Result<Passed, Outcome> {
    let (mut stream, warning) = connect::open(context).await?;

    // Offer protocol version 6 with all actions and steps, as an MTA does.
    let request = packet(OPTNEG, &optneg_data());
    step(NEGOTIATE, context.timeout, async {
        stream.write_all(&request).await?;
        stream.flush().await
    })
    .await?;

    // The reply must be an OPTNEG packet with a version this side can speak.
    let (command, data) = read_packet(&mut stream, NEGOTIATE, context.timeout).await?;
    let version = parse_optneg_reply(command, &data)?;

    // Quit politely. The negotiation already proved the milter works, so a milter that closes
    // first or does not read the QUIT is still healthy.
    let quit = packet(QUIT, &[]);
    let _ = step("quit", context.timeout, async {
        stream.write_all(&quit).await?;
        stream.shutdown().await
    })
    .await;

    Ok(Passed {
        detail: Some(format!("milter protocol version {version}")),
        warning,
    })
}

/// Builds a packet: length of command byte plus data, command byte, data.
fn packet(command: u8, data: &[u8]) -> Vec<u8> {
    // Probe packets are at most 13 bytes long, so the length always fits.
    let length = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    let mut bytes = Vec::with_capacity(data.len() + 5);
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.push(command);
    bytes.extend_from_slice(data);
    bytes
}

/// Version, actions and protocol flags of the OPTNEG request, each 32-bit big-endian.
fn optneg_data() -> [u8; OPTIONS_LEN] {
    let mut data = [0u8; OPTIONS_LEN];
    data[0..4].copy_from_slice(&OFFERED_VERSION.to_be_bytes());
    data[4..8].copy_from_slice(&OFFERED_ACTIONS.to_be_bytes());
    data[8..12].copy_from_slice(&OFFERED_PROTOCOL.to_be_bytes());
    data
}

/// Reads one packet within `limit` and returns its command byte and data. A length field of 0
/// or above `MAX_PACKET` is a bad reply, checked before anything is allocated.
pub(super) async fn read_packet(
    stream: &mut Stream,
    step_name: &str,
    limit: Duration,
) -> Result<(u8, Vec<u8>), Outcome> {
    let read = async {
        let mut header = [0u8; 4];
        let filled = io::read_full(stream, &mut header).await?;
        if filled < header.len() {
            return Ok(Err(closed_early(
                step_name,
                "a milter packet",
                &header[..filled],
            )));
        }
        let length = usize::try_from(u32::from_be_bytes(header)).unwrap_or(usize::MAX);
        if length == 0 || length > MAX_PACKET {
            return Ok(Err(Outcome::BadReply {
                step: step_name.to_string(),
                expected: format!("a packet length from 1 to {MAX_PACKET} bytes"),
                got: format!("length {length} ({})", io::quote(&header)),
            }));
        }
        let mut body = vec![0u8; length];
        let filled = io::read_full(stream, &mut body).await?;
        if filled < length {
            return Ok(Err(closed_early(
                step_name,
                &format!("a milter packet of {length} bytes"),
                &body[..filled],
            )));
        }
        let data = body.split_off(1);
        Ok(Ok((body[0], data)))
    };
    step(step_name, limit, read).await?
}

/// Checks an OPTNEG reply and returns the protocol version the milter chose.
pub(super) fn parse_optneg_reply(command: u8, data: &[u8]) -> Result<u32, Outcome> {
    if command != OPTNEG {
        let mut got = vec![command];
        got.extend_from_slice(data);
        return Err(bad_reply(NEGOTIATE, "an OPTNEG ('O') packet", &got));
    }
    if data.len() < OPTIONS_LEN {
        return Err(bad_reply(
            NEGOTIATE,
            &format!("an OPTNEG reply with at least {OPTIONS_LEN} bytes of options"),
            data,
        ));
    }
    let version = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
    if !(MIN_VERSION..=OFFERED_VERSION).contains(&version) {
        return Err(Outcome::BadReply {
            step: NEGOTIATE.to_string(),
            expected: format!("protocol version {MIN_VERSION} to {OFFERED_VERSION}"),
            got: format!("version {version}"),
        });
    }
    Ok(version)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
    use tokio::net::{TcpListener, UnixListener};
    use tokio::sync::oneshot;

    use super::super::{run, Endpoint, ProbeReport, ProbeSpec, Protocol};
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    /// Bound on each test, so that a probe that hangs fails the test.
    const TEST_LIMIT: Duration = Duration::from_secs(10);

    /// An OPTNEG reply as libmilter sends it: version 6, some actions, some protocol flags.
    fn good_reply() -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(&6u32.to_be_bytes());
        data.extend_from_slice(&0x11u32.to_be_bytes());
        data.extend_from_slice(&0x1f_0000u32.to_be_bytes());
        packet(OPTNEG, &data)
    }

    /// Serves one connection: reads the 17-byte OPTNEG request, writes `reply`, and unless
    /// `close_after_reply` keeps reading until the probe closes. Returns all bytes received.
    async fn serve<S>(mut stream: S, reply: Vec<u8>, close_after_reply: bool) -> Vec<u8>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut request = vec![0u8; 17];
        let _ = stream.read_exact(&mut request).await;
        let _ = stream.write_all(&reply).await;
        if close_after_reply {
            return request;
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        request.extend_from_slice(&rest);
        request
    }

    /// A TCP fake milter on 127.0.0.1 that serves one connection with `reply`.
    async fn tcp_fake(reply: Vec<u8>, close: bool) -> (ProbeSpec, oneshot::Receiver<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let (sender, receiver) = oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = sender.send(serve(stream, reply, close).await);
        });
        let spec = ProbeSpec::new(
            Protocol::Milter,
            Some(Endpoint::parse(&address).unwrap()),
            "test",
        );
        (spec, receiver)
    }

    async fn probe(spec: &ProbeSpec, limit: Duration) -> ProbeReport {
        tokio::time::timeout(TEST_LIMIT, run(spec, limit))
            .await
            .expect("probe hung")
    }

    fn step_of(outcome: &Outcome) -> Option<&str> {
        match outcome {
            Outcome::BadReply { step, .. } | Outcome::TimedOut { step, .. } => Some(step),
            _ => None,
        }
    }

    #[tokio::test]
    async fn unix_socket_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let path: PathBuf = dir.path().join("milter.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (sender, receiver) = oneshot::channel();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = sender.send(serve(stream, good_reply(), false).await);
        });
        let spec = ProbeSpec::new(Protocol::Milter, Some(Endpoint::Unix { path }), "test");

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { detail: Some(d), warning: None, .. }
                if d == "milter protocol version 6"),
            "{report}"
        );
        let sent = tokio::time::timeout(TEST_LIMIT, receiver)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&sent[..5], &[0, 0, 0, 13, b'O']);
        assert_eq!(&sent[5..9], &6u32.to_be_bytes());
        assert_eq!(&sent[9..13], &0x1ffu32.to_be_bytes());
        assert_eq!(&sent[13..17], &0x1f_ffffu32.to_be_bytes());
        assert_eq!(&sent[17..], &[0, 0, 0, 1, b'Q'], "QUIT after the reply");
    }

    #[tokio::test]
    async fn tcp_healthy() {
        let (spec, receiver) = tcp_fake(good_reply(), false).await;

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { detail: Some(d), .. } if d == "milter protocol version 6"),
            "{report}"
        );
        let sent = tokio::time::timeout(TEST_LIMIT, receiver)
            .await
            .unwrap()
            .unwrap();
        assert!(sent.ends_with(&[0, 0, 0, 1, b'Q']), "{sent:?}");
    }

    #[tokio::test]
    async fn reply_with_macro_lists() {
        // A milter that sets macro lists appends them after the 12 bytes of options.
        let mut data = good_reply()[5..].to_vec();
        data.extend_from_slice(&1u32.to_be_bytes());
        data.extend_from_slice(b"{client_addr}\0");
        let (spec, _receiver) = tcp_fake(packet(OPTNEG, &data), false).await;

        let report = probe(&spec, LIMIT).await;

        assert!(report.outcome.is_healthy(), "{report}");
    }

    #[tokio::test]
    async fn close_before_quit_healthy() {
        let (spec, _receiver) = tcp_fake(good_reply(), true).await;

        let report = probe(&spec, LIMIT).await;

        assert!(report.outcome.is_healthy(), "{report}");
    }

    #[tokio::test]
    async fn wrong_command_byte() {
        let mut reply = good_reply();
        reply[4] = b't';
        let (spec, _receiver) = tcp_fake(reply, false).await;

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { expected, got, .. }
                if expected.contains("OPTNEG") && got.starts_with("\"t")),
            "{report}"
        );
        assert_eq!(step_of(&report.outcome), Some(NEGOTIATE));
    }

    #[tokio::test]
    async fn huge_length_rejected() {
        let (spec, _receiver) = tcp_fake(vec![0xff, 0xff, 0xff, 0xf0, b'O'], false).await;

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { got, .. } if got.contains("4294967280")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn zero_length_rejected() {
        let (spec, _receiver) = tcp_fake(vec![0, 0, 0, 0], false).await;

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { got, .. } if got.starts_with("length 0")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn short_packet_then_silence() {
        // The length promises 13 bytes, 5 arrive, and the milter stays silent.
        let (spec, _receiver) = tcp_fake(vec![0, 0, 0, 13, b'O', 0, 0, 0, 6], false).await;

        let report = probe(&spec, Duration::from_millis(300)).await;

        assert_eq!(
            report.outcome,
            Outcome::TimedOut {
                step: NEGOTIATE.into(),
                after: Duration::from_millis(300)
            }
        );
    }

    #[tokio::test]
    async fn silent_milter_times_out() {
        let (spec, _receiver) = tcp_fake(Vec::new(), false).await;

        let report = probe(&spec, Duration::from_millis(300)).await;

        assert!(
            matches!(&report.outcome, Outcome::TimedOut { step, .. } if step == NEGOTIATE),
            "{report}"
        );
    }

    #[tokio::test]
    async fn early_close() {
        let (spec, _receiver) = tcp_fake(vec![0, 0], true).await;

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { got, .. } if got == "\"\\x00\\x00\" then connection closed"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn close_inside_packet() {
        let (spec, _receiver) = tcp_fake(vec![0, 0, 0, 13, b'O', 0, 0], true).await;

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { expected, got, .. }
                if expected.contains("13 bytes") && got.ends_with("then connection closed")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn garbage_rejected() {
        let (spec, _receiver) = tcp_fake(b"220 mail.example ESMTP\r\n".to_vec(), false).await;

        let report = probe(&spec, LIMIT).await;

        // "220 " read as a big-endian length is about 842 million bytes.
        assert!(
            matches!(&report.outcome, Outcome::BadReply { expected, .. } if expected.contains("packet length")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn options_too_short() {
        let (spec, _receiver) = tcp_fake(packet(OPTNEG, &[0, 0, 0, 6, 0, 0]), false).await;

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { expected, .. } if expected.contains("12 bytes")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn insane_versions_rejected() {
        for version in [0u32, 1, 7, 0x0100_0000] {
            let mut reply = good_reply();
            reply[5..9].copy_from_slice(&version.to_be_bytes());
            let (spec, _receiver) = tcp_fake(reply, false).await;

            let report = probe(&spec, LIMIT).await;

            assert!(
                matches!(&report.outcome, Outcome::BadReply { got, .. } if *got == format!("version {version}")),
                "version {version}: {report}"
            );
        }
    }

    #[tokio::test]
    async fn older_version_accepted() {
        let mut reply = good_reply();
        reply[5..9].copy_from_slice(&2u32.to_be_bytes());
        let (spec, _receiver) = tcp_fake(reply, false).await;

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { detail: Some(d), .. } if d == "milter protocol version 2"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn missing_socket_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ProbeSpec::new(
            Protocol::Milter,
            Some(Endpoint::Unix {
                path: dir.path().join("absent.sock"),
            }),
            "test",
        );

        let report = probe(&spec, LIMIT).await;

        assert!(
            matches!(report.outcome, Outcome::Refused { .. }),
            "{report}"
        );
    }
}
