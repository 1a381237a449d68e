//! Evidence on visits (issue 6), server side: attachment files on disk, content-addressed
//! by SHA-256, uploaded in resumable chunks; their integrity check; thumbnails for the
//! console; and the location/time flags of visits. HTTP is in `api::attachments`; this
//! module takes paths and connections and returns values or [`AttachmentError`]s.
//!
//! Layout under `<data>/attachments/`: `<first 2 hex>/<sha256>` for verified files,
//! `partial/<sha256>` for uploads in progress (no database row), `thumbs/<sha256>.jpg`
//! for cached thumbnails. A file reaches its final place only by a rename after its hash
//! was verified, so a complete path always holds the right bytes (barring disk faults,
//! which `ohassist attachments check` finds).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::sql::{params, Connection, OptionalExtension, Transaction};
use ohassist_core::doc::Document;
use ohassist_core::model::{GeoPoint, RecordKind, Visit};
use ohassist_core::sync::wire::{self, UploadStatus};
use sha2::{Digest, Sha256};

use crate::db::DbError;
use crate::scope;

/// Why an attachment operation failed. `api/` and `web/` decide what each is to a client.
#[derive(Debug, thiserror::Error)]
pub enum AttachmentError {
    /// Unknown, or outside the caller's unit: existence is not leaked.
    #[error("not found")]
    NotFound,
    /// A chunk sent at another offset than the bytes held (which it carries).
    #[error("upload offset mismatch: the server holds {} bytes", .0.offset)]
    OffsetMismatch(UploadStatus),
    /// The owner's unfinished uploads would pass their bound.
    #[error("unfinished uploads of {held} bytes; at most {quota}")]
    UploadQuota { held: u64, quota: u64 },
    /// A chunk that would run past the declared total.
    #[error("{end} bytes would exceed the declared total of {total}")]
    BeyondTotal { end: u64, total: u64 },
    /// A complete upload whose bytes do not hash to its name; they were discarded.
    #[error("attachment {expected} hashes to {actual}")]
    HashMismatch { expected: String, actual: String },
    #[error("attachment files: {0}")]
    Io(#[from] std::io::Error),
    /// A thumbnail that could not be encoded.
    #[error("thumbnail: {0}")]
    Image(String),
    /// A visit document that does not load or read: the server's fault.
    #[error("stored record: {0}")]
    Document(#[from] ohassist_core::Error),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<crate::sql::Error> for AttachmentError {
    fn from(e: crate::sql::Error) -> Self {
        AttachmentError::Db(e.into())
    }
}

impl From<crate::records::RecordsError> for AttachmentError {
    fn from(e: crate::records::RecordsError) -> Self {
        use crate::records::RecordsError;
        match e {
            RecordsError::Document(e) => AttachmentError::Document(e),
            RecordsError::Db(e) => AttachmentError::Db(e),
            _ => AttachmentError::NotFound,
        }
    }
}

type Result<T, E = AttachmentError> = std::result::Result<T, E>;

/// Default per-visit limit: completed files linked to one visit.
pub const DEFAULT_MAX_VISIT_BYTES: u64 = 200 * 1024 * 1024;
/// Default distance from the enterprise's registered location above which a visit is flagged.
pub const DEFAULT_MAX_VISIT_DISTANCE_M: f64 = 2_000.0;
/// Default difference between device capture time and server receive time that is flagged.
pub const DEFAULT_MAX_CLOCK_SKEW_S: i64 = 24 * 3600;
/// Longest side of a console thumbnail, in pixels.
pub const THUMB_PX: u32 = 240;

/// The attachment settings of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    /// `<data>/attachments`
    pub dir: PathBuf,
    pub max_file_bytes: u64,
    pub max_visit_bytes: u64,
    pub max_visit_distance_m: f64,
    pub max_clock_skew_s: i64,
    /// Most bytes of unfinished uploads one user may hold at once (a phone uploads one file
    /// at a time: this only stops an account filling the disk with uploads never finished).
    pub max_partial_bytes_per_user: u64,
}

/// Default [`Config::max_partial_bytes_per_user`]: a few files of the largest size.
pub const DEFAULT_MAX_PARTIAL_BYTES_PER_USER: u64 = 128 * 1024 * 1024;
/// Unfinished uploads not appended to for this long are removed by the server's hourly
/// sweep (a phone that comes back later starts that file again).
pub const PARTIAL_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

impl Config {
    /// The defaults, under `data_dir`.
    pub fn new(data_dir: &Path) -> Config {
        Config {
            dir: data_dir.join("attachments"),
            max_file_bytes: wire::DEFAULT_MAX_ATTACHMENT_BYTES,
            max_visit_bytes: DEFAULT_MAX_VISIT_BYTES,
            max_visit_distance_m: DEFAULT_MAX_VISIT_DISTANCE_M,
            max_clock_skew_s: DEFAULT_MAX_CLOCK_SKEW_S,
            max_partial_bytes_per_user: DEFAULT_MAX_PARTIAL_BYTES_PER_USER,
        }
    }

