//! `POST /api/v1/sync/push`, `/pull` and `/exchange` (a push and a pull in one round trip):
//! the wire format of `ohassist_core::sync::wire` over HTTP. The rules (idempotency,
//! per-document acceptance, scope, paging) are in `crate::records`; this module
//! authenticates, authorises and moves bytes. `/exchange` is the two others, one after the
//! other, with the same checks: it has no rule of its own.

use axum::extract::{DefaultBodyLimit, State};
use ohassist_core::sync::wire::{
    self, ErrorBody, ExchangeRequest, ExchangeResponse, PullRequest, PullResponse, PushRequest, PushResponse,
    RefusedDocument,
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
        .routes(routes!(exchange))
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
        (status = 403, description = "A role that may not push (`forbidden`), or `authors` sent by an account \
that is not a relay (`forbidden`, field `authors`)", body = ErrorBody),
        (status = 413, description = "A body over 8 MiB, compressed or not (`too_large`)", body = ErrorBody),
        (status = 422, description = "A relay's `authors` entry that is malformed (`invalid_input`, field \
`authors`, the entry named in the message)", body = ErrorBody),
    ))]
async fn push(
    State(state): State<AppState>,
    caller: Caller,
    Wire(req): Wire<PushRequest>,
) -> ApiResult<Wire<PushResponse>> {
    if !caller.role.may_push() {
        return Err(ApiError::Forbidden);
    }
    Ok(Wire(apply_push(&state, &caller, req).await?))
}

/// A push, decoded off the async threads and applied by the writer (`records::apply_push`).
async fn apply_push(state: &AppState, caller: &Caller, req: PushRequest) -> ApiResult<PushResponse> {
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
    Ok(PushResponse { acknowledged: applied.acknowledged, new: applied.new, refused })
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
    let plan = PullPlan::checked(&state, req).await?;
    Ok(Wire(plan.page(&state, &caller).await?))
}

/// A push and the pull page that follows it, in one round trip: the push is applied as
/// `/sync/push` applies it (per document: a refused document is named in `push.refused`, the
/// rest applied), then the page is read as `/sync/pull` reads it, after the push. Everything
/// that could refuse the request as a whole — the role, a retired device, the pull's cursor,
/// token and counts, the limits — is checked before anything is applied. Body and answer:
/// CBOR, gzip-compressed.
#[utoipa::path(post, path = "/api/v1/sync/exchange", tag = "sync", operation_id = "syncExchange",
    security(("bearer" = [])),
    params(("x-ohassist-protocol" = u32, Header, minimum = 2, maximum = 2,
        description = "The protocol version (2); absent or another one, in the header or any of the body's three \
`protocol` fields, is 426 `protocol_version`")),
    request_body(content = ExchangeRequest, content_type = "application/cbor",
        description = "An `ExchangeRequest` in CBOR, gzip-compressed (at most 8 MiB either way, at most 5,000 \
changes)"),
    responses(
        (status = 200, description = "An `ExchangeResponse` in CBOR, gzip-compressed: the push's answer, then the \
pull page read after it", body = ExchangeResponse, content_type = "application/cbor"),
        (status = 403, description = "A role that may not push (`forbidden`), `authors` sent by an account that \
is not a relay (`forbidden`, field `authors`), or a retired device (`device_retired`: push alone, then upload and \
report); nothing was applied", body = ErrorBody),
        (status = 409, description = "A cursor this server never gave (`cursor_ahead`); nothing was applied",
            body = ErrorBody),
        (status = 413, description = "A body over 8 MiB, compressed or not, or over 5,000 changes (`too_large`)",
            body = ErrorBody),
        (status = 422, description = "A pending count out of range, or a relay's malformed `authors` entry \
(`invalid_input`, the field named)", body = ErrorBody),
    ))]
async fn exchange(
    State(state): State<AppState>,
    ActiveCaller(caller): ActiveCaller,
    Wire(req): Wire<ExchangeRequest>,
) -> ApiResult<Wire<ExchangeResponse>> {
    if !caller.role.may_push() {
        return Err(ApiError::Forbidden);
    }
    if req.push.changes.len() > wire::MAX_PUSH_CHANGES {
        return Err(ApiError::TooLarge(format!(
            "{} changes, at most {}",
            req.push.changes.len(),
            wire::MAX_PUSH_CHANGES
        )));
    }
    let plan = PullPlan::checked(&state, req.pull).await?;
    let push = apply_push(&state, &caller, req.push).await?;
    let pull = plan.page(&state, &caller).await?;
    Ok(Wire(ExchangeResponse { push, pull }))
}

