//! The embedded store's commit log: the writes of each group commit
//! appended to a segment file and made durable with one `fdatasync`
//! before they are acknowledged; SQLite takes them later in large
//! transactions ([`super::sqlite`]). docs/ARCHITECTURE.md states the
//! log's contract; this is how it keeps it.
//!
//! Why a log of our own in front of SQLite: SQLite's WAL logs whole pages,
//! so a commit of a few messages to different rooms writes a 4 KiB page per
//! room; this log writes only the messages, a block per group. No
//! maintained crate offers a group-committed record log with crash-tolerant
//! replay that SQLite could sit behind, and the format is small: records
//! framed by length and CRC-32.
//!
//! The format and its rules:
//! - a group starts on a [`BLOCK`] boundary with a group frame naming its
//!   segment, and is padded with zeros to the next boundary: a block that
//!   holds acknowledged records is never written again, so a torn write
//!   (the drive's physical block, 4096 bytes) only ever damages the group
//!   being written, which was not acknowledged;
//! - after a failed `write` or `fdatasync` the segment is never trusted or
//!   written again (the page cache may show what the disk does not have):
//!   the log is *broken* until [`Journal::recover`] rewrites the records the
//!   segment was acknowledged for, from memory, into a fresh segment that
//!   ends with a copy frame naming the segments it replaces (written under
//!   a temporary name, synced, renamed into place, directory synced); replay
//!   skips replaced segments, so the failed group's seqs can be given out
//!   again;
//! - segments are created, renamed and deleted with a directory `fsync`
//!   after each change;
//! - a segment SQLite has taken may be kept as the *spare* ([`SPARE`]) and
//!   written again as a later segment: overwriting blocks a file already
//!   has makes `fdatasync` write only the data, with no block allocation
//!   and no inode update, which costs the disk and the kernel less than
//!   appending to a fresh file (PostgreSQL and RocksDB recycle their logs
//!   for the same reason). What the earlier use left after the new data
//!   names an older segment in its group frames, so it is never read as
//!   this segment's; a recycled segment is cut to its length (synced)
//!   before the next one is started, so only the newest segment can end in
//!   such leftovers, and the spare is deleted (durably) at start-up, before
//!   any segment is made, so no leftover can name a segment of a later run;
//! - replay ([`replay`]) takes every segment in order; a bad frame is a torn
//!   tail only at the end of the newest segment with no intact group after
//!   it; anywhere else it is corruption, and the store refuses to start
//!   (see [`super::log_check`]).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::value::RawValue;

use super::log_fs::{LogFile, LogFs};

/// One write made durable by the log.
#[derive(Debug, Clone)]
pub enum Record {
    /// An insert with the seq the writer gave it.
    Insert {
        room: String,
        seq: u64,
        ts: i64,
        body: Arc<RawValue>,
    },
    /// An update: the room's latest message with this msgId, ordered by `ord`.
    Update {
        room: String,
        msg_id: String,
        ord: i64,
        ts: i64,
        body: Arc<RawValue>,
    },
}

impl Record {
    /// The room the record belongs to.
    pub fn room(&self) -> &str {
        match self {
            Record::Insert { room, .. } | Record::Update { room, .. } => room,
        }
    }

    /// Bytes the record takes in the log (and about what it holds in memory).
    pub fn size(&self) -> usize {
        HEADER + self.payload_len()
    }

    fn payload_len(&self) -> usize {
        match self {
            Record::Insert { room, body, .. } => 1 + 4 + room.len() + 8 + 8 + 4 + body.get().len(),
            Record::Update {
                room, msg_id, body, ..
            } => 1 + 4 + room.len() + 4 + msg_id.len() + 8 + 8 + 4 + body.get().len(),
        }
    }

    /// Appends the framed record to `out`.
    fn encode(&self, out: &mut Vec<u8>) {
        framed(out, |out| match self {
            Record::Insert {
                room,
                seq,
                ts,
                body,
            } => {
                out.push(INSERT);
                put_str(out, room);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&ts.to_le_bytes());
                put_str(out, body.get());
            }
            Record::Update {
                room,
                msg_id,
                ord,
                ts,
                body,
            } => {
                out.push(UPDATE);
                put_str(out, room);
                put_str(out, msg_id);
                out.extend_from_slice(&ord.to_le_bytes());
                out.extend_from_slice(&ts.to_le_bytes());
                put_str(out, body.get());
            }
        });
    }

    /// The frame in `payload`, or `None` if it is not one.
    fn decode(payload: &[u8]) -> Option<Frame> {
        let mut r = Reader(payload);
        let frame = match r.u8()? {
            INSERT => Frame::Record(Record::Insert {
                room: r.string()?,
                seq: r.u64()?,
                ts: r.u64()? as i64,
                body: r.json()?,
            }),
            UPDATE => Frame::Record(Record::Update {
                room: r.string()?,
                msg_id: r.string()?,
                ord: r.u64()? as i64,
                ts: r.u64()? as i64,
                body: r.json()?,
            }),
            GROUP => Frame::Group {
                segment: r.u64()?,
                len: r.u32()?,
            },
            COPY => Frame::Copy { first: r.u64()? },
            _ => return None,
        };
        r.0.is_empty().then_some(frame)
    }
}

