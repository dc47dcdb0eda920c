//! Shadow runs: a candidate version beside the live one, asked every
//! question the live one is asked and never acted upon.
//!
//! After each live call (reconcile or map), the candidate gets the same
//! request, the same instant on its clock and the same cache answers the
//! live guest got (a read the live guest did not make goes to the live
//! cache view), in its own sandbox under its own limits. Its answer is
//! compared with the live one after normalisation ([`compare`]), counted by
//! kind of difference, and a sample of each difference is kept in a small
//! ring. Its actions are never performed.
//!
//! A candidate must never slow the live controller down: its questions wait
//! in a queue of their own ([`BACKLOG`] at most; a question beyond it is
//! skipped and counted); it answers as many at once as the controller has
//! workers, each on an execution slot that is free and that no call waits
//! for ([`ExecutionSlots::acquire_spare`]), on threads of its own that run
//! at the lowest CPU priority (nice 19), so that on a busy machine the
//! live calls get the processor first.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cluster::StoredObject;
use crate::record::compare::{self, Difference};
use crate::record::{CapturedRead, Snapshot, format_instant, map_result, reconcile_result};
use crate::wasm::slots::{ExecutionSlots, Flow};
use crate::wasm::{Change, Guest, SharedCache};

/// How many differences a shadow keeps samples of.
pub const SAMPLES: usize = 20;

/// The most bytes of diff one sample keeps; the rest is cut, and says so.
pub const SAMPLE_DIFF_BYTES: usize = 16 * 1024;

/// How many questions wait for the candidate before more are skipped.
pub const BACKLOG: usize = 1024;

/// A candidate version and what its comparisons found.
#[derive(Debug)]
pub struct Shadow {
    inner: Arc<Inner>,
    /// How many questions it answers at once.
    concurrency: usize,
    /// Where questions go; the answering task starts with the first.
    questions: std::sync::OnceLock<mpsc::Sender<Question>>,
}

#[derive(Debug)]
struct Inner {
    guest: Guest,
    /// Whether it declares other watches than the live version.
    watches_differ: AtomicBool,
    /// Questions asked and not answered yet.
    pending: AtomicU64,
    /// Set when the shadow is dropped (its version replaced or stopped):
    /// the questions still queued are dropped, not answered.
    closed: AtomicBool,
    compared: AtomicU64,
    agreed: AtomicU64,
    skipped: AtomicU64,
    unrecorded_reads: AtomicU64,
    differences: [AtomicU64; Difference::ALL.len()],
    samples: Mutex<VecDeque<Sample>>,
}

/// One difference, sampled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// When the live call ran, RFC 3339.
    pub at: String,
    /// `reconcile` or `map`.
    pub call: String,
    /// The object: `Deployment shop/web`.
    pub object: String,
    /// Its resourceVersion.
    pub resource_version: String,
    /// The kind of difference (`actions`, `requeue`, `candidate-failed`,
    /// `live-failed`, `failures`).
    pub difference: String,
    /// A unified diff of the live answer (`---`) and the candidate's
    /// (`+++`), normalised, as YAML.
    pub diff: String,
}

/// What a shadow found, for `/status`, `paddock status --shadow` and a
/// resource's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShadowReport {
    /// The candidate's module digest.
    pub digest: String,
    /// Whether the candidate declares other watches than the live version
    /// (it is still asked only about what the live version watches).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub watches_differ: bool,
    /// Calls compared.
    pub compared: u64,
    /// Calls whose answers agreed.
    pub agreed: u64,
    /// Live calls the candidate was not asked (no free execution slot, or
    /// its previous call still ran).
    pub skipped: u64,
    /// Candidate reads the live call did not make, answered from the live
    /// cache as it stood a moment later.
    pub unrecorded_reads: u64,
    /// Differences by kind.
    pub differences: BTreeMap<String, u64>,
    /// The latest differences, oldest first.
    pub samples: Vec<Sample>,
}

impl ShadowReport {
    /// The share of compared calls that agreed, as `98.5%`; `-` before the
    /// first comparison.
    pub fn agreement(&self) -> String {
        if self.compared == 0 {
            return "-".to_owned();
        }
        #[allow(clippy::cast_precision_loss)]
        let share = self.agreed as f64 * 100.0 / self.compared as f64;
        format!("{share:.1}%")
    }
}

