//! What the console's pages and the JSON API show, read with scope applied: the query
//! parameters both accept, an enterprise with its status and visits, a visit with its
//! history and conflicts, the conflicts queue. Shared so that the HTML and the JSON can
//! never disagree.

use std::collections::{BTreeMap, HashMap};

use crate::sql::{Connection, OptionalExtension};
use ohassist_core::doc::{Conflict, Document, HistoryEntry};
use ohassist_core::model::{field_label, Enterprise, FieldLabel, Industry, RecordKind, SixOnes, Visit};
use serde::Serialize;

use super::WebError;
use crate::accounts::Caller;
use crate::api::error::ApiError;
use crate::api::DbCalls;
use crate::db::Db;
use crate::records;
use crate::reports::{self, ListFilter, Signature, StatusFilter, StatusRow};
use crate::scope;
use ohassist_core::status::Table2Row;

/// Query parameters as sent (empty values count as absent).
pub type Params = BTreeMap<String, String>;

fn param<'a>(p: &'a Params, key: &str) -> Option<&'a str> {
    p.get(key).map(|s| s.trim()).filter(|s| !s.is_empty())
}

/// The current calendar year (UTC), the default of every `year` parameter.
pub fn this_year() -> i32 {
    time::OffsetDateTime::now_utc().year()
}

/// True when `code` lies inside `org_unit` ([`scope::covers`]); the database is asked only
/// when the prefix alone does not decide (a zone its host county covers).
pub async fn covers(db: &Db, org_unit: &str, code: &str) -> Result<bool, ApiError> {
    if scope::within(org_unit, code) {
        return Ok(true);
    }
    let (unit, code) = (org_unit.to_string(), code.to_string());
    db.read(move |conn| Ok(scope::covers(conn, &unit, &code)?)).await
}

/// `year` (default: this year) and `unit` (default: the caller's org unit; another unit
/// must lie inside it, or it is answered as not found).
pub async fn unit_and_year(db: &Db, p: &Params, org_unit: &str) -> Result<(String, i32), WebError> {
    let (unit, year) = unit_and_maybe_year(db, p, org_unit).await?;
    Ok((unit, year.unwrap_or_else(this_year)))
}

/// The year asked for, else the latest programme year with an assistance list in `unit`,
/// else this year: a console opened in January shows last year's finished work.
pub fn year_or_latest(conn: &Connection, unit: &str, year: Option<i32>) -> crate::sql::Result<i32> {
    Ok(match year {
        Some(y) => y,
        None => reports::latest_year(conn, unit)?.unwrap_or_else(this_year),
    })
}

/// [`unit_and_year`] with the year left open when not given.
pub async fn unit_and_maybe_year(db: &Db, p: &Params, org_unit: &str) -> Result<(String, Option<i32>), WebError> {
    let year = match param(p, "year") {
        None => None,
        Some(y) => Some(y.parse::<i32>().ok().filter(|y| (2000..=2100).contains(y)).ok_or_else(|| {
            WebError::bad_filter(
                "year",
                format!("年份“{y}”无效，应为 2000–2100"),
                format!("year {y:?} is not 2000-2100"),
            )
        })?),
    };
    let unit = match param(p, "unit") {
        None => org_unit.to_string(),
        Some(u) => {
            if !scope::is_division_code(u) {
                return Err(WebError::bad_filter(
                    "unit",
                    format!("单位“{u}”应为 6 位行政区划代码"),
                    format!("unit {u:?} must be a 6-digit division code"),
                ));
            }
            if !covers(db, org_unit, u).await? {
                return Err(ApiError::NotFound.into());
            }
            u.to_string()
        }
    };
    Ok((unit, year))
}

/// What both official tables are made of, read once for the HTML page, the files and the
/// JSON: the unit, its name as printed (`unit_name`, default the unit's), the year (asked
/// for, else the latest with a list), Table 1's rows, and the lines printed under it.
pub struct TableData {
    pub unit: String,
    pub unit_name: String,
    pub year: i32,
    pub rows: Vec<StatusRow>,
    /// Table 2 of `rows`, by county or by city (the `by` parameter; a province's default is
    /// by city), and its 合计.
    pub table2: (Vec<Table2Row>, Table2Row),
    pub by: reports::Table2Rows,
    pub signature: Signature,
}