/// A pull request with everything that may refuse it checked: what `/sync/pull` reads, and
/// what `/sync/exchange` checks before it applies its push.
struct PullPlan {
    cursor: u64,
    token: Option<FirstSyncToken>,
    pending: Option<wire::DeviceReport>,
}

impl PullPlan {
    async fn checked(state: &AppState, req: PullRequest) -> ApiResult<PullPlan> {
        // Feed positions are SQLite integers.
        if i64::try_from(req.cursor).is_err() {
            return Err(ApiError::MalformedBody(format!("cursor {} is out of range", req.cursor)));
        }
        if let Some(pending) = &req.pending {
            super::device::check(pending, true)?;
        }
        let token = match &req.page_token {
            Some(t) => {
                Some(FirstSyncToken::decode(t).ok_or_else(|| ApiError::MalformedBody("unknown page_token".into()))?)
            }
            None => None,
        };
        let plan = PullPlan { cursor: req.cursor, token, pending: req.pending };
        if !plan.first_sync() {
            // Rows are never deleted: a cursor given now is given when the page is read.
            let cursor = plan.cursor;
            state.db.read(move |conn| refuse_cursor_not_given(conn, cursor)).await?;
        }
        Ok(plan)
    }

    fn first_sync(&self) -> bool {
        self.token.is_some() || self.cursor == 0
    }

    /// Reads the page; the last one marks the device synced and records its counts.
    async fn page(self, state: &AppState, caller: &Caller) -> ApiResult<PullResponse> {
        let first_sync = self.first_sync();
        let PullPlan { cursor, token, pending } = self;
        let (org_unit, device, budget) = (caller.org_unit.clone(), caller.device_id.clone(), state.pull_page_bytes);
        let relay = caller.role == crate::accounts::Role::Relay;
        let (page, settled, authors) = state
            .db
            .read(move |conn| {
                let page = if first_sync {
                    records::first_sync_page(conn, &org_unit, &device, token, budget)?
                } else {
                    records::changes_page(conn, &org_unit, &device, cursor, budget)?
                };
                // A lower server hears who wrote each change, to name them on its console too.
                let authors = if relay {
                    let documents: Vec<&str> = page.documents.iter().map(|d| d.doc_id.as_str()).collect();
                    crate::relay::page_authors(conn, &page.hashes, &documents)?
                } else {
                    Vec::new()
                };
                Ok((page, records::settled_for(conn, &device)?, authors))
            })
            .await?;
        if !page.more {
            // The end of this sync: the next push's captures are measured from here, and what the
            // phone said it still holds is recorded in the same transaction.
            let device = caller.device_id.clone();
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
        Ok(PullResponse {
            documents: page.documents,
            changes: page.changes,
            cursor: page.cursor,
            page_token: page.page_token,
            more: page.more,
            settled,
            authors,
        })
    }
}

/// Every cursor this server gives is the position of a row of its feed (the last one a page
/// scanned, or a first sync's snapshot), and rows are never deleted. A cursor without its row
/// was given by another life of this database (a restore moves the feed's rows past every
/// position given before, `backup::restored_feed_base`) or by another server. Pulling after it
/// could skip what this server holds, so it is refused, and the phone pushes everything again
/// and pulls from 0 (docs/sync-protocol.md).
fn refuse_cursor_not_given(conn: &crate::sql::Connection, cursor: u64) -> ApiResult<()> {
    let given = conn.prepare_cached("SELECT 1 FROM changes WHERE seq = ?1")?.exists([cursor as i64])?;
    if given {
        return Ok(());
    }
    // The end of the feed as far as the cursor's giver could know it.
    let end: i64 =
        conn.query_row("SELECT coalesce(max(seq), 0) FROM changes WHERE seq < ?1", [cursor as i64], |r| r.get(0))?;
    Err(ApiError::CursorAhead { cursor, end: end as u64 })
}
