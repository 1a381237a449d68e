//! `cargo bench -p ohassist-tests --bench sync`: sync figures against the real release
//! server on loopback, as a table.
//!
//! (a) a phone returns with 500 changed visits; (b) a new phone's first sync of a county of
//! 2,000 enterprises and 10,000 visits; (c) server ingest with 20 phones pushing at once;
//! (d) bytes on the wire (counted by a TCP proxy) against the changes' own bytes, and round
//! trips; and (a) again through a link shaped to 1 Mbit/s and 300 ms round trip; (e) the
//! records export of those 12,000 records, JSON Lines and CSV; (f) `ohassist demo`'s time
//! to ready, from the process start to its ready line; (g) the returning phone's push with
//! one of its 500 records refused, against all accepted; (j) a county's first year relayed
//! to an empty city server, against the phone's own push of it; (k) the lag of one edit from a
//! county phone to the province's Table 2 through two relays, other phones pushing meanwhile;
//! (l) the storage engines side by side: a county's year pushed by one phone, 20 phones'
//! ingest and a new phone's first sync, on SQLite, on PostgreSQL with one server process and
//! with two; (m) `ohassist migrate` of a county's year from SQLite to PostgreSQL.

use std::time::{Duration, Instant};

use ohassist_core::model::{new_item_id, ChecklistItem, Compliance, Post};
use ohassist_core::sync::wire;
use ohassist_tests::proxy::{Faults, Proxy, Shape};
use ohassist_tests::*;

const COUNTY: &str = "350121";

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Sum of the bytes of the changes queued in a phone's outbox.
fn outbox_bytes(phone: &Phone) -> u64 {
    phone.store.outbox(usize::MAX).unwrap().iter().map(|c| c.bytes.len() as u64).sum()
}

fn edit_all(phone: &Phone, ids: &[String], round: usize) {
    for id in ids {
        phone
            .store
            .edit_visit(id, |v| {
                v.notes = format!("第{round}轮复查：整改已完成，现场照片已拍摄。");
                v.self_inspection.set(ChecklistItem::HealthExamination, Compliance::Compliant, "");
                v.hazard_identification.posts.insert(
                    new_item_id(),
                    Post { name: format!("复查岗位{round}"), exposed_workers: 3, ..Default::default() },
                );
            })
            .unwrap();
    }
}

fn main() {
    std::env::set_var("OHASSIST_SERVER_PROFILE", "release");
    let mut rows: Vec<(String, String, String)> = Vec::new();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);

    // `OHASSIST_BENCH_ONLY=ingest` measures (c) alone; `=demo` (f) alone; `=export` the seeded
    // figures (a), (b), (d), (e), (g); `=province` (h) alone; `=backup` (i) alone; `=relay` (j), (k); `=relay-lag` (k) alone;
    // `=engines` (l), `=migrate` (m).
    let only = std::env::var("OHASSIST_BENCH_ONLY").unwrap_or_default();
    if only.is_empty() || only == "export" {
        seeded_figures(&server, &mut rows);
    }
    if only.is_empty() || only == "ingest" {
        ingest_figure(&server, &mut rows);
    }
    if only.is_empty() || only == "attachments" {
        attachments_figure(&server, &mut rows);
    }
    if only.is_empty() || only == "demo" {
        demo_figure(&mut rows);
    }
    if only.is_empty() || only == "province" {
        province_figure(&mut rows);
    }
    if only.is_empty() || only == "backup" {
        backup_figure(&mut rows);
    }
    if only.is_empty() || only == "relay" {
        relay_figure(&mut rows);
    }
    if only.is_empty() || only == "relay" || only == "relay-lag" {
        relay_lag_figure(&mut rows);
    }
    if only.is_empty() || only == "engines" {
        engines_figure(&mut rows);
    }
    if only.is_empty() || only == "migrate" {
        migrate_figure(&mut rows);
    }
    print_table(rows);
}

/// (j) A county's first year (2,000 enterprises, 10,000 visits) pushed by one phone to the
/// county server, then relayed in one round (`ohassist upstream sync`) to an empty city.
fn relay_figure(rows: &mut Vec<(String, String, String)>) {
    let (dc, da) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    add_user(da.path(), "zhang", "inspector", COUNTY, PASSWORD);
    let county = Server::start(da.path(), None);
    let phone = Phone::new(&county.url());
    phone.login("zhang", PASSWORD);
    for i in 0..2_000 {
        phone.store.create_enterprise(enterprise(10_000 + i, COUNTY)).unwrap();
        for _ in 0..5 {
            phone.store.create_visit(visit(10_000 + i)).unwrap();
        }
    }
    let t = Instant::now();
    phone.sync();
    let pushed = t.elapsed();
    let city = Server::start(dc.path(), None);
    city.add_user("relay-a", "relay", COUNTY, PASSWORD);
    cli(
        da.path(),
        &["upstream", "login", "--url", &city.url(), "--username", "relay-a", "--password-stdin", "--allow-http"],
        &format!("{PASSWORD}\n"),
    );
    let t = Instant::now();
    cli(da.path(), &["upstream", "sync"], "");
    let relayed = t.elapsed();
    let held: i64 = city.db().query_row("SELECT count(*) FROM documents", [], |r| r.get(0)).unwrap();
    assert_eq!(held, 12_000, "the city holds the county's year");
    let rate = |d: Duration| 12_000.0 / d.as_secs_f64();
    rows.push((
        "(j) relay a county's year (12,000 records) to an empty city, one round".into(),
        format!("{} ({:.0} documents/s)", ms(relayed), rate(relayed)),
        format!("the phone's own push of it: {} ({:.0} documents/s)", ms(pushed), rate(pushed)),
    ));
}

