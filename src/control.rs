//! The daemon's control socket: the CLI's `status`, `restart`, `pause` and `resume` go through
//! the running daemon so that its state stays right, and the CLI and the dashboard never
//! disagree. One JSON request line in, one JSON response line out.
//!
//! The socket is created with mode 0600: only root may restart services through it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use crate::engine::{Engine, RestartOutcome, ServiceView};
use crate::store::{unix_ms, AuditRow, Store};

/// Maximum length of a request line, in bytes.
const MAX_REQUEST: u64 = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum ControlRequest {
    Status,
    Restart {
        service: String,
    },
    /// Pause healing for `seconds` (none: until resumed).
    Pause {
        service: String,
        seconds: Option<u64>,
    },
    Resume {
        service: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum ControlResponse {
    Status {
        services: Vec<ServiceView>,
    },
    Restart {
        outcome: RestartOutcome,
    },
    /// The service's view after a pause or resume.
    Service {
        view: Box<ServiceView>,
    },
    Error {
        message: String,
    },
}

/// The actor the audit log names for requests through this socket: only root can use it.
pub const ACTOR: &str = "root (control socket)";

/// Bind the control socket, replacing a stale socket file left by an earlier run.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!(
                "another selfheal daemon is already listening on {}; stop it first",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("cannot listen on control socket {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot restrict permissions of {}", path.display()))?;
    Ok(listener)
}

/// Serves requests until the task is aborted.
pub async fn serve(listener: UnixListener, engine: Arc<Engine>, store: Arc<Store>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let engine = engine.clone();
                let store = store.clone();
                tokio::spawn(async move {
                    if let Err(error) = handle(stream, &engine, &store).await {
                        tracing::debug!(%error, "control connection failed");
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "control socket accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(stream: UnixStream, engine: &Engine, store: &Store) -> anyhow::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read.take(MAX_REQUEST))
        .read_line(&mut line)
        .await?;
    let response = match serde_json::from_str::<ControlRequest>(&line) {
        Err(error) => ControlResponse::Error {
            message: format!("invalid request: {error}"),
        },
        Ok(ControlRequest::Status) => ControlResponse::Status {
            services: engine.views(),
        },
        Ok(ControlRequest::Restart { service }) => {
            let result = engine.restart(&service, ACTOR).await;
            let outcome = match &result {
                Ok(outcome) => outcome.message.clone(),
                Err(message) => message.clone(),
            };
            audit(store, "restart", &service, &outcome);
            match result {
                Ok(outcome) => ControlResponse::Restart { outcome },
                Err(message) => ControlResponse::Error { message },
            }
        }
        Ok(ControlRequest::Pause { service, seconds }) => {
            let result = engine
                .pause(&service, seconds.map(Duration::from_secs), ACTOR)
                .await;
            service_response(store, "pause", &service, result)
        }
        Ok(ControlRequest::Resume { service }) => {
            let result = match engine.view(&service) {
                Ok(view) if view.paused.is_none() => Err(format!("{service} is not paused")),
                _ => engine.resume(&service, ACTOR).await,
            };
            service_response(store, "resume", &service, result)
        }
    };
    let mut text = serde_json::to_string(&response)?;
    text.push('\n');
    write.write_all(text.as_bytes()).await?;
    Ok(())
}

fn service_response(
    store: &Store,
    action: &str,
    service: &str,
    result: Result<ServiceView, String>,
) -> ControlResponse {
    match result {
        Ok(view) => {
            audit(store, action, service, "ok");
            ControlResponse::Service {
                view: Box::new(view),
            }
        }
        Err(message) => {
            audit(store, action, service, &message);
            ControlResponse::Error { message }
        }
    }
}

/// Stores one action taken through this socket in the audit log.
fn audit(store: &Store, action: &str, service: &str, outcome: &str) {
    let row = AuditRow {
        at_ms: unix_ms(SystemTime::now()),
        actor: ACTOR.to_string(),
        address: "local".to_string(),
        action: action.to_string(),
        service: Some(service.to_string()),
        outcome: outcome.to_string(),
    };
    if let Err(error) = store.add_audit(&row) {
        tracing::error!(%error, "cannot store the audit record of {action} {service}");
    }
}

/// Send a request to the running daemon. `Ok(None)` when no daemon listens on `path`.
pub async fn request(
    path: &Path,
    request: &ControlRequest,
    limit: Duration,
) -> anyhow::Result<Option<ControlResponse>> {
    let stream = match UnixStream::connect(path).await {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(error) => {
            return Err(error)
                .with_context(|| format!("cannot reach the daemon at {}", path.display()))
        }
    };
    let exchange = async {
        let (read, mut write) = stream.into_split();
        let mut text = serde_json::to_string(request)?;
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await?;
        let response: ControlResponse = serde_json::from_str(&line)
            .with_context(|| format!("invalid reply from the daemon: {line:?}"))?;
        anyhow::Ok(response)
    };
    match tokio::time::timeout(limit, exchange).await {
        Ok(response) => response.map(Some),
        Err(_) => anyhow::bail!(
            "the daemon did not respond within {}",
            humantime::format_duration(limit)
        ),
    }
}
