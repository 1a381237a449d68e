//! `ohassist backup` and `ohassist restore`: a consistent copy of an SQLite deployment (the
//! database and the attachment files), taken while the server runs and phones push, and
//! brought back into a data directory.
//!
//! A backup directory holds `ohassist.db` (the database as of one moment, written by
//! `VACUUM INTO` inside one read transaction, so it is a snapshot by construction and never
//! blocks the writer in WAL mode), `attachments/<2 hex>/<sha256>` (the complete files that
//! snapshot records, each hashed while it is copied) and `manifest.json` (when, the feed's
//! highest position, the schema version, counts, every file's hash, and the manifest's own
//! checksum). It is written under a hidden sibling `.<name>.partial`, fsynced, and renamed to
//! its name last: an interrupted backup never has the name, nor a manifest.
//!
//! A restore verifies everything before it touches the data directory (manifest checksum,
//! schema not newer than this binary, database hash, `PRAGMA integrity_check`, counts, every
//! attachment's hash), stages the copy inside the data directory, keeps what was there aside
//! (`--force` only), and renames the copy into place. The restored feed's rows are moved past
//! every position an earlier life of the database gave ([`restored_feed_base`]), so every
//! phone holds a cursor this server never gave: its next pull is answered `409 cursor_ahead`,
//! and it pushes again what it holds (the server keeps what it lacks) and pulls from 0.
//!
//! Must not: write to the live database (it opens it for reading only what `VACUUM INTO`
//! reads), or leave a half-restored data directory that looks whole.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use ohassist_core::sqlite;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::attachments;
use crate::db::{DB_FILE, SCHEMA};

/// The manifest's file name inside a backup directory.
pub const MANIFEST: &str = "manifest.json";
/// What a manifest says it is.
pub const FORMAT: &str = "ohassist-backup";
/// The manifest layout this binary writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Why a backup or a restore did not happen. Each message is Chinese first, then English.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("数据目录中没有数据库 {} / there is no database at {}", .0.display(), .0.display())]
    NoDatabase(PathBuf),
    #[error("备份目标 {} 已存在且不为空，请换一个目录 / the backup target {} exists and is not empty; choose another", .0.display(), .0.display())]
    TargetNotEmpty(PathBuf),
    #[error("{} 不是完整的备份：没有 manifest.json（中断的备份从不写它） / {} is not a complete backup: it has no manifest.json (an interrupted backup never writes one)", .0.display(), .0.display())]
    NotABackup(PathBuf),
    #[error("备份清单无法读取：{0} / the backup manifest cannot be read: {0}")]
    ManifestUnreadable(String),
    #[error("备份清单被改动过（校验和不符） / the backup manifest was edited (its checksum does not match)")]
    ManifestEdited,
    #[error("备份清单与数据库不符：{0} / the backup manifest does not match its database: {0}")]
    ManifestMismatch(String),
    #[error("备份的数据库结构版本 {found} 比本程序支持的 {supported} 新，请用更新的 ohassist 恢复 / the backup's schema version {found} is newer than this binary's {supported}; restore it with a newer ohassist")]
    SchemaTooNew { found: u32, supported: u32 },
    #[error("备份中的数据库文件损坏：{0} / the backup's database file is damaged: {0}")]
    DatabaseCorrupt(String),
    #[error("备份中的附件 {sha256} {what} / the backup's attachment {sha256} {what_en}")]
    AttachmentBad { sha256: String, what: &'static str, what_en: &'static str },
    #[error("服务器上的附件 {sha256} {what}，备份未完成；请运行 ohassist attachments check / the server's attachment {sha256} {what_en}, so the backup was not made; run ohassist attachments check")]
    LiveAttachmentBad { sha256: String, what: &'static str, what_en: &'static str },
    #[error("数据目录 {} 已有数据；确认要替换时加 --force（原有数据会移到其中的 before-restore-* 目录） / the data directory {} already holds data; add --force to replace it (what is there is moved into a before-restore-* folder inside it)", .0.display(), .0.display())]
    DataNotEmpty(PathBuf),
    #[error("服务器似乎正在使用数据目录 {}，请先停止服务器 / a server seems to be running on {}; stop it first", .0.display(), .0.display())]
    ServerRunning(PathBuf),
    #[error("数据库：{0} / database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("数据库：{0} / database: {0}")]
    Core(#[from] ohassist_core::Error),
    #[error("文件 {}：{source} / file {}: {source}", .path.display(), .path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

type Result<T> = std::result::Result<T, BackupError>;

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_path_buf(), source }
}

