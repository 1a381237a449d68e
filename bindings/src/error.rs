//! The one error the apps see, and the explicit mapping from the core's errors.
//!
//! The variants are few and stable so that Kotlin and Swift code can `when`/`switch` over
//! them; the core's precise errors stay inside. Messages carry ids, field paths and reasons,
//! never record contents, and the mapping decides what is logged (only what a developer
//! would need to look into: storage trouble, refusals by the server).

use ohassist_core::sync::SyncError;

/// Why a call failed. Kotlin sees `OhassistException.<Variant>`, Swift `OhassistError.<Variant>`.
#[derive(Debug, Clone, PartialEq, thiserror::Error, uniffi::Error)]
pub enum OhassistError {
    /// A field was refused: `field` is its dotted path (`remediation.posts.<id>.unit`), the
    /// reasons are for a person, in Chinese and English.
    #[error("invalid input at {field}: {reason_en}")]
    InvalidInput { field: String, reason_zh: String, reason_en: String },
    /// No record with this id in the store.
    #[error("no record with id {id}")]
    NotFound { id: String },
    /// An enterprise with this credit code is already registered: open `id` instead.
    #[error("already registered as {id}")]
    AlreadyExists { id: String },
    /// Not logged in, or the server no longer accepts the login (revoked, expired) or refuses
    /// this user the data: log in again.
    #[error("not logged in or not allowed")]
    NotAuthorised,
    /// The server could not be reached or could not take the sync now: try again later.
    #[error("offline: {message}")]
    Offline { message: String },
    /// The record changed under the call (e.g. a conflict already settled elsewhere).
    #[error("conflict: {message}")]
    Conflict { message: String },
    /// The store on disk failed or is damaged (or was written by a newer app).
    #[error("storage: {message}")]
    Storage { message: String },
    /// The server speaks a newer protocol: update the app.
    #[error("the server requires a newer app")]
    ProtocolTooOld,
    /// The sync was cancelled through its handle.
    #[error("cancelled")]
    Cancelled,
    /// The key does not open this store (another key, or not an ohassist store). Nothing was
    /// changed: open it with the right key, or, if the key is lost, delete the store and
    /// start as a new device (`bindings/README.md`).
    #[error("the key does not open this store")]
    WrongKey,
    /// An admin marked this device `lost` or `retired` (`reason`): the store has been erased
    /// (after pushing what it held, when retired) and logged out. It is empty now, with a new
    /// device identity; the app shows why and returns to its login screen.
    #[error("this device was {reason}; its store was erased")]
    DeviceErased { reason: String },
    /// A held record was not discarded: it is not held, the confirmation is not of its
    /// current version (show it again), or an enterprise's visits are still on the phone.
    #[error("record {id} was not discarded: {reason}")]
    NotDiscarded { id: String, reason: String },
}

pub type Result<T, E = OhassistError> = std::result::Result<T, E>;

impl From<ohassist_core::Error> for OhassistError {
    fn from(e: ohassist_core::Error) -> Self {
        use ohassist_core::Error as E;
        match e {
            E::Invalid(v) => {
                OhassistError::InvalidInput { reason_zh: v.message_zh(), reason_en: v.message_en(), field: v.field }
            }
            E::AlreadyExists { id } => OhassistError::AlreadyExists { id },
            E::NotFound(id) => OhassistError::NotFound { id },
            E::WrongKey => OhassistError::WrongKey,
            E::NotDiscardable { id, reason } => OhassistError::NotDiscarded { id, reason },
            e @ E::NoSuchConflict { .. } => OhassistError::Conflict { message: e.to_string() },
            e @ (E::CorruptDocument { .. }
            | E::CorruptDatabase(_)
            | E::DatabaseTooNew { .. }
            | E::Storage(_)
            | E::Automerge(_)
            | E::Io(_)) => {
                tracing::error!(error = %e, "store failed");
                OhassistError::Storage { message: e.to_string() }
            }
        }
    }
}

impl From<SyncError> for OhassistError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Offline(message) => OhassistError::Offline { message },
            SyncError::Unauthorized => OhassistError::NotAuthorised,
            SyncError::ProtocolVersion => OhassistError::ProtocolTooOld,
            SyncError::Cancelled => OhassistError::Cancelled,
            SyncError::DeviceErased(reason) => OhassistError::DeviceErased { reason: reason.as_str().to_string() },
            // The core erases the store before this reaches an app; mapped for completeness.
            SyncError::DeviceLost => OhassistError::DeviceErased { reason: "lost".into() },
            SyncError::Refused { status, body } => {
                tracing::warn!(status, code = %body.code, "server refused");
                match (status, body.field) {
                    (403, _) => OhassistError::NotAuthorised,
                    (409, _) => OhassistError::Conflict { message: body.message_en },
                    (_, Some(field)) => {
                        OhassistError::InvalidInput { field, reason_zh: body.message, reason_en: body.message_en }
                    }
                    // Anything else the server refused is not the user's to fix now: the app
                    // shows it and retries the sync later.
                    (_, None) => OhassistError::Offline {
                        message: format!("server refused ({status}, {}): {}", body.code, body.message_en),
                    },
                }
            }
            // A bad server address, plain HTTP not allowed, or an answer that is not from an
            // ohassist server: the connection settings are what the user checks.
            SyncError::Config(reason_en) => OhassistError::InvalidInput {
                field: "server_url".into(),
                reason_zh: "服务器地址或连接设置无效".into(),
                reason_en,
            },
            SyncError::Store(e) => e.into(),
        }
    }
}
