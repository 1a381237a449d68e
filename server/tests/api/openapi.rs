//! The generated OpenAPI document: it lists every route of the API (a route registered
//! without its documentation fails here), says what the server enforces (patterns, ranges,
//! enums, the error body), is served with its viewer from the binary itself, and the server
//! refuses the malformed query parameters the document rules out.

use std::collections::BTreeSet;
use std::path::Path;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_server::accounts::Role;
use serde_json::Value;

use super::common::Fixture;

const METHODS: [&str; 5] = ["get", "post", "patch", "put", "delete"];

async fn document(f: &Fixture) -> Value {
    let r = f.send(Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
    serde_json::from_slice(&r.body).unwrap()
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if let Some(op) = item.get(m) {
                out.push((path.clone(), m.to_string(), op.clone()));
            }
        }
    }
    out
}

/// Every `.route("…")` literal of the server's sources whose path is the API's.
fn literal_api_routes(dir: &Path, out: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            literal_api_routes(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                for (i, _) in text.match_indices(call) {
                    let rest = text[i + call.len()..].trim_start();
                    let Some(lit) = rest.strip_prefix('"') else {
                        // A route whose path is not a literal cannot be checked: none may be.
                        panic!("{}: a {call} call without a literal path", path.display());
                    };
                    let p = &lit[..lit.find('"').unwrap()];
                    if p.starts_with("/api") || p.starts_with("/health") {
                        out.insert(format!("{} {p}", path.display()));
                    }
                }
            }
        }
    }
}

#[test]
fn no_api_route_is_registered_around_the_documentation() {
    // The API's routes are registered by utoipa-axum from their `#[utoipa::path]` attributes
    // (`api::routes`), so the router and the document are one list. A plain axum `.route()`
    // under /api or /health would serve a path the document does not know.
    let mut plain = BTreeSet::new();
    literal_api_routes(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut plain);
    assert!(plain.is_empty(), "routes registered without their documentation: {plain:?}");
}

