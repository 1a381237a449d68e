//! Field authority: which caller may write which fields of a record, read from the
//! operations of the pushed changes (not from the merged result, which a concurrent edit
//! could mask).
//!
//! - `review.*` is the supervisors' (written through the console, as server edits). From a
//!   phone, an inspector may only *submit*: put `review.state = "submitted"` on a visit that
//!   is a draft or was returned.
//! - `signature.*` is written on the phone when the principal signs. Once a visit is signed,
//!   a change may touch the signature only to sign again: it must write `signed_at` too (a
//!   new signing); no console edit writes it.
//! - A relay's push is checked change by change against the original author it names (a
//!   county supervisor's review relayed by the county server is a console edit); a change it
//!   names nobody for is the relay account's own, held to an inspector's rules.

use std::collections::HashMap;

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{Change, ChangeHash, ReadDoc, ScalarValue};
use ohassist_core::doc::Document;
use ohassist_core::model::{RecordKind, ReviewState, Visit};

use super::{UPSTREAM_DEVICE, WEB_DEVICE};
use crate::accounts::{Caller, Role};

/// The top-level fields a change writes, each with the keys it puts directly inside it.
#[derive(Default)]
struct Writes {
    /// root key → (key inside it → value put, when a scalar)
    fields: HashMap<String, Vec<(String, Option<ScalarValue>)>>,
}

fn writes_of(doc: &Document, changes: &[Change]) -> Writes {
    let am = doc.automerge();
    let mut out = Writes::default();
    let mut root_key_of: HashMap<String, Option<String>> = HashMap::new();
    // The genesis (checked canonical before) only creates the skeleton's containers.
    let genesis = ohassist_core::doc::genesis_actor(doc.kind(), doc.id());
    for change in changes.iter().filter(|c| c.actor_id() != &genesis) {
        for op in change.decode().operations {
            let key = match &op.key {
                Key::Map(k) => k.to_string(),
                Key::Seq(_) => String::new(),
            };
            let value = match &op.action {
                OpType::Put(v) => Some(v.clone()),
                _ => None,
            };
            match &op.obj {
                ObjectId::Root => out.fields.entry(key).or_default().push((String::new(), value)),
                ObjectId::Id(id) => {
                    let name = format!("{}@{}", id.0, id.1);
                    let root_key = root_key_of
                        .entry(name.clone())
                        .or_insert_with(|| {
                            let obj = am.import_obj(&name).ok()?;
                            let parents = am.parents(obj).ok()?;
                            parents.last().map(|p| match p.prop {
                                automerge::Prop::Map(k) => k,
                                automerge::Prop::Seq(i) => i.to_string(),
                            })
                        })
                        .clone();
                    if let Some(root_key) = root_key {
                        out.fields.entry(root_key).or_default().push((key, value));
                    }
                }
            }
        }
    }
    out
}

/// Refuses (with the reason in Chinese and English) a push whose changes, applied in `doc`,
/// write fields the caller has no authority over. `before` is the version the
/// server held (empty for a new record); it is read only when review or signature fields
/// are written.
pub fn check(
    caller: &Caller,
    doc: &Document,
    before: &[ChangeHash],
    changes: &[Change],
    kind: RecordKind,
) -> Result<(), (String, String)> {
    // What comes down from the upstream server was checked there, against its authors (a
    // city supervisor's review, a principal's signature on a phone of another tier).
    if kind != RecordKind::Visit || caller.device_id == UPSTREAM_DEVICE {
        return Ok(());
    }
    let writes = writes_of(doc, changes);
    if !writes.fields.contains_key("review") && !writes.fields.contains_key("signature") {
        return Ok(());
    }
    let console = caller.device_id == WEB_DEVICE && matches!(caller.role, Role::Supervisor | Role::Admin);
    let before_visit: Option<Visit> = if before.is_empty() { None } else { doc.read_at(Some(before)).ok() };
    if let Some(review) = writes.fields.get("review") {
        if !console {
            let may_submit = before_visit
                .as_ref()
                .is_none_or(|v| matches!(v.review.state, ReviewState::Draft | ReviewState::Returned));
            let only_submits = review.iter().all(|(key, value)| {
                key == "state"
                    && matches!(value, Some(ScalarValue::Str(s)) if s.as_str() == ReviewState::Submitted.code())
            });
            if !(may_submit && only_submits) {
                return Err((
                    "审核结果只能由主管在控制台填写；检查员只能提交草稿或退回的记录".into(),
                    "review fields are written by supervisors in the console; an inspector may only submit a draft or a returned visit".into(),
                ));
            }
        }
    }
    if let Some(signature) = writes.fields.get("signature") {
        if console {
            return Err((
                "签名只能在手机上由企业负责人签署".into(),
                "a signature is made on the phone, never in the console".into(),
            ));
        }
        let signed = before_visit.as_ref().and_then(|v| v.signature.as_ref()).is_some_and(|s| !s.signed_at.is_empty());
        let signs_again = signature.iter().any(|(key, _)| key == "signed_at");
        if signed && !signs_again {
            return Err((
                "记录已签名，签名信息不能修改，只能重新签署".into(),
                "the visit is signed: its signature may not be edited, only signed again".into(),
            ));
        }
    }
    Ok(())
}
