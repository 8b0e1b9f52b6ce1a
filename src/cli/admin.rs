//! `selfheal pause`, `resume`, `passwd` and `token`: maintenance windows and the dashboard's
//! credentials.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::control::{self, ControlRequest, ControlResponse};
use crate::engine::ServiceView;
use crate::store::{format_ms, unix_ms, AuditRow, PauseRow, Store};
use crate::web::auth::{hash_password, random_token, token_digest};

/// Shortest password `selfheal passwd` accepts.
const MIN_PASSWORD: usize = 12;

/// Pauses healing of `name` through the running daemon, or stores the pause for its next
/// start when it is not running.
pub async fn pause(config: &Config, name: &str, length: Option<&str>) -> anyhow::Result<ExitCode> {
    let length = match length.map(crate::web::parse_pause) {
        Some(Ok(length)) => Some(length),
        Some(Err(message)) => {
            eprintln!("selfheal: {message}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
        None => None,
    };
    let request = ControlRequest::Pause {
        service: name.to_string(),
        seconds: length.map(|length| length.as_secs()),
    };
    if ask_daemon(config, &request).await? {
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(&config.state_db())?;
    let now = SystemTime::now();
    let until_ms = length.map(|length| unix_ms(now + length));
    store.set_pause(&PauseRow {
        service: name.to_string(),
        until_ms,
        actor: control::ACTOR.to_string(),
        at_ms: unix_ms(now),
    })?;
    audit(&store, "pause", name);
    outln!(
        "selfheal is not running; healing of {name} is paused {} from its start",
        until_text(until_ms)
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn resume(config: &Config, name: &str) -> anyhow::Result<ExitCode> {
    let request = ControlRequest::Resume {
        service: name.to_string(),
    };
    if ask_daemon(config, &request).await? {
        return Ok(ExitCode::SUCCESS);
    }
    let store = Store::open(&config.state_db())?;
    store.clear_pause(name)?;
    audit(&store, "resume", name);
    outln!("selfheal is not running; {name} will be healed again from its start");
    Ok(ExitCode::SUCCESS)
}

/// Sends a pause or resume to the running daemon and prints the service's new state.
/// Returns false when no daemon listens, so that the caller stores the change instead.
async fn ask_daemon(config: &Config, request: &ControlRequest) -> anyhow::Result<bool> {
    match control::request(&config.control_socket, request, Duration::from_secs(30)).await? {
        Some(ControlResponse::Service { view }) => {
            outln!("{}", describe(&view));
            Ok(true)
        }
        Some(ControlResponse::Error { message }) => anyhow::bail!("daemon: {message}"),
        Some(other) => anyhow::bail!("unexpected reply from the daemon: {other:?}"),
        None => Ok(false),
    }
}

fn audit(store: &Store, action: &str, service: &str) {
    let row = AuditRow {
        at_ms: unix_ms(SystemTime::now()),
        actor: control::ACTOR.to_string(),
        address: "local".to_string(),
        action: action.to_string(),
        service: Some(service.to_string()),
        outcome: "ok (stored; selfheal was not running)".to_string(),
    };
    if let Err(error) = store.add_audit(&row) {
        eprintln!("selfheal: cannot store the audit record: {error:#}");
    }
}

fn until_text(until_ms: Option<i64>) -> String {
    match until_ms {
        Some(ms) => format!("until {}", format_ms(ms)),
        None => "until resumed".to_string(),
    }
}

fn describe(view: &ServiceView) -> String {
    match &view.paused {
        Some(pause) => format!(
            "{}: healing paused {} (no restarts, no alerts; checks go on); \
             `selfheal resume {}` ends it",
            view.service,
            until_text(pause.until_ms),
            view.service
        ),
        None => format!("{}: healing resumed; state {}", view.service, view.state),
    }
}

/// Reads a new password twice (without echo on a terminal, or one line from a pipe) and
/// prints its Argon2id hash for `admin_password_hash` or `readonly_password_hash`.
pub fn passwd() -> anyhow::Result<ExitCode> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New dashboard password: ")?;
        let second = rpassword::prompt_password("Repeat it: ")?;
        if first != second {
            anyhow::bail!("the two passwords differ; nothing was printed");
        }
        first
    } else {
        // One line, as from `echo PASSWORD | selfheal passwd` in a provisioning script.
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\r', '\n']).to_string();
        if password.is_empty() {
            anyhow::bail!(
                "no password read from standard input; type it at the prompt, or pipe one line"
            );
        }
        password
    };
    if password.chars().count() < MIN_PASSWORD {
        anyhow::bail!(
            "the password has {} characters; use at least {MIN_PASSWORD}, such as four \
             random words",
            password.chars().count()
        );
    }
    let hash = hash_password(&password)?;
    outln!("{hash}");
    eprintln!(
        "Put it under [dashboard] in the config as admin_password_hash = \"{hash}\" (or \
         readonly_password_hash for the viewer user), then restart selfheal."
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints a new random API token and the config entry that accepts it.
pub fn token(name: &str, role: &str) -> anyhow::Result<ExitCode> {
    if !matches!(role, "admin" | "read-only" | "metrics") {
        anyhow::bail!("role \"{role}\" is not known; use admin, read-only or metrics");
    }
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '"') {
        anyhow::bail!("token name \"{name}\" must be one word without quotes");
    }
    let token = format!("{}{}", crate::config::TOKEN_PREFIX, random_token()?);
    outln!("{token}");
    eprintln!(
        "Give the line above to the client (Authorization: Bearer TOKEN); selfheal keeps only \
         its digest. Add to the config and restart selfheal:\n\n\
         [[dashboard.token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"",
        token_digest(&token)
    );
    Ok(ExitCode::SUCCESS)
}
