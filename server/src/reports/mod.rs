//! What supervisors read: the two official tables, the dashboard figures and the
//! enterprise list, for an org unit and a year. Every figure is an aggregate of the
//! `enterprise_status` rows, which hold `ohassist_core::status` results for the merged
//! records ([`status`]); nothing here computes a status itself or knows HTTP or HTML.
//! [`export`] writes the tables as XLSX and CSV in the official layout.

pub mod deadlines;
pub mod export;
pub mod monthly;
pub mod status;

use std::collections::{BTreeMap, HashMap};

use crate::sql::{params, Connection};
use ohassist_core::model::{Industry, Label, SixOnes};
use ohassist_core::status::{table2 as core_table2, Table1Status, Table2Row};
use serde::Serialize;

use crate::scope;
use crate::units::Units;

/// Every county must assist at least this many enterprises a year.
pub const ENTERPRISE_TARGET: u32 = 20;

/// The four rates must reach 90 % by the end of 2024 and 100 % by the end of 2025.
pub fn rate_target(year: i32) -> f64 {
    if year <= 2024 {
        0.9
    } else {
        1.0
    }
}

/// The six ones a visit can lack (chronic screening is reported apart).
pub fn six_ones() -> Vec<SixOnes> {
    SixOnes::ALL.iter().copied().filter(|s| *s != SixOnes::ChronicScreening).collect()
}

/// Table 1's column headers, in the official order.
pub const TABLE1_HEADERS: [&str; 12] = [
    "序号",
    "企业名称",
    "企业所在县区",
    "行业类别",
    "是否申报",
    "是否开展职业病危害因素检测",
    "是否开展职业健康检查",
    "主要负责人是否参加培训",
    "职业卫生管理人员是否参加培训",
    "劳动者是否参加培训",
    "是否纳入专项治理",
    "是否为市级帮扶对象",
];

/// Table 2's headers: the first header row (the training group spans three columns and
/// every other cell spans both rows) and the three sub-columns of the training group.
pub const TABLE2_TOP: [&str; 8] = [
    "县区名称",
    "帮扶企业(家)",
    "完成申报企业(家)",
    "完成职业病危害因素检测企业(家)",
    "完成职业健康检查企业(家)",
    "职业健康培训",
    "纳入专项治理企业(家)",
    "完成专项治理企业(家)",
];
pub const TABLE2_TRAINING: [&str; 3] =
    ["主要负责人参加培训企业(家)", "职业健康管理人员参加培训企业(家)", "劳动者参加培训企业(家)"];
/// Index of the training group in [`TABLE2_TOP`].
pub const TABLE2_TRAINING_AT: usize = 5;

pub fn table1_title(unit_name: &str, year: i32) -> String {
    format!("{unit_name}{year}年度中小微企业职业健康帮扶对象名单")
}

pub fn table2_title(unit_name: &str, year: i32) -> String {
    format!("{unit_name}{year}年度中小微企业职业健康帮扶行动完成情况汇总表")
}

pub fn yes_no(b: bool) -> &'static str {
    if b {
        "是"
    } else {
        "否"
    }
}

/// One enterprise's status row for a year.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct StatusRow {
    pub credit_code: String,
    pub name: String,
    pub county_code: String,
    /// Table 1's 企业所在县区: the county's name, or 其他 for a development zone.
    pub county_name: String,
    /// The unit's row label (Table 2, the dashboard, lists): 其他（zone name） for a zone.
    pub unit_label: String,
    /// Registered to a development zone.
    pub zone: bool,
    pub industry: Option<Industry>,
    pub status: Table1Status,
    /// Six-ones codes not yet covered this year.
    pub missing: Vec<SixOnes>,
    pub visit_count: i64,
}

impl StatusRow {
    pub fn industry_zh(&self) -> &'static str {
        self.industry.map_or("", |i| i.label_zh())
    }

    /// Table 1's cells of this row after 序号, as text.
    pub fn table1_cells(&self) -> [String; 11] {
        let s = &self.status;
        [
            self.name.clone(),
            self.county_name.clone(),
            self.industry_zh().to_string(),
            yes_no(s.declared).into(),
            yes_no(s.detection_done).into(),
            yes_no(s.health_examination_done).into(),
            yes_no(s.principal_trained).into(),
            yes_no(s.managers_trained).into(),
            yes_no(s.workers_trained).into(),
            yes_no(s.special_governance).into(),
            yes_no(s.city_level_target).into(),
        ]
    }
}

