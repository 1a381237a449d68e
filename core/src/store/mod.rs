//! The device's offline store: every record as an Automerge document in one SQLite file,
//! index tables for list screens, an outbox of unacknowledged changes and a meta table.
//!
//! Every write is one `IMMEDIATE` transaction that saves the document, rebuilds its index
//! row and queues its new changes, so a crash at any point leaves the old or the new
//! state, never a mix. Writers take a `&Transaction`, readers a `&Connection`.
//!
//! On a phone the store is encrypted: [`Store::open`] takes the key the app keeps in the
//! platform keystore; the database is a SQLCipher file and attachment files are sealed with a
//! key derived from it (`crypto.rs`). A plain store of an earlier version is encrypted on its
//! first open with a key.

mod attachments;
mod bulk;
mod crypto;
mod held;
mod index;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock};

use automerge::{ActorId, Change, ChangeHash};
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value as Json;

use crate::doc::{now_ms, to_json, Author, Conflict, Document, HistoryEntry};
use crate::error::{Error, Reason, Result, ValidationError};
use crate::limits::{self, Limits};
use crate::model::{new_item_id, Enterprise, RecordKind, Visit, SCHEMA_VERSION};
use crate::status::{self, Table1Status};
use crate::{credit_code, validate};

pub use attachments::{sha256_hex, NewAttachment, PendingUpload, MAX_ATTACHMENT_BYTES};
pub use crypto::StoreKey;
pub use held::{DiscardedRecord, HeldRecord, Quarantined};
pub use index::{EnterpriseFilter, EnterpriseSummary, VisitFilter, VisitSummary};

/// A record as read from the store, with its version for a later edit.
#[derive(Debug, Clone, PartialEq)]
pub struct Record<T> {
    pub id: String,
    /// The document heads this record was read at: pass it back to `update_*`.
    pub version: Vec<String>,
    pub record: T,
    pub has_conflicts: bool,
    /// Changes not yet acknowledged by a server.
    pub pending_sync: bool,
}

/// One page received from a server: whole documents, changes per record, and the meta
/// keys to set (`Some`) or clear (`None`) with them.
#[derive(Debug, Clone, Default)]
pub struct RemotePage {
    pub documents: Vec<(RecordKind, String, Vec<u8>)>,
    pub changes: Vec<(RecordKind, String, Vec<Vec<u8>>)>,
    pub meta: Vec<(String, Option<String>)>,
}

/// A queued local change, as the sync client sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxChange {
    pub seq: i64,
    pub doc_id: String,
    pub kind: RecordKind,
    pub hash: String,
    pub bytes: Vec<u8>,
}

/// The offline store. Cheap to share between threads (`Send + Sync`); one connection,
/// behind a mutex, serialises writers.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
    /// The device's identity and its CRDT actor, both renewed when the store is erased.
    identity: RwLock<Identity>,
    /// `None` for a plain store (benchmarks, tests): attachment files are then plain too.
    cipher: Option<crypto::AttachmentCipher>,
}

struct Identity {
    device_id: String,
    /// A fresh actor for every open: an actor id is never reused, not even after the file
    /// is restored from a backup that predates changes this actor already sent.
    actor: ActorId,
}

/// The meta key recording that every attachment file of the store is encrypted.
const META_ATTACHMENTS_SEALED: &str = "attachments_sealed";

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("device_id", &self.device_id())
            .field("encrypted", &self.cipher.is_some())
            .finish()
    }
}

/// Today's date for validation, lenient towards any time zone (UTC+14 at most), so a
/// visit recorded just after midnight in China is never "in the future".
fn today() -> time::Date {
    (time::OffsetDateTime::now_utc() + time::Duration::hours(14)).date()
}

fn heads_string(heads: &[ChangeHash]) -> String {
    let mut h: Vec<String> = heads.iter().map(|h| h.to_string()).collect();
    h.sort();
    h.join(",")
}

