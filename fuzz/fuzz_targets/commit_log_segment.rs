//! The embedded store's commit log decoder: any bytes read as a segment
//! never panic, and the records read from them encode into a group that
//! reads back whole and equal in number.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    always_online::store::journal::fuzz_scan(data);
});
