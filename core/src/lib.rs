//! The offline core of ohassist: enterprise and visit records as Automerge documents in a
//! SQLite store, with field-level merge, conflicts, validation and the Table 1 status.
//!
//! Layers, innermost first (each only uses the ones above it in this list):
//! - [`model`], [`credit_code`], [`validate`], [`status`]: record types and pure rules;
//! - [`limits`]: bounds on Automerge bytes from outside, checked before automerge reads them;
//! - [`doc`]: records as Automerge documents — genesis, diff writes, conflicts (no I/O);
//! - [`sqlite`]: the one way to open a SQLite database, with numbered migrations;
//! - [`store`]: the device's store — documents, index tables, outbox, meta (and, in
//!   `conflict_labels`, a record's conflicts with their field labels);
//! - [`synthetic`]: generated records for the demo, the tests and the benchmarks (pure).

mod conflict_labels;
pub mod credit_code;
pub mod doc;
pub mod error;
pub mod limits;
pub mod model;
pub mod sqlite;
pub mod status;
pub mod store;
pub mod sync;
pub mod synthetic;
pub mod validate;

pub use error::{Error, Reason, Result, ValidationError};
