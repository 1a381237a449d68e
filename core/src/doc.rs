//! Records as Automerge documents: creation, reading, field-level writing, conflicts.
//!
//! Sans-I/O: this module never touches SQLite or the network, so the phone, the server
//! and the tests run the same merge rules.
//!
//! # How a record maps onto a document
//! A record's JSON form (see `crate::model`) is the document: objects are Automerge maps,
//! scalars are scalars, and the (rare) arrays are replaced whole. Writes are *diffs*: only
//! the leaves that differ between the record as read and the record as edited are put,
//! and nothing is ever deleted. This matters: re-putting an unchanged value over a
//! conflict makes Automerge resolve that conflict silently, and a whole-struct reconcile
//! (autosurgeon) does exactly that, so we do not use it.
//!
//! # Genesis
//! Every document starts with a deterministic *genesis* change: a fixed actor derived from
//! the record's kind and id, time 0, and a frozen skeleton of every container the record
//! has. Two phones that register the same enterprise (same credit code) offline produce
//! the byte-identical genesis, so after a merge their edits land in the *same* nested maps
//! instead of two competing ones of which only one would show. The skeletons below are
//! frozen: changing them would make old and new genesis changes collide (see
//! `docs/adr/0001-records-as-automerge-documents.md`).

use std::collections::HashMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, Change, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{Map, Value as Json};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::limits::{Limits, Refusal};
use crate::model::RecordKind;

/// Who made a change: the user logged in and the device they used. Stored as the
/// change's message, so the server's audit trail and the conflict list can name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Author {
    pub user: String,
    pub device: String,
}

impl Author {
    fn message(&self) -> String {
        serde_json::to_string(self).expect("two strings serialise")
    }

    /// The author recorded in a change, if it carries one (genesis changes do not).
    pub fn of_change(change: &Change) -> Option<Author> {
        change.message().and_then(|m| serde_json::from_str(m).ok())
    }
}

/// One of the concurrent values of a conflicted field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ConflictValue {
    pub value: Json,
    pub author: Option<Author>,
    /// Milliseconds since the Unix epoch, as the writing device's clock said.
    pub time_ms: i64,
    /// The Automerge operation id, `counter@actor`: stable, for choosing this value.
    pub op: String,
    /// The hash of the change that wrote it, by which a server finds who pushed it.
    #[serde(default)]
    pub change: String,
}

/// A field with more than one concurrent value. `values[0]` is the one the record shows
/// until somebody chooses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Conflict {
    /// Segments from the root, e.g. `["hazard_identification", "posts", "<id>", "name"]`.
    pub path: Vec<String>,
    pub values: Vec<ConflictValue>,
}

impl Conflict {
    pub fn path_string(&self) -> String {
        self.path.join(".")
    }
}

const ENTERPRISE_SKELETON: &str = r#"{"county":{},"contact":{},"assistance_years":{}}"#;
const VISIT_SKELETON: &str = r#"{"inspectors":{},"self_inspection":{"items":{}},"hazard_identification":{"posts":{}},"management_system":{},"notification":{"items":{}},"training":{"sessions":{}},"remediation":{"posts":{}},"chronic_screening":{},"review":{},"attachments":{}}"#;

/// The actor of a record's genesis change: derived, never random, never used for anything else.
pub fn genesis_actor(kind: RecordKind, id: &str) -> ActorId {
    let mut h = Sha256::new();
    h.update(b"ohassist/genesis/v1\0");
    h.update(kind.as_str().as_bytes());
    h.update(b"\0");
    h.update(id.as_bytes());
    ActorId::from(&h.finalize()[..16])
}

/// The hash of the canonical genesis change of `(kind, id)`: the only change of the genesis
/// actor a replica accepts from outside (a forged one would make every replica that already
/// holds the real one refuse the record's later changes as a duplicate sequence number).
pub fn genesis_hash(kind: RecordKind, id: &str) -> ChangeHash {
    Document::genesis(kind, id).heads()[0]
}

