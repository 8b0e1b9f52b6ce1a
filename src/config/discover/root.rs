//! Reading service config files below a root directory, so that tests can use a fixture tree
//! in place of the host's `/`.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symbolic links followed in one path before giving up, as Linux's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// A directory that stands for `/`. Paths passed in and returned are the paths as seen on the
/// host (`/etc/postfix/main.cf`), and symbolic links are followed as if the root were `/`.
#[derive(Debug, Clone)]
pub(super) struct Root {
    dir: PathBuf,
}

/// Reason a file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ReadError {
    NotFound,
    /// Any other failure, with the system's message.
    Failed(String),
}

impl ReadError {
    /// Describes the failure for a `source` note or a warning: "/etc/x not found".
    pub(super) fn describe(&self, path: &Path) -> String {
        match self {
            ReadError::NotFound => format!("{} not found", path.display()),
            ReadError::Failed(error) => format!("{} unreadable: {error}", path.display()),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> Self {
        if err.kind() == io::ErrorKind::NotFound {
            ReadError::NotFound
        } else {
            ReadError::Failed(err.to_string())
        }
    }
}

impl Root {
    pub(super) fn new(dir: &Path) -> Root {
        Root {
            dir: dir.to_path_buf(),
        }
    }

    /// Reads a text file. Bytes that are not UTF-8 become U+FFFD, because config files may
    /// hold comments in a legacy encoding.
    pub(super) fn read(&self, path: &Path) -> Result<String, ReadError> {
        let bytes = fs::read(self.resolve(path)?)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// Checks whether `path` exists below the root.
    pub(super) fn exists(&self, path: &Path) -> bool {
        self.resolve(path)
            .is_ok_and(|host| fs::metadata(host).is_ok())
    }

    /// Lists the files that match `pattern`, sorted by name. Only the last component may hold
    /// the wildcards `*` and `?`, which match no leading dot, as in glob(3).
    pub(super) fn glob(&self, pattern: &Path) -> Result<Vec<PathBuf>, ReadError> {
        let (Some(dir), Some(name_pattern)) = (pattern.parent(), pattern.file_name()) else {
            return Ok(Vec::new());
        };
        let name_pattern = name_pattern.to_string_lossy();
        if !name_pattern.contains(['*', '?']) {
            return Ok(if self.exists(pattern) {
                vec![pattern.to_path_buf()]
            } else {
                Vec::new()
            });
        }
        let mut found = Vec::new();
        for entry in fs::read_dir(self.resolve(dir)?)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = dir.join(&name);
            if wildcard_match(&name_pattern, &name) && self.is_file(&path) {
                found.push(path);
            }
        }
        found.sort();
        Ok(found)
    }

    fn is_file(&self, path: &Path) -> bool {
        self.resolve(path)
            .is_ok_and(|host| fs::metadata(host).is_ok_and(|metadata| metadata.is_file()))
    }

    /// Maps a host path to the path below the root, following symbolic links so that an
    /// absolute link target stays below the root. A missing component ends the walk, and the
    /// rest of the path is joined as it is.
    fn resolve(&self, path: &Path) -> io::Result<PathBuf> {
        if self.dir == Path::new("/") {
            return Ok(path.to_path_buf());
        }
        // Components still to walk, the next one last.
        let mut pending: Vec<PathBuf> = components_reversed(path);
        let mut resolved = PathBuf::new();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == Path::new("..") {
                resolved.pop();
                continue;
            }
            let candidate = resolved.join(&part);
            let metadata = match fs::symlink_metadata(self.dir.join(&candidate)) {
                Ok(metadata) => metadata,
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    resolved = candidate;
                    while let Some(rest) = pending.pop() {
                        resolved.push(rest);
                    }
                    break;
                }
                Err(err) => return Err(err),
            };
            if !metadata.file_type().is_symlink() {
                resolved = candidate;
                continue;
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::other(format!(
                    "more than {MAX_SYMLINKS} symbolic links in {}",
                    path.display()
                )));
            }
            let target = fs::read_link(self.dir.join(&candidate))?;
            if target.is_absolute() {
                resolved = PathBuf::new();
            }
            pending.extend(components_reversed(&target));
        }
        Ok(self.dir.join(resolved))
    }
}

