//! A child process writing to the store is killed with SIGKILL mid-write; the store must
//! reopen, pass `PRAGMA integrity_check` and hold every write the child saw committed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use ohassist_core::model::{County, Enterprise, Industry, Post, RecordKind, Visit};
use ohassist_core::store::{Store, StoreKey, VisitFilter};

const CODE: &str = "91350100M000100Y43";
const CHILD_ENV: &str = "OHASSIST_CRASH_CHILD_STORE";

fn key() -> StoreKey {
    StoreKey::new([9; 32])
}

/// In the child: write visits forever, printing each id once its transaction committed.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else { return };
    let store = Store::open(&path, &key()).unwrap();
    if store.find_enterprise(CODE).unwrap().is_none() {
        let mut e = Enterprise {
            credit_code: CODE.into(),
            name: "崩溃测试企业".into(),
            county: County { code: "350121".into(), name: "闽侯县".into() },
            industry: Some(Industry::Mining),
            ..Default::default()
        };
        e.add_year(2025);
        store.create_enterprise(e).unwrap();
    }
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        let mut v = Visit { enterprise_id: CODE.into(), visit_date: "2025-05-01".into(), ..Default::default() };
        v.notes = format!("visit {i} {}", "备注".repeat(200));
        for p in 0..5 {
            v.hazard_identification.posts.insert(
                format!("{:032x}", p + 1),
                Post { name: format!("岗位{p}"), exposed_workers: p, ..Default::default() },
            );
        }
        let id = store.create_visit(v).unwrap();
        // Edit another record in place too, so kills also land inside updates.
        store.edit_enterprise(CODE, |e| e.address = format!("地址 {i}")).unwrap();
        writeln!(out, "committed {id} {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_during_writes_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let mut committed: Vec<(String, usize)> = Vec::new();
    for (round, kill_after) in [7usize, 23, 41, 3].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("child wrote").unwrap();
            if let Some(rest) = line.strip_prefix("committed ") {
                let mut parts = rest.split(' ');
                committed.push((parts.next().unwrap().to_string(), parts.next().unwrap().parse().unwrap()));
                seen += 1;
            }
        }
        // SIGKILL while the child is in the middle of its next writes.
        child.kill().unwrap();
        child.wait().unwrap();

        let store = Store::open(&path, &key()).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        store.check().unwrap_or_else(|e| panic!("round {round}: integrity: {e}"));
        let listed = store.list_visits(&VisitFilter::default()).unwrap();
        for (id, i) in &committed {
            let v = store.get_visit(id).unwrap_or_else(|e| panic!("round {round}: committed visit {i} lost: {e}"));
            assert!(v.record.notes.starts_with(&format!("visit {i} ")));
            assert_eq!(v.record.hazard_identification.posts.len(), 5);
            assert!(listed.iter().any(|s| &s.id == id), "index row of {id} present");
        }
        // The index agrees with the documents: every listed visit loads.
        for s in &listed {
            store.get_visit(&s.id).unwrap();
        }
        // Every committed change is still queued for the server.
        assert!(store.outbox_len().unwrap() >= 2 * committed.len());
        let e = store.get_enterprise(CODE).unwrap().record;
        // The child counts from 0 again each round: its last line is this round's last edit.
        let last = committed.last().unwrap().1;
        let shown: usize = e.address.trim_start_matches("地址 ").parse().unwrap();
        assert!(shown >= last, "the last committed edit ({last}) survives, found {shown}");
    }
}

const HELD_CHILD_ENV: &str = "OHASSIST_CRASH_CHILD_HELD";

/// In the child: a record the server refused (held) is edited forever, each edit printed
/// once committed.
#[test]
fn held_crash_child() {
    let Ok(path) = std::env::var(HELD_CHILD_ENV) else { return };
    let store = Store::open(&path, &key()).unwrap();
    if store.find_enterprise(CODE).unwrap().is_none() {
        let mut e = Enterprise {
            credit_code: CODE.into(),
            name: "暂存测试企业".into(),
            county: County { code: "350121".into(), name: "闽侯县".into() },
            industry: Some(Industry::Mining),
            ..Default::default()
        };
        e.add_year(2025);
        store.create_enterprise(e).unwrap();
        let refused =
            (CODE.to_string(), RecordKind::Enterprise, "out_of_scope".into(), "不属于".into(), "outside".into());
        store.hold(&[refused]).unwrap();
        writeln!(std::io::stdout(), "held").unwrap();
    }
    let mut out = std::io::stdout().lock();
    for i in 0.. {
        store.edit_enterprise(CODE, |e| e.address = format!("暂存地址 {i} {}", "路".repeat(100))).unwrap();
        writeln!(out, "committed {i}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_while_a_held_record_is_edited_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("phone.db");
    let mut edits = 0;
    for (round, kill_after) in [5usize, 17, 2].into_iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "held_crash_child", "--nocapture", "--test-threads=1"])
            .env(HELD_CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last = 0;
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("child wrote").unwrap();
            if let Some(i) = line.strip_prefix("committed ") {
                last = i.parse().unwrap();
                seen += 1;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        edits += seen;

        let store = Store::open(&path, &key()).unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        store.check().unwrap_or_else(|e| panic!("round {round}: integrity: {e}"));
        let held = store.held_records().unwrap();
        assert_eq!(held.len(), 1, "round {round}: still held after the kill");
        assert_eq!(held[0].code, "out_of_scope");
        // Every committed edit is still queued (the registration's changes too).
        assert!(held[0].pending_changes as usize > edits, "round {round}: {} pending", held[0].pending_changes);
        let e = store.get_enterprise(CODE).unwrap().record;
        let shown: usize = e.address.trim_start_matches("暂存地址 ").split(' ').next().unwrap().parse().unwrap();
        assert!(shown >= last, "round {round}: the last committed edit ({last}) survives, found {shown}");
    }
}
