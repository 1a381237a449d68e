//! Login and logout. A device logs in once with a password and keeps a bearer token for
//! 90 days; failed logins are limited per username and client address. The password check
//! and the limit are the console's too (`crate::login`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ohassist_core::sync::wire::{LoginRequest, LoginResponse, RenewRequest};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ClientIp, JsonBody};
use super::{AppState, DbCalls};
use crate::accounts::{self, Caller};
use crate::db::now;
use crate::login;
use ohassist_core::sync::wire::ErrorBody;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(renew))
        .routes(routes!(logout))
        // A login body is a few hundred bytes: refuse more before reading it.
        .layer(axum::extract::DefaultBodyLimit::max(MAX_LOGIN_BODY))
}

/// Largest login body read.
pub const MAX_LOGIN_BODY: usize = 16 * 1024;
const MAX_DEVICE_ID_CHARS: usize = 128;
const MAX_DEVICE_NAME_CHARS: usize = 100;

/// Device ids: what the app chose at install, of a fixed character set and length.
pub fn valid_device_id(id: &str) -> bool {
    (1..=MAX_DEVICE_ID_CHARS).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
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
    let user = login::authenticate(&state.db, &req.username, &req.password, ip).await?;
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

/// Renews a relay account's token (a lower server's, `ohassist serve --upstream`) before it
/// expires, without its password: the token the caller chose replaces the one it sent, for
/// another 90 days, and the old one stops working. A phone logs in again instead.
#[utoipa::path(post, path = "/api/v1/login/renew", tag = "auth", operation_id = "renewToken",
    security(("bearer" = [])),
    request_body = RenewRequest,
    responses(
        (status = 200, description = "Renewed: the token sent in the body, and its expiry", body = LoginResponse),
        (status = 401, description = "No live token (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a relay account (`forbidden`)", body = ErrorBody),
        (status = 422, description = "A `token` that is not 64 lowercase hex digits (`invalid_input`)", body = ErrorBody),
    ))]
async fn renew(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<RenewRequest>,
) -> ApiResult<Json<LoginResponse>> {
    if caller.role != accounts::Role::Relay {
        return Err(ApiError::Forbidden);
    }
    if req.token.len() != 64 || !req.token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(ApiError::InvalidInput {
            field: "token",
            reason_zh: "新令牌须为 64 位小写十六进制".into(),
            reason_en: "the new token must be 64 lowercase hex digits".into(),
        });
    }
    let hash = accounts::token_hash(&req.token);
    let (user_id, device) = (caller.user_id.clone(), caller.device_id.clone());
    let expires_at = state
        .db
        .write(move |conn| Ok(crate::relay::renew_device_token(conn, &user_id, &device, &hash, now())?))
        .await?;
    tracing::info!(user = %caller.user_id, device = %caller.device_id, "token renewed");
    Ok(Json(LoginResponse {
        token: req.token,
        user_id: caller.user_id,
        display_name: caller.display_name,
        role: caller.role.as_str().to_string(),
        org_unit: caller.org_unit,
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
