//! The relay to an upstream server (`ohassist serve --upstream`): a county server pushes to
//! its city's server every change of its feed that the city lacks, and pulls down what the
//! city holds in its unit, exactly as a phone does, with an account of role `relay` that the
//! city's admin created for it (ADR 0006, `docs/sync-protocol.md`).
//!
//! - **Up**: a persisted cursor over the local feed (`upstream.up_cursor`). A batch is the
//!   rows after it, leaving out what came down from the upstream (device
//!   [`records::UPSTREAM_DEVICE`]) and the `whole` markers; each change goes with its original
//!   author (`change_origins`, else the account and device that pushed it here). The cursor
//!   moves only after the upstream answered: a cut or a kill pushes the batch again, which the
//!   upstream acknowledges by hash, storing nothing twice. A document the upstream refused is
//!   kept in `upstream_refused` and pushed again when the upstream names it settled.
//! - **Down**: the pull cursor and first-sync page token a phone keeps, in `upstream`; each page
//!   is applied through the push path ([`records::apply_push`]) as the caller
//!   [`down_caller`], so it is validated, stored once by hash and fed to this server's phones;
//!   the cursor is saved after the page is committed (a kill applies the page again: no-op).
//!   A visit that came before its enterprise (first-sync pages go by id) is refused here as
//!   `unknown_enterprise`, kept, and applied again after each later page.
//! - [`run`]: the background task: a round at once, then every interval or promptly when a
//!   push brought new changes (a `Notify`), with backoff and jitter while the upstream fails.
//!
//! The HTTP is the phones' own client (`ohassist_core::sync::client`): this module reads its
//! errors, never status codes.

use std::sync::Arc;
use std::time::Duration;

use crate::sql::{params, Connection, OptionalExtension};
use ohassist_core::doc::Document;
use ohassist_core::limits;
use ohassist_core::model::RecordKind;
use ohassist_core::sync::client::{CancelToken, Client, SyncConfig, SyncError};
use ohassist_core::sync::wire::{self, ChangeAuthor, LoginRequest, PullRequest, PushRequest, WireChange};

use crate::accounts::{Caller, Role};
use crate::db::{now, Db, DbError};
use crate::records::{self, RecordsError, UPSTREAM_DEVICE};

/// Most changes in one push upward (the wire allows 5,000; authors ride beside them).
const UP_BATCH_CHANGES: usize = 2_000;
/// Most change bytes in one push upward (the body limit is 8 MiB).
const UP_BATCH_BYTES: usize = 3 * 1024 * 1024;
/// The default time between rounds.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The longest wait while the upstream fails.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Most pages one round pulls while the upstream says more wait (the next round goes on).
const MAX_PAGES_PER_ROUND: usize = 1_000;

/// This server's link to its upstream, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    pub username: String,
    pub device_id: String,
    pub token: Option<String>,
    /// The relay account's unit at the upstream.
    pub org_unit: String,
    pub up_cursor: u64,
    pub down_cursor: u64,
    pub down_page_token: Option<String>,
    /// When the token expires, as the upstream said (`None`: not known: renewed next round).
    pub token_expires_at: Option<i64>,
    /// The token offered at a renewal whose answer never came: the upstream may hold it.
    pub next_token: Option<String>,
}

/// Why a relay round failed, in words for the admin (Chinese first).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("no upstream: run `ohassist upstream login` first")]
    NotConfigured,
    #[error("the upstream refused this server's login: run `ohassist upstream login` again")]
    Unauthorized,
    #[error("the upstream cannot be reached: {0}")]
    Offline(String),
    #[error("the upstream refused: {en} ({code})")]
    Refused { code: String, zh: String, en: String },
    #[error("the upstream speaks another protocol version: update this server")]
    ProtocolVersion,
    #[error("the upstream marked this server's account lost or retired")]
    Retired,
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Records(Box<RecordsError>),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<RecordsError> for RelayError {
    fn from(e: RecordsError) -> Self {
        RelayError::Records(Box::new(e))
    }
}

impl From<crate::sql::Error> for RelayError {
    fn from(e: crate::sql::Error) -> Self {
        RelayError::Db(e.into())
    }
}

impl From<SyncError> for RelayError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Offline(d) => RelayError::Offline(d),
            SyncError::Unauthorized => RelayError::Unauthorized,
            SyncError::ProtocolVersion => RelayError::ProtocolVersion,
            SyncError::Refused { body, .. } if body.code == "device_retired" => RelayError::Retired,
            SyncError::Refused { body, .. } => {
                RelayError::Refused { code: body.code, zh: body.message, en: body.message_en }
            }
            SyncError::DeviceLost | SyncError::DeviceErased(_) => RelayError::Retired,
            SyncError::Cancelled => RelayError::Offline("cancelled".into()),
            SyncError::Config(d) => RelayError::Config(d),
            SyncError::Store(e) => RelayError::Config(e.to_string()),
        }
    }
}

impl RelayError {
    /// What the admin reads, in Chinese.
    pub fn message_zh(&self) -> String {
        match self {
            RelayError::NotConfigured => "尚未配置上级服务器：请先运行 ohassist upstream login".into(),
            RelayError::Unauthorized => {
                "上级服务器拒绝了本服务器的登录（已过期、被停用或密码已改）：请重新运行 ohassist upstream login".into()
            }
            RelayError::Offline(d) => format!("无法连接上级服务器（{d}），稍后自动重试"),
            RelayError::Refused { zh, .. } => format!("上级服务器拒绝了请求：{zh}"),
            RelayError::ProtocolVersion => "上级服务器的同步协议版本不同：请升级本服务器".into(),
            RelayError::Retired => "上级服务器已停用本服务器的中继账号：请联系上级管理员".into(),
            RelayError::Config(d) => format!("上级服务器设置有误：{d}"),
            RelayError::Records(e) => format!("应用上级服务器的数据时出错：{e}"),
            RelayError::Db(e) => format!("本服务器数据库出错：{e}"),
        }
    }
}

