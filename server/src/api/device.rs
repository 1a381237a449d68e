//! `POST /api/v1/device/report`: at each sync a phone says what it still holds unsynced, and
//! hears whether an admin retired it. (A lost device never gets here: the caller extractor
//! answers it `device_lost`.)

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use ohassist_core::sync::wire::{DeviceReport, DeviceReportResponse};

use super::error::ApiResult;
use super::extract::JsonBody;
use super::AppState;
use crate::accounts::{self, Caller};
use crate::db::now;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/device/report", post(report))
}

async fn report(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(req): JsonBody<DeviceReport>,
) -> ApiResult<Json<DeviceReportResponse>> {
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
