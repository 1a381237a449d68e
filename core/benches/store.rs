//! `cargo bench -p ohassist-core --bench store`: the store's figures, plain and encrypted in
//! one run, as a table with the ratio encrypted / plain.
//!
//! For each store, creates 2,000 enterprises and 10,000 full visits in a real SQLite file,
//! then measures opening it, listing and filtering, merging 1,000 remote changes and a 2 MB
//! photo; the peak memory of an open store is measured in a fresh child process (VmHWM).
//! Last, the plain store is migrated to an encrypted one in place.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use automerge::ActorId;
use ohassist_core::doc::{to_json, Author, Document};
use ohassist_core::model::*;
use ohassist_core::store::{EnterpriseFilter, Store, StoreKey, VisitFilter};

const ENTERPRISES: usize = 2_000;
const VISITS: usize = 10_000;
const COUNTIES: usize = 20;
const OPEN_ONLY: &str = "OHASSIST_BENCH_OPEN_ONLY";
const OPEN_ENCRYPTED: &str = "OHASSIST_BENCH_OPEN_ENCRYPTED";

fn credit_code(i: usize) -> String {
    ohassist_core::synthetic::credit_code("350100", i as u64)
}

fn county(i: usize) -> County {
    County { code: format!("3501{:02}", i % COUNTIES + 1), name: format!("第{}县", i % COUNTIES + 1) }
}

pub fn full_visit(enterprise: usize, n: usize) -> Visit {
    let mut v = Visit {
        enterprise_id: credit_code(enterprise),
        visit_date: format!("2025-{:02}-{:02}", n % 12 + 1, n % 28 + 1),
        ..Default::default()
    };
    v.inspectors = BTreeMap::from([("u1".to_string(), "张三".to_string()), ("u2".to_string(), "李四".to_string())]);
    for item in ChecklistItem::ALL {
        v.self_inspection.set(*item, Compliance::Compliant, "");
    }
    for p in 0..3 {
        let mut post =
            Post {
                workplace: "破碎车间".into(), name: format!("岗位{p}"), exposed_workers: 5, ..Default::default()
            };
        post.factors.insert(
            new_item_id(),
            HazardFactor { category: Some(HazardCategory::Dust), name: "矽尘".into(), deleted: false },
        );
        post.factors.insert(
            new_item_id(),
            HazardFactor { category: Some(HazardCategory::Physical), name: "噪声".into(), deleted: false },
        );
        v.hazard_identification.posts.insert(new_item_id(), post);
    }
    v.management_system = ManagementSystem {
        system_established: Some(true),
        emergency_plan: Some(true),
        archive_five_boxes_one_bag: Some(false),
        notes: "制度已上墙".into(),
    };
    for item in NotificationItem::ALL {
        v.notification.items.insert(
            item.code().into(),
            NotificationCheck { status: Some(Compliance::Compliant), suggestion: String::new() },
        );
    }
    for a in TrainingAudience::ALL {
        v.training.sessions.insert(
            new_item_id(),
            TrainingSession {
                date: "2025-01-10".into(),
                audience: Some(*a),
                attendees: 12,
                mode: Some(TrainingMode::OnSite),
                organised_by_authority: true,
                topic: "粉尘防护".into(),
                deleted: false,
            },
        );
    }
    v.remediation.posts.insert(
        new_item_id(),
        OverLimitPost {
            post: "破碎岗".into(),
            factor: "噪声".into(),
            measured_value: Some(92.3),
            limit: Some(85.0),
            unit: "dB(A)".into(),
            suggestion: "加装隔声罩".into(),
            rectification_plan: "三个月内完成".into(),
            guidance: "现场指导".into(),
            effect: Some(EffectEvaluation::Improved),
            deleted: false,
        },
    );
    v.chronic_screening =
        ChronicScreening { consent: true, screened: 30, hypertension_abnormal: 4, diabetes_abnormal: 2, follow_ups: 6 };
    v.notes = "现场检查发现粉尘浓度较高，已提出整改建议。".into();
    v
}

fn enterprise(i: usize) -> Enterprise {
    let mut e = Enterprise {
        credit_code: credit_code(i),
        name: format!("测试企业{i}有限公司"),
        county: county(i),
        industry: Some(Industry::ALL[i % Industry::ALL.len()]),
        size: Some(SizeClass::Small),
        address: "福建省福州市".into(),
        ..Default::default()
    };
    e.add_year(2025);
    e
}

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A figure measured for both stores: milliseconds (or megabytes), lower is better.
struct Row {
    what: String,
    plain: f64,
    encrypted: f64,
    unit: &'static str,
    target: &'static str,
}