/// Filters of the enterprise list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub county: Option<String>,
    pub industry: Option<Industry>,
    pub missing: Option<SixOnes>,
    pub status: Option<StatusFilter>,
    pub query: Option<String>,
    /// Only these enterprises (the "needs attention" filter of the list).
    pub credit_codes: Option<std::collections::HashSet<String>>,
}

/// The "status" filter of the enterprise list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Declaration, detection, examination and all three trainings done.
    Complete,
    Incomplete,
    CityLevelTarget,
    SpecialGovernance,
}

impl StatusFilter {
    pub const ALL: [(&'static str, StatusFilter); 4] = [
        ("complete", StatusFilter::Complete),
        ("incomplete", StatusFilter::Incomplete),
        ("city_level", StatusFilter::CityLevelTarget),
        ("special_governance", StatusFilter::SpecialGovernance),
    ];

    pub fn parse(s: &str) -> Option<StatusFilter> {
        StatusFilter::ALL.iter().find(|(c, _)| *c == s).map(|(_, f)| *f)
    }

    fn matches(self, s: &Table1Status) -> bool {
        let complete = s.declared && s.detection_done && s.health_examination_done && s.trained();
        match self {
            StatusFilter::Complete => complete,
            StatusFilter::Incomplete => !complete,
            StatusFilter::CityLevelTarget => s.city_level_target,
            StatusFilter::SpecialGovernance => s.special_governance,
        }
    }
}

fn status_row(r: &crate::sql::Row<'_>) -> crate::sql::Result<StatusRow> {
    let industry: Option<String> = r.get(4)?;
    let missing: String = r.get(14)?;
    let codes: Vec<String> = serde_json::from_str(&missing).unwrap_or_default();
    Ok(StatusRow {
        credit_code: r.get(0)?,
        name: r.get(1)?,
        county_code: r.get(2)?,
        county_name: r.get(3)?,
        unit_label: String::new(),
        zone: false,
        industry: industry.as_deref().and_then(Industry::from_code),
        status: Table1Status {
            declared: r.get(5)?,
            detection_done: r.get(6)?,
            health_examination_done: r.get(7)?,
            principal_trained: r.get(8)?,
            managers_trained: r.get(9)?,
            workers_trained: r.get(10)?,
            special_governance: r.get(11)?,
            special_governance_completed: r.get(12)?,
            city_level_target: r.get(13)?,
        },
        missing: codes.iter().filter_map(|c| SixOnes::from_code(c)).collect(),
        visit_count: r.get(15)?,
    })
}

const STATUS_COLUMNS: &str = "credit_code, name, county_code, county_name, industry, declared, detection_done,
    health_examination_done, principal_trained, managers_trained, workers_trained, special_governance,
    special_governance_completed, city_level_target, missing, visit_count";

/// Gives rows the names of their units (the record's own county name only for a code
/// nobody named): 企业所在县区, the row label, the zone mark.
fn name_rows(units: &Units, rows: &mut [StatusRow]) {
    let mut seen: HashMap<String, (String, String, bool)> = HashMap::new();
    for r in rows {
        let (cell, label, zone) = seen
            .entry(r.county_code.clone())
            .or_insert_with(|| {
                (
                    units.county_cell(&r.county_code, &r.county_name),
                    units.row_label(&r.county_code, &r.county_name),
                    units.is_zone(&r.county_code),
                )
            })
            .clone();
        (r.county_name, r.unit_label, r.zone) = (cell, label, zone);
    }
}

/// Every enterprise on the `year` list inside `org_unit`: the counties by code, then the
/// development zones, each by name.
pub fn status_rows(conn: &Connection, org_unit: &str, year: i32) -> crate::sql::Result<Vec<StatusRow>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {STATUS_COLUMNS} FROM enterprise_status
         WHERE year = ?1 AND {}
         ORDER BY county_code, name, credit_code",
        scope::sql("county_code", "?2")
    ))?;
    let mut rows =
        stmt.query_map(params![year, scope::prefix(org_unit)], status_row)?.collect::<crate::sql::Result<Vec<_>>>()?;
    name_rows(&Units::load(conn)?, &mut rows);
    // Stable: codes and names keep their order within counties and within zones.
    rows.sort_by_key(|r| r.zone);
    Ok(rows)
}

