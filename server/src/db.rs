//! The county database: its schema, the one writer connection and the pool of readers, on
//! SQLite (the embedded default: a file in the data directory) or PostgreSQL
//! (`--database postgres://…`), behind the one connection type of [`crate::sql`].
//!
//! All database work runs on tokio's blocking threads through [`Db::with_writer`] and
//! [`Db::with_reader`] (which the HTTP layer wraps for its handlers). Writes are serialised
//! behind one mutex in a process, which also makes the change feed's `seq` values become
//! visible in order (a reader never sees seq 7 before seq 6); across processes on
//! PostgreSQL the feed's lock does the same (`sql/pg.rs`, ADR 0008).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use ohassist_core::sqlite::{self, Schema};

use crate::sql::{self, Connection, PgUrl};

/// What the database itself can fail with, apart from the work it runs: a statement, the
/// opening of a reader, or the blocking task the work ran on (a panic). A domain error
/// wraps it; `api/` and `web/` answer it as an internal error.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sql(#[from] sql::Error),
    #[error("opening a reader: {0}")]
    Open(#[from] ohassist_core::Error),
    #[error("the database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("{0}")]
    Schema(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(e: rusqlite::Error) -> Self {
        DbError::Sql(e.into())
    }
}

pub const SCHEMA: Schema = Schema {
    name: "ohassist server",
    application_id: 0x6f68_7331, // "ohs1"
    steps: &[
        include_str!("../migrations/001_init.sql"),
        include_str!("../migrations/002_console.sql"),
        include_str!("../migrations/003_attachments.sql"),
        include_str!("../migrations/004_hostile_pushes.sql"),
        include_str!("../migrations/005_device_status.sql"),
        include_str!("../migrations/006_units.sql"),
        include_str!("../migrations/007_refused_changes.sql"),
        include_str!("../migrations/008_visit_scope.sql"),
        include_str!("../migrations/009_sync_gap.sql"),
        include_str!("../migrations/010_api_clients.sql"),
        include_str!("../migrations/011_relay.sql"),
        include_str!("../migrations/012_changes_by_doc_device.sql"),
        include_str!("../migrations/013_capture_days_off.sql"),
        include_str!("../migrations/014_relay_renewal_and_kept_authors.sql"),
        include_str!("../migrations/015_login_failures.sql"),
    ],
};

/// The same schema on PostgreSQL: numbered steps of its own (a new deployment starts at
/// SQLite's latest; `ohassist migrate --to` copies an SQLite one across).
pub const PG_STEPS: &[&str] = &[
    include_str!("../migrations/postgres/001_init.sql"),
    include_str!("../migrations/postgres/002_login_failures.sql"),
    include_str!("../migrations/postgres/003_feed_lock_per_statement.sql"),
];

/// The database file inside the data directory.
pub const DB_FILE: &str = "ohassist.db";

/// Readers kept open between requests; more are opened under load and closed after.
const MAX_IDLE_READERS: usize = 8;

/// Where the records are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The SQLite file (`<data>/ohassist.db`).
    Sqlite(PathBuf),
    Postgres(PgUrl),
}

impl Location {
    /// `--database`: a `postgres://` URL, or none for the SQLite file in `data_dir`.
    pub fn of(database: Option<&str>, data_dir: &Path) -> Result<Location, String> {
        match database {
            None => Ok(Location::Sqlite(data_dir.join(DB_FILE))),
            Some(s) => PgUrl::parse(s).map(Location::Postgres).ok_or_else(|| {
                format!("--database: {s:?} is not a postgres:// URL (without it, the SQLite file in the data directory is used)")
            }),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(p) => write!(f, "{}", p.display()),
            Location::Postgres(url) => write!(f, "{url}"),
        }
    }
}

#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    location: Location,
    data_dir: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

