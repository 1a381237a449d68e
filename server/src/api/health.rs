//! `GET /health`: the process answers and its database does.

use axum::extract::State;
use axum::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiResult;
use super::{AppState, DbCalls};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

/// What `/health` answers.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`
    #[schema(pattern = "^ok$")]
    pub status: &'static str,
    /// The server's version.
    pub version: &'static str,
}

/// The process answers and its database does.
#[utoipa::path(get, path = "/health", tag = "health", operation_id = "health",
    responses((status = 200, description = "Up", body = Health)))]
async fn health(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    state.db.read(|conn| Ok(conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?)).await?;
    Ok(Json(Health { status: "ok", version: env!("CARGO_PKG_VERSION") }))
}
