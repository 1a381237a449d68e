use axum::http::StatusCode;
use ohassist_core::doc::Document;
use ohassist_core::model::{Enterprise, RecordKind, Visit};
use ohassist_core::sync::wire::{self, PullRequest, PushResponse, WireChange};
use ohassist_server::accounts::Role;

use crate::common::*;

fn load(kind: RecordKind, id: &str, bytes: &[u8]) -> Document {
    Document::load(kind, id, bytes).unwrap()
}

#[tokio::test]
async fn push_then_pull_round_trip() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let b = f.user_token("li", Role::Inspector, "210102", "phone-b").await;

    let (mut ent, c1) = new_enterprise("210102", 1, "甲矿业");
    let (_visit, c2) = new_visit(ent.doc.id(), "210102");
    let pushed: PushResponse = f.push(&a, &[c1.clone(), c2.clone()]).await.wire();
    assert_eq!(pushed.new, 2);
    assert_eq!(pushed.acknowledged.len(), 2);

    // B's first sync gets both records whole.
    let first = f.pull(&b, 0, None).await;
    assert!(!first.more && first.page_token.is_none() && first.changes.is_empty());
    assert_eq!(first.documents.len(), 2);
    let e = first.documents.iter().find(|d| d.kind == RecordKind::Enterprise).unwrap();
    let e_doc = load(RecordKind::Enterprise, &e.doc_id, &e.bytes);
    assert_eq!(e_doc.read::<Enterprise>().unwrap().name, "甲矿业");
    let v = first.documents.iter().find(|d| d.kind == RecordKind::Visit).unwrap();
    assert_eq!(load(RecordKind::Visit, &v.doc_id, &v.bytes).read::<Visit>().unwrap().enterprise_id, ent.doc.id());
    assert!(first.cursor > 0);

    // A edits; B gets the change after its cursor, A does not get its own back.
    let mut renamed = ent.doc.read::<Enterprise>().unwrap();
    renamed.name = "甲矿业有限公司".into();
    let c3 = ent.write(&renamed);
    let pushed: PushResponse = f.push(&a, std::slice::from_ref(&c3)).await.wire();
    assert_eq!(pushed.new, 1);
    let next = f.pull(&b, first.cursor, None).await;
    assert_eq!(next.changes, vec![c3.clone()]);
    assert!(next.cursor > first.cursor && !next.more);
    let mut b_doc = e_doc;
    let change = automerge::Change::from_bytes(next.changes[0].bytes.clone()).unwrap();
    b_doc.apply_changes(vec![change]).unwrap();
    assert_eq!(b_doc.read::<Enterprise>().unwrap().name, "甲矿业有限公司");
    let own = f.pull(&a, first.cursor, None).await;
    assert!(own.changes.is_empty(), "a device's own changes are not sent back");
    assert_eq!(own.cursor, next.cursor, "the cursor advances past excluded rows");

    // Relational rows follow the merged document.
    let name: String = f
        .state
        .db
        .blocking_writer()
        .query_row("SELECT name FROM enterprises WHERE credit_code = ?1", [ent.doc.id()], |r| r.get(0))
        .unwrap();
    assert_eq!(name, "甲矿业有限公司");
    assert_eq!(f.count("visits"), 1);
}

#[tokio::test]
async fn a_device_new_to_a_record_gets_everything_it_depends_on_from_the_feed() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let b = f.user_token("li", Role::Inspector, "210102", "phone-b").await;
    let (_, earlier) = new_enterprise("210102", 9, "早先的企业");
    f.push(&a, &[earlier]).await.wire::<PushResponse>();
    let cursor = f.pull(&b, 0, None).await.cursor;
    assert!(cursor > 0);
    let (ent, c1) = new_enterprise("210102", 1, "甲矿业");
    f.push(&a, &[c1]).await.wire::<PushResponse>();
    let page = f.pull(&b, cursor, None).await;
    // The genesis first, then the edit: applied to an empty document they give the record.
    let mut doc = automerge::Automerge::new();
    let changes: Vec<_> =
        page.changes.iter().map(|c| automerge::Change::from_bytes(c.bytes.clone()).unwrap()).collect();
    assert_eq!(changes.len(), 2);
    doc.apply_changes(changes).unwrap();
    assert!(automerge::ReadDoc::get_missing_deps(&doc, &[]).is_empty());
    let loaded = load(RecordKind::Enterprise, ent.doc.id(), &doc.save());
    assert_eq!(loaded.read::<Enterprise>().unwrap().name, "甲矿业");
}

