//! End-to-end tests: one binary, a module per concern. Each test starts its own server
//! on a free loopback port with its own database file.

mod access;
mod attachments;
mod backup;
mod bad_input;
mod client;
mod convergence;
mod demo;
mod devices;
mod exchange;
mod export;
mod faults;
mod hostile;
mod moves;
mod openapi;
mod refusals;
mod relay;
mod web;
mod zones;
