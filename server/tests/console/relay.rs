//! The relay on the consoles (issue 13): the admin page shows this server's link to its
//! upstream in words; the dashboard warns when a lower server's relay account has been
//! silent too long; a relay account never opens the console.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_server::accounts::Role;

use crate::common::{Fixture, PASSWORD};
use crate::{text, Browser};

const CITY: &str = "210100";

fn exec(f: &Fixture, sql: &str) {
    f.state.db.blocking_writer().execute_batch(sql).unwrap();
}

#[tokio::test]
async fn the_admin_page_shows_the_link_and_the_dashboard_warns_of_a_silent_relay() {
    let f = Fixture::new();
    f.add_user("admin", Role::Admin, CITY);
    f.add_user("county-a", Role::Relay, "210102");
    f.add_user("county-b", Role::Relay, "210103");
    // County A's server finished a pull just now; county B's two hours ago.
    f.login("county-a", "relay-a").await;
    f.login("county-b", "relay-b").await;
    let now = ohassist_server::db::now();
    exec(&f, &format!("UPDATE devices SET synced_at = {now} WHERE id = 'relay-a'"));
    exec(&f, &format!("UPDATE devices SET synced_at = {} WHERE id = 'relay-b'", now - 7200));
    let b = Browser::login(&f, "admin").await;
    let dash = text(&b.get(&f, "/dashboard").await);
    let warning = &dash[dash.find("id=\"silent-relays\"").expect("a warning")..];
    let warning = &warning[..warning.find("</p>").unwrap()];
    assert!(warning.contains("county-b") && warning.contains("210103"), "{warning}");
    assert!(!warning.contains("county-a"), "county A relays: {warning}");

    let page = b.get(&f, "/admin/upstream").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = text(&page);
    assert!(html.contains("本服务器没有上级服务器"), "no upstream yet");
    assert!(html.contains("county-a") && html.contains("county-b"), "the lower servers are listed");

    // This server relays to a province that is down: the page says so, in words.
    exec(
        &f,
        &format!(
            "INSERT INTO upstream (id, url, username, device_id, token, org_unit, last_up_at, last_error_at,
                 last_error_zh, last_error_en, token_expires_at)
             VALUES (1, 'https://province.example', 'shenyang', 'relay-x', 't', '{CITY}', {now}, {now},
                 '无法连接上级服务器（connection refused），稍后自动重试', 'the upstream cannot be reached', 1798761600)"
        ),
    );
    let html = text(&b.get(&f, "/admin/upstream").await);
    assert!(html.contains("province.example"), "{html}");
    assert!(html.contains("无法连接上级服务器"), "the last error in words");
    let expiry = &html[html.find("id=\"token-expires\"").expect("the token's expiry")..];
    assert!(expiry.starts_with("id=\"token-expires\">2027-01-01T00:00:00Z"), "{}", &expiry[..60]);
    let waiting = &html[html.find("id=\"waiting-up\"").unwrap()..];
    assert!(waiting.starts_with("id=\"waiting-up\">0 "), "{}", &waiting[..60]);

    // Not for a supervisor; and a relay account cannot log in to the console at all.
    f.add_user("sup", Role::Supervisor, CITY);
    let s = Browser::login(&f, "sup").await;
    assert_ne!(s.get(&f, "/admin/upstream").await.status, StatusCode::OK);
    let page = f.send(Request::get("/login").body(Body::empty()).unwrap()).await;
    let login_cookie = page
        .headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("ohs_login="))
        .map(|v| v.split(';').next().unwrap().to_string())
        .unwrap();
    let csrf = crate::csrf_of(&text(&page));
    let form = format!("username=county-a&password={}&csrf={csrf}", PASSWORD.replace(' ', "+"));
    let reply = f
        .send(
            Request::post("/login")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, login_cookie)
                .body(Body::from(form))
                .unwrap(),
        )
        .await;
    assert_ne!(reply.status, StatusCode::SEE_OTHER, "a relay account opens no console session");
    assert!(text(&reply).contains("下级服务器（中继）账号"), "{}", text(&reply));
}

/// A visit a county server relayed: its history on the city's console names the inspector
/// who wrote it in the county (the original author), not the relay account that pushed it.
#[tokio::test]
async fn the_history_of_a_relayed_visit_names_its_original_author() {
    use ohassist_core::sync::wire::{self, ChangeAuthor, PushRequest};
    let f = Fixture::new();
    f.add_user("sup", Role::Supervisor, CITY);
    let relay = f.user_token("county-a", Role::Relay, "210102", "relay-a").await;
    let (_, e) = crate::common::new_enterprise("210102", 1, "甲公司");
    let (_, v) = crate::common::new_visit(&e.doc_id, "210102");
    let author = |c: &wire::WireChange| ChangeAuthor {
        hash: automerge::Change::from_bytes(c.bytes.clone()).unwrap().hash().to_string(),
        user_id: "county-user-7".into(),
        username: "zhang".into(),
        display_name: "张三（和平区）".into(),
        role: "inspector".into(),
        device_id: "phone-zhang".into(),
    };
    let req = PushRequest {
        protocol: wire::PROTOCOL_VERSION,
        authors: vec![author(&e), author(&v)],
        changes: vec![e, v.clone()],
    };
    let answer: wire::PushResponse = f.post_wire("/api/v1/sync/push", &relay, wire::encode(&req)).await.wire();
    assert_eq!(answer.new, 2);
    let b = Browser::login(&f, "sup").await;
    let page = b.get(&f, &format!("/visits/{}", v.doc_id)).await;
    assert_eq!(page.status, StatusCode::OK);
    let html = text(&page);
    assert!(html.contains("张三（和平区）"), "the original author is named");
    assert!(!html.contains("<td>county-a</td>"), "not the relay account");
}