#[tokio::test]
async fn pushing_the_same_batch_twice_is_idempotent() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let (ent, c1) = new_enterprise("210102", 1, "甲矿业");
    let (_, c2) = new_visit(ent.doc.id(), "210102");
    let batch = [c1, c2];
    let first: PushResponse = f.push(&a, &batch).await.wire();
    let (docs, changes) = (f.count("documents"), f.count("changes"));
    let second: PushResponse = f.push(&a, &batch).await.wire();
    assert_eq!(second.acknowledged, first.acknowledged);
    assert_eq!((first.new, second.new), (2, 0));
    assert_eq!((f.count("documents"), f.count("changes")), (docs, changes));
    assert_eq!(f.count("enterprises"), 1);
}

#[tokio::test]
async fn an_out_of_scope_document_is_refused_alone() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let (_, inside) = new_enterprise("210102", 1, "甲矿业");
    let (far, outside) = new_enterprise("210103", 2, "乙矿业");
    let outside_hash = ohassist_core::limits::decode_change(&outside.bytes, &Default::default()).unwrap().hash();
    let answer = f.push(&a, &[inside.clone(), outside.clone()]).await.assert_refused(far.doc.id(), "out_of_scope");
    assert!(!answer.acknowledged.contains(&outside_hash.to_string()));
    assert_eq!(f.count("documents"), 1, "the one in scope is applied");
    assert_eq!(f.count("refused_uploads"), 1, "the refusal is kept for the console");
    // A retry of the same push gives the same answer.
    let again = f.push(&a, &[inside, outside]).await.assert_refused(far.doc.id(), "out_of_scope");
    assert_eq!(again.acknowledged, answer.acknowledged);
    assert_eq!(f.count("documents"), 1);
}

#[tokio::test]
async fn a_record_cannot_be_moved_out_of_another_county() {
    let f = Fixture::new();
    let other = f.user_token("wang", Role::Inspector, "210103", "phone-w").await;
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let (mut ent, c1) = new_enterprise("210103", 1, "乙矿业");
    f.push(&other, &[c1]).await.wire::<PushResponse>();
    let mut moved = ent.doc.read::<Enterprise>().unwrap();
    moved.county.code = "210102".into();
    let c2 = ent.write(&moved);
    f.push(&a, &[c2]).await.assert_refused(ent.doc.id(), "out_of_scope");
    assert_eq!(f.count("changes"), 2, "genesis and the first edit only");
}

#[tokio::test]
async fn supervisors_cannot_push_but_pull_their_unit() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let far = f.user_token("far", Role::Inspector, "220102", "phone-f").await;
    let sup = f.user_token("chief", Role::Supervisor, "210100", "desk").await;
    let (_, mine) = new_enterprise("210102", 1, "甲矿业");
    let (_, theirs) = new_enterprise("220102", 2, "丙化工");

    f.push(&sup, std::slice::from_ref(&mine)).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    f.assert_nothing_stored();

    f.push(&a, std::slice::from_ref(&mine)).await.wire::<PushResponse>();
    f.push(&far, &[theirs]).await.wire::<PushResponse>();
    let page = f.pull(&sup, 0, None).await;
    let ids: Vec<&str> = page.documents.iter().map(|d| d.doc_id.as_str()).collect();
    assert_eq!(ids, [mine.doc_id.as_str()]);
    let later = f.pull(&sup, 1, None).await;
    assert!(later.changes.iter().all(|c| c.doc_id == mine.doc_id) && !later.changes.is_empty());
}

