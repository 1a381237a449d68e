//! Records the server refused (*held*) and what a server sent that this store could not
//! apply (*quarantined*). Neither is ever dropped by a sync: a held record stays readable,
//! editable and queued, and is pushed again when its reason may have cleared; a quarantined
//! item is kept with its reason and tried again after every pull.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::{now_ms, Store};
use crate::error::{Error, Result};
use crate::model::RecordKind;

/// How long a held record waits before it is pushed again even if nothing changed (a rule
/// may have been changed on the server, or an admin moved the inspector).
pub const RETRY_AFTER_MS: i64 = 6 * 3600 * 1000;

/// A record the server refused, and why, in Chinese and English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldRecord {
    pub doc_id: String,
    pub kind: RecordKind,
    /// The server's code: `out_of_scope`, `unknown_enterprise`, `invalid_record`, …
    pub code: String,
    pub reason_zh: String,
    pub reason_en: String,
    /// What the inspector can do about it, in Chinese and English.
    pub advice_zh: String,
    pub advice_en: String,
    /// When the server refused it (ms since the epoch).
    pub held_at_ms: i64,
    /// Local changes of the record waiting for the server.
    pub pending_changes: u64,
}

/// What the inspector can do about a refusal, by its code.
pub fn advice(code: &str) -> (&'static str, &'static str) {
    match code {
        "out_of_scope" => (
            "该记录属于其他县区。请联系市级主管确认企业归属；确认后下次同步会自动上传，数据不会丢失。",
            "The record belongs to another county. Ask the city supervisor to decide where the enterprise belongs; it uploads by itself at the next sync after that, nothing is lost.",
        ),
        "unknown_enterprise" => (
            "所属企业尚未被服务器接受。企业记录上传成功后，此走访会自动上传。",
            "The visit's enterprise is not on the server yet. The visit uploads by itself once the enterprise does.",
        ),
        "invalid_record" | "field_authority" => (
            "请打开记录，按提示修改后再同步；修改后会自动重试。",
            "Open the record, correct what the reason names and sync again; an edit retries it by itself.",
        ),
        _ => (
            "数据已保存在本机。请更新应用；如仍无法上传，请联系管理员。",
            "The data is kept on this phone. Update the app; if it still does not upload, contact the administrator.",
        ),
    }
}

/// A held record the inspector discarded, as exported: the record's JSON and the whole
/// saved document, kept in the store (and returned to the app to save or share).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscardedRecord {
    pub doc_id: String,
    pub kind: RecordKind,
    /// The record as it read (JSON).
    pub json: String,
    /// The saved Automerge document: every change of the record, loadable again.
    pub bytes: Vec<u8>,
    pub code: String,
    pub reason_zh: String,
    pub reason_en: String,
    pub discarded_at_ms: i64,
}

/// Something a server sent that could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub doc_id: String,
    pub kind: RecordKind,
    pub reason: String,
    pub attempts: u64,
}

impl Store {
    /// Marks documents as held with the server's reason: their changes stay queued but are
    /// not pushed again until a retry is due.
    /// Returns how many of them were not held before.
    pub fn hold(&self, refused: &[(String, RecordKind, String, String, String)]) -> Result<usize> {
        let now = now_ms();
        self.write(|tx| {
            let mut was_held = tx.prepare_cached("SELECT 1 FROM held WHERE doc_id = ?1")?;
            let mut new = 0;
            for (doc_id, ..) in refused {
                new += usize::from(!was_held.exists([doc_id])?);
            }
            let mut stmt = tx.prepare_cached(
                "INSERT INTO held (doc_id, kind, code, reason_zh, reason_en, held_at, retry)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0)
                 ON CONFLICT (doc_id) DO UPDATE SET code = ?3, reason_zh = ?4, reason_en = ?5, held_at = ?6, retry = 0",
            )?;
            for (doc_id, kind, code, zh, en) in refused {
                stmt.execute(params![doc_id, kind.as_str(), code, zh, en, now])?;
            }
            Ok(new)
        })
    }

    /// The server accepted these documents: they are held no longer.
    pub fn release(&self, doc_ids: &[String]) -> Result<()> {
        // Every push batch calls this; almost always nothing is held.
        if !any_held(&self.conn())? {
            return Ok(());
        }
        self.write(|tx| {
            let mut stmt = tx.prepare_cached("DELETE FROM held WHERE doc_id = ?1")?;
            for id in doc_ids {
                stmt.execute([id])?;
            }
            Ok(())
        })
    }

