//! `ohassist migrate --to postgres://…`: a county's SQLite database copied into an empty
//! PostgreSQL one, every table and row as it is — documents, the change feed with its
//! positions, accounts, devices and their tokens, sessions, the attachments index — in one
//! PostgreSQL transaction, then checked: the same rows in every table, every document's
//! heads and the feed position for position. Phones keep their tokens and cursors, so they
//! go on syncing incrementally against the new database (ADR 0008).
//!
//! The server must be stopped (the copy reads one SQLite snapshot; what a running server
//! wrote after it would stay behind). Attachment files stay in the data directory.

use std::path::Path;

use crate::db::{Db, DbError, Location};
use crate::sql::{Connection, OwnedValue, PgUrl, ToValue};

/// The tables in an order that keeps every foreign key satisfied as rows arrive.
pub const TABLES: &[&str] = &[
    "users",
    "devices",
    "web_sessions",
    "api_clients",
    "documents",
    "changes",
    "change_origins",
    "enterprises",
    "visits",
    "enterprise_status",
    "enterprise_monthly",
    "attachments",
    "attachment_visits",
    "refused_uploads",
    "refused_origins",
    "units",
    "province_deadlines",
    "upstream",
    "upstream_refused",
    "login_failures",
];

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("目标数据库不是空的（{table} 表已有 {rows} 行），未做任何更改 / the target is not empty ({table} has {rows} rows); nothing was changed")]
    NotEmpty { table: &'static str, rows: i64 },
    #[error("源数据库有本程序不认识的表 {0}，未做任何更改 / the source has a table this ohassist does not know: {0}; nothing was changed")]
    UnknownTable(String),
    #[error("核对失败 / the check after the copy failed: {0}")]
    Mismatch(String),
}

impl From<crate::sql::Error> for MigrateError {
    fn from(e: crate::sql::Error) -> Self {
        MigrateError::Db(e.into())
    }
}

/// What was copied.
#[derive(Debug, Default)]
pub struct MigrateReport {
    /// Rows per table, in [`TABLES`] order.
    pub rows: Vec<(&'static str, i64)>,
    pub documents: i64,
    pub changes: i64,
    pub last_seq: i64,
}

fn columns(source: &Connection, table: &str) -> Result<Vec<String>, MigrateError> {
    Ok(source
        .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")?
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

fn count(conn: &Connection, table: &str) -> Result<i64, MigrateError> {
    Ok(conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?)
}

/// `SELECT a || b` of the rows of `sql`, in order: what both databases must agree on.
fn listing(conn: &Connection, sql: &str) -> Result<Vec<String>, MigrateError> {
    Ok(conn.prepare(sql)?.query_map([], |r| r.get::<_, String>(0))?.collect::<Result<_, _>>()?)
}

/// Copies the SQLite database of `data_dir` into the empty PostgreSQL database at `to`.
pub fn migrate(data_dir: &Path, to: &PgUrl) -> Result<MigrateReport, MigrateError> {
    let source = Db::open_dir(data_dir).map_err(DbError::Open)?;
    let source = source.blocking_writer();
    let known: Vec<String> = listing(
        &source,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
    )?;
    if let Some(unknown) = known.iter().find(|t| !TABLES.contains(&t.as_str())) {
        return Err(MigrateError::UnknownTable(unknown.clone()));
    }
    // Creates the schema in an empty database (a foreign one is refused there).
    let target = Db::open_at(&Location::Postgres(to.clone()), data_dir)?;
    let mut target = target.blocking_writer();
    for table in TABLES {
        let rows = count(&target, table)?;
        if rows > 0 {
            return Err(MigrateError::NotEmpty { table, rows });
        }
    }

    let snapshot = source.unchecked_transaction()?;
    let tx = target.transaction()?;
    let mut report = MigrateReport::default();
    for table in TABLES {
        let cols = columns(&snapshot, table)?;
        let list = cols.join(", ");
        let marks: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let mut insert = tx.prepare(&format!("INSERT INTO {table} ({list}) VALUES ({})", marks.join(", ")))?;
        let mut select = snapshot.prepare(&format!("SELECT {list} FROM {table}"))?;
        let mut rows = select.query([])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            let values: Vec<OwnedValue> = (0..cols.len()).map(|i| r.get(i)).collect::<Result<_, _>>()?;
            let params: Vec<&dyn ToValue> = values.iter().map(|v| v as &dyn ToValue).collect();
            insert.execute(params.as_slice())?;
            n += 1;
        }
        report.rows.push((table, n));
    }
    // New positions continue after the copied ones.
    tx.execute_batch("SELECT setval('changes_seq', greatest((SELECT max(seq) FROM changes), 1))")?;

    for (table, rows) in &report.rows {
        let there = count(&tx, table)?;
        if there != *rows {
            return Err(MigrateError::Mismatch(format!("{table}: {rows} rows copied, {there} in PostgreSQL")));
        }
    }
    let heads = "SELECT id || ' ' || heads FROM documents ORDER BY id";
    if listing(&snapshot, heads)? != listing(&tx, heads)? {
        return Err(MigrateError::Mismatch("a document's heads differ".into()));
    }
    let feed = "SELECT CAST(seq AS TEXT) || ' ' || hash FROM changes ORDER BY seq";
    if listing(&snapshot, feed)? != listing(&tx, feed)? {
        return Err(MigrateError::Mismatch("the change feed differs".into()));
    }
    report.documents = count(&tx, "documents")?;
    report.changes = count(&tx, "changes")?;
    report.last_seq = tx.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| r.get(0))?;
    tx.commit()?;
    drop(snapshot);
    Ok(report)
}
