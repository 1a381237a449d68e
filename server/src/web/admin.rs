//! Admin pages: users (create, reset password), devices (revoke) and the import of the
//! year's assistance list from CSV or XLSX. All within the admin's org unit; all forms
//! CSRF-checked. An import is validated whole first: a bad row is reported with its line
//! and reason and nothing is written; possible duplicates are shown and must be confirmed;
//! then every enterprise is written by the server as a document change (deterministic
//! genesis plus one change), in one transaction, into the feed phones pull.

use crate::sql::{Connection, OptionalExtension};
use axum::extract::{Multipart, Path, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use minijinja::context;
use ohassist_core::doc::{to_json, Author, Document};
use ohassist_core::model::{County, Enterprise, Industry, Label, RecordKind};
use ohassist_core::validate;
use serde::Deserialize;

use super::pages::{base, CsrfForm};
use super::session::Session;
use super::{render, WebError};
use crate::accounts::{self, NewUser, Role};
use crate::api::error::ApiError;
use crate::api::{AppState, DbCalls};
use crate::db::now;
use crate::records;
use crate::scope;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/users", get(users).post(create_user))
        .route("/admin/users/{username}/password", post(reset_password))
        .route("/admin/devices", get(devices))
        .route("/admin/devices/{id}/revoke", post(revoke_device))
        .route("/admin/devices/{id}/lost", post(mark_lost))
        .route("/admin/devices/{id}/retire", post(retire_device))
        .route("/admin/import", get(import_page).post(import))
        .route("/admin/upstream", get(upstream))
}

pub(super) fn require_admin(s: &Session) -> Result<(), WebError> {
    if s.is_admin() {
        Ok(())
    } else {
        Err(ApiError::NotFound.into())
    }
}

async fn users(State(state): State<AppState>, s: Session) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    let unit = s.caller.org_unit.clone();
    let list = state.db.read(move |conn| Ok(accounts::list_users(conn, &unit)?)).await?;
    render("users.html", context! { ..base(&s, "users"), ..context! { users => list, created => () } })
}

#[derive(Deserialize)]
struct CreateUserForm {
    #[serde(default)]
    csrf: String,
    username: String,
    display_name: String,
    role: String,
    org_unit: String,
    #[serde(default)]
    password: String,
}

async fn create_user(
    State(state): State<AppState>,
    s: Session,
    Form(f): Form<CreateUserForm>,
) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let role =
        Role::parse(&f.role).ok_or(WebError::Invalid { zh: "未知角色".into(), en: "unknown role".into() })?;
    let generated = f.password.is_empty().then(accounts::generate_password);
    let password = generated.clone().unwrap_or(f.password.clone());
    let unit = s.caller.org_unit.clone();
    let list = state
        .db
        .write(move |conn| {
            if !scope::covers(conn, &unit, &f.org_unit)? {
                return Ok(Err(None));
            }
            let new = NewUser {
                username: &f.username,
                display_name: &f.display_name,
                role,
                org_unit: &f.org_unit,
                password: &password,
            };
            Ok(accounts::create_user(conn, &new, now()).map_err(Some).map(|_| accounts::list_users(conn, &unit)))
        })
        .await?
        .map_err(|e| match e {
            Some(e) => WebError::from(e),
            None => WebError::Invalid {
                zh: "所属单位须在您的辖区内".into(),
                en: "the org unit must lie inside yours".into(),
            },
        })??;
    render("users.html", context! { ..base(&s, "users"), ..context! { users => list, created => generated } })
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
}

async fn reset_password(
    State(state): State<AppState>,
    s: Session,
    Path(username): Path<String>,
    Form(f): Form<PasswordForm>,
) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let generated = f.password.is_empty().then(accounts::generate_password);
    let password = generated.clone().unwrap_or(f.password.clone());
    let unit = s.caller.org_unit.clone();
    let list = state
        .db
        .write(move |conn| {
            let user = match accounts::find_user(conn, &username)? {
                Some((u, h)) if scope::covers(conn, &unit, &u.org_unit)? => Some((u, h)),
                _ => None,
            };
            let Some((user, _)) = user else { return Err(ApiError::NotFound) };
            if let Err(e) = accounts::set_password(conn, &username, &password) {
                return Ok(Err(e));
            }
            crate::login::revoke_user_sessions(conn, &user.id, now())?;
            Ok(Ok(accounts::list_users(conn, &unit)?))
        })
        .await?
        .map_err(WebError::from)?;
    render("users.html", context! { ..base(&s, "users"), ..context! { users => list, created => generated } })
}

