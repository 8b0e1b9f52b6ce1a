//! Unbound: the `interface:` and `port:` settings of the `server:` clause in
//! /etc/unbound/unbound.conf and the files it includes.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::root::{ReadError, Root};
use super::{fallback, file_source, relocated, unquote, warning, Discovery};
use crate::config::ConfigError;
use crate::probe::Endpoint;

const PRESET: &str = "unbound";
const CONFIG: &str = "/etc/unbound/unbound.conf";
/// Directory that relative include paths start from.
const CONFIG_DIR: &str = "/etc/unbound";
const DEFAULT_PORT: u16 = 53;
/// Clause names of unbound.conf(5); a settings key of the same form belongs to the clause
/// opened last.
const CLAUSES: [&str; 13] = [
    "server",
    "remote-control",
    "stub-zone",
    "forward-zone",
    "auth-zone",
    "view",
    "python",
    "dynlib",
    "dnscrypt",
    "cachedb",
    "dnstap",
    "rpz",
    "module-config",
];
/// Nesting of includes followed, against files that include each other.
const MAX_INCLUDE_DEPTH: usize = 10;
const EXAMPLE: &str = r#"probe = { dns = "127.0.0.1:53" }"#;

/// Finds the address to query: the first IPv4 loopback or wildcard interface, then the first
/// IPv6 one, then the first other address. Unbound listens on localhost without any
/// `interface:`, so the preset default stays then, with the `port:` setting applied.
pub(super) fn discover(root: &Root) -> Discovery {
    let path = Path::new(CONFIG);
    let mut reader = ConfigReader {
        root,
        clause: String::new(),
        interfaces: Vec::new(),
        port: None,
        warnings: Vec::new(),
    };
    if let Err(err) = reader.read_file(path, 0) {
        return Discovery {
            probes: fallback(PRESET, &err.describe(path)),
            warnings: reader.warnings,
        };
    }
    let ConfigReader {
        interfaces,
        port,
        mut warnings,
        ..
    } = reader;
    let port_number = port.as_ref().map_or(DEFAULT_PORT, |(port, _)| *port);

    if interfaces.is_empty() {
        let probes = match port {
            Some((port, source)) => {
                let endpoint = Endpoint::Tcp {
                    host: "127.0.0.1".to_string(),
                    port,
                };
                relocated(PRESET, endpoint, source)
            }
            None => fallback(
                PRESET,
                &format!("no interface: in {CONFIG} or its includes"),
            ),
        };
        return Discovery { probes, warnings };
    }

    let Some(chosen) = choose(&interfaces) else {
        let first = &interfaces[0];
        warnings.push(warning(
            PRESET,
            &first.file,
            first.line,
            "no interface: names an IP address, and selfheal does not look up the addresses \
             of interface names; probing the preset default"
                .to_string(),
            EXAMPLE,
        ));
        return Discovery {
            probes: fallback(PRESET, "interfaces named without an address"),
            warnings,
        };
    };
    let endpoint = Endpoint::Tcp {
        host: chosen.host.clone(),
        port: chosen.port.unwrap_or(port_number),
    };
    Discovery {
        probes: relocated(PRESET, endpoint, file_source(&chosen.file, chosen.line)),
        warnings,
    }
}

/// One `interface:` setting.
struct Interface {
    file: PathBuf,
    line: usize,
    /// The address to query: a wildcard becomes loopback. `None` for an interface name.
    address: Option<IpAddr>,
    host: String,
    /// The `@port` suffix, when given.
    port: Option<u16>,
}

/// Picks the interface to probe, in the order the function [`discover`] documents.
fn choose(interfaces: &[Interface]) -> Option<&Interface> {
    let loopback = |ipv4: bool| {
        interfaces.iter().find(|interface| {
            interface
                .address
                .is_some_and(|address| address.is_loopback() && address.is_ipv4() == ipv4)
        })
    };
    loopback(true).or_else(|| loopback(false)).or_else(|| {
        interfaces
            .iter()
            .find(|interface| interface.address.is_some())
    })
}

/// A token of unbound.conf with its line.
struct Token {
    line: usize,
    text: String,
    /// Whether the token was quoted, and so cannot be a key.
    quoted: bool,
}

impl Token {
    /// Returns the key name when the token is a `name:` key, such as `interface` for
    /// `interface:`.
    fn key(&self) -> Option<&str> {
        if self.quoted {
            return None;
        }
        let name = self.text.strip_suffix(':')?;
        let mut chars = name.chars();
        let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '-');
        valid.then_some(name)
    }
}

