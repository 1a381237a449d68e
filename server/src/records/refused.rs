//! What the server refused, kept for the console: who pushed it, from which device, when,
//! why, and the changes themselves within bounds (so nothing is lost if the phone is lost
//! before the reason is settled); a transfer applies them (`super::transfer`).

use crate::sql::{params, Connection, Transaction};

use super::Refused;
use crate::accounts::Caller;
use crate::scope;

/// Most refused uploads kept per device: the oldest go first.
pub(super) const MAX_REFUSED_PER_DEVICE: i64 = 1_000;

/// Most bytes of changes kept for one refused document, and for all of one device's: past
/// either, only the reason is kept (the phone still holds the record).
pub const MAX_REFUSED_DOC_BYTES: usize = 512 * 1024;
pub const MAX_REFUSED_DEVICE_BYTES: i64 = 32 * 1024 * 1024;

/// Keeps what was refused, for the console: who, which device, when, why, and the changes
/// themselves within the bounds (so nothing is lost if the phone is lost before the reason
/// is settled).
pub(super) fn record_refusal(tx: &Transaction<'_>, caller: &Caller, r: &Refused, now: i64) -> crate::sql::Result<()> {
    let size: usize = r.changes.iter().map(Vec::len).sum();
    let device_total: i64 = tx
        .prepare_cached(
            "SELECT coalesce(sum(length(changes)), 0) FROM refused_uploads WHERE device_id = ?1 AND doc_id != ?2",
        )?
        .query_row(params![caller.device_id, r.doc_id], |row| row.get(0))?;
    let keep = !r.changes.is_empty()
        && size <= MAX_REFUSED_DOC_BYTES
        && device_total + size as i64 <= MAX_REFUSED_DEVICE_BYTES;
    let changes = if keep { encode_changes(&r.changes) } else { Vec::new() };
    tx.prepare_cached(
        "INSERT INTO refused_uploads (doc_id, kind, user_id, device_id, label, code, reason_zh, reason_en, first_at,
                                      last_at, changes, kept, county_code, enterprise_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (doc_id, device_id) DO UPDATE SET user_id = ?3, label = ?5, code = ?6, reason_zh = ?7,
             reason_en = ?8, last_at = ?9, attempts = refused_uploads.attempts + 1, changes = ?10, kept = ?11, county_code = ?12,
             enterprise_id = ?13",
    )?
    .execute(params![
        r.doc_id,
        r.kind.as_str(),
        caller.user_id,
        caller.device_id,
        r.label,
        r.code,
        r.reason_zh,
        r.reason_en,
        now,
        changes,
        keep,
        r.county,
        r.enterprise,
    ])?;
    tx.prepare_cached(
        "DELETE FROM refused_uploads WHERE device_id = ?1 AND doc_id NOT IN
            (SELECT doc_id FROM refused_uploads WHERE device_id = ?1 ORDER BY last_at DESC LIMIT ?2)",
    )?
    .execute(params![caller.device_id, MAX_REFUSED_PER_DEVICE])?;
    Ok(())
}

/// The document from this device was accepted: it is no longer refused.
pub(super) fn accepted_now(tx: &Transaction<'_>, doc_id: &str, device_id: &str) -> crate::sql::Result<()> {
    tx.prepare_cached("DELETE FROM refused_uploads WHERE doc_id = ?1 AND device_id = ?2")?
        .execute([doc_id, device_id])?;
    tx.prepare_cached("DELETE FROM refused_origins WHERE doc_id = ?1 AND device_id = ?2")?
        .execute([doc_id, device_id])?;
    Ok(())
}

/// Kept changes: a CBOR array of byte strings, one Automerge change each.
fn encode_changes(changes: &[Vec<u8>]) -> Vec<u8> {
    let list: Vec<serde_bytes::ByteBuf> = changes.iter().map(|c| serde_bytes::ByteBuf::from(c.clone())).collect();
    let mut out = Vec::new();
    ciborium::into_writer(&list, &mut out).expect("writing to a Vec");
    out
}

/// The kept changes of a refused upload; `None` when nothing was kept or they do not read.
pub fn decode_changes_kept(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    if bytes.is_empty() {
        return None;
    }
    let list: Vec<serde_bytes::ByteBuf> = ciborium::from_reader(bytes).ok()?;
    Some(list.into_iter().map(|b| b.into_vec()).collect())
}

/// One refused upload as the console lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RefusedUpload {
    pub doc_id: String,
    pub kind: String,
    pub label: String,
    pub user_name: String,
    pub device_id: String,
    pub device_name: String,
    pub code: String,
    pub reason_zh: String,
    pub reason_en: String,
    /// Seconds since the epoch, the last attempt.
    pub last_at: i64,
    pub attempts: i64,
    /// The changes are kept on the server (bounded): a transfer applies them.
    pub kept: bool,
    /// The county the record claims, and (for a visit) its enterprise.
    pub county_code: String,
    pub enterprise_id: String,
    /// The enterprise a transfer would decide about (the record itself, or a visit's).
    pub transfer_enterprise: String,
    /// That enterprise's county on the server, when the server has it.
    pub server_county: Option<String>,
}

/// The refused uploads of users of `org_unit` (and below), newest first.
pub fn refused_uploads(conn: &Connection, org_unit: &str, limit: usize) -> crate::sql::Result<Vec<RefusedUpload>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT r.doc_id, r.kind, r.label, u.display_name AS user_name, r.device_id,
                coalesce(nullif(d.name, ''), r.device_id) AS device_name, r.code, r.reason_zh, r.reason_en,
                r.last_at, r.attempts, r.kept, r.county_code, r.enterprise_id,
                CASE r.kind WHEN 'enterprise' THEN r.doc_id ELSE r.enterprise_id END AS transfer_enterprise,
                e.county_code AS server_county
         FROM refused_uploads r JOIN users u ON u.id = r.user_id LEFT JOIN devices d ON d.id = r.device_id
              LEFT JOIN documents e ON e.kind = 'enterprise'
                  AND e.id = CASE r.kind WHEN 'enterprise' THEN r.doc_id ELSE r.enterprise_id END
         WHERE r.settled = 0 AND {} ORDER BY r.last_at DESC, r.doc_id LIMIT ?2",
        scope::sql("u.org_unit", "?1")
    ))?;
    let rows = stmt.query_map(params![scope::prefix(org_unit), limit as i64], |r| {
        Ok(RefusedUpload {
            doc_id: r.get("doc_id")?,
            kind: r.get("kind")?,
            label: r.get("label")?,
            user_name: r.get("user_name")?,
            device_id: r.get("device_id")?,
            device_name: r.get("device_name")?,
            code: r.get("code")?,
            reason_zh: r.get("reason_zh")?,
            reason_en: r.get("reason_en")?,
            last_at: r.get("last_at")?,
            attempts: r.get("attempts")?,
            kept: r.get("kept")?,
            county_code: r.get("county_code")?,
            enterprise_id: r.get("enterprise_id")?,
            transfer_enterprise: r.get("transfer_enterprise")?,
            server_county: r.get("server_county")?,
        })
    })?;
    rows.collect()
}
