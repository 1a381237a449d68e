//! Transfers: a supervisor whose unit covers both counties decides where an enterprise
//! belongs ("属于 X县"). The decision is an ordinary server edit of the enterprise's county
//! (its visits follow, and every record that moves is fed whole to the receiving county's
//! phones); then the changes the server refused for it and its visits, and kept, are applied
//! as their inspectors pushed them, so nothing waits for a phone that may be lost. A phone
//! still holding them pushes them again on its next sync and hears them acknowledged.

use std::collections::BTreeSet;

use crate::sql::{params, Connection, OptionalExtension, Transaction};
use ohassist_core::doc::{Author, Document};
use ohassist_core::limits;
use ohassist_core::model::{Enterprise, RecordKind};

use super::push::{record_origins, Origin, Origins};
use super::{
    apply_server_edit_in, apply_to_document, limits as push_limits, DocError, Incoming, RecordsError, WEB_DEVICE,
};
use crate::accounts::{Caller, Role};
use crate::scope;

/// What a transfer did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Transferred {
    /// The enterprise's county changed (false when it was already there).
    pub moved: bool,
    /// Documents whose kept refused changes were applied.
    pub applied: Vec<String>,
    /// Kept refused uploads that were applied to nothing, with the reason they still fail.
    pub still_refused: Vec<(String, String)>,
}

/// Puts enterprise `credit_code` in `county` (named `county_name`), in one transaction:
/// the county edit (when the server has the record) and the kept refused changes of the
/// enterprise and of its visits. The viewer's unit must cover `county` and, when the server
/// has the record, its current county.
pub fn transfer_enterprise(
    conn: &mut Connection,
    viewer: &Caller,
    credit_code: &str,
    county: &str,
    county_name: &str,
    now: i64,
) -> Result<Transferred, RecordsError> {
    if !matches!(viewer.role, Role::Supervisor | Role::Admin) {
        return Err(RecordsError::Forbidden);
    }
    if !scope::is_division_code(county) || !scope::covers(conn, &viewer.org_unit, county)? {
        return Err(RecordsError::Invalid {
            field: "county",
            zh: "所选县区不在您的辖区内".into(),
            en: "the chosen county is outside your unit".into(),
        });
    }
    let tx = conn.transaction_with_behavior(crate::sql::TransactionBehavior::Immediate)?;
    let current: Option<String> = tx
        .query_row("SELECT county_code FROM documents WHERE id = ?1 AND kind = 'enterprise'", [credit_code], |r| {
            r.get("county_code")
        })
        .optional()?;
    if let Some(c) = current.as_deref() {
        if !scope::covers(&tx, &viewer.org_unit, c)? {
            return Err(RecordsError::NotFound);
        }
    }
    let mut out = Transferred::default();
    let mut affected = BTreeSet::new();
    // A record the server has moves first: the refused registration's county value then
    // agrees with the server's and merges without a conflict.
    if current.is_some() {
        out.moved = set_county(&tx, viewer, credit_code, county, county_name, now)?;
    }
    apply_kept(&tx, viewer, "doc_id = ?1 AND kind = 'enterprise'", credit_code, now, &mut out, &mut affected)?;
    if current.is_none() {
        let exists: bool =
            tx.query_row("SELECT EXISTS (SELECT 1 FROM documents WHERE id = ?1)", [credit_code], |r| r.get(0))?;
        if !exists {
            return Err(RecordsError::NotFound);
        }
        out.moved = set_county(&tx, viewer, credit_code, county, county_name, now)?;
    }
    apply_kept(&tx, viewer, "enterprise_id = ?1 AND kind = 'visit'", credit_code, now, &mut out, &mut affected)?;
    for code in affected {
        crate::reports::status::refresh(&tx, &code)?;
    }
    tx.commit()?;
    Ok(out)
}

/// Writes the enterprise's county as a server edit; false when it already was `county`.
fn set_county(
    tx: &Transaction<'_>,
    viewer: &Caller,
    credit_code: &str,
    county: &str,
    county_name: &str,
    now: i64,
) -> Result<bool, RecordsError> {
    let author = Author { user: viewer.user_id.clone(), device: WEB_DEVICE.to_string() };
    let console = Caller { device_id: WEB_DEVICE.to_string(), ..viewer.clone() };
    let edit = |doc: &mut Document| -> Result<_, RecordsError> {
        let old: Enterprise = doc.read()?;
        if old.county.code == county && old.county.name == county_name {
            return Ok(None);
        }
        let mut new = old.clone();
        new.county.code = county.to_string();
        new.county.name = county_name.to_string();
        let (old, new) = (ohassist_core::doc::to_json(&old), ohassist_core::doc::to_json(&new));
        Ok(doc.write_diff(&automerge::ActorId::random(), &author, &old, &new)?)
    };
    let hash = apply_server_edit_in(tx, &console, RecordKind::Enterprise, credit_code, now, edit)?;
    Ok(hash.is_some())
}

