//! The SMTP sink (tests/support/smtp_sink.py, Python's aiosmtpd) as a child process, and
//! helpers to read what it stored.

// Each test binary uses a different part of the harness.
#![allow(dead_code)]

use std::net::TcpListener as StdTcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use selfheal::config::{RelayConfig, TlsMode};
use tempfile::TempDir;

pub const PYTHON: &str = "/usr/bin/python3";

/// The SMTP sink as a child process, killed by its PID when the guard drops, also when the
/// test panics.
pub struct Sink {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl Sink {
    pub async fn start() -> Sink {
        Sink::start_with(&[]).await
    }

    pub async fn start_with_auth(user: &str, password_file: &Path) -> Sink {
        let password_file = password_file.to_str().unwrap();
        Sink::start_with(&["--auth-user", user, "--auth-password-file", password_file]).await
    }

    pub async fn start_with(extra_args: &[&str]) -> Sink {
        Sink::start_on(free_port(), extra_args).await
    }

    /// Starts the sink on `port`, which must be free.
    pub async fn start_on(port: u16, extra_args: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new(PYTHON)
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/support/smtp_sink.py"
            ))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--dir")
            .arg(dir.path().join("mail"))
            .args(extra_args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut sink = Sink { child, port, dir };

        let ready = sink.mail_dir().join("ready");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.exists() {
            if let Some(status) = sink.child.try_wait().unwrap() {
                panic!("smtp_sink.py exited with {status} before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "smtp_sink.py was not ready after 20 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sink
    }

    pub async fn start_with_tls(flag: &str, cert: &Path, key: &Path) -> Sink {
        Sink::start_with(&[flag, cert.to_str().unwrap(), key.to_str().unwrap()]).await
    }

    pub fn mail_dir(&self) -> PathBuf {
        self.dir.path().join("mail")
    }

    /// Paths of the stored messages, oldest first.
    pub fn messages(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.mail_dir())
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        paths.sort();
        paths
    }

    /// Returns the sink as an alert relay without TLS.
    pub fn relay(&self) -> RelayConfig {
        RelayConfig {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: TlsMode::None,
            username: None,
            password_file: None,
            ca_file: None,
            timeout: Duration::from_secs(10),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A stored message as Python's email parser reads it, with headers and parts decoded.
#[derive(Debug, serde::Deserialize)]
pub struct Parsed {
    pub content_type: String,
    pub headers: Vec<(String, String)>,
    pub parts: Vec<(String, String)>,
}

impl Parsed {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
            .collect()
    }

    pub fn part(&self, content_type: &str) -> &str {
        self.parts
            .iter()
            .find(|(kind, _)| kind == content_type)
            .map(|(_, text)| text.as_str())
            .unwrap_or_else(|| panic!("no {content_type} part in {self:?}"))
    }
}

/// Parses a stored message with Python's standard `email` package, which is independent of
/// lettre and decodes quoted-printable, base64 and RFC 2047 words.
pub fn parse_message(path: &Path) -> Parsed {
    const SCRIPT: &str = r#"
import email, email.policy, json, sys
with open(sys.argv[1], "rb") as source:
    message = email.message_from_binary_file(source, policy=email.policy.default)
print(json.dumps({
    "content_type": message.get_content_type(),
    "headers": [[key, str(value)] for key, value in message.items()],
    "parts": [[part.get_content_type(), part.get_content()]
              for part in message.walk() if not part.is_multipart()],
}))
"#;
    let output = Command::new(PYTHON)
        .arg("-c")
        .arg(SCRIPT)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "parsing {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Writes a self-signed certificate for 127.0.0.1 and its key into `dir`, as PEM files.
/// No system CA signed it, so a verifying client must reject it.
pub fn self_signed_cert(dir: &Path) -> (PathBuf, PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let output = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (cert, key)
}

/// Writes a private CA and a certificate it signed for 127.0.0.1 and its key into `dir`, as
/// PEM files: (CA certificate, server certificate, server key). No system CA trusts it, so a
/// client must be given the CA certificate.
pub fn private_ca_cert(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "selfheal test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = rcgen::KeyPair::generate().unwrap();
    let server_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let paths = (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, server_cert.pem()).unwrap();
    std::fs::write(&paths.2, server_key.serialize_pem()).unwrap();
    paths
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = StdTcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
