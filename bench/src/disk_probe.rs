//! What the disk itself allows: the latency of `fdatasync` after a 4 KiB
//! write, measured in a loop for a few seconds in a scratch directory on
//! the disk under test, half of the time appending (each sync also commits
//! the file's new size and block, as a growing log's does), half of the
//! time overwriting one block in place (the data alone: the device's own
//! flush). A commit log cannot acknowledge faster than this, so the suite
//! prints it above its figures.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
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
    /// How long both loops ran.
    pub elapsed: Duration,
    /// Each append + `fdatasync`, ns.
    pub append: Histogram,
    /// Each overwrite in place + `fdatasync`, ns.
    pub overwrite: Histogram,
}

/// `p50 X ms, p99 Y ms, max Z ms`.
fn quantiles(h: &Histogram) -> String {
    let ms = |ns: u64| ns as f64 / 1e6;
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        ms(h.quantile(0.5)),
        ms(h.quantile(0.99)),
        ms(h.max())
    )
}

impl DiskSync {
    /// One line for the report's header.
    pub fn summary(&self) -> String {
        format!(
            "disk fdatasync after {kib} KiB appends: {}; after {kib} KiB overwrites in place: {} ({} + {} syncs in {:.1} s, {})",
            quantiles(&self.append),
            quantiles(&self.overwrite),
            self.append.count(),
            self.overwrite.count(),
            self.elapsed.as_secs_f64(),
            self.dir.display(),
            kib = APPEND_BYTES / 1024,
        )
    }
}

/// Writes 4 KiB and calls `fdatasync`, again and again, for `time` in all
/// (appending for the first half, overwriting the first block for the
/// second), in a file of `dir` removed afterwards. Blocking: run it off the
/// runtime.
pub fn measure(dir: &Path, time: Duration) -> std::io::Result<DiskSync> {
    let path = dir.join("fdatasync-probe");
    let open = || {
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)
    };
    let block = vec![b'x'; APPEND_BYTES];
    let started = Instant::now();
    let result = (|| -> std::io::Result<(Histogram, Histogram)> {
        let mut file = open()?;
        let mut append = Histogram::new();
        let mut written = 0u64;
        while started.elapsed() < time / 2 || append.count() == 0 {
            if written >= FILE_BYTES {
                file = open()?;
                written = 0;
            }
            append.record(timed(|| {
                file.write_all(&block)?;
                file.sync_data()
            })?);
            written += APPEND_BYTES as u64;
        }
        let mut overwrite = Histogram::new();
        let file: File = open()?;
        file.write_all_at(&block, 0)?;
        file.sync_all()?;
        while started.elapsed() < time || overwrite.count() == 0 {
            overwrite.record(timed(|| {
                file.write_all_at(&block, 0)?;
                file.sync_data()
            })?);
        }
        Ok((append, overwrite))
    })();
    let _ = std::fs::remove_file(&path);
    let (append, overwrite) = result?;
    Ok(DiskSync {
        dir: dir.to_owned(),
        elapsed: started.elapsed(),
        append,
        overwrite,
    })
}

/// How long `f` took, ns.
fn timed(f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<u64> {
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_syncs_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("dir");
        let r = measure(dir.path(), Duration::from_millis(50)).expect("probe");
        assert!(r.append.count() >= 1);
        assert!(r.overwrite.count() >= 1);
        let line = r.summary();
        assert!(
            line.starts_with("disk fdatasync after 4 KiB appends: p50 "),
            "{line}"
        );
        assert!(
            line.contains("; after 4 KiB overwrites in place: p50 "),
            "{line}"
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }
}
