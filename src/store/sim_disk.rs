//! A simulated disk for the commit log's tests ([`super::log_fs`]): it
//! tells what was written from what is durable, fails any operation on
//! request, and at a crash keeps, drops or garbles each block written since
//! its last `fdatasync` and keeps or drops each directory change made since
//! the last directory `fsync`, deterministically from a seed.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::log_fs::{LogFile, LogFs};
pub(super) use super::sim_fs::Op;

fn fault(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// The block a simulated crash keeps, drops or garbles as a whole: the
/// drive's physical block.
pub(super) const SIM_BLOCK: usize = 4096;

/// One simulated file: what the page cache shows, what the disk holds,
/// and the blocks written since they last agreed.
#[derive(Clone, Default)]
struct SimFile {
    cached: Vec<u8>,
    durable: Vec<u8>,
    dirty: std::collections::BTreeSet<usize>,
}

#[derive(Default)]
struct SimState {
    /// Files by id.
    files: HashMap<u64, SimFile>,
    /// Directory entries as the process sees them, and as the disk has them.
    entries: HashMap<String, u64>,
    durable_entries: HashMap<String, u64>,
    next_id: u64,
    /// The faults still to come: (op, calls of it left before the fault, errno).
    faults: Vec<(Op, u64, i32)>,
    /// Set by a crash: every later call fails, nothing more changes.
    frozen: bool,
    rng: u64,
}

impl SimState {
    /// A deterministic pseudo-random number (xorshift).
    fn next(&mut self) -> u64 {
        let mut x = self.rng.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    fn check(&mut self, op: Op) -> io::Result<()> {
        if self.frozen {
            return Err(fault(libc::EIO));
        }
        let mut failed = None;
        for (i, (o, left, errno)) in self.faults.iter_mut().enumerate() {
            if *o == op {
                if *left == 0 {
                    failed = Some((i, *errno));
                    break;
                }
                *left -= 1;
            }
        }
        match failed {
            Some((i, errno)) => {
                self.faults.remove(i);
                Err(fault(errno))
            }
            None => Ok(()),
        }
    }

    /// What becomes of each block written and not synced when the power
    /// goes (or when a sync fails): kept, dropped or garbled, by chance.
    fn settle(&mut self, id: u64) {
        let Some(mut file) = self.files.remove(&id) else {
            return;
        };
        let len = file.cached.len();
        if file.durable.len() < len {
            file.durable.resize(len, 0);
        }
        // A truncation not synced yet reached the disk or not.
        if file.durable.len() > len && self.next().is_multiple_of(2) {
            file.durable.truncate(len);
        }
        for block in std::mem::take(&mut file.dirty) {
            let start = block * SIM_BLOCK;
            let end = (start + SIM_BLOCK).min(len);
            if start >= end {
                continue;
            }
            match self.next() % 3 {
                0 => file.durable[start..end].copy_from_slice(&file.cached[start..end]),
                1 => {}
                _ => {
                    for b in &mut file.durable[start..end] {
                        *b = self.next() as u8;
                    }
                }
            }
        }
        self.files.insert(id, file);
    }
}

/// A simulated disk (see the module's doc). Clones share it.
#[derive(Clone)]
pub(super) struct SimFs(Arc<Mutex<SimState>>);

impl SimFs {
    /// An empty disk whose chance events follow `seed`.
    pub(super) fn new(seed: u64) -> SimFs {
        SimFs(Arc::new(Mutex::new(SimState {
            rng: seed | 1,
            ..SimState::default()
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, SimState> {
        crate::sync::lock(&self.0)
    }

    /// Makes the call of `op` after `skip` more of them fail with `errno`.
    pub(super) fn fail(&self, op: Op, skip: u64, errno: i32) {
        self.state().faults.push((op, skip, errno));
    }

    /// The power goes: every later call on this disk fails, and the disk
    /// that [`SimFs::new`] would find after the reboot is returned, with
    /// what was not synced kept, dropped or garbled by chance.
    pub(super) fn crash(&self) -> SimFs {
        let mut s = self.state();
        s.frozen = true;
        let ids: Vec<u64> = s.files.keys().copied().collect();
        for id in ids {
            s.settle(id);
        }
        // Each directory change since the last directory sync survives or not.
        let mut entries = s.durable_entries.clone();
        let names: std::collections::BTreeSet<String> = s
            .entries
            .keys()
            .chain(s.durable_entries.keys())
            .cloned()
            .collect();
        for name in names {
            let (now, before) = (s.entries.get(&name).copied(), entries.get(&name).copied());
            if now != before && s.next().is_multiple_of(2) {
                match now {
                    Some(id) => entries.insert(name, id),
                    None => entries.remove(&name),
                };
            }
        }
        let mut files = HashMap::new();
        for &id in entries.values() {
            let durable = s
                .files
                .get(&id)
                .map(|f| f.durable.clone())
                .unwrap_or_default();
            files.insert(
                id,
                SimFile {
                    cached: durable.clone(),
                    durable,
                    dirty: Default::default(),
                },
            );
        }
        let rng = s.next();
        SimFs(Arc::new(Mutex::new(SimState {
            files,
            durable_entries: entries.clone(),
            entries,
            next_id: s.next_id,
            faults: Vec::new(),
            frozen: false,
            rng,
        })))
    }

    /// The bytes of the file `name` as the process sees them.
    pub(super) fn file(&self, name: &str) -> Option<Vec<u8>> {
        let s = self.state();
        let id = s.entries.get(name)?;
        s.files.get(id).map(|f| f.cached.clone())
    }

    /// Replaces the bytes of the file `name`, durably (damage in tests).
    pub(super) fn set_file(&self, name: &str, bytes: Vec<u8>) {
        let mut s = self.state();
        if let Some(id) = s.entries.get(name).copied() {
            s.files.insert(
                id,
                SimFile {
                    cached: bytes.clone(),
                    durable: bytes,
                    dirty: Default::default(),
                },
            );
        }
    }

    /// The file names in the directory.
    pub(super) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.state().entries.keys().cloned().collect();
        names.sort();
        names
    }
}

fn name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

impl LogFs for SimFs {
    fn list(&self, _dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state();
        if s.frozen {
            return Err(fault(libc::EIO));
        }
        Ok(s.entries.keys().cloned().collect())
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.state();
        if s.frozen {
            return Err(fault(libc::EIO));
        }
        let id = s.entries.get(&name(path)).ok_or_else(not_found)?;
        Ok(s.files
            .get(id)
            .map(|f| f.cached.clone())
            .unwrap_or_default())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let mut s = self.state();
        s.check(Op::Create)?;
        s.next_id += 1;
        let id = s.next_id;
        s.files.insert(id, SimFile::default());
        s.entries.insert(name(path), id);
        Ok(Box::new(SimHandle {
            fs: self.clone(),
            id,
        }))
    }

    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        let mut s = self.state();
        s.check(Op::Create)?;
        let id = *s.entries.get(&name(path)).ok_or_else(not_found)?;
        Ok(Box::new(SimHandle {
            fs: self.clone(),
            id,
        }))
    }

    fn retire(&self, path: &Path, spare: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.check(Op::Remove)?;
        let id = s.entries.remove(&name(path)).ok_or_else(not_found)?;
        s.entries.insert(name(spare), id);
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.check(Op::Rename)?;
        let id = s.entries.remove(&name(from)).ok_or_else(not_found)?;
        s.entries.insert(name(to), id);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.check(Op::Remove)?;
        s.entries.remove(&name(path)).ok_or_else(not_found)?;
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut s = self.state();
        s.check(Op::SyncDir)?;
        s.durable_entries = s.entries.clone();
        Ok(())
    }
}

struct SimHandle {
    fs: SimFs,
    id: u64,
}

impl LogFile for SimHandle {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut s = self.fs.state();
        let failed = s.check(Op::Write).err();
        let written = match &failed {
            // A failed write may have written a part (a short write).
            Some(_) => (s.next() as usize) % (buf.len() + 1),
            None => buf.len(),
        };
        let file = s.files.entry(self.id).or_default();
        let offset = offset as usize;
        let end = offset + written;
        if file.cached.len() < end {
            file.cached.resize(end, 0);
        }
        file.cached[offset..end].copy_from_slice(&buf[..written]);
        for block in offset / SIM_BLOCK..end.div_ceil(SIM_BLOCK) {
            file.dirty.insert(block);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.fs.state();
        s.check(Op::Write)?;
        let file = s.files.entry(self.id).or_default();
        let len = len as usize;
        file.cached.truncate(len);
        file.dirty.retain(|&b| b * SIM_BLOCK < len);
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.fs.state();
        if let Err(e) = s.check(Op::Sync) {
            // Like Linux: the dirty blocks reached the disk or not, and
            // are marked clean all the same; the cache keeps what was written.
            s.settle(self.id);
            return Err(e);
        }
        if let Some(file) = s.files.get_mut(&self.id) {
            file.durable = file.cached.clone();
            file.dirty.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synced_data_and_entries_survive_a_crash_and_the_rest_may_not() {
        let fs = SimFs::new(7);
        let dir = Path::new("/d");
        let mut f = fs.create(&dir.join("a")).expect("create");
        f.write_at(b"hello", 0).expect("write");
        f.sync_data().expect("sync");
        fs.sync_dir(dir).expect("sync dir");
        f.write_at(&[1; 10_000], SIM_BLOCK as u64).expect("write");
        let after = fs.crash();
        let bytes = after.read(&dir.join("a")).expect("read");
        assert_eq!(&bytes[..5], b"hello");
        assert!(
            fs.read(&dir.join("a")).is_err(),
            "the crashed disk is frozen"
        );
    }
}
