//! What the console writes: a review and a conflict resolution are changes to the synced
//! documents, in the feed for phones to pull; an import is validated whole, shows possible
//! duplicates first, then creates enterprise documents from their deterministic genesis.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_core::doc::Document;
use ohassist_core::model::{Enterprise, RecordKind, ReviewState, Visit};

use crate::city::{self, YEAR};
use crate::common::{credit_code, Fixture};
use crate::{text, Browser};

fn document(f: &Fixture, id: &str, kind: RecordKind) -> Document {
    let conn = ohassist_core::sqlite::open_reader(&f.dir.path().join("ohassist.db")).unwrap();
    let bytes: Vec<u8> = conn.query_row("SELECT bytes FROM documents WHERE id = ?1", [id], |r| r.get(0)).unwrap();
    Document::load(kind, id, &bytes).unwrap()
}

fn last_feed_row(f: &Fixture) -> (String, String, String) {
    let conn = ohassist_core::sqlite::open_reader(&f.dir.path().join("ohassist.db")).unwrap();
    conn.query_row("SELECT doc_id, user_id, device_id FROM changes ORDER BY seq DESC LIMIT 1", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })
    .unwrap()
}

#[tokio::test]
async fn review_is_a_change_the_inspector_pulls() {
    let c = city::build().await;
    let cursor = c.f.pull(&c.inspector, 0, None).await.cursor;
    let b = Browser::login(&c.f, "city").await;
    let page = text(&b.get(&c.f, &format!("/visits/{}", c.submitted_visit)).await);
    assert!(page.contains("id=\"approve\""), "a submitted visit can be reviewed");
    assert!(page.contains("id=\"history\""));

    let r =
        b.post(&c.f, &format!("/visits/{}/review", c.submitted_visit), &[("action", "return"), ("comment", "")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "returning needs a comment");
    let r = b
        .post(
            &c.f,
            &format!("/visits/{}/review", c.submitted_visit),
            &[("action", "return"), ("comment", "培训签到表缺失")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));

    let v: Visit = document(&c.f, &c.submitted_visit, RecordKind::Visit).read().unwrap();
    assert_eq!(v.review.state, ReviewState::Returned);
    assert_eq!(v.review.comment, "培训签到表缺失");
    let (doc, _user, device) = last_feed_row(&c.f);
    assert_eq!((doc.as_str(), device.as_str()), (c.submitted_visit.as_str(), "web"));

    let pulled = c.f.pull(&c.inspector, cursor, None).await;
    assert_eq!(pulled.changes.len(), 1, "the phone receives the review");
    assert_eq!(pulled.changes[0].doc_id, c.submitted_visit);
    let history = text(&b.get(&c.f, &format!("/visits/{}", c.submitted_visit)).await);
    assert!(
        history.contains("city") && history.contains(">监管控制台<"),
        "the history names the supervisor and the console"
    );

    let again = b.post(&c.f, &format!("/visits/{}/review", c.submitted_visit), &[("action", "approve")]).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY, "only a submitted visit is reviewed");
}

