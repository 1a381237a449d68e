//! Admin endpoints (JSON): users and devices within the admin's own org unit.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::AppState;
use crate::accounts::{self, AccountError, Caller, Device, DeviceStatus, NewUser, Role, User};
use crate::db::now;
use crate::scope;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/users", post(create_user).get(list_users))
        .route("/api/v1/admin/devices", get(list_devices))
        .route("/api/v1/admin/devices/{id}/revoke", post(revoke_device))
        .route("/api/v1/admin/devices/{id}/lost", post(mark_lost))
        .route("/api/v1/admin/devices/{id}/retire", post(retire))
}

fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

#[derive(Debug, Deserialize)]
pub struct CreateUser {
    pub username: String,
    pub display_name: String,
    pub role: String,
    pub org_unit: String,
    /// Generated (and returned once) when absent.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct CreatedUser {
    pub user: User,
    /// The generated password, shown once; absent when the request chose one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

fn account_error(e: AccountError) -> ApiError {
    let invalid =
        |field, zh: &str, en: String| ApiError::InvalidInput { field, reason_zh: zh.to_string(), reason_en: en };
    match e {
        AccountError::Username => invalid("username", "用户名须为 1–64 位字母、数字或 . _ -", e.to_string()),
        AccountError::DisplayName => invalid("display_name", "姓名须为 1–100 个字符", e.to_string()),
        AccountError::OrgUnit => invalid("org_unit", "所属单位须为 6 位行政区划代码", e.to_string()),
        AccountError::WeakPassword => invalid("password", "密码至少 8 位", e.to_string()),
        AccountError::UsernameTaken => ApiError::AlreadyExists("username"),
        AccountError::NoSuchUser | AccountError::NoSuchDevice => ApiError::NotFound,
        AccountError::Hash(_) | AccountError::Storage(_) => ApiError::internal(e),
    }
}

async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    require_admin(&caller)?;
    let role = Role::parse(&req.role).ok_or_else(|| ApiError::InvalidInput {
        field: "role",
        reason_zh: "角色须为 inspector、supervisor 或 admin".into(),
        reason_en: "role must be inspector, supervisor or admin".into(),
    })?;
    let generated = req.password.is_none().then(accounts::generate_password);
    let password = req.password.clone().or_else(|| generated.clone()).unwrap_or_default();
    let unit = caller.org_unit.clone();
    let user = state
        .db
        .write(move |conn| {
            if scope::is_division_code(&req.org_unit) && !scope::covers(conn, &unit, &req.org_unit)? {
                return Err(ApiError::Forbidden);
            }
            let new = NewUser {
                username: req.username.trim(),
                display_name: &req.display_name,
                role,
                org_unit: &req.org_unit,
                password: &password,
            };
            accounts::create_user(conn, &new, now()).map_err(account_error)
        })
        .await?;
    tracing::info!(admin = %caller.user_id, user = %user.id, role = user.role.as_str(), "user created");
    Ok((StatusCode::CREATED, Json(CreatedUser { user, password: generated })))
}

async fn list_users(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<User>>> {
    require_admin(&caller)?;
    let unit = caller.org_unit.clone();
    Ok(Json(state.db.read(move |conn| Ok(accounts::list_users(conn, &unit)?)).await?))
}

async fn list_devices(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Device>>> {
    require_admin(&caller)?;
    let unit = caller.org_unit.clone();
    Ok(Json(state.db.read(move |conn| Ok(accounts::list_devices(conn, &unit, now())?)).await?))
}

async fn revoke_device(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    let Path(device_id) = path.map_err(|e| ApiError::MalformedBody(e.body_text()))?;
    let unit = caller.org_unit.clone();
    let device = device_id.clone();
    state
        .db
        .write(move |conn| {
            // A device outside the admin's unit is answered as unknown: no probing.
            match accounts::device_owner_unit(conn, &device)? {
                Some(owner) if scope::covers(conn, &unit, &owner)? => {}
                _ => return Err(ApiError::NotFound),
            }
            accounts::revoke_device(conn, &device, now()).map_err(account_error)
        })
        .await?;
    tracing::info!(admin = %caller.user_id, device = %device_id, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

async fn mark_lost(
    state: State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    set_status(state, caller, path, DeviceStatus::Lost).await
}

async fn retire(
    state: State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    set_status(state, caller, path, DeviceStatus::Retired).await
}

async fn set_status(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    status: DeviceStatus,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    let Path(device_id) = path.map_err(|e| ApiError::MalformedBody(e.body_text()))?;
    let (unit, device) = (caller.org_unit.clone(), device_id.clone());
    state.db.write(move |conn| set_device_status_in_unit(conn, &unit, &device, status)).await?;
    tracing::info!(admin = %caller.user_id, device = %device_id, status = status.as_str(), "device status set");
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a device's status if it belongs to a user inside `unit`; any other device is answered
/// as unknown (no probing). Shared by this API and the console's devices page.
pub fn set_device_status_in_unit(
    conn: &rusqlite::Connection,
    unit: &str,
    device_id: &str,
    status: DeviceStatus,
) -> ApiResult<()> {
    match accounts::device_owner_unit(conn, device_id)? {
        Some(owner) if scope::covers(conn, unit, &owner)? => {}
        _ => return Err(ApiError::NotFound),
    }
    accounts::set_device_status(conn, device_id, status, now()).map_err(account_error)
}
