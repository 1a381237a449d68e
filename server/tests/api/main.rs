//! Handler tests: the router called without a socket (`oneshot`) on a temporary database,
//! plus the `ohassist` binary run end to end. One test binary, one module per area.

mod admin;
mod attachments;
mod auth;
mod bad_input;
mod binary;
mod common;
mod exchange;
mod layers;
mod openapi;
mod relay;
mod sync;
