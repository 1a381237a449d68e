//! The 月调度 page (Chongqing's monthly progress): a unit's month as HTML or XLSX, with the
//! programme's deadlines. Figures from `reports::monthly`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use minijinja::context;

use super::pages::{base, params};
use super::session::Session;
use super::views;
use super::{download, render, WebError};
use crate::api::error::ApiError;
use crate::api::{AppState, DbCalls};
use crate::reports::{self, deadlines, export, monthly, Signature};
use crate::units;

pub fn router() -> Router<AppState> {
    Router::new().route("/monthly", get(page))
}

/// The month asked for, if any; a bad one names the field.
fn month_param(p: &views::Params) -> Result<Option<u32>, WebError> {
    match p.get("month").map(|m| m.trim()).filter(|m| !m.is_empty()) {
        Some(m) => m.parse::<u32>().ok().filter(|m| (1..=12).contains(m)).map(Some).ok_or_else(|| {
            WebError::bad_filter("month", format!("月份“{m}”应为 1–12"), format!("month {m:?} must be 1-12"))
        }),
        None => Ok(None),
    }
}

/// Without a month: this month in the current year, December of a past one.
fn default_month(year: i32) -> u32 {
    let today = deadlines::today_cst();
    if today.year() == year {
        u8::from(today.month()) as u32
    } else {
        12
    }
}

async fn page(
    State(state): State<AppState>,
    s: Session,
    q: Result<Query<views::Params>, QueryRejection>,
) -> Result<Response, WebError> {
    let p = params(q)?;
    let (unit, year) = views::unit_and_maybe_year(&state.db, &p, &s.caller.org_unit).await?;
    let format = p.get("format").map(String::as_str).unwrap_or("html").to_string();
    if !["html", "xlsx"].contains(&format.as_str()) {
        return Err(WebError::bad_filter("format", "格式应为 html 或 xlsx", "format must be html or xlsx"));
    }
    let month = month_param(&p)?;
    let (m, unit_name, due) = state
        .db
        .read(move |conn| {
            let year = views::year_or_latest(conn, &unit, year)?;
            let month = month.unwrap_or_else(|| default_month(year));
            let d = deadlines::of_province(conn, &units::province_of(&unit))?;
            Ok((
                monthly::monthly(conn, &unit, year, month)?,
                reports::unit_name(conn, &unit)?,
                deadlines::due(&d, year, deadlines::today_cst()),
            ))
        })
        .await?;
    let title = monthly::title(&unit_name, m.year, m.month);
    let body = monthly::body(&m);
    let sig = Signature {
        unit: unit_name.clone(),
        reporter: p.get("reporter").cloned().unwrap_or_else(|| s.caller.display_name.clone()),
        phone: p.get("phone").cloned().unwrap_or_default(),
    };
    if format == "xlsx" {
        let bytes = export::grid_xlsx("月调度", &title, &monthly::HEADERS, &body, |c| (1..=4).contains(&c), &sig)
            .map_err(ApiError::internal)?;
        return Ok(download(
            bytes,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &format!("{title}.xlsx"),
        ));
    }
    let months: Vec<u32> = (1..=12).collect();
    Ok(render(
        "monthly.html",
        context! { ..base(&s, "monthly"), ..context! {
            m, title, body, headers => monthly::HEADERS.to_vec(), months, due, lines => sig.lines().to_vec(),
        } },
    )?
    .into_response())
}
