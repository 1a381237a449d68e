//! The records the county holds: applying a push to the merged documents, the change feed
//! and the relational rows, and reading pull pages. Everything here runs inside a SQLite
//! transaction the caller owns.
//!
//! Every pushed byte is hostile until checked: changes are decoded within
//! [`ohassist_core::limits`], a genesis must be the canonical one, a merged document must
//! load again within the limits, [`authority`] decides who may write which fields, and a
//! visit's scope is its enterprise's county. A document that fails any of it is refused
//! alone ([`Refused`]); the rest of the push is applied.

mod authority;
mod transfer;

pub use transfer::{transfer_enterprise, Transferred};

use std::collections::{HashMap, HashSet};

use automerge::{Change, ChangeHash};
use ohassist_core::doc::{self, Document};
use ohassist_core::limits::{self, Limits, Refusal};
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

/// A pushed change, decoded within the limits and hashed (before any lock is taken).
pub struct Incoming {
    pub doc_id: String,
    pub kind: RecordKind,
    pub hash: String,
    pub bytes: Vec<u8>,
    pub change: Change,
}

/// Why one document of a push was refused: nothing of it was stored, the rest of the push
/// was applied. A domain value; `api/` turns it into the wire's per-document result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub doc_id: String,
    pub kind: RecordKind,
    /// Machine-readable: `out_of_scope`, `invalid_change`, `too_large`, `too_deep`,
    /// `checksum_mismatch`, `non_canonical_genesis`, `field_authority`, `unknown_enterprise`,
    /// `kind_mismatch`, `missing_dependencies`, `invalid_record`.
    pub code: &'static str,
    pub reason_zh: String,
    pub reason_en: String,
    /// The record in words, when it could be read: an enterprise's name; a visit's date and
    /// its enterprise.
    pub label: String,
    /// The county the record claims (an enterprise's; a visit's enterprise's), when read.
    pub county: String,
    /// A visit's enterprise, when read.
    pub enterprise: String,
    /// The refused changes as pushed, when they decoded: kept (bounded) for the console.
    pub changes: Vec<Vec<u8>>,
}

impl Refused {
    fn new(doc_id: &str, kind: RecordKind, code: &'static str, zh: impl Into<String>, en: impl Into<String>) -> Self {
        Refused {
            doc_id: doc_id.to_string(),
            kind,
            code,
            reason_zh: zh.into(),
            reason_en: en.into(),
            label: String::new(),
            county: String::new(),
            enterprise: String::new(),
            changes: Vec::new(),
        }
    }

    fn about(mut self, label: &str, county: &str, enterprise: &str) -> Self {
        self.label = label.to_string();
        self.county = county.to_string();
        self.enterprise = enterprise.to_string();
        self
    }

    fn limit(doc_id: &str, kind: RecordKind, r: &Refusal) -> Self {
        Refused::new(doc_id, kind, r.code(), r.message_zh(), r.to_string())
    }
}