/// (k) The lag of one edit from a phone in a county to the province's Table 2: county server →
/// city server → province server, each relay at the default interval (10 s), while six other
/// phones push edits all along (four in the county, two of a county without a server syncing
/// to the city directly). The edit is a newly assisted enterprise (an enterprise and its
/// visit); the lag runs from the phone's sync until the province's Table 2 counts it.
fn relay_lag_figure(rows: &mut Vec<(String, String, String)>) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const CITY: &str = "350100";
    const PROVINCE: &str = "350000";
    const DIRECT: &str = "350123";
    let (dp, dc, da) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let province = Server::start(dp.path(), None);
    province.add_user("relay-city", "relay", CITY, PASSWORD);
    province.add_user("prov-sup", "supervisor", PROVINCE, PASSWORD);
    add_user(dc.path(), "relay-a", "relay", COUNTY, PASSWORD);
    let login = |dir: &std::path::Path, upstream: &Server, relay: &str| {
        cli(
            dir,
            &["upstream", "login", "--url", &upstream.url(), "--username", relay, "--password-stdin", "--allow-http"],
            &format!("{PASSWORD}\n"),
        );
    };
    login(dc.path(), &province, "relay-city");
    let city = Server::start_with(dc.path(), None, &["--upstream", &province.url()]);
    let mut load_users = Vec::new();
    for k in 0..4 {
        add_user(da.path(), &format!("load{k}"), "inspector", COUNTY, PASSWORD);
        load_users.push((format!("load{k}"), COUNTY, true));
    }
    for k in 0..2 {
        city.add_user(&format!("direct{k}"), "inspector", DIRECT, PASSWORD);
        load_users.push((format!("direct{k}"), DIRECT, false));
    }
    add_user(da.path(), "zhang", "inspector", COUNTY, PASSWORD);
    login(da.path(), &city, "relay-a");
    let county = Server::start_with(da.path(), None, &["--upstream", &city.url()]);

    // The load: each phone registers ten enterprises with a visit each, then edits its visits
    // and syncs, again and again, until the measure ends.
    let stop = Arc::new(AtomicBool::new(false));
    let pushes = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(std::sync::Barrier::new(load_users.len() + 1));
    let workers: Vec<_> = load_users
        .into_iter()
        .enumerate()
        .map(|(k, (user, code, in_county))| {
            let url = if in_county { county.url() } else { city.url() };
            let (stop, pushes, ready) = (stop.clone(), pushes.clone(), ready.clone());
            std::thread::spawn(move || {
                let phone = Phone::new(&url);
                phone.login(&user, PASSWORD);
                let mut ids = Vec::new();
                for i in 0..10 {
                    let n = 20_000 + 100 * k + i;
                    phone.store.create_enterprise(enterprise(n, code)).unwrap();
                    ids.push(phone.store.create_visit(visit(n)).unwrap());
                }
                phone.sync();
                ready.wait();
                let mut round = 0;
                while !stop.load(Ordering::SeqCst) {
                    round += 1;
                    edit_all(&phone, &ids[..5], round);
                    if phone.try_sync().is_ok() {
                        pushes.fetch_add(1, Ordering::SeqCst);
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        })
        .collect();
    ready.wait();
    let token = token(&province.url(), "prov-sup", PASSWORD, "desk");
    let assisted = || -> u64 {
        let t2 = get(&format!("{}/api/v1/tables/2?year=2025&unit={PROVINCE}", province.url()), Some(&token)).json();
        let rows = t2["rows"].as_array().cloned().unwrap_or_default();
        rows.last().and_then(|r| r[1].as_str()).and_then(|s| s.parse().ok()).unwrap_or(0)
    };
    // Everything the load registered reaches the province first.
    let start = Instant::now();
    while assisted() < 60 {
        assert!(start.elapsed() < Duration::from_secs(120), "the load's records reach the province");
        std::thread::sleep(Duration::from_millis(100));
    }
    let phone = Phone::new(&county.url());
    phone.login("zhang", PASSWORD);
    let load_start = (Instant::now(), pushes.load(Ordering::SeqCst));
    let mut lags = Vec::new();
    for trial in 0..8u64 {
        // At a different point of the relays' intervals each time.
        std::thread::sleep(Duration::from_millis(700 + (trial * 1_370) % 3_000));
        let n = 30_000 + trial as usize;
        phone.store.create_enterprise(enterprise(n, COUNTY)).unwrap();
        phone.store.create_visit(visit(n)).unwrap();
        let t = Instant::now();
        phone.sync();
        while assisted() < 61 + trial {
            assert!(t.elapsed() < Duration::from_secs(60), "the edit reaches the province's Table 2");
            std::thread::sleep(Duration::from_millis(20));
        }
        lags.push(t.elapsed());
    }
    let load_rate = (pushes.load(Ordering::SeqCst) - load_start.1) as f64 / load_start.0.elapsed().as_secs_f64();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    lags.sort();
    let median = lags[lags.len() / 2];
    let max = *lags.last().unwrap();
    rows.push((
        "(k) lag of one edit: county phone → province's Table 2".into(),
        format!(
            "median {}, max {} ({} edits; 2 relays at the default 10 s; 6 phones syncing, {:.1} syncs/s)",
            ms(median),
            ms(max),
            lags.len(),
            load_rate
        ),
        "≤ 5 s".into(),
    ));
}

/// 20 MB of photos over a 1 Mbit/s, 300 ms link cut three times, against the pure transfer
/// time of 20 MB on that link.
fn attachments_figure(server: &Server, rows: &mut Vec<(String, String, String)>) {
    use rand::{RngCore, SeedableRng};
    server.add_user("photographer", "inspector", "350123", PASSWORD);
    let link = Shape { bytes_per_second: 125_000, one_way: Duration::from_millis(150) };
    let proxy = Proxy::start(&server.addr, Faults::default(), Some(link));
    let phone = Phone::new(&proxy.url());
    phone.login("photographer", PASSWORD);
    phone.store.create_enterprise(enterprise(30_000, "350123")).unwrap();
    let visit_id = phone.store.create_visit(visit(30_000)).unwrap();
    phone.sync();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..10 {
        let mut photo = vec![0u8; 2_000_000];
        rng.fill_bytes(&mut photo);
        let meta = ohassist_core::store::NewAttachment {
            kind: Some(ohassist_core::model::AttachmentKind::Photo),
            media_type: "image/jpeg".into(),
            caption: format!("照片 {i}"),
            ..Default::default()
        };
        phone.store.add_attachment(&visit_id, &photo, meta).unwrap();
    }
    // Three cuts: at 5, 10 and 15 MB of what the phone sends.
    proxy.set_faults(Faults { max_cuts: 3, cut_every_up: 5_000_000, ..Faults::default() });
    let up0 = proxy.bytes_up();
    let t = Instant::now();
    let mut attempts = 0;
    while phone.try_sync().is_err() {
        attempts += 1;
        assert!(attempts < 20);
    }
    let took = t.elapsed();
    let up = proxy.bytes_up() - up0;
    let cuts = proxy.stats.cuts.load(std::sync::atomic::Ordering::SeqCst);
    let pure = Duration::from_secs_f64(20_000_000.0 / 125_000.0);
    rows.push((
        "20 MB of photos, 1 Mbit/s, 300 ms RTT, cut 3 times".into(),
        format!(
            "{} ({} cuts; {:.2} × the photos' bytes sent; pure transfer {})",
            ms(took),
            cuts,
            up as f64 / 20_000_000.0,
            ms(pure)
        ),
        "resume, never restart".into(),
    ));
}

fn seeded_figures(server: &Server, rows: &mut Vec<(String, String, String)>) {
    // Seed a county: 2,000 enterprises and 10,000 visits, pushed by one phone.
    let seeder = Phone::new(&server.url());
    seeder.login("zhang", PASSWORD);
    let t = Instant::now();
    for i in 0..2_000 {
        seeder.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
    }
    let mut ids = Vec::new();
    for n in 0..10_000 {
        let mut v = visit(n % 2_000);
        v.notes = format!("首次帮扶记录 {n}");
        v.self_inspection.set(ChecklistItem::Declaration, Compliance::Compliant, "");
        v.hazard_identification
            .posts
            .insert(new_item_id(), Post { name: "破碎工".into(), exposed_workers: 4, ..Default::default() });
        ids.push(seeder.store.create_visit(v).unwrap());
    }
    let created = t.elapsed();
    let t = Instant::now();
    let seed = seeder.sync();
    rows.push((
        "seed: push 12,000 new records (one phone), then its first sync".into(),
        format!(
            "{} ({} changes, {} round trips; {} documents echoed, {:.1} MB down)",
            ms(t.elapsed()),
            seed.changes_pushed,
            seed.progress.round_trips,
            seed.documents_pulled,
            seed.progress.bytes_down as f64 / 1e6
        ),
        format!("≤ 3 s, 0 echoed; created on the phone in {}", ms(created)),
    ));

    export_figures(server, rows);

    // (b) a new phone's first sync of the whole county, through a counting proxy.
    let proxy = Proxy::start(&server.addr, Faults::default(), None);
    let newbie = Phone::new(&proxy.url());
    newbie.login("li", PASSWORD);
    let before = (
        proxy.stats.bytes_up.load(std::sync::atomic::Ordering::SeqCst),
        proxy.stats.bytes_down.load(std::sync::atomic::Ordering::SeqCst),
    );
    let t = Instant::now();
    let first = newbie.sync();
    let took = t.elapsed();
    let down = proxy.stats.bytes_down.load(std::sync::atomic::Ordering::SeqCst) - before.1;
    rows.push((
        "(b) first sync: 2,000 enterprises + 10,000 visits".into(),
        format!(
            "{} ({} documents, {} round trips, {:.1} MB down)",
            ms(took),
            first.documents_pulled,
            first.progress.round_trips,
            down as f64 / 1e6
        ),
        "≤ 5 s".into(),
    ));

    // (a) the first phone comes back with 500 changed visits.
    let mine: Vec<String> = ids.iter().take(500).cloned().collect();
    edit_all(&seeder, &mine, 1);
    // The seeder's own store, reaching the same server through the counting proxy (only the
    // config changes: logging in again elsewhere would re-queue everything).
    let mut config = seeder.config.clone();
    config.server_url = proxy.url();
    let change_bytes = outbox_bytes(&seeder);
    let (up0, down0) = (
        proxy.stats.bytes_up.load(std::sync::atomic::Ordering::SeqCst),
        proxy.stats.bytes_down.load(std::sync::atomic::Ordering::SeqCst),
    );
    let t = Instant::now();
    let report = ohassist_core::sync::sync_blocking(
        &seeder.store,
        &config,
        &|_: &ohassist_core::sync::SyncProgress| {},
        &ohassist_core::sync::CancelToken::new(),
    )
    .unwrap();
    let took = t.elapsed();
    let wire_up = proxy.stats.bytes_up.load(std::sync::atomic::Ordering::SeqCst) - up0;
    let wire_down = proxy.stats.bytes_down.load(std::sync::atomic::Ordering::SeqCst) - down0;
    rows.push((
        "(a) phone returns with 500 changed visits".into(),
        format!("{} ({} changes, {} round trips)", ms(took), report.changes_pushed, report.progress.round_trips),
        "≤ 1 s, ≤ 3 round trips".into(),
    ));
    rows.push((
        "(d) push: wire bytes / changes' bytes".into(),
        format!(
            "{:.2} ({} B on the wire up+down, {} B of changes)",
            (wire_up + wire_down) as f64 / change_bytes as f64,
            wire_up + wire_down,
            change_bytes
        ),
        "≤ 1.3".into(),
    ));
    // The other phone pulls those 500 changes.
    let (up0, down0) = (
        proxy.stats.bytes_up.load(std::sync::atomic::Ordering::SeqCst),
        proxy.stats.bytes_down.load(std::sync::atomic::Ordering::SeqCst),
    );
    let t = Instant::now();
    let pulled = newbie.sync();
    let wire = proxy.stats.bytes_up.load(std::sync::atomic::Ordering::SeqCst) - up0
        + proxy.stats.bytes_down.load(std::sync::atomic::Ordering::SeqCst)
        - down0;
    rows.push((
        "(d) pull of those changes by another phone".into(),
        format!(
            "{} ({} changes, {} round trips, wire/changes {:.2})",
            ms(t.elapsed()),
            pulled.changes_pulled,
            pulled.progress.round_trips,
            wire as f64 / change_bytes as f64
        ),
        "≤ 1.3".into(),
    ));

    // (a) through a link shaped to 1 Mbit/s and 300 ms round trip.
    edit_all(&seeder, &mine, 2);
    let change_bytes = outbox_bytes(&seeder);
    let slow = Proxy::start(
        &server.addr,
        Faults::default(),
        Some(Shape { bytes_per_second: 125_000, one_way: Duration::from_millis(150) }),
    );
    config.server_url = slow.url();
    let t = Instant::now();
    let report = ohassist_core::sync::sync_blocking(
        &seeder.store,
        &config,
        &|_: &ohassist_core::sync::SyncProgress| {},
        &ohassist_core::sync::CancelToken::new(),
    )
    .unwrap();
    let took = t.elapsed();
    let wire = slow.stats.bytes_up.load(std::sync::atomic::Ordering::SeqCst)
        + slow.stats.bytes_down.load(std::sync::atomic::Ordering::SeqCst);
    let pure = Duration::from_secs_f64(wire as f64 / 125_000.0);
    rows.push((
        "(a) 500 changed visits over 1 Mbit/s, 300 ms RTT".into(),
        format!(
            "{} ({} B on the wire; pure transfer {}; {} round trips)",
            ms(took),
            wire,
            ms(pure),
            report.progress.round_trips
        ),
        format!("changes' bytes {change_bytes}"),
    ));

    // (g) 500 changed visits with 1 refused among them, against all 500 accepted, in turns.
    let pool: Vec<String> = ids.iter().skip(1_000).take(600).cloned().collect();
    refusal_figure(&seeder, &pool, rows);
}

/// The returning phone's push when the server refuses one of its 500 records (an app that
/// let the inspector approve their own visit) against the same push all accepted: three
/// turns each, medians.
fn refusal_figure(seeder: &Phone, pool: &[String], rows: &mut Vec<(String, String, String)>) {
    let sync = || {
        let t = Instant::now();
        let report = seeder.sync();
        (t.elapsed(), report)
    };
    let mut held: Vec<String> = Vec::new();
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    let (mut trips_accepted, mut trips_refused) = (0, 0);
    for turn in 0..6 {
        let batch: Vec<String> = pool.iter().filter(|id| !held.contains(id)).take(500).cloned().collect();
        edit_all(seeder, &batch, 10 + turn);
        if turn % 2 == 1 {
            let bad = batch[turn].clone();
            seeder.store.edit_visit(&bad, |v| v.review.state = ohassist_core::model::ReviewState::Approved).unwrap();
            held.push(bad);
        }
        let (took, report) = sync();
        if turn % 2 == 1 {
            assert_eq!(report.newly_held, 1, "{report:?}");
            refused.push(took);
            trips_refused = trips_refused.max(report.progress.round_trips);
        } else {
            assert_eq!(report.newly_held, 0, "{report:?}");
            accepted.push(took);
            trips_accepted = trips_accepted.max(report.progress.round_trips);
        }
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (a, r) = (median(&mut accepted), median(&mut refused));
    rows.push((
        "(g) 500 changed visits, all accepted (median of 3)".into(),
        format!("{} ({trips_accepted} round trips)", ms(a)),
        String::new(),
    ));
    rows.push((
        "(g) 500 changed visits, 1 refused and held (median of 3)".into(),
        format!("{} ({trips_refused} round trips; {:.2} × all accepted)", ms(r), r.as_secs_f64() / a.as_secs_f64()),
        "≤ 3 round trips, ≤ 1.1 ×".into(),
    ));
}

/// (e) An API client of the county pages through its 12,000 records (2,000 a page).
fn export_figures(server: &Server, rows: &mut Vec<(String, String, String)>) {
    let out = server.cli(&["client", "add", "--name", "bench", "--org-unit", COUNTY], "");
    let token = out.lines().find_map(|l| l.strip_prefix("token: ")).expect("a token").to_string();
    for (label, query) in [
        ("(e) export 12,000 records, JSON Lines, 2,000 a page", ""),
        ("(e) export 10,000 visits, CSV, 2,000 a page", "&format=csv&kind=visit"),
    ] {
        let t = Instant::now();
        let (mut cursor, mut records, mut pages, mut bytes) = ("0".to_string(), 0usize, 0, 0usize);
        loop {
            let url = format!("{}/api/v1/export?limit=2000&cursor={cursor}{query}", server.url());
            let a = get(&url, Some(&token));
            assert_eq!(a.status, 200, "{}", a.text());
            pages += 1;
            bytes += a.body.len();
            // JSON Lines: a line per record and the cursor line; CSV: a header line.
            records += a.text().lines().count() - 1;
            cursor = a.header("x-ohassist-next-cursor");
            if a.header("x-ohassist-more") != "true" {
                break;
            }
        }
        let took = t.elapsed();
        rows.push((
            label.into(),
            format!(
                "{:.0} records/s ({records} records, {pages} pages, {:.1} MB, in {})",
                records as f64 / took.as_secs_f64(),
                bytes as f64 / 1e6,
                ms(took)
            ),
            "".into(),
        ));
    }
}

/// (f) `ohassist demo` into a fresh directory: the wall time until its ready line.
fn demo_figure(rows: &mut Vec<(String, String, String)>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("demo");
    let t = Instant::now();
    let (mut child, lines) = spawn_with_lines(&["--data", data.to_str().unwrap(), "demo", "--listen", "127.0.0.1:0"]);
    let mut summary = String::new();
    let ready = loop {
        let line = lines.recv_timeout(Duration::from_secs(300)).expect("the demo gets ready");
        if line.starts_with("已录入") {
            summary = line.split_once(": ").map(|(_, s)| s.to_string()).unwrap_or_default();
        }
        if line.contains("demo ready in") {
            break line;
        }
    };
    let took = t.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    let printed = ready.split("demo ready in ").nth(1).and_then(|s| s.split(':').next()).unwrap_or("?");
    let counts: Vec<&str> = summary.split(", ").take(3).collect();
    rows.push((
        "(f) ohassist demo: time to ready (fresh directory)".into(),
        format!("{} (printed {printed}; {})", ms(took), counts.join(", ")),
        "≤ 60 s".into(),
    ));
}

fn ingest_figure(server: &Server, rows: &mut Vec<(String, String, String)>) {
    // (c) ingest: 20 phones of another county push 250 new visits (and an enterprise) each,
    // at once; the clock stops when the last push is acknowledged.
    let other = "350122";
    let phones: Vec<Phone> = (0..20)
        .map(|i| {
            let p = Phone::new(&server.url());
            let user = format!("p{i}");
            server.add_user(&user, "inspector", other, PASSWORD);
            p.login(&user, PASSWORD);
            p
        })
        .collect();
    // The bodies are built before the clock starts, and each phone only pushes: what is
    // measured is the server taking in 20 concurrent pushes.
    let bodies = ingest_bodies(&phones, other, 20_000);
    let url = format!("{}/api/v1/sync/push", server.url());
    let t = Instant::now();
    std::thread::scope(|s| {
        for (token, body) in &bodies {
            let url = &url;
            s.spawn(move || {
                let answer = post(url, Some(token), SYNC_HEADERS, body.clone());
                assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
            });
        }
    });
    let push_wall = t.elapsed();
    let docs = 20 * 251;
    rows.push((
        "(c) ingest: 20 phones push 251 new documents each at once".into(),
        format!(
            "{:.0} documents/s ({} documents, {} changes, in {})",
            docs as f64 / push_wall.as_secs_f64(),
            docs,
            docs * 2,
            ms(push_wall)
        ),
        "≥ 5,000 documents/s".into(),
    ));
}

/// (i) `ohassist backup` of a county-sized database (2,000 enterprises, 10,000 visits, 20
/// photos of 200 KB) while 20 phones push and pull: its time and size, the phones' sync
/// latency while the snapshot was taken against outside it, and the restore's time.
fn backup_figure(rows: &mut Vec<(String, String, String)>) {
    use ohassist_core::model::{new_item_id, ChecklistItem, Compliance, Post};
    use ohassist_tests::backup::{attachment, backup_while_pushing, dir_bytes};
    use rand::{RngCore, SeedableRng};
    use std::sync::Arc;
    let root = tempfile::tempdir().unwrap();
    let live_dir = root.path().join("live");
    let server = Server::start(&live_dir, None);
    server.add_user("seeder", "inspector", COUNTY, PASSWORD);
    for u in 0..4 {
        server.add_user(&format!("pusher{u}"), "inspector", "350122", PASSWORD);
    }
    let seeder = Phone::new(&server.url());
    seeder.login("seeder", PASSWORD);
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    for i in 0..2_000 {
        seeder.store.create_enterprise(enterprise(100 + i, COUNTY)).unwrap();
    }
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
    let phones: Vec<Arc<Phone>> = (0..20)
        .map(|i| {
            let p = Phone::new(&server.url());
            p.login(&format!("pusher{}", i % 4), PASSWORD);
            p.store.create_enterprise(enterprise(i, "350122")).unwrap();
            p.sync();
            Arc::new(p)
        })
        .collect();
    let backup_dir = root.path().join("backup");
    let run = backup_while_pushing(&phones, &live_dir, &backup_dir, Duration::from_secs(3));
    let (during, others) = run.latency();
    let pct = |v: &[Duration], p: f64| v.get(((v.len() as f64 - 1.0) * p) as usize).copied().unwrap_or_default();
    let t = Instant::now();
    cli(&root.path().join("restored"), &["restore", "--from", backup_dir.to_str().unwrap()], "");
    let restore = t.elapsed();
    rows.push((
        "(i) backup of 12,000 records + 20 photos, 20 phones syncing".into(),
        format!(
            "{} ({:.1} MB; live database {:.1} MB)",
            ms(run.wall),
            dir_bytes(&backup_dir) as f64 / 1e6,
            std::fs::metadata(live_dir.join("ohassist.db")).unwrap().len() as f64 / 1e6
        ),
        "phones never blocked".into(),
    ));
    rows.push((
        "(i) phones' syncs during the snapshot / outside it".into(),
        format!(
            "p50 {} p95 {} ({} syncs) / p50 {} p95 {} ({} syncs)",
            ms(pct(&during, 0.5)),
            ms(pct(&during, 0.95)),
            during.len(),
            ms(pct(&others, 0.5)),
            ms(pct(&others, 0.95)),
            others.len()
        ),
        String::new(),
    ));
    rows.push(("(i) restore (verify, stage, integrity_check)".into(), ms(restore), String::new()));
}

fn print_table(rows: Vec<(String, String, String)>) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        .unwrap_or_default();
    // The machine's load when the figures were taken: other work on a 2-core machine moves them.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "\nohassist sync benchmark — release server on loopback, {} cores, {cpu}; load average {} (1, 5, 15 min)\n",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        load.join(" ")
    );
    println!("| {:<56} | {:<72} | {:<24} |", "measure", "figure", "target / note");
    println!("|{:-<58}|{:-<74}|{:-<26}|", "", "", "");
    for (a, b, c) in rows {
        println!("| {a:<56} | {b:<72} | {c:<24} |");
    }
}

/// The counties of the province case (Fuzhou's), 1,000 enterprises each.
const PROVINCE_COUNTIES: [&str; 10] =
    ["350102", "350103", "350104", "350105", "350111", "350112", "350121", "350122", "350123", "350124"];

/// A record new to the server as a phone would push it: its genesis and its creation change
/// (the fields that differ from the record's defaults).
fn new_document_changes(
    kind: ohassist_core::model::RecordKind,
    id: &str,
    defaults: &serde_json::Value,
    record: serde_json::Value,
    actor: &automerge::ActorId,
    author: &ohassist_core::doc::Author,
) -> Vec<wire::WireChange> {
    let mut base = defaults.clone();
    if let Some(map) = base.as_object_mut() {
        map.remove("schema_version");
    }
    let mut doc = ohassist_core::doc::Document::genesis(kind, id);
    doc.write_diff(actor, author, &base, &record).unwrap();
    doc.changes_since(&[])
        .into_iter()
        .map(|mut c| wire::WireChange { doc_id: id.to_string(), kind, bytes: c.bytes().to_vec() })
        .collect()
}

/// (h) The province case: a new province supervisor's device makes its first sync of 100,000
/// records (10,000 enterprises and 90,000 visits of `synthetic`, three years of visits each),
/// with the phone's and the server's peak memory during that sync. Building 100,000 records
/// through phone stores and pushing them from one phone would take minutes, so the server is
/// seeded through the push endpoint directly: the records are built as documents on all
/// cores and pushed by ten inspectors (one per county) at once, in batches of 5,000 changes.
///
/// `OHASSIST_BENCH_PROVINCE_DATA=DIR` keeps the seeded server in DIR and, on a later run,
/// starts from it without seeding again (to measure the first sync alone, quickly).
fn province_figure(rows: &mut Vec<(String, String, String)>) {
    let tmp = tempfile::tempdir().unwrap();
    let data = std::env::var_os("OHASSIST_BENCH_PROVINCE_DATA")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let seeded = data.join("ohassist.db").exists();
    let server = Server::start(&data, None);
    if !seeded {
        seed_province(&server, rows);
    }
    let documents: i64 = server.db().query_row("SELECT count(*) FROM documents", [], |r| r.get(0)).unwrap();
    assert_eq!(documents, 100_000, "{} holds a province seeded only in part: remove it", data.display());
    province_sync(&server, seeded, rows);
}

/// Seeds the province case's server: see [`province_figure`].
fn seed_province(server: &Server, rows: &mut Vec<(String, String, String)>) {
    use ohassist_core::doc::to_json;
    use ohassist_core::model::{County, Enterprise, RecordKind, Visit};
    use ohassist_core::synthetic;
    server.add_user("province", "supervisor", "350000", PASSWORD);
    let t = Instant::now();
    let last_day = time::macros::date!(2025 - 12 - 20);
    // Per county: its inspector's token, the push bodies of its enterprises, then of its visits.
    type Bodies = (String, Vec<Vec<u8>>, Vec<Vec<u8>>);
    let bodies: Vec<Bodies> = std::thread::scope(|s| {
        let workers: Vec<_> = PROVINCE_COUNTIES
            .iter()
            .enumerate()
            .map(|(k, code)| {
                let user = format!("county{k}");
                server.add_user(&user, "inspector", code, PASSWORD);
                let token = token(&server.url(), &user, PASSWORD, &format!("seed-{k}"));
                s.spawn(move || {
                    let county = County { code: code.to_string(), name: format!("县{code}") };
                    let actor = automerge::ActorId::random();
                    let defaults = (to_json(&Enterprise::default()), to_json(&Visit::default()));
                    let author = ohassist_core::doc::Author { user: user.clone(), device: format!("seed-{k}") };
                    let (mut enterprises, mut visits) = (Vec::new(), Vec::new());
                    let mut visit_count = 0;
                    for serial in 0..1_000u64 {
                        let e = synthetic::enterprise(&county, serial, 2025);
                        enterprises.extend(new_document_changes(
                            RecordKind::Enterprise,
                            &e.credit_code,
                            &defaults.0,
                            to_json(&e),
                            &actor,
                            &author,
                        ));
                    }
                    // Three years of visits (2–4 a year each), then earlier years until the
                    // county has exactly 9,000.
                    'years: for year in (2000..=2025).rev() {
                        for serial in 0..1_000u64 {
                            let e = synthetic::enterprise(&county, serial, 2025);
                            for v in synthetic::visits(&e, serial, year, last_day, (&user, "检查员")) {
                                if visit_count == 9_000 {
                                    break 'years;
                                }
                                visit_count += 1;
                                visits.extend(new_document_changes(
                                    RecordKind::Visit,
                                    &new_item_id(),
                                    &defaults.1,
                                    to_json(&v),
                                    &actor,
                                    &author,
                                ));
                            }
                        }
                    }
                    assert_eq!(visit_count, 9_000);
                    let batches = |changes: Vec<wire::WireChange>| -> Vec<Vec<u8>> {
                        changes
                            .chunks(wire::MAX_PUSH_CHANGES)
                            .map(|c| {
                                wire::encode(&wire::PushRequest {
                                    protocol: wire::PROTOCOL_VERSION,
                                    changes: c.to_vec(),
                                    authors: Vec::new(),
                                })
                            })
                            .collect()
                    };
                    (token, batches(enterprises), batches(visits))
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let built = t.elapsed();
    let t = Instant::now();
    let url = format!("{}/api/v1/sync/push", server.url());
    std::thread::scope(|s| {
        for (token, enterprises, visits) in &bodies {
            let url = &url;
            s.spawn(move || {
                for body in enterprises.iter().chain(visits) {
                    let answer = post(url, Some(token), SYNC_HEADERS, body.clone());
                    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
                    let r: wire::PushResponse = wire::decode(&answer.body, 64 << 20).unwrap();
                    assert!(r.refused.is_empty(), "{:?}", r.refused.first());
                }
            });
        }
    });
    let pushed = t.elapsed();
    drop(bodies);
    rows.push((
        "(h) seed the province: 100,000 records, pushed by 10 at once".into(),
        format!("{} ({} built on {} threads first)", ms(pushed), ms(built), PROVINCE_COUNTIES.len()),
        format!("seeded through /sync/push; server peak {:.0} MB", server.peak_memory() as f64 / 1e6),
    ));
}

/// The province supervisor's first sync, with both processes' peak memory measured from its
/// start (the server's includes what it kept of the seed, unless it was `fresh`ly started on
/// a kept one).
fn province_sync(server: &Server, fresh: bool, rows: &mut Vec<(String, String, String)>) {
    let phone = Phone::new(&server.url());
    phone.login("province", PASSWORD);
    reset_peak_memory("self");
    reset_peak_memory(&server.pid().to_string());
    let t = Instant::now();
    let first = phone.sync();
    let took = t.elapsed();
    let (phone_peak, server_peak) = (peak_memory("self"), server.peak_memory());
    assert_eq!(first.documents_pulled, 100_000);
    rows.push((
        "(h) first sync: 10,000 enterprises + 90,000 visits".into(),
        format!(
            "{} ({:.0} documents/s, {} round trips, {:.1} MB down)",
            ms(took),
            100_000.0 / took.as_secs_f64(),
            first.progress.round_trips,
            first.progress.bytes_down as f64 / 1e6
        ),
        "≤ 6 s".into(),
    ));
    rows.push((
        "(h) peak memory during that first sync".into(),
        format!("phone {:.0} MB, server {:.0} MB", phone_peak as f64 / 1e6, server_peak as f64 / 1e6),
        format!(
            "phone ≤ 100 MB, server ≤ 150 MB; server {}",
            if fresh { "started on the kept seed" } else { "after seeding in the same process" }
        ),
    ));
}

/// A county's year (2,000 enterprises, 10,000 visits) on one phone's outbox.
fn county_year_phone(url: &str, user: &str, base: usize) -> Phone {
    let phone = Phone::new(url);
    phone.login(user, PASSWORD);
    for i in 0..2_000 {
        phone.store.create_enterprise(enterprise(base + i, COUNTY)).unwrap();
        for _ in 0..5 {
            phone.store.create_visit(visit(base + i)).unwrap();
        }
    }
    phone
}

/// The push bodies of phones that each register an enterprise of county `code` and 250
/// visits of it (the ingest of (c)), with their tokens.
fn ingest_bodies(phones: &[Phone], code: &str, base: usize) -> Vec<(String, Vec<u8>)> {
    for (i, p) in phones.iter().enumerate() {
        p.store.create_enterprise(enterprise(base + i, code)).unwrap();
        for n in 0..250 {
            let mut v = visit(base + i);
            v.notes = format!("并发上传 {n}");
            p.store.create_visit(v).unwrap();
        }
    }
    phones
        .iter()
        .map(|p| {
            let changes = p
                .store
                .outbox(usize::MAX)
                .unwrap()
                .into_iter()
                .map(|c| wire::WireChange { doc_id: c.doc_id, kind: c.kind, bytes: c.bytes })
                .collect();
            let token = p.store.meta("token").unwrap().unwrap();
            (token, wire::encode(&wire::PushRequest { protocol: wire::PROTOCOL_VERSION, changes, authors: Vec::new() }))
        })
        .collect()
}

/// (l) The engines side by side (issue 14), each from an empty database: one phone pushes a
/// county's year (12,000 records); then 20 phones of another county push 251 new documents
/// each at once, spread over the server processes (the clock stops at the last
/// acknowledgement); then a new phone's first sync of all 17,020 records. On the SQLite file,
/// on PostgreSQL (the throwaway cluster of `tests/src/pg.rs`, default settings) with one
/// server process, and with two processes on the one database.
fn engines_figure(rows: &mut Vec<(String, String, String)>) {
    let other = "350122";
    let mut sqlite_ingest = 0.0;
    for (label, postgres, processes) in
        [("SQLite", false, 1), ("PostgreSQL, 1 process", true, 1), ("PostgreSQL, 2 processes", true, 2)]
    {
        let data = tempfile::tempdir().unwrap();
        let url = postgres.then(|| ohassist_tests::pg::cluster().fresh_database());
        let db: Vec<&str> = url.as_deref().map(|u| vec!["--database", u]).unwrap_or_default();
        let servers: Vec<Server> = (0..processes).map(|_| Server::start_with(data.path(), None, &db)).collect();
        add_user_on(data.path(), url.as_deref(), "seeder", "inspector", COUNTY, PASSWORD);
        add_user_on(data.path(), url.as_deref(), "newcomer", "inspector", COUNTY, PASSWORD);
        for i in 0..20 {
            add_user_on(data.path(), url.as_deref(), &format!("p{i}"), "inspector", other, PASSWORD);
        }
        let seeder = county_year_phone(&servers[0].url(), "seeder", 30_000);
        let t = Instant::now();
        let seeded = seeder.sync();
        let seed = t.elapsed();
        assert_eq!(seeded.held_records, 0);

        // The ingest three times (each round 20 new phones of their own enterprises), the
        // median kept: one round is under two seconds, and the machine's other work moves it.
        let pids: Vec<u32> = servers.iter().map(|s| s.pid()).collect();
        let mut rounds: Vec<(Duration, (f64, f64))> = (0..3)
            .map(|round| {
                let phones: Vec<Phone> = (0..20)
                    .map(|i| {
                        let p = Phone::new(&servers[i % processes].url());
                        p.login(&format!("p{i}"), PASSWORD);
                        p
                    })
                    .collect();
                let bodies = ingest_bodies(&phones, other, 40_000 + 100 * round);
                let cpu_before = (cpu_seconds(|pid, _| pids.contains(&pid)), cpu_seconds(|_, comm| comm == "postgres"));
                let t = Instant::now();
                std::thread::scope(|s| {
                    for (i, (token, body)) in bodies.iter().enumerate() {
                        let url = format!("{}/api/v1/sync/push", servers[i % processes].url());
                        s.spawn(move || {
                            let answer = post(&url, Some(token), SYNC_HEADERS, body.clone());
                            assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
                        });
                    }
                });
                let took = t.elapsed();
                let cpu = (
                    cpu_seconds(|pid, _| pids.contains(&pid)) - cpu_before.0,
                    cpu_seconds(|_, comm| comm == "postgres") - cpu_before.1,
                );
                (took, cpu)
            })
            .collect();
        rounds.sort_by_key(|r| r.0);
        let all: Vec<String> = rounds.iter().map(|r| ms(r.0)).collect();
        let (ingest, cpu) = rounds[1];
        let ingest_rate = (20 * 251) as f64 / ingest.as_secs_f64();

        // The newcomer's first sync: every record of the county's year. The ingest's county is
        // not the newcomer's, so the first sync holds the 12,000.
        let newcomer = Phone::new(&servers[processes - 1].url());
        newcomer.login("newcomer", PASSWORD);
        let t = Instant::now();
        let first = newcomer.sync();
        let first_sync = t.elapsed();
        assert_eq!(first.documents_pulled, 12_000, "{first:?}");
        let memory: Vec<String> = servers.iter().map(|s| format!("{:.0} MB", s.peak_memory() as f64 / 1e6)).collect();
        if !postgres {
            sqlite_ingest = ingest_rate;
        }
        rows.push((
            format!("(l) {label}: 20 phones ingest (251 documents each)"),
            format!("{ingest_rate:.0} documents/s (median of 3 rounds of 5,020 documents: {})", all.join(", ")),
            {
                let cpu = if postgres {
                    format!("CPU: server {:.2} s, PostgreSQL {:.2} s", cpu.0, cpu.1)
                } else {
                    format!("CPU: server {:.2} s", cpu.0)
                };
                if postgres && processes == 2 {
                    format!("≥ SQLite ({sqlite_ingest:.0}/s): {:.2} ×; {cpu}", ingest_rate / sqlite_ingest)
                } else {
                    cpu
                }
            },
        ));
        rows.push((
            format!("(l) {label}: one phone pushes a county's year"),
            format!("{} ({:.0} documents/s)", ms(seed), 12_000.0 / seed.as_secs_f64()),
            String::new(),
        ));
        rows.push((
            format!("(l) {label}: a new phone's first sync, 12,000 records"),
            format!("{} ({:.0} documents/s)", ms(first_sync), 12_000.0 / first_sync.as_secs_f64()),
            format!("server peak {}", memory.join(", ")),
        ));
    }
}

/// CPU time (user and system, seconds) of the processes `pick` chooses by pid and name,
/// from `/proc` (threads included: a process's counters sum them).
fn cpu_seconds(pick: impl Fn(u32, &str) -> bool) -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid … utime stime: the name may hold spaces, so split after it.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if !pick(pid, &stat[open + 1..close]) {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
        total += (field(11) + field(12)) / ticks;
    }
    total
}

/// (m) A county's year (2,000 enterprises, 10,000 visits, as one phone pushed them, and a
/// second phone that made its first sync) moved from its SQLite file to an empty PostgreSQL
/// database with `ohassist migrate --to`, which checks rows, every document's heads and the
/// feed; then the first phone's edit reaches the second by an incremental sync.
fn migrate_figure(rows: &mut Vec<(String, String, String)>) {
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let a = county_year_phone(&server.url(), "zhang", 50_000);
    a.sync();
    let b = Phone::new(&server.url());
    b.login("li", PASSWORD);
    assert_eq!(b.sync().documents_pulled, 12_000);
    let addr = server.addr.clone();
    assert!(server.terminate().success());
    let file = std::fs::metadata(data.path().join("ohassist.db")).unwrap().len();

    let url = ohassist_tests::pg::cluster().fresh_database();
    let t = Instant::now();
    let out = cli(data.path(), &["migrate", "--to", &url], "");
    let took = t.elapsed();
    assert!(out.contains("copied and checked: 12000"), "{out}");

    let _moved = Server::start_with(data.path(), Some(&addr), &["--database", &url]);
    let visit_id: String = ohassist_tests::pg::connect(&url, false)
        .query_row("SELECT id FROM visits ORDER BY id LIMIT 1", [], |r| r.get(0))
        .unwrap();
    a.store.edit_visit(&visit_id, |v| v.notes = "迁移后的修改".into()).unwrap();
    assert_eq!(a.sync().changes_pushed, 1, "a keeps its token and cursor");
    let after = b.sync();
    assert_eq!((after.documents_pulled, after.changes_pulled), (0, 1), "incremental: {after:?}");
    rows.push((
        "(m) migrate a county's year (12,000 records) SQLite → PostgreSQL".into(),
        format!(
            "{} ({:.0} documents/s, SQLite file {:.0} MB), heads and feed checked",
            ms(took),
            12_000.0 / took.as_secs_f64(),
            file as f64 / 1e6
        ),
        "phones sync on incrementally".into(),
    ));
}
