//! Per-guest resource limits: a memory cap and a wall-clock deadline per call.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default memory cap of one guest instance: 64 MiB.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;

/// Default wall-clock deadline of one call into a guest: 250 ms.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(250);

/// The sandbox limits of one guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// The most linear memory (and table growth, in bytes of the same cap)
    /// an instance may hold. Default 64 MiB.
    pub memory_bytes: u64,
    /// How long one call (`describe`, `reconcile`, `map`) may run, wall
    /// clock, before it is interrupted. Default 250 ms.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            deadline: DEFAULT_DEADLINE,
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
