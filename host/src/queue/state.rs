//! The workqueue's bookkeeping behind its lock: ready, dirty, in-flight and waiting keys.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use super::delay::DelayHeap;
use super::rate_limit::RateLimiter;
use super::{QueueConfig, QueueMetrics};

/// Whether the queue still takes keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lifecycle {
    /// Taking keys.
    Running,
    /// No new keys; workers get what is queued, then `None`.
    Draining,
    /// No new keys; workers get `None` at once.
    Stopped,
}

/// Whom to wake once the lock is released; every change fills one in.
#[derive(Debug, Default)]
pub(super) struct Wake {
    /// Keys that became ready: one getter each.
    pub(super) ready_keys: usize,
    /// Every waiting getter must look again (a new earliest deadline, or the
    /// queue closed).
    pub(super) all_getters: bool,
    /// The queue is shut down and nothing is left queued or in flight.
    pub(super) drained: bool,
}

/// What [`State::next`] found for a getter.
#[derive(Debug)]
pub(super) enum Next<K> {
    /// A key, now in flight.
    Key(K),
    /// Nothing ready: wait for a wake-up, or until the next deadline.
    Empty { next_deadline: Option<Instant> },
    /// The queue is shut down (and drained): stop.
    Closed,
}

/// Everything the queue's lock guards. The invariants: every ready key is
/// dirty; a dirty key that is not ready is in flight, and is queued again
/// when it is done; no key is ready and in flight at once.
#[derive(Debug)]
pub(super) struct State<K> {
    /// Keys ready for a worker, oldest first.
    ready: VecDeque<K>,
    /// Keys that need processing: the ready ones, plus in-flight ones added
    /// again while held.
    dirty: HashSet<K>,
    /// In-flight keys, with when they were handed out.
    processing: HashMap<K, Instant>,
    delayed: DelayHeap<K>,
    rate_limiter: RateLimiter<K>,
    lifecycle: Lifecycle,
    adds: u64,
    retries: u64,
}

impl<K> State<K> {
    /// Whether the queue still takes keys.
    pub(super) fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    /// How many keys workers hold.
    pub(super) fn in_flight(&self) -> usize {
        self.processing.len()
    }

    /// How many keys are ready, without moving due ones in first.
    pub(super) fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// How many keys wait for a deadline.
    pub(super) fn waiting(&self) -> usize {
        self.delayed.len()
    }

    /// Shut down, and no key is queued or in flight.
    pub(super) fn is_drained(&self) -> bool {
        self.lifecycle != Lifecycle::Running && self.dirty.is_empty() && self.processing.is_empty()
    }
}

impl<K: Clone + Eq + Hash> State<K> {
    /// An empty, running queue's state with `config`'s (validated) limits.
    pub(super) fn new(config: &QueueConfig) -> Self {
        Self {
            ready: VecDeque::new(),
            dirty: HashSet::new(),
            processing: HashMap::new(),
            delayed: DelayHeap::new(),
            rate_limiter: RateLimiter::new(config),
            lifecycle: Lifecycle::Running,
            adds: 0,
            retries: 0,
        }
    }

    /// Marks `key` dirty and queues it if it is neither queued nor in flight.
    pub(super) fn add(&mut self, key: K, wake: &mut Wake) {
        if self.lifecycle != Lifecycle::Running || self.dirty.contains(&key) {
            return;
        }
        self.dirty.insert(key.clone());
        self.adds += 1;
        if self.processing.contains_key(&key) {
            return;
        }
        self.ready.push_back(key);
        wake.ready_keys += 1;
    }

    /// Adds `key` at `now + delay`, or now if `delay` is zero.
    pub(super) fn add_after(&mut self, key: K, delay: Duration, now: Instant, wake: &mut Wake) {
        if self.lifecycle != Lifecycle::Running {
            return;
        }
        if delay.is_zero() {
            self.add(key, wake);
            return;
        }
        // Beyond tokio's timer range anyway: 30 years is "never" enough.
        let deadline = now
            .checked_add(delay)
            .or_else(|| now.checked_add(Duration::from_secs(30 * 365 * 24 * 3600)))
            .unwrap_or(now);
        wake.all_getters |= self.delayed.schedule(key, deadline);
    }

