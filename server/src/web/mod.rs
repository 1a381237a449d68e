//! The supervisor console: server-rendered HTML pages for supervisors and admins (login,
//! dashboard, enterprises, visits, review, conflicts, the two tables, users, devices,
//! import) and the read-only JSON API for the same views under `/api/v1/`.
//!
//! Responsibilities, by module: [`session`] cookies, sessions, CSRF and language;
//! [`views`] what a page shows, read from the database with scope applied (shared by the
//! HTML and the JSON); [`pages`] and [`admin`] the HTML handlers; [`api`] the read-only JSON
//! API (registered with the rest of `/api/v1` and documented by `crate::api::openapi`: it
//! lives here, not in `crate::api`, because it is the console's views as JSON, with the
//! same queries, scope and filters) and [`export`] the records export. Figures come from
//! `crate::reports`; writes to records go through `records::apply_server_edit`, never
//! around it. An id outside the caller's org unit is answered exactly like an unknown id
//! (404), so existence is not leaked. Domain errors become [`WebError`]s here, once.

pub mod admin;
pub mod api;
pub mod clients;
pub mod evidence;
pub mod export;
pub mod monthly;
pub mod pages;
pub mod session;
pub mod transfers;
pub mod units;
pub mod views;
mod visit_sections;

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use minijinja::{Environment, Value};
use ohassist_core::sync::wire::ErrorBody;

use crate::accounts::AccountError;
use crate::api::error::ApiError;
use crate::api::AppState;
use crate::attachments::AttachmentError;
use crate::db::DbError;
use crate::export::CursorError;
use crate::login::LoginError;
use crate::records::RecordsError;

/// Every console route, HTML and JSON.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/static/app.css", get(stylesheet))
        .merge(pages::router())
        .merge(evidence::router())
        .merge(admin::router())
        .merge(units::router())
        .merge(monthly::router())
        .merge(transfers::router())
        .merge(clients::router())
}

async fn stylesheet() -> Response {
    let css = include_str!("../../static/app.css");
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=3600")], css).into_response()
}

/// Why a console request failed. HTML pages show it as a page; the JSON API as an
/// [`ErrorBody`] (see [`JsonError`]).
#[derive(Debug)]
pub enum WebError {
    /// No live session: the browser is sent to the login page.
    LoginRequired,
    /// A form whose CSRF token is not the session's.
    Csrf,
    /// A query parameter that does not parse (a year, a county code, a vocabulary code).
    BadFilter {
        field: &'static str,
        zh: String,
        en: String,
    },
    /// A form value refused (review of a visit not submitted, an import not clean...).
    Invalid {
        zh: String,
        en: String,
    },
    Api(ApiError),
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> Self {
        WebError::Api(e)
    }
}

impl From<crate::sql::Error> for WebError {
    fn from(e: crate::sql::Error) -> Self {
        WebError::Api(e.into())
    }
}

// The domain's errors answer as the API answers them (one mapping, `api::error`), but for
// the account errors of the admin's forms, which the form's page shows.

impl From<DbError> for WebError {
    fn from(e: DbError) -> Self {
        WebError::Api(e.into())
    }
}

impl From<RecordsError> for WebError {
    fn from(e: RecordsError) -> Self {
        WebError::Api(e.into())
    }
}

impl From<AttachmentError> for WebError {
    fn from(e: AttachmentError) -> Self {
        WebError::Api(e.into())
    }
}

impl From<CursorError> for WebError {
    fn from(e: CursorError) -> Self {
        WebError::Api(e.into())
    }
}

impl From<LoginError> for WebError {
    fn from(e: LoginError) -> Self {
        WebError::Api(e.into())
    }
}

impl From<AccountError> for WebError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Username
            | AccountError::DisplayName
            | AccountError::OrgUnit
            | AccountError::WeakPassword
            | AccountError::UsernameTaken => WebError::Invalid { zh: e.message_zh(), en: e.to_string() },
            AccountError::NoSuchUser
            | AccountError::NoSuchDevice
            | AccountError::Hash(_)
            | AccountError::Storage(_) => WebError::Api(e.into()),
        }
    }
}

impl WebError {
    pub fn bad_filter(field: &'static str, zh: impl Into<String>, en: impl Into<String>) -> WebError {
        WebError::BadFilter { field, zh: zh.into(), en: en.into() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            WebError::LoginRequired => StatusCode::UNAUTHORIZED,
            WebError::Csrf => StatusCode::FORBIDDEN,
            WebError::BadFilter { .. } => StatusCode::BAD_REQUEST,
            WebError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::Api(e) => e.status(),
        }
    }

