//! Attachment bytes in the device store: content-addressed files beside the database,
//! written atomically, referenced from visits by SHA-256, and garbage-collected only when
//! no document references them and the server holds them.
//!
//! In an encrypted store every file is sealed (`crypto.rs`) and named by a keyed hash of its
//! SHA-256; the SHA-256 of the plaintext stays the attachment's id, so de-duplication and the
//! server's checks are unchanged, and the bytes leave the store only as plaintext, through
//! [`Store::read_attachment`] and [`Store::read_attachment_range`].

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{params, OptionalExtension};
use sha2::{Digest, Sha256};

use super::{Record, Store};
use crate::doc::now_ms;
use crate::error::{Error, Reason, Result, ValidationError};
use crate::model::{Attachment, AttachmentKind, GeoFix, Visit};

/// What the app knows of a new attachment besides its bytes.
#[derive(Debug, Clone, Default)]
pub struct NewAttachment {
    pub kind: Option<AttachmentKind>,
    pub media_type: String,
    pub caption: String,
    /// RFC 3339, the device's clock.
    pub taken_at: String,
    pub section: String,
    pub item_id: String,
    pub location: Option<GeoFix>,
}

/// An attachment waiting to be uploaded; its bytes come from [`Store::read_attachment_range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub sha256: String,
    pub visit_id: String,
    pub size: u64,
}

/// Largest attachment the store accepts (the server may be stricter).
pub const MAX_ATTACHMENT_BYTES: u64 = 50 * 1024 * 1024;

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Writes `bytes` to `path` so that a crash leaves either no file or the whole file:
/// a temporary file in the same folder, flushed to disk, renamed over, folder synced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("attachment paths have a folder");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", crate::model::new_item_id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Where a plain store keeps attachment `sha256`.
fn plain_blob_path(dir: &Path, sha256: &str) -> PathBuf {
    dir.join(&sha256[..2]).join(sha256)
}

impl Store {
    /// The folder of attachment files, beside the database file.
    pub fn attachments_dir(&self) -> PathBuf {
        let mut name = self.path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push(".attachments");
        self.path.with_file_name(name)
    }

    fn blob_path(&self, sha256: &str) -> PathBuf {
        match &self.cipher {
            Some(cipher) => {
                let name = cipher.file_name(sha256);
                self.attachments_dir().join(&name[..2]).join(name)
            }
            None => plain_blob_path(&self.attachments_dir(), sha256),
        }
    }

    /// Writes the bytes of attachment `sha256` (sealed in an encrypted store), atomically.
    fn write_blob(&self, sha256: &str, bytes: &[u8]) -> Result<()> {
        let path = self.blob_path(sha256);
        if path.exists() {
            return Ok(());
        }
        match &self.cipher {
            Some(cipher) => write_atomically(&path, &cipher.seal(sha256, bytes)),
            None => write_atomically(&path, bytes),
        }
    }

    /// Whether this store holds the bytes of attachment `sha256`.
    pub fn has_attachment(&self, sha256: &str) -> Result<bool> {
        crate::validate::sha256_field("sha256", sha256)?;
        let known: bool =
            self.conn()
                .query_row("SELECT EXISTS (SELECT 1 FROM attachments WHERE sha256 = ?1)", [sha256], |r| r.get(0))?;
        Ok(known && self.blob_path(sha256).exists())
    }

    /// The plaintext of attachment `sha256`, if this store holds it (a screen showing it).
    pub fn read_attachment(&self, sha256: &str) -> Result<Option<Vec<u8>>> {
        if !self.has_attachment(sha256)? {
            return Ok(None);
        }
        let path = self.blob_path(sha256);
        let bytes = match &self.cipher {
            Some(cipher) => cipher.open_file(sha256, &path)?,
            None => std::fs::read(&path)?,
        };
        self.conn().execute("UPDATE attachments SET used_at = ?2 WHERE sha256 = ?1", params![sha256, now_ms()])?;
        Ok(Some(bytes))
    }

