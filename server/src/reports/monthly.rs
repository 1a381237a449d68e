//! 月调度: a unit's progress in one month of a programme year, per county (zones after the
//! counties) and in total: the enterprises on the list, those visited that month, the
//! six-ones items completed that month, and the four rates as they stood at the month's
//! end. Aggregates of the `enterprise_monthly` rows (see `status::write_rows`).

use std::collections::HashMap;

use crate::sql::{params, Connection};
use serde::Serialize;

use super::rate;
use crate::scope;
use crate::units::Units;

#[derive(Debug, Clone, Default, Serialize)]
pub struct MonthRow {
    pub county_code: String,
    pub county_name: String,
    pub zone: bool,
    pub assisted: u32,
    /// Enterprises with at least one visit this month.
    pub visited: u32,
    pub visits: u32,
    /// Six-ones items first covered this month, over all enterprises.
    pub items_completed: u32,
    pub declaration_rate: f64,
    pub detection_rate: f64,
    pub health_examination_rate: f64,
    pub training_rate: f64,
    #[serde(skip)]
    sums: [u32; 4],
}

#[derive(Debug, Clone, Serialize)]
pub struct Monthly {
    pub org_unit: String,
    pub year: i32,
    pub month: u32,
    pub rows: Vec<MonthRow>,
    pub total: MonthRow,
}

pub fn monthly(conn: &Connection, org_unit: &str, year: i32, month: u32) -> crate::sql::Result<Monthly> {
    let prefix = scope::prefix(org_unit);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT county_code, count(*), sum(CASE WHEN visits > 0 THEN 1 ELSE 0 END), sum(visits), sum(items_completed), sum(declared),
                sum(detection_done), sum(health_examination_done), sum(trained)
         FROM enterprise_monthly WHERE year = ?1 AND month = ?2 AND {}
         GROUP BY county_code ORDER BY county_code",
        scope::sql("county_code", "?3")
    ))?;
    let units = Units::load(conn)?;
    let mut names: HashMap<String, String> = HashMap::new();
    let mut rows: Vec<MonthRow> = stmt
        .query_map(params![year, month, prefix], |r| {
            let code: String = r.get(0)?;
            Ok(MonthRow {
                county_name: String::new(),
                zone: false,
                assisted: r.get(1)?,
                visited: r.get(2)?,
                visits: r.get(3)?,
                items_completed: r.get(4)?,
                sums: [r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?],
                county_code: code,
                ..Default::default()
            })
        })?
        .collect::<crate::sql::Result<_>>()?;
    if !rows.is_empty() {
        // The record's own county name for a code nobody named.
        let mut q = conn.prepare_cached(&format!(
            "SELECT county_code, max(county_name) FROM enterprise_status WHERE year = ?1 AND {} GROUP BY county_code",
            scope::sql("county_code", "?2")
        ))?;
        for r in q.query_map(params![year, prefix], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (code, name) = r?;
            names.insert(code, name);
        }
    }
    let mut total = MonthRow { county_name: "合计".into(), ..Default::default() };
    for row in &mut rows {
        row.county_name = units.row_label(&row.county_code, names.get(&row.county_code).map_or("", String::as_str));
        row.zone = units.is_zone(&row.county_code);
        total.assisted += row.assisted;
        total.visited += row.visited;
        total.visits += row.visits;
        total.items_completed += row.items_completed;
        for k in 0..4 {
            total.sums[k] += row.sums[k];
        }
    }
    rows.sort_by_key(|r| r.zone);
    for row in rows.iter_mut().chain(std::iter::once(&mut total)) {
        let [d, t, e, tr] = row.sums;
        row.declaration_rate = rate(d, row.assisted);
        row.detection_rate = rate(t, row.assisted);
        row.health_examination_rate = rate(e, row.assisted);
        row.training_rate = rate(tr, row.assisted);
    }
    Ok(Monthly { org_unit: org_unit.to_string(), year, month, rows, total })
}

/// The headers of the 月调度 table.
pub const HEADERS: [&str; 9] = [
    "县区名称",
    "帮扶企业(家)",
    "本月走访企业(家)",
    "本月走访(次)",
    "本月完成“六个一”项目(项)",
    "累计申报率",
    "累计检测率",
    "累计体检率",
    "累计培训率",
];

fn pct(r: f64) -> String {
    format!("{:.1}%", r * 100.0)
}

/// The table's cells, row by row, 合计 last.
pub fn body(m: &Monthly) -> Vec<Vec<String>> {
    m.rows
        .iter()
        .chain(std::iter::once(&m.total))
        .map(|r| {
            vec![
                r.county_name.clone(),
                r.assisted.to_string(),
                r.visited.to_string(),
                r.visits.to_string(),
                r.items_completed.to_string(),
                pct(r.declaration_rate),
                pct(r.detection_rate),
                pct(r.health_examination_rate),
                pct(r.training_rate),
            ]
        })
        .collect()
}

pub fn title(unit_name: &str, year: i32, month: u32) -> String {
    format!("{unit_name}{year}年{month}月中小微企业职业健康帮扶行动月调度表")
}
