//! The [`Store`] object: the device's offline store, one SQLite file.
//!
//! Every method delegates to `ohassist_core::store::Store` in one line. All of them block
//! the calling thread on disk I/O (and on the store's single writer lock): call them off the
//! main thread. The network calls on the same object are async (`sync.rs`).

use std::sync::Arc;

use ohassist_core::{doc, model as m, status, store as s};

use crate::error::{OhassistError, Result};
use crate::model::{mirror_record, Bridge, Enterprise, Industry, RecordKind, ReviewState, Visit};

mirror_record! {
    /// What the app knows of a new attachment besides its bytes.
    NewAttachment = s::NewAttachment {
        #[uniffi(default = None)] kind: Option<crate::model::AttachmentKind>,
        #[uniffi(default = "")] media_type: String,
        #[uniffi(default = "")] caption: String,
        /// RFC 3339, the device's clock.
        #[uniffi(default = "")] taken_at: String,
        /// The section it documents (its code), or empty.
        #[uniffi(default = "")] section: String,
        #[uniffi(default = "")] item_id: String,
        #[uniffi(default = None)] location: Option<crate::model::GeoFix>,
    }
}

mirror_record! {
    /// An enterprise as read from the store, with the version to pass back to `update_enterprise`.
    EnterpriseRecord = s::Record::<m::Enterprise> {
        id: String,
        /// The document heads this record was read at.
        version: Vec<String>,
        record: Enterprise,
        has_conflicts: bool,
        /// Changes not yet acknowledged by a server.
        pending_sync: bool,
    }
}

mirror_record! {
    /// A visit as read from the store, with the version to pass back to `update_visit`.
    VisitRecord = s::Record::<m::Visit> {
        id: String,
        /// The document heads this record was read at.
        version: Vec<String>,
        record: Visit,
        has_conflicts: bool,
        /// Changes not yet acknowledged by a server.
        pending_sync: bool,
    }
}

mirror_record! {
    /// Filters for the enterprise list; `None` means any.
    EnterpriseFilter = s::EnterpriseFilter {
        #[uniffi(default = None)] county_code: Option<String>,
        #[uniffi(default = None)] industry: Option<Industry>,
        /// On the assistance list in this year.
        #[uniffi(default = None)] year: Option<i32>,
        /// Part of the name, or the start of the credit code.
        #[uniffi(default = None)] query: Option<String>,
        #[uniffi(default = false)] include_deleted: bool,
        #[uniffi(default = None)] limit: Option<u32>,
        #[uniffi(default = 0)] offset: u32,
    }
}

mirror_record! {
    /// A row of the enterprise list.
    EnterpriseSummary = s::EnterpriseSummary {
        id: String,
        name: String,
        county_code: String,
        county_name: String,
        industry: Option<Industry>,
        years: Vec<i32>,
        deleted: bool,
        has_conflicts: bool,
        pending_sync: bool,
    }
}

mirror_record! {
    /// Filters for the visit list; `None` means any.
    VisitFilter = s::VisitFilter {
        #[uniffi(default = None)] county_code: Option<String>,
        #[uniffi(default = None)] enterprise_id: Option<String>,
        /// Inclusive `YYYY-MM-DD` bound.
        #[uniffi(default = None)] from_date: Option<String>,
        /// Inclusive `YYYY-MM-DD` bound.
        #[uniffi(default = None)] to_date: Option<String>,
        #[uniffi(default = None)] review_state: Option<ReviewState>,
        #[uniffi(default = false)] include_deleted: bool,
        #[uniffi(default = false)] only_conflicts: bool,
        #[uniffi(default = false)] only_pending: bool,
        #[uniffi(default = None)] limit: Option<u32>,
        #[uniffi(default = 0)] offset: u32,
    }
}

mirror_record! {
    /// A row of the visit list.
    VisitSummary = s::VisitSummary {
        id: String,
        enterprise_id: String,
        enterprise_name: String,
        county_code: String,
        visit_date: String,
        review_state: ReviewState,
        inspectors: String,
        deleted: bool,
        has_conflicts: bool,
        pending_sync: bool,
    }
}

mirror_record! {
    /// Who made a change: the user logged in and the device they used.
    Author = doc::Author {
        user: String,
        device: String,
    }
}

/// One of the concurrent values of a conflicted field.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ConflictValue {
    /// The value as JSON (a string, number, boolean, null, or an object for a whole item):
    /// pass it, or any other valid value, to `resolve_conflict`.
    pub value_json: String,
    pub author: Option<Author>,
    /// Milliseconds since the Unix epoch, as the writing device's clock said.
    pub time_ms: i64,
    /// The Automerge operation id, `counter@actor`.
    pub op: String,
}

