//! socket.io: the packets above engine.io and the connection the
//! application talks to.

pub mod conn;
pub mod packet;

pub use packet::{Kind, Parsed, SocketVersion};
