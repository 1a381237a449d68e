//! Sync between the device store and the county server: the wire format (shared with the
//! server) and the client.

pub mod client;
pub mod wire;

pub use client::{
    fetch_attachment, fetch_attachment_blocking, login, login_blocking, logout, logout_blocking, stored_config, sync,
    sync_blocking, CancelToken, Client, ProgressSink, SyncConfig, SyncError, SyncProgress, SyncReport,
};
