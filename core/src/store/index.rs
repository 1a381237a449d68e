//! Index rows derived from documents, and the list queries that read them, so a list
//! screen never loads documents.

use rusqlite::{params, types::Value as Sql, Connection, Transaction};

use crate::doc::Document;
use crate::error::Result;
use crate::model::{Enterprise, Industry, RecordKind, ReviewState, Visit};

/// Filters for the enterprise list; `None` means any.
#[derive(Debug, Clone, Default)]
pub struct EnterpriseFilter {
    pub county_code: Option<String>,
    pub industry: Option<Industry>,
    /// On the assistance list in this year.
    pub year: Option<i32>,
    /// Part of the name, or the start of the credit code.
    pub query: Option<String>,
    pub include_deleted: bool,
    pub limit: Option<usize>,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EnterpriseSummary {
    pub id: String,
    pub name: String,
    pub county_code: String,
    pub county_name: String,
    pub industry: Option<Industry>,
    pub years: Vec<i32>,
    pub deleted: bool,
    pub has_conflicts: bool,
    pub pending_sync: bool,
}

#[derive(Debug, Clone, Default)]
pub struct VisitFilter {
    pub county_code: Option<String>,
    pub enterprise_id: Option<String>,
    /// Inclusive `YYYY-MM-DD` bounds.
    pub from_date: Option<String>,
    pub to_date: Option<String>,
    pub review_state: Option<ReviewState>,
    pub include_deleted: bool,
    pub only_conflicts: bool,
    pub only_pending: bool,
    pub limit: Option<usize>,
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VisitSummary {
    pub id: String,
    pub enterprise_id: String,
    pub enterprise_name: String,
    pub county_code: String,
    pub visit_date: String,
    pub review_state: ReviewState,
    pub inspectors: String,
    pub deleted: bool,
    pub has_conflicts: bool,
    pub pending_sync: bool,
}

/// The index row of a document, computed once from one read of it: written by
/// [`write_row`], off the writer's lock when a pulled page is prepared in bulk.
#[derive(Debug, Clone)]
pub(super) enum IndexRow {
    Enterprise(Enterprise),
    Visit {
        enterprise_id: String,
        county_code: String,
        visit_date: String,
        review_state: &'static str,
        inspectors: String,
        deleted: bool,
    },
}

/// Reads the typed record once; a document that does not read as its kind fails here.
pub(super) fn row_of(doc: &Document) -> Result<IndexRow> {
    Ok(match doc.kind() {
        RecordKind::Enterprise => IndexRow::Enterprise(doc.read()?),
        RecordKind::Visit => {
            let v: Visit = doc.read()?;
            let inspectors: Vec<&str> = v.inspectors.values().map(String::as_str).collect();
            IndexRow::Visit {
                inspectors: inspectors.join("、"),
                enterprise_id: v.enterprise_id,
                county_code: v.county_code,
                visit_date: v.visit_date,
                review_state: v.review.state.code(),
                deleted: v.deleted,
            }
        }
    })
}

pub(super) fn reindex(tx: &Transaction<'_>, doc: &Document) -> Result<()> {
    write_row(tx, doc.id(), &row_of(doc)?)
}

pub(super) fn write_row(tx: &Transaction<'_>, id: &str, row: &IndexRow) -> Result<()> {
    match row {
        IndexRow::Enterprise(e) => {
            let years: String = e.years().iter().map(|y| format!(",{y}")).collect::<String>() + ",";
            tx.prepare_cached(
                "INSERT OR REPLACE INTO enterprises (id, credit_code, name, county_code, county_name, industry, size,
                     years, city_level_target, special_governance, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                id,
                e.credit_code,
                e.name,
                e.county.code,
                e.county.name,
                e.industry.map(|i| i.code()),
                e.size.map(|s| s.code()),
                years,
                e.city_level_target,
                e.special_governance,
                e.deleted
            ])?;
        }
        IndexRow::Visit { enterprise_id, county_code, visit_date, review_state, inspectors, deleted } => {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO visits (id, enterprise_id, county_code, visit_date, review_state, inspectors, deleted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![id, enterprise_id, county_code, visit_date, review_state, inspectors, deleted])?;
        }
    }
    Ok(())
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

pub(super) fn list_enterprises(conn: &Connection, f: &EnterpriseFilter) -> Result<Vec<EnterpriseSummary>> {
    let mut sql = String::from(
        "SELECT e.id, e.name, e.county_code, e.county_name, e.industry, e.years, e.deleted, d.has_conflicts,
                EXISTS (SELECT 1 FROM outbox o WHERE o.doc_id = e.id)
         FROM enterprises e JOIN documents d ON d.id = e.id WHERE 1 = 1",
    );
    let mut args: Vec<Sql> = Vec::new();
    if let Some(c) = &f.county_code {
        sql.push_str(" AND e.county_code = ?");
        args.push(Sql::Text(c.clone()));
    }
    if let Some(i) = f.industry {
        sql.push_str(" AND e.industry = ?");
        args.push(Sql::Text(i.code().into()));
    }
    if let Some(y) = f.year {
        sql.push_str(" AND e.years LIKE ?");
        args.push(Sql::Text(format!("%,{y},%")));
    }
    if let Some(q) = f.query.as_deref().map(str::trim).filter(|q| !q.is_empty()) {
        sql.push_str(" AND (e.name LIKE ? ESCAPE '\\' OR e.credit_code LIKE ? ESCAPE '\\')");
        args.push(Sql::Text(format!("%{}%", like_escape(q))));
        args.push(Sql::Text(format!("{}%", like_escape(&q.to_uppercase()))));
    }
    if !f.include_deleted {
        sql.push_str(" AND e.deleted = 0");
    }
    sql.push_str(" ORDER BY e.county_code, e.name LIMIT ? OFFSET ?");
    args.push(Sql::Integer(f.limit.map(|l| l as i64).unwrap_or(-1)));
    args.push(Sql::Integer(f.offset as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        let years: String = r.get(5)?;
        Ok(EnterpriseSummary {
            id: r.get(0)?,
            name: r.get(1)?,
            county_code: r.get(2)?,
            county_name: r.get(3)?,
            industry: r.get::<_, Option<String>>(4)?.as_deref().and_then(Industry::from_code),
            years: years.split(',').filter_map(|y| y.parse().ok()).collect(),
            deleted: r.get(6)?,
            has_conflicts: r.get(7)?,
            pending_sync: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn list_visits(conn: &Connection, f: &VisitFilter) -> Result<Vec<VisitSummary>> {
    let mut sql = String::from(
        "SELECT v.id, v.enterprise_id, COALESCE(e.name, ''), v.county_code, v.visit_date, v.review_state,
                v.inspectors, v.deleted, d.has_conflicts,
                EXISTS (SELECT 1 FROM outbox o WHERE o.doc_id = v.id)
         FROM visits v JOIN documents d ON d.id = v.id LEFT JOIN enterprises e ON e.id = v.enterprise_id
         WHERE 1 = 1",
    );
    let mut args: Vec<Sql> = Vec::new();
    let mut eq = |column: &str, value: &Option<String>, sql: &mut String| {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} ?"));
            args.push(Sql::Text(v.clone()));
        }
    };
    eq("v.county_code =", &f.county_code, &mut sql);
    eq("v.enterprise_id =", &f.enterprise_id, &mut sql);
    eq("v.visit_date >=", &f.from_date, &mut sql);
    eq("v.visit_date <=", &f.to_date, &mut sql);
    eq("v.review_state =", &f.review_state.map(|s| s.code().to_string()), &mut sql);
    if !f.include_deleted {
        sql.push_str(" AND v.deleted = 0");
    }
    if f.only_conflicts {
        sql.push_str(" AND d.has_conflicts = 1");
    }
    if f.only_pending {
        sql.push_str(" AND EXISTS (SELECT 1 FROM outbox o WHERE o.doc_id = v.id)");
    }
    sql.push_str(" ORDER BY v.visit_date DESC, v.id LIMIT ? OFFSET ?");
    args.push(Sql::Integer(f.limit.map(|l| l as i64).unwrap_or(-1)));
    args.push(Sql::Integer(f.offset as i64));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok(VisitSummary {
            id: r.get(0)?,
            enterprise_id: r.get(1)?,
            enterprise_name: r.get(2)?,
            county_code: r.get(3)?,
            visit_date: r.get(4)?,
            review_state: ReviewState::from_code(&r.get::<_, String>(5)?).unwrap_or(ReviewState::Draft),
            inspectors: r.get(6)?,
            deleted: r.get(7)?,
            has_conflicts: r.get(8)?,
            pending_sync: r.get(9)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