/// Reads [`TableData`] for `unit` (already checked to be in the caller's scope): the
/// `unit_name`, `reporter` (default: the caller's name) and `phone` parameters as printed.
pub async fn table_data(
    db: &Db,
    p: &Params,
    caller: &Caller,
    unit: String,
    year: Option<i32>,
) -> Result<TableData, WebError> {
    let name_param = p.get("unit_name").map(|u| u.trim().to_string()).filter(|u| !u.is_empty());
    let reporter = p.get("reporter").cloned().unwrap_or_else(|| caller.display_name.clone());
    let phone = p.get("phone").cloned().unwrap_or_default();
    // Sent empty it is refused, not taken as absent: the document lists its two values.
    let by = match p.get("by").map(|b| b.trim()) {
        None => reports::Table2Rows::default_for(&unit),
        Some(b) => reports::Table2Rows::parse(b).ok_or_else(|| {
            WebError::bad_filter("by", "表2 的行应为 county（按县区）或 city（按市）", "by must be county or city")
        })?,
    };
    let (unit_name, unit, rows, table2, year) = db
        .read(move |conn| {
            let year = year_or_latest(conn, &unit, year)?;
            let units = crate::units::Units::load(conn)?;
            let unit_name = match name_param {
                Some(n) => n,
                None => units.title_name(&unit),
            };
            let rows = reports::table1(conn, &unit, year)?;
            let table2 = reports::table2_by(&rows, by, &units);
            Ok((unit_name, unit, rows, table2, year))
        })
        .await?;
    // Names are kept trimmed (`units`); the parameter is trimmed above.
    let signature = Signature { unit: unit_name.clone(), reporter, phone };
    Ok(TableData { unit, unit_name, year, rows, table2, by, signature })
}

/// The enterprise list's filters, each checked against its vocabulary.
pub async fn list_filter(db: &Db, p: &Params, unit: &str) -> Result<ListFilter, WebError> {
    let county = match param(p, "county") {
        None => None,
        Some(c) if !scope::is_division_code(c) => {
            return Err(WebError::bad_filter(
                "county",
                format!("县区“{c}”应为 6 位行政区划代码"),
                format!("county {c:?} must be a 6-digit division code"),
            ))
        }
        Some(c) if !covers(db, unit, c).await? => return Err(ApiError::NotFound.into()),
        Some(c) => Some(c.to_string()),
    };
    let industry = match param(p, "industry") {
        None => None,
        Some(i) => Some(Industry::from_code(i).ok_or_else(|| {
            WebError::bad_filter("industry", format!("未知行业类别“{i}”"), format!("unknown industry {i:?}"))
        })?),
    };
    let missing = match param(p, "missing") {
        None => None,
        Some(m) => Some(SixOnes::from_code(m).filter(|s| *s != SixOnes::ChronicScreening).ok_or_else(|| {
            WebError::bad_filter("missing", format!("未知“六个一”项目“{m}”"), format!("unknown six-ones item {m:?}"))
        })?),
    };
    let status = match param(p, "status") {
        None => None,
        Some(s) => Some(StatusFilter::parse(s).ok_or_else(|| {
            WebError::bad_filter("status", format!("未知状态“{s}”"), format!("unknown status {s:?}"))
        })?),
    };
    let query = param(p, "q").map(|q| q.chars().take(100).collect());
    Ok(ListFilter { county, industry, missing, status, query, credit_codes: None })
}

