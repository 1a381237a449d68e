//! Who may read and write what: role × scope × endpoint, table-driven, over real HTTP.

use automerge::ActorId;
use ohassist_core::doc::{to_json, Author, Document};
use ohassist_core::model::{RecordKind, Visit};
use ohassist_core::store::{EnterpriseFilter, VisitFilter};
use ohassist_core::sync::wire::{self, PushRequest, WireChange};
use ohassist_tests::*;

const A: &str = "350121"; // 闽侯县
const B: &str = "350102"; // 鼓楼区 (same city 350100)

/// A push of a brand-new visit in `county` for enterprise `i`, built as a phone would.
fn new_visit_push(i: usize, county: &str) -> Vec<u8> {
    let id = ohassist_core::model::new_item_id();
    let mut doc = Document::genesis(RecordKind::Visit, &id);
    let mut changes = doc.changes_since(&[]);
    let v = Visit { county_code: county.into(), ..visit(i) };
    let author = Author { user: "x".into(), device: "y".into() };
    changes.extend(doc.write_diff(&ActorId::random(), &author, &to_json(&Visit::default()), &to_json(&v)).unwrap());
    let request = PushRequest {
        protocol: wire::PROTOCOL_VERSION,
        changes: changes
            .iter()
            .map(|c| WireChange { doc_id: id.clone(), kind: RecordKind::Visit, bytes: c.raw_bytes().to_vec() })
            .collect(),
        authors: Vec::new(),
    };
    wire::encode(&request)
}

