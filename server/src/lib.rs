//! The ohassist county server: the sync endpoint for the inspectors' phones, users and
//! devices, and scope by org unit, over one SQLite database.
//!
//! Code map:
//! - [`api`]: HTTP — one router per resource, the error type, the extractors;
//! - [`records`]: applying pushes to the merged documents and reading pull pages;
//! - [`attachments`]: evidence files on disk, their check, thumbnails, visit flags;
//! - [`accounts`]: users, devices, passwords and tokens; [`clients`] the read-only API
//!   clients' tokens;
//! - [`export`]: the records export for a provincial platform (pages after a feed cursor);
//! - [`scope`]: which division codes an org unit covers;
//! - [`db`]: the schema and the writer/reader connections; [`backup`] `ohassist backup` and
//!   `restore` (a consistent online copy, verified on the way back);
//! - [`cli`] and [`serve`]: the `ohassist` command and the listening server; [`demo`] a
//!   synthetic city entered through the sync client and served;
//! - [`reports`]: the two tables and the dashboard figures, from the computed status rows;
//! - [`web`]: the supervisor console (HTML) and its JSON API.
//!
//! Invariant: only [`api`] knows HTTP; `records` and `accounts` take a connection and
//! return values or errors, so the command-line tools and the tests use them directly.

pub mod accounts;
pub mod api;
pub mod attachments;
pub mod backup;
pub mod cli;
pub mod clients;
pub mod db;
pub mod demo;
pub mod export;
pub mod records;
pub mod reports;
pub mod scope;
pub mod serve;
pub mod units;
pub mod web;

pub use api::AppState;

/// The whole server over `state`, the sync API and the console: what `serve` runs and
/// what the tests call.
pub fn app(state: AppState) -> axum::Router {
    web::router().with_state(state.clone()).merge(api::app(state))
}