    pub fn complete_path(&self, sha: &str) -> PathBuf {
        self.dir.join(&sha[..2]).join(sha)
    }

    /// Each user's unfinished uploads in a folder of their own (named by a hash of the user
    /// id): one account can neither append to nor see the progress of another's.
    pub fn partial_path(&self, owner: &str, sha: &str) -> PathBuf {
        self.partial_dir(owner).join(sha)
    }

    fn partial_dir(&self, owner: &str) -> PathBuf {
        self.dir.join("partial").join(&hex::encode(Sha256::digest(owner.as_bytes()))[..16])
    }

    pub fn thumb_path(&self, sha: &str) -> PathBuf {
        self.dir.join("thumbs").join(format!("{sha}.jpg"))
    }
}

/// True for 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `Ok` when visit `id` exists and its county is in `org_unit`; anything else is
/// `NotFound` (existence is not leaked). Reads one row, not the document.
pub fn check_visit_scope(conn: &Connection, org_unit: &str, id: &str) -> Result<()> {
    crate::records::county_in_scope(conn, org_unit, RecordKind::Visit, id)?;
    Ok(())
}

/// The media type visit `id`'s document gives attachment `sha`, if any.
pub fn referenced_media_type(conn: &Connection, id: &str, sha: &str) -> Result<Option<String>> {
    let bytes: Option<Vec<u8>> = conn
        .query_row("SELECT bytes FROM documents WHERE id = ?1 AND kind = 'visit'", [id], |r| r.get(0))
        .optional()?;
    let Some(bytes) = bytes else { return Ok(None) };
    let visit: Visit = Document::load(RecordKind::Visit, id, &bytes)?.read()?;
    Ok(visit.attachments.get(sha).map(|a| a.media_type.clone()).filter(|m| !m.is_empty()))
}

/// The visit `id` as the caller may see it: its document, if it exists and its county is
/// in `org_unit`. Anything else is `NotFound` (existence is not leaked).
pub fn visit_in_scope(conn: &Connection, org_unit: &str, id: &str) -> Result<Visit> {
    Ok(crate::records::load_in_scope(conn, org_unit, RecordKind::Visit, id)?.read()?)
}

/// The size and media type of a complete attachment, if the server holds it.
pub fn stored(conn: &Connection, sha: &str) -> crate::sql::Result<Option<(u64, String)>> {
    conn.query_row("SELECT size, media_type FROM attachments WHERE sha256 = ?1 AND complete = 1", [sha], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?))
    })
    .optional()
}

/// Bytes of completed files linked to `visit_id`, other than `except`.
pub fn visit_bytes(conn: &Connection, visit_id: &str, except: &str) -> crate::sql::Result<u64> {
    conn.query_row(
        "SELECT coalesce(sum(a.size), 0) FROM attachment_visits v JOIN attachments a ON a.sha256 = v.sha256
         WHERE v.visit_id = ?1 AND v.sha256 <> ?2 AND a.complete = 1",
        params![visit_id, except],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as u64)
}