/// A field with more than one concurrent value; `values[0]` is the one the record shows
/// until somebody chooses.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Conflict {
    /// The field's dotted path, e.g. `hazard_identification.posts.<id>.name`: pass it to
    /// `resolve_conflict`.
    pub path: String,
    /// The field for people, e.g. `危害因素辨识 › 破碎岗位 › 接触人数`.
    pub label_zh: String,
    /// The same in English, e.g. `Hazard identification › 破碎岗位 › Exposed workers`.
    pub label_en: String,
    pub values: Vec<ConflictValue>,
}

impl Bridge<Conflict> for (doc::Conflict, m::FieldLabel) {
    fn bridge(self) -> Conflict {
        let (c, label) = self;
        Conflict { path: c.path_string(), label_zh: label.zh, label_en: label.en, values: c.values.bridge() }
    }
}

impl Bridge<ConflictValue> for doc::ConflictValue {
    fn bridge(self) -> ConflictValue {
        ConflictValue {
            value_json: self.value.to_string(),
            author: self.author.bridge(),
            time_ms: self.time_ms,
            op: self.op,
        }
    }
}

/// A record that holds conflicts.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RecordRef {
    pub kind: RecordKind,
    pub id: String,
}

impl Bridge<RecordRef> for (m::RecordKind, String) {
    fn bridge(self) -> RecordRef {
        RecordRef { kind: self.0.bridge(), id: self.1 }
    }
}

mirror_record! {
    /// A record the server refused: kept on the phone, readable and editable, pushed again
    /// by itself when the reason may have cleared (an edit, news from the server about it,
    /// a new login, or after a while). Show it with its reason and advice.
    HeldRecord = s::HeldRecord {
        doc_id: String,
        kind: RecordKind,
        /// The server's code: `out_of_scope`, `unknown_enterprise`, `invalid_record`, …
        code: String,
        reason_zh: String,
        reason_en: String,
        /// What the inspector can do about it.
        advice_zh: String,
        advice_en: String,
        /// When the server refused it (ms since the epoch).
        held_at_ms: i64,
        /// Local changes of the record waiting for the server.
        pending_changes: u64,
    }
}

mirror_record! {
    /// A held record the inspector discarded, as exported and kept in the store: the record's
    /// JSON and its whole saved document (every change, loadable again).
    DiscardedRecord = s::DiscardedRecord {
        doc_id: String,
        kind: RecordKind,
        json: String,
        bytes: Vec<u8>,
        code: String,
        reason_zh: String,
        reason_en: String,
        discarded_at_ms: i64,
    }
}

mirror_record! {
    /// The computed columns of Table 1 for one enterprise and year.
    Table1Status = status::Table1Status {
        /// 是否申报
        declared: bool,
        /// 是否开展职业病危害因素检测
        detection_done: bool,
        /// 是否开展职业健康检查
        health_examination_done: bool,
        /// 主要负责人是否参加培训
        principal_trained: bool,
        /// 职业卫生管理人员是否参加培训
        managers_trained: bool,
        /// 劳动者是否参加培训
        workers_trained: bool,
        /// 是否纳入专项治理
        special_governance: bool,
        /// 完成专项治理 (Table 2)
        special_governance_completed: bool,
        /// 是否为市级帮扶对象
        city_level_target: bool,
    }
}

/// The device's offline store. Share one per file across the app (it is thread-safe and
/// serialises writers); its record methods block on disk I/O, its network calls are async.
#[derive(Debug, uniffi::Object)]
pub struct Store {
    pub(crate) inner: Arc<s::Store>,
    /// Held by the network call running on this store (`sync.rs`).
    pub(crate) io_lock: Arc<tokio::sync::Mutex<()>>,
}

#[uniffi::export]
impl Store {
    /// Opens the encrypted store at `path` (a file in app-private storage) with `key`, the 32
    /// bytes the app keeps in the Android Keystore / iOS Keychain (`bindings/README.md`),
    /// creating it and the device's identity on first use. A store of an earlier app version,
    /// still plain, is encrypted in place on this first open with a key. Fails with `WrongKey`
    /// (and changes nothing) when the key does not open the store. Blocks: disk I/O, a schema
    /// upgrade after an app update, and that one-time encryption (seconds for a full store).
    #[uniffi::constructor]
    pub fn open(path: String, key: Vec<u8>) -> Result<Arc<Self>> {
        let key = s::StoreKey::from_slice(&key)?;
        Ok(Arc::new(Store { inner: Arc::new(s::Store::open(path, &key)?), io_lock: Default::default() }))
    }