/// A row of the devices page: the device and what it last reported it holds unsynced.
#[derive(serde::Serialize)]
struct DeviceRow {
    #[serde(flatten)]
    device: accounts::Device,
    status: &'static str,
    holds_unsynced: bool,
    last_seen_text: String,
    reported_text: String,
    status_changed_text: String,
}

async fn devices(State(state): State<AppState>, s: Session) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    let unit = s.caller.org_unit.clone();
    let list = state.db.read(move |conn| Ok(accounts::list_devices(conn, &unit, now())?)).await?;
    let when = |t: Option<i64>| t.map(|t| super::views::format_ms(t * 1000)).unwrap_or_default();
    let rows: Vec<DeviceRow> = list
        .into_iter()
        .map(|d| DeviceRow {
            status: d.status.as_str(),
            holds_unsynced: d.holds_unsynced(),
            last_seen_text: when(d.last_seen),
            reported_text: when(d.reported_at),
            status_changed_text: when(d.status_changed_at),
            device: d,
        })
        .collect();
    render("devices.html", context! { ..base(&s, "devices"), ..context! { devices => rows } })
}

/// The link to the upstream server (`ohassist serve --upstream`), as `ohassist upstream
/// status` prints it, and the lower servers relaying to this one.
async fn upstream(State(state): State<AppState>, s: Session) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    let unit = s.caller.org_unit.clone();
    let (link, relays) = state
        .db
        .read(move |conn| Ok((crate::relay::status(conn)?, crate::relay::relay_accounts(conn, &unit, now())?)))
        .await?;
    let when = |t: Option<i64>| t.map(|t| super::views::format_ms(t * 1000)).unwrap_or_default();
    let relays: Vec<minijinja::Value> = relays
        .into_iter()
        .map(|r| {
            minijinja::Value::from_serialize(serde_json::json!({ "last_sync_text": when(r.last_sync), "account": r }))
        })
        .collect();
    render(
        "upstream.html",
        context! { ..base(&s, "upstream"), ..context! {
            link => link,
            last_up_text => when(link.last_up_at),
            last_down_text => when(link.last_down_at),
            last_error_text => when(link.last_error_at),
            token_expires_text => when(link.token_expires_at),
            relays => relays,
            silent_after_h => crate::relay::SILENT_AFTER_SECS / 3600,
        } },
    )
}

async fn mark_lost(
    state: State<AppState>,
    s: Session,
    id: Path<String>,
    f: Form<CsrfForm>,
) -> Result<Response, WebError> {
    set_device_status(state, s, id, f, accounts::DeviceStatus::Lost).await
}

async fn retire_device(
    state: State<AppState>,
    s: Session,
    id: Path<String>,
    f: Form<CsrfForm>,
) -> Result<Response, WebError> {
    set_device_status(state, s, id, f, accounts::DeviceStatus::Retired).await
}

async fn set_device_status(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
    status: accounts::DeviceStatus,
) -> Result<Response, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let unit = s.caller.org_unit.clone();
    state.db.write(move |conn| crate::api::admin::set_device_status_in_unit(conn, &unit, &id, status)).await?;
    Ok(Redirect::to("/admin/devices").into_response())
}

async fn revoke_device(
    State(state): State<AppState>,
    s: Session,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, WebError> {
    require_admin(&s)?;
    s.check_csrf(&f.csrf)?;
    let unit = s.caller.org_unit.clone();
    state
        .db
        .write(move |conn| {
            match accounts::device_owner_unit(conn, &id)? {
                Some(owner) if scope::covers(conn, &unit, &owner)? => {}
                _ => return Err(ApiError::NotFound),
            }
            accounts::revoke_device(conn, &id, now()).map_err(|_| ApiError::NotFound)
        })
        .await?;
    Ok(Redirect::to("/admin/devices").into_response())
}

async fn import_page(s: Session) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    render("import.html", context! { ..base(&s, "import"), ..context! { year => super::views::this_year() } })
}

