//! One refused record never holds back the rest (issue 11), on the real server: the
//! squatting scenario (one enterprise registered from two counties), an inspector moved to
//! another county, a visit the server refuses for its fields, and a random mix of refusals
//! checked against a per-document oracle.

use std::collections::{BTreeMap, BTreeSet};

use ohassist_core::model::{AttachmentKind, RecordKind, ReviewState};
use ohassist_core::store::{EnterpriseFilter, NewAttachment, VisitFilter};
use ohassist_tests::*;
use rand::{Rng, SeedableRng};

const CITY: &str = "350100";
const A: &str = "350121"; // 闽侯县
const B: &str = "350122"; // 连江县
const C: &str = "350123"; // 罗源县

fn named(i: usize, county: &str, name: &str) -> ohassist_core::model::Enterprise {
    let mut e = enterprise(i, county);
    e.county.name = name.into();
    e
}

fn count(db: &ohassist_server::sql::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn county_of(db: &ohassist_server::sql::Connection, id: &str) -> Option<String> {
    db.query_row("SELECT county_code FROM documents WHERE id = ?1", [id], |r| r.get(0)).ok()
}

/// The redirect target of a console POST.
fn settle(console: &mut Console, credit_code: &str, county: &str) -> String {
    let (status, _) = console.post("/refused/transfer", &[("credit_code", credit_code), ("county", county)]);
    assert_eq!(status, 303, "the transfer is accepted");
    let (_, page) = console.get("/refused");
    page
}

#[test]
fn an_enterprise_registered_from_two_counties_is_held_then_settled_by_the_city() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("insp-a", "inspector", A, PASSWORD);
    server.add_user("insp-a2", "inspector", A, PASSWORD);
    server.add_user("insp-b", "inspector", B, PASSWORD);
    server.add_user("city-sup", "supervisor", CITY, PASSWORD);
    server.add_user("county-sup", "supervisor", A, PASSWORD);
    let code = credit_code(7);

    // County B registers the enterprise first.
    let b = Phone::new(&server.url());
    b.login("insp-b", PASSWORD);
    let mut e = named(7, B, "连江县");
    e.address = "B 登记的地址".into();
    b.store.create_enterprise(e).unwrap();
    b.sync();

    // County A, offline at the boundary, registers it too, with a visit, and an unrelated
    // enterprise with its visit.
    let a = Phone::new(&server.url());
    a.login("insp-a", PASSWORD);
    let mut e = named(7, A, "闽侯县");
    e.contact.person = "A 登记的联系人".into();
    a.store.create_enterprise(e).unwrap();
    let squatted_visit = a.store.create_visit(visit(7)).unwrap();
    a.store.edit_visit(&squatted_visit, |v| v.notes = "A 的走访".into()).unwrap();
    a.store.create_enterprise(named(8, A, "闽侯县")).unwrap();
    let other_visit = a.store.create_visit(visit(8)).unwrap();
    let report = a.sync();
    assert_eq!(report.newly_held, 2, "the squatted enterprise and its visit are held: {report:?}");
    let held: BTreeMap<String, String> =
        a.store.held_records().unwrap().into_iter().map(|h| (h.doc_id, h.code)).collect();
    assert_eq!(held.get(&code).map(String::as_str), Some("out_of_scope"));
    assert!(held.contains_key(&squatted_visit));
    let advice = &a.store.held_records().unwrap()[0].advice_zh;
    assert!(advice.contains("主管"), "the inspector is told what to do, not to log in again: {advice}");
    // The unrelated records reached the server on the first sync.
    let db = server.db();
    assert_eq!(county_of(&db, &credit_code(8)).as_deref(), Some(A));
    assert_eq!(county_of(&db, &other_visit).as_deref(), Some(A));
    assert!(county_of(&db, &squatted_visit).is_none(), "nothing of the refused visit is stored");
    assert_eq!(count(&db, "SELECT count(*) FROM refused_uploads WHERE kept = 1"), 2, "its changes are kept");

    // A keeps pulling: a colleague's new record arrives while two records are held.
    let a2 = Phone::new(&server.url());
    a2.login("insp-a2", PASSWORD);
    a2.store.create_enterprise(named(9, A, "闽侯县")).unwrap();
    a2.sync();
    let report = a.sync();
    assert_eq!(report.newly_held, 0, "held records are not pushed again until a retry is due");
    assert!(a.store.get_enterprise(&credit_code(9)).is_ok(), "pulls always run");

    // The county's own supervisor sees the refusal but cannot settle it (B is not theirs).
    let mut county = Console::login(&server.url(), "county-sup");
    let (_, page) = county.get("/refused");
    assert!(page.contains("测试企业7"), "the record in words");
    assert!(!page.contains("action=\"/refused/transfer\""), "a county supervisor has no transfer to offer");
    let (status, _) = county.post("/refused/transfer", &[("credit_code", &code), ("county", A)]);
    assert!(status >= 400, "refused for a unit of one county, got {status}");

    // The city supervisor sees it in words and settles it: the enterprise belongs to A.
    let mut city = Console::login(&server.url(), "city-sup");
    let (_, page) = city.get("/refused");
    for words in ["测试企业7", "记录不属于您所在单位的辖区", "闽侯县", "连江县"] {
        assert!(page.contains(words), "the queue shows {words}");
    }
    let page = settle(&mut city, &code, A);
    assert!(page.contains("id=\"none\""), "the queue is empty once settled: {page}");
    assert_eq!(county_of(&db, &code).as_deref(), Some(A));
    assert_eq!(county_of(&db, &squatted_visit).as_deref(), Some(A), "A's kept visit was taken in");

    // A's next sync: the held changes are acknowledged (the server took them already) and
    // A holds nothing any more; the enterprise carries both inspectors' data.
    let report = a.sync();
    assert_eq!(report.newly_held, 0);
    assert!(a.store.held_records().unwrap().is_empty(), "{:?}", a.store.held_records());
    assert_eq!(a.store.outbox_len().unwrap(), 0, "nothing is left to push");
    let on_a = a.store.get_enterprise(&code).unwrap().record;
    assert_eq!(on_a.address, "B 登记的地址", "B's field merged in");
    assert_eq!(on_a.contact.person, "A 登记的联系人", "A's field kept");
    assert_eq!(on_a.county.code, A);
    assert_eq!(a.store.get_visit(&squatted_visit).unwrap().record.notes, "A 的走访");
    // B's phone learns that the record left its county, as it was at the transfer.
    b.sync();
    assert_eq!(b.store.get_enterprise(&code).unwrap().record.county.code, A);
    // The server and a phone that sees both counties hold one record with every field.
    let viewer = Phone::new(&server.url());
    viewer.login("city-sup", PASSWORD);
    viewer.sync();
    let merged = viewer.store.get_enterprise(&code).unwrap();
    assert_eq!(merged.record.address, "B 登记的地址");
    assert_eq!(merged.record.contact.person, "A 登记的联系人");
    assert_eq!(viewer.store.get_visit(&squatted_visit).unwrap().record.notes, "A 的走访");
    let a_heads = a.store.get_enterprise(&code).unwrap().version;
    assert_eq!(merged.version, a_heads, "A and the server converged on one version");
    // The recorded author of A's visit is A's account, though a supervisor took it in.
    let author: String = db
        .query_row(
            "SELECT u.username FROM changes c JOIN users u ON u.id = c.user_id WHERE c.doc_id = ?1 AND c.whole = 0
             ORDER BY c.seq DESC LIMIT 1",
            [&squatted_visit],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(author, "insp-a");
}

#[test]
fn an_inspector_moved_to_another_county_keeps_what_they_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("insp-x", "inspector", A, PASSWORD);
    server.add_user("city-sup", "supervisor", CITY, PASSWORD);
    let x = Phone::new(&server.url());
    x.login("insp-x", PASSWORD);
    x.sync();
    // Offline in county A...
    x.store.create_enterprise(named(21, A, "闽侯县")).unwrap();
    let v = x.store.create_visit(visit(21)).unwrap();
    // ...while an admin moves the inspector to county C.
    server.cli(&["user", "set-unit", "--username", "insp-x", "--org-unit", C], "");
    x.store.create_enterprise(named(22, C, "罗源县")).unwrap();
    let report = x.sync();
    assert_eq!(report.newly_held, 2, "{report:?}");
    let db = server.db();
    assert_eq!(county_of(&db, &credit_code(22)).as_deref(), Some(C), "the record of the new county goes through");
    // Logging in again retries every held record and keeps them.
    x.login("insp-x", PASSWORD);
    assert_eq!(x.sync().held_records, 2);
    assert_eq!(x.store.held_records().unwrap().len(), 2, "logout and login keep held records");

    // The city settles it: the enterprise stays in A, where it is.
    let mut city = Console::login(&server.url(), "city-sup");
    let (_, page) = city.get("/refused");
    assert!(page.contains("测试企业21"));
    settle(&mut city, &credit_code(21), A);
    assert_eq!(county_of(&db, &credit_code(21)).as_deref(), Some(A));
    assert_eq!(county_of(&db, &v).as_deref(), Some(A));
    // The phone's held copies are acknowledged at its next sync; nothing was lost.
    let report = x.sync();
    assert_eq!(report.held_records, 0, "{report:?}");
    assert_eq!(x.store.outbox_len().unwrap(), 0);
}