/// A record document: its id, its kind and the Automerge document.
#[derive(Debug, Clone)]
pub struct Document {
    id: String,
    kind: RecordKind,
    doc: Automerge,
}

impl Document {
    /// A new document holding only the genesis change of `(kind, id)`.
    pub fn genesis(kind: RecordKind, id: &str) -> Document {
        static SKELETONS: std::sync::OnceLock<(Json, Json)> = std::sync::OnceLock::new();
        let (enterprise, visit) = SKELETONS.get_or_init(|| {
            let parse = |s| serde_json::from_str(s).expect("frozen skeleton is JSON");
            (parse(ENTERPRISE_SKELETON), parse(VISIT_SKELETON))
        });
        let skeleton = match kind {
            RecordKind::Enterprise => enterprise,
            RecordKind::Visit => visit,
        };
        let mut doc = Automerge::new().with_actor(genesis_actor(kind, id));
        doc.transact_with::<_, _, automerge::AutomergeError, _>(
            |_| CommitOptions::default().with_time(0),
            |tx| {
                tx.put(ROOT, "kind", kind.as_str())?;
                tx.put(ROOT, "id", id)?;
                for (key, value) in skeleton.as_object().expect("object") {
                    put_json(tx, &ROOT, key, value)?;
                }
                Ok(())
            },
        )
        .expect("genesis writes cannot fail");
        Document { id: id.to_string(), kind, doc }
    }

    /// A record new to this replica, built from changes that include its genesis (as a
    /// phone's first push of a record does): cheaper than [`Document::genesis`] followed by
    /// the changes. Nothing is checked here: the caller checks `has_missing_deps` and that
    /// the record is what it claims to be (`kind`/`id` of [`Document::json`]), and decides
    /// whether the genesis must be the canonical one (it must for enterprises).
    pub fn from_changes(kind: RecordKind, id: &str, changes: Vec<Change>) -> Result<Document> {
        let mut doc = Automerge::new();
        doc.apply_changes(changes).map_err(|e| Error::CorruptDocument { id: id.to_string(), reason: e.to_string() })?;
        Ok(Document { id: id.to_string(), kind, doc })
    }

    /// Loads a stored document, checking that it is the record it claims to be.
    pub fn load(kind: RecordKind, id: &str, bytes: &[u8]) -> Result<Document> {
        let corrupt = |reason: String| Error::CorruptDocument { id: id.to_string(), reason };
        let doc = Automerge::load(bytes).map_err(|e| corrupt(e.to_string()))?;
        let document = Document { id: id.to_string(), kind, doc };
        document.check_identity().map_err(corrupt)?;
        Ok(document)
    }

