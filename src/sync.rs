//! The one policy for poisoned locks.
//!
//! A `std::sync::Mutex` is poisoned when a thread panicked while holding
//! it. Every critical section in this crate changes its state in single
//! steps (one insert, removal, push, pop or counter change), so the state
//! is consistent whatever panicked: a poisoned lock is used as it is,
//! rather than failing every later caller for one panic.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`, poisoned or not (see the module docs).
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
