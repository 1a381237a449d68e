//! Attachments: resumable uploads, hash verification, limits, scope, downloads, the
//! integrity check, and the location/time flags of visits.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_core::model::{Enterprise, GeoFix, GeoPoint, Visit};
use ohassist_core::sync::wire::{PushResponse, UploadStatus, MAX_ATTACHMENT_CHUNK};
use ohassist_server::accounts::Role;
use sha2::{Digest, Sha256};

use ohassist_server::attachments::PARTIAL_MAX_AGE;

use crate::common::*;

/// Shenyang, Heping district (210102).
const HOME: GeoPoint = GeoPoint { latitude: 41.7880, longitude: 123.4010 };

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Deterministic pseudo-random bytes (photos do not compress).
fn photo(len: usize, seed: u8) -> Vec<u8> {
    let mut x = 0x9E37_79B9u32 ^ u32::from(seed);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

impl Fixture {
    async fn patch(&self, token: &str, sha: &str, visit: &str, offset: u64, total: u64, chunk: &[u8]) -> Reply {
        let req =
            Request::patch(format!("/api/v1/attachments/{sha}/upload?visit={visit}&offset={offset}&total={total}"))
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/offset+octet-stream")
                .body(Body::from(chunk.to_vec()))
                .unwrap();
        self.send(req).await
    }

    async fn upload_status(&self, token: &str, sha: &str, visit: &str) -> Reply {
        let req = Request::get(format!("/api/v1/attachments/{sha}/upload?visit={visit}"))
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap();
        self.send(req).await
    }

    async fn download(&self, token: &str, sha: &str, visit: Option<&str>, range: Option<&str>) -> Reply {
        let uri = match visit {
            Some(v) => format!("/api/v1/attachments/{sha}?visit={v}"),
            None => format!("/api/v1/attachments/{sha}"),
        };
        let mut req = Request::get(uri).header(header::AUTHORIZATION, format!("Bearer {token}"));
        if let Some(r) = range {
            req = req.header(header::RANGE, r);
        }
        self.send(req.body(Body::empty()).unwrap()).await
    }

    /// Uploads `bytes` whole, in chunks of at most MAX_ATTACHMENT_CHUNK.
    async fn upload(&self, token: &str, visit: &str, bytes: &[u8]) -> UploadStatus {
        let h = sha(bytes);
        let mut last = None;
        for (i, chunk) in bytes.chunks(MAX_ATTACHMENT_CHUNK).enumerate() {
            let r = self.patch(token, &h, visit, (i * MAX_ATTACHMENT_CHUNK) as u64, bytes.len() as u64, chunk).await;
            assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
            last = Some(status_of(&r));
        }
        last.unwrap()
    }

    fn attachments_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("attachments")
    }

    fn visit_flags(&self, id: &str) -> (Option<f64>, Option<i64>) {
        self.state
            .db
            .blocking_writer()
            .query_row("SELECT far_from_enterprise_m, clock_skew_s FROM visits WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap()
    }
}

fn status_of(r: &Reply) -> UploadStatus {
    serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("not an UploadStatus ({e}): {:?}", r.body))
}

/// Pushes an enterprise of `county` registered at `at`, and one visit of it recorded at
/// `fix`; returns the visit id.
async fn visit_with(
    f: &Fixture,
    token: &str,
    county: &str,
    serial: u32,
    at: Option<GeoPoint>,
    fix: Option<GeoFix>,
) -> String {
    visit_on(f, token, county, serial, at, "2025-03-01", fix).await
}

