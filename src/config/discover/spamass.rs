//! spamass-milter: the `SOCKET` variable of /etc/default/spamass-milter, which Debian's init
//! script sources.

use std::collections::HashMap;
use std::path::Path;

use super::postfix::check_milter;
use super::root::Root;
use super::{fallback, file_source, parse_milter_address, relocated, unquote, warning, Discovery};

const PRESET: &str = "spamass-milter";
const CONFIG: &str = "/etc/default/spamass-milter";
const EXAMPLE: &str = r#"probe = { milter = "unix:/var/spool/postfix/spamass/spamass.sock" }"#;

/// Finds the milter socket spamass-milter listens on, and checks that Postfix reaches it
/// there. Without `SOCKET`, Debian's init script uses the preset's default when Postfix is
/// installed.
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
    let Some(socket) = socket_assignment(&text) else {
        let probes = fallback(PRESET, &format!("SOCKET not set in {CONFIG}"));
        if let Some(Some(endpoint)) = probes.first().map(|probe| probe.endpoint.clone()) {
            warnings.extend(check_milter(
                root,
                PRESET,
                "spamass",
                &endpoint,
                "preset default",
            ));
        }
        return Discovery { probes, warnings };
    };

    let parsed = match &socket.value {
        Ok(value) => parse_milter_address(value),
        Err(variable) => Err(format!("${variable} is not set earlier in the file")),
    };
    let line = socket.line;
    let endpoint = match parsed {
        Ok(endpoint) => endpoint,
        Err(reason) => {
            warnings.push(warning(
                PRESET,
                path,
                line,
                format!(
                    "cannot use SOCKET \"{}\": {reason}; probing the preset default",
                    socket.written
                ),
                EXAMPLE,
            ));
            return Discovery {
                probes: fallback(PRESET, &format!("invalid SOCKET in {CONFIG}")),
                warnings,
            };
        }
    };
    let source = file_source(path, line);
    warnings.extend(check_milter(root, PRESET, "spamass", &endpoint, &source));
    Discovery {
        probes: relocated(PRESET, endpoint, source),
        warnings,
    }
}

/// The last `SOCKET=` assignment of the file.
struct SocketAssignment {
    line: usize,
    /// The value as written, without quotes.
    written: String,
    /// The value with `$NAME` and `${NAME}` replaced by earlier assignments of the file, or the
    /// name of a variable the file does not set.
    value: Result<String, String>,
}

/// Finds the last `SOCKET=` assignment of a shell file of variable assignments.
fn socket_assignment(text: &str) -> Option<SocketAssignment> {
    let mut variables: HashMap<String, String> = HashMap::new();
    let mut socket = None;
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let line = line.strip_prefix("export ").unwrap_or(line).trim_start();
        if line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let written = unquote(strip_comment(value.trim()));
        let expanded = expand(written, &variables);
        if let Ok(text) = &expanded {
            variables.insert(name.to_string(), text.clone());
        }
        if name == "SOCKET" {
            socket = Some(SocketAssignment {
                line: index + 1,
                written: written.to_string(),
                value: expanded,
            });
        }
    }
    socket
}

/// Removes a `#` comment that follows an unquoted value after whitespace.
fn strip_comment(value: &str) -> &str {
    if value.starts_with(['"', '\'']) {
        return value;
    }
    match value.find(" #").or_else(|| value.find("\t#")) {
        Some(end) => value[..end].trim_end(),
        None => value,
    }
}

