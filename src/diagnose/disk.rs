//! Free space and free inodes of the filesystems a service writes to, from statvfs(3).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::knowledge::data_paths;
use super::{Cause, Finding, RestartAfterFix};
use crate::config::ServiceConfig;

/// Below this many bytes available, a filesystem counts as full, unless 1 % of it is less.
pub const MIN_FREE_BYTES: u64 = 100 * 1024 * 1024;

/// Below this share of free space (in percent), a filesystem counts as full, unless
/// [`MIN_FREE_BYTES`] is less. The smaller of the two applies, so a large disk with gigabytes
/// free is not reported for being 99.5 % used.
pub const MIN_FREE_PERCENT: u64 = 1;

/// Space and inodes of one filesystem, as an unprivileged user sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub total_bytes: u64,
    /// Bytes available to users other than root (`f_bavail`), which is what most mail
    /// daemons run as.
    pub available_bytes: u64,
    pub total_inodes: u64,
    pub free_inodes: u64,
}

impl Usage {
    /// Reads the filesystem that contains `path`.
    #[allow(clippy::unnecessary_cast)]
    pub fn of(path: &Path) -> std::io::Result<Usage> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
        let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `c_path` is a valid C string and `stat` points to writable memory of the
        // right size; statvfs fills it completely when it returns 0.
        let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: statvfs returned 0, so it initialised the struct.
        let stat = unsafe { stat.assume_init() };
        // The field types are 32 bits wide on some targets and 64 on others.
        let fragment = stat.f_frsize as u64;
        Ok(Usage {
            total_bytes: stat.f_blocks as u64 * fragment,
            available_bytes: stat.f_bavail as u64 * fragment,
            total_inodes: stat.f_files as u64,
            free_inodes: stat.f_favail as u64,
        })
    }

    /// Used space in whole percent, rounded up so that a nearly full disk never shows 100 %
    /// only when it is completely full.
    pub fn used_percent(&self) -> u64 {
        if self.total_bytes == 0 {
            return 0;
        }
        let used = self.total_bytes.saturating_sub(self.available_bytes);
        (used.saturating_mul(100))
            .div_ceil(self.total_bytes)
            .min(100)
    }

    /// Returns whether space or inodes are below the thresholds.
    pub fn is_full(&self) -> bool {
        let space_floor = (self.total_bytes / 100 * MIN_FREE_PERCENT).min(MIN_FREE_BYTES);
        let inode_floor = self.total_inodes / 100 * MIN_FREE_PERCENT;
        // A filesystem without inode accounting (btrfs, some tmpfs) reports 0 inodes.
        let out_of_inodes = self.total_inodes > 0 && self.free_inodes <= inode_floor;
        self.available_bytes <= space_floor || out_of_inodes
    }
}

/// Checks the filesystems under the service's data paths, each once, and reports the full
/// ones. Paths that do not exist are skipped.
pub fn check_service(service: &ServiceConfig, after_fix: RestartAfterFix) -> Vec<Finding> {
    let preset = service.preset.as_deref().unwrap_or("");
    let paths: Vec<PathBuf> = data_paths(preset).iter().map(PathBuf::from).collect();
    check_paths(&paths, after_fix)
}

/// Checks the filesystems under `paths`; several paths on one filesystem give one finding.
pub fn check_paths(paths: &[PathBuf], after_fix: RestartAfterFix) -> Vec<Finding> {
    let mut by_device: BTreeMap<u64, Vec<&Path>> = BTreeMap::new();
    for path in paths {
        if let Ok(metadata) = std::fs::metadata(path) {
            by_device.entry(metadata.dev()).or_default().push(path);
        }
    }
    by_device
        .values()
        .filter_map(|paths| {
            let first = paths.first()?;
            let usage = Usage::of(first).ok()?;
            usage
                .is_full()
                .then(|| finding(first, paths, &usage, after_fix))
        })
        .collect()
}