#[test]
fn a_visit_refused_for_its_fields_is_held_shown_and_discarded_only_with_an_export() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("insp-a", "inspector", A, PASSWORD);
    let a = Phone::new(&server.url());
    a.login("insp-a", PASSWORD);
    a.store.create_enterprise(named(31, A, "闽侯县")).unwrap();
    // An app that let the inspector approve their own visit: the server refuses the record
    // (a rule of the server's, 422-like), and only it.
    let bad = a.store.create_visit(visit(31)).unwrap();
    a.store
        .edit_visit(&bad, |v| {
            v.review.state = ReviewState::Approved;
            v.review.reviewer = "自己".into();
            v.notes = "现场记录".into();
        })
        .unwrap();
    let good = a.store.create_visit(visit(31)).unwrap();
    // Each visit has a photo: the held one's is refused (its visit is not on the server),
    // the other's goes up all the same.
    let photo = |v: &str, byte: u8| {
        let meta =
            NewAttachment { kind: Some(AttachmentKind::Photo), media_type: "image/jpeg".into(), ..Default::default() };
        a.store.add_attachment(v, &[byte; 2048], meta).unwrap()
    };
    photo(&bad, 1);
    photo(&good, 2);
    let report = a.sync();
    assert_eq!(report.newly_held, 1);
    assert_eq!((report.attachments_uploaded, report.attachments_refused), (1, 1), "{report:?}");
    assert_eq!(a.store.pending_uploads().unwrap().len(), 1, "the held visit's photo stays, pending");
    let held = a.store.held_records().unwrap();
    assert_eq!((held[0].doc_id.as_str(), held[0].code.as_str()), (bad.as_str(), "field_authority"));
    assert!(!held[0].reason_zh.is_empty() && !held[0].reason_en.is_empty());
    let db = server.db();
    assert!(county_of(&db, &good).is_some(), "the other visit went through");
    assert!(county_of(&db, &bad).is_none());
    // Readable and editable while held.
    a.store.edit_visit(&bad, |v| v.notes = "现场记录（补充）".into()).unwrap();
    let attempts =
        |db: &ohassist_server::sql::Connection| count(db, "SELECT coalesce(sum(attempts), 0) FROM refused_uploads");
    let before = attempts(&db);
    let report = a.sync();
    assert_eq!((report.newly_held, report.held_records), (0, 1), "still refused, still held");
    assert!(attempts(&db) > before, "the edit retried it");
    // The inspector discards it, confirming; the export keeps everything.
    let confirm = a.store.discard_confirmation(&bad).unwrap();
    let export = a.store.discard_held(&bad, &confirm).unwrap();
    assert!(export.json.contains("现场记录（补充）"));
    assert_eq!(a.store.discarded_records().unwrap().len(), 1);
    let report = a.sync();
    assert_eq!((report.held_records, report.newly_held), (0, 0));
    assert_eq!(a.store.outbox_len().unwrap(), 0);
}

