//! Applying a push, document by document, in one transaction. Every pushed byte is hostile
//! until checked; the steps, in order, each of which may refuse the document alone
//! ([`Refused`]) while the rest of the push is applied (steps 1–6 write nothing, so a
//! refused document leaves nothing behind):
//!
//! 1. [`decode_changes`], before any lock: each change decoded within
//!    [`ohassist_core::limits`], a genesis only if it is the canonical one; the records the
//!    push creates are built and put through steps 3–5 here already, and kept small
//!    ([`Checked`]: their saved bytes and typed row, not the document);
//! 2. `merge`: the stored document (of the same kind) or the genesis, with the changes;
//! 3. `verified`: no missing dependencies, saved and reloaded within the limits, root
//!    `kind` and `id` unchanged;
//! 4. field authority ([`super::authority`]): who may write which fields;
//! 5. `typed_row`: the record as typed, what the rows need validated;
//! 6. `scope_of`: a visit's county is its enterprise's; both ends in the caller's unit;
//! 7. [`super::rows`]: the document, its relational row and the change feed.
//!
//! Then the status rows of the enterprises touched are refreshed once each, and what was
//! refused is kept for the console ([`super::refused`]).

use std::collections::{HashMap, HashSet};

use crate::sql::{Connection, OptionalExtension, Transaction};
use automerge::{Change, ChangeHash};
use ohassist_core::doc::{self, Document};
use ohassist_core::limits::{self, Limits, Refusal};
use ohassist_core::model::{Enterprise, RecordKind, Visit};
use ohassist_core::sync::wire::{self, ChangeAuthor, WireChange};
use ohassist_core::validate;

use super::refused::{accepted_now, record_refusal};
use super::rows::{self, Row};
use super::{authority, DocError, RecordsError, Refused};
use crate::accounts::{Caller, Role};
use crate::scope;

/// Longest document id accepted: credit codes are 18 characters, visit ids 32.
const MAX_DOC_ID_CHARS: usize = 128;

/// A pushed change, decoded within the limits and hashed (before any lock is taken).
pub struct Incoming {
    pub doc_id: String,
    pub kind: RecordKind,
    pub hash: String,
    pub bytes: Vec<u8>,
    pub change: Change,
}

/// The limits every pushed change and every merged document is held to.
pub fn limits() -> Limits {
    Limits::default()
}

/// The original author of a change a relay pushed (a lower server's user and device), as
/// the relay reported it: field authority is checked against it, and it is recorded in
/// `change_origins` beside the relay's account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    pub device_id: String,
}

impl Origin {
    /// The author as a caller, for field authority: their role and device, in the relay's unit.
    fn as_caller(&self, relay: &Caller) -> Caller {
        Caller {
            user_id: self.user_id.clone(),
            username: self.username.clone(),
            display_name: self.display_name.clone(),
            role: self.role,
            device_id: self.device_id.clone(),
            ..relay.clone()
        }
    }
}

/// The original authors of a push's changes, by change hash.
pub type Origins = HashMap<String, Origin>;

