//! The load scenarios: `fanout` (and `cluster`, the same over several
//! nodes), `conns` and `sync`, on a fleet of connection tasks.

pub mod conns;
pub mod fanout;
pub mod fleet;
pub mod sync;
