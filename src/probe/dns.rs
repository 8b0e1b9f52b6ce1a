//! DNS probe: a UDP query to a recursive resolver such as Unbound.
//!
//! Any well-formed reply to the query proves that the resolver runs, whatever its response
//! code, and the detail reports that code. A second, optional query for a name outside the
//! local zones distinguishes a dead resolver from a dead upstream: SERVFAIL there means the
//! resolver works but cannot reach the name servers it queries. That is a warning, because
//! restarting the resolver would not fix it.
//!
//! UDP can deliver late replies to earlier queries from the same port, so a reply whose id or
//! question does not match is ignored, and the probe keeps reading until its timeout.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use tokio::net::UdpSocket;

use super::io::{bad_reply, step};
use super::{Context, Endpoint, Outcome, Passed};

/// Size of the receive buffer, in bytes. Without EDNS a server sends at most 512 bytes over
/// UDP, so a longer datagram is cut short here and then fails to parse.
const MAX_DATAGRAM: usize = 4096;

/// Length of the fixed DNS header: id, flags and four section counts.
const HEADER_LEN: usize = 12;

/// Queries `name` and, when given, `outside_name` at the endpoint over UDP.
pub(super) async fn check(
    context: &Context<'_>,
    name: &str,
    outside_name: Option<&str>,
) -> Result<Passed, Outcome> {
    let (host, port) = match context.endpoint()? {
        Endpoint::Tcp { host, port } => (host.as_str(), *port),
        Endpoint::Unix { path } => {
            return Err(Outcome::Failed {
                error: format!(
                    "dns probe needs host:port such as 127.0.0.1:53, got the path {}",
                    path.display()
                ),
            })
        }
    };
    let query_name = parse_name(name)?;
    let outside = outside_name
        .map(|text| parse_name(text).map(|parsed| (text, parsed)))
        .transpose()?;

    // A connected socket receives datagrams from the resolver's address only.
    let socket = step("connect", context.timeout, open_socket(host, port)).await?;

    // The first reply with our id and question shows that the resolver is alive.
    let reply = exchange(&socket, &query_name, "reply", context.timeout).await?;
    let mut detail = format!("{name}: {}", summarize(&reply));
    let mut warning = None;

    // A SERVFAIL or no reply for an outside name means the upstream is unreachable.
    if let Some((outside_text, outside_name)) = outside {
        match exchange(&socket, &outside_name, "outside reply", context.timeout).await {
            Ok(reply) => {
                detail.push_str(&format!("; {outside_text}: {}", summarize(&reply)));
                match reply.response_code() {
                    ResponseCode::NoError | ResponseCode::NXDomain => {}
                    ResponseCode::ServFail => {
                        warning = Some(format!(
                            "resolver up but upstream unreachable: SERVFAIL for {outside_text}"
                        ));
                    }
                    other => {
                        warning = Some(format!(
                            "resolver answered {} for {outside_text}; check its access control \
                             and forwarders",
                            mnemonic(other)
                        ));
                    }
                }
            }
            Err(Outcome::TimedOut { after, .. }) => {
                warning = Some(format!(
                    "resolver up but no reply for {outside_text} within {:.1} s: upstream \
                     unreachable or slow",
                    after.as_secs_f64()
                ));
            }
            Err(other) => return Err(other),
        }
    }

    Ok(Passed {
        detail: Some(detail),
        warning,
    })
}

/// Parses a configured name into a DNS name, accepting international names.
fn parse_name(text: &str) -> Result<Name, Outcome> {
    let invalid = |reason: String| Outcome::Failed {
        error: format!(
            "invalid DNS name {text:?} in the dns probe: {reason}; use a name such as localhost."
        ),
    };
    if text.is_empty() {
        return Err(invalid("the name is empty".to_string()));
    }
    Name::from_utf8(text).map_err(|error| invalid(error.to_string()))
}

/// Binds an ephemeral UDP port of the resolver's address family and connects it there.
async fn open_socket(host: &str, port: u16) -> std::io::Result<UdpSocket> {
    let mut last_error = None;
    for address in tokio::net::lookup_host((host, port)).await? {
        let local: SocketAddr = match address {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        let socket = UdpSocket::bind(local).await?;
        match socket.connect(address).await {
            Ok(()) => return Ok(socket),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )
    }))
}

