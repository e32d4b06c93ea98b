//! The commit log's file operations, behind one small interface: the
//! operating system's in production, a simulated disk in tests (see
//! [`super::sim_fs`]) that fails, tears and drops each of them on purpose.
//!
//! Only what the log needs is here: whole-file reads at replay, positioned
//! writes and `fdatasync` of the segment being written, and the directory
//! changes (create, rename, unlink) with the directory `fsync` that makes
//! them durable.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// The file system the commit log lives on.
pub trait LogFs: Send + Sync {
    /// The names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of the file at `path`.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Creates the file at `path` (emptied if it exists) for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Opens the existing file at `path` for writing, keeping its bytes
    /// (a recycled segment, see [`super::journal`]).
    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn LogFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Unlinks the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Takes the name `path` away from a retired segment by renaming it to
    /// `spare`, to be written again later: for the log, the segment is
    /// removed (fault plans count it as a remove).
    fn retire(&self, path: &Path, spare: &Path) -> io::Result<()> {
        self.rename(path, spare)
    }
    /// Makes the directory's entries (creates, renames, unlinks) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// A file of the log open for writing.
pub trait LogFile: Send {
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Cuts the file to `len` bytes (durable with the next
    /// [`LogFile::sync_data`]).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// Makes what was written durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// The operating system's file system.
pub(super) struct OsFs;

impl OsFs {
    /// The file system the log uses in production: the operating system's,
    /// or, in debug builds only, the one a test asked for with
    /// `AO_TEST_LOG_FAULTS` (see [`super::sim_fs::FaultPlan`]).
    pub(super) fn for_store() -> Arc<dyn LogFs> {
        #[cfg(debug_assertions)]
        if let Some(plan) = super::sim_fs::FaultPlan::from_env() {
            tracing::warn!(
                ?plan,
                "AO_TEST_LOG_FAULTS: the commit log fails on purpose (a test build)"
            );
            return Arc::new(super::sim_fs::PlannedFaults::new(OsFs, plan));
        }
        Arc::new(OsFs)
    }
}

impl LogFs for OsFs {
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Box::new(OsFile(file)))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

struct OsFile(File);

impl LogFile for OsFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}
