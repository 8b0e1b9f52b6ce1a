//! OpenDKIM: the `Socket` setting of /etc/opendkim.conf.
//!
//! Debian 12's opendkim.service starts the daemon without options, so /etc/default/opendkim
//! is not read, as that file's own header states.

use std::path::Path;

use super::postfix::check_milter;
use super::root::Root;
use super::{fallback, file_source, parse_milter_address, relocated, warning, Discovery};

const PRESET: &str = "opendkim";
const CONFIG: &str = "/etc/opendkim.conf";
const EXAMPLE: &str = r#"probe = { milter = "local:/run/opendkim/opendkim.sock" }"#;

/// Finds the milter socket OpenDKIM listens on, and checks that Postfix reaches it there.
pub(super) fn discover(root: &Root) -> Discovery {
    let path = Path::new(CONFIG);
    let text = match root.read(path) {
        Ok(text) => text,
        Err(err) => {
            return Discovery {
                probes: fallback(PRESET, &err.describe(path)),
                warnings: Vec::new(),
            }
        }
    };

    let mut warnings = Vec::new();
    let sockets = socket_settings(&text);
    let Some((line, value)) = sockets.first() else {
        return Discovery {
            probes: fallback(PRESET, &format!("no Socket in {CONFIG}")),
            warnings,
        };
    };
    if let Some((second, _)) = sockets.get(1) {
        warnings.push(warning(
            PRESET,
            path,
            *second,
            format!(
                "Socket is set again here after line {line}; selfheal probes the first one, \
                 so remove the other"
            ),
            EXAMPLE,
        ));
    }

    let endpoint = match parse_milter_address(value) {
        Ok(endpoint) => endpoint,
        Err(reason) => {
            warnings.push(warning(
                PRESET,
                path,
                *line,
                format!("cannot use Socket \"{value}\": {reason}; probing the preset default"),
                EXAMPLE,
            ));
            return Discovery {
                probes: fallback(PRESET, &format!("invalid Socket in {CONFIG}")),
                warnings,
            };
        }
    };
    let source = file_source(path, *line);
    warnings.extend(check_milter(root, PRESET, "opendkim", &endpoint, &source));
    Discovery {
        probes: relocated(PRESET, endpoint, source),
        warnings,
    }
}

