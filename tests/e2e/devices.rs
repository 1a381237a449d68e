//! Lost and retired devices, end to end: an admin marks a phone through the admin API; a
//! retired phone pushes its records and photos, then erases itself and logs out; a lost one
//! erases itself without pushing; an active phone, and the inspector's other phone, are
//! untouched. The console's figures (pending counts at each sync) come from the same reports.

use ohassist_core::model::AttachmentKind;
use ohassist_core::store::{sha256_hex, EnterpriseFilter, NewAttachment, VisitFilter};
use ohassist_core::sync::wire::DeviceStatus;
use ohassist_core::sync::SyncError;
use ohassist_tests::*;

const COUNTY: &str = "350121";

struct Setup {
    server: Server,
    _dir: tempfile::TempDir,
    admin: String,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    server.add_user("zhang", "inspector", COUNTY, PASSWORD);
    server.add_user("admin1", "admin", "350100", PASSWORD);
    let admin = token(&server.url(), "admin1", PASSWORD, "admin-laptop");
    Setup { server, _dir: dir, admin }
}

impl Setup {
    fn set_status(&self, device: &str, action: &str) {
        let a = post(
            &format!("{}/api/v1/admin/devices/{device}/{action}", self.server.url()),
            Some(&self.admin),
            &[],
            vec![],
        );
        assert_eq!(a.status, 204, "{action} {device}: {}", String::from_utf8_lossy(&a.body));
    }

    fn device(&self, id: &str) -> serde_json::Value {
        let list = get(&format!("{}/api/v1/admin/devices", self.server.url()), Some(&self.admin)).json();
        list.as_array().unwrap().iter().find(|d| d["id"] == id).cloned().unwrap_or_else(|| panic!("no device {id}"))
    }
}

fn photo(seed: u8) -> Vec<u8> {
    (0..150_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 9) as u8 ^ seed).collect()
}

/// Records an enterprise, a visit and a photo on `phone`, offline; returns the visit id.
fn record_offline(phone: &Phone, i: usize, photo: &[u8]) -> String {
    phone.store.create_enterprise(enterprise(i, COUNTY)).unwrap();
    let id = phone.store.create_visit(visit(i)).unwrap();
    let meta =
        NewAttachment { kind: Some(AttachmentKind::Photo), media_type: "image/jpeg".into(), ..Default::default() };
    phone.store.add_attachment(&id, photo, meta).unwrap();
    id
}

fn assert_erased(phone: &Phone, old_device: &str) {
    let s = &phone.store;
    assert_ne!(s.device_id(), old_device, "a new device identity");
    assert_eq!(s.outbox_len().unwrap(), 0);
    assert!(s.list_visits(&VisitFilter { include_deleted: true, ..Default::default() }).unwrap().is_empty());
    assert!(s.list_enterprises(&EnterpriseFilter { include_deleted: true, ..Default::default() }).unwrap().is_empty());
    assert_eq!(s.meta("token").unwrap(), None, "logged out");
    assert!(!s.attachments_dir().exists(), "attachment files gone");
    assert!(matches!(phone.try_sync(), Err(SyncError::Unauthorized)), "must log in again");
}

#[test]
fn a_retired_phone_pushes_what_it_holds_then_erases_and_the_other_phone_is_untouched() {
    let s = setup();
    let (old, other) = (Phone::new(&s.server.url()), Phone::new(&s.server.url()));
    old.login("zhang", PASSWORD);
    other.login("zhang", PASSWORD);
    other.store.create_enterprise(enterprise(2, COUNTY)).unwrap();
    other.sync();
    let bytes = photo(1);
    let visit_id = record_offline(&old, 1, &bytes);
    let old_id = old.store.device_id();
    s.set_status(&old_id, "retire");
    assert_eq!(s.device(&old_id)["status"], "retired");

    match old.try_sync() {
        Err(SyncError::DeviceErased(DeviceStatus::Retired)) => {}
        other => panic!("expected the retired phone to erase itself, got {other:?}"),
    }
    assert_erased(&old, &old_id);
    // Everything it held reached the server first.
    let report = s.device(&old_id);
    assert_eq!((report["pending_changes"].as_i64(), report["pending_attachments"].as_i64()), (Some(0), Some(0)));
    assert_eq!(report["logged_in"], false);
    other.sync();
    assert_eq!(other.store.get_visit(&visit_id).unwrap().record.enterprise_id, credit_code(1));
    let fetched = ohassist_core::sync::fetch_attachment_blocking(
        &other.store,
        &other.config,
        &visit_id,
        &sha256_hex(&bytes),
        &ohassist_core::sync::CancelToken::new(),
    )
    .unwrap();
    assert!(fetched == bytes, "the photo is on the server");
    // The inspector's other phone keeps working and keeps its data.
    assert_eq!(s.device(&other.store.device_id())["status"], "active");
    other.store.edit_enterprise(&credit_code(2), |e| e.address = "仍在使用".into()).unwrap();
    other.sync();
    assert_eq!(other.store.outbox_len().unwrap(), 0);
    // The erased phone may be set up again: a new device, a first sync.
    old.login("zhang", PASSWORD);
    old.sync();
    assert!(old.store.get_visit(&visit_id).is_ok(), "a first sync brings the records back");
    assert_eq!(s.device(&old.store.device_id())["status"], "active");
}

