//! The JSON API under `/api/v1`, the live feed, `/healthz` and `/metrics`. The shapes are
//! documented in `docs/openapi.yaml`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{require, Client, Web};
use crate::config::{MetricsAccess, Role};
use crate::engine::ServiceView;
use crate::policy::Verdict;
use crate::store::{unix_ms, EventRow, IncidentRow};

/// Header that carries the session's CSRF token on requests that change something.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Shortest and longest pause an admin may ask for.
const PAUSE_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(30 * 24 * 3600));

/// Length of the history the dashboard charts, and of one bar of it.
const HISTORY_DAYS_MAX: u64 = 31;
const HOUR_MS: i64 = 3_600_000;

/// Returns a JSON error body: `{"error": "..."}`.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub async fn healthz(State(web): State<Arc<Web>>) -> Response {
    match web.engine.stalled() {
        None => (StatusCode::OK, "ok\n").into_response(),
        Some(stalled) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no check has finished for {} s\n", stalled.as_secs()),
        )
            .into_response(),
    }
}

pub async fn metrics(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
) -> Response {
    let local_allowed =
        web.config.dashboard.metrics == MetricsAccess::Loopback && client.direct_local;
    if client.principal.is_none() && !local_allowed {
        return error(
            StatusCode::UNAUTHORIZED,
            "metrics need a token (Authorization: Bearer TOKEN) unless the scraper connects \
             directly from this host and [dashboard] metrics = \"loopback\"",
        );
    }
    match web.store.alert_counts() {
        Ok((sent, pending, failed)) => web.engine.metrics().set_alerts(sent, pending, failed),
        Err(failure) => tracing::warn!(error = %failure, "cannot count alerts for the metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        web.engine.metrics().encode(),
    )
        .into_response()
}

pub async fn session(Extension(client): Extension<Client>) -> Response {
    let principal = match require(&client, Role::ReadOnly) {
        Ok(principal) => principal,
        Err(response) => return response,
    };
    Json(json!({
        "user": principal.name,
        "role": principal.role,
        "csrf_token": principal.csrf,
        "host": gethostname::gethostname().to_string_lossy(),
    }))
    .into_response()
}

pub async fn services(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
) -> Response {
    if let Err(response) = require(&client, Role::ReadOnly) {
        return response;
    }
    Json(all_services(&web)).into_response()
}

/// Returns every service's view, which carries the diagnosis's findings while an incident
/// is open.
fn all_services(web: &Web) -> Vec<ServiceView> {
    web.engine.views()
}

pub async fn service(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
    Path(name): Path<String>,
) -> Response {
    if let Err(response) = require(&client, Role::ReadOnly) {
        return response;
    }
    match web.engine.view(&name) {
        Ok(view) => Json(view).into_response(),
        Err(message) => error(StatusCode::NOT_FOUND, &message),
    }
}

/// Checks the role and, for session logins, the CSRF token of a request that changes
/// something. Returns the actor's name for the audit log.
#[allow(clippy::result_large_err)]
fn authorize_change(
    web: &Web,
    client: &Client,
    headers: &HeaderMap,
    action: &str,
    service: &str,
) -> Result<String, Response> {
    let principal = match require(client, Role::Admin) {
        Ok(principal) => principal,
        Err(response) => {
            let actor = client
                .principal
                .as_ref()
                .map_or("anonymous".to_string(), |p| p.name.clone());
            web.audit(
                client,
                &actor,
                action,
                Some(service),
                "refused: not allowed",
            );
            return Err(response);
        }
    };
    if let Some(expected) = &principal.csrf {
        let submitted = headers
            .get(CSRF_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("");
        if !super::auth::csrf_matches(expected, submitted) {
            web.audit(
                client,
                &principal.name,
                action,
                Some(service),
                "refused: CSRF token missing or wrong",
            );
            return Err(error(
                StatusCode::FORBIDDEN,
                "the CSRF token is missing or wrong: send the csrf_token of /api/v1/session in \
                 the X-CSRF-Token header; reload the page if the session is new",
            ));
        }
    }
    Ok(principal.name.clone())
}

pub async fn restart(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let actor = match authorize_change(&web, &client, &headers, "restart", &name) {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    tracing::info!(service = %name, %actor, "restart requested through the web API");
    match web.engine.restart(&name, &actor).await {
        Ok(outcome) => {
            web.audit(&client, &actor, "restart", Some(&name), &outcome.message);
            Json(outcome).into_response()
        }
        Err(message) => {
            web.audit(&client, &actor, "restart", Some(&name), &message);
            error(StatusCode::NOT_FOUND, &message)
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Length such as "30m" or "2h"; none or absent: until resumed.
    #[serde(rename = "for", default)]
    length: Option<String>,
}

pub async fn pause(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let actor = match authorize_change(&web, &client, &headers, "pause", &name) {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    // The body is optional and read as JSON whatever its Content-Type, so that every mistake
    // gets a JSON error that names what to send.
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        PauseRequest { length: None }
    } else {
        match serde_json::from_slice::<PauseRequest>(&body) {
            Ok(request) => request,
            Err(failure) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "invalid pause request ({failure}); send {{\"for\": \"30m\"}}, or no \
                         body to pause until resumed"
                    ),
                )
            }
        }
    };
    let length = match request.length {
        None => None,
        Some(text) => match parse_pause(&text) {
            Ok(length) => Some(length),
            Err(message) => return error(StatusCode::BAD_REQUEST, &message),
        },
    };
    let result = web.engine.pause(&name, length, &actor).await;
    change_response(&web, &client, &actor, "pause", &name, result)
}

pub async fn resume(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let actor = match authorize_change(&web, &client, &headers, "resume", &name) {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    if web
        .engine
        .view(&name)
        .is_ok_and(|view| view.paused.is_none())
    {
        web.audit(
            &client,
            &actor,
            "resume",
            Some(&name),
            "refused: not paused",
        );
        return error(StatusCode::CONFLICT, &format!("{name} is not paused"));
    }
    let result = web.engine.resume(&name, &actor).await;
    change_response(&web, &client, &actor, "resume", &name, result)
}

fn change_response(
    web: &Web,
    client: &Client,
    actor: &str,
    action: &str,
    service: &str,
    result: Result<ServiceView, String>,
) -> Response {
    match result {
        Ok(view) => {
            web.audit(client, actor, action, Some(service), "ok");
            Json(view).into_response()
        }
        Err(message) => {
            web.audit(client, actor, action, Some(service), &message);
            error(StatusCode::NOT_FOUND, &message)
        }
    }
}

/// Parses a pause length such as "30m", within [`PAUSE_RANGE`].
pub fn parse_pause(text: &str) -> Result<Duration, String> {
    // humantime reads "M" as months; a pause of 30 months is surely meant as minutes.
    if text.trim().ends_with('M') || text.contains("month") {
        return Err(format!(
            "pause length \"{text}\": M means months; write \"30m\" for minutes"
        ));
    }
    let length = humantime::parse_duration(text.trim()).map_err(|_| {
        format!("pause length \"{text}\" is not a duration; write it like \"30m\" or \"2h\"")
    })?;
    let (low, high) = PAUSE_RANGE;
    if length < low || length > high {
        return Err(format!(
            "pause length \"{text}\" is outside 1m to 30d; pause without a length to pause \
             until resumed"
        ));
    }
    Ok(length)
}

#[derive(Debug, Deserialize)]
pub struct IncidentQuery {
    service: Option<String>,
    limit: Option<usize>,
    #[serde(default)]
    open: bool,
}

#[derive(Debug, Serialize)]
struct IncidentWithEvents {
    incident: IncidentRow,
    events: Vec<EventRow>,
}

pub async fn incidents(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
    query: Result<Query<IncidentQuery>, QueryRejection>,
) -> Response {
    if let Err(response) = require(&client, Role::ReadOnly) {
        return response;
    }
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return invalid_query(&rejection),
    };
    if let Some(service) = &query.service {
        if let Err(message) = web.engine.view(service) {
            return error(StatusCode::NOT_FOUND, &message);
        }
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("limit {limit} is outside 1 to 500"),
        );
    }
    let listed = web
        .store
        .incidents_of(query.service.as_deref(), query.open, limit)
        .and_then(|rows| {
            rows.into_iter()
                .map(|incident| {
                    let events = web.store.events(incident.id)?;
                    Ok(IncidentWithEvents { incident, events })
                })
                .collect::<anyhow::Result<Vec<_>>>()
        });
    match listed {
        Ok(list) => Json(list).into_response(),
        Err(failure) => store_error(&failure),
    }
}

fn invalid_query(rejection: &QueryRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        &format!("invalid query string: {}", rejection.body_text()),
    )
}