/// Lists the `Socket` settings with their lines, in file order. Names compare without case, and
/// a `#` starts a comment anywhere on a line.
fn socket_settings(text: &str) -> Vec<(usize, String)> {
    let mut sockets = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let content = raw.split('#').next().unwrap_or_default().trim();
        let mut parts = content.splitn(2, char::is_whitespace);
        let (Some(name), value) = (parts.next(), parts.next()) else {
            continue;
        };
        if name.eq_ignore_ascii_case("Socket") {
            sockets.push((index + 1, value.unwrap_or_default().trim().to_string()));
        }
    }
    sockets
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{tree, write};
    use super::*;
    use crate::probe::{Endpoint, Protocol};

    /// Builds an opendkim.conf in the spirit of Debian's, with `socket_lines` in the socket
    /// section.
    fn config(socket_lines: &str) -> String {
        format!(
            "# This is a basic configuration for signing and verifying.\n\
             Syslog\t\t\tyes\n\
             SyslogSuccess\t\tyes\n\
             Canonicalization\trelaxed/simple\n\
             UserID\t\t\topendkim\n\
             # Socket for the MTA connection (required).\n\
             {socket_lines}\
             PidFile\t\t\t/run/opendkim/opendkim.pid\n"
        )
    }

    fn discover_with(files: &[(&str, &str)]) -> Discovery {
        let dir = tree();
        for (path, text) in files {
            write(dir.path(), path, text);
        }
        discover(&Root::new(dir.path()))
    }

    fn only_endpoint(found: &Discovery) -> Option<Endpoint> {
        assert_eq!(found.probes.len(), 1, "{found:?}");
        found.probes[0].endpoint.clone()
    }

    #[test]
    fn debian_local_socket() {
        let text = config(
            "Socket\t\t\tlocal:/run/opendkim/opendkim.sock\n\
             #Socket\t\t\tinet:8891@localhost\n\
             #Socket\t\t\tlocal:/var/spool/postfix/opendkim/opendkim.sock\n",
        );
        let found = discover_with(&[(CONFIG, &text)]);
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
        assert_eq!(
            only_endpoint(&found),
            Some(Endpoint::Unix {
                path: "/run/opendkim/opendkim.sock".into()
            })
        );
        assert_eq!(found.probes[0].protocol, Protocol::Milter);
        assert_eq!(found.probes[0].source, "/etc/opendkim.conf:7");
    }

    #[test]
    fn inet_socket_with_comment() {
        let text = config("socket   inet:8891@localhost   # for Postfix\n");
        let found = discover_with(&[(CONFIG, &text)]);
        assert_eq!(
            only_endpoint(&found),
            Some(Endpoint::Tcp {
                host: "127.0.0.1".into(),
                port: 8891
            })
        );
        assert_eq!(found.probes[0].source, "/etc/opendkim.conf:7");
    }

    #[test]
    fn missing_config_falls_back() {
        let found = discover_with(&[]);
        assert!(found.warnings.is_empty());
        assert_eq!(
            found.probes[0].source,
            "preset (/etc/opendkim.conf not found)"
        );
        assert_eq!(
            only_endpoint(&found),
            Some(Endpoint::Unix {
                path: "/run/opendkim/opendkim.sock".into()
            })
        );
    }

    #[test]
    fn no_socket_falls_back() {
        let text = config("#Socket inet:8891@localhost\n");
        let found = discover_with(&[(CONFIG, &text)]);
        assert!(found.warnings.is_empty());
        assert_eq!(
            found.probes[0].source,
            "preset (no Socket in /etc/opendkim.conf)"
        );
    }

    #[test]
    fn invalid_socket_warns() {
        let text = config("Socket inet:dkim@localhost\n");
        let found = discover_with(&[(CONFIG, &text)]);
        assert_eq!(found.warnings.len(), 1);
        assert_eq!(found.warnings[0].line, 7);
        assert_eq!(found.warnings[0].file, Path::new(CONFIG));
        assert!(
            found.warnings[0]
                .message
                .contains(": cannot use Socket \"inet:dkim@localhost\""),
            "{}",
            found.warnings[0].message
        );
        assert_eq!(
            found.probes[0].source,
            "preset (invalid Socket in /etc/opendkim.conf)"
        );

        let found = discover_with(&[(CONFIG, &config("Socket\n"))]);
        assert_eq!(found.warnings.len(), 1);
        assert_eq!(found.warnings[0].line, 7);
    }

    #[test]
    fn second_socket_warns() {
        let text = config("Socket local:/run/opendkim/opendkim.sock\nSocket inet:8891\n");
        let found = discover_with(&[(CONFIG, &text)]);
        assert_eq!(found.warnings.len(), 1);
        assert_eq!(found.warnings[0].line, 8);
        assert_eq!(found.probes[0].source, "/etc/opendkim.conf:7");
    }

    #[test]
    fn postfix_mismatch_warns() {
        let text = config("Socket local:/run/opendkim/opendkim.sock\n");
        let master = "smtp      inet  n       -       y       -       -       smtpd\n";
        let main = "inet_interfaces = loopback-only\n\
                    smtpd_milters = unix:/run/opendkim/opendkim.sock\n";
        let found = discover_with(&[
            (CONFIG, &text),
            ("/etc/postfix/master.cf", master),
            ("/etc/postfix/main.cf", main),
        ]);
        assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
        let problem = &found.warnings[0];
        assert_eq!(problem.file, Path::new("/etc/postfix/main.cf"));
        assert_eq!(problem.line, 2);
        assert!(
            problem.message.contains("(/etc/opendkim.conf:7)"),
            "{}",
            problem.message
        );
        // The probe still goes where opendkim listens.
        assert_eq!(found.probes[0].source, "/etc/opendkim.conf:7");
    }

    #[test]
    fn postfix_chroot_match_is_quiet() {
        let text = config("Socket local:/var/spool/postfix/opendkim/opendkim.sock\n");
        let master = "smtp      inet  n       -       y       -       -       smtpd\n";
        let main = "smtpd_milters = unix:/opendkim/opendkim.sock\n";
        let found = discover_with(&[
            (CONFIG, &text),
            ("/etc/postfix/master.cf", master),
            ("/etc/postfix/main.cf", main),
        ]);
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
    }
}