/// Random pushes where a random subset of documents is refused: the accepted set is what a
/// per-document oracle accepts, nothing refused is stored, nothing is lost on the phone,
/// and once the refusals are lifted every replica converges.
#[test]
fn random_refusals_match_a_per_document_oracle_and_converge_once_lifted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("city-sup", "supervisor", CITY, PASSWORD);
    let cases = std::env::var("OHASSIST_REFUSAL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(6usize);
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261202);
    for case in 0..cases {
        let user = format!("insp-{case}");
        server.add_user(&user, "inspector", A, PASSWORD);
        let phone = Phone::new(&server.url());
        phone.login(&user, PASSWORD);
        let base = 1000 + case * 100;
        // Enterprises in A (in scope) or B (refused); visits of a random enterprise, some of
        // an enterprise that is neither on the phone's push nor on the server.
        let mut accepted = BTreeSet::new();
        let mut refused = BTreeSet::new();
        let n = rng.random_range(3..9);
        let mut in_scope = Vec::new();
        for i in 0..n {
            let county = if rng.random_bool(0.6) { A } else { B };
            let id = phone.store.create_enterprise(named(base + i, county, "县")).unwrap();
            in_scope.push(county == A);
            if county == A {
                accepted.insert(id)
            } else {
                refused.insert(id)
            };
        }
        for _ in 0..rng.random_range(2..12) {
            let i = rng.random_range(0..n);
            let id = phone.store.create_visit(visit(base + i)).unwrap();
            if rng.random_bool(0.5) {
                phone.store.edit_visit(&id, |v| v.notes = format!("编辑 {}", rng.random::<u32>())).unwrap();
            }
            if in_scope[i] {
                accepted.insert(id)
            } else {
                refused.insert(id)
            };
        }
        let report = phone.sync();
        let held: BTreeSet<String> = phone.store.held_records().unwrap().into_iter().map(|h| h.doc_id).collect();
        assert_eq!(held, refused, "case {case}: held = the oracle's refused");
        assert_eq!(report.newly_held as usize, refused.len());
        let db = server.db();
        for id in &accepted {
            assert!(county_of(&db, id).is_some(), "case {case}: accepted {id} is on the server");
        }
        for id in &refused {
            assert!(county_of(&db, id).is_none(), "case {case}: refused {id} left nothing in documents");
            let in_feed: i64 =
                db.query_row("SELECT count(*) FROM changes WHERE doc_id = ?1", [id], |r| r.get(0)).unwrap();
            assert_eq!(in_feed, 0, "case {case}: nor in the feed");
        }
        // Nothing lost on the phone: every record still reads.
        let listed: BTreeSet<String> = phone
            .store
            .list_enterprises(&EnterpriseFilter::default())
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .chain(phone.store.list_visits(&VisitFilter::default()).unwrap().into_iter().map(|v| v.id))
            .collect();
        for id in accepted.iter().chain(&refused) {
            assert!(listed.contains(id), "case {case}: {id} is still listed on the phone");
        }
        // The refusals are lifted (the inspector now covers the city): the next login and
        // sync push everything, and the phone, the server and a city phone converge.
        server.cli(&["user", "set-unit", "--username", &user, "--org-unit", CITY], "");
        phone.login(&user, PASSWORD);
        let report = phone.sync();
        assert_eq!(report.held_records, 0, "case {case}: {report:?}");
        assert_eq!(phone.store.outbox_len().unwrap(), 0);
        let viewer = Phone::new(&server.url());
        viewer.login("city-sup", PASSWORD);
        viewer.sync();
        for id in accepted.iter().chain(&refused) {
            let kind = if id.len() == 18 { RecordKind::Enterprise } else { RecordKind::Visit };
            let (mine, theirs) = match kind {
                RecordKind::Enterprise => {
                    (phone.store.get_enterprise(id).unwrap().version, viewer.store.get_enterprise(id).unwrap().version)
                }
                RecordKind::Visit => {
                    (phone.store.get_visit(id).unwrap().version, viewer.store.get_visit(id).unwrap().version)
                }
            };
            assert_eq!(mine, theirs, "case {case}: {id} converged");
        }
    }
}