/// A poisoned lock only means an earlier task panicked while holding it; the connection
/// itself is fine (its transaction rolled back when dropped during the unwind).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Db {
    /// Opens (creating or migrating) `data_dir/ohassist.db`.
    pub fn open_dir(data_dir: &Path) -> ohassist_core::Result<Db> {
        std::fs::create_dir_all(data_dir)?;
        Db::open(&data_dir.join(DB_FILE))
    }

    /// Opens the SQLite database at `path`; its directory is the data directory.
    pub fn open(path: &Path) -> ohassist_core::Result<Db> {
        let writer = sqlite::open(path, &SCHEMA)?;
        // The one writer merges every push: a 64 MiB page cache keeps the hot documents,
        // indexes and feed pages in memory instead of SQLite's default 2 MiB.
        writer.pragma_update(None, "cache_size", -65_536)?;
        // Checkpoint the WAL every ~40 MiB instead of every ~4 MiB: a burst of pushes does
        // not pay a checkpoint every few transactions (readers stay consistent either way).
        writer.pragma_update(None, "wal_autocheckpoint", 10_000)?;
        let mut writer = Connection::from(writer);
        // A database upgraded from version 1 has enterprises but no computed status yet.
        crate::reports::status::backfill(&mut writer).map_err(|e| match e {
            crate::reports::status::StatusError::Record(e) => e,
            e => ohassist_core::Error::CorruptDatabase(e.to_string()),
        })?;
        let data_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(Db::with(Location::Sqlite(path.to_path_buf()), data_dir, writer))
    }

    /// Opens `location` with `data_dir` for the files beside the records (attachments).
    pub fn open_at(location: &Location, data_dir: &Path) -> Result<Db, DbError> {
        std::fs::create_dir_all(data_dir).map_err(|e| DbError::Open(e.into()))?;
        match location {
            Location::Sqlite(path) => Ok(Db::open(path)?),
            Location::Postgres(url) => {
                let mut writer = Connection::postgres(url, true)?;
                migrate_postgres(&writer)?;
                crate::reports::status::backfill(&mut writer).map_err(|e| DbError::Schema(e.to_string()))?;
                Ok(Db::with(location.clone(), data_dir.to_path_buf(), writer))
            }
        }
    }

    fn with(location: Location, data_dir: PathBuf, writer: Connection) -> Db {
        Db {
            inner: Arc::new(Inner { location, data_dir, writer: Mutex::new(writer), readers: Mutex::new(Vec::new()) }),
        }
    }

    fn open_reader(&self) -> Result<Connection, DbError> {
        Ok(match &self.inner.location {
            Location::Sqlite(path) => Connection::from(sqlite::open_reader(path)?),
            Location::Postgres(url) => Connection::postgres(url, false)?,
        })
    }

    /// Runs `f` on the writer connection, on a blocking thread. `f` opens its own
    /// transaction, so that a failure anywhere in it leaves nothing behind. `f`'s error is
    /// the caller's (a domain error, or the HTTP error of a handler): anything that can hold
    /// a [`DbError`].
    pub async fn with_writer<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&inner.writer))).await.map_err(|e| E::from(e.into()))?
    }

    /// Runs `f` on a reader connection, on a blocking thread.
    pub async fn with_reader<R, E, F>(&self, f: F) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = lock(&db.inner.readers).pop();
            let mut conn = match pooled {
                Some(c) => c,
                None => db.open_reader().map_err(E::from)?,
            };
            let result = f(&mut conn);
            let mut readers = lock(&db.inner.readers);
            if readers.len() < MAX_IDLE_READERS {
                readers.push(conn);
            }
            result
        })
        .await
        .map_err(|e| E::from(e.into()))?
    }

    /// Where the records are.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// The data directory: attachments and the server's other files, beside the database.
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The SQLite file, when the records are in one (the backup copies it).
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.inner.location {
            Location::Sqlite(p) => Some(p),
            Location::Postgres(_) => None,
        }
    }

    /// The writer, for the command-line tools that run without a tokio runtime.
    pub fn blocking_writer(&self) -> MutexGuard<'_, Connection> {
        lock(&self.inner.writer)
    }
}

