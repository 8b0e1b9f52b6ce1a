//! Facts about each covered service that a diagnosis uses: its config test, the
//! directories it must write to, and the covered services it needs.

use std::path::Path;
use std::time::Duration;

use super::{Cause, Finding, RestartAfterFix};
use crate::config::ServiceConfig;
use crate::store::ServiceStateRow;

/// Returns the config test commands of a preset, each run without a shell. A failing command means
/// the config is broken. Postfix needs two: `postfix check` finds problems of files and
/// permissions, while only `postconf` prints the broken line of `main.cf`.
pub fn config_tests(preset: &str) -> &'static [&'static [&'static str]] {
    match preset {
        "postfix" => &[&["postconf", "-n"], &["postfix", "check"]],
        "dovecot" => &[&["doveconf", "-n"]],
        "opendkim" => &[&["opendkim", "-n"]],
        "mariadb" => &[&["mariadbd", "--help", "--verbose"]],
        "spamd" => &[&["spamassassin", "--lint"]],
        "nginx" => &[&["nginx", "-t"]],
        "apache" => &[&["apachectl", "configtest"]],
        "unbound" => &[&["unbound-checkconf"]],
        "rsyslog" => &[&["rsyslogd", "-N1"]],
        "fail2ban" => &[&["fail2ban-client", "-t"]],
        _ => &[],
    }
}

/// Returns the command line a next step shows for a config test. `mariadbd --help --verbose`
/// prints every variable after the errors, so the admin is shown it with the listing sent
/// to /dev/null: what remains are the errors.
pub fn config_test_hint(argv: &[String]) -> String {
    let command = argv.join(" ");
    if command == "mariadbd --help --verbose" {
        format!("{command} >/dev/null")
    } else {
        command
    }
}

/// Returns whether the preset's config test takes well under a second, so it can run before every
/// restart. `spamassassin --lint` compiles every rule set and `fail2ban-client -t` starts a
/// Python interpreter, so those run only once a restart has failed.
pub fn quick_config_test(preset: &str) -> bool {
    matches!(
        preset,
        "postfix" | "dovecot" | "opendkim" | "nginx" | "apache" | "unbound" | "rsyslog"
    )
}

/// Process names (`/proc/PID/comm`) of a preset's own daemons. A listener with one of these names
/// outside the service's unit is a second copy of the service, such as a Postfix master started
/// by hand with `postfix start`, and not a foreign program.
pub fn own_programs(preset: &str) -> &'static [&'static str] {
    match preset {
        "postfix" => &["master", "smtpd", "postscreen"],
        "dovecot" => &["dovecot", "imap-login", "pop3-login"],
        "opendkim" => &["opendkim"],
        "mariadb" => &["mariadbd", "mysqld"],
        "spamd" => &["spamd", "spamd child"],
        "spamass-milter" => &["spamass-milter"],
        "nginx" => &["nginx"],
        "apache" => &["apache2", "httpd"],
        "unbound" => &["unbound"],
        "rsyslog" => &["rsyslogd"],
        "fail2ban" => &["fail2ban-server"],
        _ => &[],
    }
}

/// Returns how to stop a second copy of a preset that runs outside its unit, the service's
/// own way.
pub fn stray_stop_hint(preset: &str) -> Option<&'static str> {
    match preset {
        "postfix" => Some("`postfix stop`"),
        "mariadb" => Some("`mariadb-admin shutdown`"),
        "nginx" => Some("`nginx -s quit`"),
        "apache" => Some("`apachectl -k graceful-stop`"),
        "dovecot" => Some("`doveadm stop`"),
        _ => None,
    }
}

/// Directories a preset writes to: its queue, data and logs, and the temporary directory.
/// A full filesystem under any of them stops the service.
pub fn data_paths(preset: &str) -> &'static [&'static str] {
    match preset {
        "postfix" => &["/var/spool/postfix", "/var/lib/postfix", "/var/log"],
        "dovecot" => &["/var/mail", "/var/lib/dovecot", "/var/log"],
        "opendkim" => &["/run/opendkim", "/var/log"],
        "mariadb" => &["/var/lib/mysql", "/tmp", "/var/log"],
        "spamd" => &["/var/lib/spamassassin", "/tmp", "/var/log"],
        "spamass-milter" => &["/var/spool/postfix", "/var/log"],
        "nginx" => &["/var/lib/nginx", "/var/log/nginx"],
        "apache" => &["/var/lib/apache2", "/var/log/apache2"],
        "unbound" => &["/var/lib/unbound"],
        "rsyslog" => &["/var/log", "/var/spool/rsyslog"],
        "fail2ban" => &["/var/lib/fail2ban", "/var/log"],
        _ => &["/var/log", "/tmp"],
    }
}