/// What a backup states about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    /// The `ohassist` version that wrote it.
    pub server_version: String,
    /// The copy is the database as of one moment between these two (RFC 3339, UTC): every
    /// change acknowledged to a phone before `snapshot_started_at` is in it, none
    /// acknowledged after `snapshot_finished_at` is.
    pub snapshot_started_at: String,
    pub snapshot_finished_at: String,
    /// When the backup was complete (attachments copied, everything synced).
    pub completed_at: String,
    /// `PRAGMA user_version` of the copied database.
    pub schema_version: u32,
    /// The highest change-feed position in the copy: its point in the feed.
    pub feed_seq: u64,
    pub counts: Counts,
    pub database: FileEntry,
    pub attachments: Vec<FileEntry>,
    /// SHA-256 (hex) of this manifest serialised with `checksum` empty.
    pub checksum: String,
}

/// Row counts of the copy, for a reader (and checked again on restore).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub documents: u64,
    pub enterprises: u64,
    pub visits: u64,
    pub changes: u64,
    pub users: u64,
    pub devices: u64,
    pub attachments: u64,
    pub attachment_bytes: u64,
}

/// A file of the backup: its path inside the backup directory, size and SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

impl Manifest {
    fn computed_checksum(&self) -> String {
        let mut m = self.clone();
        m.checksum = String::new();
        hex::encode(Sha256::digest(serde_json::to_vec(&m).expect("a manifest serialises")))
    }
}

/// What `ohassist backup` did, for its report line and the benchmarks.
#[derive(Debug)]
pub struct BackupReport {
    pub manifest: Manifest,
    /// Time spent in `VACUUM INTO` (the read transaction on the live database).
    pub snapshot_ms: u128,
    pub total_ms: u128,
    /// Bytes written into the backup (database and attachments).
    pub bytes: u64,
}

/// What `ohassist restore` did.
#[derive(Debug)]
pub struct RestoreReport {
    pub manifest: Manifest,
    /// Where the data directory's former contents were kept (`--force`), if it had any.
    pub kept_aside: Option<PathBuf>,
    /// The next feed position the restored server gives (its rows were moved to just
    /// below it: see [`restored_feed_base`]).
    pub feed_continues_at: u64,
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).expect("a UTC time formats")
}

fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Copies `from` to `to` (created new), hashing what it reads, and fsyncs `to`. Returns
/// the size and the SHA-256 of the bytes copied.
fn copy_hashed(from: &Path, to: &Path) -> std::io::Result<(u64, String)> {
    let mut src = File::open(from)?;
    let mut dst = File::options().write(true).create_new(true).open(to)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        size += n as u64;
    }
    dst.sync_all()?;
    Ok((size, hex::encode(h.finalize())))
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(h.finalize())))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

fn is_empty_dir(dir: &Path) -> Result<bool> {
    Ok(fs::read_dir(dir).map_err(io_at(dir))?.next().is_none())
}

/// What a database says of itself: schema version, feed position, counts, and its complete
/// attachments as `(sha256, size)`.
type Described = (u32, u64, Counts, Vec<(String, u64)>);

/// The counts, feed position, schema version and complete attachments of a database.
fn describe(conn: &Connection) -> Result<Described> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let count =
        |sql: &str| -> rusqlite::Result<u64> { conn.query_row(sql, [], |r| r.get::<_, i64>(0)).map(|n| n as u64) };
    let feed_seq = count("SELECT coalesce(max(seq), 0) FROM changes")?;
    let mut stmt = conn.prepare("SELECT sha256, size FROM attachments WHERE complete = 1 ORDER BY sha256")?;
    let files: Vec<(String, u64)> =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?.collect::<rusqlite::Result<_>>()?;
    let counts = Counts {
        documents: count("SELECT count(*) FROM documents")?,
        enterprises: count("SELECT count(*) FROM enterprises")?,
        visits: count("SELECT count(*) FROM visits")?,
        changes: count("SELECT count(*) FROM changes")?,
        users: count("SELECT count(*) FROM users")?,
        devices: count("SELECT count(*) FROM devices")?,
        attachments: files.len() as u64,
        attachment_bytes: files.iter().map(|(_, s)| s).sum(),
    };
    Ok((version, feed_seq, counts, files))
}