    pub fn body(&self) -> ErrorBody {
        let (code, zh, en, field) = match self {
            WebError::LoginRequired => ("unauthorized", "请先登录".to_string(), "please log in".to_string(), None),
            WebError::Csrf => (
                "csrf",
                "表单已过期或来源不可信，未做任何修改。请刷新页面后重试。".to_string(),
                "the form is stale or did not come from this console; nothing was changed. Reload the page and try again."
                    .to_string(),
                None,
            ),
            WebError::BadFilter { field, zh, en } => {
                ("invalid_filter", zh.clone(), en.clone(), Some(field.to_string()))
            }
            WebError::Invalid { zh, en } => ("invalid_input", zh.clone(), en.clone(), None),
            WebError::Api(e) => return e.body(),
        };
        ErrorBody { code: code.to_string(), message: zh, message_en: en, field }
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self {
            WebError::LoginRequired => Redirect::to("/login").into_response(),
            WebError::Api(ApiError::Internal(detail)) => {
                tracing::error!(%detail, "internal error in the console");
                error_page(StatusCode::INTERNAL_SERVER_ERROR, &ApiError::Internal(String::new()).body())
            }
            other => error_page(other.status(), &other.body()),
        }
    }
}

fn error_page(status: StatusCode, body: &ErrorBody) -> Response {
    let html = render_raw(
        "error.html",
        minijinja::context! { lang => "zh", status => status.as_u16(), error => body, user => Value::UNDEFINED },
    )
    .unwrap_or_else(|_| format!("<p>{} / {}</p>", body.message, body.message_en));
    (status, Html(html)).into_response()
}

/// A [`WebError`] answered as JSON, for the API.
pub struct JsonError(pub WebError);

impl<E: Into<WebError>> From<E> for JsonError {
    fn from(e: E) -> Self {
        JsonError(e.into())
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        match self.0 {
            WebError::Api(e) => e.into_response(),
            other => (other.status(), Json(other.body())).into_response(),
        }
    }
}

/// The templates, compiled once.
fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, source) in [
            ("base.html", include_str!("../../templates/base.html")),
            ("error.html", include_str!("../../templates/error.html")),
            ("login.html", include_str!("../../templates/login.html")),
            ("dashboard.html", include_str!("../../templates/dashboard.html")),
            ("enterprises.html", include_str!("../../templates/enterprises.html")),
            ("enterprise.html", include_str!("../../templates/enterprise.html")),
            ("visit.html", include_str!("../../templates/visit.html")),
            ("conflicts.html", include_str!("../../templates/conflicts.html")),
            ("refused.html", include_str!("../../templates/refused.html")),
            ("conflict_forms.html", include_str!("../../templates/conflict_forms.html")),
            ("table.html", include_str!("../../templates/table.html")),
            ("users.html", include_str!("../../templates/users.html")),
            ("devices.html", include_str!("../../templates/devices.html")),
            ("import.html", include_str!("../../templates/import.html")),
            ("units.html", include_str!("../../templates/units.html")),
            ("clients.html", include_str!("../../templates/clients.html")),
            ("monthly.html", include_str!("../../templates/monthly.html")),
            ("upstream.html", include_str!("../../templates/upstream.html")),
        ] {
            env.add_template(name, source).expect("templates compile");
        }
        // `tr("中文", "English")`: the text in the page's language.
        env.add_function("tr", |state: &minijinja::State, zh: String, en: String| -> String {
            let lang = state.lookup("lang");
            if lang.as_ref().and_then(|l| l.as_str()) == Some("en") {
                en
            } else {
                zh
            }
        });
        env.add_filter("pct", |v: f64| format!("{:.1}%", v * 100.0));
        env
    })
}

fn render_raw(name: &str, ctx: Value) -> Result<String, minijinja::Error> {
    templates().get_template(name)?.render(ctx)
}

/// Renders a page; a template error is an internal error.
pub fn render(name: &str, ctx: Value) -> Result<Html<String>, WebError> {
    render_raw(name, ctx).map(Html).map_err(|e| WebError::Api(ApiError::internal(format!("template {name}: {e:#}"))))
}

/// Adds `Content-Disposition: attachment` for a download.
pub fn download(bytes: Vec<u8>, content_type: &'static str, filename: &str) -> Response {
    let disposition =
        format!("attachment; filename=\"table.{}\"; filename*=UTF-8''{}", ext(filename), encode(filename));
    let mut r = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

fn ext(filename: &str) -> &str {
    filename.rsplit('.').next().unwrap_or("bin")
}

/// Percent-encodes a file name for `filename*` (RFC 5987).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