/// The caller that what comes down from the upstream is applied as: the relay account's unit
/// (scope is checked as for any push), recorded in the feed under [`UPSTREAM_DEVICE`].
pub fn down_caller(link: &Link) -> Caller {
    Caller {
        user_id: UPSTREAM_DEVICE.to_string(),
        username: link.username.clone(),
        display_name: "上级服务器".to_string(),
        role: Role::Relay,
        org_unit: link.org_unit.clone(),
        device_id: UPSTREAM_DEVICE.to_string(),
        last_seen: None,
        synced_at: None,
    }
}

/// The stored link, if this server has one.
pub fn link(conn: &Connection) -> crate::sql::Result<Option<Link>> {
    conn.query_row(
        "SELECT url, username, device_id, token, org_unit, up_cursor, down_cursor, down_page_token, token_expires_at,
                next_token
         FROM upstream WHERE id = 1",
        [],
        |r| {
            Ok(Link {
                url: r.get("url")?,
                username: r.get("username")?,
                device_id: r.get("device_id")?,
                token: r.get("token")?,
                org_unit: r.get("org_unit")?,
                up_cursor: r.get::<_, i64>("up_cursor")? as u64,
                down_cursor: r.get::<_, i64>("down_cursor")? as u64,
                down_page_token: r.get("down_page_token")?,
                token_expires_at: r.get("token_expires_at")?,
                next_token: r.get("next_token")?,
            })
        },
    )
    .optional()
}

/// The device id this server logs in to the upstream with: kept once chosen, so a new login
/// (a rotated token) stays the same device there.
pub fn device_id_for_login(conn: &Connection) -> crate::sql::Result<String> {
    Ok(link(conn)?
        .map(|l| l.device_id)
        .unwrap_or_else(|| format!("relay-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])))
}

/// Stores a login at `url`. Another upstream than before starts both cursors over (pushing
/// everything again is harmless: the upstream keeps each change once).
pub fn save_login(
    conn: &Connection,
    url: &str,
    username: &str,
    device_id: &str,
    token: &str,
    org_unit: &str,
) -> crate::sql::Result<()> {
    let same = link(conn)?.is_some_and(|l| l.url == url);
    conn.execute(
        "INSERT INTO upstream (id, url, username, device_id, token, org_unit) VALUES (1, ?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET url = ?1, username = ?2, device_id = ?3, token = ?4, org_unit = ?5,
             last_error_at = NULL, last_error_zh = NULL, last_error_en = NULL, token_expires_at = NULL, next_token = NULL",
        params![url, username, device_id, token, org_unit],
    )?;
    if !same {
        conn.execute(
            "UPDATE upstream SET up_cursor = 0, down_cursor = 0, down_page_token = NULL, waiting_down = 0 WHERE id = 1",
            [],
        )?;
        conn.execute("DELETE FROM upstream_refused", [])?;
    }
    Ok(())
}

/// One batch of the local feed for the upstream.
#[derive(Debug, Default)]
pub struct UpBatch {
    pub changes: Vec<WireChange>,
    pub authors: Vec<ChangeAuthor>,
    /// The feed position the batch ends at (the last row scanned).
    pub last_seq: u64,
}

/// The author of a feed row as the upstream should record it: the original author of a
/// change relayed here, else the account and device that pushed it. `None`: nobody a relay
/// may name (a lower relay's own change, an unknown user): the change is this relay's own.
fn author_of(r: &crate::sql::Row<'_>, hash: &str) -> crate::sql::Result<Option<ChangeAuthor>> {
    let user_id: String = r.get("a_user")?;
    let username: Option<String> = r.get("a_username")?;
    let display: Option<String> = r.get("a_display")?;
    let role: Option<String> = r.get("a_role")?;
    let device: String = r.get("a_device")?;
    let (Some(username), Some(role)) = (username, role) else { return Ok(None) };
    if !matches!(Role::parse(&role), Some(Role::Inspector | Role::Supervisor | Role::Admin)) || device.contains(':') {
        return Ok(None);
    }
    let display_name = display.filter(|d| !d.trim().is_empty()).unwrap_or_else(|| username.clone());
    Ok(Some(ChangeAuthor {
        hash: hash.to_string(),
        user_id,
        username,
        display_name: display_name.chars().take(100).collect(),
        role,
        device_id: device,
    }))
}

const AUTHOR_COLUMNS: &str = "coalesce(o.user_id, c.user_id) AS a_user, coalesce(o.username, u.username) AS a_username,
     coalesce(o.display_name, u.display_name) AS a_display, coalesce(o.role, u.role) AS a_role,
     coalesce(o.device_id, c.device_id) AS a_device";

/// Who wrote each change `hashes` names, as this server recorded them, for a relay's pull
/// (`PullResponse::authors`): those it can name (see [`author_of`]).
pub fn authors_of(conn: &Connection, hashes: &[String]) -> crate::sql::Result<Vec<ChangeAuthor>> {
    if hashes.is_empty() {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {AUTHOR_COLUMNS}
         FROM changes c LEFT JOIN change_origins o ON o.hash = c.hash LEFT JOIN users u ON u.id = c.user_id
         WHERE c.hash = ?1"
    ))?;
    let mut out = Vec::new();
    for hash in hashes {
        if let Some(author) = stmt.query_row([hash], |r| author_of(r, hash)).optional()?.flatten() {
            out.push(author);
        }
    }
    Ok(out)
}

/// Who wrote what a pull page for a relay carries: the changes `hashes` names and, on a first
/// sync's page, every change of its whole `documents` (each named once).
pub fn page_authors(conn: &Connection, hashes: &[String], documents: &[&str]) -> crate::sql::Result<Vec<ChangeAuthor>> {
    if documents.is_empty() {
        return authors_of(conn, hashes);
    }
    let mut seen: std::collections::HashSet<String> = hashes.iter().cloned().collect();
    let mut all = hashes.to_vec();
    let mut stmt = conn.prepare_cached("SELECT hash FROM changes WHERE doc_id = ?1 AND whole = 0")?;
    for id in documents {
        for hash in stmt.query_map([id], |r| r.get::<_, String>(0))? {
            let hash = hash?;
            if seen.insert(hash.clone()) {
                all.push(hash);
            }
        }
    }
    authors_of(conn, &all)
}

/// The rows of the local feed after `after` that the upstream may lack, up to the batch bounds.
pub fn up_batch(conn: &Connection, after: u64) -> crate::sql::Result<UpBatch> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT c.seq, c.hash, c.doc_id, c.kind, (c.whole = 1 OR c.device_id = ?2) AS skip,
                CASE WHEN c.whole = 1 OR c.device_id = ?2 THEN NULL ELSE c.bytes END AS bytes, {AUTHOR_COLUMNS}
         FROM changes c LEFT JOIN change_origins o ON o.hash = c.hash LEFT JOIN users u ON u.id = c.user_id
         WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?3"
    ))?;
    let mut rows = stmt.query(params![after as i64, UPSTREAM_DEVICE, (UP_BATCH_CHANGES * 4) as i64])?;
    let mut batch = UpBatch { last_seq: after, ..UpBatch::default() };
    let mut size = 0;
    while let Some(r) = rows.next()? {
        let skip: bool = r.get("skip")?;
        if !skip {
            if batch.changes.len() >= UP_BATCH_CHANGES || (size >= UP_BATCH_BYTES && !batch.changes.is_empty()) {
                break;
            }
            let hash: String = r.get("hash")?;
            let bytes: Vec<u8> = r.get("bytes")?;
            let Some(kind) = RecordKind::parse(&r.get::<_, String>("kind")?) else { continue };
            size += bytes.len();
            batch.authors.extend(author_of(&r, &hash)?);
            batch.changes.push(WireChange { doc_id: r.get("doc_id")?, kind, bytes });
        }
        batch.last_seq = r.get::<_, i64>("seq")? as u64;
    }
    Ok(batch)
}

