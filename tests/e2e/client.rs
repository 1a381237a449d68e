//! The phone's side of sync: progress, cancellation, and that logging out, switching
//! user or switching server never loses an unacknowledged change.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ohassist_core::sync::{self, CancelToken, SyncError, SyncProgress};
use ohassist_tests::proxy::{Faults, Proxy, Shape};
use ohassist_tests::*;

const COUNTY: &str = "350121";

#[test]
fn progress_reports_documents_and_bytes_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let a = Phone::new(&server.url());
    a.login("zhang", PASSWORD);
    for i in 0..3 {
        a.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
        a.store.create_visit(visit(i)).unwrap();
    }
    let seen: Arc<Mutex<Vec<SyncProgress>>> = Arc::default();
    let sink = {
        let seen = seen.clone();
        move |p: &SyncProgress| seen.lock().unwrap().push(p.clone())
    };
    let report = sync::sync_blocking(&a.store, &a.config, &sink, &CancelToken::new()).unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first().unwrap().phase, "push");
    assert_eq!(seen.first().unwrap().changes_pending, 12, "genesis + edit per record");
    let last = seen.last().unwrap();
    assert_eq!(last.phase, "done");
    assert_eq!((last.documents_up, last.changes_pending), (6, 0));
    assert!(last.bytes_up > 0 && last.bytes_down > 0 && last.round_trips >= 1);
    assert_eq!(report.changes_pushed, 12);

    let b = Phone::new(&server.url());
    b.login("li", PASSWORD);
    let report = b.sync();
    assert_eq!(report.progress.documents_down, 6);
    assert_eq!(report.documents_pulled, 6);
}

#[test]
fn a_cancelled_sync_stops_at_once_and_the_next_one_completes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    // A slow link: 40 kB/s, so the push takes seconds.
    let slow = Proxy::start(
        &server.addr,
        Faults::default(),
        Some(Shape { bytes_per_second: 40_000, one_way: Duration::from_millis(100) }),
    );
    let phone = Phone::new(&slow.url());
    phone.login("zhang", PASSWORD);
    phone.store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    for n in 0..300 {
        let mut v = visit(1);
        v.notes = format!("{n} {}", "长备注".repeat(150));
        phone.store.create_visit(v).unwrap();
    }
    let pending = phone.store.outbox_len().unwrap();
    let cancel = CancelToken::new();
    let started = Instant::now();
    let result = std::thread::scope(|s| {
        let handle = s.spawn(|| sync::sync_blocking(&phone.store, &phone.config, &|_: &SyncProgress| {}, &cancel));
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
        handle.join().unwrap()
    });
    assert!(matches!(result, Err(SyncError::Cancelled)), "{result:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "cancel is immediate: {:?}", started.elapsed());
    phone.store.check().unwrap();
    assert_eq!(phone.store.outbox_len().unwrap(), pending, "nothing acknowledged, nothing dropped");
    phone.sync();
    assert_eq!(phone.store.outbox_len().unwrap(), 0);
}

#[test]
fn logout_user_switch_and_server_switch_keep_unacknowledged_changes() {
    let dir1 = tempfile::tempdir().unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let one = Server::start(dir1.path(), None);
    let two = Server::start(dir2.path(), None);
    for s in [&one, &two] {
        s.add_user("zhang", "inspector", COUNTY, PASSWORD);
        s.add_user("wang", "inspector", COUNTY, PASSWORD);
    }
    let phone = Phone::new(&one.url());
    phone.login("zhang", PASSWORD);
    phone.store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    phone.sync();
    let id = phone.store.create_visit(visit(1)).unwrap();

    // Log out with a visit unsent: it stays, and sync refuses until a login.
    sync::login_blocking(&phone.store, &phone.config, "zhang", PASSWORD, "").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(sync::logout(&phone.store, &phone.config)).unwrap();
    assert!(matches!(phone.try_sync(), Err(SyncError::Unauthorized)));
    assert!(phone.store.get_visit(&id).unwrap().pending_sync);

    // Another user logs in on the same phone: the first user's visit goes up, still theirs.
    phone.login("wang", PASSWORD);
    phone.sync();
    assert!(!phone.store.get_visit(&id).unwrap().pending_sync);
    let history = phone.store.history(&id).unwrap();
    let zhang_id: String =
        one.db().query_row("SELECT id FROM users WHERE username = 'zhang'", [], |r| r.get(0)).unwrap();
    assert_eq!(history[0].author.user, zhang_id, "authorship is kept");

    // Point the phone at another server: everything it holds is queued for that one.
    let mut config = phone.config.clone();
    config.server_url = two.url();
    sync::login_blocking(&phone.store, &config, "zhang", PASSWORD, "").unwrap();
    assert!(phone.store.outbox_len().unwrap() > 0, "re-queued for the new server");
    sync::sync_blocking(&phone.store, &config, &|_: &SyncProgress| {}, &CancelToken::new()).unwrap();
    let visits: i64 = two.db().query_row("SELECT count(*) FROM visits", [], |r| r.get(0)).unwrap();
    let enterprises: i64 = two.db().query_row("SELECT count(*) FROM enterprises", [], |r| r.get(0)).unwrap();
    assert_eq!((visits, enterprises), (1, 1), "the new server has everything");
}

