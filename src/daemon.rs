//! `selfheal run`: the daemon's startup and shutdown.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

use crate::alert::Alerting;
use crate::config::Config;
use crate::control;
use crate::engine::{AlertSender, Engine};
use crate::manager::Managers;
use crate::store::Store;

/// Time allowed for queued alerts to go out at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(config: Config, managers: Managers) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let source = config
        .path
        .as_ref()
        .map_or("none (detected presets)".to_string(), |p| {
            p.display().to_string()
        });
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %source,
        mode = %config.mode,
        interval = %humantime::format_duration(config.interval),
        manager = managers.backend_name(),
        services = %config.service_names().join(", "),
        "selfheal starting"
    );
    if !config.alerts.has_channel() {
        tracing::warn!(
            "no alert channel configured: failures that cannot be healed are only logged; \
             set [alerts] to, from and a [[alerts.relay]], or add an [[alerts.webhook]]"
        );
    }
    if config.services.is_empty() {
        tracing::warn!(
            "no services to watch; enable some under [services] or run `selfheal detect`"
        );
    }

    let store = Arc::new(Store::open(&config.state_db())?);
    store.note_start(std::time::SystemTime::now())?;
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let alerting = Alerting::start(&config, store.clone(), host.clone())?;
    let alerts = AlertSender::new(alerting.outbox.clone(), host);
    let managers = Arc::new(managers);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let engine =
        Arc::new(Engine::start(config.clone(), managers, store.clone(), alerts, metrics).await?);

    let listener = control::bind(&config.control_socket)?;
    tracing::info!(socket = %config.control_socket.display(), "control socket listening");
    let control_task = tokio::spawn(control::serve(listener, engine.clone(), store.clone()));
    let web_task = crate::web::start(config.clone(), engine.clone(), store.clone())?;

    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    // SIGHUP would end the process by default, and systemd counts that as a clean exit that
    // Restart=on-failure does not undo.
    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    notify_systemd(&[sd_notify::NotifyState::Ready]);

    // When systemd's WatchdogSec is set, ping at half its period while the checks go on. A
    // check may legitimately wait for a long restart, so "going on" allows two intervals plus
    // the longest restart timeout.
    let mut watchdog_usec = 0;
    let watchdog = sd_notify::watchdog_enabled(false, &mut watchdog_usec);
    let ping_every = Duration::from_micros(watchdog_usec.max(2_000_000) / 2);
    let mut ticker = tokio::time::interval(ping_every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let cause = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => {
                tracing::warn!(
                    "SIGHUP ignored: selfheal does not reload its config; apply changes with \
                     `systemctl restart selfheal` (incidents and restart budgets are kept)"
                );
            }
            _ = ticker.tick(), if watchdog => {
                match engine.stalled() {
                    None => notify_systemd(&[sd_notify::NotifyState::Watchdog]),
                    Some(stalled) => tracing::error!(
                        stalled = %humantime::format_duration(stalled),
                        "no check finished for too long; not pinging the systemd watchdog"
                    ),
                }
            }
        }
    };

    tracing::info!(cause, "selfheal stopping");
    notify_systemd(&[sd_notify::NotifyState::Stopping]);
    control_task.abort();
    if let Some(web_task) = web_task {
        web_task.abort();
    }
    engine.shutdown();
    drop(engine);
    alerting.shutdown(SHUTDOWN_GRACE).await;
    let _ = std::fs::remove_file(&config.control_socket);
    Ok(())
}

fn notify_systemd(state: &[sd_notify::NotifyState]) {
    if let Err(error) = sd_notify::notify(false, state) {
        tracing::debug!(%error, "cannot notify systemd");
    }
}
