//! The records the county holds: applying a push to the merged documents, the change feed
//! and the relational rows, and reading pull pages. Everything here runs inside a SQLite
//! transaction the caller owns; nothing here knows HTTP beyond returning [`ApiError`].

use std::collections::{HashMap, HashSet};

use automerge::Change;
use ohassist_core::doc::Document;
use ohassist_core::model::{ChecklistItem, Enterprise, RecordKind, TrainingAudience, Visit};
use ohassist_core::sync::wire::{self, WireChange, WireDocument};
use ohassist_core::validate;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::accounts::Caller;
use crate::api::error::ApiError;
use crate::scope;

/// Longest document id accepted: credit codes are 18 characters, visit ids 32.
const MAX_DOC_ID_CHARS: usize = 128;
/// Most change rows one incremental pull page scans, so that a client far behind in a busy
/// county still gets an answer quickly (excluded rows count too).
const MAX_SCAN_ROWS: usize = 20_000;

/// A pushed change, decoded and hashed (before any lock is taken).
pub struct Incoming {
    pub doc_id: String,
    pub kind: RecordKind,
    pub hash: String,
    pub bytes: Vec<u8>,
    pub change: Change,
}

/// Decodes the changes of a push. Automerge is given arbitrary bytes from the network
/// here, so a panic inside it is caught and treated as an invalid change.
pub fn decode_changes(changes: Vec<WireChange>) -> Result<Decoded, ApiError> {
    if changes.len() > wire::MAX_PUSH_CHANGES {
        return Err(ApiError::TooLarge(format!("{} changes, at most {}", changes.len(), wire::MAX_PUSH_CHANGES)));
    }
    let mut out = Vec::with_capacity(changes.len());
    for c in changes {
        if c.bytes.len() > wire::MAX_CHANGE_BYTES {
            return Err(ApiError::TooLarge(format!(
                "a change of {} is {} bytes, at most {}",
                c.doc_id,
                c.bytes.len(),
                wire::MAX_CHANGE_BYTES
            )));
        }
        if c.doc_id.is_empty() || c.doc_id.chars().count() > MAX_DOC_ID_CHARS || c.doc_id.chars().any(char::is_control)
        {
            return Err(ApiError::MalformedBody(format!("document id of {} characters", c.doc_id.chars().count())));
        }
        let bytes = c.bytes.clone();
        let decoded = std::panic::catch_unwind(move || Change::from_bytes(bytes));
        let change = match decoded {
            Ok(Ok(change)) => change,
            Ok(Err(e)) => return Err(ApiError::InvalidChange { doc_id: c.doc_id, detail: e.to_string() }),
            Err(_) => return Err(ApiError::InvalidChange { doc_id: c.doc_id, detail: "undecodable".into() }),
        };
        out.push(Incoming { doc_id: c.doc_id, kind: c.kind, hash: change.hash().to_string(), bytes: c.bytes, change });
    }
    let prepared = prepare_new_visits(&out);
    Ok(Decoded { incoming: out, prepared })
}

/// A push, decoded, with the visits it creates already merged (see [`prepare_new_visits`]).
pub struct Decoded {
    pub incoming: Vec<Incoming>,
    pub prepared: HashMap<String, Prepared>,
}

/// A visit built from a push before the writer lock is taken, with its JSON.
pub struct Prepared {
    doc: Document,
    json: serde_json::Value,
}

/// Builds, outside the writer lock and so in parallel with other pushes, the documents of
/// the visits a push creates (those whose genesis it carries). The writer uses one only if
/// the visit is still new when it gets there; anything odd is left to the writer's checks.
fn prepare_new_visits(incoming: &[Incoming]) -> HashMap<String, Prepared> {
    let mut groups: HashMap<&str, Vec<Change>> = HashMap::new();
    for c in incoming.iter().filter(|c| c.kind == RecordKind::Visit) {
        groups.entry(c.doc_id.as_str()).or_default().push(c.change.clone());
    }
    groups
        .into_iter()
        .filter(|(id, changes)| {
            let genesis_actor = ohassist_core::doc::genesis_actor(RecordKind::Visit, id);
            changes.iter().any(|c| c.actor_id() == &genesis_actor && c.seq() == 1)
        })
        .filter_map(|(id, changes)| {
            let doc = Document::from_changes(RecordKind::Visit, id, changes).ok()?;
            let json = doc.json(None);
            Some((id.to_string(), Prepared { doc, json }))
        })
        .collect()
}