/// A visit as listed on its enterprise's page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VisitSummary {
    pub id: String,
    pub visit_date: String,
    #[schema(value_type = ohassist_core::model::ReviewState)]
    pub review_state: String,
    pub inspectors: BTreeMap<String, String>,
    pub has_conflicts: bool,
    pub deleted: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct EnterpriseView {
    pub enterprise: Enterprise,
    /// The unit it is registered to, by name (`和平区`, `其他（沈阳经济技术开发区）`).
    pub unit_label: String,
    pub has_conflicts: bool,
    /// The computed Table 1 status for each year of its list.
    pub status: Vec<YearStatus>,
    pub visits: Vec<VisitSummary>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct YearStatus {
    pub year: i32,
    #[serde(flatten)]
    pub row: StatusRow,
}

/// An enterprise by credit code, as typed: lower case and stray spaces are normalised.
pub fn enterprise(conn: &Connection, org_unit: &str, code: &str) -> Result<EnterpriseView, ApiError> {
    let code = &ohassist_core::credit_code::normalise(code);
    let doc = records::load_in_scope(conn, org_unit, RecordKind::Enterprise, code)?;
    let enterprise: Enterprise = doc.read()?;
    let status =
        reports::status_of(conn, code)?.into_iter().map(|(year, row)| YearStatus { year, row }).collect::<Vec<_>>();
    let mut stmt = conn.prepare_cached(
        "SELECT id, visit_date, review_state, inspectors, has_conflicts, deleted FROM visits
         WHERE enterprise_id = ?1 ORDER BY visit_date DESC, id",
    )?;
    let visits = stmt
        .query_map([code], |r| {
            let inspectors: String = r.get(3)?;
            Ok(VisitSummary {
                id: r.get(0)?,
                visit_date: r.get(1)?,
                review_state: r.get(2)?,
                inspectors: serde_json::from_str(&inspectors).unwrap_or_default(),
                has_conflicts: r.get(4)?,
                deleted: r.get(5)?,
            })
        })?
        .collect::<crate::sql::Result<Vec<_>>>()?;
    let unit_label = crate::units::Units::load(conn)?.row_label(&enterprise.county.code, &enterprise.county.name);
    Ok(EnterpriseView { enterprise, unit_label, has_conflicts: doc.has_conflicts(), status, visits })
}

/// One entry of a record's history, with the user's name when the server knows them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct HistoryView {
    #[serde(flatten)]
    pub entry: HistoryEntry,
    pub user_name: String,
    pub device_name: String,
    /// China Standard Time.
    pub time: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VisitView {
    pub id: String,
    pub visit: Visit,
    pub enterprise_name: String,
    pub history: Vec<HistoryView>,
    pub conflicts: Vec<ConflictView>,
}

/// A conflict with display strings: the record's name, the field's label, who wrote each
/// value on which device and when (China Standard Time).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConflictView {
    pub doc_id: String,
    pub kind: &'static str,
    #[serde(flatten)]
    pub conflict: Conflict,
    pub path_json: String,
    pub path_text: String,
    /// `甲矿业` for an enterprise, `2025-03-01 · 甲矿业` for a visit.
    pub record_name: String,
    /// `危害因素辨识 › 破碎岗位 › 接触人数`
    pub label: FieldLabel,
    /// An anchor for the conflict's form on its record's page.
    pub anchor: String,
    pub values_text: Vec<ValueText>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ValueText {
    pub value: String,
    pub user_name: String,
    pub device: String,
    pub time: String,
}

pub fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// China Standard Time, the offset every office of the programme works in.
const CST: time::UtcOffset = match time::UtcOffset::from_hms(8, 0, 0) {
    Ok(o) => o,
    Err(_) => time::UtcOffset::UTC,
};

/// A time for people: `2025-03-01 10:00:00` in China Standard Time.
pub fn local_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).map(local_time).unwrap_or_default()
}

fn local_time(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(CST);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// An RFC 3339 text (as devices record times) in China Standard Time; other text as it is.
pub fn local_rfc3339(s: &str) -> String {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(local_time)
        .unwrap_or_else(|_| s.to_string())
}

/// Who wrote what: users' display names and devices' names, by id.
pub struct Names {
    users: HashMap<String, String>,
    devices: HashMap<String, String>,
}

impl Names {
    pub fn load(conn: &Connection) -> crate::sql::Result<Names> {
        // Original authors of relayed changes (users of a lower server) by the name it reported.
        let users = conn
            .prepare_cached(
                "SELECT user_id, max(display_name) FROM change_origins GROUP BY user_id
                 UNION ALL SELECT id, display_name FROM users",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<crate::sql::Result<_>>()?;
        let devices = conn
            .prepare_cached("SELECT id, name FROM devices WHERE name <> ''")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<crate::sql::Result<_>>()?;
        Ok(Names { users, devices })
    }

    pub fn user(&self, id: &str) -> String {
        self.users.get(id).cloned().unwrap_or_else(|| id.to_string())
    }

    pub fn device(&self, id: &str) -> String {
        if id == crate::records::WEB_DEVICE {
            return "监管控制台".to_string();
        }
        if id == crate::records::UPSTREAM_DEVICE {
            return "上级服务器".to_string();
        }
        match self.devices.get(id) {
            Some(name) => name.clone(),
            // A device that never named itself: a short form of its id is enough to tell two apart.
            None => format!("设备 {}", id.chars().take(8).collect::<String>()),
        }
    }
}

/// A value for people: text as it is, yes/no in Chinese, numbers and others as JSON.
fn value_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Bool(true) => "是".into(),
        serde_json::Value::Bool(false) => "否".into(),
        serde_json::Value::Null => "（空）".into(),
        other => other.to_string(),
    }
}