#[tokio::test]
async fn the_document_has_every_route_of_the_router_and_only_those() {
    let f = Fixture::new();
    let doc = document(&f).await;
    let (_, generated) = ohassist_server::api::routes().split_for_parts();
    let served: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed: BTreeSet<String> = generated.paths.paths.keys().cloned().collect();
    assert_eq!(served, routed);
    // Each documented operation is routed: the router answers it, never with its fallbacks
    // (404 `not_found` with no such route, 405). Ids are unknown here, so 404s from the
    // handlers are told apart by sending the documented method and checking 405 is not the
    // answer and an unknown method is.
    for (path, method, _) in operations(&doc) {
        let uri = path
            .replace("{sha256}", &"0".repeat(64))
            .replace("{code}", "91210102MA0000001X")
            .replace("{id}", "unknown");
        let req = Request::builder().method(method.to_uppercase().as_str()).uri(&uri).body(Body::empty()).unwrap();
        let r = f.send(req).await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        let r = f.send(Request::builder().method("PUT").uri(&uri).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "PUT {path} is routed: the path exists");
    }
    let r = f.send(Request::get("/api/v1/nothing-here").body(Body::empty()).unwrap()).await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn the_document_is_openapi_3_1_with_ids_tags_and_error_bodies() {
    let f = Fixture::new();
    let doc = document(&f).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let mut ids = BTreeSet::new();
    let tags: BTreeSet<&str> = doc["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    let ops = operations(&doc);
    assert!(ops.len() >= 22, "{}", ops.len());
    for (path, method, op) in &ops {
        let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has an operationId"));
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
        let tag = op["tags"][0].as_str().unwrap_or_else(|| panic!("{method} {path} has a tag"));
        assert!(tags.contains(tag), "{tag} is declared");
        for (status, response) in op["responses"].as_object().unwrap() {
            let failure = status.starts_with('4') || status.starts_with('5');
            if failure {
                assert_eq!(
                    response["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                    "{method} {path} {status}"
                );
            }
        }
        let secured = op.get("security").is_some();
        assert_eq!(
            secured,
            !["/health", "/api/v1/login", "/api/v1/openapi.json"].contains(&path.as_str()),
            "{method} {path}"
        );
        if secured {
            assert!(op["responses"].get("401").is_some(), "{method} {path} documents 401");
        }
    }
    let error = &doc["components"]["schemas"]["ErrorBody"];
    let required: BTreeSet<&str> = error["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(required, BTreeSet::from(["code", "message", "message_en"]));
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
}

fn param<'a>(doc: &'a Value, path: &str, name: &str) -> &'a Value {
    doc["paths"][path]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{path} documents {name}"))
}

fn enum_of(doc: &Value, schema: &Value) -> Vec<String> {
    let schema = match schema["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    schema["enum"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn the_document_states_the_rules_the_server_enforces() {
    let f = Fixture::new();
    let doc = document(&f).await;
    for path in ["/api/v1/dashboard", "/api/v1/tables/1", "/api/v1/tables/2", "/api/v1/enterprises"] {
        let year = &param(&doc, path, "year")["schema"];
        assert_eq!((year["minimum"].as_i64(), year["maximum"].as_i64()), (Some(2000), Some(2100)), "{path}");
        assert_eq!(param(&doc, path, "unit")["schema"]["pattern"], "^[0-9]{6}$", "{path}");
    }
    assert_eq!(param(&doc, "/api/v1/enterprises", "county")["schema"]["pattern"], "^[0-9]{6}$");
    assert_eq!(param(&doc, "/api/v1/enterprises/{code}", "code")["schema"]["pattern"], "^[0-9A-Za-z]{18}$");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["CreateUser"]["properties"]["org_unit"]["pattern"], "^[0-9]{6}$");
    let roles = enum_of(&doc, &schemas["CreateUser"]["properties"]["role"]);
    assert_eq!(roles, ["inspector", "supervisor", "admin", "relay"]);
    for r in &roles {
        assert_eq!(Role::parse(r).map(Role::as_str), Some(r.as_str()));
    }
    let states = enum_of(&doc, &schemas["Review"]["properties"]["state"]);
    let known: Vec<&str> = ohassist_core::model::ReviewState::ALL.iter().map(|s| s.code()).collect();
    assert_eq!(states, known);
    assert_eq!(enum_of(&doc, &schemas["VisitSummary"]["properties"]["review_state"]), known);
    // The filters' documented values are exactly those the server parses.
    let status = enum_of(&doc, &param(&doc, "/api/v1/enterprises", "status")["schema"]);
    let parsed: Vec<&str> = ohassist_server::reports::StatusFilter::ALL.iter().map(|(c, _)| *c).collect();
    assert_eq!(status, parsed);
    let missing = enum_of(&doc, &param(&doc, "/api/v1/enterprises", "missing")["schema"]);
    let six: Vec<&str> = ohassist_core::model::SixOnes::ALL
        .iter()
        .filter(|s| **s != ohassist_core::model::SixOnes::ChronicScreening)
        .map(|s| s.code())
        .collect();
    assert_eq!(missing, six);
    // The sync bodies: the decoded message's schema under the CBOR media type.
    let push = &doc["paths"]["/api/v1/sync/push"]["post"];
    assert_eq!(
        push["requestBody"]["content"]["application/cbor"]["schema"]["$ref"],
        "#/components/schemas/PushRequest"
    );
    assert!(push["description"].as_str().unwrap_or(push["summary"].as_str().unwrap()).contains("gzip"));
    assert_eq!(schemas["WireChange"]["properties"]["bytes"]["format"], "binary");
    let header = &push["parameters"][0];
    assert_eq!((header["name"].as_str(), header["in"].as_str()), (Some("x-ohassist-protocol"), Some("header")));
}

#[tokio::test]
async fn the_viewer_is_served_from_the_binary_and_reads_the_document() {
    let f = Fixture::new();
    let page = f.send(Request::get("/api/docs/").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&page.body);
    assert!(html.contains("swagger-ui-bundle.js"), "{html}");
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"] {
        let r = f.send(Request::get(format!("/api/docs/{asset}")).body(Body::empty()).unwrap()).await;
        assert_eq!(r.status, StatusCode::OK, "{asset}");
        assert!(r.body.len() > 100, "{asset}");
        if asset == "swagger-initializer.js" {
            assert!(String::from_utf8_lossy(&r.body).contains("/api/v1/openapi.json"));
        }
    }
    // Nothing the page loads comes from elsewhere.
    for src in html.split("src=\"").skip(1).chain(html.split("href=\"").skip(1)) {
        assert!(!src.starts_with("http"), "{src}");
    }
}

#[tokio::test]
async fn malformed_query_parameters_are_refused_naming_the_parameter() {
    let f = Fixture::new();
    let token = f.user_token("city", Role::Supervisor, "210100", "laptop").await;
    let get = |uri: String| {
        Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}")).body(Body::empty()).unwrap()
    };
    for (query, field) in [
        ("year=abc&year=", "year"),
        ("year=2025&year=2024", "year"),
        ("year=", "year"),
        ("year=0", "year"),
        ("year=%202025", "year"),
        ("unit=", "unit"),
        ("unit=21010", "unit"),
        ("unit=2101000", "unit"),
        ("unit=210100&unit=210102", "unit"),
    ] {
        for path in ["/api/v1/dashboard", "/api/v1/tables/1", "/api/v1/enterprises"] {
            let r = f.send(get(format!("{path}?{query}"))).await;
            let e = r.assert_error(StatusCode::BAD_REQUEST, "invalid_filter");
            assert_eq!(e.field.as_deref(), Some(field), "{path}?{query}");
        }
    }
    for (query, field) in [("county=", "county"), ("status=", "status"), ("q=a&q=b", "q")] {
        let r = f.send(get(format!("/api/v1/enterprises?{query}"))).await;
        assert_eq!(r.assert_error(StatusCode::BAD_REQUEST, "invalid_filter").field.as_deref(), Some(field));
    }
    let r = f.send(get("/api/v1/enterprises/short".into())).await;
    assert_eq!(r.assert_error(StatusCode::BAD_REQUEST, "invalid_filter").field.as_deref(), Some("code"));
    // A free-text parameter may be empty; the well-formed query answers.
    assert_eq!(f.send(get("/api/v1/enterprises?year=2025&unit=210100&q=".into())).await.status, StatusCode::OK);
    assert_eq!(f.send(get("/api/v1/dashboard?year=2025".into())).await.status, StatusCode::OK);
}

