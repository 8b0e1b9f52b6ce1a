//! The dashboard in a real headless Chromium (Debian's `chromium` and `chromedriver`), against
//! selfheal watching real Postfix and Dovecot under the rig's systemd.
//!
//! Chromium, ChromeDriver and selfheal all run inside the rig, in its network namespace. The
//! test drives ChromeDriver from a thread that joins that namespace, so nothing listens on the
//! host. Screenshots go to `$CARGO_TARGET_TMPDIR/dashboard-screenshots/`.
//!
//! Needs root and the rig (see rig/), like the other end-to-end tests; it fails, never skips,
//! without them.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use support::rig::Rig;

const SELFHEAL: &str = env!("CARGO_BIN_EXE_selfheal");
const PASSWORD: &str = "correct horse battery";
const DASHBOARD: &str = "http://127.0.0.1:8750/";
const WEBDRIVER: &str = "http://127.0.0.1:9515";

fn screenshot_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

fn password_hash() -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(SELFHEAL)
        .arg("passwd")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run selfheal passwd");
    writeln!(child.stdin.take().expect("stdin"), "{PASSWORD}").expect("write the password");
    let output = child.wait_with_output().expect("selfheal passwd");
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Moves the current thread into the rig's network namespace, so that 127.0.0.1 is the rig's
/// loopback, where ChromeDriver and the dashboard listen. Dropping it moves the thread back.
/// Processes this thread starts inherit the namespace; the rig's own scripts name theirs.
struct RigNetwork {
    original: std::fs::File,
}

impl RigNetwork {
    fn enter(rig: &Rig) -> RigNetwork {
        let original =
            std::fs::File::open("/proc/thread-self/ns/net").expect("open this thread's namespace");
        let target = std::fs::File::open(format!("/proc/{}/ns/net", rig.systemd_pid()))
            .expect("open the rig's network namespace");
        join(&target);
        RigNetwork { original }
    }
}

impl Drop for RigNetwork {
    fn drop(&mut self) {
        join(&self.original);
    }
}

fn join(namespace: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: setns(2) with a namespace file this process opened; it moves only this thread.
    let joined = unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(joined, 0, "setns: {}", std::io::Error::last_os_error());
}

async fn browser() -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_string(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-quic", "--user-data-dir=/tmp/chromium-profile",
                "--window-size=1280,1000", "--lang=en-US"
            ]
        }),
    );
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match ClientBuilder::new(connector.clone())
            .capabilities(capabilities.clone())
            .connect(WEBDRIVER)
            .await
        {
            Ok(client) => return client,
            Err(error) if Instant::now() < deadline => {
                eprintln!("waiting for chromedriver: {error}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("cannot start a Chromium session: {error}"),
        }
    }
}

/// Polls the page until `condition` holds, or fails naming `what` with the page's text.
async fn wait_page<F, Fut>(client: &Client, what: &str, limit: Duration, mut condition: F)
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        let text = page_text(client).await;
        if condition(text.clone()).await {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}; the page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn page_text(client: &Client) -> String {
    match client.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.expect("screenshot");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    println!("screenshot: {}", path.display());
}