/// Brings a PostgreSQL database to [`PG_STEPS`], one transaction per step, under a lock so
/// that two processes starting at once migrate it once. A database of a newer ohassist, or
/// one holding other tables and not ours, is refused untouched.
fn migrate_postgres(conn: &Connection) -> Result<(), DbError> {
    const MIGRATE_LOCK: i64 = 0x6f68_6d67; // "ohmg"
    conn.execute("SELECT pg_advisory_lock(?1)", [MIGRATE_LOCK])?;
    let result = (|| -> Result<(), DbError> {
        let ours: bool = conn.query_row("SELECT to_regclass('ohassist_schema') IS NOT NULL", [], |r| r.get(0))?;
        if !ours {
            let tables: i64 = conn.query_row(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
                [],
                |r| r.get(0),
            )?;
            if tables > 0 {
                return Err(DbError::Schema(format!(
                    "this PostgreSQL database holds {tables} tables but no ohassist schema: not an ohassist database, left untouched"
                )));
            }
            conn.execute_batch(
                "CREATE TABLE ohassist_schema (version BIGINT NOT NULL); INSERT INTO ohassist_schema VALUES (0)",
            )?;
        }
        let version: i64 = conn.query_row("SELECT version FROM ohassist_schema", [], |r| r.get(0))?;
        if version > PG_STEPS.len() as i64 {
            return Err(DbError::Schema(format!(
                "the database is at schema version {version}, newer than this ohassist ({}): upgrade ohassist",
                PG_STEPS.len()
            )));
        }
        for (i, step) in PG_STEPS.iter().enumerate().skip(version as usize) {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(step)?;
            tx.execute("UPDATE ohassist_schema SET version = ?1", [(i + 1) as i64])?;
            tx.commit()?;
        }
        Ok(())
    })();
    conn.execute("SELECT pg_advisory_unlock(?1)", [MIGRATE_LOCK])?;
    result
}