/// Placeholder for the service's user in a next step (`install -d -o USER ...`), replaced by
/// the user that [`service_user`] returns, when it finds one.
pub const USER_PLACEHOLDER: &str = "-o USER ";

/// Time allowed for `systemctl show`.
const SYSTEMCTL_TIMEOUT: Duration = Duration::from_secs(5);

/// Finds the user a service runs as: the unit's `User=`, else for OpenDKIM the `UserID` of
/// /etc/opendkim.conf, which the daemon switches to after it starts as root, else the user
/// Debian's opendkim package creates. `None` when nothing names one.
pub async fn service_user(service: &ServiceConfig, unit: Option<&str>) -> Option<String> {
    if let Some(unit) = unit {
        if let Some(user) = unit_user(unit).await {
            return Some(user);
        }
    }
    if service.preset.as_deref() == Some("opendkim") {
        let configured = opendkim_user(Path::new("/etc/opendkim.conf"));
        return Some(configured.unwrap_or_else(|| "opendkim".to_string()));
    }
    None
}

/// Reads `User=` of a unit with `systemctl show`; `None` when it is not set or cannot be read.
async fn unit_user(unit: &str) -> Option<String> {
    let systemctl = super::config_test::find_program("systemctl")?;
    let args = ["show", "--property=User", "--value", unit];
    let finished =
        crate::probe::command::run_program(&systemctl, &args, "systemctl show", SYSTEMCTL_TIMEOUT)
            .await
            .ok()?;
    if !finished.status.success() {
        return None;
    }
    let user = String::from_utf8_lossy(&finished.stdout).trim().to_string();
    (!user.is_empty()).then_some(user)
}

/// Reads `UserID user[:group]` from opendkim.conf(5) and returns the user.
fn opendkim_user(conf: &Path) -> Option<String> {
    let text = std::fs::read_to_string(conf).ok()?;
    text.lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (key, value) = line.split_once(char::is_whitespace)?;
            key.eq_ignore_ascii_case("UserID").then(|| value.trim())
        })
        .map(|value| value.split(':').next().unwrap_or(value).trim().to_string())
        .rfind(|user| !user.is_empty())
}

/// Covered services a preset cannot work without, each with why.
fn needs(preset: &str) -> Vec<(&'static str, &'static str)> {
    let mut needs = match preset {
        "spamass-milter" => vec![("spamd", "spamass-milter hands every message to spamd")],
        _ => Vec::new(),
    };
    if preset == "postfix" && postfix_uses_mysql(Path::new("/etc/postfix/main.cf")) {
        needs.push(("mariadb", "main.cf has mysql: lookup tables"));
    }
    if preset != "unbound" && resolves_locally(Path::new("/etc/resolv.conf")) {
        needs.push((
            "unbound",
            "/etc/resolv.conf sends every DNS lookup to this host",
        ));
    }
    needs
}

fn postfix_uses_mysql(main_cf: &Path) -> bool {
    std::fs::read_to_string(main_cf).is_ok_and(|text| {
        text.lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .any(|line| line.contains("mysql:"))
    })
}

/// Returns whether the first nameserver of resolv.conf is this host.
fn resolves_locally(resolv_conf: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(resolv_conf) else {
        return false;
    };
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .next()
        .is_some_and(|server| server.starts_with("127.") || server == "::1")
}

