//! Authentication: password logins with sessions, bearer tokens, CSRF tokens and login
//! throttling. Everything here is in memory: a restart of selfheal logs everyone out.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::config::{ApiToken, DashboardConfig, Role};

/// User name of the admin account (`admin_password_hash`).
pub const ADMIN_USER: &str = "admin";
/// User name of the read-only account (`readonly_password_hash`).
pub const VIEWER_USER: &str = "viewer";

/// Failed logins from one client address within [`THROTTLE_WINDOW`] before it must wait.
pub const MAX_FAILURES_PER_ADDRESS: usize = 5;
/// Failed logins for one account, from any address, before it must wait. Higher than the
/// per-address limit, so that one attacker cannot lock the admin out by themselves.
pub const MAX_FAILURES_PER_ACCOUNT: usize = 20;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// A login never lasts longer than this, even while in use.
const SESSION_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// Upper bound of sessions kept; the oldest is dropped beyond it.
const MAX_SESSIONS: usize = 1000;

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name, or `token NAME`.
    pub name: String,
    pub role: Role,
    /// The session's CSRF token; none for bearer tokens, which a browser never sends by itself.
    pub csrf: Option<String>,
}

#[derive(Debug, Clone)]
struct Session {
    user: String,
    role: Role,
    csrf: String,
    created: Instant,
    last_seen: Instant,
}

/// Reason a login was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong user name or password; the message does not say which.
    Invalid,
    /// Too many failures; try again after this long.
    ThrottledAddress(Duration),
    ThrottledAccount(Duration),
    /// No session could be made (no random numbers).
    Internal(String),
}

