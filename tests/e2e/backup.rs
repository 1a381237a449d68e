//! Backups of a running county (issue 14, deliverable 5): `ohassist backup` while 20 phones
//! push, then `ohassist restore` into a fresh directory and a server on it at the same
//! address. Every change a phone was told acknowledged before the backup's point is there,
//! the database passes `integrity_check`, the attachments verify; a damaged backup is refused
//! with a clear error; and phones that synced after the backup's point (their cursors are
//! ahead of the restored feed) push again what the server lost and converge, nothing lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ohassist_tests::backup::*;
use ohassist_tests::*;

const COUNTY: &str = "350121";
const PHONES: usize = 20;
const USERS: usize = 4;

/// `ohassist <args>` that must fail: its standard error.
fn cli_fails(data: &Path, args: &[&str]) -> String {
    let out = Command::new(server_binary())
        .arg("--data")
        .arg(data)
        .args(args)
        .env("OHASSIST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "ohassist {args:?} should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8(out.stderr).unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), dst).unwrap();
        }
    }
}

fn visit_ids(conn: &ohassist_server::sql::Connection) -> BTreeSet<String> {
    let mut stmt = conn.prepare("SELECT id FROM documents WHERE kind = 'visit'").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
}

/// The hashes of the feed's changes at positions up to `upto`, in feed order.
fn feed(conn: &ohassist_server::sql::Connection, upto: i64) -> Vec<String> {
    let mut stmt = conn.prepare("SELECT hash FROM changes WHERE seq <= ?1 ORDER BY seq").unwrap();
    stmt.query_map([upto], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
}

/// Pushes a phone's outbox by hand and drops what was acknowledged, without the pull that a
/// sync does next: a sync cut between its push and its pull.
fn push_only(phone: &Phone, url: &str) {
    use ohassist_core::sync::wire;
    let queued = phone.store.outbox(usize::MAX).unwrap();
    let changes = queued
        .iter()
        .map(|c| wire::WireChange { doc_id: c.doc_id.clone(), kind: c.kind, bytes: c.bytes.clone() })
        .collect();
    let body = wire::encode(&wire::PushRequest { protocol: wire::PROTOCOL_VERSION, changes, authors: Vec::new() });
    let token = phone.store.meta("token").unwrap().unwrap();
    let answer = post(&format!("{url}/api/v1/sync/push"), Some(&token), SYNC_HEADERS, body);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let pushed: wire::PushResponse = wire::decode(&answer.body, 64 * 1024 * 1024).unwrap();
    assert_eq!(pushed.acknowledged.len(), queued.len());
    phone.store.acknowledge(&pushed.acknowledged).unwrap();
}

#[test]
fn a_backup_taken_while_twenty_phones_push_restores_whole_and_phones_converge_after() {
    let t0 = Instant::now();
    let root = tempfile::tempdir().unwrap();
    let live_dir = root.path().join("live");
    let mut server = Server::start(&live_dir, None);
    let addr = server.addr.clone();
    for u in 0..USERS {
        server.add_user(&format!("inspector{u}"), "inspector", COUNTY, PASSWORD);
    }
    server.add_user("boss", "supervisor", "350100", PASSWORD);
    let phones: Vec<Arc<Phone>> = (0..PHONES)
        .map(|i| {
            let p = Phone::new(&server.url());
            p.login(&format!("inspector{}", i % USERS), PASSWORD);
            p.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
            Arc::new(p)
        })
        .collect();
    for p in &phones {
        p.sync();
    }
    // A photo uploaded well before the backup.
    let early_visit = phones[0].store.create_visit(visit(0)).unwrap();
    let early_photo = attachment(&phones[0], &early_visit, b"\xff\xd8 photo taken before the backup");
    phones[0].sync();

    // A phone that syncs now and next after the backup's point.
    let cut = Phone::new(&server.url());
    cut.login("inspector0", PASSWORD);
    cut.sync();

    let backup_dir = root.path().join("backup");
    let run = backup_while_pushing(&phones, &live_dir, &backup_dir, Duration::from_millis(1500));
    // After the backup's point: a photo and a visit the restored server will not have.
    let late_visit = phones[1].store.create_visit(visit(1)).unwrap();
    let late_photo = attachment(&phones[1], &late_visit, b"\xff\xd8 photo taken after the backup");
    phones[1].sync();
    assert_eq!(phones[1].store.attachment_state(&late_photo).unwrap().as_deref(), Some("uploaded"));
    // A phone whose last sync was cut after its push: its cursor is from before the backup.
    let cut_visit = cut.store.create_visit(visit(0)).unwrap();
    push_only(&cut, &server.url());
    let live_visits = visit_ids(&server.db());
    server.terminate();

    let Run { manifest, started, finished, acked, .. } = &run;
    let feed_seq = manifest["feed_seq"].as_u64().unwrap();
    assert!(!root.path().join(".backup.partial").exists(), "nothing left beside the backup");
    let before: Vec<&Acked> = acked.iter().filter(|a| a.at < *started).collect();
    let after: Vec<&Acked> = acked.iter().filter(|a| a.sent > *finished).collect();
    assert!(before.len() >= PHONES && !after.is_empty(), "{} before, {} after the backup", before.len(), after.len());
    let (during, others) = run.latency();
    eprintln!(
        "backup: snapshot {:?}; {} syncs during it, slowest {:?}; {} others, slowest {:?}; {}",
        finished.duration_since(*started).unwrap_or_default(),
        during.len(),
        during.last().copied().unwrap_or_default(),
        others.len(),
        others.last().copied().unwrap_or_default(),
        manifest["counts"]
    );
    let slowest = during.last().copied().unwrap_or_default();
    assert!(slowest < Duration::from_secs(10), "a push waited {slowest:?} on the backup");

    // Damaged backups are refused, each with what is wrong, Chinese first.
    let scratch = root.path().join("scratch");
    let damaged = |name: &str, damage: &dyn Fn(&Path)| -> String {
        let dir = root.path().join(name);
        copy_dir(&backup_dir, &dir);
        damage(&dir);
        let err = cli_fails(&scratch, &["restore", "--from", dir.to_str().unwrap()]);
        assert!(!scratch.join("ohassist.db").exists(), "{name}: nothing restored");
        err
    };
    let photo_path = format!("attachments/{}/{early_photo}", &early_photo[..2]);
    let err = damaged("flipped", &|d| {
        let p = d.join(&photo_path);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[3] ^= 0x01;
        std::fs::write(&p, bytes).unwrap();
    });
    assert!(err.contains(&early_photo) && err.contains("哈希") && err.contains("does not hash"), "{err}");
    let err = damaged("truncated", &|d| {
        let p = d.join("ohassist.db");
        let len = std::fs::metadata(&p).unwrap().len();
        std::fs::File::options().write(true).open(&p).unwrap().set_len(len / 2).unwrap();
    });
    assert!(err.contains("数据库文件损坏") && err.contains("database file is damaged"), "{err}");
    let err = damaged("edited", &|d| {
        let p = d.join("manifest.json");
        let text = std::fs::read_to_string(&p).unwrap();
        let edited = text.replace(&format!("\"feed_seq\": {feed_seq}"), &format!("\"feed_seq\": {}", feed_seq + 1));
        assert_ne!(text, edited);
        std::fs::write(&p, edited).unwrap();
    });
    assert!(err.contains("被改动过") && err.contains("was edited"), "{err}");
    let err = damaged("interrupted", &|d| std::fs::remove_file(d.join("manifest.json")).unwrap());
    assert!(err.contains("不是完整的备份") && err.contains("not a complete backup"), "{err}");
    // A live data directory is not overwritten unless told.
    let err = cli_fails(&live_dir, &["restore", "--from", backup_dir.to_str().unwrap()]);
    assert!(err.contains("--force") && err.contains("already holds data"), "{err}");

    // Restore into a fresh directory and serve it at the same address.
    let restored_dir = root.path().join("restored");
    let out = cli(&restored_dir, &["restore", "--from", backup_dir.to_str().unwrap()], "");
    assert!(out.contains("恢复完成 / restored"), "{out}");
    let check = cli(&restored_dir, &["attachments", "check"], "");
    assert!(check.contains("0 missing, 0 corrupt"), "{check}");
    let restored = Server::start(&restored_dir, Some(&addr));
    {
        let db = restored.db();
        let ok: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(ok, "ok");
        let held = visit_ids(&db);
        for a in &before {
            assert!(held.contains(&a.id), "visit {} acknowledged before the backup is restored", a.id);
        }
        for a in &after {
            assert!(!held.contains(&a.id), "visit {} acknowledged after the backup's point is not", a.id);
        }
        // The restored feed is the live feed up to the backup's point, change for change, in
        // its order, at positions past every one the live server gave.
        let live =
            ohassist_server::sql::Connection::from(rusqlite::Connection::open(live_dir.join("ohassist.db")).unwrap());
        assert_eq!(feed(&db, i64::MAX), feed(&live, feed_seq as i64));
        let live_end: i64 = live.query_row("SELECT max(seq) FROM changes", [], |r| r.get(0)).unwrap();
        let first: i64 = db.query_row("SELECT min(seq) FROM changes", [], |r| r.get(0)).unwrap();
        assert!(first > live_end, "restored positions {first}… are past the live feed's {live_end}");
        let photo: i64 = db
            .query_row("SELECT count(*) FROM attachments WHERE sha256 = ?1 AND complete = 1", [&early_photo], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(photo, 1);
    }

    // Phones come back. The first to sync pushes everything again (its cursor is one the
    // restored server never gave), then records something new on the restored server.
    let t = Instant::now();
    phones[1].sync();
    let new_visit = phones[1].store.create_visit(visit(1)).unwrap();
    phones[1].sync();
    cut.sync();
    for p in &phones {
        p.sync();
    }
    for p in &phones {
        p.sync();
    }
    eprintln!("{} phones came back in {:?}", PHONES + 1, t.elapsed());
    let mut expected: BTreeSet<String> = live_visits;
    assert!(expected.contains(&cut_visit));
    expected.insert(new_visit.clone());
    let held = visit_ids(&restored.db());
    let missing: Vec<&String> = expected.difference(&held).collect();
    assert!(missing.is_empty(), "the server lacks {} visits after the phones came back: {missing:?}", missing.len());
    // Every phone holds every visit, the new one included, whatever its cursor was.
    let mut counts = BTreeMap::new();
    for (i, p) in phones.iter().enumerate() {
        let ids: BTreeSet<String> =
            p.store.list_visits(&Default::default()).unwrap().into_iter().map(|v| v.id).collect();
        let lacking: Vec<&String> = held.difference(&ids).collect();
        assert!(lacking.is_empty(), "phone {i} lacks {lacking:?}");
        counts.insert(i, p.store.outbox_len().unwrap());
    }
    assert!(counts.values().all(|n| *n == 0), "outboxes empty: {counts:?}");
    // The photo uploaded after the backup's point is on the restored server again, verified.
    let photo: i64 = restored
        .db()
        .query_row("SELECT count(*) FROM attachments WHERE sha256 = ?1 AND complete = 1", [&late_photo], |r| r.get(0))
        .unwrap();
    assert_eq!(photo, 1, "the late photo was uploaded again");
    let check = restored.cli(&["attachments", "check"], "");
    assert!(check.contains("0 missing, 0 corrupt"), "{check}");
    // A supervisor's first sync sees the same.
    let sup = Phone::new(&restored.url());
    sup.login("boss", PASSWORD);
    sup.sync();
    assert_eq!(sup.store.list_visits(&Default::default()).unwrap().len(), held.len());
    eprintln!("backup e2e: {} visits, {:?}", held.len(), t0.elapsed());
}
