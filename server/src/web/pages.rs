//! The console's HTML pages for supervisors: login and logout, the dashboard, the
//! enterprise list and page, the visit page with its review, the conflicts queue, and the
//! two tables (HTML, XLSX, CSV). Every POST checks the session's CSRF token before
//! anything else.

use automerge::ActorId;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::{context, Value};
use ohassist_core::doc::{to_json, Author, Document};
use ohassist_core::model::{Industry, Label, RecordKind, ReviewState, Visit};
use serde::Deserialize;

use super::session::{self, Lang, Session, LANG_COOKIE, LOGIN_CSRF_COOKIE, SESSION_COOKIE};
use super::views::{self, Params};
use super::{download, render, WebError};
use crate::accounts::{Caller, Role};
use crate::api::error::ApiError;
use crate::api::extract::ClientIp;
use crate::api::{AppState, DbCalls};
use crate::db::now;
use crate::login::{self, LoginError};
use crate::records;
use crate::reports::{self, export, StatusFilter};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/dashboard", get(dashboard))
        .route("/enterprises", get(enterprises))
        .route("/enterprises/{code}", get(enterprise))
        .route("/visits/{id}", get(visit))
        .route("/visits/{id}/review", post(review))
        .route("/conflicts", get(conflicts))
        .route("/conflicts/resolve", post(resolve))
        .route("/tables/{n}", get(table))
}

/// Query parameters, with a malformed query string answered as a bad filter.
pub fn params(q: Result<Query<Params>, QueryRejection>) -> Result<Params, WebError> {
    q.map(|Query(p)| p).map_err(|e| WebError::bad_filter("query", format!("查询参数无效：{e}"), e.body_text()))
}

/// What every page's layout needs.
pub fn base(s: &Session, active: &str) -> Value {
    context! {
        lang => s.lang.code(),
        csrf => s.csrf,
        active => active,
        user => context! {
            name => s.caller.display_name,
            username => s.caller.username,
            role => s.caller.role.as_str(),
            org_unit => s.caller.org_unit,
            unit_name => s.unit_name,
            admin => s.caller.role == Role::Admin,
        },
    }
}

