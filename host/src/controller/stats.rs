//! Counters of one controller, for metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds (seconds) of the reconcile latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The kinds of guest failure counted separately.
pub const GUEST_ERROR_KINDS: [&str; 7] = [
    "transient",
    "permanent",
    "deadline_exceeded",
    "memory_limit_exceeded",
    "trap",
    "malformed_output",
    "output_limit_exceeded",
];

/// Counters of one controller.
#[derive(Debug, Default)]
pub struct ControllerStats {
    /// Reconcile latency (guest call and actions): counts per bucket of
    /// [`LATENCY_BUCKETS`], then the overflow bucket.
    pub latency_buckets: [AtomicU64; 12],
    /// Sum of reconcile latencies, in microseconds.
    pub latency_sum_micros: AtomicU64,
    /// Guest failures (of reconciles and maps) by kind, in the order of
    /// [`GUEST_ERROR_KINDS`].
    pub guest_errors_by_kind: [AtomicU64; 7],
    /// Reconciles started.
    pub reconciles: AtomicU64,
    /// Reconciles whose actions all succeeded.
    pub succeeded: AtomicU64,
    /// Guest calls (reconciles and maps) that failed in the guest (any kind).
    pub guest_errors: AtomicU64,
    /// `map` calls that failed (also counted in `guest_errors`); each is
    /// retried with its key's backoff.
    pub map_errors: AtomicU64,
    /// Reconciles whose actions failed or were denied.
    pub action_errors: AtomicU64,
    /// Actions denied by the grant.
    pub denied: AtomicU64,
    /// Cache reads refused because they reach outside the grant or the
    /// namespaces (the guest saw nothing).
    pub cache_denied: AtomicU64,
    /// Actions performed.
    pub actions: AtomicU64,
    /// Keys queued by events.
    pub queued: AtomicU64,
    /// Times a key was handed to a worker while another worker held it.
    /// Always 0: the queue never does that; counted as a safety net.
    pub overlaps: AtomicU64,
}

impl ControllerStats {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one reconcile's latency.
    pub(crate) fn observe(&self, elapsed: std::time::Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        Self::bump(&self.latency_buckets[bucket]);
        self.latency_sum_micros.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// Counts one guest failure of `kind` (a [`GuestError::kind`](crate::wasm::GuestError::kind)).
    pub(crate) fn guest_error(&self, kind: &str) {
        Self::bump(&self.guest_errors);
        if let Some(index) = GUEST_ERROR_KINDS.iter().position(|known| *known == kind) {
            Self::bump(&self.guest_errors_by_kind[index]);
        }
    }
}