/// Every change of documents `ids` this server holds and did not get from the upstream: a
/// document the upstream refused and has since settled, pushed again whole.
pub fn settled_batch(conn: &Connection, ids: &[String]) -> crate::sql::Result<UpBatch> {
    let mut batch = UpBatch::default();
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT c.hash, c.doc_id, c.kind, c.bytes, {AUTHOR_COLUMNS}
         FROM changes c LEFT JOIN change_origins o ON o.hash = c.hash LEFT JOIN users u ON u.id = c.user_id
         WHERE c.doc_id = ?1 AND c.whole = 0 AND c.device_id <> ?2 ORDER BY c.seq"
    ))?;
    for id in ids.iter().take(UP_BATCH_CHANGES) {
        let mut rows = stmt.query(params![id, UPSTREAM_DEVICE])?;
        while let Some(r) = rows.next()? {
            let hash: String = r.get("hash")?;
            let Some(kind) = RecordKind::parse(&r.get::<_, String>("kind")?) else { continue };
            batch.authors.extend(author_of(&r, &hash)?);
            batch.changes.push(WireChange { doc_id: r.get("doc_id")?, kind, bytes: r.get("bytes")? });
        }
        if batch.changes.len() >= UP_BATCH_CHANGES {
            break;
        }
    }
    Ok(batch)
}

/// Records the upstream's answer to a batch: the cursor moves to `last_seq` (when the batch
/// came from the feed), refused documents are kept, acknowledged ones leave that list.
pub fn record_pushed(
    conn: &mut Connection,
    last_seq: Option<u64>,
    answer: &wire::PushResponse,
    pushed_docs: &[String],
    now: i64,
) -> crate::sql::Result<()> {
    let tx = conn.transaction()?;
    let refused: std::collections::HashSet<&str> = answer.refused.iter().map(|r| r.doc_id.as_str()).collect();
    for doc in pushed_docs.iter().filter(|d| !refused.contains(d.as_str())) {
        tx.execute("DELETE FROM upstream_refused WHERE doc_id = ?1", [doc])?;
    }
    for r in &answer.refused {
        tx.execute(
            "INSERT INTO upstream_refused (doc_id, kind, code, reason_zh, reason_en, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (doc_id) DO UPDATE SET code = ?3, reason_zh = ?4, reason_en = ?5, at = ?6",
            params![r.doc_id, r.kind.as_str(), r.code, r.message, r.message_en, now],
        )?;
    }
    tx.execute(
        "UPDATE upstream SET up_cursor = CASE WHEN ?1 > up_cursor THEN ?1 ELSE up_cursor END, last_up_at = ?2,
             pushed = pushed + ?3, refused = refused + ?4 WHERE id = 1",
        params![last_seq.map(|s| s as i64), now, answer.new as i64, answer.refused.len() as i64],
    )?;
    tx.commit()
}

/// A pulled page as changes for the push path: whole documents (a first sync's) become their
/// changes, read within the limits (a document that does not load is named in the result).
pub fn page_changes(page: &wire::PullResponse) -> (Vec<WireChange>, Vec<String>) {
    let limits = records::limits();
    let mut out = Vec::new();
    let mut unreadable = Vec::new();
    for d in &page.documents {
        let read = limits::check_document(&d.bytes, &limits).ok().and_then(|_| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Document::load(d.kind, &d.doc_id, &d.bytes).ok().map(|doc| doc.changes_since(&[]))
            }))
            .ok()
            .flatten()
        });
        match read {
            Some(changes) => out.extend(changes.into_iter().map(|mut c| WireChange {
                doc_id: d.doc_id.clone(),
                kind: d.kind,
                bytes: c.bytes().to_vec(),
            })),
            None => unreadable.push(d.doc_id.clone()),
        }
    }
    out.extend(page.changes.iter().cloned());
    // Enterprises first (stable: each record's changes keep their order), so that a visit of
    // this page finds its enterprise whichever chunk of the page it falls in.
    out.sort_by_key(|c| c.kind != RecordKind::Enterprise);
    (out, unreadable)
}

