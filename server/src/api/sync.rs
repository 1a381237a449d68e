//! `POST /api/v1/sync/push` and `/pull`: the wire format of `ohassist_core::sync::wire`
//! over HTTP. The rules (idempotency, all-or-nothing, scope, paging) are in
//! `crate::records`; this module authenticates, authorises and moves bytes.

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::post;
use axum::Router;
use ohassist_core::sync::wire::{self, PullRequest, PullResponse, PushRequest, PushResponse, RefusedDocument};

use super::error::{ApiError, ApiResult};
use super::extract::{ActiveCaller, Wire};
use super::AppState;
use crate::accounts::Caller;
use crate::db::now;
use crate::records::{self, FirstSyncToken};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sync/push", post(push))
        .route("/api/v1/sync/pull", post(pull))
        // The compressed body may be as large as the uncompressed limit.
        .layer(DefaultBodyLimit::max(wire::MAX_PUSH_BYTES))
}

async fn push(
    State(state): State<AppState>,
    caller: Caller,
    Wire(req): Wire<PushRequest>,
) -> ApiResult<Wire<PushResponse>> {
    if !caller.role.may_push() {
        return Err(ApiError::Forbidden);
    }
    let count = req.changes.len();
    let incoming = tokio::task::spawn_blocking(move || records::decode_changes(req.changes)).await??;
    let who = caller.clone();
    let applied = state.db.write(move |conn| records::apply_push(conn, &who, incoming, now())).await?;
    tracing::info!(
        user = %caller.user_id,
        device = %caller.device_id,
        changes = count,
        new = applied.new,
        refused = applied.refused.len(),
        "push"
    );
    let refused = applied
        .refused
        .into_iter()
        .map(|r| RefusedDocument {
            message: format!("记录 {} 未被接受：{}", r.doc_id, r.reason_zh),
            message_en: format!("record {} was not accepted: {}", r.doc_id, r.reason_en),
            doc_id: r.doc_id,
            kind: r.kind,
            code: r.code.to_string(),
        })
        .collect();
    Ok(Wire(PushResponse { acknowledged: applied.acknowledged, new: applied.new, refused }))
}

async fn pull(
    State(state): State<AppState>,
    ActiveCaller(caller): ActiveCaller,
    Wire(req): Wire<PullRequest>,
) -> ApiResult<Wire<PullResponse>> {
    let token = match &req.page_token {
        Some(t) => Some(FirstSyncToken::decode(t).ok_or_else(|| ApiError::MalformedBody("unknown page_token".into()))?),
        None => None,
    };
    let (org_unit, device, budget) = (caller.org_unit.clone(), caller.device_id.clone(), state.pull_page_bytes);
    let page = state
        .db
        .read(move |conn| {
            if token.is_some() || req.cursor == 0 {
                records::first_sync_page(conn, &org_unit, token, budget)
            } else {
                records::changes_page(conn, &org_unit, &device, req.cursor, budget)
            }
        })
        .await?;
    if !page.more {
        // The end of this sync: the next push's captures are measured from here.
        let device = caller.device_id.clone();
        state.db.write(move |conn| Ok(crate::accounts::mark_synced(conn, &device, now())?)).await?;
    }
    tracing::debug!(
        user = %caller.user_id,
        documents = page.documents.len(),
        changes = page.changes.len(),
        cursor = page.cursor,
        "pull"
    );
    Ok(Wire(PullResponse {
        documents: page.documents,
        changes: page.changes,
        cursor: page.cursor,
        page_token: page.page_token,
        more: page.more,
    }))
}
