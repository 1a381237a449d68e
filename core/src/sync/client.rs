//! The phone's sync client: log in once, then `sync` pushes the outbox and pulls what
//! changed in the user's scope, page by page, until done. An outbox that fits in one push goes
//! with the first pull page in one request (`/sync/exchange`); a larger one is pushed in
//! batches, two in flight when they are independent (ADR 0007). Every request of a sync goes
//! through one HTTP client, so one kept-alive connection carries them (two while two pushes
//! overlap).
//!
//! Every step is safe to cut anywhere: pushed changes leave the outbox only once the
//! server acknowledged them (and pushing one twice changes nothing on the server); a pulled
//! page and the cursor that follows it are stored in one transaction. A cancelled or failed
//! sync leaves the store consistent and the next one resumes.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde::{Deserialize, Serialize};

use super::wire::{
    self, ErrorBody, ExchangeRequest, ExchangeResponse, LoginRequest, LoginResponse, PullRequest, PullResponse,
    PushRequest, PushResponse,
};
use crate::store::{OutboxChange, RemotePage, Store};

const META_SERVER: &str = "server_url";
const META_TOKEN: &str = "token";
const META_CURSOR: &str = "sync_cursor";
const META_PAGE_TOKEN: &str = "sync_page_token";
const META_ROLE: &str = "role";
const META_ORG_UNIT: &str = "org_unit";
const META_DISPLAY_NAME: &str = "display_name";
/// The extra root certificate (PEM) the store logged in with, trusted again by every sync.
const META_ROOT_CERTIFICATE: &str = "root_certificate_pem";
/// The pending counts last reported to the server (`changes,attachments`).
const META_REPORTED: &str = "reported_pending";
/// When (ms since the epoch) the server answered 404 to `/sync/exchange` (a server older than
/// it): push and pull apart until a day has passed or the store logs in again.
const META_NO_EXCHANGE: &str = "exchange_unsupported_ms";
/// How long a server that has no `/sync/exchange` is believed to have none.
const NO_EXCHANGE_FOR_MS: i64 = 24 * 3600 * 1000;

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// `https://county.example/` (a path prefix is kept).
    pub server_url: String,
    /// Plain HTTP is refused unless this is set (tests on loopback, a lab network).
    pub allow_http: bool,
    /// Extra trusted root certificate (PEM), for a county server with its own CA.
    pub root_certificate_pem: Option<Vec<u8>>,
    pub request_timeout: Duration,
    /// Attempts per request before giving up as offline (network errors, 5xx).
    pub max_attempts: u32,
    /// First backoff; doubles per attempt, with jitter, up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Most changes in one push (at most, and by default, `wire::MAX_PUSH_CHANGES`): smaller
    /// batches make more, shorter requests (tests use it to push many batches quickly).
    pub push_batch_changes: usize,
}

impl SyncConfig {
    pub fn new(server_url: impl Into<String>) -> Self {
        SyncConfig {
            server_url: server_url.into(),
            allow_http: false,
            root_certificate_pem: None,
            request_timeout: Duration::from_secs(60),
            max_attempts: 6,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
            push_batch_changes: wire::MAX_PUSH_CHANGES,
        }
    }
}

/// Where a sync stands, reported after every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProgress {
    /// `push`, `pull` or `done`.
    pub phase: String,
    pub documents_up: u64,
    pub documents_down: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Local changes still waiting for the server.
    pub changes_pending: u64,
    /// Requests sent to the server in this sync, retries included: each is a round trip
    /// (two pushes in flight together overlap theirs).
    pub round_trips: u64,
    /// Attachment bytes, apart from the records' bytes above.
    pub attachment_bytes_up: u64,
    pub attachment_bytes_down: u64,
    /// Attachments still waiting to be uploaded.
    pub attachments_pending: u64,
}

/// What a finished sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReport {
    pub progress: SyncProgress,
    pub changes_pushed: u64,
    pub changes_pulled: u64,
    pub documents_pulled: u64,
    /// Records that hold conflicts after the sync.
    pub conflicted_records: u64,
    pub attachments_uploaded: u64,
    /// Attachments not uploaded this time: refused by the server (too large, over the
    /// upload quota) or waiting for their held visit. Kept on the phone, pending, tried again
    /// at the next sync (a held visit's once the visit is accepted).
    pub attachments_refused: u64,
    /// Records the server refused, kept on the phone with the reason (`Store::held_records`).
    pub held_records: u64,
    /// Records refused in this sync.
    pub newly_held: u64,
    /// What the server sent that could not be applied, kept and retried (`Store::quarantined`).
    pub quarantined: u64,
}

/// Receives progress; called on the syncing thread, so keep it short.
pub trait ProgressSink: Send + Sync {
    fn on_progress(&self, progress: &SyncProgress);
}

impl<F: Fn(&SyncProgress) + Send + Sync> ProgressSink for F {
    fn on_progress(&self, progress: &SyncProgress) {
        self(progress)
    }
}