#[test]
fn plain_http_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    let store = ohassist_core::store::Store::open(dir.path().join("p.db"), &phone_key()).unwrap();
    let config = sync::SyncConfig::new(server.url());
    match sync::login_blocking(&store, &config, "admin", "x", "") {
        Err(SyncError::Config(m)) => assert!(m.contains("HTTP"), "{m}"),
        other => panic!("plain HTTP accepted: {other:?}"),
    }
}

#[test]
fn https_with_the_servers_own_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let data = dir.path().join("data");
    add_user(&data, "zhang", "inspector", COUNTY, PASSWORD);
    let server = Server::start_with(
        &data,
        None,
        &["--tls-cert", cert_path.to_str().unwrap(), "--tls-key", key_path.to_str().unwrap()],
    );
    let url = format!("https://localhost:{}", server.addr.rsplit(':').next().unwrap());

    // Without trusting the county's certificate, the phone refuses the server.
    let store = ohassist_core::store::Store::open(dir.path().join("phone.db"), &phone_key()).unwrap();
    let mut config = sync::SyncConfig::new(&url);
    config.max_attempts = 1;
    // At once: an untrusted certificate is a setting to fix, not a network to retry.
    config.max_attempts = 6;
    let started = std::time::Instant::now();
    match sync::login_blocking(&store, &config, "zhang", PASSWORD, "") {
        Err(SyncError::Config(m)) => assert!(m.contains("certificate is not trusted"), "{m}"),
        other => panic!("an untrusted certificate accepted or retried: {other:?}"),
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "not retried: {:?}", started.elapsed());
    // Trusting it, login works over TLS, and the store keeps the certificate for its syncs.
    config.root_certificate_pem = Some(cert.cert.pem().into_bytes());
    sync::login_blocking(&store, &config, "zhang", PASSWORD, "").unwrap();
    store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    let config = sync::stored_config(&store).unwrap().expect("logged in");
    assert_eq!(config.root_certificate_pem.as_deref(), Some(cert.cert.pem().as_bytes()));
    let report = sync::sync_blocking(&store, &config, &|_: &SyncProgress| {}, &CancelToken::new()).unwrap();
    assert_eq!(report.changes_pushed, 2);
    let rows: i64 = server.db().query_row("SELECT count(*) FROM enterprises", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn sigterm_stops_the_server_gracefully_with_acknowledged_changes_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    let phone = Phone::new(&server.url());
    phone.login("zhang", PASSWORD);
    phone.store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    phone.sync();
    let status = server.terminate();
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
    let rows: i64 = server.db().query_row("SELECT count(*) FROM changes", [], |r| r.get(0)).unwrap();
    assert_eq!(rows, 2);
}

#[test]
fn a_first_sync_of_many_pages_asks_ahead_and_a_cancel_loses_no_page() {
    let dir = tempfile::tempdir().unwrap();
    // Pages of about 3 kB: one or two records each.
    let server = Server::start_with(dir.path(), None, &["--pull-page-bytes", "3000"]);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("li", "inspector", COUNTY, PASSWORD);
    let a = Phone::new(&server.url());
    a.login("zhang", PASSWORD);
    for i in 0..30 {
        a.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
        a.store.create_visit(visit(i)).unwrap();
    }
    a.sync();

    // The second phone cancels its first sync after some pages: a page asked for ahead and not
    // yet stored is dropped, and the next sync asks for it again.
    let b = Phone::new(&server.url());
    b.login("li", PASSWORD);
    let cancel = CancelToken::new();
    let last: Arc<Mutex<Option<SyncProgress>>> = Arc::default();
    let sink = {
        let (cancel, last) = (cancel.clone(), last.clone());
        move |p: &SyncProgress| {
            if p.documents_down >= 12 {
                cancel.cancel();
            }
            *last.lock().unwrap() = Some(p.clone());
        }
    };
    let first = sync::sync_blocking(&b.store, &b.config, &sink, &cancel);
    assert!(matches!(first, Err(SyncError::Cancelled)), "{first:?}");
    b.store.check().unwrap();
    let stored_first = b.store.all_heads().unwrap().len();
    let down_first = last.lock().unwrap().as_ref().unwrap().documents_down;
    assert_eq!(stored_first as u64, down_first, "what the progress reported is what was stored");
    assert!((12..60).contains(&stored_first), "cancelled part-way: {stored_first}");

    let second = b.sync();
    assert_eq!(
        down_first + second.documents_pulled,
        60,
        "every record arrives once over the two syncs: none skipped, none twice"
    );
    assert!(second.progress.round_trips >= 5, "many pages: {}", second.progress.round_trips);
    let mut held_a = a.store.all_heads().unwrap();
    let mut held_b = b.store.all_heads().unwrap();
    held_a.sort();
    held_b.sort();
    assert_eq!(held_a, held_b, "both phones hold the same records at the same heads");
}