    fn check_identity(&self) -> std::result::Result<(), String> {
        let kind = self.doc.get(ROOT, "kind").ok().flatten().and_then(|(v, _)| v.into_string().ok());
        let id = self.doc.get(ROOT, "id").ok().flatten().and_then(|(v, _)| v.into_string().ok());
        if kind.as_deref() != Some(self.kind.as_str()) || id.as_deref() != Some(self.id.as_str()) {
            return Err(format!(
                "document says it is {:?} {:?}, expected {} {}",
                kind,
                id,
                self.kind.as_str(),
                self.id
            ));
        }
        Ok(())
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn kind(&self) -> RecordKind {
        self.kind
    }

    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    /// The record as JSON (the visible value of every field), at `heads` or now. Objects
    /// nested deeper than [`READ_DEPTH`] read as `null`: a document from outside is checked
    /// with [`Document::check_limits`] first, and no read may recurse without bound.
    pub fn json(&self, heads: Option<&[ChangeHash]>) -> Json {
        read_obj(&self.doc, &ROOT, ObjType::Map, heads, 0)
    }

    /// Walks the whole document, iteratively, and refuses one nested deeper than
    /// `limits.max_depth` or holding a value longer than `limits.max_value_bytes`. Run on
    /// every document built from bytes from outside, before anything else reads it.
    pub fn check_limits(&self, limits: &Limits) -> std::result::Result<(), Refusal> {
        self.check_limits_noting_conflicts(limits).map(|_| ())
    }

    /// [`Document::check_limits`], which also answers whether any map key holds concurrent
    /// values: when none does, [`Document::has_conflicts`] is false without a second walk (a
    /// key that does may still hold one value twice, which only `has_conflicts` tells).
    pub fn check_limits_noting_conflicts(&self, limits: &Limits) -> std::result::Result<bool, Refusal> {
        let mut concurrent = false;
        let mut stack = vec![(ROOT, ObjType::Map, 0usize)];
        let check_value = |v: &automerge::ValueRef<'_>| match v {
            automerge::ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) if s.len() > limits.max_value_bytes => {
                Err(Refusal::ValueTooLong { found: s.len(), max: limits.max_value_bytes })
            }
            automerge::ValueRef::Scalar(automerge::ScalarValueRef::Bytes(b)) if b.len() > limits.max_value_bytes => {
                Err(Refusal::ValueTooLong { found: b.len(), max: limits.max_value_bytes })
            }
            _ => Ok(()),
        };
        while let Some((obj, typ, depth)) = stack.pop() {
            if depth > limits.max_depth {
                return Err(Refusal::TooDeep { found: depth, max: limits.max_depth });
            }
            match typ {
                ObjType::Map | ObjType::Table => {
                    for item in self.doc.map_range(&obj, ..) {
                        check_value(&item.value)?;
                        concurrent |= item.conflict;
                        if let automerge::ValueRef::Object(t) = item.value {
                            stack.push((item.id(), t, depth + 1));
                        }
                    }
                }
                ObjType::List => {
                    for item in self.doc.list_range(&obj, ..) {
                        check_value(&item.value)?;
                        if let automerge::ValueRef::Object(t) = item.value {
                            stack.push((item.id(), t, depth + 1));
                        }
                    }
                }
                ObjType::Text => {
                    let len = self.doc.length(&obj);
                    if len > limits.max_value_bytes {
                        return Err(Refusal::ValueTooLong { found: len, max: limits.max_value_bytes });
                    }
                }
            }
        }
        Ok(concurrent)
    }

    /// The typed record, now.
    pub fn read<T: DeserializeOwned>(&self) -> Result<T> {
        self.read_at(None)
    }

    pub fn read_at<T: DeserializeOwned>(&self, heads: Option<&[ChangeHash]>) -> Result<T> {
        serde_json::from_value(self.json(heads))
            .map_err(|e| Error::CorruptDocument { id: self.id.clone(), reason: e.to_string() })
    }

    /// Writes the fields of `new` that differ from `old` (both JSON forms of the record),
    /// as one change by `actor` on behalf of `author`. Returns the change, if anything
    /// differed.
    pub fn write_diff(&mut self, actor: &ActorId, author: &Author, old: &Json, new: &Json) -> Result<Option<Change>> {
        self.doc.set_actor(actor.clone());
        let message = author.message();
        let result = self.doc.transact_with::<_, _, automerge::AutomergeError, _>(
            |_| CommitOptions::default().with_message(message).with_time(now_ms()),
            |tx| diff_obj(tx, &ROOT, old, new),
        );
        let hash = result.map_err(|f| f.error)?.hash;
        Ok(hash.and_then(|_| self.doc.get_last_local_change()))
    }

    /// Writes `new` against the record as it was at `base` (the version an editing screen
    /// loaded). If other changes arrived since, the edit is made on a fork at `base` with a
    /// one-off actor and merged, so a field both sides changed becomes a listed conflict
    /// instead of one side silently overwriting the other.
    pub fn write_from_base<T: Serialize + DeserializeOwned>(
        &mut self,
        actor: &ActorId,
        author: &Author,
        base: &[ChangeHash],
        new: &T,
    ) -> Result<Option<Change>> {
        let new_json = to_json(new);
        let mut heads = self.heads();
        heads.sort();
        let mut base_sorted = base.to_vec();
        base_sorted.sort();
        if heads == base_sorted {
            let old = to_json(&self.read::<T>()?);
            return self.write_diff(actor, author, &old, &new_json);
        }
        let missing = self.doc.get_missing_deps(base);
        if !missing.is_empty() {
            return Err(Error::NotFound(format!("version {} of record {}", missing[0], self.id)));
        }
        let mut fork = Document { id: self.id.clone(), kind: self.kind, doc: self.doc.fork_at(base)? };
        let old = to_json(&fork.read::<T>()?);
        let change = fork.write_diff(&ActorId::random(), author, &old, &new_json)?;
        if let Some(change) = &change {
            self.doc.apply_changes([change.clone()])?;
        }
        Ok(change)
    }

    /// Applies changes received from elsewhere. Changes already held are ignored, changes
    /// whose dependencies are missing wait inside Automerge until those arrive.
    pub fn apply_changes(&mut self, changes: Vec<Change>) -> Result<()> {
        self.doc.apply_changes(changes)?;
        Ok(())
    }

    /// Merges a whole saved document (as a first sync sends them) into this one.
    pub fn merge_saved(&mut self, bytes: &[u8]) -> Result<()> {
        self.doc
            .load_incremental(bytes)
            .map_err(|e| Error::CorruptDocument { id: self.id.clone(), reason: e.to_string() })?;
        Ok(())
    }

    /// Every change this document holds that is not in `have` (and their dependencies).
    pub fn changes_since(&self, have: &[ChangeHash]) -> Vec<Change> {
        self.doc.get_changes(have)
    }

    /// True when some change arrived whose dependencies have not.
    pub fn has_missing_deps(&self) -> bool {
        !self.doc.get_missing_deps(&[]).is_empty()
    }

    /// Every field that holds more than one concurrent value, visible value first.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut found = Vec::new();
        let mut path = Vec::new();
        collect_conflicts(&self.doc, &ROOT, &mut path, &mut found);
        if found.is_empty() {
            return found;
        }
        // Map each (actor, counter) to its change, to name who wrote each value and when.
        let changes = self.doc.get_changes(&[]);
        let mut by_actor: HashMap<&ActorId, Vec<&Change>> = HashMap::new();
        for c in &changes {
            by_actor.entry(c.actor_id()).or_default().push(c);
        }
        for conflict in &mut found {
            for value in &mut conflict.values {
                let Some((counter, actor)) = parse_op(&value.op) else { continue };
                let change = by_actor.get(&actor).and_then(|cs| {
                    cs.iter().find(|c| {
                        let start = c.start_op().get();
                        counter >= start && counter < start + c.len() as u64
                    })
                });
                if let Some(change) = change {
                    value.author = Author::of_change(change);
                    value.time_ms = change.timestamp();
                    value.change = change.hash().to_string();
                }
            }
        }
        found
    }

    pub fn has_conflicts(&self) -> bool {
        let mut path = Vec::new();
        let mut found = Vec::new();
        collect_conflicts(&self.doc, &ROOT, &mut path, &mut found);
        !found.is_empty()
    }

    /// Settles the conflict at `path` with `value` (one of the listed values, or a value
    /// typed by a supervisor): a new change that supersedes every concurrent value.
    pub fn resolve(&mut self, actor: &ActorId, author: &Author, path: &[String], value: &Json) -> Result<Change> {
        let no_conflict = || Error::NoSuchConflict { id: self.id.clone(), path: path.join(".") };
        let (last, parents) = path.split_last().ok_or_else(no_conflict)?;
        let mut obj = ROOT;
        for seg in parents {
            match self.doc.get(&obj, seg.as_str())? {
                Some((Value::Object(ObjType::Map), id)) => obj = id,
                _ => return Err(no_conflict()),
            }
        }
        if self.doc.get_all(&obj, last.as_str())?.len() < 2 {
            return Err(no_conflict());
        }
        self.doc.set_actor(actor.clone());
        let message = author.message();
        let result = self.doc.transact_with::<_, _, automerge::AutomergeError, _>(
            |_| CommitOptions::default().with_message(message).with_time(now_ms()),
            |tx| put_json(tx, &obj, last, value),
        );
        let hash = result.map_err(|f| f.error)?.hash.ok_or_else(no_conflict)?;
        Ok(self.doc.get_change_by_hash(&hash).expect("just committed"))
    }

    /// The change history, oldest first: who changed the record and when (genesis excluded).
    pub fn history(&self) -> Vec<HistoryEntry> {
        self.doc
            .get_changes(&[])
            .iter()
            .filter_map(|c| {
                Author::of_change(c).map(|author| HistoryEntry {
                    hash: c.hash().to_string(),
                    author,
                    time_ms: c.timestamp(),
                    operations: c.len(),
                })
            })
            .collect()
    }
}

