//! Browser sessions: the session cookie, the `web_sessions` rows behind it, the CSRF token
//! every form echoes, and the language choice. The cookie is HttpOnly and SameSite=Strict,
//! and Secure when the console is served over TLS ([`set_secure_cookies`]); the database
//! keeps only the SHA-256 of its secret, so a session is revoked by deleting nothing but
//! setting `revoked_at` (logout, password reset).

use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use rand::Rng;
use rusqlite::{params, Connection, OptionalExtension};

use super::WebError;
use crate::accounts::{self, Caller, Role};
use crate::api::{AppState, DbCalls};
use crate::db::now;
use crate::records::WEB_DEVICE;

pub const SESSION_COOKIE: &str = "ohs_session";
pub const LOGIN_CSRF_COOKIE: &str = "ohs_login";
pub const LANG_COOKIE: &str = "lang";
/// A session lasts a working day; then the supervisor logs in again.
pub const SESSION_LIFETIME_SECS: i64 = 12 * 3600;

static SECURE_COOKIES: AtomicBool = AtomicBool::new(false);

/// Marks cookies `Secure`: call once when the server listens with TLS.
pub fn set_secure_cookies(on: bool) {
    SECURE_COOKIES.store(on, Ordering::Relaxed);
}

/// A `Set-Cookie` value with the console's attributes.
pub fn cookie(name: &str, value: &str, max_age: Option<i64>, headers: &HeaderMap) -> String {
    // Behind a TLS-terminating proxy the forwarded scheme says so.
    let tls = SECURE_COOKIES.load(Ordering::Relaxed)
        || headers.get("x-forwarded-proto").and_then(|v| v.to_str().ok()) == Some("https");
    let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    if tls {
        c.push_str("; Secure");
    }
    c
}

/// The value of cookie `name` in the request, if any.
pub fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn random_token() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Creates a session for `user_id`; returns the cookie secret.
pub fn create(conn: &Connection, user_id: &str, now: i64) -> rusqlite::Result<String> {
    let secret = random_token();
    conn.execute(
        "INSERT INTO web_sessions (id_hash, user_id, csrf_token, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![accounts::token_hash(&secret), user_id, random_token(), now, now + SESSION_LIFETIME_SECS],
    )?;
    Ok(secret)
}

pub fn revoke(conn: &Connection, secret: &str, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE web_sessions SET revoked_at = coalesce(revoked_at, ?2) WHERE id_hash = ?1",
        params![accounts::token_hash(secret), now],
    )?;
    Ok(())
}

/// Revokes every session of a user (after a password reset).
pub fn revoke_user(conn: &Connection, user_id: &str, now: i64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE web_sessions SET revoked_at = coalesce(revoked_at, ?2) WHERE user_id = ?1",
        params![user_id, now],
    )?;
    Ok(())
}

/// The console's language: Chinese unless English was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// `?lang=` first (the link that switches), then the cookie.
    pub fn of(parts: &Parts) -> Lang {
        let from_query =
            parts.uri.query().and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("lang="))).map(str::to_string);
        match from_query.or_else(|| read_cookie(&parts.headers, LANG_COOKIE)).as_deref() {
            Some("en") => Lang::En,
            _ => Lang::Zh,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Lang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Lang::of(parts))
    }
}

/// A logged-in supervisor or admin, by session cookie.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    pub lang: Lang,
    /// The caller's org unit by name (`沈阳市`), for the page header.
    pub unit_name: String,
}

impl Session {
    /// Refuses a form whose CSRF token is not this session's: nothing is changed.
    pub fn check_csrf(&self, token: &str) -> Result<(), WebError> {
        if same_secret(token, &self.csrf) {
            Ok(())
        } else {
            Err(WebError::Csrf)
        }
    }

    pub fn is_admin(&self) -> bool {
        self.caller.role == Role::Admin
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = WebError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let lang = Lang::of(parts);
        let secret = read_cookie(&parts.headers, SESSION_COOKIE).ok_or(WebError::LoginRequired)?;
        let hash = accounts::token_hash(&secret);
        let now = now();
        let found = state
            .db
            .read(move |conn| {
                Ok(conn
                    .query_row(
                        "SELECT u.id, u.username, u.display_name, u.role, u.org_unit, s.csrf_token
                         FROM web_sessions s JOIN users u ON u.id = s.user_id
                         WHERE s.id_hash = ?1 AND s.revoked_at IS NULL AND s.expires_at > ?2 AND u.disabled = 0",
                        params![hash, now],
                        |r| {
                            let role: String = r.get(3)?;
                            Ok(Session {
                                caller: Caller {
                                    user_id: r.get(0)?,
                                    username: r.get(1)?,
                                    display_name: r.get(2)?,
                                    role: Role::parse(&role).unwrap_or(Role::Inspector),
                                    org_unit: r.get(4)?,
                                    device_id: WEB_DEVICE.to_string(),
                                    last_seen: None,
                                    synced_at: None,
                                },
                                csrf: r.get(5)?,
                                lang,
                                unit_name: String::new(),
                            })
                        },
                    )
                    .optional()?
                    .map(|mut s: Session| {
                        s.unit_name = crate::units::Units::load(conn)
                            .map(|u| u.title_name(&s.caller.org_unit))
                            .unwrap_or_else(|_| s.caller.org_unit.clone());
                        s
                    }))
            })
            .await
            .map_err(WebError::Api)?;
        match found {
            Some(s) if s.caller.role != Role::Inspector => Ok(s),
            _ => Err(WebError::LoginRequired),
        }
    }
}
