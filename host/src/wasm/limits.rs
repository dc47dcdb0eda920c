//! Per-guest resource limits: a memory cap and a wall-clock deadline per
//! call, and bounds on what one call may answer and log.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default memory cap of one guest instance: 64 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

/// Default wall-clock deadline of one call into a guest: 250 ms.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(250);

/// Default most actions in one answer: 1,000.
pub const DEFAULT_MAX_ACTIONS: u32 = 1_000;

/// Default most bytes of one answer (its actions' JSON and the object
/// references `map` returns): 4 MiB.
pub const DEFAULT_MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// Default longest log line (a `log` call, or a line printed to stdout or
/// stderr); longer lines are cut: 4 KiB.
pub const DEFAULT_MAX_LOG_LINE_BYTES: u32 = 4 * 1024;

/// Default most log bytes one call may write: 64 KiB.
pub const DEFAULT_MAX_LOG_BYTES_PER_CALL: u64 = 64 * 1024;

/// Default log lines per second one guest may write, all its calls
/// together (twice as many in a burst): 100.
pub const DEFAULT_LOG_LINES_PER_SECOND: u32 = 100;

/// Default shortest `requeue-after` a guest may ask for: 1 s.
pub const DEFAULT_MIN_REQUEUE_AFTER: Duration = Duration::from_secs(1);

/// The sandbox limits of one guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The most linear memory (and table growth, in bytes of the same cap)
    /// an instance may hold. Default 64 MiB.
    pub memory_bytes: u64,
    /// How long one call (`describe`, `reconcile`, `map`) may run, wall
    /// clock, before it is interrupted, whether it computes or waits in a
    /// WASI call. Default 250 ms.
    pub deadline: Duration,
    /// The most actions one reconcile may answer; a larger answer fails the
    /// call and none of it is performed. Default 1,000.
    pub max_actions: u32,
    /// The most bytes one answer may hold; a larger one fails the call.
    /// Default 4 MiB.
    pub max_answer_bytes: u64,
    /// Longer log lines are cut to this many bytes. Default 4 KiB.
    pub max_log_line_bytes: u32,
    /// Log bytes one call may write; the rest of its lines are dropped.
    /// Default 64 KiB.
    pub max_log_bytes_per_call: u64,
    /// Log lines per second for the guest, all calls together (bursts of
    /// twice as many); lines beyond are dropped. Default 100.
    pub log_lines_per_second: u32,
    /// The shortest `requeue-after`; shorter requests wait this long.
    /// Default 1 s.
    pub min_requeue_after: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            deadline: DEFAULT_DEADLINE,
            max_actions: DEFAULT_MAX_ACTIONS,
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
            max_log_line_bytes: DEFAULT_MAX_LOG_LINE_BYTES,
            max_log_bytes_per_call: DEFAULT_MAX_LOG_BYTES_PER_CALL,
            log_lines_per_second: DEFAULT_LOG_LINES_PER_SECOND,
            min_requeue_after: DEFAULT_MIN_REQUEUE_AFTER,
        }
    }
}

impl Limits {
    /// Sets the memory cap.
    #[must_use]
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = bytes;
        self
    }

    /// Sets the per-call deadline.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Sets the most actions per answer.
    #[must_use]
    pub fn max_actions(mut self, actions: u32) -> Self {
        self.max_actions = actions;
        self
    }

    /// Sets the most bytes per answer.
    #[must_use]
    pub fn max_answer_bytes(mut self, bytes: u64) -> Self {
        self.max_answer_bytes = bytes;
        self
    }

    /// Sets the longest log line.
    #[must_use]
    pub fn max_log_line_bytes(mut self, bytes: u32) -> Self {
        self.max_log_line_bytes = bytes;
        self
    }

    /// Sets the log bytes per call.
    #[must_use]
    pub fn max_log_bytes_per_call(mut self, bytes: u64) -> Self {
        self.max_log_bytes_per_call = bytes;
        self
    }

    /// Sets the log lines per second.
    #[must_use]
    pub fn log_lines_per_second(mut self, lines: u32) -> Self {
        self.log_lines_per_second = lines;
        self
    }

    /// Sets the shortest `requeue-after`.
    #[must_use]
    pub fn min_requeue_after(mut self, delay: Duration) -> Self {
        self.min_requeue_after = delay;
        self
    }
}

/// Enforces [`Limits::memory_bytes`] on one store and remembers whether the
/// cap was hit, so that the failure can be reported as such rather than as
/// whatever the guest's allocator made of it.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    cap: usize,
    hit: Option<usize>,
}

impl MemoryLimiter {
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            hit: None,
        }
    }

    /// Forgets a hit, before the next call of a reused instance.
    pub(crate) fn reset(&mut self) {
        self.hit = None;
    }

    /// The size the guest asked for when it hit the cap, if it did.
    pub(crate) fn hit(&self) -> Option<usize> {
        self.hit
    }
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = Some(desired);
            // Refusing with an error (rather than `Ok(false)`) traps at once,
            // so the guest cannot carry on in a half-failed state.
            return Err(wasmtime::Error::msg("memory limit exceeded"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.cap / 8)
    }
}

/// How often a guest's calls hit the bounds on what they answer and log.
/// Shared by all calls of one loaded guest.
#[derive(Debug, Default)]
pub struct LimitHits {
    pub(crate) actions: std::sync::atomic::AtomicU64,
    pub(crate) answer_bytes: std::sync::atomic::AtomicU64,
    pub(crate) log_lines_cut: std::sync::atomic::AtomicU64,
    pub(crate) log_lines_dropped: std::sync::atomic::AtomicU64,
    pub(crate) requeue_raised: std::sync::atomic::AtomicU64,
}

/// A reading of [`LimitHits`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitHitCounts {
    /// Answers refused for holding more than `max_actions` actions.
    pub actions: u64,
    /// Answers refused for holding more than `max_answer_bytes`.
    pub answer_bytes: u64,
    /// Log lines cut to `max_log_line_bytes`.
    pub log_lines_cut: u64,
    /// Log lines dropped by the per-call budget or the rate.
    pub log_lines_dropped: u64,
    /// `requeue-after` requests raised to `min_requeue_after`.
    pub requeue_raised: u64,
}

impl LimitHitCounts {
    /// Every limit with its count, as metrics and status name them.
    pub fn by_limit(&self) -> [(&'static str, u64); 5] {
        [
            ("max_actions", self.actions),
            ("max_answer_bytes", self.answer_bytes),
            ("max_log_line_bytes", self.log_lines_cut),
            ("log_budget", self.log_lines_dropped),
            ("min_requeue_after", self.requeue_raised),
        ]
    }

    /// The total of all counts.
    pub fn total(&self) -> u64 {
        self.by_limit().iter().map(|(_, count)| count).sum()
    }
}

impl LimitHits {
    pub(crate) fn bump(counter: &std::sync::atomic::AtomicU64) {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> LimitHitCounts {
        let read = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        LimitHitCounts {
            actions: read(&self.actions),
            answer_bytes: read(&self.answer_bytes),
            log_lines_cut: read(&self.log_lines_cut),
            log_lines_dropped: read(&self.log_lines_dropped),
            requeue_raised: read(&self.requeue_raised),
        }
    }
}
