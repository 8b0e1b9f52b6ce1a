//! The listener: plain HTTP on loopback (behind the reverse proxy), or HTTPS with the
//! configured certificate. One HTTP/1.1 connection per task, with bounded header time and a
//! bounded number of connections, so that slow or many clients cannot starve the daemon.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use super::{router, Peer, Web};
use crate::config::Config;
use crate::engine::Engine;
use crate::store::Store;

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 128;
/// Time a client has to send its request headers (and to finish the TLS handshake).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait between attempts to bind when the address is taken or missing.
const BIND_RETRY: Duration = Duration::from_secs(30);

/// Starts the dashboard when it is enabled. A failure to listen is logged and retried in the
/// background: the dashboard must never stop the heal loop.
pub fn start(
    config: Arc<Config>,
    engine: Arc<Engine>,
    store: Arc<Store>,
) -> anyhow::Result<Option<JoinHandle<()>>> {
    if !config.dashboard.enabled {
        tracing::info!("dashboard disabled");
        return Ok(None);
    }
    let tls = match &config.dashboard.tls {
        Some((cert, key)) => Some(tls_acceptor(cert, key)?),
        None => None,
    };
    let listen = config.dashboard.listen;
    let web = Arc::new(Web::new(config.clone(), engine, store, tls.is_some()));
    if !web.auth.has_users() {
        tracing::warn!(
            "the dashboard has no password: set admin_password_hash under [dashboard] to the \
             line `selfheal passwd` prints, or nobody can log in"
        );
    }
    let app = router(web);
    Ok(Some(tokio::spawn(async move {
        let listener = loop {
            match TcpListener::bind(listen).await {
                Ok(listener) => break listener,
                Err(error) => {
                    tracing::error!(
                        %listen,
                        %error,
                        "dashboard cannot listen; healing goes on without it, retrying in {} s",
                        BIND_RETRY.as_secs()
                    );
                    tokio::time::sleep(BIND_RETRY).await;
                }
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        tracing::info!(url = %format!("{scheme}://{listen}/"), "dashboard listening");
        accept(listener, tls, app).await;
    })))
}

fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "tls_cert {}: cannot read a PEM certificate chain",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!("tls_cert {}: no certificate in the file", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("tls_key {}: cannot read a PEM private key", key.display()))?;
    // NOTE: ring offers no post-quantum key exchange; admins who need it terminate TLS in
    // the reverse proxy, the recommended setup anyway.
    let config = rustls::ServerConfig::builder_with_provider(crate::probe::tls::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("tls_cert and tls_key do not form a usable certificate and key pair")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

async fn accept(listener: TcpListener, tls: Option<TlsAcceptor>, app: axum::Router) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "dashboard accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(stream, peer, tls, app).await;
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
) {
    let service = app.map_request(move |request: hyper::Request<hyper::body::Incoming>| {
        let mut request = request.map(axum::body::Body::new);
        request.extensions_mut().insert(Peer(peer));
        request
    });
    let service = TowerToHyperService::new(service);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    let result = match tls {
        Some(acceptor) => {
            match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            }
        }
        None => {
            builder
                .serve_connection(TokioIo::new(stream), service)
                .await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "dashboard connection ended with an error");
    }
}