/// One clean row of an import file.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImportRow {
    pub line: usize,
    pub enterprise: Enterprise,
}

/// A row refused, with its line in the file (the header is line 1).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowError {
    pub line: usize,
    pub zh: String,
    pub en: String,
}

/// A possible duplicate, to be confirmed before anything is written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Duplicate {
    pub line: usize,
    pub credit_code: String,
    pub name: String,
    pub zh: String,
    pub en: String,
}

/// The columns an import file must (or may) have, by header text.
const COL_CODE: &str = "统一社会信用代码";
const COL_NAME: &str = "企业名称";
const COL_COUNTY_CODE: &str = "县区代码";
const COL_COUNTY: &str = "企业所在县区";
const COL_INDUSTRY: &str = "行业类别";
const COL_GOVERNANCE: &str = "是否纳入专项治理";
const COL_CITY: &str = "是否为市级帮扶对象";

/// Bounds of an import file: an enterprise list of a province fits many times over.
pub const MAX_IMPORT_ROWS: usize = 20_000;
pub const MAX_IMPORT_COLUMNS: usize = 64;
pub const MAX_IMPORT_CELL_CHARS: usize = 1_000;
/// Uncompressed bytes of an XLSX file's parts, by its zip directory.
pub const MAX_IMPORT_XLSX_BYTES: u64 = 64 * 1024 * 1024;

/// Reads an uploaded file into rows of text: XLSX (first sheet) or CSV (UTF-8, BOM allowed),
/// within the bounds above (checked before the rows are kept). CPU work: call it off the
/// async threads.
pub fn read_table(filename: &str, bytes: &[u8]) -> Result<Vec<Vec<String>>, RowError> {
    let rows = read_rows(filename, bytes)?;
    if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() > MAX_IMPORT_COLUMNS) {
        return Err(RowError {
            line: i + 1,
            zh: format!("列数过多：{} 列，上限 {MAX_IMPORT_COLUMNS}", row.len()),
            en: format!("{} columns, at most {MAX_IMPORT_COLUMNS}", row.len()),
        });
    }
    for (i, row) in rows.iter().enumerate() {
        if row.iter().any(|c| c.chars().count() > MAX_IMPORT_CELL_CHARS) {
            return Err(RowError {
                line: i + 1,
                zh: format!("单元格过长，上限 {MAX_IMPORT_CELL_CHARS} 个字符"),
                en: format!("a cell longer than {MAX_IMPORT_CELL_CHARS} characters"),
            });
        }
    }
    Ok(rows)
}

fn too_many_rows() -> RowError {
    RowError {
        line: MAX_IMPORT_ROWS + 1,
        zh: format!("行数过多，上限 {MAX_IMPORT_ROWS} 行"),
        en: format!("more than {MAX_IMPORT_ROWS} rows"),
    }
}