fn attachment_rel(sha: &str) -> String {
    format!("attachments/{}/{sha}", &sha[..2])
}

/// The hidden sibling a backup to `to` is written in before it is renamed.
fn partial_dir(to: &Path) -> PathBuf {
    let name = to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "backup".into());
    to.with_file_name(format!(".{name}.partial"))
}

/// Takes a backup of the deployment in `data` into the new directory `to` while the server
/// may be running. See the module documentation for what it holds and why it is safe.
pub fn backup(data: &Path, to: &Path) -> Result<BackupReport> {
    let started = Instant::now();
    let live = data.join(DB_FILE);
    if !live.is_file() {
        return Err(BackupError::NoDatabase(live));
    }
    if to.exists() && !(to.is_dir() && is_empty_dir(to)?) {
        return Err(BackupError::TargetNotEmpty(to.to_path_buf()));
    }
    let tmp = partial_dir(to);
    if tmp.exists() {
        // What an interrupted backup to the same target left.
        fs::remove_dir_all(&tmp).map_err(io_at(&tmp))?;
    }
    fs::create_dir_all(&tmp).map_err(io_at(&tmp))?;
    let copy = tmp.join(DB_FILE);

    // No CREATE (the database must exist) and no migration: the live file is only read.
    let source =
        Connection::open_with_flags(&live, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    source.busy_timeout(std::time::Duration::from_secs(30))?;
    let app_id: i32 = source.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let live_version: u32 = source.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if app_id != SCHEMA.application_id {
        return Err(BackupError::DatabaseCorrupt(format!("{} is not an ohassist server database", live.display())));
    }
    if live_version > SCHEMA.version() {
        return Err(BackupError::SchemaTooNew { found: live_version, supported: SCHEMA.version() });
    }
    let snapshot_started = now_utc();
    let t = Instant::now();
    let copy_str =
        copy.to_str().ok_or_else(|| BackupError::ManifestUnreadable("the backup path is not UTF-8".into()))?;
    source.execute("VACUUM INTO ?1", [copy_str])?;
    let snapshot_ms = t.elapsed().as_millis();
    let snapshot_finished = now_utc();
    drop(source);

    // The copy is the truth about the copy: its counts and feed position are read from it.
    let (schema_version, feed_seq, counts, files) = {
        let conn =
            Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
        // A plain rollback-journal file: it opens read-only anywhere (no -wal or -shm).
        let _mode: String = conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))?;
        describe(&conn)?
    };
    File::open(&copy).and_then(|f| f.sync_all()).map_err(io_at(&copy))?;
    let (db_size, db_sha) = hash_file(&copy).map_err(io_at(&copy))?;

    let cfg = attachments::Config::new(data);
    let mut entries = Vec::with_capacity(files.len());
    let mut dirs = std::collections::BTreeSet::new();
    for (sha, size) in &files {
        let rel = attachment_rel(sha);
        let dst = tmp.join(&rel);
        let dir = dst.parent().expect("a shard folder").to_path_buf();
        if dirs.insert(dir.clone()) {
            fs::create_dir_all(&dir).map_err(io_at(&dir))?;
        }
        let src = cfg.complete_path(sha);
        let (got_size, got_sha) = match copy_hashed(&src, &dst) {
            Ok(v) => v,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BackupError::LiveAttachmentBad {
                    sha256: sha.clone(),
                    what: "不存在",
                    what_en: "is missing",
                })
            }
            Err(e) => return Err(BackupError::Io { path: src, source: e }),
        };
        if got_sha != *sha || got_size != *size {
            return Err(BackupError::LiveAttachmentBad {
                sha256: sha.clone(),
                what: "内容与其哈希不符",
                what_en: "does not hash to its name",
            });
        }
        entries.push(FileEntry { path: rel, size: *size, sha256: sha.clone() });
    }
    for dir in &dirs {
        sync_dir(dir)?;
    }
    if !dirs.is_empty() {
        sync_dir(&tmp.join("attachments"))?;
    }

    let mut manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        server_version: env!("CARGO_PKG_VERSION").into(),
        snapshot_started_at: rfc3339(snapshot_started),
        snapshot_finished_at: rfc3339(snapshot_finished),
        completed_at: rfc3339(now_utc()),
        schema_version,
        feed_seq,
        counts,
        database: FileEntry { path: DB_FILE.into(), size: db_size, sha256: db_sha },
        attachments: entries,
        checksum: String::new(),
    };
    manifest.checksum = manifest.computed_checksum();
    let manifest_path = tmp.join(MANIFEST);
    let mut f = File::create(&manifest_path).map_err(io_at(&manifest_path))?;
    f.write_all(&serde_json::to_vec_pretty(&manifest).expect("a manifest serialises"))
        .and_then(|_| f.sync_all())
        .map_err(io_at(&manifest_path))?;
    sync_dir(&tmp)?;
    // The backup gets its name only now, whole.
    fs::rename(&tmp, to).map_err(io_at(to))?;
    if let Some(parent) = to.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    let bytes = db_size + manifest.counts.attachment_bytes;
    Ok(BackupReport { manifest, snapshot_ms, total_ms: started.elapsed().as_millis(), bytes })
}