/// Length and CRC-32 of the payload, little-endian u32 each.
const HEADER: usize = 8;
const INSERT: u8 = 1;
const UPDATE: u8 = 2;
const GROUP: u8 = 3;
const COPY: u8 = 4;
/// The largest payload a record may claim: anything above is corruption.
const MAX_PAYLOAD: usize = 1 << 30;

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)?.try_into().ok().map(u32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }
    fn string(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    fn json(&mut self) -> Option<Arc<RawValue>> {
        RawValue::from_string(self.string()?).ok().map(Arc::from)
    }
}

/// What a frame of a segment holds.
#[derive(Debug)]
enum Frame {
    /// A write.
    Record(Record),
    /// The start of a group commit, on a block boundary, in segment
    /// `segment`; the group's other frames take the `len` bytes after it.
    Group { segment: u64, len: u32 },
    /// The end of a copy made after a failure: this segment holds every
    /// acknowledged record of the segments from `first` to itself.
    Copy { first: u64 },
}

/// Appends one frame: header, then what `payload` writes.
fn framed(out: &mut Vec<u8>, payload: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    payload(out);
    let body = &out[start + HEADER..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// The unit a group is aligned and padded to: the physical block of the
/// drives the log is written on (4096 bytes; never less than the logical
/// sector), the most a torn write may damage.
pub const BLOCK: usize = 4096;

/// The bytes of a group's frame: header, kind, segment, length.
const GROUP_FRAME: usize = HEADER + 1 + 8 + 4;

fn round_up(n: usize) -> usize {
    n.div_ceil(BLOCK) * BLOCK
}

/// Encodes a group into `out`: its frame, `records`, an optional copy
/// frame, zeros to the next block.
fn encode_group<'a>(
    out: &mut Vec<u8>,
    segment: u64,
    records: impl IntoIterator<Item = &'a Record>,
    copy_of: Option<u64>,
) {
    out.clear();
    out.resize(GROUP_FRAME, 0);
    for r in records {
        r.encode(out);
    }
    if let Some(first) = copy_of {
        framed(out, |o| {
            o.push(COPY);
            o.extend_from_slice(&first.to_le_bytes());
        });
    }
    let len = (out.len() - GROUP_FRAME) as u32;
    let mut head = Vec::with_capacity(GROUP_FRAME);
    framed(&mut head, |o| {
        o.push(GROUP);
        o.extend_from_slice(&segment.to_le_bytes());
        o.extend_from_slice(&len.to_le_bytes());
    });
    out[..GROUP_FRAME].copy_from_slice(&head);
    out.resize(round_up(out.len()), 0);
}

/// Why the log could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("commit log I/O failed")]
    Io(#[from] io::Error),
    /// A bad frame where only intact ones may be (see [`replay`]).
    #[error(
        "commit log segment {path} is corrupt at byte {offset} ({intact_after} intact records follow it); \
         the server does not start and keeps the file: see `always-online store check` and `store repair` \
         (docs/OPERATIONS.md)"
    )]
    Corrupt {
        path: String,
        offset: u64,
        intact_after: usize,
    },
}

/// The segment being written, in the store's data directory.
pub struct Journal {
    fs: Arc<dyn LogFs>,
    dir: PathBuf,
    file: Box<dyn LogFile>,
    /// The number of the segment being written.
    segment: u64,
    /// Bytes written to it (whole blocks).
    len: u64,
    /// The first segment not handed over yet: the writer's unapplied
    /// records are in the segments from it to `segment`.
    first: u64,
    /// Reused encoding buffer.
    buf: Vec<u8>,
    /// A write or sync failed: the segment takes nothing more, and the log
    /// takes nothing until [`Journal::recover`] succeeds.
    broken: bool,
    /// The file was the spare: bytes of its earlier use may follow `len`.
    recycled: bool,
}

/// What a previous run left in the log: its records in order, the
/// segments they came from (to delete once SQLite has them), and the
/// number of the next segment.
pub struct Leftover {
    pub records: Vec<Record>,
    pub segments: Vec<u64>,
    pub next: u64,
}

impl Journal {
    /// Starts segment `segment` in `dir`: created, and its name made
    /// durable. A failure leaves no file behind (as far as the unlink goes).
    pub fn create(fs: Arc<dyn LogFs>, dir: &Path, segment: u64) -> io::Result<Journal> {
        Journal::start(fs, dir, segment, false)
    }

    /// [`Journal::create`], writing the spare again if there is one and
    /// `reuse` is set.
    fn start(fs: Arc<dyn LogFs>, dir: &Path, segment: u64, reuse: bool) -> io::Result<Journal> {
        let path = segment_path(dir, segment);
        let recycled = reuse
            && fs.list(dir)?.iter().any(|n| n == SPARE)
            && fs.rename(&dir.join(SPARE), &path).is_ok();
        let opened = if recycled {
            fs.open_existing(&path)
        } else {
            fs.create(&path)
        };
        let created = opened.and_then(|file| fs.sync_dir(dir).map(|()| file));
        let file = match created {
            Ok(file) => file,
            Err(e) => {
                let _ = fs.remove(&path);
                return Err(e);
            }
        };
        Ok(Journal {
            fs,
            dir: dir.to_path_buf(),
            file,
            segment,
            len: 0,
            first: segment,
            buf: Vec::new(),
            broken: false,
            recycled,
        })
    }