    /// This device's id, kept in the store. No I/O.
    pub fn device_id(&self) -> String {
        self.inner.device_id().to_string()
    }

    /// Registers an enterprise and returns its id (its normalised credit code); fails with
    /// `AlreadyExists` naming the record to open instead. Blocks: disk I/O.
    pub fn create_enterprise(&self, enterprise: Enterprise) -> Result<String> {
        Ok(self.inner.create_enterprise(enterprise.bridge())?)
    }

    /// Reads an enterprise. Blocks: disk I/O.
    pub fn get_enterprise(&self, id: String) -> Result<EnterpriseRecord> {
        Ok(self.inner.get_enterprise(&id)?.bridge())
    }

    /// Saves an enterprise edited from the record read at `version`; only changed fields are
    /// written, so concurrent edits of other fields survive. Blocks: disk I/O.
    pub fn update_enterprise(
        &self,
        id: String,
        enterprise: Enterprise,
        version: Vec<String>,
    ) -> Result<EnterpriseRecord> {
        Ok(self.inner.update_enterprise(&id, &enterprise.bridge(), &version)?.bridge())
    }

    /// The id of the enterprise with this credit code, if the store holds it. Blocks: disk I/O.
    pub fn find_enterprise(&self, credit_code: String) -> Result<Option<String>> {
        Ok(self.inner.find_enterprise(&credit_code)?)
    }

    /// The enterprise list. Blocks: disk I/O (index tables only, no documents).
    pub fn list_enterprises(&self, filter: EnterpriseFilter) -> Result<Vec<EnterpriseSummary>> {
        Ok(self.inner.list_enterprises(&filter.bridge())?.bridge())
    }

    /// Enterprises whose name contains `query` or whose credit code starts with it, at most
    /// `limit`. Blocks: disk I/O.
    pub fn search_enterprises(&self, query: String, limit: u32) -> Result<Vec<EnterpriseSummary>> {
        self.list_enterprises(EnterpriseFilter { query: Some(query), limit: Some(limit), ..EnterpriseFilter::any() })
    }

    /// Records a new visit and returns its id. The enterprise must be in the store; an empty
    /// county code is taken from it. Blocks: disk I/O.
    pub fn create_visit(&self, visit: Visit) -> Result<String> {
        Ok(self.inner.create_visit(visit.bridge())?)
    }

    /// Reads a visit. Blocks: disk I/O.
    pub fn get_visit(&self, id: String) -> Result<VisitRecord> {
        Ok(self.inner.get_visit(&id)?.bridge())
    }

    /// Saves a visit edited from the record read at `version`; only changed fields are
    /// written. Blocks: disk I/O.
    pub fn update_visit(&self, id: String, visit: Visit, version: Vec<String>) -> Result<VisitRecord> {
        Ok(self.inner.update_visit(&id, &visit.bridge(), &version)?.bridge())
    }

    /// The visit list. Blocks: disk I/O (index tables only).
    pub fn list_visits(&self, filter: VisitFilter) -> Result<Vec<VisitSummary>> {
        Ok(self.inner.list_visits(&filter.bridge())?.bridge())
    }

    /// Marks a visit deleted; it stays recoverable with `restore_visit` and syncs as deleted.
    /// Blocks: disk I/O.
    pub fn delete_visit(&self, id: String) -> Result<VisitRecord> {
        Ok(self.inner.delete_visit(&id)?.bridge())
    }

    /// Attaches the file at `path` (a photo, a signature image, a PDF) to a visit: the bytes
    /// are copied into the store once (by SHA-256) and the visit references them; they upload
    /// after the records on the next sync. Blocks: disk I/O (reads the whole file).
    pub fn add_attachment(&self, visit_id: String, path: String, attachment: NewAttachment) -> Result<VisitRecord> {
        Ok(self.inner.add_attachment_file(&visit_id, std::path::Path::new(&path), attachment.bridge())?.bridge())
    }

    /// The enterprise principal signs the visit: the image at `image_path` (PNG or JPEG)
    /// becomes its signature attachment and the visit records the signer, `signed_at`
    /// (RFC 3339) and the version signed. Blocks: disk I/O.
    pub fn sign_visit(
        &self,
        visit_id: String,
        signer_name: String,
        image_path: String,
        media_type: String,
        signed_at: String,
    ) -> Result<VisitRecord> {
        let image = std::fs::read(&image_path).map_err(ohassist_core::Error::from)?;
        Ok(self.inner.sign_visit(&visit_id, &signer_name, &image, &media_type, &signed_at)?.bridge())
    }

