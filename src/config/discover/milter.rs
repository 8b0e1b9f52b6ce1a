//! Milter socket addresses, in the notation of libmilter (OpenDKIM's `Socket`, spamass-milter's
//! socket) and of Postfix's `smtpd_milters`.

use std::net::{IpAddr, Ipv6Addr};

use crate::probe::Endpoint;

/// Parses a milter address into the endpoint a client connects to:
///
/// - `unix:/path`, `local:/path` or a bare `/path`: a Unix socket;
/// - `inet:PORT@HOST`, `inet6:PORT@HOST` (libmilter), or `inet:HOST:PORT` (Postfix);
/// - `inet:PORT` or `inet6:PORT`: every interface of that family.
///
/// A missing or wildcard host becomes the loopback address of its family, and so does
/// `localhost`, because a listener there is reached on loopback.
pub(in crate::config) fn parse_milter_address(text: &str) -> Result<Endpoint, String> {
    let text = text.trim();
    if text.starts_with('/') {
        return Ok(Endpoint::Unix { path: text.into() });
    }
    let Some((kind, rest)) = text.split_once(':') else {
        return Err(format!(
            "{text:?} is neither a socket path nor an address; expected inet:PORT@HOST or \
             unix:/path"
        ));
    };
    match kind.to_ascii_lowercase().as_str() {
        "unix" | "local" => {
            if rest.starts_with('/') {
                Ok(Endpoint::Unix { path: rest.into() })
            } else {
                Err(format!(
                    "the socket path in {text:?} is not absolute; write it as \
                     unix:/run/opendkim/opendkim.sock"
                ))
            }
        }
        "inet" => inet_endpoint(rest, false),
        "inet6" => inet_endpoint(rest, true),
        _ => Err(format!(
            "unknown address type \"{kind}:\" in {text:?}; expected unix:, local:, inet: or \
             inet6:"
        )),
    }
}

/// Reads the part after `inet:` or `inet6:`: `PORT@HOST`, `HOST:PORT` or `PORT`.
fn inet_endpoint(rest: &str, ipv6: bool) -> Result<Endpoint, String> {
    let (port, host) = if let Some((port, host)) = rest.split_once('@') {
        (port, host)
    } else if let Some((host, port)) = rest.rsplit_once(':') {
        (port, host)
    } else {
        (rest, "")
    };
    let port = match port.parse::<u16>() {
        Ok(port) if port > 0 => port,
        _ => {
            return Err(format!(
                "invalid port \"{port}\"; expected a number from 1 to 65535, as in \
                 inet:8891@localhost"
            ))
        }
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = if ipv6 { "::1" } else { "127.0.0.1" };
    let host = match host {
        "" | "*" | "localhost" => loopback,
        _ if host.eq_ignore_ascii_case("INADDR_ANY") => loopback,
        _ => match host.parse::<IpAddr>() {
            Ok(address) if address.is_unspecified() => loopback,
            Ok(_) => host,
            Err(_) if host.contains(':') || host.contains(char::is_whitespace) => {
                return Err(format!("invalid host \"{host}\""));
            }
            Err(_) => host,
        },
    };
    if ipv6 && host.parse::<Ipv6Addr>().is_err() && host.parse::<IpAddr>().is_ok() {
        return Err(format!(
            "inet6: needs an IPv6 address, found \"{host}\"; use inet: for IPv4"
        ));
    }
    Ok(Endpoint::Tcp {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Result<Endpoint, String> {
        Ok(Endpoint::Tcp {
            host: host.into(),
            port,
        })
    }

    fn unix(path: &str) -> Result<Endpoint, String> {
        Ok(Endpoint::Unix { path: path.into() })
    }

    #[test]
    fn libmilter_forms() {
        let cases = [
            ("inet:8891@localhost", tcp("127.0.0.1", 8891)),
            ("inet:8891", tcp("127.0.0.1", 8891)),
            ("inet:8891@0.0.0.0", tcp("127.0.0.1", 8891)),
            ("inet:12345@192.0.2.1", tcp("192.0.2.1", 12345)),
            ("inet:12345@[192.0.2.1]", tcp("192.0.2.1", 12345)),
            ("inet:8891@mail.example.org", tcp("mail.example.org", 8891)),
            ("inet6:8891@::1", tcp("::1", 8891)),
            ("inet6:8891", tcp("::1", 8891)),
            ("inet6:8891@[::]", tcp("::1", 8891)),
            ("inet6:8891@localhost", tcp("::1", 8891)),
            ("INET:8891@localhost", tcp("127.0.0.1", 8891)),
            (
                "local:/run/opendkim/opendkim.sock",
                unix("/run/opendkim/opendkim.sock"),
            ),
            (
                "unix:/var/spool/postfix/spamass/spamass.sock",
                unix("/var/spool/postfix/spamass/spamass.sock"),
            ),
            ("/run/x.sock", unix("/run/x.sock")),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_milter_address(text), expected, "{text}");
        }
    }

    #[test]
    fn postfix_and_plain_forms() {
        assert_eq!(
            parse_milter_address("inet:localhost:8891"),
            tcp("127.0.0.1", 8891)
        );
        assert_eq!(
            parse_milter_address("inet:127.0.0.1:8892"),
            tcp("127.0.0.1", 8892)
        );
        assert_eq!(parse_milter_address("inet6:[::1]:8891"), tcp("::1", 8891));
        // libmilter has no bare host:port; the probe config reads that form itself.
        assert!(parse_milter_address("127.0.0.1:8891").is_err());
    }

    #[test]
    fn invalid_forms() {
        for text in [
            "inet:",
            "inet:0@localhost",
            "inet:smtp@localhost",
            "inet:99999",
            "unix:opendkim/opendkim.sock",
            "tcp:8891@localhost",
            "opendkim.sock",
            "inet6:8891@127.0.0.1",
            "inet:8891@bad host",
        ] {
            let result = parse_milter_address(text);
            assert!(result.is_err(), "{text}: {result:?}");
        }
        let Err(message) = parse_milter_address("tcp:8891@localhost") else {
            panic!("tcp: accepted");
        };
        assert!(
            message.contains("expected unix:, local:, inet: or inet6:"),
            "{message}"
        );
    }
}
