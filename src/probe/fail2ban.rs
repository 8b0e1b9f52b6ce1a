//! fail2ban probe: `fail2ban-client -s SOCKET ping`, to which the server replies "pong".
//!
//! The probe runs Debian's client instead of speaking the control socket protocol itself. That
//! protocol sends Python pickles in both directions (`CSocket` in fail2ban 1.0.2), so a native
//! client would have to decode pickles sent by the peer, and their format follows the
//! server's Python version. The client always matches the installed server. Its cost is one
//! Python start per check: 40 to 70 ms, about 40 ms of it CPU, measured with /usr/bin/time on
//! a 2-core Debian 12 VM.

use std::ffi::OsStr;
use std::path::Path;

use super::command::{describe_status, last_line, run_program};
use super::io::quote;
use super::{Context, Endpoint, Outcome, Passed};

/// The client that Debian's fail2ban package installs.
const CLIENT: &str = "/usr/bin/fail2ban-client";

/// Pings the fail2ban server at the endpoint's socket.
pub(super) async fn check(context: &Context<'_>) -> Result<Passed, Outcome> {
    ping(&[OsStr::new(CLIENT)], context).await
}

/// Runs `client` (program and leading arguments) with `-s SOCKET ping` and expects "pong".
async fn ping(client: &[&OsStr], context: &Context<'_>) -> Result<Passed, Outcome> {
    let socket = match context.endpoint()? {
        Endpoint::Unix { path } => path,
        Endpoint::Tcp { host, port } => {
            return Err(Outcome::Failed {
                error: format!(
                    "fail2ban probe needs the server's socket path such as \
                     /run/fail2ban/fail2ban.sock, got {host}:{port}"
                ),
            })
        }
    };
    let Some((program, leading)) = client.split_first() else {
        return Err(Outcome::Failed {
            error: "fail2ban probe has no client program".to_string(),
        });
    };
    let program = Path::new(program);

    // A missing socket means that fail2ban does not run, which is Refused, not a client error.
    if let Err(error) = tokio::fs::symlink_metadata(socket).await {
        if error.kind() == std::io::ErrorKind::NotFound {
            return Err(Outcome::Refused {
                error: format!("fail2ban socket {} does not exist", socket.display()),
            });
        }
    }
    if !program.exists() {
        return Err(Outcome::Failed {
            error: format!(
                "fail2ban client {} not found; install the fail2ban package or use a command probe",
                program.display()
            ),
        });
    }

    // Ask the server for a pong through its control socket.
    let mut args: Vec<&OsStr> = leading.to_vec();
    args.extend([OsStr::new("-s"), socket.as_os_str(), OsStr::new("ping")]);
    let finished = run_program(program, &args, "ping", context.timeout).await?;

    // The client exits with 0 and prints "Server replied: pong" when the server replied.
    let stdout = String::from_utf8_lossy(&finished.stdout);
    if !finished.status.success() {
        let mut error = format!("fail2ban-client ping {}", describe_status(finished.status));
        let output = last_line(&finished.stderr).or_else(|| last_line(&finished.stdout));
        if let Some(line) = output {
            error.push_str(&format!(": {}", quote(line.as_bytes())));
        }
        return Err(Outcome::Failed { error });
    }
    if !stdout.contains("pong") {
        return Err(Outcome::BadReply {
            step: "ping".to_string(),
            expected: "\"pong\" in the output of fail2ban-client".to_string(),
            got: quote(last_line(&finished.stdout).unwrap_or_default().as_bytes()),
        });
    }
    Ok(Passed {
        detail: Some("pong".to_string()),
        warning: None,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::super::{ProbeSpec, Protocol};
    use super::*;

    const LIMIT: Duration = Duration::from_secs(5);

    /// Bound on each test, so that a probe that hangs fails the test.
    const TEST_LIMIT: Duration = Duration::from_secs(20);

    /// A fake fail2ban server socket and a fake client script in a temporary directory.
    struct Fake {
        dir: tempfile::TempDir,
        socket: PathBuf,
        script: PathBuf,
    }

    /// Creates the socket file and a client script with `body`, which receives the client's
    /// arguments as "$@".
    fn fake(body: &str) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fail2ban.sock");
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let script = dir.path().join("client.sh");
        std::fs::write(&script, body).unwrap();
        Fake {
            dir,
            socket,
            script,
        }
    }

    async fn ping_with(fake: &Fake, socket: &Path, limit: Duration) -> Result<Passed, Outcome> {
        // The script runs through sh, because executing a file that was just written can fail
        // with ETXTBSY while another test thread forks.
        let client = [OsStr::new("/bin/sh"), fake.script.as_os_str()];
        let spec = ProbeSpec::new(
            Protocol::Fail2ban,
            Some(Endpoint::Unix {
                path: socket.to_path_buf(),
            }),
            "test",
        );
        let context = Context {
            spec: &spec,
            timeout: limit,
        };
        tokio::time::timeout(TEST_LIMIT, ping(&client, &context))
            .await
            .expect("probe hung")
    }

    #[tokio::test]
    async fn pong_healthy() {
        let fake = fake(
            "[ \"$1 $3\" = \"-s ping\" ] || exit 9\n[ -S \"$2\" ] || exit 8\n\
             echo 'Server replied: pong'\n",
        );

        let passed = ping_with(&fake, &fake.socket, LIMIT).await.unwrap();

        assert_eq!(passed.detail.as_deref(), Some("pong"));
    }

    #[tokio::test]
    async fn no_pong_bad_reply() {
        let fake = fake("echo 'Server replied: something else'\n");

        let outcome = ping_with(&fake, &fake.socket, LIMIT).await.unwrap_err();

        assert!(
            matches!(&outcome, Outcome::BadReply { got, .. } if got.contains("something else")),
            "{outcome}"
        );
    }

    #[tokio::test]
    async fn client_error_quoted() {
        let fake = fake(
            "echo 'ERROR  Failed to access socket path: /x. Is fail2ban running?' >&2\nexit 255\n",
        );

        let outcome = ping_with(&fake, &fake.socket, LIMIT).await.unwrap_err();

        let Outcome::Failed { error } = &outcome else {
            panic!("expected failed, got {outcome}");
        };
        assert!(
            error.starts_with("fail2ban-client ping exited with status 255: "),
            "{error}"
        );
        assert!(error.contains("Is fail2ban running?"), "{error}");
    }

    #[tokio::test]
    async fn hung_server_times_out() {
        let fake = fake("exec sleep 30\n");

        let outcome = ping_with(&fake, &fake.socket, Duration::from_millis(300))
            .await
            .unwrap_err();

        assert_eq!(
            outcome,
            Outcome::TimedOut {
                step: "ping".into(),
                after: Duration::from_millis(300)
            }
        );
    }

    #[tokio::test]
    async fn missing_socket_refused() {
        let fake = fake("echo 'Server replied: pong'\n");
        let absent = fake.dir.path().join("absent.sock");

        let outcome = ping_with(&fake, &absent, LIMIT).await.unwrap_err();

        assert!(
            matches!(&outcome, Outcome::Refused { error } if error.contains("absent.sock does not exist")),
            "{outcome}"
        );
    }

    #[tokio::test]
    async fn missing_client_named() {
        let fake = fake("");
        let spec = ProbeSpec::new(
            Protocol::Fail2ban,
            Some(Endpoint::Unix {
                path: fake.socket.clone(),
            }),
            "test",
        );
        let context = Context {
            spec: &spec,
            timeout: LIMIT,
        };
        let client = [OsStr::new("/nonexistent/fail2ban-client")];

        let outcome = tokio::time::timeout(TEST_LIMIT, ping(&client, &context))
            .await
            .unwrap()
            .unwrap_err();

        assert!(
            matches!(&outcome, Outcome::Failed { error }
                if error.starts_with("fail2ban client /nonexistent/fail2ban-client not found")),
            "{outcome}"
        );
    }

    #[tokio::test]
    async fn tcp_endpoint_fails() {
        let fake = fake("");
        let spec = ProbeSpec::new(
            Protocol::Fail2ban,
            Some(Endpoint::parse("127.0.0.1:1").unwrap()),
            "test",
        );
        let context = Context {
            spec: &spec,
            timeout: LIMIT,
        };
        let client = [OsStr::new("/bin/sh"), fake.script.as_os_str()];

        let outcome = tokio::time::timeout(TEST_LIMIT, ping(&client, &context))
            .await
            .unwrap()
            .unwrap_err();

        assert!(
            matches!(&outcome, Outcome::Failed { error } if error.contains("socket path")),
            "{outcome}"
        );
    }

    #[tokio::test]
    async fn real_client_stale_socket() {
        // Debian's client against a socket file that no process listens on. Skipped where
        // fail2ban is not installed.
        if !Path::new(CLIENT).exists() {
            return;
        }
        let fake = fake("");
        let spec = ProbeSpec::new(
            Protocol::Fail2ban,
            Some(Endpoint::Unix {
                path: fake.socket.clone(),
            }),
            "test",
        );
        let context = Context {
            spec: &spec,
            timeout: LIMIT,
        };

        let outcome = tokio::time::timeout(TEST_LIMIT, check(&context))
            .await
            .unwrap()
            .unwrap_err();

        assert!(
            matches!(&outcome, Outcome::Failed { error } if error.starts_with("fail2ban-client ping exited with status")),
            "{outcome}"
        );
    }
}