fn parse_heads(version: &[String]) -> Result<Vec<ChangeHash>> {
    version
        .iter()
        .map(|h| {
            h.parse::<ChangeHash>().map_err(|_| {
                ValidationError::new("version", Reason::Malformed(format!("'{h}' is not a change hash"))).into()
            })
        })
        .collect()
}

impl Store {
    /// Opens the encrypted store at `path` with `key`, creating it (and a device id) on first
    /// use. A plain store (of an earlier version) is encrypted in place first, crash-safely, and
    /// so are its attachment files. A key that does not open the store is [`Error::WrongKey`]
    /// and changes nothing.
    pub fn open(path: impl AsRef<Path>, key: &StoreKey) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let (conn, _encrypted_now) = crate::sqlite::open_encrypted(&path, &schema::SCHEMA, key.as_bytes())?;
        let store = Store::with_connection(conn, path, Some(crypto::AttachmentCipher::new(key)))?;
        store.seal_attachment_files()?;
        Ok(store)
    }

    /// Opens a plain (unencrypted) store, as stores were before encryption. Not for phones:
    /// for comparisons in benchmarks and for tests of the migration.
    pub fn open_unencrypted(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let conn = crate::sqlite::open(&path, &schema::SCHEMA)?;
        if meta_get(&conn, META_ATTACHMENTS_SEALED)?.is_some() {
            return Err(Error::CorruptDatabase("this store's attachments are encrypted; open it with its key".into()));
        }
        Store::with_connection(conn, path, None)
    }

    fn with_connection(conn: Connection, path: PathBuf, cipher: Option<crypto::AttachmentCipher>) -> Result<Store> {
        // 16 MiB of page cache instead of SQLite's 2 MiB: every page read from disk is decrypted
        // and authenticated, so lists read repeatedly stay in memory (peak memory: the bench).
        conn.pragma_update(None, "cache_size", -16_384)?;
        let device_id = device_id_of(&conn)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
            identity: RwLock::new(Identity { device_id, actor: ActorId::random() }),
            cipher,
        })
    }

    /// Whether the database and attachment files are encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// Erases everything the store holds — records, unsynced changes, attachments, the login —
    /// and gives it a new device identity, as a freshly installed app has. For a device an
    /// admin marked lost or retired (`sync::client`); nothing else calls it. Freed pages are
    /// overwritten (`secure_delete`) and the file is vacuumed, so the old contents do not
    /// linger even encrypted.
    pub fn erase(&self) -> Result<()> {
        // Lock order everywhere: the connection, then the identity.
        let conn = self.conn();
        conn.pragma_update(None, "secure_delete", true)?;
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             DELETE FROM outbox; DELETE FROM enterprises; DELETE FROM visits; DELETE FROM attachments;
             DELETE FROM documents; DELETE FROM meta; DELETE FROM sqlite_sequence;
             COMMIT;",
        )?;
        if self.cipher.is_some() {
            meta_set(&conn, META_ATTACHMENTS_SEALED, "1")?;
        }
        let device_id = device_id_of(&conn)?;
        conn.execute_batch("VACUUM")?;
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        let dir = self.attachments_dir();
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        *self.identity.write().unwrap_or_else(|p| p.into_inner()) = Identity { device_id, actor: ActorId::random() };
        drop(conn);
        tracing::info!("store erased");
        Ok(())
    }

    fn actor(&self) -> ActorId {
        self.identity.read().unwrap_or_else(|p| p.into_inner()).actor.clone()
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written transaction behind
        // (it rolls back on drop), so a poisoned lock is safe to take over.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn device_id(&self) -> String {
        self.identity.read().unwrap_or_else(|p| p.into_inner()).device_id.clone()
    }

    /// The user every new change is attributed to (set at login).
    pub fn set_user(&self, user_id: &str) -> Result<()> {
        meta_set(&self.conn(), "user_id", user_id)
    }

    pub fn author(&self) -> Result<Author> {
        let user = meta_get(&self.conn(), "user_id")?.unwrap_or_default();
        Ok(Author { user, device: self.device_id() })
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        meta_get(&self.conn(), key)
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        meta_set(&self.conn(), key, value)
    }

    pub fn delete_meta(&self, key: &str) -> Result<()> {
        self.conn().execute("DELETE FROM meta WHERE key = ?1", [key])?;
        Ok(())
    }

    /// Runs `f` in one immediate transaction.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    // ---- enterprises ------------------------------------------------------------------

    /// Registers an enterprise. Its id is its (normalised) credit code. If the store
    /// already holds that code, nothing is written and [`Error::AlreadyExists`] names the
    /// existing record to open instead.
    pub fn create_enterprise(&self, mut enterprise: Enterprise) -> Result<String> {
        enterprise.credit_code = credit_code::normalise(&enterprise.credit_code);
        enterprise.schema_version = SCHEMA_VERSION;
        validate::enterprise(&enterprise)?;
        let id = enterprise.credit_code.clone();
        let author = self.author()?;
        self.write(|tx| {
            if load(tx, &id)?.is_some() {
                return Err(Error::AlreadyExists { id: id.clone() });
            }
            let mut doc = Document::genesis(RecordKind::Enterprise, &id);
            let genesis = doc.changes_since(&[]);
            let change =
                doc.write_diff(&self.actor(), &author, &creation_base::<Enterprise>(), &to_json(&enterprise))?;
            save(tx, &doc, genesis.into_iter().chain(change))?;
            Ok(id.clone())
        })
    }

    pub fn get_enterprise(&self, id: &str) -> Result<Record<Enterprise>> {
        self.get(RecordKind::Enterprise, id)
    }

    /// The id of the enterprise with this credit code, if the store holds it.
    pub fn find_enterprise(&self, code: &str) -> Result<Option<String>> {
        let code = credit_code::normalise(code);
        Ok(self
            .conn()
            .query_row("SELECT id FROM enterprises WHERE credit_code = ?1", [code], |r| r.get(0))
            .optional()?)
    }

    /// Saves `enterprise` as edited from the record read at `version`: only the fields
    /// that differ from that version are written (see [`Document::write_from_base`]).
    pub fn update_enterprise(
        &self,
        id: &str,
        enterprise: &Enterprise,
        version: &[String],
    ) -> Result<Record<Enterprise>> {
        let mut e = enterprise.clone();
        e.credit_code = credit_code::normalise(&e.credit_code);
        if e.credit_code != id {
            return Err(ValidationError::new("credit_code", Reason::Immutable).into());
        }
        validate::enterprise(&e)?;
        self.update(RecordKind::Enterprise, id, &e, version)
    }

    /// Reads, changes with `f` and saves, in one transaction.
    pub fn edit_enterprise(&self, id: &str, f: impl FnOnce(&mut Enterprise)) -> Result<Record<Enterprise>> {
        self.edit(RecordKind::Enterprise, id, |e: &mut Enterprise| {
            let code = e.credit_code.clone();
            f(e);
            if e.credit_code != code {
                return Err(ValidationError::new("credit_code", Reason::Immutable).into());
            }
            validate::enterprise(e).map_err(Error::from)
        })
    }

    pub fn list_enterprises(&self, filter: &EnterpriseFilter) -> Result<Vec<EnterpriseSummary>> {
        index::list_enterprises(&self.conn(), filter)
    }

    // ---- visits -----------------------------------------------------------------------

    /// Records a new visit under a random id. The enterprise must be in the store; an
    /// empty county code is taken from it.
    pub fn create_visit(&self, mut visit: Visit) -> Result<String> {
        visit.enterprise_id = credit_code::normalise(&visit.enterprise_id);
        visit.schema_version = SCHEMA_VERSION;
        validate::credit_code_field("enterprise_id", &visit.enterprise_id)?;
        let author = self.author()?;
        let id = new_item_id();
        self.write(|tx| {
            let enterprise: Enterprise =
                load(tx, &visit.enterprise_id)?.ok_or_else(|| Error::NotFound(visit.enterprise_id.clone()))?.read()?;
            if visit.county_code.is_empty() {
                visit.county_code = enterprise.county.code.clone();
            }
            validate::visit(&visit, today())?;
            let mut doc = Document::genesis(RecordKind::Visit, &id);
            let genesis = doc.changes_since(&[]);
            let change = doc.write_diff(&self.actor(), &author, &creation_base::<Visit>(), &to_json(&visit))?;
            save(tx, &doc, genesis.into_iter().chain(change))?;
            Ok(id.clone())
        })
    }

    pub fn get_visit(&self, id: &str) -> Result<Record<Visit>> {
        self.get(RecordKind::Visit, id)
    }

    pub fn update_visit(&self, id: &str, visit: &Visit, version: &[String]) -> Result<Record<Visit>> {
        let current: Visit = self.get(RecordKind::Visit, id)?.record;
        check_visit_identity(&current, visit)?;
        validate::visit(visit, today())?;
        self.update(RecordKind::Visit, id, visit, version)
    }

    pub fn edit_visit(&self, id: &str, f: impl FnOnce(&mut Visit)) -> Result<Record<Visit>> {
        self.edit(RecordKind::Visit, id, |v: &mut Visit| {
            let before = v.clone();
            f(v);
            check_visit_identity(&before, v)?;
            validate::visit(v, today()).map_err(Error::from)
        })
    }

    /// Marks a visit deleted. It stays in the store, recoverable with [`Store::restore_visit`],
    /// and syncs as deleted.
    pub fn delete_visit(&self, id: &str) -> Result<Record<Visit>> {
        self.edit(RecordKind::Visit, id, |v: &mut Visit| {
            v.deleted = true;
            Ok(())
        })
    }

    pub fn restore_visit(&self, id: &str) -> Result<Record<Visit>> {
        self.edit(RecordKind::Visit, id, |v: &mut Visit| {
            v.deleted = false;
            Ok(())
        })
    }

    pub fn list_visits(&self, filter: &VisitFilter) -> Result<Vec<VisitSummary>> {
        index::list_visits(&self.conn(), filter)
    }

    // ---- conflicts, history, status -----------------------------------------------------

    /// The conflicts of one record.
    pub fn conflicts(&self, id: &str) -> Result<Vec<Conflict>> {
        let conn = self.conn();
        Ok(load(&conn, id)?.ok_or_else(|| Error::NotFound(id.to_string()))?.conflicts())
    }

    /// Every record that has conflicts: `(kind, id)`.
    pub fn conflicted_records(&self) -> Result<Vec<(RecordKind, String)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT kind, id FROM documents WHERE has_conflicts = 1 ORDER BY updated_at DESC")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (kind, id) = row?;
            out.push((RecordKind::parse(&kind).expect("CHECK constraint"), id));
        }
        Ok(out)
    }

    /// Settles the conflict at `path` (dotted) of record `id` with `value`.
    pub fn resolve_conflict(&self, id: &str, path: &str, value: &Json) -> Result<()> {
        let author = self.author()?;
        let segments: Vec<String> = path.split('.').map(str::to_string).collect();
        self.write(|tx| {
            let mut doc = load(tx, id)?.ok_or_else(|| Error::NotFound(id.to_string()))?;
            let change = doc.resolve(&self.actor(), &author, &segments, value)?;
            // The chosen value must still make a valid record.
            match doc.kind() {
                RecordKind::Enterprise => validate::enterprise(&doc.read()?)?,
                RecordKind::Visit => validate::visit(&doc.read()?, today())?,
            }
            save(tx, &doc, [change])
        })
    }

    pub fn history(&self, id: &str) -> Result<Vec<HistoryEntry>> {
        let conn = self.conn();
        Ok(load(&conn, id)?.ok_or_else(|| Error::NotFound(id.to_string()))?.history())
    }

    /// Table 1's columns for an enterprise in `year`, from the visits the store holds.
    pub fn table1_status(&self, enterprise_id: &str, year: i32) -> Result<Table1Status> {
        let enterprise = self.get_enterprise(enterprise_id)?.record;
        let visits = self.visits_of(enterprise_id)?;
        Ok(status::table1_status(&enterprise, &visits, year))
    }

    /// Every visit of an enterprise, deleted ones included (status functions skip them).
    pub fn visits_of(&self, enterprise_id: &str) -> Result<Vec<Visit>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT id FROM visits WHERE enterprise_id = ?1")?;
        let ids: Vec<String> = stmt.query_map([enterprise_id], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        ids.iter().map(|id| load(&conn, id)?.ok_or_else(|| Error::NotFound(id.clone()))?.read()).collect()
    }

    // ---- sync bookkeeping -----------------------------------------------------------------

    /// The oldest `limit` unacknowledged local changes.
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxChange>> {
        self.outbox_after(i64::MIN, limit)
    }

    /// The oldest `limit` unacknowledged local changes queued after `seq` (an
    /// [`OutboxChange::seq`]): the next push batch while earlier ones are still in flight.
    pub fn outbox_after(&self, seq: i64, limit: usize) -> Result<Vec<OutboxChange>> {
        let conn = self.conn();
        // Held records wait until a retry is due (see `held.rs`).
        let mut stmt = conn.prepare_cached(
            "SELECT seq, doc_id, kind, hash, bytes FROM outbox o
             WHERE seq > ?2 AND NOT EXISTS (SELECT 1 FROM held h WHERE h.doc_id = o.doc_id AND h.retry = 0)
             ORDER BY seq LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit.min(i64::MAX as usize) as i64, seq], |r| {
            Ok(OutboxChange {
                seq: r.get(0)?,
                doc_id: r.get(1)?,
                kind: RecordKind::parse(&r.get::<_, String>(2)?).unwrap_or(RecordKind::Visit),
                hash: r.get(3)?,
                bytes: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn outbox_len(&self) -> Result<usize> {
        let n: i64 = self.conn().query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Drops acknowledged changes from the outbox (unknown hashes are ignored).
    pub fn acknowledge(&self, hashes: &[String]) -> Result<()> {
        self.write(|tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM outbox WHERE hash = ?1")?;
            for h in hashes {
                stmt.execute([h])?;
            }
            Ok(())
        })
    }

    /// Merges changes received from a server into the record `(kind, id)`, creating it
    /// if new. All or nothing: a change that does not decode, or a result that is not a
    /// valid record of that kind, applies nothing.
    pub fn apply_remote(&self, kind: RecordKind, id: &str, changes: &[Vec<u8>]) -> Result<()> {
        self.write(|tx| apply_one_changes(tx, kind, id, changes))
    }

    /// Changes of many records in one transaction, as [`Store::apply_remote_page`] applies
    /// them (a record that fails is quarantined, the others apply).
    pub fn apply_remote_batch(&self, batch: &[(RecordKind, String, Vec<Vec<u8>>)]) -> Result<()> {
        self.apply_remote_page(&RemotePage { changes: batch.to_vec(), ..Default::default() })
    }

    /// Applies one page a server sent — whole documents, changes, and the sync bookkeeping
    /// that goes with them — in one transaction: after a crash the store holds the page and
    /// its cursor, or neither. A page is input from outside: each record of it is applied
    /// alone (a savepoint each), within the limits, and one that fails is quarantined with
    /// its reason while the rest of the page applies; the cursor moves on either way.
    ///
    /// Whole documents the store does not hold yet (a first sync's) are applied in bulk
    /// (ADR 0005): checked and read on several threads, then stored as the server saved them.
    pub fn apply_remote_page(&self, page: &RemotePage) -> Result<()> {
        self.write(|tx| {
            let mut touched: Vec<&str> = Vec::new();
            // Which documents are new: the first occurrence of an id the store does not hold.
            let mut held_now = tx.prepare_cached("SELECT 1 FROM documents WHERE id = ?1")?;
            let mut seen = std::collections::HashSet::new();
            let mut new = Vec::with_capacity(page.documents.len());
            for (_, id, _) in &page.documents {
                new.push(seen.insert(id.as_str()) && !held_now.exists([id])?);
            }
            drop(held_now);
            let fresh: Vec<(RecordKind, &str, &[u8])> = page
                .documents
                .iter()
                .zip(&new)
                .filter(|(_, n)| **n)
                .map(|((k, id, b), _)| (*k, id.as_str(), b.as_slice()))
                .collect();
            let mut prepared = bulk::prepare_all(&fresh).into_iter();
            for ((kind, id, bytes), is_new) in page.documents.iter().zip(&new) {
                if *is_new {
                    match prepared.next().expect("one prepared per new document") {
                        Ok(p) => bulk::insert(tx, *kind, id, bytes, &p)?,
                        Err(Error::Storage(e)) => return Err(Error::Storage(e)),
                        Err(e) => held::quarantine(tx, *kind, id, true, bytes, &e.to_string())?,
                    }
                } else {
                    let _quarantined = isolated(
                        tx,
                        |tx| apply_one_document(tx, *kind, id, bytes),
                        |tx, e| held::quarantine(tx, *kind, id, true, bytes, &e.to_string()),
                    )?;
                }
                touched.push(id);
            }
            for (kind, id, changes) in &page.changes {
                let outcome = isolated(tx, |tx| apply_one_changes(tx, *kind, id, changes), |_, _| Ok(()))?;
                // Quarantined change by change, so the good ones of the record can be retried
                // apart from the bad one.
                if outcome.is_err() {
                    for bytes in changes {
                        let _quarantined = isolated(
                            tx,
                            |tx| apply_one_changes(tx, *kind, id, std::slice::from_ref(bytes)),
                            |tx, e| held::quarantine(tx, *kind, id, false, bytes, &e.to_string()),
                        )?;
                    }
                }
                touched.push(id);
            }
            held::touched(tx, &touched)?;
            for (key, value) in &page.meta {
                match value {
                    Some(v) => meta_set(tx, key, v)?,
                    None => drop(tx.execute("DELETE FROM meta WHERE key = ?1", [key])?),
                }
            }
            Ok(())
        })
    }

    /// Queues every change of every record again, for a server that has never seen them
    /// (the store was pointed at another server). Changes already queued stay queued once.
    pub fn requeue_all(&self) -> Result<usize> {
        self.write(|tx| {
            let ids: Vec<String> = tx
                .prepare("SELECT id FROM documents ORDER BY updated_at")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let before: i64 = tx.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
            for id in ids {
                let doc = load(tx, &id)?.ok_or_else(|| Error::NotFound(id.clone()))?;
                queue(tx, &doc, doc.changes_since(&[]))?;
            }
            let after: i64 = tx.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))?;
            Ok((after - before) as usize)
        })
    }

    /// The heads of every document: what the store holds, for a sync.
    pub fn all_heads(&self) -> Result<Vec<(String, Vec<String>)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT id, heads FROM documents")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, heads) = row?;
            out.push((id, heads.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect()));
        }
        Ok(out)
    }

    /// `PRAGMA integrity_check` plus a load of every document.
    pub fn check(&self) -> Result<()> {
        let conn = self.conn();
        crate::sqlite::integrity_check(&conn)?;
        let mut stmt = conn.prepare("SELECT id FROM documents")?;
        let ids: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        for id in ids {
            load(&conn, &id)?;
        }
        Ok(())
    }

    // ---- shared plumbing --------------------------------------------------------------------

    fn get<T: DeserializeOwned>(&self, kind: RecordKind, id: &str) -> Result<Record<T>> {
        let conn = self.conn();
        let doc = load(&conn, id)?.filter(|d| d.kind() == kind).ok_or_else(|| Error::NotFound(id.to_string()))?;
        record_of(&conn, &doc)
    }

    fn update<T: Serialize + DeserializeOwned>(
        &self,
        kind: RecordKind,
        id: &str,
        new: &T,
        version: &[String],
    ) -> Result<Record<T>> {
        let base = parse_heads(version)?;
        let author = self.author()?;
        self.write(|tx| {
            let mut doc = load(tx, id)?.filter(|d| d.kind() == kind).ok_or_else(|| Error::NotFound(id.to_string()))?;
            let change = doc.write_from_base(&self.actor(), &author, &base, new)?;
            save(tx, &doc, change)?;
            record_of(tx, &doc)
        })
    }

    fn edit<T: Serialize + DeserializeOwned + Clone>(
        &self,
        kind: RecordKind,
        id: &str,
        f: impl FnOnce(&mut T) -> Result<()>,
    ) -> Result<Record<T>> {
        let author = self.author()?;
        self.write(|tx| {
            let mut doc = load(tx, id)?.filter(|d| d.kind() == kind).ok_or_else(|| Error::NotFound(id.to_string()))?;
            let old: T = doc.read()?;
            let mut new = old.clone();
            f(&mut new)?;
            let change = doc.write_diff(&self.actor(), &author, &to_json(&old), &to_json(&new))?;
            save(tx, &doc, change)?;
            record_of(tx, &doc)
        })
    }
}

