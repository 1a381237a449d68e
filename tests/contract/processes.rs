//! Two server processes on one PostgreSQL behind cutting proxies, phones spread over both,
//! one process killed with SIGKILL mid-run (issue 14): every phone converges, the feed holds
//! every change once, and every phone holds every change of the feed (none skipped).

use std::collections::BTreeSet;

use ohassist_tests::proxy::{Faults, Proxy};
use ohassist_tests::*;

const COUNTY: &str = "350121";

fn sync_until_done(phone: &Phone) {
    for attempt in 1..=80 {
        match phone.try_sync() {
            Ok(_) => return,
            Err(e) => eprintln!("sync attempt {attempt} failed: {e}"),
        }
    }
    panic!("no sync completed in 80 attempts");
}

/// Every change hash a phone's store holds.
fn phone_hashes(phone: &Phone) -> BTreeSet<String> {
    let conn = phone_db(phone.store.path());
    let rows: Vec<(String, String, Vec<u8>)> = conn
        .prepare("SELECT id, kind, bytes FROM documents")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = BTreeSet::new();
    for (id, kind, bytes) in rows {
        let kind = ohassist_core::model::RecordKind::parse(&kind).unwrap();
        let doc = ohassist_core::doc::Document::load(kind, &id, &bytes).unwrap();
        out.extend(doc.changes_since(&[]).iter().map(|c| c.hash().to_string()));
    }
    out
}

#[test]
fn two_processes_on_one_postgres_converge_through_cuts_and_a_sigkill() {
    let url = ohassist_tests::pg::cluster().fresh_database();
    let data = tempfile::tempdir().unwrap();
    let db = ["--database", url.as_str()];
    // The first start creates the schema and the admin; the second finds both.
    let one = Server::start_with(data.path(), None, &db);
    let mut two = Server::start_with(data.path(), None, &db);
    for name in ["zhang", "li", "wang", "zhao"] {
        cli(
            data.path(),
            &[
                "--database",
                &url,
                "user",
                "add",
                "--username",
                name,
                "--display-name",
                name,
                "--role",
                "inspector",
                "--org-unit",
                COUNTY,
                "--password-stdin",
            ],
            &format!("{PASSWORD}\n"),
        );
    }
    let faults = Faults { cut_request: 0.25, cut_response: 0.25, max_offset: 3_000, seed: 11, ..Faults::default() };
    let proxies = [
        Proxy::start(&one.addr, Faults::default(), None),
        Proxy::start(&one.addr, Faults::default(), None),
        Proxy::start(&two.addr, Faults::default(), None),
        Proxy::start(&two.addr, Faults::default(), None),
    ];
    let phones: Vec<Phone> = proxies.iter().map(|p| Phone::new(&p.url())).collect();
    for (phone, name) in phones.iter().zip(["zhang", "li", "wang", "zhao"]) {
        phone.login(name, PASSWORD);
    }
    for p in &proxies {
        p.set_faults(faults);
    }

    // Phone 0 registers the enterprises; everyone gets them, then all edit the same visits.
    for i in 0..6 {
        phones[0].store.create_enterprise(enterprise(i, COUNTY)).unwrap();
    }
    let shared: Vec<String> = (0..6).map(|i| phones[0].store.create_visit(visit(i)).unwrap()).collect();
    sync_until_done(&phones[0]);
    for phone in &phones[1..] {
        sync_until_done(phone);
    }
    let mut own = Vec::new();
    for round in 0..3 {
        for (n, phone) in phones.iter().enumerate() {
            for id in &shared {
                phone.store.edit_visit(id, |v| v.notes = format!("{}；第{round}轮 手机{n}", v.notes)).unwrap();
            }
            let mut v = visit(n);
            v.notes = format!("手机{n} 第{round}轮 新走访 {}", "现场记录".repeat(60));
            own.push(phone.store.create_visit(v).unwrap());
        }
        if round == 1 {
            // Process two dies mid-run; the phones behind it keep trying until it is back.
            two.kill();
            for phone in &phones[2..] {
                assert!(phone.try_sync().is_err(), "a sync through a dead process fails");
            }
            two = Server::start_with(data.path(), Some(&two.addr.clone()), &db);
        }
        for phone in &phones {
            sync_until_done(phone);
        }
    }
    let cuts: u64 = proxies.iter().map(|p| p.stats.cuts.load(std::sync::atomic::Ordering::SeqCst)).sum();
    assert!(cuts > 0, "the proxies did cut");
    // Quiet links, two more rounds: everything reaches everyone.
    for p in &proxies {
        p.set_faults(Faults::default());
    }
    for _ in 0..2 {
        for phone in &phones {
            sync_until_done(phone);
        }
    }

    let db = ohassist_tests::pg::connect(&url, false);
    let feed: Vec<String> = db
        .prepare("SELECT hash FROM changes ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let distinct: BTreeSet<String> = feed.iter().cloned().collect();
    assert_eq!(distinct.len(), feed.len(), "each change once in the feed");
    for (n, phone) in phones.iter().enumerate() {
        assert_eq!(phone.store.outbox_len().unwrap(), 0, "phone {n}: every change acknowledged");
        assert_eq!(phone_hashes(phone), distinct, "phone {n} holds exactly the feed: nothing skipped");
    }
    for id in shared.iter().chain(&own) {
        let notes: Vec<String> = phones.iter().map(|p| p.store.get_visit(id).unwrap().record.notes).collect();
        assert!(notes.windows(2).all(|w| w[0] == w[1]), "{id}: every phone reads the same visit");
    }
    // The four phones wrote the same field concurrently: one write wins on every phone alike
    // (a conflict the console shows), and it is one of theirs from the last round.
    let last = phones[0].store.get_visit(&shared[0]).unwrap().record.notes;
    assert!((0..4).any(|n| last.ends_with(&format!("第2轮 手机{n}"))), "{last}");
}