/// Applying one document failed: refused (the push goes on without it) or the database
/// failed (the whole push fails and nothing is applied).
#[derive(Debug)]
pub enum DocError {
    Refused(Refused),
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for DocError {
    fn from(e: rusqlite::Error) -> Self {
        DocError::Db(e)
    }
}

impl From<DocError> for ApiError {
    fn from(e: DocError) -> Self {
        match e {
            DocError::Db(e) => ApiError::from(e),
            DocError::Refused(r) => match r.code {
                "out_of_scope" => ApiError::OutOfScope { doc_id: r.doc_id },
                "kind_mismatch" => ApiError::KindMismatch { doc_id: r.doc_id, kind: r.kind.as_str() },
                _ => ApiError::InvalidRecord { doc_id: r.doc_id, reason_zh: r.reason_zh, reason_en: r.reason_en },
            },
        }
    }
}

/// The limits every pushed change and every merged document is held to.
pub fn limits() -> Limits {
    Limits::default()
}

/// Decodes the changes of a push within [`limits`]. A change that fails refuses its
/// document (and only it); only a push that is malformed as a whole is an error.
pub fn decode_changes(changes: Vec<WireChange>) -> Result<Decoded, ApiError> {
    if changes.len() > wire::MAX_PUSH_CHANGES {
        return Err(ApiError::TooLarge(format!("{} changes, at most {}", changes.len(), wire::MAX_PUSH_CHANGES)));
    }
    let limits = limits();
    let mut out = Vec::with_capacity(changes.len());
    let mut refused: HashMap<String, Refused> = HashMap::new();
    let mut kinds: HashMap<String, RecordKind> = HashMap::new();
    let mut genesis: HashMap<String, String> = HashMap::new();
    for c in changes {
        if c.doc_id.is_empty() || c.doc_id.chars().count() > MAX_DOC_ID_CHARS || c.doc_id.chars().any(char::is_control)
        {
            return Err(ApiError::MalformedBody(format!("document id of {} characters", c.doc_id.chars().count())));
        }
        if refused.contains_key(&c.doc_id) {
            continue;
        }
        let same_kind = *kinds.entry(c.doc_id.clone()).or_insert(c.kind) == c.kind;
        let change = match decode_one(&c, same_kind, &limits, &mut genesis) {
            Ok(change) => change,
            Err(r) => {
                refused.insert(c.doc_id.clone(), r);
                continue;
            }
        };
        out.push(Incoming { doc_id: c.doc_id, kind: c.kind, hash: change.hash().to_string(), bytes: c.bytes, change });
    }
    out.retain(|c| !refused.contains_key(&c.doc_id));
    let prepared = prepare_new_visits(&out, &limits);
    Ok(Decoded { incoming: out, prepared, refused: refused.into_values().collect() })
}

/// One pushed change, decoded within the limits; a genesis must be the canonical one.
// A refusal is the rare path and carries its changes back: not worth a box on every call.
#[allow(clippy::result_large_err)]
fn decode_one(
    c: &WireChange,
    same_kind: bool,
    limits: &Limits,
    genesis: &mut HashMap<String, String>,
) -> Result<Change, Refused> {
    let refuse = |code, zh: &str, en: &str| Refused::new(&c.doc_id, c.kind, code, zh, en);
    if !same_kind {
        return Err(refuse("kind_mismatch", "同一记录的类型前后不一", "one record sent as two kinds"));
    }
    if c.bytes.len() > wire::MAX_CHANGE_BYTES {
        let r = Refusal::TooLarge { what: "a change", found: c.bytes.len() as u64, max: wire::MAX_CHANGE_BYTES as u64 };
        return Err(Refused::limit(&c.doc_id, c.kind, &r));
    }
    let change = limits::decode_change(&c.bytes, limits).map_err(|r| Refused::limit(&c.doc_id, c.kind, &r))?;
    // Only the canonical genesis may come from the genesis actor: a forged one would be
    // stored beside the real one that other replicas hold, and they would refuse every
    // later change of the record for good.
    if change.actor_id() == &doc::genesis_actor(c.kind, &c.doc_id) {
        let canonical =
            genesis.entry(c.doc_id.clone()).or_insert_with(|| doc::genesis_hash(c.kind, &c.doc_id).to_string());
        if change.hash().to_string() != *canonical {
            return Err(refuse(
                "non_canonical_genesis",
                "记录的初始修改与标准不符（应用版本不兼容）",
                "the record's genesis change is not the canonical one (incompatible app)",
            ));
        }
    }
    Ok(change)
}

/// A push, decoded, with the visits it creates already merged (see [`prepare_new_visits`])
/// and the documents already refused.
pub struct Decoded {
    pub incoming: Vec<Incoming>,
    pub prepared: HashMap<String, Prepared>,
    pub refused: Vec<Refused>,
}

/// A visit built from a push before the writer lock is taken, checked against the limits
/// and saved, with its JSON.
pub struct Prepared {
    doc: Document,
    json: serde_json::Value,
    saved: Vec<u8>,
}

/// Builds, outside the writer lock and so in parallel with other pushes, the documents of
/// the visits a push creates (those whose genesis it carries), with every check that needs
/// only the document. The writer uses one only if the visit is still new when it gets
/// there; anything odd is left to the writer's checks.
fn prepare_new_visits(incoming: &[Incoming], limits: &Limits) -> HashMap<String, Prepared> {
    let mut groups: HashMap<&str, Vec<Change>> = HashMap::new();
    for c in incoming.iter().filter(|c| c.kind == RecordKind::Visit) {
        groups.entry(c.doc_id.as_str()).or_default().push(c.change.clone());
    }
    groups
        .into_iter()
        .filter(|(id, changes)| {
            let genesis_actor = doc::genesis_actor(RecordKind::Visit, id);
            changes.iter().any(|c| c.actor_id() == &genesis_actor && c.seq() == 1)
        })
        .filter_map(|(id, changes)| {
            let doc = guarded(|| Document::from_changes(RecordKind::Visit, id, changes).ok())?;
            let (json, saved) = checked_document(&doc, limits).ok()?;
            Some((id.to_string(), Prepared { doc, json, saved }))
        })
        .collect()
}

/// Runs automerge on bytes from outside: a panic inside it is caught and read as `None`.
fn guarded<T>(f: impl FnOnce() -> Option<T>) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok().flatten()
}

