//! The dashboard, the JSON API and the Prometheus metrics, served by the daemon.
//!
//! It listens on loopback by default and is reached through the server's own web server as
//! a reverse proxy. Every path but `/healthz` needs a login, a bearer token or, for
//! `/metrics`, a direct connection from this host. Requests that change something also need
//! the session's CSRF token when they come with a session cookie.

mod api;
pub mod auth;
mod pages;
mod serve;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::time::Instant;

use crate::config::{Config, Role};
use crate::engine::Engine;
use crate::store::{unix_ms, AuditRow, Store};
use auth::{Auth, Principal};

pub use api::parse_pause;
pub use serve::start;

/// Name of the session cookie.
const SESSION_COOKIE: &str = "selfheal_session";
/// Name of the cookie that carries the login form's CSRF token.
const LOGIN_COOKIE: &str = "selfheal_login";

/// Everything a request handler may use.
pub struct Web {
    config: Arc<Config>,
    engine: Arc<Engine>,
    store: Arc<Store>,
    auth: Auth,
    /// Served over TLS by selfheal itself.
    tls: bool,
}

/// The client of one request, as the middleware resolved it.
#[derive(Debug, Clone)]
pub struct Client {
    /// The browser's address: the peer, or the address a trusted proxy reports.
    pub address: IpAddr,
    /// The connection came straight from this host, not through a proxy.
    pub direct_local: bool,
    /// The browser reached the dashboard over HTTPS, directly or as the trusted proxy reports.
    pub secure: bool,
    pub principal: Option<Principal>,
    /// The session cookie's value, when the principal came from it.
    pub session: Option<String>,
    /// The request carried a bearer token that matches no configured token.
    pub unknown_token: bool,
    /// The request came through a trusted reverse proxy.
    pub proxied: bool,
}

/// The peer address of a connection, added by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl Web {
    pub fn new(config: Arc<Config>, engine: Arc<Engine>, store: Arc<Store>, tls: bool) -> Web {
        let auth = Auth::new(&config.dashboard);
        Web {
            config,
            engine,
            store,
            auth,
            tls,
        }
    }

    /// Stores one action in the audit log, and logs it.
    fn audit(
        &self,
        client: &Client,
        actor: &str,
        action: &str,
        service: Option<&str>,
        outcome: &str,
    ) {
        tracing::info!(
            actor,
            address = %client.address,
            action,
            service = service.unwrap_or("-"),
            outcome,
            "dashboard action"
        );
        let row = AuditRow {
            at_ms: unix_ms(std::time::SystemTime::now()),
            actor: actor.to_string(),
            address: client.address.to_string(),
            action: action.to_string(),
            service: service.map(str::to_string),
            outcome: outcome.to_string(),
        };
        if let Err(error) = self.store.add_audit(&row) {
            tracing::error!(%error, "cannot store the audit record");
        }
    }

    /// Resolves the client of a request: its address, whether it is secure, and who it is.
    fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> Client {
        let trusted = &self.config.dashboard.trusted_proxies;
        let from_proxy = trusted.contains(&peer.ip()) && headers.contains_key("x-forwarded-for");
        let address = if from_proxy {
            forwarded_client(headers, trusted).unwrap_or(peer.ip())
        } else {
            peer.ip()
        };
        let proxy_says_https = from_proxy
            && headers
                .get("x-forwarded-proto")
                .and_then(|value| value.to_str().ok())
                .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
        let now = Instant::now();
        // The scheme name is case-insensitive (RFC 9110, section 11.1).
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let session = cookie(headers, SESSION_COOKIE);
        let (principal, session) = match bearer {
            Some(token) => (self.auth.bearer(token), None),
            None => match session {
                Some(token) => (self.auth.session(&token, now), Some(token)),
                None => (None, None),
            },
        };
        Client {
            address,
            direct_local: peer.ip().is_loopback() && !from_proxy,
            secure: self.tls || proxy_says_https,
            unknown_token: bearer.is_some() && principal.is_none(),
            principal,
            session,
            proxied: from_proxy,
        }
    }

    /// Returns the attributes of the cookies set: Secure whenever the browser came over HTTPS,
    /// and, through the proxy, the public URL's path, so that other applications on the host
    /// never see them. A direct request (an SSH tunnel) gets the whole site.
    fn cookie_attributes(&self, client: &Client) -> String {
        let path = self
            .config
            .dashboard
            .public_url
            .as_deref()
            .filter(|_| client.proxied)
            .and_then(|url| url.split_once("://"))
            .and_then(|(_, rest)| rest.find('/').map(|slash| rest[slash..].to_string()))
            .filter(|path| !path.is_empty())
            .unwrap_or_else(|| "/".to_string());
        let secure = if client.secure { "; Secure" } else { "" };
        format!("Path={path}; HttpOnly; SameSite=Strict{secure}")
    }
}