fn read_rows(filename: &str, bytes: &[u8]) -> Result<Vec<Vec<String>>, RowError> {
    let unreadable =
        |en: String| RowError { line: 0, zh: "文件无法读取（应为 UTF-8 编码的 CSV 或 XLSX）".into(), en };
    if filename.to_lowercase().ends_with(".xlsx") {
        use calamine::{Reader, Xlsx};
        // A few MB of zip may inflate to gigabytes of sheet XML: read the directory first.
        let archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
            .map_err(|e| unreadable(format!("not a zip file: {e}")))?;
        let declared: u64 = archive.decompressed_size().map(|n| n as u64).unwrap_or(u64::MAX);
        if declared > MAX_IMPORT_XLSX_BYTES {
            return Err(RowError {
                line: 0,
                zh: format!("文件解压后过大（上限 {} MB）", MAX_IMPORT_XLSX_BYTES >> 20),
                en: format!("the file is larger than {} MB uncompressed", MAX_IMPORT_XLSX_BYTES >> 20),
            });
        }
        let mut wb: Xlsx<std::io::Cursor<Vec<u8>>> =
            calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec()))
                .map_err(|e: calamine::XlsxError| unreadable(e.to_string()))?;
        let range = wb
            .worksheet_range_at(0)
            .ok_or_else(|| unreadable("no worksheet".into()))?
            .map_err(|e| unreadable(e.to_string()))?;
        if range.height() > MAX_IMPORT_ROWS {
            return Err(too_many_rows());
        }
        return Ok(range.rows().map(|r| r.iter().map(|c| c.to_string().trim().to_string()).collect()).collect());
    }
    let text = std::str::from_utf8(bytes).map_err(|e| unreadable(e.to_string()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for (i, rec) in reader.records().enumerate() {
        if i >= MAX_IMPORT_ROWS {
            return Err(too_many_rows());
        }
        let rec =
            rec.map_err(|e| RowError { line: i + 1, zh: format!("CSV 格式错误：{e}"), en: e.to_string() })?;
        rows.push(rec.iter().map(|c| c.trim().to_string()).collect());
    }
    Ok(rows)
}

fn yes_no(v: &str) -> Option<bool> {
    match v {
        "是" | "yes" | "Y" | "y" | "1" | "true" => Some(true),
        "否" | "no" | "N" | "n" | "0" | "false" | "" => Some(false),
        _ => None,
    }
}

fn industry(v: &str) -> Option<Industry> {
    Industry::ALL.iter().copied().find(|i| i.label_zh() == v || i.code() == v || i.label_en().eq_ignore_ascii_case(v))
}

/// Validates every row of an import: all of it clean, or the errors.
pub fn validate_rows(rows: &[Vec<String>], year: i32, org_unit: &str) -> Result<Vec<ImportRow>, Vec<RowError>> {
    let mut errors = Vec::new();
    let Some(header) = rows.first() else {
        return Err(vec![RowError { line: 1, zh: "文件为空".into(), en: "the file is empty".into() }]);
    };
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let required = [COL_CODE, COL_NAME, COL_COUNTY_CODE, COL_COUNTY, COL_INDUSTRY];
    let missing: Vec<&str> = required.iter().copied().filter(|c| col(c).is_none()).collect();
    if !missing.is_empty() {
        return Err(vec![RowError {
            line: 1,
            zh: format!("表头缺少列：{}", missing.join("、")),
            en: format!("the header lacks the columns {}", missing.join(", ")),
        }]);
    }
    let cell = |row: &Vec<String>, name: &str| col(name).and_then(|i| row.get(i)).cloned().unwrap_or_default();
    let mut out = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (i, row) in rows.iter().enumerate().skip(1) {
        let line = i + 1;
        if row.iter().all(|c| c.is_empty()) {
            continue;
        }
        let mut fail = |zh: String, en: String| errors.push(RowError { line, zh, en });
        let code = ohassist_core::credit_code::normalise(&cell(row, COL_CODE));
        let Some(ind) = industry(&cell(row, COL_INDUSTRY)) else {
            fail(
                format!("行业类别“{}”应为 矿山/建材/冶金/化工/其他", cell(row, COL_INDUSTRY)),
                format!("industry {:?} must be one of 矿山/建材/冶金/化工/其他", cell(row, COL_INDUSTRY)),
            );
            continue;
        };
        let (Some(governance), Some(city)) = (yes_no(&cell(row, COL_GOVERNANCE)), yes_no(&cell(row, COL_CITY))) else {
            fail("“是否”列只能填 是 或 否".into(), "yes/no columns take 是 or 否".into());
            continue;
        };
        let mut e = Enterprise {
            credit_code: code.clone(),
            name: cell(row, COL_NAME),
            county: County { code: cell(row, COL_COUNTY_CODE), name: cell(row, COL_COUNTY) },
            industry: Some(ind),
            special_governance: governance,
            city_level_target: city,
            ..Enterprise::default()
        };
        e.add_year(year);
        if let Err(v) = validate::enterprise(&e) {
            fail(v.message_zh(), v.message_en());
            continue;
        }
        // Zones are imported by their city (the host county's admin adds their records by phone).
        if !scope::within(org_unit, &e.county.code) {
            fail(
                format!("县区代码 {} 不在您的辖区内", e.county.code),
                format!("county {} lies outside your org unit", e.county.code),
            );
            continue;
        }
        if let Some(first) = seen.insert(code.clone(), line) {
            fail(format!("统一社会信用代码与第 {first} 行重复"), format!("the credit code repeats line {first}"));
            continue;
        }
        out.push(ImportRow { line, enterprise: e });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// A name with spaces, brackets and punctuation removed, for duplicate detection.
fn normalised_name(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Levenshtein distance over characters, capped: only "at most 1" matters here.
fn near(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a == b {
        return true;
    }
    if a.len().abs_diff(b.len()) > 1 || a.len().min(b.len()) < 6 {
        return false;
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + (ca != cb) as usize).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()] <= 1
}

/// Possible duplicates of clean rows: a credit code the server already holds, or a
/// near-identical name in the same county (on the server or elsewhere in the file).
pub fn duplicates(conn: &Connection, rows: &[ImportRow]) -> crate::sql::Result<Vec<Duplicate>> {
    let mut out = Vec::new();
    let mut by_code = conn.prepare_cached("SELECT name FROM enterprises WHERE credit_code = ?1")?;
    let mut in_county = conn.prepare_cached("SELECT credit_code, name FROM enterprises WHERE county_code = ?1")?;
    for (k, r) in rows.iter().enumerate() {
        let e = &r.enterprise;
        let dup = |zh: String, en: String| Duplicate {
            line: r.line,
            credit_code: e.credit_code.clone(),
            name: e.name.clone(),
            zh,
            en,
        };
        if let Some(name) = by_code.query_row([&e.credit_code], |x| x.get::<_, String>(0)).optional()? {
            out.push(dup(
                format!(
                    "统一社会信用代码已存在（{name}），确认后将把 {} 年加入其帮扶年度",
                    e.assistance_years.keys().next().cloned().unwrap_or_default()
                ),
                format!("the credit code exists already ({name}); confirming adds the year to it"),
            ));
            continue;
        }
        let n = normalised_name(&e.name);
        let similar: Vec<(String, String)> = in_county
            .query_map([&e.county.code], |x| Ok((x.get::<_, String>(0)?, x.get::<_, String>(1)?)))?
            .collect::<crate::sql::Result<Vec<_>>>()?
            .into_iter()
            .filter(|(_, name)| near(&normalised_name(name), &n))
            .collect();
        if let Some((code, name)) = similar.first() {
            out.push(dup(
                format!("同一县区已有名称相近的企业：{name}（{code}）"),
                format!("a similar name exists in the same county: {name} ({code})"),
            ));
            continue;
        }
        if let Some(other) = rows[..k]
            .iter()
            .find(|o| o.enterprise.county.code == e.county.code && near(&normalised_name(&o.enterprise.name), &n))
        {
            out.push(dup(
                format!("与第 {} 行名称相近（同一县区）", other.line),
                format!("the name is close to line {} in the same county", other.line),
            ));
        }
    }
    Ok(out)
}

/// Writes the import: each enterprise as a server change (a new document from its
/// genesis, or the year added to an existing one), all in one transaction.
pub fn apply_import(
    conn: &mut Connection,
    caller: &crate::accounts::Caller,
    rows: &[ImportRow],
    year: i32,
    now: i64,
) -> Result<usize, ApiError> {
    let tx = conn.transaction_with_behavior(crate::sql::TransactionBehavior::Immediate)?;
    let author = Author { user: caller.user_id.clone(), device: records::WEB_DEVICE.to_string() };
    let mut written = 0;
    for r in rows {
        let new_record = r.enterprise.clone();
        let exists: bool =
            tx.query_row("SELECT count(*) FROM documents WHERE id = ?1", [&new_record.credit_code], |x| x.get(0))?;
        let hash = records::apply_server_edit_in(
            &tx,
            caller,
            RecordKind::Enterprise,
            &new_record.credit_code,
            now,
            |doc: &mut Document| -> Result<_, ApiError> {
                let actor = automerge::ActorId::random();
                if exists {
                    let old: Enterprise = doc.read()?;
                    let mut new = old.clone();
                    new.add_year(year);
                    Ok(doc.write_diff(&actor, &author, &to_json(&old), &to_json(&new))?)
                } else {
                    // The genesis holds no schema_version: the diff must write it.
                    let mut old = to_json(&Enterprise::default());
                    if let Some(o) = old.as_object_mut() {
                        o.remove("schema_version");
                    }
                    Ok(doc.write_diff(&actor, &author, &old, &to_json(&new_record))?)
                }
            },
        )?;
        written += hash.is_some() as usize;
    }
    tx.commit()?;
    Ok(written)
}

async fn import(State(state): State<AppState>, s: Session, mut multipart: Multipart) -> Result<Html<String>, WebError> {
    require_admin(&s)?;
    let (mut csrf, mut year, mut filename, mut bytes, mut confirmed) =
        (String::new(), String::new(), String::new(), Vec::new(), false);
    let bad = |e: axum::extract::multipart::MultipartError| WebError::Invalid {
        zh: "上传失败".into(),
        en: e.body_text(),
    };
    while let Some(field) = multipart.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "csrf" => csrf = field.text().await.map_err(bad)?,
            "year" => year = field.text().await.map_err(bad)?,
            "confirm" => confirmed = true,
            "file" => {
                filename = field.file_name().unwrap_or("upload.csv").to_string();
                bytes = field.bytes().await.map_err(bad)?.to_vec();
            }
            // The confirmation form carries the checked file back.
            "file_b64" => {
                let text = field.text().await.map_err(bad)?;
                bytes = base64::engine::general_purpose::STANDARD.decode(text.trim()).unwrap_or_default();
            }
            "filename" => filename = field.text().await.map_err(bad)?,
            _ => {}
        }
    }
    s.check_csrf(&csrf)?;
    let year: i32 = year
        .trim()
        .parse()
        .ok()
        .filter(|y| (2000..=2100).contains(y))
        .ok_or(WebError::Invalid { zh: "年份无效".into(), en: "invalid year".into() })?;
    let page = |ctx: minijinja::Value| render("import.html", context! { ..base(&s, "import"), ..ctx });
    // Parsed and validated off the async threads and outside the writer.
    let (name, file, unit) = (filename.clone(), bytes.clone(), s.caller.org_unit.clone());
    let checked = tokio::task::spawn_blocking(move || {
        let rows = read_table(&name, &file).map_err(|e| vec![e])?;
        validate_rows(&rows, year, &unit)
    })
    .await
    .map_err(|e| WebError::Api(ApiError::from(e)))?;
    let clean = match checked {
        Ok(clean) => clean,
        Err(errors) => return page(context! { year, errors }),
    };
    let caller = s.caller.clone();
    let file_b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let outcome = state
        .db
        .write(move |conn| {
            let dups = duplicates(conn, &clean)?;
            if !dups.is_empty() && !confirmed {
                return Ok(Err(dups));
            }
            Ok(Ok(apply_import(conn, &caller, &clean, year, now())?))
        })
        .await?;
    match outcome {
        Err(duplicates) => page(context! { year, duplicates, file_b64, filename }),
        Ok(written) => page(context! { year, written }),
    }
}

#[cfg(test)]
mod import_bounds {
    use super::*;

    #[test]
    fn oversized_imports_are_refused_before_their_rows_are_kept() {
        let many = "a,b\n".repeat(MAX_IMPORT_ROWS + 1);
        assert!(read_table("x.csv", many.as_bytes()).unwrap_err().en.contains("rows"));
        let wide = vec!["c"; MAX_IMPORT_COLUMNS + 1].join(",");
        assert!(read_table("x.csv", wide.as_bytes()).unwrap_err().en.contains("columns"));
        let long = "x".repeat(MAX_IMPORT_CELL_CHARS + 1);
        assert!(read_table("x.csv", long.as_bytes()).unwrap_err().en.contains("cell"));
        // A zip whose one part inflates to 100 MB of zeros (a few hundred KB on the wire).
        let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        w.start_file("xl/worksheets/sheet1.xml", opts).unwrap();
        let zeros = vec![b'0'; 1 << 20];
        for _ in 0..100 {
            std::io::Write::write_all(&mut w, &zeros).unwrap();
        }
        let bomb = w.finish().unwrap().into_inner();
        assert!(bomb.len() < 1 << 20);
        let e = read_table("bomb.xlsx", &bomb).unwrap_err();
        assert!(e.en.contains("uncompressed"), "{}", e.en);
    }
}