/// True when the caller may read `sha`: its bytes were uploaded for a visit whose county is
/// in `org_unit`. A visit that merely *references* a hash grants nothing (a reference costs
/// a push; the bytes prove possession). With `visit` given, it must be in scope (else
/// `NotFound`).
pub fn may_read(conn: &Connection, org_unit: &str, sha: &str, visit: Option<(&str, &Visit)>) -> Result<bool> {
    match visit {
        Some((id, v)) => {
            check_visit_scope(conn, org_unit, id)?;
            let linked = conn
                .prepare_cached("SELECT 1 FROM attachment_visits WHERE sha256 = ?1 AND visit_id = ?2")?
                .exists(params![sha, id])?;
            Ok(linked || (v.attachments.contains_key(sha) && linked_in_scope(conn, org_unit, sha)?))
        }
        None => Ok(linked_in_scope(conn, org_unit, sha)?),
    }
}

/// True when `sha` was uploaded for some visit whose county is in `org_unit`.
pub fn linked_in_scope(conn: &Connection, org_unit: &str, sha: &str) -> crate::sql::Result<bool> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.county_code FROM attachment_visits v JOIN documents d ON d.id = v.visit_id WHERE v.sha256 = ?1",
    )?;
    let counties: Vec<String> = stmt.query_map([sha], |r| r.get(0))?.collect::<crate::sql::Result<_>>()?;
    for c in counties {
        if scope::covers(conn, org_unit, &c)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What a chunk did.
#[derive(Debug, PartialEq, Eq)]
pub enum Appended {
    /// More is expected; the server now holds this many bytes.
    Partial(u64),
    /// The file is complete, verified and in its place.
    Verified,
}

fn io(e: std::io::Error) -> AttachmentError {
    AttachmentError::Io(e)
}

/// Bytes of `owner`'s pending upload of `sha` (0 if none).
pub fn partial_len(cfg: &Config, owner: &str, sha: &str) -> u64 {
    fs::metadata(cfg.partial_path(owner, sha)).map(|m| m.len()).unwrap_or(0)
}

/// Bytes of `owner`'s pending uploads other than `sha`.
fn partial_bytes_besides(cfg: &Config, owner: &str, sha: &str) -> u64 {
    let Ok(entries) = fs::read_dir(cfg.partial_dir(owner)) else { return 0 };
    entries.flatten().filter(|e| e.file_name() != sha).filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()
}

/// Appends `chunk` at `offset` to `owner`'s pending upload of `sha` (fsynced before
/// returning) and, once `total` bytes are held, verifies the hash and renames the file into
/// place. Blocking; the caller serialises uploads. Errors: `OffsetMismatch` (the held size),
/// `HashMismatch` (the partial file is removed), `MalformedBody` (beyond `total`),
/// `UploadQuota` (the owner's unfinished uploads would pass their bound).
pub fn append_chunk(cfg: &Config, owner: &str, sha: &str, offset: u64, total: u64, chunk: &[u8]) -> Result<Appended> {
    let partial = cfg.partial_path(owner, sha);
    let mut held = partial_len(cfg, owner, sha);
    if held > total {
        // A pending upload of another total than this one: it cannot be finished.
        fs::remove_file(&partial).map_err(io)?;
        held = 0;
    }
    if offset != held {
        return Err(AttachmentError::OffsetMismatch(UploadStatus { offset: held, complete: false }));
    }
    let others = partial_bytes_besides(cfg, owner, sha);
    if others + offset + chunk.len() as u64 > cfg.max_partial_bytes_per_user {
        return Err(AttachmentError::UploadQuota { held: others + offset, quota: cfg.max_partial_bytes_per_user });
    }
    let end = offset + chunk.len() as u64;
    if end > total {
        return Err(AttachmentError::BeyondTotal { end, total });
    }
    if !chunk.is_empty() {
        fs::create_dir_all(partial.parent().expect("partial dir")).map_err(io)?;
        let mut f = OpenOptions::new().create(true).append(true).open(&partial).map_err(io)?;
        f.write_all(chunk).map_err(io)?;
        f.sync_all().map_err(io)?;
    }
    if end < total {
        return Ok(Appended::Partial(end));
    }
    let actual = if total == 0 && !partial.exists() { hex::encode(Sha256::digest([])) } else { hash_file(&partial)? };
    if actual != sha {
        let _ = fs::remove_file(&partial);
        return Err(AttachmentError::HashMismatch { expected: sha.to_string(), actual });
    }
    let dest = cfg.complete_path(sha);
    let dir = dest.parent().expect("complete dir");
    fs::create_dir_all(dir).map_err(io)?;
    if total == 0 && !partial.exists() {
        // An empty file: nothing was appended, so the partial directory may not exist yet.
        fs::create_dir_all(partial.parent().expect("partial dir")).map_err(io)?;
        File::create(&partial).map_err(io)?.sync_all().map_err(io)?;
    }
    fs::rename(&partial, &dest).map_err(io)?;
    // The rename itself is durable once the directory is synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(Appended::Verified)
}

/// Records a verified file and the visit it came for.
pub fn record_complete(
    conn: &mut Connection,
    sha: &str,
    size: u64,
    media_type: &str,
    visit_id: &str,
    now: i64,
) -> crate::sql::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO attachments (sha256, size, media_type, complete, created_at) VALUES (?1, ?2, ?3, 1, ?4)
         ON CONFLICT (sha256) DO NOTHING",
        params![sha, size as i64, media_type, now],
    )?;
    link(&tx, sha, visit_id)?;
    tx.commit()
}

