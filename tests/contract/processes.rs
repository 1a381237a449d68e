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

/// One PostgreSQL database and the data directory its server processes share.
struct SharedDatabase {
    url: String,
    data: tempfile::TempDir,
}

impl SharedDatabase {
    /// A server process on the database, on a free port or on `addr` (a restart).
    fn server(&self, addr: Option<&str>) -> Server {
        Server::start_with(self.data.path(), addr, &["--database", &self.url])
    }
}

/// Two server processes on a fresh database, with inspectors `users` of the county.
fn two_processes(users: &[&str]) -> (SharedDatabase, Server, Server) {
    let pg = SharedDatabase { url: ohassist_tests::pg::cluster().fresh_database(), data: tempfile::tempdir().unwrap() };
    // The first start creates the schema and the admin; the second finds both.
    let (one, two) = (pg.server(None), pg.server(None));
    for name in users {
        add_user_on(pg.data.path(), Some(&pg.url), name, "inspector", COUNTY, PASSWORD);
    }
    (pg, one, two)
}

#[test]
fn two_processes_on_one_postgres_converge_through_cuts_and_a_sigkill() {
    let (pg, one, mut two) = two_processes(&["zhang", "li", "wang", "zhao"]);
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
            two = pg.server(Some(&two.addr.clone()));
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

    let db = ohassist_tests::pg::connect(&pg.url, false);
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

/// The failed-login limit is the database's, not a process's: four wrong passwords at one
/// process and one at the other use up the five of the window, the right password is then
/// refused `rate_limited` at both (with `Retry-After`), and a restarted process still counts
/// them.
#[test]
fn failed_logins_count_across_processes_and_restarts() {
    let (pg, one, mut two) = two_processes(&["zhang"]);
    let login = |server: &Server, password: &str| {
        let body =
            serde_json::json!({"username": "Zhang", "password": password, "device_id": "d1", "device_name": "d1"});
        let headers = [("content-type", "application/json")];
        post(&format!("{}/api/v1/login", server.url()), None, &headers, serde_json::to_vec(&body).unwrap())
    };
    for n in 0..5 {
        let at = if n < 4 { &one } else { &two };
        let answer = login(at, "wrong password");
        assert_eq!((answer.status, answer.code()), (401, "invalid_credentials".to_string()), "attempt {n}");
    }
    for server in [&one, &two] {
        let answer = login(server, PASSWORD);
        assert_eq!((answer.status, answer.code()), (429, "rate_limited".to_string()), "{}", answer.text());
        let wait: u64 = answer.header("retry-after").parse().unwrap();
        assert!((1..=300).contains(&wait), "Retry-After {wait}");
    }
    let addr = two.addr.clone();
    two.kill();
    let two = pg.server(Some(&addr));
    assert_eq!(login(&two, PASSWORD).status, 429, "a restart forgets no failure");
    let db = ohassist_tests::pg::connect(&pg.url, false);
    let kept: i64 =
        db.query_row("SELECT count(*) FROM login_failures WHERE username = 'zhang'", [], |r| r.get(0)).unwrap();
    assert_eq!(kept, 5, "the five failures, under the lower-cased name");
}
