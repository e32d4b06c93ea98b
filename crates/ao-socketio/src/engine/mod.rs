//! engine.io: packets and long-polling payloads of revisions 3 and 4.

pub mod packet;
pub mod payload;

pub use packet::{DecodeError, EngineVersion, Frame, Packet};
