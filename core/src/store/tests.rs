//! Store behaviour through its public API, on real SQLite files.

use std::collections::BTreeSet;

use serde_json::json;

use super::*;
use crate::model::*;

pub(crate) const CODE: &str = "91350100M000100Y43";

pub(crate) fn enterprise() -> Enterprise {
    let mut e = Enterprise {
        credit_code: CODE.into(),
        name: "闽侯县某石材有限公司".into(),
        county: County { code: "350121".into(), name: "闽侯县".into() },
        industry: Some(Industry::BuildingMaterials),
        size: Some(SizeClass::Small),
        ..Default::default()
    };
    e.add_year(2025);
    e
}

pub(crate) fn visit() -> Visit {
    Visit { enterprise_id: CODE.into(), visit_date: "2025-05-20".into(), ..Default::default() }
}

/// The key of every test store.
pub(crate) fn key() -> StoreKey {
    StoreKey::new([7u8; 32])
}

fn open(dir: &tempfile::TempDir, name: &str) -> Store {
    let s = Store::open(dir.path().join(name), &key()).unwrap();
    s.set_user(name).unwrap();
    s
}

/// Hands every change `from` has queued to `to`, as a server would.
fn send(from: &Store, to: &Store) {
    let out = from.outbox(usize::MAX).unwrap();
    for c in &out {
        to.apply_remote(c.kind, &c.doc_id, std::slice::from_ref(&c.bytes)).unwrap();
    }
}

#[test]
fn create_get_and_list_an_enterprise() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    let id = s.create_enterprise(Enterprise { credit_code: " 91350100m000100y43 ".into(), ..enterprise() }).unwrap();
    assert_eq!(id, CODE);
    let r = s.get_enterprise(&id).unwrap();
    assert_eq!(r.record, enterprise());
    assert!(r.pending_sync && !r.has_conflicts);
    let list = s.list_enterprises(&EnterpriseFilter { query: Some("石材".into()), ..Default::default() }).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].years, vec![2025]);
    assert!(s.list_enterprises(&EnterpriseFilter { year: Some(2024), ..Default::default() }).unwrap().is_empty());
    assert_eq!(
        s.list_enterprises(&EnterpriseFilter { query: Some("913501".into()), ..Default::default() }).unwrap().len(),
        1
    );
}

#[test]
fn registering_a_known_credit_code_offers_the_existing_record() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    s.create_enterprise(enterprise()).unwrap();
    let before = s.outbox_len().unwrap();
    match s.create_enterprise(Enterprise { name: "另一个名字".into(), ..enterprise() }) {
        Err(Error::AlreadyExists { id }) => assert_eq!(id, CODE),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(s.outbox_len().unwrap(), before, "nothing written");
    assert_eq!(s.find_enterprise("91350100m000100y43").unwrap().as_deref(), Some(CODE));
}

#[test]
fn invalid_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    let err = s.create_enterprise(Enterprise { credit_code: "91350100M000100Y44".into(), ..enterprise() }).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError { ref field, .. }) if field == "credit_code"), "{err}");
    assert!(s.list_enterprises(&EnterpriseFilter::default()).unwrap().is_empty());
    s.create_enterprise(enterprise()).unwrap();
    let id = s.create_visit(visit()).unwrap();
    let before = s.get_visit(&id).unwrap();
    let err = s
        .edit_visit(&id, |v| {
            v.notes = "ok".into();
            v.training.sessions.insert(
                new_item_id(),
                TrainingSession { audience: Some(TrainingAudience::Workers), attendees: -5, ..Default::default() },
            );
        })
        .unwrap_err();
    assert!(err.to_string().contains("attendees must not be negative"), "{err}");
    assert_eq!(s.get_visit(&id).unwrap(), before, "the valid part of the edit was not applied either");
    let err = s.edit_visit(&id, |v| v.enterprise_id = "91110000600037341L".into()).unwrap_err();
    assert!(matches!(err, Error::Invalid(ValidationError { reason: Reason::Immutable, .. })));
    assert!(matches!(
        s.create_visit(Visit { enterprise_id: "91110000600037341L".into(), ..visit() }),
        Err(Error::NotFound(_))
    ));
}