async fn state_of(client: &Client, service: &str) -> String {
    let cell = format!("#services tr[data-service=\"{service}\"] .state");
    match client.find(Locator::Css(&cell)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

#[test]
fn banner_restart_and_pause_in_a_real_browser() {
    let rig = Rig::boot("dash-browser");
    rig.start_units(&["dbus.socket", "postfix@-.service", "dovecot.service"]);
    let config = rig.dir().join("selfheal.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"2s\"\nverify_after = \"1s\"\nretry_interval = \"1s\"\n\
             state_dir = \"{dir}/state\"\ncontrol_socket = \"{dir}/control.sock\"\n\n\
             [dashboard]\nadmin_password_hash = \"{hash}\"\n\n\
             [services.postfix]\nmode = \"watch\"\n\n[services.dovecot]\n",
            dir = rig.dir().display(),
            hash = password_hash(),
        ),
    )
    .expect("write the config");
    let config = config.display().to_string();
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    rig.run_transient(
        "chromedriver",
        &[
            "/usr/bin/chromedriver",
            "--port=9515",
            "--allowed-ips=127.0.0.1",
        ],
    );
    let main_cf = rig.exec_ok(&["cat", "/etc/postfix/main.cf"]);

    let _network = RigNetwork::enter(&rig);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = browser().await;

        // Log in: the page redirects to the form, the form back to the page.
        client.goto(DASHBOARD).await.expect("open the dashboard");
        assert!(client
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/login"));
        let password = client
            .find(Locator::Id("password"))
            .await
            .expect("password field");
        password
            .send_keys(PASSWORD)
            .await
            .expect("type the password");
        client
            .find(Locator::Css("form button[type=submit]"))
            .await
            .expect("login button")
            .click()
            .await
            .expect("log in");
        wait_page(
            &client,
            "both services healthy",
            Duration::from_secs(30),
            |_| async {
                state_of(&client, "postfix").await == "healthy"
                    && state_of(&client, "dovecot").await == "healthy"
            },
        )
        .await;
        let text = page_text(&client).await;
        assert!(text.contains("All 2 services are healthy"), "{text}");
        assert!(text.contains("admin (admin)"), "{text}");
        screenshot(&client, "1-healthy.png").await;

        // A broken main.cf and a crash: in watch mode the banner appears by itself, with the
        // diagnosis, and no reload.
        rig.sh("echo 'this line is broken' >> /etc/postfix/main.cf");
        rig.exec(&["systemctl", "kill", "--signal=KILL", "postfix@-.service"]);
        let banner = "#banners .banner[data-service=\"postfix\"]";
        wait_page(
            &client,
            "the postfix banner with its cause",
            Duration::from_secs(60),
            |_| async {
                match client.find(Locator::Css(banner)).await {
                    Ok(element) => element.text().await.is_ok_and(|text| {
                        text.contains("Cause: config error: /etc/postfix/main.cf line")
                    }),
                    Err(_) => false,
                }
            },
        )
        .await;
        let text = client
            .find(Locator::Css(banner))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("postfix is down"), "{text}");
        assert!(text.contains("watch mode"), "{text}");
        // The evidence is behind a disclosure, opened for the screenshot.
        client
            .find(Locator::Css(&format!("{banner} details summary")))
            .await
            .expect("evidence disclosure")
            .click()
            .await
            .expect("open the evidence");
        let text = client
            .find(Locator::Css(banner))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("Next: "), "{text}");
        assert!(text.contains("this line is broken"), "{text}");
        assert_eq!(state_of(&client, "postfix").await, "down");
        screenshot(&client, "2-banner.png").await;

        // The admin fixes the file and presses Restart in the banner: progress, then the
        // banner clears by itself.
        rig.write_file("/etc/postfix/main.cf", &main_cf);
        let button = client
            .find(Locator::Css(&format!(
                "{banner} button[aria-label=\"Restart postfix\"]"
            )))
            .await
            .expect("Restart button in the banner");
        button.click().await.expect("press Restart");
        wait_page(
            &client,
            "the banner to clear",
            Duration::from_secs(60),
            |_| async {
                client.find(Locator::Css(banner)).await.is_err()
                    && state_of(&client, "postfix").await == "healthy"
            },
        )
        .await;
        let outcome = client
            .find(Locator::Css(
                "#services tr[data-service=\"postfix\"] .outcome",
            ))
            .await
            .expect("restart outcome")
            .text()
            .await
            .unwrap();
        assert_eq!(outcome, "postfix restarted and verified healthy");
        assert!(rig.banner(25).is_some_and(|line| line.starts_with("220")));
        screenshot(&client, "3-restarted.png").await;

        // Pause Dovecot until resumed, then kill it: it shows paused and is not restarted.
        let row = "#services tr[data-service=\"dovecot\"]";
        let select = client
            .find(Locator::Css(&format!("{row} select")))
            .await
            .expect("pause length");
        select.select_by_value("").await.expect("until resumed");
        client
            .find(Locator::Css(&format!(
                "{row} button[aria-label=\"Pause healing of dovecot\"]"
            )))
            .await
            .expect("Pause button")
            .click()
            .await
            .expect("press Pause");
        wait_page(
            &client,
            "dovecot paused",
            Duration::from_secs(20),
            |_| async { state_of(&client, "dovecot").await == "paused until resumed" },
        )
        .await;
        rig.exec(&["systemctl", "kill", "--signal=KILL", "dovecot.service"]);
        tokio::time::sleep(Duration::from_secs(8)).await;
        assert_eq!(state_of(&client, "dovecot").await, "paused until resumed");
        assert!(
            rig.banner(143).is_none(),
            "dovecot was restarted while paused"
        );
        assert!(client.find(Locator::Css("#banners .banner")).await.is_err());
        screenshot(&client, "4-paused.png").await;

        // Resume: healed at once.
        client
            .find(Locator::Css(&format!(
                "{row} button[aria-label=\"Resume healing of dovecot\"]"
            )))
            .await
            .expect("Resume button")
            .click()
            .await
            .expect("press Resume");
        wait_page(
            &client,
            "dovecot healed after resume",
            Duration::from_secs(60),
            |_| async { state_of(&client, "dovecot").await == "healthy" },
        )
        .await;
        assert!(rig.banner(143).is_some_and(|line| line.starts_with("* OK")));

        // A phone-sized window still shows the state and the actions.
        client.set_window_size(390, 844).await.expect("resize");
        tokio::time::sleep(Duration::from_millis(500)).await;
        screenshot(&client, "5-phone.png").await;
        client.close().await.expect("end the browser session");
    });
}

