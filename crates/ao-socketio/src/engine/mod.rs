//! engine.io: packets and long-polling payloads of revisions 3 and 4, the
//! session beneath socket.io, and an API of its own ([`EngineHandler`]).

pub mod packet;
pub mod payload;
pub(crate) mod session;
pub mod socket;

pub use packet::{DecodeError, EngineVersion, Frame, Packet};
pub use session::{DisconnectReason, Transport};
pub use socket::{EngineHandler, EngineSocket, Message};