/// A push that edits an existing visit held by `phone` so that `edit` applies.
fn edit_push(phone: &Phone, id: &str, edit: impl FnOnce(&mut Visit)) -> Vec<u8> {
    let conn = phone_db(phone.store.path());
    let bytes: Vec<u8> = conn.query_row("SELECT bytes FROM documents WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    let mut doc = Document::load(RecordKind::Visit, id, &bytes).unwrap();
    let old: Visit = doc.read().unwrap();
    let mut new = old.clone();
    edit(&mut new);
    let author = Author { user: "x".into(), device: "y".into() };
    let change = doc.write_diff(&ActorId::random(), &author, &to_json(&old), &to_json(&new)).unwrap().unwrap();
    wire::encode(&PushRequest {
        protocol: wire::PROTOCOL_VERSION,
        changes: vec![WireChange { doc_id: id.into(), kind: RecordKind::Visit, bytes: change.raw_bytes().to_vec() }],
        authors: Vec::new(),
    })
}

fn changes_on_server(server: &Server) -> i64 {
    server.db().query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap()
}

#[test]
fn role_scope_and_endpoint_table() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    for (user, role, unit) in [
        ("insp_a", "inspector", A),
        ("insp_b", "inspector", B),
        ("sup_city", "supervisor", "350100"),
        ("sup_other", "supervisor", "350200"),
        ("admin_city", "admin", "350100"),
    ] {
        server.add_user(user, role, unit, PASSWORD);
    }
    // Seed: each inspector records an enterprise and a visit in their own county.
    let pa = Phone::new(&server.url());
    pa.login("insp_a", PASSWORD);
    pa.store.create_enterprise(enterprise(1, A)).unwrap();
    let visit_a = pa.store.create_visit(visit(1)).unwrap();
    pa.sync();
    let pb = Phone::new(&server.url());
    pb.login("insp_b", PASSWORD);
    pb.store.create_enterprise(enterprise(2, B)).unwrap();
    let visit_b = pb.store.create_visit(visit(2)).unwrap();
    pb.sync();

    // Reads: what each role's first sync brings down.
    for (user, expect_a, expect_b) in [
        ("insp_a", true, false),
        ("insp_b", false, true),
        ("sup_city", true, true),
        ("sup_other", false, false),
        ("admin_city", true, true),
    ] {
        let p = Phone::new(&server.url());
        p.login(user, PASSWORD);
        p.sync();
        let has = |id: &str| p.store.get_visit(id).is_ok();
        assert_eq!((has(&visit_a), has(&visit_b)), (expect_a, expect_b), "{user} reads");
        let enterprises = p.store.list_enterprises(&EnterpriseFilter::default()).unwrap().len();
        assert_eq!(enterprises, expect_a as usize + expect_b as usize, "{user} enterprises");
        let visits = p.store.list_visits(&VisitFilter::default()).unwrap().len();
        assert_eq!(visits, expect_a as usize + expect_b as usize, "{user} visits");
    }

    // Writes: (who, body, expected status, expected code).
    let push_url = format!("{}/api/v1/sync/push", server.url());
    let tokens: std::collections::HashMap<&str, String> = ["insp_a", "insp_b", "sup_city", "admin_city"]
        .into_iter()
        .map(|u| (u, token(&server.url(), u, PASSWORD, &format!("dev-{u}"))))
        .collect();
    // (what, who, body, expected: None = applied, Some((status, code)) = refused; a push
    // answers 200 with the refused document named, any other status refuses the request).
    type Expect<'a> = Option<(u16, &'a str)>;
    let cases: Vec<(&str, &str, Vec<u8>, Expect)> = vec![
        ("inspector, own county", "insp_a", new_visit_push(1, A), None),
        ("inspector, other county", "insp_a", new_visit_push(2, B), Some((200, "out_of_scope"))),
        (
            "inspector edits a foreign record",
            "insp_a",
            edit_push(&pb, &visit_b, |v| v.notes = "越权".into()),
            Some((200, "out_of_scope")),
        ),
        ("supervisor may not push", "sup_city", new_visit_push(1, A), Some((403, "forbidden"))),
        ("admin within unit", "admin_city", new_visit_push(2, B), None),
    ];
    for (what, user, body, expect) in cases {
        let before = changes_on_server(&server);
        let answer = post(&push_url, Some(&tokens[user]), SYNC_HEADERS, body);
        match expect {
            None => {
                assert_eq!(answer.status, 200, "{what}: {}", String::from_utf8_lossy(&answer.body));
                let r: ohassist_core::sync::wire::PushResponse =
                    ohassist_core::sync::wire::decode(&answer.body, 1 << 20).unwrap();
                assert!(r.refused.is_empty(), "{what}: {r:?}");
                assert!(changes_on_server(&server) > before, "{what}: applied");
            }
            Some((200, code)) => {
                assert_eq!(answer.status, 200, "{what}: {}", String::from_utf8_lossy(&answer.body));
                let r: ohassist_core::sync::wire::PushResponse =
                    ohassist_core::sync::wire::decode(&answer.body, 1 << 20).unwrap();
                assert_eq!(r.refused.len(), 1, "{what}: {r:?}");
                assert_eq!(r.refused[0].code, code, "{what}");
                assert!(!r.refused[0].message.is_empty(), "{what}: a message for people");
                assert_eq!(changes_on_server(&server), before, "{what}: nothing applied");
            }
            Some((status, code)) => {
                assert_eq!(answer.status, status, "{what}: {}", String::from_utf8_lossy(&answer.body));
                assert_eq!(answer.code(), code, "{what}");
                assert_eq!(changes_on_server(&server), before, "{what}: nothing applied");
                assert!(!answer.json()["message"].as_str().unwrap_or("").is_empty(), "{what}: a message for people");
            }
        }
    }
    // A visit's county is its enterprise's: an inspector who writes another county into
    // their visit moves nothing out of their scope.
    let answer =
        post(&push_url, Some(&tokens["insp_a"]), SYNC_HEADERS, edit_push(&pa, &visit_a, |v| v.county_code = B.into()));
    assert_eq!(answer.status, 200);
    let county: String =
        server.db().query_row("SELECT county_code FROM visits WHERE id = ?1", [&visit_a], |r| r.get(0)).unwrap();
    assert_eq!(county, A, "the visit stays in its enterprise's county");

    // Admin endpoints are for admins.
    let users_url = format!("{}/api/v1/admin/users", server.url());
    assert_eq!(get(&users_url, Some(&tokens["insp_a"])).status, 403);
    assert_eq!(get(&users_url, Some(&tokens["sup_city"])).status, 403);
    assert_eq!(get(&users_url, Some(&tokens["admin_city"])).status, 200);

    // A revoked device is refused at once, for pushes and pulls.
    let devices = server.cli(&["device", "list"], "");
    let device_a = pa.store.device_id().to_string();
    assert!(devices.contains(&device_a), "{devices}");
    server.cli(&["device", "revoke", &device_a], "");
    pa.store.edit_visit(&visit_a, |v| v.notes = "吊销之后".into()).unwrap();
    match pa.try_sync() {
        Err(ohassist_core::sync::SyncError::Unauthorized) => {}
        other => panic!("revoked device synced: {other:?}"),
    }
    assert_eq!(pa.store.outbox_len().unwrap(), 1, "the unsent edit is kept");
    // Unknown and missing tokens.
    assert_eq!(post(&push_url, Some("not-a-token"), SYNC_HEADERS, new_visit_push(1, A)).status, 401);
    assert_eq!(post(&push_url, None, SYNC_HEADERS, new_visit_push(1, A)).status, 401);
}
