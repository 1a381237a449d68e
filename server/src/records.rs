//! The records the county holds. A newcomer finds, by folder:
//!
//! - [`push`]: applying a push, document by document, in named steps (decode, merge,
//!   checks, field authority in [`authority`], typed row, scope), written by [`rows`]
//!   (the document, its relational row, the change feed); what was refused is kept by
//!   [`refused`] for the console;
//! - here: the errors, server edits ([`apply_server_edit`], the same path for changes
//!   the server writes), "load in scope or 404" ([`load_in_scope`]), and reading pull
//!   pages ([`first_sync_page`], [`changes_page`]);
//! - [`transfer`]: settling where an enterprise belongs, and applying its kept refusals.
//!
//! Everything here runs inside a SQLite transaction the caller owns, and knows no HTTP.
//! Every pushed byte is hostile until checked; a document that fails any check is refused
//! alone ([`Refused`]); the rest of the push is applied.

mod authority;
mod push;
mod refused;
mod rows;
mod transfer;

pub use push::{
    apply_push, decode_changes, decode_push, limits, origins_of, Applied, Checked, Decoded, Incoming, Origin, Origins,
};
pub use refused::{
    decode_changes_kept, refused_uploads, RefusedUpload, MAX_REFUSED_DEVICE_BYTES, MAX_REFUSED_DOC_BYTES,
};
pub use transfer::{kept_origins, transfer_enterprise, Transferred};

use std::collections::HashMap;

use crate::sql::{params, Connection, OptionalExtension, Transaction};
use automerge::Change;
use ohassist_core::doc::{self, Document};
use ohassist_core::limits::Refusal;
use ohassist_core::model::RecordKind;
use ohassist_core::sync::wire::{WireChange, WireDocument};

use crate::accounts::Caller;
use crate::db::DbError;
use crate::scope;
use push::apply_to_document;

/// Most change rows one incremental pull page scans, so that a client far behind in a busy
/// county still gets an answer quickly (excluded rows count too).
const MAX_SCAN_ROWS: usize = 20_000;

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
    Db(crate::sql::Error),
}

impl From<crate::sql::Error> for DocError {
    fn from(e: crate::sql::Error) -> Self {
        DocError::Db(e)
    }
}

impl From<DocError> for RecordsError {
    fn from(e: DocError) -> Self {
        match e {
            DocError::Db(e) => RecordsError::from(e),
            DocError::Refused(r) => RecordsError::Refused(Box::new(r)),
        }
    }
}

/// Why a push, a server edit or a transfer failed as a whole (a document refused within a
/// push is not an error: it is in [`Applied::refused`]). `api/` and `web/` decide what each
/// is to a client.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    /// A push of more changes than one may carry.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A pushed document id no record can have (empty, too long, control characters).
    #[error("document id of {chars} characters")]
    BadDocId { chars: usize },
    /// A server edit (or a transfer's) that the push path's rules refused.
    #[error("document {} refused: {}", .0.doc_id, .0.reason_en)]
    Refused(Box<Refused>),
    /// Unknown, of another kind, or outside the caller's unit: told apart from nothing else,
    /// so that existence is not leaked.
    #[error("not found")]
    NotFound,
    /// The caller's role may not do this.
    #[error("the caller's role may not do this")]
    Forbidden,
    /// A field the caller's role may not send.
    #[error("the caller's role may not send {field}: {en}")]
    ForbiddenField { field: &'static str, zh: String, en: String },
    /// A value the caller chose that the server refuses (a transfer's county).
    #[error("invalid {field}: {en}")]
    Invalid { field: &'static str, zh: String, en: String },
    /// A stored document that does not load or read: the server's fault.
    #[error("stored record: {0}")]
    Document(#[from] ohassist_core::Error),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<crate::reports::status::StatusError> for RecordsError {
    fn from(e: crate::reports::status::StatusError) -> Self {
        match e {
            crate::reports::status::StatusError::Sql(e) => e.into(),
            crate::reports::status::StatusError::Record(e) => RecordsError::Document(e),
        }
    }
}

impl From<crate::sql::Error> for RecordsError {
    fn from(e: crate::sql::Error) -> Self {
        RecordsError::Db(e.into())
    }
}

/// The documents this device had refused that a transfer took in since: the device is told
/// on its pull, so it pushes them again at once (and hears them acknowledged).
pub fn settled_for(conn: &Connection, device_id: &str) -> crate::sql::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT doc_id FROM refused_uploads WHERE device_id = ?1 AND settled = 1 ORDER BY doc_id LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![device_id, refused::MAX_REFUSED_PER_DEVICE], |r| r.get(0))?;
    rows.collect()
}

