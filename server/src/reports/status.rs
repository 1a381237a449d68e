//! The `enterprise_status` rows: each enterprise's Table 1 status and missing six ones per
//! year of its assistance list, computed by `ohassist_core::status` from the merged
//! documents whenever the enterprise or one of its visits changes. The console and the
//! tables aggregate these rows; nothing else writes them, and they can be rebuilt from the
//! documents at any time ([`backfill`]).

use ohassist_core::doc::Document;
use ohassist_core::model::{Enterprise, RecordKind, Visit};
use ohassist_core::status::{missing_six_ones, table1_status, Table1Status};
use std::collections::HashMap;

use crate::sql::{params, Connection, Insert, OptionalExtension};

/// What refreshing status rows can fail with: the database, or a stored record that does
/// not read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error(transparent)]
    Sql(#[from] crate::sql::Error),
    #[error(transparent)]
    Record(#[from] ohassist_core::Error),
}

/// Recomputes the status rows of `credit_code` from its enterprise document and the
/// documents of its visits. Call inside the transaction that changed them.
pub fn refresh(conn: &Connection, credit_code: &str) -> Result<(), StatusError> {
    refresh_with(conn, credit_code, &HashMap::new())
}

/// [`refresh`], taking the visits in `fresh` (id → merged record) from memory instead of
/// loading their documents again: a push of 250 visits of one enterprise loads none.
pub fn refresh_with(conn: &Connection, credit_code: &str, fresh: &HashMap<String, Visit>) -> Result<(), StatusError> {
    // Writes are sent ahead (`execute_later`): the caller's transaction fails with any error.
    conn.prepare_cached("DELETE FROM enterprise_status WHERE credit_code = ?1")?.execute_later([credit_code])?;
    conn.prepare_cached("DELETE FROM enterprise_monthly WHERE credit_code = ?1")?.execute_later([credit_code])?;
    let stored: Option<(Vec<u8>, String)> = conn
        .prepare_cached("SELECT bytes, heads FROM documents WHERE id = ?1 AND kind = 'enterprise'")?
        .query_row([credit_code], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    // A visit may reach the server before its enterprise; the enterprise's push refreshes.
    let Some((bytes, heads)) = stored else { return Ok(()) };
    let enterprise: Enterprise = read_cached(&ENTERPRISES, RecordKind::Enterprise, credit_code, &heads, &bytes)?;
    if enterprise.deleted {
        return Ok(());
    }
    let ids: Vec<String> = conn
        .prepare_cached("SELECT id FROM visits WHERE enterprise_id = ?1")?
        .query_map([credit_code], |r| r.get(0))?
        .collect::<crate::sql::Result<_>>()?;
    let mut visits = Vec::with_capacity(ids.len());
    let mut load = conn.prepare_cached("SELECT bytes, heads FROM documents WHERE id = ?1")?;
    for id in ids {
        match fresh.get(&id) {
            Some(v) => visits.push(v.clone()),
            None => {
                let (bytes, heads): (Vec<u8>, String) = load.query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))?;
                visits.push(read_cached(&VISITS, RecordKind::Visit, &id, &heads, &bytes)?);
            }
        }
    }
    write_rows(conn, &enterprise, &visits)?;
    Ok(())
}

/// Records as typed, read from their saved documents, by id with the heads they were read at:
/// a document's heads name its every change, so an entry is used only for the very version it
/// was read from. A push of visits refreshes each of their enterprises, which reads every other
/// visit of it: one phone's registration in five batches read the same documents again in
/// each. Bounded: emptied when it holds [`CACHED_RECORDS`].
struct Cache<T>(std::sync::Mutex<HashMap<String, (String, T)>>);

static ENTERPRISES: std::sync::LazyLock<Cache<Enterprise>> = std::sync::LazyLock::new(|| Cache(Default::default()));
static VISITS: std::sync::LazyLock<Cache<Visit>> = std::sync::LazyLock::new(|| Cache(Default::default()));
const CACHED_RECORDS: usize = 20_000;

/// The record `id` saved as `bytes` at `heads`, from the cache when it holds that version.
fn read_cached<T: Clone + serde::de::DeserializeOwned>(
    cache: &Cache<T>,
    kind: RecordKind,
    id: &str,
    heads: &str,
    bytes: &[u8],
) -> ohassist_core::Result<T> {
    let lock = || cache.0.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((at, record)) = lock().get(id) {
        if at == heads {
            return Ok(record.clone());
        }
    }
    let record: T = Document::load(kind, id, bytes)?.read()?;
    let mut map = lock();
    if map.len() >= CACHED_RECORDS {
        map.clear();
    }
    map.insert(id.to_string(), (heads.to_string(), record.clone()));
    Ok(record)
}

