//! The ohassist core for Kotlin, Swift and Python, through uniffi proc-macros.
//!
//! This crate holds no logic: every exported method delegates to `ohassist-core` in one line,
//! records mirror the core's model field for field (with `HashMap` for the core's ordered
//! maps), and the core's errors become the small [`OhassistError`] by an explicit `match`.
//! What a rule means (validation, merge, Table 1) is decided and tested in the core.
//!
//! - [`model`]: the records and vocabularies, and the conversions to and from the core;
//! - [`error`]: the one error type the apps see;
//! - [`store`]: the [`Store`] object — records, lists, conflicts, status;
//! - [`sync`]: login, logout and the sync handle with its progress callback.
//!
//! Every call blocks its thread (SQLite on disk, and HTTP for the sync calls): apps call
//! them off the main thread. See `bindings/README.md`.

uniffi::setup_scaffolding!();

pub mod error;
pub mod model;
pub mod store;
pub mod sync;

pub use error::OhassistError;
pub use store::Store;
pub use sync::{SyncHandle, SyncProgressCallback};