/// Reads the `authors` of a push: only a relay may send them, each well-formed, one per
/// change (anyone else sending them: `RecordsError::ForbiddenField`). A bad one refuses the
/// whole push (`RecordsError::Invalid`, field `authors`), the
/// reason naming which (`authors[3].role`). An author naming no change of the push is unused.
pub fn origins_of(authors: Vec<ChangeAuthor>, caller: &Caller) -> Result<Origins, RecordsError> {
    if authors.is_empty() {
        return Ok(Origins::new());
    }
    let invalid = |zh: String, en: String| RecordsError::Invalid { field: "authors", zh, en };
    if caller.role != Role::Relay {
        return Err(RecordsError::ForbiddenField {
            field: "authors",
            zh: "只有下级服务器（中继）账号可以上报修改的原作者（authors）".into(),
            en: "only a relay account may send the changes' original authors (authors)".into(),
        });
    }
    if authors.len() > wire::MAX_PUSH_CHANGES {
        return Err(invalid(
            format!("authors 最多 {} 项", wire::MAX_PUSH_CHANGES),
            format!("authors: at most {} entries", wire::MAX_PUSH_CHANGES),
        ));
    }
    let text_ok = |s: &str, max: usize| !s.is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control);
    let name_ok = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let mut out = Origins::with_capacity(authors.len());
    for (i, a) in authors.into_iter().enumerate() {
        let bad = |field: &str, zh: &str, en: &str| {
            invalid(format!("authors[{i}].{field}：{zh}"), format!("authors[{i}].{field}: {en}"))
        };
        if a.hash.len() != 64 || !a.hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(bad("hash", "须为 64 位小写十六进制", "must be 64 lowercase hex digits"));
        }
        if !text_ok(&a.user_id, 128) {
            return Err(bad(
                "user_id",
                "须为 1–128 个字符，不含控制字符",
                "must be 1 to 128 characters, no control characters",
            ));
        }
        if !name_ok(&a.username, 64) {
            return Err(bad(
                "username",
                "须为 1–64 位字母、数字或 . _ -",
                "must be 1 to 64 letters, digits, '.', '_' or '-'",
            ));
        }
        if !text_ok(&a.display_name, 100) {
            return Err(bad("display_name", "须为 1–100 个字符", "must be 1 to 100 characters"));
        }
        let role = match Role::parse(&a.role) {
            Some(r @ (Role::Inspector | Role::Supervisor | Role::Admin)) => r,
            _ => {
                return Err(bad(
                    "role",
                    "须为 inspector、supervisor 或 admin",
                    "must be inspector, supervisor or admin",
                ))
            }
        };
        if !name_ok(&a.device_id, 128) {
            return Err(bad(
                "device_id",
                "须为 1–128 位字母、数字或 - _ .",
                "must be 1 to 128 letters, digits or - _ .",
            ));
        }
        let origin = Origin {
            user_id: a.user_id,
            username: a.username,
            display_name: a.display_name,
            role,
            device_id: a.device_id,
        };
        if out.insert(a.hash, origin).is_some() {
            return Err(bad("hash", "同一修改出现了两次", "names a change twice"));
        }
    }
    Ok(out)
}

/// Decodes the changes of a push within [`limits`]. A change that fails refuses its
/// document (and only it); only a push that is malformed as a whole is an error.
pub fn decode_changes(changes: Vec<WireChange>, caller: &Caller) -> Result<Decoded, RecordsError> {
    decode_push(changes, Vec::new(), caller)
}

/// [`decode_changes`] of a push that may name its changes' original authors (a relay's,
/// see [`origins_of`]).
pub fn decode_push(
    changes: Vec<WireChange>,
    authors: Vec<ChangeAuthor>,
    caller: &Caller,
) -> Result<Decoded, RecordsError> {
    if changes.len() > wire::MAX_PUSH_CHANGES {
        return Err(RecordsError::TooLarge(format!("{} changes, at most {}", changes.len(), wire::MAX_PUSH_CHANGES)));
    }
    let origins = origins_of(authors, caller)?;
    let limits = limits();
    // What each change needs of nobody else, on several threads for a big push.
    let pre = on_threads(&changes, |c| pre_decode(c, &limits));
    let mut out = Vec::with_capacity(changes.len());
    let mut refused: HashMap<String, Refused> = HashMap::new();
    let mut kinds: HashMap<String, RecordKind> = HashMap::new();
    for (c, pre) in changes.into_iter().zip(pre) {
        if c.doc_id.is_empty() || c.doc_id.chars().count() > MAX_DOC_ID_CHARS || c.doc_id.chars().any(char::is_control)
        {
            return Err(RecordsError::BadDocId { chars: c.doc_id.chars().count() });
        }
        if refused.contains_key(&c.doc_id) {
            continue;
        }
        let same_kind = *kinds.entry(c.doc_id.clone()).or_insert(c.kind) == c.kind;
        let change = match decode_one(&c, same_kind, pre) {
            Ok(change) => change,
            Err(r) => {
                refused.insert(c.doc_id.clone(), r);
                continue;
            }
        };
        out.push(Incoming { doc_id: c.doc_id, kind: c.kind, hash: change.hash().to_string(), bytes: c.bytes, change });
    }
    out.retain(|c| !refused.contains_key(&c.doc_id));
    let prepared = prepare_new_documents(&out, caller, &origins, &limits);
    Ok(Decoded { incoming: out, prepared, refused: refused.into_values().collect(), origins })
}

