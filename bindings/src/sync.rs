//! Login, logout, sync and attachment downloads: every call that does network I/O is
//! `async` (Kotlin `suspend`, Swift `async`, Python `async def`). The work runs on the
//! library's own I/O runtime; the caller's coroutine or task only awaits it, from any thread.
//! Cancelling that coroutine or task cancels the work through the core's `CancelToken`: it
//! stops at its next step, keeps what was already stored, and the next call resumes.

use std::future::Future;
use std::sync::OnceLock;

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

/// Hears a sync's progress, after every request: the callback the apps wrap as a Kotlin
/// `Flow` (`bindings/kotlin/OhassistFlow.kt`) or a Swift `AsyncStream`. Called on the
/// library's I/O thread, never the main thread: keep it short, do not throw, and hop to the
/// UI thread yourself.
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

/// How to log in, besides who.
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct LoginOptions {
    /// How the console names this phone (`华为 Mate 60 · 张三`); empty: a short form of its id.
    #[uniffi(default = "")]
    pub device_name: String,
    /// An extra root certificate (PEM) to trust, for a county server whose certificate its
    /// own CA signed; kept in the store for every later sync.
    #[uniffi(default = None)]
    pub root_certificate_pem: Option<String>,
    /// Allows plain `http://` (a lab network, tests on loopback).
    #[uniffi(default = false)]
    pub allow_http: bool,
}

/// The library's I/O runtime: the core's HTTP client needs tokio, and the apps' executors
/// (Kotlin coroutines, Swift tasks, asyncio) only poll what they await.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ohassist-io")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| OhassistError::Storage { message: format!("cannot start the I/O runtime: {e}") })
}

/// Cancels its token when dropped: when the awaiting coroutine or task is cancelled, the
/// foreign side drops the future, and the work hears it.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs `work` on the I/O runtime, one at a time per store (a sync started while a cancelled
/// one winds down waits for it), cancelled through `cancel` when the awaiting future is dropped.
async fn on_io<T: Send + 'static>(
    store: &Store,
    cancel: CancelToken,
    work: impl Future<Output = std::result::Result<T, cs::SyncError>> + Send + 'static,
) -> Result<T> {
    let _cancel_on_drop = CancelOnDrop(cancel);
    let lock = store.io_lock.clone();
    let task = runtime()?.spawn(async move {
        let _one_at_a_time = lock.lock().await;
        work.await
    });
    match task.await {
        Ok(result) => result.map_err(OhassistError::from),
        Err(_) => Err(OhassistError::Storage { message: "the I/O task panicked".into() }),
    }
}

#[uniffi::export]
impl Store {
    /// Logs in to `server_url` (`https://…`; plain `http://` only with `options.allow_http`)
    /// and keeps the token in the store. Logging in to another server than before queues
    /// every local record for it. A certificate that does not verify (no root certificate
    /// given for a county's own CA) fails at once with `InvalidInput` on `server_url`.
    pub async fn login(
        &self,
        server_url: String,
        username: String,
        password: String,
        options: LoginOptions,
    ) -> Result<LoginInfo> {
        let config = SyncConfig {
            allow_http: options.allow_http,
            root_certificate_pem: options.root_certificate_pem.map(String::into_bytes),
            ..SyncConfig::new(server_url)
        };
        let store = self.inner.clone();
        let r = on_io(self, CancelToken::new(), async move {
            cs::login(&store, &config, &username, &password, &options.device_name).await
        })
        .await?;
        Ok(LoginInfo {
            user_id: r.user_id,
            display_name: r.display_name,
            role: r.role,
            org_unit: r.org_unit,
            expires_at: r.expires_at,
        })
    }

    /// Forgets the token, revoking it on the server if reachable (one attempt). Local records
    /// and unsynced changes stay.
    pub async fn logout(&self) -> Result<()> {
        let Some(config) = self.sync_config()? else { return Ok(()) };
        let store = self.inner.clone();
        on_io(self, CancelToken::new(), async move { cs::logout(&store, &config).await }).await
    }

    /// Pushes the unsynced changes, pulls what changed on the server and uploads pending
    /// attachments; `progress` hears each step. Fails with `NotAuthorised` if the store never
    /// logged in, `Cancelled` never (a cancelled coroutine or task throws its own
    /// cancellation): what was stored stays, and the next sync resumes.
    pub async fn sync(&self, progress: Box<dyn SyncProgressCallback>) -> Result<SyncReport> {
        let config = self.sync_config()?.ok_or(OhassistError::NotAuthorised)?;
        let (store, cancel) = (self.inner.clone(), CancelToken::new());
        let token = cancel.clone();
        let sink = Sink(progress);
        Ok(on_io(self, cancel, async move { cs::sync(&store, &config, &sink, &token).await }).await?.bridge())
    }

    /// The bytes of attachment `sha256` of visit `visit_id` (decrypted, in memory: show them,
    /// do not write them to a file), downloading them from the server first if this store does
    /// not hold them (lazily, when a screen needs them).
    pub async fn fetch_attachment(&self, visit_id: String, sha256: String) -> Result<Vec<u8>> {
        let config = self.sync_config()?.ok_or(OhassistError::NotAuthorised)?;
        let (store, cancel) = (self.inner.clone(), CancelToken::new());
        let token = cancel.clone();
        on_io(self, cancel, async move { cs::fetch_attachment(&store, &config, &visit_id, &sha256, &token).await })
            .await
    }
}

impl Store {
    fn sync_config(&self) -> Result<Option<SyncConfig>> {
        Ok(cs::stored_config(&self.inner)?)
    }
}
