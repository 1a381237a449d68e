//! Browser sessions: the session cookie, the `web_sessions` rows behind it, the CSRF token
//! every form echoes, and the language choice. The cookie is HttpOnly and SameSite=Strict,
//! and Secure when the console is served over TLS ([`set_secure_cookies`]); the database
//! keeps only the SHA-256 of its secret (`crate::login`), so a session is revoked by
//! deleting nothing but setting `revoked_at` (logout, password reset).

use std::sync::atomic::{AtomicBool, Ordering};

use super::WebError;
use crate::accounts::{Caller, Role};
use crate::api::{AppState, DbCalls};
use crate::db::now;
use crate::login;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

pub const SESSION_COOKIE: &str = "ohs_session";
pub const LOGIN_CSRF_COOKIE: &str = "ohs_login";
pub const LANG_COOKIE: &str = "lang";
/// The sessions themselves are kept by [`crate::login`]; these names stay here for the
/// console's code and the benchmarks.
pub use crate::login::{
    create_session as create, random_token, revoke_session as revoke, revoke_user_sessions as revoke_user,
    SESSION_LIFETIME_SECS,
};

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

/// Compares two secrets in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
        let now = now();
        let found = state
            .db
            .read(move |conn| {
                let Some((caller, csrf)) = login::session_caller(conn, &secret, now)? else { return Ok(None) };
                let unit_name = crate::units::Units::load(conn)
                    .map(|u| u.title_name(&caller.org_unit))
                    .unwrap_or_else(|_| caller.org_unit.clone());
                Ok(Some(Session { caller, csrf, lang, unit_name }))
            })
            .await
            .map_err(WebError::Api)?;
        match found {
            Some(s) if s.caller.role.uses_console() => Ok(s),
            _ => Err(WebError::LoginRequired),
        }
    }
}
