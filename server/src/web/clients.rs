//! The admin's API clients page (`/admin/clients`): list, create (the token shown once) and
//! revoke the read-only tokens of the records export, inside the admin's unit.

use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Deserialize;

use super::admin::require_admin;
use super::pages::base;
use super::session::Session;
use super::{render, WebError};
use crate::api::error::ApiError;
use crate::api::{AppState, DbCalls};
use crate::clients::{self, ClientError};
use crate::db::now;
use crate::scope;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/clients", get(page).post(create)).route("/admin/clients/{id}/revoke", post(revoke))
}

async fn page(State(state): State<AppState>, s: Session) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    let unit = s.caller.org_unit.clone();
    let list = state.db.read(move |conn| Ok(clients::list(conn, &unit)?)).await?;
    render("clients.html", context! { ..base(&s, "clients"), ..context! { clients => list, created => () } })
}

#[derive(Deserialize)]
struct CreateForm {
    #[serde(default)]
    csrf: String,
    name: String,
    org_unit: String,
}

fn client_error(e: ClientError) -> WebError {
    match e {
        ClientError::Name => WebError::Invalid { zh: "名称须为 1–100 个字符".into(), en: e.to_string() },
        ClientError::OrgUnit => {
            WebError::Invalid { zh: "单位须为 6 位行政区划代码".into(), en: e.to_string() }
        }
        ClientError::NoSuchClient => ApiError::NotFound.into(),
        ClientError::Storage(e) => ApiError::from(e).into(),
    }
}

async fn create(
    State(state): State<AppState>,
    s: Session,
    Form(f): Form<CreateForm>,
) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let org_unit = f.org_unit.trim().to_string();
    if scope::is_division_code(&org_unit) && !scope::within(&s.caller.org_unit, &org_unit) {
        return Err(WebError::Invalid {
            zh: "单位须在您的辖区内".into(),
            en: "the org unit must lie inside yours".into(),
        });
    }
    let (unit, by) = (s.caller.org_unit.clone(), s.caller.username.clone());
    let (token, list) = state
        .db
        .write(move |conn| {
            Ok(clients::create(conn, &f.name, &org_unit, &by, now())
                .map(|(_, token)| (token, clients::list(conn, &unit))))
        })
        .await?
        .map_err(client_error)?;
    render("clients.html", context! { ..base(&s, "clients"), ..context! { clients => list?, created => token } })
}

#[derive(Deserialize)]
struct RevokeForm {
    #[serde(default)]
    csrf: String,
}

async fn revoke(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<RevokeForm>,
) -> Result<Response, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let unit = s.caller.org_unit.clone();
    state
        .db
        .write(move |conn| {
            // Another unit's client is not found, like any record outside the admin's unit.
            if !clients::list(conn, &unit)?.iter().any(|c| c.id == id) {
                return Ok(Err(ClientError::NoSuchClient));
            }
            Ok(clients::revoke(conn, &id, now()))
        })
        .await?
        .map_err(client_error)?;
    Ok(Redirect::to("/admin/clients").into_response())
}
