use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_core::sync::wire::LoginResponse;
use ohassist_server::accounts::Role;

use crate::common::*;

#[tokio::test]
async fn login_returns_a_token_that_authorises_sync() {
    let f = Fixture::new();
    f.add_user("zhang", Role::Inspector, "210102");
    let reply = f.login_as("zhang", PASSWORD, "phone-1").await;
    assert_eq!(reply.status, StatusCode::OK);
    let login: LoginResponse = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!((login.role.as_str(), login.org_unit.as_str()), ("inspector", "210102"));
    assert_eq!(login.token.len(), 64);
    let ninety_days = 90 * 24 * 3600;
    assert!((login.expires_at - ohassist_server::db::now() - ninety_days).abs() < 60);
    let page = f.pull(&login.token, 0, None).await;
    assert!(page.documents.is_empty() && !page.more);
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_401() {
    let f = Fixture::new();
    f.add_user("zhang", Role::Inspector, "210102");
    let wrong = f.login_as("zhang", "not the password", "phone-1").await;
    let unknown = f.login_as("nobody", PASSWORD, "phone-1").await;
    let e1 = wrong.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    let e2 = unknown.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    assert_eq!(e1, e2);
    assert_eq!(f.count("devices"), 0);
}

#[tokio::test]
async fn the_sixth_attempt_after_five_failures_is_rate_limited() {
    let f = Fixture::new();
    f.add_user("zhang", Role::Inspector, "210102");
    for _ in 0..5 {
        f.login_as("zhang", "guess", "phone-1").await.assert_error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    }
    // Even the right password is refused until the window passes.
    let reply = f.login_as("zhang", PASSWORD, "phone-1").await;
    reply.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry: u64 = reply.headers[header::RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 300);
    // Another user is not affected.
    f.add_user("li", Role::Inspector, "210102");
    assert_eq!(f.login_as("li", PASSWORD, "phone-2").await.status, StatusCode::OK);
}

#[tokio::test]
async fn logging_in_again_on_a_device_replaces_its_token() {
    let f = Fixture::new();
    let old = f.user_token("zhang", Role::Inspector, "210102", "phone-1").await;
    let new = f.login("zhang", "phone-1").await;
    assert_ne!(old, new);
    assert_eq!(f.count("devices"), 1);
    let reply = f.post_wire("/api/v1/sync/pull", &old, pull_body()).await;
    reply.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(f.post_wire("/api/v1/sync/pull", &new, pull_body()).await.status, StatusCode::OK);
}

fn pull_body() -> Vec<u8> {
    use ohassist_core::sync::wire;
    wire::encode(&wire::PullRequest { protocol: wire::PROTOCOL_VERSION, cursor: 0, page_token: None, pending: None })
}

#[tokio::test]
async fn logout_revokes_the_callers_token_only() {
    let f = Fixture::new();
    let t1 = f.user_token("zhang", Role::Inspector, "210102", "phone-1").await;
    let t2 = f.login("zhang", "phone-2").await;
    let req = Request::post("/api/v1/logout")
        .header(header::AUTHORIZATION, format!("Bearer {t1}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(req).await.status, StatusCode::NO_CONTENT);
    f.post_wire("/api/v1/sync/pull", &t1, pull_body()).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(f.post_wire("/api/v1/sync/pull", &t2, pull_body()).await.status, StatusCode::OK);
    // A logged-out device may log in again.
    f.login("zhang", "phone-1").await;
}

#[tokio::test]
async fn a_revoked_device_is_refused_at_once_and_cannot_log_in_again() {
    let f = Fixture::new();
    let admin = f.user_token("boss", Role::Admin, "210100", "desk").await;
    let token = f.user_token("zhang", Role::Inspector, "210102", "phone-1").await;
    let (_, change) = new_enterprise("210102", 1, "甲矿业");
    assert_eq!(f.push(&token, std::slice::from_ref(&change)).await.status, StatusCode::OK);

    let req = Request::post("/api/v1/admin/devices/phone-1/revoke")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.send(req).await.status, StatusCode::NO_CONTENT);

    let changes_before = f.count("changes");
    let (_, other) = new_enterprise("210102", 2, "乙建材");
    f.push(&token, &[other]).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    f.post_wire("/api/v1/sync/pull", &token, pull_body()).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(f.count("changes"), changes_before);
    f.login_as("zhang", PASSWORD, "phone-1").await.assert_error(StatusCode::FORBIDDEN, "device_revoked");
    // The user may still log in from another device.
    f.login("zhang", "phone-2").await;
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let f = Fixture::new();
    let token = f.user_token("zhang", Role::Inspector, "210102", "phone-1").await;
    f.state.db.blocking_writer().execute("UPDATE devices SET expires_at = 1", []).unwrap();
    f.post_wire("/api/v1/sync/pull", &token, pull_body()).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}