    /// `len` plaintext bytes of attachment `sha256` from `offset` (an upload's chunk).
    pub fn read_attachment_range(&self, sha256: &str, offset: u64, len: u64) -> Result<Vec<u8>> {
        crate::validate::sha256_field("sha256", sha256)?;
        let path = self.blob_path(sha256);
        if !path.exists() {
            return Err(Error::NotFound(format!("attachment {sha256}")));
        }
        match &self.cipher {
            Some(cipher) => cipher.open_range(sha256, &path, offset, len),
            None => {
                use std::io::{Read, Seek, SeekFrom};
                let mut file = std::fs::File::open(&path)?;
                // The range comes from the app: checked against the file before anything is
                // allocated for it.
                let size = file.metadata()?.len();
                if offset.checked_add(len).is_none_or(|end| end > size) {
                    return Err(ValidationError::new(
                        "len",
                        Reason::Malformed(format!("range {offset}+{len} lies beyond the file's {size} bytes")),
                    )
                    .into());
                }
                file.seek(SeekFrom::Start(offset))?;
                let mut chunk = vec![0u8; len as usize];
                file.read_exact(&mut chunk)?;
                Ok(chunk)
            }
        }
    }

    /// Encrypts the files of a store that was plain (kept under their SHA-256 until now), once:
    /// each is sealed under its new name, written atomically, and only then is the plain file
    /// removed, so a kill at any point leaves every attachment readable and the next open
    /// resumes. Does nothing once the store records that all files are sealed.
    pub(super) fn seal_attachment_files(&self) -> Result<()> {
        let Some(cipher) = &self.cipher else { return Ok(()) };
        if self.meta(super::META_ATTACHMENTS_SEALED)?.is_some() {
            return Ok(());
        }
        let dir = self.attachments_dir();
        let mut sealed = 0;
        if dir.exists() {
            for sub in std::fs::read_dir(&dir)? {
                let sub = sub?.path();
                if !sub.is_dir() {
                    continue;
                }
                for entry in std::fs::read_dir(&sub)? {
                    let path = entry?.path();
                    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
                    if name.starts_with(".tmp-") {
                        std::fs::remove_file(&path)?;
                        continue;
                    }
                    if super::crypto::is_sealed(&path)? {
                        continue;
                    }
                    let bytes = std::fs::read(&path)?;
                    if sha256_hex(&bytes) == name {
                        let target = self.blob_path(&name);
                        if !target.exists() {
                            write_atomically(&target, &cipher.seal(&name, &bytes))?;
                        }
                        sealed += 1;
                    } else {
                        tracing::warn!("removing a damaged plain attachment file");
                    }
                    std::fs::remove_file(&path)?;
                }
            }
        }
        self.set_meta(super::META_ATTACHMENTS_SEALED, "1")?;
        if sealed > 0 {
            tracing::info!(files = sealed, "attachment files encrypted");
        }
        Ok(())
    }

    /// Adds the file at `file` to visit `visit_id`: its bytes are stored once (by hash) and
    /// the visit references them. Adding the same file twice stores it once.
    pub fn add_attachment_file(&self, visit_id: &str, file: &Path, meta: NewAttachment) -> Result<Record<Visit>> {
        let size = std::fs::metadata(file)?.len();
        if size > MAX_ATTACHMENT_BYTES {
            return Err(ValidationError::new("file", Reason::TooLong { max: MAX_ATTACHMENT_BYTES as usize }).into());
        }
        let bytes = std::fs::read(file)?;
        self.add_attachment(visit_id, &bytes, meta)
    }

    /// [`Store::add_attachment_file`] with the bytes in memory.
    pub fn add_attachment(&self, visit_id: &str, bytes: &[u8], meta: NewAttachment) -> Result<Record<Visit>> {
        if bytes.len() as u64 > MAX_ATTACHMENT_BYTES {
            return Err(ValidationError::new("file", Reason::TooLong { max: MAX_ATTACHMENT_BYTES as usize }).into());
        }
        // The visit must exist before any byte is written.
        self.get_visit(visit_id)?;
        let sha = sha256_hex(bytes);
        self.write_blob(&sha, bytes)?;
        let author = self.author()?.user;
        let now = now_ms();
        {
            let conn = self.conn();
            conn.execute(
                "INSERT INTO attachments (sha256, size, media_type, state, visit_id, created_at, used_at)
                 VALUES (?1, ?2, ?3, 'local', ?4, ?5, ?5)
                 ON CONFLICT (sha256) DO UPDATE SET used_at = excluded.used_at",
                params![sha, bytes.len() as i64, meta.media_type, visit_id, now],
            )?;
        }
        self.edit_visit(visit_id, |v| {
            let entry = v.attachments.entry(sha.clone()).or_insert_with(|| Attachment {
                sha256: sha.clone(),
                kind: meta.kind,
                media_type: meta.media_type.clone(),
                size: bytes.len() as i64,
                caption: meta.caption.clone(),
                taken_at: meta.taken_at.clone(),
                author: author.clone(),
                section: meta.section.clone(),
                item_id: meta.item_id.clone(),
                location: meta.location.clone(),
                deleted: false,
            });
            entry.deleted = false;
        })
    }