/// The checks a merged document passes before it may be stored: no missing dependencies,
/// within the limits (walked iteratively, before any recursive read), and its saved bytes
/// load again within the limits — a push may never leave a document that does not load.
/// Returns its JSON and its saved bytes.
fn checked_document(doc: &Document, limits: &Limits) -> Result<(serde_json::Value, Vec<u8>), Refusal> {
    if doc.has_missing_deps() {
        return Err(Refusal::Malformed("changes whose dependencies were not sent".into()));
    }
    doc.check_limits(limits)?;
    let saved = guarded(|| Some(doc.save())).ok_or(Refusal::Undecodable)?;
    if saved.len() > limits.max_document_bytes {
        return Err(Refusal::TooLarge {
            what: "the merged record",
            found: saved.len() as u64,
            max: limits.max_document_bytes as u64,
        });
    }
    limits::check_document(&saved, limits)?;
    guarded(|| automerge::Automerge::load(&saved).ok()).ok_or(Refusal::Undecodable)?;
    Ok((doc.json(None), saved))
}

/// The outcome of a push: every hash the server now holds (in request order, without
/// repeats), how many were new, and the documents refused.
pub struct Applied {
    pub acknowledged: Vec<String>,
    pub new: u32,
    pub refused: Vec<Refused>,
}

/// Applies a push in one transaction, document by document: each document has all its
/// changes applied or, refused, none (a savepoint per document); the refused documents are
/// kept in `refused_uploads` for the console. A database error applies nothing.
pub fn apply_push(conn: &mut Connection, caller: &Caller, decoded: Decoded, now: i64) -> Result<Applied, ApiError> {
    let Decoded { incoming, mut prepared, mut refused } = decoded;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let mut acknowledged = Vec::with_capacity(incoming.len());
    let mut seen = HashSet::new();
    // Documents in order of first appearance, each with its new changes; enterprises before
    // visits, so a visit can find the enterprise the same push registers.
    let mut groups: Vec<(String, RecordKind, Vec<Incoming>)> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    {
        let mut held = tx.prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?;
        for c in incoming {
            if !seen.insert(c.hash.clone()) {
                continue;
            }
            if held.exists([&c.hash])? {
                acknowledged.push(c.hash.clone());
                continue;
            }
            let i = *group_of.entry(c.doc_id.clone()).or_insert_with(|| {
                groups.push((c.doc_id.clone(), c.kind, Vec::new()));
                groups.len() - 1
            });
            groups[i].2.push(c);
        }
    }
    groups.sort_by_key(|g| g.1 != RecordKind::Enterprise);
    let limits = limits();
    let mut new = 0;
    // Status rows are refreshed once per enterprise after every document of the push is in:
    // a phone back with 250 visits of one enterprise costs one refresh, not 250.
    let mut affected = std::collections::BTreeSet::new();
    // Visits of this push as merged, so the refresh reads them from memory, not the database.
    let mut fresh = HashMap::new();
    // A document refused before from this device and accepted now leaves the console's queue.
    let had_refusals: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM refused_uploads WHERE device_id = ?1)")?
        .query_row([&caller.device_id], |r| r.get(0))?;
    for (doc_id, kind, changes) in groups {
        let hashes: Vec<String> = changes.iter().map(|c| c.hash.clone()).collect();
        let ready = prepared.remove(&doc_id);
        // A savepoint per document: a refused one leaves nothing behind.
        tx.execute_batch("SAVEPOINT document")?;
        match apply_to_document(&tx, caller, &doc_id, kind, changes, ready, now, &limits) {
            Ok((codes, visit)) => {
                tx.execute_batch("RELEASE document")?;
                if had_refusals {
                    accepted_now(&tx, &doc_id, &caller.device_id)?;
                }
                new += hashes.len() as u32;
                acknowledged.extend(hashes);
                affected.extend(codes);
                if let Some(v) = visit {
                    fresh.insert(doc_id, *v);
                }
            }
            Err(DocError::Refused(r)) => {
                tx.execute_batch("ROLLBACK TO document; RELEASE document")?;
                refused.push(r);
            }
            Err(DocError::Db(e)) => return Err(e.into()),
        }
    }
    for code in affected {
        crate::reports::status::refresh_with(&tx, &code, &fresh)?;
    }
    for r in &refused {
        record_refusal(&tx, caller, r, now)?;
    }
    tx.commit()?;
    Ok(Applied { acknowledged, new, refused })
}