/// Applies what came down (already decoded, in chunks a push may hold) and then once more
/// what waits for its enterprise; then saves the cursor of the page. One writer call.
pub fn apply_down(
    conn: &mut Connection,
    caller: &Caller,
    chunks: Vec<records::Decoded>,
    page: &wire::PullResponse,
    now: i64,
) -> Result<u64, RecordsError> {
    let mut applied = 0u64;
    for decoded in chunks {
        applied += records::apply_push(conn, caller, decoded, now)?.new as u64;
    }
    applied += retry_waiting(conn, caller, now)?;
    conn.execute(
        "UPDATE upstream SET down_cursor = ?1, down_page_token = ?2, last_down_at = ?3, pulled = pulled + ?4,
             waiting_down = ?5 WHERE id = 1",
        params![page.cursor as i64, page.page_token, now, applied as i64, page.more],
    )?;
    Ok(applied)
}

/// Visits that came down before their enterprise (refused here as `unknown_enterprise`, kept
/// with their changes in `refused_uploads`): applied again now that more has come.
fn retry_waiting(conn: &mut Connection, caller: &Caller, now: i64) -> Result<u64, RecordsError> {
    let kept: Vec<(String, String, Vec<u8>)> = conn
        .prepare_cached(
            "SELECT doc_id, kind, changes FROM refused_uploads
             WHERE device_id = ?1 AND code = 'unknown_enterprise' AND kept = 1 AND settled = 0",
        )?
        .query_map([UPSTREAM_DEVICE], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::sql::Result<_>>()?;
    // Their original authors, kept beside them when they were refused.
    let mut origins = records::Origins::new();
    for (doc_id, _, _) in &kept {
        origins.extend(records::kept_origins(conn, UPSTREAM_DEVICE, doc_id)?);
    }
    let waiting: Vec<WireChange> = kept
        .into_iter()
        .filter_map(|(doc_id, kind, bytes)| {
            Some((doc_id, RecordKind::parse(&kind)?, records::decode_changes_kept(&bytes)?))
        })
        .flat_map(|(doc_id, kind, changes)| {
            changes.into_iter().map(move |bytes| WireChange { doc_id: doc_id.clone(), kind, bytes })
        })
        .collect();
    if waiting.is_empty() {
        return Ok(0);
    }
    // Their enterprise must be on the server now, or they wait for the next page.
    let mut new = 0;
    for chunk in waiting.chunks(wire::MAX_PUSH_CHANGES) {
        let mut decoded = records::decode_changes(chunk.to_vec(), caller)?;
        decoded.origins = origins.clone();
        new += records::apply_push(conn, caller, decoded, now)?.new as u64;
    }
    Ok(new)
}

/// Records a failed round in words (Chinese, English).
pub fn record_error(conn: &Connection, zh: &str, en: &str, now: i64) -> crate::sql::Result<()> {
    conn.execute(
        "UPDATE upstream SET last_error_at = ?1, last_error_zh = ?2, last_error_en = ?3 WHERE id = 1",
        params![now, zh, en],
    )?;
    Ok(())
}

fn clear_error(conn: &Connection) -> crate::sql::Result<()> {
    conn.execute(
        "UPDATE upstream SET last_error_at = NULL, last_error_zh = NULL, last_error_en = NULL WHERE id = 1",
        [],
    )?;
    Ok(())
}

/// The upstream's `cursor_ahead`: it was restored from a backup. Everything is pushed again
/// and pulled from 0, as a phone does.
fn start_over(conn: &Connection) -> crate::sql::Result<()> {
    conn.execute("UPDATE upstream SET up_cursor = 0, down_cursor = 0, down_page_token = NULL WHERE id = 1", [])?;
    Ok(())
}

/// The link as the admin sees it (`ohassist upstream status`, the admin page).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStatus {
    pub configured: bool,
    pub url: String,
    pub username: String,
    pub device_id: String,
    pub logged_in: bool,
    pub last_up_at: Option<i64>,
    pub last_down_at: Option<i64>,
    /// Changes of the local feed not yet pushed up.
    pub waiting_up: u64,
    /// The upstream said more pages wait.
    pub waiting_down: bool,
    /// Documents that wait for their enterprise from the upstream.
    pub waiting_enterprise: u64,
    pub pushed: u64,
    pub pulled: u64,
    /// Documents the upstream refused (still refused now).
    pub refused_now: u64,
    pub refused: Vec<(String, String, String)>,
    pub last_error_at: Option<i64>,
    pub last_error_zh: Option<String>,
    pub last_error_en: Option<String>,
    /// When the relay's token expires at the upstream (it renews itself a month before).
    pub token_expires_at: Option<i64>,
}

