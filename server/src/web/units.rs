//! The admin's units page: rename a division or add one the data set lacks, create a
//! development zone under a city or county, set a zone's target (the city's decision), the
//! provinces' deadlines, and move the enterprises a county registered as 其他 into a zone
//! in one action (each enterprise and each of its visits rewritten by the server as a
//! document change, in one transaction).

use crate::sql::Connection;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use ohassist_core::doc::{to_json, Author, Document};
use ohassist_core::model::{Enterprise, RecordKind, Visit};
use serde::Deserialize;

use super::admin::require_admin;
use super::pages::base;
use super::session::Session;
use super::{render, WebError};
use crate::accounts::Caller;
use crate::api::error::ApiError;
use crate::api::{AppState, DbCalls};
use crate::db::now;
use crate::records;
use crate::reports::deadlines;
use crate::scope;
use crate::units::{self, Level, UnitError, Units};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/units", get(page).post(rename))
        .route("/admin/zones", post(create_zone))
        .route("/admin/zones/{code}/target", post(set_target))
        .route("/admin/zones/{code}/move", post(move_in))
        .route("/admin/deadlines", post(set_deadlines))
}

fn unit_error(e: UnitError) -> WebError {
    match e {
        UnitError::Storage(e) => e.into(),
        UnitError::NoSuchZone => ApiError::NotFound.into(),
        e => WebError::bad_filter(e.field(), e.message_zh(), e.to_string()),
    }
}

fn outside() -> WebError {
    WebError::Invalid { zh: "该单位不在您的辖区内".into(), en: "the unit lies outside your org unit".into() }
}

/// The cities whose counties and zones the page lists: the caller's own city, or every
/// city of the caller's province that has enterprises or units.
fn cities(conn: &Connection, units: &Units, org_unit: &str) -> crate::sql::Result<Vec<String>> {
    Ok(match units::level(org_unit) {
        Level::City | Level::County => vec![units::city_of(org_unit)],
        _ => {
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT substr(county_code, 1, 4) || '00' FROM enterprises
                 WHERE substr(county_code, 1, length(?1)) = ?1
                 UNION SELECT DISTINCT substr(code, 1, 4) || '00' FROM units WHERE substr(code, 1, length(?1)) = ?1",
            )?;
            let mut out: Vec<String> =
                stmt.query_map([scope::prefix(org_unit)], |r| r.get(0))?.collect::<crate::sql::Result<_>>()?;
            out.retain(|c| units.exists(c) || scope::within(org_unit, c));
            out.sort();
            out
        }
    })
}

async fn page(State(state): State<AppState>, s: Session) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    let unit = s.caller.org_unit.clone();
    let (custom, cities, deadlines) = state
        .db
        .read(move |conn| {
            let units = Units::load(conn)?;
            let cities: Vec<minijinja::Value> = cities(conn, &units, &unit)?
                .into_iter()
                .map(|c| {
                    let children: Vec<_> = units
                        .children_of_city(&c)
                        .into_iter()
                        .filter(|u| scope::covers_hosted(&unit, &u.code, u.host.as_deref().filter(|_| u.zone)))
                        .collect();
                    context! { code => c, name => units.title_name(&c), children }
                })
                .collect();
            let province = units::province_of(if unit == scope::COUNTRY { "210000" } else { &unit });
            let d = deadlines::of_province(conn, &province)?;
            let (list_due, summary_due) =
                (deadlines::Deadlines::text(d.list_due), deadlines::Deadlines::text(d.summary_due));
            Ok((
                units.custom_in(&unit),
                cities,
                context! { province, name => units.name_or_code(&province), list_due, summary_due },
            ))
        })
        .await?;
    render("units.html", context! { ..base(&s, "units"), ..context! { custom, cities, deadlines } })
}

#[derive(Deserialize)]
struct RenameForm {
    #[serde(default)]
    csrf: String,
    code: String,
    #[serde(default)]
    name: String,
}

async fn rename(State(state): State<AppState>, s: Session, Form(f): Form<RenameForm>) -> Result<Response, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let code = f.code.trim().to_string();
    if scope::is_division_code(&code) && !scope::within(&s.caller.org_unit, &code) {
        return Err(outside());
    }
    state.db.write(move |conn| Ok(units::rename(conn, &code, &f.name, now()))).await?.map_err(unit_error)?;
    Ok(Redirect::to("/admin/units").into_response())
}

#[derive(Deserialize)]
struct ZoneForm {
    #[serde(default)]
    csrf: String,
    parent: String,
    name: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    target: String,
}

fn parse_target(t: &str) -> Result<Option<u32>, WebError> {
    match t.trim() {
        "" => Ok(None),
        t => t.parse::<u32>().map(Some).map_err(|_| unit_error(UnitError::Target)),
    }
}

/// Only the city (or a unit above it) decides a zone's target.
fn may_set_target(caller: &Caller, zone: &str) -> bool {
    matches!(units::level(&caller.org_unit), Level::Country | Level::Province | Level::City)
        && scope::within(&caller.org_unit, zone)
}