/// Seconds since the Unix epoch.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn upgrading_each_frozen_version_equals_a_fresh_database() {
        fn dump(conn: &Connection) -> Vec<(String, String)> {
            let mut stmt =
                conn.prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY type, name").unwrap();
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
        }
        let dir = tempfile::tempdir().unwrap();
        let fresh = sqlite::open(&dir.path().join("fresh.db"), &SCHEMA).unwrap();
        for version in 0..SCHEMA.steps.len() {
            let path = dir.path().join(format!("v{version}.db"));
            let frozen =
                Schema { name: SCHEMA.name, application_id: SCHEMA.application_id, steps: &SCHEMA.steps[..version] };
            drop(sqlite::open(&path, &frozen).unwrap());
            let upgraded = sqlite::open(&path, &SCHEMA).unwrap();
            assert_eq!(dump(&upgraded), dump(&fresh), "upgrade from version {version}");
        }
    }

    /// Step 011 rebuilds `users` (a CHECK allowing `relay`): every user, their devices and
    /// console sessions come through, the foreign keys hold, and a relay account can be made.
    #[test]
    fn the_relay_upgrade_keeps_users_devices_and_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let before = SCHEMA.steps.iter().position(|s| s.contains("users_before_011")).expect("step 011");
        let old = Schema { name: SCHEMA.name, application_id: SCHEMA.application_id, steps: &SCHEMA.steps[..before] };
        {
            let conn = sqlite::open(&path, &old).unwrap();
            conn.execute_batch(
                "INSERT INTO users VALUES ('u1', 'admin', '管理员', 'admin', '210102', 'h', 1, 0);
                 INSERT INTO devices (id, user_id, name, token_hash, created_at, expires_at)
                     VALUES ('d1', 'u1', 'phone', 't', 1, 99);
                 INSERT INTO web_sessions VALUES ('s1', 'u1', 'c', 1, 99, NULL);",
            )
            .unwrap();
            assert!(conn
                .execute("INSERT INTO users VALUES ('u2', 'r', 'r', 'relay', '210102', 'h', 1, 0)", [])
                .is_err());
        }
        let conn = sqlite::open(&path, &SCHEMA).unwrap();
        let n = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(n("SELECT count(*) FROM users WHERE username = 'ADMIN'"), 1, "the NOCASE username survives");
        assert_eq!(n("SELECT count(*) FROM devices d JOIN users u ON u.id = d.user_id"), 1);
        assert_eq!(n("SELECT count(*) FROM web_sessions s JOIN users u ON u.id = s.user_id"), 1);
        assert_eq!(n("SELECT count(*) FROM pragma_foreign_key_check"), 0);
        conn.execute("INSERT INTO users VALUES ('u2', 'county-a', '县服务器', 'relay', '210102', 'h', 1, 0)", [])
            .unwrap();
        assert!(conn.execute("DELETE FROM users WHERE id = 'u1'", []).is_err(), "devices still reference users");
    }

    /// Visits stored before the scope-by-reference rule take their enterprise's county on the
    /// upgrade, and are fed whole to it; the others are untouched.
    #[test]
    fn the_upgrade_puts_old_visits_in_their_enterprises_county() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let before = SCHEMA.steps.iter().position(|s| s.contains("moved_visits")).expect("step 008");
        let old = Schema { name: SCHEMA.name, application_id: SCHEMA.application_id, steps: &SCHEMA.steps[..before] };
        {
            let conn = sqlite::open(&path, &old).unwrap();
            conn.execute_batch(
                "INSERT INTO documents VALUES ('E', 'enterprise', x'', '[]', '210102', 0, 0);
                 INSERT INTO enterprises (credit_code, name, county_code, county_name, years, city_level_target,
                     special_governance, has_occupational_disease, in_surveillance_scope, deleted, has_conflicts)
                     VALUES ('E', '甲', '210102', '和平区', '[]', 0, 0, 0, 0, 0, 0);
                 INSERT INTO documents VALUES ('v-wrong', 'visit', x'', '[]', '210103', 0, 0);
                 INSERT INTO documents VALUES ('v-right', 'visit', x'', '[]', '210102', 0, 0);
                 INSERT INTO documents VALUES ('v-orphan', 'visit', x'', '[]', '210104', 0, 0);
                 INSERT INTO visits (id, enterprise_id, county_code, visit_date, review_state, inspectors, deleted,
                     has_conflicts, principal_trained, managers_trained, workers_trained)
                     VALUES ('v-wrong', 'E', '210103', '2025-05-01', 'draft', '{}', 0, 0, 0, 0, 0);
                 INSERT INTO visits (id, enterprise_id, county_code, visit_date, review_state, inspectors, deleted,
                     has_conflicts, principal_trained, managers_trained, workers_trained)
                     VALUES ('v-right', 'E', '210102', '2025-05-01', 'draft', '{}', 0, 0, 0, 0, 0);
                 INSERT INTO visits (id, enterprise_id, county_code, visit_date, review_state, inspectors, deleted,
                     has_conflicts, principal_trained, managers_trained, workers_trained)
                     VALUES ('v-orphan', 'X', '210104', '2025-05-01', 'draft', '{}', 0, 0, 0, 0, 0);",
            )
            .unwrap();
        }
        let conn = sqlite::open(&path, &SCHEMA).unwrap();
        let county = |table: &str, id: &str| -> String {
            conn.query_row(&format!("SELECT county_code FROM {table} WHERE id = ?1"), [id], |r| r.get(0)).unwrap()
        };
        for table in ["visits", "documents"] {
            assert_eq!(county(table, "v-wrong"), "210102", "{table}");
            assert_eq!(county(table, "v-right"), "210102", "{table}");
            assert_eq!(county(table, "v-orphan"), "210104", "{table}");
        }
        let fed: Vec<String> = conn
            .prepare("SELECT doc_id FROM changes WHERE whole = 1")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        assert_eq!(fed, vec!["v-wrong".to_string()]);
    }
}