fn store_error(failure: &anyhow::Error) -> Response {
    tracing::error!(error = %failure, "state database read failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        &format!("cannot read the state database: {failure}"),
    )
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    days: Option<u64>,
}

/// One service's history in hourly bars, oldest first: 0 up, 1 an incident selfheal or
/// systemd healed, 2 needed the admin, 3 no data (before selfheal first ran).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ServiceHistory {
    service: String,
    bars: Vec<u8>,
    healed: usize,
    needed_attention: usize,
}

pub async fn history(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Response {
    if let Err(response) = require(&client, Role::ReadOnly) {
        return response;
    }
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return invalid_query(&rejection),
    };
    let days = query.days.unwrap_or(7);
    if !(1..=HISTORY_DAYS_MAX).contains(&days) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("days {days} is outside 1 to {HISTORY_DAYS_MAX}"),
        );
    }
    let now_ms = unix_ms(SystemTime::now());
    // Bars end at the next full hour, so that the last bar is the current hour.
    let end_ms = (now_ms / HOUR_MS + 1) * HOUR_MS;
    let start_ms = end_ms - days as i64 * 24 * HOUR_MS;
    let since = crate::store::from_unix_ms(start_ms);
    match web.store.incidents_since(since) {
        Ok(rows) => {
            let names = web.engine.service_names();
            let mut services = bars(&names, &rows, start_ms, end_ms, now_ms);
            let first_ms = web.store.first_start_ms().ok().flatten().unwrap_or(now_ms);
            mark_no_data(&mut services, start_ms, first_ms);
            Json(json!({
                "start_ms": start_ms,
                "bar_ms": HOUR_MS,
                "first_start_ms": first_ms,
                "services": services,
            }))
            .into_response()
        }
        Err(failure) => store_error(&failure),
    }
}