/// Links an already complete file to one more visit.
pub fn link(conn: &Connection, sha: &str, visit_id: &str) -> crate::sql::Result<()> {
    conn.execute(
        "INSERT INTO attachment_visits (sha256, visit_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        params![sha, visit_id],
    )?;
    Ok(())
}

/// SHA-256 of a file, in lowercase hex, read in blocks.
pub fn hash_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// What `ohassist attachments check` found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub checked: usize,
    pub missing: Vec<String>,
    /// Files whose bytes no longer hash to their name, or whose size is not the recorded one.
    pub corrupt: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.corrupt.is_empty()
    }
}

/// Re-hashes every recorded attachment file.
pub fn check(conn: &Connection, cfg: &Config) -> Result<CheckReport> {
    let mut stmt = conn.prepare("SELECT sha256, size FROM attachments WHERE complete = 1 ORDER BY sha256")?;
    let rows: Vec<(String, i64)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
    let mut report = CheckReport::default();
    for (sha, size) in rows {
        report.checked += 1;
        let path = cfg.complete_path(&sha);
        match fs::metadata(&path) {
            Err(_) => report.missing.push(sha),
            Ok(m) if m.len() != size as u64 => report.corrupt.push(sha),
            Ok(_) => {
                if hash_file(&path)? != sha {
                    report.corrupt.push(sha);
                }
            }
        }
    }
    Ok(report)
}

