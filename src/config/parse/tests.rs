//! Tests of the config parser: whole config files, each key's checks and messages, and the
//! helpers for lines, key suggestions and probe values.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::checker::{closest_key, edit_distance, join_key, Checker};
use super::parse;
use super::probes::{check_dns_name, join_with_and, parse_status_class, SEND_EXPECT_EXAMPLE};
use crate::config::presets::{self, Preset};
use crate::config::{Config, ConfigError, Mode, TlsMode, WebhookKind};
use crate::probe::{Endpoint, ProbeSpec, Protocol, StatusClass, TlsMode as ProbeTlsMode};

const FILE: &str = "/etc/selfheal/selfheal.toml";

fn ok(text: &str) -> Config {
    match parse(text, Path::new(FILE)) {
        Ok(config) => config,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

fn errors(text: &str) -> Vec<ConfigError> {
    match parse(text, Path::new(FILE)) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(errors) => errors.0,
    }
}

fn single(text: &str) -> ConfigError {
    let mut found = errors(text);
    assert_eq!(found.len(), 1, "expected one error, got {found:#?}");
    found.remove(0)
}

/// Writes a file with the given mode into `dir` and returns its path.
fn write_file(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
    let path = dir.join(name);
    if let Err(err) = fs::write(&path, content) {
        panic!("writing {}: {err}", path.display());
    }
    if let Err(err) = fs::set_permissions(&path, fs::Permissions::from_mode(mode)) {
        panic!("chmod {}: {err}", path.display());
    }
    path
}

fn tempdir() -> tempfile::TempDir {
    match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(err) => panic!("creating a tempdir: {err}"),
    }
}

fn full_example(password_file: &Path, sendmail: &Path) -> String {
    format!(
        r#"interval = "30s"
mode = "heal"
state_dir = "/var/lib/selfheal"
control_socket = "/run/selfheal/control.sock"
probe_timeout = "5s"
probe_retries = 2
retry_interval = "2s"
verify_after = "5s"
verify_timeout = "30s"
max_restarts = 3
restart_window = "15min"
restart_timeout = "2min"

[alerts]
from = "selfheal@mail.example.org"
to = ["admin@example.org"]
journal_lines = 20
sendmail = "{}"

[[alerts.relay]]
host = "smtp.example.net"
port = 587
tls = "starttls"
username = "selfheal"
password_file = "{}"
timeout = "30s"

[services.postfix]
[services.dovecot]
mode = "watch"
[services.ai-filter]
unit = "ai-filter.service"
probe = {{ tcp = "127.0.0.1:10030" }}
critical = true
"#,
        sendmail.display(),
        password_file.display()
    )
}

#[test]
fn full_example_parses() {
    let dir = tempdir();
    let password = write_file(dir.path(), "relay-password", "secret\n", 0o600);
    let sendmail = write_file(dir.path(), "sendmail", "#!/bin/sh\n", 0o755);
    let config = ok(&full_example(&password, &sendmail));

    assert_eq!(config.path.as_deref(), Some(Path::new(FILE)));
    assert_eq!(config.interval, Duration::from_secs(30));
    assert_eq!(config.mode, Mode::Heal);
    assert_eq!(config.state_dir, Path::new("/var/lib/selfheal"));
    assert_eq!(
        config.control_socket,
        Path::new("/run/selfheal/control.sock")
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);

    let alerts = &config.alerts;
    assert_eq!(alerts.from.as_deref(), Some("selfheal@mail.example.org"));
    assert_eq!(alerts.to, ["admin@example.org"]);
    assert_eq!(alerts.journal_lines, 20);
    assert_eq!(alerts.sendmail.as_deref(), Some(sendmail.as_path()));
    assert_eq!(alerts.relays.len(), 1);
    let relay = &alerts.relays[0];
    assert_eq!(relay.host, "smtp.example.net");
    assert_eq!(relay.port, 587);
    assert_eq!(relay.tls, TlsMode::Starttls);
    assert_eq!(relay.username.as_deref(), Some("selfheal"));
    assert_eq!(relay.password_file.as_deref(), Some(password.as_path()));
    assert_eq!(relay.timeout, Duration::from_secs(30));

    assert_eq!(config.service_names(), ["postfix", "dovecot", "ai-filter"]);
    let Some(postfix) = config.service("postfix") else {
        panic!("postfix missing");
    };
    assert_eq!(postfix.preset.as_deref(), Some("postfix"));
    assert_eq!(postfix.units, ["postfix@-.service", "postfix.service"]);
    assert_eq!(
        postfix.probes,
        presets::preset("postfix").map_or_else(Vec::new, Preset::probe_specs)
    );
    assert_eq!(postfix.probes[0].protocol.name(), "smtp");
    assert!(postfix.critical);
    assert_eq!(postfix.mode, Mode::Heal);
    assert_eq!(postfix.probe_timeout, Duration::from_secs(5));
    assert_eq!(postfix.restart_timeout, Duration::from_secs(120));
    assert_eq!(postfix.recovery, crate::policy::Recovery::default());

    let Some(dovecot) = config.service("dovecot") else {
        panic!("dovecot missing");
    };
    assert_eq!(dovecot.mode, Mode::Watch);

    let Some(filter) = config.service("ai-filter") else {
        panic!("ai-filter missing");
    };
    assert_eq!(filter.preset, None);
    assert_eq!(filter.units, ["ai-filter.service"]);
    assert!(filter.critical);
    assert!(filter.commands.is_none());
    assert_eq!(
        filter.probes,
        [ProbeSpec::tcp("127.0.0.1:10030", "config").unwrap()]
    );
}

#[test]
fn empty_file_gets_defaults() {
    let config = ok("");
    assert_eq!(config.interval, Duration::from_secs(30));
    assert_eq!(config.mode, Mode::Heal);
    assert_eq!(config.state_dir, Path::new("/var/lib/selfheal"));
    assert_eq!(
        config.control_socket,
        Path::new("/run/selfheal/control.sock")
    );
    assert_eq!(config.alerts.journal_lines, 20);
    assert!(config.alerts.to.is_empty());
    assert!(config.services.is_empty());
    assert_eq!(config.warnings.len(), 1);
    assert_eq!(config.warnings[0].key, "services");
}

#[test]
fn unknown_key_names_line() {
    let error = single("mode = \"heal\"\nintervall = \"30s\"\n");
    assert_eq!(error.line, 2);
    assert_eq!(error.key, "intervall");
    assert!(error.message.contains("did you mean `interval`"), "{error}");
    assert_eq!(error.example.as_deref(), Some("interval = \"30s\""));
    assert_eq!(error.file, Path::new(FILE));
}

#[test]
fn unknown_key_lists_allowed() {
    let error = single("[services.postfix]\nzzzzzzzz = 1\n");
    assert_eq!(error.line, 2);
    assert_eq!(error.key, "services.postfix.zzzzzzzz");
    assert!(error.message.contains("critical"), "{error}");
    assert!(error.message.contains("restart_window"), "{error}");
}

#[test]
fn alias_suggests_key() {
    let text = "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nuser = \"x\"\n";
    let error = single(text);
    assert_eq!(error.line, 5);
    assert_eq!(error.key, "alerts.relay[0].user");
    assert!(error.message.contains("did you mean `username`"), "{error}");
}

#[test]
fn preset_name_at_top_level() {
    let error = single("[postfix]\n");
    assert_eq!(error.key, "postfix");
    assert_eq!(error.line, 1);
    assert_eq!(error.example.as_deref(), Some("[services.postfix]"));
}

#[test]
fn wrong_type_shows_value() {
    let error = single("probe_retries = \"2\"\n");
    assert_eq!(error.key, "probe_retries");
    assert_eq!(error.message, "expected an integer, found string \"2\"");
    assert_eq!(error.example.as_deref(), Some("probe_retries = 2"));
}