/// One change in a record's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryEntry {
    pub hash: String,
    pub author: Author,
    pub time_ms: i64,
    pub operations: usize,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The JSON form of a record.
pub fn to_json<T: Serialize>(record: &T) -> Json {
    serde_json::to_value(record).expect("records serialise to JSON")
}

fn op_string(id: &ObjId) -> String {
    match id {
        ObjId::Root => "root".to_string(),
        ObjId::Id(counter, actor, _) => format!("{counter}@{actor}"),
    }
}

fn parse_op(s: &str) -> Option<(u64, ActorId)> {
    let (counter, actor) = s.split_once('@')?;
    Some((counter.parse().ok()?, ActorId::try_from(actor).ok()?))
}

fn scalar_json(s: &ScalarValue) -> Json {
    match s {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) => Json::from(*i),
        ScalarValue::Uint(u) => Json::from(*u),
        ScalarValue::F64(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
        ScalarValue::Counter(c) => Json::from(i64::from(c)),
        ScalarValue::Timestamp(t) => Json::from(*t),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Null => Json::Null,
        ScalarValue::Bytes(b) => Json::String(hex::encode(b)),
        ScalarValue::Unknown { .. } => Json::Null,
    }
}

/// How deep [`Document::json`] reads: far more than any record has, far less than a stack
/// overflows at.
pub const READ_DEPTH: usize = 64;