/// The outcome of a push: every hash of the request (in request order, without repeats)
/// and how many of them were new.
pub struct Applied {
    pub acknowledged: Vec<String>,
    pub new: u32,
}

/// Applies a push in one transaction: all of it, or (on any error) nothing.
pub fn apply_push(conn: &mut Connection, caller: &Caller, decoded: Decoded, now: i64) -> Result<Applied, ApiError> {
    let Decoded { incoming, mut prepared } = decoded;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut acknowledged = Vec::with_capacity(incoming.len());
    let mut seen = HashSet::new();
    // Documents in order of first appearance, each with its new changes.
    let mut groups: Vec<(String, RecordKind, Vec<Incoming>)> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    {
        let mut held = tx.prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?;
        for c in incoming {
            if !seen.insert(c.hash.clone()) {
                continue;
            }
            acknowledged.push(c.hash.clone());
            if held.exists([&c.hash])? {
                continue;
            }
            let i = *group_of.entry(c.doc_id.clone()).or_insert_with(|| {
                groups.push((c.doc_id.clone(), c.kind, Vec::new()));
                groups.len() - 1
            });
            if groups[i].1 != c.kind {
                return Err(ApiError::KindMismatch { doc_id: c.doc_id, kind: groups[i].1.as_str() });
            }
            groups[i].2.push(c);
        }
    }
    let mut new = 0;
    // Status rows are refreshed once per enterprise after every document of the push is in:
    // a phone back with 250 visits of one enterprise costs one refresh, not 250.
    let mut affected = std::collections::BTreeSet::new();
    // Visits of this push as merged, so the refresh reads them from memory, not the database.
    let mut fresh = HashMap::new();
    for (doc_id, kind, changes) in groups {
        new += changes.len() as u32;
        let ready = prepared.remove(&doc_id);
        let (codes, visit) = apply_to_document(&tx, caller, &doc_id, kind, changes, ready, now)?;
        affected.extend(codes);
        if let Some(v) = visit {
            fresh.insert(doc_id, *v);
        }
    }
    for code in affected {
        crate::reports::status::refresh_with(&tx, &code, &fresh)?;
    }
    tx.commit()?;
    Ok(Applied { acknowledged, new })
}