/// Returns the rightmost address in `X-Forwarded-For` that is not a trusted proxy: the one the
/// outermost trusted proxy saw. Addresses further left are the client's own claims.
fn forwarded_client(headers: &HeaderMap, trusted: &[IpAddr]) -> Option<IpAddr> {
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let text = value.to_str().ok()?;
        for part in text.split(',') {
            hops.push(part.trim().parse().ok()?);
        }
    }
    hops.into_iter().rev().find(|hop| !trusted.contains(hop))
}

/// Returns the value of cookie `name`, if the request carries it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty() && value.len() <= 128)
}

/// Builds the routes. Handlers find the resolved [`Client`] in the request's extensions.
pub fn router(web: Arc<Web>) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::metrics))
        .route("/", get(pages::index))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/static/app.js", get(pages::script))
        .route("/static/app.css", get(pages::style))
        .route("/static/favicon.svg", get(pages::icon))
        .route("/api/v1/session", get(api::session))
        .route("/api/v1/services", get(api::services))
        .route("/api/v1/services/{name}", get(api::service))
        .route("/api/v1/services/{name}/restart", post(api::restart))
        .route("/api/v1/services/{name}/pause", post(api::pause))
        .route("/api/v1/services/{name}/resume", post(api::resume))
        .route("/api/v1/incidents", get(api::incidents))
        .route("/api/v1/history", get(api::history))
        .route("/api/v1/alerts", get(api::alerts))
        .route("/api/v1/audit", get(api::audit))
        .route("/api/v1/events", get(api::events))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            resolve_client,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .with_state(web)
}

async fn not_found() -> Response {
    api::error(StatusCode::NOT_FOUND, "no such page or API endpoint")
}

/// Resolves who is asking before any handler runs.
async fn resolve_client(State(web): State<Arc<Web>>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<Peer>()
        .map(|peer| peer.0)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
    let client = web.client(peer, request.headers());
    request.extensions_mut().insert(client);
    next.run(request).await
}

/// Headers on every response: a content security policy without inline scripts, no framing,
/// no type sniffing, no referrer, and no caching of anything but the static files.
async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    );
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "no-referrer");
    set(headers, "cross-origin-opener-policy", "same-origin");
    set(
        headers,
        "cache-control",
        if is_static {
            "private, max-age=300"
        } else {
            "no-store"
        },
    );
    response
}

/// Checks that the client may do what `needed` allows; the error response otherwise.
#[allow(clippy::result_large_err)]
fn require(client: &Client, needed: Role) -> Result<&Principal, Response> {
    let Some(principal) = &client.principal else {
        let message = if client.unknown_token {
            "the API token is not known: its SHA-256 is in no [[dashboard.token]] of the \
             config; `selfheal token` prints a token with its entry"
        } else {
            "log in first, or send an API token as Authorization: Bearer TOKEN"
        };
        return Err(api::error(StatusCode::UNAUTHORIZED, message));
    };
    let allowed = match needed {
        Role::Admin => principal.role == Role::Admin,
        Role::ReadOnly => matches!(principal.role, Role::Admin | Role::ReadOnly),
        Role::Metrics => true,
    };
    if !allowed {
        return Err(api::error(
            StatusCode::FORBIDDEN,
            &format!(
                "{} has the {} role, which may not do this; it needs {}",
                principal.name,
                principal.role.as_str(),
                needed.as_str()
            ),
        ));
    }
    Ok(principal)
}

/// Redirects to a path relative to the current one, so that it works under any proxy prefix.
fn see_other(location: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn forwarded_for_takes_the_last_untrusted_hop() {
        let trusted: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap()];
        let map = headers(&[("x-forwarded-for", "10.9.9.9, 203.0.113.5, 127.0.0.1")]);
        assert_eq!(
            forwarded_client(&map, &trusted),
            Some("203.0.113.5".parse().unwrap())
        );
        // A forged header on its own does not hide the real hop the proxy appended.
        let map = headers(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "198.51.100.2"),
        ]);
        assert_eq!(
            forwarded_client(&map, &trusted),
            Some("198.51.100.2".parse().unwrap())
        );
        let map = headers(&[("x-forwarded-for", "not an address")]);
        assert_eq!(forwarded_client(&map, &trusted), None);
    }

    #[test]
    fn openapi_documents_every_route() {
        let spec = include_str!("../../docs/openapi.yaml");
        let source = include_str!("mod.rs");
        let routes: Vec<&str> = source
            .lines()
            .filter_map(|line| line.trim().strip_prefix(".route(\""))
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert!(routes.len() >= 15, "{routes:?}");
        for route in routes {
            let page = route == "/" || route.starts_with("/static/");
            if !page {
                assert!(
                    spec.contains(&format!("\n  {route}:\n")),
                    "{route} is not in docs/openapi.yaml"
                );
            }
        }
    }

    #[test]
    fn cookies_by_name() {
        let map = headers(&[("cookie", "a=1; selfheal_session=abc; b=2")]);
        assert_eq!(cookie(&map, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&map, "missing"), None);
        let map = headers(&[("cookie", "selfheal_session=")]);
        assert_eq!(cookie(&map, SESSION_COOKIE), None);
    }
}