fn value_json(doc: &Automerge, value: &Value<'_>, id: &ObjId, heads: Option<&[ChangeHash]>, depth: usize) -> Json {
    match value {
        Value::Scalar(s) => scalar_json(s),
        Value::Object(t) => read_obj(doc, id, *t, heads, depth + 1),
    }
}

fn read_obj(doc: &Automerge, obj: &ObjId, typ: ObjType, heads: Option<&[ChangeHash]>, depth: usize) -> Json {
    if depth > READ_DEPTH {
        return Json::Null;
    }
    match typ {
        ObjType::Map | ObjType::Table => {
            let mut map = Map::new();
            let items = match heads {
                Some(h) => doc.map_range_at(obj, .., h),
                None => doc.map_range(obj, ..),
            };
            for item in items {
                let id = item.id();
                let value: Value<'static> = item.value.into();
                let json = value_json(doc, &value, &id, heads, depth);
                map.insert(item.key.into_owned(), json);
            }
            Json::Object(map)
        }
        ObjType::List => {
            let len = match heads {
                Some(h) => doc.length_at(obj, h),
                None => doc.length(obj),
            };
            (0..len)
                .filter_map(|i| {
                    let got = match heads {
                        Some(h) => doc.get_at(obj, i, h),
                        None => doc.get(obj, i),
                    };
                    got.ok().flatten().map(|(v, id)| value_json(doc, &v, &id, heads, depth))
                })
                .collect()
        }
        ObjType::Text => Json::String(match heads {
            Some(h) => doc.text_at(obj, h).unwrap_or_default(),
            None => doc.text(obj).unwrap_or_default(),
        }),
    }
}

fn scalar_of(value: &Json) -> ScalarValue {
    match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Array(_) | Json::Object(_) => unreachable!("containers are not scalars"),
    }
}

/// Puts a JSON value at `key` of the map `obj`: containers as new objects, filled.
fn put_json<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &Json,
) -> Result<(), automerge::AutomergeError> {
    match value {
        Json::Object(map) => {
            let child = tx.put_object(obj, key, ObjType::Map)?;
            for (k, v) in map {
                put_json(tx, &child, k, v)?;
            }
        }
        Json::Array(items) => {
            let child = tx.put_object(obj, key, ObjType::List)?;
            for (i, v) in items.iter().enumerate() {
                insert_json(tx, &child, i, v)?;
            }
        }
        scalar => tx.put(obj, key, scalar_of(scalar))?,
    }
    Ok(())
}

