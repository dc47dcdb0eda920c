//! Counters of one controller, for metrics and tests.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one controller.
#[derive(Debug, Default)]
pub struct ControllerStats {
    /// Reconciles started.
    pub reconciles: AtomicU64,
    /// Reconciles whose actions all succeeded.
    pub succeeded: AtomicU64,
    /// Reconciles that failed in the guest (any kind).
    pub guest_errors: AtomicU64,
    /// Reconciles whose actions failed or were denied.
    pub action_errors: AtomicU64,
    /// Actions denied by the grant.
    pub denied: AtomicU64,
    /// Actions performed.
    pub actions: AtomicU64,
    /// Keys queued by events.
    pub queued: AtomicU64,
}

impl ControllerStats {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