/// Most refused uploads kept per device: the oldest go first.
const MAX_REFUSED_PER_DEVICE: i64 = 1_000;
/// Most bytes of changes kept for one refused document, and for all of one device's: past
/// either, only the reason is kept (the phone still holds the record).
pub const MAX_REFUSED_DOC_BYTES: usize = 512 * 1024;
pub const MAX_REFUSED_DEVICE_BYTES: i64 = 32 * 1024 * 1024;

/// Keeps what was refused, for the console: who, which device, when, why, and the changes
/// themselves within the bounds (so nothing is lost if the phone is lost before the reason
/// is settled).
fn record_refusal(tx: &Transaction<'_>, caller: &Caller, r: &Refused, now: i64) -> rusqlite::Result<()> {
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
             reason_en = ?8, last_at = ?9, attempts = attempts + 1, changes = ?10, kept = ?11, county_code = ?12,
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
        "DELETE FROM refused_uploads WHERE device_id = ?1 AND rowid NOT IN
            (SELECT rowid FROM refused_uploads WHERE device_id = ?1 ORDER BY last_at DESC LIMIT ?2)",
    )?
    .execute(params![caller.device_id, MAX_REFUSED_PER_DEVICE])?;
    Ok(())
}

/// The document from this device was accepted: it is no longer refused.
fn accepted_now(tx: &Transaction<'_>, doc_id: &str, device_id: &str) -> rusqlite::Result<()> {
    tx.prepare_cached("DELETE FROM refused_uploads WHERE doc_id = ?1 AND device_id = ?2")?
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

/// Applies one document's changes and returns the credit codes whose status rows the caller
/// must refresh (in the same transaction) once every document of the batch is in. A refusal
/// carries the changes as pushed.
#[allow(clippy::too_many_arguments, clippy::result_large_err)]
fn apply_to_document(
    tx: &Transaction<'_>,
    caller: &Caller,
    doc_id: &str,
    kind: RecordKind,
    mut changes: Vec<Incoming>,
    ready: Option<Prepared>,
    now: i64,
    limits: &Limits,
) -> Result<(Vec<String>, Option<Box<Visit>>), DocError> {
    let raw: Vec<(String, Vec<u8>)> =
        changes.iter_mut().map(|c| (c.hash.clone(), std::mem::take(&mut c.bytes))).collect();
    match apply_changes_to(tx, caller, doc_id, kind, changes, &raw, ready, now, limits) {
        Err(DocError::Refused(mut r)) => {
            r.changes = raw.into_iter().map(|(_, bytes)| bytes).collect();
            Err(DocError::Refused(r))
        }
        other => other,
    }
}

#[allow(clippy::too_many_arguments, clippy::result_large_err)]
fn apply_changes_to(
    tx: &Transaction<'_>,
    caller: &Caller,
    doc_id: &str,
    kind: RecordKind,
    changes: Vec<Incoming>,
    raw: &[(String, Vec<u8>)],
    ready: Option<Prepared>,
    now: i64,
    limits: &Limits,
) -> Result<(Vec<String>, Option<Box<Visit>>), DocError> {
    let refuse = |code, zh: &str, en: &str| DocError::Refused(Refused::new(doc_id, kind, code, zh, en));
    let stored: Option<(String, Vec<u8>, String)> = tx
        .query_row("SELECT kind, bytes, county_code FROM documents WHERE id = ?1", [doc_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?;
    let decoded: Vec<Change> = changes.into_iter().map(|c| c.change).collect();
    // Kept for the field authority check, which reads their operations (visits only: an
    // enterprise has no server-owned fields).
    let pushed: Vec<Change> = if kind == RecordKind::Visit { decoded.clone() } else { Vec::new() };
    let genesis_actor = doc::genesis_actor(kind, doc_id);
    // A record new to the server whose changes all come from one actor (besides its genesis)
    // cannot hold a conflict: one actor's changes are never concurrent with each other.
    let one_writer = {
        let mut actors = decoded.iter().map(|c| c.actor_id()).filter(|a| **a != genesis_actor);
        let first = actors.next();
        stored.is_none() && actors.all(|a| Some(a) == first)
    };
    let invalid_change = || refuse("invalid_change", "修改无法应用", "a change could not be applied");
    // The record's version as the server held it (empty for a new record).
    let mut before: Vec<ChangeHash> = Vec::new();
    let (doc, old_county, genesis, checked) = match stored {
        Some((stored_kind, bytes, county)) => {
            if stored_kind != kind.as_str() {
                return Err(refuse(
                    "kind_mismatch",
                    "记录的类型与服务器上的不同",
                    "the record is of another kind on the server",
                ));
            }
            let mut doc = Document::load(kind, doc_id, &bytes)
                .map_err(|_| refuse("invalid_change", "服务器上的记录无法读取", "the stored record does not load"))?;
            before = doc.heads();
            guarded(|| doc.apply_changes(decoded).ok()).ok_or_else(invalid_change)?;
            (doc, Some(county), None, None)
        }
        // A new visit whose genesis came with it was built (and checked) before the lock.
        None if ready.is_some() => {
            let p = ready.expect("checked");
            (p.doc, None, None, Some((p.json, p.saved)))
        }
        None => {
            let mut doc = Document::genesis(kind, doc_id);
            let genesis = doc.changes_since(&[]).into_iter().next();
            guarded(|| doc.apply_changes(decoded).ok()).ok_or_else(invalid_change)?;
            (doc, None, genesis, None)
        }
    };
    if doc.has_missing_deps() {
        return Err(refuse(
            "missing_dependencies",
            "缺少先前的修改，请完整上传",
            "changes whose dependencies were not sent",
        ));
    }
    let (json, saved) = match checked {
        Some(c) => c,
        None => checked_document(&doc, limits).map_err(|r| DocError::Refused(Refused::limit(doc_id, kind, &r)))?,
    };
    let invalid = |zh: String, en: String| DocError::Refused(Refused::new(doc_id, kind, "invalid_record", zh, en));
    let from_validation = |e: ohassist_core::ValidationError| invalid(e.message_zh(), e.message_en());
    // A change may overwrite the root `kind`/`id`; such a document would no longer load.
    if json.get("kind").and_then(|v| v.as_str()) != Some(kind.as_str())
        || json.get("id").and_then(|v| v.as_str()) != Some(doc_id)
    {
        return Err(invalid("记录的类型或编号被修改".into(), "the record's kind or id was changed".into()));
    }
    authority::check(caller, &doc, &before, &pushed, kind)
        .map_err(|(zh, en)| DocError::Refused(Refused::new(doc_id, kind, "field_authority", zh, en)))?;
    let has_conflicts = !one_writer && doc.has_conflicts();
    // Only what scope and the relational rows depend on is enforced here. Full validation
    // is the phone's job before writing; refusing a merge of two valid edits would hold
    // back the pushing phone's record.
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
    // A visit's county is its enterprise's, whatever the visit says: an enterprise must be on
    // the server (or come in the same push) before its visits, and a visit can reach no
    // figure of a county its enterprise is not in.
    let enterprise_of_visit: Option<(String, String)> = match &row {
        Row::Enterprise(_) => None,
        Row::Visit(v) => tx
            .prepare_cached("SELECT county_code, name FROM enterprises WHERE credit_code = ?1")?
            .query_row([&v.enterprise_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?,
    };
    let label = match &row {
        Row::Enterprise(e) => e.name.clone(),
        Row::Visit(v) => {
            let name = enterprise_of_visit.as_ref().map_or(v.enterprise_id.as_str(), |(_, n)| n.as_str());
            format!("{} · {name}", v.visit_date)
        }
    };
    let (claimed, enterprise) = match (&row, &enterprise_of_visit) {
        (Row::Enterprise(e), _) => (e.county.code.clone(), String::new()),
        (Row::Visit(v), Some((county, _))) => (county.clone(), v.enterprise_id.clone()),
        (Row::Visit(v), None) => (String::new(), v.enterprise_id.clone()),
    };
    let refuse_labelled = |code, zh: &str, en: &str| {
        DocError::Refused(Refused::new(doc_id, kind, code, zh, en).about(&label, &claimed, &enterprise))
    };
    let county = match (&row, enterprise_of_visit) {
        (Row::Enterprise(e), _) => e.county.code.clone(),
        (Row::Visit(_), Some((county, _))) => county,
        (Row::Visit(_), None) => {
            return Err(refuse_labelled(
                "unknown_enterprise",
                "所属企业尚未被服务器接受，走访记录暂存待传",
                "the visit's enterprise is not on the server (or was refused); the visit is held",
            ))
        }
    };
    // Both ends must be in scope: a record may not be moved out of another county either.
    let in_scope = scope::covers(tx, &caller.org_unit, &county)?
        && match old_county.as_deref() {
            Some(c) => scope::covers(tx, &caller.org_unit, c)?,
            None => true,
        };
    if !in_scope {
        return Err(refuse_labelled(
            "out_of_scope",
            "记录不属于您所在单位的辖区",
            "the record lies outside your org unit",
        ));
    }

    let heads: Vec<String> = doc.heads().iter().map(|h| h.to_string()).collect();
    tx.prepare_cached(
        "INSERT INTO documents (id, kind, bytes, heads, county_code, has_conflicts, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
         ON CONFLICT (id) DO UPDATE SET bytes = ?3, heads = ?4, county_code = ?5, has_conflicts = ?6, updated_at = ?7",
    )?
    .execute(params![
        doc_id,
        kind.as_str(),
        saved,
        serde_json::to_string(&heads).unwrap_or_else(|_| "[]".into()),
        county,
        has_conflicts,
        now
    ])?;
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
        Row::Enterprise(e) => {
            write_enterprise_row(tx, e, has_conflicts)?;
            if old_county.as_deref().is_some_and(|c| c != county) {
                move_visits(tx, doc_id, &county, now)?;
            }
        }
        Row::Visit(v) => write_visit_row(tx, doc_id, v, &county, has_conflicts, caller.synced_at, now)?,
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
    // A record that moved is fed whole before its changes: a device of the new county gets
    // the document the changes depend on first (the whole document is read at pull time, so
    // it holds them too).
    if let Some(old) = old_county.as_deref().filter(|c| *c != county) {
        feed_moved(tx, doc_id, kind, old, &saved, now)?;
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

/// An enterprise moved to another county: its visits follow it (their scope is the
/// enterprise's county), and each is fed whole so that the receiving county's phones get
/// every change made before the move, not only the later ones.
fn move_visits(tx: &Transaction<'_>, credit_code: &str, county: &str, now: i64) -> rusqlite::Result<()> {
    let ids: Vec<String> = tx
        .prepare_cached("SELECT id FROM visits WHERE enterprise_id = ?1")?
        .query_map([credit_code], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for id in ids {
        tx.execute("UPDATE documents SET county_code = ?2, updated_at = ?3 WHERE id = ?1", params![id, county, now])?;
        tx.execute("UPDATE visits SET county_code = ?2 WHERE id = ?1", params![id, county])?;
        feed_whole(tx, &id, RecordKind::Visit, now)?;
    }
    Ok(())
}

/// Puts a marker in the feed that a pull answers with the whole document as it is then.
fn feed_whole(tx: &Transaction<'_>, doc_id: &str, kind: RecordKind, now: i64) -> rusqlite::Result<()> {
    feed_moved(tx, doc_id, kind, "", &[], now)
}

/// [`feed_whole`] for a record that moved out of county `old`: the old county's phones get
/// `snapshot`, the document as it was at the move (not what the new county adds later).
fn feed_moved(
    tx: &Transaction<'_>,
    doc_id: &str,
    kind: RecordKind,
    old: &str,
    snapshot: &[u8],
    now: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at, whole, also_county)
         VALUES (?1, ?2, ?3, ?4, '', '', ?5, 1, ?6)",
    )?
    .execute(params![
        format!("whole:{}", uuid::Uuid::new_v4().simple()),
        doc_id,
        kind.as_str(),
        snapshot,
        now,
        old
    ])?;
    Ok(())
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
pub fn refused_uploads(conn: &Connection, org_unit: &str, limit: usize) -> rusqlite::Result<Vec<RefusedUpload>> {
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

/// The documents this device had refused that a transfer took in since: the device is told
/// on its pull, so it pushes them again at once (and hears them acknowledged).
pub fn settled_for(conn: &Connection, device_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT doc_id FROM refused_uploads WHERE device_id = ?1 AND settled = 1 ORDER BY doc_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![device_id, MAX_REFUSED_PER_DEVICE], |r| r.get(0))?;
    rows.collect()
}

/// Who pushed each change of a document, by change hash, as the server recorded it (the
/// account and device of the token, not the message the phone wrote in the change).
pub fn recorded_authors(conn: &Connection, doc_id: &str) -> rusqlite::Result<HashMap<String, doc::Author>> {
    let mut stmt =
        conn.prepare_cached("SELECT hash, user_id, device_id FROM changes WHERE doc_id = ?1 AND whole = 0")?;
    let rows =
        stmt.query_map([doc_id], |r| Ok((r.get::<_, String>(0)?, doc::Author { user: r.get(1)?, device: r.get(2)? })))?;
    rows.collect()
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
    for code in apply_to_document(tx, caller, doc_id, kind, vec![incoming], None, now, &limits())?.0 {
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

/// The visit's row, in its enterprise's `county`, written at `now` for a device that last
/// finished a sync at `synced_at`.
fn write_visit_row(
    tx: &Transaction<'_>,
    id: &str,
    v: &Visit,
    county: &str,
    has_conflicts: bool,
    synced_at: Option<i64>,
    now: i64,
) -> rusqlite::Result<()> {
    let flags = crate::attachments::visit_flags(tx, id, v, synced_at, now)?;
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
            latitude, longitude, captured_at, far_from_enterprise_m, clock_skew_s, sync_gap_s)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)",
        params![
            id,
            v.enterprise_id,
            county,
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
            flags.clock_skew_s,
            flags.sync_gap_s
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
        // Any bytes are a position in the id order: a token of the documented form always reads.
        let last_id = String::from_utf8_lossy(&hex::decode(parts.next()?).ok()?).into_owned();
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
///
/// No echo: a document whose every change in the feed was pushed by `device_id` is left out
/// (the device holds it already: the rule incremental pulls follow, see
/// [`changes_page`]). A document that moved has a `whole` row of no device, and one that
/// anybody else changed has their rows, so both still arrive whole.
pub fn first_sync_page(
    conn: &mut Connection,
    org_unit: &str,
    device_id: &str,
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
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT d.id, d.kind, d.bytes FROM documents d
         WHERE d.id > ?1 AND {}
           AND NOT (EXISTS (SELECT 1 FROM changes c WHERE c.doc_id = d.id AND c.device_id = ?3)
                AND NOT EXISTS (SELECT 1 FROM changes c WHERE c.doc_id = d.id AND c.device_id <> ?3))
         ORDER BY d.id",
        scope::sql("d.county_code", "?2")
    ))?;
    let mut rows = stmt.query(params![token.last_id, scope::prefix(org_unit), device_id])?;
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
    // A `whole` row (a record moved into a county) is answered with the whole document.
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT c.seq, c.doc_id, c.kind,
                CASE WHEN c.device_id <> ?3 AND {}
                     THEN CASE WHEN c.whole THEN d.bytes ELSE c.bytes END
                     WHEN c.whole AND c.also_county <> '' AND {}
                     THEN c.bytes END,
                c.whole
         FROM changes c JOIN documents d ON d.id = c.doc_id
         WHERE c.seq > ?1 ORDER BY c.seq",
        scope::sql("d.county_code", "?2"),
        scope::sql("c.also_county", "?2")
    ))?;
    let mut rows = stmt.query(params![cursor as i64, scope::prefix(org_unit), device_id])?;
    let mut changes = Vec::new();
    let mut documents = Vec::new();
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
            let (doc_id, kind) = (r.get(1)?, kind_of(&r.get::<_, String>(2)?)?);
            if r.get::<_, bool>(4)? {
                documents.push(WireDocument { doc_id, kind, bytes });
            } else {
                changes.push(WireChange { doc_id, kind, bytes });
            }
        }
    }
    Ok(Page { documents, changes, cursor: last, page_token: None, more })
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
