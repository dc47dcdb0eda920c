//! Writing recordings: one folder per controller, of numbered JSON-lines
//! segments, the oldest removed once the folder holds more than its cap.
//!
//! A worker hands a finished call to its controller's [`Recorder`] and
//! carries on; a thread of the recorder's own turns it into a line
//! (parsing the answers, hiding what [`Redaction`] hides) and writes it.
//! Should the disk fall behind, calls beyond [`BACKLOG`] are dropped and
//! counted, never waited for: a recording never slows a controller down.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde_json::Value;

use super::{CallKind, CapturedRead, Entry, FORMAT_VERSION, Redaction, format_instant};
use crate::wasm::Change;

/// How many calls may wait for the disk before more are dropped.
pub const BACKLOG: usize = 1024;

/// The smallest segment a recording rotates at.
const MIN_SEGMENT_BYTES: u64 = 64 * 1024;

/// Where and how controllers are recorded.
#[derive(Debug, Clone)]
pub struct RecordOptions {
    /// The folder holding one folder per controller.
    pub dir: PathBuf,
    /// The most bytes one controller's recording keeps; the oldest
    /// segments go first.
    pub max_bytes: u64,
    /// What is hidden.
    pub redaction: Redaction,
    /// The controllers recorded, by name; empty: every one.
    pub controllers: Vec<String>,
}

/// The recorders of every recorded controller, made on first use and kept
/// across reloads (a new version appends to the same recording).
#[derive(Debug)]
pub struct Recordings {
    options: RecordOptions,
    recorders: Mutex<HashMap<String, Arc<Recorder>>>,
}

impl Recordings {
    /// Records into `options.dir`.
    pub fn new(options: RecordOptions) -> Self {
        Self {
            options,
            recorders: Mutex::default(),
        }
    }

    /// Whether `controller` is recorded.
    pub fn records(&self, controller: &str) -> bool {
        self.options.controllers.is_empty()
            || self
                .options
                .controllers
                .iter()
                .any(|name| name == controller)
    }

    /// The folder a controller's recording is written to: its name, with
    /// `/` (a resource's `namespace/name`) written `_`, which no
    /// Kubernetes name holds.
    pub fn dir_of(&self, controller: &str) -> PathBuf {
        self.options.dir.join(controller.replace('/', "_"))
    }

    /// Waits until every call handed to a recorder is written (or failed),
    /// for at most `timeout`; whether they were. A host that stops waits
    /// for this, so that its last calls are in the recording.
    pub async fn drained(&self, timeout: std::time::Duration) -> bool {
        let recorders: Vec<Arc<Recorder>> = self
            .recorders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let deadline = tokio::time::Instant::now() + timeout;
        while !recorders.iter().all(|recorder| recorder.is_drained()) {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        true
    }

    /// The recorder of `controller`, made (with its folder) on first use.
    pub fn recorder(&self, controller: &str) -> std::io::Result<Arc<Recorder>> {
        let mut recorders = self
            .recorders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(recorder) = recorders.get(controller) {
            return Ok(Arc::clone(recorder));
        }
        let recorder = Arc::new(Recorder::start(
            controller,
            self.dir_of(controller),
            self.options.max_bytes,
            self.options.redaction.clone(),
        )?);
        recorders.insert(controller.to_owned(), Arc::clone(&recorder));
        Ok(recorder)
    }
}

/// Counters of one recorder.
#[derive(Debug, Default)]
pub struct RecordStats {
    /// Calls written.
    pub written: AtomicU64,
    /// Calls dropped because the disk fell behind.
    pub dropped: AtomicU64,
    /// Calls that could not be written (an I/O error).
    pub failed: AtomicU64,
    /// Calls handed to the writer.
    pub queued: AtomicU64,
}

/// One finished call, waiting to be written.
pub(crate) struct Pending {
    pub(crate) at: SystemTime,
    pub(crate) digest: String,
    pub(crate) call: CallKind,
    pub(crate) object: Arc<crate::cluster::StoredObject>,
    pub(crate) change: Option<Change>,
    pub(crate) attempt: Option<u32>,
    pub(crate) reads: Vec<CapturedRead>,
    pub(crate) result: Value,
}

/// Records one controller's calls.
#[derive(Debug)]
pub struct Recorder {
    controller: String,
    dir: PathBuf,
    sender: SyncSender<Pending>,
    stats: Arc<RecordStats>,
}

impl Recorder {
    /// Starts recording `controller` into `dir` (made if missing), keeping
    /// at most `max_bytes`. A new segment starts after the ones already
    /// there, so a restarted host appends.
    pub fn start(
        controller: &str,
        dir: PathBuf,
        max_bytes: u64,
        redaction: Redaction,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let segments = Segments::open(&dir, max_bytes)?;
        let (sender, receiver) = sync_channel(BACKLOG);
        let stats = Arc::new(RecordStats::default());
        let writer = Writer {
            controller: controller.to_owned(),
            redaction,
            segments,
            stats: Arc::clone(&stats),
        };
        std::thread::Builder::new()
            .name(format!("record {controller}"))
            .spawn(move || writer.run(&receiver))?;
        Ok(Self {
            controller: controller.to_owned(),
            dir,
            sender,
            stats,
        })
    }

