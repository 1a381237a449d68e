//! The admin pages: users created and their passwords reset through the forms, devices
//! revoked, the import of an XLSX list; none of them for a supervisor.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ohassist_core::sync::wire::{self, LoginResponse, PullRequest};

use crate::city::{self, YEAR};
use crate::common::{credit_code, Fixture};
use crate::{csrf_of, text, Browser};

/// Posts an import file as a browser's multipart form.
async fn upload_file(f: &Fixture, b: &Browser, filename: &str, bytes: &[u8]) -> (StatusCode, String) {
    let boundary = "XbOuNdArYxLsX";
    let mut body: Vec<u8> = Vec::new();
    for (name, value) in [("csrf", b.csrf.as_str()), ("year", &YEAR.to_string())] {
        body.extend(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").bytes(),
        );
    }
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet\r\n\r\n"
        )
        .bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend(format!("\r\n--{boundary}--\r\n").bytes());
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

/// An XLSX workbook whose first sheet holds `rows`, all cells as text.
fn xlsx(rows: &[Vec<String>]) -> Vec<u8> {
    let mut wb = rust_xlsxwriter::Workbook::new();
    let ws = wb.add_worksheet();
    for (r, row) in rows.iter().enumerate() {
        for (c, cell) in row.iter().enumerate() {
            ws.write_string(r as u32, c as u16, cell).unwrap();
        }
    }
    wb.save_to_buffer().unwrap()
}

fn enterprise_count(f: &Fixture, code: &str) -> i64 {
    let conn = ohassist_core::sqlite::open_reader(&f.dir.path().join("ohassist.db")).unwrap();
    conn.query_row("SELECT count(*) FROM enterprises WHERE credit_code = ?1", [code], |r| r.get(0)).unwrap()
}

#[tokio::test]
async fn xlsx_import_reports_a_bad_row_then_creates_enterprises() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "admin").await;
    let header: Vec<String> = [
        "统一社会信用代码",
        "企业名称",
        "县区代码",
        "企业所在县区",
        "行业类别",
        "是否纳入专项治理",
        "是否为市级帮扶对象",
    ]
    .map(String::from)
    .to_vec();
    let row = |code: &str, name: &str, industry: &str, special: &str| -> Vec<String> {
        [code, name, "210103", "沈河区", industry, special, "否"].map(String::from).to_vec()
    };
    let (new1, new2) = (credit_code("210103", 800), credit_code("210103", 801));
    let docs_before = c.f.count("documents");

    let bad = xlsx(&[header.clone(), row(&new1, "表格企业甲", "建材", "是"), row(&new2, "表格企业乙", "纺织", "否")]);
    let (status, page) = upload_file(&c.f, &b, "名单.xlsx", &bad).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("id=\"errors\""), "{page}");
    assert!(page.contains("<td>3</td>") && page.contains("纺织"), "line 3 and its reason named: {page}");
    assert!(!page.contains("<td>2</td>"), "line 2 is fine");
    assert_eq!(c.f.count("documents"), docs_before, "nothing created");
    assert_eq!(enterprise_count(&c.f, &new1), 0);

    let clean = xlsx(&[header, row(&new1, "表格企业甲", "建材", "是"), row(&new2, "表格企业乙", "化工", "否")]);
    let (status, page) = upload_file(&c.f, &b, "名单.XLSX", &clean).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"done\""), "{page}");
    assert_eq!(c.f.count("documents"), docs_before + 2);
    assert_eq!((enterprise_count(&c.f, &new1), enterprise_count(&c.f, &new2)), (1, 1));
    let listed = text(&b.get(&c.f, &format!("/enterprises?year={YEAR}&county=210103")).await);
    assert!(listed.contains(&new1) && listed.contains("表格企业甲"), "{listed}");
    assert!(listed.contains(&new2) && listed.contains("表格企业乙"));
}

async fn api_login(f: &Fixture, username: &str, password: &str, device: &str) -> Option<String> {
    let r = f.login_as(username, password, device).await;
    (r.status == StatusCode::OK).then(|| serde_json::from_slice::<LoginResponse>(&r.body).unwrap().token)
}