/// Builds hourly bars from incidents: an hour shows the worst that happened in it.
pub fn bars(
    names: &[String],
    incidents: &[IncidentRow],
    start_ms: i64,
    end_ms: i64,
    now_ms: i64,
) -> Vec<ServiceHistory> {
    let count = ((end_ms - start_ms) / HOUR_MS).max(0) as usize;
    let mut by_service: BTreeMap<&str, ServiceHistory> = names
        .iter()
        .map(|name| {
            (
                name.as_str(),
                ServiceHistory {
                    service: name.clone(),
                    bars: vec![0; count],
                    healed: 0,
                    needed_attention: 0,
                },
            )
        })
        .collect();
    for incident in incidents {
        let Some(history) = by_service.get_mut(incident.service.as_str()) else {
            continue;
        };
        let attention = incident
            .verdict
            .as_deref()
            .and_then(Verdict::parse)
            .is_some_and(Verdict::needs_attention);
        let level = if attention { 2 } else { 1 };
        if attention {
            history.needed_attention += 1;
        } else {
            history.healed += 1;
        }
        let from = incident.opened_ms.max(start_ms);
        let to = incident
            .closed_ms
            .unwrap_or(now_ms)
            .min(end_ms - 1)
            .max(from);
        let first = ((from - start_ms) / HOUR_MS) as usize;
        let last = ((to - start_ms) / HOUR_MS) as usize;
        for bar in history.bars.iter_mut().take(last + 1).skip(first) {
            *bar = (*bar).max(level);
        }
    }
    names
        .iter()
        .filter_map(|name| by_service.remove(name.as_str()))
        .collect()
}

/// Marks the bars that ended before selfheal first ran as "no data".
fn mark_no_data(services: &mut [ServiceHistory], start_ms: i64, first_ms: i64) {
    let empty = ((first_ms - start_ms) / HOUR_MS).max(0) as usize;
    for service in services {
        for bar in service.bars.iter_mut().take(empty) {
            if *bar == 0 {
                *bar = NO_DATA;
            }
        }
    }
}

/// Bar value for hours before selfheal first ran.
const NO_DATA: u8 = 3;

pub async fn alerts(State(web): State<Arc<Web>>, Extension(client): Extension<Client>) -> Response {
    if let Err(response) = require(&client, Role::ReadOnly) {
        return response;
    }
    let listed = web.store.alerts(100).and_then(|messages| {
        let undelivered = web.store.undelivered_routes()?;
        Ok(json!({ "messages": messages, "undelivered": undelivered }))
    });
    match listed {
        Ok(body) => Json(body).into_response(),
        Err(failure) => store_error(&failure),
    }
}

