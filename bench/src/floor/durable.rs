//! The durable floor's group commit: the least a relay can do to
//! acknowledge a stored msg only once it is on disk. One thread gathers the
//! msgs submitted within the commit window after the first (the window is
//! skipped while msgs come further apart than it, as the server's writer
//! does), numbers them per room, appends them to a log file with ordinary
//! buffered writes and makes them durable with one `fdatasync`; only then
//! are they relayed and acknowledged. No CRC, no replay, no database
//! behind it: the file is cut off and reused when it grows past
//! [`SEGMENT_BYTES`].

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{stamp, Room, State};
use crate::engineio;
use crate::log_metrics::LogStats;

/// Most msgs committed in one group (as the server's writer).
const MAX_GROUP: usize = 4096;
/// Msgs that may wait for the log before submitters are held back.
const QUEUE_DEPTH: usize = 65_536;
/// The log file is emptied and written from its start again past this.
const SEGMENT_BYTES: u64 = 64 << 20;

/// A stored msg waiting for its group commit.
pub(super) struct Job {
    pub(super) room: Arc<Room>,
    /// The sender's connection id (not relayed to).
    pub(super) from: u64,
    /// The sender's uid, as JSON.
    pub(super) uid: Arc<str>,
    /// The msg object as the client sent it.
    pub(super) body: Box<str>,
    /// The sender's queue and ack id, when it asked for an ack.
    pub(super) ack: Option<(mpsc::Sender<Utf8Bytes>, u64)>,
    pub(super) submitted: Instant,
}

/// Where stored msgs are handed to the group commit.
pub(super) type Committer = mpsc::Sender<Job>;

/// Opens the log in `dir` and starts the group commit thread.
pub(super) fn start(
    dir: &Path,
    window: Duration,
    state: Arc<State>,
    stats: Arc<LogStats>,
) -> std::io::Result<Committer> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("floor.log");
    let file = open(&path)?;
    let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
    let log = Log {
        path,
        file,
        written: 0,
        window,
        state,
        stats,
        last_submitted: Instant::now(),
        mean_gap: Duration::MAX,
    };
    std::thread::Builder::new()
        .name("floor-commit".into())
        .spawn(move || log.run(rx))?;
    Ok(tx)
}

fn open(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)
}

struct Log {
    path: PathBuf,
    file: File,
    written: u64,
    window: Duration,
    state: Arc<State>,
    stats: Arc<LogStats>,
    last_submitted: Instant,
    /// Running mean of the gaps between submissions (weight 1/8).
    mean_gap: Duration,
}

impl Log {
    fn run(mut self, mut rx: mpsc::Receiver<Job>) {
        let mut group = Vec::new();
        let mut buf = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            self.note(first.submitted);
            if self.mean_gap < self.window {
                let until = first.submitted + self.window;
                let now = Instant::now();
                if until > now {
                    std::thread::sleep(until - now);
                }
            }
            group.push(first);
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(job) => {
                        self.note(job.submitted);
                        group.push(job);
                    }
                    Err(_) => break,
                }
            }
            if let Err(e) = self.commit(&mut group, &mut buf) {
                // A floor that cannot store measures nothing worth keeping.
                eprintln!("floor: the log failed ({e}); stopping");
                std::process::exit(1);
            }
        }
    }

    fn note(&mut self, submitted: Instant) {
        let gap = submitted.saturating_duration_since(self.last_submitted);
        self.last_submitted = self.last_submitted.max(submitted);
        self.mean_gap = if self.mean_gap == Duration::MAX {
            gap
        } else {
            (self.mean_gap * 7 + gap) / 8
        };
    }

    /// Numbers the group, makes it durable, then relays and acknowledges
    /// each msg in order.
    fn commit(&mut self, group: &mut Vec<Job>, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.clear();
        let mut frames = Vec::with_capacity(group.len());
        for job in group.iter() {
            let seq = job.room.next_seq.fetch_add(1, Ordering::Relaxed);
            // Not an object: relayed as the plain floor would not either.
            let frame = stamp(&job.body, &job.uid, Some(seq));
            if let Some(f) = &frame {
                encode(buf, &job.room.key, seq, f);
            }
            frames.push((seq, frame));
        }
        if self.written + buf.len() as u64 > SEGMENT_BYTES {
            self.file = open(&self.path)?;
            self.written = 0;
        }
        let started = Instant::now();
        self.file.write_all(buf)?;
        self.file.sync_data()?;
        self.stats.record(started.elapsed());
        self.written += buf.len() as u64;
        for (job, (seq, frame)) in group.drain(..).zip(frames) {
            if let Some(frame) = frame {
                job.room
                    .relay(job.from, Utf8Bytes::from(frame), &self.state.dropped);
            }
            if let Some((tx, id)) = job.ack {
                let reply = engineio::ack_frame(id, &format!("{{\"status\":0,\"seq\":{seq}}}"));
                let _ = tx.try_send(reply.into());
            }
        }
        Ok(())
    }
}

/// Appends a record: its length, the seq, the room and the relayed frame.
fn encode(out: &mut Vec<u8>, room: &str, seq: u64, frame: &str) {
    let len = 8 + 4 + room.len() + frame.len();
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(room.len() as u32).to_le_bytes());
    out.extend_from_slice(room.as_bytes());
    out.extend_from_slice(frame.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_length() {
        let mut out = Vec::new();
        encode(&mut out, "r1", 7, "42[\"msg\",{}]");
        assert_eq!(out.len(), 4 + 8 + 4 + 2 + 12);
        assert_eq!(&out[..4], &((8 + 4 + 2 + 12) as u32).to_le_bytes());
        assert_eq!(&out[4..12], &7u64.to_le_bytes());
    }
}