/// What a new record is diffed against: its defaults, so a field left at its default is
/// not written (and cannot conflict with another phone's value), except the schema
/// version, which every document carries.
fn creation_base<T: Default + Serialize>() -> Json {
    let mut base = to_json(&T::default());
    if let Some(map) = base.as_object_mut() {
        map.remove("schema_version");
    }
    base
}

fn check_visit_identity(before: &Visit, after: &Visit) -> Result<()> {
    if credit_code::normalise(&after.enterprise_id) != before.enterprise_id {
        return Err(ValidationError::new("enterprise_id", Reason::Immutable).into());
    }
    Ok(())
}

/// The device id kept in the store, made on first use.
fn device_id_of(conn: &Connection) -> Result<String> {
    Ok(match meta_get(conn, "device_id")? {
        Some(id) => id,
        None => {
            let id = new_item_id();
            meta_set(conn, "device_id", &id)?;
            id
        }
    })
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0)).optional()?)
}

fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

fn load_or_genesis(conn: &Connection, kind: RecordKind, id: &str) -> Result<Document> {
    match load(conn, id)? {
        Some(doc) if doc.kind() == kind => Ok(doc),
        Some(_) => Err(Error::CorruptDocument { id: id.to_string(), reason: "record kind differs".into() }),
        None => Ok(Document::genesis(kind, id)),
    }
}

