//! Local sendmail channel, built on lettre's `AsyncSendmailTransport`, the last resort after
//! every relay failed.

use std::path::Path;
use std::time::Duration;

use lettre::{AsyncSendmailTransport, AsyncTransport, Message, Tokio1Executor};

/// Maximum time for one sendmail run. Postfix's sendmail only hands the message to the local
/// queue, which normally takes well under a second. On timeout the child process is killed,
/// because lettre 0.11 spawns it with `kill_on_drop`.
pub(super) const TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn channel_name(path: &Path) -> String {
    format!("sendmail {}", path.display())
}

/// Pipes `message` into `path -i -f FROM -- TO...` and returns `exit status 0` when the
/// binary exits with 0.
pub(super) async fn send(path: &Path, message: &Message) -> Result<String, String> {
    if let Err(error) = tokio::fs::metadata(path).await {
        return Err(format!(
            "cannot use {}: {error}; install a sendmail binary (Postfix provides \
             /usr/sbin/sendmail) or fix alerts.sendmail",
            path.display()
        ));
    }

    let transport = AsyncSendmailTransport::<Tokio1Executor>::new_with_command(path);
    let email = message.formatted();
    let run = transport.send_raw(message.envelope(), &email);
    match tokio::time::timeout(TIMEOUT, run).await {
        Ok(Ok(())) => Ok("exit status 0".to_string()),
        Ok(Err(error)) => Err(describe_error(&error)),
        Err(_elapsed) => Err(format!(
            "timed out after {} and was killed",
            humantime::format_duration(TIMEOUT)
        )),
    }
}

/// Turns lettre's error into one line. lettre reports a failed exit as the child's stderr,
/// which may be empty or span several lines, and a failed spawn as the I/O error.
fn describe_error(error: &lettre::transport::sendmail::Error) -> String {
    let detail = match std::error::Error::source(error) {
        Some(source) => source.to_string(),
        None => error.to_string(),
    };
    let detail = detail.split_whitespace().collect::<Vec<_>>().join(" ");
    if detail.is_empty() {
        "failed with a non-zero exit status and no error output".to_string()
    } else {
        format!("failed: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn message() -> Message {
        Message::builder()
            .from("selfheal@mail1.example.org".parse().unwrap())
            .to("admin@example.org".parse().unwrap())
            .subject("test")
            .body(String::from("body\n"))
            .unwrap()
    }

    fn script(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("sendmail");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), future)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn exit_zero_delivers() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let path = script(
            dir.path(),
            &format!("echo \"$@\" > {0}; cat >> {0}", out.display()),
        );

        let reply = within(send(&path, &message())).await.unwrap();

        assert_eq!(reply, "exit status 0");
        let written = std::fs::read_to_string(&out).unwrap();
        assert!(
            written.starts_with("-i -f selfheal@mail1.example.org -- admin@example.org\n"),
            "{written}"
        );
        assert!(written.contains("Subject: test"), "{written}");
    }

    #[tokio::test]
    async fn exit_failure_shows_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(
            dir.path(),
            "cat >/dev/null; echo 'queue\nfull' >&2; exit 75",
        );

        let error = within(send(&path, &message())).await.unwrap_err();

        assert_eq!(error, "failed: queue full");
    }

    #[tokio::test]
    async fn exit_failure_without_stderr() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "cat >/dev/null; exit 1");

        let error = within(send(&path, &message())).await.unwrap_err();

        assert!(error.contains("non-zero exit status"), "{error}");
    }

    #[tokio::test]
    async fn missing_binary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("no-sendmail");

        let error = within(send(&path, &message())).await.unwrap_err();

        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("alerts.sendmail"), "{error}");
    }
}