    /// Takes new (validated) rate limits, keeping every key's backoff.
    pub(super) fn reconfigure(&mut self, config: &QueueConfig) {
        self.rate_limiter.reconfigure(config);
    }

    /// Records a failure of `key` and adds it after the rate limiter's delay.
    pub(super) fn add_rate_limited(&mut self, key: K, now: Instant, wake: &mut Wake) {
        if self.lifecycle != Lifecycle::Running {
            return;
        }
        let delay = self.rate_limiter.when(&key, now);
        self.retries += 1;
        self.add_after(key, delay, now, wake);
    }

    /// Resets `key`'s backoff.
    pub(super) fn forget(&mut self, key: &K) {
        self.rate_limiter.forget(key);
    }

    /// `key`'s consecutive failures.
    pub(super) fn num_requeues(&self, key: &K) -> u32 {
        self.rate_limiter.num_requeues(key)
    }

    /// Queues the waiting keys whose deadline has come, earliest first, as
    /// if they had been added when it came. Every operation calls this first.
    pub(super) fn promote_due(&mut self, now: Instant, wake: &mut Wake) {
        while let Some(key) = self.delayed.pop_due(now) {
            self.add(key, wake);
        }
    }

    /// Takes the oldest ready key for a worker and marks it in flight.
    pub(super) fn next(&mut self, now: Instant, wake: &mut Wake) -> Next<K> {
        if self.lifecycle == Lifecycle::Stopped {
            return Next::Closed;
        }
        if let Some(key) = self.ready.pop_front() {
            self.dirty.remove(&key);
            self.processing.insert(key.clone(), now);
            // Pass the turn on: another getter may be waiting for the rest.
            wake.ready_keys += usize::from(!self.ready.is_empty());
            // Draining, and that was the last key: the other getters are done.
            wake.all_getters |= self.lifecycle == Lifecycle::Draining && self.dirty.is_empty();
            return Next::Key(key);
        }
        if self.lifecycle == Lifecycle::Draining && self.dirty.is_empty() {
            return Next::Closed;
        }
        Next::Empty {
            next_deadline: self.delayed.next_deadline(),
        }
    }

    /// Marks `key` no longer in flight, queueing it again if it is dirty.
    pub(super) fn done(&mut self, key: &K, wake: &mut Wake) {
        if self.processing.remove(key).is_none() {
            return;
        }
        if self.dirty.contains(key) {
            self.ready.push_back(key.clone());
            wake.ready_keys += 1;
        }
        wake.drained = self.is_drained();
    }

    /// Stops the queue: drops every queued and waiting key.
    pub(super) fn stop(&mut self, wake: &mut Wake) {
        if self.lifecycle != Lifecycle::Stopped {
            tracing::debug!(
                dropped = self.dirty.len(),
                in_flight = self.processing.len(),
                "workqueue shutting down"
            );
        }
        self.lifecycle = Lifecycle::Stopped;
        self.ready.clear();
        self.dirty.clear();
        self.delayed.clear();
        wake.all_getters = true;
        wake.drained = self.is_drained();
    }

    /// Starts draining: no new keys, waiting keys dropped, queued and dirty
    /// keys still handed out.
    pub(super) fn drain(&mut self, wake: &mut Wake) {
        if self.lifecycle == Lifecycle::Running {
            tracing::debug!(
                queued = self.dirty.len(),
                in_flight = self.processing.len(),
                dropped_waiting = self.delayed.len(),
                "workqueue draining"
            );
            self.lifecycle = Lifecycle::Draining;
        }
        self.delayed.clear();
        wake.all_getters = true;
        wake.drained = self.is_drained();
    }

    /// The counters at `now`.
    pub(super) fn metrics(&self, now: Instant) -> QueueMetrics {
        QueueMetrics {
            depth: self.ready.len(),
            in_flight: self.processing.len(),
            waiting: self.delayed.len(),
            adds: self.adds,
            retries: self.retries,
            longest_running: self
                .processing
                .values()
                .map(|&since| now.saturating_duration_since(since))
                .max()
                .unwrap_or(Duration::ZERO),
        }
    }
}
