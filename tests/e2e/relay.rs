//! The relay between servers (issue 13) with real processes on loopback: two county servers
//! (`ohassist serve --upstream`) relay to one city server; phones (real stores, the real sync
//! client) edit offline and sync to their county. The city holds every record once, with its
//! original authors; a city supervisor's review reaches the county phone; a county-B record
//! a county-A server holds is refused by the city while the rest lands; no county server
//! receives the other county's records; a county server and the city SIGKILLed mid-relay
//! still converge; three tiers (county → city → province) carry a province review down to the
//! county phone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use ohassist_core::model::{ReviewState, Visit};
use ohassist_tests::*;

const CITY: &str = "350100";
const A: &str = "350121";
const B: &str = "350122";
const INTERVAL: &str = "0.3";

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A county server relaying to `city` as `relay` (logged in first, as an admin would).
fn county(dir: &Path, city: &Server, relay: &str, addr: Option<&str>) -> Server {
    let login = cli(
        dir,
        &["upstream", "login", "--url", &city.url(), "--username", relay, "--password-stdin", "--allow-http"],
        &format!("{PASSWORD}\n"),
    );
    assert!(login.contains("logged in to the upstream"), "{login}");
    Server::start_with(dir, addr, &["--upstream", &city.url(), "--upstream-interval", INTERVAL])
}

fn restart(dir: &Path, city: &Server, addr: &str) -> Server {
    Server::start_with(dir, Some(addr), &["--upstream", &city.url(), "--upstream-interval", INTERVAL])
}