pub struct Auth {
    admin_hash: Option<String>,
    viewer_hash: Option<String>,
    tokens: Vec<ApiToken>,
    idle: Duration,
    sessions: Mutex<HashMap<String, Session>>,
    failures_by_address: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
    failures_by_account: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Auth {
    pub fn new(config: &DashboardConfig) -> Auth {
        Auth {
            admin_hash: config.admin_password_hash.clone(),
            viewer_hash: config.readonly_password_hash.clone(),
            tokens: config.tokens.clone(),
            idle: config.session_idle,
            sessions: Mutex::new(HashMap::new()),
            failures_by_address: Mutex::new(HashMap::new()),
            failures_by_account: Mutex::new(HashMap::new()),
        }
    }

    /// Returns whether any password is configured, so that a login can succeed at all.
    pub fn has_users(&self) -> bool {
        self.admin_hash.is_some() || self.viewer_hash.is_some()
    }

    /// Checks a login and opens a session. Returns the session token (the cookie's value).
    /// Throttling is checked before the password, so a throttled client learns nothing.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        address: IpAddr,
        now: Instant,
    ) -> Result<(String, Principal), LoginError> {
        if let Some(wait) = throttled(
            &self.failures_by_address,
            &address,
            MAX_FAILURES_PER_ADDRESS,
            now,
        ) {
            return Err(LoginError::ThrottledAddress(wait));
        }
        let account = user.to_string();
        if let Some(wait) = throttled(
            &self.failures_by_account,
            &account,
            MAX_FAILURES_PER_ACCOUNT,
            now,
        ) {
            return Err(LoginError::ThrottledAccount(wait));
        }
        let (hash, role) = match user {
            ADMIN_USER => (self.admin_hash.clone(), Role::Admin),
            VIEWER_USER => (self.viewer_hash.clone(), Role::ReadOnly),
            _ => (None, Role::ReadOnly),
        };
        let password = password.to_string();
        // Argon2 takes tens of milliseconds of CPU on purpose: off the async workers. An
        // unknown user is checked against a fixed hash, so both take the same time.
        let verified =
            tokio::task::spawn_blocking(move || verify_password(hash.as_deref(), &password))
                .await
                .unwrap_or(false);
        if !verified {
            record_failure(&self.failures_by_address, address, now);
            record_failure(&self.failures_by_account, account, now);
            return Err(LoginError::Invalid);
        }
        let (token, csrf) = match (random_token(), random_token()) {
            (Ok(token), Ok(csrf)) => (token, csrf),
            (Err(error), _) | (_, Err(error)) => {
                return Err(LoginError::Internal(error.to_string()))
            }
        };
        let mut sessions = lock(&self.sessions);
        self.expire(&mut sessions, now);
        if sessions.len() >= MAX_SESSIONS {
            if let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(key, _)| key.clone())
            {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(
            token.clone(),
            Session {
                user: user.to_string(),
                role,
                csrf: csrf.clone(),
                created: now,
                last_seen: now,
            },
        );
        Ok((
            token,
            Principal {
                name: user.to_string(),
                role,
                csrf: Some(csrf),
            },
        ))
    }

    /// Returns the principal of a session cookie and refreshes its idle timer.
    pub fn session(&self, token: &str, now: Instant) -> Option<Principal> {
        let mut sessions = lock(&self.sessions);
        self.expire(&mut sessions, now);
        let session = sessions.get_mut(token)?;
        session.last_seen = now;
        Some(Principal {
            name: session.user.clone(),
            role: session.role,
            csrf: Some(session.csrf.clone()),
        })
    }

    pub fn logout(&self, token: &str) {
        lock(&self.sessions).remove(token);
    }

    /// Returns the principal of a bearer token, compared by SHA-256 in constant time.
    pub fn bearer(&self, token: &str) -> Option<Principal> {
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.tokens
            .iter()
            .find(|known| bool::from(known.sha256.ct_eq(&digest)))
            .map(|known| Principal {
                name: format!("token {}", known.name),
                role: known.role,
                csrf: None,
            })
    }

    fn expire(&self, sessions: &mut HashMap<String, Session>, now: Instant) {
        sessions.retain(|_, session| {
            now.saturating_duration_since(session.last_seen) < self.idle
                && now.saturating_duration_since(session.created) < SESSION_MAX_AGE
        });
    }
}

/// Compares a submitted CSRF token with the session's in constant time.
pub fn csrf_matches(expected: &str, submitted: &str) -> bool {
    expected.len() == submitted.len() && bool::from(expected.as_bytes().ct_eq(submitted.as_bytes()))
}

/// A well-formed Argon2id hash with the parameters `selfheal passwd` uses, checked for users
/// that do not exist, where verification fails whatever the password.
const DUMMY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2VsZmhlYWxkdW1teXNhbHQ$J2pQ1Y0mdx6pvTgqj4yb9kZQn1CLu9xrUkKOEYSJb5E";

/// Verifies `password` against an Argon2 PHC string. Without a hash, a fixed one is checked
/// so that an unknown user costs as much time as a known one, and verification fails.
fn verify_password(hash: Option<&str>, password: &str) -> bool {
    let known = hash.is_some();
    let Ok(parsed) = PasswordHash::new(hash.unwrap_or(DUMMY)) else {
        return false;
    };
    let matches = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    known && matches
}

/// Hashes a password with Argon2id and a random salt, in PHC form.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|error| anyhow::anyhow!("no random numbers: {error}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|error| anyhow::anyhow!("{error}"))?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|error| anyhow::anyhow!("cannot hash the password: {error}"))?;
    Ok(hash.to_string())
}

/// Returns 32 random bytes in hexadecimal: session IDs, CSRF tokens and, with
/// [`TOKEN_PREFIX`](crate::config::TOKEN_PREFIX), API tokens.
pub fn random_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|error| anyhow::anyhow!("the kernel's random source failed: {error}"))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// SHA-256 of a token in hexadecimal, as `[[dashboard.token]] sha256` contains it.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How long `key` must still wait, when it has `limit` failures within the window.
fn throttled<K: std::hash::Hash + Eq>(
    failures: &Mutex<HashMap<K, VecDeque<Instant>>>,
    key: &K,
    limit: usize,
    now: Instant,
) -> Option<Duration> {
    let mut failures = lock(failures);
    let times = failures.get_mut(key)?;
    while times
        .front()
        .is_some_and(|first| now.saturating_duration_since(*first) >= THROTTLE_WINDOW)
    {
        times.pop_front();
    }
    if times.len() < limit {
        return None;
    }
    let oldest = *times.front()?;
    Some(THROTTLE_WINDOW.saturating_sub(now.saturating_duration_since(oldest)))
}