/// Who wrote each change of a document, by change hash, as the server recorded it (the
/// account and device of the token, not the message the phone wrote in the change; for a
/// change a relay pushed, the original author it named).
pub fn recorded_authors(conn: &Connection, doc_id: &str) -> crate::sql::Result<HashMap<String, doc::Author>> {
    let mut stmt = conn.prepare_cached(
        "SELECT c.hash, coalesce(o.user_id, c.user_id), coalesce(o.device_id, c.device_id)
         FROM changes c LEFT JOIN change_origins o ON o.hash = c.hash
         WHERE c.doc_id = ?1 AND c.whole = 0",
    )?;
    let rows =
        stmt.query_map([doc_id], |r| Ok((r.get::<_, String>(0)?, doc::Author { user: r.get(1)?, device: r.get(2)? })))?;
    rows.collect()
}

/// The county of record `id` (of `kind`) when `org_unit` covers it. Unknown, of another
/// kind or outside the unit are one answer, [`RecordsError::NotFound`], so that existence
/// is not leaked. Reads one row, not the document.
pub fn county_in_scope(conn: &Connection, org_unit: &str, kind: RecordKind, id: &str) -> Result<String, RecordsError> {
    let county: Option<String> = conn
        .prepare_cached("SELECT county_code FROM documents WHERE id = ?1 AND kind = ?2")?
        .query_row([id, kind.as_str()], |r| r.get("county_code"))
        .optional()?;
    match county {
        Some(c) if scope::covers(conn, org_unit, &c)? => Ok(c),
        _ => Err(RecordsError::NotFound),
    }
}

/// Record `id` (of `kind`) as someone of `org_unit` may see it: its document, or
/// [`RecordsError::NotFound`] as [`county_in_scope`] says. The one "load in scope or 404"
/// of the console, its JSON API and the attachments.
pub fn load_in_scope(conn: &Connection, org_unit: &str, kind: RecordKind, id: &str) -> Result<Document, RecordsError> {
    let found: Option<(Vec<u8>, String)> = conn
        .prepare_cached("SELECT bytes, county_code FROM documents WHERE id = ?1 AND kind = ?2")?
        .query_row([id, kind.as_str()], |r| Ok((r.get("bytes")?, r.get("county_code")?)))
        .optional()?;
    match found {
        Some((bytes, county)) if scope::covers(conn, org_unit, &county)? => Ok(Document::load(kind, id, &bytes)?),
        _ => Err(RecordsError::NotFound),
    }
}

/// The device id recorded in the feed for changes the server writes on behalf of a
/// supervisor or an admin (reviews, conflict resolutions, imported enterprises).
pub const WEB_DEVICE: &str = "web";

/// The device id recorded in the feed for changes that came down from this server's upstream
/// (`crate::relay`): never a phone's (a device id cannot hold `:`), never relayed up again,
/// and checked for field authority by the upstream, not here.
pub const UPSTREAM_DEVICE: &str = "upstream:";

/// Writes one change made by the server itself to a document, exactly as if a device had
/// pushed it: `edit` receives the current document (or the deterministic genesis of a new
/// one) and returns the change it made, written with a fresh actor and an
/// `Author { user, device: "web" }`. The change is then applied through the push path in
/// one transaction: validated, scope-checked against `caller`, saved, rows and status
/// rebuilt, and appended to the feed (after the genesis for a new document) so phones pull
/// it. Returns the change's hash, or `None` when `edit` changed nothing. `edit`'s error is
/// the caller's; the push path's own failures become one through [`RecordsError`].
pub fn apply_server_edit<F, E>(
    conn: &mut Connection,
    caller: &Caller,
    kind: RecordKind,
    doc_id: &str,
    now: i64,
    edit: F,
) -> Result<Option<String>, E>
where
    F: FnOnce(&mut Document) -> Result<Option<Change>, E>,
    E: From<RecordsError>,
{
    let db = |e: crate::sql::Error| E::from(RecordsError::from(e));
    let tx = conn.transaction_with_behavior(crate::sql::TransactionBehavior::Immediate).map_err(db)?;
    let hash = apply_server_edit_in(&tx, caller, kind, doc_id, now, edit)?;
    tx.commit().map_err(db)?;
    Ok(hash)
}

