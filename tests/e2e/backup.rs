//! Backups of a running county (issue 14, deliverable 5): `ohassist backup` while 20 phones
//! push, then `ohassist restore` into a fresh directory and a server on it at the same
//! address. Every change a phone was told acknowledged before the backup's point is there,
//! the database passes `integrity_check`, the attachments verify; a damaged backup is refused
//! with a clear error; and phones that synced after the backup's point (their cursors are
//! ahead of the restored feed) push again what the server lost and converge, nothing lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use ohassist_core::model::AttachmentKind;
use ohassist_core::store::NewAttachment;
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

fn parse_time(s: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64)
}

fn visit_ids(conn: &rusqlite::Connection) -> BTreeSet<String> {
    let mut stmt = conn.prepare("SELECT id FROM documents WHERE kind = 'visit'").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
}

/// The hashes of the feed's changes at positions up to `upto`, in feed order.
fn feed(conn: &rusqlite::Connection, upto: i64) -> Vec<String> {
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
    let body = wire::encode(&wire::PushRequest { protocol: wire::PROTOCOL_VERSION, changes });
    let token = phone.store.meta("token").unwrap().unwrap();
    let answer = post(&format!("{url}/api/v1/sync/push"), Some(&token), SYNC_HEADERS, body);
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    let pushed: wire::PushResponse = wire::decode(&answer.body, 64 * 1024 * 1024).unwrap();
    assert_eq!(pushed.acknowledged.len(), queued.len());
    phone.store.acknowledge(&pushed.acknowledged).unwrap();
}

fn attachment(phone: &Phone, visit_id: &str, bytes: &[u8]) -> String {
    let meta = NewAttachment {
        kind: Some(AttachmentKind::Photo),
        media_type: "image/jpeg".into(),
        caption: "现场照片".into(),
        ..Default::default()
    };
    let r = phone.store.add_attachment(visit_id, bytes, meta).unwrap();
    r.record.attachments.keys().find(|k| ohassist_core::store::sha256_hex(bytes) == **k).unwrap().clone()
}

/// A visit a phone created, when the sync that pushed it began (nothing of it was on the
/// server before) and when it returned (the phone had been told it was acknowledged).
struct Acked {
    id: String,
    sent: SystemTime,
    at: SystemTime,
}

/// What [`backup_while_pushing`] saw.
struct Run {
    manifest: serde_json::Value,
    /// The manifest's snapshot times.
    started: SystemTime,
    finished: SystemTime,
    acked: Vec<Acked>,
    /// (start, duration) of every sync.
    syncs: Vec<(SystemTime, Duration)>,
    /// What `ohassist backup` printed, and its wall time.
    output: String,
    wall: Duration,
}

impl Run {
    /// Sync durations, sorted: those under way while the snapshot was taken, and the others.
    fn latency(&self) -> (Vec<Duration>, Vec<Duration>) {
        let overlaps = |(s, d): &(SystemTime, Duration)| *s <= self.finished && *s + *d >= self.started;
        let mut during: Vec<Duration> = self.syncs.iter().filter(|x| overlaps(x)).map(|(_, d)| *d).collect();
        let mut others: Vec<Duration> = self.syncs.iter().filter(|x| !overlaps(x)).map(|(_, d)| *d).collect();
        during.sort();
        others.sort();
        (during, others)
    }
}

/// Every phone creates a visit of its enterprise (`enterprise(i)`) and syncs, again and
/// again; after `lead`, `ohassist backup` runs on `live`; the phones go on for a while after.
fn backup_while_pushing(phones: &[Arc<Phone>], live: &Path, to: &Path, lead: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let syncs: Arc<Mutex<Vec<(SystemTime, Duration)>>> = Arc::default();
    let workers: Vec<_> = phones
        .iter()
        .enumerate()
        .map(|(i, phone)| {
            let (phone, stop, acked, syncs) = (phone.clone(), stop.clone(), acked.clone(), syncs.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let id = phone.store.create_visit(visit(i)).unwrap();
                    let (start, clock) = (SystemTime::now(), Instant::now());
                    phone.sync();
                    syncs.lock().unwrap().push((start, clock.elapsed()));
                    assert_eq!(phone.store.outbox_len().unwrap(), 0, "everything acknowledged");
                    acked.lock().unwrap().push(Acked { id, sent: start, at: SystemTime::now() });
                }
            })
        })
        .collect();
    std::thread::sleep(lead);
    let t = Instant::now();
    let output = cli(live, &["backup", "--to", to.to_str().unwrap()], "");
    let wall = t.elapsed();
    assert!(output.contains("备份完成 / backup complete"), "{output}");
    std::thread::sleep(Duration::from_millis(800));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(to.join("manifest.json")).unwrap()).unwrap();
    let started = parse_time(manifest["snapshot_started_at"].as_str().unwrap());
    let finished = parse_time(manifest["snapshot_finished_at"].as_str().unwrap());
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let syncs = std::mem::take(&mut *syncs.lock().unwrap());
    Run { manifest, started, finished, acked, syncs, output, wall }
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| if e.file_type().unwrap().is_dir() { dir_bytes(&e.path()) } else { e.metadata().unwrap().len() })
        .sum()
}

