//! The console's views as JSON under `/api/v1/`, for the provincial platform and scripts:
//! the dashboard figures, the two tables, the enterprise list, an enterprise, a visit.
//! Authenticated by the sync bearer tokens (supervisors and admins), scoped like the
//! pages; documented in the OpenAPI document (`crate::api::openapi`). Query parameters are
//! read strictly: one value each, of the documented form, or 400 naming the parameter.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, State};
use axum::Json;
use ohassist_core::sync::wire::ErrorBody;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::views::{self, EnterpriseView, Params, VisitView};
use super::{JsonError, WebError};
use crate::accounts::{Caller, Role};
use crate::api::error::ApiError;
use crate::api::{AppState, DbCalls};
use crate::reports::{self, export, Dashboard, Signature, StatusRow};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(dashboard))
        .routes(routes!(table1))
        .routes(routes!(table2))
        .routes(routes!(enterprises))
        .routes(routes!(enterprise))
        .routes(routes!(visit))
}

/// The query as sent, as pairs, so that a parameter given twice is seen.
type Query = Result<axum::extract::Query<Vec<(String, String)>>, QueryRejection>;

/// Parameters whose value has a form (a number, a code, a vocabulary): given empty, or with
/// spaces around it, they are refused rather than read as absent.
const TYPED: &[&str] = &["year", "unit", "county", "industry", "status", "missing"];

/// The query's parameters, each at most once, typed ones not empty: `?year=abc&year=` is a
/// 400 naming `year`, never this year's figures.
fn params(q: Query) -> Result<Params, WebError> {
    let axum::extract::Query(pairs) =
        q.map_err(|e| WebError::bad_filter("query", format!("查询参数无效：{e}"), e.body_text()))?;
    let mut out = Params::new();
    for (key, value) in pairs {
        let Some(field) = TYPED.iter().find(|t| **t == key) else {
            if out.contains_key(&key) {
                return Err(twice(&key));
            }
            out.insert(key, value);
            continue;
        };
        if out.contains_key(*field) {
            return Err(twice(field));
        }
        if value.is_empty() || value.trim() != value {
            return Err(WebError::bad_filter(
                field,
                format!("参数 {field} 的值“{value}”无效：不能为空或带空格，不需要时请省略该参数"),
                format!("parameter {field} = {value:?} is empty or padded with spaces; leave it out instead"),
            ));
        }
        out.insert(key, value);
    }
    Ok(out)
}

fn twice(key: &str) -> WebError {
    // Only known parameters are named as the field; another one is named in the message.
    let field = TYPED.iter().chain(&["q", "unit_name", "reporter", "phone"]).find(|t| **t == key).copied();
    WebError::bad_filter(
        field.unwrap_or("query"),
        format!("参数 {key} 出现了多次"),
        format!("parameter {key} is given more than once"),
    )
}

fn reader(caller: &Caller) -> Result<(), ApiError> {
    match caller.role {
        Role::Supervisor | Role::Admin => Ok(()),
        Role::Inspector | Role::Relay => Err(ApiError::Forbidden),
    }
}

/// Progress per county against the targets.
#[utoipa::path(get, path = "/api/v1/dashboard", tag = "console", operation_id = "dashboard",
    security(("bearer" = [])),
    params(
        ("year" = Option<i32>, Query, minimum = 2000, maximum = 2100,
            description = "Programme year; default: the latest year with an assistance list, else this year"),
        ("unit" = Option<String>, Query, pattern = "^[0-9]{6}$",
            description = "A 6-digit org unit inside the caller's (404 otherwise); default: the caller's unit"),
    ),
    responses(
        (status = 200, description = "The dashboard's figures", body = Dashboard),
        (status = 404, description = "The unit lies outside the caller's (`not_found`)", body = ErrorBody),
    ))]