/// Runs curl inside the rig and returns what it printed (headers and body with `-i`).
fn curl(rig: &Rig, args: &[&str]) -> String {
    let mut argv = vec!["curl", "-s", "--max-time", "20"];
    argv.extend_from_slice(args);
    String::from_utf8_lossy(&rig.exec(&argv).stdout).into_owned()
}

/// Starts selfheal in the rig with its dashboard published at `public_url` through the web
/// server `server` (already running), and waits until the proxy reaches it.
fn start_behind_proxy(rig: &Rig, server: &str, public_url: &str) {
    let config = rig.dir().join("selfheal.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"2s\"\nstate_dir = \"{dir}/state\"\ncontrol_socket = \"{dir}/control.sock\"\n\n\
             [dashboard]\npublic_url = \"{public_url}\"\nadmin_password_hash = \"{hash}\"\n\n\
             [services.postfix]\n",
            dir = rig.dir().display(),
            hash = password_hash(),
        ),
    )
    .expect("write the config");
    let config = config.display().to_string();
    rig.run_transient("selfheal-test", &[SELFHEAL, "run", "-c", &config]);
    let healthz = [
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "http://127.0.0.1/selfheal/healthz",
    ];
    rig.wait_until(
        &format!("the dashboard behind {server}"),
        Duration::from_secs(30),
        || curl(rig, &healthz) == "200",
    );
}

/// Returns the hidden CSRF field of a login form page.
fn form_csrf(page: &str) -> String {
    page.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf field")
        .to_string()
}

#[test]
fn behind_nginx_with_the_shipped_snippet() {
    let rig = Rig::boot("dash-nginx");
    let snippet = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/nginx-selfheal.conf");
    rig.write_file(
        "/etc/nginx/sites-enabled/default",
        &format!(
            "server {{\n    listen 127.0.0.1:80 default_server;\n    include {snippet};\n}}\n"
        ),
    );
    rig.start_units(&["dbus.socket", "nginx.service", "postfix@-.service"]);
    start_behind_proxy(&rig, "nginx", "http://127.0.0.1/selfheal/");

    let bare = curl(&rig, &["-i", "http://127.0.0.1/selfheal"]);
    assert!(
        bare.contains("301") && bare.contains("/selfheal/"),
        "{bare}"
    );
    // The page sends the browser to the form by a relative path, which stays under /selfheal/.
    let page = curl(&rig, &["-i", "http://127.0.0.1/selfheal/"]);
    assert!(page.starts_with("HTTP/1.1 303"), "{page}");
    assert!(
        page.to_lowercase().contains("location: login\r\n"),
        "{page}"
    );

    // Log in from 127.0.0.2: nginx passes the client's address on, and the cookies are
    // scoped to the public URL's path.
    let jar = "/tmp/cookies";
    let form = curl(
        &rig,
        &[
            "-c",
            jar,
            "--interface",
            "127.0.0.2",
            "http://127.0.0.1/selfheal/login",
        ],
    );
    assert!(form.contains("action=\"login\""), "{form}");
    assert!(form.contains("href=\"static/app.css\""), "{form}");
    let csrf = form_csrf(&form);
    let login = curl(
        &rig,
        &[
            "-i",
            "-b",
            jar,
            "-c",
            jar,
            "--interface",
            "127.0.0.2",
            "--data-urlencode",
            "user=admin",
            "--data-urlencode",
            &format!("password={PASSWORD}"),
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "http://127.0.0.1/selfheal/login",
        ],
    );
    assert!(login.starts_with("HTTP/1.1 303"), "{login}");
    assert!(login.contains("selfheal_session="), "{login}");
    assert!(
        login.contains("Path=/selfheal/; HttpOnly; SameSite=Strict"),
        "{login}"
    );
    let services = curl(
        &rig,
        &["-b", jar, "http://127.0.0.1/selfheal/api/v1/services"],
    );
    assert!(
        services.starts_with("[{\"service\":\"postfix\""),
        "{services}"
    );
    let audit = curl(&rig, &["-b", jar, "http://127.0.0.1/selfheal/api/v1/audit"]);
    assert!(
        audit.contains("\"actor\":\"admin\",\"address\":\"127.0.0.2\",\"action\":\"login\""),
        "{audit}"
    );

    // The live feed passes through unbuffered: the first event arrives at once.
    let feed = curl(
        &rig,
        &[
            "-N",
            "--max-time",
            "3",
            "-b",
            jar,
            "http://127.0.0.1/selfheal/api/v1/events",
        ],
    );
    assert!(feed.starts_with("event: services\ndata: [{"), "{feed}");

    // Metrics: a local scraper may read them directly, but through the proxy only with a token.
    let proxied = curl(
        &rig,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1/selfheal/metrics",
        ],
    );
    assert_eq!(proxied, "401");
    let direct = curl(&rig, &["http://127.0.0.1:8750/metrics"]);
    assert!(
        direct.contains("selfheal_service_up{service=\"postfix\"} 1"),
        "{direct}"
    );
}