/// Reads and checks the manifest of the backup in `from`: present, of this format, not
/// edited, of a schema this binary can open. The files are checked by [`verify`].
pub fn read_manifest(from: &Path) -> Result<Manifest> {
    let path = from.join(MANIFEST);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(BackupError::NotABackup(from.to_path_buf())),
        Err(e) => return Err(BackupError::Io { path, source: e }),
    };
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| BackupError::ManifestUnreadable(e.to_string()))?;
    if manifest.format != FORMAT || manifest.format_version > FORMAT_VERSION {
        return Err(BackupError::ManifestUnreadable(format!(
            "format {} version {} (this binary reads {FORMAT} up to version {FORMAT_VERSION})",
            manifest.format, manifest.format_version
        )));
    }
    if manifest.checksum != manifest.computed_checksum() {
        return Err(BackupError::ManifestEdited);
    }
    if manifest.schema_version > SCHEMA.version() {
        return Err(BackupError::SchemaTooNew { found: manifest.schema_version, supported: SCHEMA.version() });
    }
    if manifest.database.path != DB_FILE
        || manifest
            .attachments
            .iter()
            .any(|a| !attachments::is_sha256(&a.sha256) || a.path != attachment_rel(&a.sha256))
    {
        return Err(BackupError::ManifestUnreadable("a file path is not where a backup puts it".into()));
    }
    Ok(manifest)
}

/// Checks a database file of a backup against its manifest: integrity, schema, counts, feed
/// position and the list of attachment files.
fn check_database(db: &Path, manifest: &Manifest) -> Result<()> {
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    let corrupt = |e: ohassist_core::Error| BackupError::DatabaseCorrupt(e.to_string());
    sqlite::integrity_check(&conn).map_err(corrupt)?;
    let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if app_id != SCHEMA.application_id {
        return Err(BackupError::DatabaseCorrupt("not an ohassist server database".into()));
    }
    let (version, feed_seq, counts, files) = describe(&conn)?;
    let mismatch = |what: String| Err(BackupError::ManifestMismatch(what));
    if version != manifest.schema_version {
        return mismatch(format!("schema version {version}, manifest {}", manifest.schema_version));
    }
    if feed_seq != manifest.feed_seq {
        return mismatch(format!("feed position {feed_seq}, manifest {}", manifest.feed_seq));
    }
    if counts != manifest.counts {
        return mismatch(format!("counts {counts:?}, manifest {:?}", manifest.counts));
    }
    let listed: Vec<(&str, u64)> = manifest.attachments.iter().map(|a| (a.sha256.as_str(), a.size)).collect();
    let known: Vec<(&str, u64)> = files.iter().map(|(s, n)| (s.as_str(), *n)).collect();
    if listed != known {
        return mismatch("the attachment files listed are not those the database records".into());
    }
    Ok(())
}

/// Verifies the backup in `from` without restoring it: manifest, database hash and
/// integrity, every attachment's hash. Returns its manifest.
pub fn verify(from: &Path) -> Result<Manifest> {
    let manifest = read_manifest(from)?;
    check_database_file(from, &manifest, true)?;
    for a in &manifest.attachments {
        check_attachment(&from.join(&a.path), a)?;
    }
    Ok(manifest)
}

