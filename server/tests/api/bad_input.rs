//! Every bad input answers 4xx with an ErrorBody and stores nothing.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_core::model::RecordKind;
use ohassist_core::sync::wire::{self, PullRequest, PushRequest, WireChange};
use ohassist_server::accounts::Role;
use serde_json::json;

use crate::common::*;

async fn setup() -> (Fixture, String) {
    let f = Fixture::new();
    let token = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    (f, token)
}

fn push_of(changes: Vec<WireChange>) -> Vec<u8> {
    wire::encode(&PushRequest { protocol: wire::PROTOCOL_VERSION, changes, authors: Vec::new() })
}

#[tokio::test]
async fn malformed_login_bodies() {
    let f = Fixture::new();
    for body in ["{not json", "{\"username\": \"a\"}", "[]", ""] {
        let req = Request::post("/api/v1/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap();
        f.send(req).await.assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    }
    let login = |body: String| Request::post("/api/v1/login").body(Body::from(body)).unwrap();
    for device in [" ", "有中文", "a/b", &"x".repeat(200)] {
        let body = json!({"username": "a", "password": "b", "device_id": device}).to_string();
        let e = f.send(login(body)).await.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert_eq!(e.field.as_deref(), Some("device_id"));
    }
    // Oversized bodies are refused before they are read; long fields before anything is
    // kept or hashed.
    let huge = json!({"username": "u".repeat(2 << 20), "password": "b", "device_id": "d"}).to_string();
    f.send(login(huge)).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    let long_name = json!({"username": "u".repeat(65), "password": "b", "device_id": "d"}).to_string();
    let e = f.send(login(long_name)).await.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert_eq!(e.field.as_deref(), Some("username"));
    let long_password = json!({"username": "u", "password": "p".repeat(1025), "device_id": "d"}).to_string();
    let e = f.send(login(long_password)).await.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    assert_eq!(e.field.as_deref(), Some("password"));
    // None of them reached the password check: no failed login is counted (the table of
    // failures holds only names within the length bound).
    assert_eq!(f.count("login_failures"), 0);
}

#[tokio::test]
async fn a_device_id_bound_to_another_users_login_is_not_taken_over() {
    let f = Fixture::new();
    f.add_user("zhang", Role::Inspector, "210102");
    f.add_user("li", Role::Inspector, "210102");
    let _ = f.login("zhang", "phone-zhang").await;
    f.login_as("li", PASSWORD, "phone-zhang").await.assert_error(StatusCode::FORBIDDEN, "device_taken");
    // Once the owner logged out, the phone may be handed on.
    let token = f.login("zhang", "phone-zhang").await;
    let req = Request::post("/api/v1/logout")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(req).await.status, StatusCode::NO_CONTENT);
    let _ = f.login("li", "phone-zhang").await;
}

