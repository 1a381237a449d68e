//! The ohassist county server: the sync endpoint for the inspectors' phones, users and
//! devices, and scope by org unit, over one SQLite database.
//!
//! Two layers. The HTTP layer: [`api`] (the sync, auth, admin and attachment endpoints,
//! the one error type, the extractors) and [`web`] (the console's pages and the read-only
//! JSON API under `/api/v1/`). The domain, everything else, each module with its own error:
//! - [`records`]: applying pushes (`records/push.rs`, in named steps), server edits,
//!   "load in scope or 404", and reading pull pages;
//! - [`attachments`]: evidence files on disk, their check, thumbnails, visit flags;
//! - [`accounts`]: users, devices, passwords and tokens; [`login`] the password check and
//!   the failure limit for the API and the console alike, and the console's sessions;
//!   [`clients`] the read-only API clients' tokens;
//! - [`export`]: the records export for a provincial platform (pages after a feed cursor);
//! - [`scope`]: which division codes an org unit covers;
//! - [`db`]: the schema and the writer/reader connections; [`backup`] `ohassist backup` and
//!   `restore` (a consistent online copy, verified on the way back);
//! - [`reports`]: the two tables and the dashboard figures, from the computed status rows;
//! - [`units`]: org units by name;
//! - [`relay`]: the relay to an upstream server (county → city → province), over the
//!   phones' own sync client.
//!
//! Beside both: [`cli`] and [`serve`], the `ohassist` command and the listening server;
//! [`demo`], a synthetic city entered through the sync client and served.
//!
//! Invariant: only [`api`] and [`web`] know HTTP. The domain takes a connection and returns
//! values or its own errors (`RecordsError`, `AttachmentError`, `AccountError`,
//! `LoginError`, `CursorError`, `RelayError`, `DbError`), which `api/error.rs` and `web/mod.rs` each map
//! once to status codes and bodies; so the command-line tools and the tests use the domain
//! directly. `tests/api/layers.rs` fails on a status code or an HTTP error type outside them.

pub mod accounts;
pub mod api;
pub mod attachments;
pub mod backup;
pub mod cli;
pub mod clients;
pub mod db;
pub mod demo;
pub mod export;
pub mod login;
pub mod migrate;
pub mod records;
pub mod relay;
pub mod reports;
pub mod scope;
pub mod serve;
pub mod sql;
pub mod units;
pub mod web;

pub use api::AppState;

/// The whole server over `state`, the sync API and the console: what `serve` runs and
/// what the tests call.
pub fn app(state: AppState) -> axum::Router {
    web::router().with_state(state.clone()).merge(api::app(state))
}