/// [`apply_server_edit`] inside a transaction the caller owns (an import writes many
/// documents in one).
pub fn apply_server_edit_in<F, E>(
    tx: &Transaction<'_>,
    caller: &Caller,
    kind: RecordKind,
    doc_id: &str,
    now: i64,
    edit: F,
) -> Result<Option<String>, E>
where
    F: FnOnce(&mut Document) -> Result<Option<Change>, E>,
    E: From<RecordsError>,
{
    let Some(mut doc) = current_or_genesis(tx, kind, doc_id)? else { return Err(RecordsError::NotFound.into()) };
    let Some(mut change) = edit(&mut doc)? else { return Ok(None) };
    let hash = change.hash().to_string();
    let incoming =
        Incoming { doc_id: doc_id.to_string(), kind, hash: hash.clone(), bytes: change.bytes().to_vec(), change };
    let write = || -> Result<(), RecordsError> {
        for code in
            apply_to_document(tx, caller, &Default::default(), doc_id, kind, vec![incoming], None, now, &limits())?.0
        {
            crate::reports::status::refresh(tx, &code)?;
        }
        Ok(())
    };
    write()?;
    Ok(Some(hash))
}

/// The document as the server holds it, or the deterministic genesis of a new one; `None`
/// when the id is a record of another kind.
fn current_or_genesis(tx: &Transaction<'_>, kind: RecordKind, doc_id: &str) -> Result<Option<Document>, RecordsError> {
    let stored: Option<(String, Vec<u8>)> = tx
        .query_row("SELECT kind, bytes FROM documents WHERE id = ?1", [doc_id], |r| {
            Ok((r.get("kind")?, r.get("bytes")?))
        })
        .optional()?;
    Ok(match stored {
        Some((stored_kind, _)) if stored_kind != kind.as_str() => None,
        Some((_, bytes)) => Some(Document::load(kind, doc_id, &bytes)?),
        None => Some(Document::genesis(kind, doc_id)),
    })
}

/// One page of a pull, in wire terms.
pub struct Page {
    pub documents: Vec<WireDocument>,
    pub changes: Vec<WireChange>,
    /// The hash of each of `changes`, in order.
    pub hashes: Vec<String>,
    pub cursor: u64,
    pub page_token: Option<String>,
    pub more: bool,
}

/// Where a first sync stands: the feed position it will end at, and the last document sent
/// (documents go county by county, by id within each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstSyncToken {
    pub snapshot_seq: u64,
    pub county: String,
    pub last_id: String,
}

impl FirstSyncToken {
    pub fn encode(&self) -> String {
        format!(
            "v2.{}.{}.{}",
            self.snapshot_seq,
            hex::encode(self.county.as_bytes()),
            hex::encode(self.last_id.as_bytes())
        )
    }

    /// A token of the documented forms. One of version 1 (documents by id alone, before they
    /// went county by county) starts the pages again at the same snapshot: the phone merges
    /// what it is sent twice.
    pub fn decode(s: &str) -> Option<FirstSyncToken> {
        let mut parts = s.splitn(4, '.');
        let version = parts.next()?;
        let snapshot_seq = parts.next()?.parse().ok()?;
        // Any bytes are a position in the order: a token of the documented form always reads.
        let text = |h: &str| hex::decode(h).ok().map(|b| String::from_utf8_lossy(&b).into_owned());
        match version {
            "v1" => {
                text(parts.next()?)?;
                Some(FirstSyncToken { snapshot_seq, county: String::new(), last_id: String::new() })
            }
            "v2" => {
                let county = text(parts.next()?)?;
                let last_id = text(parts.next()?)?;
                Some(FirstSyncToken { snapshot_seq, county, last_id })
            }
            _ => None,
        }
    }
}

fn kind_of(s: &str) -> crate::sql::Result<RecordKind> {
    RecordKind::parse(s).ok_or_else(|| crate::sql::Error::Other(format!("a stored record of unknown kind {s:?}")))
}

