//! The console's views as JSON under `/api/v1/`, for the provincial platform and scripts:
//! the dashboard figures, the two tables, the enterprise list, an enterprise, a visit.
//! Authenticated by the sync bearer tokens (supervisors and admins), scoped like the
//! pages; the OpenAPI 3 document describing it is `/api/v1/openapi.json`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::pages::params;
use super::views::{self, EnterpriseView, Params, VisitView};
use super::JsonError;
use crate::accounts::{Caller, Role};
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::reports::{self, export, Dashboard, Signature, StatusRow};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/dashboard", get(dashboard))
        .route("/api/v1/tables/1", get(table1))
        .route("/api/v1/tables/2", get(table2))
        .route("/api/v1/enterprises", get(enterprises))
        .route("/api/v1/enterprises/{code}", get(enterprise))
        .route("/api/v1/visits/{id}", get(visit))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], include_str!("../../static/openapi.json")).into_response()
}

fn reader(caller: &Caller) -> Result<(), ApiError> {
    match caller.role {
        Role::Supervisor | Role::Admin => Ok(()),
        Role::Inspector => Err(ApiError::Forbidden),
    }
}

async fn dashboard(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Dashboard>, JsonError> {
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

#[derive(Serialize)]
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

async fn table_data(
    state: &AppState,
    caller: &Caller,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<(String, String, i32, Vec<StatusRow>, Signature), JsonError> {
    reader(caller)?;
    let p = params(q)?;
    let (unit, year) = views::unit_and_maybe_year(&state.db, &p, &caller.org_unit).await?;
    let name_param = p.get("unit_name").map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
    let reporter = p.get("reporter").cloned().unwrap_or_else(|| caller.display_name.clone());
    let phone = p.get("phone").cloned().unwrap_or_default();
    let (name, unit, rows, year) = state
        .db
        .read(move |conn| {
            let year = views::year_or_latest(conn, &unit, year)?;
            let name = match name_param {
                Some(n) => n,
                None => reports::unit_name(conn, &unit)?,
            };
            Ok((name, unit.clone(), reports::table1(conn, &unit, year)?, year))
        })
        .await?;
    let sig = Signature { unit: name.clone(), reporter, phone };
    Ok((name, unit, year, rows, sig))
}

async fn table1(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Table>, JsonError> {
    let (name, unit, year, rows, sig) = table_data(&state, &caller, q).await?;
    Ok(Json(Table {
        title: reports::table1_title(&name, year),
        unit,
        year,
        header: vec![reports::TABLE1_HEADERS.iter().map(|s| s.to_string()).collect()],
        rows: export::table1_body(&rows),
        footer: sig.lines(),
        signature: sig,
    }))
}

async fn table2(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Table>, JsonError> {
    let (name, unit, year, rows, sig) = table_data(&state, &caller, q).await?;
    let (t2, total) = reports::table2_of(&rows);
    Ok(Json(Table {
        title: reports::table2_title(&name, year),
        unit,
        year,
        header: export::table2_header_grid().to_vec(),
        rows: export::table2_body(&t2, &total),
        footer: sig.lines(),
        signature: sig,
    }))
}

async fn enterprises(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Vec<StatusRow>>, JsonError> {
    reader(&caller)?;
    let p = params(q)?;
    let (unit, year) = views::unit_and_year(&state.db, &p, &caller.org_unit).await?;
    let filter = views::list_filter(&state.db, &p, &unit).await?;
    Ok(Json(state.db.read(move |conn| Ok(reports::list(conn, &unit, year, &filter)?)).await?))
}

async fn enterprise(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> Result<Json<EnterpriseView>, JsonError> {
    reader(&caller)?;
    let unit = caller.org_unit.clone();
    Ok(Json(state.db.read(move |conn| views::enterprise(conn, &unit, &code)).await?))
}

async fn visit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<VisitView>, JsonError> {
    reader(&caller)?;
    let unit = caller.org_unit.clone();
    Ok(Json(state.db.read(move |conn| views::visit(conn, &unit, &id)).await?))
}