pub fn status(conn: &Connection) -> crate::sql::Result<LinkStatus> {
    let Some(found) = conn
        .query_row(
            "SELECT url, username, device_id, token IS NOT NULL, last_up_at, last_down_at, up_cursor, waiting_down,
                    pushed, pulled, last_error_at, last_error_zh, last_error_en, token_expires_at
             FROM upstream WHERE id = 1",
            [],
            |r| {
                Ok((
                    LinkStatus {
                        configured: true,
                        url: r.get(0)?,
                        username: r.get(1)?,
                        device_id: r.get(2)?,
                        logged_in: r.get(3)?,
                        last_up_at: r.get(4)?,
                        last_down_at: r.get(5)?,
                        waiting_down: r.get(7)?,
                        pushed: r.get::<_, i64>(8)? as u64,
                        pulled: r.get::<_, i64>(9)? as u64,
                        last_error_at: r.get(10)?,
                        last_error_zh: r.get(11)?,
                        last_error_en: r.get(12)?,
                        token_expires_at: r.get("token_expires_at")?,
                        ..LinkStatus::default()
                    },
                    r.get::<_, i64>(6)?,
                ))
            },
        )
        .optional()?
    else {
        return Ok(LinkStatus::default());
    };
    let (mut s, up_cursor) = found;
    s.waiting_up = conn.query_row(
        "SELECT count(*) FROM changes WHERE seq > ?1 AND whole = 0 AND device_id <> ?2",
        params![up_cursor, UPSTREAM_DEVICE],
        |r| r.get::<_, i64>(0),
    )? as u64;
    s.waiting_enterprise = conn.query_row(
        "SELECT count(*) FROM refused_uploads WHERE device_id = ?1 AND code = 'unknown_enterprise' AND settled = 0",
        [UPSTREAM_DEVICE],
        |r| r.get::<_, i64>(0),
    )? as u64;
    s.refused = conn
        .prepare("SELECT doc_id, reason_zh, reason_en FROM upstream_refused ORDER BY at DESC LIMIT 50")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<crate::sql::Result<_>>()?;
    s.refused_now = conn.query_row("SELECT count(*) FROM upstream_refused", [], |r| r.get::<_, i64>(0))? as u64;
    Ok(s)
}

/// A relay account of this server (a lower server relaying to it) and when it last finished a
/// pull, for the dashboard's warning when one has been silent too long.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RelayAccount {
    pub username: String,
    pub display_name: String,
    pub org_unit: String,
    /// The last pull any of its devices finished (`None`: never).
    pub last_sync: Option<i64>,
    pub silent: bool,
}

/// How long a lower server may go without a finished pull before the dashboard warns.
pub const SILENT_AFTER_SECS: i64 = 3600;

/// The relay accounts inside `org_unit`, each flagged silent when it finished no pull for
/// [`SILENT_AFTER_SECS`] (or never).
pub fn relay_accounts(conn: &Connection, org_unit: &str, now: i64) -> crate::sql::Result<Vec<RelayAccount>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT u.username, u.display_name, u.org_unit, max(d.synced_at)
         FROM users u LEFT JOIN devices d ON d.user_id = u.id AND d.revoked_at IS NULL
         WHERE u.role = 'relay' AND u.disabled = 0 AND {}
         GROUP BY u.id ORDER BY u.org_unit, u.username",
        crate::scope::sql("u.org_unit", "?1")
    ))?;
    let rows = stmt.query_map([crate::scope::prefix(org_unit)], |r| {
        let last_sync: Option<i64> = r.get(3)?;
        Ok(RelayAccount {
            username: r.get(0)?,
            display_name: r.get(1)?,
            org_unit: r.get(2)?,
            last_sync,
            silent: last_sync.is_none_or(|t| now - t > SILENT_AFTER_SECS),
        })
    })?;
    rows.collect()
}

/// A time for the admin, in UTC+8 (China Standard Time).
pub fn local_time(t: i64) -> String {
    let offset = time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC);
    match time::OffsetDateTime::from_unix_timestamp(t) {
        Ok(at) => {
            let at = at.to_offset(offset);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                at.year(),
                at.month() as u8,
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            )
        }
        Err(_) => t.to_string(),
    }
}

/// The client for `url`: plain HTTP only when the login was made over it (`--allow-http`).
fn client(url: &str) -> Result<Client, RelayError> {
    let mut config = SyncConfig::new(url);
    config.allow_http = url.starts_with("http://");
    // A round retries little itself: the task's own backoff takes over.
    config.max_attempts = 2;
    config.request_timeout = Duration::from_secs(120);
    Ok(Client::new(config)?)
}

/// `ohassist upstream login`: logs this server in to `url` as the relay account `username`
/// and stores the token (the same device id as before, so a new login rotates the token).
pub async fn login(db: &Db, url: &str, username: &str, password: &str, allow_http: bool) -> Result<Link, RelayError> {
    let url = url.trim_end_matches('/').to_string();
    if url.starts_with("http://") && !allow_http {
        return Err(RelayError::Config("plain HTTP is refused; use https:// (or --allow-http)".into()));
    }
    let device_id = db.with_reader(|conn| Ok::<_, RelayError>(device_id_for_login(conn)?)).await?;
    let request = LoginRequest {
        username: username.to_string(),
        password: password.to_string(),
        device_id: device_id.clone(),
        device_name: "下级服务器 / relay server".to_string(),
    };
    let answer = client(&url)?.login_account(&request).await?;
    if answer.role != Role::Relay.as_str() {
        return Err(RelayError::Config(format!(
            "account {username} is a {} at the upstream, not a relay: ask its admin for a relay account",
            answer.role
        )));
    }
    let (u, name) = (url.clone(), username.to_string());
    db.with_writer(move |conn| {
        save_login(conn, &u, &name, &device_id, &answer.token, &answer.org_unit)?;
        save_renewed(conn, &answer.token, Some(answer.expires_at))?;
        Ok::<_, RelayError>(())
    })
    .await?;
    db.with_reader(|conn| link(conn)?.ok_or(RelayError::NotConfigured)).await
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub pushed: u64,
    pub refused: u64,
    pub pulled: u64,
    pub pages: u64,
}