/// [`visit_with`], the visit dated `date`.
async fn visit_on(
    f: &Fixture,
    token: &str,
    county: &str,
    serial: u32,
    at: Option<GeoPoint>,
    date: &str,
    fix: Option<GeoFix>,
) -> String {
    let code = credit_code(county, serial);
    let mut ent = Record::new(ohassist_core::model::RecordKind::Enterprise, &code);
    let c1 = ent.write(&Enterprise { location: at, ..enterprise(&code, county, "甲矿业") });
    let id = ohassist_core::model::new_item_id();
    let mut visit = Record::new(ohassist_core::model::RecordKind::Visit, &id);
    let c2 = visit.write(&Visit {
        enterprise_id: code,
        county_code: county.to_string(),
        visit_date: date.into(),
        location: fix,
        ..Visit::default()
    });
    let pushed: PushResponse = f.push(token, &[c1, c2]).await.wire();
    assert_eq!(pushed.new, 2);
    id
}

async fn plain_visit(f: &Fixture, token: &str, county: &str, serial: u32) -> String {
    visit_with(f, token, county, serial, None, None).await
}

fn fix(p: GeoPoint, captured_at: &str) -> GeoFix {
    GeoFix { latitude: p.latitude, longitude: p.longitude, accuracy_m: 10.0, captured_at: captured_at.into() }
}

