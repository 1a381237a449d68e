//! Logging in, for the sync API and the console alike: the password check (lengths first,
//! then the failure limit, then argon2 off the async threads, a few at a time) and the
//! limiter of failed logins; and the console's sessions (`web_sessions`: only the SHA-256 of
//! the cookie's secret is kept). No HTTP here: `api::auth` answers a device, `web::pages`
//! and `web::session` a browser.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sql::{params, Connection, OptionalExtension};
use rand::Rng;

use crate::accounts::{self, Caller, User};
use crate::db::{Db, DbError};

/// Longest username and password accepted, checked before anything is kept or hashed.
pub const MAX_USERNAME_CHARS: usize = 64;
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Password hashes computed at once: argon2 takes ~50 ms of a core and 19 MiB each, so a
/// burst of logins waits here instead of starving pushes of CPU and memory.
static ARGON2_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Why a login failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A username or password longer than any account's (nothing was checked).
    #[error("{en}")]
    TooLong { field: &'static str, zh: String, en: String },
    /// Too many failed attempts for this username and address; wait this long.
    #[error("too many failed logins")]
    RateLimited { retry_after_secs: u64 },
    /// A wrong password, an unknown or a disabled user: deliberately indistinguishable.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("password check: {0}")]
    Hashing(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<crate::sql::Error> for LoginError {
    fn from(e: crate::sql::Error) -> Self {
        LoginError::Db(e.into())
    }
}

/// Checks a username and password. Unknown users cost as long as a wrong password. Returns
/// the user (enabled); the caller decides whether their role may use what they log in to.
pub async fn authenticate(
    db: &Db,
    limiter: &LoginLimiter,
    username: &str,
    password: &str,
    ip: Option<IpAddr>,
) -> Result<User, LoginError> {
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(LoginError::TooLong {
            field: "username",
            zh: format!("用户名最长 {MAX_USERNAME_CHARS} 个字符"),
            en: format!("a username has at most {MAX_USERNAME_CHARS} characters"),
        });
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(LoginError::TooLong {
            field: "password",
            zh: format!("密码最长 {MAX_PASSWORD_BYTES} 字节"),
            en: format!("a password has at most {MAX_PASSWORD_BYTES} bytes"),
        });
    }
    limiter
        .check(username, ip, Instant::now())
        .map_err(|retry_after_secs| LoginError::RateLimited { retry_after_secs })?;
    let name = username.to_string();
    let user = db.with_reader(move |conn| -> Result<_, LoginError> { Ok(accounts::find_user(conn, &name)?) }).await?;
    // Unknown users are checked against a dummy hash, so they cost as long as a wrong password.
    let hash = user.as_ref().map_or_else(|| accounts::dummy_hash().to_string(), |(_, h)| h.clone());
    let password = password.to_string();
    let permit = ARGON2_PERMITS.acquire().await.map_err(|e| LoginError::Hashing(e.to_string()))?;
    let ok = tokio::task::spawn_blocking(move || accounts::verify_password(&password, &hash))
        .await
        .map_err(|e| LoginError::Db(e.into()))?;
    drop(permit);
    match user {
        Some((user, _)) if ok && !user.disabled => {
            limiter.clear(username, ip);
            Ok(user)
        }
        _ => {
            limiter.record_failure(username, ip, Instant::now());
            tracing::info!(ip = ?ip, "failed login");
            Err(LoginError::InvalidCredentials)
        }
    }
}

/// Most (username, address) keys the limiter keeps.
pub const MAX_LIMITER_KEYS: usize = 10_000;
/// Failed attempts allowed per username and address within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(5 * 60);

/// Failed logins in memory. A restart forgets them, which costs an attacker a restart per
/// five guesses; keeping them in SQLite would make every failed guess a disk write.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<LimitKey, VecDeque<Instant>>>,
}

/// Lower-cased username and client address.
type LimitKey = (String, Option<IpAddr>);

impl LoginLimiter {
    fn key(username: &str, ip: Option<IpAddr>) -> LimitKey {
        (username.to_lowercase(), ip)
    }