/// The figures for a county-sized database (2,000 enterprises, 10,000 visits, 20 photos of
/// 200 KB, as the sync bench seeds): backup time and size, push latency during the backup,
/// restore time. Slow (it seeds 12,000 records through a phone): run with `--ignored`.
#[test]
#[ignore]
fn county_sized_backup_figures() {
    use ohassist_core::model::{new_item_id, ChecklistItem, Compliance, Post};
    use rand::{RngCore, SeedableRng};
    let root = tempfile::tempdir().unwrap();
    let live_dir = root.path().join("live");
    let server = Server::start(&live_dir, None);
    server.add_user("seeder", "inspector", COUNTY, PASSWORD);
    for u in 0..USERS {
        server.add_user(&format!("pusher{u}"), "inspector", "350122", PASSWORD);
    }
    let seeder = Phone::new(&server.url());
    seeder.login("seeder", PASSWORD);
    let t = Instant::now();
    for i in 0..2_000 {
        seeder.store.create_enterprise(enterprise(100 + i, COUNTY)).unwrap();
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for n in 0..10_000 {
        let mut v = visit(100 + n % 2_000);
        v.notes = format!("首次帮扶记录 {n}");
        v.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
        v.hazard_identification
            .posts
            .insert(new_item_id(), Post { name: format!("岗位{n}"), exposed_workers: 4, ..Default::default() });
        let id = seeder.store.create_visit(v).unwrap();
        if n % 500 == 0 {
            let mut photo = vec![0u8; 200_000];
            rng.fill_bytes(&mut photo);
            attachment(&seeder, &id, &photo);
        }
    }
    seeder.sync();
    eprintln!("seeded 12,000 records in {:?}", t.elapsed());
    let phones: Vec<Arc<Phone>> = (0..PHONES)
        .map(|i| {
            let p = Phone::new(&server.url());
            p.login(&format!("pusher{}", i % USERS), PASSWORD);
            p.store.create_enterprise(enterprise(i, "350122")).unwrap();
            p.sync();
            Arc::new(p)
        })
        .collect();
    let backup_dir = root.path().join("backup");
    let run = backup_while_pushing(&phones, &live_dir, &backup_dir, Duration::from_secs(3));
    let (during, others) = run.latency();
    let pct = |v: &[Duration], p: f64| v.get(((v.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
    let live_db = std::fs::metadata(live_dir.join("ohassist.db")).unwrap().len();
    eprintln!("backup: {}", run.output.trim());
    eprintln!(
        "backup wall {:?}; backup dir {} bytes (live ohassist.db {} bytes); counts {}",
        run.wall,
        dir_bytes(&backup_dir),
        live_db,
        run.manifest["counts"]
    );
    eprintln!(
        "push+pull syncs during the snapshot: {} (p50 {:?}, p95 {:?}, max {:?}); outside it: {} (p50 {:?}, p95 {:?}, max {:?})",
        during.len(),
        pct(&during, 0.5),
        pct(&during, 0.95),
        during.last().copied().unwrap_or_default(),
        others.len(),
        pct(&others, 0.5),
        pct(&others, 0.95),
        others.last().copied().unwrap_or_default()
    );
    let t = Instant::now();
    let restored_dir = root.path().join("restored");
    cli(&restored_dir, &["restore", "--from", backup_dir.to_str().unwrap()], "");
    eprintln!("restore (verify, stage, integrity_check, rename) {:?}", t.elapsed());
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
        let live = rusqlite::Connection::open(live_dir.join("ohassist.db")).unwrap();
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