#[test]
fn a_retired_phone_whose_push_is_refused_keeps_its_unsynced_changes() {
    let s = setup();
    let phone = Phone::new(&s.server.url());
    phone.login("zhang", PASSWORD);
    // A record outside zhang's county: the server refuses the push, so nothing is acknowledged.
    phone.store.create_enterprise(enterprise(5, "350102")).unwrap();
    let id = phone.store.device_id();
    s.set_status(&id, "retire");
    assert!(!matches!(phone.try_sync(), Err(SyncError::DeviceErased(_)) | Ok(_)), "the push is refused");
    assert_eq!(phone.store.device_id(), id, "not erased");
    assert!(phone.store.outbox_len().unwrap() > 0, "the unacknowledged changes stay");
    assert!(phone.store.get_enterprise(&credit_code(5)).is_ok());
    assert_eq!(s.device(&id)["pending_changes"].as_i64(), Some(phone.store.outbox_len().unwrap() as i64));
}

#[test]
fn a_lost_phone_erases_itself_without_pushing_and_every_request_is_refused() {
    let s = setup();
    let (lost, other) = (Phone::new(&s.server.url()), Phone::new(&s.server.url()));
    lost.login("zhang", PASSWORD);
    other.login("zhang", PASSWORD);
    let synced = lost.store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    lost.sync();
    let unsynced = record_offline(&lost, 3, &photo(3));
    let lost_id = lost.store.device_id();
    let token_before = lost.store.meta("token").unwrap().unwrap();
    s.set_status(&lost_id, "lost");
    assert_eq!(s.device(&lost_id)["status"], "lost");

    // Any request with its token is refused, whatever the endpoint.
    for path in ["/api/v1/sync/pull", "/api/v1/sync/push", "/api/v1/device/report"] {
        let a = post(&format!("{}{path}", s.server.url()), Some(&token_before), SYNC_HEADERS, vec![]);
        assert_eq!((a.status, a.code()), (410, "device_lost".to_string()), "{path}");
    }
    match lost.try_sync() {
        Err(SyncError::DeviceErased(DeviceStatus::Lost)) => {}
        other => panic!("expected the lost phone to erase itself, got {other:?}"),
    }
    assert_erased(&lost, &lost_id);
    // Nothing of what it had not synced reached the server; what it had synced is there.
    other.sync();
    assert!(other.store.get_enterprise(&synced).is_ok());
    assert!(other.store.get_visit(&unsynced).is_err(), "the lost phone pushed nothing");
    assert!(other.store.find_enterprise(&credit_code(3)).unwrap().is_none());
    let on_server: i64 =
        s.server.db().query_row("SELECT count(*) FROM documents WHERE id = ?1", [&unsynced], |r| r.get(0)).unwrap();
    assert_eq!(on_server, 0);
    // A login from the lost device id (someone else trying the phone) is refused the same way.
    let body = serde_json::json!({"username": "zhang", "password": "wrong", "device_id": lost_id, "device_name": "x"});
    let a = post(
        &format!("{}/api/v1/login", s.server.url()),
        None,
        &[("content-type", "application/json")],
        serde_json::to_vec(&body).unwrap(),
    );
    assert_eq!((a.status, a.code()), (410, "device_lost".to_string()));
    // The other phone of the same inspector is untouched.
    assert_eq!(s.device(&other.store.device_id())["status"], "active");
    other.store.create_visit(visit(1)).unwrap();
    other.sync();
    assert_eq!(other.store.outbox_len().unwrap(), 0);
}

#[test]
fn an_active_phone_reports_what_it_holds_unsynced_at_each_sync() {
    let s = setup();
    let phone = Phone::new(&s.server.url());
    phone.login("zhang", PASSWORD);
    let id = phone.store.device_id();
    assert!(s.device(&id)["reported_at"].is_null(), "nothing reported before a sync");
    phone.store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    record_offline(&phone, 2, &photo(2));
    phone.sync();
    let d = s.device(&id);
    assert_eq!((d["pending_changes"].as_i64(), d["pending_attachments"].as_i64()), (Some(0), Some(0)));
    assert!(d["reported_at"].as_i64().is_some());
    assert_eq!(d["status"], "active");
    // A sync that stops after its first report (the server goes away) leaves what it said then.
    phone.store.create_visit(visit(1)).unwrap();
    let token = phone.store.meta("token").unwrap().unwrap();
    let a = post(
        &format!("{}/api/v1/device/report", s.server.url()),
        Some(&token),
        &[("content-type", "application/json")],
        br#"{"pending_changes": 3, "pending_attachments": 1}"#.to_vec(),
    );
    assert_eq!((a.status, a.json()["status"].as_str()), (200, Some("active")));
    let d = s.device(&id);
    assert_eq!((d["pending_changes"].as_i64(), d["pending_attachments"].as_i64()), (Some(3), Some(1)));
    assert!(phone.store.get_visit(&phone.store.list_visits(&VisitFilter::default()).unwrap()[0].id).is_ok());
}