/// The anchor of a conflict's form: stable for a path, safe in HTML ids.
pub fn conflict_anchor(path: &[String]) -> String {
    let joined = path.join(".");
    let safe: String = joined.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    format!("conflict-{safe}")
}

fn conflict_views(
    conn: &Connection,
    doc: &Document,
    names: &Names,
    record_name: &str,
) -> Result<Vec<ConflictView>, ApiError> {
    let record = doc.json(None);
    let recorded = crate::records::recorded_authors(conn, doc.id())?;
    Ok(doc
        .conflicts()
        .into_iter()
        .map(|mut c| {
            // Who pushed each value, as the server recorded it; never only the phone's word.
            for v in &mut c.values {
                if let Some(a) = recorded.get(&v.change) {
                    v.author = Some(a.clone());
                }
            }
            let values_text = c
                .values
                .iter()
                .map(|v| ValueText {
                    value: value_text(&v.value),
                    user_name: v.author.as_ref().map(|a| names.user(&a.user)).unwrap_or_default(),
                    device: v.author.as_ref().map(|a| names.device(&a.device)).unwrap_or_default(),
                    time: local_ms(v.time_ms),
                })
                .collect();
            ConflictView {
                doc_id: doc.id().to_string(),
                kind: doc.kind().as_str(),
                path_json: serde_json::to_string(&c.path).unwrap_or_default(),
                path_text: c.path_string(),
                record_name: record_name.to_string(),
                label: field_label(doc.kind(), &record, &c.path),
                anchor: conflict_anchor(&c.path),
                values_text,
                conflict: c,
            }
        })
        .collect())
}

/// The name of a record for people: the enterprise's name, or a visit's date and enterprise.
fn record_name(conn: &Connection, doc: &Document) -> Result<String, ApiError> {
    let enterprise_name = |code: &str| -> crate::sql::Result<String> {
        Ok(conn
            .query_row("SELECT name FROM enterprises WHERE credit_code = ?1", [code], |r| r.get(0))
            .optional()?
            .unwrap_or_else(|| code.to_string()))
    };
    Ok(match doc.kind() {
        RecordKind::Enterprise => enterprise_name(doc.id())?,
        RecordKind::Visit => {
            let v: Visit = doc.read()?;
            format!("{} · {}", v.visit_date, enterprise_name(&v.enterprise_id)?)
        }
    })
}

pub fn visit(conn: &Connection, org_unit: &str, id: &str) -> Result<VisitView, ApiError> {
    let doc = records::load_in_scope(conn, org_unit, RecordKind::Visit, id)?;
    let visit: Visit = doc.read()?;
    let names = Names::load(conn)?;
    let recorded = crate::records::recorded_authors(conn, id)?;
    let history = doc
        .history()
        .into_iter()
        .map(|mut entry| {
            if let Some(a) = recorded.get(&entry.hash) {
                entry.author = a.clone();
            }
            entry
        })
        .map(|entry| HistoryView {
            user_name: names.user(&entry.author.user),
            device_name: names.device(&entry.author.device),
            time: local_ms(entry.time_ms),
            entry,
        })
        .collect();
    let enterprise_name = conn
        .query_row("SELECT name FROM enterprises WHERE credit_code = ?1", [&visit.enterprise_id], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    let conflicts = conflict_views(conn, &doc, &names, &record_name(conn, &doc)?)?;
    Ok(VisitView { id: id.to_string(), conflicts, visit, enterprise_name, history })
}

/// Most documents the conflicts queue shows at once.
pub const CONFLICT_QUEUE_LIMIT: usize = 100;

/// Every conflict of the documents in scope that have one, oldest change first.
pub fn conflicts(conn: &Connection, org_unit: &str) -> Result<Vec<ConflictView>, ApiError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, kind, bytes FROM documents
         WHERE has_conflicts = 1 AND {} ORDER BY updated_at, id LIMIT ?2",
        scope::sql("county_code", "?1")
    ))?;
    let docs: Vec<(String, String, Vec<u8>)> = stmt
        .query_map(crate::sql::params![scope::prefix(org_unit), CONFLICT_QUEUE_LIMIT as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<crate::sql::Result<_>>()?;
    let names = Names::load(conn)?;
    let mut out = Vec::new();
    for (id, kind, bytes) in docs {
        let kind = RecordKind::parse(&kind).ok_or_else(|| ApiError::internal("unknown kind in documents"))?;
        let doc = Document::load(kind, &id, &bytes)?;
        out.extend(conflict_views(conn, &doc, &names, &record_name(conn, &doc)?)?);
    }
    Ok(out)
}