    /// The number of the segment being written.
    pub fn segment(&self) -> u64 {
        self.segment
    }

    /// Appends `records` as one group and makes them durable (one
    /// `fdatasync`). A failure breaks the log: the group is not
    /// acknowledged, and nothing is appended until [`Journal::recover`].
    pub fn append<'a>(&mut self, records: impl IntoIterator<Item = &'a Record>) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::other(
                "the commit log is broken by an earlier failure",
            ));
        }
        let mut records = records.into_iter().peekable();
        if records.peek().is_none() {
            return Ok(());
        }
        encode_group(&mut self.buf, self.segment, records, None);
        let written = self
            .file
            .write_at(&self.buf, self.len)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.broken = true;
            return Err(e);
        }
        self.len += self.buf.len() as u64;
        if self.buf.capacity() > KEPT_BUFFER {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Whether a failure broke the log (see [`Journal::append`]).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Mends a broken log: `acked`, the records acknowledged since the last
    /// hand-over, are written from memory into the next segment, with a
    /// copy frame saying it replaces every segment from the first not
    /// handed over; written under a temporary name, synced, then renamed
    /// into place (so the segment exists only whole) and the directory
    /// synced. From then on the broken segments are never replayed.
    pub fn recover(&mut self, acked: &[Record]) -> io::Result<()> {
        if !self.broken {
            return Ok(());
        }
        let next = self.segment + 1;
        let tmp = self.dir.join(RECOVERING);
        let path = segment_path(&self.dir, next);
        let mut buf = Vec::new();
        encode_group(&mut buf, next, acked, Some(self.first));
        let done = self.fs.create(&tmp).and_then(|mut file| {
            file.write_at(&buf, 0)?;
            file.sync_data()?;
            self.fs.rename(&tmp, &path)?;
            self.fs.sync_dir(&self.dir)?;
            Ok(file)
        });
        match done {
            Ok(file) => {
                self.file = file;
                self.segment = next;
                self.len = buf.len() as u64;
                self.broken = false;
                self.recycled = false;
                Ok(())
            }
            Err(e) => {
                let _ = self.fs.remove(&tmp);
                Err(e)
            }
        }
    }

    /// Seals the segment being written and starts the next; returns the
    /// segments the records handed over since the last rotation are in
    /// (to delete, in order, once SQLite has them).
    pub fn rotate(&mut self) -> io::Result<Vec<u64>> {
        if self.broken {
            return Err(io::Error::other(
                "the commit log is broken by an earlier failure",
            ));
        }
        if self.recycled {
            // Sealed at its length: what the earlier use left after it
            // must not follow a segment that is no longer the newest.
            let cut = self
                .file
                .truncate(self.len)
                .and_then(|()| self.file.sync_data());
            if let Err(e) = cut {
                self.broken = true;
                return Err(e);
            }
            self.recycled = false;
        }
        let next = Journal::start(self.fs.clone(), &self.dir, self.segment + 1, true)?;
        let sealed = std::mem::replace(self, next);
        Ok((sealed.first..=sealed.segment).collect())
    }
}

/// An encoding buffer that grew past this in a burst is given back.
const KEPT_BUFFER: usize = 1 << 20;

