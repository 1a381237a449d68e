//! The evidence of a visit in the console: thumbnails and full images through routes
//! that check the session's scope, the location with its distance, the signature with
//! what changed after it, and the flagged visits on the dashboard.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_core::model::{
    Attachment, AttachmentKind, Enterprise, GeoFix, GeoPoint, RecordKind, ReviewState, Signature, Visit,
};
use ohassist_core::sync::wire::UploadStatus;
use ohassist_server::accounts::Role;
use sha2::{Digest, Sha256};

use crate::common::*;
use crate::{text, Browser};

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 128]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn reference(bytes: &[u8], kind: AttachmentKind, caption: &str) -> Attachment {
    Attachment {
        sha256: sha(bytes),
        kind: Some(kind),
        media_type: "image/png".into(),
        size: bytes.len() as i64,
        caption: caption.into(),
        ..Default::default()
    }
}

async fn upload(f: &Fixture, token: &str, visit: &str, bytes: &[u8]) {
    let uri = format!("/api/v1/attachments/{}/upload?visit={visit}&offset=0&total={}", sha(bytes), bytes.len());
    let req = Request::patch(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Body::from(bytes.to_vec()))
        .unwrap();
    let r = f.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{}", String::from_utf8_lossy(&r.body));
    assert!(serde_json::from_slice::<UploadStatus>(&r.body).unwrap().complete);
}

#[tokio::test]
async fn the_visit_page_shows_thumbnails_location_signature_and_changes_after_signing() {
    let f = Fixture::new();
    let inspector = f.user_token("zhang", Role::Inspector, "210102", "phone-a").await;
    f.add_user("city", Role::Supervisor, "210100");
    f.add_user("elsewhere", Role::Supervisor, "210200");

    let home = GeoPoint { latitude: 41.7880, longitude: 123.4010 };
    let code = credit_code("210102", 1);
    let mut ent = Record::new(RecordKind::Enterprise, &code);
    let c1 = ent.write(&Enterprise { location: Some(home), ..enterprise(&code, "210102", "甲矿业") });

    let (photo, signature_image) = (png(800, 600), png(300, 100));
    let id = ohassist_core::model::new_item_id();
    let mut record = Record::new(RecordKind::Visit, &id);
    let mut v = Visit {
        enterprise_id: code.clone(),
        county_code: "210102".into(),
        visit_date: "2025-03-01".into(),
        notes: "签名时的备注".into(),
        location: Some(GeoFix {
            latitude: home.latitude + 0.045,
            longitude: home.longitude,
            accuracy_m: 8.0,
            captured_at: "2025-03-01T10:00:00+08:00".into(),
        }),
        ..Visit::default()
    };
    v.attachments.insert(sha(&photo), reference(&photo, AttachmentKind::Photo, "破碎车间警示标识"));
    let c2 = record.write(&v);
    // The principal signs what they see now; the inspector then edits the notes.
    let signed_version: Vec<String> = record.doc.heads().iter().map(|h| h.to_string()).collect();
    v.attachments.insert(sha(&signature_image), reference(&signature_image, AttachmentKind::Signature, ""));
    v.signature = Some(Signature {
        signer_name: "王厂长".into(),
        signed_at: "2025-03-01T11:00:00+08:00".into(),
        image_sha256: sha(&signature_image),
        signed_version,
    });
    let c3 = record.write(&v);
    v.notes = "签名后改过的备注".into();
    v.review.state = ReviewState::Submitted;
    let c4 = record.write(&v);
    assert_eq!(f.push(&inspector, &[c1, c2, c3, c4]).await.status, StatusCode::OK);
    upload(&f, &inspector, &id, &photo).await;
    upload(&f, &inspector, &id, &signature_image).await;

    let b = Browser::login(&f, "city").await;
    let page = text(&b.get(&f, &format!("/visits/{id}")).await);
    let thumb = format!("/visits/{id}/attachments/{}/thumb", sha(&photo));
    let full = format!("/visits/{id}/attachments/{}", sha(&photo));
    assert!(page.contains(&format!("src=\"{thumb}\"")) && page.contains(&format!("href=\"{full}\"")), "{page}");
    assert!(page.contains("破碎车间警示标识"));
    assert!(page.contains(&format!("{}, {}", home.latitude + 0.045, home.longitude)), "coordinates shown");
    assert!(page.contains("id=\"flag-far\""), "5 km from the enterprise is flagged");
    assert!(!page.contains("id=\"flag-skew\""), "captured on the visit's day, received long after: a normal trip");
    assert!(page.contains("王厂长 · 2025-03-01 11:00:00"), "signed, in local time");
    let changed = page.split("id=\"changed-after-signing\"").nth(1).expect("changes after signing listed");
    let changed = &changed[..changed.find("</ul>").unwrap()];
    assert!(changed.contains("data-path=\"notes\">备注</li>"), "the change by its label: {changed}");
    assert_eq!(page.matches(&format!("/attachments/{}/thumb", sha(&signature_image))).count(), 1, "the signature once");

    // Approving a visit changed after signing needs the supervisor's confirmation, which the
    // review records.
    assert!(page.contains("id=\"acknowledge\""));
    let r = b.post(&f, &format!("/visits/{id}/review"), &[("action", "approve")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&r).contains("签名后有 1 处修改"), "{}", text(&r));
    let r = b
        .post(
            &f,
            &format!("/visits/{id}/review"),
            &[("action", "approve"), ("comment", "同意"), ("acknowledge_changes", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    let page = text(&b.get(&f, &format!("/visits/{id}")).await);
    assert!(page.contains("同意\n【审核确认】已核对签名后的修改：备注"), "recorded in the review: {page}");
    assert!(!changed.contains("signature") && !changed.contains(&sha(&signature_image)), "{changed}");

    // The thumbnail: a JPEG at most 240 px, cached on disk; the full image byte-identical.
    let t = b.get(&f, &thumb).await;
    assert_eq!(t.status, StatusCode::OK);
    assert_eq!(t.headers[header::CONTENT_TYPE], "image/jpeg");
    let decoded = image::load_from_memory(&t.body).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (240, 180));
    assert!(f.dir.path().join("attachments/thumbs").join(format!("{}.jpg", sha(&photo))).exists());
    let again = b.get(&f, &thumb).await;
    assert_eq!(again.body, t.body, "served from the cache");
    let whole = b.get(&f, &full).await;
    assert_eq!(whole.status, StatusCode::OK);
    assert_eq!(whole.body.as_ref(), photo.as_slice());
    assert_eq!(whole.headers[header::CONTENT_TYPE], "image/png");

    // The dashboard lists the flagged visit, counted under its county.
    let dash = text(&b.get(&f, "/dashboard").await);
    assert!(dash.contains(&format!("href=\"/visits/{id}\"")), "{dash}");
    assert!(dash.contains("<td class=\"name\">和平区</td><td>1</td>"), "counted under its county's name: {dash}");

    // Another city's supervisor: 404 for the page, the thumbnail and the image.
    let other = Browser::login(&f, "elsewhere").await;
    for path in [format!("/visits/{id}"), thumb.clone(), full.clone()] {
        assert_eq!(other.get(&f, &path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert!(text(&other.get(&f, "/dashboard").await).contains("id=\"no-flags\""));
    // A hash the visit does not reference: 404, even though the file is held.
    let unrelated = format!("/visits/{id}/attachments/{}", "0".repeat(64));
    assert_eq!(b.get(&f, &unrelated).await.status, StatusCode::NOT_FOUND);
    let no_session = f.send(Request::get(&thumb).body(Body::empty()).unwrap()).await;
    assert_ne!(no_session.status, StatusCode::OK);
}