/// Sends an A query for `name` with a new id and waits, within `limit`, for its reply.
async fn exchange(
    socket: &UdpSocket,
    name: &Name,
    step_name: &str,
    limit: Duration,
) -> Result<Message, Outcome> {
    let id = random_id();
    let request = build_query(id, name)?;
    step("send", limit, socket.send(&request)).await?;

    let receive = async {
        let mut buffer = [0u8; MAX_DATAGRAM];
        loop {
            let count = socket.recv(&mut buffer).await?;
            match match_reply(&buffer[..count], id, name, step_name) {
                Ok(Some(reply)) => return Ok(Ok(reply)),
                // A stale reply to an earlier query: keep waiting for ours.
                Ok(None) => continue,
                Err(outcome) => return Ok(Err(outcome)),
            }
        }
    };
    step(step_name, limit, receive).await?
}

/// Encodes a standard query for the A records of `name` with recursion desired.
fn build_query(id: u16, name: &Name) -> Result<Vec<u8>, Outcome> {
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name.clone(), RecordType::A));
    message.to_vec().map_err(|error| Outcome::Failed {
        error: format!("cannot encode a DNS query for {name}: {error}"),
    })
}

/// Checks one datagram against the query. Returns the reply when it answers the query, `None`
/// when it belongs to another query, and a bad reply when it is no DNS response.
pub(super) fn match_reply(
    datagram: &[u8],
    id: u16,
    name: &Name,
    step_name: &str,
) -> Result<Option<Message>, Outcome> {
    if datagram.len() < HEADER_LEN {
        return Err(bad_reply(
            step_name,
            &format!("a DNS message of at least {HEADER_LEN} bytes"),
            datagram,
        ));
    }
    if u16::from_be_bytes([datagram[0], datagram[1]]) != id {
        return Ok(None);
    }
    let reply = Message::from_vec(datagram)
        .map_err(|_| bad_reply(step_name, "a well-formed DNS message", datagram))?;
    if reply.message_type() != MessageType::Response {
        return Err(bad_reply(
            step_name,
            "a DNS response (QR bit set)",
            datagram,
        ));
    }
    // A reply with our id but another question answers a query that reused the id.
    let asked = reply
        .queries()
        .first()
        .is_some_and(|query| query.name() == name && query.query_type() == RecordType::A);
    if !asked {
        return Ok(None);
    }
    Ok(Some(reply))
}

/// Returns a query id that differs between queries. `RandomState` is seeded from the OS and gives
/// each instance new keys, so this needs no random number crate. The id does not need to
/// resist forgery: the socket is connected and the question is compared too.
fn random_id() -> u16 {
    let hash = RandomState::new().build_hasher().finish().to_le_bytes();
    u16::from_le_bytes([hash[0], hash[1]])
}

/// Summarizes a reply as its response code and answer count, such as "NOERROR, 1 answer".
pub(super) fn summarize(reply: &Message) -> String {
    let count = reply.answers().len();
    let noun = if count == 1 { "answer" } else { "answers" };
    format!("{}, {count} {noun}", mnemonic(reply.response_code()))
}

