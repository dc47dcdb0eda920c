//! Replaying a recording against a module offline: each recorded call is
//! made again with the recorded request, the recorded cache answers and
//! the recorded instant on the guest's clock, and its result is compared
//! with the recorded one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

use super::compare::{self, Comparison};
use super::writer::segment_files;
use super::{
    CallKind, CapturedRead, Entry, FORMAT_VERSION, Redaction, Snapshot, map_result,
    reconcile_result,
};
use crate::wasm::{Change, Guest};

/// A recording that cannot be read. Each variant names the file and the
/// fix.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A file or folder could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a recorded call.
    #[error(
        "{}:{line}: not a recorded call ({problem}); give a folder or file written by `paddock run --record`",
        path.display()
    )]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// The folder holds no recorded call.
    #[error(
        "{} holds no recorded call: give the folder of one controller, e.g. `--replay {}/NAME`, or one of its .jsonl files",
        path.display(),
        path.display()
    )]
    Empty {
        /// The folder.
        path: PathBuf,
    },
    /// The folder holds the recordings of several controllers.
    #[error(
        "{} holds the recordings of several controllers ({}): replay one, e.g. `--replay {}`",
        path.display(),
        names.join(", "),
        path.join(&names[0]).display()
    )]
    SeveralControllers {
        /// The folder.
        path: PathBuf,
        /// The controllers' folders.
        names: Vec<String>,
    },
}

/// One recorded call and where it was read.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `file:line`.
    pub location: String,
    /// The call.
    pub entry: Entry,
}

/// Reads a recording: a controller's folder of segments (oldest first), a
/// folder holding one controller's folder, or one segment file.
pub fn read(path: &Path) -> Result<Vec<Recorded>, ReplayError> {
    let read_error = |source| ReplayError::Read {
        path: path.to_owned(),
        source,
    };
    if path.is_file() {
        return read_file(path);
    }
    let mut files = segment_files(path).map_err(read_error)?;
    if files.is_empty() {
        let mut controllers: Vec<String> = std::fs::read_dir(path)
            .map_err(read_error)?
            .filter_map(Result::ok)
            .filter(|entry| entry.path().is_dir())
            .filter(|entry| segment_files(&entry.path()).is_ok_and(|files| !files.is_empty()))
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        controllers.sort();
        match controllers.len() {
            0 => {
                return Err(ReplayError::Empty {
                    path: path.to_owned(),
                });
            }
            1 => files = segment_files(&path.join(&controllers[0])).map_err(read_error)?,
            _ => {
                return Err(ReplayError::SeveralControllers {
                    path: path.to_owned(),
                    names: controllers,
                });
            }
        }
    }
    let mut recorded = Vec::new();
    for file in files {
        recorded.extend(read_file(&file)?);
    }
    if recorded.is_empty() {
        return Err(ReplayError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(recorded)
}

fn read_file(path: &Path) -> Result<Vec<Recorded>, ReplayError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReplayError::Read {
        path: path.to_owned(),
        source,
    })?;
    let name = path
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let mut recorded = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let problem = |problem: String| ReplayError::Line {
            path: path.to_owned(),
            line: index + 1,
            problem,
        };
        let entry: Entry =
            serde_json::from_str(line).map_err(|error| problem(error.to_string()))?;
        if entry.version != FORMAT_VERSION {
            return Err(problem(format!(
                "format version {}, this paddock reads version {FORMAT_VERSION}",
                entry.version
            )));
        }
        entry
            .instant()
            .map_err(|error| problem(format!("field `at`: {error}")))?;
        recorded.push(Recorded {
            location: format!("{name}:{}", index + 1),
            entry,
        });
    }
    Ok(recorded)
}

/// One call made again.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// What the replayed module answered, as a recording writes it.
    pub result: Value,
    /// How it compares with the recorded result.
    pub comparison: Comparison,
    /// How many cache reads the replayed module made that the recording
    /// does not hold (they read as absent).
    pub unrecorded: u64,
}

/// Makes a recorded call again on `guest`: the recorded object, change
/// and attempt, the recorded cache answers (any other read reads as
/// absent), the recorded instant on its clock. Its result, with what the
/// recording hid hidden the same way, is compared with the recorded one.
pub fn replay(guest: &Guest, entry: &Entry) -> Replayed {
    let reads = entry.reads.iter().map(CapturedRead::from_read).collect();
    let snapshot = Arc::new(Snapshot::new(reads, None));
    let now = entry.instant().ok();
    // Recorded whole: the replayed module sees it through its own projection.
    let object = guest.projections().narrow(entry.object.to_string());
    let cache = Arc::clone(&snapshot) as crate::wasm::SharedCache;
    let mut result = match entry.call {
        CallKind::Reconcile => reconcile_result(&guest.reconcile_at(
            &object,
            entry.change.unwrap_or(Change::Applied),
            entry.attempt.unwrap_or(0),
            cache,
            now,
        )),
        CallKind::Map => map_result(&guest.map_at(&object, cache, now)),
    };
    Redaction::of_entry(entry).result(&mut result);
    let comparison = compare::compare(&entry.result, &result, ("recorded", "replayed"));
    Replayed {
        result,
        comparison,
        unrecorded: snapshot.unrecorded(),
    }
}