/// Deletes the segments `numbers` of the log in `dir` (their records are
/// in SQLite), in order, each unlink made durable before the next: a
/// segment replaced by a later copy is gone before the copy is.
pub fn remove_segments(fs: &dyn LogFs, dir: &Path, numbers: &[u64]) -> io::Result<()> {
    for &n in numbers {
        match fs.remove(&segment_path(dir, n)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs.sync_dir(dir)?;
    }
    Ok(())
}

/// Deletes the segments `numbers` as [`remove_segments`] does, but keeps
/// the last one as the spare (see the module's doc) when there is none.
pub fn retire_segments(fs: &dyn LogFs, dir: &Path, numbers: &[u64]) -> io::Result<()> {
    let Some((&last, older)) = numbers.split_last() else {
        return Ok(());
    };
    remove_segments(fs, dir, older)?;
    if fs.list(dir)?.iter().any(|n| n == SPARE) {
        return remove_segments(fs, dir, &[last]);
    }
    match fs.retire(&segment_path(dir, last), &dir.join(SPARE)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    fs.sync_dir(dir)
}

const PREFIX: &str = "commit-log.";
/// A retired segment kept to be written again (see the module's doc).
const SPARE: &str = "commit-log.spare";
/// The temporary name of a segment being rewritten by [`Journal::recover`].
const RECOVERING: &str = "commit-log.recovering";

/// The path of segment `n` in `dir`.
pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{PREFIX}{n:012}"))
}

/// The segment numbers in `dir`, oldest first.
pub fn segments(fs: &dyn LogFs, dir: &Path) -> io::Result<Vec<u64>> {
    let mut found: Vec<u64> = fs
        .list(dir)?
        .iter()
        .filter_map(|name| name.strip_prefix(PREFIX)?.parse::<u64>().ok())
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// What reading one segment found.
#[derive(Debug, Default)]
pub struct Scan {
    /// The records up to the first bad frame (or all of them).
    pub records: Vec<Record>,
    /// The first segment this one is a copy of the records of, with itself.
    pub replaces: Option<u64>,
    /// Where the first bad frame is, if there is one.
    pub damage: Option<Damage>,
}

/// A bad frame and what follows it.
#[derive(Debug, Default)]
pub struct Damage {
    /// Its offset in the segment.
    pub offset: u64,
    /// The intact groups' records after it (and after any later damage).
    pub salvaged: Vec<Record>,
    /// The byte ranges that could not be read.
    pub unreadable: Vec<std::ops::Range<usize>>,
}

/// Reads segment `segment` from its bytes (see the module's doc).
pub fn scan(bytes: &[u8], segment: u64) -> Scan {
    if matches!(next_frame(bytes), Some((Frame::Record(_), _))) {
        return scan_unframed(bytes);
    }
    let mut out = Scan::default();
    let Some(bad) = read_groups(bytes, 0, segment, &mut out.records, &mut out.replaces) else {
        return out;
    };
    let leftover = bad % BLOCK == 0
        && matches!(next_frame(&bytes[bad..]), Some((Frame::Group { segment: s, .. }, _)) if s < segment);
    let mut damage = Damage {
        offset: bad as u64,
        ..Damage::default()
    };
    let mut from = bad;
    // Intact groups after the damage start on a later block boundary.
    let mut at = round_up(bad + 1);
    while at < bytes.len() {
        if !matches!(next_frame(&bytes[at..]), Some((Frame::Group { segment: s, .. }, _)) if s == segment)
        {
            at += BLOCK;
            continue;
        }
        damage.unreadable.push(from..at);
        let mut replaces = None;
        match read_groups(bytes, at, segment, &mut damage.salvaged, &mut replaces) {
            None => return finish(out, damage, leftover),
            Some(bad) => {
                from = bad;
                at = round_up(bad + 1);
            }
        }
    }
    damage.unreadable.push(from..bytes.len());
    finish(out, damage, leftover)
}

/// Reads a segment of the format before group frames (left by an older
/// version's crash): records one after another, zeros after the last.
fn scan_unframed(bytes: &[u8]) -> Scan {
    let mut out = Scan::default();
    let mut at = 0;
    while at < bytes.len() {
        let header = &bytes[at..(at + HEADER).min(bytes.len())];
        if header.iter().all(|&b| b == 0) && bytes[at..].iter().all(|&b| b == 0) {
            break;
        }
        match next_frame(&bytes[at..]) {
            Some((Frame::Record(r), size)) => {
                out.records.push(r);
                at += size;
            }
            _ => {
                out.damage = Some(Damage {
                    offset: at as u64,
                    salvaged: Vec::new(),
                    unreadable: std::iter::once(at..bytes.len()).collect(),
                });
                break;
            }
        }
    }
    out
}

/// `out` with `damage`, unless the bad frame is where a recycled segment's
/// data ends (`leftover`: an intact group of an older segment on a block
/// boundary) and no group of this segment follows it.
fn finish(mut out: Scan, damage: Damage, leftover: bool) -> Scan {
    if !(leftover && damage.salvaged.is_empty()) {
        out.damage = Some(damage);
    }
    out
}

/// Reads the whole groups from `at` (a block boundary) to the end into
/// `records`; the offset of the first bad frame, if any. A group is read
/// whole or not at all: a torn one was never acknowledged.
fn read_groups(
    bytes: &[u8],
    mut at: usize,
    segment: u64,
    records: &mut Vec<Record>,
    replaces: &mut Option<u64>,
) -> Option<usize> {
    while at < bytes.len() {
        // Zeros from a block's start to the end: nothing more was written.
        if bytes[at..].iter().all(|&b| b == 0) {
            return None;
        }
        let body = match next_frame(&bytes[at..]) {
            Some((Frame::Group { segment: s, len }, size)) if s == segment => {
                at + size..at + size + len as usize
            }
            _ => return Some(at),
        };
        let Some(group) = bytes.get(body.clone()) else {
            return Some(at + GROUP_FRAME);
        };
        let (mut found, mut copy, mut p) = (Vec::new(), None, 0);
        while p < group.len() {
            match next_frame(&group[p..]) {
                Some((Frame::Record(r), size)) => {
                    found.push(r);
                    p += size;
                }
                Some((Frame::Copy { first }, size)) => {
                    copy = Some(first);
                    p += size;
                }
                _ => return Some(body.start + p),
            }
        }
        let padded = round_up(body.end).min(bytes.len());
        if bytes[body.end..padded].iter().any(|&b| b != 0) {
            return Some(body.end);
        }
        records.append(&mut found);
        if copy.is_some() {
            *replaces = copy;
        }
        at = padded;
    }
    None
}

/// The frame at the start of `rest` and its size; `None` if there is no
/// intact one.
fn next_frame(rest: &[u8]) -> Option<(Frame, usize)> {
    let header = rest.get(..HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len == 0 || len > MAX_PAYLOAD {
        return None;
    }
    let payload = rest.get(HEADER..HEADER + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    Some((Record::decode(payload)?, HEADER + len))
}

/// Decodes arbitrary bytes as segment 1 (the fuzz target's entry point):
/// never panics, and what it returns encodes back to frames it reads again.
#[doc(hidden)]
pub fn fuzz_scan(bytes: &[u8]) -> usize {
    let scan = scan(bytes, 1);
    let mut again = Vec::new();
    encode_group(&mut again, 1, &scan.records, scan.replaces);
    let back = self::scan(&again, 1);
    assert!(back.damage.is_none(), "a re-encoded group reads back whole");
    assert_eq!(back.records.len(), scan.records.len());
    scan.records.len() + scan.damage.map_or(0, |d| d.salvaged.len())
}

/// Reads every segment left in `dir`: the records to replay, in order (see
/// the module's doc for what is a torn tail and what is corruption).
pub fn replay(fs: &dyn LogFs, dir: &Path) -> Result<Leftover, LogError> {
    // A copy a crash interrupted before its rename: never acknowledged.
    if fs.list(dir)?.iter().any(|n| n == RECOVERING) {
        fs.remove(&dir.join(RECOVERING))?;
    }
    // A spare of an earlier run: its leftovers could name a segment this
    // run will write, so it goes, durably, before any segment is made.
    if fs.list(dir)?.iter().any(|n| n == SPARE) {
        fs.remove(&dir.join(SPARE))?;
        fs.sync_dir(dir)?;
    }
    let numbers = segments(fs, dir)?;
    let mut scans = Vec::with_capacity(numbers.len());
    for &n in &numbers {
        scans.push(scan(&fs.read(&segment_path(dir, n))?, n));
    }
    let replaced = replaced(&numbers, &scans);
    let mut records = Vec::new();
    for (i, (&n, found)) in numbers.iter().zip(scans).enumerate() {
        if replaced.contains(&n) {
            continue;
        }
        if let Some(damage) = found.damage {
            let newest = i + 1 == numbers.len();
            if !newest || !damage.salvaged.is_empty() {
                return Err(LogError::Corrupt {
                    path: segment_path(dir, n).display().to_string(),
                    offset: damage.offset,
                    intact_after: damage.salvaged.len(),
                });
            }
            tracing::warn!(
                segment = n,
                offset = damage.offset,
                records = found.records.len(),
                "the newest commit log segment ends in a torn group (a write a crash or a failure cut short, never acknowledged); replayed up to it"
            );
        }
        records.extend(found.records);
    }
    Ok(Leftover {
        records,
        next: numbers.last().map_or(1, |n| n + 1),
        segments: numbers,
    })
}

/// The segments a later copy replaces.
pub fn replaced(numbers: &[u64], scans: &[Scan]) -> std::collections::HashSet<u64> {
    let mut out = std::collections::HashSet::new();
    for (&n, s) in numbers.iter().zip(scans) {
        if let Some(first) = s.replaces {
            out.extend(first..n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::sim_disk::{Op, SimFs};
    use super::*;

    fn body(text: &str) -> Arc<RawValue> {
        Arc::from(RawValue::from_string(text.to_owned()).expect("json"))
    }

    fn insert(room: &str, seq: u64, text: &str) -> Record {
        Record::Insert {
            room: room.into(),
            seq,
            ts: 1_700_000_000,
            body: body(&format!("{{\"t\":\"{text}\",\"seq\":{seq}}}")),
        }
    }

    fn sample() -> Vec<Record> {
        vec![
            insert("r1", 7, "é"),
            Record::Update {
                room: "r2".into(),
                msg_id: "m".into(),
                ord: -3,
                ts: 5,
                body: body(r#"{"msgId":"m","s":1}"#),
            },
        ]
    }

    fn texts(records: &[Record]) -> Vec<String> {
        records.iter().map(|r| format!("{r:?}")).collect()
    }

    /// `found` is `acked`, then perhaps the group refused (its outcome
    /// unknown to the client: the disk may have it).
    fn assert_acked_then_maybe(found: &[Record], acked: &[Record], refused: &str, seed: u64) {
        let (head, rest) = found.split_at(acked.len().min(found.len()));
        assert_eq!(texts(head), texts(acked), "seed {seed}");
        assert!(
            rest.iter().all(|r| format!("{r:?}").contains(refused)),
            "seed {seed}: {rest:?}"
        );
    }

    /// Mends the broken log `j` with `acked`, appends one record more (at
    /// `seq`), and checks that a crash then replays exactly those.
    fn assert_recovers(fs: &SimFs, j: &mut Journal, acked: &[Record], seq: u64, case: &str) {
        j.recover(acked).expect("recover");
        let later = insert("r", seq, "acked later");
        j.append(std::slice::from_ref(&later))
            .expect("append after recovery");
        let left = replay(&fs.crash(), dir()).expect("replay");
        let mut want = acked.to_vec();
        want.push(later);
        assert_eq!(texts(&left.records), texts(&want), "{case}");
    }

    fn dir() -> &'static Path {
        Path::new("/data")
    }

    fn open(fs: &SimFs) -> (Journal, Leftover) {
        let left = replay(fs, dir()).expect("replay");
        remove_segments(fs, dir(), &left.segments).expect("remove");
        let j = Journal::create(Arc::new(fs.clone()), dir(), left.next).expect("create");
        (j, left)
    }

    #[test]
    fn records_come_back_as_written_and_each_group_fills_whole_blocks() {
        let fs = SimFs::new(1);
        let (mut j, left) = open(&fs);
        assert!(left.records.is_empty());
        j.append(&sample()).expect("append");
        j.append(&sample()[..1]).expect("append");
        let bytes = fs.file("commit-log.000000000001").expect("segment");
        assert_eq!(bytes.len(), 2 * BLOCK, "one block per small group");
        let left = replay(&fs.crash(), dir()).expect("replay");
        let mut want = sample();
        want.push(sample().remove(0));
        assert_eq!(texts(&left.records), texts(&want));
    }

    #[test]
    fn every_acknowledged_group_survives_a_crash_at_any_point() {
        // Blocks written and not synced are kept, dropped or garbled at the
        // crash: a block holding acknowledged records is never among them.
        for seed in 0..200 {
            let fs = SimFs::new(seed);
            let (mut j, _) = open(&fs);
            let mut acked = Vec::new();
            let groups = seed % 13;
            for g in 0..groups {
                let group: Vec<Record> = (0..(g % 4 + 1))
                    .map(|i| {
                        insert(
                            "r",
                            acked.len() as u64 + i,
                            &"x".repeat((seed * g) as usize % 3000),
                        )
                    })
                    .collect();
                j.append(&group).expect("append");
                acked.extend(group);
                if g % 5 == 4 {
                    j.rotate().expect("rotate");
                }
            }
            // The group the crash cuts short.
            fs.fail(Op::Sync, 0, libc::EIO);
            let _ = j.append(&[insert("r", acked.len() as u64, "cut")]);
            let left = replay(&fs.crash(), dir()).expect("replay");
            assert_acked_then_maybe(&left.records, &acked, "cut", seed);
        }
    }

    #[test]
    fn a_recycled_segment_reads_only_its_own_groups_across_crashes() {
        // Segment 1, written long, becomes the spare; segment 3 writes it
        // again, shorter: its leftovers are never read as segment 3's, not
        // while it is the newest, nor once sealed, nor after any crash.
        for seed in 0..200 {
            let fs = SimFs::new(seed);
            let (mut j, _) = open(&fs);
            let long: Vec<Record> = (0..40)
                .map(|i| insert("old", i, &"o".repeat(300)))
                .collect();
            for chunk in long.chunks(3) {
                j.append(chunk).expect("append");
            }
            let sealed = j.rotate().expect("rotate");
            retire_segments(&fs, dir(), &sealed).expect("retire");
            assert!(fs.names().contains(&SPARE.to_owned()));
            let mut acked = vec![insert("r", 0, "two")];
            j.append(&acked).expect("append");
            let sealed = j.rotate().expect("rotate to the spare");
            assert_eq!(sealed, [2]);
            assert!(
                !fs.names().contains(&SPARE.to_owned()),
                "the spare is segment 3"
            );
            let three = insert("r", 1, &"n".repeat(seed as usize * 37 % 5000));
            j.append(std::slice::from_ref(&three)).expect("append");
            acked.push(three);
            let recycled = fs.file("commit-log.000000000003").expect("segment 3");
            assert!(
                recycled.len() > round_up(acked[1].size() + GROUP_FRAME),
                "leftovers follow"
            );
            if seed % 2 == 1 {
                // Sealed: cut to its length before segment 4 is made.
                j.rotate().expect("rotate");
                let sealed = fs.file("commit-log.000000000003").expect("segment 3");
                assert_eq!(sealed.len(), round_up(acked[1].size() + GROUP_FRAME));
                let four = insert("r", 2, "four");
                j.append(std::slice::from_ref(&four)).expect("append");
                acked.push(four);
            }
            fs.fail(Op::Sync, 0, libc::EIO);
            let _ = j.append(&[insert("r", acked.len() as u64, "cut")]);
            let after = fs.crash();
            let left = replay(&after, dir()).expect("replay: leftovers are no corruption");
            assert_acked_then_maybe(&left.records, &acked, "cut", seed);
            if seed % 2 == 0 {
                let scan = scan(&after.file("commit-log.000000000003").expect("3"), 3);
                assert!(
                    scan.damage.is_none() || !scan.records.is_empty(),
                    "seed {seed}: the group cut short, or nothing but leftovers"
                );
            }
        }
    }

    #[test]
    fn a_failed_cut_of_a_recycled_segment_breaks_the_log_and_recovery_keeps_every_acked_record() {
        for seed in 0..100 {
            for failing in [Op::Write, Op::Sync] {
                let fs = SimFs::new(seed);
                let (mut j, _) = open(&fs);
                let old: Vec<Record> = (0..20)
                    .map(|i| insert("old", i, &"o".repeat(500)))
                    .collect();
                j.append(&old).expect("append");
                let sealed = j.rotate().expect("rotate");
                retire_segments(&fs, dir(), &sealed).expect("retire");
                j.append(&[insert("r", 0, "two")]).expect("append");
                let sealed = j.rotate().expect("rotate to the spare");
                retire_segments(&fs, dir(), &sealed).expect("retire");
                // Segment 3 is the recycled one; its cut at the seal fails.
                let acked = vec![insert("r", 1, "three")];
                j.append(&acked).expect("append");
                fs.fail(failing, 0, libc::EIO);
                assert!(j.rotate().is_err(), "seed {seed} {failing:?}");
                assert!(j.is_broken(), "the segment is not trusted again");
                assert_recovers(&fs, &mut j, &acked, 2, &format!("seed {seed} {failing:?}"));
            }
        }
    }

    #[test]
    fn a_spare_that_cannot_be_taken_leaves_a_fresh_segment_to_write() {
        let fs = SimFs::new(5);
        let (mut j, _) = open(&fs);
        let mut acked = vec![insert("r", 0, "one")];
        j.append(&acked).expect("append");
        let sealed = j.rotate().expect("rotate");
        retire_segments(&fs, dir(), &sealed).expect("retire");
        acked = vec![insert("r", 1, "two")];
        j.append(&acked).expect("append");
        // The rename of the spare to segment 3 fails: 3 is created afresh.
        fs.fail(Op::Rename, 0, libc::EIO);
        assert_eq!(j.rotate().expect("rotate without the spare"), [2]);
        assert!(fs.names().contains(&SPARE.to_owned()), "the spare stays");
        assert!(!j.recycled);
        let three = insert("r", 2, "three");
        j.append(std::slice::from_ref(&three)).expect("append");
        assert_eq!(
            fs.file("commit-log.000000000003").expect("3").len(),
            BLOCK,
            "a fresh file holds only its own group"
        );
        acked.push(three);
        let left = replay(&fs.crash(), dir()).expect("replay");
        assert_eq!(texts(&left.records), texts(&acked));
    }

    #[test]
    fn a_spare_that_cannot_be_opened_fails_the_rotation_and_leaves_nothing_behind() {
        for failing in [Op::Create, Op::SyncDir] {
            let fs = SimFs::new(11);
            let (mut j, _) = open(&fs);
            j.append(&[insert("r", 0, "one")]).expect("append");
            let sealed = j.rotate().expect("rotate");
            retire_segments(&fs, dir(), &sealed).expect("retire");
            let mut acked = vec![insert("r", 1, "two")];
            j.append(&acked).expect("append");
            // Renamed to segment 3, then its open (or the directory sync) fails.
            fs.fail(failing, 0, libc::EIO);
            assert!(j.rotate().is_err(), "{failing:?}");
            assert!(!j.is_broken(), "{failing:?}: the current segment is intact");
            assert!(
                !fs.names().contains(&"commit-log.000000000003".to_owned()),
                "{failing:?}: no segment left behind"
            );
            let more = insert("r", 2, "still in segment 2");
            j.append(std::slice::from_ref(&more)).expect("append");
            acked.push(more);
            assert_eq!(j.rotate().expect("rotate afresh"), [2]);
            let three = insert("r", 3, "three");
            j.append(std::slice::from_ref(&three)).expect("append");
            acked.push(three);
            let left = replay(&fs.crash(), dir()).expect("replay");
            assert_eq!(texts(&left.records), texts(&acked), "{failing:?}");
        }
    }

    #[test]
    fn the_spare_of_an_earlier_run_is_deleted_before_anything_is_written() {
        let fs = SimFs::new(3);
        let (mut j, _) = open(&fs);
        j.append(&[insert("r", 0, "a")]).expect("append");
        let sealed = j.rotate().expect("rotate");
        retire_segments(&fs, dir(), &sealed).expect("retire");
        let after = fs.crash();
        let (_, left) = open(&after);
        assert!(left.records.is_empty());
        assert!(!after.names().contains(&SPARE.to_owned()));
        let again = after.crash();
        assert!(
            !again.names().contains(&SPARE.to_owned()),
            "its deletion was durable"
        );
    }

    #[test]
    fn a_failed_sync_breaks_the_log_and_recovery_lets_the_seqs_be_reused() {
        for seed in 0..200 {
            for failing in [Op::Write, Op::Sync] {
                let fs = SimFs::new(seed);
                let (mut j, _) = open(&fs);
                let acked = vec![insert("r", 0, "a"), insert("r", 1, "b")];
                j.append(&acked).expect("append");
                fs.fail(failing, 0, libc::EIO);
                assert!(j.append(&[insert("r", 2, "refused")]).is_err());
                assert!(j.is_broken());
                assert!(
                    j.append(&[insert("r", 2, "again")]).is_err(),
                    "nothing more until mended"
                );
                assert_recovers(&fs, &mut j, &acked, 2, &format!("seed {seed} {failing:?}"));
            }
        }
    }

    #[test]
    fn a_failed_recovery_keeps_the_log_broken_and_replay_right() {
        for seed in 0..100 {
            for failing in [Op::Create, Op::Write, Op::Sync, Op::Rename, Op::SyncDir] {
                let fs = SimFs::new(seed);
                let (mut j, _) = open(&fs);
                let acked = vec![insert("r", 0, "a")];
                j.append(&acked).expect("append");
                fs.fail(Op::Sync, 0, libc::EIO);
                assert!(j.append(&[insert("r", 1, "refused")]).is_err());
                fs.fail(failing, 0, libc::EIO);
                assert!(j.recover(&acked).is_err(), "{failing:?}");
                assert!(j.is_broken());
                let left = replay(&fs.crash(), dir()).expect("replay");
                assert_acked_then_maybe(&left.records, &acked, "refused", seed);
            }
        }
    }

    #[test]
    fn damage_anywhere_but_the_newest_segments_tail_is_corruption() {
        let fs = SimFs::new(3);
        let (mut j, _) = open(&fs);
        for g in 0..4u64 {
            j.append(&[insert("r", g, "x")]).expect("append");
        }
        j.rotate().expect("rotate");
        j.append(&[insert("r", 4, "y")]).expect("append");
        let sealed = "commit-log.000000000001";
        let good = fs.file(sealed).expect("segment");
        // The newest segment's last group torn: cut off, the rest replayed.
        let newest = "commit-log.000000000002";
        let mut torn = fs.file(newest).expect("newest");
        torn[HEADER + 30] ^= 1;
        fs.set_file(newest, torn);
        assert_eq!(replay(&fs, dir()).expect("replay").records.len(), 4);
        // One flipped byte in the second group of the sealed segment.
        let mut bad = good.clone();
        bad[BLOCK + HEADER + 30] ^= 1;
        fs.set_file(sealed, bad);
        match replay(&fs, dir()) {
            Err(LogError::Corrupt {
                path,
                offset,
                intact_after,
            }) => {
                assert!(path.ends_with(sealed), "{path}");
                // The record after the group's frame (header, kind, segment).
                assert_eq!((offset, intact_after), ((BLOCK + GROUP_FRAME) as u64, 2));
            }
            other => panic!("{:?}", other.map(|l| l.records.len())),
        }
        // An intact group after a bad one in the newest segment: corruption too.
        fs.set_file(sealed, good);
        j.append(&[insert("r", 5, "z")]).expect("append");
        let mut bad = fs.file(newest).expect("newest");
        bad[HEADER + 31] ^= 1;
        fs.set_file(newest, bad);
        assert!(matches!(
            replay(&fs, dir()),
            Err(LogError::Corrupt {
                intact_after: 1,
                ..
            })
        ));
    }

    #[test]
    fn deleted_segments_stay_deleted_after_a_crash() {
        for seed in 0..50 {
            let fs = SimFs::new(seed);
            let (mut j, _) = open(&fs);
            j.append(&[insert("r", 0, "a")]).expect("append");
            let sealed = j.rotate().expect("rotate");
            remove_segments(&fs, dir(), &sealed).expect("remove");
            let left = replay(&fs.crash(), dir()).expect("replay");
            assert!(left.records.is_empty(), "seed {seed}");
        }
    }

    #[test]
    fn a_failed_start_leaves_no_segment_behind() {
        let fs = SimFs::new(5);
        fs.fail(Op::SyncDir, 0, libc::EIO);
        assert!(Journal::create(Arc::new(fs.clone()), dir(), 1).is_err());
        assert!(fs.names().is_empty(), "{:?}", fs.names());
    }

    #[test]
    fn the_fuzz_seeds_read_as_their_names_say() {
        let seed = |name: &str| {
            std::fs::read(format!(
                "{}/fuzz/seeds/segment/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .expect("seed")
        };
        for (name, records, damaged, replaces) in [
            ("one-group", 1, false, None),
            ("two-groups", 3, false, None),
            ("copy", 1, false, Some(1)),
            ("torn-tail", 1, true, None),
        ] {
            let found = scan(&seed(name), 1);
            assert_eq!(found.records.len(), records, "{name}");
            assert_eq!(found.damage.is_some(), damaged, "{name}");
            assert_eq!(found.replaces, replaces, "{name}");
            fuzz_scan(&seed(name));
        }
    }

    #[test]
    fn a_segment_of_the_format_before_groups_is_still_replayed() {
        let mut bytes = Vec::new();
        for r in sample() {
            r.encode(&mut bytes);
        }
        bytes.resize(bytes.len().div_ceil(512) * 512, 0);
        let found = scan(&bytes, 1);
        assert!(found.damage.is_none());
        assert_eq!(texts(&found.records), texts(&sample()));
        let size: usize = sample().iter().map(Record::size).sum();
        let torn = scan(&bytes[..size - 3], 1);
        assert_eq!(torn.records.len(), 1);
        assert!(torn.damage.is_some_and(|d| d.salvaged.is_empty()));
    }

    #[test]
    fn garbage_never_decodes_and_never_panics() {
        for bytes in [
            &b""[..],
            &[0xff; 8],
            &[4, 0, 0, 0, 0, 0, 0, 0, 1, 2],
            &[1, 0, 0, 0, 0, 0, 0, 0, 9],
        ] {
            assert!(next_frame(bytes).is_none());
            fuzz_scan(bytes);
        }
        assert!(Record::decode(&[INSERT, 255, 255, 255, 255]).is_none());
        assert!(Record::decode(&[]).is_none());
    }
}