/// Removes partial uploads not appended to for `older_than` (a phone that comes back later
/// starts that file again from zero) and returns their hashes. Complete files are never
/// removed here: documents never drop an attachment reference, so a held file stays
/// referenced. The server runs it every hour ([`PARTIAL_MAX_AGE`]); `ohassist attachments
/// gc` runs it at once.
pub fn gc_partials(cfg: &Config, older_than: std::time::Duration) -> Result<Vec<String>> {
    let now = std::time::SystemTime::now();
    let mut removed = Vec::new();
    let old = |path: &Path| -> Result<bool> {
        let modified = fs::metadata(path).and_then(|m| m.modified()).map_err(io)?;
        Ok(now.duration_since(modified).is_ok_and(|age| age >= older_than))
    };
    let root = cfg.dir.join("partial");
    let entries = match fs::read_dir(&root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            // One user's folder.
            for file in fs::read_dir(&path).map_err(io)? {
                let file = file.map_err(io)?;
                if old(&file.path())? {
                    fs::remove_file(file.path()).map_err(io)?;
                    removed.push(file.file_name().to_string_lossy().into_owned());
                }
            }
            // Gone once empty (fails, harmlessly, while an upload is in it).
            let _ = fs::remove_dir(&path);
        } else if old(&path)? {
            // A partial file of the layout before per-user folders.
            fs::remove_file(&path).map_err(io)?;
            removed.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    removed.sort();
    Ok(removed)
}

/// Largest source image a thumbnail is made of, per side, and the decoder's memory cap.
const THUMB_MAX_SOURCE_PX: u32 = 12_000;
const THUMB_MAX_ALLOC: u64 = 256 * 1024 * 1024;

/// A JPEG thumbnail (at most [`THUMB_PX`] on its longest side) of a stored image, cached
/// under `thumbs/`. `None` when the file is not a JPEG or PNG image the decoder reads.
pub fn thumbnail(cfg: &Config, sha: &str) -> Result<Option<Vec<u8>>> {
    let cached = cfg.thumb_path(sha);
    if let Ok(bytes) = fs::read(&cached) {
        return Ok(Some(bytes));
    }
    let failed = cached.with_extension("failed");
    if failed.exists() {
        return Ok(None);
    }
    let bytes = fs::read(cfg.complete_path(sha)).map_err(io)?;
    // Bounded decode: a small file may claim 100,000 × 100,000 pixels.
    let mut reader = image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format().map_err(io)?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(THUMB_MAX_SOURCE_PX);
    limits.max_image_height = Some(THUMB_MAX_SOURCE_PX);
    limits.max_alloc = Some(THUMB_MAX_ALLOC);
    reader.limits(limits);
    let decoded = reader.decode();
    let Ok(img) = decoded else {
        // Cached as failed, so a hostile image costs one decode, not one per page view.
        if let Some(dir) = failed.parent() {
            fs::create_dir_all(dir).map_err(io)?;
        }
        fs::write(&failed, b"").map_err(io)?;
        return Ok(None);
    };
    let thumb = image::DynamicImage::ImageRgb8(img.thumbnail(THUMB_PX, THUMB_PX).to_rgb8());
    let mut out = Vec::new();
    thumb
        .write_with_encoder(image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80))
        .map_err(|e| AttachmentError::Image(e.to_string()))?;
    // Written beside, then renamed: a reader never sees half a thumbnail.
    let dir = cached.parent().expect("thumbs dir");
    fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!("{sha}.{}.tmp", uuid::Uuid::new_v4().simple()));
    fs::write(&tmp, &out).map_err(io)?;
    fs::rename(&tmp, &cached).map_err(io)?;
    Ok(Some(out))
}

