//! Bad links and dying servers: connections cut at random byte offsets, responses dropped
//! after the server committed, the server killed with SIGKILL mid-push. Every sync must
//! eventually complete with no lost and no duplicated change.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::ReadDoc;
use ohassist_core::model::Visit;
use ohassist_tests::proxy::{Faults, Proxy};
use ohassist_tests::*;

const COUNTY: &str = "350121";

/// Syncs until a sync completes, as the app does on its next attempts.
fn sync_until_done(phone: &Phone, attempts: usize) -> usize {
    for i in 1..=attempts {
        match phone.try_sync() {
            Ok(_) => return i,
            Err(e) => eprintln!("sync attempt {i} failed: {e}"),
        }
    }
    panic!("no sync completed in {attempts} attempts");
}

/// Every change hash of every document a store holds.
fn all_change_hashes(phone: &Phone) -> HashSet<String> {
    let conn = phone_db(phone.store.path());
    let mut stmt = conn.prepare("SELECT id, kind, bytes FROM documents").unwrap();
    let rows: Vec<(String, String, Vec<u8>)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(|r| r.unwrap()).collect();
    let mut out = HashSet::new();
    for (id, kind, bytes) in rows {
        let kind = ohassist_core::model::RecordKind::parse(&kind).unwrap();
        let doc = ohassist_core::doc::Document::load(kind, &id, &bytes).unwrap();
        assert!(doc.automerge().get_missing_deps(&[]).is_empty());
        for c in doc.changes_since(&[]) {
            out.insert(c.hash().to_string());
        }
    }
    out
}

fn server_hashes(server: &Server) -> Vec<String> {
    let db = server.db();
    let mut stmt = db.prepare("SELECT hash FROM changes").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect()
}

#[test]
fn cut_connections_and_dropped_responses_lose_and_duplicate_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let proxy = Proxy::start(&server.addr, Faults::default(), None);
    let a = Phone::new(&proxy.url());
    a.login("zhang", PASSWORD);
    proxy.set_faults(Faults { cut_request: 0.3, cut_response: 0.3, max_offset: 60_000, seed: 7, ..Faults::default() });

    for i in 0..20 {
        a.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
    }
    let mut ids = Vec::new();
    for n in 0..200 {
        let mut v = visit(n % 20);
        v.notes = format!("第{n}次帮扶 {}", "现场记录".repeat(50));
        ids.push(a.store.create_visit(v).unwrap());
    }
    let attempts = sync_until_done(&a, 60);
    assert_eq!(a.store.outbox_len().unwrap(), 0);
    assert!(proxy.stats.cuts.load(std::sync::atomic::Ordering::SeqCst) > 0, "the proxy did cut");
    eprintln!("a synced after {attempts} attempts");

    // The server holds each change exactly once: all of a's, nothing else.
    let on_server = server_hashes(&server);
    let distinct: HashSet<&String> = on_server.iter().collect();
    assert_eq!(distinct.len(), on_server.len(), "no duplicate change rows");
    let held = all_change_hashes(&a);
    assert_eq!(distinct.len(), held.len());
    assert!(held.iter().all(|h| distinct.contains(h)), "every change of a reached the server");

    // Another phone, straight to the server, edits; a pulls through the bad link.
    let b = Phone::new(&server.url());
    b.login("li", PASSWORD);
    b.sync();
    for id in ids.iter().take(50) {
        b.store.edit_visit(id, |v| v.management_system.emergency_plan = Some(true)).unwrap();
    }
    b.sync();
    sync_until_done(&a, 60);
    for id in &ids {
        let va: Visit = a.store.get_visit(id).unwrap().record;
        let vb: Visit = b.store.get_visit(id).unwrap().record;
        assert_eq!(va, vb, "visit {id} converged");
    }
    assert_eq!(a.store.get_visit(&ids[0]).unwrap().record.management_system.emergency_plan, Some(true));
    let on_server = server_hashes(&server);
    assert_eq!(on_server.iter().collect::<HashSet<_>>().len(), on_server.len());
}

#[test]
fn a_server_killed_mid_push_keeps_every_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let first = Server::start(dir.path(), None);
    first.add_user("zhang", "inspector", COUNTY, PASSWORD);
    let addr = first.addr.clone();
    let server = Arc::new(Mutex::new(Some(first)));
    let phone = Phone::new(&format!("http://{addr}"));
    phone.login("zhang", PASSWORD);
    for i in 0..10 {
        phone.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
    }

    // A killer thread: SIGKILL the server at odd moments, then start it again.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let killer = {
        let (server, stop, data, addr) = (server.clone(), stop.clone(), dir.path().to_path_buf(), addr.clone());
        std::thread::spawn(move || {
            let mut kills = 0;
            let mut delay = 37u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                delay = (delay * 7919) % 400 + 80;
                // On PostgreSQL a restart connects and checks the schema, and a push makes a
                // round trip per statement: give each life of the server three times as long.
                std::thread::sleep(Duration::from_millis(if pg::on_postgres() { delay * 3 } else { delay }));
                let mut guard = server.lock().unwrap();
                if let Some(mut s) = guard.take() {
                    s.kill();
                    kills += 1;
                }
                drop(guard);
                std::thread::sleep(Duration::from_millis(50));
                *server.lock().unwrap() = Some(Server::start(&data, Some(&addr)));
            }
            kills
        })
    };

    let mut acknowledged: HashSet<String> = HashSet::new();
    for round in 0..12 {
        for n in 0..40 {
            let mut v = visit(n % 10);
            v.notes = format!("round {round} visit {n} {}", "粉尘".repeat(100));
            phone.store.create_visit(v).unwrap();
        }
        let before: HashSet<String> = phone.store.outbox(usize::MAX).unwrap().into_iter().map(|c| c.hash).collect();
        let _ = phone.try_sync();
        let after: HashSet<String> = phone.store.outbox(usize::MAX).unwrap().into_iter().map(|c| c.hash).collect();
        acknowledged.extend(before.difference(&after).cloned());
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let kills = killer.join().unwrap();
    assert!(kills > 0, "the server was killed");
    assert!(!acknowledged.is_empty(), "some pushes were acknowledged between kills");

    // Acknowledged means durable: every such change is in the restarted server's file.
    let guard = server.lock().unwrap();
    let s = guard.as_ref().unwrap();
    let on_server: HashSet<String> = server_hashes(s).into_iter().collect();
    let missing: Vec<_> = acknowledged.iter().filter(|h| !on_server.contains(*h)).collect();
    assert!(missing.is_empty(), "{} acknowledged changes lost after {kills} kills", missing.len());
    drop(guard);

    // And the phone finishes its sync with nothing lost or doubled.
    sync_until_done(&phone, 20);
    let guard = server.lock().unwrap();
    let rows = server_hashes(guard.as_ref().unwrap());
    let held = all_change_hashes(&phone);
    assert_eq!(rows.len(), held.len(), "each change once");
    assert!(held.iter().all(|h| rows.contains(h)));
}
