//! The command line: thin commands over the modules, or over the running daemon's socket.

/// `println!` for the commands' output: see [`output::write_stdout`].
macro_rules! outln {
    () => {
        $crate::cli::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the commands' output: see [`output::write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!($($arg)*))
    };
}

mod admin;
mod alert;
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};
use tokio::sync::oneshot;

use crate::alert::Alerting;
use crate::config::{self, Config, DEFAULT_PATH};
use crate::control::{self, ControlRequest, ControlResponse};
use crate::engine::{
    self, AlertSender, PauseView, ServiceRunner, ServiceView, MANAGER_CALL_TIMEOUT,
};
use crate::manager::Managers;
use crate::policy::Health;
use crate::store::{EventRow, IncidentRow, Store};

/// Exit status for usage and config errors.
pub(super) const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "selfheal",
    version,
    about = "Keeps a mail server's services running and alerts the admin when it cannot"
)]
pub struct Cli {
    /// Config file; when the default one does not exist, the detected presets are used.
    #[arg(short, long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// More log output (-v debug, -vv trace); RUST_LOG overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Subcommand, Debug)]
pub enum Commands {
    /// Run the daemon in the foreground.
    Run,
    /// Show each service's state, since when, and the last action.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check services once without restarting anything (exit 1 when one is down).
    Check {
        /// Only this service.
        service: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Restart a service through the same path as an automatic restart, and verify it.
    Restart {
        /// Service name as configured (`selfheal status` lists them).
        service: String,
    },
    /// Pause healing of a service for maintenance: it is still checked, but neither restarted
    /// nor alerted until the time is up or `selfheal resume`.
    Pause {
        /// Service name as configured (`selfheal status` lists them).
        service: String,
        /// Length of the pause, such as 30m or 2h (1m to 30d); without it, until resumed.
        #[arg(long = "for", value_name = "DURATION")]
        length: Option<String>,
    },
    /// End a pause: the service is healed again at once.
    Resume {
        /// Service name as configured (`selfheal status` lists them).
        service: String,
    },
    /// Read a new dashboard password and print its hash for the config.
    Passwd,
    /// Print a new API token and the config entry that accepts it.
    Token {
        /// Name the audit log shows for requests with this token.
        #[arg(long, default_value = "api")]
        name: String,
        /// Role of the token: admin, read-only or metrics.
        #[arg(long, default_value = "read-only")]
        role: String,
    },
    /// Validate the config file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List the covered services installed on this host and print a config enabling them.
    Detect,
    /// Find why a service is down or failing: config test, disk space, ports, journal,
    /// dependencies (exit 1 when a cause was found).
    Diagnose {
        /// Service name as configured (`selfheal status` lists them).
        service: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Alert channels.
    Alert {
        #[command(subcommand)]
        command: AlertCommand,
    },
    /// List incidents, newest first.
    Incidents {
        /// Only incidents that are still open.
        #[arg(long)]
        open: bool,
        /// Maximum number of incidents listed (at least 1).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertCommand {
    /// Send a test alert through each channel and print each reply (exit 1 when one failed).
    Test {
        /// Only this channel: a webhook's name, a relay's host or host:port, or `sendmail`.
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print every problem of the config file with file:line, or a summary when it is valid.
    Check,
}

pub async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Commands::Config {
            command: ConfigCommand::Check,
        } => config_check(cli.config.as_deref()),
        Commands::Detect => detect().await,
        Commands::Passwd => report(admin::passwd()),
        Commands::Token { name, role } => report(admin::token(&name, &role)),
        command => {
            let managers = Managers::connect(MANAGER_CALL_TIMEOUT).await;
            let daemon = matches!(command, Commands::Run);
            let config = match load_config(cli.config.as_deref(), &managers, daemon).await {
                Ok(config) => config,
                Err(code) => return code,
            };
            // An unknown service name is a usage error: exit 2 with the configured names.
            if let Commands::Check {
                service: Some(name),
                ..
            }
            | Commands::Restart { service: name }
            | Commands::Pause { service: name, .. }
            | Commands::Resume { service: name }
            | Commands::Diagnose { service: name, .. } = &command
            {
                if config.service(name).is_none() {
                    eprintln!("selfheal: {}", unknown_service(&config, name));
                    return ExitCode::from(EXIT_USAGE);
                }
            }
            let result = match command {
                Commands::Run => crate::daemon::run(config, managers)
                    .await
                    .map(|()| ExitCode::SUCCESS),
                Commands::Status { json } => status(&config, json).await,
                Commands::Check { service, json } => check(&config, &managers, service, json).await,
                Commands::Restart { service } => restart(config, managers, &service).await,
                Commands::Pause { service, length } => {
                    admin::pause(&config, &service, length.as_deref()).await
                }
                Commands::Resume { service } => admin::resume(&config, &service).await,
                Commands::Incidents { open, limit, json } => {
                    incidents(&config, open, limit as usize, json)
                }
                Commands::Alert {
                    command: AlertCommand::Test { channel },
                } => alert::test(&config, channel.as_deref()).await,
                Commands::Diagnose { service, json } => {
                    diagnose(&config, &managers, &service, json).await
                }
                Commands::Config { .. }
                | Commands::Detect
                | Commands::Passwd
                | Commands::Token { .. } => unreachable!("handled above"),
            };
            report(result)
        }
    }
}

/// Prints a command's error and turns it into exit status 1.
fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    result.unwrap_or_else(|error| {
        eprintln!("selfheal: {error:#}");
        ExitCode::FAILURE
    })
}

/// Load the config file, or, when the default file does not exist, the presets installed on
/// this host. A missing file given with `-c` is an error.
async fn load_config(
    path: Option<&Path>,
    managers: &Managers,
    daemon: bool,
) -> Result<Config, ExitCode> {
    let explicit = path.is_some();
    let path = path.unwrap_or(Path::new(DEFAULT_PATH));
    if !explicit && !path.exists() {
        let found = config::detect::detect(managers).await;
        let names: Vec<&str> = found
            .iter()
            .filter(|d| d.in_use)
            .map(|d| d.preset.name)
            .collect();
        // The daemon warns once at startup; the other commands use the same services quietly.
        if daemon {
            tracing::warn!(
                path = %path.display(),
                services = %names.join(", "),
                "no config file; watching the detected services in heal mode"
            );
        } else {
            tracing::debug!(path = %path.display(), "no config file; using the detected services");
        }
        return Ok(config::from_presets(&names));
    }
    match config::load(path) {
        Ok(config) => {
            for warning in &config.warnings {
                eprintln!("warning: {warning}");
            }
            Ok(config)
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "selfheal: {} problem(s) in {}",
                errors.0.len(),
                path.display()
            );
            Err(ExitCode::from(EXIT_USAGE))
        }
    }
}

fn config_check(path: Option<&Path>) -> ExitCode {
    let path = path.unwrap_or(Path::new(DEFAULT_PATH));
    match config::load(path) {
        Ok(config) => {
            for warning in &config.warnings {
                outln!("warning: {warning}");
            }
            outln!(
                "{}: valid; mode {}, interval {}, {} service(s): {}",
                path.display(),
                config.mode,
                humantime::format_duration(config.interval),
                config.services.len(),
                config.service_names().join(", ")
            );
            if !config.alerts.has_channel() {
                outln!("warning: no alert channel configured; failures will only be logged");
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{} problem(s) in {}", errors.0.len(), path.display());
            ExitCode::from(EXIT_USAGE)
        }
    }
}

async fn detect() -> ExitCode {
    let managers = Managers::connect(MANAGER_CALL_TIMEOUT).await;
    let found = config::detect::detect(&managers).await;
    eprintln!("# service manager: {}", managers.backend_name());
    for detection in &found {
        let usage = if detection.in_use {
            ""
        } else {
            ", disabled and stopped: left out"
        };
        eprintln!(
            "# found {} ({}{usage})",
            detection.preset.name, detection.unit
        );
    }
    if found.is_empty() {
        eprintln!("# none of the covered services is installed on this host");
    }
    out!("{}", config::detect::render_config(&found));
    ExitCode::SUCCESS
}

/// Explains a service name that is not configured: a table turned off with `enabled =
/// false`, a preset the config does not enable, or a likely misspelling, and lists the
/// configured services.
fn unknown_service(config: &Config, name: &str) -> anyhow::Error {
    let names = config.service_names();
    let configured = if names.is_empty() {
        "no service is configured".to_string()
    } else {
        format!("configured services: {}", names.join(", "))
    };
    let file = config
        .path
        .as_ref()
        .map_or("the config file".to_string(), |path| {
            path.display().to_string()
        });
    let problem = if config.disabled.iter().any(|disabled| disabled == name) {
        format!(
            "service \"{name}\" is turned off with `enabled = false` in [services.{name}] of \
             {file}"
        )
    } else if config::preset(name).is_some() {
        match &config.path {
            Some(_) => format!(
                "service \"{name}\" is not configured; add [services.{name}] to {file} to \
                 watch it"
            ),
            None => format!(
                "service \"{name}\" is not watched: it was not found in use on this host, \
                 and there is no config file; add [services.{name}] to {DEFAULT_PATH} to \
                 watch it"
            ),
        }
    } else {
        let mut candidates = names.clone();
        candidates.extend(config.disabled.iter().map(String::as_str));
        let suggestion = config::closest_name(name, &candidates)
            .map(|meant| format!("; did you mean \"{meant}\"?"))
            .unwrap_or_default();
        return anyhow::anyhow!("unknown service \"{name}\"; {configured}{suggestion}");
    };
    anyhow::anyhow!("{problem}; {configured}")
}

async fn check(
    config: &Config,
    managers: &Managers,
    only: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let services: Vec<_> = match &only {
        Some(name) => vec![config
            .service(name)
            .ok_or_else(|| unknown_service(config, name))?],
        None => config.services.iter().collect(),
    };
    let checks = services.iter().map(|service| async move {
        let target = engine::resolve_target(managers, service).await;
        let observation = engine::observe(managers, &target, service).await;
        (*service, target, observation)
    });
    let results = futures_util::future::join_all(checks).await;

    let mut all_healthy = true;
    let mut rows = Vec::new();
    for (service, target, observation) in &results {
        let health = observation.health();
        all_healthy &= health == Health::Healthy;
        let state = match health {
            Health::Healthy => "healthy",
            Health::Transitional => "changing",
            Health::Unresponsive => "not answering",
            Health::Dead => "down",
        };
        rows.push(serde_json::json!({
            "service": service.name,
            "unit": target.label(),
            "state": state,
            "unit_state": observation.unit_state(),
            "probes": observation.probes,
            "probe_sources": service.probes.iter().map(config::describe_source).collect::<Vec<_>>(),
        }));
        if !json {
            outln!(
                "{:<16} {:<14} {:<26} {}",
                service.name,
                state,
                target.label(),
                observation.unit_state()
            );
            // Reports come back in the order of the configured probes.
            for (probe, spec) in observation.probes.iter().zip(&service.probes) {
                outln!("{:<16} {probe}  ({})", "", config::describe_source(spec));
            }
        }
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
    }
    Ok(if all_healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn status(config: &Config, json: bool) -> anyhow::Result<ExitCode> {
    let views = match control::request(
        &config.control_socket,
        &ControlRequest::Status,
        Duration::from_secs(10),
    )
    .await?
    {
        Some(ControlResponse::Status { services }) => services,
        Some(ControlResponse::Error { message }) => anyhow::bail!("daemon: {message}"),
        Some(other) => anyhow::bail!("unexpected reply from the daemon: {other:?}"),
        None => {
            eprintln!(
                "selfheal daemon not running (no socket at {}); last known state from {}",
                config.control_socket.display(),
                config.state_db().display()
            );
            stored_views(config)?
        }
    };
    let undelivered = alert::undelivered(config);
    let mut views = views;
    for view in &mut views {
        view.alert_undelivered = undelivered
            .iter()
            .find(|row| row.service.split(", ").any(|name| name == view.service))
            .map(|row| {
                let what = if row.status == "expired" {
                    "alert expired undelivered"
                } else {
                    "alert not delivered yet"
                };
                format!(
                    "{what} ({}): {}",
                    row.route,
                    row.last_error.as_deref().unwrap_or("not tried yet")
                )
            });
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "{:<16} {:<16} {:<22} LAST ACTION",
        "SERVICE",
        "STATE",
        "SINCE"
    );
    for view in &views {
        for line in status_lines(view) {
            outln!("{line}");
        }
        if let Some(pause) = &view.paused {
            let until = pause.until_ms.map_or("until resumed".to_string(), |ms| {
                format!("until {}", time_text(ms))
            });
            outln!("{:<16} healing paused {until} by {}", "", pause.by);
            // A paused service is still checked: show whether it is up.
            if let Some(probe) = &view.last_probe {
                outln!("{:<16} last check: {probe}", "");
            }
        }
    }
    if !undelivered.is_empty() {
        outln!();
        alert::print_undelivered(&undelivered);
    }
    alert::print_held(config);
    Ok(ExitCode::SUCCESS)
}

/// Formats one service of `selfheal status`: its row, then the verdict's reason, the cause and
/// the next step, each once. The verdict's own event reads "VERDICT: REASON", so the LAST
/// ACTION column shows only the verdict when the lines below give the reason.
fn status_lines(view: &ServiceView) -> Vec<String> {
    let verdict = view.verdict.as_deref().zip(view.reason.as_deref());
    let first = view.findings.first();
    // A daemon from before `findings` sends only the summary.
    let cause = first
        .map(|finding| finding.summary.as_str())
        .or(view.diagnosis.as_deref());
    let action = match (&view.last_action, view.last_action_ms) {
        (Some(action), Some(ms)) => {
            let column = match verdict {
                Some((verdict, reason)) if *action == format!("{verdict}: {reason}") => verdict,
                _ => action.as_str(),
            };
            format!("{column} ({})", time_text(ms))
        }
        _ => "-".to_string(),
    };
    let mut lines = vec![format!(
        "{:<16} {:<16} {:<22} {action}",
        view.service,
        view.state,
        time_text(view.since_ms)
    )];
    if let Some((verdict, reason)) = verdict {
        // The reason often is the cause, or contains it (a config test's first line).
        let repeats = cause.is_some_and(|cause| reason.contains(cause) || cause.contains(reason));
        if !repeats {
            lines.push(format!("{:<16} {verdict}: {reason}", ""));
        }
    }
    if let Some(cause) = cause {
        lines.push(format!("{:<16} cause: {cause}", ""));
    }
    if let Some(finding) = first {
        lines.push(format!("{:<16} next: {}", "", finding.next_step));
    }
    lines
}

/// Reads the services' last state as the daemon stored it.
fn stored_views(config: &Config) -> anyhow::Result<Vec<ServiceView>> {
    let Some(store) = Store::open_existing(&config.state_db())? else {
        eprintln!(
            "no state database at {} yet: the daemon has not run here",
            config.state_db().display()
        );
        return Ok(Vec::new());
    };
    let states = store.service_states()?;
    let mut views = Vec::new();
    for service in &config.services {
        let stored = states.iter().find(|s| s.service == service.name);
        let open = store.open_incident_for(&service.name)?;
        views.push(ServiceView {
            service: service.name.clone(),
            unit: open.as_ref().map(|o| o.unit.clone()).unwrap_or_default(),
            mode: service.mode.to_string(),
            critical: service.critical,
            state: stored.map_or("unknown".to_string(), |s| s.state.clone()),
            since_ms: stored.map_or(0, |s| s.since_ms),
            checked_ms: stored.and_then(|s| s.checked_ms),
            checks: 0,
            last_probe: stored.and_then(|s| s.last_probe.clone()),
            last_action: stored.and_then(|s| s.last_action.clone()),
            last_action_ms: stored.and_then(|s| s.last_action_ms),
            verdict: open.as_ref().and_then(|o| o.verdict.clone()),
            reason: open.as_ref().and_then(|o| o.reason.clone()),
            incident: open.as_ref().map(|o| o.id),
            alert_undelivered: None,
            diagnosis: open
                .as_ref()
                .and_then(|row| row.diagnosis.first())
                .map(|finding| finding.summary.clone()),
            findings: open
                .as_ref()
                .map(|row| row.diagnosis.clone())
                .unwrap_or_default(),
            paused: store
                .pause_for(&service.name, SystemTime::now())?
                .map(|pause| PauseView {
                    until_ms: pause.until_ms,
                    by: pause.actor,
                    since_ms: pause.at_ms,
                }),
            ..ServiceView::default()
        });
    }
    Ok(views)
}

async fn restart(config: Config, managers: Managers, name: &str) -> anyhow::Result<ExitCode> {
    let service = config
        .service(name)
        .ok_or_else(|| unknown_service(&config, name))?
        .clone();
    let request = ControlRequest::Restart {
        service: name.to_string(),
    };
    let limit = service.restart_timeout + service.recovery.verify_timeout + Duration::from_secs(30);
    let outcome = match control::request(&config.control_socket, &request, limit).await? {
        Some(ControlResponse::Restart { outcome }) => outcome,
        Some(ControlResponse::Error { message }) => anyhow::bail!("daemon: {message}"),
        Some(other) => anyhow::bail!("unexpected reply from the daemon: {other:?}"),
        None => {
            eprintln!("selfheal daemon not running; restarting directly");
            restart_without_daemon(&config, managers, service).await?
        }
    };
    outln!("{}", outcome.message);
    if !outcome.healthy {
        if !outcome.journal.is_empty() {
            outln!("\nlast journal lines of the unit:");
            for line in &outcome.journal {
                outln!("  {line}");
            }
        }
        outln!(
            "\nselfheal will not restart {name} on its own now; fix the cause, then run \
             `selfheal restart {name}` again"
        );
    }
    Ok(if outcome.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Runs the daemon's restart path in this process: restart, verify, record, alert.
async fn restart_without_daemon(
    config: &Config,
    managers: Managers,
    service: crate::config::ServiceConfig,
) -> anyhow::Result<engine::RestartOutcome> {
    let store = Arc::new(Store::open(&config.state_db())?);
    let managers = Arc::new(managers);
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let alerting = Alerting::start(config, store.clone(), host.clone())?;
    let alerts = AlertSender::new(alerting.outbox.clone(), host);
    let target = engine::resolve_target(&managers, &service).await;
    let policy = engine::restore_policy(&store, &service)?;
    let mut runner = ServiceRunner::new(
        service,
        target,
        policy,
        managers,
        store,
        alerts,
        config.alerts.journal_lines,
    )?;
    let (reply, outcome) = oneshot::channel();
    let mut next = runner.manual_restart(reply, "root (command line)").await;
    let outcome = {
        tokio::pin!(outcome);
        loop {
            tokio::select! {
                result = &mut outcome => break result?,
                _ = tokio::time::sleep_until(next.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1))) => {
                    next = runner.check().await;
                }
            }
        }
    };
    drop(runner);
    alerting.shutdown(Duration::from_secs(60)).await;
    Ok(outcome)
}

fn incidents(config: &Config, open: bool, limit: usize, json: bool) -> anyhow::Result<ExitCode> {
    let Some(store) = Store::open_existing(&config.state_db())? else {
        if json {
            outln!("[]");
        } else {
            outln!(
                "no incidents: no state database at {} yet",
                config.state_db().display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    };
    let rows = store.incidents(open, limit)?;
    if json {
        let mut list = Vec::new();
        for row in &rows {
            list.push(serde_json::json!({
                "incident": row,
                "events": store.events(row.id)?,
            }));
        }
        outln!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        outln!("no {}incidents", if open { "open " } else { "" });
        return Ok(ExitCode::SUCCESS);
    }
    // VERDICT is the last column, so a long one ("not restarted, then healed") cannot push
    // another column out of line. The problem and the cause go on lines of their own.
    outln!(
        "{:<6} {:<14} {:<22} {:<22} VERDICT",
        "ID",
        "SERVICE",
        "OPENED",
        "CLOSED"
    );
    for row in &rows {
        // The same history the alert shows, without a verdict that repeats the step before.
        let events = crate::alert::dispatch::without_repeats(store.events(row.id)?);
        for line in incident_lines(row, &events) {
            outln!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Formats one incident of `selfheal incidents`: its row, then the problem (unless the cause
/// states the same), the history, and each cause with its next step while the incident is open.
fn incident_lines(row: &IncidentRow, events: &[EventRow]) -> Vec<String> {
    let closed = row.closed_ms.map_or("open".to_string(), time_text);
    let verdict = match (&row.verdict, &row.resolution) {
        (Some(v), Some(r)) => format!("{v}, then {r}"),
        (Some(v), None) => v.clone(),
        (None, Some(r)) => r.clone(),
        (None, None) => "-".to_string(),
    };
    let mut lines = vec![format!(
        "{:<6} {:<14} {:<22} {:<22} {verdict}",
        row.id,
        row.service,
        time_text(row.opened_ms),
        closed,
    )];
    let problem = row.reason.as_deref().unwrap_or(&row.problem);
    let cause = row
        .diagnosis
        .first()
        .map(|finding| finding.summary.as_str());
    if cause != Some(problem) {
        lines.push(format!("{:<6} problem: {problem}", ""));
    }
    for event in events {
        lines.push(format!(
            "{:<6} {}  {}",
            "",
            time_text(event.at_ms),
            event.detail
        ));
    }
    for finding in &row.diagnosis {
        lines.push(format!("{:<6} cause: {}", "", finding.summary));
        // A closed incident has nothing left to do.
        if row.closed_ms.is_none() {
            lines.push(format!("{:<6}   next: {}", "", finding.next_step));
        }
    }
    lines
}

/// Runs the diagnosis of one service now and prints each finding with its evidence.
async fn diagnose(
    config: &Config,
    managers: &Managers,
    name: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let Some(service) = config.service(name) else {
        anyhow::bail!("{}", unknown_service(config, name));
    };
    let target = engine::resolve_target(managers, service).await;
    let store = Store::open_existing(&config.state_db())?;
    let findings = engine::diagnose(managers, &target, service, store.as_ref()).await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&findings)?);
    } else if findings.is_empty() {
        let config_test = if has_config_test(service) {
            "the config test passes"
        } else {
            "it has no config test"
        };
        outln!("{name}: no cause found: {config_test}, no disk is full, no other program holds its ports and its journal shows no known error");
    } else {
        for finding in &findings {
            outln!("{}", finding.summary);
            for line in &finding.evidence {
                outln!("  | {line}");
            }
            outln!("  next: {}", finding.next_step);
            if finding.blocks_restart {
                outln!("  a restart cannot fix this");
            }
        }
    }
    Ok(if findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Returns whether the diagnosis runs a config test for `service`: its own `config_test` or its
/// preset's.
fn has_config_test(service: &crate::config::ServiceConfig) -> bool {
    let preset = service.preset.as_deref().unwrap_or("");
    service.config_test.is_some() || !crate::diagnose::knowledge::config_tests(preset).is_empty()
}

/// UTC time to the second, "-" for none.
fn time_text(ms: i64) -> String {
    crate::store::format_ms(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::{Cause, Finding};

    fn config(text: &str) -> Config {
        match config::parse_str(text, Path::new("/etc/selfheal/selfheal.toml")) {
            Ok(config) => config,
            Err(errors) => panic!("{errors}"),
        }
    }

    #[test]
    fn unknown_service_suggests_name() {
        let config = config("[services.postfix]\n[services.dovecot]\n");
        assert_eq!(
            unknown_service(&config, "postfx").to_string(),
            "unknown service \"postfx\"; configured services: postfix, dovecot; did you mean \
             \"postfix\"?"
        );
        assert_eq!(
            unknown_service(&config, "exim").to_string(),
            "unknown service \"exim\"; configured services: postfix, dovecot"
        );
    }

    #[test]
    fn unknown_service_names_preset_and_disabled() {
        let config = config("[services.postfix]\n[services.dovecot]\nenabled = false\n");
        assert_eq!(
            unknown_service(&config, "dovecot").to_string(),
            "service \"dovecot\" is turned off with `enabled = false` in [services.dovecot] \
             of /etc/selfheal/selfheal.toml; configured services: postfix"
        );
        assert_eq!(
            unknown_service(&config, "mariadb").to_string(),
            "service \"mariadb\" is not configured; add [services.mariadb] to \
             /etc/selfheal/selfheal.toml to watch it; configured services: postfix"
        );
    }

    fn view() -> ServiceView {
        ServiceView {
            service: "postfix".into(),
            unit: "postfix@-.service".into(),
            mode: "heal".into(),
            critical: true,
            state: "needs attention".into(),
            since_ms: 1_700_000_000_000,
            checked_ms: None,
            checks: 3,
            last_probe: None,
            last_action: None,
            last_action_ms: Some(1_700_000_000_000),
            verdict: Some("not restarted".into()),
            reason: None,
            incident: Some(1),
            diagnosis: None,
            findings: Vec::new(),
            ..ServiceView::default()
        }
    }

    #[test]
    fn status_states_cause_once() {
        let cause = "config error: /etc/postfix/main.cf line 50: missing '='";
        let mut view = view();
        view.reason = Some(cause.into());
        view.last_action = Some(format!("not restarted: {cause}"));
        view.diagnosis = Some(cause.into());
        view.findings = vec![Finding::new(
            Cause::ConfigError,
            cause,
            "fix line 50 of /etc/postfix/main.cf",
        )];
        let lines = status_lines(&view);
        let text = lines.join("\n");
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].ends_with("not restarted (2023-11-14T22:13:20Z)"),
            "{text}"
        );
        assert_eq!(lines[1].trim(), format!("cause: {cause}"));
        assert_eq!(lines[2].trim(), "next: fix line 50 of /etc/postfix/main.cf");
        assert_eq!(text.matches("missing '='").count(), 1, "{text}");
    }

    #[test]
    fn status_keeps_reason_next_to_other_cause() {
        let mut view = view();
        view.verdict = Some("restart failed".into());
        view.reason = Some("unit failed".into());
        view.last_action = Some("restart failed: unit failed".into());
        view.diagnosis = Some("config error: x".into());
        let lines = status_lines(&view);
        let trimmed: Vec<&str> = lines.iter().map(|line| line.trim()).collect();
        assert_eq!(
            trimmed[1..],
            ["restart failed: unit failed", "cause: config error: x"]
        );
    }

    #[test]
    fn incident_verdict_is_last_column() {
        let cause = "config error: /etc/postfix/main.cf line 50: missing '='";
        let row = IncidentRow {
            id: 7,
            service: "postfix".into(),
            unit: "postfix@-.service".into(),
            opened_ms: 1_700_000_000_000,
            closed_ms: Some(1_700_000_060_000),
            problem: "unit failed".into(),
            verdict: Some("not restarted".into()),
            reason: Some(cause.into()),
            resolution: Some("healed".into()),
            alert_status: "sent".into(),
            diagnosis: vec![Finding::new(Cause::ConfigError, cause, "fix line 50")],
        };
        let lines = incident_lines(&row, &[]);
        assert!(
            lines[0].ends_with(" not restarted, then healed"),
            "{lines:#?}"
        );
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert_eq!(lines[1].trim(), format!("cause: {cause}"));
        let header = format!(
            "{:<6} {:<14} {:<22} {:<22} VERDICT",
            "ID", "SERVICE", "OPENED", "CLOSED"
        );
        assert_eq!(
            lines[0].find("not restarted"),
            header.find("VERDICT"),
            "{lines:#?}"
        );
    }
}