/// Splits unbound.conf text into tokens: whitespace separates them, quotes group them, and `#`
/// outside quotes starts a comment.
fn tokens(text: &str) -> Vec<Token> {
    let mut found = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let mut chars = line.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
                continue;
            }
            if c == '#' {
                break;
            }
            let mut word = String::new();
            let quote = (c == '"' || c == '\'').then_some(c);
            if let Some(quote) = quote {
                chars.next();
                for inner in chars.by_ref() {
                    if inner == quote {
                        break;
                    }
                    word.push(inner);
                }
            } else {
                while let Some(&inner) = chars.peek() {
                    if inner.is_whitespace() || inner == '#' {
                        break;
                    }
                    word.push(inner);
                    chars.next();
                }
            }
            found.push(Token {
                line: index + 1,
                text: word,
                quoted: quote.is_some(),
            });
        }
    }
    found
}

/// Walks unbound.conf and its includes, collecting the server's interfaces and port.
struct ConfigReader<'r> {
    root: &'r Root,
    /// The clause open at this point, empty at the top level. An `include:` file continues the
    /// clause of the including file, as unbound reads it in place.
    clause: String,
    interfaces: Vec<Interface>,
    /// The last `port:`, with the source of its setting.
    port: Option<(u16, String)>,
    warnings: Vec<ConfigError>,
}

impl ConfigReader<'_> {
    fn read_file(&mut self, file: &Path, depth: usize) -> Result<(), ReadError> {
        let text = self.root.read(file)?;
        let tokens = tokens(&text);
        let mut index = 0;
        while index < tokens.len() {
            let token = &tokens[index];
            index += 1;
            let Some(key) = token.key() else {
                continue;
            };
            if CLAUSES.contains(&key) {
                self.clause = key.to_string();
                continue;
            }
            let value = tokens
                .get(index)
                .filter(|next| next.key().is_none())
                .map(|next| next.text.as_str());
            if value.is_some() {
                index += 1;
            }
            self.setting(file, token.line, key, value, depth);
        }
        Ok(())
    }

    fn setting(&mut self, file: &Path, line: usize, key: &str, value: Option<&str>, depth: usize) {
        let Some(value) = value else {
            if matches!(key, "interface" | "port" | "include" | "include-toplevel") {
                self.warnings.push(warning(
                    PRESET,
                    file,
                    line,
                    format!("`{key}:` has no value; setting skipped"),
                    EXAMPLE,
                ));
            }
            return;
        };
        match key {
            "include" => self.include(file, line, value, depth),
            "include-toplevel" => {
                self.clause.clear();
                self.include(file, line, value, depth);
                self.clause.clear();
            }
            "interface" if self.clause == "server" => match parse_interface(value) {
                Ok((address, host, port)) => self.interfaces.push(Interface {
                    file: file.to_path_buf(),
                    line,
                    address,
                    host,
                    port,
                }),
                Err(reason) => self.warnings.push(warning(
                    PRESET,
                    file,
                    line,
                    format!("cannot use interface \"{value}\": {reason}; setting skipped"),
                    EXAMPLE,
                )),
            },
            "port" if self.clause == "server" => match value.parse::<u16>() {
                Ok(port) if port > 0 => self.port = Some((port, file_source(file, line))),
                _ => self.warnings.push(warning(
                    PRESET,
                    file,
                    line,
                    format!("invalid port \"{value}\"; expected 1 to 65535; setting skipped"),
                    EXAMPLE,
                )),
            },
            _ => {}
        }
    }

    /// Reads the files a pattern names, in name order. A pattern that matches nothing adds no
    /// settings, as in unbound.
    fn include(&mut self, file: &Path, line: usize, pattern: &str, depth: usize) {
        if depth >= MAX_INCLUDE_DEPTH {
            self.warnings.push(warning(
                PRESET,
                file,
                line,
                format!("includes nest deeper than {MAX_INCLUDE_DEPTH} files; not followed"),
                "",
            ));
            return;
        }
        let pattern = Path::new(CONFIG_DIR).join(unquote(pattern));
        let files = match self.root.glob(&pattern) {
            Ok(files) => files,
            Err(ReadError::NotFound) => return,
            Err(err) => {
                self.warnings.push(warning(
                    PRESET,
                    file,
                    line,
                    format!("cannot list included files: {}", err.describe(&pattern)),
                    "",
                ));
                return;
            }
        };
        for included in files {
            if let Err(err) = self.read_file(&included, depth + 1) {
                self.warnings.push(warning(
                    PRESET,
                    file,
                    line,
                    format!(
                        "cannot read included file: {}; its settings are unknown",
                        err.describe(&included)
                    ),
                    "",
                ));
            }
        }
    }
}

