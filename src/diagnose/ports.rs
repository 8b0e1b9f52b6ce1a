//! Who holds a TCP port: the listening sockets in `/proc/net/tcp` and `tcp6`, matched to
//! processes through the socket inodes in `/proc/PID/fd`. selfheal only names the holder; it
//! never stops or kills it.

use std::collections::BTreeSet;
use std::path::Path;

use super::{knowledge, Cause, Finding, RestartAfterFix};
use crate::config::ServiceConfig;
use crate::probe::Endpoint;

/// State code of a listening socket in `/proc/net/tcp` (TCP_LISTEN).
const LISTEN: &str = "0A";

/// A process with a listening socket on the port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Name from `/proc/PID/comm`.
    pub program: String,
    /// Its cgroup v2 path, such as `/system.slice/dovecot.service`.
    pub cgroup: String,
}

/// Socket inodes listening on `port`, from the text of `/proc/net/tcp` or `tcp6`.
pub fn listening_inodes(table: &str, port: u16) -> BTreeSet<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let local_port = u16::from_str_radix(hex_port, 16).ok()?;
            (local_port == port && *state == LISTEN)
                .then(|| inode.parse().ok())
                .flatten()
        })
        .filter(|inode| *inode != 0)
        .collect()
}

/// Finds the processes that hold a listening socket on `port`, found below `proc` (normally
/// `/proc`).
pub fn holders(proc: &Path, port: u16) -> Vec<Holder> {
    let mut inodes = BTreeSet::new();
    for table in ["net/tcp", "net/tcp6"] {
        if let Ok(text) = std::fs::read_to_string(proc.join(table)) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let wanted: BTreeSet<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    let Ok(entries) = std::fs::read_dir(proc) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| wanted.contains(target.to_string_lossy().as_ref()))
        });
        if holds {
            let read = |name: &str| {
                std::fs::read_to_string(entry.path().join(name))
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            };
            let cgroup = read("cgroup")
                .lines()
                .find_map(|line| line.strip_prefix("0::"))
                .unwrap_or("")
                .to_string();
            found.push(Holder {
                pid,
                program: read("comm"),
                cgroup,
            });
        }
    }
    found.sort_by_key(|holder| holder.pid);
    found
}

/// Returns whether `cgroup` is the cgroup of systemd unit `unit` or one below it. systemd names a
/// service's cgroup after the unit, inside its slice: `/system.slice/dovecot.service`,
/// `/system.slice/system-postfix.slice/postfix@-.service`.
fn in_unit(cgroup: &str, unit: &str) -> bool {
    !unit.is_empty()
        && (cgroup.ends_with(&format!("/{unit}")) || cgroup.contains(&format!("/{unit}/")))
}

/// Names the unit in a message, or the service when it has none.
fn unit_label(unit: &str, service: &str) -> String {
    if unit.is_empty() {
        format!("{service}'s own process tree")
    } else {
        unit.to_string()
    }
}

/// Explains the ports the service could not bind (`in_use`, from its journal) and the TCP
/// ports of its probes: who holds each one, and whether that is the service itself.
/// `after_fix` words the next step when another program holds a port.
pub fn explain(
    service: &ServiceConfig,
    in_use: &[(u16, String)],
    unit: Option<&str>,
    after_fix: RestartAfterFix,
) -> Vec<Finding> {
    explain_in(Path::new("/proc"), service, in_use, unit, after_fix)
}