#[test]
fn visit_takes_its_county_from_the_enterprise_and_lists_by_county() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    s.create_enterprise(enterprise()).unwrap();
    let id = s.create_visit(visit()).unwrap();
    assert_eq!(s.get_visit(&id).unwrap().record.county_code, "350121");
    let list = s.list_visits(&VisitFilter { county_code: Some("350121".into()), ..Default::default() }).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].enterprise_name, "闽侯县某石材有限公司");
    assert!(list[0].pending_sync);
    assert!(s
        .list_visits(&VisitFilter { county_code: Some("350102".into()), ..Default::default() })
        .unwrap()
        .is_empty());
}

#[test]
fn deleting_a_visit_is_a_recoverable_tombstone() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    s.create_enterprise(enterprise()).unwrap();
    let id = s.create_visit(visit()).unwrap();
    s.delete_visit(&id).unwrap();
    assert!(s.list_visits(&VisitFilter::default()).unwrap().is_empty());
    let all = s.list_visits(&VisitFilter { include_deleted: true, ..Default::default() }).unwrap();
    assert!(all[0].deleted);
    s.restore_visit(&id).unwrap();
    assert_eq!(s.list_visits(&VisitFilter::default()).unwrap().len(), 1);
}

#[test]
fn outbox_is_drained_by_acknowledgement_only() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    s.create_enterprise(enterprise()).unwrap();
    let out = s.outbox(100).unwrap();
    assert_eq!(out.len(), 2, "genesis and the first edit");
    s.acknowledge(&[out[0].hash.clone()]).unwrap();
    assert_eq!(s.outbox_len().unwrap(), 1);
    assert!(s.get_enterprise(CODE).unwrap().pending_sync);
    s.acknowledge(&[out[1].hash.clone(), "unknown".into()]).unwrap();
    assert!(!s.get_enterprise(CODE).unwrap().pending_sync);
}

#[test]
fn two_offline_registrations_of_one_enterprise_become_one_record() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir, "a");
    let b = open(&dir, "b");
    let mut ea = enterprise();
    ea.contact.person = "张三".into();
    ea.add_year(2024);
    a.create_enterprise(ea).unwrap();
    let mut eb = enterprise();
    eb.address = "闽侯县上街镇".into();
    eb.add_year(2026);
    eb.name = "闽侯某石材厂".into();
    b.create_enterprise(eb).unwrap();
    send(&a, &b);
    send(&b, &a);
    let ra = a.get_enterprise(CODE).unwrap();
    let rb = b.get_enterprise(CODE).unwrap();
    assert_eq!(ra.record, rb.record);
    assert_eq!(ra.version, rb.version);
    let e = ra.record;
    assert_eq!(e.contact.person, "张三", "a's nested field survives");
    assert_eq!(e.address, "闽侯县上街镇", "b's field survives");
    assert_eq!(e.years(), vec![2024, 2025, 2026], "both keyed additions survive");
    let conflicts = a.conflicts(CODE).unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    assert_eq!(conflicts[0].path_string(), "name");
    let names: Vec<_> = conflicts[0].values.iter().map(|v| v.value.as_str().unwrap().to_string()).collect();
    assert!(names.contains(&"闽侯县某石材有限公司".to_string()) && names.contains(&"闽侯某石材厂".to_string()));
    assert_eq!(a.list_enterprises(&EnterpriseFilter::default()).unwrap().len(), 1);
}

