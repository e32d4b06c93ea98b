//! Integration tests of the HTTP APIs (accounts API, admin API, operations,
//! OpenAPI documents) and of the MongoDB account store, against the real
//! server: in process on ephemeral ports, or the real binary; MongoDB is a
//! real FerretDB started per test (see `harness::Ferret`).
//!
//! Run with `cargo test --test api`. FerretDB comes from `$AO_FERRETDB_BIN`,
//! or is built once from `tests/ferretdb` (needs Go).

// The shared socket.io client (tests/support, not ours to edit) trips
// clippy's result_large_err on tungstenite's error type.
#[allow(clippy::result_large_err)]
#[path = "../support/mod.rs"]
mod support;

mod harness;

mod accounts;
mod admin;
mod mongo;
mod openapi;
mod operations;
