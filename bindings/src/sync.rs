//! Login, logout and sync. Login and logout block on HTTP; a sync runs on its own thread
//! behind a [`SyncHandle`] that reports progress through a foreign callback and cancels the
//! sync when cancelled or dropped (as matrix-rust-sdk's `TaskHandle` does).

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ohassist_core::sync::{self as cs, CancelToken, SyncConfig};

use crate::error::{OhassistError, Result};
use crate::model::{mirror_record, Bridge};
use crate::store::Store;

/// Who is logged in. The token itself stays in the store.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct LoginInfo {
    pub user_id: String,
    pub display_name: String,
    /// `inspector`, `supervisor` or `admin`.
    pub role: String,
    /// Administrative division code of the user's org unit.
    pub org_unit: String,
    /// Seconds since the epoch.
    pub expires_at: i64,
}

mirror_record! {
    /// Where a sync stands, reported after every request.
    SyncProgress = cs::SyncProgress {
        /// `push`, `pull` or `done`.
        phase: String,
        documents_up: u64,
        documents_down: u64,
        bytes_up: u64,
        bytes_down: u64,
        /// Local changes still waiting for the server.
        changes_pending: u64,
        round_trips: u64,
        /// Attachment bytes, apart from the records' bytes.
        attachment_bytes_up: u64,
        attachment_bytes_down: u64,
        /// Attachments still waiting to be uploaded.
        attachments_pending: u64,
    }
}

mirror_record! {
    /// What a finished sync did.
    SyncReport = cs::SyncReport {
        progress: SyncProgress,
        changes_pushed: u64,
        changes_pulled: u64,
        documents_pulled: u64,
        /// Records that hold conflicts after the sync.
        conflicted_records: u64,
        attachments_uploaded: u64,
        /// Attachments not uploaded this time (refused, or waiting for their held visit):
        /// kept, pending, tried again at the next sync.
        attachments_refused: u64,
        /// Records the server refused, kept on the phone (`Store.held_records`).
        held_records: u64,
        /// Records refused in this sync.
        newly_held: u64,
        /// What the server sent that could not be applied, kept and retried.
        quarantined: u64,
    }
}

/// Receives sync progress. Called on the sync thread, never the main thread: keep it short,
/// do not throw, and hop to the UI thread yourself.
#[uniffi::export(callback_interface)]
pub trait SyncProgressCallback: Send + Sync {
    fn on_progress(&self, progress: SyncProgress);
}

struct Sink(Box<dyn SyncProgressCallback>);

impl cs::ProgressSink for Sink {
    fn on_progress(&self, progress: &cs::SyncProgress) {
        self.0.on_progress(progress.clone().bridge())
    }
}

#[uniffi::export]
impl Store {
    /// Logs in to `server_url` (`https://…`; plain `http://` only with `allow_http`, for a
    /// lab network) and keeps the token in the store. Logging in to another server than
    /// before queues every local record for it. Blocks: HTTP, and disk I/O.
    pub fn login(&self, server_url: String, username: String, password: String, allow_http: bool) -> Result<LoginInfo> {
        let r = cs::login_blocking(
            &self.inner,
            &SyncConfig { allow_http, ..SyncConfig::new(server_url) },
            &username,
            &password,
        )?;
        Ok(LoginInfo {
            user_id: r.user_id,
            display_name: r.display_name,
            role: r.role,
            org_unit: r.org_unit,
            expires_at: r.expires_at,
        })
    }

    /// Forgets the token, revoking it on the server if reachable (one attempt). Local records
    /// and unsynced changes stay. Blocks: HTTP (short), and disk I/O.
    pub fn logout(&self) -> Result<()> {
        let Some(config) = self.sync_config()? else { return Ok(()) };
        Ok(cs::logout_blocking(&self.inner, &config)?)
    }

    /// Starts a sync on a new thread and returns at once: push the unsynced changes, then
    /// pull what changed on the server. `callback` hears progress on that thread. Fails
    /// with `NotAuthorised` if the store never logged in. No I/O on the calling thread.
    pub fn start_sync(&self, callback: Box<dyn SyncProgressCallback>) -> Result<Arc<SyncHandle>> {
        let config = self.sync_config()?.ok_or(OhassistError::NotAuthorised)?;
        let (store, cancel) = (self.inner.clone(), CancelToken::new());
        let token = cancel.clone();
        let sink = Sink(callback);
        let thread = std::thread::Builder::new()
            .name("ohassist-sync".into())
            .spawn(move || cs::sync_blocking(&store, &config, &sink, &token))
            .map_err(|e| OhassistError::Storage { message: format!("cannot start the sync thread: {e}") })?;
        Ok(Arc::new(SyncHandle { cancel, state: Mutex::new(SyncState::Running(thread)) }))
    }
}

#[uniffi::export]
impl Store {
    /// The bytes of attachment `sha256` of visit `visit_id` (decrypted, in memory: show them,
    /// do not write them to a file), downloading them from the server first if this store does
    /// not hold them (lazily, when a screen needs them). Blocks: disk I/O, and network I/O when
    /// it downloads — call it off the main thread.
    pub fn fetch_attachment(&self, visit_id: String, sha256: String) -> Result<Vec<u8>> {
        let config = self.sync_config()?.ok_or(OhassistError::NotAuthorised)?;
        Ok(cs::fetch_attachment_blocking(&self.inner, &config, &visit_id, &sha256, &CancelToken::new())?)
    }
}

impl Store {
    fn sync_config(&self) -> Result<Option<SyncConfig>> {
        Ok(cs::stored_config(&self.inner)?)
    }
}

enum SyncState {
    Running(JoinHandle<Result<cs::SyncReport, cs::SyncError>>),
    Finished(Result<SyncReport>),
}

/// A running sync. Dropping it (Kotlin `close()`, Swift releasing it) cancels the sync.
#[derive(uniffi::Object)]
pub struct SyncHandle {
    cancel: CancelToken,
    state: Mutex<SyncState>,
}

impl std::fmt::Debug for SyncHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncHandle").field("cancelled", &self.cancel.is_cancelled()).finish()
    }
}

#[uniffi::export]
impl SyncHandle {
    /// Asks the sync to stop; it stops at once, between or during requests, and `wait`
    /// then fails with `Cancelled`. What was already stored stays. No I/O, never blocks.
    pub fn cancel(&self) {
        self.cancel.cancel()
    }

    /// Whether the sync has finished (successfully or not). Never blocks.
    pub fn is_finished(&self) -> bool {
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            SyncState::Running(thread) => thread.is_finished(),
            SyncState::Finished(_) => true,
        }
    }

    /// Blocks until the sync ends and returns its report or error (the same on every call).
    pub fn wait(&self) -> Result<SyncReport> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let result = match std::mem::replace(&mut *state, SyncState::Finished(Err(OhassistError::Cancelled))) {
            SyncState::Running(thread) => match thread.join() {
                Ok(result) => result.map(Bridge::bridge).map_err(OhassistError::from),
                Err(_) => Err(OhassistError::Storage { message: "the sync thread panicked".into() }),
            },
            SyncState::Finished(result) => result,
        };
        *state = SyncState::Finished(result.clone());
        result
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