fn explain_in(
    proc: &Path,
    service: &ServiceConfig,
    in_use: &[(u16, String)],
    unit: Option<&str>,
    after_fix: RestartAfterFix,
) -> Vec<Finding> {
    let mut ports: Vec<(u16, Option<&String>)> = in_use
        .iter()
        .map(|(port, line)| (*port, Some(line)))
        .collect();
    // Without a unit, a holder of a probe port cannot be distinguished from the service.
    if unit.is_some() {
        for probe in &service.probes {
            if let Some(Endpoint::Tcp { port, .. }) = &probe.endpoint {
                if !ports.iter().any(|(known, _)| known == port) {
                    ports.push((*port, None));
                }
            }
        }
    }
    let unit = unit.unwrap_or("");
    let mut findings = Vec::new();
    for (port, line) in ports {
        let holders = holders(proc, port);
        let evidence: Vec<String> = line
            .into_iter()
            .cloned()
            .chain(holders.iter().map(|holder| {
                format!(
                    "port {port} held by {} (PID {}, cgroup {})",
                    holder.program, holder.pid, holder.cgroup
                )
            }))
            .collect();
        let others: Vec<&Holder> = holders
            .iter()
            .filter(|holder| !in_unit(&holder.cgroup, unit))
            .collect();
        let preset = service.preset.as_deref().unwrap_or("");
        let own = knowledge::own_programs(preset);
        if let Some(copy) = others
            .iter()
            .find(|holder| own.contains(&holder.program.as_str()))
        {
            // The service's own daemon, but outside its unit: started by hand or left over from
            // another manager. The unit's stop does not reach it, so a restart cannot help, and
            // selfheal does not stop it: it may be serving mail right now.
            let how = knowledge::stray_stop_hint(preset)
                .map(|hint| format!("stop it with {hint} or `kill {}`", copy.pid))
                .unwrap_or_else(|| format!("stop it with `kill {}`", copy.pid));
            findings.push(
                Finding::new(
                    Cause::PortConflict,
                    format!(
                        "port conflict: port {port} is held by a second copy of {} ({} PID {}) \
                         running outside {}",
                        service.name,
                        copy.program,
                        copy.pid,
                        unit_label(unit, &service.name)
                    ),
                    format!(
                        "it was probably started by hand; {how}, then `selfheal restart {}` \
                         starts it under its unit again",
                        service.name
                    ),
                )
                .with_evidence(evidence)
                .blocking(),
            );
        } else if let Some(other) = others.first() {
            let free = format!(
                "stop {} or move it to another port (`ss -ltnp 'sport = :{port}'` shows it)",
                other.program
            );
            let next_step = match after_fix {
                RestartAfterFix::Automatic => format!(
                    "{free}; selfheal never kills it, and restarts {} once the port is free",
                    service.name
                ),
                RestartAfterFix::Manual => format!(
                    "{free}, then run `selfheal restart {}`; selfheal never kills it",
                    service.name
                ),
            };
            findings.push(
                Finding::new(
                    Cause::PortConflict,
                    format!(
                        "port conflict: port {port} is held by {} (PID {}), not by {}",
                        other.program, other.pid, service.name
                    ),
                    next_step,
                )
                .with_evidence(evidence)
                .blocking(),
            );
        } else if let (Some(_), false) = (line, holders.is_empty()) {
            // The service's own process holds the port it failed to bind: a stale instance
            // that its unit's stop ends, so one clean restart may fix it.
            let holder = &holders[0];
            findings.push(
                Finding::new(
                    Cause::PortConflict,
                    format!(
                        "port conflict: port {port} is held by an old {} process of {} (PID {})",
                        holder.program, service.name, holder.pid
                    ),
                    format!(
                        "a stop and start of {} ends the stale process; if it stays, stop it by \
                         hand",
                        service.name
                    ),
                )
                .with_evidence(evidence),
            );
        } else if line.is_some() {
            findings.push(
                Finding::new(
                    Cause::PortConflict,
                    format!(
                        "port conflict: port {port} was in use when {} started, and nothing \
                         holds it now; two of its own listeners may name the same port",
                        service.name
                    ),
                    format!(
                        "look for the port twice in {}'s config (for Postfix, master.cf), then \
                         `selfheal restart {}`",
                        service.name, service.name
                    ),
                )
                .with_evidence(evidence),
            );
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0
   1: 00000000:008F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   2: 0100007F:0019 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 5555 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn listening_sockets_by_port() {
        assert_eq!(listening_inodes(TCP, 25), BTreeSet::from([31337]));
        assert_eq!(listening_inodes(TCP, 143), BTreeSet::from([4242]));
        assert!(listening_inodes(TCP, 993).is_empty());
    }

    #[test]
    fn cgroup_membership() {
        assert!(in_unit("/system.slice/dovecot.service", "dovecot.service"));
        assert!(in_unit(
            "/system.slice/dovecot.service/sub",
            "dovecot.service"
        ));
        assert!(in_unit(
            "/system.slice/system-postfix.slice/postfix@-.service",
            "postfix@-.service"
        ));
        assert!(!in_unit(
            "/system.slice/dovecot.service2",
            "dovecot.service"
        ));
        assert!(!in_unit(
            "/system.slice/xdovecot.service",
            "dovecot.service"
        ));
        assert!(!in_unit("/user.slice", ""));
    }

    const AUTOMATIC: RestartAfterFix = RestartAfterFix::Automatic;

    fn service() -> ServiceConfig {
        ServiceConfig::from_preset(
            crate::config::presets::preset("dovecot").unwrap(),
            "dovecot",
            crate::config::Mode::Heal,
            crate::config::Timing::NONE,
        )
    }

    #[test]
    fn holder_outside_the_unit_blocks() {
        // A listener in this test process plays the other program.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let line = format!("Error: bind(0.0.0.0, {port}) failed: Address already in use");
        let explain = |after_fix| {
            explain_in(
                Path::new("/proc"),
                &service(),
                &[(port, line.clone())],
                Some("dovecot.service"),
                after_fix,
            )
            .into_iter()
            .find(|finding| finding.summary.contains(&format!("port {port}")))
            .expect("a finding for the port")
        };
        let finding = explain(AUTOMATIC);
        let manual = explain(RestartAfterFix::Manual);

        assert_eq!(finding.cause, Cause::PortConflict);
        assert!(finding.blocks_restart);
        assert!(
            finding
                .summary
                .contains(&format!("(PID {}), not by dovecot", std::process::id())),
            "{}",
            finding.summary
        );
        assert!(
            finding
                .next_step
                .ends_with("selfheal never kills it, and restarts dovecot once the port is free"),
            "{}",
            finding.next_step
        );
        assert!(
            manual
                .next_step
                .ends_with(", then run `selfheal restart dovecot`; selfheal never kills it"),
            "{}",
            manual.next_step
        );
    }

    /// Builds a `/proc` with one process `comm` (PID 4711, in `cgroup`) listening on port 25.
    fn fake_proc(comm: &str, cgroup: &str) -> tempfile::TempDir {
        let proc = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(proc.path().join("net")).unwrap();
        std::fs::write(proc.path().join("net/tcp"), TCP).unwrap();
        let pid = proc.path().join("4711");
        std::fs::create_dir_all(pid.join("fd")).unwrap();
        std::os::unix::fs::symlink("socket:[31337]", pid.join("fd/13")).unwrap();
        std::fs::write(pid.join("comm"), format!("{comm}\n")).unwrap();
        std::fs::write(pid.join("cgroup"), format!("0::{cgroup}\n")).unwrap();
        proc
    }

    fn postfix() -> ServiceConfig {
        ServiceConfig::from_preset(
            crate::config::presets::preset("postfix").unwrap(),
            "postfix",
            crate::config::Mode::Heal,
            crate::config::Timing::NONE,
        )
    }

    #[test]
    fn own_daemon_outside_the_unit_is_a_second_copy() {
        let proc = fake_proc("master", "/system.slice/session-4.scope");
        let findings = explain_in(
            proc.path(),
            &postfix(),
            &[],
            Some("postfix@-.service"),
            AUTOMATIC,
        );
        assert_eq!(findings.len(), 1, "{findings:?}");
        let finding = &findings[0];
        assert!(finding.blocks_restart);
        assert_eq!(
            finding.summary,
            "port conflict: port 25 is held by a second copy of postfix (master PID 4711) \
             running outside postfix@-.service"
        );
        assert!(finding.next_step.contains("`postfix stop` or `kill 4711`"));
        assert!(finding.evidence[0].contains("session-4.scope"));
    }

    #[test]
    fn own_daemon_inside_the_unit_is_no_conflict() {
        let proc = fake_proc(
            "master",
            "/system.slice/system-postfix.slice/postfix@-.service",
        );
        let findings = explain_in(
            proc.path(),
            &postfix(),
            &[],
            Some("postfix@-.service"),
            AUTOMATIC,
        );
        assert!(findings.is_empty(), "{findings:?}");
    }

    #[test]
    fn free_port_from_journal_is_a_self_clash() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let findings = explain_in(
            Path::new("/proc"),
            &service(),
            &[(
                port,
                "fatal: bind 0.0.0.0 port 1: Address already in use".into(),
            )],
            None,
            AUTOMATIC,
        );
        assert_eq!(findings.len(), 1);
        assert!(findings[0].summary.contains("nothing holds it now"));
        assert!(!findings[0].blocks_restart);
    }
}
