//! The dashboard's HTTP surface against a real daemon on the host: logins, roles, CSRF,
//! throttling, tokens, every API endpoint, the live feed, metrics and pause/resume. Services
//! are managed by commands, so no systemd is needed; everything listens on loopback.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::daemon::{wait_for, Daemon, SELFHEAL_BIN};
use support::sink::free_port;

const ADMIN_PASSWORD: &str = "correct horse battery";
const VIEWER_PASSWORD: &str = "viewer staple battery";
/// Tokens and the SHA-256 digests the config holds for them.
const READ_TOKEN: &str = "read-token-0123456789";
const ADMIN_TOKEN: &str = "admin-token-0123456789";
const METRICS_TOKEN: &str = "metrics-token-0123456789";

fn hash(password: &str) -> String {
    let mut child = Command::new(SELFHEAL_BIN)
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run selfheal passwd");
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

fn digest(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// A daemon with three services managed by commands: `filter` runs (a `sleep` this test
/// starts), `broken` is down and cannot start, `spare` starts by its start command.
struct Dash {
    daemon: Daemon,
    base: String,
    http: reqwest::Client,
    dir: tempfile::TempDir,
    sleeper: std::process::Child,
}

impl Dash {
    fn start(dashboard_extra: &str) -> Dash {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let sleeper = Command::new("sleep").arg("600").spawn().unwrap();
        let path = dir.path();
        std::fs::write(path.join("filter.pid"), sleeper.id().to_string()).unwrap();
        let config = format!(
            r#"interval = "1s"
state_dir = "{dir}/state"
control_socket = "{dir}/control.sock"
verify_after = "1s"
verify_timeout = "3s"
retry_interval = "1s"

[dashboard]
listen = "127.0.0.1:{port}"
admin_password_hash = "{admin}"
readonly_password_hash = "{viewer}"
{dashboard_extra}

[[dashboard.token]]
name = "reader"
role = "read-only"
sha256 = "{read}"

[[dashboard.token]]
name = "automation"
role = "admin"
sha256 = "{write}"

[[dashboard.token]]
name = "prometheus"
role = "metrics"
sha256 = "{scrape}"

[services.filter]
start = ["/bin/false"]
pidfile = "{dir}/filter.pid"

[services.broken]
start = ["/bin/false"]
pidfile = "{dir}/broken.pid"

[services.spare]
start = ["/bin/sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $! > {dir}/spare.pid"]
pidfile = "{dir}/spare.pid"
"#,
            dir = path.display(),
            admin = hash(ADMIN_PASSWORD),
            viewer = hash(VIEWER_PASSWORD),
            read = digest(READ_TOKEN),
            write = digest(ADMIN_TOKEN),
            scrape = digest(METRICS_TOKEN),
        );
        let daemon = Daemon::start(path, &config);
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let dash = Dash {
            daemon,
            base,
            http,
            dir,
            sleeper,
        };
        dash.wait_listening();
        dash
    }

    /// Waits until the dashboard accepts connections.
    fn wait_listening(&self) {
        let address = self.base.trim_start_matches("http://").to_string();
        wait_for(
            &self.daemon,
            "the dashboard",
            Duration::from_secs(20),
            || std::net::TcpStream::connect(&address).is_ok(),
        );
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Logs in through the form, as a browser does, from `address` as the proxy reports it.
    /// Fetches the login form and posts it, as a browser does, from `address` as the proxy
    /// reports it, or directly from this host without one.
    async fn submit_login(
        &self,
        user: &str,
        password: &str,
        address: Option<&str>,
    ) -> reqwest::Response {
        let forwarded = |builder: reqwest::RequestBuilder| match address {
            Some(address) => builder.header("x-forwarded-for", address),
            None => builder,
        };
        let form = forwarded(self.http.get(self.url("/login")))
            .send()
            .await
            .unwrap();
        let login_cookie = cookie(form.headers(), "selfheal_login").expect("login cookie");
        let page = form.text().await.unwrap();
        let csrf = page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .expect("csrf field")
            .to_string();
        forwarded(self.http.post(self.url("/login")))
            .header("cookie", format!("selfheal_login={login_cookie}"))
            .form(&[("user", user), ("password", password), ("csrf", &csrf)])
            .send()
            .await
            .unwrap()
    }

    /// Logs in through the proxy from `address`; the status and page when it is refused.
    async fn login(
        &self,
        user: &str,
        password: &str,
        address: &str,
    ) -> Result<Session, (StatusCode, String)> {
        let response = self.submit_login(user, password, Some(address)).await;
        if response.status() != StatusCode::SEE_OTHER {
            let status = response.status();
            return Err((status, response.text().await.unwrap()));
        }
        let set_cookie = set_cookies(&response);
        let session = cookie(response.headers(), "selfheal_session").expect("session cookie");
        let info: Value = self
            .http
            .get(self.url("/api/v1/session"))
            .header("cookie", format!("selfheal_session={session}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        Ok(Session {
            cookie: session,
            csrf: info["csrf_token"].as_str().unwrap().to_string(),
            set_cookie,
        })
    }

    /// Logs in without going through the proxy; returns the Set-Cookie values of the login.
    async fn login_direct(&self, user: &str, password: &str) -> Vec<String> {
        let response = self.submit_login(user, password, None).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        set_cookies(&response)
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        auth: &Auth<'_>,
    ) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url(path));
        match auth {
            Auth::None => builder,
            Auth::Session(session) => builder
                .header("cookie", format!("selfheal_session={}", session.cookie))
                .header("x-csrf-token", &session.csrf),
            Auth::SessionNoCsrf(session) => {
                builder.header("cookie", format!("selfheal_session={}", session.cookie))
            }
            Auth::Bearer(token) => builder.bearer_auth(token),
        }
    }

    async fn get(&self, path: &str, auth: &Auth<'_>) -> (StatusCode, Value) {
        let response = self
            .request(reqwest::Method::GET, path, auth)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, auth: &Auth<'_>, body: Value) -> (StatusCode, Value) {
        let response = self
            .request(reqwest::Method::POST, path, auth)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn service(&self, name: &str) -> Value {
        self.get(
            &format!("/api/v1/services/{name}"),
            &Auth::Bearer(READ_TOKEN),
        )
        .await
        .1
    }
}

impl Drop for Dash {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
        // The sleep the `spare` start command left behind, by the PID it wrote.
        if let Ok(text) = std::fs::read_to_string(self.dir.path().join("spare.pid")) {
            if let Ok(pid) = text.trim().parse::<i32>() {
                // SAFETY: kill(2) on the PID of the sleep this test's start command started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

struct Session {
    cookie: String,
    csrf: String,
    set_cookie: Vec<String>,
}

enum Auth<'a> {
    None,
    Session(&'a Session),
    SessionNoCsrf(&'a Session),
    Bearer(&'a str),
}

fn set_cookies(response: &reqwest::Response) -> Vec<String> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap().to_string())
        .collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value.to_string())
}

const READ_ENDPOINTS: &[&str] = &[
    "/api/v1/session",
    "/api/v1/services",
    "/api/v1/services/filter",
    "/api/v1/incidents",
    "/api/v1/history",
    "/api/v1/alerts",
    "/api/v1/audit",
    "/api/v1/events",
];

const CHANGE_ENDPOINTS: &[&str] = &[
    "/api/v1/services/filter/restart",
    "/api/v1/services/filter/pause",
    "/api/v1/services/filter/resume",
];

#[tokio::test]
async fn everything_but_healthz_needs_a_login() {
    let dash = Dash::start("");
    let response = dash.http.get(dash.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "ok\n");

    for path in READ_ENDPOINTS {
        let (status, body) = dash.get(path, &Auth::None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(
            body["error"].as_str().unwrap().contains("log in first"),
            "{path}: {body}"
        );
    }
    for path in CHANGE_ENDPOINTS {
        let (status, _) = dash.post(path, &Auth::None, json!({})).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // The page itself sends a browser to the login form, by a relative path.
    let page = dash.http.get(dash.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::SEE_OTHER);
    assert_eq!(page.headers()[LOCATION], "login");
    // A made-up session cookie is no login.
    let forged = Session {
        cookie: "0".repeat(64),
        csrf: "0".repeat(64),
        set_cookie: Vec::new(),
    };
    assert_eq!(
        dash.get("/api/v1/services", &Auth::Session(&forged))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        dash.get("/api/v1/services", &Auth::Bearer("not-a-token"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    // Nothing was restarted or paused by all that.
    assert!(dash.service("filter").await["paused"].is_null());
}

#[tokio::test]
async fn security_headers_on_every_response() {
    let dash = Dash::start("");
    for path in [
        "/healthz",
        "/login",
        "/",
        "/api/v1/services",
        "/static/app.js",
        "/nowhere",
    ] {
        let response = dash.http.get(dash.url(path)).send().await.unwrap();
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
    }
    // The pages carry no inline script for the policy to allow.
    let login = dash
        .http
        .get(dash.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!login.contains("<script"), "{login}");
    let session = dash
        .login("admin", ADMIN_PASSWORD, "192.0.2.10")
        .await
        .unwrap();
    let index = dash
        .request(reqwest::Method::GET, "/", &Auth::Session(&session))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        index.contains("<script src=\"static/app.js\" defer></script>"),
        "{index}"
    );
    assert_eq!(index.matches("<script").count(), 1, "{index}");
    assert!(
        !index.contains("http://") && !index.contains("https://"),
        "loads nothing from outside"
    );
}

#[tokio::test]
async fn login_sets_a_strict_cookie_and_logout_ends_it() {
    let dash = Dash::start("");
    let session = dash
        .login("admin", ADMIN_PASSWORD, "192.0.2.11")
        .await
        .unwrap();
    let set = session
        .set_cookie
        .iter()
        .find(|value| value.starts_with("selfheal_session="))
        .unwrap();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    // Plain HTTP without a proxy that reports HTTPS: no Secure flag, or the browser drops it.
    assert!(!set.contains("Secure"), "{set}");
    let (status, me) = dash.get("/api/v1/session", &Auth::Session(&session)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user"], "admin");
    assert_eq!(me["role"], "admin");

    // Behind a proxy that reports HTTPS from the browser, the cookie is Secure.
    let secure = dash
        .http
        .get(dash.url("/login"))
        .header("x-forwarded-for", "192.0.2.12")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    let login_cookie = secure.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(login_cookie.contains("; Secure"), "{login_cookie}");

    // Logout needs the CSRF token, then the session is gone.
    let refused = dash
        .request(
            reqwest::Method::POST,
            "/logout",
            &Auth::SessionNoCsrf(&session),
        )
        .form(&[("csrf", "wrong")])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let out = dash
        .request(
            reqwest::Method::POST,
            "/logout",
            &Auth::SessionNoCsrf(&session),
        )
        .form(&[("csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        dash.get("/api/v1/session", &Auth::Session(&session))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn wrong_passwords_are_refused_then_throttled() {
    let dash = Dash::start("");
    let (status, page) = dash
        .login("admin", "wrong", "198.51.100.1")
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(page.contains("Wrong user name or password."), "{page}");
    let (status, _) = dash
        .login("nobody", ADMIN_PASSWORD, "198.51.100.1")
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for _ in 0..3 {
        dash.login("admin", "wrong", "198.51.100.1")
            .await
            .err()
            .unwrap();
    }
    // Five failures from that address: even the right password must wait now, with the reason.
    let (status, page) = dash
        .login("admin", ADMIN_PASSWORD, "198.51.100.1")
        .await
        .err()
        .unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        page.contains("Too many failed logins from 198.51.100.1. Try again in 15 minutes."),
        "{page}"
    );
    // Another address is not affected.
    assert!(dash
        .login("admin", ADMIN_PASSWORD, "198.51.100.2")
        .await
        .is_ok());

    // A login form posted without the form's own cookie (from another site) is refused.
    let forged = dash
        .http
        .post(dash.url("/login"))
        .form(&[
            ("user", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf", "abc"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // Each attempt is in the audit log with the user and the address.
    let (_, audit) = dash.get("/api/v1/audit", &Auth::Bearer(READ_TOKEN)).await;
    let rows = audit.as_array().unwrap();
    let logins: Vec<&Value> = rows.iter().filter(|row| row["action"] == "login").collect();
    assert!(logins.len() >= 8, "{audit:#}");
    assert!(logins.iter().any(|row| row["address"] == "198.51.100.1"
        && row["outcome"] == "refused: too many failures from this address"));
    assert!(logins.iter().any(|row| row["actor"] == "admin"
        && row["address"] == "198.51.100.2"
        && row["outcome"] == "ok"));
}

#[tokio::test]
async fn roles_and_csrf_guard_every_change() {
    let dash = Dash::start("");
    let viewer = dash
        .login("viewer", VIEWER_PASSWORD, "192.0.2.20")
        .await
        .unwrap();
    let admin = dash
        .login("admin", ADMIN_PASSWORD, "192.0.2.21")
        .await
        .unwrap();

    for path in READ_ENDPOINTS
        .iter()
        .filter(|path| !path.ends_with("events"))
    {
        assert_eq!(
            dash.get(path, &Auth::Session(&viewer)).await.0,
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(
            dash.get(path, &Auth::Bearer(READ_TOKEN)).await.0,
            StatusCode::OK,
            "{path}"
        );
        // The metrics token reads metrics only.
        assert_eq!(
            dash.get(path, &Auth::Bearer(METRICS_TOKEN)).await.0,
            StatusCode::FORBIDDEN,
            "{path}"
        );
    }
    for path in CHANGE_ENDPOINTS {
        let (status, body) = dash.post(path, &Auth::Session(&viewer), json!({})).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(
            body["error"].as_str().unwrap().contains("read-only role"),
            "{body}"
        );
        assert_eq!(
            dash.post(path, &Auth::Bearer(READ_TOKEN), json!({}))
                .await
                .0,
            StatusCode::FORBIDDEN
        );
        // The admin's own session without its CSRF token is refused too.
        let (status, body) = dash
            .post(path, &Auth::SessionNoCsrf(&admin), json!({}))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(body["error"].as_str().unwrap().contains("CSRF"), "{body}");
    }
    assert!(dash.service("filter").await["paused"].is_null());

    // With the token, the admin pauses and resumes; an admin API token needs no CSRF token.
    let (status, paused) = dash
        .post(
            "/api/v1/services/filter/pause",
            &Auth::Session(&admin),
            json!({"for": "30m"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{paused}");
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["paused"]["by"], "admin");
    let (status, resumed) = dash
        .post(
            "/api/v1/services/filter/resume",
            &Auth::Bearer(ADMIN_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resumed}");
    assert!(resumed["paused"].is_null());

    // Refusals and changes are in the audit log, with who and from where.
    let (_, audit) = dash.get("/api/v1/audit", &Auth::Bearer(READ_TOKEN)).await;
    let rows = audit.as_array().unwrap();
    assert!(rows.iter().any(|row| row["actor"] == "viewer"
        && row["action"] == "restart"
        && row["address"] == "127.0.0.1"
        && row["outcome"] == "refused: not allowed"));
    assert!(rows.iter().any(|row| row["actor"] == "admin"
        && row["action"] == "pause"
        && row["service"] == "filter"
        && row["outcome"] == "ok"));
    assert!(rows
        .iter()
        .any(|row| row["actor"] == "token automation" && row["action"] == "resume"));
}

#[tokio::test]
async fn unknown_services_and_bad_input_are_refused() {
    let dash = Dash::start("");
    let admin = Auth::Bearer(ADMIN_TOKEN);
    for name in ["nginx", "filter;reboot", "..%2Fetc"] {
        let (status, body) = dash
            .post(
                &format!("/api/v1/services/{name}/restart"),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("unknown service"),
            "{body}"
        );
    }
    let (status, body) = dash.get("/api/v1/incidents?service=nginx", &admin).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = dash
        .post(
            "/api/v1/services/filter/pause",
            &admin,
            json!({"for": "10s"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("outside 1m to 30d"),
        "{body}"
    );
    let (status, body) = dash
        .post(
            "/api/v1/services/filter/pause",
            &admin,
            json!({"for": "soon"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("\"soon\" is not a duration"),
        "{body}"
    );
    let (status, _) = dash
        .post(
            "/api/v1/services/filter/pause",
            &admin,
            json!({"until": "1h"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(dash.service("filter").await["paused"].is_null());
}

#[tokio::test]
async fn api_reports_services_incidents_history_and_alerts() {
    let dash = Dash::start("");
    let read = Auth::Bearer(READ_TOKEN);
    wait_for(
        &dash.daemon,
        "broken needs attention",
        Duration::from_secs(30),
        || {
            dash.daemon
                .store()
                .open_incident_for("broken")
                .unwrap()
                .is_some_and(|incident| incident.verdict.is_some())
        },
    );
    let (status, services) = dash.get("/api/v1/services", &read).await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["service"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["filter", "broken", "spare"]);
    let broken = &services[1];
    assert_eq!(broken["state"], "needs attention");
    assert_eq!(broken["verdict"], "restart failed");
    assert!(broken["incident"].is_i64());
    assert!(broken["last_restart_ms"].is_i64());
    assert!(broken["findings"].is_array());
    // Each key once: strict JSON parsers reject duplicates.
    let raw = dash
        .request(reqwest::Method::GET, "/api/v1/services/broken", &read)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(raw.matches("\"findings\"").count(), 1, "{raw}");
    assert_eq!(services[0]["state"], "healthy");

    let (_, incidents) = dash.get("/api/v1/incidents?service=broken", &read).await;
    let list = incidents.as_array().unwrap();
    assert!(!list.is_empty());
    assert!(list
        .iter()
        .all(|item| item["incident"]["service"] == "broken"));
    assert!(list[0]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|event| event["kind"] == "restart_issued"));
    let (_, none) = dash.get("/api/v1/incidents?service=filter", &read).await;
    assert_eq!(none, json!([]));

    let (_, history) = dash.get("/api/v1/history?days=7", &read).await;
    assert_eq!(history["bar_ms"], 3_600_000);
    let bars = history["services"].as_array().unwrap();
    assert_eq!(bars.len(), 3);
    let broken_bars = bars[1]["bars"].as_array().unwrap();
    assert_eq!(broken_bars.len(), 7 * 24);
    assert_eq!(
        broken_bars.last().unwrap(),
        2,
        "the current hour needs attention"
    );
    assert_eq!(bars[1]["needed_attention"], 1);
    // Before this daemon first ran there is no data; since then, filter was up.
    let filter_bars = bars[0]["bars"].as_array().unwrap();
    assert_eq!(filter_bars.last().unwrap(), 0);
    assert!(
        filter_bars.iter().all(|bar| bar == 0 || bar == 3),
        "{filter_bars:?}"
    );
    assert_eq!(filter_bars.first().unwrap(), 3);

    let (status, alerts) = dash.get("/api/v1/alerts", &read).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        alerts["messages"].is_array() && alerts["undelivered"].is_array(),
        "{alerts}"
    );
}

#[tokio::test]
async fn restart_from_the_api_runs_the_manual_path() {
    let dash = Dash::start("");
    let admin = Auth::Bearer(ADMIN_TOKEN);
    let (status, outcome) = dash
        .post("/api/v1/services/spare/restart", &admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["healthy"], true, "{outcome}");
    assert_eq!(outcome["message"], "spare restarted and verified healthy");
    let (_, outcome) = dash
        .post("/api/v1/services/broken/restart", &admin, json!({}))
        .await;
    assert_eq!(outcome["healthy"], false, "{outcome}");
    assert!(
        outcome["message"]
            .as_str()
            .unwrap()
            .starts_with("broken: restart failed"),
        "{outcome}"
    );
    let (_, audit) = dash.get("/api/v1/audit", &admin).await;
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .any(|row| row["action"] == "restart"
            && row["service"] == "spare"
            && row["outcome"] == "spare restarted and verified healthy"));
}

#[tokio::test]
async fn paused_service_is_not_restarted_until_resumed() {
    let dash = Dash::start("");
    let admin = Auth::Bearer(ADMIN_TOKEN);
    // `spare` comes up through its start command at the first check.
    wait_for(
        &dash.daemon,
        "spare healthy",
        Duration::from_secs(30),
        || {
            dash.daemon
                .store()
                .service_states()
                .unwrap()
                .iter()
                .any(|row| row.service == "spare" && row.state == "healthy")
        },
    );
    let (status, _) = dash
        .post("/api/v1/services/spare/pause", &admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let restarts = |dash: &Dash| {
        dash.daemon
            .store()
            .restarts_since("spare", std::time::UNIX_EPOCH)
            .unwrap()
            .len()
    };
    let before = restarts(&dash);
    // The admin stops it: it stays down, unrestarted, for several checks.
    std::fs::remove_file(dash.dir.path().join("spare.pid")).unwrap();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(restarts(&dash), before);
    assert_eq!(dash.service("spare").await["state"], "paused");
    assert!(dash
        .daemon
        .store()
        .open_incident_for("spare")
        .unwrap()
        .is_none());

    // Resumed: healed at once.
    // The reply comes after a check: it shows the restart, not a "healthy" it has not seen.
    let (status, resumed) = dash
        .post("/api/v1/services/spare/resume", &admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(resumed["state"], "healthy", "{resumed}");
    assert!(resumed["paused"].is_null(), "{resumed}");
    wait_for(
        &dash.daemon,
        "spare healed after resume",
        Duration::from_secs(20),
        || {
            restarts(&dash) == before + 1
                && dash
                    .daemon
                    .store()
                    .service_states()
                    .unwrap()
                    .iter()
                    .any(|row| row.service == "spare" && row.state == "healthy")
        },
    );
}

#[tokio::test]
async fn pause_survives_a_restart_of_selfheal_and_the_cli_sees_it() {
    let mut dash = Dash::start("");
    let output = dash.daemon.cli(&["pause", "filter", "--for", "2h"]);
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("filter: healing paused until "), "{text}");
    dash.daemon.stop();
    // Without the daemon, resume and pause go to the state database for its next start.
    let output = dash.daemon.cli(&["pause", "broken"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("selfheal is not running"),
        "{output:?}"
    );
    dash.daemon.restart();
    dash.wait_listening();
    let filter = dash.service("filter").await;
    assert_eq!(filter["state"], "paused", "{filter}");
    assert_eq!(filter["paused"]["by"], "root (control socket)");
    assert!(filter["paused"]["until_ms"].is_i64());
    assert_eq!(
        dash.service("broken").await["paused"]["until_ms"],
        Value::Null
    );
    let status = dash.daemon.cli(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("healing paused until resumed by root (control socket)"),
        "{text}"
    );
    let output = dash.daemon.cli(&["resume", "broken"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("broken: healing resumed"),
        "{output:?}"
    );
    assert!(dash.service("broken").await["paused"].is_null());
}

#[tokio::test]
async fn live_feed_sends_changes() {
    let dash = Dash::start("");
    let response = dash
        .request(
            reqwest::Method::GET,
            "/api/v1/events",
            &Auth::Bearer(READ_TOKEN),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut response = response;
    let mut text = String::new();
    // The first event comes at once, with every service.
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.starts_with("event: services\ndata: ["), "{text}");
    // A pause shows in the feed without asking.
    dash.post(
        "/api/v1/services/filter/pause",
        &Auth::Bearer(ADMIN_TOKEN),
        json!({"for": "30m"}),
    )
    .await;
    let found = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let chunk = response.chunk().await.unwrap().unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
            if text.contains("\"paused\":{\"until_ms\"") {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "{text}");
}

#[tokio::test]
async fn metrics_for_local_scrapers_and_tokens() {
    let dash = Dash::start("");
    let direct = dash.http.get(dash.url("/metrics")).send().await.unwrap();
    assert_eq!(direct.status(), StatusCode::OK);
    let text = direct.text().await.unwrap();
    for family in [
        "selfheal_service_up{service=\"filter\"}",
        "selfheal_check_duration_seconds_bucket",
        "selfheal_alert_messages{state=\"pending\"}",
        "selfheal_build_info{version=\"",
        "# EOF",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    // Through the reverse proxy, the same host is a stranger without a token.
    let proxied = dash
        .http
        .get(dash.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), StatusCode::UNAUTHORIZED);
    let with_token = dash
        .http
        .get(dash.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);

    let strict = Dash::start("metrics = \"token\"");
    let direct = strict
        .http
        .get(strict.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(direct.status(), StatusCode::UNAUTHORIZED);
    let with_token = strict
        .http
        .get(strict.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), StatusCode::OK);
}

/// Runs `selfheal config check` on a config with this `[dashboard]` body.
fn config_check(dir: &Path, dashboard: &str) -> std::process::Output {
    let path = dir.join("check.toml");
    std::fs::write(
        &path,
        format!("[dashboard]\n{dashboard}\n\n[services.postfix]\n"),
    )
    .unwrap();
    Command::new(SELFHEAL_BIN)
        .args(["-c"])
        .arg(&path)
        .args(["config", "check"])
        .output()
        .unwrap()
}

#[test]
fn plain_http_beyond_loopback_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let output = config_check(dir.path(), "listen = \"0.0.0.0:8750\"");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("check.toml:2"), "{text}");
    assert!(
        text.contains("would listen on 0.0.0.0:8750 without TLS"),
        "{text}"
    );
    assert!(text.contains("allow_plain_http = true"), "{text}");

    let output = config_check(
        dir.path(),
        "listen = \"0.0.0.0:8750\"\nallow_plain_http = true",
    );
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(text.contains("serves plain HTTP on 0.0.0.0:8750"), "{text}");

    let output = config_check(dir.path(), "admin_password_hash = \"hunter2\"");
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(text.contains("is not a complete Argon2 hash"), "{text}");
    assert!(
        !text.contains("hunter2"),
        "the value is not repeated: {text}"
    );

    let output = config_check(
        dir.path(),
        "[[dashboard.token]]\nname = \"x\"\nrole = \"root\"\nsha256 = \"00\"",
    );
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("role \"root\" is not known"), "{text}");
    assert!(text.contains("is not a SHA-256 digest"), "{text}");
}

#[tokio::test]
async fn https_with_a_configured_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert = dir.path().join("dash.crt");
    let key = dir.path().join("dash.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let dash = Dash::start(&format!(
        "tls_cert = \"{}\"\ntls_key = \"{}\"",
        cert.display(),
        key.display()
    ));
    let https = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .resolve(
            "localhost",
            dash.base.trim_start_matches("http://").parse().unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let port = dash.base.rsplit(':').next().unwrap();
    let login = https
        .get(format!("https://localhost:{port}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let set = login.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set.contains("; Secure"), "{set}");
    // Plain HTTP to the TLS port gets no page.
    assert!(dash.http.get(dash.url("/healthz")).send().await.is_err());
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let dash = Dash::start("");
    let admin = Auth::Bearer(ADMIN_TOKEN);
    for body in ["{\"for\":30}", "{\"for\":\"2h\"", "not json"] {
        let response = dash
            .request(
                reqwest::Method::POST,
                "/api/v1/services/filter/pause",
                &admin,
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .starts_with("invalid pause request ("),
            "{body}: {error}"
        );
    }
    for (query, expected) in [
        ("/api/v1/incidents?limit=abc", "invalid query string"),
        ("/api/v1/incidents?limit=0", "limit 0 is outside 1 to 500"),
        ("/api/v1/history?days=40", "days 40 is outside 1 to 31"),
    ] {
        let (status, body) = dash.get(query, &admin).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            body["error"].as_str().unwrap().contains(expected),
            "{query}: {body}"
        );
    }
    // An empty body, even with a JSON Content-Type, pauses until resumed.
    let response = dash
        .request(
            reqwest::Method::POST,
            "/api/v1/services/filter/pause",
            &admin,
        )
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let view: Value = response.json().await.unwrap();
    assert!(view["paused"]["until_ms"].is_null(), "{view}");
    // Resuming twice: the second reply reports that it is not paused.
    assert_eq!(
        dash.post("/api/v1/services/filter/resume", &admin, json!({}))
            .await
            .0,
        StatusCode::OK
    );
    let (status, body) = dash
        .post("/api/v1/services/filter/resume", &admin, json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "filter is not paused");
    let output = dash.daemon.cli(&["resume", "filter"]);
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("filter is not paused"),
        "{output:?}"
    );
    let output = dash.daemon.cli(&["pause", "filter", "--for", "30"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

#[tokio::test]
async fn unknown_tokens_are_named_and_the_scheme_is_case_insensitive() {
    let dash = Dash::start("");
    let (status, body) = dash
        .get("/api/v1/services", &Auth::Bearer("shtk_0000"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("the API token is not known"),
        "{body}"
    );
    let lower = dash
        .http
        .get(dash.url("/api/v1/services"))
        .header("authorization", format!("bearer {READ_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lower.status(), StatusCode::OK);

    // `selfheal token` prints a prefixed token; pasting it where the digest belongs is caught.
    let output = dash
        .daemon
        .cli(&["token", "--name", "ci", "--role", "read-only"]);
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    assert!(token.starts_with("shtk_"), "{token}");
    assert_eq!(token.len(), 69, "{token}");
    let entry = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        entry.contains(&format!("sha256 = \"{}\"", digest(&token))),
        "{entry}"
    );
    let check = config_check(
        dash.dir.path(),
        &format!("[[dashboard.token]]\nname = \"ci\"\nrole = \"read-only\"\nsha256 = \"{token}\""),
    );
    let text = String::from_utf8_lossy(&check.stderr).to_string()
        + &String::from_utf8_lossy(&check.stdout);
    assert!(text.contains("is the token itself"), "{text}");
    assert!(!text.contains(&token), "the token is not repeated: {text}");
}

#[tokio::test]
async fn direct_login_works_with_a_public_url() {
    let dash = Dash::start("public_url = \"https://mail.example.org/selfheal/\"");
    // Straight to 127.0.0.1 (an SSH tunnel): the cookies cover the whole site, so login works.
    let direct = dash.login_direct("admin", ADMIN_PASSWORD).await;
    assert!(
        direct.iter().any(|cookie| cookie.contains("Path=/;")),
        "{direct:?}"
    );
    // Through the proxy they stay under the public URL's path.
    let proxied = dash
        .login("admin", ADMIN_PASSWORD, "192.0.2.30")
        .await
        .unwrap();
    assert!(
        proxied
            .set_cookie
            .iter()
            .any(|cookie| cookie.contains("Path=/selfheal/;")),
        "{:?}",
        proxied.set_cookie
    );
}

#[tokio::test]
async fn pause_keeps_healthy_since() {
    let dash = Dash::start("");
    let admin = Auth::Bearer(ADMIN_TOKEN);
    wait_for(
        &dash.daemon,
        "filter checked",
        Duration::from_secs(20),
        || {
            dash.daemon
                .store()
                .service_states()
                .unwrap()
                .iter()
                .any(|row| row.service == "filter")
        },
    );
    let before = dash.service("filter").await["since_ms"].clone();
    std::thread::sleep(Duration::from_millis(1100));
    dash.post("/api/v1/services/filter/pause", &admin, json!({}))
        .await;
    dash.post("/api/v1/services/filter/resume", &admin, json!({}))
        .await;
    std::thread::sleep(Duration::from_millis(1500));
    let after = dash.service("filter").await;
    assert_eq!(after["state"], "healthy");
    assert_eq!(after["since_ms"], before);
}

#[test]
fn truncated_password_hash_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let output = config_check(
        dir.path(),
        "admin_password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$zZDVV4wgqZjJ4SNLVFkD8Q\"",
    );
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("check.toml:2"), "{text}");
    assert!(text.contains("is not a complete Argon2 hash"), "{text}");
}