    /// The folder it writes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its counters.
    pub fn stats(&self) -> &RecordStats {
        &self.stats
    }

    /// Whether every call handed to the writer is written or failed.
    pub fn is_drained(&self) -> bool {
        let stats = &self.stats;
        stats.written.load(Ordering::Acquire) + stats.failed.load(Ordering::Acquire)
            >= stats.queued.load(Ordering::Acquire)
    }

    /// Hands a finished call to the writer; drops it (counted) if the
    /// writer is [`BACKLOG`] calls behind.
    pub(crate) fn record(&self, pending: Pending) {
        self.stats.queued.fetch_add(1, Ordering::AcqRel);
        match self.sender.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.stats.queued.fetch_sub(1, Ordering::AcqRel);
                let dropped = self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                if dropped.is_power_of_two() || dropped == 0 {
                    tracing::warn!(
                        controller = %self.controller,
                        dropped = dropped + 1,
                        "the recording fell behind; calls are dropped from it"
                    );
                }
            }
        }
    }
}

struct Writer {
    controller: String,
    redaction: Redaction,
    segments: Segments,
    stats: Arc<RecordStats>,
}

impl Writer {
    fn run(mut self, receiver: &Receiver<Pending>) {
        while let Ok(pending) = receiver.recv() {
            let mut entry = Entry {
                version: FORMAT_VERSION,
                at: format_instant(pending.at),
                controller: self.controller.clone(),
                digest: pending.digest,
                call: pending.call,
                object: serde_json::from_str(&pending.object.json).unwrap_or(Value::Null),
                change: pending.change,
                attempt: pending.attempt,
                reads: pending.reads.iter().map(CapturedRead::to_read).collect(),
                result: pending.result,
                redacted: self.redaction.describe(),
            };
            self.redaction.entry(&mut entry);
            let mut line = serde_json::to_vec(&entry).unwrap_or_default();
            line.push(b'\n');
            match self.segments.write(&line) {
                Ok(()) => {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    let failed = self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    if failed.is_power_of_two() || failed == 0 {
                        tracing::warn!(
                            controller = %self.controller,
                            dir = %self.segments.dir.display(),
                            %error,
                            "cannot write the recording"
                        );
                    }
                }
            }
        }
    }
}

/// The segments of one recording: `00000001.jsonl`, `00000002.jsonl`, ...
struct Segments {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Every segment's number and size, oldest first; the last is written.
    sizes: Vec<(u64, u64)>,
    file: Option<std::fs::File>,
}

impl Segments {
    fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        let mut sizes = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(number) = segment_number(&entry.path()) {
                sizes.push((number, entry.metadata()?.len()));
            }
        }
        sizes.sort_unstable();
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes: (max_bytes / 4).max(MIN_SEGMENT_BYTES),
            sizes,
            file: None,
        })
    }

    fn path(&self, number: u64) -> PathBuf {
        self.dir.join(format!("{number:08}.jsonl"))
    }

    fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        let full = self
            .sizes
            .last()
            .is_none_or(|&(_, size)| size + line.len() as u64 > self.segment_bytes);
        if self.file.is_none() || full {
            let number = self.sizes.last().map_or(1, |&(number, _)| number + 1);
            let file = std::fs::OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.path(number))?;
            self.file = Some(file);
            self.sizes.push((number, 0));
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(line)?;
        if let Some((_, size)) = self.sizes.last_mut() {
            *size += line.len() as u64;
        }
        // The oldest segments go while the recording is over its cap; the
        // one being written stays.
        while self.sizes.len() > 1
            && self.sizes.iter().map(|&(_, size)| size).sum::<u64>() > self.max_bytes
        {
            let (number, _) = self.sizes.remove(0);
            std::fs::remove_file(self.path(number))?;
        }
        Ok(())
    }
}

/// The number of a segment file, `None` for any other file.
fn segment_number(path: &Path) -> Option<u64> {
    if path.extension()? != "jsonl" {
        return None;
    }
    path.file_stem()?.to_str()?.parse().ok()
}

/// The segment files of a recording folder, oldest first.
pub(crate) fn segment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter_map(|path| Some((segment_number(&path)?, path)))
        .collect();
    files.sort();
    Ok(files.into_iter().map(|(_, path)| path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_rotate_and_the_oldest_go_past_the_cap() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut segments = Segments::open(dir.path(), 4 * MIN_SEGMENT_BYTES).expect("open");
        let line = vec![b'x'; 30 * 1024];
        for _ in 0..20 {
            segments.write(&line).expect("write");
        }
        let files = segment_files(dir.path()).expect("list");
        let total: u64 = files
            .iter()
            .map(|file| std::fs::metadata(file).expect("size").len())
            .sum();
        assert!(total <= 4 * MIN_SEGMENT_BYTES, "{total} bytes kept");
        assert_eq!(files.len(), 4, "{files:?}");
        assert!(files[0].ends_with("00000007.jsonl"), "{files:?}");
        // A new process appends after the last segment.
        let mut again = Segments::open(dir.path(), 4 * MIN_SEGMENT_BYTES).expect("open");
        again.write(b"y\n").expect("write");
        let files = segment_files(dir.path()).expect("list");
        assert!(
            files.last().expect("a segment").ends_with("00000011.jsonl"),
            "{files:?}"
        );
    }
}
