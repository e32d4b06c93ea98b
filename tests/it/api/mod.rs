//! Integration tests of the HTTP APIs (accounts API, admin API, operations,
//! OpenAPI documents) and of the MongoDB account store, against the real
//! server: in process on ephemeral ports, or the real binary; MongoDB is a
//! real FerretDB started per test (see `harness::Ferret`).
//!
//! Run with `cargo test --test it api::`. FerretDB comes from `$AO_FERRETDB_BIN`,
//! or is built once from `tests/ferretdb` (needs Go).

mod harness;

mod accounts;
mod admin;
mod admin_listener;
mod mongo;
mod openapi;
mod operations;
mod readiness;