#[tokio::test]
async fn changes_with_missing_dependencies_are_refused() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let (mut ent, _never_sent) = new_enterprise("210102", 1, "甲矿业");
    let mut renamed = ent.doc.read::<Enterprise>().unwrap();
    renamed.name = "改名".into();
    let c2 = ent.write(&renamed);
    f.push(&a, &[c2]).await.assert_refused(ent.doc.id(), "missing_dependencies");
    f.assert_nothing_stored();
}

#[tokio::test]
async fn a_document_that_is_not_a_valid_record_is_refused() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    // An enterprise whose id is not its credit code.
    let code = credit_code("210102", 1);
    let mut r = Record::new(RecordKind::Enterprise, "not-a-credit-code");
    let c = r.write(&enterprise(&code, "210102", "甲"));
    f.push(&a, &[c]).await.assert_refused("not-a-credit-code", "invalid_record");
    // A visit without a county.
    let (mut v, _) = new_visit(&code, "210102");
    let mut bad = Record::new(RecordKind::Visit, v.doc.id());
    let mut visit = v.doc.read::<Visit>().unwrap();
    visit.county_code = "21".into();
    let c = bad.write(&visit);
    f.push(&a, &[c]).await.assert_refused(v.doc.id(), "invalid_record");
    let _ = v.write(&Visit::default());
    f.assert_nothing_stored();
}

#[tokio::test]
async fn a_change_sent_under_the_wrong_kind_is_refused() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let (mut ent, c1) = new_enterprise("210102", 1, "甲矿业");
    f.push(&a, &[c1]).await.wire::<PushResponse>();
    let before = f.count("changes");
    let mut renamed = ent.doc.read::<Enterprise>().unwrap();
    renamed.name = "改名".into();
    let c2 = ent.write(&renamed);
    let as_visit = WireChange { kind: RecordKind::Visit, ..c2 };
    f.push(&a, &[as_visit]).await.assert_refused(ent.doc.id(), "kind_mismatch");
    assert_eq!(f.count("changes"), before);
}

#[tokio::test]
async fn first_sync_pages_return_every_document_exactly_once() {
    // A budget of one byte: one document per page.
    let f = Fixture::with_page_bytes(1);
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let b = f.user_token("li", Role::Inspector, "210102", "phone-b").await;
    let mut pushed: Vec<String> = Vec::new();
    let mut batch = Vec::new();
    for i in 0..7 {
        let (r, c) = new_enterprise("210102", i, "企业");
        pushed.push(r.doc.id().to_string());
        batch.push(c);
    }
    f.push(&a, &batch).await.wire::<PushResponse>();

    let mut seen = Vec::new();
    let mut page = f.pull(&b, 0, None).await;
    let mut pages = 1;
    loop {
        seen.extend(page.documents.iter().map(|d| d.doc_id.clone()));
        if !page.more {
            break;
        }
        assert_eq!(page.cursor, 0, "no cursor until the first sync is complete");
        // A document pushed in the middle of a first sync still reaches the client.
        if pages == 3 {
            let (r, c) = new_enterprise("210102", 100, "后来的企业");
            pushed.push(r.doc.id().to_string());
            f.push(&a, &[c]).await.wire::<PushResponse>();
        }
        page = f.pull(&b, page.cursor, page.page_token.clone()).await;
        pages += 1;
    }
    assert!(pages >= 7);
    let final_cursor = page.cursor;
    assert!(final_cursor > 0);
    let mut late = f.pull(&b, final_cursor, None).await;
    while late.more {
        late = f.pull(&b, late.cursor, None).await;
    }
    // The late document may arrive as a document (its id sorted after the last page) or
    // through the feed; every other document comes exactly once.
    let late_id = pushed.last().unwrap().clone();
    let mut first_sync: Vec<String> = seen.iter().filter(|id| **id != late_id).cloned().collect();
    first_sync.sort();
    let mut expected: Vec<String> = pushed[..7].to_vec();
    expected.sort();
    assert_eq!(first_sync, expected);
    assert!(seen.contains(&late_id) || late.changes.iter().any(|c| c.doc_id == late_id));
}