#[test]
fn concurrent_edits_merge_field_by_field_and_same_field_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir, "a");
    let b = open(&dir, "b");
    a.create_enterprise(enterprise()).unwrap();
    let id = a.create_visit(visit()).unwrap();
    send(&a, &b);
    let (pa, pb) = (new_item_id(), new_item_id());
    a.edit_visit(&id, |v| {
        v.notes = "甲的备注".into();
        v.management_system.emergency_plan = Some(true);
        v.hazard_identification
            .posts
            .insert(pa.clone(), Post { name: "破碎工".into(), exposed_workers: 4, ..Default::default() });
    })
    .unwrap();
    b.edit_visit(&id, |v| {
        v.notes = "乙的备注".into();
        v.management_system.system_established = Some(false);
        v.hazard_identification
            .posts
            .insert(pb.clone(), Post { name: "切割工".into(), exposed_workers: 2, ..Default::default() });
    })
    .unwrap();
    send(&a, &b);
    send(&b, &a);
    let va = a.get_visit(&id).unwrap();
    let vb = b.get_visit(&id).unwrap();
    assert_eq!(va.record, vb.record);
    assert!(va.has_conflicts && vb.has_conflicts);
    let v = &va.record;
    assert_eq!(v.management_system.emergency_plan, Some(true));
    assert_eq!(v.management_system.system_established, Some(false));
    assert_eq!(v.hazard_identification.posts.len(), 2, "both posts survive");
    let conflicts = b.conflicts(&id).unwrap();
    assert_eq!(conflicts.len(), 1);
    let c = &conflicts[0];
    assert_eq!(c.path, vec!["notes".to_string()]);
    assert_eq!(c.values[0].value, json!(v.notes), "the visible value is listed first");
    let authors: Vec<_> = c.values.iter().map(|x| x.author.clone().unwrap().user).collect();
    assert!(authors.contains(&"a".into()) && authors.contains(&"b".into()), "{authors:?}");
    assert!(c.values.iter().all(|x| x.time_ms > 0));
    assert_eq!(a.conflicted_records().unwrap(), vec![(RecordKind::Visit, id.clone())]);

    // An unrelated edit keeps the conflict: nothing is settled by accident.
    a.edit_visit(&id, |v| v.management_system.archive_five_boxes_one_bag = Some(true)).unwrap();
    assert_eq!(a.conflicts(&id).unwrap().len(), 1);

    // An explicit choice settles it, everywhere, once synced.
    a.resolve_conflict(&id, "notes", &json!("合并后的备注")).unwrap();
    assert!(a.conflicts(&id).unwrap().is_empty());
    send(&a, &b);
    assert!(b.conflicts(&id).unwrap().is_empty());
    assert_eq!(b.get_visit(&id).unwrap().record.notes, "合并后的备注");
    assert!(matches!(a.resolve_conflict(&id, "notes", &json!("x")), Err(Error::NoSuchConflict { .. })));
}

#[test]
fn an_edit_from_a_stale_screen_does_not_overwrite_what_arrived_meanwhile() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir, "a");
    let b = open(&dir, "b");
    a.create_enterprise(enterprise()).unwrap();
    let id = a.create_visit(visit()).unwrap();
    send(&a, &b);
    // a's screen loads the visit ...
    let screen = a.get_visit(&id).unwrap();
    // ... meanwhile b's edits arrive ...
    b.edit_visit(&id, |v| {
        v.management_system.emergency_plan = Some(true);
        v.notes = "乙".into();
    })
    .unwrap();
    send(&b, &a);
    // ... and a saves the whole record as the screen had it, plus its own edits.
    let mut edited = screen.record.clone();
    edited.chronic_screening = ChronicScreening { consent: true, screened: 12, ..Default::default() };
    edited.notes = "甲".into();
    let saved = a.update_visit(&id, &edited, &screen.version).unwrap();
    assert_eq!(saved.record.management_system.emergency_plan, Some(true), "b's field kept");
    assert_eq!(saved.record.chronic_screening.screened, 12, "a's field written");
    let conflicts = a.conflicts(&id).unwrap();
    assert_eq!(conflicts.len(), 1, "both changed notes: a conflict, not an overwrite");
    assert_eq!(conflicts[0].path_string(), "notes");
    send(&a, &b);
    assert_eq!(b.get_visit(&id).unwrap().record, a.get_visit(&id).unwrap().record);
}