fn insert_json<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    index: usize,
    value: &Json,
) -> Result<(), automerge::AutomergeError> {
    match value {
        Json::Object(map) => {
            let child = tx.insert_object(list, index, ObjType::Map)?;
            for (k, v) in map {
                put_json(tx, &child, k, v)?;
            }
        }
        Json::Array(items) => {
            let child = tx.insert_object(list, index, ObjType::List)?;
            for (i, v) in items.iter().enumerate() {
                insert_json(tx, &child, i, v)?;
            }
        }
        scalar => tx.insert(list, index, scalar_of(scalar))?,
    }
    Ok(())
}

/// Writes into the map `obj` the leaves of `new` that differ from `old`. Keys absent from
/// `new` are left alone: records never delete, they set flags.
fn diff_obj<T: Transactable>(tx: &mut T, obj: &ObjId, old: &Json, new: &Json) -> Result<(), automerge::AutomergeError> {
    let empty = Map::new();
    let old_map = old.as_object().unwrap_or(&empty);
    let Some(new_map) = new.as_object() else { return Ok(()) };
    for (key, new_value) in new_map {
        let old_value = old_map.get(key);
        if old_value == Some(new_value) {
            continue;
        }
        match new_value {
            Json::Object(_) => match tx.get(obj, key.as_str())? {
                Some((Value::Object(ObjType::Map), child)) => {
                    diff_obj(tx, &child, old_value.unwrap_or(&Json::Null), new_value)?;
                }
                _ => put_json(tx, obj, key, new_value)?,
            },
            _ => put_json(tx, obj, key, new_value)?,
        }
    }
    Ok(())
}

fn collect_conflicts(doc: &Automerge, obj: &ObjId, path: &mut Vec<String>, out: &mut Vec<Conflict>) {
    // map_range flags conflicted keys, so only those pay for get_all.
    let items: Vec<(String, bool, bool, ObjId)> = doc
        .map_range(obj, ..)
        .map(|i| (i.key.to_string(), i.conflict, matches!(i.value, automerge::ValueRef::Object(ObjType::Map)), i.id()))
        .collect();
    for (key, conflict, is_map, id) in items {
        path.push(key.clone());
        if conflict {
            if let Ok(all) = doc.get_all(obj, key.as_str()) {
                // get_all lists values in op order; the visible one (the winner) is the last.
                let values: Vec<ConflictValue> = all
                    .iter()
                    .rev()
                    .map(|(v, id)| ConflictValue {
                        value: value_json(doc, v, id, None, path.len()),
                        author: None,
                        time_ms: 0,
                        op: op_string(id),
                        change: String::new(),
                    })
                    .collect();
                // Two devices that wrote the same value (both registering one enterprise, say)
                // do not disagree: that is not a conflict anybody must settle.
                if values.iter().any(|v| v.value != values[0].value) {
                    out.push(Conflict { path: path.clone(), values });
                }
            }
        }
        if is_map && path.len() <= READ_DEPTH {
            collect_conflicts(doc, &id, path, out);
        }
        path.pop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The skeletons are frozen (ADR 0001): these hashes pin them, so a change to a skeleton
    /// fails here before a server refuses every phone's genesis as non-canonical.
    #[test]
    fn genesis_changes_are_frozen() {
        assert_eq!(
            genesis_hash(RecordKind::Enterprise, "91350100M000100Y43").to_string(),
            "569ba0de04446120778a3e7c179025208ad208f0f7067d5bc98943701430e2e0"
        );
        assert_eq!(
            genesis_hash(RecordKind::Visit, "00000000000000000000000000000000").to_string(),
            "2696ab969c5282e24f6e16edc83857a299c4daa439bc8184b995fb8270e3eabe"
        );
    }
}
