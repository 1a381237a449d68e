//! Attachments over HTTP (see `wire::UploadStatus` for the contract):
//!
//! - `GET   /api/v1/attachments/{sha256}/upload?visit=` → `UploadStatus` (inspector, admin);
//! - `PATCH /api/v1/attachments/{sha256}/upload?visit=&offset=&total=`, body = raw bytes
//!   (at most `wire::MAX_ATTACHMENT_CHUNK`) → `UploadStatus` (inspector, admin);
//! - `GET   /api/v1/attachments/{sha256}[?visit=]` → the bytes, `Range: bytes=n-` honoured
//!   (anyone whose scope covers the visit).
//!
//! A visit that is unknown or outside the caller's scope is 404, like an unknown file.
//! The rules on disk are in `crate::attachments`.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ohassist_core::sync::wire::{self, ErrorBody, UploadStatus};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, ApiResult};
use super::{AppState, DbCalls};
use crate::accounts::Caller;
use crate::attachments::{self as store, Appended};
use crate::db::now;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(status, upload)).routes(routes!(download))
}

#[derive(Debug, Deserialize)]
struct UploadQuery {
    visit: String,
    #[serde(default)]
    offset: Option<u64>,
    #[serde(default)]
    total: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct DownloadQuery {
    #[serde(default)]
    visit: Option<String>,
}

/// Raw bytes, for the document.
#[derive(utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)]
struct Bytes(Vec<u8>);

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t).map_err(|e| ApiError::MalformedBody(e.body_text()))
}

fn checked_sha(sha: String) -> ApiResult<String> {
    if store::is_sha256(&sha) {
        Ok(sha)
    } else {
        Err(ApiError::MalformedBody("the attachment name must be its SHA-256 in 64 lowercase hex digits".into()))
    }
}

/// How many bytes of a pending upload the server holds, or that it has the whole file.
#[utoipa::path(get, path = "/api/v1/attachments/{sha256}/upload", tag = "attachments",
    operation_id = "uploadStatus",
    security(("bearer" = [])),
    params(
        ("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The SHA-256 of the file's bytes"),
        ("visit" = String, Query, description = "The visit the file belongs to (on the server already)"),
    ),
    responses(
        (status = 200, description = "What the server holds", body = UploadStatus),
        (status = 404, description = "The visit is unknown or outside the caller's unit (`not_found`)",
            body = ErrorBody),
    ))]
async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(sha): Path<String>,
    q: Result<Query<UploadQuery>, QueryRejection>,
) -> ApiResult<Json<UploadStatus>> {
    if !caller.role.may_push() {
        return Err(ApiError::Forbidden);
    }
    let sha = checked_sha(sha)?;
    let q = query(q)?;
    let unit = caller.org_unit.clone();
    let s = sha.clone();
    // Complete only when uploaded for a visit of the caller's unit: another county's file is
    // never reported as held (the phone uploads its bytes, which proves it has them).
    let held = state
        .db
        .read(move |conn| {
            store::check_visit_scope(conn, &unit, &q.visit)?;
            let linked = store::linked_in_scope(conn, &unit, &s)?;
            Ok(store::stored(conn, &s)?.filter(|_| linked))
        })
        .await?;
    Ok(Json(match held {
        Some((size, _)) => UploadStatus { offset: size, complete: true },
        None => UploadStatus { offset: store::partial_len(&state.attachments, &caller.user_id, &sha), complete: false },
    }))
}