#[test]
fn behind_apache_with_the_shipped_snippet() {
    let rig = Rig::boot("dash-apache");
    let snippet = concat!(env!("CARGO_MANIFEST_DIR"), "/dist/apache-selfheal.conf");
    rig.exec_ok(&["a2enmod", "-q", "proxy", "proxy_http", "headers"]);
    rig.write_file(
        "/etc/apache2/sites-enabled/000-default.conf",
        &format!("<VirtualHost 127.0.0.1:80>\n    Include {snippet}\n</VirtualHost>\n"),
    );
    rig.start_units(&["dbus.socket", "apache2.service", "postfix@-.service"]);
    start_behind_proxy(&rig, "Apache", "https://127.0.0.1/selfheal/");

    let bare = curl(&rig, &["-i", "http://127.0.0.1/selfheal"]);
    assert!(bare.starts_with("HTTP/1.1 301"), "{bare}");
    let jar = "/tmp/cookies";
    let form = curl(
        &rig,
        &[
            "-c",
            jar,
            "--interface",
            "127.0.0.3",
            "http://127.0.0.1/selfheal/login",
        ],
    );
    let csrf = form_csrf(&form);
    // The snippet reports to selfheal that the browser used HTTPS, so the cookies are Secure.
    // curl does not send Secure cookies over plain HTTP, so the test sends them by hand.
    let login_cookie = rig.exec_ok(&["awk", "$6 == \"selfheal_login\" { print $7 }", jar]);
    let login = curl(
        &rig,
        &[
            "-i",
            "--interface",
            "127.0.0.3",
            "-H",
            &format!("Cookie: selfheal_login={}", login_cookie.trim()),
            "--data-urlencode",
            "user=admin",
            "--data-urlencode",
            &format!("password={PASSWORD}"),
            "--data-urlencode",
            &format!("csrf={csrf}"),
            "http://127.0.0.1/selfheal/login",
        ],
    );
    assert!(login.starts_with("HTTP/1.1 303"), "{login}");
    assert!(
        login.contains("Path=/selfheal/; HttpOnly; SameSite=Strict; Secure"),
        "{login}"
    );
    let session = login
        .split("selfheal_session=")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .expect("session cookie")
        .to_string();
    let cookie = format!("Cookie: selfheal_session={session}");
    let audit = curl(
        &rig,
        &["-H", &cookie, "http://127.0.0.1/selfheal/api/v1/audit"],
    );
    // mod_proxy appends the client's address to X-Forwarded-For; selfheal takes that one.
    assert!(
        audit.contains("\"actor\":\"admin\",\"address\":\"127.0.0.3\",\"action\":\"login\""),
        "{audit}"
    );
    let feed = curl(
        &rig,
        &[
            "-N",
            "--max-time",
            "3",
            "-H",
            &cookie,
            "http://127.0.0.1/selfheal/api/v1/events",
        ],
    );
    assert!(feed.starts_with("event: services\ndata: [{"), "{feed}");
    let proxied = curl(
        &rig,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://127.0.0.1/selfheal/metrics",
        ],
    );
    assert_eq!(proxied, "401");
}