fn finding(path: &Path, paths: &[&Path], usage: &Usage, after_fix: RestartAfterFix) -> Finding {
    let mount = mount_of(path);
    let mount_text = mount.point.display().to_string();
    let summary = format!(
        "disk full on {mount_text} ({} %, {} free, {} inodes left)",
        usage.used_percent(),
        human_bytes(usage.available_bytes),
        usage.free_inodes
    );
    // "/var/spool/postfix: tmpfs filesystem, 0 B of 4.0 MiB available, ..." when the path is
    // the mount point itself, else "/var/log is on /: ext4 filesystem on /dev/vda1, ...".
    let names: Vec<String> = paths
        .iter()
        .map(|path| path.display().to_string())
        .filter(|name| *name != mount_text)
        .collect();
    let place = if names.is_empty() {
        mount_text.clone()
    } else {
        format!(
            "{} {} on {mount_text}",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" }
        )
    };
    let filesystem = match (&mount.fstype, &mount.source) {
        (Some(fstype), Some(source)) if source != fstype && source != "none" => {
            format!("{fstype} filesystem on {source}")
        }
        (Some(fstype), _) => format!("{fstype} filesystem"),
        (None, _) => "filesystem".to_string(),
    };
    let free = format!(
        "free space on {mount_text} (`du -xsh {}/* | sort -h | tail` shows what is large)",
        mount_text.trim_end_matches('/')
    );
    let next_step = match after_fix {
        RestartAfterFix::Automatic => {
            format!("{free}; selfheal restarts the service once space is back")
        }
        RestartAfterFix::Manual => format!("{free}, then run `selfheal restart SERVICE`"),
    };
    Finding::new(Cause::DiskFull, summary, next_step)
        .with_evidence([format!(
            "{place}: {filesystem}, {} of {} available, {} of {} inodes free",
            human_bytes(usage.available_bytes),
            human_bytes(usage.total_bytes),
            usage.free_inodes,
            usage.total_inodes
        )])
        .blocking()
}

/// A mounted filesystem, from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    /// Filesystem type, such as `ext4` or `tmpfs`.
    pub fstype: Option<String>,
    /// Device or name mounted there, such as `/dev/vda1` or `tmpfs`.
    pub source: Option<String>,
}

/// Returns the mount point that contains `path`: the longest mount point in /proc/self/mountinfo that
/// is a prefix of it.
pub fn mount_point(path: &Path) -> PathBuf {
    mount_of(path).point
}

/// Returns the mount that contains `path`, with its filesystem type and source. When the same
/// point is mounted twice, the later mount, which hides the earlier, wins.
pub fn mount_of(path: &Path) -> Mount {
    match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(mountinfo) => mount_in(&mountinfo, path),
        Err(_) => Mount {
            point: path.to_path_buf(),
            fstype: None,
            source: None,
        },
    }
}

/// [`mount_of`] over the text of a mountinfo file. Each line reads `ID PARENT MAJOR:MINOR
/// ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER_OPTIONS` (proc(5)).
fn mount_in(mountinfo: &str, path: &Path) -> Mount {
    mountinfo
        .lines()
        .filter_map(|line| {
            let point = unescape_mount(line.split_whitespace().nth(4)?);
            let (_, after) = line.split_once(" - ")?;
            let mut fields = after.split_whitespace();
            Some(Mount {
                point,
                fstype: fields.next().map(str::to_string),
                source: fields
                    .next()
                    .map(|source| unescape_mount(source).display().to_string()),
            })
        })
        .filter(|mount| path.starts_with(&mount.point))
        .max_by_key(|mount| mount.point.as_os_str().len())
        .unwrap_or_else(|| Mount {
            point: path.to_path_buf(),
            fstype: None,
            source: None,
        })
}