async fn dashboard(State(state): State<AppState>, caller: Caller, q: Query) -> Result<Json<Dashboard>, JsonError> {
    reader(&caller)?;
    let (unit, year) = views::unit_and_maybe_year(&state.db, &params(q)?, &caller.org_unit).await?;
    Ok(Json(
        state
            .db
            .read(move |conn| {
                let year = views::year_or_latest(conn, &unit, year)?;
                Ok(reports::dashboard(conn, &unit, year)?)
            })
            .await?,
    ))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Table {
    pub title: String,
    pub unit: String,
    pub year: i32,
    /// Header rows; a merged cell's text stands in its first cell, the others are empty.
    pub header: Vec<Vec<String>>,
    /// Data rows as text, exactly as the HTML and the files show them (Table 2: 合计 last).
    pub rows: Vec<Vec<String>>,
    /// 填报单位 / 填报人 / 联系电话, as printed under the table.
    pub signature: Signature,
    pub footer: [String; 3],
}

async fn table_data(state: &AppState, caller: &Caller, q: Query) -> Result<views::TableData, JsonError> {
    reader(caller)?;
    let p = params(q)?;
    let (unit, year) = views::unit_and_maybe_year(&state.db, &p, &caller.org_unit).await?;
    Ok(views::table_data(&state.db, &p, caller, unit, year).await?)
}

/// Table 1: the list of assisted enterprises, as printed.
#[utoipa::path(get, path = "/api/v1/tables/1", tag = "console", operation_id = "table1",
    security(("bearer" = [])),
    params(
        ("year" = Option<i32>, Query, minimum = 2000, maximum = 2100,
            description = "Programme year; default: the latest year with an assistance list, else this year"),
        ("unit" = Option<String>, Query, pattern = "^[0-9]{6}$",
            description = "A 6-digit org unit inside the caller's (404 otherwise); default: the caller's unit"),
        ("unit_name" = Option<String>, Query, description = "填报单位 as printed; default: the unit's name"),
        ("reporter" = Option<String>, Query, description = "填报人; default: the caller's name"),
        ("phone" = Option<String>, Query, description = "联系电话"),
    ),
    responses(
        (status = 200, description = "Table 1", body = Table),
        (status = 404, description = "The unit lies outside the caller's (`not_found`)", body = ErrorBody),
    ))]
async fn table1(State(state): State<AppState>, caller: Caller, q: Query) -> Result<Json<Table>, JsonError> {
    let views::TableData { unit, unit_name, year, rows, signature: sig, .. } = table_data(&state, &caller, q).await?;
    Ok(Json(Table {
        title: reports::table1_title(&unit_name, year),
        unit,
        year,
        header: vec![reports::TABLE1_HEADERS.iter().map(|s| s.to_string()).collect()],
        rows: export::table1_body(&rows),
        footer: sig.lines(),
        signature: sig,
    }))
}

/// Table 2: the summary per county (合计 last), as printed.
#[utoipa::path(get, path = "/api/v1/tables/2", tag = "console", operation_id = "table2",
    security(("bearer" = [])),
    params(
        ("year" = Option<i32>, Query, minimum = 2000, maximum = 2100,
            description = "Programme year; default: the latest year with an assistance list, else this year"),
        ("unit" = Option<String>, Query, pattern = "^[0-9]{6}$",
            description = "A 6-digit org unit inside the caller's (404 otherwise); default: the caller's unit"),
        ("unit_name" = Option<String>, Query, description = "填报单位 as printed; default: the unit's name"),
        ("reporter" = Option<String>, Query, description = "填报人; default: the caller's name"),
        ("phone" = Option<String>, Query, description = "联系电话"),
        ("by" = inline(Option<Table2RowsParam>), Query, description = "Table 2's rows: `county` (a city's default) or `city` (a \
province's default: one row per city, its counties and zones summed); anything else is 400 `invalid_filter`, field `by`"),
    ),
    responses(
        (status = 200, description = "Table 2", body = Table),
        (status = 404, description = "The unit lies outside the caller's (`not_found`)", body = ErrorBody),
    ))]
async fn table2(State(state): State<AppState>, caller: Caller, q: Query) -> Result<Json<Table>, JsonError> {
    let views::TableData { unit, unit_name, year, table2: (t2, total), signature: sig, .. } =
        table_data(&state, &caller, q).await?;
    Ok(Json(Table {
        title: reports::table2_title(&unit_name, year),
        unit,
        year,
        header: export::table2_header_grid().to_vec(),
        rows: export::table2_body(&t2, &total),
        footer: sig.lines(),
        signature: sig,
    }))
}

