//! The encrypted store on real files: nothing of a record, a phone number or a photo is in
//! the bytes on disk, neither rusqlite without the key nor the `sqlite3` program can read the
//! database, the right key reads everything back, a wrong key is a typed error that changes
//! nothing, and a plain store is migrated in place — also when killed with SIGKILL at random
//! points of the migration.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use automerge::ActorId;
use ohassist_core::doc::{to_json, Author, Document};
use ohassist_core::model::*;
use ohassist_core::store::{sha256_hex, EnterpriseFilter, NewAttachment, Store, StoreKey, VisitFilter};
use ohassist_core::Error;
use rand::Rng;

const CODE: &str = "91350100M000100Y43";
const NAME: &str = "闽侯县青口镇鑫源石材加工有限公司";
const PHONE: &str = "13905918876";
const CHILD_ENV: &str = "OHASSIST_MIGRATION_CHILD_STORE";

fn key() -> StoreKey {
    StoreKey::new([0x5a; 32])
}

fn enterprise(code: &str, name: &str) -> Enterprise {
    let mut e = Enterprise {
        credit_code: code.into(),
        name: name.into(),
        county: County { code: "350121".into(), name: "闽侯县".into() },
        industry: Some(Industry::BuildingMaterials),
        ..Default::default()
    };
    e.contact.person = "林秀英".into();
    e.contact.phone = PHONE.into();
    e.add_year(2025);
    e
}

/// A photo-like payload that no SQLite page or cipher output would contain by chance.
fn photo(seed: u8, len: usize) -> Vec<u8> {
    let mut bytes = b"\xff\xd8\xff\xe0JFIF-ohassist-photo".to_vec();
    bytes.extend((0..len).map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed));
    bytes
}

fn photo_meta() -> NewAttachment {
    NewAttachment { kind: Some(AttachmentKind::Photo), media_type: "image/jpeg".into(), ..Default::default() }
}

fn fill(store: &Store) -> (String, Vec<u8>) {
    store.set_user("inspector-1").unwrap();
    store.create_enterprise(enterprise(CODE, NAME)).unwrap();
    let mut v = Visit { enterprise_id: CODE.into(), visit_date: "2025-05-20".into(), ..Default::default() };
    v.notes = format!("联系人林秀英，电话 {PHONE}，粉尘浓度较高");
    v.chronic_screening =
        ChronicScreening { consent: true, screened: 31, hypertension_abnormal: 4, ..Default::default() };
    let id = store.create_visit(v).unwrap();
    let bytes = photo(1, 300_000);
    store.add_attachment(&id, &bytes, photo_meta()).unwrap();
    (id, bytes)
}

/// Every file of the store: the database, its WAL and shared memory, and attachment files.
fn files_of(db: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out)
            } else {
                out.push(p)
            }
        }
    }
    let mut out = Vec::new();
    walk(db.parent().unwrap(), &mut out);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn assert_no_plaintext(db: &Path, photo: &[u8]) {
    let files = files_of(db);
    assert!(files.len() >= 2, "the database and at least one attachment: {files:?}");
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for (what, needle) in [
            ("the enterprise name", NAME.as_bytes()),
            ("the phone number", PHONE.as_bytes()),
            ("the contact's name", "林秀英".as_bytes()),
            ("the credit code", CODE.as_bytes()),
            ("the photo's bytes", &photo[100..164]),
            ("the photo's hash", sha256_hex(photo).as_bytes()),
        ] {
            assert!(!contains(&bytes, needle), "{what} is readable in {}", f.display());
        }
    }
}

/// The `sqlite3` program (installed by scripts/test.sh) must not read the file.
fn assert_sqlite3_cannot_read(db: &Path) {
    let out = Command::new("sqlite3")
        .arg(db)
        .arg("SELECT count(*) FROM sqlite_master;")
        .output()
        .expect("the sqlite3 program (scripts/test.sh installs it)");
    assert!(!out.status.success(), "sqlite3 read the encrypted store: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a database"), "sqlite3 said: {err}");
}

