//! Login and logout. A device logs in once with a password and keeps a bearer token for
//! 90 days; failed logins are limited per username and client address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ohassist_core::sync::wire::{LoginRequest, LoginResponse};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ClientIp, JsonBody};
use super::{AppState, DbCalls};
use crate::accounts::{self, Caller};
use crate::db::now;
use ohassist_core::sync::wire::ErrorBody;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        // A login body is a few hundred bytes: refuse more before reading it.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_LOGIN_BODY))
}

/// Largest login body read.
pub const MAX_LOGIN_BODY: usize = 16 * 1024;
/// Longest username and password accepted, checked before anything is kept or hashed.
pub const MAX_USERNAME_CHARS: usize = 64;
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// Password hashes computed at once: argon2 takes ~50 ms of a core and 19 MiB each, so a
/// burst of logins waits here instead of starving pushes of CPU and memory.
static ARGON2_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Checks a username and password, for the API and the console alike: lengths first, then
/// the failure limit, then argon2 (off the async threads, outside any database lock, a few at
/// a time). Unknown users cost as long as a wrong password. Returns the user (enabled).
pub async fn authenticate(
    state: &AppState,
    username: &str,
    password: &str,
    ip: Option<IpAddr>,
) -> ApiResult<accounts::User> {
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(ApiError::InvalidInput {
            field: "username",
            reason_zh: format!("用户名最长 {MAX_USERNAME_CHARS} 个字符"),
            reason_en: format!("a username has at most {MAX_USERNAME_CHARS} characters"),
        });
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::InvalidInput {
            field: "password",
            reason_zh: format!("密码最长 {MAX_PASSWORD_BYTES} 字节"),
            reason_en: format!("a password has at most {MAX_PASSWORD_BYTES} bytes"),
        });
    }
    state
        .login_limiter
        .check(username, ip, Instant::now())
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;
    let name = username.to_string();
    let user = state.db.read(move |conn| Ok(accounts::find_user(conn, &name)?)).await?;
    // Unknown users are checked against a dummy hash, so they cost as long as a wrong password.
    let hash = user.as_ref().map_or_else(|| accounts::dummy_hash().to_string(), |(_, h)| h.clone());
    let password = password.to_string();
    let permit = ARGON2_PERMITS.acquire().await.map_err(ApiError::internal)?;
    let ok = tokio::task::spawn_blocking(move || accounts::verify_password(&password, &hash)).await?;
    drop(permit);
    match user {
        Some((user, _)) if ok && !user.disabled => {
            state.login_limiter.clear(username, ip);
            Ok(user)
        }
        _ => {
            state.login_limiter.record_failure(username, ip, Instant::now());
            tracing::info!(ip = ?ip, "failed login");
            Err(ApiError::InvalidCredentials)
        }
    }
}

/// Device ids: what the app chose at install, of a fixed character set and length.
pub fn valid_device_id(id: &str) -> bool {
    (1..=MAX_DEVICE_ID_CHARS).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Most (username, address) keys the limiter keeps.
pub const MAX_LIMITER_KEYS: usize = 10_000;
/// Failed attempts allowed per username and address within [`WINDOW`].
pub const MAX_FAILURES: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(5 * 60);
const MAX_DEVICE_ID_CHARS: usize = 128;
const MAX_DEVICE_NAME_CHARS: usize = 100;

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

/// Logs a device in: a bearer token for 90 days. Five failed attempts per username and address
/// within five minutes lock that pair out for the rest of the window.
#[utoipa::path(post, path = "/api/v1/login", tag = "auth", operation_id = "login",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = LoginResponse),
        (status = 401, description = "Wrong username or password (`invalid_credentials`)", body = ErrorBody),
        (status = 403, description = "The device is revoked (`device_revoked`) or in use by another user's login \
(`device_taken`)", body = ErrorBody),
        (status = 410, description = "The device was marked lost (`device_lost`)", body = ErrorBody),
        (status = 413, description = "A body over 16 KiB (`too_large`)", body = ErrorBody),
        (status = 422, description = "A `device_id`, `username` or `password` of the wrong form (`invalid_input`)",
            body = ErrorBody),
        (status = 429, description = "Too many failed logins (`rate_limited`), with `Retry-After`", body = ErrorBody,
            headers(("retry-after" = u64, description = "Seconds to wait"))),
    ))]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let device_id = req.device_id.trim().to_string();
    if !valid_device_id(&device_id) {
        return Err(ApiError::InvalidInput {
            field: "device_id",
            reason_zh: format!("设备编号须为 1 至 {MAX_DEVICE_ID_CHARS} 个字母、数字或 - _ ."),
            reason_en: format!("device_id must be 1 to {MAX_DEVICE_ID_CHARS} letters, digits or - _ ."),
        });
    }
    let device_name: String = req.device_name.trim().chars().take(MAX_DEVICE_NAME_CHARS).collect();
    // Only the phone holding the store knows its device id: told before the password is
    // checked, so that a lost phone erases itself even when someone else tries to log in on it.
    let lookup_device = device_id.clone();
    let status = state.db.read(move |conn| Ok(accounts::device_status(conn, &lookup_device)?)).await?;
    if status == Some(accounts::DeviceStatus::Lost) {
        tracing::warn!(device = %device_id, "login from a device marked lost; told to erase");
        return Err(ApiError::DeviceLost);
    }
    let user = authenticate(&state, &req.username, &req.password, ip).await?;
    let lookup_device = device_id.clone();
    let (revoked, bound_to) = state
        .db
        .read(move |conn| {
            Ok((accounts::is_revoked(conn, &lookup_device)?, accounts::device_binding(conn, &lookup_device)?))
        })
        .await?;
    // Told only to someone who knows the password, so it reveals nothing to a guesser.
    if revoked {
        return Err(ApiError::DeviceRevoked);
    }
    // A device id in use by another user's live login is theirs: taking it over would
    // hide that device's changes from the new holder's pulls and log the owner out.
    if bound_to.is_some_and(|owner| owner != user.id) {
        return Err(ApiError::DeviceTaken);
    }

    let (token, token_hash) = accounts::new_token();
    let (user_id, device) = (user.id.clone(), device_id.clone());
    let expires_at = state
        .db
        .write(move |conn| Ok(accounts::issue_token(conn, &user_id, &device, &device_name, &token_hash, now())?))
        .await?;
    tracing::info!(user = %user.id, device = %device_id, "login");
    Ok(Json(LoginResponse {
        token,
        user_id: user.id,
        display_name: user.display_name,
        role: user.role.as_str().to_string(),
        org_unit: user.org_unit,
        expires_at,
    }))
}

/// Ends the caller's login on this device.
#[utoipa::path(post, path = "/api/v1/logout", tag = "auth", operation_id = "logout",
    security(("bearer" = [])),
    responses((status = 204, description = "Logged out")))]
async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    let device = caller.device_id.clone();
    state.db.write(move |conn| Ok(accounts::clear_token(conn, &device)?)).await?;
    tracing::info!(user = %caller.user_id, device = %caller.device_id, "logout");
    Ok(StatusCode::NO_CONTENT)
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