/// One live call, as the candidate is asked it.
pub(crate) struct Question {
    pub(crate) object: Arc<StoredObject>,
    /// `Some` for a reconcile, `None` for a map.
    pub(crate) reconcile: Option<(Change, u32)>,
    pub(crate) reads: Vec<CapturedRead>,
    pub(crate) live_cache: SharedCache,
    pub(crate) at: SystemTime,
    pub(crate) live_result: Value,
    /// The live call's span, which the candidate's logs carry on.
    pub(crate) span: tracing::Span,
}

impl Shadow {
    /// A shadow of `guest`.
    pub fn new(guest: Guest) -> Self {
        Self {
            inner: Arc::new(Inner {
                guest,
                watches_differ: AtomicBool::new(false),
                pending: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                compared: AtomicU64::new(0),
                agreed: AtomicU64::new(0),
                skipped: AtomicU64::new(0),
                unrecorded_reads: AtomicU64::new(0),
                differences: Default::default(),
                samples: Mutex::default(),
            }),
            questions: std::sync::OnceLock::new(),
            concurrency: 1,
        }
    }

    /// Answers up to `concurrency` questions at once (the controller's
    /// workers), instead of one.
    #[must_use]
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The candidate.
    pub fn guest(&self) -> &Guest {
        &self.inner.guest
    }

    pub(crate) fn set_watches_differ(&self, differ: bool) {
        self.inner.watches_differ.store(differ, Ordering::Relaxed);
    }

    /// What it found so far.
    pub fn report(&self) -> ShadowReport {
        self.inner.report()
    }

    /// Queues `question` for the candidate; skips it (counted) when
    /// [`BACKLOG`] questions wait already. The first question starts the
    /// task that answers them, which ends when the shadow is dropped.
    pub(crate) fn ask(&self, slots: &ExecutionSlots, flow: &Flow, question: Question) {
        let questions = self.questions.get_or_init(|| {
            let (sender, receiver) = mpsc::channel(BACKLOG);
            tokio::spawn(answer_all(
                Arc::clone(&self.inner),
                receiver,
                slots.clone(),
                flow.clone(),
                self.concurrency,
            ));
            sender
        });
        self.inner.pending.fetch_add(1, Ordering::AcqRel);
        if questions.try_send(question).is_err() {
            self.inner.pending.fetch_sub(1, Ordering::AcqRel);
            self.inner.skipped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every question asked so far is answered, for at most
    /// `timeout`; whether it was.
    pub async fn settled(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.inner.pending.load(Ordering::Acquire) > 0 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        true
    }
}

impl Drop for Shadow {
    fn drop(&mut self) {
        self.inner.closed.store(true, Ordering::Release);
    }
}

/// A question with the slot and the turn it is answered in.
struct Work {
    question: Question,
    _slot: crate::wasm::slots::Slot,
    _turn: tokio::sync::OwnedSemaphorePermit,
}

/// Answers the questions, up to `concurrency` at once, each on a spare
/// execution slot, on low-priority threads that end with the queue.
async fn answer_all(
    inner: Arc<Inner>,
    mut questions: mpsc::Receiver<Question>,
    slots: ExecutionSlots,
    flow: Flow,
    concurrency: usize,
) {
    let turns = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let (work, waiting) = std::sync::mpsc::channel::<Work>();
    let waiting = Arc::new(Mutex::new(waiting));
    let runtime = tokio::runtime::Handle::current();
    for index in 0..concurrency {
        let waiting = Arc::clone(&waiting);
        let inner = Arc::clone(&inner);
        let runtime = runtime.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("shadow-{index}"))
            .spawn(move || {
                lower_priority();
                // WASI's bounded waits need the runtime.
                let _runtime = runtime.enter();
                loop {
                    let next = waiting
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .recv();
                    let Ok(work) = next else { return };
                    if !inner.closed.load(Ordering::Acquire) {
                        let span = work.question.span.clone();
                        span.in_scope(|| inner.answer(work.question));
                    }
                    inner.pending.fetch_sub(1, Ordering::AcqRel);
                }
            });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start a thread for the shadow candidate");
        }
    }
    while let Some(question) = questions.recv().await {
        if inner.closed.load(Ordering::Acquire) {
            inner.pending.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let Ok(turn) = Arc::clone(&turns).acquire_owned().await else {
            return;
        };
        let slot = slots
            .acquire_spare(&flow, Some(inner.guest.limits().deadline))
            .await;
        let sent = work.send(Work {
            question,
            _slot: slot,
            _turn: turn,
        });
        if sent.is_err() {
            return;
        }
    }
}

/// Makes the calling thread the last to get the processor (nice 19).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(error) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::debug!(%error, "cannot lower the shadow thread's priority");
    }
}