/// Applies one document's changes and returns the credit codes whose status rows the caller
/// must refresh (in the same transaction) once every document of the batch is in.
fn apply_to_document(
    tx: &Transaction<'_>,
    caller: &Caller,
    doc_id: &str,
    kind: RecordKind,
    changes: Vec<Incoming>,
    ready: Option<Prepared>,
    now: i64,
) -> Result<(Vec<String>, Option<Box<Visit>>), ApiError> {
    let stored: Option<(String, Vec<u8>, String)> = tx
        .query_row("SELECT kind, bytes, county_code FROM documents WHERE id = ?1", [doc_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let raw: Vec<(String, Vec<u8>)> = changes.iter().map(|c| (c.hash.clone(), c.bytes.clone())).collect();
    let decoded: Vec<Change> = changes.into_iter().map(|c| c.change).collect();
    let invalid_change =
        |e: ohassist_core::Error| ApiError::InvalidChange { doc_id: doc_id.to_string(), detail: e.to_string() };
    let genesis_actor = ohassist_core::doc::genesis_actor(kind, doc_id);
    // A record new to the server whose changes all come from one actor (besides its genesis)
    // cannot hold a conflict: one actor's changes are never concurrent with each other.
    let one_writer = {
        let mut actors = decoded.iter().map(|c| c.actor_id()).filter(|a| **a != genesis_actor);
        let first = actors.next();
        stored.is_none() && actors.all(|a| Some(a) == first)
    };
    let mut ready_json = None;
    let (doc, old_county, genesis) = match stored {
        Some((stored_kind, bytes, county)) => {
            if stored_kind != kind.as_str() {
                return Err(ApiError::KindMismatch {
                    doc_id: doc_id.to_string(),
                    kind: RecordKind::parse(&stored_kind).map_or("record", RecordKind::as_str),
                });
            }
            let mut doc = Document::load(kind, doc_id, &bytes)?;
            doc.apply_changes(decoded).map_err(invalid_change)?;
            (doc, Some(county), None)
        }
        // A visit's id is random, so its genesis cannot collide with another phone's: the one
        // the phone sent is taken as it is, which saves building it again. An enterprise's
        // genesis is rebuilt below, so a forged one fails as a duplicate sequence number.
        None if kind == RecordKind::Visit && decoded.iter().any(|c| c.actor_id() == &genesis_actor && c.seq() == 1) => {
            match ready {
                Some(p) => {
                    ready_json = Some(p.json);
                    (p.doc, None, None)
                }
                None => (Document::from_changes(kind, doc_id, decoded).map_err(invalid_change)?, None, None),
            }
        }
        None => {
            let mut doc = Document::genesis(kind, doc_id);
            let genesis = doc.changes_since(&[]).into_iter().next();
            doc.apply_changes(decoded).map_err(invalid_change)?;
            (doc, None, genesis)
        }
    };
    if doc.has_missing_deps() {
        return Err(ApiError::MissingDependencies { doc_id: doc_id.to_string() });
    }

    let invalid =
        |zh: String, en: String| ApiError::InvalidRecord { doc_id: doc_id.to_string(), reason_zh: zh, reason_en: en };
    let from_validation = |e: ohassist_core::ValidationError| invalid(e.message_zh(), e.message_en());
    // A change may overwrite the root `kind`/`id`; such a document would no longer load.
    let json = ready_json.unwrap_or_else(|| doc.json(None));
    if json.get("kind").and_then(|v| v.as_str()) != Some(kind.as_str())
        || json.get("id").and_then(|v| v.as_str()) != Some(doc_id)
    {
        return Err(invalid("记录的类型或编号被修改".into(), "the record's kind or id was changed".into()));
    }
    let has_conflicts = !one_writer && doc.has_conflicts();
    // Only what scope and the relational rows depend on is enforced here. Full validation
    // is the phone's job before writing; refusing a merge of two valid edits would wedge
    // the pushing phone's outbox for good.
    let row = match kind {
        RecordKind::Enterprise => {
            // The record is typed from the JSON already read: one walk of the document, not two.
            let e: Enterprise =
                serde_json::from_value(json).map_err(|e| invalid("内容无法读取".into(), e.to_string()))?;
            if e.credit_code != doc_id {
                return Err(invalid(
                    "企业记录编号必须是其统一社会信用代码".into(),
                    "an enterprise's id must be its credit code".into(),
                ));
            }
            validate::credit_code_field("credit_code", &e.credit_code).map_err(from_validation)?;
            validate::county_code("county.code", &e.county.code).map_err(from_validation)?;
            Row::Enterprise(Box::new(e))
        }
        RecordKind::Visit => {
            let v: Visit = serde_json::from_value(json).map_err(|e| invalid("内容无法读取".into(), e.to_string()))?;
            validate::credit_code_field("enterprise_id", &v.enterprise_id).map_err(from_validation)?;
            validate::county_code("county_code", &v.county_code).map_err(from_validation)?;
            Row::Visit(Box::new(v))
        }
    };
    let county = match &row {
        Row::Enterprise(e) => e.county.code.clone(),
        Row::Visit(v) => v.county_code.clone(),
    };
    // Both ends must be in scope: a record may not be moved out of another county either.
    let in_scope = scope::covers(&caller.org_unit, &county)
        && old_county.as_deref().is_none_or(|c| scope::covers(&caller.org_unit, c));
    if !in_scope {
        return Err(ApiError::OutOfScope { doc_id: doc_id.to_string() });
    }

    let heads: Vec<String> = doc.heads().iter().map(|h| h.to_string()).collect();
    tx.execute(
        "INSERT INTO documents (id, kind, bytes, heads, county_code, has_conflicts, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET bytes = ?3, heads = ?4, county_code = ?5, has_conflicts = ?6, updated_at = ?7",
        params![
            doc_id,
            kind.as_str(),
            doc.save(),
            serde_json::to_string(&heads).map_err(ApiError::internal)?,
            county,
            has_conflicts,
            now
        ],
    )?;
    // The enterprises whose computed status this document feeds (a visit may have been
    // moved from one enterprise to another).
    let mut affected: Vec<String> = match &row {
        Row::Enterprise(e) => vec![e.credit_code.clone()],
        Row::Visit(v) => vec![v.enterprise_id.clone()],
    };
    if kind == RecordKind::Visit {
        let before: Option<String> =
            tx.query_row("SELECT enterprise_id FROM visits WHERE id = ?1", [doc_id], |r| r.get(0)).optional()?;
        affected.extend(before.filter(|b| *b != affected[0]));
    }
    match &row {
        Row::Enterprise(e) => write_enterprise_row(tx, e, has_conflicts)?,
        Row::Visit(v) => write_visit_row(tx, doc_id, v, has_conflicts, now)?,
    }
    let mut insert = tx.prepare_cached(
        "INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (hash) DO NOTHING",
    )?;
    // The genesis goes into the feed too, first, so that a device pulling changes of a
    // record it never saw receives everything the record's changes depend on.
    if let Some(mut g) = genesis {
        let hash = g.hash().to_string();
        insert.execute(params![
            hash,
            doc_id,
            kind.as_str(),
            g.bytes().as_ref(),
            caller.user_id,
            caller.device_id,
            now
        ])?;
    }
    for (hash, bytes) in raw {
        insert.execute(params![hash, doc_id, kind.as_str(), bytes, caller.user_id, caller.device_id, now])?;
    }
    let visit = match row {
        Row::Visit(v) => Some(v),
        Row::Enterprise(_) => None,
    };
    Ok((affected, visit))
}

/// The device id recorded in the feed for changes the server writes on behalf of a
/// supervisor or an admin (reviews, conflict resolutions, imported enterprises).
pub const WEB_DEVICE: &str = "web";

/// Writes one change made by the server itself to a document, exactly as if a device had
/// pushed it: `edit` receives the current document (or the deterministic genesis of a new
/// one) and returns the change it made, written with a fresh actor and an
/// `Author { user, device: "web" }`. The change is then applied through the push path in
/// one transaction: validated, scope-checked against `caller`, saved, rows and status
/// rebuilt, and appended to the feed (after the genesis for a new document) so phones pull
/// it. Returns the change's hash, or `None` when `edit` changed nothing.
pub fn apply_server_edit<F>(
    conn: &mut Connection,
    caller: &Caller,
    kind: RecordKind,
    doc_id: &str,
    now: i64,
    edit: F,
) -> Result<Option<String>, ApiError>
where
    F: FnOnce(&mut Document) -> Result<Option<Change>, ApiError>,
{
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let hash = apply_server_edit_in(&tx, caller, kind, doc_id, now, edit)?;
    tx.commit()?;
    Ok(hash)
}

/// [`apply_server_edit`] inside a transaction the caller owns (an import writes many
/// documents in one).
pub fn apply_server_edit_in<F>(
    tx: &Transaction<'_>,
    caller: &Caller,
    kind: RecordKind,
    doc_id: &str,
    now: i64,
    edit: F,
) -> Result<Option<String>, ApiError>
where
    F: FnOnce(&mut Document) -> Result<Option<Change>, ApiError>,
{
    let stored: Option<(String, Vec<u8>)> = tx
        .query_row("SELECT kind, bytes FROM documents WHERE id = ?1", [doc_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let mut doc = match stored {
        Some((stored_kind, _)) if stored_kind != kind.as_str() => return Err(ApiError::NotFound),
        Some((_, bytes)) => Document::load(kind, doc_id, &bytes)?,
        None => Document::genesis(kind, doc_id),
    };
    let Some(mut change) = edit(&mut doc)? else { return Ok(None) };
    let hash = change.hash().to_string();
    let incoming =
        Incoming { doc_id: doc_id.to_string(), kind, hash: hash.clone(), bytes: change.bytes().to_vec(), change };
    for code in apply_to_document(tx, caller, doc_id, kind, vec![incoming], None, now)?.0 {
        crate::reports::status::refresh(tx, &code)?;
    }
    Ok(Some(hash))
}

enum Row {
    Enterprise(Box<Enterprise>),
    Visit(Box<Visit>),
}

fn write_enterprise_row(tx: &Transaction<'_>, e: &Enterprise, has_conflicts: bool) -> rusqlite::Result<()> {
    let years = serde_json::to_string(&e.years()).unwrap_or_else(|_| "[]".into());
    tx.execute(
        "INSERT OR REPLACE INTO enterprises (credit_code, name, county_code, county_name, industry, size, years,
            city_level_target, special_governance, has_occupational_disease, in_surveillance_scope, deleted, has_conflicts,
            latitude, longitude)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        params![
            e.credit_code,
            e.name,
            e.county.code,
            e.county.name,
            e.industry.map(|i| i.code()),
            e.size.map(|s| s.code()),
            years,
            e.city_level_target,
            e.special_governance,
            e.has_occupational_disease,
            e.in_surveillance_scope,
            e.deleted,
            has_conflicts,
            e.location.map(|p| p.latitude),
            e.location.map(|p| p.longitude)
        ],
    )?;
    crate::attachments::refresh_enterprise_distances(tx, &e.credit_code, e.location)
}

fn write_visit_row(tx: &Transaction<'_>, id: &str, v: &Visit, has_conflicts: bool, now: i64) -> rusqlite::Result<()> {
    let flags = crate::attachments::visit_flags(tx, id, v, now)?;
    let answer = |item| v.self_inspection.get(item).and_then(|c| c.result).map(|r| r.code());
    let trained = |audience| {
        v.training
            .sessions
            .values()
            .any(|s| !s.deleted && s.organised_by_authority && s.attendees > 0 && s.audience == Some(audience))
    };
    tx.execute(
        "INSERT OR REPLACE INTO visits (id, enterprise_id, county_code, visit_date, review_state, inspectors, deleted,
            has_conflicts, declaration, detection, health_examination, principal_trained, managers_trained, workers_trained,
            latitude, longitude, captured_at, far_from_enterprise_m, clock_skew_s)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
        params![
            id,
            v.enterprise_id,
            v.county_code,
            v.visit_date,
            v.review.state.code(),
            serde_json::to_string(&v.inspectors).unwrap_or_else(|_| "{}".into()),
            v.deleted,
            has_conflicts,
            answer(ChecklistItem::Declaration),
            answer(ChecklistItem::Detection),
            answer(ChecklistItem::HealthExamination),
            trained(TrainingAudience::Principal),
            trained(TrainingAudience::Manager),
            trained(TrainingAudience::Workers),
            flags.latitude,
            flags.longitude,
            flags.captured_at,
            flags.far_from_enterprise_m,
            flags.clock_skew_s
        ],
    )?;
    Ok(())
}

/// One page of a pull, in wire terms.
pub struct Page {
    pub documents: Vec<WireDocument>,
    pub changes: Vec<WireChange>,
    pub cursor: u64,
    pub page_token: Option<String>,
    pub more: bool,
}

/// Where a first sync stands: the feed position it will end at, and the last document sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstSyncToken {
    pub snapshot_seq: u64,
    pub last_id: String,
}

impl FirstSyncToken {
    pub fn encode(&self) -> String {
        format!("v1.{}.{}", self.snapshot_seq, hex::encode(self.last_id.as_bytes()))
    }

    pub fn decode(s: &str) -> Option<FirstSyncToken> {
        let mut parts = s.splitn(3, '.');
        if parts.next()? != "v1" {
            return None;
        }
        let snapshot_seq = parts.next()?.parse().ok()?;
        let last_id = String::from_utf8(hex::decode(parts.next()?).ok()?).ok()?;
        Some(FirstSyncToken { snapshot_seq, last_id })
    }
}

fn kind_of(s: &str) -> rusqlite::Result<RecordKind> {
    RecordKind::parse(s)
        .ok_or_else(|| rusqlite::Error::InvalidColumnType(0, s.to_string(), rusqlite::types::Type::Text))
}

/// A page of a first sync: whole saved documents in scope, by id, after `token.last_id`.
/// The first page (no token) fixes the snapshot: the feed position the client continues
/// from once every document is sent. Documents changed after it may come twice (as a
/// document and as changes), which applying changes tolerates.
pub fn first_sync_page(
    conn: &mut Connection,
    org_unit: &str,
    token: Option<FirstSyncToken>,
    budget: usize,
) -> Result<Page, ApiError> {
    let tx = conn.transaction()?;
    let token = match token {
        Some(t) => t,
        None => FirstSyncToken {
            snapshot_seq: tx.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| r.get::<_, i64>(0))? as u64,
            last_id: String::new(),
        },
    };
    let mut stmt = tx.prepare_cached(
        "SELECT id, kind, bytes FROM documents
         WHERE id > ?1 AND substr(county_code, 1, length(?2)) = ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![token.last_id, scope::prefix(org_unit)])?;
    let mut documents = Vec::new();
    let mut size = 0;
    let mut more = false;
    while let Some(r) = rows.next()? {
        if size >= budget {
            more = true;
            break;
        }
        let bytes: Vec<u8> = r.get(2)?;
        size += bytes.len();
        documents.push(WireDocument { doc_id: r.get(0)?, kind: kind_of(&r.get::<_, String>(1)?)?, bytes });
    }
    let page = if more {
        let last_id = documents.last().map(|d| d.doc_id.clone()).unwrap_or_default();
        Page {
            documents,
            changes: Vec::new(),
            cursor: 0,
            page_token: Some(FirstSyncToken { snapshot_seq: token.snapshot_seq, last_id }.encode()),
            more: true,
        }
    } else {
        Page { documents, changes: Vec::new(), cursor: token.snapshot_seq, page_token: None, more: false }
    };
    Ok(page)
}