/// A page of a first sync: whole saved documents in scope, county by county and by id within
/// each, after the token's position. The first page (no token) fixes the snapshot: the feed
/// position the client continues from once every document is sent. Documents changed after
/// it may come twice (as a document and as changes), which applying changes tolerates.
///
/// Each county is read along `documents_by_county (county_code, id)`, so a page costs what it
/// sends: no sort, and nothing out of scope is read (ordered by id across a scope of many
/// counties, SQLite sorted every document in scope for every page).
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
) -> crate::sql::Result<Page> {
    let tx = conn.transaction()?;
    let token = match token {
        Some(t) => t,
        None => FirstSyncToken {
            snapshot_seq: tx.query_row("SELECT coalesce(max(seq), 0) FROM changes", [], |r| r.get::<_, i64>(0))? as u64,
            county: String::new(),
            last_id: String::new(),
        },
    };
    let counties: Vec<String> = tx
        .prepare_cached(&format!(
            // The counties that hold documents, from ?1 on, one index probe each (not a scan
            // of every document's index entry), then those in scope.
            "WITH RECURSIVE held (code) AS (
                 SELECT min(county_code) FROM documents WHERE county_code >= ?1
                 UNION ALL
                 SELECT (SELECT min(county_code) FROM documents WHERE county_code > held.code)
                 FROM held WHERE held.code IS NOT NULL)
             SELECT d.code AS county_code FROM held d WHERE d.code IS NOT NULL AND {} ORDER BY d.code",
            scope::sql("d.code", "?2")
        ))?
        .query_map(params![token.county, scope::prefix(org_unit)], |r| r.get(0))?
        .collect::<crate::sql::Result<_>>()?;
    let mut stmt = tx.prepare_cached(
        "SELECT d.id, d.kind, d.bytes FROM documents d
         WHERE d.county_code = ?1 AND d.id > ?2
           AND (NOT EXISTS (SELECT 1 FROM changes c WHERE c.doc_id = d.id AND c.device_id = ?3)
                OR EXISTS (SELECT 1 FROM changes c WHERE c.doc_id = d.id AND c.device_id <> ?3))
         ORDER BY d.id",
    )?;
    let mut documents = Vec::new();
    let mut size = 0;
    let mut at: Option<(String, String)> = None;
    'counties: for county in counties {
        let after = if county == token.county { token.last_id.as_str() } else { "" };
        let mut rows = stmt.query(params![county, after, device_id])?;
        while let Some(r) = rows.next()? {
            if size >= budget {
                break 'counties;
            }
            let bytes: Vec<u8> = r.get("bytes")?;
            size += bytes.len();
            let doc_id: String = r.get("id")?;
            at = Some((county.clone(), doc_id.clone()));
            documents.push(WireDocument { doc_id, kind: kind_of(&r.get::<_, String>("kind")?)?, bytes });
        }
        if size >= budget {
            // Full at the end of a county: the next page looks for more from there.
            break;
        }
    }
    let page = match at {
        Some((county, last_id)) if size >= budget => Page {
            documents,
            changes: Vec::new(),
            hashes: Vec::new(),
            cursor: 0,
            page_token: Some(FirstSyncToken { snapshot_seq: token.snapshot_seq, county, last_id }.encode()),
            more: true,
        },
        _ => Page {
            documents,
            changes: Vec::new(),
            hashes: Vec::new(),
            cursor: token.snapshot_seq,
            page_token: None,
            more: false,
        },
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
) -> crate::sql::Result<Page> {
    let tx = conn.transaction()?;
    // Rows the caller will not get are scanned without their bytes.
    // A `whole` row (a record moved into a county) is answered with the whole document.
    let mut stmt = tx.prepare_cached(&format!(
        "SELECT c.seq, c.doc_id, c.kind,
                CASE WHEN c.device_id <> ?3 AND {}
                     THEN CASE WHEN c.whole = 1 THEN d.bytes ELSE c.bytes END
                     WHEN c.whole = 1 AND c.also_county <> '' AND {}
                     THEN c.bytes END,
                c.whole, c.hash
         FROM changes c JOIN documents d ON d.id = c.doc_id
         WHERE c.seq > ?1 ORDER BY c.seq",
        scope::sql("d.county_code", "?2"),
        scope::sql("c.also_county", "?2")
    ))?;
    let mut rows = stmt.query(params![cursor as i64, scope::prefix(org_unit), device_id])?;
    let mut changes = Vec::new();
    let mut hashes = Vec::new();
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
                hashes.push(r.get(5)?);
            }
        }
    }
    Ok(Page { documents, changes, hashes, cursor: last, page_token: None, more })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_tokens_round_trip_and_refuse_garbage() {
        let t = FirstSyncToken { snapshot_seq: 42, county: "350121".into(), last_id: "91350100M000100Y43".into() };
        assert_eq!(FirstSyncToken::decode(&t.encode()), Some(t));
        // A version-1 token (by id alone) starts the pages again at its snapshot.
        assert_eq!(
            FirstSyncToken::decode("v1.7.3931"),
            Some(FirstSyncToken { snapshot_seq: 7, county: String::new(), last_id: String::new() })
        );
        assert_eq!(FirstSyncToken::decode("v3.1.00.00"), None);
        assert_eq!(FirstSyncToken::decode("v2.x.00.00"), None);
        assert_eq!(FirstSyncToken::decode("v2.1.zz.00"), None);
        assert_eq!(FirstSyncToken::decode("v2.1.00"), None);
        assert_eq!(FirstSyncToken::decode("v1.1.zz"), None);
        assert_eq!(FirstSyncToken::decode(""), None);
    }
}