async fn create_zone(State(state): State<AppState>, s: Session, Form(f): Form<ZoneForm>) -> Result<Response, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let parent = f.parent.trim().to_string();
    if !scope::is_division_code(&parent) {
        return Err(unit_error(UnitError::Parent));
    }
    let target = parse_target(&f.target)?;
    if !scope::within(&s.caller.org_unit, &parent) || !scope::within(&s.caller.org_unit, &units::city_of(&parent)) {
        return Err(outside());
    }
    if target.is_some() && !may_set_target(&s.caller, &parent) {
        return Err(WebError::Invalid {
            zh: "开发区目标数由市确定".into(),
            en: "a zone's target is set by the city".into(),
        });
    }
    state
        .db
        .write(move |conn| Ok(units::create_zone(conn, &parent, &f.name, Some(&f.code), target, now())))
        .await?
        .map_err(unit_error)?;
    Ok(Redirect::to("/admin/units").into_response())
}

#[derive(Deserialize)]
struct TargetForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    target: String,
}

async fn set_target(
    State(state): State<AppState>,
    s: Session,
    Path(code): Path<String>,
    Form(f): Form<TargetForm>,
) -> Result<Response, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let target = parse_target(&f.target)?;
    if !scope::within(&s.caller.org_unit, &code) {
        return Err(ApiError::NotFound.into());
    }
    if !may_set_target(&s.caller, &code) {
        return Err(WebError::Invalid {
            zh: "开发区目标数由市确定".into(),
            en: "a zone's target is set by the city".into(),
        });
    }
    state.db.write(move |conn| Ok(units::set_target(conn, &code, target, now()))).await?.map_err(unit_error)?;
    Ok(Redirect::to("/admin/units").into_response())
}

#[derive(Deserialize)]
struct MoveForm {
    #[serde(default)]
    csrf: String,
    /// The county whose code the zone's enterprises were registered under.
    from: String,
}

/// Moves the enterprises registered to county `from` with the county name 其他 (the old
/// rule for zones) and their visits into zone `zone`. Returns how many enterprises moved.
pub fn move_to_zone(
    conn: &mut Connection,
    caller: &Caller,
    from: &str,
    zone: &str,
    now: i64,
) -> Result<usize, ApiError> {
    let units = Units::load(conn)?;
    if !units.is_zone(zone) {
        return Err(ApiError::NotFound);
    }
    let zone_name = units.name_or_code(zone);
    let tx = conn.transaction_with_behavior(crate::sql::TransactionBehavior::Immediate)?;
    let codes: Vec<String> = tx
        .prepare("SELECT credit_code FROM enterprises WHERE county_code = ?1 AND county_name = ?2 AND deleted = 0")?
        .query_map([from, units::OTHER], |r| r.get(0))?
        .collect::<crate::sql::Result<_>>()?;
    let author = Author { user: caller.user_id.clone(), device: records::WEB_DEVICE.to_string() };
    for code in &codes {
        let visits: Vec<String> = tx
            .prepare_cached("SELECT id FROM visits WHERE enterprise_id = ?1 AND county_code = ?2")?
            .query_map([code.as_str(), from], |r| r.get(0))?
            .collect::<crate::sql::Result<_>>()?;
        records::apply_server_edit_in(
            &tx,
            caller,
            RecordKind::Enterprise,
            code,
            now,
            |doc: &mut Document| -> Result<_, ApiError> {
                let old: Enterprise = doc.read()?;
                let mut new = old.clone();
                new.county.code = zone.to_string();
                new.county.name = zone_name.clone();
                Ok(doc.write_diff(&automerge::ActorId::random(), &author, &to_json(&old), &to_json(&new))?)
            },
        )?;
        for id in visits {
            records::apply_server_edit_in(
                &tx,
                caller,
                RecordKind::Visit,
                &id,
                now,
                |doc: &mut Document| -> Result<_, ApiError> {
                    let old: Visit = doc.read()?;
                    let mut new = old.clone();
                    new.county_code = zone.to_string();
                    Ok(doc.write_diff(&automerge::ActorId::random(), &author, &to_json(&old), &to_json(&new))?)
                },
            )?;
        }
    }
    tx.commit()?;
    Ok(codes.len())
}

async fn move_in(
    State(state): State<AppState>,
    s: Session,
    Path(zone): Path<String>,
    Form(f): Form<MoveForm>,
) -> Result<Response, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let from = f.from.trim().to_string();
    if !scope::is_division_code(&from) {
        return Err(WebError::bad_filter("from", "县区代码须为 6 位数字", "the county code must be 6 digits"));
    }
    if !scope::within(&s.caller.org_unit, &zone) || !scope::within(&s.caller.org_unit, &from) {
        return Err(ApiError::NotFound.into());
    }
    let caller = s.caller.clone();
    let moved = state.db.write(move |conn| move_to_zone(conn, &caller, &from, &zone, now())).await?;
    Ok(Redirect::to(&format!("/admin/units?moved={moved}")).into_response())
}

#[derive(Deserialize)]
struct DeadlineForm {
    #[serde(default)]
    csrf: String,
    province: String,
    list_due: String,
    summary_due: String,
}

async fn set_deadlines(
    State(state): State<AppState>,
    s: Session,
    Form(f): Form<DeadlineForm>,
) -> Result<Response, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let province = f.province.trim().to_string();
    if units::level(&province) != Level::Province || !scope::within(&s.caller.org_unit, &province) {
        return Err(outside());
    }
    let d = deadlines::Deadlines::parse(&f.list_due, &f.summary_due)
        .map_err(|(field, zh, en)| WebError::bad_filter(field, zh, en))?;
    state.db.write(move |conn| Ok(deadlines::set(conn, &province, &d)?)).await?;
    Ok(Redirect::to("/admin/units").into_response())
}
