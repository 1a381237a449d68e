//! Refused uploads and transfers: the queue of what the server refused from the unit's
//! inspectors, in words, and the decision that settles a disputed or moving enterprise
//! ("属于 X县"), taken by a supervisor or admin whose unit covers both counties.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Deserialize;

use super::pages::base;
use super::session::Session;
use super::views;
use super::{render, WebError};
use crate::api::error::ApiError;
use crate::api::{AppState, DbCalls};
use crate::db::now;
use crate::records;
use crate::units::Units;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/refused", get(refused))
        .route("/refused/transfer", post(transfer_from_queue))
        .route("/enterprises/{code}/transfer", post(transfer_from_page))
}

#[derive(Deserialize, Default)]
struct Done {
    #[serde(default)]
    applied: Option<usize>,
    #[serde(default)]
    still: Option<usize>,
    #[serde(default)]
    to: Option<String>,
}

/// Uploads the server refused, of the unit's inspectors: which record, who, which device,
/// when, why, where the record claims to belong and where the server has it. The phones
/// keep them held; this is where a supervisor settles them.
async fn refused(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<Done>, QueryRejection>,
) -> Result<Html<String>, WebError> {
    let unit = s.caller.org_unit.clone();
    let (list, units) =
        state.db.read(move |conn| Ok((records::refused_uploads(conn, &unit, 500)?, Units::load(conn)?))).await?;
    let counties: Vec<_> = units
        .counties_within(&s.caller.org_unit)
        .into_iter()
        .map(|u| context! { code => u.code, name => u.name })
        .collect();
    let name = |code: &str| if code.is_empty() { String::new() } else { units.name_or_code(code) };
    let rows: Vec<_> = list
        .into_iter()
        .map(|r| {
            context! {
                time => views::local_ms(r.last_at * 1000),
                claimed_name => name(&r.county_code),
                server_name => r.server_county.as_deref().map(name),
                ..minijinja::Value::from_serialize(&r)
            }
        })
        .collect();
    let done = q.map(|Query(d)| d).unwrap_or_default();
    let done = done.to.map(|to| {
        context! { to => units.name_or_code(&to), applied => done.applied.unwrap_or(0), still => done.still.unwrap_or(0) }
    });
    // A transfer needs a unit above one county: a county's own supervisor cannot decide it.
    let may_transfer =
        counties.len() > 1 && matches!(s.caller.role, crate::accounts::Role::Supervisor | crate::accounts::Role::Admin);
    render(
        "refused.html",
        context! { ..base(&s, "refused"), ..context! { refused => rows, counties, may_transfer, done } },
    )
}

#[derive(Deserialize)]
struct TransferForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    credit_code: String,
    county: String,
}

async fn transfer_from_queue(
    State(state): State<AppState>,
    s: Session,
    Form(f): Form<TransferForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&f.csrf)?;
    let code = f.credit_code.trim().to_string();
    let (county, done) = transfer(&state, &s, code, f.county).await?;
    Ok(Redirect::to(&format!("/refused?to={county}&applied={}&still={}", done.applied.len(), done.still_refused.len()))
        .into_response())
}

async fn transfer_from_page(
    State(state): State<AppState>,
    s: Session,
    Path(code): Path<String>,
    Form(f): Form<TransferForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&f.csrf)?;
    let (_, _) = transfer(&state, &s, code.clone(), f.county).await?;
    Ok(Redirect::to(&format!("/enterprises/{code}")).into_response())
}

async fn transfer(
    state: &AppState,
    s: &Session,
    credit_code: String,
    county: String,
) -> Result<(String, records::Transferred), WebError> {
    let county = county.trim().to_string();
    if !crate::scope::is_division_code(&county) {
        return Err(WebError::bad_filter("county", "县区代码须为 6 位数字", "the county code must be 6 digits"));
    }
    let caller = s.caller.clone();
    let c = county.clone();
    let done = state
        .db
        .write(move |conn| {
            let units = Units::load(conn)?;
            let name = units.name(&c).ok_or_else(|| ApiError::InvalidInput {
                field: "county",
                reason_zh: "未知的县区代码".into(),
                reason_en: "unknown county code".into(),
            })?;
            Ok(records::transfer_enterprise(conn, &caller, &credit_code, &c, &name, now())?)
        })
        .await?;
    tracing::info!(user = %s.caller.user_id, county = %county, applied = done.applied.len(), "enterprise transferred");
    Ok((county, done))
}