fn authed(method: &str, uri: &str, token: &str, body: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn an_admin_may_not_lock_out_the_device_it_works_from() {
    let f = Fixture::new();
    let admin = f.user_token("boss", Role::Admin, "210100", "boss-laptop").await;
    for action in ["revoke", "lost", "retire"] {
        let r = f.send(authed("POST", &format!("/api/v1/admin/devices/boss-laptop/{action}"), &admin, "")).await;
        assert_eq!(r.assert_error(StatusCode::CONFLICT, "own_device").field.as_deref(), Some("id"), "{action}");
    }
    // Still logged in, still active.
    let r = f.send(authed("GET", "/api/v1/admin/devices", &admin, "")).await;
    assert_eq!(r.status, StatusCode::OK);
    let devices: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(devices[0]["status"], "active");
}

#[tokio::test]
async fn json_integers_written_as_floats_read_as_integers_and_counts_past_i64_are_refused() {
    let f = Fixture::new();
    let token = f.user_token("zhang", Role::Inspector, "210102", "phone").await;
    let r = f
        .send(authed("POST", "/api/v1/device/report", &token, r#"{"pending_changes":3.0,"pending_attachments":0}"#))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    let r = f
        .send(authed("POST", "/api/v1/device/report", &token, r#"{"pending_changes":3.5,"pending_attachments":0}"#))
        .await;
    r.assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    let past = format!(r#"{{"pending_changes":{},"pending_attachments":0}}"#, u64::MAX);
    let r = f.send(authed("POST", "/api/v1/device/report", &token, &past)).await;
    assert_eq!(
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input").field.as_deref(),
        Some("pending_changes")
    );
}