pub async fn audit(State(web): State<Arc<Web>>, Extension(client): Extension<Client>) -> Response {
    if let Err(response) = require(&client, Role::ReadOnly) {
        return response;
    }
    match web.store.audit(200) {
        Ok(rows) => Json(rows).into_response(),
        Err(failure) => store_error(&failure),
    }
}

/// Server-Sent Events: a `services` event with every service at once, then again after
/// each change (at most four a second).
pub async fn events(State(web): State<Arc<Web>>, Extension(client): Extension<Client>) -> Response {
    if let Err(response) = require(&client, Role::ReadOnly) {
        return response;
    }
    Sse::new(service_stream(web))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn service_stream(web: Arc<Web>) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    let changes = web.engine.subscribe();
    futures_util::stream::unfold(
        (web, changes, true),
        |(web, mut changes, first)| async move {
            if !first {
                changes.changed().await.ok()?;
                // Several services change at once after a check round: one event for them.
                tokio::time::sleep(Duration::from_millis(250)).await;
                changes.borrow_and_update();
            } else {
                changes.borrow_and_update();
            }
            let data = serde_json::to_string(&all_services(&web)).unwrap_or_else(|_| "[]".into());
            let event = SseEvent::default().event("services").data(data);
            Some((Ok(event), (web, changes, false)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(
        service: &str,
        opened_ms: i64,
        closed_ms: Option<i64>,
        verdict: Option<&str>,
    ) -> IncidentRow {
        IncidentRow {
            id: 1,
            service: service.into(),
            unit: String::new(),
            opened_ms,
            closed_ms,
            problem: String::new(),
            verdict: verdict.map(str::to_string),
            reason: None,
            resolution: None,
            alert_status: "none".into(),
            diagnosis: Vec::new(),
        }
    }

    #[test]
    fn bars_show_the_worst_of_each_hour() {
        let names = vec!["postfix".to_string(), "dovecot".to_string()];
        let start = 1_000 * HOUR_MS;
        let end = start + 24 * HOUR_MS;
        let now = end - HOUR_MS / 2;
        let rows = vec![
            // Healed within a minute in hour 2.
            incident(
                "postfix",
                start + 2 * HOUR_MS + 10,
                Some(start + 2 * HOUR_MS + 60_000),
                None,
            ),
            // Needed the admin from hour 5 to hour 7.
            incident(
                "postfix",
                start + 5 * HOUR_MS,
                Some(start + 7 * HOUR_MS + 5),
                Some("restart failed"),
            ),
            // Healed in hour 6 too: the worse level stays.
            incident(
                "postfix",
                start + 6 * HOUR_MS,
                Some(start + 6 * HOUR_MS + 1),
                None,
            ),
            // Still open, needing attention, since hour 22.
            incident("dovecot", start + 22 * HOUR_MS, None, Some("crash loop")),
            // A service no longer configured is left out.
            incident("nginx", start, None, Some("down")),
            // Closed before the window: clipped to nothing visible but counted.
        ];
        let history = bars(&names, &rows, start, end, now);
        assert_eq!(history.len(), 2);
        let postfix = &history[0];
        assert_eq!(postfix.service, "postfix");
        assert_eq!(postfix.bars.len(), 24);
        assert_eq!(&postfix.bars[..9], &[0, 0, 1, 0, 0, 2, 2, 2, 0]);
        assert_eq!((postfix.healed, postfix.needed_attention), (2, 1));
        let dovecot = &history[1];
        assert_eq!(&dovecot.bars[21..], &[0, 2, 2]);
    }

    #[test]
    fn hours_before_the_first_start_have_no_data() {
        let names = vec!["postfix".to_string()];
        let start = 1_000 * HOUR_MS;
        let end = start + 24 * HOUR_MS;
        let mut history = bars(&names, &[], start, end, end - 1);
        // First run in the middle of hour 20: hours 0 to 19 ended before it.
        mark_no_data(&mut history, start, start + 20 * HOUR_MS + HOUR_MS / 2);
        assert_eq!(&history[0].bars[18..22], &[3, 3, 0, 0]);
    }

    #[test]
    fn pause_lengths() {
        assert_eq!(parse_pause("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_pause(" 2h "), Ok(Duration::from_secs(7200)));
        assert!(parse_pause("10s")
            .unwrap_err()
            .contains("outside 1m to 30d"));
        assert!(parse_pause("45d").unwrap_err().contains("outside"));
        assert!(parse_pause("soon")
            .unwrap_err()
            .contains("is not a duration"));
        assert!(parse_pause("30M").unwrap_err().contains("M means months"));
    }
}
