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
fn county(dir: &Path, upstream: &str, relay: &str, addr: Option<&str>) -> Server {
    let login = cli(
        dir,
        &["upstream", "login", "--url", upstream, "--username", relay, "--password-stdin", "--allow-http"],
        &format!("{PASSWORD}\n"),
    );
    assert!(login.contains("logged in to the upstream"), "{login}");
    Server::start_with(dir, addr, &["--upstream", upstream, "--upstream-interval", INTERVAL])
}

fn restart(dir: &Path, upstream: &str, addr: &str) -> Server {
    Server::start_with(dir, Some(addr), &["--upstream", upstream, "--upstream-interval", INTERVAL])
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
    let mut county_a = county(da.path(), &city.url(), "relay-a", None);
    let county_b = county(db.path(), &city.url(), "relay-b", None);

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
    let county_a = restart(da.path(), &city.url(), &addr_a);
    // Edits made while the city was down and after: they converge too.
    pb.store.edit_visit(&visits_b[0], |v| v.notes = "复查".into()).unwrap();
    pb.sync();
    wait_until("everything to converge after the kills", Duration::from_secs(90), || {
        holds_all(&city, &county_a, &[&stray]) && holds_all(&city, &county_b, &[])
    });
    assert_eq!(count(&city, "SELECT count(*) FROM enterprises"), 11 + 30 + 20);
    assert_eq!(count(&city, "SELECT count(*) FROM visits"), 10 + 30);
    // Each change once: the feed's hashes are unique, and nothing is fed twice by the relays.
    // One query, one snapshot: a relay may write between two.
    assert_eq!(
        count(&city, "SELECT count(*) - count(DISTINCT hash) FROM changes WHERE whole = 0"),
        0,
        "each change once"
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
    let county_a = county(da.path(), &city.url(), "relay-a", None);
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
        // One query, one snapshot: a relay may write between two.
        assert_eq!(
            count(server, "SELECT count(*) - count(DISTINCT hash) FROM changes WHERE whole = 0"),
            0,
            "each change once"
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
        let server = county(dirs[2 + k].path(), &city.url(), &relay, None);
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
    let city = county(dc.path(), &province.url(), "relay-city", None);
    add_user(da.path(), "zhang", "inspector", A, PASSWORD);
    let county_a = county(da.path(), &city.url(), "relay-a", None);

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
        // One query, one snapshot: a relay may write between two.
        assert_eq!(
            count(server, "SELECT count(*) - count(DISTINCT hash) FROM changes WHERE whole = 0"),
            0,
            "each change once"
        );
    }
}

/// Every document a server holds, with its heads (restricted to `county` when given).
fn server_heads(server: &Server, county: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let db = server.db();
    let mut stmt = db.prepare("SELECT id, heads, county_code FROM documents").unwrap();
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?)))
        .unwrap()
        .map(|r| r.unwrap());
    rows.filter(|(_, _, c)| county.is_none_or(|k| k == c))
        .map(|(id, heads, _)| (id, serde_json::from_str::<BTreeSet<String>>(&heads).unwrap()))
        .collect()
}

/// Every document a phone holds, with its heads.
fn phone_heads(phone: &Phone) -> BTreeMap<String, BTreeSet<String>> {
    phone.store.all_heads().unwrap().into_iter().map(|(id, h)| (id, h.into_iter().collect())).collect()
}

