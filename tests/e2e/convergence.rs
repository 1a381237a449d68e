//! Two phones edit the same visit offline; whatever the order they sync in, the server
//! and both phones converge, no edit is lost, and a same-field edit is a listed conflict
//! everywhere.

use ohassist_core::model::{new_item_id, Post, Visit};
use ohassist_tests::*;

const COUNTY: &str = "350121";

fn scenario(a_first: bool) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    server.add_user("boss", "supervisor", "350100", PASSWORD);
    let a = Phone::new(&server.url());
    let b = Phone::new(&server.url());
    a.login("zhang", PASSWORD);
    b.login("li", PASSWORD);

    a.store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    let id = a.store.create_visit(visit(1)).unwrap();
    a.sync();
    b.sync();
    assert!(b.store.get_visit(&id).is_ok(), "b received the visit");
    assert_eq!(a.store.outbox_len().unwrap(), 0);

    // Offline, both edit: different fields, the same field, and both add posts.
    let (post_a, post_b) = (new_item_id(), new_item_id());
    a.store
        .edit_visit(&id, |v| {
            v.notes = "张的备注".into();
            v.management_system.emergency_plan = Some(true);
            v.hazard_identification
                .posts
                .insert(post_a.clone(), Post { name: "破碎工".into(), exposed_workers: 3, ..Default::default() });
        })
        .unwrap();
    b.store
        .edit_visit(&id, |v| {
            v.notes = "李的备注".into();
            v.management_system.system_established = Some(true);
            v.hazard_identification
                .posts
                .insert(post_b.clone(), Post { name: "装载工".into(), exposed_workers: 2, ..Default::default() });
        })
        .unwrap();

    let (first, second) = if a_first { (&a, &b) } else { (&b, &a) };
    first.sync();
    second.sync();
    first.sync();

    let va: Visit = a.store.get_visit(&id).unwrap().record;
    let vb: Visit = b.store.get_visit(&id).unwrap().record;
    assert_eq!(va, vb, "the phones converge");
    assert_eq!(va.management_system.emergency_plan, Some(true));
    assert_eq!(va.management_system.system_established, Some(true));
    assert_eq!(va.hazard_identification.posts.len(), 2, "both posts survive");
    assert_eq!(a.store.get_visit(&id).unwrap().version, b.store.get_visit(&id).unwrap().version);

    // The server's merged document, seen through a supervisor's fresh first sync.
    let sup = Phone::new(&server.url());
    sup.login("boss", PASSWORD);
    let report = sup.sync();
    assert!(report.documents_pulled >= 2, "{report:?}");
    assert_eq!(sup.store.get_visit(&id).unwrap().record, va, "the server holds the same record");

    for (who, phone) in [("a", &a), ("b", &b), ("server", &sup)] {
        let conflicts = phone.store.conflicts(&id).unwrap();
        assert_eq!(conflicts.len(), 1, "{who}: {conflicts:?}");
        assert_eq!(conflicts[0].path_string(), "notes");
        let values: Vec<_> = conflicts[0].values.iter().map(|v| v.value.as_str().unwrap().to_string()).collect();
        assert!(values.contains(&"张的备注".into()) && values.contains(&"李的备注".into()), "{who}: {values:?}");
    }
    // The server's relational row carries the conflict flag.
    let flagged: i64 =
        server.db().query_row("SELECT has_conflicts FROM visits WHERE id = ?1", [&id], |r| r.get(0)).unwrap();
    assert_eq!(flagged, 1);

    // A choice made on one phone settles it everywhere.
    a.store.resolve_conflict(&id, "notes", &serde_json::json!("合并")).unwrap();
    a.sync();
    b.sync();
    sup.sync();
    for phone in [&a, &b, &sup] {
        assert!(phone.store.conflicts(&id).unwrap().is_empty());
        assert_eq!(phone.store.get_visit(&id).unwrap().record.notes, "合并");
    }
}

