//! Logging in, for the sync API and the console alike: the password check (lengths first,
//! then the failure limit, then argon2 off the async threads, a few at a time) and the
//! limiter of failed logins; and the console's sessions (`web_sessions`: only the SHA-256 of
//! the cookie's secret is kept). No HTTP here: `api::auth` answers a device, `web::pages`
//! and `web::session` a browser.

use std::net::IpAddr;

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
pub async fn authenticate(db: &Db, username: &str, password: &str, ip: Option<IpAddr>) -> Result<User, LoginError> {
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
    let name = username.to_string();
    let (user, limited) = db
        .with_reader(move |conn| -> Result<_, LoginError> {
            let limited = limiter::check(conn, &name, ip, now_ms())?;
            Ok((accounts::find_user(conn, &name)?, limited))
        })
        .await?;
    if let Some(retry_after_secs) = limited {
        return Err(LoginError::RateLimited { retry_after_secs });
    }
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
            let name = username.to_string();
            db.with_writer(move |conn| -> Result<_, LoginError> { Ok(limiter::clear(conn, &name, ip)?) }).await?;
            Ok(user)
        }
        _ => {
            let name = username.to_string();
            db.with_writer(move |conn| -> Result<_, LoginError> {
                Ok(limiter::record_failure(conn, &name, ip, now_ms())?)
            })
            .await?;
            tracing::info!(ip = ?ip, "failed login");
            Err(LoginError::InvalidCredentials)
        }
    }
}

/// Failed attempts allowed per username and address within [`WINDOW_MS`].
pub const MAX_FAILURES: i64 = 5;
pub const WINDOW_MS: i64 = 5 * 60 * 1000;

/// Failed logins, kept in the database (`login_failures`) so that every server process on
/// it (several behind a proxy on one PostgreSQL) and a restarted one count the same
/// attempts. A failure costs a write, after ~50 ms of argon2 taken two at a time: a flood of
/// guesses writes a few dozen small rows a second, and rows older than the window go as new
/// ones arrive, so the table never holds more than a window's worth.
pub mod limiter {
    use super::*;

    fn key(username: &str, ip: Option<IpAddr>) -> (String, String) {
        (username.to_lowercase(), ip.map(|a| a.to_string()).unwrap_or_default())
    }

    /// `Some(seconds to wait)` when the key used up its attempts within the window at `now_ms`.
    pub fn check(
        conn: &Connection,
        username: &str,
        ip: Option<IpAddr>,
        now_ms: i64,
    ) -> crate::sql::Result<Option<u64>> {
        let (name, address) = key(username, ip);
        // The oldest of the last MAX_FAILURES failures inside the window: the limit lasts
        // until it leaves the window.
        let oldest: Option<i64> = conn
            .query_row(
                "SELECT at_ms FROM login_failures WHERE username = ?1 AND address = ?2 AND at_ms > ?3
                 ORDER BY at_ms DESC LIMIT 1 OFFSET ?4",
                params![name, address, now_ms - WINDOW_MS, MAX_FAILURES - 1],
                |r| r.get(0),
            )
            .optional()?;
        Ok(oldest.map(|t| ((t + WINDOW_MS - now_ms).max(0) as u64).div_ceil(1000).max(1)))
    }

    /// Counts a failed attempt, and forgets every failure older than the window.
    pub fn record_failure(
        conn: &Connection,
        username: &str,
        ip: Option<IpAddr>,
        now_ms: i64,
    ) -> crate::sql::Result<()> {
        let (name, address) = key(username, ip);
        conn.execute("DELETE FROM login_failures WHERE at_ms <= ?1", params![now_ms - WINDOW_MS])?;
        conn.execute(
            "INSERT INTO login_failures (username, address, at_ms) VALUES (?1, ?2, ?3)",
            params![name, address, now_ms],
        )?;
        Ok(())
    }

    /// A successful login clears the key's failures.
    pub fn clear(conn: &Connection, username: &str, ip: Option<IpAddr>) -> crate::sql::Result<()> {
        let (name, address) = key(username, ip);
        conn.execute("DELETE FROM login_failures WHERE username = ?1 AND address = ?2", params![name, address])?;
        Ok(())
    }
}

/// Unix milliseconds, the limiter's clock (shared by processes on one database).
fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
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

    fn db() -> Connection {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(include_str!("../migrations/015_login_failures.sql")).unwrap();
        Connection::from(conn)
    }

    #[test]
    fn five_failures_block_the_key_until_the_oldest_leaves_the_window() {
        let conn = db();
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let t0 = 1_800_000_000_000;
        for k in 0..MAX_FAILURES {
            assert_eq!(limiter::check(&conn, "Zhang", ip, t0 + k).unwrap(), None);
            limiter::record_failure(&conn, "Zhang", ip, t0 + k).unwrap();
        }
        assert_eq!(limiter::check(&conn, "zhang", ip, t0 + 10).unwrap(), Some(300), "case-insensitive");
        assert_eq!(limiter::check(&conn, "zhang", Some(IpAddr::from([10, 0, 0, 2])), t0).unwrap(), None, "per address");
        assert_eq!(limiter::check(&conn, "zhang", None, t0).unwrap(), None);
        assert_eq!(limiter::check(&conn, "zhang", ip, t0 + WINDOW_MS - 1_500).unwrap(), Some(2));
        assert_eq!(limiter::check(&conn, "zhang", ip, t0 + WINDOW_MS).unwrap(), None, "the oldest left the window");
        limiter::clear(&conn, "ZHANG", ip).unwrap();
        assert_eq!(limiter::check(&conn, "zhang", ip, t0 + 10).unwrap(), None, "a login clears the key");
    }

    #[test]
    fn failures_older_than_the_window_are_deleted_as_new_ones_arrive() {
        let conn = db();
        let t0 = 1_800_000_000_000;
        for i in 0..1_000 {
            limiter::record_failure(&conn, &format!("user{i}"), None, t0).unwrap();
        }
        limiter::record_failure(&conn, "late", None, t0 + WINDOW_MS).unwrap();
        let rows: i64 = conn.query_row("SELECT count(*) FROM login_failures", [], |r| r.get(0)).unwrap();
        assert_eq!(rows, 1, "only the failure inside the window is kept");
    }
}
