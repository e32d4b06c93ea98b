//! What the disk itself allows: the latency of `fdatasync` after a 4 KiB
//! append, measured in a loop for a few seconds in a scratch directory on
//! the disk under test. A commit log cannot acknowledge faster than this,
//! so the suite prints it above its figures.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::histogram::Histogram;

/// Bytes appended before each `fdatasync`.
pub const APPEND_BYTES: usize = 4096;
/// The probe's file is emptied and written from its start again past this.
const FILE_BYTES: u64 = 64 << 20;

/// What the probe measured.
#[derive(Debug, Clone)]
pub struct DiskSync {
    /// Where the probe's file was.
    pub dir: PathBuf,
    /// How long the loop ran.
    pub elapsed: Duration,
    /// Each append + `fdatasync`, ns.
    pub latency: Histogram,
}

impl DiskSync {
    /// Latency at quantile `q`, ms.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency.quantile(q) as f64 / 1e6
    }

    /// One line for the report's header.
    pub fn summary(&self) -> String {
        format!(
            "disk fdatasync after {} KiB appends: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} syncs in {:.1} s, {})",
            APPEND_BYTES / 1024,
            self.ms(0.5),
            self.ms(0.99),
            self.latency.max() as f64 / 1e6,
            self.latency.count(),
            self.elapsed.as_secs_f64(),
            self.dir.display()
        )
    }
}

/// Appends 4 KiB and calls `fdatasync`, again and again for `time`, in a
/// file of `dir` (removed afterwards). Blocking: run it off the runtime.
pub fn measure(dir: &Path, time: Duration) -> std::io::Result<DiskSync> {
    let path = dir.join("fdatasync-probe");
    let open = || {
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
    };
    let mut file = open()?;
    let block = vec![b'x'; APPEND_BYTES];
    let mut latency = Histogram::new();
    let mut written = 0u64;
    let started = Instant::now();
    while started.elapsed() < time {
        if written >= FILE_BYTES {
            file = open()?;
            written = 0;
        }
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        latency.record(t.elapsed().as_nanos() as u64);
        written += APPEND_BYTES as u64;
    }
    let elapsed = started.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(DiskSync {
        dir: dir.to_owned(),
        elapsed,
        latency,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_syncs_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("dir");
        let r = measure(dir.path(), Duration::from_millis(50)).expect("probe");
        assert!(r.latency.count() >= 1);
        assert!(r.ms(0.99) >= r.ms(0.5));
        assert!(r
            .summary()
            .starts_with("disk fdatasync after 4 KiB appends: p50 "));
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }
}