fn key() -> StoreKey {
    StoreKey::new([0x6b; 32])
}

fn open(path: &Path, encrypted: bool) -> Store {
    if encrypted {
        Store::open(path, &key()).unwrap()
    } else {
        Store::open_unencrypted(path).unwrap()
    }
}

/// Every figure for one store, plain or encrypted, in `dir`.
fn measure(dir: &Path, encrypted: bool) -> Vec<(String, f64, &'static str, &'static str)> {
    let path = dir.join("bench.db");
    let store = open(&path, encrypted);
    store.set_user("bench").unwrap();
    let mut rows = Vec::new();
    let mut row = |what: &str, figure: f64, unit: &'static str, target: &'static str| {
        rows.push((what.to_string(), figure, unit, target))
    };

    let t = Instant::now();
    for i in 0..ENTERPRISES {
        store.create_enterprise(enterprise(i)).unwrap();
    }
    row("create 2,000 enterprises (total)", ms(t.elapsed()), "ms", "");

    let mut per_visit = Vec::with_capacity(VISITS);
    let t = Instant::now();
    let mut visit_ids = Vec::with_capacity(VISITS);
    for n in 0..VISITS {
        let v = full_visit(n % ENTERPRISES, n);
        let t1 = Instant::now();
        visit_ids.push(store.create_visit(v).unwrap());
        per_visit.push(t1.elapsed());
    }
    let v_total = t.elapsed();
    let mut sorted = per_visit.clone();
    sorted.sort();
    row("create 10,000 full visits (total)", ms(v_total), "ms", "");
    row("create a full visit (median)", ms(median(per_visit)), "ms", "≤ 5 ms");
    row("create a full visit (p99)", ms(sorted[sorted.len() * 99 / 100]), "ms", "");
    drop(store);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
        + std::fs::metadata(dir.join("bench.db-wal")).map(|m| m.len()).unwrap_or(0);
    row("store file size", size as f64 / 1e6, "MB", "");

    // Open in a fresh process: cold open time and peak memory of an open store.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env(OPEN_ONLY, &path)
        .env(OPEN_ENCRYPTED, if encrypted { "1" } else { "" })
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let figures: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    assert_eq!(figures.len(), 3, "the child reports its figures: {text}");
    row("open the store (fresh process)", figures[0], "ms", "≤ 100 ms");
    row("peak memory: open + list county + read visit", figures[1] / 1024.0, "MB", "≤ 50 MB");

    let store = open(&path, encrypted);
    let mut opens = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        drop(open(&path, encrypted));
        opens.push(t.elapsed());
    }
    row("open the store (warm, median of 20)", ms(median(opens)), "ms", "≤ 100 ms");

    let mut lists = Vec::new();
    for c in 0..COUNTIES {
        let t = Instant::now();
        let n = store
            .list_visits(&VisitFilter { county_code: Some(format!("3501{:02}", c + 1)), ..Default::default() })
            .unwrap()
            .len();
        lists.push(t.elapsed());
        assert_eq!(n, VISITS / COUNTIES);
    }
    row("list a county's visits (500 rows, median)", ms(median(lists)), "ms", "≤ 50 ms");
    let mut filters = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        store
            .list_visits(&VisitFilter {
                county_code: Some("350103".into()),
                from_date: Some("2025-03-01".into()),
                to_date: Some("2025-06-30".into()),
                review_state: Some(ReviewState::Draft),
                ..Default::default()
            })
            .unwrap();
        filters.push(t.elapsed());
    }
    row("filter visits (county + dates + state, median)", ms(median(filters)), "ms", "");
    let t = Instant::now();
    let found =
        store.list_enterprises(&EnterpriseFilter { query: Some("企业19".into()), ..Default::default() }).unwrap().len();
    row(&format!("search enterprises by name ({found} hits)"), ms(t.elapsed()), "ms", "");
    let t = Instant::now();
    let status = store.table1_status(&credit_code(7), 2025).unwrap();
    row("Table 1 status of one enterprise (5 visits)", ms(t.elapsed()), "ms", "");
    assert!(status.declared);

    // 1,000 remote changes: another phone edits 1,000 of these visits.
    let author = Author { user: "other".into(), device: "other-phone".into() };
    let actor = ActorId::random();
    let remote: Vec<String> = visit_ids.iter().take(1_000).cloned().collect();
    let mut batch = Vec::new();
    for id in &remote {
        let r = store.get_visit(id).unwrap();
        // Rebuild that phone's copy from this store's document and edit it there.
        let mut doc = Document::genesis(RecordKind::Visit, id);
        doc.apply_changes(store_document_changes(&store, id, encrypted)).unwrap();
        let mut v = r.record.clone();
        v.notes = "另一台手机的备注".into();
        let change = doc.write_diff(&actor, &author, &to_json(&r.record), &to_json(&v)).unwrap().unwrap();
        batch.push((RecordKind::Visit, id.clone(), vec![change.raw_bytes().to_vec()]));
    }
    let t = Instant::now();
    store.apply_remote_batch(&batch).unwrap();
    row("merge 1,000 remote changes (one transaction)", ms(t.elapsed()), "ms", "");
    assert_eq!(store.get_visit(&remote[0]).unwrap().record.notes, "另一台手机的备注");

    // A 2 MB photo: stored (sealed when encrypted) and read back.
    let photo: Vec<u8> = (0..2_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let t = Instant::now();
    let meta = ohassist_core::store::NewAttachment {
        kind: Some(AttachmentKind::Photo),
        media_type: "image/jpeg".into(),
        ..Default::default()
    };
    store.add_attachment(&visit_ids[0], &photo, meta).unwrap();
    row("add a 2 MB photo", ms(t.elapsed()), "ms", "");
    let t = Instant::now();
    let back = store.read_attachment(&ohassist_core::store::sha256_hex(&photo)).unwrap().unwrap();
    row("read a 2 MB photo back", ms(t.elapsed()), "ms", "");
    assert!(back == photo);
    rows
}

