//! MariaDB and MySQL: the server's `socket` option in my.cnf and the files it includes.

use std::path::{Path, PathBuf};

use super::root::{ReadError, Root};
use super::{fallback, file_source, relocated, unquote, warning, Discovery};
use crate::config::ConfigError;
use crate::probe::Endpoint;

const PRESET: &str = "mariadb";
/// Option files in the order the server reads them; a later setting overrides an earlier one.
const OPTION_FILES: [&str; 2] = ["/etc/my.cnf", "/etc/mysql/my.cnf"];
/// Option groups the server reads. Version groups such as `[mariadb-10.11]` are not read,
/// because the installed version is not known here.
const SERVER_GROUPS: [&str; 5] = ["client-server", "server", "mysqld", "mariadb", "mariadbd"];
/// Nesting of `!include` and `!includedir` followed, against files that include each other.
const MAX_INCLUDE_DEPTH: usize = 10;
const EXAMPLE: &str = r#"probe = { mysql = "/run/mysqld/mysqld.sock" }"#;

/// Debian's maintenance credentials, readable by root only. With them the probe logs in and
/// runs `SELECT 1`; a handshake alone would make MariaDB log "Aborted connection ... without
/// authentication" at every check.
const DEBIAN_CREDENTIALS: &str = "/etc/mysql/debian.cnf";

/// Finds the Unix socket the server listens on (the last `socket` in a server group), and logs
/// in with Debian's maintenance credentials when this process can read them.
pub(super) fn discover(root: &Root) -> Discovery {
    let mut found = discover_socket(root);
    if root.read(Path::new(DEBIAN_CREDENTIALS)).is_ok() {
        for probe in &mut found.probes {
            if let crate::probe::Protocol::Mysql { credentials } = &mut probe.protocol {
                *credentials = Some(PathBuf::from(DEBIAN_CREDENTIALS));
            }
        }
    }
    found
}

/// Finds where MariaDB's option files set the server option `name` (spelt with `_` or `-`,
/// in any case): the first file and line that set it in a server group, in the order the
/// server reads them. Used to point at the line of an option the server rejects.
pub fn find_server_option(name: &str, root: &Path) -> Option<(PathBuf, usize)> {
    let root = Root::new(root);
    let mut reader = OptionReader::new(&root, name);
    for file in OPTION_FILES {
        // A missing option file is normal: Debian has only /etc/mysql/my.cnf.
        let _ = reader.read_file(Path::new(file), 0);
    }
    let first = reader.settings.into_iter().next()?;
    Some((first.file, first.line))
}

fn discover_socket(root: &Root) -> Discovery {
    let mut reader = OptionReader::new(root, "socket");
    let mut read_any = false;
    let mut last_error = None;
    for file in OPTION_FILES {
        match reader.read_file(Path::new(file), 0) {
            Ok(()) => read_any = true,
            Err(err) => last_error = Some((file, err)),
        }
    }
    let OptionReader {
        settings, warnings, ..
    } = reader;
    // The last setting wins, as in the server.
    let socket = settings.into_iter().last();

    if !read_any {
        let note = match last_error {
            Some((file, err)) => err.describe(Path::new(file)),
            None => "no option file".to_string(),
        };
        return Discovery {
            probes: fallback(PRESET, &note),
            warnings,
        };
    }
    let Some(setting) = socket else {
        return Discovery {
            probes: fallback(PRESET, "no socket in /etc/mysql/my.cnf or its includes"),
            warnings,
        };
    };
    let mut warnings = warnings;
    if !setting.value.starts_with('/') {
        warnings.push(warning(
            PRESET,
            &setting.file,
            setting.line,
            format!(
                "socket \"{}\" is not an absolute path; probing the preset default",
                setting.value
            ),
            EXAMPLE,
        ));
        return Discovery {
            probes: fallback(PRESET, "invalid socket in the MariaDB option files"),
            warnings,
        };
    }
    let endpoint = Endpoint::Unix {
        path: PathBuf::from(&setting.value),
    };
    Discovery {
        probes: relocated(PRESET, endpoint, file_source(&setting.file, setting.line)),
        warnings,
    }
}

