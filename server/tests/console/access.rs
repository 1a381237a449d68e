//! Scope, sessions, CSRF and bad input: out-of-scope ids look exactly like unknown ones
//! (404), malformed filters are 400 with the field named, a forged form changes nothing.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_server::accounts::Role;

use crate::city::{self, YEAR};
use crate::{api_get, text, Browser};

#[tokio::test]
async fn a_county_supervisor_sees_only_their_county_and_gets_404_elsewhere() {
    let c = city::build().await;
    let own = c.expected.iter().find(|e| e.county_code == "210102").unwrap();
    let other = c.expected.iter().find(|e| e.county_code == "210103").unwrap();
    let b = Browser::login(&c.f, "heping").await;
    assert_eq!(b.get(&c.f, &format!("/enterprises/{}", own.code)).await.status, StatusCode::OK);
    let refused = b.get(&c.f, &format!("/enterprises/{}", other.code)).await;
    let unknown = b.get(&c.f, "/enterprises/91210102000000000X").await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(text(&refused), text(&unknown), "an out-of-scope id looks like an unknown one");
    assert_eq!(
        b.get(&c.f, &format!("/visits/{}", c.conflicted_visit)).await.status,
        StatusCode::NOT_FOUND,
        "210103's visit"
    );
    assert_eq!(b.get(&c.f, "/dashboard?unit=210100").await.status, StatusCode::NOT_FOUND, "the city is above them");
    let list = text(&b.get(&c.f, &format!("/enterprises?year={YEAR}")).await);
    assert!(list.contains(&own.code) && !list.contains(&other.code));

    let token = c.f.login("heping", "api-heping").await;
    assert_eq!(api_get(&c.f, &format!("/api/v1/enterprises/{}", own.code), &token).await.status, StatusCode::OK);
    let r = api_get(&c.f, &format!("/api/v1/enterprises/{}", other.code), &token).await;
    r.assert_error(StatusCode::NOT_FOUND, "not_found");
    let t2: serde_json::Value =
        serde_json::from_slice(&api_get(&c.f, &format!("/api/v1/tables/2?year={YEAR}"), &token).await.body).unwrap();
    assert_eq!(t2["rows"].as_array().unwrap().len(), 2, "their county and 合计");
}

#[tokio::test]
async fn malformed_filters_are_400_naming_the_field() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "city").await;
    for (q, field) in [
        ("year=20x5", "year"),
        ("year=1850", "year"),
        ("unit=21", "unit"),
        ("county=abc", "county"),
        ("industry=steel", "industry"),
        ("missing=chronic_screening", "missing"),
        ("status=done", "status"),
    ] {
        let page = b.get(&c.f, &format!("/enterprises?{q}")).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(text(&page).contains("invalid_filter"), "{q}");
        let token = c.f.login("city", "api-city").await;
        let e = api_get(&c.f, &format!("/api/v1/enterprises?{q}"), &token)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_filter");
        assert_eq!(e.field.as_deref(), Some(field));
    }
    assert_eq!(b.get(&c.f, "/tables/3").await.status, StatusCode::NOT_FOUND);
    assert_eq!(b.get(&c.f, "/tables/2?format=pdf").await.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_api_needs_a_supervisor_or_admin_token_and_documents_itself() {
    let c = city::build().await;
    let r = c.f.send(Request::get("/api/v1/dashboard").body(Body::empty()).unwrap()).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    api_get(&c.f, "/api/v1/dashboard", &c.inspector).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let doc = c.f.send(Request::get("/api/v1/openapi.json").body(Body::empty()).unwrap()).await;
    let v: serde_json::Value = serde_json::from_slice(&doc.body).unwrap();
    assert!(v["openapi"].as_str().unwrap().starts_with("3."));
    for path in
        ["/api/v1/dashboard", "/api/v1/tables/1", "/api/v1/tables/2", "/api/v1/enterprises", "/api/v1/visits/{id}"]
    {
        assert!(v["paths"].get(path).is_some(), "{path} documented");
    }
}

#[tokio::test]
async fn forged_csrf_tokens_are_refused_and_change_nothing() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "city").await;
    let before = c.f.count("changes");
    let forged = "0".repeat(64);
    let r = b
        .post(&c.f, &format!("/visits/{}/review", c.submitted_visit), &[("action", "approve"), ("csrf", &forged)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(text(&r).contains("csrf"));
    let r =
        b.post(&c.f, &format!("/visits/{}/review", c.submitted_visit), &[("action", "approve"), ("csrf", "")]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b
        .post(
            &c.f,
            "/conflicts/resolve",
            &[
                ("csrf", &forged),
                ("doc_id", &c.conflicted_visit),
                ("kind", "visit"),
                ("path", "[\"notes\"]"),
                ("choice", "0"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(c.f.count("changes"), before, "nothing written");
    // Another session's token is forged too.
    let other = Browser::login(&c.f, "admin").await;
    let r = b
        .post(&c.f, &format!("/visits/{}/review", c.submitted_visit), &[("action", "approve"), ("csrf", &other.csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(c.f.count("changes"), before);
}

#[tokio::test]
async fn sessions_end_at_logout_and_inspectors_cannot_use_the_console() {
    let c = city::build().await;
    let anonymous = c.f.send(Request::get("/dashboard").body(Body::empty()).unwrap()).await;
    assert_eq!(anonymous.status, StatusCode::SEE_OTHER);
    assert_eq!(anonymous.headers.get(header::LOCATION).unwrap(), "/login");
    let b = Browser::login(&c.f, "city").await;
    assert_eq!(b.post(&c.f, "/logout", &[]).await.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get(&c.f, "/dashboard").await.status, StatusCode::SEE_OTHER, "the session was revoked");

    c.f.add_user("insp2", Role::Inspector, "210102");
    let page = c.f.send(Request::get("/login").body(Body::empty()).unwrap()).await;
    let cookie = page.headers.get(header::SET_COOKIE).unwrap().to_str().unwrap().split(';').next().unwrap().to_string();
    let csrf = crate::csrf_of(&text(&page));
    let form = format!("username=insp2&password={}&csrf={csrf}", crate::enc(crate::common::PASSWORD));
    let r =
        c.f.send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, cookie)
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get(header::SET_COOKIE).is_none_or(|v| !v.to_str().unwrap().starts_with("ohs_session")));
    // A login form without its cookie is a forgery.
    let r =
        c.f.send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(format!("username=city&password=x&csrf={csrf}")))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}
