//! engine.io / socket.io text framing over a WebSocket, both directions: the
//! codec the tests share ([`ao_testclient::frame`]), re-exported here under
//! the name the load generator and the floor relay use.
//!
//! Only the codec is shared: the load generator's connection ([`crate::client`])
//! stays its own, because it returns errors instead of panicking, batches
//! writes and keeps its hot loop free of per-frame allocations, which the
//! tests' clients (that record every frame) do not.

pub use ao_testclient::frame::*;