/// A setting of the option looked for, with its place.
struct Setting {
    file: PathBuf,
    line: usize,
    value: String,
}

/// Walks option files and their includes, collecting the server groups' settings of one
/// option in the order the server reads them.
struct OptionReader<'r> {
    root: &'r Root,
    /// The option looked for, lower case with `-` between words.
    option: String,
    settings: Vec<Setting>,
    warnings: Vec<ConfigError>,
}

impl<'r> OptionReader<'r> {
    fn new(root: &'r Root, option: &str) -> OptionReader<'r> {
        OptionReader {
            root,
            option: normal_option_name(option),
            settings: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn read_file(&mut self, file: &Path, depth: usize) -> Result<(), ReadError> {
        let text = self.root.read(file)?;
        let mut group = String::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            let number = index + 1;
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(rest) = line.strip_prefix("!includedir") {
                self.include(file, number, rest.trim(), true, depth);
                continue;
            }
            if let Some(rest) = line.strip_prefix("!include") {
                self.include(file, number, rest.trim(), false, depth);
                continue;
            }
            if let Some(name) = line.strip_prefix('[') {
                match name.split_once(']') {
                    Some((name, _)) => group = name.trim().to_ascii_lowercase(),
                    None => self.warnings.push(warning(
                        PRESET,
                        file,
                        number,
                        format!("group header \"{line}\" has no closing ]; line skipped"),
                        "",
                    )),
                }
                continue;
            }
            if !SERVER_GROUPS.contains(&group.as_str()) {
                continue;
            }
            let (name, value) = match line.split_once('=') {
                Some((name, value)) => (name.trim(), value.trim()),
                None => (line, ""),
            };
            let name = normal_option_name(name);
            let name = name.strip_prefix("loose-").unwrap_or(&name);
            if name == self.option {
                self.settings.push(Setting {
                    file: file.to_path_buf(),
                    line: number,
                    value: option_value(value).to_string(),
                });
            }
        }
        Ok(())
    }

    /// Follows `!include FILE` or `!includedir DIR`, where the server reads every `*.cnf` file
    /// of the directory in name order. A missing directory is skipped, as the server does.
    fn include(&mut self, file: &Path, line: usize, target: &str, directory: bool, depth: usize) {
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
        let target = Path::new(target);
        let files = if directory {
            match self.root.glob(&target.join("*.cnf")) {
                Ok(files) => files,
                Err(ReadError::NotFound) => return,
                Err(err) => {
                    self.warnings.push(warning(
                        PRESET,
                        file,
                        line,
                        format!("cannot list included directory: {}", err.describe(target)),
                        "",
                    ));
                    return;
                }
            }
        } else {
            vec![target.to_path_buf()]
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

/// Spells an option name the way the server compares them: lower case, `-` between words.
fn normal_option_name(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

/// Returns the value of an option without quotes, or without a trailing `#` comment when it
/// is unquoted.
fn option_value(value: &str) -> &str {
    if value.starts_with(['"', '\'']) {
        return unquote(value);
    }
    value.split('#').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::super::fixture::{tree, write};
    use super::*;
    use crate::probe::Protocol;

    const MARIADB_CNF: &str = "# The MariaDB configuration file\n\
         #\n\
         [client-server]\n\
         # Port or socket location where to connect\n\
         # port = 3306\n\
         socket = /run/mysqld/mysqld.sock\n\
         \n\
         # Import all .cnf files from configuration directory\n\
         !includedir /etc/mysql/conf.d/\n\
         !includedir /etc/mysql/mariadb.conf.d/\n";

    const SERVER_CNF: &str = "[server]\n\
         \n\
         [mysqld]\n\
         pid-file                = /run/mysqld/mysqld.pid\n\
         basedir                 = /usr\n\
         bind-address            = 127.0.0.1\n\
         \n\
         [embedded]\n\
         \n\
         [mariadb-10.11]\n";

    /// Builds a Debian-like tree, where my.cnf links to mariadb.cnf through /etc/alternatives.
    fn debian_tree() -> tempfile::TempDir {
        let dir = tree();
        write(dir.path(), "/etc/mysql/mariadb.cnf", MARIADB_CNF);
        write(dir.path(), "/etc/mysql/conf.d/mysql.cnf", "[mysql]\n");
        write(
            dir.path(),
            "/etc/mysql/mariadb.conf.d/50-server.cnf",
            SERVER_CNF,
        );
        write(
            dir.path(),
            "/etc/mysql/mariadb.conf.d/50-client.cnf",
            "[client]\n",
        );
        write(dir.path(), "/etc/alternatives/.keep", "");
        let links = [
            ("/etc/mysql/mariadb.cnf", "etc/alternatives/my.cnf"),
            ("/etc/alternatives/my.cnf", "etc/mysql/my.cnf"),
        ];
        for (target, link) in links {
            if let Err(err) = symlink(target, dir.path().join(link)) {
                panic!("linking {link}: {err}");
            }
        }
        dir
    }

    fn socket_of(found: &Discovery) -> Option<String> {
        found.probes[0].endpoint.as_ref().map(ToString::to_string)
    }

    #[test]
    fn debian_default_socket() {
        let dir = debian_tree();
        let found = discover(&Root::new(dir.path()));
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
        assert_eq!(found.probes.len(), 1);
        assert_eq!(
            found.probes[0].protocol,
            Protocol::Mysql { credentials: None }
        );
        assert_eq!(
            socket_of(&found).as_deref(),
            Some("/run/mysqld/mysqld.sock")
        );
        // The path as the server reads it, through the symbolic links.
        assert_eq!(found.probes[0].source, "/etc/mysql/my.cnf:6");
    }

    #[test]
    fn debian_credentials_used_when_readable() {
        let dir = debian_tree();
        write(
            dir.path(),
            "/etc/mysql/debian.cnf",
            "[client]\nuser = root\npassword =\nsocket = /run/mysqld/mysqld.sock\n",
        );
        let found = discover(&Root::new(dir.path()));
        assert_eq!(
            found.probes[0].protocol,
            Protocol::Mysql {
                credentials: Some(PathBuf::from("/etc/mysql/debian.cnf"))
            }
        );
    }

    #[test]
    fn included_file_overrides() {
        let dir = debian_tree();
        write(
            dir.path(),
            "/etc/mysql/mariadb.conf.d/60-local.cnf",
            "[mysqld]\n# moved for the chrooted MTA\nsocket = \"/var/lib/mysql/mysql.sock\"\n",
        );
        write(
            dir.path(),
            "/etc/mysql/mariadb.conf.d/70-client.cnf",
            "[client]\nsocket = /tmp/client.sock\n",
        );
        let found = discover(&Root::new(dir.path()));
        assert_eq!(
            socket_of(&found).as_deref(),
            Some("/var/lib/mysql/mysql.sock")
        );
        assert_eq!(
            found.probes[0].source,
            "/etc/mysql/mariadb.conf.d/60-local.cnf:3"
        );
    }

    #[test]
    fn option_spellings() {
        let cases = [
            "[mysqld]\nsocket=/run/a.sock\n",
            "[MySQLd]\nSOCKET = /run/a.sock # comment\n",
            "[mariadbd]\nloose_socket = '/run/a.sock'\n",
            "[server]\n  socket\t=\t/run/a.sock\n",
        ];
        for text in cases {
            let dir = tree();
            write(dir.path(), "/etc/mysql/my.cnf", text);
            let found = discover(&Root::new(dir.path()));
            assert_eq!(socket_of(&found).as_deref(), Some("/run/a.sock"), "{text}");
            assert_eq!(found.probes[0].source, "/etc/mysql/my.cnf:2", "{text}");
        }
    }

    #[test]
    fn ignores_other_groups_and_comments() {
        let dir = tree();
        write(
            dir.path(),
            "/etc/mysql/my.cnf",
            "[client]\nsocket = /run/client.sock\n[mysqld]\n# socket = /run/commented.sock\n\
             ; socket = /run/also-commented.sock\n[mariadb-10.11]\nsocket = /run/version.sock\n",
        );
        let found = discover(&Root::new(dir.path()));
        assert_eq!(
            found.probes[0].source,
            "preset (no socket in /etc/mysql/my.cnf or its includes)"
        );
        assert_eq!(
            socket_of(&found).as_deref(),
            Some("/run/mysqld/mysqld.sock")
        );
    }

    #[test]
    fn etc_my_cnf_read_first() {
        let dir = tree();
        write(
            dir.path(),
            "/etc/my.cnf",
            "[mysqld]\nsocket = /run/first.sock\n",
        );
        let found = discover(&Root::new(dir.path()));
        assert_eq!(socket_of(&found).as_deref(), Some("/run/first.sock"));
        assert_eq!(found.probes[0].source, "/etc/my.cnf:2");

        write(
            dir.path(),
            "/etc/mysql/my.cnf",
            "[mysqld]\nsocket = /run/second.sock\n",
        );
        let found = discover(&Root::new(dir.path()));
        assert_eq!(socket_of(&found).as_deref(), Some("/run/second.sock"));
    }

    #[test]
    fn missing_files_fall_back() {
        let dir = tree();
        let found = discover(&Root::new(dir.path()));
        assert!(found.warnings.is_empty());
        assert_eq!(
            found.probes[0].source,
            "preset (/etc/mysql/my.cnf not found)"
        );
    }

    #[test]
    fn bad_include_and_socket_warn() {
        let dir = tree();
        write(
            dir.path(),
            "/etc/mysql/my.cnf",
            "[mysqld\n!include /etc/mysql/absent.cnf\n!includedir /etc/mysql/none.d\n\
             [mysqld]\nsocket = mysqld.sock\n",
        );
        let found = discover(&Root::new(dir.path()));
        let lines: Vec<usize> = found.warnings.iter().map(|warning| warning.line).collect();
        assert_eq!(lines, [1, 2, 5], "{:?}", found.warnings);
        assert!(found.warnings[1]
            .message
            .contains("/etc/mysql/absent.cnf not found"));
        assert_eq!(
            found.probes[0].source,
            "preset (invalid socket in the MariaDB option files)"
        );
    }

    #[test]
    fn finds_rejected_option() {
        let dir = debian_tree();
        write(
            dir.path(),
            "/etc/mysql/mariadb.conf.d/99-x.cnf",
            "[client]\ninnodb_buffer_pool_sise = 1M\n[mysqld]\n# tuning\n\
             innodb_buffer_pool_sise = 256M\n[mariadbd]\nInnodb-Buffer-Pool-Sise=512M\n",
        );
        let found = find_server_option("innodb_buffer_pool_sise", dir.path());
        assert_eq!(
            found,
            Some((PathBuf::from("/etc/mysql/mariadb.conf.d/99-x.cnf"), 5))
        );
        assert_eq!(find_server_option("no_such_option", dir.path()), None);
    }

    #[test]
    fn include_loop_stops() {
        let dir = tree();
        write(
            dir.path(),
            "/etc/mysql/my.cnf",
            "[mysqld]\nsocket = /run/a.sock\n!include /etc/mysql/my.cnf\n",
        );
        let found = discover(&Root::new(dir.path()));
        assert_eq!(socket_of(&found).as_deref(), Some("/run/a.sock"));
        assert!(
            found
                .warnings
                .iter()
                .any(|warning| warning.message.contains("nest deeper")),
            "{:?}",
            found.warnings
        );
    }
}
