use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_server::accounts::{Role, User};
use serde_json::{json, Value};

use crate::common::*;

fn post_json(path: &str, token: &str, body: Value) -> Request<Body> {
    Request::post(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn an_admin_creates_users_within_their_unit_only() {
    let f = Fixture::new();
    let admin = f.user_token("boss", Role::Admin, "210100", "desk").await;
    let created = f
        .send(post_json(
            "/api/v1/admin/users",
            &admin,
            json!({"username": "wang", "display_name": "王五", "role": "inspector", "org_unit": "210102"}),
        ))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", String::from_utf8_lossy(&created.body));
    let body: Value = serde_json::from_slice(&created.body).unwrap();
    let password = body["password"].as_str().expect("a generated password");
    assert_eq!(f.login_as("wang", password, "p").await.status, StatusCode::OK);

    let outside = json!({"username": "zhao", "display_name": "赵六", "role": "inspector", "org_unit": "220102"});
    f.send(post_json("/api/v1/admin/users", &admin, outside)).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let again = json!({"username": "WANG", "display_name": "王五", "role": "inspector", "org_unit": "210102"});
    f.send(post_json("/api/v1/admin/users", &admin, again)).await.assert_error(StatusCode::CONFLICT, "already_exists");
    let bad_role = json!({"username": "qian", "display_name": "钱", "role": "king", "org_unit": "210102"});
    f.send(post_json("/api/v1/admin/users", &admin, bad_role))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");

    f.add_user("far", Role::Inspector, "220102");
    let req = Request::get("/api/v1/admin/users")
        .header(header::AUTHORIZATION, format!("Bearer {admin}"))
        .body(Body::empty())
        .unwrap();
    let list: Vec<User> = serde_json::from_slice(&f.send(req).await.body).unwrap();
    let names: Vec<&str> = list.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["boss", "wang"]);
}

#[tokio::test]
async fn non_admins_cannot_use_admin_endpoints() {
    let f = Fixture::new();
    let inspector = f.user_token("zhang", Role::Inspector, "210102", "phone").await;
    let body = json!({"username": "x", "display_name": "x", "role": "admin", "org_unit": "210102"});
    f.send(post_json("/api/v1/admin/users", &inspector, body)).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    f.send(post_json("/api/v1/admin/devices/phone/revoke", &inspector, json!({})))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(f.count("users"), 1);
}

#[tokio::test]
async fn an_admin_cannot_revoke_a_device_outside_their_unit() {
    let f = Fixture::new();
    let admin = f.user_token("boss", Role::Admin, "210100", "desk").await;
    let far = f.user_token("far", Role::Inspector, "220102", "far-phone").await;
    f.send(post_json("/api/v1/admin/devices/far-phone/revoke", &admin, json!({})))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(f.pull(&far, 0, None).await.cursor, 0);
}