/// A change decoded within the limits, with the canonical genesis hash of its record when it
/// comes from the record's genesis actor: the part of [`decode_one`] that needs no other change.
type PreDecoded = Result<(Change, Option<String>), Refusal>;

fn pre_decode(c: &WireChange, limits: &Limits) -> PreDecoded {
    if c.bytes.len() > wire::MAX_CHANGE_BYTES {
        return Err(Refusal::TooLarge {
            what: "a change",
            found: c.bytes.len() as u64,
            max: wire::MAX_CHANGE_BYTES as u64,
        });
    }
    let change = limits::decode_change(&c.bytes, limits)?;
    let canonical = (change.actor_id() == &doc::genesis_actor(c.kind, &c.doc_id))
        .then(|| doc::genesis_hash(c.kind, &c.doc_id).to_string());
    Ok((change, canonical))
}

/// One pushed change, decoded within the limits; a genesis must be the canonical one.
// A refusal is the rare path and carries its changes back: not worth a box on every call.
#[allow(clippy::result_large_err)]
fn decode_one(c: &WireChange, same_kind: bool, pre: PreDecoded) -> Result<Change, Refused> {
    let refuse = |code, zh: &str, en: &str| Refused::new(&c.doc_id, c.kind, code, zh, en);
    if !same_kind {
        return Err(refuse("kind_mismatch", "同一记录的类型前后不一", "one record sent as two kinds"));
    }
    let (change, canonical) = pre.map_err(|r| Refused::limit(&c.doc_id, c.kind, &r))?;
    // Only the canonical genesis may come from the genesis actor: a forged one would be
    // stored beside the real one that other replicas hold, and they would refuse every
    // later change of the record for good.
    if canonical.is_some_and(|canonical| change.hash().to_string() != canonical) {
        return Err(refuse(
            "non_canonical_genesis",
            "记录的初始修改与标准不符（应用版本不兼容）",
            "the record's genesis change is not the canonical one (incompatible app)",
        ));
    }
    Ok(change)
}

/// `f` over `items`, in order, on up to [`PREPARE_THREADS`] threads (fewer than
/// [`PREPARE_ALONE`] items stay on the calling thread). A panic is the caller's, as on one thread.
fn on_threads<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(PREPARE_THREADS);
    if threads < 2 || items.len() < PREPARE_ALONE {
        return items.iter().map(f).collect();
    }
    let f = &f;
    std::thread::scope(|s| {
        let workers: Vec<_> = items
            .chunks(items.len().div_ceil(threads))
            .map(|part| s.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect()
    })
}

/// A push, decoded, with the records it creates already built (see
/// [`prepare_new_documents`]) and the documents already refused.
pub struct Decoded {
    pub incoming: Vec<Incoming>,
    pub prepared: HashMap<String, Checked>,
    pub refused: Vec<Refused>,
    /// Who wrote the changes a relay pushed, by hash (empty for anyone else's push).
    pub origins: Origins,
}

/// A document through steps 2–5: what steps 6 and 7 need of it. It keeps what the writer
/// stores, not the document: an Automerge document in memory is a hundred times its saved
/// bytes, and ten pushes of 2,500 new records each, prepared before the lock (see
/// [`prepare_new_documents`]), held gigabytes while they waited for the writer.
pub struct Checked {
    row: Row,
    saved: Vec<u8>,
    heads: Vec<ChangeHash>,
    has_conflicts: bool,
    /// A visit's enterprise row as the writer read it for the whole push (`Some(None)`: no
    /// such enterprise); `None`: read it when the visit is written.
    enterprise: Option<Option<EnterpriseRow>>,
}

/// What a visit's scope and distance flag need of its enterprise's row.
#[derive(Clone)]
struct EnterpriseRow {
    county: String,
    name: String,
    registered: (Option<f64>, Option<f64>),
}

impl EnterpriseRow {
    const SELECT: &'static str =
        "SELECT credit_code, county_code, name, latitude, longitude FROM enterprises WHERE credit_code";

    fn read(r: &crate::sql::Row<'_>) -> crate::sql::Result<(String, EnterpriseRow)> {
        Ok((
            r.get("credit_code")?,
            EnterpriseRow {
                county: r.get("county_code")?,
                name: r.get("name")?,
                registered: (r.get("latitude")?, r.get("longitude")?),
            },
        ))
    }

