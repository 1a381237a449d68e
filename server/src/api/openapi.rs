//! The OpenAPI 3.1 document of the whole HTTP API, generated from the handlers' `#[utoipa::path]`
//! attributes and the types' `ToSchema` derives: the routes of [`super::routes`] are registered
//! from the same attributes (utoipa-axum), so a documented route cannot be missing from the
//! router or the other way round. Served at `/api/v1/openapi.json`, readable at `/api/docs`
//! (Swagger UI, whose assets are compiled into the binary: nothing is fetched from elsewhere).

use std::sync::OnceLock;

use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use ohassist_core::sync::wire::ErrorBody;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use super::AppState;

/// Where the document is served; the viewer reads it from there.
pub const DOCUMENT_PATH: &str = "/api/v1/openapi.json";
/// The rendered page.
pub const VIEWER_PATH: &str = "/api/docs";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ohassist county server API",
        version = "1",
        description = "The county server of ohassist: login and devices, the phones' sync (push, pull, \
attachments), administration of users and devices, and the console's read-only views (dashboard, the two \
official tables, enterprises, visits) for the provincial platform and scripts.\n\n\
Authentication: `Authorization: Bearer <token>` with a token from `POST /api/v1/login`. Every error is an \
`ErrorBody` in JSON (Chinese `message`, English `message_en`, the offending `field` when there is one). \
Ids outside the caller's org unit answer 404, exactly like unknown ids.\n\n\
Sync bodies (`/api/v1/sync/*`) are not JSON: they are CBOR, gzip-compressed (`Content-Encoding: gzip`, \
`Content-Type: application/cbor`), with the protocol version both in the `x-ohassist-protocol` header and in \
the body; the schemas given for them are those of the decoded CBOR message (byte strings where `format` is \
`binary`). See docs/sync-protocol.md."
    ),
    tags(
        (name = "health", description = "Liveness"),
        (name = "auth", description = "Login and logout of a device"),
        (name = "sync", description = "The phones' push and pull (CBOR, gzip)"),
        (name = "attachments", description = "Resumable, content-addressed evidence files"),
        (name = "device", description = "A phone's report of what it holds unsynced"),
        (name = "admin", description = "Users and devices within the admin's org unit"),
        (name = "console", description = "Read-only views of the supervisor console (supervisors and admins)"),
        (name = "export", description = "Records for a provincial platform: API clients, supervisors and admins"),
        (name = "meta", description = "This document"),
    ),
    components(schemas(ErrorBody)),
    modifiers(&CommonResponses)
)]
struct ApiDoc;

/// The document, built once from [`super::routes`].
pub fn document() -> &'static Document {
    static DOC: OnceLock<Document> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = super::routes().into_openapi();
        // `ApiDoc`'s info, tags and modifier over the paths the routes contributed.
        let mut base = ApiDoc::openapi();
        base.paths = std::mem::take(&mut doc.paths);
        if let (Some(c), Some(mine)) = (base.components.as_mut(), doc.components.take()) {
            c.schemas.extend(mine.schemas);
        }
        CommonResponses.modify(&mut base);
        base
    })
}

/// The OpenAPI 3.1 document of this API (what you are reading).
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "meta", operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json",
        body = Object)))]
pub async fn openapi_json() -> Response {
    Json(document()).into_response()
}

/// The rendered document, `/api/docs`.
pub fn viewer() -> Router<AppState> {
    use utoipa_swagger_ui::{Config, SwaggerUi};
    SwaggerUi::new(VIEWER_PATH).config(Config::new([DOCUMENT_PATH])).into()
}

/// Adds the bearer scheme and the error answers every endpoint of a kind can give, so that a
/// handler's attribute lists only what is particular to it.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A token from POST /api/v1/login"))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            let sync_family = path.starts_with("/api/v1/") && !is_console_path(path) && path != DOCUMENT_PATH;
            for op in
                [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete].into_iter().flatten()
            {
                add_common(op, sync_family);
            }
        }
    }
}

fn is_console_path(path: &str) -> bool {
    ["/api/v1/dashboard", "/api/v1/tables/", "/api/v1/enterprises", "/api/v1/visits/"]
        .iter()
        .any(|p| path.starts_with(p))
}

fn add_common(op: &mut Operation, sync_family: bool) {
    let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let has_input = op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let mut add = |status: &str, description: &str| {
        op.responses.responses.entry(status.to_string()).or_insert_with(|| error_response(description));
    };
    if has_input {
        add(
            "400",
            "Malformed input: a body that does not parse, a parameter that is not of its form (`field` names it)",
        );
    }
    if authenticated {
        add("401", "No token, or a token unknown, expired or revoked (`unauthorized`)");
        add("403", "The caller's role may not do this (`forbidden`), or the device is revoked or retired");
        add("410", "The device was marked lost by an admin (`device_lost`): the phone erases its store");
    }
    if sync_family {
        add("426", "The `x-ohassist-protocol` header names another protocol version (`protocol_version`)");
    }
    add("500", "The server's fault (`internal`); the details are logged, not sent");
}

fn error_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build())
            .build(),
    )
}
