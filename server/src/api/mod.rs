//! The HTTP API: one router per resource module, merged by [`app`]. Only this module and
//! its children know status codes and headers.

pub mod admin;
pub mod attachments;
pub mod auth;
pub mod device;
pub mod error;
pub mod extract;
pub mod health;
pub mod openapi;
pub mod sync;

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use ohassist_core::sync::wire;
use utoipa_axum::router::OpenApiRouter;

use std::future::Future;

use crate::sql::Connection;

use crate::db::Db;
use error::{ApiError, ApiResult};

/// How the handlers of `api/` and `web/` run database work: [`Db::with_writer`] and
/// [`Db::with_reader`] with the closure's errors as [`ApiError`]s, the HTTP layer's own (a
/// domain error converts into one with `?`). The domain calls the generic methods.
pub trait DbCalls {
    fn write<R, F>(&self, f: F) -> impl Future<Output = ApiResult<R>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> ApiResult<R> + Send + 'static;

    fn read<R, F>(&self, f: F) -> impl Future<Output = ApiResult<R>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> ApiResult<R> + Send + 'static;
}

impl DbCalls for Db {
    fn write<R, F>(&self, f: F) -> impl Future<Output = ApiResult<R>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> ApiResult<R> + Send + 'static,
    {
        self.with_writer(f)
    }

    fn read<R, F>(&self, f: F) -> impl Future<Output = ApiResult<R>> + Send
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> ApiResult<R> + Send + 'static,
    {
        self.with_reader(f)
    }
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    /// The byte budget of a pull page: `wire::PULL_PAGE_BYTES`, smaller in tests.
    pub pull_page_bytes: usize,
    /// Where attachments live and their limits and flag thresholds.
    pub attachments: Arc<crate::attachments::Config>,
    /// Serialises the appends of attachment uploads (one writer at a time on the disk).
    pub upload_lock: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the relay to the upstream (`crate::relay`) after a push brought new changes.
    pub relay_wake: Arc<tokio::sync::Notify>,
}

impl AppState {
    pub fn new(db: Db) -> AppState {
        // The data directory is the database's.
        let data_dir = db.data_dir().to_path_buf();
        AppState {
            db,
            pull_page_bytes: wire::PULL_PAGE_BYTES,
            attachments: Arc::new(crate::attachments::Config::new(&data_dir)),
            upload_lock: Arc::new(tokio::sync::Mutex::new(())),
            relay_wake: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

/// Every endpoint of the API, each registered from its `#[utoipa::path]` attribute: the router
/// and the OpenAPI document (`openapi::document`) are made from this one list.
pub fn routes() -> OpenApiRouter<AppState> {
    let api = OpenApiRouter::new()
        .merge(auth::router())
        .merge(sync::router())
        .merge(admin::router())
        .merge(attachments::router())
        .merge(device::router())
        .layer(middleware::from_fn(refuse_other_protocols));
    OpenApiRouter::new()
        .merge(health::router())
        .merge(api)
        .merge(crate::web::api::router())
        .merge(crate::web::export::router())
        .routes(utoipa_axum::routes!(openapi::openapi_json))
}

/// The whole API over `state`: what `serve` runs and what the tests call.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(routes())
        .merge(openapi::viewer())
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// A client that names another protocol version is refused on every endpoint, before its
/// body is read; sync endpoints also require the header (see `extract::Wire`).
async fn refuse_other_protocols(req: Request, next: Next) -> Result<Response, ApiError> {
    if let Some(v) = req.headers().get(wire::PROTOCOL_HEADER) {
        if v.to_str().ok().and_then(|s| s.trim().parse::<u32>().ok()) != Some(wire::PROTOCOL_VERSION) {
            return Err(ApiError::ProtocolVersion { found: Some(String::from_utf8_lossy(v.as_bytes()).into_owned()) });
        }
    }
    Ok(next.run(req).await)
}