fn load(conn: &Connection, id: &str) -> Result<Option<Document>> {
    let row: Option<(String, Vec<u8>)> = conn
        .prepare_cached("SELECT kind, bytes FROM documents WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((kind, bytes)) = row else { return Ok(None) };
    let kind = RecordKind::parse(&kind)
        .ok_or_else(|| Error::CorruptDocument { id: id.into(), reason: format!("kind {kind}") })?;
    Document::load(kind, id, &bytes).map(Some)
}

/// Saves the document, rebuilds its index row and queues `local` changes in the outbox.
/// The index rebuild reads the typed record, so a document that does not read as its kind
/// fails here and its transaction applies nothing.
fn save(tx: &Transaction<'_>, doc: &Document, local: impl IntoIterator<Item = Change>) -> Result<()> {
    save_bytes(tx, doc, &doc.save())?;
    queue(tx, doc, local)
}

/// [`save`] with the document's bytes already at hand.
fn save_bytes(tx: &Transaction<'_>, doc: &Document, bytes: &[u8]) -> Result<()> {
    let now = now_ms();
    tx.prepare_cached(
        "INSERT INTO documents (id, kind, bytes, heads, has_conflicts, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET bytes = excluded.bytes, heads = excluded.heads,
             has_conflicts = excluded.has_conflicts, updated_at = excluded.updated_at",
    )?
    .execute(params![
        doc.id(),
        doc.kind().as_str(),
        bytes,
        heads_string(&doc.heads()),
        doc.has_conflicts(),
        now
    ])?;
    index::reindex(tx, doc)
}

/// Runs `f` in a savepoint: on a storage error the whole transaction fails; on any other
/// error (the input was bad) its writes are undone, `on_bad` records why, and the error is
/// returned as the inner result.
fn isolated(
    tx: &Transaction<'_>,
    f: impl FnOnce(&Transaction<'_>) -> Result<()>,
    on_bad: impl FnOnce(&Transaction<'_>, &Error) -> rusqlite::Result<()>,
) -> Result<std::result::Result<(), Error>> {
    tx.execute_batch("SAVEPOINT remote")?;
    match f(tx) {
        Ok(()) => {
            tx.execute_batch("RELEASE remote")?;
            Ok(Ok(()))
        }
        Err(Error::Storage(e)) => Err(Error::Storage(e)),
        Err(e) => {
            tx.execute_batch("ROLLBACK TO remote; RELEASE remote")?;
            on_bad(tx, &e)?;
            Ok(Err(e))
        }
    }
}

/// Merges a saved document from a server, checked within the limits before automerge reads it.
fn apply_one_document(tx: &Transaction<'_>, kind: RecordKind, id: &str, bytes: &[u8]) -> Result<()> {
    let limits = Limits::default();
    let corrupt = |reason: String| Error::CorruptDocument { id: id.to_string(), reason };
    limits::check_document(bytes, &limits).map_err(|r| corrupt(r.to_string()))?;
    match load(tx, id)? {
        // A record new to this store (every record, in a first sync): the saved document is
        // stored as it came, once it loads as what it claims to be.
        None => {
            let doc = guarded(|| Document::load(kind, id, bytes))?;
            doc.check_limits(&limits).map_err(|r| corrupt(r.to_string()))?;
            save_bytes(tx, &doc, bytes)
        }
        Some(_) => {
            let mut doc = load_or_genesis(tx, kind, id)?;
            guarded(|| doc.merge_saved(bytes))?;
            doc.check_limits(&limits).map_err(|r| corrupt(r.to_string()))?;
            save(tx, &doc, [])
        }
    }
}

/// Applies changes from a server to one record, each decoded within the limits.
fn apply_one_changes(tx: &Transaction<'_>, kind: RecordKind, id: &str, changes: &[Vec<u8>]) -> Result<()> {
    let limits = Limits::default();
    let corrupt = |reason: String| Error::CorruptDocument { id: id.to_string(), reason };
    let decoded = changes
        .iter()
        .map(|b| limits::decode_change(b, &limits).map_err(|r| corrupt(r.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let mut doc = load_or_genesis(tx, kind, id)?;
    guarded(|| doc.apply_changes(decoded))?;
    doc.check_limits(&limits).map_err(|r| corrupt(r.to_string()))?;
    save(tx, &doc, [])
}

/// Runs automerge on bytes from outside, turning a panic inside it into an error.
fn guarded<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(Error::CorruptDocument { id: String::new(), reason: "automerge could not read it".into() })
    })
}

/// Adds changes of `doc` to the outbox (once per hash). An edit of a held record makes its
/// retry due: the edit may be what clears the server's reason.
fn queue(tx: &Transaction<'_>, doc: &Document, changes: impl IntoIterator<Item = Change>) -> Result<()> {
    let now = now_ms();
    let mut changes = changes.into_iter().peekable();
    if changes.peek().is_some() {
        tx.prepare_cached("UPDATE held SET retry = 1 WHERE doc_id = ?1")?.execute([doc.id()])?;
    }
    let mut stmt = tx.prepare_cached(
        "INSERT INTO outbox (doc_id, kind, hash, bytes, created_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (hash) DO NOTHING",
    )?;
    for mut change in changes {
        stmt.execute(params![doc.id(), doc.kind().as_str(), change.hash().to_string(), change.bytes().as_ref(), now])?;
    }
    Ok(())
}

fn record_of<T: DeserializeOwned>(conn: &Connection, doc: &Document) -> Result<Record<T>> {
    let pending: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM outbox WHERE doc_id = ?1)")?
        .query_row([doc.id()], |r| r.get(0))?;
    let mut version: Vec<String> = doc.heads().iter().map(|h| h.to_string()).collect();
    version.sort();
    Ok(Record {
        id: doc.id().to_string(),
        version,
        record: doc.read()?,
        has_conflicts: doc.has_conflicts(),
        pending_sync: pending,
    })
}

#[cfg(test)]
mod tests;
