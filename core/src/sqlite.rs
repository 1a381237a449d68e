//! The one way to open a SQLite database, on the phone and on the server.
//!
//! Pragmas are set outside any transaction; then, inside one `IMMEDIATE` transaction, the
//! schema is created or upgraded by numbered migrations, the version kept in
//! `PRAGMA user_version`. A database newer than the code is refused, and so is a file of
//! another application (`PRAGMA application_id`) or one that is not a database at all.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::error::{Error, Result};

/// A database kind: its application id and its migrations, `steps[i]` taking the schema
/// from version `i` to `i + 1` (so the current version is `steps.len()`).
pub struct Schema {
    pub name: &'static str,
    pub application_id: i32,
    pub steps: &'static [&'static str],
}

impl Schema {
    pub fn version(&self) -> u32 {
        self.steps.len() as u32
    }
}

/// Opens (creating if needed) the database at `path` and brings its schema up to date.
pub fn open(path: &Path, schema: &Schema) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    configure(&conn).map_err(|e| not_a_database(&e).unwrap_or(Error::Storage(e)))?;
    migrate(&mut conn, schema)?;
    Ok(conn)
}

/// A read-only connection to an existing database (readers beside the one writer).
pub fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // Reading the schema first makes a file that is not a database fail here, clearly.
    conn.query_row("PRAGMA schema_version", [], |_| Ok(()))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "database is not in WAL mode");
    }
    // FULL: a committed transaction survives power loss, not only a killed process.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn not_a_database(e: &rusqlite::Error) -> Option<Error> {
    match e {
        rusqlite::Error::SqliteFailure(f, msg)
            if matches!(f.code, rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) =>
        {
            Some(Error::CorruptDatabase(msg.clone().unwrap_or_else(|| f.to_string())))
        }
        _ => None,
    }
}

fn migrate(conn: &mut Connection, schema: &Schema) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let version: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app_id: i32 = tx.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if version > 0 && app_id != schema.application_id {
        return Err(Error::CorruptDatabase(format!(
            "this file is not an {} database (application id {app_id:#x})",
            schema.name
        )));
    }
    if version > schema.version() {
        return Err(Error::DatabaseTooNew { found: version, supported: schema.version() });
    }
    if version == schema.version() {
        return Ok(());
    }
    if version == 0 {
        // A new file must be empty: refuse to take over somebody else's tables.
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
        if tables > 0 {
            return Err(Error::CorruptDatabase(format!("this file has tables but is not an {} database", schema.name)));
        }
    }
    for (i, step) in schema.steps.iter().enumerate().skip(version as usize) {
        tracing::info!(database = schema.name, from = i, to = i + 1, "migrating");
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "application_id", schema.application_id)?;
    tx.pragma_update(None, "user_version", schema.version())?;
    tx.commit()?;
    Ok(())
}

/// `PRAGMA integrity_check`: `Ok(())` or the problems SQLite lists.
pub fn integrity_check(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let rows: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
    if rows == ["ok"] {
        Ok(())
    } else {
        Err(Error::CorruptDatabase(rows.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "CREATE TABLE a (x INTEGER);";
    const V2: &str = "ALTER TABLE a ADD COLUMN y TEXT NOT NULL DEFAULT '';";
    const OLD: Schema = Schema { name: "test", application_id: 0x7e57, steps: &[V1] };
    const NEW: Schema = Schema { name: "test", application_id: 0x7e57, steps: &[V1, V2] };

    #[test]
    fn creates_upgrades_and_refuses_newer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open(&path, &OLD).unwrap();
        conn.execute("INSERT INTO a (x) VALUES (1)", []).unwrap();
        drop(conn);
        let conn = open(&path, &NEW).unwrap();
        let (x, y): (i64, String) = conn.query_row("SELECT x, y FROM a", [], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        assert_eq!((x, y.as_str()), (1, ""));
        drop(conn);
        match open(&path, &OLD) {
            Err(Error::DatabaseTooNew { found: 2, supported: 1 }) => {}
            other => panic!("expected DatabaseTooNew, got {other:?}"),
        }
    }

    #[test]
    fn refuses_a_file_that_is_not_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
        match open(&path, &NEW) {
            Err(Error::CorruptDatabase(_)) => {}
            other => panic!("expected CorruptDatabase, got {other:?}"),
        }
    }

    #[test]
    fn refuses_another_applications_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE theirs (z);").unwrap();
        assert!(matches!(open(&path, &NEW), Err(Error::CorruptDatabase(_))));
        let other = Schema { name: "other", application_id: 1, steps: &[V1] };
        let path2 = dir.path().join("o2.db");
        open(&path2, &other).unwrap();
        assert!(matches!(open(&path2, &NEW), Err(Error::CorruptDatabase(_))));
    }
}