/// The flag measures of a visit row.
#[derive(Debug, Default)]
pub struct VisitFlags {
    pub latitude: Option<f64>,
    pub longitude: Option<f64>,
    pub captured_at: Option<String>,
    pub far_from_enterprise_m: Option<f64>,
    pub clock_skew_s: Option<i64>,
    /// The receipt minus the device's previous sync (`None`: no earlier sync known).
    pub sync_gap_s: Option<i64>,
    /// Days between the capture's date (CST) and the visit's date ([`capture_days_off`]).
    pub capture_days_off: Option<i64>,
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

/// Whole days between a capture time's date in China Standard Time and a visit's date
/// (`YYYY-MM-DD`); `None` when either does not parse. Stored with the row as
/// `capture_days_off`, so the clock flag is plain SQL on both engines.
pub fn capture_days_off(captured_at: &str, visit_date: &str) -> Option<i64> {
    let at = time::OffsetDateTime::parse(captured_at, &time::format_description::well_known::Rfc3339).ok()?;
    let cst = at.to_offset(time::macros::offset!(+8)).date();
    let date = time::Date::parse(visit_date, time::macros::format_description!("[year]-[month]-[day]")).ok()?;
    Some((cst - date).whole_days().abs())
}

/// Computes a visit's flag measures as its row is written at `now` for a device that last
/// finished a sync at `synced_at`: the distance to its enterprise's registered location, how
/// far the device's capture time is from the time the server first received that capture,
/// and the device's sync gap then (both kept while the capture time is unchanged; `stored`:
/// the visit has a row already). `registered`: the enterprise's row's location.
pub fn visit_flags(
    tx: &Transaction<'_>,
    id: &str,
    v: &Visit,
    registered: Option<(Option<f64>, Option<f64>)>,
    stored: bool,
    synced_at: Option<i64>,
    now: i64,
) -> crate::sql::Result<VisitFlags> {
    let Some(fix) = &v.location else { return Ok(VisitFlags::default()) };
    let here = GeoPoint { latitude: fix.latitude, longitude: fix.longitude };
    let far = match registered {
        Some((Some(latitude), Some(longitude))) => Some(here.distance_m(&GeoPoint { latitude, longitude })),
        _ => None,
    };
    let before: Option<(Option<String>, Option<i64>, Option<i64>)> = if stored {
        tx.query_row("SELECT captured_at, clock_skew_s, sync_gap_s FROM visits WHERE id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()?
    } else {
        None
    };
    let (skew, gap) = match before {
        Some((Some(c), skew, gap)) if c == fix.captured_at => (skew, gap),
        _ => (parse_rfc3339(&fix.captured_at).map(|t| now - t), synced_at.map(|s| now - s)),
    };
    Ok(VisitFlags {
        latitude: Some(fix.latitude),
        longitude: Some(fix.longitude),
        captured_at: Some(fix.captured_at.clone()),
        far_from_enterprise_m: far,
        clock_skew_s: skew,
        sync_gap_s: gap,
        capture_days_off: capture_days_off(&fix.captured_at, &v.visit_date),
    })
}

/// Recomputes the distance of every located visit of an enterprise whose registered
/// location was (re)written.
pub fn refresh_enterprise_distances(
    tx: &Transaction<'_>,
    credit_code: &str,
    location: Option<GeoPoint>,
) -> crate::sql::Result<()> {
    let mut stmt = tx.prepare_cached(
        "SELECT id, latitude, longitude FROM visits WHERE enterprise_id = ?1 AND latitude IS NOT NULL",
    )?;
    let visits: Vec<(String, f64, f64)> =
        stmt.query_map([credit_code], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<Result<_, _>>()?;
    let mut update = tx.prepare_cached("UPDATE visits SET far_from_enterprise_m = ?2 WHERE id = ?1")?;
    for (id, latitude, longitude) in visits {
        let d = location.map(|p| p.distance_m(&GeoPoint { latitude, longitude }));
        update.execute(params![id, d])?;
    }
    Ok(())
}

/// A visit flagged for a supervisor to look at.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FlaggedVisit {
    pub id: String,
    pub enterprise_id: String,
    pub enterprise_name: String,
    pub county_code: String,
    pub visit_date: String,
    pub far_from_enterprise_m: Option<f64>,
    pub clock_skew_s: Option<i64>,
    /// The device's sync gap at the capture's receipt (see [`VisitFlags::sync_gap_s`]).
    pub sync_gap_s: Option<i64>,
    /// Its distance is above the threshold.
    pub far: bool,
    /// Its device clock looks wrong: see [`clock_flag_sql`].
    pub skewed: bool,
    /// Days between the capture time (China Standard Time) and the visit's own date.
    pub capture_days_off: Option<i64>,
    /// Why the capture time looks wrong ([`clock_reason`]), when it does.
    pub clock_zh: String,
    pub clock_en: String,
}

/// Days between a visit's capture time, as a date in China Standard Time, and its own
/// `visit_date` (SQL over a `visits` row aliased `v`).
pub const CAPTURE_DAYS_OFF_SQL: &str = "v.capture_days_off";

/// The clock flag of a visit row `v` (a parameter: the margin in seconds): the
/// device's capture time falls more than a day from the visit's own date, or outside the
/// device's sync gap widened by the margin, [previous sync − margin, receipt + margin]: ahead
/// of the receipt (a clock running fast) or before the device last synced (a clock running
/// slow: what it captured since then cannot be older). A capture days before its receipt is
/// normal when the device was offline that long (a trip), so the receipt alone is no flag.
/// Without an earlier sync of the device only the receipt bounds it.
/// `margin` is the parameter holding the margin; the flag is 1 or 0.
pub fn clock_flag_sql(margin: &str) -> String {
    format!(
        "(CASE WHEN v.capture_days_off > 1 OR v.clock_skew_s + {margin} < 0 OR v.clock_skew_s > v.sync_gap_s + {margin}
         THEN 1 ELSE 0 END)"
    )
}

/// Why a flagged capture time looks wrong, in both languages ([`clock_flag_sql`]'s three
/// cases, the first that applies), or `None` when it does not.
pub fn clock_reason(
    days_off: Option<i64>,
    skew_s: Option<i64>,
    gap_s: Option<i64>,
    margin_s: i64,
) -> Option<(String, String)> {
    let hours = |s: i64| format!("{:.1}", s as f64 / 3600.0);
    if let Some(d) = days_off.filter(|d| *d > 1) {
        return Some((format!("采集时间与走访日期相差 {d} 天"), format!("captured {d} days from the visit's date")));
    }
    let skew = skew_s?;
    if skew < -margin_s {
        return Some((
            format!("设备时间快于服务器接收时间 {} 小时", hours(-skew)),
            format!("device clock ahead of the server's receipt by {} h", hours(-skew)),
        ));
    }
    match gap_s {
        Some(gap) if skew > gap + margin_s => Some((
            format!("采集时间早于该设备上次同步 {} 小时", hours(skew - gap)),
            format!("captured {} h before the device's previous sync", hours(skew - gap)),
        )),
        _ => None,
    }
}

/// Visits of `year` in `org_unit` (not deleted) with a flag, by county then date.
pub fn flagged_visits(
    conn: &Connection,
    org_unit: &str,
    year: i32,
    cfg: &Config,
) -> crate::sql::Result<Vec<FlaggedVisit>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT v.id, v.enterprise_id, coalesce(e.name, ''), v.county_code, v.visit_date,
                v.far_from_enterprise_m, v.clock_skew_s, {flag}, {CAPTURE_DAYS_OFF_SQL},
                v.sync_gap_s
         FROM visits v LEFT JOIN enterprises e ON e.credit_code = v.enterprise_id
         WHERE {} AND v.visit_date >= ?2 AND v.visit_date < ?3
           AND v.deleted = 0 AND (v.far_from_enterprise_m > ?4 OR {flag} = 1)
         ORDER BY v.county_code, v.visit_date DESC, v.id",
        scope::sql("v.county_code", "?1"),
        flag = clock_flag_sql("?5")
    ))?;
    let (from, to) = (format!("{year}-"), format!("{}-", year + 1));
    let rows = stmt.query_map(
        params![scope::prefix(org_unit), from, to, cfg.max_visit_distance_m, cfg.max_clock_skew_s],
        |r| {
            let far_m: Option<f64> = r.get(5)?;
            Ok(FlaggedVisit {
                id: r.get(0)?,
                enterprise_id: r.get(1)?,
                enterprise_name: r.get(2)?,
                county_code: r.get(3)?,
                visit_date: r.get(4)?,
                far_from_enterprise_m: far_m,
                clock_skew_s: r.get(6)?,
                far: far_m.is_some_and(|d| d > cfg.max_visit_distance_m),
                skewed: r.get(7)?,
                capture_days_off: r.get(8)?,
                sync_gap_s: r.get(9)?,
                clock_zh: String::new(),
                clock_en: String::new(),
            })
        },
    )?;
    rows.map(|r| {
        r.map(|mut f| {
            if let Some((zh, en)) = clock_reason(f.capture_days_off, f.clock_skew_s, f.sync_gap_s, cfg.max_clock_skew_s)
            {
                (f.clock_zh, f.clock_en) = (zh, en);
            }
            f
        })
    })
    .collect()
}

