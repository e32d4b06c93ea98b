//! The raw engine.io / socket.io client codec that ao-socketio's own tests,
//! the integration tests (`tests/it`) and the load generator (`bench`) share.
//!
//! Hand-written on purpose: the maintained socket.io client libraries hide
//! what these users need. The tests must send malformed frames and see every
//! packet the server sends in order; the load generator must decode frames
//! without copying and speak both protocol generations (engine.io 3 with
//! socket.io 4, engine.io 4 with socket.io 5) over a bare tokio-tungstenite
//! stream, with no runtime or reconnection logic of its own.
//!
//! The codec and the websocket opening sequence are here; each user keeps
//! its own connection type around them, because what they want from one
//! differs (tests panic on anything unexpected and record every frame; the
//! load generator returns errors, batches writes and keeps its hot loop
//! free of allocations).
//!
//! - [`frame`]: engine.io text frames and the socket.io packets they carry
//!   (websocket transport), both directions, borrowing from the frame.
//! - [`payload`]: the long-polling payloads of both generations (several
//!   packets in one HTTP body).
//! - [`handshake`]: a websocket client's opening sequence (the open packet,
//!   the socket.io CONNECT and its answer).

#![forbid(unsafe_code)]

pub mod frame;
pub mod handshake;
pub mod payload;

pub use frame::Eio;