/// Syncs until a sync completes (a phone's next attempts after a failed one).
fn sync_until_done(phone: &Phone) {
    for attempt in 1..=30 {
        match phone.try_sync() {
            Ok(_) => return,
            Err(e) => eprintln!("sync attempt {attempt} failed: {e}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no sync completed in 30 attempts");
}

/// Whether each change is stored once: the feed's rows (not `whole` markers) are distinct.
fn each_change_once(server: &Server) -> bool {
    // One query, one snapshot: a relay may write between two.
    count(server, "SELECT count(*) - count(DISTINCT hash) FROM changes WHERE whole = 0") == 0
}

/// Issue 13's full fault run. Two county servers (A, B) relay to a city server, the city relays
/// to a province server, and county D has no server: its phones sync to the city directly.
/// Every relay link goes through a proxy that cuts connections. Phones edit offline in each
/// county, the same visit is edited from two tiers (a city supervisor's review and the county
/// phone's edit; a province supervisor's review and another), and each of the four servers is
/// SIGKILLed once mid-run and started again. After the faults stop: every server and phone
/// holds the same heads of every record it holds, each change once at every tier, the city's
/// and the province's Table 1 and Table 2 equal those of a single server (the control) fed the
/// same edits, and the province's review is on the inspector's phone in county B.
#[test]
fn the_full_fault_run_county_city_province_with_cuts_and_kills_converges() {
    use ohassist_core::model::County;
    use ohassist_core::synthetic;
    use ohassist_tests::proxy::{Faults, Proxy};
    const PROVINCE: &str = "350000";
    const D: &str = "350123";
    let started = Instant::now();
    let (dp, dc, da, db, dk) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    // The province, and the control: one server that every phone's twin syncs to directly.
    let mut province = Server::start(dp.path(), None);
    province.add_user("relay-city", "relay", CITY, PASSWORD);
    province.add_user("prov-sup", "supervisor", PROVINCE, PASSWORD);
    let control = Server::start(dk.path(), None);
    for (name, role, unit) in [
        ("city-sup", "supervisor", CITY),
        ("prov-sup", "supervisor", PROVINCE),
        ("za", "inspector", A),
        ("zb", "inspector", B),
        ("zd", "inspector", D),
    ] {
        control.add_user(name, role, unit, PASSWORD);
    }
    // The city relays to the province through a cutting proxy; so do the counties to the city.
    let proxy_p = Proxy::start(&province.addr, Faults::default(), None);
    for (name, role, unit) in
        [("relay-a", "relay", A), ("relay-b", "relay", B), ("city-sup", "supervisor", CITY), ("zd", "inspector", D)]
    {
        add_user(dc.path(), name, role, unit, PASSWORD);
    }
    let mut city = county(dc.path(), &proxy_p.url(), "relay-city", None);
    let proxy_c_a = Proxy::start(&city.addr, Faults::default(), None);
    let proxy_c_b = Proxy::start(&city.addr, Faults::default(), None);
    add_user(da.path(), "za", "inspector", A, PASSWORD);
    add_user(db.path(), "zb", "inspector", B, PASSWORD);
    let mut county_a = county(da.path(), &proxy_c_a.url(), "relay-a", None);
    let mut county_b = county(db.path(), &proxy_c_b.url(), "relay-b", None);
    let faults = |seed| Faults {
        cut_request: 0.25,
        cut_response: 0.25,
        max_offset: 1_000,
        seed,
        max_cuts: 4,
        ..Faults::default()
    };
    proxy_p.set_faults(faults(11));
    proxy_c_a.set_faults(faults(12));
    proxy_c_b.set_faults(faults(13));

    // Phones in each county, and their twins at the control, enter the same records offline.
    let phones: Vec<(Phone, Phone, &str)> = [(&county_a, "za", A), (&county_b, "zb", B), (&city, "zd", D)]
        .into_iter()
        .map(|(server, user, code)| {
            let (phone, twin) = (Phone::new(&server.url()), Phone::new(&control.url()));
            phone.login(user, PASSWORD);
            twin.login(user, PASSWORD);
            (phone, twin, code)
        })
        .collect();
    let last_day = time::macros::date!(2025 - 11 - 30);
    // The first visits of each county's first enterprise: (the phone's id, the twin's id).
    let mut first: BTreeMap<&str, Vec<(String, String)>> = BTreeMap::new();
    for (k, (phone, twin, code)) in phones.iter().enumerate() {
        let county = County { code: code.to_string(), name: format!("县{code}") };
        for serial in 0..5u64 {
            let e = synthetic::enterprise(&county, 100 * k as u64 + serial, 2025);
            phone.store.create_enterprise(e.clone()).unwrap();
            twin.store.create_enterprise(e.clone()).unwrap();
            for v in synthetic::visits(&e, serial, 2025, last_day, ("检查员", "检查员")) {
                let ids = (phone.store.create_visit(v.clone()).unwrap(), twin.store.create_visit(v).unwrap());
                if serial == 0 {
                    first.entry(*code).or_default().push(ids);
                }
            }
        }
    }
    // The same edit on a county's phone and on its twin.
    let edit_both = |k: usize, j: usize, f: &dyn Fn(&mut Visit)| {
        let (phone, twin, code) = &phones[k];
        let (a, b) = &first[code][j];
        phone.store.edit_visit(a, |v| f(v)).unwrap();
        twin.store.edit_visit(b, |v| f(v)).unwrap();
    };
    // One visit of each county submitted for review.
    for k in 0..3 {
        edit_both(k, 0, &|v| v.review.state = ReviewState::Submitted);
    }
    let (xa, xb) = (first[A][0].clone(), first[B][0].clone());
    for (phone, twin, _) in &phones {
        sync_until_done(phone);
        twin.sync();
    }

    // County A is killed while it relays its phone's push, and started again.
    std::thread::sleep(Duration::from_millis(100));
    let addr_a = county_a.addr.clone();
    county_a.kill();
    county_a = restart(da.path(), &proxy_c_a.url(), &addr_a);
    let timeout = Duration::from_secs(60);
    wait_until("county A's submitted visit at the city", timeout, || {
        count(&city, &format!("SELECT count(*) FROM visits WHERE id = '{}' AND review_state = 'submitted'", xa.0)) == 1
    });

    // The same visit from two tiers: the city's supervisor approves it while the county's
    // phone, offline, edits it; the control gets both as well.
    for (server, id) in [(&city, &xa.0), (&control, &xa.1)] {
        let (status, page) =
            Console::login(&server.url(), "city-sup").post(&format!("/visits/{id}/review"), &[("action", "approve")]);
        assert_eq!(status, 303, "{page}");
    }
    edit_both(0, 0, &|v| v.notes = "县：现场复查，整改到位".into());
    edit_both(0, 1, &|v| v.management_system.emergency_plan = Some(true));
    edit_both(1, 1, &|v| v.notes = "第二次帮扶：复查".into());
    for (phone, twin, _) in &phones[..2] {
        sync_until_done(phone);
        twin.sync();
    }

    // The city is killed while both counties relay to it and it relays to the province. County
    // D's phone edits offline meanwhile and syncs once the city is back.
    std::thread::sleep(Duration::from_millis(150));
    let city_addr = city.addr.clone();
    city.kill();
    edit_both(2, 1, &|v| v.management_system.system_established = Some(true));
    std::thread::sleep(Duration::from_millis(300));
    city = restart(dc.path(), &proxy_p.url(), &city_addr);
    sync_until_done(&phones[2].0);
    phones[2].1.sync();

    // The province's supervisor reviews county B's visit once it is there; then the province
    // is killed while the review goes down, and county B while it pulls.
    wait_until("county B's submitted visit at the province", timeout, || {
        count(&province, &format!("SELECT count(*) FROM visits WHERE id = '{}' AND review_state = 'submitted'", xb.0))
            == 1
    });
    for (server, id) in [(&province, &xb.0), (&control, &xb.1)] {
        let (status, page) =
            Console::login(&server.url(), "prov-sup").post(&format!("/visits/{id}/review"), &[("action", "approve")]);
        assert_eq!(status, 303, "{page}");
    }
    edit_both(1, 0, &|v| v.notes = "县：企业已提交整改报告".into());
    sync_until_done(&phones[1].0);
    phones[1].1.sync();
    std::thread::sleep(Duration::from_millis(200));
    let province_addr = province.addr.clone();
    province.kill();
    std::thread::sleep(Duration::from_millis(300));
    province = Server::start(dp.path(), Some(&province_addr));
    std::thread::sleep(Duration::from_millis(500));
    let addr_b = county_b.addr.clone();
    county_b.kill();
    county_b = restart(db.path(), &proxy_c_b.url(), &addr_b);
    let cuts: u64 =
        [&proxy_p, &proxy_c_a, &proxy_c_b].iter().map(|p| p.stats.cuts.load(std::sync::atomic::Ordering::SeqCst)).sum();
    assert!(cuts > 0, "the proxies cut connections on the relay links");

    // The faults stop. Every tier converges: the city holds the province's heads of every record
    // (the province holds all three counties), each county server the city's of its county.
    for p in [&proxy_p, &proxy_c_a, &proxy_c_b] {
        p.set_faults(Faults::default());
    }
    wait_until("every tier to converge", Duration::from_secs(90), || {
        let (p, c) = (server_heads(&province, None), server_heads(&city, None));
        p == c
            && server_heads(&county_a, None) == server_heads(&city, Some(A))
            && server_heads(&county_b, None) == server_heads(&city, Some(B))
            && count(
                &county_b,
                &format!("SELECT count(*) FROM visits WHERE id = '{}' AND review_state = 'approved'", xb.0),
            ) == 1
    });
    for table in ["enterprises", "visits"] {
        let sql = format!("SELECT count(*) FROM {table}");
        assert_eq!(count(&province, &sql), count(&control, &sql), "the province holds every {table}");
    }
    for (phone, _, code) in &phones {
        sync_until_done(phone);
        sync_until_done(phone);
        assert_eq!(phone_heads(phone), server_heads(&province, Some(code)), "county {code}'s phone converges");
    }
    // Both reviews and both county edits are in the merged records, at every tier and phone.
    let va: Visit = phones[0].0.store.get_visit(&xa.0).unwrap().record;
    assert_eq!((va.review.state, va.notes.as_str()), (ReviewState::Approved, "县：现场复查，整改到位"));
    let vb: Visit = phones[1].0.store.get_visit(&xb.0).unwrap().record;
    assert_eq!(vb.review.state, ReviewState::Approved, "the province's review is on county B's inspector's phone");
    assert_eq!(vb.notes, "县：企业已提交整改报告");
    assert_eq!(server_visit(&province, &xa.0), va);
    assert_eq!(server_visit(&county_b, &xb.0), vb);

    // Each change once at every tier, and every tier holds what each lower one holds.
    for server in [&province, &city, &county_a, &county_b] {
        assert!(each_change_once(server), "a change stored twice at {}", server.addr);
    }
    assert!(holds_all(&city, &county_a, &[]) && holds_all(&city, &county_b, &[]) && holds_all(&province, &city, &[]));
    let change_rows = |s: &Server| count(s, "SELECT count(*) FROM changes WHERE whole = 0");
    assert_eq!(change_rows(&province), change_rows(&city), "the province and the city hold the same changes");

    // The city's and the province's tables equal the control's, cell by cell.
    let table = |server: &Server, user: &str, unit: &str, n: u32| {
        let token = token(&server.url(), user, PASSWORD, &format!("desk-{user}"));
        let answer = get(&format!("{}/api/v1/tables/{n}?year=2025&unit={unit}", server.url()), Some(&token));
        assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
        answer.json()["rows"].clone()
    };
    for n in [1, 2] {
        let at_city = table(&city, "city-sup", CITY, n);
        assert_eq!(at_city, table(&control, "city-sup", CITY, n), "the city's Table {n}");
        let at_province = table(&province, "prov-sup", PROVINCE, n);
        assert_eq!(at_province, table(&control, "prov-sup", PROVINCE, n), "the province's Table {n}");
    }
    assert_eq!(table(&city, "city-sup", CITY, 1).as_array().unwrap().len(), 15, "three counties' enterprises");
    eprintln!("the full fault run took {:?} ({cuts} cuts)", started.elapsed());
}

/// A read-write connection to a stopped server's database, for a test that sets the scene.
fn writable(dir: &Path) -> ohassist_server::sql::Connection {
    server_db_writable(dir)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// `POST /api/v1/login/renew` with bearer `token`, offering `new_token`.
fn renew(server: &Server, token: &str, new_token: &str) -> Answer {
    post(
        &format!("{}/api/v1/login/renew", server.url()),
        Some(token),
        &[("content-type", "application/json")],
        serde_json::to_vec(&serde_json::json!({ "token": new_token })).unwrap(),
    )
}

/// The relay's token at the upstream renews itself before it expires (issue 13: "the token
/// kept in the server's database, rotated like a device's"): the lower server offers a new
/// token, stores it, and the old one stops working; a renewal whose answer was lost (the
/// upstream took the new token, the lower server never heard) is finished at the next round.
/// Only a relay account may renew; a phone logs in again.
#[test]
fn the_relays_token_renews_itself_before_it_expires_and_the_old_one_stops_working() {
    let (dc, da) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let city = Server::start(dc.path(), None);
    city.add_user("relay-a", "relay", A, PASSWORD);
    city.add_user("city-sup", "supervisor", CITY, PASSWORD);
    add_user(da.path(), "zhang", "inspector", A, PASSWORD);
    let mut county_a = county(da.path(), &city.url(), "relay-a", None);
    let link = |s: &Server| -> (String, Option<String>, Option<i64>, String) {
        s.db()
            .query_row("SELECT token, next_token, token_expires_at, device_id FROM upstream", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
    };
    let (t1, next, expires, device) = link(&county_a);
    assert!(next.is_none());
    let city_expiry = |device: &str| -> i64 {
        city.db().query_row("SELECT expires_at FROM devices WHERE id = ?1", [device], |r| r.get(0)).unwrap()
    };
    assert_eq!(expires, Some(city_expiry(&device)), "the login's expiry is kept");
    let phone = Phone::new(&county_a.url());
    phone.login("zhang", PASSWORD);
    phone.store.create_enterprise(enterprise(1, A)).unwrap();
    phone.sync();
    let timeout = Duration::from_secs(60);
    wait_until("the enterprise at the city", timeout, || holds_all(&city, &county_a, &[]));

    // The token is a day from expiring (as the county server knows it): the next round renews.
    let addr = county_a.addr.clone();
    county_a.kill();
    writable(da.path()).execute("UPDATE upstream SET token_expires_at = ?1", [unix_now() + 24 * 3600]).unwrap();
    county_a = restart(da.path(), &city.url(), &addr);
    wait_until("the token to be renewed", timeout, || link(&county_a).0 != t1);
    let (t2, next, expires, _) = link(&county_a);
    assert!(next.is_none(), "no renewal in flight");
    let at_city = city_expiry(&device);
    assert_eq!(expires, Some(at_city));
    assert!(at_city > unix_now() + 89 * 24 * 3600, "another 90 days: {at_city}");
    // Both consoles of the link show the new expiry: the command line and the admin page.
    let shown = ohassist_server::relay::local_time(at_city);
    assert!(status_line(da.path(), "令牌有效期至 / token valid until:").contains(&shown), "{shown}");
    let old = renew(&city, &t1, &t2);
    assert_eq!((old.status, old.code()), (401, "unauthorized".to_string()), "the old token stops working");
    phone.store.create_enterprise(enterprise(2, A)).unwrap();
    phone.sync();
    wait_until("relaying on with the new token", timeout, || holds_all(&city, &county_a, &[]));

    // A renewal whose answer was lost: the city took the offered token, the county server kept
    // it as `next_token` only. Its next round finishes the renewal.
    county_a.kill();
    let t3 = "3".repeat(64);
    let taken = renew(&city, &t2, &t3);
    assert_eq!(taken.status, 200, "{}", taken.text());
    writable(da.path())
        .execute(
            "UPDATE upstream SET next_token = ?1, token_expires_at = ?2",
            ohassist_server::sql::params![t3, unix_now() + 3600],
        )
        .unwrap();
    county_a = restart(da.path(), &city.url(), &addr);
    wait_until("the lost renewal to be finished", timeout, || {
        let (t, next, _, _) = link(&county_a);
        t == t3 && next.is_none()
    });
    assert_eq!(renew(&city, &t2, &"4".repeat(64)).status, 401);
    phone.store.create_enterprise(enterprise(3, A)).unwrap();
    phone.sync();
    wait_until("relaying on after the lost renewal", timeout, || holds_all(&city, &county_a, &[]));
    assert!(status_line(da.path(), "最近错误 / last error").ends_with("无 / none"));

    // Only a relay renews; a token of the wrong form is named.
    let desk = token(&city.url(), "city-sup", PASSWORD, "desk");
    let answer = renew(&city, &desk, &"5".repeat(64));
    assert_eq!((answer.status, answer.code()), (403, "forbidden".to_string()));
    let answer = renew(&city, &t3, "short");
    assert_eq!((answer.status, answer.code()), (422, "invalid_input".to_string()));
}

/// A transfer decided upstream applies a relay's kept refused changes with their original
/// authors (`change_origins`), as the relay's push would have; and a lower server that starts
/// relaying to a city already holding its county's records (a first sync of whole documents)
/// records who wrote each of their changes.
#[test]
fn original_authors_survive_a_transfer_upstream_and_a_first_sync_of_whole_documents() {
    let (dc, da, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let city = Server::start(dc.path(), None);
    city.add_user("relay-a", "relay", A, PASSWORD);
    city.add_user("relay-a2", "relay", A, PASSWORD);
    city.add_user("city-sup", "supervisor", CITY, PASSWORD);
    city.add_user("zhang", "inspector", A, PASSWORD);
    add_user(da.path(), "wide", "inspector", CITY, PASSWORD);
    let county_a = county(da.path(), &city.url(), "relay-a", None);

    // A county-A server's inspector of a wider unit registers an enterprise in county B, with a
    // visit: the city refuses both from relay A and keeps them.
    let wide = Phone::new(&county_a.url());
    wide.login("wide", PASSWORD);
    let stray = wide.store.create_enterprise(enterprise(20, B)).unwrap();
    let stray_visit = wide.store.create_visit(visit(20)).unwrap();
    wide.sync();
    let timeout = Duration::from_secs(60);
    wait_until("the city to refuse and keep both", timeout, || {
        count(&city, "SELECT count(*) FROM refused_uploads WHERE kept = 1 AND settled = 0") == 2
    });
    // The city's supervisor decides the enterprise belongs to county A.
    let mut console = Console::login(&city.url(), "city-sup");
    let (status, page) = console.post("/refused/transfer", &[("credit_code", &stray), ("county", A)]);
    assert_eq!(status, 303, "{page}");
    let named = |server: &Server, doc: &str| -> (i64, BTreeSet<String>) {
        let unnamed = count(
            server,
            &format!(
                "SELECT count(*) FROM changes c LEFT JOIN change_origins o ON o.hash = c.hash
                 WHERE c.doc_id = '{doc}' AND c.whole = 0 AND o.hash IS NULL AND c.device_id <> 'web'"
            ),
        );
        let names = server
            .db()
            .prepare(&format!(
                "SELECT DISTINCT o.username FROM changes c JOIN change_origins o ON o.hash = c.hash WHERE c.doc_id = '{doc}'"
            ))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        (unnamed, names)
    };
    for doc in [&stray, &stray_visit] {
        assert_eq!(named(&city, doc), (0, BTreeSet::from(["wide".to_string()])), "{doc}: the inspector, not the relay");
    }
    assert_eq!(count(&city, &format!("SELECT count(*) FROM visits WHERE id = '{stray_visit}'")), 1);
    // The relay hears them settled and pushes them again: acknowledged, nothing stored twice.
    wait_until("county A's refusals to clear", timeout, || {
        status_line(da.path(), "被拒 / refused now:").ends_with(" 0")
    });
    assert!(each_change_once(&city));
    assert_eq!(count(&city, "SELECT count(*) FROM refused_origins"), 0, "nothing kept once applied");

    // A phone of county A syncing to the city directly, and a review at the city; then a
    // second county-A server starts relaying: its first sync comes as whole documents.
    let phone = Phone::new(&city.url());
    phone.login("zhang", PASSWORD);
    phone.store.create_enterprise(enterprise(1, A)).unwrap();
    let id = phone.store.create_visit(visit(1)).unwrap();
    phone.store.edit_visit(&id, |v| v.review.state = ReviewState::Submitted).unwrap();
    phone.sync();
    let (status, page) = console.post(&format!("/visits/{id}/review"), &[("action", "approve")]);
    assert_eq!(status, 303, "{page}");
    let second = county(d2.path(), &city.url(), "relay-a2", None);
    wait_until("the second county server's first sync", timeout, || {
        count(&second, &format!("SELECT count(*) FROM visits WHERE id = '{id}' AND review_state = 'approved'")) == 1
    });
    let all_named = count(
        &second,
        "SELECT count(*) FROM changes c LEFT JOIN change_origins o ON o.hash = c.hash
         WHERE c.whole = 0 AND o.hash IS NULL",
    );
    assert_eq!(all_named, 0, "every change of the whole documents names its author");
    assert_eq!(named(&second, &id).1, BTreeSet::from(["city-sup".to_string(), "zhang".to_string()]));
    assert_eq!(named(&second, &stray).1, BTreeSet::from(["city-sup".to_string(), "wide".to_string()]));
}