#[test]
fn concurrent_delete_and_edit_keep_the_edit() {
    let dir = tempfile::tempdir().unwrap();
    let a = open(&dir, "a");
    let b = open(&dir, "b");
    a.create_enterprise(enterprise()).unwrap();
    let id = a.create_visit(visit()).unwrap();
    send(&a, &b);
    a.delete_visit(&id).unwrap();
    b.edit_visit(&id, |v| v.notes = "删除时仍在编辑".into()).unwrap();
    send(&a, &b);
    send(&b, &a);
    let v = b.get_visit(&id).unwrap().record;
    assert!(v.deleted);
    assert_eq!(v.notes, "删除时仍在编辑");
}

#[test]
fn status_is_computed_from_the_stored_visits() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    s.create_enterprise(enterprise()).unwrap();
    let mut v = visit();
    v.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
    v.training.sessions.insert(
        new_item_id(),
        TrainingSession {
            audience: Some(TrainingAudience::Principal),
            attendees: 1,
            organised_by_authority: true,
            ..Default::default()
        },
    );
    s.create_visit(v).unwrap();
    let st = s.table1_status(CODE, 2025).unwrap();
    assert!(st.declared && st.principal_trained && !st.workers_trained);
    assert_eq!(s.table1_status(CODE, 2024).unwrap(), status::Table1Status::default());
}

#[test]
fn history_names_who_changed_what() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "inspector-7");
    s.create_enterprise(enterprise()).unwrap();
    s.edit_enterprise(CODE, |e| e.address = "新地址".into()).unwrap();
    let h = s.history(CODE).unwrap();
    assert_eq!(h.len(), 2);
    assert!(h.iter().all(|e| e.author.user == "inspector-7" && e.author.device == s.device_id()));
}

#[test]
fn every_open_uses_a_new_actor_so_a_restored_backup_never_reuses_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let backup = dir.path().join("backup.db");
    let server = open(&dir, "server");
    {
        let s = Store::open(&path, &key()).unwrap();
        s.create_enterprise(enterprise()).unwrap();
        send(&s, &server);
    }
    std::fs::copy(&path, &backup).unwrap();
    {
        let s = Store::open(&path, &key()).unwrap();
        s.edit_enterprise(CODE, |e| e.address = "备份之后".into()).unwrap();
        send(&s, &server);
    }
    // Restore the backup: the edit after it is lost locally but the server has it.
    std::fs::copy(&backup, &path).unwrap();
    let _ = std::fs::remove_file(dir.path().join("phone.db-wal"));
    let s = Store::open(&path, &key()).unwrap();
    s.edit_enterprise(CODE, |e| e.contact.phone = "13800000000".into()).unwrap();
    // Had the actor been reused, this would be a duplicate sequence number.
    send(&s, &server);
    let e = server.get_enterprise(CODE).unwrap().record;
    assert_eq!((e.address.as_str(), e.contact.phone.as_str()), ("备份之后", "13800000000"));
}

#[test]
fn corrupt_document_bytes_give_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    s.create_enterprise(enterprise()).unwrap();
    s.conn().execute("UPDATE documents SET bytes = x'00112233' WHERE id = ?1", [CODE]).unwrap();
    assert!(matches!(s.get_enterprise(CODE), Err(Error::CorruptDocument { .. })));
    assert!(matches!(s.check(), Err(Error::CorruptDocument { .. })));
    // Remote garbage is refused whole.
    let err = s.apply_remote(RecordKind::Visit, "v1", &[vec![1, 2, 3]]).unwrap_err();
    assert!(matches!(err, Error::CorruptDocument { .. }));
    assert!(s.list_visits(&VisitFilter { include_deleted: true, ..Default::default() }).unwrap().is_empty());
}

