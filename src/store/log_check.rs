//! `always-online store check` and `always-online store repair`: what an
//! operator runs when the server refuses to start on a corrupt commit log
//! segment (docs/OPERATIONS.md).
//!
//! `check` reads every segment and reports, for each, its records and
//! whether it is whole, replaced by a later copy, torn at its end (the
//! newest segment only: replayed up to the tear) or corrupt (where, and how
//! many intact records follow). `repair` replays every intact record into
//! the database (those after the damage included), gives every room whose
//! history may have lost a msg a new epoch (its inserts renumbered from 0
//! if a seq is missing), renames the damaged segments to
//! `commit-log.<n>.damaged` (kept for inspection) and deletes the rest.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use super::journal::{self, Record};
use super::log_fs::{LogFs, OsFs};
use super::StoreError;

/// What `store check` found in one segment.
#[derive(Debug)]
pub struct SegmentReport {
    pub(crate) number: u64,
    pub(crate) records: usize,
    /// Replaced by a later copy (written after a failure): never replayed.
    pub replaced: bool,
    /// The first bad frame's offset and the intact records after it.
    pub damage: Option<(u64, usize)>,
    /// A bad end that replay accepts as a torn write (the newest segment,
    /// nothing intact after it).
    pub torn_tail: bool,
}

/// What `store check` found in the log.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub(crate) segments: Vec<SegmentReport>,
}

impl CheckReport {
    /// Whether the server would refuse to start.
    pub fn corrupt(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.damage.is_some() && !s.replaced && !s.torn_tail)
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.segments.is_empty() {
            return writeln!(f, "commit log: empty (everything is in the database)");
        }
        for s in &self.segments {
            let state = match (s.replaced, s.damage, s.torn_tail) {
                (true, _, _) => "replaced by a later copy, not replayed".to_owned(),
                (false, None, _) => "whole".to_owned(),
                (false, Some((offset, _)), true) => {
                    format!("torn at byte {offset} (a write never acknowledged), replayed up to it")
                }
                (false, Some((offset, after)), false) => {
                    format!("CORRUPT at byte {offset}, {after} intact records after it")
                }
            };
            writeln!(
                f,
                "{}: {} records, {state}",
                journal::segment_path(Path::new(""), s.number).display(),
                s.records
            )?;
        }
        if self.corrupt() {
            writeln!(
                f,
                "the server refuses to start: `always-online store repair` salvages every intact record and gives the affected rooms a new epoch"
            )?;
        }
        Ok(())
    }
}

/// Reads the commit log in `dir` (without changing it).
pub fn check(dir: &Path) -> Result<CheckReport, StoreError> {
    let (numbers, scans) = read_all(&OsFs, dir)?;
    let replaced = journal::replaced(&numbers, &scans);
    let newest = numbers.last().copied();
    let segments = numbers
        .iter()
        .zip(&scans)
        .map(|(&n, s)| SegmentReport {
            number: n,
            records: s.records.len(),
            replaced: replaced.contains(&n),
            damage: s.damage.as_ref().map(|d| (d.offset, d.salvaged.len())),
            torn_tail: Some(n) == newest
                && s.damage.as_ref().is_some_and(|d| d.salvaged.is_empty()),
        })
        .collect();
    Ok(CheckReport { segments })
}

fn read_all(fs: &dyn LogFs, dir: &Path) -> Result<(Vec<u64>, Vec<journal::Scan>), StoreError> {
    let numbers = journal::segments(fs, dir)?;
    let mut scans = Vec::with_capacity(numbers.len());
    for &n in &numbers {
        scans.push(journal::scan(&fs.read(&journal::segment_path(dir, n))?, n));
    }
    Ok((numbers, scans))
}

/// What `store repair` did.
#[derive(Debug, Default)]
pub struct RepairReport {
    /// Records replayed into the database.
    pub records: usize,
    /// Rooms given a new epoch.
    pub rooms: BTreeSet<String>,
    /// Segments kept as `commit-log.<n>.damaged`.
    pub damaged: Vec<u64>,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "replayed {} records; kept {} damaged segments as commit-log.<n>.damaged; new epoch for {} rooms",
            self.records,
            self.damaged.len(),
            self.rooms.len()
        )?;
        for room in &self.rooms {
            writeln!(f, "  new epoch: {room}")?;
        }
        Ok(())
    }
}

/// Salvages the commit log in `dir` into the database (see the module's
/// doc). The server must not be running (the caller holds the data
/// directory's lock).
pub fn repair(dir: &Path) -> Result<RepairReport, StoreError> {
    let fs = OsFs;
    let (numbers, scans) = read_all(&fs, dir)?;
    let replaced = journal::replaced(&numbers, &scans);
    let mut conn = crate::sqlite::open(dir)?;
    let known: Vec<String> = conn
        .prepare("SELECT room FROM rooms")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let db_epoch = super::sqlite::database_id(&conn)?;
    let mut report = RepairReport::default();
    let mut records: Vec<Record> = Vec::new();
    let mut after_damage = false;
    let newest = numbers.last().copied();
    for (&n, scan) in numbers.iter().zip(scans) {
        if replaced.contains(&n) {
            continue;
        }
        let mut found = scan.records;
        // A torn tail of the newest segment is no damage: it was never acknowledged.
        let damage = scan
            .damage
            .filter(|d| Some(n) != newest || !d.salvaged.is_empty());
        if let Some(damage) = damage {
            after_damage = true;
            report.damaged.push(n);
            let bytes = fs.read(&journal::segment_path(dir, n))?;
            // A room whose records sat in the unreadable bytes: its name
            // is often still there.
            for room in known.iter().chain(
                found
                    .iter()
                    .map(|r| r.room().to_owned())
                    .collect::<Vec<_>>()
                    .iter(),
            ) {
                let mut needle = (room.len() as u32).to_le_bytes().to_vec();
                needle.extend_from_slice(room.as_bytes());
                if damage
                    .unreadable
                    .iter()
                    .any(|r| contains(&bytes[r.clone()], &needle))
                {
                    report.rooms.insert(room.clone());
                }
            }
            found.extend(damage.salvaged);
        }
        if after_damage {
            // Every room written at or after the damage may now have a hole.
            report
                .rooms
                .extend(found.iter().map(|r| r.room().to_owned()));
        }
        records.extend(found);
    }
    report.records = records.len();
    super::sqlite::apply(&mut conn, &records, &db_epoch)?;
    for room in &report.rooms {
        super::sqlite::renew_epoch(&mut conn, room)?;
    }
    for &n in &report.damaged {
        let path = journal::segment_path(dir, n);
        let kept = path.with_extension(format!(
            "{}.damaged",
            path.extension()
                .and_then(|e| e.to_str())
                .unwrap_or_default()
        ));
        fs.rename(&path, &kept)?;
        fs.sync_dir(dir)?;
    }
    journal::remove_segments(&fs, dir, &numbers)?;
    Ok(report)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
