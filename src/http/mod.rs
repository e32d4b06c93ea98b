//! HTTP routes served beside socket.io.

pub mod health;
