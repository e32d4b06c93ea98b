//! What an entry waiting in a queue costs in memory, as every byte bound
//! of this crate counts it (public so an application bounding its own
//! queues counts the same way).
//!
//! A bound that counted only payload bytes would let a client hold any
//! amount of memory with entries of none: a million one-byte pongs are a
//! megabyte of payload and tens of megabytes of records. So an entry counts
//! its payload, the record that holds it (its slot in the queue and any
//! box around it) and, for each heap allocation, [`ALLOCATION_OVERHEAD`].

/// What one heap allocation costs beyond the bytes asked for, counted
/// high on purpose: glibc's malloc rounds every request up to 16 bytes
/// after an 8-byte header and hands out at least 32, so a one-byte
/// allocation takes 32 bytes; other allocators (jemalloc, mimalloc) round
/// small sizes to classes of 8 or 16. 32 bytes covers each of them.
pub const ALLOCATION_OVERHEAD: usize = 32;

/// The memory of one heap allocation of `bytes` bytes (none for 0: an
/// empty `String`, `Vec` or `Bytes` does not allocate).
pub const fn allocation(bytes: usize) -> usize {
    if bytes == 0 {
        0
    } else {
        bytes.saturating_add(ALLOCATION_OVERHEAD)
    }
}

/// The memory of an entry: the record of type `T` held inline (in a
/// queue's slot), and heap allocations of the given sizes.
pub fn entry<T>(allocations: &[usize]) -> usize {
    allocations
        .iter()
        .fold(std::mem::size_of::<T>(), |sum, &n| {
            sum.saturating_add(allocation(n))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_entry_still_counts_its_record() {
        assert_eq!(allocation(0), 0);
        assert_eq!(allocation(1), 1 + ALLOCATION_OVERHEAD);
        assert_eq!(entry::<[u8; 40]>(&[]), 40);
        assert_eq!(entry::<[u8; 40]>(&[1, 0]), 40 + 1 + ALLOCATION_OVERHEAD);
        assert_eq!(entry::<u8>(&[usize::MAX]), usize::MAX);
    }
}
