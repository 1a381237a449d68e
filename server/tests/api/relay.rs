//! The relay between servers (issue 13), as the upstream sees it: a `relay` account pushes
//! and pulls like a device in its unit, may name each change's original author (nobody else
//! may), and field authority is checked against that author.

use axum::http::StatusCode;
use ohassist_core::model::{ReviewState, Visit};
use ohassist_core::sync::wire::{self, ChangeAuthor, PushRequest, WireChange};
use ohassist_server::accounts::Role;

use crate::common::*;

const COUNTY: &str = "210102";
const OTHER: &str = "210103";

fn hash_of(c: &WireChange) -> String {
    automerge::Change::from_bytes(c.bytes.clone()).unwrap().hash().to_string()
}

fn author(c: &WireChange, user: &str, role: &str, device: &str) -> ChangeAuthor {
    ChangeAuthor {
        hash: hash_of(c),
        user_id: format!("county-{user}"),
        username: user.to_string(),
        display_name: format!("{user} 的姓名"),
        role: role.to_string(),
        device_id: device.to_string(),
    }
}

async fn push_with(f: &Fixture, token: &str, changes: &[WireChange], authors: Vec<ChangeAuthor>) -> Reply {
    let req = PushRequest { protocol: wire::PROTOCOL_VERSION, changes: changes.to_vec(), authors };
    f.post_wire("/api/v1/sync/push", token, wire::encode(&req)).await
}