/// One round: push everything waiting (batch after batch), then pull until the upstream has
/// nothing more, then push again what it named settled.
pub async fn round(db: &Db) -> Result<Round, RelayError> {
    let result = round_inner(db).await;
    match &result {
        Ok(_) => db.with_writer(|conn| Ok::<_, RelayError>(clear_error(conn)?)).await?,
        Err(RelayError::Refused { code, .. }) if code == "cursor_ahead" => {
            tracing::warn!("the upstream was restored from a backup: relaying everything again");
            db.with_writer(|conn| Ok::<_, RelayError>(start_over(conn)?)).await?;
        }
        Err(RelayError::NotConfigured) => {}
        Err(e) => {
            let (zh, en, now) = (e.message_zh(), e.to_string(), now());
            db.with_writer(move |conn| Ok::<_, RelayError>(record_error(conn, &zh, &en, now)?)).await?;
        }
    }
    result
}

async fn round_inner(db: &Db) -> Result<Round, RelayError> {
    let current = db.with_reader(|conn| link(conn)?.ok_or(RelayError::NotConfigured)).await?;
    let client = client(&current.url)?;
    let token = fresh_token(db, &client, &current, now()).await?;
    let cancel = CancelToken::new();
    let mut round = Round::default();
    // Up.
    loop {
        let after = db.with_reader(|conn| Ok::<_, RelayError>(link(conn)?.map_or(0, |l| l.up_cursor))).await?;
        let batch = db.with_reader(move |conn| Ok::<_, RelayError>(up_batch(conn, after)?)).await?;
        if batch.last_seq == after {
            break;
        }
        let sent = push(db, &client, &token, &cancel, batch.changes, batch.authors, Some(batch.last_seq)).await?;
        round.pushed += sent.0;
        round.refused += sent.1;
    }
    // Down.
    let caller = down_caller(&current);
    let mut settled: Vec<String> = Vec::new();
    for _ in 0..MAX_PAGES_PER_ROUND {
        let l = db.with_reader(|conn| link(conn)?.ok_or(RelayError::NotConfigured)).await?;
        let request = PullRequest {
            protocol: wire::PROTOCOL_VERSION,
            cursor: l.down_cursor,
            page_token: l.down_page_token.clone(),
            pending: None,
        };
        let mut page = client.pull_page(&token, &request, &cancel).await?;
        settled.extend(page.settled.iter().cloned());
        // Who wrote what came down, recorded beside it: an upstream's bad list names nobody.
        // (A first sync's page of whole documents may name more than a push holds: read in parts.)
        let mut origins = records::Origins::new();
        let authors = std::mem::take(&mut page.authors);
        for part in authors.chunks(wire::MAX_PUSH_CHANGES) {
            match records::origins_of(part.to_vec(), &caller) {
                Ok(o) => origins.extend(o),
                Err(e) => tracing::warn!(error = %e, "some of the upstream's authors were left out"),
            }
        }
        let more = page.more;
        let writer = caller.clone();
        let applied = {
            let (changes, unreadable) = page_changes(&page);
            if !unreadable.is_empty() {
                tracing::warn!(documents = ?unreadable, "documents from the upstream that do not load were left out");
            }
            let decoder = caller.clone();
            let chunks = tokio::task::spawn_blocking(move || {
                changes
                    .chunks(wire::MAX_PUSH_CHANGES)
                    .map(|c| {
                        let mut decoded = records::decode_changes(c.to_vec(), &decoder)?;
                        decoded.origins = origins.clone();
                        Ok(decoded)
                    })
                    .collect::<Result<Vec<_>, RecordsError>>()
            })
            .await
            .map_err(DbError::from)??;
            db.with_writer(move |conn| Ok::<_, RelayError>(apply_down(conn, &writer, chunks, &page, now())?)).await?
        };
        round.pulled += applied;
        round.pages += 1;
        if !more {
            break;
        }
    }
    // Documents the upstream refused and has since settled: pushed again whole.
    let refused_here: Vec<String> = {
        let ids = settled.clone();
        db.with_reader(move |conn| {
            let mut stmt = conn.prepare("SELECT 1 FROM upstream_refused WHERE doc_id = ?1")?;
            let mut out = Vec::new();
            for id in ids {
                if stmt.exists([&id])? {
                    out.push(id);
                }
            }
            Ok::<_, RelayError>(out)
        })
        .await?
    };
    if !refused_here.is_empty() {
        let batch = db.with_reader(move |conn| Ok::<_, RelayError>(settled_batch(conn, &refused_here)?)).await?;
        let sent = push(db, &client, &token, &cancel, batch.changes, batch.authors, None).await?;
        round.pushed += sent.0;
    }
    Ok(round)
}

/// Renew the token at the upstream when less than this is left of it (a third of its 90 days):
/// a server that cannot reach its upstream for a while still renews in time.
pub const RENEW_BEFORE_SECS: i64 = 30 * 24 * 3600;
/// An upstream that cannot renew tokens (older than renewal) is asked again after this.
const RENEW_RETRY_SECS: i64 = 24 * 3600;