#[test]
fn nothing_readable_on_disk_and_the_right_key_reads_everything_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phone.db");
    let (visit_id, bytes) = {
        let store = Store::open(&db, &key()).unwrap();
        assert!(store.is_encrypted());
        let filled = fill(&store);
        // Checked while open too: the WAL holds the latest pages.
        assert_no_plaintext(&db, &filled.1);
        filled
    };
    assert_no_plaintext(&db, &bytes);
    assert_sqlite3_cannot_read(&db);
    let plain = rusqlite::Connection::open(&db).unwrap();
    assert!(plain.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0)).is_err());
    drop(plain);

    let store = Store::open(&db, &key()).unwrap();
    let e = store.get_enterprise(CODE).unwrap().record;
    assert_eq!((e.name.as_str(), e.contact.phone.as_str()), (NAME, PHONE));
    let v = store.get_visit(&visit_id).unwrap().record;
    assert!(v.notes.contains(PHONE));
    assert_eq!(store.read_attachment(&sha256_hex(&bytes)).unwrap().unwrap(), bytes);
    assert_eq!(store.read_attachment_range(&sha256_hex(&bytes), 70_000, 1000).unwrap(), &bytes[70_000..71_000]);
    assert_eq!(store.pending_uploads().unwrap()[0].sha256, sha256_hex(&bytes), "the content address is unchanged");
    store.check().unwrap();
}

/// The digest of every file of the store but `-shm`, SQLite's index of the WAL, which any
/// reader of a WAL database rebuilds (it holds page numbers, nothing of the records).
fn digest_files(db: &Path) -> Vec<(PathBuf, String)> {
    let mut d: Vec<_> = files_of(db)
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with("-shm"))
        .map(|p| (p.clone(), sha256_hex(&std::fs::read(&p).unwrap())))
        .collect();
    d.sort();
    d
}

#[test]
fn a_wrong_key_is_a_typed_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phone.db");
    let store = Store::open(&db, &key()).unwrap();
    fill(&store);
    // A copy taken while the store is open, WAL and all, as a crash would leave it.
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("phone.db");
    for suffix in ["", "-wal"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            std::fs::copy(&from, format!("{}{suffix}", copy.display())).unwrap();
        }
    }
    drop(store);
    for path in [&db, &copy] {
        let before = digest_files(path);
        let wrong = StoreKey::new([0x5b; 32]);
        match Store::open(path, &wrong) {
            Err(Error::WrongKey) => {}
            other => panic!("expected WrongKey, got {other:?}"),
        }
        assert!(!Error::WrongKey.to_string().contains("5b"), "the message names no key");
        assert_eq!(digest_files(path), before, "a wrong key changed nothing on disk");
        let store = Store::open(path, &key()).unwrap();
        assert_eq!(store.get_enterprise(CODE).unwrap().record.name, NAME);
    }
    assert!(StoreKey::from_slice(&[1, 2, 3]).is_err());
}

#[test]
fn a_plain_store_and_its_attachments_are_encrypted_on_the_first_open_with_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phone.db");
    let (visit_id, bytes) = {
        let plain = Store::open_unencrypted(&db).unwrap();
        assert!(!plain.is_encrypted());
        plain.set_meta("token", "0123456789abcdef-secret-token").unwrap();
        fill(&plain)
    };
    assert!(contains(
        &std::fs::read(files_of(&db).iter().find(|p| p.is_file() && p.parent() != db.parent()).unwrap()).unwrap(),
        &bytes[100..164]
    ));
    let store = Store::open(&db, &key()).unwrap();
    assert_eq!(store.get_visit(&visit_id).unwrap().record.enterprise_id, CODE);
    assert_eq!(store.read_attachment(&sha256_hex(&bytes)).unwrap().unwrap(), bytes);
    assert_eq!(store.meta("token").unwrap().as_deref(), Some("0123456789abcdef-secret-token"));
    drop(store);
    assert_no_plaintext(&db, &bytes);
    for f in files_of(&db) {
        assert!(!contains(&std::fs::read(&f).unwrap(), b"secret-token"), "the token is readable in {}", f.display());
    }
    assert_sqlite3_cannot_read(&db);
    assert!(Store::open_unencrypted(&db).is_err(), "an encrypted store does not open without its key");
    let again = Store::open(&db, &key()).unwrap();
    again.check().unwrap();
    assert_eq!(again.read_attachment(&sha256_hex(&bytes)).unwrap().unwrap(), bytes);
}

