//! The load scenarios: `fanout` (and `cluster`, the same over several
//! nodes), `conns` and `sync`, on a fleet of connection tasks; `soak`, a
//! long run of all of it at once that checks no acknowledged msg is lost.

pub mod conns;
pub mod fanout;
pub mod fleet;
pub mod soak;
pub mod sync;