/// Applies the kept changes of the refused uploads matching `filter` (with `?1 = id`), each
/// as its inspector's device pushed them, within the viewer's unit; an upload applied
/// leaves the queue, one refused again keeps its row with the new reason.
fn apply_kept(
    tx: &Transaction<'_>,
    viewer: &Caller,
    filter: &str,
    id: &str,
    now: i64,
    out: &mut Transferred,
    affected: &mut BTreeSet<String>,
) -> Result<(), RecordsError> {
    let rows: Vec<(String, String, String, String, Vec<u8>)> = tx
        .prepare(&format!(
            "SELECT doc_id, kind, user_id, device_id, changes FROM refused_uploads WHERE kept = 1 AND settled = 0 AND {filter}
             ORDER BY first_at, device_id"
        ))?
        .query_map([id], |r| {
            Ok((r.get("doc_id")?, r.get("kind")?, r.get("user_id")?, r.get("device_id")?, r.get("changes")?))
        })?
        .collect::<crate::sql::Result<_>>()?;
    let limits = push_limits();
    for (doc_id, kind, user_id, device_id, kept) in rows {
        let Some(kind) = RecordKind::parse(&kind) else { continue };
        let Some(bytes) = super::decode_changes_kept(&kept) else { continue };
        // The inspector's own changes, applied with the viewer's scope: the author recorded
        // in the feed is the inspector's account and device, as if the phone had pushed them.
        let author = Caller {
            user_id,
            username: String::new(),
            display_name: String::new(),
            role: Role::Inspector,
            org_unit: viewer.org_unit.clone(),
            device_id: device_id.clone(),
            last_seen: None,
            synced_at: None,
        };
        // A relay's kept changes carry their original authors: authority is checked against
        // them, and they are recorded in `change_origins` as the relay's push would have.
        let origins = kept_origins(tx, &device_id, &doc_id)?;
        let mut incoming = Vec::new();
        let mut held = tx.prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?;
        for b in bytes {
            let Ok(change) = limits::decode_change(&b, &limits) else { continue };
            let hash = change.hash().to_string();
            if !held.exists([&hash])? {
                incoming.push(Incoming { doc_id: doc_id.clone(), kind, hash, bytes: b, change });
            }
        }
        let hashes: Vec<String> = incoming.iter().map(|c| c.hash.clone()).collect();
        tx.execute_batch("SAVEPOINT kept")?;
        let outcome = if incoming.is_empty() {
            Ok((Vec::new(), None))
        } else {
            apply_to_document(tx, &author, &origins, &doc_id, kind, incoming, None, now, &limits)
        };
        match outcome {
            Ok((codes, _)) => {
                record_origins(tx, &origins, &hashes)?;
                tx.execute(
                    "DELETE FROM refused_origins WHERE doc_id = ?1 AND device_id = ?2",
                    params![doc_id, device_id],
                )?;
                tx.execute_batch("RELEASE kept")?;
                // Out of the queue; the device hears it on its next pull and pushes it again.
                tx.execute(
                    "UPDATE refused_uploads SET settled = 1, last_at = ?3 WHERE doc_id = ?1 AND device_id = ?2",
                    params![doc_id, device_id, now],
                )?;
                affected.extend(codes);
                out.applied.push(doc_id);
            }
            Err(DocError::Refused(r)) => {
                tx.execute_batch("ROLLBACK TO kept; RELEASE kept")?;
                tx.execute(
                    "UPDATE refused_uploads SET code = ?3, reason_zh = ?4, reason_en = ?5, last_at = ?6
                     WHERE doc_id = ?1 AND device_id = ?2",
                    params![doc_id, device_id, r.code, r.reason_zh, r.reason_en, now],
                )?;
                out.still_refused.push((doc_id, r.code.to_string()));
            }
            Err(DocError::Db(e)) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Keeps the original authors of a relay's changes `hashes` of `doc_id` that were refused
/// (pushed by the relay's device `device_id`), for a transfer that applies them later.
pub(super) fn keep_origins(
    tx: &Transaction<'_>,
    device_id: &str,
    origins: &Origins,
    doc_id: &str,
    hashes: &[String],
) -> crate::sql::Result<()> {
    if origins.is_empty() {
        return Ok(());
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO refused_origins (device_id, doc_id, hash, user_id, username, display_name, role, origin_device)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (device_id, hash) DO NOTHING",
    )?;
    for hash in hashes {
        if let Some(o) = origins.get(hash) {
            insert.execute(params![
                device_id,
                doc_id,
                hash,
                o.user_id,
                o.username,
                o.display_name,
                o.role.as_str(),
                o.device_id
            ])?;
        }
    }
    Ok(())
}

/// Forgets the kept authors of `device_id`'s refused documents whose changes are no longer kept.
pub(super) fn prune_kept_origins(tx: &Transaction<'_>, device_id: &str) -> crate::sql::Result<()> {
    tx.prepare_cached(
        "DELETE FROM refused_origins WHERE device_id = ?1 AND NOT EXISTS (SELECT 1 FROM refused_uploads r
             WHERE r.device_id = ?1 AND r.doc_id = refused_origins.doc_id AND r.kept = 1 AND r.settled = 0)",
    )?
    .execute([device_id])?;
    Ok(())
}

/// The kept original authors of `device_id`'s refused changes of `doc_id`, by hash.
pub fn kept_origins(tx: &Connection, device_id: &str, doc_id: &str) -> crate::sql::Result<Origins> {
    let mut stmt = tx.prepare_cached(
        "SELECT hash, user_id, username, display_name, role, origin_device FROM refused_origins
         WHERE doc_id = ?1 AND device_id = ?2",
    )?;
    let rows = stmt.query_map(params![doc_id, device_id], |r| {
        let role: String = r.get(4)?;
        Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get(3)?, role, r.get(5)?))
    })?;
    let mut out = Origins::new();
    for row in rows {
        let (hash, user_id, username, display_name, role, device_id) = row?;
        let Some(role) = Role::parse(&role) else { continue };
        out.insert(hash, Origin { user_id, username, display_name, role, device_id });
    }
    Ok(out)
}