    /// The enterprise principal signs the visit on the phone: the signature image becomes an
    /// attachment of kind `signature`, and the visit records the signer, the time and the
    /// version they saw, so that later changes show as "changed after signing".
    pub fn sign_visit(
        &self,
        visit_id: &str,
        signer_name: &str,
        image: &[u8],
        media_type: &str,
        signed_at: &str,
    ) -> Result<Record<Visit>> {
        // Checked before the image is attached, so a refused signature writes nothing.
        if signer_name.trim().is_empty() {
            return Err(ValidationError::new("signature.signer_name", Reason::Required).into());
        }
        if signed_at.trim().is_empty() {
            return Err(ValidationError::new("signature.signed_at", Reason::Required).into());
        }
        let meta = NewAttachment {
            kind: Some(AttachmentKind::Signature),
            media_type: media_type.to_string(),
            caption: signer_name.to_string(),
            taken_at: signed_at.to_string(),
            ..Default::default()
        };
        let seen = self.add_attachment(visit_id, image, meta)?;
        let sha = sha256_hex(image);
        self.edit_visit(visit_id, |v| {
            v.signature = Some(crate::model::Signature {
                signer_name: signer_name.to_string(),
                signed_at: signed_at.to_string(),
                image_sha256: sha.clone(),
                signed_version: seen.version.clone(),
            });
        })
    }

    /// Removes an attachment from a visit (a CRDT change like any other). The bytes stay
    /// until [`Store::collect_garbage`] finds them unreferenced and held by the server.
    pub fn remove_attachment(&self, visit_id: &str, sha256: &str) -> Result<Record<Visit>> {
        let found = self.get_visit(visit_id)?.record.attachments.contains_key(sha256);
        if !found {
            return Err(Error::NotFound(format!("attachment {sha256} of visit {visit_id}")));
        }
        self.edit_visit(visit_id, |v| {
            if let Some(a) = v.attachments.get_mut(sha256) {
                a.deleted = true;
            }
        })
    }

