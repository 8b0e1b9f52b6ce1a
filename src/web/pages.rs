//! The pages: the login form (rendered here, so it works without JavaScript), the dashboard
//! shell and its static script and style, all compiled into the binary. Nothing loads from
//! another server. Links and redirects are relative, so the pages work under any path the
//! reverse proxy gives them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::{Extension, Form};
use serde::Deserialize;
use tokio::time::Instant;

use super::auth::{csrf_matches, random_token, LoginError};
use super::{cookie, see_other, Client, Web, LOGIN_COOKIE, SESSION_COOKIE};
use crate::config::Role;

const INDEX_HTML: &str = include_str!("assets/index.html");
const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// Serves the page, with the session's CSRF token in the logout form so that logging out
/// works without JavaScript too.
pub async fn index(Extension(client): Extension<Client>) -> Response {
    match &client.principal {
        Some(principal) if principal.role != Role::Metrics => {
            let csrf = principal.csrf.as_deref().unwrap_or("");
            Html(INDEX_HTML.replace("{{csrf}}", &escape(csrf))).into_response()
        }
        _ => see_other("login"),
    }
}

pub async fn icon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON).into_response()
}

pub async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        APP_JS,
    )
        .into_response()
}

pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS).into_response()
}

pub async fn login_form(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
) -> Response {
    if client
        .principal
        .as_ref()
        .is_some_and(|principal| principal.role != Role::Metrics)
    {
        return see_other("./");
    }
    let notice = if web.auth.has_users() {
        ""
    } else {
        "No password is set yet: run `selfheal passwd`, put the line it prints into \
         admin_password_hash under [dashboard] and restart selfheal."
    };
    login_page(&web, &client, StatusCode::OK, notice)
}

/// Renders the login form with a fresh CSRF token, set as a cookie and as a hidden field.
fn login_page(web: &Web, client: &Client, status: StatusCode, message: &str) -> Response {
    let token = match random_token() {
        Ok(token) => token,
        Err(error) => {
            tracing::error!(%error, "cannot make a login form token");
            return super::api::error(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string());
        }
    };
    let message = if message.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message))
    };
    let body = LOGIN_HTML
        .replace("{{csrf}}", &token)
        .replace("{{message}}", &message);
    let cookie = format!(
        "{LOGIN_COOKIE}={token}; Max-Age=3600; {}",
        web.cookie_attributes(client)
    );
    (status, [(header::SET_COOKIE, cookie)], Html(body)).into_response()
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

pub async fn login(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
    headers: axum::http::HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let user = form.user.trim();
    // A login form posted from another site carries no matching cookie: SameSite=Strict keeps
    // the cookie home.
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !csrf_matches(&expected, &form.csrf) {
        web.audit(
            &client,
            user,
            "login",
            None,
            "refused: login form token missing or wrong",
        );
        return login_page(
            &web,
            &client,
            StatusCode::FORBIDDEN,
            "The login form expired or came from another page. Please log in again.",
        );
    }
    match web
        .auth
        .login(user, &form.password, client.address, Instant::now())
        .await
    {
        Ok((token, principal)) => {
            web.audit(&client, &principal.name, "login", None, "ok");
            let attributes = web.cookie_attributes(&client);
            let session = format!("{SESSION_COOKIE}={token}; {attributes}");
            let clear = format!("{LOGIN_COOKIE}=; Max-Age=0; {attributes}");
            let mut response = see_other("./");
            let headers = response.headers_mut();
            for value in [session, clear] {
                if let Ok(value) = value.parse() {
                    headers.append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(error) => {
            let (status, message, outcome) = match error {
                LoginError::Invalid => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong user name or password.".to_string(),
                    "refused: wrong user name or password".to_string(),
                ),
                LoginError::ThrottledAddress(wait) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed logins from {}. Try again in {}.",
                        client.address,
                        minutes(wait)
                    ),
                    "refused: too many failures from this address".to_string(),
                ),
                LoginError::Internal(error) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("The login failed inside selfheal: {error}. Its log has details."),
                    format!("failed: {error}"),
                ),
                LoginError::ThrottledAccount(wait) => (
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many failed logins for {user}. Try again in {}.",
                        minutes(wait)
                    ),
                    "refused: too many failures for this account".to_string(),
                ),
            };
            web.audit(&client, user, "login", None, &outcome);
            login_page(&web, &client, status, &message)
        }
    }
}

fn minutes(wait: std::time::Duration) -> String {
    let minutes = wait.as_secs().div_ceil(60).max(1);
    if minutes == 1 {
        "1 minute".to_string()
    } else {
        format!("{minutes} minutes")
    }
}

#[derive(Debug, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub async fn logout(
    State(web): State<Arc<Web>>,
    Extension(client): Extension<Client>,
    Form(form): Form<LogoutForm>,
) -> Response {
    let (Some(principal), Some(session)) = (&client.principal, &client.session) else {
        return see_other("login");
    };
    let expected = principal.csrf.as_deref().unwrap_or("");
    if !csrf_matches(expected, &form.csrf) {
        return super::api::error(StatusCode::FORBIDDEN, "the CSRF token is missing or wrong");
    }
    web.auth.logout(session);
    web.audit(&client, &principal.name, "logout", None, "ok");
    let clear = format!(
        "{SESSION_COOKIE}=; Max-Age=0; {}",
        web.cookie_attributes(&client)
    );
    let mut response = see_other("login");
    if let Ok(value) = clear.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// Escapes text for HTML element content and attribute values.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn waits_in_whole_minutes() {
        assert_eq!(minutes(std::time::Duration::from_secs(1)), "1 minute");
        assert_eq!(minutes(std::time::Duration::from_secs(61)), "2 minutes");
    }
}