/// Appends a chunk at `offset`; when `offset` + the chunk reach `total`, the server checks the
/// hash and keeps the file.
#[utoipa::path(patch, path = "/api/v1/attachments/{sha256}/upload", tag = "attachments",
    operation_id = "uploadChunk",
    security(("bearer" = [])),
    params(
        ("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The SHA-256 of the file's bytes"),
        ("visit" = String, Query, description = "The visit the file belongs to (on the server already)"),
        ("offset" = u64, Query, maximum = 9_007_199_254_740_991_i64,
            description = "Where the chunk goes: the bytes the server holds"),
        ("total" = u64, Query, maximum = 20_971_520,
            description = "The file's size in bytes, at most the server's per-file limit (20 MiB unless configured)"),
    ),
    request_body(content = inline(Bytes), content_type = "application/offset+octet-stream",
        description = "At most 1 MiB of the file's bytes"),
    responses(
        (status = 200, description = "What the server holds now", body = UploadStatus),
        (status = 404, description = "The visit is unknown or outside the caller's unit (`not_found`)",
            body = ErrorBody),
        (status = 409, description = "The server holds another offset (`offset_mismatch`; `offset` and `complete` \
beside the error's fields, and an `upload-offset` header)", body = ErrorBody),
        (status = 413, description = "A chunk over 1 MiB, a file over the server's limit or a visit over its \
(`too_large`)", body = ErrorBody),
        (status = 422, description = "The complete bytes do not hash to `sha256` (`hash_mismatch`); discarded",
            body = ErrorBody),
    ))]
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Path(sha): Path<String>,
    q: Result<Query<UploadQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<UploadStatus>> {
    if !caller.role.may_push() {
        return Err(ApiError::Forbidden);
    }
    let sha = checked_sha(sha)?;
    let q = query(q)?;
    let (Some(offset), Some(total)) = (q.offset, q.total) else {
        return Err(ApiError::MalformedBody("offset and total are required".into()));
    };
    let cfg = state.attachments.clone();
    if total > cfg.max_file_bytes {
        return Err(ApiError::TooLarge(format!("a file of {total} bytes; at most {} per file", cfg.max_file_bytes)));
    }
    let (unit, visit_id, s) = (caller.org_unit.clone(), q.visit.clone(), sha.clone());
    let (held, visit_bytes) = state
        .db
        .read(move |conn| {
            store::check_visit_scope(conn, &unit, &visit_id)?;
            let linked = store::linked_in_scope(conn, &unit, &s)?;
            Ok((store::stored(conn, &s)?.filter(|_| linked), store::visit_bytes(conn, &visit_id, &s)?))
        })
        .await?;
    if let Some((size, _)) = held {
        // Already complete: nothing stored but the link to this visit.
        let (s, v) = (sha.clone(), q.visit.clone());
        state.db.write(move |conn| Ok(store::link(conn, &s, &v)?)).await?;
        return Ok(Json(UploadStatus { offset: size, complete: true }));
    }
    if visit_bytes + total > cfg.max_visit_bytes {
        return Err(ApiError::TooLarge(format!(
            "this visit's attachments would reach {} bytes; at most {} per visit",
            visit_bytes + total,
            cfg.max_visit_bytes
        )));
    }
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > wire::MAX_ATTACHMENT_CHUNK as u64) {
        return Err(chunk_too_large());
    }
    let chunk = axum::body::to_bytes(body, wire::MAX_ATTACHMENT_CHUNK).await.map_err(|_| chunk_too_large())?;

    let guard = state.upload_lock.clone().lock_owned().await;
    let (s, owner) = (sha.clone(), caller.user_id.clone());
    let appended = tokio::task::spawn_blocking(move || {
        let r = store::append_chunk(&cfg, &owner, &s, offset, total, &chunk);
        drop(guard);
        r
    })
    .await??;
    match appended {
        Appended::Partial(held) => Ok(Json(UploadStatus { offset: held, complete: false })),
        Appended::Verified => {
            let (s, v) = (sha.clone(), q.visit.clone());
            state
                .db
                .write(move |conn| {
                    let media_type = store::referenced_media_type(conn, &v, &s)?
                        .unwrap_or_else(|| "application/octet-stream".into());
                    Ok(store::record_complete(conn, &s, total, &media_type, &v, now())?)
                })
                .await?;
            tracing::info!(user = %caller.user_id, visit = %q.visit, sha256 = %sha, bytes = total, "attachment stored");
            Ok(Json(UploadStatus { offset: total, complete: true }))
        }
    }
}

fn chunk_too_large() -> ApiError {
    ApiError::TooLarge(format!("a chunk of more than {} bytes", wire::MAX_ATTACHMENT_CHUNK))
}

/// `Range: bytes=n-` → `n`; other forms are ignored (the whole file is sent).
fn range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get(header::RANGE)?.to_str().ok()?.trim();
    v.strip_prefix("bytes=")?.strip_suffix('-')?.trim().parse().ok()
}

/// The file's bytes; `Range: bytes=n-` answers from `n` on (206).
#[utoipa::path(get, path = "/api/v1/attachments/{sha256}", tag = "attachments", operation_id = "downloadAttachment",
    security(("bearer" = [])),
    params(
        ("sha256" = String, Path, pattern = "^[0-9a-f]{64}$", description = "The SHA-256 of the file's bytes"),
        ("visit" = Option<String>, Query, description = "A visit that references the file"),
        ("range" = Option<String>, Header, description = "`bytes=n-`; other forms are ignored"),
    ),
    responses(
        (status = 200, description = "The bytes, with the file's media type", content_type = "*/*", body = inline(Bytes)),
        (status = 206, description = "The bytes from the range's start", content_type = "*/*",
            body = inline(Bytes)),
        (status = 404, description = "Unknown, or not readable by the caller (`not_found`)", body = ErrorBody),
        (status = 416, description = "The range starts at or past the end (`range_not_satisfiable`)",
            body = ErrorBody),
    ))]
async fn download(
    State(state): State<AppState>,
    super::extract::ActiveCaller(caller): super::extract::ActiveCaller,
    Path(sha): Path<String>,
    q: Result<Query<DownloadQuery>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let sha = checked_sha(sha)?;
    let q = query(q)?;
    let (unit, s) = (caller.org_unit.clone(), sha.clone());
    let (size, media_type) = state
        .db
        .read(move |conn| {
            let visit = match &q.visit {
                Some(id) => Some(store::visit_in_scope(conn, &unit, id)?),
                None => None,
            };
            if !store::may_read(conn, &unit, &s, q.visit.as_deref().zip(visit.as_ref()))? {
                return Err(ApiError::NotFound);
            }
            let (size, stored_type) = store::stored(conn, &s)?.ok_or(ApiError::NotFound)?;
            let referenced =
                visit.and_then(|v| v.attachments.get(&s).map(|a| a.media_type.clone())).filter(|m| !m.is_empty());
            Ok((size, referenced.unwrap_or(stored_type)))
        })
        .await?;
    let start = range_start(&headers);
    if start.is_some_and(|n| n >= size) {
        return Err(ApiError::RangeNotSatisfiable { size });
    }
    let from = start.unwrap_or(0);
    let path = state.attachments.complete_path(&sha);
    let bytes = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(from))?;
        let mut buf = Vec::with_capacity((size - from) as usize);
        f.read_to_end(&mut buf)?;
        Ok(buf)
    })
    .await?
    .map_err(ApiError::internal)?;
    let status = if start.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let mut r = (status, bytes).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=31536000, immutable"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{sha}\"")) {
        h.insert(header::ETAG, v);
    }
    if start.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {from}-{}/{size}", size.saturating_sub(1))) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(r)
}