/// Findings for the covered services `service` needs that are not healthy now. `after_fix`
/// decides whether the next step promises that selfheal starts `service` again by itself once
/// the other one is back.
pub fn dependencies_down(
    service: &ServiceConfig,
    preset: &str,
    states: &[ServiceStateRow],
    after_fix: RestartAfterFix,
) -> Vec<Finding> {
    needs(preset)
        .into_iter()
        .filter_map(|(needed, why)| {
            let state = states
                .iter()
                .find(|row| row.service == needed && row.service != service.name)?;
            if matches!(state.state.as_str(), "healthy" | "suspect") {
                return None;
            }
            Some(
                Finding::new(
                    Cause::DependencyDown,
                    format!(
                        "dependency down: {} is not healthy ({}); {why}",
                        state.service, state.state
                    ),
                    match after_fix {
                        RestartAfterFix::Automatic => format!(
                            "fix {} first (`selfheal status` shows its incident); {} follows \
                             once it is back",
                            state.service, service.name
                        ),
                        RestartAfterFix::Manual => format!(
                            "fix {} first (`selfheal status` shows its incident), then run \
                             `selfheal restart {}` if it does not recover with it",
                            state.service, service.name
                        ),
                    },
                )
                .with_evidence([format!(
                    "{}: {} since {}",
                    state.service,
                    state.state,
                    crate::store::format_ms(state.since_ms)
                )]),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_has_paths() {
        for preset in crate::config::presets::presets() {
            assert!(!data_paths(preset.name).is_empty(), "{}", preset.name);
        }
    }

    #[test]
    fn local_resolver() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        for (text, local) in [
            ("nameserver 127.0.0.1\n", true),
            ("# comment\nnameserver ::1\n", true),
            ("nameserver 192.0.2.53\nnameserver 127.0.0.1\n", false),
            ("search example.org\n", false),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(resolves_locally(&path), local, "{text}");
        }
    }

    #[test]
    fn opendkim_user_from_conf() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opendkim.conf");
        for (text, user) in [
            ("Syslog yes\nUserID\t\topendkim\n", Some("opendkim")),
            ("UserID dkim:postfix\n", Some("dkim")),
            ("# UserID commented\nSocket local:/run/x.sock\n", None),
            ("userid first\nUserID second\n", Some("second")),
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(opendkim_user(&path).as_deref(), user, "{text}");
        }
        assert_eq!(opendkim_user(&dir.path().join("missing.conf")), None);
    }

    #[test]
    fn mariadb_hint_discards_listing() {
        let argv: Vec<String> = ["mariadbd", "--help", "--verbose"]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
        assert_eq!(
            config_test_hint(&argv),
            "mariadbd --help --verbose >/dev/null"
        );
        assert_eq!(
            config_test_hint(&["postconf".to_string(), "-n".to_string()]),
            "postconf -n"
        );
    }

    #[test]
    fn postfix_mysql_lookups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("main.cf");
        std::fs::write(
            &path,
            "virtual_mailbox_maps = mysql:/etc/postfix/vmail.cf\n",
        )
        .unwrap();
        assert!(postfix_uses_mysql(&path));
        std::fs::write(&path, "# virtual_mailbox_maps = mysql:/x\n").unwrap();
        assert!(!postfix_uses_mysql(&path));
    }

    #[test]
    fn milter_needs_spamd() {
        let service = ServiceConfig::from_preset(
            crate::config::presets::preset("spamass-milter").unwrap(),
            "spamass-milter",
            crate::config::Mode::Heal,
            crate::config::Timing::NONE,
        );
        let row = |name: &str, state: &str| ServiceStateRow {
            service: name.into(),
            state: state.into(),
            since_ms: 1_700_000_000_000,
            checked_ms: None,
            last_probe: None,
            last_action: None,
            last_action_ms: None,
        };
        let states = [
            row("spamd", "needs attention"),
            row("spamass-milter", "down"),
        ];
        let down = dependencies_down(
            &service,
            "spamass-milter",
            &states,
            RestartAfterFix::Automatic,
        );
        let watched =
            dependencies_down(&service, "spamass-milter", &states, RestartAfterFix::Manual);
        assert_eq!(down.len(), 1, "{down:?}");
        assert_eq!(down[0].cause, Cause::DependencyDown);
        assert!(
            down[0]
                .summary
                .starts_with("dependency down: spamd is not healthy (needs attention)"),
            "{}",
            down[0].summary
        );
        assert!(
            down[0]
                .next_step
                .ends_with("spamass-milter follows once it is back"),
            "{}",
            down[0].next_step
        );
        assert!(
            watched[0].next_step.ends_with(
                "then run `selfheal restart spamass-milter` if it does not recover with it"
            ),
            "{}",
            watched[0].next_step
        );
        let fine = dependencies_down(
            &service,
            "spamass-milter",
            &[row("spamd", "healthy")],
            RestartAfterFix::Automatic,
        );
        assert!(fine.is_empty());
    }
}
