//! Photos over a bad link: ten 2 MB photos of a visit upload through a proxy that cuts
//! connections; each cut resumes where the server's copy ends (the total uploaded stays
//! under 1.2 × the photos), every photo arrives byte-identical, and a second phone fetches
//! them lazily.

use std::sync::atomic::Ordering;

use ohassist_core::model::AttachmentKind;
use ohassist_core::store::{sha256_hex, NewAttachment};
use ohassist_core::sync::{fetch_attachment_blocking, CancelToken};
use ohassist_tests::proxy::{Faults, Proxy};
use ohassist_tests::*;
use rand::{RngCore, SeedableRng};

const COUNTY: &str = "350121";

#[test]
fn ten_photos_survive_cuts_without_starting_over_and_reach_a_second_phone_lazily() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let proxy = Proxy::start(&server.addr, Faults::default(), None);
    let a = Phone::new(&proxy.url());
    a.login("zhang", PASSWORD);
    a.store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    let visit_id = a.store.create_visit(visit(1)).unwrap();
    a.sync();

    // Ten photos of 2 MB of incompressible bytes.
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let photos: Vec<Vec<u8>> = (0..10)
        .map(|_| {
            let mut p = vec![0u8; 2 * 1024 * 1024];
            rng.fill_bytes(&mut p);
            p
        })
        .collect();
    let total: u64 = photos.iter().map(|p| p.len() as u64).sum();
    for (i, p) in photos.iter().enumerate() {
        let file = dir.path().join(format!("photo{i}.jpg"));
        std::fs::write(&file, p).unwrap();
        let meta = NewAttachment {
            kind: Some(AttachmentKind::Photo),
            media_type: "image/jpeg".into(),
            caption: format!("警示标识 {i}"),
            ..Default::default()
        };
        a.store.add_attachment_file(&visit_id, &file, meta).unwrap();
    }
    assert_eq!(a.store.pending_uploads().unwrap().len(), 10);

    let up_before = proxy.bytes_up();
    // Three cuts at known points (every 5 MiB sent), plus random ones on top.
    proxy.set_faults(Faults {
        cut_request: 0.2,
        max_offset: 6 * 1024 * 1024,
        seed: 11,
        max_cuts: 4,
        cut_every_up: 5 * 1024 * 1024,
        ..Faults::default()
    });
    let mut attempts = 0;
    let report = loop {
        attempts += 1;
        assert!(attempts <= 40, "no sync completed");
        if let Ok(r) = a.try_sync() {
            break r;
        }
    };
    let uploaded = proxy.bytes_up() - up_before;
    let cuts = proxy.stats.cuts.load(Ordering::SeqCst);
    eprintln!("uploaded {uploaded} B for {total} B of photos, {cuts} cuts, {attempts} sync attempts");
    assert!(cuts >= 3, "the proxy cut at least three times");
    assert!(uploaded as f64 <= 1.2 * total as f64, "uploaded {uploaded} B for {total} B: started over after a cut");
    assert!(a.store.pending_uploads().unwrap().is_empty());
    assert!(report.progress.attachment_bytes_up > 0 || attempts > 1);

    // The server holds every photo byte-identical.
    for p in &photos {
        let sha = sha256_hex(p);
        let stored = std::fs::read(dir.path().join("attachments").join(&sha[..2]).join(&sha)).unwrap();
        assert!(stored == *p, "photo {sha} differs on the server");
    }

    // A second phone sees the references at once and fetches the bytes when needed.
    let b = Phone::new(&server.url());
    b.login("li", PASSWORD);
    b.sync();
    let v = b.store.get_visit(&visit_id).unwrap().record;
    assert_eq!(v.attachments.len(), 10);
    let sha = sha256_hex(&photos[3]);
    assert_eq!(v.attachments[&sha].caption, "警示标识 3");
    assert!(!b.store.has_attachment(&sha).unwrap(), "not downloaded before a screen needs it");
    let bytes = fetch_attachment_blocking(&b.store, &b.config, &visit_id, &sha, &CancelToken::new()).unwrap();
    assert!(bytes == photos[3]);
    assert!(b.store.read_attachment(&sha).unwrap().unwrap() == photos[3], "kept, encrypted, for the next screen");
    assert!(!b.store.has_attachment(&sha256_hex(&photos[4])).unwrap(), "only what was asked for");

    // Once the server holds them and the visit drops one, the phone may free its bytes.
    a.store.remove_attachment(&visit_id, &sha).unwrap();
    a.store.collect_garbage().unwrap();
    assert!(!a.store.has_attachment(&sha).unwrap());
    assert!(a.store.has_attachment(&sha256_hex(&photos[0])).unwrap());
}