/// A sync that leaves a record held reports what the phone still holds in the same sync: the
/// console's counts are true at once. They ride with the pull when the phone can know them
/// beforehand; an exchange assumed its push accepted, so a refusal in it costs one report.
#[test]
fn a_held_record_is_reported_in_the_same_sync() {
    let s = setup();
    let phone = Phone::new(&s.server.url());
    phone.login("zhang", PASSWORD);
    let id = phone.store.device_id();
    phone.store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    phone.store.create_visit(visit(1)).unwrap();
    let first = phone.sync();
    assert_eq!(first.progress.round_trips, 1, "push and pull in one exchange: {first:?}");
    let d = s.device(&id);
    assert_eq!((d["pending_changes"].as_i64(), d["pending_attachments"].as_i64()), (Some(0), Some(0)));
    // The app let the inspector approve their own visit, with a photo: the server refuses it,
    // the phone holds it and its file waits with it.
    let bad = phone.store.create_visit(visit(1)).unwrap();
    phone.store.edit_visit(&bad, |v| v.review.state = ohassist_core::model::ReviewState::Approved).unwrap();
    let meta =
        NewAttachment { kind: Some(AttachmentKind::Photo), media_type: "image/jpeg".into(), ..Default::default() };
    phone.store.add_attachment(&bad, &photo(7), meta).unwrap();
    let held = phone.sync();
    assert_eq!(held.newly_held, 1, "{held:?}");
    // The counts the exchange carried assumed the push accepted: the report follows, once.
    assert_eq!(held.progress.round_trips, 2, "the exchange, then the report: {held:?}");
    let pending = phone.store.outbox_len().unwrap() as i64;
    assert!(pending > 0, "the held record's changes stay in the outbox");
    let d = s.device(&id);
    assert_eq!((d["pending_changes"].as_i64(), d["pending_attachments"].as_i64()), (Some(pending), Some(1)));
    // Nothing changed since: the next sync is one pull and says nothing more.
    let again = phone.sync();
    assert_eq!(again.progress.round_trips, 1, "{again:?}");
    assert_eq!(s.device(&id)["pending_changes"].as_i64(), Some(pending));
}

/// The name an app gives its phone at login is how the console shows it: on the devices
/// page, in a conflict's values and in a visit's history.
#[test]
fn the_console_names_phones_as_their_apps_named_them() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), None);
    for (user, role) in [("zhang", "inspector"), ("li", "inspector"), ("sup", "supervisor"), ("boss", "admin")] {
        server.add_user(user, role, COUNTY, PASSWORD);
    }
    let (a, b) = (Phone::new(&server.url()), Phone::new(&server.url()));
    a.login_named("zhang", PASSWORD, "华为 Mate 60 · 张三");
    b.login_named("li", PASSWORD, "荣耀 X50 · 李四");
    a.store.create_enterprise(enterprise(1, COUNTY)).unwrap();
    let id = a.store.create_visit(visit(1)).unwrap();
    a.sync();
    b.sync();
    a.store.edit_visit(&id, |v| v.notes = "张：已整改".into()).unwrap();
    b.store.edit_visit(&id, |v| v.notes = "李：未整改".into()).unwrap();
    a.sync();
    b.sync();

    let mut sup = Console::login(&server.url(), "sup");
    let (_, queue) = sup.get("/conflicts");
    assert!(queue.contains("华为 Mate 60 · 张三") && queue.contains("荣耀 X50 · 李四"), "{queue}");
    let (_, page) = sup.get(&format!("/visits/{id}"));
    assert!(page.contains("华为 Mate 60 · 张三") && page.contains("荣耀 X50 · 李四"), "history names the phones");
    let mut admin = Console::login(&server.url(), "boss");
    let (_, devices) = admin.get("/admin/devices");
    for (name, phone) in [("华为 Mate 60 · 张三", &a), ("荣耀 X50 · 李四", &b)] {
        let row = devices.split(&format!("data-device=\"{}\"", phone.store.device_id())).nth(1).expect("listed");
        assert!(row[..row.find("</tr>").unwrap()].contains(name), "{name} on the devices page");
    }
}