/// The clock flag of one visit and its capture's distance in days from the visit date.
pub fn clock_flag(conn: &Connection, visit_id: &str, cfg: &Config) -> crate::sql::Result<(bool, Option<i64>)> {
    conn.query_row(
        &format!("SELECT {}, {CAPTURE_DAYS_OFF_SQL} FROM visits v WHERE v.id = ?1", clock_flag_sql("?2")),
        params![visit_id, cfg.max_clock_skew_s],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map(Option::unwrap_or_default)
}

/// The paths (`a/b/c`) whose values differ between the record at `signed_version` and
/// now, leaving out the signature itself and the supervisor's review (written after
/// signing by design). `None` when a head of the signed version is not in the document.
pub fn changed_after_signing(doc: &Document, signed_version: &[String], signature_image: &str) -> Option<Vec<String>> {
    let heads: Vec<automerge::ChangeHash> =
        signed_version.iter().map(|h| h.parse::<automerge::ChangeHash>()).collect::<Result<_, _>>().ok()?;
    if heads.is_empty() || heads.iter().any(|h| automerge::ReadDoc::get_change_by_hash(doc.automerge(), h).is_none()) {
        return None;
    }
    let mut out = Vec::new();
    diff("", &doc.json(Some(&heads)), &doc.json(None), &mut out);
    let image_path = format!("attachments/{signature_image}");
    let excluded = ["signature", "review", image_path.as_str()];
    out.retain(|p| !excluded.iter().any(|x| p == x || p.starts_with(&format!("{x}/"))));
    Some(out)
}

fn diff(path: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let join = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}/{k}") };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff(&join(k), x, y, out),
                    _ => out.push(join(k)),
                }
            }
        }
        (a, b) if a != b => out.push(path.to_string()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_64_lowercase_hex() {
        assert!(is_sha256(&"a".repeat(64)));
        assert!(!is_sha256(&"A".repeat(64)));
        assert!(!is_sha256(&"a".repeat(63)));
        assert!(!is_sha256(&format!("{}g", "a".repeat(63))));
        assert!(!is_sha256("../../etc/passwd"));
    }

    #[test]
    fn diff_names_changed_leaves() {
        let old = serde_json::json!({"a": {"b": 1, "c": 2}, "d": "x"});
        let new = serde_json::json!({"a": {"b": 1, "c": 3}, "d": "x", "e": true});
        let mut out = Vec::new();
        diff("", &old, &new, &mut out);
        assert_eq!(out, vec!["a/c".to_string(), "e".to_string()]);
    }
}

#[cfg(test)]
mod hostile_images {
    use super::*;

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for b in data {
            c ^= u32::from(*b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    }

    /// A 200-byte PNG that claims 100,000 × 100,000 pixels (30 GB decoded).
    fn huge_png() -> Vec<u8> {
        let mut png = vec![137, 80, 78, 71, 13, 10, 26, 10];
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&100_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        chunk(&mut png, b"IHDR", &ihdr);
        chunk(&mut png, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        chunk(&mut png, b"IEND", &[]);
        png
    }

    #[test]
    fn a_hostile_image_is_refused_by_the_decoder_limits_and_cached_as_failed() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = Config::new(dir.path());
        let bytes = huge_png();
        let sha = hex::encode(Sha256::digest(&bytes));
        let path = cfg.complete_path(&sha);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, &bytes).unwrap();
        assert_eq!(thumbnail(&cfg, &sha).unwrap(), None);
        assert!(cfg.thumb_path(&sha).with_extension("failed").exists(), "the failure is cached");
        // The second view costs no decode: the marker answers.
        fs::write(&path, b"not even an image").unwrap();
        assert_eq!(thumbnail(&cfg, &sha).unwrap(), None);
    }
}