/// Cancels a sync from another thread; the sync stops at once, between or during requests.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<(AtomicBool, tokio::sync::Notify)>);

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn cancel(&self) {
        self.0 .0.store(true, Ordering::SeqCst);
        self.0 .1.notify_waiters();
    }
    pub fn is_cancelled(&self) -> bool {
        self.0 .0.load(Ordering::SeqCst)
    }
    async fn cancelled(&self) {
        loop {
            let notified = self.0 .1.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The server could not be reached (after retries).
    #[error("offline: {0}")]
    Offline(String),
    /// No token, or the server refused it (revoked, expired): log in again.
    #[error("not logged in or the login was revoked")]
    Unauthorized,
    /// The server speaks another protocol version: update the app.
    #[error("the server requires a newer app (protocol version)")]
    ProtocolVersion,
    #[error("cancelled")]
    Cancelled,
    /// The server refused the request; `code` is machine-readable.
    #[error("server refused ({status}): {} ({})", body.message_en, body.code)]
    Refused { status: u16, body: ErrorBody },
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An admin marked this device lost or retired, and the store has been erased (after
    /// pushing what it held, when retired): it is empty, logged out, a new device.
    #[error("this device was {}; its store was erased", .0.as_str())]
    DeviceErased(wire::DeviceStatus),
    /// The server refused this device as lost. Never returned: the entry points of this
    /// module erase the store on it and return [`SyncError::DeviceErased`].
    #[error("this device was marked lost")]
    DeviceLost,
    #[error(transparent)]
    Store(#[from] crate::Error),
}

/// The one place where a phone reacts to being marked lost: whatever it was doing, it erases
/// its store and attachments, unsynced changes included (a lost phone's data is the risk).
fn erase_if_lost<T>(store: &Store, result: Result<T, SyncError>) -> Result<T, SyncError> {
    match result {
        Err(SyncError::DeviceLost) => {
            tracing::warn!("the server says this device is lost: erasing the store");
            store.erase()?;
            Err(SyncError::DeviceErased(wire::DeviceStatus::Lost))
        }
        other => other,
    }
}

/// True when a request failed because the server's certificate did not verify.
fn untrusted_certificate(e: &reqwest::Error) -> bool {
    let mut next: Vec<&(dyn std::error::Error + 'static)> = vec![e];
    while let Some(err) = next.pop() {
        if matches!(err.downcast_ref::<rustls::Error>(), Some(rustls::Error::InvalidCertificate(_))) {
            return true;
        }
        // An I/O error hides what it wraps from `source()` (and wraps I/O errors in turn).
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            next.push(inner);
        }
        next.extend(err.source());
    }
    false
}

/// An HTTP client bound to one server. Its connections are pooled and kept alive: one
/// client serves a whole sync. Clones share the pool and the count of requests.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    config: SyncConfig,
    /// Requests sent (every attempt), for [`SyncProgress::round_trips`].
    requests: Arc<AtomicU64>,
}

fn install_crypto_provider() {
    // Idempotent: fails only if a provider is already installed, which is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    pub fn new(config: SyncConfig) -> Result<Self, SyncError> {
        let url = reqwest::Url::parse(&config.server_url)
            .map_err(|e| SyncError::Config(format!("server_url '{}': {e}", config.server_url)))?;
        match url.scheme() {
            "https" => {}
            "http" if config.allow_http => {}
            "http" => return Err(SyncError::Config("plain HTTP is refused; use https:// (or allow_http)".into())),
            other => return Err(SyncError::Config(format!("unsupported scheme {other}"))),
        }
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(Duration::from_secs(15))
            .use_rustls_tls()
            .user_agent(concat!("ohassist-core/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &config.root_certificate_pem {
            let cert =
                reqwest::Certificate::from_pem(pem).map_err(|e| SyncError::Config(format!("root certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| SyncError::Config(e.to_string()))?;
        let base = config.server_url.trim_end_matches('/').to_string();
        Ok(Client { http, base, config, requests: Arc::default() })
    }

    /// Sends one request with retries (network errors, 5xx) and backoff with jitter.
    /// Returns the status and body of the first non-retryable answer.
    async fn send(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        token: Option<&str>,
        cancel: &CancelToken,
    ) -> Result<(StatusCode, Vec<u8>), SyncError> {
        self.send_with(reqwest::Method::POST, path, body, content_type, token, cancel).await
    }

    /// [`Client::send`] with any method (`GET` sends no body when `body` is empty).
    async fn send_with(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
        token: Option<&str>,
        cancel: &CancelToken,
    ) -> Result<(StatusCode, Vec<u8>), SyncError> {
        let url = format!("{}{}", self.base, path);
        let mut backoff = self.config.initial_backoff;
        let mut last_error = String::new();
        for attempt in 1..=self.config.max_attempts.max(1) {
            if cancel.is_cancelled() {
                return Err(SyncError::Cancelled);
            }
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(wire::PROTOCOL_HEADER, wire::PROTOCOL_VERSION.to_string());
            if !(method == reqwest::Method::GET && body.is_empty()) {
                req = req.header(reqwest::header::CONTENT_TYPE, content_type).body(body.clone());
            }
            if content_type == wire::CONTENT_TYPE {
                req = req.header(reqwest::header::CONTENT_ENCODING, "gzip");
            }
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            self.requests.fetch_add(1, Ordering::Relaxed);
            let result = tokio::select! {
                r = async {
                    let resp = req.send().await?;
                    let status = resp.status();
                    let bytes = resp.bytes().await?;
                    settle_connection().await;
                    Ok::<_, reqwest::Error>((status, bytes.to_vec()))
                } => r,
                _ = cancel.cancelled() => return Err(SyncError::Cancelled),
            };
            match result {
                Ok((status, _)) if status.is_server_error() => {
                    last_error = format!("HTTP {status}");
                }
                Ok(answer) => return Ok(answer),
                // An untrusted certificate stays untrusted: no retry, and the user's setting
                // (the server's address, the county's root certificate) is named.
                Err(e) if untrusted_certificate(&e) => {
                    return Err(SyncError::Config(format!(
                        "the server's certificate is not trusted (pass the county's root certificate): {e}"
                    )))
                }
                Err(e) => last_error = e.to_string(),
            }
            if attempt < self.config.max_attempts {
                tracing::debug!(attempt, error = %last_error, "retrying");
                let jitter = rand::random::<f64>() * 0.5 + 0.75;
                let wait = backoff.mul_f64(jitter);
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {},
                    _ = cancel.cancelled() => return Err(SyncError::Cancelled),
                }
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
        }
        Err(SyncError::Offline(last_error))
    }

    fn refused(status: StatusCode, bytes: &[u8]) -> SyncError {
        let body: ErrorBody = serde_json::from_slice(bytes).unwrap_or_else(|_| ErrorBody {
            code: "unexpected".into(),
            message: format!("服务器返回 {status}"),
            message_en: format!("server answered {status}"),
            field: None,
        });
        match status {
            _ if body.code == "device_lost" => SyncError::DeviceLost,
            StatusCode::UNAUTHORIZED => SyncError::Unauthorized,
            StatusCode::UPGRADE_REQUIRED => SyncError::ProtocolVersion,
            _ if body.code == "protocol_version" => SyncError::ProtocolVersion,
            _ => SyncError::Refused { status: status.as_u16(), body },
        }
    }

    async fn call<Req: Serialize, Resp: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        request: &Req,
        token: &str,
        cancel: &CancelToken,
        progress: &mut SyncProgress,
    ) -> Result<Resp, SyncError> {
        let body = wire::encode(request);
        let sent = body.len();
        let answer = self.send(path, body, wire::CONTENT_TYPE, Some(token), cancel).await;
        self.answer(sent, answer, progress)
    }

    /// Requests sent so far (every attempt).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// [`Client::send`] of an encoded wire body as a task of its own, so that it proceeds
    /// while the caller prepares the next one.
    fn spawn_wire(
        &self,
        path: &'static str,
        body: Vec<u8>,
        token: &str,
        cancel: &CancelToken,
    ) -> tokio::task::JoinHandle<Result<(StatusCode, Vec<u8>), SyncError>> {
        let (client, token, cancel) = (self.clone(), token.to_string(), cancel.clone());
        tokio::spawn(async move { client.send(path, body, wire::CONTENT_TYPE, Some(&token), &cancel).await })
    }

    /// The decoded answer to a wire request of `sent` bytes, counted in the progress.
    fn answer<Resp: serde::de::DeserializeOwned>(
        &self,
        sent: usize,
        answer: Result<(StatusCode, Vec<u8>), SyncError>,
        progress: &mut SyncProgress,
    ) -> Result<Resp, SyncError> {
        progress.round_trips = self.requests();
        let (status, bytes) = answer?;
        progress.bytes_up += sent as u64;
        progress.bytes_down += bytes.len() as u64;
        if !status.is_success() {
            return Err(Self::refused(status, &bytes));
        }
        wire::decode(&bytes, 256 * 1024 * 1024).map_err(|e| SyncError::Refused {
            status: status.as_u16(),
            body: ErrorBody {
                code: "malformed_response".into(),
                message: "服务器响应无法解析".into(),
                message_en: format!("the server's answer could not be read: {e}"),
                field: None,
            },
        })
    }
}

/// The protocol without a store, for a server relaying to its upstream (a county server to
/// its city's, `ohassist serve --upstream`): the same requests, retries and error reading as a
/// phone's, the bookkeeping left to the caller.
impl Client {
    /// Logs in as `request.username` on `request.device_id` (a relay account).
    pub async fn login_account(&self, request: &LoginRequest) -> Result<LoginResponse, SyncError> {
        let body = serde_json::to_vec(request).expect("serialises");
        let (status, bytes) = self.send("/api/v1/login", body, "application/json", None, &CancelToken::new()).await?;
        if !status.is_success() {
            return Err(Self::refused(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| SyncError::Config(format!("the server's login answer could not be read: {e}")))
    }

    /// Replaces the relay account's `token` with `new_token` (`POST /api/v1/login/renew`).
    pub async fn renew_token(&self, token: &str, new_token: &str) -> Result<LoginResponse, SyncError> {
        let body = serde_json::to_vec(&wire::RenewRequest { token: new_token.to_string() }).expect("serialises");
        let (status, bytes) =
            self.send("/api/v1/login/renew", body, "application/json", Some(token), &CancelToken::new()).await?;
        if !status.is_success() {
            return Err(Self::refused(status, &bytes));
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| SyncError::Config(format!("the server's renewal answer could not be read: {e}")))
    }

    /// One push: what the server acknowledged and refused.
    pub async fn push_changes(
        &self,
        token: &str,
        request: &PushRequest,
        cancel: &CancelToken,
    ) -> Result<PushResponse, SyncError> {
        self.call("/api/v1/sync/push", request, token, cancel, &mut SyncProgress::default()).await
    }

    /// One pull page.
    pub async fn pull_page(
        &self,
        token: &str,
        request: &PullRequest,
        cancel: &CancelToken,
    ) -> Result<PullResponse, SyncError> {
        self.call("/api/v1/sync/pull", request, token, cancel, &mut SyncProgress::default()).await
    }
}

impl Client {
    /// Tells the server what this store still holds unacknowledged; answers the device's status.
    async fn report(
        &self,
        store: &Store,
        token: &str,
        cancel: &CancelToken,
        p: &mut SyncProgress,
    ) -> Result<wire::DeviceStatus, SyncError> {
        let report = pending_now(store)?;
        let body = serde_json::to_vec(&report).expect("serialises");
        let (status, bytes) = self.send("/api/v1/device/report", body, "application/json", Some(token), cancel).await?;
        p.round_trips = self.requests();
        if !status.is_success() {
            return Err(Self::refused(status, &bytes));
        }
        let answer: wire::DeviceReportResponse = serde_json::from_slice(&bytes)
            .map_err(|e| SyncError::Config(format!("the server's device status could not be read: {e}")))?;
        Ok(answer.status)
    }

    /// [`Client::report`] when the pending counts differ from the last ones reported.
    async fn report_if_changed(
        &self,
        store: &Store,
        token: &str,
        cancel: &CancelToken,
        p: &mut SyncProgress,
    ) -> Result<(), SyncError> {
        let counts = pending_now(store)?.counts();
        if store.meta(META_REPORTED)?.as_deref() == Some(counts.as_str()) {
            return Ok(());
        }
        self.report(store, token, cancel, p).await?;
        store.set_meta(META_REPORTED, &counts)?;
        Ok(())
    }

    /// Uploads every attachment the server does not hold yet.
    async fn upload_pending(
        &self,
        store: &Store,
        token: &str,
        cancel: &CancelToken,
        p: &mut SyncProgress,
        report: &mut SyncReport,
        sink: &dyn ProgressSink,
    ) -> Result<(), SyncError> {
        p.phase = "attachments".into();
        let pending = store.pending_uploads()?;
        p.attachments_pending = pending.len() as u64;
        sink.on_progress(p);
        let held: HashSet<String> = store.held_records()?.into_iter().map(|h| h.doc_id).collect();
        for upload in pending {
            // A held visit's files wait for it: the server has no visit to link them to.
            if held.contains(&upload.visit_id) {
                report.attachments_refused += 1;
                p.attachments_pending -= 1;
                continue;
            }
            match self.upload_attachment(store, &upload, token, cancel, p, sink).await {
                Ok(()) => {
                    store.mark_uploaded(&upload.sha256)?;
                    report.attachments_uploaded += 1;
                }
                // One file the server refuses stays on the phone, pending, and the others go
                // on (a 401 or a device's status ends the sync as before).
                Err(SyncError::Refused { status, body }) if (400..500).contains(&status) && status != 403 => {
                    tracing::warn!(sha256 = %upload.sha256, status, code = %body.code, "attachment refused; kept");
                    report.attachments_refused += 1;
                }
                Err(e) => return Err(e),
            }
            p.attachments_pending -= 1;
            sink.on_progress(p);
        }
        Ok(())
    }

    /// A retired device, once the server acknowledged everything it held: report that, log
    /// out and erase. Anything still unacknowledged keeps the store as it is.
    async fn retire(
        &self,
        store: &Store,
        token: &str,
        cancel: &CancelToken,
        p: &mut SyncProgress,
    ) -> Result<SyncReport, SyncError> {
        self.report(store, token, cancel, p).await?;
        if store.outbox_len()? > 0 || !store.pending_uploads()?.is_empty() {
            return Err(SyncError::Refused {
                status: 403,
                body: ErrorBody {
                    code: "device_retired".into(),
                    message: "此设备已退役，但仍有未上传的数据，请稍后再同步".into(),
                    message_en: "this device is retired but still holds unsynced data; sync again later".into(),
                    field: None,
                },
            });
        }
        let _ = self.send("/api/v1/logout", Vec::new(), "application/json", Some(token), cancel).await;
        tracing::info!("this device is retired and everything is on the server: erasing the store");
        store.erase()?;
        Err(SyncError::DeviceErased(wire::DeviceStatus::Retired))
    }

    fn attachment_error(status: StatusCode, bytes: &[u8]) -> SyncError {
        Self::refused(status, bytes)
    }

    async fn upload_status(
        &self,
        sha: &str,
        visit: &str,
        token: &str,
        cancel: &CancelToken,
    ) -> Result<wire::UploadStatus, SyncError> {
        let path = format!("/api/v1/attachments/{sha}/upload?visit={visit}");
        let (status, bytes) = self.send_with(reqwest::Method::GET, &path, Vec::new(), "", Some(token), cancel).await?;
        if !status.is_success() {
            return Err(Self::attachment_error(status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| SyncError::Config(format!("upload status unreadable: {e}")))
    }

    /// Uploads one attachment in chunks, starting where the server's copy ends, so a cut at
    /// 90 % resumes at 90 %.
    async fn upload_attachment(
        &self,
        store: &Store,
        upload: &crate::store::PendingUpload,
        token: &str,
        cancel: &CancelToken,
        p: &mut SyncProgress,
        sink: &dyn ProgressSink,
    ) -> Result<(), SyncError> {
        let mut state = self.upload_status(&upload.sha256, &upload.visit_id, token, cancel).await?;
        let mut conflicts = 0;
        while !state.complete {
            if cancel.is_cancelled() {
                return Err(SyncError::Cancelled);
            }
            let len = wire::MAX_ATTACHMENT_CHUNK.min((upload.size - state.offset.min(upload.size)) as usize);
            let chunk = store.read_attachment_range(&upload.sha256, state.offset, len as u64)?;
            let path = format!(
                "/api/v1/attachments/{}/upload?visit={}&offset={}&total={}",
                upload.sha256, upload.visit_id, state.offset, upload.size
            );
            let sent = chunk.len() as u64;
            let (status, bytes) = self
                .send_with(reqwest::Method::PATCH, &path, chunk, "application/offset+octet-stream", Some(token), cancel)
                .await?;
            p.round_trips = self.requests();
            if status == StatusCode::CONFLICT && conflicts < 5 {
                // Another attempt (a retried request, say) got further: continue from there.
                conflicts += 1;
                state = match serde_json::from_slice(&bytes) {
                    Ok(s) => s,
                    Err(_) => self.upload_status(&upload.sha256, &upload.visit_id, token, cancel).await?,
                };
                continue;
            }
            if !status.is_success() {
                return Err(Self::attachment_error(status, &bytes));
            }
            p.attachment_bytes_up += sent;
            state = serde_json::from_slice(&bytes)
                .map_err(|e| SyncError::Config(format!("upload answer unreadable: {e}")))?;
            sink.on_progress(p);
        }
        Ok(())
    }

    async fn download_attachment(
        &self,
        sha: &str,
        visit: &str,
        token: &str,
        cancel: &CancelToken,
    ) -> Result<Vec<u8>, SyncError> {
        let path = format!("/api/v1/attachments/{sha}?visit={visit}");
        let (status, bytes) = self.send_with(reqwest::Method::GET, &path, Vec::new(), "", Some(token), cancel).await?;
        if !status.is_success() {
            return Err(Self::attachment_error(status, &bytes));
        }
        Ok(bytes)
    }
}

/// Bytes of downloaded attachments a phone keeps before dropping the least recently used.
pub const DOWNLOAD_BUDGET_BYTES: u64 = 200 * 1024 * 1024;

/// The bytes of attachment `sha256` of visit `visit_id`, downloading them first if this
/// store does not hold them (lazily, when a screen needs them), within [`DOWNLOAD_BUDGET_BYTES`].
/// They are kept encrypted in the store and handed out only in memory.
pub async fn fetch_attachment(
    store: &Store,
    config: &SyncConfig,
    visit_id: &str,
    sha256: &str,
    cancel: &CancelToken,
) -> Result<Vec<u8>, SyncError> {
    let result = fetch_attachment_inner(store, config, visit_id, sha256, cancel).await;
    erase_if_lost(store, result)
}

async fn fetch_attachment_inner(
    store: &Store,
    config: &SyncConfig,
    visit_id: &str,
    sha256: &str,
    cancel: &CancelToken,
) -> Result<Vec<u8>, SyncError> {
    if let Some(bytes) = store.read_attachment(sha256)? {
        return Ok(bytes);
    }
    let token = store.meta(META_TOKEN)?.ok_or(SyncError::Unauthorized)?;
    let client = Client::new(config.clone())?;
    let bytes = client.download_attachment(sha256, visit_id, &token, cancel).await?;
    store.store_downloaded_attachment(visit_id, sha256, &bytes)?;
    store.evict_downloads(DOWNLOAD_BUDGET_BYTES.max(bytes.len() as u64))?;
    Ok(bytes)
}

/// [`fetch_attachment`] on the calling thread.
pub fn fetch_attachment_blocking(
    store: &Store,
    config: &SyncConfig,
    visit_id: &str,
    sha256: &str,
    cancel: &CancelToken,
) -> Result<Vec<u8>, SyncError> {
    runtime()?.block_on(fetch_attachment(store, config, visit_id, sha256, cancel))
}

/// Logs the store in to `config.server_url` as `username` and keeps the token in the
/// store, with the config's extra root certificate (later syncs trust it too). The server
/// shows the device as `device_name` (the app's choice, e.g. `华为 Mate 60 · 张三`; empty:
/// a short form of its id). Pointing the store at another server than before resets the
/// pull cursor and queues every local record for the new server; nothing unacknowledged is
/// ever dropped.
pub async fn login(
    store: &Store,
    config: &SyncConfig,
    username: &str,
    password: &str,
    device_name: &str,
) -> Result<LoginResponse, SyncError> {
    let result = login_inner(store, config, username, password, device_name).await;
    erase_if_lost(store, result)
}

async fn login_inner(
    store: &Store,
    config: &SyncConfig,
    username: &str,
    password: &str,
    device_name: &str,
) -> Result<LoginResponse, SyncError> {
    let client = Client::new(config.clone())?;
    let request = LoginRequest {
        username: username.to_string(),
        password: password.to_string(),
        device_id: store.device_id(),
        device_name: device_name.to_string(),
    };
    let body = serde_json::to_vec(&request).expect("serialises");
    let (status, bytes) = client.send("/api/v1/login", body, "application/json", None, &CancelToken::new()).await?;
    if !status.is_success() {
        return Err(Client::refused(status, &bytes));
    }
    let response: LoginResponse = serde_json::from_slice(&bytes)
        .map_err(|e| SyncError::Config(format!("the server's login answer could not be read: {e}")))?;
    let server = client.base.clone();
    if store.meta(META_SERVER)?.as_deref() != Some(server.as_str()) {
        if store.meta(META_SERVER)?.is_some() {
            store.requeue_all()?;
        }
        store.delete_meta(META_CURSOR)?;
        store.delete_meta(META_PAGE_TOKEN)?;
        store.set_meta(META_SERVER, &server)?;
    }
    match &config.root_certificate_pem {
        Some(pem) => store.set_meta(META_ROOT_CERTIFICATE, &String::from_utf8_lossy(pem))?,
        None => store.delete_meta(META_ROOT_CERTIFICATE)?,
    }
    store.set_meta(META_TOKEN, &response.token)?;
    store.set_user(&response.user_id)?;
    store.set_meta(META_ROLE, &response.role)?;
    store.set_meta(META_ORG_UNIT, &response.org_unit)?;
    store.set_meta(META_DISPLAY_NAME, &response.display_name)?;
    // A new login may come with another role or unit: every held record is tried again, and
    // the server hears what this device still holds at the next sync.
    store.retry_held(true)?;
    store.delete_meta(META_REPORTED)?;
    store.delete_meta(META_NO_EXCHANGE)?;
    Ok(response)
}

/// Forgets the token (revoking it on the server when reachable). Local records and the
/// outbox stay: they sync at the next login.
pub async fn logout(store: &Store, config: &SyncConfig) -> Result<(), SyncError> {
    if let Some(token) = store.meta(META_TOKEN)? {
        if let Ok(client) = Client::new(SyncConfig { max_attempts: 1, ..config.clone() }) {
            let _ =
                client.send("/api/v1/logout", Vec::new(), "application/json", Some(&token), &CancelToken::new()).await;
        }
    }
    store.delete_meta(META_TOKEN)?;
    Ok(())
}

/// Pushes the outbox, then pulls until the server has nothing more, reporting progress.
///
/// A device an admin marked `lost` erases its store at once ([`SyncError::DeviceErased`]); a
/// `retired` one pushes its outbox and uploads its attachments, and only once the server holds
/// all of them erases its store and logs out (the same error, `Retired`). Unacknowledged
/// changes are never erased otherwise.
pub async fn sync(
    store: &Store,
    config: &SyncConfig,
    sink: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<SyncReport, SyncError> {
    let result = sync_inner(store, config, sink, cancel).await;
    erase_if_lost(store, result)
}

async fn sync_inner(
    store: &Store,
    config: &SyncConfig,
    sink: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<SyncReport, SyncError> {
    let client = Client::new(config.clone())?;
    let token = store.meta(META_TOKEN)?.ok_or(SyncError::Unauthorized)?;
    let mut report = SyncReport::default();
    let mut p = SyncProgress { phase: "push".into(), ..Default::default() };
    p.changes_pending = store.outbox_len()? as u64;
    sink.on_progress(&p);
    // Held records that have waited long enough are tried again (a rule may have changed).
    store.retry_held(false)?;

    // An outbox that fits in one push goes with the first pull page, in one round trip.
    let exchanged = exchange(&client, store, &token, cancel, &mut p, &mut report).await?;
    if exchanged.is_some() {
        sink.on_progress(&p);
    }

    // Push: bounded batches, oldest first; drop from the outbox only what was acknowledged.
    // A document the server refuses is held (kept, with the reason) and the rest go on.
    push_all(&client, store, &token, cancel, &mut p, &mut report, sink).await?;

    // Pull: pages until the server says there is no more. What the phone will still hold once
    // this sync ends rides with the pull when it changed, so the report costs no round trip.
    p.phase = "pull".into();
    let (mut prefetched, pending) = match exchanged {
        Some((page, pending)) => (Some(page), pending),
        None => (None, pending_to_report(store, None)?),
    };
    let mut started_over = false;
    // The next page is asked for as soon as a page arrives, and is read by the server and
    // crosses the network while the phone stores this one; dropped (and cancelled) if this
    // one fails.
    let mut next: Option<NextPage> = None;
    loop {
        let cursor: u64 = store.meta(META_CURSOR)?.and_then(|c| c.parse().ok()).unwrap_or(0);
        let answer = match (prefetched.take(), next.take()) {
            // The exchange brought the first page already.
            (Some(page), _) => Ok(page),
            (None, Some(page)) => page.wait(&mut p).await?,
            (None, None) => {
                let page_token = store.meta(META_PAGE_TOKEN)?;
                let request =
                    PullRequest { protocol: wire::PROTOCOL_VERSION, cursor, page_token, pending: pending.clone() };
                client.call("/api/v1/sync/pull", &request, &token, cancel, &mut p).await
            }
        };
        let response: PullResponse = match answer {
            // The cursor is one this server never gave: it was restored from a backup older
            // than this phone's last sync (or is another server at the same address). What it
            // acknowledged since may be gone: everything is pushed again (it skips what it
            // holds), every uploaded file is offered again, and the pull starts from 0.
            Err(SyncError::Refused { status: 409, body }) if body.code == "cursor_ahead" && !started_over => {
                started_over = true;
                let queued = store.requeue_all()?;
                let files = store.requeue_uploads()?;
                tracing::warn!(cursor, queued, files, "the server does not know this cursor; pushing everything again");
                store.delete_meta(META_CURSOR)?;
                store.delete_meta(META_PAGE_TOKEN)?;
                p.phase = "push".into();
                p.changes_pending = store.outbox_len()? as u64;
                push_all(&client, store, &token, cancel, &mut p, &mut report, sink).await?;
                p.phase = "pull".into();
                continue;
            }
            // A retired device may push and upload, not pull: it hears so here, at no
            // round trip of its own, uploads what it holds and erases itself once all of it
            // is on the server.
            Err(SyncError::Refused { body, .. }) if body.code == "device_retired" => {
                client.upload_pending(store, &token, cancel, &mut p, &mut report, sink).await?;
                return client.retire(store, &token, cancel, &mut p).await;
            }
            other => other?,
        };
        let mut page = RemotePage::default();
        for d in response.documents {
            page.documents.push((d.kind, d.doc_id, d.bytes));
        }
        let mut docs: HashSet<String> = page.documents.iter().map(|(_, id, _)| id.clone()).collect();
        report.documents_pulled += page.documents.len() as u64;
        report.changes_pulled += response.changes.len() as u64;
        for c in response.changes {
            docs.insert(c.doc_id.clone());
            match page.changes.last_mut() {
                Some((kind, id, list)) if *id == c.doc_id && *kind == c.kind => list.push(c.bytes),
                _ => page.changes.push((c.kind, c.doc_id, vec![c.bytes])),
            }
        }
        page.meta.push((META_CURSOR.into(), Some(response.cursor.to_string())));
        page.meta.push((META_PAGE_TOKEN.into(), response.page_token.clone()));
        if response.more && !cancel.is_cancelled() {
            let request = PullRequest {
                protocol: wire::PROTOCOL_VERSION,
                cursor: response.cursor,
                page_token: response.page_token.clone(),
                pending: pending.clone(),
            };
            next = Some(NextPage::ask(&client, &request, &token, cancel));
        }
        // A record of the page that cannot be applied is quarantined; the rest applies.
        blocking(|| store.apply_remote_page(&page))?;
        // Held records a supervisor settled on the server go again in this sync.
        store.retry_now(&response.settled)?;
        p.documents_down += docs.len() as u64;
        sink.on_progress(&p);
        if !response.more {
            if let Some(reported) = &pending {
                store.set_meta(META_REPORTED, &reported.counts())?;
            }
            break;
        }
        if cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
    }
    // What could not be applied may apply now that more has arrived.
    report.quarantined = store.retry_quarantine()? as u64;
    // Records held until something arrived about them (or for long enough) go once more.
    push_all(&client, store, &token, cancel, &mut p, &mut report, sink).await?;
    report.held_records = store.held_records()?.len() as u64;
    // Attachments last, so that records are never held back by photos.
    client.upload_pending(store, &token, cancel, &mut p, &mut report, sink).await?;
    // What is still unsynced, for the console, when it is not what the pull said it would be
    // (a file refused, a held record accepted after the pull): a round trip only then.
    client.report_if_changed(store, &token, cancel, &mut p).await?;
    p.phase = "done".into();
    p.changes_pending = store.outbox_len()? as u64;
    p.round_trips = client.requests();
    sink.on_progress(&p);
    report.conflicted_records = store.conflicted_records()?.len() as u64;
    report.progress = p;
    Ok(report)
}

/// A pull request sent ahead, on its own task, while the page before it is stored. The task
/// only moves bytes; the answer is read on the sync's own thread once that page is stored, so
/// at most one page is decoded at a time.
struct NextPage {
    task: tokio::task::JoinHandle<Result<(StatusCode, Vec<u8>), SyncError>>,
    client: Client,
    sent: usize,
}

impl NextPage {
    fn ask(client: &Client, request: &PullRequest, token: &str, cancel: &CancelToken) -> NextPage {
        let body = wire::encode(request);
        let sent = body.len();
        NextPage { task: client.spawn_wire("/api/v1/sync/pull", body, token, cancel), client: client.clone(), sent }
    }

    /// The answer, read as [`Client::call`] reads one.
    async fn wait(mut self, p: &mut SyncProgress) -> Result<Result<PullResponse, SyncError>, SyncError> {
        let answer =
            (&mut self.task).await.map_err(|e| SyncError::Offline(format!("the pull was interrupted: {e}")))?;
        Ok(self.client.answer(self.sent, answer, p))
    }
}

impl Drop for NextPage {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs blocking store work so that the runtime's other tasks (the next page's request) go
/// on meanwhile, where the runtime has threads for them; inline on a single-threaded one.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// What the store holds that the server has not acknowledged.
fn pending_now(store: &Store) -> Result<wire::DeviceReport, SyncError> {
    Ok(wire::DeviceReport {
        pending_changes: store.outbox_len()? as u64,
        pending_attachments: store.pending_uploads()?.len() as u64,
    })
}

/// What the store will still hold unacknowledged at the end of a sync that goes well from here
/// on, `pushing` acknowledged: the outbox as it is (held changes stay in it) and the files of
/// held visits (they wait for their visit; every other file is uploaded), or `None` when that
/// is what the server last heard.
fn pending_to_report(store: &Store, pushing: Option<&Batch>) -> Result<Option<wire::DeviceReport>, SyncError> {
    let in_batch = pushing.map(Batch::documents).unwrap_or_default();
    let held: HashSet<String> =
        store.held_records()?.into_iter().map(|h| h.doc_id).filter(|d| !in_batch.contains(d.as_str())).collect();
    let waiting = store.pending_uploads()?.into_iter().filter(|u| held.contains(&u.visit_id)).count();
    let queued = store.outbox_len()?.saturating_sub(pushing.map_or(0, |b| b.changes.len()));
    let expected = wire::DeviceReport { pending_changes: queued as u64, pending_attachments: waiting as u64 };
    Ok((store.meta(META_REPORTED)?.as_deref() != Some(expected.counts().as_str())).then_some(expected))
}

/// A batch of the outbox, oldest first, within one push's limits.
struct Batch {
    changes: Vec<OutboxChange>,
    /// Nothing else waits to be pushed: this is the whole outbox.
    whole: bool,
}

impl Batch {
    /// The next batch after outbox position `after` (every change, from `i64::MIN`). It is
    /// cut at a document's boundary when it holds others: a document whose next change does
    /// not fit goes whole into the next batch, so that the two batches may be in flight together.
    fn next(client: &Client, store: &Store, after: i64) -> Result<Option<Batch>, SyncError> {
        let (budget, most) =
            (wire::MAX_PUSH_BYTES / 2, client.config.push_batch_changes.clamp(1, wire::MAX_PUSH_CHANGES));
        let mut queued = store.outbox_after(after, most + 1)?.into_iter().peekable();
        let (mut changes, mut size) = (Vec::new(), 0);
        while let Some(c) = queued.peek() {
            if changes.len() == most || (!changes.is_empty() && size + c.bytes.len() > budget) {
                break;
            }
            size += c.bytes.len();
            changes.extend(queued.next());
        }
        let Some(next) = queued.next() else {
            return Ok((!changes.is_empty()).then_some(Batch { changes, whole: true }));
        };
        if changes.iter().any(|c| c.doc_id != next.doc_id) {
            while changes.last().is_some_and(|c| c.doc_id == next.doc_id) {
                changes.pop();
            }
        }
        Ok(Some(Batch { changes, whole: false }))
    }

    fn documents(&self) -> HashSet<&str> {
        self.changes.iter().map(|c| c.doc_id.as_str()).collect()
    }

    fn last_seq(&self) -> i64 {
        self.changes.last().map_or(i64::MIN, |c| c.seq)
    }

    /// Whether this batch may be in flight together with `other`: the server may apply two
    /// requests in either order, so neither may depend on the other. They share no document
    /// (a change's dependencies are earlier changes of its document), and neither carries an
    /// enterprise (a visit's scope is its enterprise's, which must be on the server first;
    /// and an enterprise that moves takes its visits along).
    fn independent_of(&self, other: &Batch) -> bool {
        let enterprise = |b: &Batch| b.changes.iter().any(|c| c.kind == crate::model::RecordKind::Enterprise);
        if enterprise(self) || enterprise(other) {
            return false;
        }
        let mine = self.documents();
        other.changes.iter().all(|c| !mine.contains(c.doc_id.as_str()))
    }

    fn request(&self) -> PushRequest {
        PushRequest {
            protocol: wire::PROTOCOL_VERSION,
            changes: self
                .changes
                .iter()
                .map(|c| wire::WireChange { doc_id: c.doc_id.clone(), kind: c.kind, bytes: c.bytes.clone() })
                .collect(),
            authors: Vec::new(),
        }
    }
}

/// The whole outbox with the first pull page, in one request, when the outbox fits in one
/// push and is not empty: the push as [`push_all`] would make it, then the page the pull
/// loop would ask for, which it returns (with the counts it carried). `None`: nothing was
/// exchanged, for the push and the pull to run apart — there was nothing to push, or the
/// server is older than `/sync/exchange` (404, remembered for a day), or it refused the
/// exchange for what the ordinary path handles (a retired device, a cursor it never gave)
/// before applying anything.
async fn exchange(
    client: &Client,
    store: &Store,
    token: &str,
    cancel: &CancelToken,
    p: &mut SyncProgress,
    report: &mut SyncReport,
) -> Result<Option<(PullResponse, Option<wire::DeviceReport>)>, SyncError> {
    let now = now_ms();
    if store.meta(META_NO_EXCHANGE)?.and_then(|t| t.parse::<i64>().ok()).is_some_and(|t| now - t < NO_EXCHANGE_FOR_MS) {
        return Ok(None);
    }
    let Some(batch) = Batch::next(client, store, i64::MIN)?.filter(|b| b.whole) else { return Ok(None) };
    let pending = pending_to_report(store, Some(&batch))?;
    let request = ExchangeRequest {
        protocol: wire::PROTOCOL_VERSION,
        push: batch.request(),
        pull: PullRequest {
            protocol: wire::PROTOCOL_VERSION,
            cursor: store.meta(META_CURSOR)?.and_then(|c| c.parse().ok()).unwrap_or(0),
            page_token: store.meta(META_PAGE_TOKEN)?,
            pending: pending.clone(),
        },
    };
    let response: ExchangeResponse = match client.call("/api/v1/sync/exchange", &request, token, cancel, p).await {
        Ok(r) => r,
        Err(SyncError::Refused { status: 404, .. }) => {
            tracing::info!("the server has no /sync/exchange (an older one): pushing and pulling apart");
            store.set_meta(META_NO_EXCHANGE, &now.to_string())?;
            return Ok(None);
        }
        Err(SyncError::Refused { body, .. }) if body.code == "device_retired" || body.code == "cursor_ahead" => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    absorb_push(store, &batch, response.push, p, report)?;
    Ok(Some((response.pull, pending)))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Pushes the outbox in batches until nothing is left to push. While the server applies one
/// batch the next is read and encoded, and sent at once when the two are independent
/// ([`Batch::independent_of`]); otherwise it waits for the answer. At most two are in flight.
async fn push_all(
    client: &Client,
    store: &Store,
    token: &str,
    cancel: &CancelToken,
    p: &mut SyncProgress,
    report: &mut SyncReport,
    sink: &dyn ProgressSink,
) -> Result<(), SyncError> {
    type InFlight = (Batch, usize, tokio::task::JoinHandle<Result<(StatusCode, Vec<u8>), SyncError>>);
    let mut in_flight: std::collections::VecDeque<InFlight> = std::collections::VecDeque::new();
    let result = async {
        loop {
            // With nothing in flight, from the start of the outbox (a change left unanswered is
            // sent again, as before); else after the newest batch in flight.
            let after = in_flight.back().map_or(i64::MIN, |(b, ..)| b.last_seq());
            let next = match Batch::next(client, store, after)? {
                Some(b) if in_flight.iter().all(|(f, ..)| b.independent_of(f)) => Some(b),
                // It must wait for the answers in flight: read again after them.
                Some(_) | None => None,
            };
            if let Some(batch) = next {
                let request = batch.request();
                // Encoding is CPU work: off this thread, while the batch in flight proceeds.
                let body = tokio::task::spawn_blocking(move || wire::encode(&request))
                    .await
                    .map_err(|e| SyncError::Config(format!("encoding a push: {e}")))?;
                let sent = body.len();
                let task = client.spawn_wire("/api/v1/sync/push", body, token, cancel);
                in_flight.push_back((batch, sent, task));
                if in_flight.len() < 2 {
                    continue;
                }
            }
            let Some((batch, sent, task)) = in_flight.pop_front() else { return Ok(()) };
            let answer = task.await.unwrap_or_else(|e| Err(SyncError::Offline(format!("push task: {e}"))));
            let response: PushResponse = client.answer(sent, answer, p)?;
            absorb_push(store, &batch, response, p, report)?;
            sink.on_progress(p);
        }
    }
    .await;
    // A failed sync leaves nothing running: a push cut anywhere is safe to make again.
    for (_, _, task) in in_flight {
        task.abort();
    }
    result
}

/// What a push's answer means for the store: acknowledged changes leave the outbox; refused
/// documents are held with the server's reason, accepted ones are held no longer.
fn absorb_push(
    store: &Store,
    batch: &Batch,
    response: PushResponse,
    p: &mut SyncProgress,
    report: &mut SyncReport,
) -> Result<(), SyncError> {
    let in_batch = batch.documents();
    let sent: HashSet<&str> = batch.changes.iter().map(|c| c.hash.as_str()).collect();
    let acked: Vec<String> = response.acknowledged.into_iter().filter(|h| sent.contains(h.as_str())).collect();
    let refused: Vec<(String, crate::model::RecordKind, String, String, String)> = response
        .refused
        .into_iter()
        .filter(|r| in_batch.contains(r.doc_id.as_str()))
        .map(|r| (r.doc_id, r.kind, r.code, r.message, r.message_en))
        .collect();
    if acked.is_empty() && refused.is_empty() {
        return Err(SyncError::Refused {
            status: 200,
            body: ErrorBody {
                code: "not_acknowledged".into(),
                message: "服务器未确认任何更改".into(),
                message_en: "the server acknowledged none of the pushed changes".into(),
                field: None,
            },
        });
    }
    let refused_ids: HashSet<&str> = refused.iter().map(|r| r.0.as_str()).collect();
    let accepted: Vec<String> = in_batch.iter().filter(|d| !refused_ids.contains(*d)).map(|d| d.to_string()).collect();
    if !refused.is_empty() {
        tracing::info!(documents = refused.len(), "the server refused documents; they are held");
        report.newly_held += store.hold(&refused)? as u64;
    }
    store.release(&accepted)?;
    report.changes_pushed += acked.len() as u64;
    store.acknowledge(&acked)?;
    p.documents_up += accepted.len() as u64;
    p.changes_pending = store.outbox_len()? as u64;
    Ok(())
}

/// [`sync`] on the calling thread (which it blocks): for callers without an async runtime.
pub fn sync_blocking(
    store: &Store,
    config: &SyncConfig,
    sink: &dyn ProgressSink,
    cancel: &CancelToken,
) -> Result<SyncReport, SyncError> {
    runtime()?.block_on(sync(store, config, sink, cancel))
}

/// [`logout`] on the calling thread.
pub fn logout_blocking(store: &Store, config: &SyncConfig) -> Result<(), SyncError> {
    runtime()?.block_on(logout(store, config))
}

/// The server this store last logged in to, as a configuration, with the root certificate
/// it logged in with. Plain HTTP is allowed again only if it was allowed at login, the only
/// way an `http://` URL gets stored.
pub fn stored_config(store: &Store) -> Result<Option<SyncConfig>, SyncError> {
    let root_certificate_pem = store.meta(META_ROOT_CERTIFICATE)?.map(String::into_bytes);
    Ok(store.meta(META_SERVER)?.map(|url| SyncConfig {
        allow_http: url.starts_with("http://"),
        root_certificate_pem,
        ..SyncConfig::new(url)
    }))
}

/// [`login`] on the calling thread.
pub fn login_blocking(
    store: &Store,
    config: &SyncConfig,
    username: &str,
    password: &str,
    device_name: &str,
) -> Result<LoginResponse, SyncError> {
    runtime()?.block_on(login(store, config, username, password, device_name))
}

/// Lets the connection whose answer was just read go back to the pool before the next request
/// looks for one. hyper returns an HTTP/1 connection to its pool from a task of its own, woken
/// once the connection is idle; a request made before that task ran finds the pool empty and
/// opens a second connection (a TCP and TLS handshake: two or three round trips on a slow link).
/// A task spawned now runs on the I/O worker after that one (it is woken by the connection's own
/// task, into the worker's next slot), so waiting for it costs microseconds and keeps a sync on
/// one kept-alive connection.
async fn settle_connection() {
    let _ = tokio::spawn(async {}).await;
}

fn runtime() -> Result<tokio::runtime::Runtime, SyncError> {
    // One worker: the next pull page is fetched on it while the calling thread stores the last.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| SyncError::Config(format!("cannot start the I/O runtime: {e}")))
}