/// A page of the feed after `cursor`: changes of documents now in scope, in feed order,
/// without the caller's own device's. The cursor returned is the last row *scanned*, so
/// excluded rows are not scanned again.
pub fn changes_page(
    conn: &mut Connection,
    org_unit: &str,
    device_id: &str,
    cursor: u64,
    budget: usize,
) -> Result<Page, ApiError> {
    let tx = conn.transaction()?;
    // Rows the caller will not get are scanned without their bytes.
    let mut stmt = tx.prepare_cached(
        "SELECT c.seq, c.doc_id, c.kind,
                CASE WHEN c.device_id <> ?3 AND substr(d.county_code, 1, length(?2)) = ?2 THEN c.bytes END
         FROM changes c JOIN documents d ON d.id = c.doc_id
         WHERE c.seq > ?1 ORDER BY c.seq",
    )?;
    let mut rows = stmt.query(params![cursor as i64, scope::prefix(org_unit), device_id])?;
    let mut changes = Vec::new();
    let (mut size, mut scanned, mut last) = (0, 0, cursor);
    let mut more = false;
    while let Some(r) = rows.next()? {
        if size >= budget || scanned >= MAX_SCAN_ROWS {
            more = true;
            break;
        }
        scanned += 1;
        last = r.get::<_, i64>(0)? as u64;
        if let Some(bytes) = r.get::<_, Option<Vec<u8>>>(3)? {
            size += bytes.len();
            changes.push(WireChange { doc_id: r.get(1)?, kind: kind_of(&r.get::<_, String>(2)?)?, bytes });
        }
    }
    Ok(Page { documents: Vec::new(), changes, cursor: last, page_token: None, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        let t = FirstSyncToken { snapshot_seq: 42, last_id: "91350100M000100Y43".into() };
        assert_eq!(FirstSyncToken::decode(&t.encode()), Some(t));
        assert_eq!(FirstSyncToken::decode("v2.1.00"), None);
        assert_eq!(FirstSyncToken::decode("v1.x.00"), None);
        assert_eq!(FirstSyncToken::decode("v1.1.zz"), None);
        assert_eq!(FirstSyncToken::decode(""), None);
    }
}