#[test]
fn a_remote_change_that_makes_an_invalid_record_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    // A change that writes a string where the record has a number.
    let mut doc = Document::genesis(RecordKind::Visit, "v1");
    let genesis = doc.changes_since(&[]);
    let author = Author { user: "x".into(), device: "y".into() };
    let change = doc
        .write_diff(&ActorId::random(), &author, &json!({}), &json!({"chronic_screening": {"screened": "many"}}))
        .unwrap()
        .unwrap();
    let bytes: Vec<Vec<u8>> = genesis.into_iter().chain([change]).map(|c| c.raw_bytes().to_vec()).collect();
    assert!(s.apply_remote(RecordKind::Visit, "v1", &bytes).is_err());
    assert!(s.all_heads().unwrap().is_empty(), "nothing stored");
}

#[test]
fn a_newer_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    drop(Store::open(&path, &key()).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", hex::encode(key().as_bytes()))).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    assert!(matches!(Store::open(&path, &key()), Err(Error::DatabaseTooNew { found: 99, .. })));
}

#[test]
fn a_bad_record_of_a_page_is_quarantined_and_the_rest_applies() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    let mut good = Document::genesis(RecordKind::Visit, "good");
    let author = Author { user: "x".into(), device: "y".into() };
    let genesis = good.changes_since(&[]);
    let change = good
        .write_diff(&ActorId::random(), &author, &json!({}), &json!({"visit_date": "2025-03-01"}))
        .unwrap()
        .unwrap();
    let good_bytes: Vec<Vec<u8>> = genesis.into_iter().chain([change]).map(|c| c.raw_bytes().to_vec()).collect();
    let page = RemotePage {
        documents: vec![(RecordKind::Visit, "bad-doc".into(), vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3])],
        changes: vec![
            (RecordKind::Visit, "bad".into(), vec![vec![1, 2, 3]]),
            (RecordKind::Visit, "good".into(), good_bytes),
        ],
        meta: vec![("sync_cursor".into(), Some("42".into()))],
    };
    s.apply_remote_page(&page).unwrap();
    assert_eq!(s.get_visit("good").unwrap().record.visit_date, "2025-03-01");
    assert_eq!(s.meta("sync_cursor").unwrap().as_deref(), Some("42"), "the cursor moves on");
    let q = s.quarantined().unwrap();
    let ids: Vec<&str> = q.iter().map(|q| q.doc_id.as_str()).collect();
    assert_eq!(ids, ["bad-doc", "bad"]);
    assert!(q.iter().all(|q| !q.reason.is_empty()));
    assert!(s.get_visit("bad").is_err(), "nothing of it stored");
    assert_eq!(s.retry_quarantine().unwrap(), 2, "still bad, still kept");
    assert_eq!(s.quarantined().unwrap()[0].attempts, 2);
}

/// A first-sync page large enough to be prepared on several threads (store/bulk.rs), with
/// hostile documents among the good ones: bytes that are not a document, a document sent under
/// another record's id, and one of the other kind. Each is quarantined with its reason,
/// nothing of it is stored, and every good one and the cursor apply.
#[test]
fn hostile_documents_of_a_page_prepared_in_bulk_are_quarantined_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    let author = Author { user: "x".into(), device: "y".into() };
    let saved = |kind: RecordKind, id: &str| {
        let mut d = Document::genesis(kind, id);
        d.write_diff(&ActorId::random(), &author, &json!({}), &json!({"notes": format!("记录 {id}")})).unwrap();
        d.save()
    };
    let mut documents: Vec<(RecordKind, String, Vec<u8>)> =
        (0..200).map(|i| (RecordKind::Visit, format!("v{i}"), saved(RecordKind::Visit, &format!("v{i}")))).collect();
    documents[10] = (RecordKind::Visit, "garbage".into(), vec![0x85, 0x6f, 0x4a, 0x83, 0xff, 0, 1, 2]);
    documents[77] = (RecordKind::Visit, "impostor".into(), saved(RecordKind::Visit, "v5"));
    documents[150] = (RecordKind::Visit, "wrong-kind".into(), saved(RecordKind::Enterprise, "wrong-kind"));
    let page = RemotePage { documents, changes: vec![], meta: vec![("sync_cursor".into(), Some("9".into()))] };
    s.apply_remote_page(&page).unwrap();
    let q = s.quarantined().unwrap();
    let ids: BTreeSet<&str> = q.iter().map(|q| q.doc_id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["garbage", "impostor", "wrong-kind"]));
    assert!(q.iter().all(|q| !q.reason.is_empty()), "{q:?}");
    for bad in ["garbage", "impostor", "wrong-kind"] {
        assert!(s.get_visit(bad).is_err(), "{bad}: nothing of it stored");
    }
    assert_eq!(s.list_visits(&VisitFilter::default()).unwrap().len(), 197, "every good one applied");
    assert_eq!(s.get_visit("v199").unwrap().record.notes, "记录 v199");
    assert_eq!(s.meta("sync_cursor").unwrap().as_deref(), Some("9"), "the cursor moves on");
}