fn record_failure<K: std::hash::Hash + Eq>(
    failures: &Mutex<HashMap<K, VecDeque<Instant>>>,
    key: K,
    now: Instant,
) {
    let mut failures = lock(failures);
    // Bounded memory under a flood of addresses: forget keys whose failures are all old.
    if failures.len() > 10_000 {
        failures.retain(|_, times| {
            times
                .back()
                .is_some_and(|last| now.saturating_duration_since(*last) < THROTTLE_WINDOW)
        });
    }
    failures.entry(key).or_default().push_back(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let config = DashboardConfig {
            admin_password_hash: Some(hash_password("correct horse").unwrap()),
            readonly_password_hash: Some(hash_password("viewer pass").unwrap()),
            tokens: vec![ApiToken {
                name: "prometheus".into(),
                sha256: Sha256::digest(b"scrape-token").into(),
                role: Role::Metrics,
            }],
            ..DashboardConfig::default()
        };
        Auth::new(&config)
    }

    fn local() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[tokio::test]
    async fn login_opens_a_session_with_the_role() {
        let auth = auth();
        let now = Instant::now();
        let (token, admin) = auth
            .login("admin", "correct horse", local(), now)
            .await
            .unwrap();
        assert_eq!(admin.role, Role::Admin);
        assert_eq!(auth.session(&token, now), Some(admin));
        let (_, viewer) = auth
            .login("viewer", "viewer pass", local(), now)
            .await
            .unwrap();
        assert_eq!(viewer.role, Role::ReadOnly);
        auth.logout(&token);
        assert_eq!(auth.session(&token, now), None);
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_user_are_refused_alike() {
        let auth = auth();
        let now = Instant::now();
        assert_eq!(
            auth.login("admin", "wrong", local(), now)
                .await
                .unwrap_err(),
            LoginError::Invalid
        );
        assert_eq!(
            auth.login("root", "correct horse", local(), now)
                .await
                .unwrap_err(),
            LoginError::Invalid
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_expire_when_idle() {
        let auth = auth();
        let (token, _) = auth
            .login("admin", "correct horse", local(), Instant::now())
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(auth.session(&token, Instant::now()).is_some());
        tokio::time::advance(Duration::from_secs(2 * 3600 + 1)).await;
        assert!(auth.session(&token, Instant::now()).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn failures_throttle_the_address_then_the_account() {
        let auth = auth();
        let attacker: IpAddr = "192.0.2.7".parse().unwrap();
        for _ in 0..MAX_FAILURES_PER_ADDRESS {
            let error = auth.login("admin", "guess", attacker, Instant::now()).await;
            assert_eq!(error.unwrap_err(), LoginError::Invalid);
        }
        // Even the right password is refused from that address now, with the time to wait.
        let refused = auth
            .login("admin", "correct horse", attacker, Instant::now())
            .await
            .unwrap_err();
        assert_eq!(refused, LoginError::ThrottledAddress(THROTTLE_WINDOW));
        // Another address still logs in.
        assert!(auth
            .login("admin", "correct horse", local(), Instant::now())
            .await
            .is_ok());
        tokio::time::advance(THROTTLE_WINDOW).await;
        assert!(auth
            .login("admin", "correct horse", attacker, Instant::now())
            .await
            .is_ok());

        // Failures from many addresses lock the account for a while.
        for index in 0..MAX_FAILURES_PER_ACCOUNT {
            let address: IpAddr = format!("198.51.100.{index}").parse().unwrap();
            let _ = auth.login("viewer", "guess", address, Instant::now()).await;
        }
        let refused = auth
            .login("viewer", "viewer pass", local(), Instant::now())
            .await
            .unwrap_err();
        assert!(
            matches!(refused, LoginError::ThrottledAccount(_)),
            "{refused:?}"
        );
    }

    #[test]
    fn bearer_tokens_by_digest() {
        let auth = auth();
        let principal = auth.bearer("scrape-token").unwrap();
        assert_eq!(principal.name, "token prometheus");
        assert_eq!(principal.role, Role::Metrics);
        assert!(auth.bearer("scrape-token ").is_none());
        assert_eq!(
            token_digest("scrape-token"),
            Sha256::digest(b"scrape-token")
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }

    #[test]
    fn csrf_comparison() {
        assert!(csrf_matches("abc123", "abc123"));
        assert!(!csrf_matches("abc123", "abc124"));
        assert!(!csrf_matches("abc123", "abc12"));
        assert!(!csrf_matches("abc123", ""));
    }

    #[test]
    fn dummy_hash_is_valid_and_unguessable() {
        // The fixed hash must parse, or logins of unknown users would return faster than those of known ones.
        assert!(PasswordHash::new(DUMMY).is_ok());
        assert!(!verify_password(None, ""));
        assert!(!verify_password(None, "password"));
    }
}