#[tokio::test]
async fn an_upload_cut_after_two_chunks_resumes_and_downloads_byte_identical() {
    let f = Fixture::new();
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let v = plain_visit(&f, &t, "210102", 1).await;
    let bytes = photo(2 * MAX_ATTACHMENT_CHUNK + 12_345, 1);
    let (h, total) = (sha(&bytes), bytes.len() as u64);
    let step = MAX_ATTACHMENT_CHUNK;

    assert_eq!(status_of(&f.upload_status(&t, &h, &v).await), UploadStatus { offset: 0, complete: false });
    let r = f.patch(&t, &h, &v, 0, total, &bytes[..step]).await;
    assert_eq!(status_of(&r), UploadStatus { offset: step as u64, complete: false });
    let r = f.patch(&t, &h, &v, step as u64, total, &bytes[step..2 * step]).await;
    assert_eq!(status_of(&r), UploadStatus { offset: 2 * step as u64, complete: false });

    // The link is cut; the phone asks where to continue.
    let held = status_of(&f.upload_status(&t, &h, &v).await);
    assert_eq!(held, UploadStatus { offset: 2 * step as u64, complete: false });
    assert_eq!(f.count("attachments"), 0, "no row before the file is complete");
    let r = f.patch(&t, &h, &v, held.offset, total, &bytes[held.offset as usize..]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(status_of(&r), UploadStatus { offset: total, complete: true });

    // In its place, content-addressed; the partial is gone.
    let on_disk = std::fs::read(f.attachments_dir().join(&h[..2]).join(&h)).unwrap();
    assert_eq!(on_disk, bytes);
    assert!(!f.attachments_dir().join("partial").join(&h).exists());
    assert_eq!(f.count("attachments"), 1);
    assert_eq!(f.count("attachment_visits"), 1);
    assert_eq!(status_of(&f.upload_status(&t, &h, &v).await), UploadStatus { offset: total, complete: true });

    // Sending it again stores nothing and answers complete.
    let again = f.patch(&t, &h, &v, 0, total, &bytes[..10]).await;
    assert_eq!(status_of(&again), UploadStatus { offset: total, complete: true });
    assert_eq!(f.count("attachments"), 1);

    let down = f.download(&t, &h, Some(&v), None).await;
    assert_eq!(down.status, StatusCode::OK);
    assert_eq!(down.body.as_ref(), bytes.as_slice());
    assert_eq!(down.headers[header::CONTENT_LENGTH], total.to_string());
    assert_eq!(down.headers[header::CONTENT_TYPE], "application/octet-stream");
    // Without the visit, through any linked visit in scope; and from an offset.
    assert_eq!(f.download(&t, &h, None, None).await.body.as_ref(), bytes.as_slice());
    let tail = f.download(&t, &h, Some(&v), Some("bytes=1000-")).await;
    assert_eq!(tail.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.body.as_ref(), &bytes[1000..]);
    assert_eq!(tail.headers[header::CONTENT_RANGE], format!("bytes 1000-{}/{total}", total - 1));
    f.download(&t, &h, Some(&v), Some(&format!("bytes={total}-")))
        .await
        .assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable");
}

#[tokio::test]
async fn the_content_type_is_the_visit_references_media_type() {
    let f = Fixture::new();
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let bytes = photo(5000, 2);
    let h = sha(&bytes);
    let code = credit_code("210102", 1);
    let (_, c1) = new_enterprise("210102", 1, "甲矿业");
    let id = ohassist_core::model::new_item_id();
    let mut visit = Record::new(ohassist_core::model::RecordKind::Visit, &id);
    let mut v = Visit {
        enterprise_id: code,
        county_code: "210102".into(),
        visit_date: "2025-03-01".into(),
        ..Visit::default()
    };
    v.attachments.insert(
        h.clone(),
        ohassist_core::model::Attachment {
            sha256: h.clone(),
            media_type: "image/jpeg".into(),
            size: bytes.len() as i64,
            ..Default::default()
        },
    );
    let c2 = visit.write(&v);
    f.push(&t, &[c1, c2]).await.wire::<PushResponse>();
    assert!(f.upload(&t, &id, &bytes).await.complete);
    let down = f.download(&t, &h, Some(&id), None).await;
    assert_eq!(down.headers[header::CONTENT_TYPE], "image/jpeg");
}

#[tokio::test]
async fn a_wrong_hash_is_refused_and_nothing_is_stored() {
    let f = Fixture::new();
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let v = plain_visit(&f, &t, "210102", 1).await;
    let bytes = photo(3000, 3);
    let wrong = sha(b"something else");
    let total = bytes.len() as u64;
    f.patch(&t, &wrong, &v, 0, total, &bytes[..1000]).await;
    let e = f
        .patch(&t, &wrong, &v, 1000, total, &bytes[1000..])
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "hash_mismatch");
    assert_eq!(e.field.as_deref(), Some(wrong.as_str()));
    assert!(!f.attachments_dir().join("partial").join(&wrong).exists(), "the partial upload is discarded");
    assert!(!f.attachments_dir().join(&wrong[..2]).join(&wrong).exists());
    assert_eq!(f.count("attachments"), 0);
    assert_eq!(f.count("attachment_visits"), 0);
    assert_eq!(status_of(&f.upload_status(&t, &wrong, &v).await), UploadStatus { offset: 0, complete: false });
    f.download(&t, &wrong, Some(&v), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn an_offset_mismatch_answers_the_held_offset() {
    let f = Fixture::new();
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let v = plain_visit(&f, &t, "210102", 1).await;
    let bytes = photo(3000, 4);
    let (h, total) = (sha(&bytes), bytes.len() as u64);
    f.patch(&t, &h, &v, 0, total, &bytes[..1000]).await;
    for wrong in [0, 500, 2000] {
        let r = f.patch(&t, &h, &v, wrong, total, &bytes[wrong as usize..]).await;
        r.assert_error(StatusCode::CONFLICT, "offset_mismatch");
        assert_eq!(status_of(&r), UploadStatus { offset: 1000, complete: false }, "the body is also an UploadStatus");
        assert_eq!(r.headers["upload-offset"], "1000");
    }
    // Nothing was appended by the refused chunks.
    let r = f.patch(&t, &h, &v, 1000, total, &bytes[1000..]).await;
    assert_eq!(status_of(&r), UploadStatus { offset: total, complete: true });
    assert_eq!(f.download(&t, &h, Some(&v), None).await.body.as_ref(), bytes.as_slice());
}

#[tokio::test]
async fn oversized_files_and_visits_are_refused_before_anything_is_stored() {
    let mut f = Fixture::new();
    {
        let cfg = std::sync::Arc::make_mut(&mut f.state.attachments);
        cfg.max_file_bytes = 10_000;
        cfg.max_visit_bytes = 15_000;
    }
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let v = plain_visit(&f, &t, "210102", 1).await;
    let big = photo(10_001, 5);
    f.patch(&t, &sha(&big), &v, 0, big.len() as u64, &big[..100])
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert!(!f.attachments_dir().join("partial").join(sha(&big)).exists());
    assert_eq!(f.count("attachments"), 0);

    // Per visit: 8 000 + 8 000 > 15 000.
    let first = photo(8_000, 6);
    assert!(f.upload(&t, &v, &first).await.complete);
    let second = photo(8_000, 7);
    f.patch(&t, &sha(&second), &v, 0, 8_000, &second[..100])
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert!(!f.attachments_dir().join("partial").join(sha(&second)).exists());
    assert_eq!(f.count("attachments"), 1);

    // A chunk above the protocol's maximum.
    let f2 = Fixture::new();
    let t2 = f2.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let v2 = plain_visit(&f2, &t2, "210102", 1).await;
    let chunk = vec![0u8; MAX_ATTACHMENT_CHUNK + 1];
    f2.patch(&t2, &sha(&chunk), &v2, 0, chunk.len() as u64, &chunk)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert_eq!(f2.count("attachments"), 0);
}

#[tokio::test]
async fn visits_unknown_or_outside_the_scope_are_not_found() {
    let f = Fixture::new();
    let heping = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let other = f.user_token("wang", Role::Inspector, "210103", "phone-b").await;
    let v = plain_visit(&f, &heping, "210102", 1).await;
    let bytes = photo(2000, 8);
    let (h, total) = (sha(&bytes), bytes.len() as u64);

    for (token, visit) in [(&other, v.as_str()), (&heping, "no-such-visit")] {
        f.patch(token, &h, visit, 0, total, &bytes).await.assert_error(StatusCode::NOT_FOUND, "not_found");
        f.upload_status(token, &h, visit).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(f.count("attachments"), 0);
    assert!(!f.attachments_dir().join("partial").join(&h).exists());

    assert!(f.upload(&heping, &v, &bytes).await.complete);
    f.download(&other, &h, Some(&v), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    f.download(&other, &h, None, None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    f.download(&heping, &h, Some("no-such-visit"), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    // A visit in scope that never referenced the file does not open it either.
    let unrelated = plain_visit(&f, &heping, "210102", 2).await;
    f.download(&heping, &h, Some(&unrelated), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    // A name that is not a SHA-256.
    f.download(&heping, "ABC", Some(&v), None).await.assert_error(StatusCode::BAD_REQUEST, "malformed_body");
    f.patch(&heping, &h.to_uppercase(), &v, 0, total, &bytes)
        .await
        .assert_error(StatusCode::BAD_REQUEST, "malformed_body");
}

#[tokio::test]
async fn a_supervisor_downloads_but_may_not_upload() {
    let f = Fixture::new();
    let inspector = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let supervisor = f.user_token("chen", Role::Supervisor, "210100", "laptop").await;
    let v = plain_visit(&f, &inspector, "210102", 1).await;
    let bytes = photo(2000, 9);
    let h = sha(&bytes);
    f.patch(&supervisor, &h, &v, 0, 2000, &bytes).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    f.upload_status(&supervisor, &h, &v).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(f.count("attachments"), 0);
    assert!(f.upload(&inspector, &v, &bytes).await.complete);
    let down = f.download(&supervisor, &h, Some(&v), None).await;
    assert_eq!(down.status, StatusCode::OK);
    assert_eq!(down.body.as_ref(), bytes.as_slice());
    // No token: 401.
    let req = Request::get(format!("/api/v1/attachments/{h}?visit={v}")).body(Body::empty()).unwrap();
    f.send(req).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn the_check_command_finds_corrupt_and_missing_files() {
    let f = Fixture::new();
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let v = plain_visit(&f, &t, "210102", 1).await;
    let (a, b, c) = (photo(3000, 10), photo(3000, 11), photo(3000, 12));
    for bytes in [&a, &b, &c] {
        assert!(f.upload(&t, &v, bytes).await.complete);
    }
    let data = f.dir.path();
    let report = ohassist_server::cli::check_attachments(data, &sqlite_at(data)).unwrap();
    assert!(report.ok() && report.checked == 3);
    let ohassist = || std::process::Command::new(env!("CARGO_BIN_EXE_ohassist"));
    let ok = ohassist().arg("--data").arg(data).args(["attachments", "check"]).output().unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));

    // One bit flipped in a, b deleted.
    let path_a = f.attachments_dir().join(&sha(&a)[..2]).join(sha(&a));
    let mut bytes = std::fs::read(&path_a).unwrap();
    bytes[1500] ^= 1;
    std::fs::write(&path_a, bytes).unwrap();
    std::fs::remove_file(f.attachments_dir().join(&sha(&b)[..2]).join(sha(&b))).unwrap();
    let report = ohassist_server::cli::check_attachments(data, &sqlite_at(data)).unwrap();
    assert_eq!(report.corrupt, vec![sha(&a)]);
    assert_eq!(report.missing, vec![sha(&b)]);
    let bad = ohassist().arg("--data").arg(data).args(["attachments", "check"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let out = String::from_utf8_lossy(&bad.stdout);
    assert!(out.contains(&format!("corrupt {}", sha(&a))) && out.contains(&format!("missing {}", sha(&b))), "{out}");
}

#[tokio::test]
async fn visits_far_from_their_enterprise_are_flagged_never_refused() {
    let f = Fixture::new();
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    // Captured on the visit's own day, received much later (a phone offline for a long
    // trip): normal, not a clock flag.
    let now = "2025-03-01T10:00:00+08:00".to_string();
    // 0.045° of latitude ≈ 5.0 km; 0.0045° ≈ 500 m.
    let far_at = GeoPoint { latitude: HOME.latitude + 0.045, longitude: HOME.longitude };
    let near_at = GeoPoint { latitude: HOME.latitude + 0.0045, longitude: HOME.longitude };
    let far = visit_with(&f, &t, "210102", 1, Some(HOME), Some(fix(far_at, &now))).await;
    let near = visit_with(&f, &t, "210102", 2, Some(HOME), Some(fix(near_at, &now))).await;
    let unlocated = visit_with(&f, &t, "210102", 3, Some(HOME), None).await;

    let (d_far, skew) = f.visit_flags(&far);
    assert!((d_far.unwrap() - 5_004.0).abs() < 50.0, "{d_far:?}");
    assert!(skew.unwrap() > 24 * 3600, "received long after capture: {skew:?}");
    let (d_near, _) = f.visit_flags(&near);
    assert!((d_near.unwrap() - 500.0).abs() < 10.0, "{d_near:?}");
    assert_eq!(f.visit_flags(&unlocated), (None, None));

    let conn = f.state.db.blocking_writer();
    let flagged = ohassist_server::attachments::flagged_visits(&conn, "210102", 2025, &f.state.attachments).unwrap();
    assert_eq!(flagged.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(), vec![far.as_str()]);
    assert!(flagged[0].far && !flagged[0].skewed);
    // Outside the unit: not listed.
    assert!(ohassist_server::attachments::flagged_visits(&conn, "210103", 2025, &f.state.attachments)
        .unwrap()
        .is_empty());
    // Another year: not listed either.
    assert!(ohassist_server::attachments::flagged_visits(&conn, "210102", 2024, &f.state.attachments)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_enterprise_located_later_flags_its_visits_and_device_clock_skew_is_flagged() {
    let f = Fixture::new();
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let far_at = GeoPoint { latitude: HOME.latitude + 0.045, longitude: HOME.longitude };
    // The enterprise has no registered location yet; the device clock is three days behind.
    let id = visit_with(&f, &t, "210102", 1, None, Some(fix(far_at, "2020-01-01T08:00:00+08:00"))).await;
    let (d, skew) = f.visit_flags(&id);
    assert_eq!(d, None);
    assert!(skew.unwrap() > 5 * 365 * 24 * 3600);

    let code = credit_code("210102", 1);
    let mut ent = Record::new(ohassist_core::model::RecordKind::Enterprise, &code);
    // A first sync leaves out what the pushing device alone wrote (no echo): another device reads it.
    let other = f.user_token("li", Role::Inspector, "210102", "phone-b").await;
    let pulled = f.pull(&other, 0, None).await;
    let doc = pulled.documents.iter().find(|d| d.doc_id == code).unwrap();
    ent.doc =
        ohassist_core::doc::Document::load(ohassist_core::model::RecordKind::Enterprise, &code, &doc.bytes).unwrap();
    let mut e: Enterprise = ent.doc.read().unwrap();
    e.location = Some(HOME);
    let c = ent.write(&e);
    f.push(&t, &[c]).await.wire::<PushResponse>();
    let (d, _) = f.visit_flags(&id);
    assert!(d.unwrap() > 4_900.0, "{d:?}");

    let conn = f.state.db.blocking_writer();
    let flagged = ohassist_server::attachments::flagged_visits(&conn, "210100", 2025, &f.state.attachments).unwrap();
    assert_eq!(flagged.len(), 1);
    assert!(flagged[0].far && flagged[0].skewed);
    assert!(flagged[0].capture_days_off.unwrap() > 365, "captured years before the visit date");
}

#[tokio::test]
async fn a_three_day_offline_trip_is_not_flagged_and_a_clock_a_year_off_is() {
    use time::format_description::well_known::Rfc3339;
    use time::{Duration, OffsetDateTime, UtcOffset};
    let f = Fixture::new();
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    // The phone syncs to the end, then goes on a trip: its sync is aged by four days (the
    // server's clock cannot be moved).
    assert!(!f.pull(&t, 0, None).await.more);
    f.state
        .db
        .blocking_writer()
        .execute("UPDATE devices SET synced_at = synced_at - 4 * 86400 WHERE id = 'phone-a'", [])
        .unwrap();
    let now = OffsetDateTime::now_utc().to_offset(UtcOffset::from_hms(8, 0, 0).unwrap());
    let at = |t: OffsetDateTime| fix(HOME, &t.format(&Rfc3339).unwrap());
    let date = |t: OffsetDateTime| t.date().to_string();
    // Captured on each of the last three days, each on its visit's date, pushed today.
    let mut trip = Vec::new();
    for d in 1..=3 {
        let then = now - Duration::days(d) - Duration::hours(2);
        trip.push(visit_on(&f, &t, "210102", d as u32, Some(HOME), &date(then), Some(at(then))).await);
    }
    // A phone whose clock runs a year ahead, or a year behind (its visit dated by it too).
    let (ahead_t, behind_t) = (now + Duration::days(365), now - Duration::days(365));
    let ahead = visit_on(&f, &t, "210102", 10, Some(HOME), &date(ahead_t), Some(at(ahead_t))).await;
    let behind = visit_on(&f, &t, "210102", 11, Some(HOME), &date(behind_t), Some(at(behind_t))).await;

    let cfg = &f.state.attachments;
    {
        let conn = f.state.db.blocking_writer();
        for id in &trip {
            assert!(!ohassist_server::attachments::clock_flag(&conn, id, cfg).unwrap().0, "a trip is normal");
        }
        assert!(ohassist_server::attachments::flagged_visits(&conn, "210102", now.year(), cfg)
            .unwrap()
            .iter()
            .all(|v| !trip.contains(&v.id)));
        for (id, t, why) in [
            (&ahead, ahead_t, "device clock ahead of the server's receipt by"),
            (&behind, behind_t, "h before the device's previous sync"),
        ] {
            let flagged = ohassist_server::attachments::flagged_visits(&conn, "210102", t.year(), cfg).unwrap();
            let v = flagged.iter().find(|v| &v.id == id).unwrap_or_else(|| panic!("{why}: not flagged in {flagged:?}"));
            assert!(v.skewed && !v.far, "{v:?}");
            assert!(v.clock_en.contains(why) && !v.clock_zh.is_empty(), "{v:?}");
        }
    }
    // A phone that never synced before has only the receipt as its bound: a year behind on
    // its visit's own date is then not a clock flag (nothing tells when it went offline).
    let t2 = f.user_token("li", Role::Inspector, "210102", "phone-b").await;
    let fresh = visit_on(&f, &t2, "210102", 12, Some(HOME), &date(behind_t), Some(at(behind_t))).await;
    let conn = f.state.db.blocking_writer();
    assert!(!ohassist_server::attachments::clock_flag(&conn, &fresh, cfg).unwrap().0);
}

#[tokio::test]
async fn gc_removes_only_stale_partial_uploads() {
    let f = Fixture::new();
    let t = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let v = plain_visit(&f, &t, "210102", 1).await;
    let (stale, fresh, done) = (photo(3000, 20), photo(3000, 21), photo(3000, 22));
    f.patch(&t, &sha(&stale), &v, 0, 3000, &stale[..1000]).await;
    f.patch(&t, &sha(&fresh), &v, 0, 3000, &fresh[..1000]).await;
    assert!(f.upload(&t, &v, &done).await.complete);
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(8 * 24 * 3600);
    let stale_path = partial_file(&f, &sha(&stale));
    std::fs::File::options().write(true).open(&stale_path).unwrap().set_modified(old).unwrap();
    // A partial file of the layout before per-user folders is swept too.
    let legacy = f.attachments_dir().join("partial").join("0".repeat(64));
    std::fs::write(&legacy, b"old").unwrap();
    std::fs::File::options().write(true).open(&legacy).unwrap().set_modified(old).unwrap();

    let removed = ohassist_server::attachments::gc_partials(&f.state.attachments, PARTIAL_MAX_AGE).unwrap();
    assert_eq!(removed, vec!["0".repeat(64), sha(&stale)]);
    assert!(!stale_path.exists() && !legacy.exists());
    assert!(partial_file(&f, &sha(&fresh)).exists());
    assert!(
        ohassist_server::cli::check_attachments(f.dir.path(), &sqlite_at(f.dir.path())).unwrap().ok(),
        "complete files untouched"
    );
    assert_eq!(status_of(&f.upload_status(&t, &sha(&stale), &v).await).offset, 0);
    assert_eq!(status_of(&f.upload_status(&t, &sha(&fresh), &v).await).offset, 1000);
}

/// The pending file of `sha`, in whichever user's folder it is.
fn partial_file(f: &Fixture, sha: &str) -> std::path::PathBuf {
    let root = f.attachments_dir().join("partial");
    std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|d| d.path().join(sha))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no partial upload of {sha}"))
}

#[tokio::test]
async fn unfinished_uploads_count_against_a_per_user_quota_and_stay_apart() {
    let mut f = Fixture::new();
    let mut cfg = (*f.state.attachments).clone();
    cfg.max_partial_bytes_per_user = 5_000;
    f.state.attachments = std::sync::Arc::new(cfg);
    let zhang = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let wang = f.user_token("wang", Role::Inspector, "210102", "phone-b").await;
    let v = plain_visit(&f, &zhang, "210102", 1).await;
    let (one, two, three) = (photo(4000, 30), photo(4000, 31), photo(4000, 32));
    assert_eq!(f.patch(&zhang, &sha(&one), &v, 0, 4000, &one[..3000]).await.status, StatusCode::OK);
    // A second unfinished file would pass zhang's 5,000 bytes: refused, named, nothing kept.
    let over = f.patch(&zhang, &sha(&two), &v, 0, 4000, &two[..3000]).await;
    over.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "upload_quota");
    assert_eq!(status_of(&f.upload_status(&zhang, &sha(&two), &v).await).offset, 0);
    // Another user's quota is their own, and they do not see zhang's progress.
    assert_eq!(f.patch(&wang, &sha(&three), &v, 0, 4000, &three[..3000]).await.status, StatusCode::OK);
    assert_eq!(status_of(&f.upload_status(&wang, &sha(&one), &v).await).offset, 0);
    // Finishing the first file frees the quota.
    assert!(status_of(&f.patch(&zhang, &sha(&one), &v, 3000, 4000, &one[3000..]).await).complete);
    assert_eq!(f.patch(&zhang, &sha(&two), &v, 0, 4000, &two[..3000]).await.status, StatusCode::OK);
}

#[test]
fn serve_takes_the_attachment_limits_and_flag_thresholds() {
    use clap::Parser;
    use ohassist_server::cli::{Cli, Command};
    let cli = Cli::try_parse_from([
        "ohassist",
        "serve",
        "--max-attachment-bytes",
        "1000",
        "--max-visit-attachment-bytes",
        "5000",
        "--max-visit-distance-m",
        "750",
        "--max-clock-skew-s",
        "60",
    ])
    .unwrap();
    let Command::Serve(args) = cli.command else { panic!("serve") };
    assert_eq!(
        (args.max_attachment_bytes, args.max_visit_attachment_bytes, args.max_visit_distance_m, args.max_clock_skew_s),
        (1000, 5000, 750.0, 60)
    );
    let defaults = Cli::try_parse_from(["ohassist", "serve"]).unwrap();
    let Command::Serve(args) = defaults.command else { panic!("serve") };
    assert_eq!(args.max_attachment_bytes, ohassist_core::sync::wire::DEFAULT_MAX_ATTACHMENT_BYTES);
    assert_eq!(args.max_visit_attachment_bytes, 200 * 1024 * 1024);
    assert_eq!(args.max_visit_distance_m, 2000.0);
    assert_eq!(args.max_clock_skew_s, 24 * 3600);
}

#[tokio::test]
async fn another_countys_file_is_never_reported_held_nor_opened_by_reference() {
    let f = Fixture::new();
    let heping = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let other = f.user_token("wang", Role::Inspector, "210103", "phone-b").await;
    let v = plain_visit(&f, &heping, "210102", 1).await;
    let bytes = photo(3000, 9);
    let h = sha(&bytes);
    assert!(f.upload(&heping, &v, &bytes).await.complete);
    // County B's inspector references A's photo by its hash in a visit of their own.
    let code = credit_code("210103", 5);
    let mut ent = Record::new(ohassist_core::model::RecordKind::Enterprise, &code);
    let c1 = ent.write(&enterprise(&code, "210103", "乙"));
    let id = ohassist_core::model::new_item_id();
    let mut visit = Record::new(ohassist_core::model::RecordKind::Visit, &id);
    let mut attachments = std::collections::BTreeMap::new();
    attachments.insert(h.clone(), ohassist_core::model::Attachment { sha256: h.clone(), ..Default::default() });
    let c2 = visit.write(&Visit {
        enterprise_id: code.clone(),
        county_code: "210103".into(),
        visit_date: "2025-03-01".into(),
        attachments,
        ..Visit::default()
    });
    let pushed: PushResponse = f.push(&other, &[c1, c2]).await.wire();
    assert!(pushed.refused.is_empty(), "{pushed:?}");
    let status = status_of(&f.upload_status(&other, &h, &id).await);
    assert!(!status.complete, "another county's file is not reported as held");
    assert_eq!(status.offset, 0);
    f.download(&other, &h, Some(&id), None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    f.download(&other, &h, None, None).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    // Uploading the bytes proves possession: then the file is theirs to read too.
    assert!(f.upload(&other, &id, &bytes).await.complete);
    assert_eq!(f.download(&other, &h, Some(&id), None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_range_on_an_empty_file_is_not_satisfiable() {
    let f = Fixture::new();
    let heping = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    let v = plain_visit(&f, &heping, "210102", 1).await;
    let h = sha(b"");
    let r = f.patch(&heping, &h, &v, 0, 0, b"").await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert!(status_of(&r).complete);
    f.download(&heping, &h, Some(&v), Some("bytes=0-"))
        .await
        .assert_error(StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable");
    assert_eq!(f.download(&heping, &h, Some(&v), None).await.status, StatusCode::OK);
}

fn sqlite_at(data: &std::path::Path) -> ohassist_server::db::Location {
    ohassist_server::db::Location::of(None, data).unwrap()
}
