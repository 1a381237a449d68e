//! One round trip when it can be, one connection for a whole sync, and a big registration
//! pushed in pipelined batches: against the real binary on loopback, through a proxy that
//! counts the TCP connections it accepts.

use std::sync::atomic::Ordering;

use ohassist_core::model::{AttachmentKind, Visit};
use ohassist_core::store::NewAttachment;
use ohassist_tests::proxy::{Faults, Proxy};
use ohassist_tests::*;

const COUNTY: &str = "350121";

fn connections(proxy: &Proxy) -> u64 {
    proxy.stats.connections.load(Ordering::SeqCst)
}

#[test]
fn a_returning_phone_syncs_in_one_round_trip_on_one_connection_and_converges() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let proxy = Proxy::start(&server.addr, Faults::default(), None);
    let a = Phone::new(&proxy.url());
    let b = Phone::new(&proxy.url());
    a.login("zhang", PASSWORD);
    b.login("li", PASSWORD);
    let mut ids = Vec::new();
    for i in 0..20 {
        a.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
        ids.push(a.store.create_visit(visit(i)).unwrap());
    }
    // A's first sync: its whole outbox and the first page in one exchange.
    let first = a.sync();
    assert_eq!((first.changes_pushed, first.progress.round_trips), (80, 1), "{first:?}");
    assert_eq!(b.sync().documents_pulled, 40);

    // Both edit offline: A 20 visits, B one of them too (another field) and an enterprise.
    for id in &ids {
        a.store.edit_visit(id, |v| v.notes = format!("张复查 {id}")).unwrap();
    }
    b.store.edit_visit(&ids[0], |v| v.management_system.emergency_plan = Some(true)).unwrap();
    b.store.edit_enterprise(&credit_code(3), |e| e.name = "李改名企业".into()).unwrap();
    let before = connections(&proxy);
    let back = a.sync();
    assert_eq!(back.progress.round_trips, 1, "one exchange: {back:?}");
    assert_eq!((back.changes_pushed, back.newly_held), (20, 0));
    assert_eq!(connections(&proxy) - before, 1, "one connection");
    // B pushes its two edits and gets A's twenty in one exchange.
    let before = connections(&proxy);
    let other = b.sync();
    assert_eq!((other.progress.round_trips, other.changes_pushed, other.changes_pulled), (1, 2, 20), "{other:?}");
    assert_eq!(connections(&proxy) - before, 1);
    // A has nothing to push: one pull brings B's edits.
    let last = a.sync();
    assert_eq!((last.progress.round_trips, last.changes_pulled), (1, 2), "{last:?}");
    for id in &ids {
        let (va, vb) = (a.store.get_visit(id).unwrap(), b.store.get_visit(id).unwrap());
        assert_eq!(va.record, vb.record, "{id} converges");
        assert_eq!(va.version, vb.version);
    }
    let v0: Visit = a.store.get_visit(&ids[0]).unwrap().record;
    assert_eq!((v0.notes.starts_with("张复查"), v0.management_system.emergency_plan), (true, Some(true)));
    assert_eq!(a.store.get_enterprise(&credit_code(3)).unwrap().record.name, "李改名企业");

    // Every step of a sync on the one kept-alive connection: the exchange, then a photo's
    // upload status and its chunk.
    a.store.edit_visit(&ids[1], |v| v.notes = "附照片".into()).unwrap();
    let meta =
        NewAttachment { kind: Some(AttachmentKind::Photo), media_type: "image/jpeg".into(), ..Default::default() };
    a.store.add_attachment(&ids[1], &vec![7u8; 5_000], meta).unwrap();
    let before = connections(&proxy);
    let with_photo = a.sync();
    assert_eq!(with_photo.attachments_uploaded, 1, "{with_photo:?}");
    assert!(with_photo.progress.round_trips >= 3, "{with_photo:?}");
    assert_eq!(connections(&proxy) - before, 1, "every request of the sync on one connection");
}

/// A county's list entered on one phone: more batches than one push holds, enterprises
/// registered between runs of visits that need them, and visits edited again after the
/// others were queued. The batches go two at a time when they are independent: every change
/// is acknowledged, nothing is held (a visit that reached the server before its enterprise
/// would be refused `unknown_enterprise`, a change before its dependencies
/// `missing_dependencies`), and another phone's first sync gets the same records.
#[test]
fn pipelined_pushes_of_a_big_registration_are_all_acknowledged_and_converge() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let proxy = Proxy::start(&server.addr, Faults::default(), None);
    let mut a = Phone::new(&proxy.url());
    a.config.push_batch_changes = 150;
    a.login("zhang", PASSWORD);
    let mut ids = Vec::new();
    for block in 0..3 {
        for i in 0..30 {
            a.store.create_enterprise(enterprise(block * 100 + i, COUNTY)).unwrap();
        }
        for n in 0..300 {
            let mut v = visit(block * 100 + n % 30);
            v.notes = format!("登记 {block}-{n}");
            ids.push(a.store.create_visit(v).unwrap());
        }
    }
    // Edits queued after everything else, of visits pushed in the first batches.
    for id in ids.iter().take(40) {
        a.store.edit_visit(id, |v| v.notes.push_str("（补充）")).unwrap();
    }
    let queued = a.store.outbox_len().unwrap() as u64;
    assert_eq!(queued, 2 * 990 + 40);
    let before = connections(&proxy);
    let report = a.sync();
    assert_eq!(report.changes_pushed, queued, "{report:?}");
    assert_eq!((report.newly_held, report.held_records), (0, 0), "{report:?}");
    assert!(a.store.held_records().unwrap().is_empty());
    assert_eq!(a.store.outbox_len().unwrap(), 0);
    assert!(report.progress.round_trips >= 14, "{} batches of at most 150 and a pull: {report:?}", queued / 150);
    assert!(connections(&proxy) - before >= 2, "batches were in flight together, on two connections");
    assert_eq!(report.documents_pulled, 0, "nothing echoed");
    let held: i64 = server.db().query_row("SELECT count(*) FROM refused_uploads", [], |r| r.get(0)).unwrap();
    assert_eq!(held, 0);
    let documents: i64 = server.db().query_row("SELECT count(*) FROM documents", [], |r| r.get(0)).unwrap();
    assert_eq!(documents, 990);

    let b = Phone::new(&server.url());
    b.login("li", PASSWORD);
    assert_eq!(b.sync().documents_pulled, 990);
    for id in ids.iter().step_by(37).chain(ids.iter().take(40)) {
        let (va, vb) = (a.store.get_visit(id).unwrap(), b.store.get_visit(id).unwrap());
        assert_eq!((va.record, va.version), (vb.record, vb.version), "{id}");
    }
    assert!(b.store.get_visit(&ids[0]).unwrap().record.notes.ends_with("（补充）"));
}