/// The token to relay with: the stored one, renewed first when it expires within
/// [`RENEW_BEFORE_SECS`] (or its expiry is not known). The new token is chosen here and stored
/// as `next_token` before the upstream is asked; if its answer is lost after it took the new
/// token, the old one is refused at the next renewal and the new one, asked again, is taken.
async fn fresh_token(db: &Db, client: &Client, link: &Link, now: i64) -> Result<String, RelayError> {
    let token = link.token.clone().ok_or(RelayError::Unauthorized)?;
    if link.token_expires_at.is_some_and(|at| at - now > RENEW_BEFORE_SECS) && link.next_token.is_none() {
        return Ok(token);
    }
    let next = link.next_token.clone().unwrap_or_else(|| {
        use rand::Rng;
        hex::encode(rand::rng().random::<[u8; 32]>())
    });
    let offered = next.clone();
    db.with_writer(move |conn| {
        conn.execute("UPDATE upstream SET next_token = ?1 WHERE id = 1", [&offered])?;
        Ok::<_, RelayError>(())
    })
    .await?;
    let answer = match client.renew_token(&token, &next).await {
        // The upstream already took the new token (the answer to an earlier renewal was lost).
        Err(SyncError::Unauthorized) => client.renew_token(&next, &next).await,
        other => other,
    };
    match answer {
        Ok(renewed) if renewed.token == next => {
            tracing::info!(expires_at = renewed.expires_at, "the upstream renewed this server's token");
            db.with_writer(move |conn| Ok::<_, RelayError>(save_renewed(conn, &next, Some(renewed.expires_at))?))
                .await?;
            Ok(renewed.token)
        }
        Ok(_) => Err(RelayError::Config("the upstream answered the renewal with another token".into())),
        // An upstream older than renewal: relay on with the token it gave, and ask again in a
        // day (the expiry is then a guess: the admin logs in again when the token runs out).
        Err(SyncError::Refused { status: 404 | 405, .. }) => {
            tracing::warn!("the upstream cannot renew tokens: log in again before the token expires");
            let (keep, retry_at) = (token.clone(), now + RENEW_BEFORE_SECS + RENEW_RETRY_SECS);
            db.with_writer(move |conn| {
                conn.execute(
                    "UPDATE upstream SET next_token = NULL, token_expires_at = ?1 WHERE id = 1 AND token = ?2",
                    params![retry_at, keep],
                )?;
                Ok::<_, RelayError>(())
            })
            .await?;
            Ok(token)
        }
        Err(e) => Err(e.into()),
    }
}

/// Stores a token the upstream gave or took, with its expiry; no renewal in flight.
pub fn save_renewed(conn: &Connection, token: &str, expires_at: Option<i64>) -> crate::sql::Result<()> {
    conn.execute(
        "UPDATE upstream SET token = ?1, token_expires_at = ?2, next_token = NULL WHERE id = 1",
        params![token, expires_at],
    )?;
    Ok(())
}

/// The server side of a renewal (`POST /api/v1/login/renew`): the caller's device now has the
/// token of hash `token_hash` for another [`crate::accounts::TOKEN_LIFETIME_SECS`], its old token
/// forgotten. Returns the new expiry.
pub fn renew_device_token(
    conn: &Connection,
    user_id: &str,
    device_id: &str,
    token_hash: &str,
    now: i64,
) -> crate::sql::Result<i64> {
    let expires_at = now + crate::accounts::TOKEN_LIFETIME_SECS;
    conn.execute(
        "UPDATE devices SET token_hash = ?3, expires_at = ?4, last_seen = ?5 WHERE id = ?1 AND user_id = ?2",
        params![device_id, user_id, token_hash, expires_at, now],
    )?;
    Ok(expires_at)
}

/// Pushes one batch and records the answer; returns (new, refused).
async fn push(
    db: &Db,
    client: &Client,
    token: &str,
    cancel: &CancelToken,
    changes: Vec<WireChange>,
    authors: Vec<ChangeAuthor>,
    last_seq: Option<u64>,
) -> Result<(u64, u64), RelayError> {
    let mut docs: Vec<String> = changes.iter().map(|c| c.doc_id.clone()).collect();
    docs.dedup();
    let answer = if changes.is_empty() {
        wire::PushResponse { acknowledged: Vec::new(), new: 0, refused: Vec::new() }
    } else {
        client.push_changes(token, &PushRequest { protocol: wire::PROTOCOL_VERSION, changes, authors }, cancel).await?
    };
    let counts = (answer.new as u64, answer.refused.len() as u64);
    if !answer.refused.is_empty() {
        tracing::info!(refused = answer.refused.len(), "the upstream refused documents this server relayed");
    }
    db.with_writer(move |conn| Ok::<_, RelayError>(record_pushed(conn, last_seq, &answer, &docs, now())?)).await?;
    Ok(counts)
}

/// The background task of `ohassist serve --upstream`: a round at once, then one every
/// `interval` or as soon as `wake` is notified (a push brought new changes), backing off
/// with jitter (up to five minutes) while rounds fail. Runs until the process ends; every
/// step is safe to cut, so it needs no shutdown of its own.
pub async fn run(db: Db, wake: Arc<tokio::sync::Notify>, interval: Duration) {
    let mut failures: u32 = 0;
    loop {
        let wait = match round(&db).await {
            Ok(r) => {
                failures = 0;
                if r.pushed + r.pulled + r.refused > 0 {
                    tracing::info!(
                        pushed = r.pushed,
                        pulled = r.pulled,
                        refused = r.refused,
                        pages = r.pages,
                        "relayed"
                    );
                }
                interval
            }
            Err(RelayError::Refused { code, .. }) if code == "cursor_ahead" => Duration::ZERO,
            // Waiting for `ohassist upstream login`: looked for again every interval.
            Err(RelayError::NotConfigured) => interval,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, failures, "relay round failed");
                backoff(interval, failures)
            }
        };
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {},
            // Woken by a push: relay it now (unless the upstream is failing: then wait).
            _ = wake.notified(), if failures == 0 => {},
        }
    }
}

