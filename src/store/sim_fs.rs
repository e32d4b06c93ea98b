//! Planned faults for the commit log's file operations
//! ([`super::log_fs`]), for tests only: [`PlannedFaults`] fails the n-th
//! call of an operation on the real disk, as `AO_TEST_LOG_FAULTS` asks
//! (tests of the real binary). Compiled into debug builds only: release
//! builds ignore the variable. The simulated disk of the unit and model
//! tests is [`super::sim_disk`].

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::log_fs::{LogFile, LogFs};

/// The kinds of file operation a fault can be planned for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Op {
    Create,
    Write,
    Sync,
    Rename,
    Remove,
    SyncDir,
}

impl Op {
    fn parse(s: &str) -> Option<Op> {
        Some(match s {
            "create" => Op::Create,
            "write" => Op::Write,
            "sync" => Op::Sync,
            "rename" => Op::Rename,
            "remove" => Op::Remove,
            "sync_dir" => Op::SyncDir,
            _ => return None,
        })
    }
}

fn fault(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

/// Which calls fail: `AO_TEST_LOG_FAULTS`, a comma-separated list of
/// `<op>@<n>[=enospc]` (op: create, write, sync, rename, remove, sync_dir;
/// n counts that op's calls from 1; EIO unless `=enospc`), e.g.
/// `sync@20,remove@1`. Honoured by debug builds only.
#[derive(Debug, Clone, Default)]
pub(super) struct FaultPlan(Vec<(Op, u64, i32)>);

impl FaultPlan {
    /// The plan in `AO_TEST_LOG_FAULTS`, if set and valid.
    #[cfg(debug_assertions)]
    pub(super) fn from_env() -> Option<FaultPlan> {
        FaultPlan::parse(&std::env::var("AO_TEST_LOG_FAULTS").ok()?)
    }

    fn parse(text: &str) -> Option<FaultPlan> {
        let mut plan = Vec::new();
        for item in text.split(',').filter(|s| !s.is_empty()) {
            let (spec, errno) = match item.split_once('=') {
                Some((spec, "enospc")) => (spec, libc::ENOSPC),
                Some(_) => return None,
                None => (item, libc::EIO),
            };
            let (op, n) = spec.split_once('@')?;
            plan.push((Op::parse(op)?, n.parse().ok()?, errno));
        }
        Some(FaultPlan(plan))
    }

    fn errno(&self, op: Op, call: u64) -> Option<i32> {
        self.0
            .iter()
            .find(|(o, n, _)| *o == op && *n == call)
            .map(|(_, _, e)| *e)
    }
}

/// Another file system with the calls of a [`FaultPlan`] failing (the
/// failed call does nothing).
pub(super) struct PlannedFaults<F> {
    inner: F,
    plan: FaultPlan,
    calls: Arc<Mutex<HashMap<Op, u64>>>,
}

impl<F> PlannedFaults<F> {
    pub(super) fn new(inner: F, plan: FaultPlan) -> Self {
        Self {
            inner,
            plan,
            calls: Arc::default(),
        }
    }
}

fn count(calls: &Mutex<HashMap<Op, u64>>, plan: &FaultPlan, op: Op) -> io::Result<()> {
    let mut calls = crate::sync::lock(calls);
    let n = calls.entry(op).or_default();
    *n += 1;
    match plan.errno(op, *n) {
        Some(errno) => Err(fault(errno)),
        None => Ok(()),
    }
}

impl<F: LogFs> LogFs for PlannedFaults<F> {
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        count(&self.calls, &self.plan, Op::Create)?;
        Ok(Box::new(PlannedFile {
            inner: self.inner.create(path)?,
            plan: self.plan.clone(),
            calls: self.calls.clone(),
        }))
    }
    fn open_existing(&self, path: &Path) -> io::Result<Box<dyn LogFile>> {
        count(&self.calls, &self.plan, Op::Create)?;
        Ok(Box::new(PlannedFile {
            inner: self.inner.open_existing(path)?,
            plan: self.plan.clone(),
            calls: self.calls.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        count(&self.calls, &self.plan, Op::Rename)?;
        self.inner.rename(from, to)
    }
    fn retire(&self, path: &Path, spare: &Path) -> io::Result<()> {
        count(&self.calls, &self.plan, Op::Remove)?;
        self.inner.retire(path, spare)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        count(&self.calls, &self.plan, Op::Remove)?;
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        count(&self.calls, &self.plan, Op::SyncDir)?;
        self.inner.sync_dir(dir)
    }
}

struct PlannedFile {
    inner: Box<dyn LogFile>,
    plan: FaultPlan,
    calls: Arc<Mutex<HashMap<Op, u64>>>,
}

impl LogFile for PlannedFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        count(&self.calls, &self.plan, Op::Write)?;
        self.inner.write_at(buf, offset)
    }
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        count(&self.calls, &self.plan, Op::Write)?;
        self.inner.truncate(len)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        count(&self.calls, &self.plan, Op::Sync)?;
        self.inner.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_parses_and_fails_the_nth_call() {
        let plan = FaultPlan::parse("sync@2,remove@1=enospc").expect("plan");
        assert_eq!(plan.errno(Op::Sync, 1), None);
        assert_eq!(plan.errno(Op::Sync, 2), Some(libc::EIO));
        assert_eq!(plan.errno(Op::Remove, 1), Some(libc::ENOSPC));
        assert!(FaultPlan::parse("fsync@1").is_none());
        assert!(FaultPlan::parse("sync@x").is_none());
    }
}