    /// `Err` with the seconds to wait when the key has used up its attempts.
    pub fn check(&self, username: &str, ip: Option<IpAddr>, now: Instant) -> Result<(), u64> {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let Some(times) = map.get_mut(&Self::key(username, ip)) else { return Ok(()) };
        while times.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            times.pop_front();
        }
        if times.len() >= MAX_FAILURES {
            let oldest = times.front().copied().unwrap_or(now);
            return Err((WINDOW - now.duration_since(oldest)).as_secs().max(1));
        }
        Ok(())
    }

    pub fn record_failure(&self, username: &str, ip: Option<IpAddr>, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Forget keys whose failures all expired; past the cap (a flood of distinct names
        // within the window) forget some others too: the map never holds more than
        // MAX_LIMITER_KEYS keys of at most 64 characters.
        if map.len() >= MAX_LIMITER_KEYS {
            map.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            while map.len() >= MAX_LIMITER_KEYS {
                let Some(k) = map.keys().next().cloned() else { break };
                map.remove(&k);
            }
        }
        let times = map.entry(Self::key(username, ip)).or_default();
        times.push_back(now);
        // Only the last MAX_FAILURES matter for the limit.
        while times.len() > MAX_FAILURES {
            times.pop_front();
        }
    }

    pub fn clear(&self, username: &str, ip: Option<IpAddr>) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&Self::key(username, ip));
    }
}

/// A console session lasts a working day; then the supervisor logs in again.
pub const SESSION_LIFETIME_SECS: i64 = 12 * 3600;

/// 32 random bytes in hex: a session's secret, a CSRF token.
pub fn random_token() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

/// Creates a console session for `user_id`; returns the cookie's secret.
pub fn create_session(conn: &Connection, user_id: &str, now: i64) -> crate::sql::Result<String> {
    let secret = random_token();
    conn.execute(
        "INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![accounts::token_hash(&secret), user_id, random_token(), now, now + SESSION_LIFETIME_SECS],
    )?;
    Ok(secret)
}

/// Ends the session of `secret` (logout).
pub fn revoke_session(conn: &Connection, secret: &str, now: i64) -> crate::sql::Result<()> {
    conn.execute(
        "UPDATE web_sessions SET revoked_at = coalesce(revoked_at, ?2) WHERE id_hash = ?1",
        params![accounts::token_hash(secret), now],
    )?;
    Ok(())
}

/// Revokes every session of a user (after a password reset).
pub fn revoke_user_sessions(conn: &Connection, user_id: &str, now: i64) -> crate::sql::Result<()> {
    conn.execute(
        "UPDATE web_sessions SET revoked_at = coalesce(revoked_at, ?2) WHERE user_id = ?1",
        params![user_id, now],
    )?;
    Ok(())
}

/// The caller of a live session (not revoked, not expired, its user not disabled) and the
/// session's CSRF token, by the cookie's secret. The caller's device is the console's.
pub fn session_caller(conn: &Connection, secret: &str, now: i64) -> crate::sql::Result<Option<(Caller, String)>> {
    conn.query_row(
        &format!(
            "SELECT {}, s.csrf_token FROM web_sessions s JOIN users u ON u.id = s.user_id
             WHERE s.id_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 AND u.disabled = 0",
            accounts::CALLER_USER_COLUMNS
        ),
        params![accounts::token_hash(secret), now],
        |r| {
            let caller = Caller {
                device_id: crate::records::WEB_DEVICE.to_string(),
                last_seen: None,
                synced_at: None,
                ..accounts::caller_user(r)?
            };
            Ok((caller, r.get("csrf_token")?))
        },
    )
    .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_five_failures_and_forgets_after_the_window() {
        let limiter = LoginLimiter::default();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let t0 = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(limiter.check("Zhang", ip, t0).is_ok());
            limiter.record_failure("Zhang", ip, t0);
        }
        assert!(limiter.check("zhang", ip, t0).is_err(), "usernames are case-insensitive");
        assert!(limiter.check("zhang", Some(IpAddr::from([10, 0, 0, 2])), t0).is_ok(), "per address");
        assert!(limiter.check("zhang", ip, t0 + WINDOW).is_ok());
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let limiter = LoginLimiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_LIMITER_KEYS * 2) {
            limiter.record_failure(&format!("user{i}"), None, t0);
        }
        for _ in 0..100 {
            limiter.record_failure("same", None, t0);
        }
        let map = limiter.failures.lock().unwrap();
        assert!(map.len() <= MAX_LIMITER_KEYS, "{}", map.len());
        assert!(map.values().all(|t| t.len() <= MAX_FAILURES));
    }
}