    /// Every held record, oldest first.
    pub fn held_records(&self) -> Result<Vec<HeldRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT h.doc_id, h.kind, h.code, h.reason_zh, h.reason_en, h.held_at,
                    (SELECT count(*) FROM outbox o WHERE o.doc_id = h.doc_id)
             FROM held h ORDER BY h.held_at, h.doc_id",
        )?;
        let rows = stmt.query_map([], |r| {
            let code: String = r.get(2)?;
            let (advice_zh, advice_en) = advice(&code);
            Ok(HeldRecord {
                doc_id: r.get(0)?,
                kind: RecordKind::parse(&r.get::<_, String>(1)?).unwrap_or(RecordKind::Visit),
                code,
                reason_zh: r.get(3)?,
                reason_en: r.get(4)?,
                advice_zh: advice_zh.to_string(),
                advice_en: advice_en.to_string(),
                held_at_ms: r.get(5)?,
                pending_changes: r.get::<_, i64>(6)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Makes every held record due for a retry (after a new login: role or unit may differ),
    /// or only those held longer than [`RETRY_AFTER_MS`].
    pub fn retry_held(&self, all: bool) -> Result<usize> {
        let cutoff = if all { i64::MAX } else { now_ms() - RETRY_AFTER_MS };
        self.write(|tx| Ok(tx.execute("UPDATE held SET retry = 1 WHERE held_at <= ?1", [cutoff])?))
    }

    /// The confirmation a discard of held record `doc_id` needs: the app shows the inspector
    /// what will go (and that an export is kept) and passes this back to
    /// [`Store::discard_held`]. It names the record's version, so a record edited after the
    /// confirmation was shown is not discarded.
    pub fn discard_confirmation(&self, doc_id: &str) -> Result<String> {
        let conn = self.conn();
        held_row(&conn, doc_id)?;
        let heads: Option<String> = conn
            .prepare_cached("SELECT heads FROM documents WHERE id = ?1")?
            .query_row([doc_id], |r| r.get(0))
            .optional()?;
        let heads = heads.ok_or_else(|| Error::NotFound(doc_id.to_string()))?;
        Ok(confirmation(doc_id, &heads))
    }

    /// Discards held record `doc_id` from the store, keeping an export of it (its JSON and
    /// the whole saved document) in the store's `discarded` list, which it returns. Only a
    /// held record, only with the confirmation of its current version, and not an
    /// enterprise whose visits are still on the phone.
    pub fn discard_held(&self, doc_id: &str, confirmed: &str) -> Result<DiscardedRecord> {
        let refuse = |reason: &str| Error::NotDiscardable { id: doc_id.to_string(), reason: reason.to_string() };
        self.write(|tx| {
            let (kind, code, reason_zh, reason_en) = held_row(tx, doc_id)?;
            let heads: String = tx.query_row("SELECT heads FROM documents WHERE id = ?1", [doc_id], |r| r.get(0))?;
            if confirmed != confirmation(doc_id, &heads) {
                return Err(refuse("the confirmation is not this record's current version: show it again"));
            }
            if kind == RecordKind::Enterprise {
                let visits: i64 =
                    tx.query_row("SELECT count(*) FROM visits WHERE enterprise_id = ?1", [doc_id], |r| r.get(0))?;
                if visits > 0 {
                    return Err(refuse(&format!("{visits} visits of this enterprise are on the phone")));
                }
            }
            let doc = super::load(tx, doc_id)?.ok_or_else(|| Error::NotFound(doc_id.to_string()))?;
            let json = doc.json(None).to_string();
            let bytes = doc.save();
            let at = now_ms();
            tx.execute(
                "INSERT INTO discarded (doc_id, kind, json, bytes, code, reason_zh, reason_en, discarded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![doc_id, kind.as_str(), json, bytes, code, reason_zh, reason_en, at],
            )?;
            for table in ["outbox WHERE doc_id", "held WHERE doc_id", "enterprises WHERE id", "visits WHERE id"] {
                tx.execute(&format!("DELETE FROM {table} = ?1"), [doc_id])?;
            }
            tx.execute("DELETE FROM documents WHERE id = ?1", [doc_id])?;
            Ok(DiscardedRecord {
                doc_id: doc_id.to_string(),
                kind,
                json,
                bytes,
                code,
                reason_zh,
                reason_en,
                discarded_at_ms: at,
            })
        })
    }

    /// Every discarded record's export, oldest first.
    pub fn discarded_records(&self) -> Result<Vec<DiscardedRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT doc_id, kind, json, bytes, code, reason_zh, reason_en, discarded_at FROM discarded ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DiscardedRecord {
                doc_id: r.get(0)?,
                kind: RecordKind::parse(&r.get::<_, String>(1)?).unwrap_or(RecordKind::Visit),
                json: r.get(2)?,
                bytes: r.get(3)?,
                code: r.get(4)?,
                reason_zh: r.get(5)?,
                reason_en: r.get(6)?,
                discarded_at_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Makes these held records (and held visits of these enterprises) due for a retry now:
    /// the server said their reason was settled.
    pub fn retry_now(&self, doc_ids: &[String]) -> Result<()> {
        if doc_ids.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = doc_ids.iter().map(String::as_str).collect();
        self.write(|tx| Ok(touched(tx, &ids)?))
    }

    /// What could not be applied of what servers sent.
    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT doc_id, kind, reason, attempts FROM quarantine ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(Quarantined {
                doc_id: r.get(0)?,
                kind: RecordKind::parse(&r.get::<_, String>(1)?).unwrap_or(RecordKind::Visit),
                reason: r.get(2)?,
                attempts: r.get::<_, i64>(3)? as u64,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Tries every quarantined item again (its dependencies may have arrived since); what
    /// applies leaves the quarantine. Returns how many are still there.
    pub fn retry_quarantine(&self) -> Result<usize> {
        let items: Vec<(i64, String, String, bool, Vec<u8>)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached("SELECT id, doc_id, kind, whole, bytes FROM quarantine ORDER BY id")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        for (id, doc_id, kind, whole, bytes) in items {
            let Some(kind) = RecordKind::parse(&kind) else { continue };
            self.write(|tx| {
                let outcome = if whole {
                    super::apply_one_document(tx, kind, &doc_id, &bytes)
                } else {
                    super::apply_one_changes(tx, kind, &doc_id, std::slice::from_ref(&bytes))
                };
                match outcome {
                    Ok(()) => drop(tx.execute("DELETE FROM quarantine WHERE id = ?1", [id])?),
                    Err(e) => drop(tx.execute(
                        "UPDATE quarantine SET attempts = attempts + 1, reason = ?2 WHERE id = ?1",
                        params![id, e.to_string()],
                    )?),
                }
                Ok(())
            })?;
        }
        let n: i64 = self.conn().query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))?;
        Ok(n as usize)
    }
}

/// The held row of `doc_id`: its kind and the server's reason.
fn held_row(conn: &rusqlite::Connection, doc_id: &str) -> Result<(RecordKind, String, String, String)> {
    let row: Option<(String, String, String, String)> = conn
        .prepare_cached("SELECT kind, code, reason_zh, reason_en FROM held WHERE doc_id = ?1")?
        .query_row([doc_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let (kind, code, zh, en) = row.ok_or_else(|| Error::NotDiscardable {
        id: doc_id.to_string(),
        reason: "only a record the server refused (held) can be discarded".into(),
    })?;
    Ok((RecordKind::parse(&kind).unwrap_or(RecordKind::Visit), code, zh, en))
}

/// The confirmation of discarding `doc_id` at version `heads`.
fn confirmation(doc_id: &str, heads: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{doc_id}\n{heads}").as_bytes());
    format!("discard:{doc_id}:{}", hex::encode(&digest[..8]))
}

fn any_held(conn: &rusqlite::Connection) -> rusqlite::Result<bool> {
    conn.query_row("SELECT EXISTS (SELECT 1 FROM held)", [], |r| r.get(0))
}

/// Largest item kept in quarantine; a bigger one keeps only its reason.
const MAX_QUARANTINED_BYTES: usize = 8 * 1024 * 1024;

/// Keeps what could not be applied, with why.
pub(super) fn quarantine(
    tx: &Transaction<'_>,
    kind: RecordKind,
    doc_id: &str,
    whole: bool,
    bytes: &[u8],
    reason: &str,
) -> rusqlite::Result<()> {
    let kept = if bytes.len() <= MAX_QUARANTINED_BYTES { bytes } else { &[] };
    tx.prepare_cached(
        "INSERT INTO quarantine (doc_id, kind, whole, bytes, reason, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![doc_id, kind.as_str(), whole, kept, reason, now_ms()])?;
    Ok(())
}

/// The server sent something about these records: their held retries are due, and those of
/// visits of these enterprises (a transfer decided upstream clears a visit's reason too).
pub(super) fn touched(tx: &Transaction<'_>, doc_ids: &[&str]) -> rusqlite::Result<()> {
    // Every pulled page calls this (12,000 records in a first sync): one look when nothing
    // is held, not one statement per record.
    if !any_held(tx)? {
        return Ok(());
    }
    let mut stmt = tx.prepare_cached(
        "UPDATE held SET retry = 1 WHERE doc_id = ?1 OR doc_id IN (SELECT id FROM visits WHERE enterprise_id = ?1)",
    )?;
    for id in doc_ids {
        stmt.execute([id])?;
    }
    Ok(())
}