/// Names the response code as RFC 1035 and dig write it.
fn mnemonic(code: ResponseCode) -> String {
    match code {
        ResponseCode::NoError => "NOERROR".to_string(),
        ResponseCode::FormErr => "FORMERR".to_string(),
        ResponseCode::ServFail => "SERVFAIL".to_string(),
        ResponseCode::NXDomain => "NXDOMAIN".to_string(),
        ResponseCode::NotImp => "NOTIMP".to_string(),
        ResponseCode::Refused => "REFUSED".to_string(),
        other => format!("RCODE {}", u16::from(other)),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::sync::{Arc, Mutex};

    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{RData, Record};

    use super::super::{run, ProbeReport, ProbeSpec, Protocol};
    use super::*;

    const LIMIT: Duration = Duration::from_secs(2);

    /// Bound on each test, so that a probe that hangs fails the test.
    const TEST_LIMIT: Duration = Duration::from_secs(10);

    /// Builds the datagrams a fake resolver sends for one request.
    type Responder = fn(&Message) -> Vec<Vec<u8>>;

    /// Starts a fake resolver on 127.0.0.1 that replies to each request with `respond` and
    /// records the requests.
    async fn fake(respond: Responder) -> (Endpoint, Arc<Mutex<Vec<Message>>>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = socket.local_addr().unwrap().to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            let mut buffer = [0u8; 512];
            loop {
                let Ok((count, peer)) = socket.recv_from(&mut buffer).await else {
                    return;
                };
                let Ok(request) = Message::from_vec(&buffer[..count]) else {
                    continue;
                };
                for datagram in respond(&request) {
                    let _ = socket.send_to(&datagram, peer).await;
                }
                seen.lock().unwrap().push(request);
            }
        });
        (Endpoint::parse(&address).unwrap(), requests)
    }

    /// Builds a reply to `request` with `code` and, for NOERROR, one A record.
    fn reply(request: &Message, code: ResponseCode) -> Vec<u8> {
        let mut message = Message::new();
        message
            .set_id(request.id())
            .set_message_type(MessageType::Response)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .set_response_code(code)
            .add_queries(request.queries().to_vec());
        if code == ResponseCode::NoError {
            let name = request.queries()[0].name().clone();
            message.add_answer(Record::from_rdata(
                name,
                60,
                RData::A(A(Ipv4Addr::LOCALHOST)),
            ));
        }
        message.to_vec().unwrap()
    }

    fn is_outside(request: &Message) -> bool {
        request.queries()[0].name().to_ascii() == "outside.example."
    }

    async fn probe(endpoint: Endpoint, outside: Option<&str>, limit: Duration) -> ProbeReport {
        let spec = ProbeSpec::new(
            Protocol::Dns {
                name: "localhost.".into(),
                outside_name: outside.map(str::to_string),
            },
            Some(endpoint),
            "test",
        );
        tokio::time::timeout(TEST_LIMIT, run(&spec, limit))
            .await
            .expect("probe hung")
    }

    #[tokio::test]
    async fn noerror_healthy() {
        let (endpoint, requests) =
            fake(|request| vec![reply(request, ResponseCode::NoError)]).await;

        let report = probe(endpoint, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { detail: Some(d), warning: None, .. }
                if d == "localhost.: NOERROR, 1 answer"),
            "{report}"
        );
        let requests = requests.lock().unwrap();
        assert_eq!(requests.len(), 1);
        assert!(requests[0].recursion_desired());
        assert_eq!(requests[0].message_type(), MessageType::Query);
        assert_eq!(requests[0].queries()[0].query_type(), RecordType::A);
        assert_eq!(requests[0].queries()[0].name().to_ascii(), "localhost.");
    }

    #[tokio::test]
    async fn servfail_still_alive() {
        let (endpoint, _) = fake(|request| vec![reply(request, ResponseCode::ServFail)]).await;

        let report = probe(endpoint, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { detail: Some(d), .. }
                if d == "localhost.: SERVFAIL, 0 answers"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn stale_id_ignored() {
        let (endpoint, _) = fake(|request| {
            let mut stale = reply(request, ResponseCode::ServFail);
            stale[0] ^= 0xff;
            vec![stale, reply(request, ResponseCode::NoError)]
        })
        .await;

        let report = probe(endpoint, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { detail: Some(d), .. } if d.contains("NOERROR")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn only_stale_times_out() {
        let (endpoint, _) = fake(|request| {
            let mut stale = reply(request, ResponseCode::NoError);
            stale[1] ^= 0x01;
            vec![stale]
        })
        .await;

        let report = probe(endpoint, None, Duration::from_millis(300)).await;

        assert_eq!(
            report.outcome,
            Outcome::TimedOut {
                step: "reply".into(),
                after: Duration::from_millis(300)
            }
        );
    }

    #[tokio::test]
    async fn other_question_ignored() {
        let (endpoint, _) = fake(|request| {
            let mut other = request.clone();
            other.queries_mut()[0] =
                Query::query(Name::from_ascii("other.").unwrap(), RecordType::A);
            vec![
                reply(&other, ResponseCode::NoError),
                reply(request, ResponseCode::NXDomain),
            ]
        })
        .await;

        let report = probe(endpoint, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { detail: Some(d), .. } if d.contains("NXDOMAIN")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn garbage_with_our_id() {
        let (endpoint, _) = fake(|request| {
            let mut garbage = request.id().to_be_bytes().to_vec();
            garbage.extend_from_slice(&[0x81, 0x80, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 7, b'x']);
            vec![garbage]
        })
        .await;

        let report = probe(endpoint, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { step, expected, .. }
                if step == "reply" && expected == "a well-formed DNS message"),
            "{report}"
        );
    }

    #[tokio::test]
    async fn short_datagram_rejected() {
        let (endpoint, _) = fake(|_| vec![b"pong".to_vec()]).await;

        let report = probe(endpoint, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { got, .. } if got == "\"pong\""),
            "{report}"
        );
    }

    #[tokio::test]
    async fn query_echo_rejected() {
        // A reflector that sends the query back has the right id but no QR bit.
        let (endpoint, _) = fake(|request| vec![request.to_vec().unwrap()]).await;

        let report = probe(endpoint, None, LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::BadReply { expected, .. } if expected.contains("QR bit")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn silence_times_out() {
        let (endpoint, requests) = fake(|_| Vec::new()).await;

        let report = probe(endpoint, None, Duration::from_millis(300)).await;

        assert_eq!(
            report.outcome,
            Outcome::TimedOut {
                step: "reply".into(),
                after: Duration::from_millis(300)
            }
        );
        assert_eq!(requests.lock().unwrap().len(), 1, "the query was sent");
    }

    #[tokio::test]
    async fn closed_port_refused() {
        // Linux replies to a datagram for a closed loopback port with ICMP port unreachable, which
        // a connected socket reports as ECONNREFUSED.
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = socket.local_addr().unwrap().to_string();
        drop(socket);

        let report = probe(Endpoint::parse(&address).unwrap(), None, LIMIT).await;

        assert!(
            matches!(report.outcome, Outcome::Refused { .. }),
            "{report}"
        );
    }

    #[tokio::test]
    async fn outside_servfail_warns() {
        let (endpoint, requests) = fake(|request| {
            let code = if is_outside(request) {
                ResponseCode::ServFail
            } else {
                ResponseCode::NoError
            };
            vec![reply(request, code)]
        })
        .await;

        let report = probe(endpoint, Some("outside.example."), LIMIT).await;

        let Outcome::Healthy {
            detail, warning, ..
        } = &report.outcome
        else {
            panic!("expected healthy, got {report}");
        };
        assert_eq!(
            detail.as_deref(),
            Some("localhost.: NOERROR, 1 answer; outside.example.: SERVFAIL, 0 answers")
        );
        assert_eq!(
            warning.as_deref(),
            Some("resolver up but upstream unreachable: SERVFAIL for outside.example.")
        );
        let requests = requests.lock().unwrap();
        assert_eq!(requests.len(), 2);
        assert_ne!(
            requests[0].id(),
            requests[1].id(),
            "each query gets a new id"
        );
    }

    #[tokio::test]
    async fn outside_noerror_no_warning() {
        let (endpoint, _) = fake(|request| vec![reply(request, ResponseCode::NoError)]).await;

        let report = probe(endpoint, Some("outside.example."), LIMIT).await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { warning: None, detail: Some(d), .. }
                if d.ends_with("outside.example.: NOERROR, 1 answer")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn outside_silence_warns() {
        let (endpoint, _) = fake(|request| {
            if is_outside(request) {
                Vec::new()
            } else {
                vec![reply(request, ResponseCode::NoError)]
            }
        })
        .await;

        let report = probe(
            endpoint,
            Some("outside.example."),
            Duration::from_millis(300),
        )
        .await;

        assert!(
            matches!(&report.outcome, Outcome::Healthy { warning: Some(w), .. }
                if w.contains("no reply for outside.example. within 0.3 s")),
            "{report}"
        );
    }

    #[tokio::test]
    async fn main_silence_skips_outside() {
        let (endpoint, requests) = fake(|_| Vec::new()).await;

        let report = probe(
            endpoint,
            Some("outside.example."),
            Duration::from_millis(300),
        )
        .await;

        assert!(
            matches!(&report.outcome, Outcome::TimedOut { step, .. } if step == "reply"),
            "{report}"
        );
        assert_eq!(requests.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn invalid_name_fails() {
        let (endpoint, requests) = fake(|_| Vec::new()).await;
        let spec = ProbeSpec::new(
            Protocol::Dns {
                name: "a..b".into(),
                outside_name: None,
            },
            Some(endpoint),
            "test",
        );

        let report = tokio::time::timeout(TEST_LIMIT, run(&spec, LIMIT))
            .await
            .unwrap();

        assert!(
            matches!(&report.outcome, Outcome::Failed { error } if error.contains("invalid DNS name \"a..b\"")),
            "{report}"
        );
        assert!(requests.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn unix_endpoint_fails() {
        let spec = ProbeSpec::new(
            Protocol::Dns {
                name: "localhost.".into(),
                outside_name: None,
            },
            Some(Endpoint::Unix {
                path: "/run/unbound.sock".into(),
            }),
            "test",
        );

        let report = tokio::time::timeout(TEST_LIMIT, run(&spec, LIMIT))
            .await
            .unwrap();

        assert!(
            matches!(&report.outcome, Outcome::Failed { error } if error.contains("needs host:port")),
            "{report}"
        );
    }

    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();

        assert!(ids.len() > 32, "{} distinct ids of 64", ids.len());
    }
}