    /// The row of enterprise `code`, if the server holds it.
    fn of(tx: &Transaction<'_>, code: &str) -> crate::sql::Result<Option<EnterpriseRow>> {
        let row = tx.prepare_cached(&format!("{} = ?1", Self::SELECT))?.query_row([code], Self::read).optional()?;
        Ok(row.map(|(_, e)| e))
    }
}

/// The enterprise rows of the new visits in `prepared`, read [`IN_LIST`] a query once the
/// push's enterprises are written (every enterprise group comes before the visits).
fn enterprise_rows(tx: &Transaction<'_>, prepared: &mut HashMap<String, Checked>) -> crate::sql::Result<()> {
    let mut codes: Vec<String> = prepared
        .values()
        .filter_map(|c| match &c.row {
            Row::Visit(v) => Some(v.enterprise_id.clone()),
            Row::Enterprise(_) => None,
        })
        .collect();
    codes.sort();
    codes.dedup();
    let mut found: HashMap<String, EnterpriseRow> = HashMap::new();
    for part in codes.chunks(IN_LIST) {
        let (marks, values) = in_list(part);
        let mut statement = tx.prepare_cached(&format!("{} IN ({marks})", EnterpriseRow::SELECT))?;
        for row in statement.query_map(values.as_slice(), EnterpriseRow::read)? {
            let (code, row) = row?;
            found.insert(code, row);
        }
    }
    for checked in prepared.values_mut() {
        if let Row::Visit(v) = &checked.row {
            checked.enterprise = Some(found.get(&v.enterprise_id).cloned());
        }
    }
    Ok(())
}