    /// Removes an attachment from a visit (the bytes go once the server holds them and no
    /// visit references them). Blocks: disk I/O.
    pub fn remove_attachment(&self, visit_id: String, sha256: String) -> Result<VisitRecord> {
        Ok(self.inner.remove_attachment(&visit_id, &sha256)?.bridge())
    }

    /// A visit's attachments (removed ones included, marked `deleted`). Blocks: disk I/O.
    pub fn list_attachments(&self, visit_id: String) -> Result<Vec<crate::model::Attachment>> {
        Ok(self.inner.get_visit(&visit_id)?.record.attachments.into_values().map(|a| a.bridge()).collect())
    }

    /// Deletes attachment files no visit references any more and the server holds.
    /// Returns how many. Blocks: disk I/O (reads every visit).
    pub fn collect_garbage(&self) -> Result<u32> {
        Ok(self.inner.collect_garbage()? as u32)
    }

    /// Undoes `delete_visit`. Blocks: disk I/O.
    pub fn restore_visit(&self, id: String) -> Result<VisitRecord> {
        Ok(self.inner.restore_visit(&id)?.bridge())
    }

    /// The conflicts of one record. Blocks: disk I/O.
    pub fn list_conflicts(&self, id: String) -> Result<Vec<Conflict>> {
        Ok(self.inner.labelled_conflicts(&id)?.bridge())
    }

    /// Every record that holds conflicts, most recently changed first. Blocks: disk I/O.
    pub fn conflicted_records(&self) -> Result<Vec<RecordRef>> {
        Ok(self.inner.conflicted_records()?.bridge())
    }

    /// Records the server refused, oldest first, with the reason in both languages and
    /// what the inspector can do. Blocks: disk I/O.
    pub fn held_records(&self) -> Result<Vec<HeldRecord>> {
        Ok(self.inner.held_records()?.bridge())
    }

    /// The confirmation `discard_held` needs for held record `doc_id`: show the inspector
    /// what goes (an export is kept) and pass it back. It names the record's version.
    /// Blocks: disk I/O.
    pub fn discard_confirmation(&self, doc_id: String) -> Result<String> {
        Ok(self.inner.discard_confirmation(&doc_id)?)
    }

    /// Discards held record `doc_id`, keeping its export in the store (`discarded_records`)
    /// and returning it. Refused (`NotDiscarded`) without the current confirmation.
    /// Blocks: disk I/O.
    pub fn discard_held(&self, doc_id: String, confirmation: String) -> Result<DiscardedRecord> {
        Ok(self.inner.discard_held(&doc_id, &confirmation)?.bridge())
    }

    /// The exports of every discarded record, oldest first. Blocks: disk I/O.
    pub fn discarded_records(&self) -> Result<Vec<DiscardedRecord>> {
        Ok(self.inner.discarded_records()?.bridge())
    }

    /// Settles the conflict at `path` (as `Conflict.path` gives it) of record `id` with the
    /// JSON `value_json`; the result must still be a valid record. Blocks: disk I/O.
    pub fn resolve_conflict(&self, id: String, path: String, value_json: String) -> Result<()> {
        Ok(self.inner.resolve_conflict(&id, &path, &parse_json(&path, &value_json)?)?)
    }

    /// Table 1's columns for an enterprise in `year`, from the visits the store holds.
    /// Blocks: disk I/O.
    pub fn table1_status(&self, enterprise_id: String, year: i32) -> Result<Table1Status> {
        Ok(self.inner.table1_status(&enterprise_id, year)?.bridge())
    }

    /// Local changes not yet acknowledged by a server. Blocks: disk I/O.
    pub fn pending_changes(&self) -> Result<u64> {
        Ok(self.inner.outbox_len()? as u64)
    }
}

/// 32 random bytes from the operating system, for an app that lets the library make the store
/// key it then keeps in the platform keystore. No I/O.
#[uniffi::export]
pub fn generate_store_key() -> Vec<u8> {
    s::StoreKey::generate().as_bytes().to_vec()
}

impl EnterpriseFilter {
    fn any() -> Self {
        s::EnterpriseFilter::default().bridge()
    }
}

fn parse_json(field: &str, json: &str) -> Result<serde_json::Value> {
    serde_json::from_str(json).map_err(|e| OhassistError::InvalidInput {
        field: field.to_string(),
        reason_zh: "不是有效的 JSON 值".into(),
        reason_en: format!("is not a JSON value: {e}"),
    })
}