    /// Attachments whose bytes are here but not yet on the server, referenced by a visit.
    pub fn pending_uploads(&self) -> Result<Vec<PendingUpload>> {
        let rows: Vec<(String, String, i64)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare_cached(
                "SELECT sha256, visit_id, size FROM attachments WHERE state = 'local' ORDER BY created_at",
            )?;
            let rows =
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
            rows
        };
        // Only the visit each was added to is read: a sync must not load every visit.
        let mut out = Vec::new();
        for (sha256, visit_id, size) in rows {
            let references = |id: &str| -> Result<bool> {
                match self.get_visit(id) {
                    Ok(r) => Ok(r.record.attachments.get(&sha256).is_some_and(|a| !a.deleted)),
                    Err(Error::NotFound(_)) => Ok(false),
                    Err(e) => Err(e),
                }
            };
            // Rarely, the visit it was first added to dropped it while another kept it:
            // only then are all visits read.
            let visit_id = if references(&visit_id)? { Some(visit_id) } else { self.visit_referencing(&sha256)? };
            if let Some(visit_id) = visit_id {
                out.push(PendingUpload { sha256, visit_id, size: size as u64 });
            }
        }
        Ok(out)
    }

    /// Records that the server holds this attachment.
    pub fn mark_uploaded(&self, sha256: &str) -> Result<()> {
        self.conn()
            .execute("UPDATE attachments SET state = 'uploaded' WHERE sha256 = ?1 AND state = 'local'", [sha256])?;
        Ok(())
    }

    /// Makes every file this store uploaded pending again, for a server that may have lost
    /// some (restored from a backup older than the uploads): the next sync asks the server
    /// about each and sends only what it lacks. Returns how many.
    pub fn requeue_uploads(&self) -> Result<usize> {
        Ok(self.conn().execute("UPDATE attachments SET state = 'local' WHERE state = 'uploaded'", [])?)
    }

    /// Stores bytes fetched from the server for `visit_id` after checking their hash.
    pub fn store_downloaded_attachment(&self, visit_id: &str, sha256: &str, bytes: &[u8]) -> Result<()> {
        crate::validate::sha256_field("sha256", sha256)?;
        if sha256_hex(bytes) != sha256 {
            return Err(Error::CorruptDocument {
                id: format!("attachment {sha256}"),
                reason: "the downloaded bytes do not match their hash".into(),
            });
        }
        self.write_blob(sha256, bytes)?;
        let media: String =
            self.get_visit(visit_id)?.record.attachments.get(sha256).map(|a| a.media_type.clone()).unwrap_or_default();
        let now = now_ms();
        self.conn().execute(
            "INSERT INTO attachments (sha256, size, media_type, state, visit_id, created_at, used_at)
             VALUES (?1, ?2, ?3, 'cached', ?4, ?5, ?5) ON CONFLICT (sha256) DO UPDATE SET used_at = excluded.used_at",
            params![sha256, bytes.len() as i64, media, visit_id, now],
        )?;
        Ok(())
    }

    fn visit_referencing(&self, sha256: &str) -> Result<Option<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM visits")?;
        let ids: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        for id in ids {
            let Some(doc) = super::load(&conn, &id)? else { continue };
            let v: Visit = doc.read()?;
            if v.attachments.get(sha256).is_some_and(|a| !a.deleted) {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }

    /// Every hash that some visit references (not marked deleted), whatever the visit's state.
    pub fn referenced_attachments(&self) -> Result<std::collections::HashSet<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM visits")?;
        let ids: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        let mut out = std::collections::HashSet::new();
        for id in ids {
            let Some(doc) = super::load(&conn, &id)? else { continue };
            let v: Visit = doc.read()?;
            out.extend(v.attachments.into_iter().filter(|(_, a)| !a.deleted).map(|(k, _)| k));
        }
        Ok(out)
    }

    /// Deletes the files of attachments that no document references and that the server
    /// holds. Returns how many were deleted.
    pub fn collect_garbage(&self) -> Result<usize> {
        let referenced = self.referenced_attachments()?;
        let rows: Vec<(String, String)> = {
            let conn = self.conn();
            let mut stmt = conn.prepare("SELECT sha256, state FROM attachments")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            rows
        };
        let doomed: Vec<String> = rows
            .into_iter()
            .filter(|(sha, state)| state != "local" && !referenced.contains(sha))
            .map(|(s, _)| s)
            .collect();
        self.delete_blobs(&doomed)
    }

    /// Keeps downloaded copies within `budget` bytes, dropping the least recently used ones
    /// (the server holds them: a screen that needs one fetches it again).
    pub fn evict_downloads(&self, budget: u64) -> Result<usize> {
        let rows: Vec<(String, i64)> = {
            let conn = self.conn();
            let mut stmt =
                conn.prepare("SELECT sha256, size FROM attachments WHERE state = 'cached' ORDER BY used_at DESC")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
            rows
        };
        let mut total = 0u64;
        let doomed: Vec<String> = rows
            .into_iter()
            .filter(|(_, size)| {
                total += *size as u64;
                total > budget
            })
            .map(|(s, _)| s)
            .collect();
        self.delete_blobs(&doomed)
    }

    fn delete_blobs(&self, hashes: &[String]) -> Result<usize> {
        for sha in hashes {
            // The row goes first: a crash in between leaves a stray file, never a row
            // pointing at nothing.
            self.conn().execute("DELETE FROM attachments WHERE sha256 = ?1", [sha])?;
            let path = self.blob_path(sha);
            if path.exists() {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(hashes.len())
    }

    /// The state of an attachment's bytes here: `local`, `uploaded`, `cached`, or `None`.
    pub fn attachment_state(&self, sha256: &str) -> Result<Option<String>> {
        Ok(self
            .conn()
            .query_row("SELECT state FROM attachments WHERE sha256 = ?1", [sha256], |r| r.get(0))
            .optional()?)
    }
}