fn check_database_file(from: &Path, manifest: &Manifest, deep: bool) -> Result<()> {
    let db = from.join(DB_FILE);
    let (size, sha) = match hash_file(&db) {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::DatabaseCorrupt(format!("{} is missing", db.display())))
        }
        Err(e) => return Err(BackupError::Io { path: db, source: e }),
    };
    if size != manifest.database.size || sha != manifest.database.sha256 {
        return Err(BackupError::DatabaseCorrupt(format!(
            "{size} bytes hashing to {sha}; the manifest says {} bytes, {}",
            manifest.database.size, manifest.database.sha256
        )));
    }
    if deep {
        check_database(&db, manifest)?;
    }
    Ok(())
}

fn check_attachment(path: &Path, a: &FileEntry) -> Result<()> {
    let bad = |what, what_en| BackupError::AttachmentBad { sha256: a.sha256.clone(), what, what_en };
    match hash_file(path) {
        Ok((size, sha)) if size == a.size && sha == a.sha256 => Ok(()),
        Ok(_) => Err(bad("内容与其哈希不符", "does not hash to its name")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(bad("不存在", "is missing")),
        Err(e) => Err(BackupError::Io { path: path.to_path_buf(), source: e }),
    }
}

/// Where a restored feed's rows are moved to: a row at position `n` in the backup is at
/// `base + n` once restored, and the feed continues after it. The base is past the backup's
/// point by far more than a county writes between a backup and a restore, and past any
/// earlier restore's positions (it is the restore's Unix time × 1000: at under 1,000 changes a
/// second between two restores). So no position given before the restore is a row of the
/// restored feed, and every phone's cursor, whenever it comes back, is one this server never
/// gave (`409 cursor_ahead`): every phone starts over once, pushing what it holds again.
pub fn restored_feed_base(feed_seq: u64, now_unix: i64) -> u64 {
    (feed_seq + 1_000_000_000).max(now_unix.max(0) as u64 * 1000)
}

/// Moves every row of the feed of `conn` to `base` + its position, and the feed's next
/// position after them. Returns the next position.
fn move_feed(conn: &Connection, base: u64) -> Result<u64> {
    let tx = conn.unchecked_transaction()?;
    // `base` is past every position: no moved row meets one not yet moved.
    tx.execute("UPDATE changes SET seq = seq + ?1", [base as i64])?;
    let last: i64 = tx.query_row("SELECT coalesce(max(seq), ?1) FROM changes", [base as i64], |r| r.get(0))?;
    let present: Option<i64> =
        tx.query_row("SELECT seq FROM sqlite_sequence WHERE name = 'changes'", [], |r| r.get(0)).optional()?;
    match present {
        Some(_) => tx.execute("UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'changes'", [last])?,
        None => tx.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('changes', ?1)", [last])?,
    };
    tx.commit()?;
    Ok(last as u64 + 1)
}

/// The ohassist files of a data directory (anything else in it is left alone).
fn live_entries(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for name in [DB_FILE, &format!("{DB_FILE}-wal"), &format!("{DB_FILE}-shm"), &format!("{DB_FILE}-journal")] {
        let p = data.join(name);
        if p.exists() {
            out.push(p);
        }
    }
    let att = data.join("attachments");
    if att.is_dir() {
        out.push(att);
    }
    out
}

/// Fails when another process has the database at `db` open: leaving WAL mode needs every
/// other connection closed, so a running server keeps it in WAL.
fn ensure_not_in_use(data: &Path, db: &Path) -> Result<()> {
    let Ok(conn) = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
    else {
        return Ok(());
    };
    conn.busy_timeout(std::time::Duration::from_secs(2))?;
    match conn.query_row("PRAGMA journal_mode = DELETE", [], |r| r.get::<_, String>(0)) {
        Ok(mode) if mode.eq_ignore_ascii_case("delete") => Ok(()),
        Ok(_) => Err(BackupError::ServerRunning(data.to_path_buf())),
        Err(rusqlite::Error::SqliteFailure(f, _))
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
        {
            Err(BackupError::ServerRunning(data.to_path_buf()))
        }
        // Not a database at all (a damaged file being replaced): nobody serves it.
        Err(_) => Ok(()),
    }
}

/// Restores the backup in `from` into the data directory `data` (the server stopped). A
/// directory that holds a database or attachments is refused unless `force`, and then what
/// was there is moved into `<data>/before-restore-<time>/`. Nothing in `data` changes until
/// the whole backup verified.
pub fn restore(from: &Path, data: &Path, force: bool) -> Result<RestoreReport> {
    let manifest = read_manifest(from)?;
    // The hash now; the integrity check on the staged copy below.
    check_database_file(from, &manifest, false)?;
    fs::create_dir_all(data).map_err(io_at(data))?;
    let existing = live_entries(data);
    if !existing.is_empty() && !force {
        return Err(BackupError::DataNotEmpty(data.to_path_buf()));
    }
    let live_db = data.join(DB_FILE);
    if live_db.exists() {
        ensure_not_in_use(data, &live_db)?;
    }

    // Stage inside the data directory, so the final renames stay on one file system.
    let staging = data.join(".restoring");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_at(&staging))?;
    }
    fs::create_dir_all(&staging).map_err(io_at(&staging))?;
    let staged = (|| -> Result<u64> {
        let mut dirs = std::collections::BTreeSet::new();
        for a in &manifest.attachments {
            let dst = staging.join(&a.path);
            let dir = dst.parent().expect("a shard folder").to_path_buf();
            if dirs.insert(dir.clone()) {
                fs::create_dir_all(&dir).map_err(io_at(&dir))?;
            }
            let src = from.join(&a.path);
            let bad = |what, what_en| BackupError::AttachmentBad { sha256: a.sha256.clone(), what, what_en };
            match copy_hashed(&src, &dst) {
                Ok((size, sha)) if size == a.size && sha == a.sha256 => {}
                Ok(_) => return Err(bad("内容与其哈希不符", "does not hash to its name")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(bad("不存在", "is missing")),
                Err(e) => return Err(BackupError::Io { path: src, source: e }),
            }
        }
        fs::create_dir_all(staging.join("attachments")).map_err(io_at(&staging))?;
        for dir in &dirs {
            sync_dir(dir)?;
        }
        sync_dir(&staging.join("attachments"))?;

        let db = staging.join(DB_FILE);
        let (_, sha) = copy_hashed(&from.join(DB_FILE), &db).map_err(io_at(&db))?;
        if sha != manifest.database.sha256 {
            return Err(BackupError::DatabaseCorrupt("the database changed while it was being restored".into()));
        }
        check_database(&db, &manifest)?;
        // Opened as the server opens it (an older backup is upgraded here), and the feed
        // moved past every position given before the restore.
        let next = {
            let conn = sqlite::open(&db, &SCHEMA)?;
            let next = move_feed(&conn, restored_feed_base(manifest.feed_seq, crate::db::now()))?;
            sqlite::integrity_check(&conn)?;
            next
            // Closing the last connection checkpoints and removes the WAL.
        };
        File::open(&db).and_then(|f| f.sync_all()).map_err(io_at(&db))?;
        sync_dir(&staging)?;
        Ok(next)
    })();
    let start = match staged {
        Ok(s) => s,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };

    let kept_aside = if existing.is_empty() {
        None
    } else {
        let stamp = now_utc().format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"));
        let aside = data.join(format!("before-restore-{}", stamp.expect("a UTC time formats")));
        fs::create_dir_all(&aside).map_err(io_at(&aside))?;
        for entry in &existing {
            let dst = aside.join(entry.file_name().expect("a file name"));
            fs::rename(entry, &dst).map_err(io_at(entry))?;
        }
        sync_dir(&aside)?;
        Some(aside)
    };
    // Attachments first, the database last: a data directory with the restored database in
    // it has every file the database records.
    let att = data.join("attachments");
    fs::rename(staging.join("attachments"), &att).map_err(io_at(&att))?;
    fs::rename(staging.join(DB_FILE), &live_db).map_err(io_at(&live_db))?;
    sync_dir(data)?;
    fs::remove_dir_all(&staging).map_err(io_at(&staging))?;
    Ok(RestoreReport { manifest, kept_aside, feed_continues_at: start })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restored_feed_moves_past_the_backup_and_past_an_earlier_restore() {
        assert_eq!(restored_feed_base(5, 0), 1_000_000_005);
        let first = restored_feed_base(5, 1_800_000_000);
        let later = restored_feed_base(5, 1_800_000_100);
        assert!(first > 1_000_000_005 && later >= first + 100_000);
        // Within JSON's exact integers for centuries of restores.
        assert!(restored_feed_base(u32::MAX as u64, 4_000_000_000) < 1 << 53);
    }

    /// A data directory with a document, two feed rows and an attachment file.
    fn county(dir: &Path) -> crate::db::Db {
        let db = crate::db::Db::open_dir(dir).unwrap();
        let sha = hex::encode(Sha256::digest(b"photo"));
        {
            let conn = db.blocking_writer();
            conn.execute_batch(&format!(
                "INSERT INTO documents VALUES ('v1', 'visit', x'00', '[]', '350121', 0, 0);
                 INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)
                     VALUES ('h1', 'v1', 'visit', x'01', 'u', 'd', 0), ('h2', 'v1', 'visit', x'02', 'u', 'd', 0);
                 INSERT INTO attachments VALUES ('{sha}', 5, 'image/jpeg', 1, 0);"
            ))
            .unwrap();
        }
        let cfg = attachments::Config::new(dir);
        fs::create_dir_all(cfg.complete_path(&sha).parent().unwrap()).unwrap();
        fs::write(cfg.complete_path(&sha), b"photo").unwrap();
        // An unfinished upload is no part of a backup.
        fs::create_dir_all(cfg.partial_path("u", &sha).parent().unwrap()).unwrap();
        fs::write(cfg.partial_path("u", &sha), b"pho").unwrap();
        db
    }

    #[test]
    fn a_backup_restores_with_its_feed_moved_on_and_refuses_what_does_not_verify() {
        let root = tempfile::tempdir().unwrap();
        let (live, to) = (root.path().join("live"), root.path().join("b"));
        let db = county(&live);
        let report = backup(&live, &to).unwrap();
        assert_eq!(report.manifest.feed_seq, 2);
        assert_eq!(report.manifest.counts.changes, 2);
        assert_eq!(report.manifest.attachments.len(), 1);
        assert!(!partial_dir(&to).exists());
        assert!(!to.join("attachments/partial").exists(), "unfinished uploads are not copied");
        assert!(matches!(backup(&live, &to), Err(BackupError::TargetNotEmpty(_))));
        verify(&to).unwrap();

        // Into a directory a server is using: refused even with --force.
        assert!(matches!(restore(&to, &live, false), Err(BackupError::DataNotEmpty(_))));
        assert!(matches!(restore(&to, &live, true), Err(BackupError::ServerRunning(_))));
        drop(db);
        let r = restore(&to, &live, true).unwrap();
        let aside = r.kept_aside.expect("the former data kept");
        assert!(aside.join(DB_FILE).exists() && aside.join("attachments").is_dir());
        let conn = sqlite::open(&live.join(DB_FILE), &SCHEMA).unwrap();
        conn.execute(
            "INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)
             VALUES ('h3', 'v1', 'visit', x'03', 'u', 'd', 0)",
            [],
        )
        .unwrap();
        let seqs: Vec<(String, i64)> = conn
            .prepare("SELECT hash, seq FROM changes ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let next = r.feed_continues_at as i64;
        assert!(next > 1_000_000_000);
        // The feed in its order, moved past every position given before, then the new row.
        let expected = vec![("h1".to_string(), next - 2), ("h2".into(), next - 1), ("h3".into(), next)];
        assert_eq!(seqs, expected);

        // A manifest saying a newer schema (checksummed again, as a newer binary would write it).
        let newer = root.path().join("newer");
        fs::create_dir_all(&newer).unwrap();
        let mut m = read_manifest(&to).unwrap();
        m.schema_version = SCHEMA.version() + 1;
        m.checksum = m.computed_checksum();
        fs::write(newer.join(MANIFEST), serde_json::to_vec(&m).unwrap()).unwrap();
        let err = restore(&newer, &root.path().join("fresh"), false).unwrap_err();
        assert!(matches!(err, BackupError::SchemaTooNew { .. }), "{err}");
        assert!(err.to_string().starts_with("备份的数据库结构版本"), "{err}");
        assert!(!root.path().join("fresh").join(DB_FILE).exists());
    }

    #[test]
    fn a_manifest_checksum_covers_every_field() {
        let mut m = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            server_version: "0".into(),
            snapshot_started_at: "a".into(),
            snapshot_finished_at: "b".into(),
            completed_at: "c".into(),
            schema_version: 1,
            feed_seq: 7,
            counts: Counts::default(),
            database: FileEntry { path: DB_FILE.into(), size: 1, sha256: "x".into() },
            attachments: vec![],
            checksum: String::new(),
        };
        m.checksum = m.computed_checksum();
        let mut edited = m.clone();
        edited.feed_seq = 8;
        assert_ne!(edited.computed_checksum(), m.checksum);
    }
}