/// The latest year with an assistance list inside `org_unit`, else with a visit, if any.
pub fn latest_year(conn: &Connection, org_unit: &str) -> crate::sql::Result<Option<i32>> {
    let prefix = scope::prefix(org_unit);
    let listed: Option<i32> = conn.query_row(
        &format!("SELECT max(year) FROM enterprise_status WHERE {}", scope::sql("county_code", "?1")),
        [prefix],
        |r| r.get(0),
    )?;
    if listed.is_some() {
        return Ok(listed);
    }
    let visited: Option<String> = conn.query_row(
        &format!(
            "SELECT max(substr(visit_date, 1, 4)) FROM visits WHERE {} AND deleted = 0",
            scope::sql("county_code", "?1")
        ),
        [prefix],
        |r| r.get(0),
    )?;
    Ok(visited.and_then(|y| y.parse().ok()))
}

/// The status rows of one enterprise, every year of its list, oldest first.
pub fn status_of(conn: &Connection, credit_code: &str) -> crate::sql::Result<Vec<(i32, StatusRow)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {STATUS_COLUMNS}, year FROM enterprise_status WHERE credit_code = ?1 ORDER BY year"
    ))?;
    let mut rows: Vec<(i32, StatusRow)> =
        stmt.query_map([credit_code], |r| Ok((r.get(16)?, status_row(r)?)))?.collect::<crate::sql::Result<_>>()?;
    let units = Units::load(conn)?;
    for (_, r) in &mut rows {
        name_rows(&units, std::slice::from_mut(r));
    }
    Ok(rows)
}

/// The enterprise list: status rows matching `filter`.
pub fn list(conn: &Connection, org_unit: &str, year: i32, filter: &ListFilter) -> crate::sql::Result<Vec<StatusRow>> {
    let query = filter.query.as_deref().map(str::trim).filter(|q| !q.is_empty()).map(str::to_lowercase);
    Ok(status_rows(conn, org_unit, year)?
        .into_iter()
        .filter(|r| filter.county.as_deref().is_none_or(|c| r.county_code == c))
        .filter(|r| filter.credit_codes.as_ref().is_none_or(|set| set.contains(&r.credit_code)))
        .filter(|r| filter.industry.is_none_or(|i| r.industry == Some(i)))
        .filter(|r| filter.missing.is_none_or(|m| r.missing.contains(&m)))
        .filter(|r| filter.status.is_none_or(|s| s.matches(&r.status)))
        .filter(|r| {
            query
                .as_deref()
                .is_none_or(|q| r.name.to_lowercase().contains(q) || r.credit_code.to_lowercase().contains(q))
        })
        .collect())
}

/// What an enterprise of the list needs from a supervisor.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Attention {
    /// The enterprise or one of its visits holds a conflict.
    pub conflicts: bool,
    /// Visits submitted and waiting for review.
    pub awaiting_review: u32,
}

/// Enterprises inside `org_unit` with conflicts or visits waiting for review.
pub fn attention(conn: &Connection, org_unit: &str) -> crate::sql::Result<HashMap<String, Attention>> {
    let prefix = scope::prefix(org_unit);
    let mut out: HashMap<String, Attention> = HashMap::new();
    let mut visits = conn.prepare_cached(&format!(
        "SELECT enterprise_id, sum(CASE WHEN review_state = 'submitted' THEN 1 ELSE 0 END), max(has_conflicts) FROM visits
         WHERE {} AND deleted = 0 AND (review_state = 'submitted' OR has_conflicts = 1)
         GROUP BY enterprise_id",
        scope::sql("county_code", "?1")
    ))?;
    let mut q = visits.query([prefix])?;
    while let Some(r) = q.next()? {
        let a = out.entry(r.get(0)?).or_default();
        a.awaiting_review = r.get(1)?;
        a.conflicts |= r.get::<_, bool>(2)?;
    }
    let mut enterprises = conn.prepare_cached(&format!(
        "SELECT credit_code FROM enterprises WHERE {} AND has_conflicts = 1",
        scope::sql("county_code", "?1")
    ))?;
    for code in enterprises.query_map([prefix], |r| r.get::<_, String>(0))? {
        out.entry(code?).or_default().conflicts = true;
    }
    Ok(out)
}

/// Table 1 (its rows in order; 序号 is the position + 1).
pub fn table1(conn: &Connection, org_unit: &str, year: i32) -> crate::sql::Result<Vec<StatusRow>> {
    status_rows(conn, org_unit, year)
}

/// Table 2: one row per county and the 合计 row, by `status::table2`.
pub fn table2(conn: &Connection, org_unit: &str, year: i32) -> crate::sql::Result<(Vec<Table2Row>, Table2Row)> {
    let rows = status_rows(conn, org_unit, year)?;
    Ok(table2_of(&rows))
}