fn one(f: &Fixture, sql: &str) -> String {
    let conn = ohassist_core::sqlite::open_reader(&f.dir.path().join("ohassist.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn a_relay_pushes_and_pulls_like_a_device_of_its_unit_and_never_opens_the_console() {
    let f = Fixture::new();
    let relay = f.user_token("county-a", Role::Relay, COUNTY, "relay-a").await;
    let (_, mine) = new_enterprise(COUNTY, 1, "甲公司");
    let (_, theirs) = new_enterprise(OTHER, 2, "乙公司");
    let answer = f.push(&relay, &[mine.clone(), theirs.clone()]).await.assert_refused(&theirs.doc_id, "out_of_scope");
    assert_eq!(answer.acknowledged, vec![hash_of(&mine)], "its other record lands");
    // A phone of the other county pushed there directly; the relay's pull never carries it.
    let phone = f.user_token("insp-b", Role::Inspector, OTHER, "phone-b").await;
    f.push(&phone, std::slice::from_ref(&theirs)).await.wire::<wire::PushResponse>();
    let supervisor = f.user_token("city", Role::Supervisor, "210100", "sup-phone").await;
    let page = f.pull(&relay, 0, None).await;
    assert!(page.documents.is_empty(), "its own pushes are not echoed: {:?}", page.documents);
    let all = f.pull(&supervisor, 0, None).await;
    assert_eq!(all.documents.len(), 2, "the city sees both");
    let (_, later) = new_enterprise(OTHER, 3, "丙公司");
    f.push(&phone, &[later]).await.wire::<wire::PushResponse>();
    let next = f.pull(&relay, page.cursor, None).await;
    assert!(next.changes.is_empty() && next.documents.is_empty(), "nothing of county B: {next:?}");
    // The console's JSON API and its pages are not a relay's.
    let req = axum::http::Request::get("/api/v1/dashboard")
        .header("authorization", format!("Bearer {relay}"))
        .body(axum::body::Body::empty())
        .unwrap();
    f.send(req).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    // Revocable like a device.
    ohassist_server::accounts::revoke_device(&f.state.db.blocking_writer(), "relay-a", 1).unwrap();
    f.push(&relay, &[mine]).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn only_a_relay_may_name_authors_and_each_is_checked() {
    let f = Fixture::new();
    let phone = f.user_token("insp", Role::Inspector, COUNTY, "phone-1").await;
    let relay = f.user_token("county-a", Role::Relay, COUNTY, "relay-a").await;
    let (_, e) = new_enterprise(COUNTY, 1, "甲公司");
    let a = author(&e, "zhang", "inspector", "phone-9");
    let err = push_with(&f, &phone, std::slice::from_ref(&e), vec![a.clone()])
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(err.field.as_deref(), Some("authors"));
    f.assert_nothing_stored();
    for (bad, named) in [
        (ChangeAuthor { role: "relay".into(), ..a.clone() }, "authors[0].role"),
        (ChangeAuthor { hash: "xyz".into(), ..a.clone() }, "authors[0].hash"),
        (ChangeAuthor { device_id: "a:b".into(), ..a.clone() }, "authors[0].device_id"),
        (ChangeAuthor { username: String::new(), ..a.clone() }, "authors[0].username"),
        (ChangeAuthor { display_name: "x".repeat(101), ..a.clone() }, "authors[0].display_name"),
    ] {
        let err = push_with(&f, &relay, std::slice::from_ref(&e), vec![bad])
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert_eq!(err.field.as_deref(), Some("authors"));
        assert!(err.message_en.contains(named), "{named}: {}", err.message_en);
        assert!(err.message.contains(named), "{named}: {}", err.message);
    }
    let twice = push_with(&f, &relay, std::slice::from_ref(&e), vec![a.clone(), a.clone()]).await;
    twice.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    f.assert_nothing_stored();
    let ok: wire::PushResponse = push_with(&f, &relay, &[e], vec![a]).await.wire();
    assert_eq!(ok.new, 1);
}

#[tokio::test]
async fn the_upstream_records_the_relay_and_the_original_author_and_checks_authority_against_the_author() {
    let f = Fixture::new();
    let relay = f.user_token("county-a", Role::Relay, COUNTY, "relay-a").await;
    let (_, e) = new_enterprise(COUNTY, 1, "甲公司");
    let (mut visit, v) = new_visit(&e.doc_id, COUNTY);
    let authors = vec![author(&e, "zhang", "inspector", "phone-9"), author(&v, "zhang", "inspector", "phone-9")];
    let ok: wire::PushResponse = push_with(&f, &relay, &[e.clone(), v.clone()], authors).await.wire();
    assert_eq!(ok.new, 2, "{ok:?}");
    assert_eq!(
        one(
            &f,
            &format!(
                "SELECT u.username FROM changes c JOIN users u ON u.id = c.user_id WHERE hash = '{}'",
                hash_of(&v)
            )
        ),
        "county-a",
        "the pushing account is the relay"
    );
    assert_eq!(
        one(&f, &format!("SELECT username || '/' || device_id FROM change_origins WHERE hash = '{}'", hash_of(&v))),
        "zhang/phone-9",
        "and the original author beside it"
    );
    let authors = {
        let conn = ohassist_server::sql::Connection::from(
            ohassist_core::sqlite::open_reader(&f.dir.path().join("ohassist.db")).unwrap(),
        );
        ohassist_server::records::recorded_authors(&conn, &v.doc_id).unwrap()
    };
    assert_eq!(authors[&hash_of(&v)].device, "phone-9", "the console shows the original author");

    // A review: the county supervisor's, written in the county's console, relayed.
    let mut reviewed: Visit = visit.doc.read().unwrap();
    reviewed.review.state = ReviewState::Approved;
    reviewed.review.reviewer = "李主任".into();
    let review = visit.write(&reviewed);
    // Named as nobody (the relay's own), or as an inspector's phone: refused.
    push_with(&f, &relay, std::slice::from_ref(&review), Vec::new())
        .await
        .assert_refused(&review.doc_id, "field_authority");
    push_with(&f, &relay, std::slice::from_ref(&review), vec![author(&review, "zhang", "inspector", "phone-9")])
        .await
        .assert_refused(&review.doc_id, "field_authority");
    push_with(&f, &relay, std::slice::from_ref(&review), vec![author(&review, "li", "supervisor", "phone-3")])
        .await
        .assert_refused(&review.doc_id, "field_authority");
    let ok: wire::PushResponse =
        push_with(&f, &relay, std::slice::from_ref(&review), vec![author(&review, "li", "supervisor", "web")])
            .await
            .wire();
    assert_eq!(ok.new, 1, "a supervisor's console edit, relayed: {ok:?}");
    assert_eq!(one(&f, &format!("SELECT review_state FROM visits WHERE id = '{}'", v.doc_id)), "approved");
}