/// Undoes the octal escapes of mountinfo (`\040` for a space).
fn unescape_mount(field: &str) -> PathBuf {
    let mut out = Vec::new();
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(value) = u8::from_str_radix(&field[i + 1..i + 4], 8) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// Formats bytes with a binary unit: "512 B", "3.2 MiB", "1.5 GiB".
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for next in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    fn usage(total: u64, available: u64, inodes: u64, free_inodes: u64) -> Usage {
        Usage {
            total_bytes: total,
            available_bytes: available,
            total_inodes: inodes,
            free_inodes,
        }
    }

    #[test]
    fn thresholds() {
        // 10 GiB: 1 % is about 102 MiB, so the 100 MiB floor applies.
        assert!(usage(10 * GIB, 50 * 1024 * 1024, 1000, 500).is_full());
        assert!(!usage(10 * GIB, 200 * 1024 * 1024, 1000, 500).is_full());
        // 1 TiB with 5 GiB free is not full: 100 MiB is the smaller floor.
        assert!(!usage(1024 * GIB, 5 * GIB, 1_000_000, 500_000).is_full());
        // 5 MiB: 1 % is 51 KiB.
        assert!(usage(5 * 1024 * 1024, 0, 100, 50).is_full());
        assert!(!usage(5 * 1024 * 1024, 1024 * 1024, 100, 50).is_full());
        // Out of inodes with space left.
        assert!(usage(10 * GIB, 5 * GIB, 100_000, 999).is_full());
        // No inode accounting.
        assert!(!usage(10 * GIB, 5 * GIB, 0, 0).is_full());
    }

    #[test]
    fn used_percent_rounds_up() {
        assert_eq!(usage(1000, 0, 0, 0).used_percent(), 100);
        assert_eq!(usage(1000, 5, 0, 0).used_percent(), 100);
        assert_eq!(usage(1000, 500, 0, 0).used_percent(), 50);
        assert_eq!(usage(0, 0, 0, 0).used_percent(), 0);
    }

    #[test]
    fn reads_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let usage = Usage::of(dir.path()).unwrap();
        assert!(usage.total_bytes > 0);
        assert!(Usage::of(&dir.path().join("missing")).is_err());
        assert!(check_paths(&[dir.path().join("missing")], RestartAfterFix::Automatic).is_empty());
    }

    #[test]
    fn next_step_by_restart_after_fix() {
        let full = usage(1000, 0, 100, 50);
        let path = Path::new("/var/spool/postfix");
        let automatic = finding(path, &[path], &full, RestartAfterFix::Automatic);
        let manual = finding(path, &[path], &full, RestartAfterFix::Manual);

        assert!(
            automatic
                .next_step
                .ends_with("; selfheal restarts the service once space is back"),
            "{}",
            automatic.next_step
        );
        assert!(
            manual
                .next_step
                .ends_with(", then run `selfheal restart SERVICE`"),
            "{}",
            manual.next_step
        );
        assert!(!manual.next_step.contains("selfheal restarts"));
    }

    #[test]
    fn mount_point_of_root() {
        assert_eq!(mount_point(Path::new("/")), PathBuf::from("/"));
        assert!(Path::new("/proc/self").starts_with(mount_point(Path::new("/proc/self"))));
    }

    #[test]
    fn mount_with_type_and_source() {
        let mountinfo = "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n\
             40 22 0:35 / /var/spool/postfix rw,relatime shared:2 - tmpfs tmpfs rw,size=4096k\n\
             41 22 0:36 / /var/spool/postfix rw,relatime shared:3 - tmpfs spool rw\n";
        let spool = mount_in(mountinfo, Path::new("/var/spool/postfix"));
        assert_eq!(spool.point, PathBuf::from("/var/spool/postfix"));
        assert_eq!(spool.fstype.as_deref(), Some("tmpfs"));
        assert_eq!(
            spool.source.as_deref(),
            Some("spool"),
            "the later mount wins"
        );
        let log = mount_in(mountinfo, Path::new("/var/log"));
        assert_eq!(log.point, PathBuf::from("/"));
        assert_eq!(log.source.as_deref(), Some("/dev/vda1"));
    }

    #[test]
    fn evidence_names_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let full = usage(4 * 1024 * 1024, 0, 1000, 12);
        let finding = finding(dir.path(), &[dir.path()], &full, RestartAfterFix::Automatic);
        let mount = mount_of(dir.path());
        let evidence = &finding.evidence[0];
        assert!(
            evidence.contains(&format!(
                "{} filesystem",
                mount.fstype.as_deref().unwrap_or("?")
            )),
            "{evidence}"
        );
        assert!(
            evidence.contains("0 B of 4.0 MiB available, 12 of 1000 inodes free"),
            "{evidence}"
        );
        let doubled = format!("{0} on {0}", mount.point.display());
        assert!(!evidence.contains(&doubled), "{evidence}");
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(
            unescape_mount("/mnt/with\\040space"),
            PathBuf::from("/mnt/with space")
        );
        assert_eq!(unescape_mount("/plain"), PathBuf::from("/plain"));
    }

    #[test]
    fn byte_units() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
        assert_eq!(human_bytes(GIB + GIB / 2), "1.5 GiB");
    }
}