/// What a row of Table 2 stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table2Rows {
    /// One row per county (and per development zone): a city's table.
    County,
    /// One row per city (its counties and zones summed): a province's table.
    City,
}

impl Table2Rows {
    /// The default for a unit: per city for a province (or the country), per county below.
    pub fn default_for(org_unit: &str) -> Table2Rows {
        match crate::units::level(org_unit) {
            crate::units::Level::Country | crate::units::Level::Province => Table2Rows::City,
            _ => Table2Rows::County,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Table2Rows::County => "county",
            Table2Rows::City => "city",
        }
    }

    /// `county` or `city`, as the `by` parameter of the tables says it.
    pub fn parse(s: &str) -> Option<Table2Rows> {
        match s {
            "county" => Some(Table2Rows::County),
            "city" => Some(Table2Rows::City),
            _ => None,
        }
    }
}

/// Table 2 of status rows with its rows `by` county or by city (named from `units`), then 合计.
pub fn table2_by(rows: &[StatusRow], by: Table2Rows, units: &Units) -> (Vec<Table2Row>, Table2Row) {
    match by {
        Table2Rows::County => table2_of(rows),
        Table2Rows::City => {
            let cities: Vec<(String, String)> = rows
                .iter()
                .map(|r| {
                    let city = crate::units::city_of(&r.county_code);
                    let name = units.name_or_code(&city);
                    (city, name)
                })
                .collect();
            core_table2(rows.iter().zip(&cities).map(|(r, (code, name))| (code.as_str(), name.as_str(), r.status)))
        }
    }
}

/// Table 2 of status rows (named by [`status_rows`]): the counties by code, then one row
/// per development zone, then 合计.
pub fn table2_of(rows: &[StatusRow]) -> (Vec<Table2Row>, Table2Row) {
    let zones: std::collections::HashSet<&str> =
        rows.iter().filter(|r| r.zone).map(|r| r.county_code.as_str()).collect();
    let (mut t2, total) = core_table2(rows.iter().map(|r| (r.county_code.as_str(), r.unit_label.as_str(), r.status)));
    t2.sort_by_key(|r| zones.contains(r.county_code.as_str()));
    (t2, total)
}

/// Table 2's cells of a row, in column order.
pub fn table2_cells(r: &Table2Row) -> [String; 10] {
    [
        r.county_name.clone(),
        r.assisted.to_string(),
        r.declared.to_string(),
        r.detection_done.to_string(),
        r.health_examination_done.to_string(),
        r.principal_trained.to_string(),
        r.managers_trained.to_string(),
        r.workers_trained.to_string(),
        r.special_governance.to_string(),
        r.special_governance_completed.to_string(),
    ]
}

/// A rate as a share of the assisted enterprises (0 when none are assisted).
pub(crate) fn rate(n: u32, of: u32) -> f64 {
    if of == 0 {
        0.0
    } else {
        n as f64 / of as f64
    }
}

/// One county on the dashboard.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CountyProgress {
    pub county_code: String,
    pub county_name: String,
    /// A development zone's row.
    pub zone: bool,
    /// Enterprises this row must assist: 20 for a county, the city's figure for a zone
    /// (`None` until the city sets it), the sum of the rows for the total.
    pub target: Option<u32>,
    pub assisted: u32,
    pub below_enterprise_target: bool,
    pub declared: u32,
    pub detection_done: u32,
    pub health_examination_done: u32,
    /// Enterprises where the principal, the managers and the workers were all trained.
    pub trained: u32,
    pub declaration_rate: f64,
    pub detection_rate: f64,
    pub health_examination_rate: f64,
    pub training_rate: f64,
    /// True when any of the four rates is under this year's target.
    pub below_rate_target: bool,
    pub city_level_targets: u32,
    /// Six-ones code → enterprises still lacking it.
    pub missing: BTreeMap<String, u32>,
    /// `01`..`12` → visits recorded that month.
    pub visits_by_month: BTreeMap<String, u32>,
}

/// The dashboard of `org_unit` for `year`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    pub org_unit: String,
    pub year: i32,
    pub enterprise_target: u32,
    pub rate_target: f64,
    pub counties: Vec<CountyProgress>,
    pub total: CountyProgress,
}