/// Writes the status rows of one enterprise from its records (already deleted rows aside),
/// inside the caller's transaction (the writes are sent ahead: any error fails it). Also used
/// by the benchmark, which builds records without documents.
pub fn write_rows(conn: &Connection, e: &Enterprise, visits: &[Visit]) -> crate::sql::Result<()> {
    for year in e.years() {
        let s: Table1Status = table1_status(e, visits, year);
        let missing: Vec<&str> = missing_six_ones(visits, year).iter().map(|m| m.code()).collect();
        let count = visits.iter().filter(|v| !v.deleted && v.year() == Some(year)).count() as i64;
        conn.insert_later(
            &INSERT_STATUS,
            params![
                e.credit_code,
                year,
                e.name,
                e.county.code,
                e.county.name,
                e.industry.map(|i| i.code()),
                s.declared,
                s.detection_done,
                s.health_examination_done,
                s.principal_trained,
                s.managers_trained,
                s.workers_trained,
                s.special_governance,
                s.special_governance_completed,
                s.city_level_target,
                serde_json::to_string(&missing).unwrap_or_else(|_| "[]".into()),
                count
            ],
        )?;
        write_months(conn, e, visits, year)?;
    }
    Ok(())
}

static INSERT_STATUS: Insert = Insert::new(
    "enterprise_status (credit_code, year, name, county_code, county_name, industry,
        declared, detection_done, health_examination_done, principal_trained, managers_trained, workers_trained,
        special_governance, special_governance_completed, city_level_target, missing, visit_count)",
    17,
    2,
    "ON CONFLICT (credit_code, year) DO UPDATE SET
         name = excluded.name, county_code = excluded.county_code,
         county_name = excluded.county_name, industry = excluded.industry,
         declared = excluded.declared, detection_done = excluded.detection_done,
         health_examination_done = excluded.health_examination_done,
         principal_trained = excluded.principal_trained,
         managers_trained = excluded.managers_trained,
         workers_trained = excluded.workers_trained,
         special_governance = excluded.special_governance,
         special_governance_completed = excluded.special_governance_completed,
         city_level_target = excluded.city_level_target, missing = excluded.missing,
         visit_count = excluded.visit_count",
);

static INSERT_MONTH: Insert = Insert::new(
    "enterprise_monthly (credit_code, year, month, county_code, visits, items_completed,
        declared, detection_done, health_examination_done, trained)",
    10,
    3,
    "ON CONFLICT (credit_code, year, month) DO UPDATE SET
         county_code = excluded.county_code, visits = excluded.visits,
         items_completed = excluded.items_completed, declared = excluded.declared,
         detection_done = excluded.detection_done,
         health_examination_done = excluded.health_examination_done,
         trained = excluded.trained",
);

/// The 月调度 rows of one enterprise for `year`: each month's visits, the six-ones items
/// first covered that month, and the status counting the visits up to the month's end.
fn write_months(conn: &Connection, e: &Enterprise, visits: &[Visit], year: i32) -> crate::sql::Result<()> {
    let live: Vec<&Visit> = visits.iter().filter(|v| !v.deleted && v.year() == Some(year)).collect();
    let month_of = |v: &Visit| v.visit_date.get(5..7).and_then(|m| m.parse::<u32>().ok()).unwrap_or(0);
    let mut missing_before = missing_six_ones(&[], year).len();
    for month in 1..=12u32 {
        let upto: Vec<Visit> = live.iter().filter(|v| month_of(v) <= month).map(|v| (*v).clone()).collect();
        let s = table1_status(e, &upto, year);
        let missing = missing_six_ones(&upto, year).len();
        let this_month = live.iter().filter(|v| month_of(v) == month).count() as i64;
        conn.insert_later(
            &INSERT_MONTH,
            params![
                e.credit_code,
                year,
                month,
                e.county.code,
                this_month,
                (missing_before - missing) as i64,
                s.declared,
                s.detection_done,
                s.health_examination_done,
                s.trained()
            ],
        )?;
        missing_before = missing;
    }
    Ok(())
}

/// Computes the rows of every enterprise on a list that has none yet (a database upgraded
/// from schema version 1). Cheap when there is nothing to do.
pub fn backfill(conn: &mut Connection) -> Result<(), StatusError> {
    let tx = conn.transaction_with_behavior(crate::sql::TransactionBehavior::Immediate)?;
    let codes: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT credit_code FROM enterprises e WHERE deleted = 0 AND years <> '[]'
             AND (NOT EXISTS (SELECT 1 FROM enterprise_status s WHERE s.credit_code = e.credit_code)
                  OR NOT EXISTS (SELECT 1 FROM enterprise_monthly m WHERE m.credit_code = e.credit_code))",
        )?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<crate::sql::Result<_>>()?
    };
    for code in codes {
        refresh(&tx, &code)?;
    }
    tx.commit()?;
    Ok(())
}
