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
//! - [`sync`]: login, logout, sync and attachment downloads, `async`, with the progress
//!   callback.
//!
//! The store's record calls block their thread on SQLite (apps call them off the main
//! thread); the network calls are `async` and cancelled with their coroutine or task. See
//! `bindings/README.md`.

uniffi::setup_scaffolding!();

pub mod error;
pub mod model;
pub mod store;
pub mod sync;

pub use error::OhassistError;
pub use store::Store;
pub use sync::{LoginOptions, SyncProgressCallback};