/// Change hashes a server holds that are real changes (not `whole` markers), by document.
fn hashes(server: &Server, exclude_down: bool) -> BTreeMap<String, BTreeSet<String>> {
    let db = server.db();
    let sql = if exclude_down {
        "SELECT doc_id, hash FROM changes WHERE whole = 0 AND device_id <> 'upstream:'"
    } else {
        "SELECT doc_id, hash FROM changes WHERE whole = 0"
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stmt = db.prepare(sql).unwrap();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap() {
        let (doc, hash) = row.unwrap();
        out.entry(doc).or_default().insert(hash);
    }
    out
}

/// The line of `ohassist upstream status` that starts with `prefix`.
fn status_line(dir: &Path, prefix: &str) -> String {
    let out = cli(dir, &["upstream", "status"], "");
    out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in {out}")).trim_end().to_string()
}

fn count(server: &Server, sql: &str) -> i64 {
    server.db().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Whether `upstream` holds every change `lower` holds of its own (not what came down), but
/// those of `except`.
fn holds_all(upstream: &Server, lower: &Server, except: &[&str]) -> bool {
    let up = hashes(upstream, false);
    hashes(lower, true)
        .iter()
        .filter(|(doc, _)| !except.contains(&doc.as_str()))
        .all(|(doc, hs)| up.get(doc).is_some_and(|u| u.is_superset(hs)))
}

#[test]
fn two_counties_relay_to_a_city_with_authors_scope_reviews_and_kills() {
    let (dc, da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut city = Server::start(dc.path(), None);
    city.add_user("relay-a", "relay", A, PASSWORD);
    city.add_user("relay-b", "relay", B, PASSWORD);
    city.add_user("city-sup", "supervisor", CITY, PASSWORD);
    // County A's own users: an inspector, and one of a wider unit who registers an enterprise
    // of county B (the county server takes it; the city must refuse it from relay A).
    for (dir, name, unit) in [(da.path(), "zhang", A), (da.path(), "wide", CITY), (db.path(), "li", B)] {
        add_user(dir, name, "inspector", unit, PASSWORD);
    }
    let mut county_a = county(da.path(), &city, "relay-a", None);
    let county_b = county(db.path(), &city, "relay-b", None);

    // Phones edit offline, then sync to their county.
    let pa = Phone::new(&county_a.url());
    pa.login("zhang", PASSWORD);
    let wide = Phone::new(&county_a.url());
    wide.login("wide", PASSWORD);
    let pb = Phone::new(&county_b.url());
    pb.login("li", PASSWORD);
    let mut visits_a = Vec::new();
    let mut visits_b = Vec::new();
    for i in 0..5 {
        pa.store.create_enterprise(enterprise(i, A)).unwrap();
        let v = pa.store.create_visit(visit(i)).unwrap();
        pa.store.edit_visit(&v, |v| v.review.state = ReviewState::Submitted).unwrap();
        visits_a.push(v);
    }
    for i in 10..15 {
        pb.store.create_enterprise(enterprise(i, B)).unwrap();
        visits_b.push(pb.store.create_visit(visit(i)).unwrap());
    }
    let stray = credit_code(20);
    wide.store.create_enterprise(enterprise(20, B)).unwrap();
    wide.store.create_enterprise(enterprise(21, A)).unwrap();
    pa.sync();
    pb.sync();
    wide.sync();

    // The relays run: the city holds everything but the stray record, each change once.
    let timeout = Duration::from_secs(60);
    wait_until("the city to hold both counties", timeout, || {
        holds_all(&city, &county_a, &[&stray]) && holds_all(&city, &county_b, &[])
    });
    assert_eq!(count(&city, &format!("SELECT count(*) FROM documents WHERE id = '{stray}'")), 0);
    assert_eq!(count(&city, "SELECT count(*) FROM enterprises"), 11, "5 + 5 + the wide inspector's own county's");
    let refused: String =
        city.db().query_row("SELECT code FROM refused_uploads WHERE doc_id = ?1", [&stray], |r| r.get(0)).unwrap();
    assert_eq!(refused, "out_of_scope");
    // The original authors, beside the relay account that pushed.
    let unnamed = count(
        &city,
        "SELECT count(*) FROM changes c LEFT JOIN change_origins o ON o.hash = c.hash
         WHERE c.whole = 0 AND o.hash IS NULL",
    );
    assert_eq!(unnamed, 0, "every relayed change names its author");
    let by_author: Vec<(String, String)> = city
        .db()
        .prepare(
            "SELECT DISTINCT u.username, o.username FROM changes c JOIN users u ON u.id = c.user_id
             JOIN change_origins o ON o.hash = c.hash ORDER BY 1, 2",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(
        by_author,
        [("relay-a", "wide"), ("relay-a", "zhang"), ("relay-b", "li")].map(|(a, b)| (a.to_string(), b.to_string()))
    );
    // The status command says so, in words.
    wait_until("county A's status to show the refusal", timeout, || {
        status_line(da.path(), "被拒 / refused now:").ends_with(" 1")
    });

    // No county server receives the other county's records.
    assert_eq!(count(&county_b, &format!("SELECT count(*) FROM documents WHERE county_code <> '{B}'")), 0);
    assert_eq!(count(&county_a, &format!("SELECT count(*) FROM documents WHERE county_code NOT IN ('{A}', '{B}')")), 0);
    assert_eq!(
        count(&county_a, "SELECT count(*) FROM changes WHERE device_id = 'upstream:' AND doc_id IN (SELECT id FROM documents WHERE county_code <> '350121')"),
        0,
        "nothing of county B came down to county A"
    );

    // A city supervisor's review reaches the county phone, through county A's server.
    let mut console = Console::login(&city.url(), "city-sup");
    let (status, page) = console.post(&format!("/visits/{}/review", visits_a[0]), &[("action", "approve")]);
    assert_eq!(status, 303, "{page}");
    wait_until("the review to reach county A", timeout, || {
        count(
            &county_a,
            &format!("SELECT count(*) FROM visits WHERE id = '{}' AND review_state = 'approved'", visits_a[0]),
        ) == 1
    });
    let reviewer: String = county_a
        .db()
        .query_row(
            "SELECT o.username || '/' || o.role || '/' || o.device_id FROM changes c
             JOIN change_origins o ON o.hash = c.hash WHERE c.doc_id = ?1 AND c.device_id = 'upstream:'",
            [&visits_a[0]],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(reviewer, "city-sup/supervisor/web", "county A records who reviewed at the city");
    pa.sync();
    let v: Visit = pa.store.get_visit(&visits_a[0]).unwrap().record;
    assert_eq!(v.review.state, ReviewState::Approved, "the city's review is on the inspector's phone");
    assert_eq!(count(&county_a, "SELECT count(*) FROM refused_uploads WHERE device_id = 'upstream:'"), 0);

    // SIGKILL mid-relay: county A while it pushes a burst, the city while county B relays.
    for i in 30..60 {
        pa.store.create_enterprise(enterprise(i, A)).unwrap();
        pa.store.create_visit(visit(i)).unwrap();
    }
    pa.sync();
    county_a.kill();
    let addr_a = county_a.addr.clone();
    for i in 60..80 {
        pb.store.create_enterprise(enterprise(i, B)).unwrap();
    }
    pb.sync();
    std::thread::sleep(Duration::from_millis(150));
    city.kill();
    let city_addr = city.addr.clone();
    // While the city is down, county B says so, in words.
    wait_until("county B to report the city unreachable", timeout, || {
        status_line(db.path(), "最近错误 / last error").contains("无法连接上级服务器")
    });
    let city = Server::start(dc.path(), Some(&city_addr));
    let county_a = restart(da.path(), &city, &addr_a);
    // Edits made while the city was down and after: they converge too.
    pb.store.edit_visit(&visits_b[0], |v| v.notes = "复查".into()).unwrap();
    pb.sync();
    wait_until("everything to converge after the kills", Duration::from_secs(90), || {
        holds_all(&city, &county_a, &[&stray]) && holds_all(&city, &county_b, &[])
    });
    assert_eq!(count(&city, "SELECT count(*) FROM enterprises"), 11 + 30 + 20);
    assert_eq!(count(&city, "SELECT count(*) FROM visits"), 10 + 30);
    // Each change once: the feed's hashes are unique, and nothing is fed twice by the relays.
    assert_eq!(
        count(&city, "SELECT count(*) FROM changes WHERE whole = 0"),
        count(&city, "SELECT count(DISTINCT hash) FROM changes WHERE whole = 0")
    );
    wait_until("county A's status to show nothing waiting up", timeout, || {
        status_line(da.path(), "待上传 / waiting up:").contains(" 0 ")
    });
    assert!(status_line(da.path(), "上级服务器 / upstream:").contains(&city.url()));
    wait_until("county B's error to clear once the city is back", timeout, || {
        status_line(db.path(), "最近错误 / last error").ends_with("无 / none")
    });
    drop(county_b);
}

/// The document a server holds, as its record.
fn server_visit(server: &Server, id: &str) -> Visit {
    let bytes: Vec<u8> =
        server.db().query_row("SELECT bytes FROM documents WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    ohassist_core::doc::Document::load(ohassist_core::model::RecordKind::Visit, id, &bytes).unwrap().read().unwrap()
}

/// Mixed topologies: the same record edited by a phone of the county (through its county's
/// server and the relay) and by a city inspector whose phone syncs to the city directly; then
/// the county's phone moves to the city itself (the county gives its server up) and pushes
/// everything it holds there again. Every tier converges and holds each change once.
#[test]
fn the_same_record_reaching_the_city_directly_and_through_a_relay_converges_with_each_change_once() {
    let (dc, da) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let city = Server::start(dc.path(), None);
    city.add_user("relay-a", "relay", A, PASSWORD);
    city.add_user("roam", "inspector", CITY, PASSWORD);
    add_user(da.path(), "zhang", "inspector", A, PASSWORD);
    let county_a = county(da.path(), &city, "relay-a", None);
    let pa = Phone::new(&county_a.url());
    pa.login("zhang", PASSWORD);
    pa.store.create_enterprise(enterprise(1, A)).unwrap();
    let id = pa.store.create_visit(visit(1)).unwrap();
    pa.sync();
    let timeout = Duration::from_secs(60);
    wait_until("the visit to reach the city", timeout, || holds_all(&city, &county_a, &[]));

    // A city inspector syncing straight to the city gets it, and both edit it offline.
    let roam = Phone::new(&city.url());
    roam.login("roam", PASSWORD);
    roam.sync();
    pa.store.edit_visit(&id, |v| v.notes = "县：已整改".into()).unwrap();
    pa.store.edit_visit(&id, |v| v.management_system.emergency_plan = Some(true)).unwrap();
    roam.store.edit_visit(&id, |v| v.notes = "市：待复查".into()).unwrap();
    roam.store.edit_visit(&id, |v| v.management_system.system_established = Some(true)).unwrap();
    roam.sync();
    pa.sync();
    wait_until("both edits at both servers", timeout, || {
        let (c, k) = (server_visit(&city, &id), server_visit(&county_a, &id));
        c == k
            && c.management_system.emergency_plan == Some(true)
            && c.management_system.system_established == Some(true)
    });
    pa.sync();
    roam.sync();
    let (va, vr) = (pa.store.get_visit(&id).unwrap(), roam.store.get_visit(&id).unwrap());
    assert_eq!(va.record, vr.record, "the phones converge");
    assert_eq!(va.version, vr.version);
    assert_eq!(va.record, server_visit(&city, &id));
    for phone in [&pa, &roam] {
        let conflicts = phone.store.conflicts(&id).unwrap();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].path_string(), "notes");
    }

    // The county gives its server up: its phone logs in to the city and pushes again all it
    // holds (a phone that changes server queues everything); the city keeps each change once.
    city.add_user("zhang", "inspector", A, PASSWORD);
    let before = count(&city, "SELECT count(*) FROM changes WHERE whole = 0");
    let mut moved = pa;
    moved.config.server_url = city.url();
    moved.login("zhang", PASSWORD);
    let report = moved.sync();
    assert!(report.changes_pushed > 0, "everything pushed again: {report:?}");
    assert_eq!(count(&city, "SELECT count(*) FROM changes WHERE whole = 0"), before, "nothing stored twice");
    moved.store.edit_visit(&id, |v| v.notes = "县：已整改，市已复查".into()).unwrap();
    moved.sync();
    roam.sync();
    assert_eq!(roam.store.get_visit(&id).unwrap().record, moved.store.get_visit(&id).unwrap().record);
    assert!(roam.store.conflicts(&id).unwrap().is_empty(), "the later edit settles the notes");
    for server in [&city, &county_a] {
        assert_eq!(
            count(server, "SELECT count(*) FROM changes WHERE whole = 0"),
            count(server, "SELECT count(DISTINCT hash) FROM changes WHERE whole = 0")
        );
    }
    // The county server, still relaying, gets the last edit down as well.
    wait_until("the county to get the last edit", timeout, || server_visit(&county_a, &id) == server_visit(&city, &id));
}

/// Issue 13, tables per tier: a city server that holds its counties' records by relay gives
/// Table 1 and Table 2, cell by cell, as a single server does that was fed the same records by
/// phones syncing to it directly.
#[test]
fn a_citys_tables_by_relay_equal_a_single_servers_cell_by_cell() {
    use ohassist_core::model::County;
    use ohassist_core::synthetic;
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let (city, control) = (Server::start(dirs[0].path(), None), Server::start(dirs[1].path(), None));
    for server in [&city, &control] {
        server.add_user("chief", "supervisor", CITY, PASSWORD);
    }
    let last_day = time::macros::date!(2025 - 11 - 30);
    let mut lower = Vec::new();
    for (k, (code, user)) in [(A, "za"), (B, "zb")].into_iter().enumerate() {
        let relay = format!("relay-{user}");
        city.add_user(&relay, "relay", code, PASSWORD);
        control.add_user(user, "inspector", code, PASSWORD);
        add_user(dirs[2 + k].path(), user, "inspector", code, PASSWORD);
        let server = county(dirs[2 + k].path(), &city, &relay, None);
        // The same records entered on a phone of the county's server and on one of the control.
        let (phone, twin) = (Phone::new(&server.url()), Phone::new(&control.url()));
        phone.login(user, PASSWORD);
        twin.login(user, PASSWORD);
        let county = County { code: code.into(), name: format!("县{code}") };
        for serial in 0..12u64 {
            let e = synthetic::enterprise(&county, serial, 2025);
            let visits = synthetic::visits(&e, serial, 2025, last_day, (user, "检查员"));
            for p in [&phone, &twin] {
                p.store.create_enterprise(e.clone()).unwrap();
                for v in &visits {
                    p.store.create_visit(v.clone()).unwrap();
                }
            }
        }
        phone.sync();
        twin.sync();
        lower.push(server);
    }
    wait_until("both counties' records at the city", Duration::from_secs(90), || {
        lower.iter().all(|county| holds_all(&city, county, &[]))
    });
    let table = |server: &Server, n: u32| {
        let token = token(&server.url(), "chief", PASSWORD, "desk");
        let answer = get(&format!("{}/api/v1/tables/{n}?year=2025&unit={CITY}", server.url()), Some(&token));
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        answer.json()["rows"].clone()
    };
    let t1 = table(&city, 1);
    assert_eq!(t1.as_array().unwrap().len(), 24, "every enterprise of both counties: {t1}");
    assert_eq!(t1, table(&control, 1), "Table 1, cell by cell");
    let t2 = table(&city, 2);
    assert_eq!(t2.as_array().unwrap().len(), 3, "two counties and 合计: {t2}");
    assert_eq!(t2[2][1], "24");
    assert_eq!(t2, table(&control, 2), "Table 2, cell by cell");
}

/// Three tiers (issue 13): a county server relays to a city server that relays to the
/// province. The county's records reach the province with their original author, the
/// province's Table 2 counts them in the city's row, and a province supervisor's review comes
/// down both relays to the inspector's phone.
#[test]
fn county_city_province_a_province_review_reaches_the_county_phone() {
    let (dp, dc, da) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    const PROVINCE: &str = "350000";
    let province = Server::start(dp.path(), None);
    province.add_user("relay-city", "relay", CITY, PASSWORD);
    province.add_user("prov-sup", "supervisor", PROVINCE, PASSWORD);
    add_user(dc.path(), "relay-a", "relay", A, PASSWORD);
    let city = county(dc.path(), &province, "relay-city", None);
    add_user(da.path(), "zhang", "inspector", A, PASSWORD);
    let county_a = county(da.path(), &city, "relay-a", None);

    let phone = Phone::new(&county_a.url());
    phone.login("zhang", PASSWORD);
    phone.store.create_enterprise(enterprise(1, A)).unwrap();
    let id = phone.store.create_visit(visit(1)).unwrap();
    phone.store.edit_visit(&id, |v| v.review.state = ReviewState::Submitted).unwrap();
    phone.sync();
    let timeout = Duration::from_secs(90);
    wait_until("the visit to reach the province", timeout, || {
        count(&province, &format!("SELECT count(*) FROM visits WHERE id = '{id}' AND review_state = 'submitted'")) == 1
    });
    let author: String = province
        .db()
        .query_row(
            "SELECT o.username FROM changes c JOIN change_origins o ON o.hash = c.hash
             WHERE c.doc_id = ?1 ORDER BY c.seq DESC LIMIT 1",
            [&id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(author, "zhang", "the province names the county's inspector, not a relay");
    let token = token(&province.url(), "prov-sup", PASSWORD, "desk");
    let t2 = get(&format!("{}/api/v1/tables/2?year=2025&unit={PROVINCE}", province.url()), Some(&token)).json();
    assert_eq!(t2["rows"][0][0], "福州市", "{t2}");
    assert_eq!(t2["rows"][0][1], "1", "one enterprise assisted in the city's row: {t2}");

    let mut console = Console::login(&province.url(), "prov-sup");
    let (status, page) = console.post(&format!("/visits/{id}/review"), &[("action", "approve")]);
    assert_eq!(status, 303, "{page}");
    wait_until("the province's review to reach county A", timeout, || {
        count(&county_a, &format!("SELECT count(*) FROM visits WHERE id = '{id}' AND review_state = 'approved'")) == 1
    });
    phone.sync();
    let v: Visit = phone.store.get_visit(&id).unwrap().record;
    assert_eq!(v.review.state, ReviewState::Approved, "the province's review is on the inspector's phone");
    for server in [&province, &city, &county_a] {
        assert_eq!(
            count(server, "SELECT count(*) FROM changes WHERE whole = 0"),
            count(server, "SELECT count(DISTINCT hash) FROM changes WHERE whole = 0"),
            "each change once"
        );
    }
}
