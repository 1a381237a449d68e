//! Admin endpoints (JSON): users and devices within the admin's own org unit.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use ohassist_core::sync::wire::ErrorBody;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::{AppState, DbCalls};
use crate::accounts::{self, Caller, Device, DeviceStatus, NewUser, Role, User};
use crate::db::now;
use crate::scope;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_user, list_users))
        .routes(routes!(list_devices))
        .routes(routes!(revoke_device))
        .routes(routes!(mark_lost))
        .routes(routes!(retire))
}

fn require_admin(caller: &Caller) -> ApiResult<()> {
    if caller.role == Role::Admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CreateUser {
    /// Letters, digits, `.`, `_` and `-`.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,64}$")]
    pub username: String,
    /// 1 to 100 characters, not beginning or ending with a space (`char::is_whitespace`: kept as sent).
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]([\s\S]*[^\t\n\u000b\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000])?$"
    )]
    pub display_name: String,
    #[schema(value_type = Role)]
    pub role: String,
    /// A 6-digit division code inside the admin's own unit.
    #[schema(pattern = "^[0-9]{6}$")]
    pub org_unit: String,
    /// 8 to 256 characters; generated (and returned once) when absent.
    #[serde(default)]
    #[schema(min_length = 8, max_length = 256)]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedUser {
    pub user: User,
    /// The generated password, shown once; absent when the request chose one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Longest password an admin may set (the login reads at most 1024 bytes: 256 four-byte characters).
const MAX_PASSWORD_CHARS: usize = 256;

/// Creates a user inside the admin's unit. Without a `password`, one is generated and answered once.
#[utoipa::path(post, path = "/api/v1/admin/users", tag = "admin", operation_id = "createUser",
    security(("bearer" = [])),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = CreatedUser),
        (status = 409, description = "The username is taken (`already_exists`)", body = ErrorBody),
        (status = 422, description = "A field refused (`invalid_input`, `field` names it)", body = ErrorBody),
    ))]
async fn create_user(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    require_admin(&caller)?;
    let role = Role::parse(&req.role).ok_or_else(|| ApiError::InvalidInput {
        field: "role",
        reason_zh: "角色须为 inspector、supervisor、admin 或 relay".into(),
        reason_en: "role must be inspector, supervisor, admin or relay".into(),
    })?;
    // Kept exactly as sent, so the document's patterns are the rules: no trimming here.
    if req.display_name.starts_with(char::is_whitespace) || req.display_name.ends_with(char::is_whitespace) {
        return Err(ApiError::InvalidInput {
            field: "display_name",
            reason_zh: "姓名的首尾不能是空格".into(),
            reason_en: "the display name must not begin or end with a space".into(),
        });
    }
    if req.password.as_ref().is_some_and(|p| p.chars().count() > MAX_PASSWORD_CHARS) {
        return Err(ApiError::InvalidInput {
            field: "password",
            reason_zh: format!("密码最长 {MAX_PASSWORD_CHARS} 个字符"),
            reason_en: format!("a password has at most {MAX_PASSWORD_CHARS} characters"),
        });
    }
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
                username: &req.username,
                display_name: &req.display_name,
                role,
                org_unit: &req.org_unit,
                password: &password,
            };
            accounts::create_user(conn, &new, now()).map_err(ApiError::from)
        })
        .await?;
    tracing::info!(admin = %caller.user_id, user = %user.id, role = user.role.as_str(), "user created");
    Ok((StatusCode::CREATED, Json(CreatedUser { user, password: generated })))
}

/// The users of the admin's unit.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", operation_id = "listUsers",
    security(("bearer" = [])),
    responses((status = 200, description = "Users", body = Vec<User>)))]
async fn list_users(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<User>>> {
    require_admin(&caller)?;
    let unit = caller.org_unit.clone();
    Ok(Json(state.db.read(move |conn| Ok(accounts::list_users(conn, &unit)?)).await?))
}

/// The devices of the users of the admin's unit, with what each last reported.
#[utoipa::path(get, path = "/api/v1/admin/devices", tag = "admin", operation_id = "listDevices",
    security(("bearer" = [])),
    responses((status = 200, description = "Devices", body = Vec<Device>)))]
async fn list_devices(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<Device>>> {
    require_admin(&caller)?;
    let unit = caller.org_unit.clone();
    Ok(Json(state.db.read(move |conn| Ok(accounts::list_devices(conn, &unit, now())?)).await?))
}

/// Revokes a device: its token stops working and it may not log in again.
#[utoipa::path(post, path = "/api/v1/admin/devices/{id}/revoke", tag = "admin", operation_id = "revokeDevice",
    security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9._-]{1,128}$", description = "The device id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 404, description = "No such device in the admin's unit (`not_found`)", body = ErrorBody),
        (status = 409, description = "The device this request comes from (`own_device`)", body = ErrorBody),
    ))]
async fn revoke_device(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    require_admin(&caller)?;
    let Path(device_id) = path.map_err(|e| ApiError::MalformedBody(e.body_text()))?;
    if device_id == caller.device_id {
        return Err(ApiError::OwnDevice);
    }
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
            accounts::revoke_device(conn, &device, now()).map_err(ApiError::from)
        })
        .await?;
    tracing::info!(admin = %caller.user_id, device = %device_id, "device revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// Marks a device lost: every later request of it is 410 `device_lost`, and the phone erases its store.
#[utoipa::path(post, path = "/api/v1/admin/devices/{id}/lost", tag = "admin", operation_id = "markDeviceLost",
    security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9._-]{1,128}$", description = "The device id")),
    responses(
        (status = 204, description = "Marked lost"),
        (status = 404, description = "No such device in the admin's unit (`not_found`)", body = ErrorBody),
        (status = 409, description = "The device this request comes from (`own_device`)", body = ErrorBody),
    ))]
async fn mark_lost(
    state: State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult<StatusCode> {
    set_status(state, caller, path, DeviceStatus::Lost).await
}

/// Retires a device: it pushes what it holds, then erases itself; pulls and downloads are refused.
#[utoipa::path(post, path = "/api/v1/admin/devices/{id}/retire", tag = "admin", operation_id = "retireDevice",
    security(("bearer" = [])),
    params(("id" = String, Path, pattern = r"^[A-Za-z0-9._-]{1,128}$", description = "The device id")),
    responses(
        (status = 204, description = "Retired"),
        (status = 404, description = "No such device in the admin's unit (`not_found`)", body = ErrorBody),
        (status = 409, description = "The device this request comes from (`own_device`)", body = ErrorBody),
    ))]
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
    if device_id == caller.device_id {
        return Err(ApiError::OwnDevice);
    }
    let (unit, device) = (caller.org_unit.clone(), device_id.clone());
    state.db.write(move |conn| set_device_status_in_unit(conn, &unit, &device, status)).await?;
    tracing::info!(admin = %caller.user_id, device = %device_id, status = status.as_str(), "device status set");
    Ok(StatusCode::NO_CONTENT)
}

/// Sets a device's status if it belongs to a user inside `unit`; any other device is answered
/// as unknown (no probing). Shared by this API and the console's devices page.
pub fn set_device_status_in_unit(
    conn: &crate::sql::Connection,
    unit: &str,
    device_id: &str,
    status: DeviceStatus,
) -> ApiResult<()> {
    match accounts::device_owner_unit(conn, device_id)? {
        Some(owner) if scope::covers(conn, unit, &owner)? => {}
        _ => return Err(ApiError::NotFound),
    }
    accounts::set_device_status(conn, device_id, status, now()).map_err(ApiError::from)
}