/// Whole documents prepared in bulk are flagged conflicted exactly when they hold concurrent
/// values that differ: the limits' walk notes candidate keys, and only those documents are
/// walked for conflicts (two devices that wrote the same value do not conflict).
#[test]
fn documents_prepared_in_bulk_are_conflicted_exactly_when_their_values_differ() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    let (one, two) =
        (Author { user: "a".into(), device: "pa".into() }, Author { user: "b".into(), device: "pb".into() });
    // Two devices each write `notes` from the genesis, without seeing the other.
    let forked = |id: &str, first: &str, second: &str| {
        let mut a = Document::genesis(RecordKind::Visit, id);
        let mut b = Document::genesis(RecordKind::Visit, id);
        a.write_diff(&ActorId::random(), &one, &json!({}), &json!({ "notes": first })).unwrap();
        b.write_diff(&ActorId::random(), &two, &json!({}), &json!({ "notes": second })).unwrap();
        a.merge_saved(&b.save()).unwrap();
        a.save()
    };
    let documents: Vec<(RecordKind, String, Vec<u8>)> = (0..100)
        .map(|i| {
            let id = format!("v{i:03}");
            let bytes = match i {
                7 | 63 => forked(&id, "甲的备注", "乙的备注"),
                20 => forked(&id, "同样的备注", "同样的备注"),
                _ => {
                    let mut d = Document::genesis(RecordKind::Visit, &id);
                    d.write_diff(&ActorId::random(), &one, &json!({}), &json!({ "notes": "备注" })).unwrap();
                    d.save()
                }
            };
            (RecordKind::Visit, id, bytes)
        })
        .collect();
    s.apply_remote_page(&RemotePage { documents, ..Default::default() }).unwrap();
    assert!(s.quarantined().unwrap().is_empty());
    let mut conflicted = s.conflicted_records().unwrap();
    conflicted.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(conflicted, vec![(RecordKind::Visit, "v007".to_string()), (RecordKind::Visit, "v063".to_string())]);
    assert!(s.get_visit("v063").unwrap().has_conflicts && !s.get_visit("v020").unwrap().has_conflicts);
}

#[test]
fn held_records_wait_until_a_retry_is_due() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    let id = s.create_enterprise(enterprise()).unwrap();
    let queued = s.outbox(100).unwrap().len();
    assert!(queued >= 1);
    s.hold(&[(id.clone(), RecordKind::Enterprise, "out_of_scope".into(), "不属于".into(), "outside".into())]).unwrap();
    assert!(s.outbox(100).unwrap().is_empty(), "held: not pushed again");
    assert_eq!(s.outbox_len().unwrap(), queued, "but still pending");
    let held = s.held_records().unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].code, "out_of_scope");
    assert_eq!(held[0].pending_changes, queued as u64);
    assert!(!held[0].advice_zh.is_empty() && !held[0].advice_en.is_empty());
    // An edit makes the retry due.
    s.edit_enterprise(&id, |e| e.address = "新地址".into()).unwrap();
    assert_eq!(s.outbox(100).unwrap().len(), queued + 1);
    s.hold(&[(id.clone(), RecordKind::Enterprise, "out_of_scope".into(), "不属于".into(), "outside".into())]).unwrap();
    assert!(s.outbox(100).unwrap().is_empty());
    s.retry_held(true).unwrap();
    assert_eq!(s.outbox(100).unwrap().len(), queued + 1, "a new login retries every held record");
    s.release(std::slice::from_ref(&id)).unwrap();
    assert!(s.held_records().unwrap().is_empty());
    assert_eq!(s.get_enterprise(&id).unwrap().record.address, "新地址", "readable and editable all along");
}