/// Sets the language cookie when the page was asked for with `?lang=`.
fn with_lang(resp: impl IntoResponse, p: &Params, headers: &HeaderMap) -> Response {
    let mut r = resp.into_response();
    if let Some(l) = p.get("lang").filter(|l| *l == "en" || *l == "zh") {
        let c = session::cookie(LANG_COOKIE, l, Some(365 * 24 * 3600), headers);
        if let Ok(v) = c.parse() {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    r
}

async fn login_page(lang: Lang, headers: HeaderMap, q: Result<Query<Params>, QueryRejection>) -> Response {
    let p = q.map(|Query(p)| p).unwrap_or_default();
    login_form(lang, &headers, &p, None)
}

fn login_form(lang: Lang, headers: &HeaderMap, p: &Params, error: Option<(String, String)>) -> Response {
    let token = session::random_token();
    let html = render(
        "login.html",
        context! { lang => lang.code(), csrf => token, error => error.map(|(zh, en)| context!{ zh, en }) },
    );
    let mut r = match html {
        Ok(h) => h.into_response(),
        Err(e) => return e.into_response(),
    };
    if let Ok(v) = session::cookie(LOGIN_CSRF_COOKIE, &token, Some(3600), headers).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    with_lang(r, p, headers)
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(state): State<AppState>,
    lang: Lang,
    headers: HeaderMap,
    ClientIp(ip): ClientIp,
    Form(form): Form<LoginForm>,
) -> Response {
    // Login CSRF: the form must carry the token its page set as a cookie.
    let expected = session::read_cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !session::same_secret(&form.csrf, &expected) {
        return WebError::Csrf.into_response();
    }
    // The password is checked as the API checks it: outside the writer, a few at a time.
    let now = now();
    let result = match login::authenticate(&state.db, &form.username, &form.password, ip).await {
        Ok(u) if u.role.uses_console() => {
            state.db.write(move |conn| Ok(login::create_session(conn, &u.id, now)?)).await.map(Ok)
        }
        Ok(u) => Ok(Err(Some(u.role))),
        Err(LoginError::InvalidCredentials) => Ok(Err(None)),
        Err(e) => return WebError::from(e).into_response(),
    };
    let p = Params::new();
    match result {
        Ok(Ok(secret)) => {
            let mut r = Redirect::to("/dashboard").into_response();
            let c = session::cookie(SESSION_COOKIE, &secret, Some(login::SESSION_LIFETIME_SECS), &headers);
            if let Ok(v) = c.parse() {
                r.headers_mut().append(header::SET_COOKIE, v);
            }
            r
        }
        Ok(Err(Some(_inspector_or_relay))) => login_form(
            lang,
            &headers,
            &p,
            Some((
                "检查员账号请使用手机应用，下级服务器（中继）账号仅供服务器之间同步；控制台仅供监管和管理人员使用".into(),
                "the console is for supervisors and admins; inspectors use the phone app, relay accounts are for servers"
                    .into(),
            )),
        ),
        Ok(Err(None)) => {
            login_form(lang, &headers, &p, Some(("用户名或密码错误".into(), "wrong username or password".into())))
        }
        Err(e) => WebError::Api(e).into_response(),
    }
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    s: Session,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    if let Some(secret) = session::read_cookie(&headers, SESSION_COOKIE) {
        state.db.write(move |conn| Ok(login::revoke_session(conn, &secret, now())?)).await?;
    }
    let mut r = Redirect::to("/login").into_response();
    if let Ok(v) = session::cookie(SESSION_COOKIE, "", Some(0), &headers).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// A bar chart of assisted enterprises per county against the target, as SVG.
fn chart(d: &reports::Dashboard, lang: Lang) -> String {
    let bar_h = 18;
    let label_w = 110;
    let width = 560;
    let plot = (width - label_w - 40) as f64;
    let max = d.counties.iter().map(|c| c.assisted).max().unwrap_or(0).max(d.enterprise_target) as f64 * 1.1;
    let scale = |n: f64| (n / max * plot).round();
    let height = d.counties.len() * (bar_h + 6) + 30;
    let mut svg = format!(
        r#"<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{}" xmlns="http://www.w3.org/2000/svg">"#,
        if lang == Lang::En { "Assisted enterprises per county" } else { "各县区帮扶企业数" }
    );
    for (i, c) in d.counties.iter().enumerate() {
        let y = i * (bar_h + 6) + 4;
        let class = if c.below_enterprise_target { "bar below" } else { "bar" };
        svg.push_str(&format!(
            r#"<text x="{}" y="{}" text-anchor="end" class="lbl">{}</text><rect class="{class}" x="{label_w}" y="{y}" width="{}" height="{bar_h}"/><text x="{}" y="{}" class="val">{}</text>"#,
            label_w - 6,
            y + bar_h - 4,
            escape(&c.county_name),
            scale(c.assisted as f64),
            label_w as f64 + scale(c.assisted as f64) + 4.0,
            y + bar_h - 4,
            c.assisted
        ));
    }
    let tx = label_w as f64 + scale(d.enterprise_target as f64);
    svg.push_str(&format!(
        r#"<line class="target" x1="{tx}" x2="{tx}" y1="0" y2="{}"/><text x="{tx}" y="{}" class="lbl" text-anchor="middle">{} {}</text></svg>"#,
        height - 20,
        height - 6,
        if lang == Lang::En { "target" } else { "目标" },
        d.enterprise_target
    ));
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn six_ones_labels(lang: Lang) -> Vec<Value> {
    reports::six_ones()
        .iter()
        .map(|s| context! { code => s.code(), label => if lang == Lang::En { s.label_en() } else { s.label_zh() } })
        .collect()
}

async fn dashboard(
    State(state): State<AppState>,
    s: Session,
    headers: HeaderMap,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Response, WebError> {
    let p = params(q)?;
    let (unit, year) = views::unit_and_maybe_year(&state.db, &p, &s.caller.org_unit).await?;
    let cfg = state.attachments.clone();
    let (d, flags, unit_name, due, silent_relays) = state
        .db
        .read(move |conn| {
            let year = views::year_or_latest(conn, &unit, year)?;
            let deadlines = reports::deadlines::of_province(conn, &crate::units::province_of(&unit))?;
            let due = reports::deadlines::due(&deadlines, year, reports::deadlines::today_cst());
            // Lower servers relaying to this one that have been silent too long.
            let silent: Vec<_> =
                crate::relay::relay_accounts(conn, &unit, now())?.into_iter().filter(|r| r.silent).collect();
            Ok((
                reports::dashboard(conn, &unit, year)?,
                super::evidence::flags(conn, &unit, year, &cfg)?,
                reports::unit_name(conn, &unit)?,
                due,
                silent,
            ))
        })
        .await?;
    let svg = chart(&d, s.lang);
    let html = render(
        "dashboard.html",
        context! { ..base(&s, "dashboard"), ..context! { d => d, chart => Value::from_safe_string(svg), six_ones => six_ones_labels(s.lang), flags, unit_name, due, silent_relays, silent_after_h => crate::relay::SILENT_AFTER_SECS / 3600 } },
    )?;
    Ok(with_lang(html, &p, &headers))
}

/// Most rows the enterprise list shows (the JSON API returns all).
const LIST_LIMIT: usize = 500;

async fn enterprises(
    State(state): State<AppState>,
    s: Session,
    headers: HeaderMap,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Response, WebError> {
    let p = params(q)?;
    let (unit, year) = views::unit_and_maybe_year(&state.db, &p, &s.caller.org_unit).await?;
    let mut filter = views::list_filter(&state.db, &p, &unit).await?;
    let only_attention = p.get("attention").is_some_and(|a| a == "1");
    let (rows, counties, year, attention) = state
        .db
        .read(move |conn| {
            let year = views::year_or_latest(conn, &unit, year)?;
            let attention = reports::attention(conn, &unit)?;
            if only_attention {
                filter.credit_codes = Some(attention.keys().cloned().collect());
            }
            let rows = reports::list(conn, &unit, year, &filter)?;
            let mut counties: Vec<(String, String)> =
                reports::table2(conn, &unit, year)?.0.into_iter().map(|r| (r.county_code, r.county_name)).collect();
            counties.dedup();
            Ok((rows, counties, year, attention))
        })
        .await?;
    let total = rows.len();
    let en = s.lang == Lang::En;
    let rows: Vec<Value> = rows
        .into_iter()
        .take(LIST_LIMIT)
        .map(|r| {
            let missing: Vec<&str> = r.missing.iter().map(|m| if en { m.label_en() } else { m.label_zh() }).collect();
            let industry = r.industry.map(|i| if en { i.label_en() } else { i.label_zh() }).unwrap_or("");
            let attention = attention.get(&r.credit_code).copied().unwrap_or_default();
            context! { r => r, missing => missing, industry => industry, attention }
        })
        .collect();
    let industries: Vec<Value> = Industry::ALL
        .iter()
        .map(|i| context! { code => i.code(), label => if en { i.label_en() } else { i.label_zh() } })
        .collect();
    let statuses: Vec<&str> = StatusFilter::ALL.iter().map(|(c, _)| *c).collect();
    let html = render(
        "enterprises.html",
        context! { ..base(&s, "enterprises"), ..context! {
            rows, total, limit => LIST_LIMIT, counties, industries, statuses, six_ones => six_ones_labels(s.lang),
            f => p, year,
        } },
    )?;
    Ok(with_lang(html, &Params::new(), &headers))
}

async fn enterprise(
    State(state): State<AppState>,
    s: Session,
    Path(code): Path<String>,
) -> Result<Html<String>, WebError> {
    let unit = s.caller.org_unit.clone();
    let (view, units) = state
        .db
        .read(move |conn| Ok((views::enterprise(conn, &unit, &code)?, crate::units::Units::load(conn)?)))
        .await?;
    // A supervisor or admin whose unit covers more than one county may transfer the record.
    let transfer_counties: Vec<Value> = if matches!(s.caller.role, Role::Supervisor | Role::Admin) {
        units
            .counties_within(&s.caller.org_unit)
            .into_iter()
            .map(|u| context! { code => u.code, name => u.name })
            .collect()
    } else {
        Vec::new()
    };
    let en = s.lang == Lang::En;
    let label = |l: &dyn Label| if en { l.label_en() } else { l.label_zh() };
    let industry = view.enterprise.industry.as_ref().map(|i| label(i)).unwrap_or("");
    let size = view.enterprise.size.as_ref().map(|i| label(i)).unwrap_or("");
    let review_labels: Vec<&str> = view
        .visits
        .iter()
        .map(|v| ReviewState::from_code(&v.review_state).map(|r| label(&r)).unwrap_or(v.review_state.as_str()))
        .collect();
    let status: Vec<Value> = view
        .status
        .iter()
        .map(|y| {
            let missing: Vec<&str> =
                y.row.missing.iter().map(|m| if en { m.label_en() } else { m.label_zh() }).collect();
            context! { year => y.year, cells => y.row.table1_cells()[3..].to_vec(), missing }
        })
        .collect();
    render(
        "enterprise.html",
        context! { ..base(&s, "enterprises"), ..context! { v => view, industry, size, review_labels, status, transfer_counties, headers => reports::TABLE1_HEADERS[4..].to_vec() } },
    )
}

async fn visit(State(state): State<AppState>, s: Session, Path(id): Path<String>) -> Result<Html<String>, WebError> {
    let unit = s.caller.org_unit.clone();
    let (cfg, lang) = (state.attachments.clone(), s.lang);
    let (view, evidence) = state
        .db
        .read(move |conn| {
            let view = views::visit(conn, &unit, &id)?;
            Ok((view, super::evidence::evidence(conn, &unit, &id, &cfg, lang)?))
        })
        .await?;
    let en = s.lang == Lang::En;
    let review_label = if en { view.visit.review.state.label_en() } else { view.visit.review.state.label_zh() };
    let conflicted: std::collections::HashMap<String, String> =
        view.conflicts.iter().map(|c| (c.path_text.clone(), c.anchor.clone())).collect();
    let sections = super::visit_sections::sections(&view.visit, s.lang, super::visit_sections::Marks(&conflicted));
    render(
        "visit.html",
        context! { ..base(&s, "enterprises"), ..context! {
            v => view, sections, review_label, evidence,
            reviewable => view_reviewable(&view.visit),
        } },
    )
}

fn view_reviewable(v: &Visit) -> bool {
    v.review.state == ReviewState::Submitted
}

#[derive(Deserialize)]
struct ReviewForm {
    #[serde(default)]
    csrf: String,
    action: String,
    #[serde(default)]
    comment: String,
    /// The supervisor confirms having read what changed after the principal signed.
    #[serde(default)]
    acknowledge_changes: String,
}

/// The actor of a change the server writes: fresh each time, so that no two writes (even
/// from a restored backup) can reuse an actor's sequence numbers.
fn server_actor() -> ActorId {
    ActorId::random()
}

async fn review(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    Form(form): Form<ReviewForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let new_state = match form.action.as_str() {
        "approve" => ReviewState::Approved,
        "return" => ReviewState::Returned,
        _ => return Err(WebError::Invalid { zh: "未知的审核操作".into(), en: "unknown review action".into() }),
    };
    let comment = form.comment.trim().to_string();
    if new_state == ReviewState::Returned && comment.is_empty() {
        return Err(WebError::Invalid {
            zh: "退回时请填写意见".into(), en: "a returned visit needs a comment".into()
        });
    }
    let acknowledged = form.acknowledge_changes == "1";
    review_visit(&state, &s.caller, &id, new_state, &comment, acknowledged).await?;
    Ok(Redirect::to(&format!("/visits/{id}")).into_response())
}

/// Approves or returns a submitted visit: a change to the visit document by the server.
///
/// The approval guard: a visit with open conflicts is not approved (the supervisor settles
/// them first: which value is right is exactly what the approval vouches for); a visit
/// changed after the principal signed is approved only with `acknowledged`, and the
/// acknowledgement, listing the changed fields, is written into the review comment, so it
/// stays in the record and its history. Returning a visit is always allowed.
pub async fn review_visit(
    state: &AppState,
    caller: &Caller,
    id: &str,
    new_state: ReviewState,
    comment: &str,
    acknowledged: bool,
) -> Result<(), WebError> {
    let caller = caller.clone();
    let id = id.to_string();
    let comment = comment.to_string();
    let refused: std::sync::Arc<std::sync::Mutex<Option<(String, String)>>> = Default::default();
    let refused2 = refused.clone();
    let refuse = move |zh: String, en: String| {
        *refused2.lock().unwrap_or_else(|p| p.into_inner()) = Some((zh, en));
        Ok(None)
    };
    state
        .db
        .write(move |conn| {
            // Scope first: an out-of-scope visit is not found, as on the pages.
            views::visit(conn, &caller.org_unit, &id)?;
            let author = Author { user: caller.user_id.clone(), device: records::WEB_DEVICE.to_string() };
            records::apply_server_edit(
                conn,
                &caller,
                RecordKind::Visit,
                &id,
                now(),
                |doc: &mut Document| -> Result<_, ApiError> {
                    let old: Visit = doc.read()?;
                    if old.review.state != ReviewState::Submitted {
                        return refuse(
                            "只有已提交的走访记录可以审核".into(),
                            "only a submitted visit can be reviewed".into(),
                        );
                    }
                    let mut comment = comment.clone();
                    if new_state == ReviewState::Approved {
                        let open = doc.conflicts().len();
                        if open > 0 {
                            return refuse(
                                format!("该走访记录还有 {open} 处冲突未处理，请先处理冲突再审核通过"),
                                format!("the visit has {open} open conflict(s); settle them before approving"),
                            );
                        }
                        let changed = old
                            .signature
                            .as_ref()
                            .and_then(|sig| {
                                crate::attachments::changed_after_signing(doc, &sig.signed_version, &sig.image_sha256)
                            })
                            .unwrap_or_default();
                        if !changed.is_empty() {
                            if !acknowledged {
                                return refuse(
                                    format!("签名后有 {} 处修改，请核对后勾选确认再审核通过", changed.len()),
                                    format!(
                                        "{} field(s) changed after signing; confirm you checked them to approve",
                                        changed.len()
                                    ),
                                );
                            }
                            let record = doc.json(None);
                            let labels: Vec<String> = changed
                                .iter()
                                .map(|p| {
                                    let path: Vec<String> = p.split('/').map(str::to_string).collect();
                                    ohassist_core::model::field_label(RecordKind::Visit, &record, &path).zh
                                })
                                .collect();
                            let note = format!("【审核确认】已核对签名后的修改：{}", labels.join("；"));
                            comment = if comment.is_empty() { note } else { format!("{comment}\n{note}") };
                        }
                    }
                    let mut new = old.clone();
                    new.review.state = new_state;
                    new.review.comment = comment;
                    new.review.reviewer = caller.display_name.clone();
                    new.review.at = views::format_ms(ohassist_core::doc::now_ms());
                    Ok(doc.write_diff(&server_actor(), &author, &to_json(&old), &to_json(&new))?)
                },
            )
        })
        .await?;
    let refusal = refused.lock().unwrap_or_else(|p| p.into_inner()).take();
    match refusal {
        Some((zh, en)) => Err(WebError::Invalid { zh, en }),
        None => Ok(()),
    }
}

async fn conflicts(State(state): State<AppState>, s: Session) -> Result<Html<String>, WebError> {
    let unit = s.caller.org_unit.clone();
    let list = state.db.read(move |conn| views::conflicts(conn, &unit)).await?;
    render(
        "conflicts.html",
        context! { ..base(&s, "conflicts"), ..context! { conflicts => list, next => "/conflicts" } },
    )
}

#[derive(Deserialize)]
struct ResolveForm {
    #[serde(default)]
    csrf: String,
    doc_id: String,
    kind: String,
    /// The conflict's path as a JSON array of segments.
    path: String,
    /// Index of the chosen value, or `custom` for `custom_value`.
    choice: String,
    #[serde(default)]
    custom_value: String,
    #[serde(default)]
    next: String,
}

async fn resolve(
    State(state): State<AppState>,
    s: Session,
    Form(form): Form<ResolveForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let kind = RecordKind::parse(&form.kind).ok_or(ApiError::NotFound)?;
    let path: Vec<String> = serde_json::from_str(&form.path)
        .map_err(|_| WebError::Invalid { zh: "字段路径无效".into(), en: "invalid field path".into() })?;
    let choice = match form.choice.as_str() {
        "custom" => Choice::Typed(form.custom_value.clone()),
        n => Choice::Index(
            n.parse()
                .map_err(|_| WebError::Invalid { zh: "请选择一个值".into(), en: "choose a value".into() })?,
        ),
    };
    resolve_conflict(&state, &s, kind, &form.doc_id, &path, choice).await?;
    let next = if form.next.starts_with('/') && !form.next.starts_with("//") { form.next } else { "/conflicts".into() };
    Ok(Redirect::to(&next).into_response())
}

pub enum Choice {
    Index(usize),
    /// Typed by the supervisor: JSON when it parses as JSON of the conflicting values'
    /// type, else text.
    Typed(String),
}

/// Settles a conflict with `Document::resolve`: a new change in the feed.
pub async fn resolve_conflict(
    state: &AppState,
    s: &Session,
    kind: RecordKind,
    doc_id: &str,
    path: &[String],
    choice: Choice,
) -> Result<(), WebError> {
    let caller = s.caller.clone();
    let doc_id = doc_id.to_string();
    let path = path.to_vec();
    state
        .db
        .write(move |conn| {
            records::county_in_scope(conn, &caller.org_unit, kind, &doc_id)?;
            let author = Author { user: caller.user_id.clone(), device: records::WEB_DEVICE.to_string() };
            records::apply_server_edit(
                conn,
                &caller,
                kind,
                &doc_id,
                now(),
                |doc: &mut Document| -> Result<_, ApiError> {
                    let conflict = doc.conflicts().into_iter().find(|c| c.path == path).ok_or(ApiError::NotFound)?;
                    let value = match &choice {
                        Choice::Index(i) => conflict.values.get(*i).ok_or(ApiError::NotFound)?.value.clone(),
                        Choice::Typed(text) => {
                            let parsed = serde_json::from_str::<serde_json::Value>(text.trim()).ok();
                            let same_type = |v: &serde_json::Value| {
                                conflict
                                    .values
                                    .iter()
                                    .any(|c| std::mem::discriminant(&c.value) == std::mem::discriminant(v))
                            };
                            match parsed.filter(same_type) {
                                Some(v) => v,
                                None => serde_json::Value::String(text.clone()),
                            }
                        }
                    };
                    Ok(Some(doc.resolve(&server_actor(), &author, &path, &value)?))
                },
            )
        })
        .await?;
    Ok(())
}

async fn table(
    State(state): State<AppState>,
    s: Session,
    Path(n): Path<String>,
    q: Result<Query<Params>, QueryRejection>,
) -> Result<Response, WebError> {
    let p = params(q)?;
    let (unit, year) = views::unit_and_maybe_year(&state.db, &p, &s.caller.org_unit).await?;
    let format = p.get("format").map(String::as_str).unwrap_or("html").to_string();
    if !["html", "xlsx", "csv"].contains(&format.as_str()) {
        return Err(WebError::bad_filter("format", "格式应为 html、xlsx 或 csv", "format must be html, xlsx or csv"));
    }
    let which = match n.as_str() {
        "1" => 1,
        "2" => 2,
        _ => return Err(ApiError::NotFound.into()),
    };
    let views::TableData { unit, unit_name, year, rows, table2: (t2, total), by, signature: sig } =
        views::table_data(&state.db, &p, &s.caller, unit, year).await?;
    let (title, body, header) = if which == 1 {
        (reports::table1_title(&unit_name, year), export::table1_body(&rows), None)
    } else {
        (reports::table2_title(&unit_name, year), export::table2_body(&t2, &total), Some((t2, total)))
    };
    let filename = format!("{title}.{format}");
    match (format.as_str(), &header) {
        ("xlsx", None) => Ok(download(
            export::table1_xlsx(&title, &rows, &sig).map_err(ApiError::internal)?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &filename,
        )),
        ("xlsx", Some((t2, total))) => Ok(download(
            export::table2_xlsx(&title, t2, total, &sig).map_err(ApiError::internal)?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            &filename,
        )),
        ("csv", None) => Ok(download(export::table1_csv(&title, &rows, &sig), "text/csv; charset=utf-8", &filename)),
        ("csv", Some((t2, total))) => {
            Ok(download(export::table2_csv(&title, t2, total, &sig), "text/csv; charset=utf-8", &filename))
        }
        _ => {
            let html = render(
                "table.html",
                context! { ..base(&s, if which == 1 { "table1" } else { "table2" }), ..context! {
                    which, title, body, year, unit, unit_name, sig => sig, lines => sig.lines().to_vec(),
                    by => by.as_str(),
                    headers1 => reports::TABLE1_HEADERS.to_vec(),
                    top => reports::TABLE2_TOP.to_vec(), training => reports::TABLE2_TRAINING.to_vec(),
                    training_at => reports::TABLE2_TRAINING_AT,
                } },
            )?;
            Ok(html.into_response())
        }
    }
}