#[test]
fn two_phones_converge_when_a_syncs_first() {
    scenario(true);
}

#[test]
fn two_phones_converge_when_b_syncs_first() {
    scenario(false);
}

#[test]
fn two_offline_registrations_of_one_enterprise_become_one_record_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let a = Phone::new(&server.url());
    let b = Phone::new(&server.url());
    a.login("zhang", PASSWORD);
    b.login("li", PASSWORD);
    let mut ea = enterprise(5, COUNTY);
    ea.contact.person = "王五".into();
    a.store.create_enterprise(ea).unwrap();
    let mut eb = enterprise(5, COUNTY);
    eb.address = "某镇某村".into();
    eb.add_year(2024);
    b.store.create_enterprise(eb).unwrap();
    a.sync();
    b.sync();
    a.sync();
    let code = credit_code(5);
    let e = a.store.get_enterprise(&code).unwrap().record;
    assert_eq!(e, b.store.get_enterprise(&code).unwrap().record);
    assert_eq!((e.contact.person.as_str(), e.address.as_str()), ("王五", "某镇某村"));
    assert_eq!(e.years(), vec![2024, 2025]);
    let rows: i64 = server.db().query_row("SELECT count(*) FROM enterprises", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 1, "one enterprise on the server");
}

/// A phone that registered a county's list offline pushes it, and its first sync then
/// downloads none of it back (no echo); what another phone changed of it still arrives
/// whole, and every phone converges.
#[test]
fn a_first_sync_after_a_big_offline_registration_downloads_nothing_the_phone_holds() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let a = Phone::new(&server.url());
    let b = Phone::new(&server.url());
    a.login("zhang", PASSWORD);
    b.login("li", PASSWORD);
    // Another phone's record, which the new phone must get.
    b.store.create_enterprise(enterprise(900, COUNTY)).unwrap();
    b.sync();

    // Offline: 40 enterprises and 200 visits, more than one push batch of changes.
    let mut visits = Vec::new();
    for i in 0..40 {
        a.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
    }
    for n in 0..200 {
        let mut v = visit(n % 40);
        v.notes = format!("离线登记 {n}");
        visits.push(a.store.create_visit(v).unwrap());
    }
    let first = a.sync();
    assert_eq!(first.changes_pushed, 480, "{first:?}");
    assert_eq!(first.documents_pulled, 1, "only the other phone's enterprise comes down: {first:?}");
    assert_eq!(first.changes_pulled, 0, "{first:?}");
    assert!(a.store.get_enterprise(&credit_code(900)).is_ok());
    assert_eq!(a.store.outbox_len().unwrap(), 0);

    // The other phone (past its first sync) gets all of it as changes, and edits one visit.
    let got = b.sync();
    assert_eq!((got.changes_pulled, got.progress.documents_down), (480, 240), "{got:?}");
    b.store.edit_visit(&visits[7], |v| v.notes = "李：已复核".into()).unwrap();
    b.sync();

    // The phone syncs from the start again (as after a change of unit): only the visit another
    // phone changed, and that phone's enterprise, come down, whole.
    a.store.set_meta("sync_cursor", "0").unwrap();
    let again = a.sync();
    assert_eq!(again.documents_pulled, 2, "{again:?}");
    assert_eq!(again.changes_pulled, 0, "{again:?}");
    for id in [&visits[7], &visits[8]] {
        let (va, vb) = (a.store.get_visit(id).unwrap(), b.store.get_visit(id).unwrap());
        assert_eq!(va.record, vb.record);
        assert_eq!(va.version, vb.version, "the phones converge");
    }
    assert_eq!(a.store.get_visit(&visits[7]).unwrap().record.notes, "李：已复核");
    let on_server: i64 = server.db().query_row("SELECT count(*) FROM documents", [], |r| r.get(0)).unwrap();
    assert_eq!(on_server, 241);
    assert_eq!(a.store.list_visits(&Default::default()).unwrap().len(), 200);
}
