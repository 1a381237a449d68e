//! `POST /api/v1/device/report`: at each sync a phone says what it still holds unsynced, and
//! hears whether an admin retired it. (A lost device never gets here: the caller extractor
//! answers it `device_lost`.)

use axum::extract::State;
use axum::Json;
use ohassist_core::sync::wire::{DeviceReport, DeviceReportResponse, ErrorBody};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::JsonBody;
use super::{AppState, DbCalls};
use crate::accounts::{self, Caller};
use crate::db::now;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(report))
}

/// Counts are kept as SQLite integers: past i64 they are not counts but garbage. `in_pull`:
/// the report is a pull's `pending`, and the field is named so.
pub(super) fn check(report: &DeviceReport, in_pull: bool) -> ApiResult<()> {
    let fields = [
        (if in_pull { "pending.pending_changes" } else { "pending_changes" }, report.pending_changes),
        (if in_pull { "pending.pending_attachments" } else { "pending_attachments" }, report.pending_attachments),
    ];
    for (field, n) in fields {
        if i64::try_from(n).is_err() {
            return Err(ApiError::InvalidInput {
                field,
                reason_zh: format!("{field} 超出范围"),
                reason_en: format!("{field} is out of range"),
            });
        }
    }
    Ok(())
}

/// What the phone still holds unsynced; the answer tells it whether it was retired.
#[utoipa::path(post, path = "/api/v1/device/report", tag = "device", operation_id = "deviceReport",
    security(("bearer" = [])),
    request_body = DeviceReport,
    responses(
        (status = 200, description = "Recorded; the device's status", body = DeviceReportResponse),
        (status = 422, description = "A count out of range (`invalid_input`)", body = ErrorBody),
    ))]
async fn report(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<DeviceReport>,
) -> ApiResult<Json<DeviceReportResponse>> {
    check(&req, false)?;
    let device = caller.device_id.clone();
    let status = state
        .db
        .write(move |conn| {
            accounts::record_report(conn, &device, req.pending_changes, req.pending_attachments, now())?;
            Ok(accounts::device_status(conn, &device)?)
        })
        .await?
        .unwrap_or(accounts::DeviceStatus::Active);
    Ok(Json(DeviceReportResponse { status }))
}
