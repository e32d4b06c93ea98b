//! The data directory of the embedded store: checked writable at start-up
//! and held by one server process at a time through a lock file.
//!
//! The lock is an advisory exclusive lock (std's `File::try_lock`, `flock`
//! on Linux) on `always-online.lock`, taken by the
//! server (not by the account commands, which may work on the same store
//! while it runs) and held for the life of the process. The kernel drops it
//! when the process ends, however it ends, so a lock file a killed server
//! left behind never blocks a restart; only a live holder does.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "always-online.lock";

/// Why the data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// It cannot be created.
    #[error("cannot create it")]
    Create(#[source] std::io::Error),
    /// A file cannot be written in it.
    #[error("not writable")]
    NotWritable(#[source] std::io::Error),
    /// The lock file cannot be opened or locked.
    #[error("{path}: cannot lock")]
    Lock {
        /// The lock file.
        path: String,
        /// Why it cannot be opened or locked.
        #[source]
        source: std::io::Error,
    },
    /// Another live process holds its lock.
    #[error("in use by another always-online process{holder} (lock file {path}); stop it first, or give this one another AO_DATA_DIR")]
    InUse {
        /// ` (pid N)` when the holder wrote its pid, else empty.
        holder: String,
        /// The lock file.
        path: String,
    },
}

/// Creates the directory if needed and checks that files can be written in it.
pub fn check_writable(dir: &Path) -> Result<(), DataDirError> {
    std::fs::create_dir_all(dir).map_err(DataDirError::Create)?;
    let probe = dir.join(".write-check");
    std::fs::write(&probe, b"ok").map_err(DataDirError::NotWritable)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// The data directory's lock, held until dropped (or the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    /// The open lock file: closing it releases the lock.
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock of `dir` without waiting, and writes this process's
    /// id into the lock file (for the message another process shows).
    pub fn acquire(dir: &Path) -> Result<DataDirLock, DataDirError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| DataDirError::Lock {
                path: path.display().to_string(),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text
                    .trim()
                    .parse::<u32>()
                    .map_or_else(|_| String::new(), |pid| format!(" (pid {pid})"));
                return Err(DataDirError::InUse {
                    holder,
                    path: path.display().to_string(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(DataDirError::Lock {
                    path: path.display().to_string(),
                    source: e,
                });
            }
        }
        // The pid is information only: the lock is the file lock, not the text.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.flush());
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_dir_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("dir");
        let first = DataDirLock::acquire(dir.path()).expect("first");
        match DataDirLock::acquire(dir.path()) {
            Err(DataDirError::InUse { holder, .. }) => {
                assert_eq!(holder, format!(" (pid {})", std::process::id()));
            }
            other => panic!("expected InUse, got {other:?}"),
        }
        drop(first);
        DataDirLock::acquire(dir.path()).expect("after release");
    }

    #[test]
    fn a_left_over_lock_file_does_not_block() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join(LOCK_FILE), "999999\n").expect("stale file");
        let lock = DataDirLock::acquire(dir.path()).expect("stale file is no lock");
        let text = std::fs::read_to_string(lock.path()).expect("read");
        assert_eq!(text.trim(), std::process::id().to_string());
    }
}