/// Replaces `$NAME` and `${NAME}` with the values in `variables`.
fn expand(value: &str, variables: &HashMap<String, String>) -> Result<String, String> {
    let mut expanded = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('$') {
        expanded.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let (name, remainder) = match after.strip_prefix('{') {
            Some(braced) => match braced.split_once('}') {
                Some((name, remainder)) => (name, remainder),
                None => return Err(braced.to_string()),
            },
            None => {
                let end = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.len());
                (&after[..end], &after[end..])
            }
        };
        match variables.get(name) {
            Some(found) => expanded.push_str(found),
            None => return Err(name.to_string()),
        }
        rest = remainder;
    }
    expanded.push_str(rest);
    Ok(expanded)
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{tree, write};
    use super::*;
    use crate::probe::{Endpoint, Protocol};

    /// Builds a defaults file in the spirit of Debian's, with `socket_lines` in its middle.
    fn defaults(socket_lines: &str) -> String {
        format!(
            "# spamass-milt startup defaults\n\
             \n\
             # OPTIONS are passed directly to spamass-milter.\n\
             OPTIONS=\"-u spamass-milter -i 127.0.0.1\"\n\
             \n\
             {socket_lines}\
             # SOCKETOWNER=\"postfix:postfix\"\n\
             # SOCKETMODE=\"0660\"\n"
        )
    }

    fn discover_with(files: &[(&str, &str)]) -> Discovery {
        let dir = tree();
        for (path, text) in files {
            write(dir.path(), path, text);
        }
        discover(&Root::new(dir.path()))
    }

    fn unix(path: &str) -> Option<Endpoint> {
        Some(Endpoint::Unix { path: path.into() })
    }

    #[test]
    fn commented_socket_keeps_default() {
        let text = defaults("# SOCKET=\"/var/spool/postfix/spamass/spamass.sock\"\n");
        let found = discover_with(&[(CONFIG, &text)]);
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
        assert_eq!(found.probes.len(), 1);
        assert_eq!(
            found.probes[0].source,
            "preset (SOCKET not set in /etc/default/spamass-milter)"
        );
        assert_eq!(
            found.probes[0].endpoint,
            unix("/var/spool/postfix/spamass/spamass.sock")
        );
        assert_eq!(found.probes[0].protocol, Protocol::Milter);
    }

    #[test]
    fn quoted_socket_path() {
        let text = defaults("SOCKET=\"/run/spamass/spamass.sock\"\n");
        let found = discover_with(&[(CONFIG, &text)]);
        assert_eq!(found.probes[0].endpoint, unix("/run/spamass/spamass.sock"));
        assert_eq!(found.probes[0].source, "/etc/default/spamass-milter:6");
    }

    #[test]
    fn unusual_socket_forms() {
        let cases = [
            ("SOCKET=inet:7890@localhost # tcp\n", "127.0.0.1:7890"),
            (
                "export SOCKET='unix:/run/spamass.sock'\n",
                "/run/spamass.sock",
            ),
            (
                "RUNDIR=/var/spool/postfix/spamass\nSOCKET=\"${RUNDIR}/spamass.sock\"\n",
                "/var/spool/postfix/spamass/spamass.sock",
            ),
            (
                "SOCKET=/run/first.sock\nSOCKET=/run/second.sock\n",
                "/run/second.sock",
            ),
        ];
        for (lines, expected) in cases {
            let found = discover_with(&[(CONFIG, &defaults(lines))]);
            assert!(found.warnings.is_empty(), "{lines}: {:?}", found.warnings);
            let endpoint = found.probes[0].endpoint.as_ref().map(ToString::to_string);
            assert_eq!(endpoint.as_deref(), Some(expected), "{lines}");
        }
    }

    #[test]
    fn unknown_variable_warns() {
        let text = defaults("SOCKET=$SPOOL/spamass.sock\n");
        let found = discover_with(&[(CONFIG, &text)]);
        assert_eq!(found.warnings.len(), 1);
        assert_eq!(found.warnings[0].line, 6);
        assert!(
            found.warnings[0]
                .message
                .contains(": cannot use SOCKET \"$SPOOL/spamass.sock\": $SPOOL is not set"),
            "{}",
            found.warnings[0].message
        );
        assert_eq!(
            found.probes[0].source,
            "preset (invalid SOCKET in /etc/default/spamass-milter)"
        );
    }

    #[test]
    fn relative_socket_warns() {
        let found = discover_with(&[(CONFIG, &defaults("SOCKET=spamass.sock\n"))]);
        assert_eq!(found.warnings.len(), 1);
        assert!(found.warnings[0]
            .message
            .starts_with("while reading spamass-milter's own config to find what to probe: "));
    }

    #[test]
    fn missing_defaults_file() {
        let found = discover_with(&[]);
        assert_eq!(
            found.probes[0].source,
            "preset (/etc/default/spamass-milter not found)"
        );
    }

    #[test]
    fn postfix_view_checked() {
        let master = "smtp      inet  n       -       y       -       -       smtpd\n";
        let good = "smtpd_milters = unix:/spamass/spamass.sock\n";
        let found = discover_with(&[
            (CONFIG, &defaults("")),
            ("/etc/postfix/master.cf", master),
            ("/etc/postfix/main.cf", good),
        ]);
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);

        let wrong = "smtpd_milters = unix:/var/spool/postfix/spamass/spamass.sock\n";
        let found = discover_with(&[
            (CONFIG, &defaults("")),
            ("/etc/postfix/master.cf", master),
            ("/etc/postfix/main.cf", wrong),
        ]);
        assert_eq!(found.warnings.len(), 1, "{:?}", found.warnings);
        assert!(
            found.warnings[0]
                .message
                .contains("/var/spool/postfix/var/spool/postfix/spamass/spamass.sock"),
            "{}",
            found.warnings[0].message
        );
    }

    #[test]
    fn expand_cases() {
        let variables: HashMap<String, String> =
            [("A".to_string(), "x".to_string())].into_iter().collect();
        assert_eq!(expand("$A/y", &variables), Ok("x/y".into()));
        assert_eq!(expand("${A}y", &variables), Ok("xy".into()));
        assert_eq!(expand("plain", &variables), Ok("plain".into()));
        assert_eq!(expand("$B", &variables), Err("B".into()));
        assert_eq!(expand("${A", &variables), Err("A".into()));
    }
}
