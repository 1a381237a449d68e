//! The one way to open a SQLite database, on the phone and on the server.
//!
//! Pragmas are set outside any transaction; then, inside one `IMMEDIATE` transaction, the
//! schema is created or upgraded by numbered migrations, the version kept in
//! `PRAGMA user_version`. A database newer than the code is refused, and so is a file of
//! another application (`PRAGMA application_id`) or one that is not a database at all.
//!
//! Every build links SQLCipher (ADR 0003). [`open`] without a key reads and writes plain
//! SQLite files, as the server does; [`open_encrypted`] opens a file encrypted with a 32-byte
//! raw key, checking the key on a read-only connection first (so a wrong key changes nothing)
//! and encrypting a plain file in place on its first open with a key, crash-safely.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The first 16 bytes of every plain SQLite file (an encrypted one starts with a random salt).
const PLAIN_HEADER: &[u8; 16] = b"SQLite format 3\0";

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
    open_with(path, schema, None)
}

/// Opens (creating if needed) the database at `path`, encrypted with the raw 256-bit `key`.
/// A plain SQLite file is first encrypted in place ([`encrypt_in_place`]); returns whether that
/// happened. A key that does not open the file is [`Error::WrongKey`], and the file is left as
/// it was.
pub fn open_encrypted(path: &Path, schema: &Schema, key: &[u8; 32]) -> Result<(Connection, bool)> {
    remove_leftovers(path)?;
    let plain = is_plain(path)?;
    if plain {
        encrypt_in_place(path, key)?;
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
        check_key(path, key)?;
    }
    Ok((open_with(path, schema, Some(key))?, plain))
}

fn open_with(path: &Path, schema: &Schema, key: Option<&[u8; 32]>) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags)?;
    if let Some(key) = key {
        set_key(&conn, key)?;
    }
    configure(&conn).map_err(|e| match (key, not_a_database(&e)) {
        (Some(_), Some(_)) => Error::WrongKey,
        (None, Some(e)) => e,
        (_, None) => Error::Storage(e),
    })?;
    migrate(&mut conn, schema)?;
    Ok(conn)
}

/// SQLCipher's raw-key form `x'…'`: the key is used as is, without a passphrase derivation,
/// since it is already 256 random bits from the platform keystore (and opening stays fast).
fn key_spec(key: &[u8; 32]) -> Zeroizing<String> {
    Zeroizing::new(format!("x'{}'", hex::encode(key)))
}

fn set_key(conn: &Connection, key: &[u8; 32]) -> Result<()> {
    // Hex digits only: nothing to escape.
    let sql = Zeroizing::new(format!("PRAGMA key = \"{}\";", key_spec(key).as_str()));
    conn.execute_batch(&sql)?;
    Ok(())
}

/// Whether `path` is a plain (unencrypted) SQLite file.
fn is_plain(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut header = [0u8; 16];
    match std::fs::File::open(path) {
        Ok(mut f) => Ok(f.read_exact(&mut header).is_ok() && &header == PLAIN_HEADER),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Reads the schema with `key` on a read-only connection, which can neither checkpoint nor
/// write, so that a wrong key leaves the file (and any WAL beside it) untouched.
fn check_key(path: &Path, key: &[u8; 32]) -> Result<()> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    set_key(&conn, key)?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())) {
        Ok(()) => Ok(()),
        Err(e) if not_a_database(&e).is_some() => Err(Error::WrongKey),
        Err(e) => Err(e.into()),
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(suffix);
    path.with_file_name(name)
}

/// What an interrupted [`encrypt_in_place`] leaves: a partial copy, never the only copy.
fn remove_leftovers(path: &Path) -> Result<()> {
    for suffix in [".encrypting", ".encrypting-journal"] {
        match std::fs::remove_file(sibling(path, suffix)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
    }
    Ok(())
}

/// Encrypts the plain database at `path` with `key`, in place and crash-safely: the plain file
/// is folded out of WAL mode (so no `-wal` of it can outlive it), copied by `sqlcipher_export`
/// into `<path>.encrypting`, which is checked, synced and renamed over the plain file. A kill
/// at any point leaves either the plain file (and a partial copy that the next open deletes)
/// or the encrypted one.
pub fn encrypt_in_place(path: &Path, key: &[u8; 32]) -> Result<()> {
    let tmp = sibling(path, ".encrypting");
    remove_leftovers(path)?;
    tracing::info!("encrypting a plain store");
    {
        // CREATE: the attached copy is opened with this connection's flags.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("delete") {
            return Err(Error::CorruptDatabase(format!("cannot leave journal mode {mode} to encrypt the store")));
        }
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let app_id: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
        let tmp_str = tmp.to_str().ok_or_else(|| Error::CorruptDatabase("the store path is not UTF-8".into()))?;
        conn.execute("ATTACH DATABASE ?1 AS encrypted KEY ?2", rusqlite::params![tmp_str, key_spec(key).as_str()])?;
        conn.query_row("SELECT sqlcipher_export('encrypted')", [], |_| Ok(()))?;
        conn.execute_batch(&format!(
            "PRAGMA encrypted.user_version = {version}; PRAGMA encrypted.application_id = {app_id};"
        ))?;
        conn.execute_batch("DETACH DATABASE encrypted")?;
    }
    // The copy must read back with the key, whole, before it replaces the only other copy.
    {
        let check =
            Connection::open_with_flags(&tmp, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        set_key(&check, key)?;
        integrity_check(&check)?;
    }
    std::fs::File::open(&tmp)?.sync_all()?;
    for suffix in ["-wal", "-shm", "-journal"] {
        if sibling(path, suffix).exists() {
            return Err(Error::CorruptDatabase(format!("the plain store still has a {suffix} file; close it first")));
        }
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    tracing::info!("store encrypted");
    Ok(())
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