async fn pull_status(f: &Fixture, token: &str) -> StatusCode {
    let req = PullRequest { protocol: wire::PROTOCOL_VERSION, cursor: 0, page_token: None, pending: None };
    f.post_wire("/api/v1/sync/pull", token, wire::encode(&req)).await.status
}

/// The one-time password a users page shows after a generated password.
fn shown_password(page: &str) -> String {
    let at = page.find("id=\"password\"").expect("a shown password");
    let rest = &page[at..];
    let start = rest.find("<code>").unwrap() + "<code>".len();
    rest[start..start + rest[start..].find("</code>").unwrap()].to_string()
}

#[tokio::test]
async fn an_admin_creates_users_resets_passwords_and_revokes_devices() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "admin").await;
    let page = b.get(&c.f, "/admin/users").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = csrf_of(&text(&page));

    let form = [
        ("csrf", csrf.as_str()),
        ("username", "wang.li"),
        ("display_name", "王丽"),
        ("role", "inspector"),
        ("org_unit", "210102"),
        ("password", "first pass 123"),
    ];
    let r = b.post(&c.f, "/admin/users", &form).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert!(text(&r).contains("wang.li") && text(&r).contains("王丽"));
    let again = b.post(&c.f, "/admin/users", &form).await;
    assert_eq!(again.status, StatusCode::UNPROCESSABLE_ENTITY, "a taken username is refused");
    let outside = b
        .post(
            &c.f,
            "/admin/users",
            &[("username", "far"), ("display_name", "远"), ("role", "inspector"), ("org_unit", "110101")],
        )
        .await;
    assert_eq!(outside.status, StatusCode::UNPROCESSABLE_ENTITY, "an org unit outside the admin's");
    let forged = b
        .post(
            &c.f,
            "/admin/users",
            &[("csrf", "forged"), ("username", "x1"), ("display_name", "x"), ("role", "admin"), ("org_unit", "210100")],
        )
        .await;
    assert_ne!(forged.status, StatusCode::OK, "a forged form creates nothing");
    assert!(!text(&b.get(&c.f, "/admin/users").await).contains(">x1<"));

    let old = api_login(&c.f, "wang.li", "first pass 123", "phone-w1").await.expect("the new user logs in");
    assert_eq!(pull_status(&c.f, &old).await, StatusCode::OK);

    // A reset: the old password stops working, the new one works.
    let r = b.post(&c.f, "/admin/users/wang.li/password", &[("csrf", &csrf), ("password", "second pass 456")]).await;
    assert_eq!(r.status, StatusCode::OK, "{}", text(&r));
    assert!(api_login(&c.f, "wang.li", "first pass 123", "phone-w2").await.is_none(), "old password refused");
    api_login(&c.f, "wang.li", "second pass 456", "phone-w2").await.expect("new password works");
    // A generated password is shown once and works.
    let r = b.post(&c.f, "/admin/users/wang.li/password", &[("csrf", &csrf), ("password", "")]).await;
    let generated = shown_password(&text(&r));
    assert!(api_login(&c.f, "wang.li", "second pass 456", "phone-w3").await.is_none());
    assert!(api_login(&c.f, "wang.li", &generated, "phone-w3").await.is_some(), "the shown password works");
    let unknown = b.post(&c.f, "/admin/users/nobody/password", &[("password", "whatever 12345")]).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Revoking a device: its token is refused from then on.
    // (A reset ends web sessions only; the phone logs in again anyway, as its user would.)
    let token = api_login(&c.f, "wang.li", &generated, "phone-w2").await.unwrap();
    assert_eq!(pull_status(&c.f, &token).await, StatusCode::OK);
    let devices = b.get(&c.f, "/admin/devices").await;
    assert_eq!(devices.status, StatusCode::OK);
    let devices = text(&devices);
    assert!(devices.contains("phone-w2") && devices.contains("/admin/devices/phone-w2/revoke"), "{devices}");
    let r = b.post(&c.f, "/admin/devices/phone-w2/revoke", &[("csrf", &csrf_of(&devices))]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    assert_eq!(pull_status(&c.f, &token).await, StatusCode::UNAUTHORIZED);
    let devices = text(&b.get(&c.f, "/admin/devices").await);
    assert!(!devices.contains("/admin/devices/phone-w2/revoke"), "a revoked device has no revoke button");
    assert_eq!(pull_status(&c.f, &c.inspector).await, StatusCode::OK, "other devices keep working");
    let missing = b.post(&c.f, "/admin/devices/no-such-phone/revoke", &[]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_supervisor_cannot_use_the_admin_pages() {
    let c = city::build().await;
    for who in ["city", "heping"] {
        let b = Browser::login(&c.f, who).await;
        for path in ["/admin/users", "/admin/devices", "/admin/import"] {
            let r = b.get(&c.f, path).await;
            assert!(
                matches!(r.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
                "{who} GET {path}: {}",
                r.status
            );
        }
        let create = b
            .post(
                &c.f,
                "/admin/users",
                &[("username", "sneaky"), ("display_name", "s"), ("role", "admin"), ("org_unit", "210100")],
            )
            .await;
        assert!(matches!(create.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN), "{who}: {}", create.status);
        let reset = b.post(&c.f, "/admin/users/insp/password", &[("password", "taken over 123")]).await;
        assert!(matches!(reset.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN), "{who}: {}", reset.status);
        let revoke = b.post(&c.f, "/admin/devices/phone-1/revoke", &[]).await;
        assert!(matches!(revoke.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN), "{who}: {}", revoke.status);
    }
    assert!(api_login(&c.f, "sneaky", "whatever", "p").await.is_none());
    assert!(api_login(&c.f, "insp", "taken over 123", "p").await.is_none(), "the password is unchanged");
    assert_eq!(pull_status(&c.f, &c.inspector).await, StatusCode::OK, "the inspector's phone still works");
}

/// Posts a device report as a phone does at each sync.
async fn report(f: &Fixture, token: &str, changes: u64, attachments: u64) -> (StatusCode, serde_json::Value) {
    let body = serde_json::json!({"pending_changes": changes, "pending_attachments": attachments});
    let r = f
        .send(
            Request::post("/api/v1/device/report")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await;
    (r.status, serde_json::from_slice(&r.body).unwrap_or_default())
}

/// The row of the devices page for `device`.
fn device_row(page: &str, device: &str) -> String {
    let at = page.find(&format!("data-device=\"{device}\"")).unwrap_or_else(|| panic!("no row for {device}"));
    let start = page[..at].rfind("<tr").unwrap();
    page[start..at + page[at..].find("</tr>").unwrap()].to_string()
}

#[tokio::test]
async fn the_devices_page_shows_unsynced_data_and_marks_devices_lost_or_retired() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "admin").await;
    let other = c.f.login("insp", "phone-2").await;
    assert_eq!(report(&c.f, &c.inspector, 4, 2).await, (StatusCode::OK, serde_json::json!({"status": "active"})));
    assert_eq!(report(&c.f, &other, 0, 0).await.0, StatusCode::OK);

    let page = text(&b.get(&c.f, "/admin/devices").await);
    let row = device_row(&page, "phone-1");
    assert!(row.contains("有未同步数据") && row.contains("4 项修改") && row.contains("2 个附件"), "{row}");
    assert!(row.contains("正常") && row.contains("/admin/devices/phone-1/lost"), "{row}");
    assert!(!device_row(&page, "phone-2").contains("有未同步数据"), "a device with nothing pending");
    let en = text(&b.get(&c.f, "/admin/devices?lang=en").await);
    assert!(device_row(&en, "phone-1").contains("Holds unsynced data"), "English second");

    // Retired: pushes still accepted, pulls refused; lost: everything refused with 410.
    let csrf = csrf_of(&page);
    let r = b.post(&c.f, "/admin/devices/phone-1/retire", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", text(&r));
    assert_eq!(report(&c.f, &c.inspector, 4, 2).await.1, serde_json::json!({"status": "retired"}));
    assert_eq!(pull_status(&c.f, &c.inspector).await, StatusCode::FORBIDDEN);
    assert!(device_row(&text(&b.get(&c.f, "/admin/devices").await), "phone-1").contains("已退役"));
    let r = b.post(&c.f, "/admin/devices/phone-1/lost", &[("csrf", &csrf)]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(pull_status(&c.f, &c.inspector).await, StatusCode::GONE);
    assert_eq!(report(&c.f, &c.inspector, 0, 0).await.0, StatusCode::GONE);
    assert!(api_login(&c.f, "insp", crate::common::PASSWORD, "phone-1").await.is_none(), "a lost device cannot log in");
    let row = device_row(&text(&b.get(&c.f, "/admin/devices").await), "phone-1");
    assert!(row.contains("已标记丢失") && !row.contains("/admin/devices/phone-1/lost"), "{row}");
    // The inspector's other phone is untouched.
    assert_eq!(pull_status(&c.f, &other).await, StatusCode::OK);
    assert!(device_row(&text(&b.get(&c.f, "/admin/devices").await), "phone-2").contains("正常"));
    // A forged form and a device outside the admin's unit change nothing.
    let forged = b.post(&c.f, "/admin/devices/phone-2/lost", &[("csrf", "forged")]).await;
    assert_ne!(forged.status, StatusCode::SEE_OTHER);
    assert_eq!(pull_status(&c.f, &other).await, StatusCode::OK);
    let missing = b.post(&c.f, "/admin/devices/no-such-phone/retire", &[("csrf", &csrf)]).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_admin_creates_and_revokes_an_api_client_that_reads_the_export_of_its_unit() {
    let c = city::build().await;
    let b = Browser::login(&c.f, "admin").await;
    let page = b.get(&c.f, "/admin/clients").await;
    assert_eq!(page.status, StatusCode::OK);
    let outside = b.post(&c.f, "/admin/clients", &[("name", "邻市平台"), ("org_unit", "210200")]).await;
    assert_eq!(outside.status, StatusCode::UNPROCESSABLE_ENTITY, "another city is outside the admin's unit");
    let created = text(&b.post(&c.f, "/admin/clients", &[("name", "省平台"), ("org_unit", "210102")]).await);
    let at = created.find("id=\"token\"").expect("the token shown once");
    let token: String = created[at..].split("<code>").nth(1).unwrap().chars().take(64).collect();
    assert!(created.contains("省平台") && created.contains("210102"), "{created}");

    let export = crate::api_get(&c.f, "/api/v1/export?limit=2000", &token).await;
    assert_eq!(export.status, StatusCode::OK, "{}", text(&export));
    let body = text(&export);
    let records: Vec<serde_json::Value> = body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (tail, records) = records.split_last().unwrap();
    assert_eq!(tail["more"], false);
    assert!(!records.is_empty());
    assert!(
        records.iter().all(|r| r["record"]["county"]["code"] == "210102" || r["record"]["county_code"] == "210102"),
        "only 和平区's records"
    );
    assert_eq!(crate::api_get(&c.f, "/api/v1/dashboard", &token).await.status, StatusCode::FORBIDDEN);

    let page = text(&b.get(&c.f, "/admin/clients").await);
    assert!(!page.contains(&token), "the token is shown only when created");
    let at = page.find("action=\"/admin/clients/").unwrap() + "action=\"/admin/clients/".len();
    let id = &page[at..at + 32];
    let revoked = b.post(&c.f, &format!("/admin/clients/{id}/revoke"), &[]).await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert!(text(&b.get(&c.f, "/admin/clients").await).contains("已撤销"));
    let refused = crate::api_get(&c.f, "/api/v1/export", &token).await;
    refused.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    // A supervisor has no such page.
    let sup = Browser::login(&c.f, "city").await;
    assert_eq!(sup.get(&c.f, "/admin/clients").await.status, StatusCode::NOT_FOUND);
}