/// Splits a path into its normal and `..` components, last first, and drops `/` and `.`.
fn components_reversed(path: &Path) -> Vec<PathBuf> {
    let mut parts: Vec<PathBuf> = path
        .components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(PathBuf::from(name)),
            Component::ParentDir => Some(PathBuf::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

/// Matches a file name against a pattern with `*` (any run of characters) and `?` (one
/// character). A leading dot in the name must be matched literally.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // Backtracking over the last `*`: classic linear-space wildcard matching.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == '?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn tree() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("creating a tempdir: {err}"),
        }
    }

    fn write(root: &Path, path: &str, text: &str) {
        let host = root.join(path.trim_start_matches('/'));
        if let Some(parent) = host.parent() {
            if let Err(err) = fs::create_dir_all(parent) {
                panic!("creating {}: {err}", parent.display());
            }
        }
        if let Err(err) = fs::write(&host, text) {
            panic!("writing {}: {err}", host.display());
        }
    }

    #[test]
    fn read_below_root() {
        let dir = tree();
        write(dir.path(), "/etc/x.conf", "a = 1\n");
        let root = Root::new(dir.path());
        assert_eq!(root.read(Path::new("/etc/x.conf")), Ok("a = 1\n".into()));
        assert_eq!(
            root.read(Path::new("/etc/y.conf")),
            Err(ReadError::NotFound)
        );
    }

    #[test]
    fn absolute_symlink_stays_inside() {
        let dir = tree();
        write(dir.path(), "/etc/mysql/mariadb.cnf", "[mysqld]\n");
        let alternatives = dir.path().join("etc/alternatives");
        if let Err(err) = fs::create_dir_all(&alternatives) {
            panic!("{err}");
        }
        let links = [
            ("/etc/mysql/mariadb.cnf", alternatives.join("my.cnf")),
            (
                "/etc/alternatives/my.cnf",
                dir.path().join("etc/mysql/my.cnf"),
            ),
        ];
        for (target, link) in links {
            if let Err(err) = symlink(target, &link) {
                panic!("linking {}: {err}", link.display());
            }
        }
        let root = Root::new(dir.path());
        assert_eq!(
            root.read(Path::new("/etc/mysql/my.cnf")),
            Ok("[mysqld]\n".into())
        );
    }

    #[test]
    fn relative_symlink_and_loop() {
        let dir = tree();
        write(dir.path(), "/etc/a/real.conf", "x\n");
        if let Err(err) = symlink("../a/real.conf", dir.path().join("etc/a/link.conf")) {
            panic!("{err}");
        }
        if let Err(err) = symlink("/etc/a/loop", dir.path().join("etc/a/loop")) {
            panic!("{err}");
        }
        let root = Root::new(dir.path());
        assert_eq!(root.read(Path::new("/etc/a/link.conf")), Ok("x\n".into()));
        let looped = root.read(Path::new("/etc/a/loop"));
        assert!(
            matches!(&looped, Err(ReadError::Failed(message)) if message.contains("symbolic")),
            "{looped:?}"
        );
    }

    #[test]
    fn directory_is_unreadable() {
        let dir = tree();
        write(dir.path(), "/etc/x/file", "");
        let root = Root::new(dir.path());
        let result = root.read(Path::new("/etc/x"));
        assert!(matches!(result, Err(ReadError::Failed(_))), "{result:?}");
    }

    #[test]
    fn glob_sorted_and_filtered() {
        let dir = tree();
        for name in ["b.conf", "a.conf", ".hidden.conf", "c.conf.bak", "d.txt"] {
            write(dir.path(), &format!("/etc/u/conf.d/{name}"), "");
        }
        if let Err(err) = fs::create_dir_all(dir.path().join("etc/u/conf.d/sub.conf")) {
            panic!("{err}");
        }
        let root = Root::new(dir.path());
        let found = root.glob(Path::new("/etc/u/conf.d/*.conf"));
        assert_eq!(
            found,
            Ok(vec![
                PathBuf::from("/etc/u/conf.d/a.conf"),
                PathBuf::from("/etc/u/conf.d/b.conf"),
            ])
        );
        assert_eq!(
            root.glob(Path::new("/etc/none/*.conf")),
            Err(ReadError::NotFound)
        );
        assert_eq!(
            root.glob(Path::new("/etc/u/conf.d/d.txt")),
            Ok(vec![PathBuf::from("/etc/u/conf.d/d.txt")])
        );
    }

    #[test]
    fn wildcard_cases() {
        assert!(wildcard_match("*.conf", "a.conf"));
        assert!(!wildcard_match("*.conf", ".conf.conf"));
        assert!(wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("*b*", "abc"));
        assert!(!wildcard_match("*.conf", "a.conf.bak"));
        assert!(wildcard_match("50-*.cnf", "50-server.cnf"));
    }

    #[test]
    fn host_root_is_identity() {
        let root = Root::new(Path::new("/"));
        assert_eq!(
            root.resolve(Path::new("/etc/postfix/main.cf")).ok(),
            Some(PathBuf::from("/etc/postfix/main.cf"))
        );
    }

    #[test]
    fn describe_errors() {
        let path = Path::new("/etc/opendkim.conf");
        assert_eq!(
            ReadError::NotFound.describe(path),
            "/etc/opendkim.conf not found"
        );
        assert_eq!(
            ReadError::Failed("Permission denied (os error 13)".into()).describe(path),
            "/etc/opendkim.conf unreadable: Permission denied (os error 13)"
        );
    }
}
