//! `POST /api/v1/sync/push` and `/pull`: the wire format of `ohassist_core::sync::wire`
//! over HTTP. The rules (idempotency, all-or-nothing, scope, paging) are in
//! `crate::records`; this module authenticates, authorises and moves bytes.

use axum::extract::{DefaultBodyLimit, State};
use ohassist_core::sync::wire::{
    self, ErrorBody, PullRequest, PullResponse, PushRequest, PushResponse, RefusedDocument,
};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::extract::{ActiveCaller, Wire};
use super::{AppState, DbCalls};
use crate::accounts::Caller;
use crate::db::now;
use crate::records::{self, FirstSyncToken};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(push))
        .routes(routes!(pull))
        // The compressed body may be as large as the uncompressed limit.
        .layer(DefaultBodyLimit::max(wire::MAX_PUSH_BYTES))
}

/// A batch of the outbox, oldest first. Applied document by document: the answer acknowledges
/// what the server now holds and names each refused document with why (nothing of it stored).
/// Body and answer: CBOR, gzip-compressed; the schemas are those of the decoded messages.
#[utoipa::path(post, path = "/api/v1/sync/push", tag = "sync", operation_id = "syncPush",
    security(("bearer" = [])),
    params(("x-ohassist-protocol" = u32, Header, minimum = 2, maximum = 2,
        description = "The protocol version (2); absent or another one is 426 `protocol_version`")),
    request_body(content = PushRequest, content_type = "application/cbor",
        description = "A `PushRequest` in CBOR, gzip-compressed (at most 8 MiB either way)"),
    responses(
        (status = 200, description = "A `PushResponse` in CBOR, gzip-compressed", body = PushResponse,
            content_type = "application/cbor"),
        (status = 413, description = "A body over 8 MiB, compressed or not (`too_large`)", body = ErrorBody),
    ))]
async fn push(
    State(state): State<AppState>,
    caller: Caller,
    Wire(req): Wire<PushRequest>,
) -> ApiResult<Wire<PushResponse>> {
    if !caller.role.may_push() {
        return Err(ApiError::Forbidden);
    }
    let count = req.changes.len();
    let (decoder, writer) = (caller.clone(), caller.clone());
    let incoming =
        tokio::task::spawn_blocking(move || records::decode_push(req.changes, req.authors, &decoder)).await??;
    let applied = state.db.with_writer(move |conn| records::apply_push(conn, &writer, incoming, now())).await?;
    if applied.new > 0 {
        // Relay promptly what this push brought (`crate::relay`), when there is an upstream.
        state.relay_wake.notify_one();
    }
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

/// What changed in the caller's scope after `cursor` (whole documents for a first sync), in
/// pages of about 4 MiB. Body and answer: CBOR, gzip-compressed.
#[utoipa::path(post, path = "/api/v1/sync/pull", tag = "sync", operation_id = "syncPull",
    security(("bearer" = [])),
    params(("x-ohassist-protocol" = u32, Header, minimum = 2, maximum = 2,
        description = "The protocol version (2); absent or another one is 426 `protocol_version`")),
    request_body(content = PullRequest, content_type = "application/cbor",
        description = "A `PullRequest` in CBOR, gzip-compressed"),
    responses(
        (status = 200, description = "A `PullResponse` in CBOR, gzip-compressed", body = PullResponse,
            content_type = "application/cbor"),
        (status = 409, description = "A cursor this server never gave (`cursor_ahead`), e.g. one from before a \
restore: push everything again and pull from 0", body = ErrorBody),
        (status = 413, description = "A body over 8 MiB (`too_large`)", body = ErrorBody),
        (status = 422, description = "A pending count out of range (`invalid_input`, the field named)",
            body = ErrorBody),
    ))]
async fn pull(
    State(state): State<AppState>,
    ActiveCaller(caller): ActiveCaller,
    Wire(req): Wire<PullRequest>,
) -> ApiResult<Wire<PullResponse>> {
    // Feed positions are SQLite integers.
    if i64::try_from(req.cursor).is_err() {
        return Err(ApiError::MalformedBody(format!("cursor {} is out of range", req.cursor)));
    }
    if let Some(pending) = &req.pending {
        super::device::check(pending, true)?;
    }
    let token = match &req.page_token {
        Some(t) => Some(FirstSyncToken::decode(t).ok_or_else(|| ApiError::MalformedBody("unknown page_token".into()))?),
        None => None,
    };
    let (org_unit, device, budget) = (caller.org_unit.clone(), caller.device_id.clone(), state.pull_page_bytes);
    let relay = caller.role == crate::accounts::Role::Relay;
    let (page, settled, authors) = state
        .db
        .read(move |conn| {
            let page = if token.is_some() || req.cursor == 0 {
                records::first_sync_page(conn, &org_unit, &device, token, budget)?
            } else {
                refuse_cursor_not_given(conn, req.cursor)?;
                records::changes_page(conn, &org_unit, &device, req.cursor, budget)?
            };
            // A lower server hears who wrote each change, to name them on its console too.
            let authors = if relay { crate::relay::authors_of(conn, &page.hashes)? } else { Vec::new() };
            Ok((page, records::settled_for(conn, &device)?, authors))
        })
        .await?;
    if !page.more {
        // The end of this sync: the next push's captures are measured from here, and what the
        // phone said it still holds is recorded in the same transaction.
        let device = caller.device_id.clone();
        let pending = req.pending;
        state
            .db
            .write(move |conn| {
                let now = now();
                crate::accounts::mark_synced(conn, &device, now)?;
                if let Some(p) = pending {
                    crate::accounts::record_report(conn, &device, p.pending_changes, p.pending_attachments, now)?;
                }
                Ok(())
            })
            .await?;
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
        settled,
        authors,
    }))
}

/// Every cursor this server gives is the position of a row of its feed (the last one a page
/// scanned, or a first sync's snapshot), and rows are never deleted. A cursor without its row
/// was given by another life of this database (a restore moves the feed's rows past every
/// position given before, `backup::restored_feed_base`) or by another server. Pulling after it
/// could skip what this server holds, so it is refused, and the phone pushes everything again
/// and pulls from 0 (docs/sync-protocol.md).
fn refuse_cursor_not_given(conn: &rusqlite::Connection, cursor: u64) -> ApiResult<()> {
    let given = conn.prepare_cached("SELECT 1 FROM changes WHERE seq = ?1")?.exists([cursor as i64])?;
    if given {
        return Ok(());
    }
    // The end of the feed as far as the cursor's giver could know it.
    let end: i64 =
        conn.query_row("SELECT coalesce(max(seq), 0) FROM changes WHERE seq < ?1", [cursor as i64], |r| r.get(0))?;
    Err(ApiError::CursorAhead { cursor, end: end as u64 })
}