#[test]
fn bare_integer_duration() {
    let error = single("\n\ninterval = 30\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "interval");
    assert!(error.message.contains("needs a unit"), "{error}");
    assert!(error.message.contains("\"30s\""), "{error}");
    assert_eq!(error.example.as_deref(), Some("interval = \"30s\""));
}

#[test]
fn durations_with_units() {
    let config = ok("interval = \"500ms\"\nrestart_window = \"2h\"\nverify_timeout = \"5min\"\n");
    assert_eq!(config.interval, Duration::from_millis(500));
    let text = "restart_window = \"2h\"\n[services.postfix]\n";
    let config = ok(text);
    assert_eq!(
        config.services[0].recovery.restart_window,
        Duration::from_secs(7200)
    );
}

#[test]
fn bad_duration_text() {
    let error = single("[services.postfix]\nverify_after = \"5 parsecs\"\n");
    assert_eq!(error.line, 2);
    assert_eq!(error.key, "services.postfix.verify_after");
    assert!(
        error.message.starts_with("invalid duration \"5 parsecs\""),
        "{error}"
    );
    assert_eq!(error.example.as_deref(), Some("verify_after = \"5s\""));
}

#[test]
fn zero_interval_rejected() {
    let error = single("interval = \"0s\"\n");
    assert_eq!(error.key, "interval");
    assert!(error.message.contains("greater than zero"), "{error}");
}

#[test]
fn zero_verify_after_allowed() {
    let config = ok("verify_after = \"0s\"\n[services.postfix]\n");
    assert_eq!(config.services[0].recovery.verify_after, Duration::ZERO);
}

#[test]
fn invalid_mode_names_key() {
    let error = single("[services.postfix]\n[services.dovecot]\nmode = \"fix\"\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "services.dovecot.mode");
    assert_eq!(
        error.message,
        "invalid mode \"fix\"; expected \"heal\" or \"watch\""
    );
    assert_eq!(error.example.as_deref(), Some("mode = \"watch\""));
}

#[test]
fn dotted_key_line() {
    let error = single("interval = \"30s\"\nservices.dovecot.mode = \"fix\"\n");
    assert_eq!(error.line, 2);
    assert_eq!(error.key, "services.dovecot.mode");
}

#[test]
fn bad_tls_value() {
    let text = "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\ntls = \"ssl\"\n";
    let error = single(text);
    assert_eq!(error.line, 5);
    assert_eq!(error.key, "alerts.relay[0].tls");
    assert!(
        error.message.contains("invalid tls mode \"ssl\""),
        "{error}"
    );
}

#[test]
fn port_out_of_range() {
    for port in ["0", "65536", "-25"] {
        let text =
            format!("[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nport = {port}\n");
        let error = single(&text);
        assert_eq!(error.line, 5, "port {port}");
        assert_eq!(error.key, "alerts.relay[0].port");
        assert!(error.message.contains("from 1 to 65535"), "{error}");
    }
}

#[test]
fn relay_port_follows_tls() {
    let text = "[alerts]\nsendmail = false\n\
                    [[alerts.relay]]\nhost = \"a\"\ntls = \"tls\"\n\
                    [[alerts.relay]]\nhost = \"b\"\n\
                    [[alerts.relay]]\nhost = \"c\"\ntls = \"none\"\n\
                    [[alerts.relay]]\nhost = \"d\"\ntls = \"tls\"\nport = 2465\n";
    let config = ok(text);
    let ports: Vec<u16> = config.alerts.relays.iter().map(|r| r.port).collect();
    assert_eq!(ports, [465, 587, 25, 2465]);
    assert_eq!(config.alerts.relays[1].tls, TlsMode::Starttls);
    assert_eq!(config.alerts.relays[1].timeout, Duration::from_secs(30));
}

#[test]
fn relay_single_brackets() {
    let error = single("[alerts]\nsendmail = false\n[alerts.relay]\nhost = \"h\"\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "alerts.relay");
    assert!(error.message.contains("[[alerts.relay]]"), "{error}");
}

#[test]
fn relay_needs_host() {
    let error = single("[alerts]\nsendmail = false\n[[alerts.relay]]\nport = 25\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "alerts.relay[0].host");
    assert_eq!(
        error.example.as_deref(),
        Some("host = \"smtp.example.net\"")
    );
}

#[test]
fn relay_host_with_port() {
    let text = "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"smtp.example.net:587\"\n";
    let error = single(text);
    assert_eq!(error.key, "alerts.relay[0].host");
    assert!(error.message.contains("`port`"), "{error}");
    let config = ok("[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"2001:db8::1\"\n");
    assert_eq!(config.alerts.relays[0].host, "2001:db8::1");
}

#[test]
fn username_needs_password_file() {
    let text = "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nusername = \"u\"\n";
    let error = single(text);
    assert_eq!(error.line, 5);
    assert_eq!(error.key, "alerts.relay[0].username");
    assert!(error.message.contains("password_file"), "{error}");
}

#[test]
fn password_file_needs_username() {
    let dir = tempdir();
    let password = write_file(dir.path(), "pw", "secret", 0o600);
    let text = format!(
        "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\npassword_file = \"{}\"\n",
        password.display()
    );
    let error = single(&text);
    assert_eq!(error.key, "alerts.relay[0].password_file");
    assert!(error.message.contains("`username`"), "{error}");
}

#[test]
fn missing_password_file() {
    let dir = tempdir();
    let missing = dir.path().join("nope");
    let text = format!(
        "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nusername = \"u\"\n\
             password_file = \"{}\"\n",
        missing.display()
    );
    let error = single(&text);
    assert_eq!(error.line, 6);
    assert_eq!(error.key, "alerts.relay[0].password_file");
    assert!(
        error.message.starts_with("cannot read password file"),
        "{error}"
    );
    assert!(error.message.contains("nope"), "{error}");
}

#[test]
fn password_file_is_directory() {
    let dir = tempdir();
    let text = format!(
        "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nusername = \"u\"\n\
             password_file = \"{}\"\n",
        dir.path().display()
    );
    let error = single(&text);
    assert!(error.message.contains("not a regular file"), "{error}");
}

#[test]
fn wide_password_file_warns() {
    let dir = tempdir();
    let password = write_file(dir.path(), "pw", "secret", 0o644);
    let text = format!(
        "[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = \"a@x\"\n[[alerts.relay]]\n\
             host = \"h\"\nusername = \"u\"\npassword_file = \"{}\"\n[services.postfix]\n",
        password.display()
    );
    let config = ok(&text);
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(warning.line, 8);
    assert_eq!(warning.key, "alerts.relay[0].password_file");
    assert!(warning.message.contains("0644"), "{warning}");
    assert!(warning.message.contains("chmod 600"), "{warning}");
}

#[test]
fn plain_relay_login_warns() {
    let dir = tempdir();
    let password = write_file(dir.path(), "pw", "secret", 0o600);
    let text = format!(
        "[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = \"a@x\"\n[[alerts.relay]]\n\
             host = \"h\"\ntls = \"none\"\nusername = \"u\"\npassword_file = \"{}\"\n\
             [services.postfix]\n",
        password.display()
    );
    let config = ok(&text);
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert!(config.warnings[0].message.contains("unencrypted"));
}

#[test]
fn malformed_addresses() {
    for address in [
        "admin",
        "a@b@c",
        "@example.org",
        "admin@",
        "ad min@x",
        "<a@b>",
        "a@b,c@d",
    ] {
        let text = format!("[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = [\"{address}\"]\n");
        let error = single(&text);
        assert_eq!(error.line, 4, "{address}");
        assert_eq!(error.key, "alerts.to[0]", "{address}");
        assert!(error.message.starts_with("invalid address"), "{error}");
    }
    let error = single("[alerts]\nsendmail = false\nfrom = \"nobody\"\n");
    assert_eq!(error.key, "alerts.from");
}

#[test]
fn address_element_line() {
    let text = "[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = [\n  \"a@x\",\n  \"bad\",\n]\n";
    let error = single(text);
    assert_eq!(error.line, 6);
    assert_eq!(error.key, "alerts.to[1]");
}

#[test]
fn single_recipient_string() {
    let config = ok("[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = \"admin@x\"\n");
    assert_eq!(config.alerts.to, ["admin@x"]);
}

#[test]
fn recipients_need_sender() {
    let error = single("[alerts]\nsendmail = false\nto = [\"admin@x\"]\n");
    assert_eq!(error.line, 1);
    assert_eq!(error.key, "alerts.from");
    assert!(error.message.contains("`from` is required"), "{error}");
}

#[test]
fn recipients_without_channel_warn() {
    let config =
        ok("[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = [\"a@x\"]\n[services.postfix]\n");
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert_eq!(config.warnings[0].key, "alerts.to");
    assert_eq!(config.warnings[0].line, 4);
    assert!(!config.alerts.has_channel());
}

#[test]
fn sendmail_checks() {
    let dir = tempdir();
    let script = write_file(dir.path(), "sendmail", "#!/bin/sh\n", 0o755);
    let config = ok(&format!("[alerts]\nsendmail = \"{}\"\n", script.display()));
    assert_eq!(config.alerts.sendmail.as_deref(), Some(script.as_path()));

    let config = ok("[alerts]\nsendmail = false\n");
    assert_eq!(config.alerts.sendmail, None);

    let plain = write_file(dir.path(), "plain", "", 0o644);
    let error = single(&format!("[alerts]\nsendmail = \"{}\"\n", plain.display()));
    assert!(error.message.contains("not an executable file"), "{error}");

    let missing = dir.path().join("missing");
    let error = single(&format!("[alerts]\nsendmail = \"{}\"\n", missing.display()));
    assert!(error.message.starts_with("sendmail binary"), "{error}");
    assert!(error.message.contains("not found"), "{error}");

    let error = single("[alerts]\nsendmail = true\n");
    assert_eq!(error.key, "alerts.sendmail");
    assert!(error.message.contains("false to disable"), "{error}");

    let error = single("[alerts]\nsendmail = \"sendmail\"\n");
    assert!(error.message.contains("absolute path"), "{error}");
}

#[test]
fn journal_lines_range() {
    let config = ok("[alerts]\nsendmail = false\njournal_lines = 0\n");
    assert_eq!(config.alerts.journal_lines, 0);
    let error = single("[alerts]\nsendmail = false\njournal_lines = -1\n");
    assert_eq!(error.key, "alerts.journal_lines");
}

/// Config with one webhook table on line 3 whose keys start on line 4, no mail channel and
/// one service, so a valid `body` gives no warning.
fn one_webhook(body: &str) -> String {
    format!("[alerts]\nsendmail = false\n[[alerts.webhook]]\n{body}[services.postfix]\n")
}

#[test]
fn webhooks_of_every_kind_parse() {
    let dir = tempdir();
    let token = write_file(dir.path(), "token", "syt_secret\n", 0o600);
    let token = token.display();
    let text = format!(
        "[alerts]\n\
         sendmail = false\n\
         [[alerts.webhook]]\n\
         name = \"receiver\"\n\
         kind = \"json\"\n\
         url = \"https://hooks.example.org/selfheal\"\n\
         [[alerts.webhook]]\n\
         name = \"phone\"\n\
         kind = \"ntfy\"\n\
         url = \"https://ntfy.example.org/mail1-alerts\"\n\
         token_file = \"{token}\"\n\
         fallback = true\n\
         [[alerts.webhook]]\n\
         name = \"team\"\n\
         kind = \"slack\"\n\
         url = \"https://hooks.slack.example.com/services/T0/B0/x\"\n\
         timeout = \"5s\"\n\
         [[alerts.webhook]]\n\
         name = \"ops-room\"\n\
         kind = \"matrix\"\n\
         url = \"https://matrix.example.org\"\n\
         token_file = \"{token}\"\n\
         room = \"!AbCdEfGhIjKlMnOp:example.org\"\n\
         [services.postfix]\n"
    );
    let config = ok(&text);

    // The one warning is about fallback = true with no mail channel.
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let hooks = &config.alerts.webhooks;
    let names: Vec<&str> = hooks.iter().map(|hook| hook.name.as_str()).collect();
    assert_eq!(names, ["receiver", "phone", "team", "ops-room"]);
    let kinds: Vec<WebhookKind> = hooks.iter().map(|hook| hook.kind).collect();
    assert_eq!(
        kinds,
        [
            WebhookKind::Json,
            WebhookKind::Ntfy,
            WebhookKind::Slack,
            WebhookKind::Matrix
        ]
    );

    assert_eq!(hooks[0].url, "https://hooks.example.org/selfheal");
    assert_eq!(hooks[0].token_file, None);
    assert_eq!(hooks[0].room, None);
    assert!(!hooks[0].fallback);
    assert_eq!(hooks[0].timeout, Duration::from_secs(30));

    assert_eq!(
        hooks[1].token_file.as_deref().map(Path::to_path_buf),
        Some(PathBuf::from(token.to_string()))
    );
    assert!(hooks[1].fallback);
    assert_eq!(hooks[2].timeout, Duration::from_secs(5));

    assert_eq!(hooks[3].url, "https://matrix.example.org/");
    assert_eq!(
        hooks[3].room.as_deref(),
        Some("!AbCdEfGhIjKlMnOp:example.org")
    );
    assert!(config.alerts.has_channel());
    assert!(!config.alerts.has_mail_channel());
}

#[test]
fn webhook_alone_is_a_channel() {
    let config = ok(&one_webhook(
        "name = \"phone\"\nkind = \"ntfy\"\nurl = \"https://ntfy.example.org/mail1\"\n",
    ));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(config.alerts.to.is_empty());
    assert!(config.alerts.has_channel());
}

#[test]
fn webhook_single_brackets() {
    let error = single("[alerts]\nsendmail = false\n[alerts.webhook]\nname = \"a\"\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "alerts.webhook");
    assert!(error.message.contains("[[alerts.webhook]]"), "{error}");
}

#[test]
fn webhook_not_a_table() {
    let error = single("[alerts]\nsendmail = false\nwebhook = \"https://x.example.org\"\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "alerts.webhook");
    assert!(error.message.contains("array of tables"), "{error}");

    let error = single("[alerts]\nsendmail = false\nwebhook = [1]\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "alerts.webhook[0]");
    assert!(error.message.contains("expected a table"), "{error}");
}

#[test]
fn webhook_needs_name_kind_url() {
    let found = errors(&one_webhook("timeout = \"5s\"\n"));
    let located: Vec<(usize, &str)> = found.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        located,
        [
            (3, "alerts.webhook[0].name"),
            (3, "alerts.webhook[0].kind"),
            (3, "alerts.webhook[0].url"),
        ]
    );
    assert!(
        found[0].message.starts_with("missing webhook name"),
        "{found:#?}"
    );
    assert!(found[1].message.contains("\"matrix\""), "{found:#?}");
    assert!(found.iter().all(|e| e.example.is_some()), "{found:#?}");
}

#[test]
fn webhook_name_checks() {
    let rest = "kind = \"json\"\nurl = \"https://hooks.example.org/x\"\n";

    let error = single(&one_webhook(&format!("name = \"\"\n{rest}")));
    assert_eq!(error.line, 4);
    assert_eq!(error.key, "alerts.webhook[0].name");
    assert!(error.message.contains("must not be empty"), "{error}");

    let error = single(&one_webhook(&format!("name = \"ops phone\"\n{rest}")));
    assert_eq!(error.line, 4);
    assert!(error.message.contains("must not contain spaces"), "{error}");

    let error = single(&one_webhook(&format!("name = 7\n{rest}")));
    assert_eq!(error.line, 4);
    assert!(error.message.contains("expected a string"), "{error}");
}

#[test]
fn webhook_duplicate_name() {
    let text = "[alerts]\nsendmail = false\n\
                [[alerts.webhook]]\nname = \"ops\"\nkind = \"json\"\n\
                url = \"https://a.example.org/x\"\n\
                [[alerts.webhook]]\nname = \"ops\"\nkind = \"json\"\n\
                url = \"https://b.example.org/x\"\n";
    let error = single(text);
    assert_eq!(error.line, 8);
    assert_eq!(error.key, "alerts.webhook[1].name");
    assert!(
        error.message.contains("\"ops\" is already used on line 4"),
        "{error}"
    );
}

#[test]
fn webhook_kind_invalid() {
    let error = single(&one_webhook(
        "name = \"a\"\nkind = \"discord\"\nurl = \"https://hooks.example.org/x\"\n",
    ));
    assert_eq!(error.line, 5);
    assert_eq!(error.key, "alerts.webhook[0].kind");
    assert!(
        error
            .message
            .starts_with("invalid webhook kind \"discord\""),
        "{error}"
    );
    assert_eq!(error.example.as_deref(), Some("kind = \"ntfy\""));
}

#[test]
fn webhook_url_checks() {
    for (url, expected) in [
        ("", "must not be empty"),
        (
            "ftp://hooks.example.org/x",
            "URL scheme \"ftp\" is not supported",
        ),
        ("file:///tmp/x", "URL scheme \"file\" is not supported"),
        ("https://hooks.example.org/a b", "contains spaces"),
        (" https://hooks.example.org/x", "contains spaces"),
        ("https://hooks.example.org/x\\t", "control characters"),
        ("hooks.example.org/x", "invalid URL \"hooks.example.org/x\""),
        ("https://", "invalid URL"),
        ("https://hooks.example.org:99999/x", "invalid URL"),
    ] {
        let error = single(&one_webhook(&format!(
            "name = \"a\"\nkind = \"json\"\nurl = \"{url}\"\n"
        )));
        assert_eq!(error.line, 6, "{url}");
        assert_eq!(error.key, "alerts.webhook[0].url", "{url}");
        assert!(error.message.contains(expected), "{url}: {error}");
    }
}

#[test]
fn webhook_url_credentials_rejected() {
    for url in [
        "https://alerts:s3cret@hooks.example.org/x",
        "https://s3cret@hooks.example.org/x",
    ] {
        let error = single(&one_webhook(&format!(
            "name = \"a\"\nkind = \"json\"\nurl = \"{url}\"\n"
        )));
        assert_eq!(error.line, 6, "{url}");
        assert!(error.message.contains("user name or password"), "{error}");
        assert!(error.message.contains("token_file"), "{error}");
        assert!(!error.message.contains("s3cret"), "{error}");
        assert!(
            error.message.contains("https://***@hooks.example.org/x"),
            "{error}"
        );
    }

    // A parse error must not print the password either.
    let error = single(&one_webhook(
        "name = \"a\"\nkind = \"json\"\nurl = \"https://u:s3cret@hooks example.org/x\"\n",
    ));
    assert!(!error.message.contains("s3cret"), "{error}");
}

#[test]
fn plain_http_warns() {
    let text = one_webhook("name = \"a\"\nkind = \"json\"\nurl = \"http://hooks.example.org/x\"\n");
    let config = ok(&text);
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(warning.line, 6);
    assert_eq!(warning.key, "alerts.webhook[0].url");
    assert_eq!(
        warning.message,
        "plain http:// to hooks.example.org: alerts would cross the network unencrypted; \
         use https://"
    );
}

#[test]
fn plain_http_with_token_warns() {
    let dir = tempdir();
    let token = write_file(dir.path(), "token", "secret\n", 0o600);
    let text = one_webhook(&format!(
        "name = \"a\"\nkind = \"ntfy\"\nurl = \"http://10.0.0.5/alerts\"\n\
         token_file = \"{}\"\n",
        token.display()
    ));
    let config = ok(&text);
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert_eq!(config.warnings[0].line, 6);
    assert!(
        config.warnings[0]
            .message
            .contains("alerts and the token would cross the network unencrypted"),
        "{}",
        config.warnings[0]
    );
}

#[test]
fn plain_http_to_loopback_allowed() {
    for url in [
        "http://127.0.0.1:8080/hook",
        "http://127.1.2.3/hook",
        "http://localhost:8080/hook",
        "http://ntfy.localhost/alerts",
        "http://[::1]:8080/hook",
        "https://hooks.example.org/hook",
    ] {
        let config = ok(&one_webhook(&format!(
            "name = \"a\"\nkind = \"json\"\nurl = \"{url}\"\n"
        )));
        assert!(config.warnings.is_empty(), "{url}: {:?}", config.warnings);
    }
}

#[test]
fn ntfy_url_needs_topic() {
    let error = single(&one_webhook(
        "name = \"a\"\nkind = \"ntfy\"\nurl = \"https://ntfy.example.org\"\n",
    ));
    assert_eq!(error.line, 6);
    assert_eq!(error.key, "alerts.webhook[0].url");
    assert!(error.message.contains("topic"), "{error}");
}

#[test]
fn webhook_token_file_checks() {
    let dir = tempdir();
    let body = "name = \"a\"\nkind = \"json\"\nurl = \"https://hooks.example.org/x\"\n";

    let error = single(&one_webhook(&format!("{body}token_file = \"token\"\n")));
    assert_eq!(error.line, 7);
    assert_eq!(error.key, "alerts.webhook[0].token_file");
    assert!(error.message.contains("absolute path"), "{error}");

    let missing = dir.path().join("absent");
    let error = single(&one_webhook(&format!(
        "{body}token_file = \"{}\"\n",
        missing.display()
    )));
    assert_eq!(error.line, 7);
    assert!(
        error.message.starts_with("cannot read token file"),
        "{error}"
    );
    assert!(error.message.contains("absent"), "{error}");

    let error = single(&one_webhook(&format!(
        "{body}token_file = \"{}\"\n",
        dir.path().display()
    )));
    assert!(error.message.contains("not a regular file"), "{error}");
}

#[test]
fn wide_token_file_warns() {
    let dir = tempdir();
    let token = write_file(dir.path(), "token", "secret\n", 0o640);
    let config = ok(&one_webhook(&format!(
        "name = \"a\"\nkind = \"json\"\nurl = \"https://hooks.example.org/x\"\n\
         token_file = \"{}\"\n",
        token.display()
    )));
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(warning.line, 7);
    assert_eq!(warning.key, "alerts.webhook[0].token_file");
    assert!(warning.message.starts_with("token file"), "{warning}");
    assert!(warning.message.contains("0640"), "{warning}");
    assert!(warning.message.contains("chmod 600"), "{warning}");
}

#[test]
fn matrix_needs_room_and_token() {
    let found = errors(&one_webhook(
        "name = \"a\"\nkind = \"matrix\"\nurl = \"https://matrix.example.org\"\n",
    ));
    let located: Vec<(usize, &str)> = found.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        located,
        [
            (3, "alerts.webhook[0].room"),
            (3, "alerts.webhook[0].token_file"),
        ]
    );
    assert!(found[0].message.contains("needs `room`"), "{found:#?}");
    assert!(
        found[1].message.contains("needs `token_file`"),
        "{found:#?}"
    );
}

#[test]
fn matrix_room_checks() {
    let dir = tempdir();
    let token = write_file(dir.path(), "token", "secret\n", 0o600);
    let body = format!(
        "name = \"a\"\nkind = \"matrix\"\nurl = \"https://matrix.example.org/\"\n\
         token_file = \"{}\"\n",
        token.display()
    );
    let hash_room = format!("!{}", "A1b2-_".repeat(7) + "z");
    assert_eq!(hash_room.len(), 44);
    for room in [
        "!AbCdEfGhIjKlMnOp:example.org",
        "!x:[2001:db8::1]:8448",
        &hash_room,
    ] {
        let config = ok(&one_webhook(&format!("{body}room = \"{room}\"\n")));
        assert_eq!(config.alerts.webhooks[0].room.as_deref(), Some(room));
    }

    for (room, expected) in [
        ("#ops:example.org", "is a room alias, not a room ID"),
        ("AbCdEf:example.org", "invalid room ID"),
        ("!AbCdEf", "invalid room ID"),
        ("!:example.org", "invalid room ID"),
        ("!AbCdEf:", "invalid room ID"),
        ("", "must not be empty"),
        ("!a b:example.org", "must not contain spaces"),
    ] {
        let error = single(&one_webhook(&format!("{body}room = \"{room}\"\n")));
        assert_eq!(error.line, 8, "{room}");
        assert_eq!(error.key, "alerts.webhook[0].room", "{room}");
        assert!(error.message.contains(expected), "{room}: {error}");
    }
}

#[test]
fn room_only_for_matrix() {
    let error = single(&one_webhook(
        "name = \"a\"\nkind = \"slack\"\nurl = \"https://hooks.example.org/x\"\n\
         room = \"!AbCdEfGhIjKlMnOp:example.org\"\n",
    ));
    assert_eq!(error.line, 7);
    assert_eq!(error.key, "alerts.webhook[0].room");
    assert!(
        error
            .message
            .contains("only used by kind = \"matrix\", but this webhook has kind = \"slack\""),
        "{error}"
    );
}

#[test]
fn matrix_url_without_query() {
    let dir = tempdir();
    let token = write_file(dir.path(), "token", "secret\n", 0o600);
    let error = single(&one_webhook(&format!(
        "name = \"a\"\nkind = \"matrix\"\nurl = \"https://matrix.example.org/?a=1\"\n\
         token_file = \"{}\"\nroom = \"!a:example.org\"\n",
        token.display()
    )));
    assert_eq!(error.line, 6);
    assert_eq!(error.key, "alerts.webhook[0].url");
    assert!(error.message.contains("base URL"), "{error}");
}

#[test]
fn webhook_fallback_and_timeout_values() {
    let body = "name = \"a\"\nkind = \"json\"\nurl = \"https://hooks.example.org/x\"\n";

    let error = single(&one_webhook(&format!("{body}fallback = \"yes\"\n")));
    assert_eq!(error.line, 7);
    assert_eq!(error.key, "alerts.webhook[0].fallback");
    assert!(error.message.contains("expected true or false"), "{error}");

    let error = single(&one_webhook(&format!("{body}timeout = \"0s\"\n")));
    assert_eq!(error.line, 7);
    assert_eq!(error.key, "alerts.webhook[0].timeout");
    assert!(error.message.contains("greater than zero"), "{error}");

    let error = single(&one_webhook(&format!("{body}timeout = 30\n")));
    assert!(error.message.contains("needs a unit"), "{error}");
}

#[test]
fn webhook_unknown_key_suggests() {
    let error = single(&one_webhook(
        "name = \"a\"\nkind = \"json\"\nurl = \"https://hooks.example.org/x\"\ntokenfile = \"/x\"\n",
    ));
    assert_eq!(error.line, 7);
    assert_eq!(error.key, "alerts.webhook[0].tokenfile");
    assert!(
        error.message.contains("did you mean `token_file`?"),
        "{error}"
    );
}

#[test]
fn fallback_without_mail_warns() {
    let config = ok(&one_webhook(
        "name = \"a\"\nkind = \"json\"\nurl = \"https://hooks.example.org/x\"\nfallback = true\n",
    ));
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(warning.line, 7);
    assert_eq!(warning.key, "alerts.webhook[0].fallback");
    assert!(
        warning.message.contains("set fallback = false"),
        "{warning}"
    );

    let dir = tempdir();
    let sendmail = write_file(dir.path(), "sendmail", "#!/bin/sh\n", 0o755);
    let config = ok(&format!(
        "[alerts]\nsendmail = \"{}\"\nfrom = \"s@x\"\nto = \"a@x\"\n[[alerts.webhook]]\n\
         name = \"a\"\nkind = \"json\"\nurl = \"https://hooks.example.org/x\"\n\
         fallback = true\n[services.postfix]\n",
        sendmail.display()
    ));
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert!(config.alerts.has_mail_channel());
}

#[test]
fn recipients_without_mail_channel_but_webhook() {
    let config = ok(
        "[alerts]\nsendmail = false\nfrom = \"s@x\"\nto = [\"a@x\"]\n[[alerts.webhook]]\n\
         name = \"a\"\nkind = \"json\"\nurl = \"https://hooks.example.org/x\"\n[services.postfix]\n",
    );
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(warning.line, 4);
    assert_eq!(warning.key, "alerts.to");
    assert!(
        warning
            .message
            .starts_with("no alert mail can be delivered"),
        "{warning}"
    );
    assert!(
        warning.message.ends_with("alerts go only to the webhooks"),
        "{warning}"
    );
    assert!(config.alerts.has_channel());
    assert!(!config.alerts.has_mail_channel());
}

#[test]
fn relays_without_recipient_but_webhook() {
    let config = ok(
        "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"smtp.example.net\"\n\
         [[alerts.webhook]]\nname = \"a\"\nkind = \"json\"\nurl = \"https://hooks.example.org/x\"\n\
         [services.postfix]\n",
    );
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    let warning = &config.warnings[0];
    assert_eq!(warning.line, 1);
    assert_eq!(warning.key, "alerts.to");
    assert_eq!(
        warning.message,
        "relays are configured but no recipient, so no alert mail is sent; alerts go only to \
         the webhooks"
    );
    assert!(config.alerts.has_channel());
}

#[test]
fn relays_without_recipient_warn() {
    let config =
        ok("[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"smtp.example.net\"\n[services.postfix]\n");
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert_eq!(config.warnings[0].line, 1);
    assert_eq!(
        config.warnings[0].message,
        "relays are configured but no recipient, so no alert is sent"
    );
    assert!(!config.alerts.has_channel());
}

#[test]
fn control_socket_checks() {
    let error = single("control_socket = \"control.sock\"\n");
    assert_eq!(error.key, "control_socket");
    assert!(error.message.contains("absolute path"), "{error}");
    let long = format!("/run/{}.sock", "x".repeat(110));
    let error = single(&format!("control_socket = \"{long}\"\n"));
    assert!(error.message.contains("at most 107 bytes"), "{error}");
}

#[test]
fn state_dir_relative_rejected() {
    let error = single("state_dir = \"var/lib/selfheal\"\n");
    assert_eq!(error.key, "state_dir");
    assert_eq!(
        error.example.as_deref(),
        Some("state_dir = \"/var/lib/selfheal\"")
    );
}

#[test]
fn max_restarts_zero_hints_watch() {
    let error = single("max_restarts = 0\n");
    assert!(error.message.contains("mode = \"watch\""), "{error}");
    let error = single("probe_retries = 101\n");
    assert!(error.message.contains("from 0 to 100"), "{error}");
}

#[test]
fn unknown_preset_message() {
    let error = single("[services.postfix]\n\n[services.ai-filter]\ncritical = true\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "services.ai-filter");
    assert!(
        error
            .message
            .starts_with("unknown preset \"ai-filter\"; the presets are: postfix, dovecot,"),
        "{error}"
    );
    assert!(
        error
            .message
            .contains("a custom service needs `unit` or `start`/`restart` commands"),
        "{error}"
    );
    assert_eq!(
        error.example.as_deref(),
        Some("unit = \"ai-filter.service\"")
    );
}

#[test]
fn unknown_preset_key() {
    let error = single("[services.mail]\npreset = \"exim\"\n");
    assert_eq!(error.line, 2);
    assert_eq!(error.key, "services.mail.preset");
    assert!(error.message.contains("unknown preset \"exim\""), "{error}");
}

#[test]
fn preset_under_other_name() {
    let config =
        ok("[services.postfix-out]\npreset = \"postfix\"\nunit = \"postfix@out.service\"\n");
    let service = &config.services[0];
    assert_eq!(service.name, "postfix-out");
    assert_eq!(service.preset.as_deref(), Some("postfix"));
    assert_eq!(service.units, ["postfix@out.service"]);
    assert!(service.critical);
    assert_eq!(service.probes.len(), 1);
}

#[test]
fn preset_overridden_per_key() {
    let text = "[services.mariadb]\nmode = \"watch\"\ncritical = false\nprobe = false\n\
                    units = [\"mysqld.service\"]\nverify_timeout = \"7min\"\nmax_restarts = 5\n";
    let config = ok(text);
    let service = &config.services[0];
    assert_eq!(service.preset.as_deref(), Some("mariadb"));
    assert_eq!(service.mode, Mode::Watch);
    assert!(!service.critical);
    assert!(service.probes.is_empty());
    assert_eq!(service.units, ["mysqld.service"]);
    assert_eq!(service.recovery.verify_timeout, Duration::from_secs(420));
    assert_eq!(service.recovery.max_restarts, 5);
    // Not overridden here, so the preset's value stays.
    assert_eq!(service.restart_timeout, Duration::from_secs(600));
}

#[test]
fn timing_precedence() {
    let text = "restart_timeout = \"1min\"\nprobe_timeout = \"3s\"\n\
                    [services.mariadb]\n[services.dovecot]\n\
                    [services.nginx]\nrestart_timeout = \"20s\"\n";
    let config = ok(text);
    let timeouts: Vec<(Duration, Duration)> = config
        .services
        .iter()
        .map(|s| (s.restart_timeout, s.probe_timeout))
        .collect();
    assert_eq!(
        timeouts,
        [
            (Duration::from_secs(600), Duration::from_secs(3)),
            (Duration::from_secs(60), Duration::from_secs(3)),
            (Duration::from_secs(20), Duration::from_secs(3)),
        ]
    );
}

#[test]
fn top_mode_is_service_default() {
    let config = ok("mode = \"watch\"\n[services.postfix]\n[services.dovecot]\nmode = \"heal\"\n");
    assert_eq!(config.mode, Mode::Watch);
    assert_eq!(config.services[0].mode, Mode::Watch);
    assert_eq!(config.services[1].mode, Mode::Heal);
}

#[test]
fn disabled_service_left_out() {
    let config = ok("[services.postfix]\nenabled = false\n[services.dovecot]\n");
    assert_eq!(config.service_names(), ["dovecot"]);
    let error = single("[services.postfix]\nenabled = \"no\"\n");
    assert_eq!(error.key, "services.postfix.enabled");
}

#[test]
fn disabled_service_still_checked() {
    let error = single("[services.postfix]\nenabled = false\nmode = \"off\"\n");
    assert_eq!(error.key, "services.postfix.mode");
}

#[test]
fn unit_and_commands_conflict() {
    let text = "[services.x]\nunit = \"x.service\"\nrestart = \"/etc/init.d/x restart\"\nprocess = \"x\"\n";
    let error = single(text);
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "services.x.restart");
    assert!(error.message.contains("keep one of them"), "{error}");
}

#[test]
fn conflict_reported_once() {
    let error = single("[services.x]\nunit = \"x.service\"\nrestart = \"/bin/x\"\n");
    assert_eq!(error.key, "services.x.restart");
    assert_eq!(error.example.as_deref(), Some("unit = \"x.service\""));
}

#[test]
fn unit_and_units_conflict() {
    let error = single("[services.x]\nunit = \"x.service\"\nunits = [\"y.service\"]\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "services.x.units");
}

#[test]
fn commands_need_process_check() {
    let error = single("[services.x]\nrestart = \"/etc/init.d/x restart\"\n");
    assert_eq!(error.line, 1);
    assert_eq!(error.key, "services.x");
    assert!(error.message.contains("`pidfile` or `process`"), "{error}");
}

#[test]
fn commands_need_start_or_restart() {
    let error = single("[services.x]\nstop = \"/etc/init.d/x stop\"\npidfile = \"/run/x.pid\"\n");
    assert_eq!(error.key, "services.x");
    assert!(error.message.contains("`start` or `restart`"), "{error}");
}

#[test]
fn command_service_parses() {
    let text = "[services.x]\nstart = \"/etc/init.d/x  start\"\n\
                    restart = [\"/etc/init.d/x\", \"restart now\"]\npidfile = \"/run/x.pid\"\n";
    let config = ok(text);
    let service = &config.services[0];
    assert!(service.units.is_empty());
    let Some(commands) = &service.commands else {
        panic!("commands missing");
    };
    assert_eq!(
        commands.start.as_deref(),
        Some(&["/etc/init.d/x".to_string(), "start".to_string()][..])
    );
    assert_eq!(
        commands.restart.as_deref(),
        Some(&["/etc/init.d/x".to_string(), "restart now".to_string()][..])
    );
    assert_eq!(commands.pidfile.as_deref(), Some(Path::new("/run/x.pid")));
    assert_eq!(commands.stop, None);
}

#[test]
fn preset_with_commands() {
    let text =
        "[services.postfix]\nrestart = \"/etc/init.d/postfix restart\"\nprocess = \"master\"\n";
    let config = ok(text);
    let service = &config.services[0];
    assert!(service.units.is_empty());
    assert!(service.commands.is_some());
    assert_eq!(service.probes.len(), 1);
    assert!(service.critical);
}

#[test]
fn command_shell_syntax_rejected() {
    let error = single("[services.x]\nstart = \"/bin/x --name 'a b'\"\nprocess = \"x\"\n");
    assert_eq!(error.key, "services.x.start");
    assert!(error.message.contains("array of arguments"), "{error}");
    let error = single("[services.x]\nstart = \"   \"\nprocess = \"x\"\n");
    assert!(error.message.contains("must not be empty"), "{error}");
    let error = single("[services.x]\nstart = []\nprocess = \"x\"\n");
    assert!(error.message.contains("must not be empty"), "{error}");
}

#[test]
fn process_name_checks() {
    let error = single("[services.x]\nstart = \"/bin/x\"\nprocess = \"/usr/sbin/x\"\n");
    assert_eq!(error.key, "services.x.process");
    let error = single("[services.x]\nstart = \"/bin/x\"\nprocess = \"a-very-long-daemon-name\"\n");
    assert!(error.message.contains("15 bytes"), "{error}");
}

#[test]
fn pidfile_must_be_absolute() {
    let error = single("[services.x]\nstart = \"/bin/x\"\npidfile = \"run/x.pid\"\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "services.x.pidfile");
}

#[test]
fn tcp_probe_needs_numeric_port() {
    for address in [
        "127.0.0.1",
        "127.0.0.1:smtp",
        "127.0.0.1:0",
        ":25",
        "::1:25",
        "[::1:25",
        "127.0.0.1:99999",
    ] {
        let text =
            format!("[services.x]\nunit = \"x.service\"\nprobe = {{ tcp = \"{address}\" }}\n");
        let error = single(&text);
        assert_eq!(error.line, 3, "{address}");
        assert_eq!(error.key, "services.x.probe.tcp", "{address}");
        assert!(
            error.message.starts_with("invalid tcp probe address"),
            "{error}"
        );
    }
    for address in ["127.0.0.1:25", "[::1]:25", "localhost:10030"] {
        let text =
            format!("[services.x]\nunit = \"x.service\"\nprobe = {{ tcp = \"{address}\" }}\n");
        let config = ok(&text);
        assert_eq!(config.services[0].probes.len(), 1, "{address}");
    }
}

#[test]
fn unix_probe_must_be_absolute() {
    let error = single("[services.x]\nunit = \"x.service\"\nprobe = { unix = \"run/x.sock\" }\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "services.x.probe.unix");
    assert!(error.message.contains("absolute path"), "{error}");
}

#[test]
fn probe_table_checks() {
    let error = single("[services.x]\nunit = \"x.service\"\nprobe = {}\n");
    assert!(error.message.contains("needs an endpoint"), "{error}");
    let text = "[services.x]\nunit = \"x.service\"\nprobe = { tcp = \"h:1\", unix = \"/s\" }\n";
    let error = single(text);
    assert!(error.message.contains("one endpoint"), "{error}");
    let error = single("[services.x]\nunit = \"x.service\"\nprobe = true\n");
    assert!(error.message.contains("names no endpoint"), "{error}");
    let error = single("[services.x]\nunit = \"x.service\"\nprobe = \"tcp:1\"\n");
    assert!(
        error.message.starts_with("expected a probe table"),
        "{error}"
    );
    let error = single("[services.x]\nunit = \"x.service\"\nprobe = { tpc = \"h:1\" }\n");
    assert_eq!(error.key, "services.x.probe.tpc");
    assert!(error.message.contains("did you mean `tcp`"), "{error}");
}

#[test]
fn several_probes() {
    let text = "[services.x]\nunit = \"x.service\"\n\
                    probes = [{ tcp = \"127.0.0.1:25\" }, { unix = \"/run/x.sock\" }]\n";
    let config = ok(text);
    assert_eq!(config.services[0].probes.len(), 2);

    let text =
        "[services.x]\nunit = \"x.service\"\n[[services.x.probes]]\ntcp = \"127.0.0.1:25\"\n\
                    [[services.x.probes]]\nunix = \"x.sock\"\n";
    let error = single(text);
    assert_eq!(error.line, 6);
    assert_eq!(error.key, "services.x.probes[1].unix");

    let config = ok("[services.postfix]\nprobes = []\n");
    assert!(config.services[0].probes.is_empty());

    let text = "[services.x]\nunit = \"x.service\"\nprobe = false\nprobes = []\n";
    let error = single(text);
    assert_eq!(error.key, "services.x.probes");
}

#[test]
fn unit_name_checks() {
    let error = single("[services.x]\nunit = \"x\"\n");
    assert_eq!(error.key, "services.x.unit");
    assert!(error.message.contains(".service"), "{error}");
    let error = single("[services.x]\nunits = []\n");
    assert!(error.message.contains("at least one unit"), "{error}");
    let error = single("[services.x]\nunit = \"x y.service\"\n");
    assert!(error.message.starts_with("invalid unit name"), "{error}");
    let config = ok("[services.x]\nunit = \"x.service\"\n");
    assert_eq!(config.services[0].units, ["x.service"]);
    assert!(!config.services[0].critical);
}

#[test]
fn service_name_checks() {
    let error = single("[services.\"my filter\"]\nunit = \"x.service\"\n");
    assert_eq!(error.key, "services.\"my filter\"");
    assert!(error.message.starts_with("invalid service name"), "{error}");
    let error = single("[services]\npostfix = true\n");
    assert_eq!(error.key, "services.postfix");
    assert!(
        error
            .message
            .contains("expected a table, found boolean true"),
        "{error}"
    );
}

#[test]
fn services_not_a_table() {
    let error = single("services = [\"postfix\"]\n");
    assert_eq!(error.key, "services");
    assert!(
        error.message.starts_with("expected a table of services"),
        "{error}"
    );
}

#[test]
fn same_units_warn() {
    let config = ok("[services.postfix]\n[services.postfix-out]\npreset = \"postfix\"\n");
    assert_eq!(config.warnings.len(), 1, "{:?}", config.warnings);
    assert_eq!(config.warnings[0].key, "services.postfix-out");
    assert_eq!(config.warnings[0].line, 2);
}

#[test]
fn services_keep_file_order() {
    let config = ok("[services.unbound]\n[services.apache]\n[services.postfix]\n");
    assert_eq!(config.service_names(), ["unbound", "apache", "postfix"]);
}

#[test]
fn five_problems_all_reported() {
    let text = "interval = 30\n\
                    mode = \"fix\"\n\
                    \n\
                    [alerts]\n\
                    to = [\"admin\"]\n\
                    \n\
                    [services.postfix]\n\
                    critcal = true\n\
                    \n\
                    [services.ai-filter]\n\
                    unit = \"ai-filter.service\"\n\
                    probe = { tcp = \"127.0.0.1\" }\n";
    let found = errors(text);
    let located: Vec<(usize, &str)> = found.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        located,
        [
            (1, "interval"),
            (2, "mode"),
            (5, "alerts.to[0]"),
            (8, "services.postfix.critcal"),
            (12, "services.ai-filter.probe.tcp"),
        ]
    );
    assert!(found.iter().all(|e| e.example.is_some()), "{found:#?}");
}

#[test]
fn syntax_error_one_line() {
    let error = single("interval = \"30s\"\n\n[services.postfix]\nmode = watch\n");
    assert_eq!(error.line, 4);
    assert_eq!(error.key, "");
    assert!(
        error.message.starts_with("invalid TOML at column 8: "),
        "{error}"
    );
    assert!(!error.message.contains('\n'), "{error}");
}

#[test]
fn duplicate_key_is_syntax_error() {
    let error = single("[services.postfix]\nmode = \"heal\"\nmode = \"watch\"\n");
    assert_eq!(error.line, 3);
    assert!(error.message.contains("duplicate key"), "{error}");
}

#[test]
fn line_numbers() {
    let checker = Checker::new(Path::new(FILE), "a\nbc\n\nd");
    let lines: Vec<usize> = (0..7).map(|offset| checker.line(offset)).collect();
    assert_eq!(lines, [1, 1, 2, 2, 2, 3, 4]);
}

#[test]
fn key_quoting() {
    assert_eq!(join_key("", "interval"), "interval");
    assert_eq!(join_key("services", "ai-filter"), "services.ai-filter");
    assert_eq!(join_key("services", "a.b"), "services.\"a.b\"");
    assert_eq!(join_key("services", ""), "services.\"\"");
}

#[test]
fn closest_key_limits() {
    let known = ["interval", "mode", "restart_timeout", "to"];
    assert_eq!(closest_key("intervall", &known), Some("interval"));
    assert_eq!(closest_key("mdoe", &known), Some("mode"));
    assert_eq!(closest_key("mdeo", &known), None);
    assert_eq!(closest_key("moda", &known), Some("mode"));
    assert_eq!(
        closest_key("restart_timout", &known),
        Some("restart_timeout")
    );
    assert_eq!(closest_key("recipients", &known), Some("to"));
    assert_eq!(closest_key("xyz", &known), None);
}

#[test]
fn edit_distance_cases() {
    assert_eq!(edit_distance("", ""), 0);
    assert_eq!(edit_distance("abc", ""), 3);
    assert_eq!(edit_distance("kitten", "sitting"), 3);
    assert_eq!(edit_distance("mode", "mdoe"), 1);
    assert_eq!(edit_distance("tpc", "tcp"), 1);
}

/// Parses one probe table given in TOML inline form, in a custom service at line 3.
fn probe_of(table: &str) -> ProbeSpec {
    let config = ok(&format!(
        "[services.x]\nunit = \"x.service\"\nprobe = {table}\n"
    ));
    assert_eq!(config.services[0].probes.len(), 1, "{table}");
    config.services[0].probes[0].clone()
}

/// Returns the one error of a probe table given in TOML inline form, at line 3.
fn probe_error(table: &str) -> ConfigError {
    single(&format!(
        "[services.x]\nunit = \"x.service\"\nprobe = {table}\n"
    ))
}

fn endpoint(text: &str) -> Option<Endpoint> {
    match Endpoint::parse(text) {
        Ok(endpoint) => Some(endpoint),
        Err(err) => panic!("{text}: {err}"),
    }
}

fn spec(protocol: Protocol, address: &str, tls: ProbeTlsMode) -> ProbeSpec {
    ProbeSpec::new(protocol, endpoint(address), "config").with_tls(tls)
}

fn smtp() -> Protocol {
    Protocol::Smtp {
        helo_name: "selfheal.invalid".into(),
    }
}

#[test]
fn connect_kinds_parse() {
    use ProbeTlsMode::{Implicit, Off};
    let cases = [
        (
            r#"{ tcp = "127.0.0.1:10030" }"#,
            spec(Protocol::Connect, "127.0.0.1:10030", Off),
        ),
        (
            r#"{ unix = "/run/filter.sock" }"#,
            spec(Protocol::Connect, "/run/filter.sock", Off),
        ),
        (
            r#"{ tls = "127.0.0.1:10031" }"#,
            spec(Protocol::Connect, "127.0.0.1:10031", Implicit),
        ),
        (
            r#"{ tcp = "127.0.0.1:10031", tls = true }"#,
            spec(Protocol::Connect, "127.0.0.1:10031", Implicit),
        ),
        (
            r#"{ send = "PING\r\n", expect = "PONG", tcp = "127.0.0.1:10030" }"#,
            spec(
                Protocol::SendExpect {
                    send: "PING\r\n".into(),
                    expect: "PONG".into(),
                },
                "127.0.0.1:10030",
                Off,
            ),
        ),
        (
            r#"{ unix = "/run/filter.sock", expect = "220 " }"#,
            spec(
                Protocol::SendExpect {
                    send: String::new(),
                    expect: "220 ".into(),
                },
                "/run/filter.sock",
                Off,
            ),
        ),
    ];
    for (table, expected) in cases {
        assert_eq!(probe_of(table), expected, "{table}");
    }
}

#[test]
fn mail_kinds_parse() {
    use ProbeTlsMode::{Implicit, Off, Starttls};
    let cases = [
        (
            r#"{ smtp = "127.0.0.1:25" }"#,
            spec(smtp(), "127.0.0.1:25", Off),
        ),
        (
            r#"{ smtp = "127.0.0.1:587", starttls = true }"#,
            spec(smtp(), "127.0.0.1:587", Starttls),
        ),
        (
            r#"{ smtp = "127.0.0.1:465", tls = true }"#,
            spec(smtp(), "127.0.0.1:465", Implicit),
        ),
        (
            r#"{ smtp = "127.0.0.1:25", starttls = false, tls = false }"#,
            spec(smtp(), "127.0.0.1:25", Off),
        ),
        (
            r#"{ smtp = "[::1]:25", helo_name = "probe.example.org" }"#,
            spec(
                Protocol::Smtp {
                    helo_name: "probe.example.org".into(),
                },
                "[::1]:25",
                Off,
            ),
        ),
        (
            r#"{ lmtp = "/var/spool/postfix/private/dovecot-lmtp" }"#,
            spec(
                Protocol::Lmtp {
                    helo_name: "selfheal.invalid".into(),
                },
                "/var/spool/postfix/private/dovecot-lmtp",
                Off,
            ),
        ),
        (
            r#"{ imap = "127.0.0.1:143", starttls = true }"#,
            spec(Protocol::Imap, "127.0.0.1:143", Starttls),
        ),
        (
            r#"{ imap = "127.0.0.1:993", tls = true }"#,
            spec(Protocol::Imap, "127.0.0.1:993", Implicit),
        ),
        (
            r#"{ pop3 = "127.0.0.1:110" }"#,
            spec(Protocol::Pop3, "127.0.0.1:110", Off),
        ),
        (
            r#"{ spamd = "127.0.0.1:783" }"#,
            spec(Protocol::Spamd, "127.0.0.1:783", Off),
        ),
        (
            r#"{ spamd = "/run/spamd.sock" }"#,
            spec(Protocol::Spamd, "/run/spamd.sock", Off),
        ),
    ];
    for (table, expected) in cases {
        assert_eq!(probe_of(table), expected, "{table}");
    }
}

#[test]
fn milter_addresses_parse() {
    let cases = [
        ("inet:8891@localhost", "127.0.0.1:8891"),
        ("inet:8891", "127.0.0.1:8891"),
        ("inet6:8891@::1", "[::1]:8891"),
        ("inet:localhost:8892", "127.0.0.1:8892"),
        (
            "unix:/run/opendkim/opendkim.sock",
            "/run/opendkim/opendkim.sock",
        ),
        (
            "local:/run/opendkim/opendkim.sock",
            "/run/opendkim/opendkim.sock",
        ),
        ("127.0.0.1:8891", "127.0.0.1:8891"),
        ("/run/milter.sock", "/run/milter.sock"),
    ];
    for (address, expected) in cases {
        let probe = probe_of(&format!("{{ milter = \"{address}\" }}"));
        assert_eq!(
            probe,
            spec(Protocol::Milter, expected, ProbeTlsMode::Off),
            "{address}"
        );
    }
}

#[test]
fn http_kind_parses() {
    let probe =
        probe_of(r#"{ http = "127.0.0.1:80", path = "/", host = "localhost", expect = "2xx" }"#);
    let expected = Protocol::Http {
        path: "/".into(),
        host: "localhost".into(),
        expect: StatusClass(2),
    };
    assert_eq!(
        probe,
        spec(expected.clone(), "127.0.0.1:80", ProbeTlsMode::Off)
    );
    // The same values are the defaults.
    assert_eq!(probe_of(r#"{ http = "127.0.0.1:80" }"#).protocol, expected);

    let probe = probe_of(
        r#"{ http = "127.0.0.1:443", tls = true, path = "/healthz?full=1", host = "mail.example.org", expect = "3XX" }"#,
    );
    assert_eq!(
        probe.protocol,
        Protocol::Http {
            path: "/healthz?full=1".into(),
            host: "mail.example.org".into(),
            expect: StatusClass(3),
        }
    );
    assert_eq!(probe.tls.mode, ProbeTlsMode::Implicit);
}

#[test]
fn service_kinds_parse() {
    let cases = [
        (
            r#"{ dns = "127.0.0.1:53", name = "localhost.", outside_name = "debian.org." }"#,
            spec(
                Protocol::Dns {
                    name: "localhost.".into(),
                    outside_name: Some("debian.org.".into()),
                },
                "127.0.0.1:53",
                ProbeTlsMode::Off,
            ),
        ),
        (
            r#"{ dns = "127.0.0.1:53", name = "mail.example.org", outside_name = "debian.org" }"#,
            spec(
                Protocol::Dns {
                    name: "mail.example.org.".into(),
                    outside_name: Some("debian.org.".into()),
                },
                "127.0.0.1:53",
                ProbeTlsMode::Off,
            ),
        ),
        (
            r#"{ dns = "[::1]:53" }"#,
            spec(
                Protocol::Dns {
                    name: "localhost.".into(),
                    outside_name: None,
                },
                "[::1]:53",
                ProbeTlsMode::Off,
            ),
        ),
        (
            r#"{ fail2ban = "/run/fail2ban/fail2ban.sock" }"#,
            spec(
                Protocol::Fail2ban,
                "/run/fail2ban/fail2ban.sock",
                ProbeTlsMode::Off,
            ),
        ),
        (
            r#"{ syslog = "/run/systemd/journal/syslog", verify_file = "/var/log/syslog" }"#,
            spec(
                Protocol::Syslog {
                    verify_file: Some("/var/log/syslog".into()),
                },
                "/run/systemd/journal/syslog",
                ProbeTlsMode::Off,
            ),
        ),
        (
            r#"{ syslog = "/dev/log" }"#,
            spec(
                Protocol::Syslog { verify_file: None },
                "/dev/log",
                ProbeTlsMode::Off,
            ),
        ),
        (
            r#"{ mysql = "127.0.0.1:3306" }"#,
            spec(
                Protocol::Mysql { credentials: None },
                "127.0.0.1:3306",
                ProbeTlsMode::Off,
            ),
        ),
    ];
    for (table, expected) in cases {
        assert_eq!(probe_of(table), expected, "{table}");
    }
}

#[test]
fn mysql_credentials_file() {
    let dir = tempdir();
    let credentials = write_file(dir.path(), "debian.cnf", "[client]\nuser = root\n", 0o600);
    let probe = probe_of(&format!(
        "{{ mysql = \"/run/mysqld/mysqld.sock\", credentials = \"{}\" }}",
        credentials.display()
    ));
    assert_eq!(
        probe,
        spec(
            Protocol::Mysql {
                credentials: Some(credentials.clone()),
            },
            "/run/mysqld/mysqld.sock",
            ProbeTlsMode::Off,
        )
    );

    let missing = dir.path().join("absent.cnf");
    let error = probe_error(&format!(
        "{{ mysql = \"/run/mysqld/mysqld.sock\", credentials = \"{}\" }}",
        missing.display()
    ));
    assert_eq!(error.key, "services.x.probe.credentials");
    assert!(
        error.message.starts_with("cannot read credentials file"),
        "{error}"
    );

    let error = probe_error(&format!(
        "{{ mysql = \"/run/mysqld/mysqld.sock\", credentials = \"{}\" }}",
        dir.path().display()
    ));
    assert!(error.message.contains("is not a regular file"), "{error}");
}

#[test]
fn readable_credentials_warn() {
    let dir = tempdir();
    let credentials = write_file(dir.path(), "my.cnf", "[client]\npassword = x\n", 0o644);
    let config = ok(&format!(
        "[services.x]\nunit = \"x.service\"\n\
             probe = {{ mysql = \"/run/mysqld/mysqld.sock\", credentials = \"{}\" }}\n",
        credentials.display()
    ));
    assert_eq!(config.warnings.len(), 1);
    assert_eq!(config.warnings[0].line, 3);
    assert!(
        config.warnings[0].message.contains("mode 0644"),
        "{}",
        config.warnings[0].message
    );
}

#[test]
fn command_kind_parses() {
    let dir = tempdir();
    let program = write_file(dir.path(), "filter-check", "#!/bin/sh\nexit 0\n", 0o755);
    let probe = probe_of(&format!(
        "{{ command = [\"{}\", \"--quick\"] }}",
        program.display()
    ));
    let argv = vec![program.display().to_string(), "--quick".to_string()];
    assert_eq!(
        probe,
        ProbeSpec::new(Protocol::Command { argv }, None, "config")
    );

    let probe = probe_of(&format!(
        "{{ command = \"{} --quick\" }}",
        program.display()
    ));
    assert_eq!(probe.protocol.name(), "command");
}

#[test]
fn command_checks() {
    let dir = tempdir();
    let plain = write_file(dir.path(), "notes.txt", "x\n", 0o644);
    let cases = [
        (r#"{ command = [] }"#.to_string(), "must not be empty"),
        (
            r#"{ command = ["filter-check", "--quick"] }"#.to_string(),
            "must be an absolute path",
        ),
        (
            format!("{{ command = [\"{}/absent\"] }}", dir.path().display()),
            "not found",
        ),
        (
            format!("{{ command = [\"{}\"] }}", plain.display()),
            "is not an executable file",
        ),
        (
            r#"{ command = "/bin/x 'a b'" }"#.to_string(),
            "array of arguments",
        ),
    ];
    for (table, expected) in cases {
        let error = probe_error(&table);
        assert_eq!(error.line, 3, "{table}");
        assert_eq!(error.key, "services.x.probe.command", "{table}");
        assert!(error.message.contains(expected), "{table}: {error}");
    }
}

#[test]
fn tls_options_parse() {
    let probe = probe_of(
        r#"{ imap = "127.0.0.1:993", tls = true, server_name = "mail.example.org", verify_cert = true, cert_warn_days = 30 }"#,
    );
    assert_eq!(probe.tls.mode, ProbeTlsMode::Implicit);
    assert_eq!(probe.tls.server_name.as_deref(), Some("mail.example.org"));
    assert!(probe.tls.verify);
    assert_eq!(probe.tls.warn_days, 30);

    let probe = probe_of(r#"{ tls = "127.0.0.1:443", cert_warn_days = 0 }"#);
    assert_eq!(probe.tls.warn_days, 0);
    assert!(!probe.tls.verify);
    assert_eq!(probe.tls.server_name, None);

    let probe =
        probe_of(r#"{ smtp = "127.0.0.1:587", starttls = true, server_name = "192.0.2.1" }"#);
    assert_eq!(probe.tls.server_name.as_deref(), Some("192.0.2.1"));
}

#[test]
fn misplaced_options_rejected() {
    let cases = [
        (
            r#"{ http = "127.0.0.1:80", starttls = true }"#,
            "starttls",
            "`starttls` does not apply to http probes; it applies to smtp, lmtp, imap and \
                 pop3 probes",
        ),
        (
            r#"{ smtp = "127.0.0.1:25", name = "localhost." }"#,
            "name",
            "`name` does not apply to smtp probes; it applies to dns probes",
        ),
        (
            r#"{ milter = "inet:8891", tls = true }"#,
            "tls",
            "`tls` does not apply to milter probes; it applies to tcp, smtp, lmtp, imap, \
                 pop3 and http probes, and a string value makes a tls probe of its own",
        ),
        (
            r#"{ unix = "/run/x.sock", credentials = "/etc/mysql/debian.cnf" }"#,
            "credentials",
            "`credentials` does not apply to unix probes; it applies to mysql probes",
        ),
        (
            r#"{ dns = "127.0.0.1:53", verify_file = "/var/log/syslog" }"#,
            "verify_file",
            "`verify_file` does not apply to dns probes; it applies to syslog probes",
        ),
        (
            r#"{ imap = "127.0.0.1:143", helo_name = "x.example" }"#,
            "helo_name",
            "`helo_name` does not apply to imap probes; it applies to smtp and lmtp probes",
        ),
        (
            r#"{ tls = "127.0.0.1:443", send = "x" }"#,
            "send",
            "`send` does not apply to tls probes; it applies to tcp and unix probes",
        ),
    ];
    for (table, key, message) in cases {
        let error = probe_error(table);
        assert_eq!(error.line, 3, "{table}");
        assert_eq!(error.key, format!("services.x.probe.{key}"), "{table}");
        assert_eq!(error.message, message, "{table}");
        assert!(error.example.is_some(), "{table}");
    }
    let error = probe_error(r#"{ smtp = "127.0.0.1:25", expect = "250" }"#);
    assert_eq!(error.example.as_deref(), Some(SEND_EXPECT_EXAMPLE));
}

#[test]
fn starttls_and_tls_conflict() {
    let text = "[services.x]\nunit = \"x.service\"\n[services.x.probe]\n\
                    smtp = \"127.0.0.1:587\"\ntls = true\nstarttls = true\n";
    let error = single(text);
    assert_eq!(error.line, 6);
    assert_eq!(error.key, "services.x.probe.starttls");
    assert!(error.message.contains("are both set"), "{error}");
}

#[test]
fn tls_only_options_need_tls() {
    for option in [
        "server_name = \"mail.example.org\"",
        "verify_cert = true",
        "cert_warn_days = 7",
    ] {
        let error = probe_error(&format!("{{ smtp = \"127.0.0.1:25\", {option} }}"));
        let name = option.split(' ').next().unwrap_or_default();
        assert_eq!(error.key, format!("services.x.probe.{name}"));
        assert_eq!(
            error.message,
            format!(
                "`{name}` applies only to a probe with TLS; add `tls = true` or \
                     `starttls = true`"
            )
        );
    }
    let error = probe_error(r#"{ tcp = "127.0.0.1:25", verify_cert = true }"#);
    assert!(error.message.ends_with("add `tls = true`"), "{error}");
}

#[test]
fn option_values_checked() {
    let cases = [
        (
            r#"{ http = "127.0.0.1:80", expect = "200" }"#,
            "expect",
            "invalid status class \"200\"",
        ),
        (
            r#"{ http = "127.0.0.1:80", expect = "1xx" }"#,
            "expect",
            "invalid status class",
        ),
        (
            r#"{ http = "127.0.0.1:80", expect = 2 }"#,
            "expect",
            "expected a string",
        ),
        (
            r#"{ http = "127.0.0.1:80", path = "index.html" }"#,
            "path",
            "starts with /",
        ),
        (
            r#"{ http = "127.0.0.1:80", host = "localhost/x" }"#,
            "host",
            "contains /",
        ),
        (
            r#"{ http = "127.0.0.1:80", host = "" }"#,
            "host",
            "must not be empty",
        ),
        (
            r#"{ dns = "127.0.0.1:53", name = "a..b" }"#,
            "name",
            "empty label",
        ),
        (
            r#"{ dns = "127.0.0.1:53", name = "bad name." }"#,
            "name",
            "spaces",
        ),
        (
            r#"{ dns = "127.0.0.1:53", outside_name = "x!.org" }"#,
            "outside_name",
            "characters other than",
        ),
        (
            r#"{ smtp = "127.0.0.1:25", helo_name = "[300.1.1.1]" }"#,
            "helo_name",
            "address literal",
        ),
        (
            r#"{ smtp = "127.0.0.1:25", helo_name = "a..b" }"#,
            "helo_name",
            "host name",
        ),
        (
            r#"{ smtp = "127.0.0.1:25", starttls = "yes" }"#,
            "starttls",
            "expected true or false",
        ),
        (
            r#"{ smtp = "127.0.0.1:25", tls = 1 }"#,
            "tls",
            "expected true or false",
        ),
        (
            r#"{ tls = "127.0.0.1:443", cert_warn_days = 400 }"#,
            "cert_warn_days",
            "from 0 to 365",
        ),
        (
            r#"{ tls = "127.0.0.1:443", server_name = "a..b" }"#,
            "server_name",
            "invalid server name",
        ),
        (
            r#"{ tcp = "127.0.0.1:1", expect = "a\nb" }"#,
            "expect",
            "without line breaks",
        ),
        (
            r#"{ tcp = "127.0.0.1:1", expect = "" }"#,
            "expect",
            "non-empty",
        ),
        (
            r#"{ tcp = "127.0.0.1:1", send = "PING" }"#,
            "send",
            "`send` needs `expect`",
        ),
        (
            r#"{ syslog = "/dev/log", verify_file = "syslog" }"#,
            "verify_file",
            "absolute path",
        ),
    ];
    for (table, key, expected) in cases {
        let error = probe_error(table);
        assert_eq!(error.line, 3, "{table}");
        assert_eq!(error.key, format!("services.x.probe.{key}"), "{table}");
        assert!(error.message.contains(expected), "{table}: {error}");
    }
}

#[test]
fn endpoint_forms_checked() {
    let cases = [
        (
            r#"{ tcp = "/run/x.sock" }"#,
            "tcp",
            "needs host:port, not a socket path",
        ),
        (r#"{ tls = "/run/x.sock" }"#, "tls", "needs host:port"),
        (r#"{ dns = "/run/x.sock" }"#, "dns", "needs host:port"),
        (r#"{ dns = "127.0.0.1" }"#, "dns", "missing port"),
        (
            r#"{ smtp = "run/x.sock" }"#,
            "smtp",
            "or an absolute socket path",
        ),
        (
            r#"{ smtp = "127.0.0.1:smtp" }"#,
            "smtp",
            "port must be a number",
        ),
        (
            r#"{ mysql = "mysqld.sock" }"#,
            "mysql",
            "or an absolute socket path",
        ),
        (
            r#"{ milter = "inet:dkim@localhost" }"#,
            "milter",
            "invalid milter probe address",
        ),
        (
            r#"{ milter = "unix:run/x.sock" }"#,
            "milter",
            "not absolute",
        ),
        (
            r#"{ milter = "opendkim.sock" }"#,
            "milter",
            "milter notation",
        ),
        (
            r#"{ fail2ban = "127.0.0.1:1" }"#,
            "fail2ban",
            "absolute path",
        ),
        (r#"{ syslog = "127.0.0.1:514" }"#, "syslog", "absolute path"),
        (r#"{ unix = 25 }"#, "unix", "expected a string"),
    ];
    for (table, key, expected) in cases {
        let error = probe_error(table);
        assert_eq!(error.line, 3, "{table}");
        assert_eq!(error.key, format!("services.x.probe.{key}"), "{table}");
        assert!(error.message.contains(expected), "{table}: {error}");
    }
    let long = format!("/run/{}.sock", "x".repeat(110));
    let error = probe_error(&format!("{{ milter = \"unix:{long}\" }}"));
    assert!(error.message.contains("at most 107 bytes"), "{error}");
}

#[test]
fn one_kind_per_probe() {
    let error = probe_error(r#"{ smtp = "127.0.0.1:25", imap = "127.0.0.1:143" }"#);
    assert_eq!(error.key, "services.x.probe.imap");
    assert_eq!(
        error.message,
        "a probe has one endpoint, but `smtp` and `imap` both name one; list several \
             probes with `probes`"
    );
    let error = probe_error(r#"{ smtp = "127.0.0.1:25", tls = "127.0.0.1:465" }"#);
    assert_eq!(error.key, "services.x.probe.tls");

    let error = probe_error(r#"{ starttls = true }"#);
    assert!(
        error.message.starts_with("a probe needs an endpoint"),
        "{error}"
    );
    assert_eq!(error.key, "services.x.probe");
}

#[test]
fn unknown_probe_option() {
    let error = probe_error(r#"{ tcp = "127.0.0.1:1", sned = "x", expect = "y" }"#);
    assert_eq!(error.key, "services.x.probe.sned");
    assert!(error.message.contains("did you mean `send`"), "{error}");
    let error = probe_error(r#"{ smtps = "127.0.0.1:465" }"#);
    assert!(error.message.contains("did you mean `smtp`"), "{error}");
}

#[test]
fn probe_errors_in_array_lines() {
    let text = "[services.x]\n\
                    unit = \"x.service\"\n\
                    probes = [\n\
                    \x20 { smtp = \"127.0.0.1:25\" },\n\
                    \x20 { http = \"127.0.0.1:80\", starttls = true },\n\
                    \x20 { dns = \"127.0.0.1:53\", name = \"a..b\" },\n\
                    ]\n";
    let found = errors(text);
    let located: Vec<(usize, &str)> = found.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        located,
        [
            (5, "services.x.probes[1].starttls"),
            (6, "services.x.probes[2].name"),
        ]
    );
}

#[test]
fn probe_sub_table_lines() {
    let text = "[services.x]\n\
                    unit = \"x.service\"\n\
                    \n\
                    [[services.x.probes]]\n\
                    smtp = \"127.0.0.1:587\"\n\
                    starttls = true\n\
                    \n\
                    [[services.x.probes]]\n\
                    imap = \"127.0.0.1:143\"\n\
                    helo_name = \"x.example\"\n";
    let error = single(text);
    assert_eq!(error.line, 10);
    assert_eq!(error.key, "services.x.probes[1].helo_name");
}

#[test]
fn preset_probe_override_kinds() {
    let config = ok("[services.postfix]\n\
                         probes = [\n\
                         \x20 { smtp = \"127.0.0.1:25\" },\n\
                         \x20 { smtp = \"127.0.0.1:587\", starttls = true },\n\
                         \x20 { smtp = \"127.0.0.1:465\", tls = true },\n\
                         ]\n");
    let modes: Vec<ProbeTlsMode> = config.services[0]
        .probes
        .iter()
        .map(|probe| probe.tls.mode)
        .collect();
    assert_eq!(
        modes,
        [
            ProbeTlsMode::Off,
            ProbeTlsMode::Starttls,
            ProbeTlsMode::Implicit
        ]
    );
    assert!(config.services[0]
        .probes
        .iter()
        .all(|p| p.source == "config"));
}

#[test]
fn check_dns_name_limits() {
    assert_eq!(check_dns_name("."), Ok(()));
    assert_eq!(check_dns_name("localhost"), Ok(()));
    assert_eq!(check_dns_name("_dmarc.example.org."), Ok(()));
    assert!(check_dns_name("").is_err());
    assert!(check_dns_name("..").is_err());
    assert!(check_dns_name(&format!("{}.org", "a".repeat(64))).is_err());
    let long = vec!["a".repeat(63); 4].join(".");
    assert_eq!(long.len(), 255);
    assert!(check_dns_name(&long).is_err());
}

#[test]
fn status_class_forms() {
    assert_eq!(parse_status_class("2xx"), Some(StatusClass(2)));
    assert_eq!(parse_status_class("5XX"), Some(StatusClass(5)));
    assert_eq!(parse_status_class("1xx"), None);
    assert_eq!(parse_status_class("6xx"), None);
    assert_eq!(parse_status_class("2x"), None);
    assert_eq!(parse_status_class("200"), None);
    assert_eq!(parse_status_class(""), None);
}

#[test]
fn join_with_and_forms() {
    assert_eq!(join_with_and(&[]), "");
    assert_eq!(join_with_and(&["a"]), "a");
    assert_eq!(join_with_and(&["a", "b"]), "a and b");
    assert_eq!(join_with_and(&["a", "b", "c"]), "a, b and c");
}

#[test]
fn alert_limits_parse() {
    let config = ok(
        "[alerts]\nsendmail = false\ngroup_window = \"0s\"\nmax_per_hour = 3\n\
                     reminders = [\"30min\", \"2h\"]\nreminder_repeat = false\nrecovered = false\n\
                     retry_initial = \"10s\"\nretry_max = \"5min\"\nexpire_after = \"1d\"\n",
    );
    let alerts = &config.alerts;
    assert_eq!(alerts.group_window, Duration::ZERO);
    assert_eq!(alerts.max_per_hour, 3);
    assert_eq!(
        alerts.reminders,
        vec![Duration::from_secs(1800), Duration::from_secs(7200)]
    );
    assert_eq!(alerts.reminder_repeat, None);
    assert!(!alerts.recovered);
    assert_eq!(alerts.retry_initial, Duration::from_secs(10));
    assert_eq!(alerts.retry_max, Duration::from_secs(300));
    assert_eq!(alerts.expire_after, Duration::from_secs(86_400));
}

#[test]
fn alert_limit_defaults() {
    let alerts = ok("[alerts]\nsendmail = false\n").alerts;
    assert_eq!(alerts.group_window, Duration::from_secs(10));
    assert_eq!(alerts.max_per_hour, 10);
    assert_eq!(alerts.reminders.len(), 3);
    assert_eq!(alerts.reminder_repeat, Some(Duration::from_secs(86_400)));
    assert!(alerts.recovered);
    assert_eq!(alerts.expire_after, Duration::from_secs(3 * 86_400));
}

#[test]
fn reminders_off() {
    let alerts = ok("[alerts]\nsendmail = false\nreminders = false\n").alerts;
    assert!(alerts.reminders.is_empty());
}

#[test]
fn reminders_must_increase() {
    let error = single("[alerts]\nsendmail = false\nreminders = [\"6h\",\n  \"1h\"]\n");
    assert_eq!(error.line, 4);
    assert!(
        error.message.contains("reminder 1h does not come after 6h"),
        "{error}"
    );
}

#[test]
fn reminders_wrong_type() {
    let error = single("[alerts]\nsendmail = false\nreminders = \"1h\"\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "alerts.reminders");
    assert!(error.message.contains("an array of durations"), "{error}");
}

#[test]
fn retry_max_below_initial() {
    let error =
        single("[alerts]\nsendmail = false\nretry_initial = \"10min\"\nretry_max = \"1min\"\n");
    assert_eq!(error.line, 4);
    assert_eq!(error.key, "alerts.retry_max");
    assert!(
        error.message.contains("shorter than retry_initial 10m"),
        "{error}"
    );
}

#[test]
fn alert_limits_out_of_range() {
    for (line, expected) in [
        ("max_per_hour = 0", "from 1 to 1000"),
        ("group_window = \"1h\"", "use at most 10m"),
        ("expire_after = \"1min\"", "leaves no time for retries"),
        ("retry_initial = \"0s\"", "greater than zero"),
        (
            "retry_initial = \"1ms\"",
            "1ms is too short; use at least 1s",
        ),
        ("reminder_repeat = \"1s\"", "use at least 1m"),
        ("reminders = [\"30s\"]", "use at least 1m"),
        ("retry_max = \"30M\"", "\"M\" is months, not minutes"),
    ] {
        let error = single(&format!("[alerts]\nsendmail = false\n{line}\n"));
        assert_eq!(error.line, 3, "{line}");
        assert!(error.message.contains(expected), "{line}: {error}");
    }
}

#[test]
fn dashboard_public_url() {
    let config = ok("[dashboard]\npublic_url = \"https://mail.example.org/selfheal/\"\n");
    assert_eq!(
        config.dashboard.public_url.as_deref(),
        Some("https://mail.example.org/selfheal/")
    );
    for url in [
        "mail.example.org/selfheal",
        "https://",
        "https:///x",
        "ftp://x/",
        "https://a b/",
    ] {
        let error = single(&format!("[dashboard]\npublic_url = \"{url}\"\n"));
        assert_eq!(error.line, 2, "{url}");
        assert_eq!(error.key, "dashboard.public_url");
        assert!(
            error.message.contains("not an absolute http or https URL"),
            "{error}"
        );
    }
}

#[test]
fn relay_ca_file() {
    let dir = tempdir();
    let ca = write_file(
        dir.path(),
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        0o644,
    );
    let text = format!(
        "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\nca_file = \"{}\"\n",
        ca.display()
    );
    assert_eq!(
        ok(&text).alerts.relays[0].ca_file.as_deref(),
        Some(ca.as_path())
    );

    let key = write_file(
        dir.path(),
        "key.pem",
        "-----BEGIN PRIVATE KEY-----\n",
        0o600,
    );
    let error = single(&text.replace(&ca.display().to_string(), &key.display().to_string()));
    assert_eq!(error.line, 5);
    assert_eq!(error.key, "alerts.relay[0].ca_file");
    assert!(
        error.message.contains("contains no PEM certificate"),
        "{error}"
    );

    let missing = dir.path().join("missing.pem");
    let error = single(&text.replace(&ca.display().to_string(), &missing.display().to_string()));
    assert!(error.message.contains("cannot read CA file"), "{error}");
}

#[test]
fn relay_ca_file_without_tls_warns() {
    let dir = tempdir();
    let ca = write_file(
        dir.path(),
        "ca.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        0o644,
    );
    let config = ok(&format!(
        "[alerts]\nsendmail = false\n[[alerts.relay]]\nhost = \"h\"\ntls = \"none\"\nca_file = \"{}\"\n",
        ca.display()
    ));
    let warning = config
        .warnings
        .iter()
        .find(|warning| warning.key == "alerts.relay[0].ca_file")
        .expect("a ca_file warning");
    assert_eq!(warning.line, 6);
    assert!(
        warning.message.contains("no effect with tls = \"none\""),
        "{warning}"
    );
}

#[test]
fn alerts_only_through_local_postfix_warn() {
    let local = "[alerts]\nfrom = \"a@b.example\"\nto = [\"c@d.example\"]\nsendmail = false\n\
                 [[alerts.relay]]\nhost = \"127.0.0.1\"\ntls = \"none\"\n\
                 [services.postfix]\n";
    let config = ok(local);
    let warning = config
        .warnings
        .iter()
        .find(|warning| warning.key == "alerts")
        .expect("a warning about local alert channels");
    assert_eq!(warning.line, 1);
    assert!(
        warning
            .message
            .contains("no alert can go out while Postfix is down"),
        "{warning}"
    );

    let outside = local.replace("127.0.0.1", "smtp.example.net");
    assert!(!ok(&outside)
        .warnings
        .iter()
        .any(|warning| warning.key == "alerts"));
    let unwatched = local.replace("[services.postfix]\n", "[services.dovecot]\n");
    assert!(!ok(&unwatched)
        .warnings
        .iter()
        .any(|warning| warning.key == "alerts"));
}

#[test]
fn custom_config_test() {
    let dir = tempfile::tempdir().unwrap();
    let program = write_file(dir.path(), "ai-filter", "#!/bin/sh\nexit 0\n", 0o755);
    let program = program.display().to_string();
    let config = ok(&format!(
        "[services.ai-filter]\nunit = \"ai-filter.service\"\n\
         config_test = [\"{program}\", \"--check-config\"]\n"
    ));
    assert_eq!(
        config.services[0].config_test,
        Some(vec![program.clone(), "--check-config".to_string()])
    );
    let error = single("[services.ai-filter]\nunit = \"ai-filter.service\"\nconfig_test = 5\n");
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "services.ai-filter.config_test");
}

#[test]
fn config_test_program_must_exist() {
    let error = single(
        "[services.ai3]\nunit = \"ai3.service\"\nconfig_test = \"/usr/local/bin/nope --check\"\n",
    );
    assert_eq!(error.line, 3);
    assert_eq!(error.key, "services.ai3.config_test");
    assert_eq!(
        error.message,
        "config test program /usr/local/bin/nope not found; install it or fix the path"
    );
    assert!(error.example.is_some());

    let error =
        single("[services.ai3]\nunit = \"ai3.service\"\nconfig_test = \"no-such-checker -t\"\n");
    assert!(
        error
            .message
            .starts_with("config test program \"no-such-checker\" not found in /usr/sbin, "),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let plain = write_file(dir.path(), "not-executable", "", 0o644);
    let error = single(&format!(
        "[services.ai3]\nunit = \"ai3.service\"\nconfig_test = \"{} --check\"\n",
        plain.display()
    ));
    assert!(
        error
            .message
            .ends_with("is not an executable file; check the path and its mode"),
        "{error}"
    );
}

#[test]
fn disabled_services_are_listed() {
    let config = ok("[services.postfix]\nenabled = false\n[services.dovecot]\n");
    assert_eq!(config.service_names(), ["dovecot"]);
    assert_eq!(config.disabled, ["postfix"]);
}
