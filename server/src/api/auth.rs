//! Login and logout. A device logs in once with a password and keeps a bearer token for
//! 90 days; failed logins are limited per username and client address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use ohassist_core::sync::wire::{LoginRequest, LoginResponse};

use super::error::{ApiError, ApiResult};
use super::extract::{ClientIp, JsonBody};
use super::AppState;
use crate::accounts::{self, Caller};
use crate::db::now;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/login", post(login)).route("/api/v1/logout", post(logout))
}

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
        // Forget keys whose failures all expired, so the map cannot grow without bound.
        if map.len() > 10_000 {
            map.retain(|_, times| times.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        map.entry(Self::key(username, ip)).or_default().push_back(now);
    }

    pub fn clear(&self, username: &str, ip: Option<IpAddr>) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(&Self::key(username, ip));
    }
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<LoginResponse>> {
    let device_id = req.device_id.trim().to_string();
    if device_id.is_empty() || device_id.chars().count() > MAX_DEVICE_ID_CHARS {
        return Err(ApiError::MalformedBody(format!("device_id must be 1 to {MAX_DEVICE_ID_CHARS} characters")));
    }
    let device_name: String = req.device_name.trim().chars().take(MAX_DEVICE_NAME_CHARS).collect();
    state
        .login_limiter
        .check(&req.username, ip, Instant::now())
        .map_err(|retry_after_secs| ApiError::RateLimited { retry_after_secs })?;

    let (username, lookup_device) = (req.username.clone(), device_id.clone());
    let (user, revoked, status) = state
        .db
        .read(move |conn| {
            Ok((
                accounts::find_user(conn, &username)?,
                accounts::is_revoked(conn, &lookup_device)?,
                accounts::device_status(conn, &lookup_device)?,
            ))
        })
        .await?;
    // Only the phone holding the store knows its device id: told before the password is
    // checked, so that a lost phone erases itself even when someone else tries to log in on it.
    if status == Some(accounts::DeviceStatus::Lost) {
        tracing::warn!(device = %device_id, "login from a device marked lost; told to erase");
        return Err(ApiError::DeviceLost);
    }
    // Unknown users are checked against a dummy hash, so they cost as long as a wrong password.
    let hash = user.as_ref().map_or_else(|| accounts::dummy_hash().to_string(), |(_, h)| h.clone());
    let password = req.password;
    let ok = tokio::task::spawn_blocking(move || accounts::verify_password(&password, &hash)).await?;
    let user = match user {
        Some((user, _)) if ok && !user.disabled => user,
        _ => {
            state.login_limiter.record_failure(&req.username, ip, Instant::now());
            tracing::info!(ip = ?ip, "failed login");
            return Err(ApiError::InvalidCredentials);
        }
    };
    state.login_limiter.clear(&req.username, ip);
    // Told only to someone who knows the password, so it reveals nothing to a guesser.
    if revoked {
        return Err(ApiError::DeviceRevoked);
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
}