#[test]
fn erase_leaves_an_empty_logged_out_store_with_a_new_identity() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("phone.db");
    let store = Store::open(&db, &key()).unwrap();
    let (_, bytes) = fill(&store);
    store.set_meta("token", "t").unwrap();
    let device = store.device_id();
    store.erase().unwrap();
    assert_ne!(store.device_id(), device);
    assert_eq!(store.meta("token").unwrap(), None);
    assert_eq!(store.outbox_len().unwrap(), 0);
    assert!(store
        .list_enterprises(&EnterpriseFilter { include_deleted: true, ..Default::default() })
        .unwrap()
        .is_empty());
    assert!(!store.attachments_dir().exists());
    // Usable at once, as a new device.
    store.create_enterprise(enterprise(CODE, "新企业")).unwrap();
    assert_eq!(store.history(CODE).unwrap()[0].author.device, store.device_id());
    drop(store);
    let reopened = Store::open(&db, &key()).unwrap();
    assert_ne!(reopened.device_id(), device);
    assert_eq!(reopened.read_attachment(&sha256_hex(&bytes)).unwrap(), None);
}

// ---- migration under SIGKILL ---------------------------------------------------------------

const ENTERPRISES: usize = 2_000;
const VISITS: usize = 10_000;
const PHOTOS: usize = 20;

fn code(i: usize) -> String {
    ohassist_core::synthetic::credit_code("350100", i as u64)
}

/// A plain store of 2,000 enterprises, 10,000 visits and some photos, built as pages a server
/// would send (one transaction per 500 records) so that it takes seconds, not minutes.
fn plain_fixture(db: &Path) -> Vec<(String, Vec<String>)> {
    let store = Store::open_unencrypted(db).unwrap();
    let author = Author { user: "u1".into(), device: "d1".into() };
    let actor = ActorId::random();
    let mut batch = Vec::new();
    let flush = |batch: &mut Vec<(RecordKind, String, Vec<Vec<u8>>)>| {
        store.apply_remote_batch(batch).unwrap();
        batch.clear();
    };
    let record = |kind: RecordKind, id: String, json: serde_json::Value| {
        let mut doc = Document::genesis(kind, &id);
        let mut changes: Vec<Vec<u8>> = doc.changes_since(&[]).into_iter().map(|c| c.raw_bytes().to_vec()).collect();
        let change = doc.write_diff(&actor, &author, &serde_json::json!({}), &json).unwrap().unwrap();
        changes.push(change.raw_bytes().to_vec());
        (kind, id, changes)
    };
    for i in 0..ENTERPRISES {
        let mut e = enterprise(&code(i), &format!("测试企业{i}有限公司"));
        e.schema_version = SCHEMA_VERSION;
        batch.push(record(RecordKind::Enterprise, code(i), to_json(&e)));
        if batch.len() == 500 {
            flush(&mut batch);
        }
    }
    for n in 0..VISITS {
        let mut v = Visit {
            enterprise_id: code(n % ENTERPRISES),
            county_code: "350121".into(),
            visit_date: format!("2025-{:02}-{:02}", n % 12 + 1, n % 28 + 1),
            ..Default::default()
        };
        v.notes = format!("第{n}次帮扶，现场检查发现粉尘浓度较高，已提出整改建议。");
        v.schema_version = SCHEMA_VERSION;
        batch.push(record(RecordKind::Visit, format!("{n:032x}"), to_json(&v)));
        if batch.len() == 500 {
            flush(&mut batch);
        }
    }
    flush(&mut batch);
    for p in 0..PHOTOS {
        store.add_attachment(&format!("{p:032x}"), &photo(p as u8, 400_000), photo_meta()).unwrap();
    }
    let mut heads = store.all_heads().unwrap();
    heads.sort();
    heads
}

/// In the child: open the plain store with the key, which migrates it, then say so.
#[test]
fn migration_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    println!("opening");
    let store = Store::open(&path, &key()).unwrap();
    drop(store);
    println!("migrated");
}

