//! `GET /api/v1/export`: the records export over HTTP (`docs/export.md`). Read by an API
//! client's token (`ohassist client add`) or a supervisor's or admin's, scoped to their unit
//! like the console; an inspector may not. The page's cursor travels in the
//! `x-ohassist-next-cursor` and `x-ohassist-more` headers, and JSON Lines also end with a
//! cursor line.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use ohassist_core::model::RecordKind;
use ohassist_core::sync::wire::ErrorBody;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::pages::params;
use super::views::Params;
use super::{JsonError, WebError};
use crate::accounts::{self, Caller, Role};
use crate::api::error::ApiError;
use crate::api::extract::bearer;
use crate::api::{AppState, DbCalls};
use crate::clients;
use crate::export::{self, DEFAULT_LIMIT, MAX_LIMIT};

pub const NEXT_CURSOR_HEADER: &str = "x-ohassist-next-cursor";
pub const MORE_HEADER: &str = "x-ohassist-more";

/// Documented with the rest of the API (`crate::api::routes`).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_page))
}

/// Who reads the export, and the unit that scopes it.
pub struct ExportReader {
    pub org_unit: String,
}

impl FromRequestParts<AppState> for ExportReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(token) = bearer(parts) {
            let hash = accounts::token_hash(token);
            if let Some(client) = state.db.read(move |conn| Ok(clients::by_token_hash(conn, &hash)?)).await? {
                return Ok(ExportReader { org_unit: client.org_unit });
            }
        }
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.role {
            Role::Supervisor | Role::Admin => Ok(ExportReader { org_unit: caller.org_unit }),
            Role::Inspector | Role::Relay => Err(ApiError::Forbidden),
        }
    }
}

enum Format {
    JsonLines,
    Csv(RecordKind),
}

struct ExportQuery {
    cursor: u64,
    limit: usize,
    kind: Option<RecordKind>,
    format: Format,
}

fn read_query(p: &Params) -> Result<ExportQuery, WebError> {
    // Given, a parameter must have a value of its form: `kind=` is not "any kind".
    let value = |k: &'static str| -> Result<Option<&str>, WebError> {
        match p.get(k).map(String::as_str) {
            None => Ok(None),
            Some(v) if v.is_empty() || v.trim() != v => Err(WebError::bad_filter(
                k,
                format!("参数 {k} 的值“{v}”无效：不能为空或带空格，不需要时请省略该参数"),
                format!("parameter {k} = {v:?} is empty or padded with spaces; leave it out instead"),
            )),
            Some(v) => Ok(Some(v)),
        }
    };
    let cursor = match value("cursor")? {
        None => 0,
        Some(c) => c.parse::<u64>().ok().filter(|_| c.bytes().all(|b| b.is_ascii_digit())).ok_or_else(|| {
            WebError::bad_filter(
                "cursor",
                format!("游标“{c}”无效：应为上一页返回的 next_cursor（非负整数），首次导出不填或填 0"),
                format!("cursor {c:?} is not a previous page's next_cursor (a non-negative integer; omit it or pass 0 to start)"),
            )
        })?,
    };
    let limit = match value("limit")? {
        None => DEFAULT_LIMIT,
        Some(l) => l.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
            WebError::bad_filter(
                "limit",
                format!("每页条数“{l}”无效，应为 1–{MAX_LIMIT}"),
                format!("limit {l:?} is not 1-{MAX_LIMIT}"),
            )
        })?,
    };
    let kind = match value("kind")? {
        None => None,
        Some(k) => Some(RecordKind::parse(k).ok_or_else(|| {
            WebError::bad_filter(
                "kind",
                format!("记录类型“{k}”无效，应为 enterprise 或 visit"),
                format!("kind {k:?} is not enterprise or visit"),
            )
        })?),
    };
    let format = match value("format")? {
        None | Some("jsonl") => Format::JsonLines,
        // CSV holds one record kind: the enterprises unless `kind=visit`.
        Some("csv") => Format::Csv(kind.unwrap_or(RecordKind::Enterprise)),
        Some(f) => {
            return Err(WebError::bad_filter(
                "format",
                format!("格式“{f}”无效，应为 jsonl 或 csv"),
                format!("format {f:?} is not jsonl or csv"),
            ))
        }
    };
    Ok(ExportQuery { cursor, limit, kind, format })
}

#[utoipa::path(get, path = "/api/v1/export", tag = "export", operation_id = "export",
    description = "Every record in the caller's unit changed since `cursor`, as its current JSON, in the order of \
        its latest change; paged. JSON Lines end with a cursor line; the next cursor is also in the \
        `x-ohassist-next-cursor` header and `x-ohassist-more` says whether to call again at once (docs/export.md). \
        For API clients (`ohassist client add`), supervisors and admins.",
    security(("bearer" = [])),
    params(
        ("cursor" = Option<u64>, Query, description = "Where the last page ended (0 or absent: from the start)"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 2000, description = "Records per page (default 500)"),
        ("format" = Option<String>, Query, pattern = "^(jsonl|csv)$", description = "jsonl (default) or csv"),
        ("kind" = Option<String>, Query, pattern = "^(enterprise|visit)$",
            description = "One record kind; CSV holds one kind, the enterprises unless kind=visit"),
    ),
    responses(
        (status = 200, description = "One page of records: JSON Lines, or CSV of one kind",
            content((String = "application/jsonl"), (String = "text/csv")),
            headers(
                ("x-ohassist-next-cursor" = u64, description = "The cursor of the next page"),
                ("x-ohassist-more" = String, description = "true when more records wait"),
            )),
        (status = 400, description = "A malformed query parameter, named (`bad_filter`)", body = ErrorBody),
        (status = 401, description = "No token, or a revoked one", body = ErrorBody),
        (status = 403, description = "An inspector (`forbidden`)", body = ErrorBody),
        (status = 409, description = "A cursor beyond this server's feed: not one it gave (`cursor_ahead`)",
            body = ErrorBody),
    ))]
async fn export_page(
    State(state): State<AppState>,
    reader: ExportReader,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Response, JsonError> {
    let q = read_query(&params(q)?)?;
    let unit = reader.org_unit;
    let (cursor, limit, kind) = (q.cursor, q.limit, q.kind);
    let page =
        state.db.read(move |conn| Ok(export::page(conn, &unit, kind, cursor, limit).map_err(WebError::from))).await??;
    let (content_type, body) = match q.format {
        Format::JsonLines => ("application/jsonl; charset=utf-8", export::json_lines(&page)),
        Format::Csv(kind) => ("text/csv; charset=utf-8", export::csv(&page, kind)),
    };
    let mut resp = ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-store")], body).into_response();
    let headers = resp.headers_mut();
    headers.insert(HeaderName::from_static(NEXT_CURSOR_HEADER), HeaderValue::from(page.next_cursor));
    headers.insert(
        HeaderName::from_static(MORE_HEADER),
        HeaderValue::from_static(if page.more { "true" } else { "false" }),
    );
    Ok(resp)
}
