//! Property: garbage collection never deletes the bytes of an attachment that some visit
//! still references, nor bytes the server does not hold yet; it does delete what is both
//! unreferenced and on the server.

use ohassist_core::model::{AttachmentKind, County, Enterprise, Industry, Visit};
use ohassist_core::store::{sha256_hex, NewAttachment, Store, StoreKey};
use proptest::prelude::*;

const CODE: &str = "91350100M000100Y43";

#[derive(Debug, Clone)]
enum Op {
    Add { visit: usize, blob: usize },
    Remove { visit: usize, blob: usize },
    Uploaded { blob: usize },
    Gc,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0usize..3, 0usize..4).prop_map(|(visit, blob)| Op::Add { visit, blob }),
        (0usize..3, 0usize..4).prop_map(|(visit, blob)| Op::Remove { visit, blob }),
        (0usize..4).prop_map(|blob| Op::Uploaded { blob }),
        Just(Op::Gc),
    ]
}

fn blob(i: usize) -> Vec<u8> {
    format!("photo {i} ").repeat(100 + i).into_bytes()
}

fn setup() -> (tempfile::TempDir, Store, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("s.db"), &StoreKey::new([3; 32])).unwrap();
    let mut e = Enterprise {
        credit_code: CODE.into(),
        name: "企业".into(),
        county: County { code: "350121".into(), name: "闽侯县".into() },
        industry: Some(Industry::Mining),
        ..Default::default()
    };
    e.add_year(2025);
    store.create_enterprise(e).unwrap();
    let visits = (0..3)
        .map(|_| {
            store
                .create_visit(Visit {
                    enterprise_id: CODE.into(),
                    visit_date: "2025-05-01".into(),
                    ..Default::default()
                })
                .unwrap()
        })
        .collect();
    (dir, store, visits)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn gc_keeps_what_is_referenced_or_not_yet_uploaded(ops in proptest::collection::vec(op(), 1..25)) {
        let (_dir, store, visits) = setup();
        let hashes: Vec<String> = (0..4).map(|i| sha256_hex(&blob(i))).collect();
        let meta = || NewAttachment { kind: Some(AttachmentKind::Photo), media_type: "image/jpeg".into(), ..Default::default() };
        for op in ops {
            match op {
                Op::Add { visit, blob: b } => drop(store.add_attachment(&visits[visit], &blob(b), meta()).unwrap()),
                Op::Remove { visit, blob: b } => drop(store.remove_attachment(&visits[visit], &hashes[b])),
                Op::Uploaded { blob: b } => store.mark_uploaded(&hashes[b]).unwrap(),
                Op::Gc => {
                    let before: Vec<Option<String>> = hashes.iter().map(|h| store.attachment_state(h).unwrap()).collect();
                    store.collect_garbage().unwrap();
                    let referenced = store.referenced_attachments().unwrap();
                    for (i, h) in hashes.iter().enumerate() {
                        let kept = store.has_attachment(h).unwrap();
                        if referenced.contains(h) && before[i].is_some() {
                            prop_assert!(kept, "referenced attachment {i} was deleted");
                        }
                        if before[i].as_deref() == Some("local") {
                            prop_assert!(kept, "attachment {i} not yet on the server was deleted");
                        }
                        if before[i].as_deref() == Some("uploaded") && !referenced.contains(h) {
                            prop_assert!(!kept, "unreferenced uploaded attachment {i} was kept");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_same_file_twice_is_stored_once_and_removal_is_a_tombstone() {
    let (_dir, store, visits) = setup();
    let meta =
        NewAttachment { kind: Some(AttachmentKind::Photo), media_type: "image/jpeg".into(), ..Default::default() };
    store.add_attachment(&visits[0], &blob(1), meta.clone()).unwrap();
    let v = store.add_attachment(&visits[0], &blob(1), meta.clone()).unwrap();
    assert_eq!(v.record.attachments.len(), 1);
    store.add_attachment(&visits[1], &blob(1), meta).unwrap();
    let files = walk(&store.attachments_dir());
    assert_eq!(files, 1, "one file for one content");
    let sha = sha256_hex(&blob(1));
    let v = store.remove_attachment(&visits[0], &sha).unwrap();
    assert!(v.record.attachments[&sha].deleted, "kept as a tombstone");
    let pending = store.pending_uploads().unwrap();
    assert_eq!(pending.len(), 1, "still referenced by the other visit");
    assert_eq!(pending[0].visit_id, visits[1]);
    store.remove_attachment(&visits[1], &sha).unwrap();
    assert!(store.pending_uploads().unwrap().is_empty(), "no visit references it any more");
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).map(|p| if p.is_dir() { walk(&p) } else { 1 }).sum()
}

#[test]
fn signing_attaches_the_image_and_records_the_version_seen() {
    let (_dir, store, visits) = setup();
    let image = b"\x89PNG signature strokes".to_vec();
    let signed = store.sign_visit(&visits[0], "王厂长", &image, "image/png", "2025-05-01T10:00:00+08:00").unwrap();
    let sig = signed.record.signature.clone().unwrap();
    assert_eq!(sig.signer_name, "王厂长");
    assert_eq!(sig.image_sha256, sha256_hex(&image));
    assert_eq!(signed.record.attachments[&sig.image_sha256].kind, Some(AttachmentKind::Signature));
    assert!(!sig.signed_version.is_empty());
    assert_ne!(sig.signed_version, signed.version, "the signature itself comes after the version signed");
    // An empty signer is refused, and nothing of it is written.
    let err = store.sign_visit(&visits[1], " ", &image, "image/png", "").unwrap_err();
    assert!(err.to_string().contains("signature.signer_name"), "{err}");
    let untouched = store.get_visit(&visits[1]).unwrap().record;
    assert!(untouched.signature.is_none() && untouched.attachments.is_empty());
    // So is a signature without its time.
    let err = store.sign_visit(&visits[1], "王厂长", &image, "image/png", " ").unwrap_err();
    assert!(err.to_string().contains("signature.signed_at"), "{err}");
    assert!(store.get_visit(&visits[1]).unwrap().record.attachments.is_empty());
}