/// The enterprises of a year's assistance list, with their status, filtered.
#[utoipa::path(get, path = "/api/v1/enterprises", tag = "console", operation_id = "listEnterprises",
    security(("bearer" = [])),
    params(
        ("year" = Option<i32>, Query, minimum = 2000, maximum = 2100, description = "Programme year; default: this year"),
        ("unit" = Option<String>, Query, pattern = "^[0-9]{6}$",
            description = "A 6-digit org unit inside the caller's (404 otherwise); default: the caller's unit"),
        ("county" = Option<String>, Query, pattern = "^[0-9]{6}$", description = "Only this county (inside `unit`)"),
        ("industry" = Option<ohassist_core::model::Industry>, Query, description = "Only this industry"),
        ("status" = inline(Option<StatusParam>), Query, description = "Only complete, incomplete, city-level or special-governance ones"),
        ("missing" = inline(Option<MissingParam>), Query, description = "Only those still lacking this one of the six ones"),
        ("q" = Option<String>, Query, description = "Name or credit code contains (first 100 characters)"),
    ),
    responses(
        (status = 200, description = "The enterprises", body = Vec<StatusRow>),
        (status = 404, description = "`unit` or `county` lies outside the caller's (`not_found`)", body = ErrorBody),
    ))]
async fn enterprises(
    State(state): State<AppState>,
    caller: Caller,
    q: Query,
) -> Result<Json<Vec<StatusRow>>, JsonError> {
    reader(&caller)?;
    let p = params(q)?;
    let (unit, year) = views::unit_and_year(&state.db, &p, &caller.org_unit).await?;
    let filter = views::list_filter(&state.db, &p, &unit).await?;
    Ok(Json(state.db.read(move |conn| Ok(reports::list(conn, &unit, year, &filter)?)).await?))
}

/// An enterprise with its status per year and its visits.
#[utoipa::path(get, path = "/api/v1/enterprises/{code}", tag = "console", operation_id = "getEnterprise",
    security(("bearer" = [])),
    params(("code" = String, Path, pattern = "^[0-9A-Za-z]{18}$",
        description = "The unified social credit code (18 characters; lower case is read as upper case)")),
    responses(
        (status = 200, description = "The enterprise", body = EnterpriseView),
        (status = 404, description = "Unknown, or outside the caller's unit (`not_found`)", body = ErrorBody),
    ))]
async fn enterprise(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> Result<Json<EnterpriseView>, JsonError> {
    reader(&caller)?;
    if code.len() != 18 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(WebError::bad_filter(
            "code",
            "统一社会信用代码应为 18 位字母或数字",
            format!("code {code:?} is not 18 letters or digits"),
        )
        .into());
    }
    let unit = caller.org_unit.clone();
    Ok(Json(state.db.read(move |conn| views::enterprise(conn, &unit, &code)).await?))
}

/// A visit with its history and open conflicts.
#[utoipa::path(get, path = "/api/v1/visits/{id}", tag = "console", operation_id = "getVisit",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The visit's id")),
    responses(
        (status = 200, description = "The visit", body = VisitView),
        (status = 404, description = "Unknown, or outside the caller's unit (`not_found`)", body = ErrorBody),
    ))]
async fn visit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<VisitView>, JsonError> {
    reader(&caller)?;
    let unit = caller.org_unit.clone();
    Ok(Json(state.db.read(move |conn| views::visit(conn, &unit, &id)).await?))
}

/// Table 2's `by` values, for the document (`reports::Table2Rows` reads them).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum Table2RowsParam {
    County,
    City,
}

/// The `status` filter's values, for the document.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum StatusParam {
    Complete,
    Incomplete,
    CityLevel,
    SpecialGovernance,
}

/// The `missing` filter's values: the six ones but the chronic screening, for the document.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum MissingParam {
    SelfInspection,
    HazardIdentification,
    ManagementSystem,
    Notification,
    Training,
    Remediation,
}