#[tokio::test]
async fn a_city_first_sync_goes_county_by_county_and_sends_each_document_in_scope_once() {
    // A budget of one byte: one document per page, so every page boundary is crossed.
    let f = Fixture::with_page_bytes(1);
    let admin = f.user_token("root", Role::Inspector, "210000", "phone-root").await;
    let mut in_scope: Vec<String> = Vec::new();
    let mut batch = Vec::new();
    // Three counties of the city (given out of order) and one county of another city.
    for (n, county) in (0u32..).zip(["210104", "210102", "210103", "210202"]) {
        for i in 0..3 {
            let (r, c) = new_enterprise(county, n * 10 + i, "企业");
            if county.starts_with("2101") {
                in_scope.push(r.doc.id().to_string());
            }
            batch.push(c);
        }
    }
    f.push(&admin, &batch).await.wire::<PushResponse>();
    let city = f.user_token("chief", Role::Supervisor, "210100", "desk").await;
    let mut seen = Vec::new();
    let mut page = f.pull(&city, 0, None).await;
    loop {
        seen.extend(page.documents.iter().map(|d| d.doc_id.clone()));
        if !page.more {
            break;
        }
        page = f.pull(&city, page.cursor, page.page_token.clone()).await;
    }
    assert!(page.cursor > 0);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), seen.len(), "no document twice: {seen:?}");
    in_scope.sort();
    assert_eq!(sorted, in_scope, "every document of the city's counties, none of another city's");
}

#[tokio::test]
async fn the_console_names_the_account_that_pushed_not_the_one_the_change_claims() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let sup = f.user_token("chief", Role::Supervisor, "210100", "desk").await;
    let zhang_id: String = f
        .state
        .db
        .blocking_writer()
        .query_row("SELECT id FROM users WHERE username = 'zhang'", [], |r| r.get(0))
        .unwrap();
    let (ent, c1) = new_enterprise("210102", 1, "甲矿业");
    // The change's message claims user "u" on device "d" (see `common::author`).
    let (v, c2) = new_visit(ent.doc.id(), "210102");
    let pushed: PushResponse = f.push(&a, &[c1, c2]).await.wire();
    assert!(pushed.refused.is_empty());
    let req = axum::http::Request::get(format!("/api/v1/visits/{}", v.doc.id()))
        .header(axum::http::header::AUTHORIZATION, format!("Bearer {sup}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let reply = f.send(req).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", String::from_utf8_lossy(&reply.body));
    let view: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    let history = view["history"].as_array().unwrap();
    assert!(!history.is_empty());
    for h in history {
        assert_eq!(h["author"]["user"], zhang_id.as_str(), "{h}");
        assert_eq!(h["author"]["device"], "phone-a", "{h}");
    }
}

/// A cursor that is not the position of a row of the feed was given by another life of the
/// database (a restore from an older backup): refused, so the phone starts over.
#[tokio::test]
async fn a_cursor_this_server_never_gave_is_409_cursor_ahead() {
    let f = Fixture::new();
    let a = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let (_, c1) = new_enterprise("210102", 1, "甲矿业");
    f.push(&a, &[c1]).await.wire::<PushResponse>();
    let cursor = f.pull(&a, 0, None).await.cursor;
    assert_eq!(f.pull(&a, cursor, None).await.cursor, cursor, "a given cursor is answered");
    for wrong in [cursor + 1, cursor + 1_000_000_000] {
        let req = PullRequest { protocol: wire::PROTOCOL_VERSION, cursor: wrong, page_token: None, pending: None };
        let reply = f.post_wire("/api/v1/sync/pull", &a, wire::encode(&req)).await;
        assert_eq!(reply.status, StatusCode::CONFLICT);
        let body = reply.error();
        assert_eq!((body.code.as_str(), body.field.as_deref()), ("cursor_ahead", Some("cursor")));
        assert!(body.message_en.contains(&format!("ends at {cursor}")), "{}", body.message_en);
    }
}