impl Inner {
    fn report(&self) -> ShadowReport {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ShadowReport {
            digest: self.guest.digest().to_owned(),
            watches_differ: self.watches_differ.load(Ordering::Relaxed),
            compared: get(&self.compared),
            agreed: get(&self.agreed),
            skipped: get(&self.skipped),
            unrecorded_reads: get(&self.unrecorded_reads),
            differences: Difference::ALL
                .iter()
                .zip(&self.differences)
                .map(|(kind, count)| (kind.name("live", "candidate"), get(count)))
                .filter(|(_, count)| *count > 0)
                .collect(),
            samples: self
                .samples
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .cloned()
                .collect(),
        }
    }

    /// Asks the candidate, compares and counts.
    fn answer(&self, question: Question) {
        let snapshot = Arc::new(Snapshot::new(question.reads, Some(question.live_cache)));
        let cache = Arc::clone(&snapshot) as SharedCache;
        // The candidate sees the object through its own projection.
        let json = &*self
            .guest
            .projections()
            .narrow(question.object.json.to_string());
        let (call, result) = match question.reconcile {
            Some((change, attempt)) => (
                "reconcile",
                reconcile_result(&self.guest.reconcile_at(
                    json,
                    change,
                    attempt,
                    cache,
                    Some(question.at),
                )),
            ),
            None => (
                "map",
                map_result(&self.guest.map_at(json, cache, Some(question.at))),
            ),
        };
        self.unrecorded_reads
            .fetch_add(snapshot.unrecorded(), Ordering::Relaxed);
        let verdict = compare::compare(&question.live_result, &result, ("live", "candidate"));
        self.compared.fetch_add(1, Ordering::Relaxed);
        let Some(difference) = verdict.difference else {
            self.agreed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let index = Difference::ALL
            .iter()
            .position(|kind| *kind == difference)
            .unwrap_or(0);
        self.differences[index].fetch_add(1, Ordering::Relaxed);
        let object = question.object;
        let reference = serde_json::from_str::<Value>(&object.json)
            .ok()
            .and_then(|value| crate::actions::ObjectRef::of(&value))
            .map_or_else(
                || format!("{}/{}", object.namespace, object.name),
                |r| r.to_string(),
            );
        tracing::debug!(%reference, difference = %difference.name("live", "candidate"), "the candidate answered differently");
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(Sample {
            at: format_instant(question.at),
            call: call.to_owned(),
            object: reference,
            resource_version: object.resource_version.to_string(),
            difference: difference.name("live", "candidate"),
            diff: cut(verdict.diff),
        });
    }
}

/// `diff`, cut to [`SAMPLE_DIFF_BYTES`] at a line's end: a sample must not
/// hold two whole large answers.
fn cut(diff: String) -> String {
    if diff.len() <= SAMPLE_DIFF_BYTES {
        return diff;
    }
    let end = diff[..SAMPLE_DIFF_BYTES]
        .rfind('\n')
        .map_or(0, |end| end + 1);
    format!(
        "{}... ({} more bytes of diff not kept)\n",
        &diff[..end],
        diff.len() - end
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_diff_is_cut_at_a_line() {
        let line = "+ 0123456789012345678901234567890123456789\n";
        let long = line.repeat(1000);
        let kept = cut(long.clone());
        assert!(kept.len() < SAMPLE_DIFF_BYTES + 100, "{}", kept.len());
        assert!(kept.ends_with("bytes of diff not kept)\n"));
        assert!(
            kept.lines()
                .rev()
                .skip(1)
                .all(|kept| kept == line.trim_end())
        );
        assert_eq!(cut(line.to_owned()), line);
    }
}