/// Builds, outside the writer lock and so in parallel with other pushes, the records a push
/// creates (those whose genesis it carries), one document at a time. The writer uses one
/// only if the record is still new when it gets there; anything odd (a refusal) is left to
/// the writer's checks, which name it.
///
/// One phone's push of many new records (a county's list entered on one device) has nobody
/// else's push to run beside: its records are built on up to [`PREPARE_THREADS`] threads
/// (pushes of fewer than [`PREPARE_ALONE`] records stay on the calling thread).
fn prepare_new_documents(
    incoming: &[Incoming],
    caller: &Caller,
    origins: &Origins,
    limits: &Limits,
) -> HashMap<String, Checked> {
    let mut groups: HashMap<(&str, RecordKind), Vec<Change>> = HashMap::new();
    for c in incoming {
        groups.entry((c.doc_id.as_str(), c.kind)).or_default().push(c.change.clone());
    }
    let new: Vec<((&str, RecordKind), Vec<Change>)> = groups
        .into_iter()
        .filter(|((id, kind), changes)| {
            let genesis_actor = doc::genesis_actor(*kind, id);
            changes.iter().any(|c| c.actor_id() == &genesis_actor && c.seq() == 1)
        })
        .collect();
    on_threads(&new, |((id, kind), changes)| {
        let one_writer = one_writer(*kind, id, changes);
        let doc = guarded(|| Document::from_changes(*kind, id, changes.clone()).ok())?;
        let checked =
            guarded(|| checked_steps(caller, origins, id, *kind, &doc, &[], changes, one_writer, limits).ok())?;
        Some((id.to_string(), checked))
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Most threads one push decodes its changes and builds its new records on.
const PREPARE_THREADS: usize = 4;
/// Fewer new records than this are built on the calling thread.
const PREPARE_ALONE: usize = 64;

/// Written by one actor only (besides the genesis), so that, in a record new to the server,
/// no two values can be concurrent: one actor's changes never are.
fn one_writer(kind: RecordKind, doc_id: &str, changes: &[Change]) -> bool {
    let genesis_actor = doc::genesis_actor(kind, doc_id);
    let mut actors = changes.iter().map(|c| c.actor_id()).filter(|a| **a != genesis_actor);
    let first = actors.next();
    actors.all(|a| Some(a) == first)
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
/// changes applied or, refused, none (it is refused before its first write); the refused documents are
/// kept in `refused_uploads` for the console. A database error applies nothing.
pub fn apply_push(conn: &mut Connection, caller: &Caller, decoded: Decoded, now: i64) -> Result<Applied, RecordsError> {
    let Decoded { incoming, mut prepared, mut refused, origins } = decoded;
    let tx = conn.transaction_with_behavior(crate::sql::TransactionBehavior::Immediate)?;
    let mut acknowledged = Vec::with_capacity(incoming.len());
    let mut seen = HashSet::new();
    // Documents in order of first appearance, each with its new changes; enterprises before
    // visits, so a visit can find the enterprise the same push registers.
    let mut groups: Vec<(String, RecordKind, Vec<Incoming>)> = Vec::new();
    let mut group_of: HashMap<String, usize> = HashMap::new();
    {
        let hashes: Vec<&str> = incoming.iter().map(|c| c.hash.as_str()).collect();
        let held = held_of(&tx, "SELECT hash FROM changes WHERE hash IN", &hashes)?;
        for c in incoming {
            if !seen.insert(c.hash.clone()) {
                continue;
            }
            if held.contains(&c.hash) {
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
    // Which of the push's records the server holds: read once here (this transaction is the
    // only writer), not once per record.
    let ids: Vec<&str> = groups.iter().map(|g| g.0.as_str()).collect();
    let stored = held_of(&tx, "SELECT id FROM documents WHERE id IN", &ids)?;
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
    let mut enterprises_read = false;
    for (doc_id, kind, changes) in groups {
        if kind == RecordKind::Visit && !enterprises_read {
            enterprises_read = true;
            enterprise_rows(&tx, &mut prepared)?;
        }
        let hashes: Vec<String> = changes.iter().map(|c| c.hash.clone()).collect();
        // A record prepared before the lock is written as it is if it is still new.
        let ready = prepared.remove(&doc_id).filter(|_| !stored.contains(&doc_id));
        // A refused document leaves nothing behind without a savepoint: every step that may
        // refuse it (merge, checks, scope) runs before its first write, and the writes
        // (`rows::store`) fail only with a database error, which ends the whole push.
        match apply_to_document(&tx, caller, &origins, &doc_id, kind, changes, ready, now, &limits) {
            Ok((codes, visit)) => {
                record_origins(&tx, &origins, &hashes)?;
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
                super::transfer::keep_origins(&tx, &caller.device_id, &origins, &doc_id, &hashes)?;
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
    if !origins.is_empty() {
        super::transfer::prune_kept_origins(&tx, &caller.device_id)?;
    }
    tx.commit()?;
    Ok(Applied { acknowledged, new, refused })
}

/// Keys one `IN (…)` list holds.
const IN_LIST: usize = 500;

/// `?1, ?2, …` for `keys`, and the keys as parameters.
fn in_list<K: crate::sql::ToValue>(keys: &[K]) -> (String, Vec<&dyn crate::sql::ToValue>) {
    let marks: Vec<String> = (1..=keys.len()).map(|i| format!("?{i}")).collect();
    (marks.join(", "), keys.iter().map(|k| k as &dyn crate::sql::ToValue).collect())
}

/// The values of `keys` that `select` (`SELECT column FROM table WHERE column IN`) finds,
/// [`IN_LIST`] keys a statement.
fn held_of(tx: &Transaction<'_>, select: &str, keys: &[&str]) -> crate::sql::Result<HashSet<String>> {
    let mut found = HashSet::new();
    for part in keys.chunks(IN_LIST) {
        let (marks, values) = in_list(part);
        let mut statement = tx.prepare_cached(&format!("{select} ({marks})"))?;
        let rows = statement.query_map(values.as_slice(), |r| r.get::<_, String>(0))?;
        for key in rows {
            found.insert(key?);
        }
    }
    Ok(found)
}

/// Records who wrote the new changes `hashes` of a relay's push (those it named).
pub(super) fn record_origins(tx: &Transaction<'_>, origins: &Origins, hashes: &[String]) -> crate::sql::Result<()> {
    if origins.is_empty() {
        return Ok(());
    }
    static INSERT_ORIGIN: crate::sql::Insert = crate::sql::Insert::new(
        "change_origins (hash, user_id, username, display_name, role, device_id)",
        6,
        0,
        "ON CONFLICT (hash) DO NOTHING",
    );
    for hash in hashes {
        if let Some(o) = origins.get(hash) {
            tx.insert_later(
                &INSERT_ORIGIN,
                crate::sql::params![hash, o.user_id, o.username, o.display_name, o.role.as_str(), o.device_id],
            )?;
        }
    }
    Ok(())
}

/// Applies one document's changes and returns the credit codes whose status rows the caller
/// must refresh (in the same transaction) once every document of the batch is in. A refusal
/// carries the changes as pushed.
#[allow(clippy::too_many_arguments, clippy::result_large_err)]
pub(super) fn apply_to_document(
    tx: &Transaction<'_>,
    caller: &Caller,
    origins: &Origins,
    doc_id: &str,
    kind: RecordKind,
    mut changes: Vec<Incoming>,
    ready: Option<Checked>,
    now: i64,
    limits: &Limits,
) -> Result<(Vec<String>, Option<Box<Visit>>), DocError> {
    let raw: Vec<(String, Vec<u8>)> =
        changes.iter_mut().map(|c| (c.hash.clone(), std::mem::take(&mut c.bytes))).collect();
    match apply_steps(tx, caller, origins, doc_id, kind, changes, &raw, ready, now, limits) {
        Err(DocError::Refused(mut r)) => {
            r.changes = raw.into_iter().map(|(_, bytes)| bytes).collect();
            Err(DocError::Refused(r))
        }
        other => other,
    }
}

/// The steps of one document, in order; each may refuse it. A record prepared before the
/// lock that is still new skips to step 6.
#[allow(clippy::too_many_arguments, clippy::result_large_err)]
fn apply_steps(
    tx: &Transaction<'_>,
    caller: &Caller,
    origins: &Origins,
    doc_id: &str,
    kind: RecordKind,
    changes: Vec<Incoming>,
    raw: &[(String, Vec<u8>)],
    ready: Option<Checked>,
    now: i64,
    limits: &Limits,
) -> Result<(Vec<String>, Option<Box<Visit>>), DocError> {
    if let Some(checked) = ready {
        return write(tx, caller, doc_id, kind, checked, None, None, raw, now);
    }
    let merged = merge(tx, doc_id, kind, changes)?;
    let checked = checked_steps(
        caller,
        origins,
        doc_id,
        kind,
        &merged.doc,
        &merged.before,
        &merged.pushed,
        merged.one_writer,
        limits,
    )?;
    write(tx, caller, doc_id, kind, checked, merged.old_county.as_deref(), merged.genesis, raw, now)
}

/// Steps 3–5 of a merged document (`before`: the version the server held, empty for a new
/// record; `pushed`: the changes, for field authority): the same checks whether they run
/// before the lock or in the writer.
#[allow(clippy::too_many_arguments, clippy::result_large_err)]
fn checked_steps(
    caller: &Caller,
    origins: &Origins,
    doc_id: &str,
    kind: RecordKind,
    doc: &Document,
    before: &[ChangeHash],
    pushed: &[Change],
    one_writer: bool,
    limits: &Limits,
) -> Result<Checked, DocError> {
    let (json, saved) = verified(doc_id, kind, doc, limits)?;
    authority_by_author(caller, origins, doc, before, pushed, kind)
        .map_err(|(zh, en)| DocError::Refused(Refused::new(doc_id, kind, "field_authority", zh, en)))?;
    let has_conflicts = !one_writer && doc.has_conflicts();
    let row = typed_row(doc_id, kind, json)?;
    Ok(Checked { row, saved, heads: doc.heads(), has_conflicts, enterprise: None })
}

/// Step 4, field authority, against who wrote each change: the caller, or for a relay's push
/// the original author it named (a change it named nobody for is the relay account's own,
/// which may write nothing a phone could not).
fn authority_by_author(
    caller: &Caller,
    origins: &Origins,
    doc: &Document,
    before: &[ChangeHash],
    pushed: &[Change],
    kind: RecordKind,
) -> Result<(), (String, String)> {
    // What came down from the upstream was checked there (`authority::check` passes it),
    // whoever it names as authors.
    if origins.is_empty() || caller.device_id == super::UPSTREAM_DEVICE {
        return authority::check(caller, doc, before, pushed, kind);
    }
    let mut groups: Vec<(Caller, Vec<Change>)> = Vec::new();
    for c in pushed {
        let who = origins.get(&c.hash().to_string()).map_or_else(|| caller.clone(), |o| o.as_caller(caller));
        match groups.iter_mut().find(|(w, _)| w.role == who.role && w.device_id == who.device_id) {
            Some((_, changes)) => changes.push(c.clone()),
            None => groups.push((who, vec![c.clone()])),
        }
    }
    groups.iter().try_for_each(|(who, changes)| authority::check(who, doc, before, changes, kind))
}

/// Steps 6 and 7: scope, then the writes. Returns the credit codes to refresh and the visit.
#[allow(clippy::too_many_arguments, clippy::result_large_err)]
fn write(
    tx: &Transaction<'_>,
    caller: &Caller,
    doc_id: &str,
    kind: RecordKind,
    checked: Checked,
    old_county: Option<&str>,
    genesis: Option<Change>,
    raw: &[(String, Vec<u8>)],
    now: i64,
) -> Result<(Vec<String>, Option<Box<Visit>>), DocError> {
    let Checked { row, saved, heads, has_conflicts, enterprise } = checked;
    // A visit's enterprise row: read for the whole push already, or now.
    let enterprise = match (&row, enterprise) {
        (Row::Visit(v), None) => EnterpriseRow::of(tx, &v.enterprise_id)?,
        (_, known) => known.flatten(),
    };
    let county = scope_of(tx, caller, doc_id, kind, &row, old_county, enterprise.as_ref())?;
    let registered = enterprise.map(|e| e.registered);
    let affected = rows::store(
        tx,
        caller,
        rows::Write {
            doc_id,
            kind,
            heads: &heads,
            saved: &saved,
            has_conflicts,
            row: &row,
            county: &county,
            registered,
            old_county,
            genesis,
            raw,
        },
        now,
    )?;
    let visit = match row {
        Row::Visit(v) => Some(v),
        Row::Enterprise(_) => None,
    };
    Ok((affected, visit))
}

/// A document with a push's changes merged in, and what the later steps need of before.
struct Merged {
    doc: Document,
    /// The record's county as the server held it (`None`: new to the server).
    old_county: Option<String>,
    /// The record's version as the server held it (empty for a new record).
    before: Vec<ChangeHash>,
    /// The pushed changes, for the field authority check, which reads their operations
    /// (visits only: an enterprise has no server-owned fields).
    pushed: Vec<Change>,
    /// The genesis change of a record new to the server, fed before its changes.
    genesis: Option<Change>,
    /// New to the server and written by one actor only (besides its genesis): it cannot
    /// hold a conflict, since one actor's changes are never concurrent with each other.
    one_writer: bool,
}

/// Step 2, merge: the stored document (of the same kind) or the deterministic genesis of a
/// new one, with the changes applied.
#[allow(clippy::result_large_err)]
fn merge(tx: &Transaction<'_>, doc_id: &str, kind: RecordKind, changes: Vec<Incoming>) -> Result<Merged, DocError> {
    let refuse = |code, zh: &str, en: &str| DocError::Refused(Refused::new(doc_id, kind, code, zh, en));
    let stored: Option<(String, Vec<u8>, String)> = tx
        .prepare_cached("SELECT kind, bytes, county_code FROM documents WHERE id = ?1")?
        .query_row([doc_id], |r| Ok((r.get("kind")?, r.get("bytes")?, r.get("county_code")?)))
        .optional()?;
    let decoded: Vec<Change> = changes.into_iter().map(|c| c.change).collect();
    let pushed: Vec<Change> = if kind == RecordKind::Visit { decoded.clone() } else { Vec::new() };
    let one_writer = stored.is_none() && one_writer(kind, doc_id, &decoded);
    let invalid_change = || refuse("invalid_change", "修改无法应用", "a change could not be applied");
    let mut before = Vec::new();
    let (doc, old_county, genesis) = match stored {
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
            (doc, Some(county), None)
        }
        None => {
            let mut doc = Document::genesis(kind, doc_id);
            let genesis = doc.changes_since(&[]).into_iter().next();
            guarded(|| doc.apply_changes(decoded).ok()).ok_or_else(invalid_change)?;
            (doc, None, genesis)
        }
    };
    Ok(Merged { doc, old_county, before, pushed, genesis, one_writer })
}

/// Step 3, a merged document's checks: no missing dependencies, within the limits, its
/// saved bytes load again, and its root `kind`/`id` unchanged (a change may overwrite them;
/// such a document would no longer load). Returns its JSON and its saved bytes.
#[allow(clippy::result_large_err)]
fn verified(
    doc_id: &str,
    kind: RecordKind,
    doc: &Document,
    limits: &Limits,
) -> Result<(serde_json::Value, Vec<u8>), DocError> {
    if doc.has_missing_deps() {
        return Err(DocError::Refused(Refused::new(
            doc_id,
            kind,
            "missing_dependencies",
            "缺少先前的修改，请完整上传",
            "changes whose dependencies were not sent",
        )));
    }
    let (json, saved) =
        checked_document(doc, limits).map_err(|r| DocError::Refused(Refused::limit(doc_id, kind, &r)))?;
    if json.get("kind").and_then(|v| v.as_str()) != Some(kind.as_str())
        || json.get("id").and_then(|v| v.as_str()) != Some(doc_id)
    {
        return Err(invalid(
            doc_id,
            kind,
            "记录的类型或编号被修改".into(),
            "the record's kind or id was changed".into(),
        ));
    }
    Ok((json, saved))
}

fn invalid(doc_id: &str, kind: RecordKind, zh: String, en: String) -> DocError {
    DocError::Refused(Refused::new(doc_id, kind, "invalid_record", zh, en))
}

/// Step 5, the record as typed, with what scope and the relational rows depend on
/// validated. Only that is enforced here: full validation is the phone's job before
/// writing, and refusing a merge of two valid edits would hold back the pushing phone's
/// record. The record is typed from the JSON already read: one walk of the document, not two.
#[allow(clippy::result_large_err)]
fn typed_row(doc_id: &str, kind: RecordKind, json: serde_json::Value) -> Result<Row, DocError> {
    let invalid = |zh: String, en: String| invalid(doc_id, kind, zh, en);
    let from_validation = |e: ohassist_core::ValidationError| invalid(e.message_zh(), e.message_en());
    Ok(match kind {
        RecordKind::Enterprise => {
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
    })
}

/// Step 6, scope: the record's county, which the caller's unit must cover, as it must the
/// county the server held it in (a record may not be moved out of another county either).
/// A visit's county is its enterprise's, whatever the visit says: an enterprise must be on
/// the server (or come in the same push) before its visits, and a visit can reach no figure
/// of a county its enterprise is not in. A refusal here names the record for the console.
/// `enterprise`: a visit's enterprise's row (`None`: the server does not hold it).
#[allow(clippy::result_large_err)]
fn scope_of(
    tx: &Transaction<'_>,
    caller: &Caller,
    doc_id: &str,
    kind: RecordKind,
    row: &Row,
    old_county: Option<&str>,
    enterprise: Option<&EnterpriseRow>,
) -> Result<String, DocError> {
    let enterprise_of_visit: Option<(String, String)> = match row {
        Row::Enterprise(_) => None,
        Row::Visit(_) => enterprise.map(|e| (e.county.clone(), e.name.clone())),
    };
    let label = match row {
        Row::Enterprise(e) => e.name.clone(),
        Row::Visit(v) => {
            let name = enterprise_of_visit.as_ref().map_or(v.enterprise_id.as_str(), |(_, n)| n.as_str());
            format!("{} · {name}", v.visit_date)
        }
    };
    let (claimed, enterprise) = match (row, &enterprise_of_visit) {
        (Row::Enterprise(e), _) => (e.county.code.clone(), String::new()),
        (Row::Visit(v), Some((county, _))) => (county.clone(), v.enterprise_id.clone()),
        (Row::Visit(v), None) => (String::new(), v.enterprise_id.clone()),
    };
    let refuse_labelled = |code, zh: &str, en: &str| {
        DocError::Refused(Refused::new(doc_id, kind, code, zh, en).about(&label, &claimed, &enterprise))
    };
    let county = match (row, enterprise_of_visit) {
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
    let in_scope = scope::covers(tx, &caller.org_unit, &county)?
        && match old_county {
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
    Ok(county)
}