#[tokio::test]
async fn bodies_that_are_not_gzip_or_not_cbor() {
    let (f, t) = setup().await;
    f.post_wire("/api/v1/sync/push", &t, b"plain bytes".to_vec())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    f.post_wire("/api/v1/sync/push", &t, wire::encode(&"a string"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    f.post_wire("/api/v1/sync/pull", &t, b"\x1f\x8b\x08garbage".to_vec())
        .await
        .assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    // A doc kind the protocol does not know.
    let unknown_kind = json!({"protocol": 1, "changes": [{"doc_id": "x", "kind": "spaceship", "bytes": []}]});
    f.post_wire("/api/v1/sync/push", &t, wire::encode(&unknown_kind))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    f.assert_nothing_stored();
}

#[tokio::test]
async fn invalid_automerge_bytes_name_the_document() {
    let (f, t) = setup().await;
    let (_, good) = new_enterprise("210102", 1, "甲矿业");
    let bad = WireChange {
        doc_id: "91210102X".into(),
        kind: RecordKind::Enterprise,
        bytes: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
    };
    // The bad document is refused alone; the good one is applied.
    let before = f.count("documents");
    let answer = f
        .post_wire("/api/v1/sync/push", &t, push_of(vec![good, bad]))
        .await
        .assert_refused("91210102X", "invalid_change");
    assert_eq!(answer.refused.len(), 1);
    assert_eq!(f.count("documents"), before + 1);
    let empty = WireChange { doc_id: "d".into(), kind: RecordKind::Visit, bytes: vec![] };
    f.post_wire("/api/v1/sync/push", &t, push_of(vec![empty])).await.assert_refused("d", "invalid_change");
    assert_eq!(f.count("documents"), before + 1);
}

#[tokio::test]
async fn oversized_pushes() {
    let (f, t) = setup().await;
    // Compressed body over the limit.
    let huge = vec![0x42u8; wire::MAX_PUSH_BYTES + 1];
    f.post_wire("/api/v1/sync/push", &t, huge).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // A small gzip body that inflates past the limit.
    let bomb = vec![WireChange { doc_id: "d".into(), kind: RecordKind::Visit, bytes: vec![0; wire::MAX_PUSH_BYTES] }];
    f.post_wire("/api/v1/sync/push", &t, push_of(bomb)).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    // One change over its own limit refuses its document.
    let big =
        vec![WireChange { doc_id: "d".into(), kind: RecordKind::Visit, bytes: vec![0; wire::MAX_CHANGE_BYTES + 1] }];
    f.post_wire("/api/v1/sync/push", &t, push_of(big)).await.assert_refused("d", "too_large");
    // Too many changes.
    let many =
        vec![WireChange { doc_id: "d".into(), kind: RecordKind::Visit, bytes: vec![1] }; wire::MAX_PUSH_CHANGES + 1];
    f.post_wire("/api/v1/sync/push", &t, push_of(many)).await.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    f.assert_nothing_stored();
}

#[tokio::test]
async fn wrong_or_missing_protocol_versions() {
    let (f, t) = setup().await;
    let (_, c) = new_enterprise("210102", 1, "甲矿业");
    let body = push_of(vec![c.clone()]);
    let request = |version: Option<&str>, body: Vec<u8>| {
        let mut b = Request::post("/api/v1/sync/push").header(header::AUTHORIZATION, format!("Bearer {t}"));
        if let Some(v) = version {
            b = b.header(wire::PROTOCOL_HEADER, v);
        }
        b.body(Body::from(body)).unwrap()
    };
    let (old, next) = ((wire::PROTOCOL_VERSION - 1).to_string(), (wire::PROTOCOL_VERSION + 1).to_string());
    // An app on the old protocol is told to update (426), never wedged.
    f.send(request(Some(&old), body.clone())).await.assert_error(StatusCode::UPGRADE_REQUIRED, "protocol_version");
    f.send(request(Some(&next), body.clone())).await.assert_error(StatusCode::UPGRADE_REQUIRED, "protocol_version");
    f.send(request(Some("one"), body.clone())).await.assert_error(StatusCode::UPGRADE_REQUIRED, "protocol_version");
    f.send(request(None, body)).await.assert_error(StatusCode::UPGRADE_REQUIRED, "protocol_version");
    let other =
        wire::encode(&PushRequest { protocol: wire::PROTOCOL_VERSION + 1, changes: vec![c], authors: Vec::new() });
    let current = wire::PROTOCOL_VERSION.to_string();
    f.send(request(Some(&current), other)).await.assert_error(StatusCode::UPGRADE_REQUIRED, "protocol_version");
    let pull_other =
        wire::encode(&PullRequest { protocol: wire::PROTOCOL_VERSION - 1, cursor: 0, page_token: None, pending: None });
    f.post_wire("/api/v1/sync/pull", &t, pull_other)
        .await
        .assert_error(StatusCode::UPGRADE_REQUIRED, "protocol_version");
    f.assert_nothing_stored();
}

#[tokio::test]
async fn missing_or_unknown_tokens() {
    let (f, _) = setup().await;
    let (_, c) = new_enterprise("210102", 1, "甲矿业");
    f.post_wire("/api/v1/sync/push", "0000", push_of(vec![c.clone()]))
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let no_auth = Request::post("/api/v1/sync/push")
        .header(wire::PROTOCOL_HEADER, wire::PROTOCOL_VERSION.to_string())
        .body(Body::from(push_of(vec![c])))
        .unwrap();
    f.send(no_auth).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let basic =
        Request::post("/api/v1/logout").header(header::AUTHORIZATION, "Basic eDp5").body(Body::empty()).unwrap();
    f.send(basic).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    f.assert_nothing_stored();
}

#[tokio::test]
async fn unknown_page_tokens_routes_and_methods() {
    let (f, t) = setup().await;
    let pull = wire::encode(&PullRequest {
        protocol: wire::PROTOCOL_VERSION,
        cursor: 0,
        page_token: Some("forged".into()),
        pending: None,
    });
    f.post_wire("/api/v1/sync/pull", &t, pull).await.assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    let req = Request::get("/api/v1/nothing").body(Body::empty()).unwrap();
    f.send(req).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    let req = Request::get("/api/v1/sync/push").body(Body::empty()).unwrap();
    f.send(req).await.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test]
async fn health_answers_after_a_database_round_trip() {
    let f = Fixture::new();
    let reply = f.send(Request::get("/health").body(Body::empty()).unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
}