fn run_child(db: &Path, kill_after: Option<Duration>) -> (Duration, bool) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "migration_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The harness prints "test migration_child ... " before the test's own first line.
    while !lines.next().expect("the child starts").unwrap().ends_with("opening") {}
    let started = Instant::now();
    match kill_after {
        None => {
            let done = lines.any(|l| l.unwrap().ends_with("migrated"));
            assert!(child.wait().unwrap().success() && done, "the migration finishes");
            (started.elapsed(), true)
        }
        Some(after) => {
            std::thread::sleep(after);
            child.kill().unwrap();
            child.wait().unwrap();
            let finished = lines.any(|l| l.is_ok_and(|l| l.ends_with("migrated")));
            (started.elapsed(), finished)
        }
    }
}

fn holds_everything(store: &Store, expected: &[(String, Vec<String>)], what: &str) {
    let mut heads = store.all_heads().unwrap();
    heads.sort();
    assert_eq!(heads.len(), ENTERPRISES + VISITS, "{what}: every record");
    assert!(heads == expected, "{what}: every record at its version");
    let any = VisitFilter { include_deleted: true, ..Default::default() };
    assert_eq!(store.list_visits(&any).unwrap().len(), VISITS, "{what}: index rows");
    let v = store.get_visit(&format!("{:032x}", VISITS - 1)).unwrap().record;
    assert!(v.notes.starts_with(&format!("第{}次帮扶", VISITS - 1)), "{what}");
    for p in 0..PHOTOS {
        let bytes = photo(p as u8, 400_000);
        assert_eq!(
            store.read_attachment(&sha256_hex(&bytes)).unwrap().as_deref(),
            Some(&bytes[..]),
            "{what}: photo {p}"
        );
    }
}

fn copy_store(from: &Path, to_dir: &Path) -> PathBuf {
    let to = to_dir.join("phone.db");
    let status = Command::new("cp").arg("-a").arg(from.parent().unwrap().join(".")).arg(to_dir).status().unwrap();
    assert!(status.success());
    to
}

#[test]
fn sigkill_at_random_points_of_the_migration_leaves_a_store_that_opens_with_everything() {
    let fixture_dir = tempfile::tempdir().unwrap();
    let fixture = fixture_dir.path().join("phone.db");
    let expected = plain_fixture(&fixture);

    // One uninterrupted run measures how long the migration takes.
    let full_dir = tempfile::tempdir().unwrap();
    let full = copy_store(&fixture, full_dir.path());
    let (took, _) = run_child(&full, None);
    holds_everything(&Store::open(&full, &key()).unwrap(), &expected, "uninterrupted");
    println!("migration of {} records took {took:?}", ENTERPRISES + VISITS);

    // Random points in strata of the run, denser at its start, where the database is copied
    // (the attachment files are sealed after it).
    const STRATA: [(f64, f64); 8] =
        [(0.0, 0.03), (0.03, 0.06), (0.06, 0.09), (0.09, 0.12), (0.12, 0.16), (0.16, 0.4), (0.4, 0.7), (0.7, 0.9)];
    let mut rng = rand::rng();
    let (mut plain_after, mut encrypted_after) = (0, 0);
    for (round, (lo, hi)) in STRATA.into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let db = copy_store(&fixture, dir.path());
        let at = took.mul_f64(rng.random_range(lo..hi));
        let (_, finished) = run_child(&db, Some(at));
        if finished {
            println!("round {round}: the migration finished before the kill at {at:?}");
        }
        let head = std::fs::read(&db).unwrap();
        let still_plain = head.starts_with(b"SQLite format 3\0");
        if still_plain {
            plain_after += 1;
            // The old file is usable as it is.
            let plain = Store::open_unencrypted(&db).unwrap_or_else(|e| panic!("round {round}: plain: {e}"));
            assert_eq!(
                plain.all_heads().unwrap().len(),
                ENTERPRISES + VISITS,
                "round {round}: the plain store is whole"
            );
            drop(plain);
        } else {
            encrypted_after += 1;
        }
        let store = Store::open(&db, &key()).unwrap_or_else(|e| panic!("round {round} (killed at {at:?}): {e}"));
        holds_everything(&store, &expected, &format!("round {round} (killed at {at:?})"));
        store.check().unwrap();
        drop(store);
        assert_sqlite3_cannot_read(&db);
        println!("round {round}: killed at {at:?}, the file was {}", if still_plain { "plain" } else { "encrypted" });
    }
    println!("after the kills: {plain_after} plain, {encrypted_after} encrypted (then migrated on open)");
}