#[tokio::test]
async fn resolving_a_conflict_writes_the_choice_for_every_phone() {
    let c = city::build().await;
    let cursor = c.f.pull(&c.inspector, 0, None).await.cursor;
    let b = Browser::login(&c.f, "city").await;
    let queue = text(&b.get(&c.f, "/conflicts").await);
    assert!(queue.contains(&c.conflicted_visit) && queue.contains("现场整改已完成") && queue.contains("整改尚未完成"));
    let doc = document(&c.f, &c.conflicted_visit, RecordKind::Visit);
    let conflict = doc.conflicts().into_iter().find(|x| x.path == ["notes"]).expect("the notes conflict");
    let chosen = conflict.values[1].value.clone();

    let r = b
        .post(
            &c.f,
            "/conflicts/resolve",
            &[("doc_id", &c.conflicted_visit), ("kind", "visit"), ("path", "[\"notes\"]"), ("choice", "1")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    let doc = document(&c.f, &c.conflicted_visit, RecordKind::Visit);
    assert!(!doc.has_conflicts());
    assert_eq!(serde_json::json!(doc.read::<Visit>().unwrap().notes), chosen);
    assert!(text(&b.get(&c.f, "/conflicts").await).contains("id=\"none\""));
    let pulled = c.f.pull(&c.inspector, cursor, None).await;
    assert_eq!(pulled.changes.len(), 1);
    assert_eq!(pulled.changes[0].doc_id, c.conflicted_visit);

    // Settling it again: the conflict is gone, so nothing is found and nothing written.
    let before = c.f.count("changes");
    let r = b
        .post(
            &c.f,
            "/conflicts/resolve",
            &[("doc_id", &c.conflicted_visit), ("kind", "visit"), ("path", "[\"notes\"]"), ("choice", "0")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(c.f.count("changes"), before);
}

#[tokio::test]
async fn conflicts_read_in_words_and_block_approval_until_settled() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "city").await;
    let queue = text(&b.get(&c.f, "/conflicts").await);
    // The record's name and the field's label, who and on which device, in local time.
    let card = &queue[queue.find("class=\"card conflict\"").unwrap()..];
    let card = &card[..card.find("</form>").unwrap()];
    assert!(card.contains(">2025-03-10 · 企业01</a>"), "the visit by date and enterprise: {card}");
    assert!(card.contains("<span class=\"crumbs\">备注</span>"), "{card}");
    // The test phones sign their changes as user `u` on device `d`; the console names who
    // pushed them, as the server recorded it: the inspector and their phone, then the time.
    assert!(card.contains("<small>insp · test phone · 20"), "{card}");
    assert!(!card.contains("<small>u · "), "never only the change's own word: {card}");
    assert!(!card.contains(&format!(">{}", &c.conflicted_visit[..8])), "no hex id as a heading");
    let time = regex_like_time(card);
    assert!(time, "a local time YYYY-MM-DD HH:MM:SS: {card}");
    let en = text(&b.get(&c.f, "/conflicts?lang=en").await);
    assert!(en.contains("China Standard Time"));

    // The visit page marks the disputed value where it is shown and links to its form.
    let page = text(&b.get(&c.f, &format!("/visits/{}", c.conflicted_visit)).await);
    assert!(page.contains("<dd class=\"conflicted\">"), "the notes value is marked");
    assert!(page.contains("href=\"#conflict-notes\"") && page.contains("id=\"conflict-notes\""));
    assert!(page.contains("id=\"approve-blocked\""));

    // Approving is refused while the conflict is open; nothing is written.
    let before = c.f.count("changes");
    let r = b.post(&c.f, &format!("/visits/{}/review", c.conflicted_visit), &[("action", "approve")]).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(text(&r).contains("冲突未处理"), "{}", text(&r));
    assert_eq!(c.f.count("changes"), before);
    // Settled, it can be approved.
    let r = b
        .post(
            &c.f,
            "/conflicts/resolve",
            &[("doc_id", &c.conflicted_visit), ("kind", "visit"), ("path", "[\"notes\"]"), ("choice", "0")],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = b.post(&c.f, &format!("/visits/{}/review", c.conflicted_visit), &[("action", "approve")]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    let v: Visit = document(&c.f, &c.conflicted_visit, RecordKind::Visit).read().unwrap();
    assert_eq!(v.review.state, ReviewState::Approved);
}

/// True when `s` holds a `YYYY-MM-DD HH:MM:SS` time.
fn regex_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.windows(19).any(|w| {
        w.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
    })
}

async fn upload(f: &Fixture, b: &Browser, csv: &str, confirm: bool) -> (StatusCode, String) {
    let boundary = "XbOuNdArYx";
    let mut body = String::new();
    let mut field = |name: &str, value: &str, file: Option<&str>| {
        body.push_str(&format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\""));
        if let Some(fname) = file {
            body.push_str(&format!("; filename=\"{fname}\"\r\nContent-Type: text/csv"));
        }
        body.push_str(&format!("\r\n\r\n{value}\r\n"));
    };
    field("csrf", &b.csrf, None);
    field("year", &YEAR.to_string(), None);
    if confirm {
        use base64::Engine;
        field("filename", "list.csv", None);
        field("file_b64", &base64::engine::general_purpose::STANDARD.encode(csv), None);
        field("confirm", "1", None);
    } else {
        field("file", csv, Some("list.csv"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let r = f
        .send(
            Request::post("/admin/import")
                .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
                .header(header::COOKIE, &b.cookie)
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    (r.status, text(&r))
}

#[tokio::test]
async fn import_reports_bad_rows_shows_duplicates_then_creates_documents() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "admin").await;
    let header = "统一社会信用代码,企业名称,县区代码,企业所在县区,行业类别,是否纳入专项治理,是否为市级帮扶对象";
    let new1 = credit_code("210104", 900);
    let new2 = credit_code("210104", 901);
    let docs_before = c.f.count("documents");

    let bad = format!("\u{feff}{header}\n{new1},新企业甲,210104,大东区,矿山,是,否\n91210104000000000X,坏代码,210104,大东区,化工,否,否\n{new2},新企业乙,210104,大东区,钢铁,否,否\n");
    let (status, page) = upload(&c.f, &b, &bad, false).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"errors\""), "{page}");
    assert!(page.contains("<td>3</td>") && page.contains("<td>4</td>"), "lines 3 and 4 named");
    assert!(!page.contains("<td>2</td>"), "line 2 is fine");
    assert_eq!(c.f.count("documents"), docs_before, "nothing applied");

    // 企业01 exists in 沈河区 (210103)? No: a near-identical name must be in the same county.
    let existing = c.expected.iter().find(|e| e.county_code == "210104").unwrap();
    let near = format!("{} ", existing.name.replace("企业", "企 业"));
    let clean = format!("{header}\n{new1},新企业甲,210104,大东区,矿山,是,否\n{new2},{near},210104,大东区,其他,否,是\n{},{},{},{},冶金,否,否\n",
        existing.code, existing.name, existing.county_code, existing.county_name);
    let (_, page) = upload(&c.f, &b, &clean, false).await;
    assert!(page.contains("id=\"duplicates\""), "{page}");
    assert!(page.contains(&existing.code), "same credit code shown");
    assert!(page.contains(&new2), "near-identical name shown");
    assert_eq!(c.f.count("documents"), docs_before, "nothing applied before confirmation");

    let (_, page) = upload(&c.f, &b, &clean, true).await;
    assert!(page.contains("id=\"done\""), "{page}");
    assert_eq!(c.f.count("documents"), docs_before + 2);
    let e: Enterprise = document(&c.f, &new1, RecordKind::Enterprise).read().unwrap();
    assert_eq!((e.name.as_str(), e.special_governance, e.is_assisted_in(YEAR)), ("新企业甲", true, true));
    // The feed holds the deterministic genesis first, byte for byte.
    let conn = ohassist_core::sqlite::open_reader(&c.f.dir.path().join("ohassist.db")).unwrap();
    let first: Vec<u8> = conn
        .query_row("SELECT bytes FROM changes WHERE doc_id = ?1 ORDER BY seq LIMIT 1", [&new1], |r| r.get(0))
        .unwrap();
    let mut genesis = Document::genesis(RecordKind::Enterprise, &new1).changes_since(&[]).remove(0);
    assert_eq!(first, genesis.bytes().to_vec());
    let listed = text(&b.get(&c.f, &format!("/enterprises?year={YEAR}&county=210104")).await);
    assert!(listed.contains(&new1) && listed.contains(&new2));
}