/// Reads an `interface:` value: an IP address or interface name with an optional `@port`.
/// Returns the address to query (wildcards become loopback, `lo` is 127.0.0.1), the host text
/// and the port.
fn parse_interface(value: &str) -> Result<(Option<IpAddr>, String, Option<u16>), String> {
    let (name, port) = match value.rsplit_once('@') {
        Some((name, port)) => match port.parse::<u16>() {
            Ok(port) if port > 0 => (name, Some(port)),
            _ => return Err(format!("invalid port \"{port}\" after @")),
        },
        None => (value, None),
    };
    if name.is_empty() {
        return Err("missing address".to_string());
    }
    let address = match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(address)) if address.is_unspecified() => Some(IpAddr::from([127, 0, 0, 1])),
        Ok(IpAddr::V6(address)) if address.is_unspecified() => {
            Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST))
        }
        Ok(address) => Some(address),
        Err(_) if name == "lo" => Some(IpAddr::from([127, 0, 0, 1])),
        Err(_)
            if name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
        {
            None
        }
        Err(_) => return Err("neither an IP address nor an interface name".to_string()),
    };
    let host = address.map_or_else(|| name.to_string(), |address| address.to_string());
    Ok((address, host, port))
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{tree, write};
    use super::*;
    use crate::probe::Protocol;

    /// Debian's layout: unbound.conf includes unbound.conf.d/*.conf at the top level.
    const DEBIAN_MAIN: &str = "# Unbound configuration file for Debian.\n\
         #\n\
         # See the unbound.conf(5) man page.\n\
         include-toplevel: \"/etc/unbound/unbound.conf.d/*.conf\"\n";

    const REMOTE_CONTROL: &str = "remote-control:\n\
         \x20 control-enable: yes\n\
         \x20 # the control interface is 127.0.0.1 and ::1 by default\n\
         \x20 control-interface: /run/unbound.ctl\n";

    fn discover_with(files: &[(&str, &str)]) -> Discovery {
        let dir = tree();
        for (path, text) in files {
            write(dir.path(), path, text);
        }
        discover(&Root::new(dir.path()))
    }

    fn summary(found: &Discovery) -> (String, String) {
        assert_eq!(found.probes.len(), 1, "{found:?}");
        let endpoint = found.probes[0]
            .endpoint
            .as_ref()
            .map_or_else(String::new, ToString::to_string);
        (endpoint, found.probes[0].source.clone())
    }

    #[test]
    fn debian_default_has_no_interface() {
        let found = discover_with(&[
            (CONFIG, DEBIAN_MAIN),
            (
                "/etc/unbound/unbound.conf.d/remote-control.conf",
                REMOTE_CONTROL,
            ),
            (
                "/etc/unbound/unbound.conf.d/root-auto-trust-anchor-file.conf",
                "server:\n    auto-trust-anchor-file: \"/var/lib/unbound/root.key\"\n",
            ),
        ]);
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
        assert_eq!(
            summary(&found),
            (
                "127.0.0.1:53".to_string(),
                "preset (no interface: in /etc/unbound/unbound.conf or its includes)".to_string()
            )
        );
        assert_eq!(
            found.probes[0].protocol,
            Protocol::Dns {
                name: "localhost.".into(),
                outside_name: None
            }
        );
    }

    #[test]
    fn interface_in_included_file() {
        let found = discover_with(&[
            (CONFIG, DEBIAN_MAIN),
            (
                "/etc/unbound/unbound.conf.d/remote-control.conf",
                REMOTE_CONTROL,
            ),
            (
                "/etc/unbound/unbound.conf.d/listen.conf",
                "server:\n    # interface: 192.0.2.53\n    interface: 192.0.2.1\n\
                 \x20   interface: 127.0.0.1\n    interface: ::1\n",
            ),
        ]);
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
        assert_eq!(
            summary(&found),
            (
                "127.0.0.1:53".to_string(),
                "/etc/unbound/unbound.conf.d/listen.conf:4".to_string()
            )
        );
    }

    #[test]
    fn choice_order() {
        let cases = [
            ("interface: 0.0.0.0\ninterface: ::0\n", "127.0.0.1:53", 2),
            ("interface: ::0\ninterface: 0.0.0.0\n", "127.0.0.1:53", 3),
            ("interface: ::1\ninterface: 192.0.2.1\n", "[::1]:53", 2),
            (
                "interface: 192.0.2.1\ninterface: 192.0.2.2\n",
                "192.0.2.1:53",
                2,
            ),
            ("interface: eth0\ninterface: lo\n", "127.0.0.1:53", 3),
            ("interface: 127.0.0.53@5353\n", "127.0.0.53:5353", 2),
            ("port: 5353\ninterface: 127.0.0.1\n", "127.0.0.1:5353", 3),
            ("interface: 127.0.0.1\nport: 5353\n", "127.0.0.1:5353", 2),
            ("interface: \"::1@5300\"\n", "[::1]:5300", 2),
        ];
        for (settings, endpoint, line) in cases {
            let text = format!("server:\n{settings}");
            let found = discover_with(&[(CONFIG, &text)]);
            assert!(
                found.warnings.is_empty(),
                "{settings}: {:?}",
                found.warnings
            );
            assert_eq!(
                summary(&found),
                (endpoint.to_string(), format!("{CONFIG}:{line}")),
                "{settings}"
            );
        }
    }

    #[test]
    fn other_clauses_ignored() {
        let text = "server:\n  verbosity: 1\nremote-control:\n  interface: 192.0.2.9\n\
                    forward-zone:\n  name: \".\"\n  forward-addr: 192.0.2.53\n";
        let found = discover_with(&[(CONFIG, text)]);
        assert_eq!(
            summary(&found).1,
            "preset (no interface: in /etc/unbound/unbound.conf or its includes)"
        );
    }

    #[test]
    fn port_only_moves_default() {
        let found = discover_with(&[(CONFIG, "server:\n  port: 5353 # local\n")]);
        assert_eq!(
            summary(&found),
            ("127.0.0.1:5353".to_string(), format!("{CONFIG}:2"))
        );
    }

    #[test]
    fn include_keeps_clause() {
        let found = discover_with(&[
            (CONFIG, "server:\n  include: \"local.d/*.conf\"\n"),
            (
                "/etc/unbound/local.d/a.conf",
                "  interface: 127.0.0.1@8053\n",
            ),
        ]);
        assert_eq!(
            summary(&found),
            (
                "127.0.0.1:8053".to_string(),
                "/etc/unbound/local.d/a.conf:1".to_string()
            )
        );
    }

    #[test]
    fn toplevel_include_resets_clause() {
        let found = discover_with(&[
            (
                CONFIG,
                "server:\ninclude-toplevel: \"/etc/unbound/conf.d/*.conf\"\ninterface: 192.0.2.1\n",
            ),
            (
                "/etc/unbound/conf.d/a.conf",
                "remote-control:\n  control-enable: yes\n",
            ),
        ]);
        // The interface after the include is outside any clause, so it is not read.
        assert_eq!(summary(&found).0, "127.0.0.1:53");
    }

    #[test]
    fn same_line_clause_and_setting() {
        let found = discover_with(&[(CONFIG, "server: interface: 127.0.0.1 port: 53\n")]);
        assert_eq!(
            summary(&found),
            ("127.0.0.1:53".to_string(), format!("{CONFIG}:1"))
        );
    }

    #[test]
    fn bad_values_warn() {
        let found = discover_with(&[(
            CONFIG,
            "server:\n  interface: 127.0.0.1@dns\n  port: 0\n  interface: 10.0.0.1/8\n  interface:\n",
        )]);
        let lines: Vec<usize> = found.warnings.iter().map(|warning| warning.line).collect();
        assert_eq!(lines, [2, 3, 4, 5], "{:?}", found.warnings);
        assert!(found
            .warnings
            .iter()
            .all(|w| w.key.is_empty() && w.message.starts_with("while reading unbound's")));
    }

    #[test]
    fn only_interface_names_warn() {
        let found = discover_with(&[(CONFIG, "server:\n  interface: eth0@53\n")]);
        assert_eq!(found.warnings.len(), 1);
        assert_eq!(found.warnings[0].line, 2);
        assert_eq!(
            summary(&found).1,
            "preset (interfaces named without an address)"
        );
    }

    #[test]
    fn missing_config() {
        let found = discover_with(&[]);
        assert_eq!(
            summary(&found).1,
            "preset (/etc/unbound/unbound.conf not found)"
        );
    }

    #[test]
    fn tokens_respect_quotes_and_comments() {
        let found = tokens("local-data: \"a.example. A 192.0.2.1\" # note\nname: '#x' #c\n");
        let texts: Vec<(&str, bool)> = found
            .iter()
            .map(|token| (token.text.as_str(), token.quoted))
            .collect();
        assert_eq!(
            texts,
            [
                ("local-data:", false),
                ("a.example. A 192.0.2.1", true),
                ("name:", false),
                ("#x", true),
            ]
        );
        assert_eq!(found[2].line, 2);
    }
}
