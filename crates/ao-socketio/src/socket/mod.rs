//! socket.io: the packets above engine.io, namespaces, and the sockets the
//! application talks to.

pub mod conn;
pub mod namespace;
pub mod packet;

pub use packet::{Kind, Parsed, SocketVersion};