/// The wait after `failures` failed rounds: doubling from a second, up to [`MAX_BACKOFF`]
/// (never below the interval), times a jitter of 0.5–1.5 so servers cut together do not
/// come back together.
pub fn backoff(interval: Duration, failures: u32) -> Duration {
    let base = Duration::from_secs(1u64 << failures.min(9)).min(MAX_BACKOFF).max(interval.min(MAX_BACKOFF));
    base.mul_f64(0.5 + rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_dir(dir.path()).unwrap();
        (dir, db)
    }

    #[test]
    fn the_up_batch_leaves_out_what_came_down_and_names_the_original_authors() {
        let (_dir, db) = db();
        let conn = db.blocking_writer();
        conn.execute_batch(
            "INSERT INTO users VALUES ('u1', 'zhang', '张三', 'inspector', '350121', 'h', 1, 0);
             INSERT INTO users VALUES ('u2', 'town', '某镇服务器', 'relay', '350121', 'h', 1, 0);
             INSERT INTO documents VALUES ('d', 'visit', x'', '[]', '350121', 0, 0);
             INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)
                 VALUES ('h1', 'd', 'visit', x'01', 'u1', 'phone-1', 0);
             INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)
                 VALUES ('h2', 'd', 'visit', x'02', 'upstream:', 'upstream:', 0);
             INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at, whole)
                 VALUES ('whole:x', 'd', 'visit', x'', '', '', 0, 1);
             INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)
                 VALUES ('h3', 'd', 'visit', x'03', 'u2', 'relay-town', 0);
             INSERT INTO change_origins VALUES ('h3', 'x9', 'wang', '王五', 'supervisor', 'web');
             INSERT INTO changes (hash, doc_id, kind, bytes, user_id, device_id, received_at)
                 VALUES ('h4', 'd', 'visit', x'04', 'u2', 'relay-town', 0);",
        )
        .unwrap();
        let batch = up_batch(&conn, 0).unwrap();
        let bytes: Vec<Vec<u8>> = batch.changes.iter().map(|c| c.bytes.clone()).collect();
        assert_eq!(bytes, [vec![1], vec![3], vec![4]], "not what came down, not the whole marker");
        assert_eq!(batch.last_seq, 5);
        let named: Vec<(&str, &str, &str, &str)> = batch
            .authors
            .iter()
            .map(|a| (a.hash.as_str(), a.username.as_str(), a.role.as_str(), a.device_id.as_str()))
            .collect();
        // h4: a lower relay's own change names nobody (it stays the relay's own upstream too).
        assert_eq!(named, [("h1", "zhang", "inspector", "phone-1"), ("h3", "wang", "supervisor", "web")]);
        assert_eq!(batch.authors[0].display_name, "张三");
        let rest = up_batch(&conn, batch.last_seq).unwrap();
        assert!(rest.changes.is_empty() && rest.last_seq == batch.last_seq);
        // A batch of only skipped rows still moves on.
        let only_down = up_batch(&conn, 1).unwrap();
        assert_eq!(only_down.changes.len(), 2);
    }

    #[test]
    fn another_upstream_starts_the_cursors_over_and_the_same_keeps_them() {
        let (_dir, db) = db();
        let conn = db.blocking_writer();
        save_login(&conn, "https://city.example", "relay-a", "relay-1", "t1", "350121").unwrap();
        conn.execute("UPDATE upstream SET up_cursor = 7, down_cursor = 9", []).unwrap();
        save_login(&conn, "https://city.example", "relay-a", "relay-1", "t2", "350121").unwrap();
        let l = link(&conn).unwrap().unwrap();
        assert_eq!((l.up_cursor, l.down_cursor, l.token.as_deref()), (7, 9, Some("t2")), "a rotated token");
        assert_eq!(device_id_for_login(&conn).unwrap(), "relay-1");
        save_login(&conn, "https://province.example", "relay-a", "relay-1", "t3", "350100").unwrap();
        let l = link(&conn).unwrap().unwrap();
        assert_eq!((l.up_cursor, l.down_cursor, l.org_unit.as_str()), (0, 0, "350100"));
    }

    #[test]
    fn a_refused_document_is_kept_until_the_upstream_takes_it_and_the_cursor_only_moves_forward() {
        let (_dir, db) = db();
        let mut conn = db.blocking_writer();
        save_login(&conn, "https://city.example", "relay-a", "relay-1", "t", "350121").unwrap();
        let refused = wire::PushResponse {
            acknowledged: vec!["h1".into()],
            new: 1,
            refused: vec![wire::RefusedDocument {
                doc_id: "E-B".into(),
                kind: RecordKind::Enterprise,
                code: "out_of_scope".into(),
                message: "记录 E-B 未被接受：记录不属于您所在单位的辖区".into(),
                message_en: "record E-B was not accepted: outside your org unit".into(),
            }],
        };
        record_pushed(&mut conn, Some(5), &refused, &["E-A".into(), "E-B".into()], 10).unwrap();
        let s = status(&conn).unwrap();
        assert_eq!((s.refused_now, s.pushed, s.last_up_at), (1, 1, Some(10)));
        assert_eq!(s.refused[0].0, "E-B");
        assert!(s.refused[0].1.contains("辖区"), "in words: {:?}", s.refused[0]);
        // Pushed again once settled (no feed position): taken, so it leaves the list; the
        // cursor stays where the feed batches left it.
        let taken = wire::PushResponse { acknowledged: vec!["h2".into()], new: 0, refused: Vec::new() };
        record_pushed(&mut conn, None, &taken, &["E-B".into()], 11).unwrap();
        assert_eq!(status(&conn).unwrap().refused_now, 0);
        record_pushed(&mut conn, Some(3), &taken, &[], 12).unwrap();
        assert_eq!(link(&conn).unwrap().unwrap().up_cursor, 5, "never backwards");
    }

    #[test]
    fn backoff_grows_with_failures_within_bounds_and_jitters() {
        let interval = Duration::from_secs(10);
        for failures in [1, 3, 6, 20] {
            let base = Duration::from_secs(1u64 << failures.min(9)).min(MAX_BACKOFF).max(interval);
            let waits: Vec<Duration> = (0..50).map(|_| backoff(interval, failures)).collect();
            assert!(waits.iter().all(|w| *w >= base.mul_f64(0.5) && *w <= base.mul_f64(1.5)), "{failures}: {waits:?}");
            assert!(waits.iter().any(|w| *w != waits[0]), "jitter");
        }
        assert!(backoff(interval, 30) <= MAX_BACKOFF.mul_f64(1.5));
    }
}
