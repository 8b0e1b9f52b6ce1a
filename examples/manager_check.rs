//! Manual check of the service-manager backends against a running systemd.
//!
//! ```text
//! manager_check [--systemctl] status UNIT...        state of each unit and the call latency
//! manager_check [--systemctl] restart UNIT [SECS]   restart (default timeout 30 s), report or error
//! manager_check [--systemctl] exists UNIT...        whether each unit is loaded
//! manager_check watch SECS UNIT...                  print unit change notifications for SECS
//! manager_check journal UNIT [LINES]                last journal lines of the unit
//! ```
//!
//! `--systemctl` uses the systemctl command instead of D-Bus. Logs go to stderr; set RUST_LOG
//! (for example `RUST_LOG=debug`) to see more.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use selfheal::manager::systemctl::{self, Systemctl};
use selfheal::manager::systemd::Systemd;
use selfheal::manager::{ManagerError, RestartError, RestartReport, UnitStatus};

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

enum Backend {
    Dbus(Systemd),
    Systemctl(Systemctl),
}

impl Backend {
    async fn status(&self, unit: &str) -> Result<UnitStatus, ManagerError> {
        match self {
            Backend::Dbus(dbus) => dbus.status(unit).await,
            Backend::Systemctl(systemctl) => systemctl.status(unit).await,
        }
    }

    async fn restart(&self, unit: &str, timeout: Duration) -> Result<RestartReport, RestartError> {
        match self {
            Backend::Dbus(dbus) => dbus.restart(unit, timeout).await,
            Backend::Systemctl(systemctl) => systemctl.restart(unit, timeout).await,
        }
    }

    async fn unit_exists(&self, unit: &str) -> bool {
        match self {
            Backend::Dbus(dbus) => dbus.unit_exists(unit).await,
            Backend::Systemctl(systemctl) => systemctl.unit_exists(unit).await,
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let use_systemctl = args.first().is_some_and(|arg| arg == "--systemctl");
    if use_systemctl {
        args.remove(0);
    }
    match run(use_systemctl, &args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("manager_check: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(use_systemctl: bool, args: &[String]) -> Result<(), String> {
    let Some((command, rest)) = args.split_first() else {
        return Err(usage());
    };
    if command == "journal" {
        return journal(rest).await;
    }

    let connected = Instant::now();
    let backend = if use_systemctl {
        Backend::Systemctl(Systemctl::new(CALL_TIMEOUT))
    } else {
        let dbus = Systemd::connect(CALL_TIMEOUT)
            .await
            .map_err(|err| err.to_string())?;
        println!(
            "connected and subscribed in {}",
            millis(connected.elapsed())
        );
        Backend::Dbus(dbus)
    };

    match command.as_str() {
        "status" => status(&backend, rest).await,
        "restart" => restart(&backend, rest).await,
        "exists" => {
            for unit in rest {
                println!("{unit}: {}", backend.unit_exists(unit).await);
            }
            Ok(())
        }
        "watch" => match backend {
            Backend::Dbus(dbus) => watch(&dbus, rest).await,
            Backend::Systemctl(_) => Err("the systemctl backend cannot watch".to_string()),
        },
        _ => Err(usage()),
    }
}

async fn status(backend: &Backend, units: &[String]) -> Result<(), String> {
    if units.is_empty() {
        return Err(usage());
    }
    for unit in units {
        let started = Instant::now();
        let status = backend.status(unit).await;
        let elapsed = started.elapsed();
        match status {
            Ok(status) => println!(
                "{unit}: {} in {}\n  {status:?}",
                status.describe(),
                millis(elapsed)
            ),
            Err(err) => println!("{unit}: error in {}: {err}", millis(elapsed)),
        }
    }
    Ok(())
}

async fn restart(backend: &Backend, args: &[String]) -> Result<(), String> {
    let Some(unit) = args.first() else {
        return Err(usage());
    };
    let timeout = match args.get(1) {
        Some(seconds) => Duration::from_secs(
            seconds
                .parse()
                .map_err(|_| format!("invalid timeout {seconds:?}: expected whole seconds"))?,
        ),
        None => Duration::from_secs(30),
    };
    let started = Instant::now();
    let outcome = backend.restart(unit, timeout).await;
    let elapsed = started.elapsed();
    match outcome {
        Ok(report) => println!("{unit}: restarted in {}: {report:?}", millis(elapsed)),
        Err(err) => println!(
            "{unit}: restart failed after {}: {err} ({err:?})",
            millis(elapsed)
        ),
    }
    match backend.status(unit).await {
        Ok(status) => println!("{unit}: now {}", status.describe()),
        Err(err) => println!("{unit}: status error: {err}"),
    }
    Ok(())
}

async fn watch(dbus: &Systemd, args: &[String]) -> Result<(), String> {
    let Some((seconds, units)) = args.split_first() else {
        return Err(usage());
    };
    let seconds: u64 = seconds
        .parse()
        .map_err(|_| format!("invalid duration {seconds:?}: expected whole seconds"))?;
    let mut changes = dbus
        .watch(units.to_vec())
        .await
        .map_err(|err| err.to_string())?;
    println!("watching {} unit(s) for {seconds} s", units.len());

    let started = Instant::now();
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        match tokio::time::timeout_at(end, changes.recv()).await {
            Ok(Some(unit)) => {
                let state = match dbus.status(&unit).await {
                    Ok(status) => status.describe(),
                    Err(err) => format!("status error: {err}"),
                };
                println!(
                    "{} (+{}) {unit}: {state}",
                    humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                    millis(started.elapsed())
                );
            }
            Ok(None) => {
                println!("+{} channel closed", millis(started.elapsed()));
                return Ok(());
            }
            Err(_) => return Ok(()),
        }
    }
}

async fn journal(args: &[String]) -> Result<(), String> {
    let Some(unit) = args.first() else {
        return Err(usage());
    };
    let lines = match args.get(1) {
        Some(lines) => lines
            .parse()
            .map_err(|_| format!("invalid line count {lines:?}"))?,
        None => 10,
    };
    for line in systemctl::journal_tail(unit, lines).await {
        println!("{line}");
    }
    Ok(())
}

fn millis(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1000.0)
}

fn usage() -> String {
    "usage: manager_check [--systemctl] status|restart|exists UNIT...; manager_check watch SECS \
     UNIT...; manager_check journal UNIT [LINES]"
        .to_string()
}