fn main() {
    if let Ok(path) = std::env::var(OPEN_ONLY) {
        // Child: open the store, list a county, read a visit; report peak memory.
        let encrypted = std::env::var(OPEN_ENCRYPTED).is_ok_and(|v| v == "1");
        let t = Instant::now();
        let store = open(Path::new(&path), encrypted);
        let open = t.elapsed();
        let list =
            store.list_visits(&VisitFilter { county_code: Some("350101".into()), ..Default::default() }).unwrap();
        store.get_visit(&list[0].id).unwrap();
        println!("{} {} {}", ms(open), peak_rss_kb(), list.len());
        return;
    }
    let plain_dir = tempfile::tempdir().unwrap();
    let plain = measure(plain_dir.path(), false);
    let encrypted_dir = tempfile::tempdir().unwrap();
    let encrypted = measure(encrypted_dir.path(), true);
    let mut rows: Vec<Row> = plain
        .into_iter()
        .zip(encrypted)
        .map(|((what, p, unit, target), (_, e, _, _))| Row { what, plain: p, encrypted: e, unit, target })
        .collect();

    // The migration of the plain store (2,000 enterprises, 10,000 visits, one photo) in place.
    let plain_path = plain_dir.path().join("bench.db");
    let t = Instant::now();
    let migrated = Store::open(&plain_path, &key()).unwrap();
    let took = ms(t.elapsed());
    assert!(migrated.is_encrypted());
    assert_eq!(migrated.list_visits(&VisitFilter::default()).unwrap().len(), VISITS);
    rows.push(Row {
        what: "migrate the plain store to encrypted (12,000 records)".into(),
        plain: f64::NAN,
        encrypted: took,
        unit: "ms",
        target: "≤ 30 s",
    });

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default();
    println!(
        "\nohassist-core store benchmark, plain vs encrypted (SQLCipher, raw key; attachments XChaCha20-Poly1305) — \
         {} cores, {cpu}, SQLite WAL synchronous=FULL\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("| {:<52} | {:>12} | {:>12} | {:>8} | {:<10} |", "measure", "plain", "encrypted", "enc/plain", "target");
    println!("|{:-<54}|{:-<14}|{:-<14}|{:-<10}|{:-<12}|", "", "", "", "", "");
    for r in rows {
        let fig = |v: f64| if v.is_nan() { "—".to_string() } else { format!("{v:.2} {}", r.unit) };
        let ratio = if r.plain.is_nan() || r.plain == 0.0 {
            "—".to_string()
        } else {
            format!("{:.2}", r.encrypted / r.plain)
        };
        println!(
            "| {:<52} | {:>12} | {:>12} | {:>8} | {:<10} |",
            r.what,
            fig(r.plain),
            fig(r.encrypted),
            ratio,
            r.target
        );
    }
}

/// The changes of a stored document, as another phone would have received them.
fn store_document_changes(store: &Store, id: &str, encrypted: bool) -> Vec<automerge::Change> {
    let conn = rusqlite::Connection::open(store.path()).unwrap();
    if encrypted {
        conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", hex::encode(key().as_bytes()))).unwrap();
    }
    let bytes: Vec<u8> = conn.query_row("SELECT bytes FROM documents WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    Document::load(RecordKind::Visit, id, &bytes).unwrap().changes_since(&[])
}