pub fn dashboard(conn: &Connection, org_unit: &str, year: i32) -> crate::sql::Result<Dashboard> {
    let rows = status_rows(conn, org_unit, year)?;
    let (t2, t2_total) = table2_of(&rows);
    let target = rate_target(year);
    let units = Units::load(conn)?;
    let empty = |code: &str, name: &str| CountyProgress {
        county_code: code.to_string(),
        county_name: name.to_string(),
        zone: false,
        target: None,
        assisted: 0,
        below_enterprise_target: true,
        declared: 0,
        detection_done: 0,
        health_examination_done: 0,
        trained: 0,
        declaration_rate: 0.0,
        detection_rate: 0.0,
        health_examination_rate: 0.0,
        training_rate: 0.0,
        below_rate_target: true,
        city_level_targets: 0,
        missing: six_ones().iter().map(|s| (s.code().to_string(), 0)).collect(),
        visits_by_month: (1..=12).map(|m| (format!("{m:02}"), 0)).collect(),
    };
    // In Table 2's order (counties, then zones); `at` finds a row by code.
    let mut counties: Vec<CountyProgress> = Vec::with_capacity(t2.len());
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut total = empty("", "合计");
    for r in &t2 {
        let mut c = empty(&r.county_code, &r.county_name);
        c.zone = units.is_zone(&r.county_code);
        c.target = if c.zone { units.zone_target(&r.county_code) } else { Some(ENTERPRISE_TARGET) };
        c.assisted = r.assisted;
        c.declared = r.declared;
        c.detection_done = r.detection_done;
        c.health_examination_done = r.health_examination_done;
        at.insert(r.county_code.clone(), counties.len());
        counties.push(c);
    }
    for row in &rows {
        let i = at[&row.county_code];
        for c in [&mut counties[i], &mut total] {
            c.trained += row.status.trained() as u32;
            c.city_level_targets += row.status.city_level_target as u32;
            for m in &row.missing {
                *c.missing.entry(m.code().to_string()).or_default() += 1;
            }
        }
    }
    total.assisted = t2_total.assisted;
    total.declared = t2_total.declared;
    total.detection_done = t2_total.detection_done;
    total.health_examination_done = t2_total.health_examination_done;

    let mut stmt = conn.prepare_cached(&format!(
        "SELECT county_code, substr(visit_date, 6, 2), count(*) FROM visits
         WHERE {} AND deleted = 0 AND visit_date >= ?2 AND visit_date < ?3
         GROUP BY 1, 2",
        scope::sql("county_code", "?1")
    ))?;
    let mut q = stmt.query(params![scope::prefix(org_unit), format!("{year}-"), format!("{}-", year + 1)])?;
    while let Some(r) = q.next()? {
        let (county, month, n): (String, String, u32) = (r.get(0)?, r.get(1)?, r.get(2)?);
        if !total.visits_by_month.contains_key(&month) {
            continue;
        }
        *total.visits_by_month.entry(month.clone()).or_default() += n;
        if let Some(&i) = at.get(&county) {
            *counties[i].visits_by_month.entry(month).or_default() += n;
        }
    }
    let finish = |c: &mut CountyProgress| {
        c.declaration_rate = rate(c.declared, c.assisted);
        c.detection_rate = rate(c.detection_done, c.assisted);
        c.health_examination_rate = rate(c.health_examination_done, c.assisted);
        c.training_rate = rate(c.trained, c.assisted);
        c.below_rate_target = [c.declaration_rate, c.detection_rate, c.health_examination_rate, c.training_rate]
            .iter()
            .any(|r| *r + 1e-9 < target);
        c.below_enterprise_target = c.target.is_some_and(|t| c.assisted < t);
    };
    counties.iter_mut().for_each(finish);
    // The total is a whole unit: each county's 20 and each zone's own figure.
    total.target = Some(counties.iter().filter_map(|c| c.target).sum());
    finish(&mut total);
    total.below_enterprise_target = counties.iter().any(|c| c.below_enterprise_target);
    Ok(Dashboard {
        org_unit: org_unit.to_string(),
        year,
        enterprise_target: ENTERPRISE_TARGET,
        rate_target: target,
        counties,
        total,
    })
}

/// The name a table is issued under (`沈阳市`): see [`Units::title_name`].
pub fn unit_name(conn: &Connection, org_unit: &str) -> crate::sql::Result<String> {
    Ok(Units::load(conn)?.title_name(org_unit))
}

/// The lines printed under a table.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
#[schema(as = TableSignature)]
pub struct Signature {
    /// 填报单位
    pub unit: String,
    /// 填报人
    pub reporter: String,
    /// 联系电话
    pub phone: String,
}

impl Signature {
    pub fn lines(&self) -> [String; 3] {
        [format!("填报单位：{}", self.unit), format!("填报人：{}", self.reporter), format!("联系电话：{}", self.phone)]
    }
}