#[test]
fn a_held_record_is_discarded_only_when_confirmed_and_its_export_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir, "a");
    let e = s.create_enterprise(enterprise()).unwrap();
    let v = s.create_visit(visit()).unwrap();
    let hold = |id: &str, kind| {
        s.hold(&[(id.to_string(), kind, "out_of_scope".into(), "不属于".into(), "outside".into())]).unwrap();
    };
    // Not held: nothing to discard.
    assert!(matches!(s.discard_confirmation(&v), Err(Error::NotDiscardable { .. })));
    hold(&v, RecordKind::Visit);
    hold(&e, RecordKind::Enterprise);
    let ok = s.discard_confirmation(&v).unwrap();
    // No confirmation, or one shown before an edit: refused, nothing changed.
    assert!(matches!(s.discard_held(&v, ""), Err(Error::NotDiscardable { .. })));
    s.edit_visit(&v, |x| x.notes = "后来补记".into()).unwrap();
    assert!(matches!(s.discard_held(&v, &ok), Err(Error::NotDiscardable { .. })), "stale confirmation");
    assert_eq!(s.get_visit(&v).unwrap().record.notes, "后来补记");
    // An enterprise whose visit is still here is not discarded.
    let ce = s.discard_confirmation(&e).unwrap();
    assert!(matches!(s.discard_held(&e, &ce), Err(Error::NotDiscardable { reason, .. }) if reason.contains("visits")));
    let pending_before = s.outbox_len().unwrap();
    let exported = s.discard_held(&v, &s.discard_confirmation(&v).unwrap()).unwrap();
    assert!(matches!(s.get_visit(&v), Err(Error::NotFound(_))));
    assert!(s.outbox_len().unwrap() < pending_before, "its changes left the outbox");
    assert!(s.held_records().unwrap().iter().all(|h| h.doc_id != v));
    // The export holds the record whole: its JSON and a document that loads with the edit.
    assert_eq!(exported.code, "out_of_scope");
    assert!(exported.json.contains("后来补记"));
    let again = Document::load(RecordKind::Visit, &v, &exported.bytes).unwrap();
    assert_eq!(again.read::<Visit>().unwrap().notes, "后来补记");
    assert_eq!(s.discarded_records().unwrap(), vec![exported]);
    // Now the enterprise may go too.
    s.discard_held(&e, &s.discard_confirmation(&e).unwrap()).unwrap();
    assert_eq!(s.discarded_records().unwrap().len(), 2);
    s.check().unwrap();
}

#[test]
fn an_attachment_range_beyond_the_file_is_refused_encrypted_or_not() {
    let dir = tempfile::tempdir().unwrap();
    let plain = Store::open_unencrypted(dir.path().join("plain.db")).unwrap();
    for s in [open(&dir, "a"), plain] {
        s.create_enterprise(enterprise()).unwrap();
        let v = s.create_visit(visit()).unwrap();
        let bytes = vec![7u8; 1000];
        let meta = NewAttachment {
            kind: Some(crate::model::AttachmentKind::Photo),
            media_type: "image/jpeg".into(),
            ..Default::default()
        };
        s.add_attachment(&v, &bytes, meta).unwrap();
        let sha = sha256_hex(&bytes);
        assert_eq!(s.read_attachment_range(&sha, 10, 5).unwrap(), vec![7u8; 5]);
        for (offset, len) in [(0, u64::MAX), (u64::MAX, 2), (999, 2)] {
            let err = s.read_attachment_range(&sha, offset, len).unwrap_err();
            assert!(matches!(err, Error::Invalid(_) | Error::CorruptDocument { .. }), "{offset}+{len}: {err:?}");
        }
    }
}
