//! The controller workqueue: keys waiting to be reconciled, with client-go's semantics.
//!
//! A [`Workqueue`] holds object keys, not events, so that bursts of changes to
//! one object coalesce into one reconcile. It follows
//! `k8s.io/client-go/util/workqueue`'s rate-limiting, delaying queue:
//!
//! - a key is queued at most once ([`Workqueue::add`] deduplicates);
//! - a key is never handed to two workers at once: a key added while a worker
//!   holds it is marked dirty and queued again when the worker calls
//!   [`Workqueue::done`], so a change made while in flight is processed
//!   afterwards;
//! - [`Workqueue::add_after`] adds a key later (`requeue-after`);
//! - [`Workqueue::add_rate_limited`] adds a failed key after the larger of its
//!   own exponential backoff and an overall token bucket's delay
//!   ([`QueueConfig`]); [`Workqueue::forget`] resets the backoff on success.
//!
//! Delayed keys need no background task: whoever touches the queue next
//! (a waiting [`Workqueue::get`] sleeps until the earliest deadline) moves the
//! keys that are due into the ready queue, so nothing outlives the queue and
//! everything runs in tokio's virtual time under test.

mod config;
mod delay;
mod rate_limit;
mod state;
#[cfg(test)]
mod tests;

use std::fmt;
use std::hash::Hash;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

pub use config::{QueueConfig, QueueConfigError};

use state::{Lifecycle, Next, State, Wake};

/// A queue of keys for one controller's workers; see the [module
/// documentation](self) for the semantics.
///
/// Cheap to clone: clones share one queue. Every method may be called from
/// any number of tasks; none blocks on another task's work except
/// [`get`](Self::get), which waits for a key.
///
/// ```
/// # use std::time::Duration;
/// # async fn reconcile(_key: &String) -> Result<Option<Duration>, ()> { Ok(None) }
/// # async fn worker() -> Result<(), paddock::queue::QueueConfigError> {
/// use paddock::queue::{QueueConfig, Workqueue};
///
/// let queue = Workqueue::<String>::new(QueueConfig::default())?;
/// while let Some(key) = queue.get().await {
///     match reconcile(&key).await {
///         Ok(requeue_after) => {
///             queue.forget(&key);
///             if let Some(after) = requeue_after {
///                 queue.add_after(key.clone(), after);
///             }
///         }
///         Err(_) => queue.add_rate_limited(key.clone()),
///     }
///     queue.done(&key);
/// }
/// # Ok(())
/// # }
/// ```
pub struct Workqueue<K> {
    shared: Arc<Shared<K>>,
}

/// What the handles of one queue share.
struct Shared<K> {
    state: Mutex<State<K>>,
    /// Wakes getters: a key became ready, the earliest deadline moved
    /// earlier, or the queue shut down.
    ready: Notify,
    /// Wakes [`Workqueue::shutdown_with_drain`]'s future when the last key
    /// is done.
    drained: Notify,
}

/// A point-in-time view of a queue's counters, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueMetrics {
    /// Keys ready to be handed to a worker (client-go's `depth`).
    pub depth: usize,
    /// Keys a worker holds (got and not yet done).
    pub in_flight: usize,
    /// Keys waiting for a deadline: `add_after` and `add_rate_limited`.
    pub waiting: usize,
    /// Keys newly queued since the queue was created; an add of a key that is
    /// already queued does not count (client-go's `adds_total`).
    pub adds: u64,
    /// Calls to [`Workqueue::add_rate_limited`] (client-go's `retries_total`
    /// counts every delayed add; requeue-after is not a retry here).
    pub retries: u64,
    /// How long the longest-held in-flight key has been held; zero when none
    /// is (client-go's `longest_running_processor_seconds`).
    pub longest_running: Duration,
}

impl<K> Clone for Workqueue<K> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<K> fmt::Debug for Workqueue<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("Workqueue")
            .field("ready", &state.ready_len())
            .field("in_flight", &state.in_flight())
            .field("waiting", &state.waiting())
            .field("lifecycle", &state.lifecycle())
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Default for Workqueue<K> {
    /// A queue with client-go's defaults ([`QueueConfig::default`]).
    fn default() -> Self {
        Self::from_valid(&QueueConfig::default())
    }
}

impl<K: Clone + Eq + Hash + Send + Sync + 'static> Workqueue<K> {
    /// An empty queue with `config`'s rate limits.
    ///
    /// # Errors
    ///
    /// [`QueueConfigError`] when `config` cannot work, naming the field; see
    /// [`QueueConfig::validate`].
    pub fn new(config: QueueConfig) -> Result<Self, QueueConfigError> {
        config.validate()?;
        Ok(Self::from_valid(&config))
    }

    fn from_valid(config: &QueueConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new(config)),
                ready: Notify::new(),
                drained: Notify::new(),
            }),
        }
    }

    /// Queues `key` for a worker, unless it is queued already. A key a worker
    /// holds is queued again when that worker calls [`done`](Self::done).
    /// A key waiting for a deadline is added now and still added again at
    /// its deadline, as in client-go. Ignored once the queue is shutting
    /// down.
    pub fn add(&self, key: K) {
        self.shared.update(|state, now, wake| {
            state.promote_due(now, wake);
            state.add(key, wake);
        });
    }

    /// Adds `key` once `delay` has passed (at once if it is zero). A key
    /// already waiting keeps the earlier of its two deadlines. Ignored once
    /// the queue is shutting down.
    pub fn add_after(&self, key: K, delay: Duration) {
        self.shared.update(|state, now, wake| {
            state.promote_due(now, wake);
            state.add_after(key, delay, now, wake);
        });
    }

    /// Adds `key` after the rate limiter's delay: the larger of the key's
    /// exponential backoff (which this call advances) and the overall token
    /// bucket's delay. For a key whose processing failed. Ignored once the
    /// queue is shutting down.
    pub fn add_rate_limited(&self, key: K) {
        self.shared.update(|state, now, wake| {
            state.promote_due(now, wake);
            state.add_rate_limited(key, now, wake);
        });
    }

    /// Takes new rate limits. Queued and waiting keys, and every key's
    /// failure count, are kept; later delays use the new numbers.
    ///
    /// # Errors
    ///
    /// [`QueueConfigError`] when `config` cannot work; the queue is unchanged.
    pub fn reconfigure(&self, config: &QueueConfig) -> Result<(), QueueConfigError> {
        config.validate()?;
        self.shared.lock().reconfigure(config);
        Ok(())
    }

    /// Resets `key`'s backoff, for when its processing succeeded. It does not
    /// take the key out of the queue.
    pub fn forget(&self, key: &K) {
        self.shared.lock().forget(key);
    }

    /// How many times `key` was rate-limited since it was last forgotten: the
    /// number of consecutive failures (a reconcile's `attempt`).
    pub fn num_requeues(&self, key: &K) -> u32 {
        self.shared.lock().num_requeues(key)
    }

    /// Waits for the next ready key, oldest first, and marks it in flight;
    /// the caller must call [`done`](Self::done) with it when finished.
    ///
    /// Returns `None` once the queue is [shut down](Self::shutdown), or,
    /// after [`shutdown_with_drain`](Self::shutdown_with_drain), once every
    /// queued key has been handed out. Cancel safe: a key is taken only by a
    /// call that returns it.
    pub async fn get(&self) -> Option<K> {
        loop {
            let notified = self.shared.ready.notified();
            let mut notified = pin!(notified);
            // Registered before looking, so no wake-up is lost in between.
            notified.as_mut().enable();
            let next = self.shared.update(|state, now, wake| {
                state.promote_due(now, wake);
                state.next(now, wake)
            });
            match next {
                Next::Key(key) => return Some(key),
                Next::Closed => return None,
                // Timing out means a key is due: look again.
                Next::Empty {
                    next_deadline: Some(deadline),
                } => {
                    let _ = tokio::time::timeout_at(deadline, notified).await;
                }
                Next::Empty {
                    next_deadline: None,
                } => notified.await,
            }
        }
    }

    /// Marks `key` as no longer in flight. If it was added while in flight,
    /// it is queued again now. A key that is not in flight is ignored.
    pub fn done(&self, key: &K) {
        self.shared.update(|state, now, wake| {
            state.promote_due(now, wake);
            state.done(key, wake);
        });
    }

    /// How many keys are ready for a worker (not counting in-flight or
    /// waiting ones).
    pub fn len(&self) -> usize {
        self.shared.update(|state, now, wake| {
            state.promote_due(now, wake);
            state.ready_len()
        })
    }

    /// Whether no key is ready for a worker.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many keys workers hold (got and not yet done).
    pub fn in_flight(&self) -> usize {
        self.shared.lock().in_flight()
    }

    /// Whether [`shutdown`](Self::shutdown) or
    /// [`shutdown_with_drain`](Self::shutdown_with_drain) was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.lock().lifecycle() != Lifecycle::Running
    }

    /// The queue's counters now.
    pub fn metrics(&self) -> QueueMetrics {
        self.shared.update(|state, now, wake| {
            state.promote_due(now, wake);
            state.metrics(now)
        })
    }

    /// Shuts the queue down at once: new keys are ignored, queued and waiting
    /// keys are dropped, and every [`get`](Self::get), waiting or not, returns
    /// `None`. Workers may still call [`done`](Self::done) for the keys they
    /// hold. Unlike client-go, which still hands out queued keys after
    /// `ShutDown`; use [`shutdown_with_drain`](Self::shutdown_with_drain) for
    /// that.
    pub fn shutdown(&self) {
        self.shared.update(|state, _now, wake| state.stop(wake));
    }

    /// Shuts the queue down gracefully: new keys (and delayed ones not yet
    /// due) are ignored, while workers still get the keys already queued,
    /// including in-flight keys added again before now; then
    /// [`get`](Self::get) returns `None`.
    ///
    /// The shutdown happens on the call; the returned future, which may be
    /// dropped, completes once no key is queued or in flight. It waits for
    /// workers, so bound it with a timeout (and call
    /// [`shutdown`](Self::shutdown) when it passes).
    pub fn shutdown_with_drain(&self) -> impl Future<Output = ()> + Send + 'static {
        self.shared.update(|state, now, wake| {
            state.promote_due(now, wake);
            state.drain(wake);
        });
        let shared = Arc::clone(&self.shared);
        async move {
            loop {
                let notified = shared.drained.notified();
                let mut notified = pin!(notified);
                notified.as_mut().enable();
                if shared.lock().is_drained() {
                    return;
                }
                notified.await;
            }
        }
    }
}

impl<K> Shared<K> {
    fn lock(&self) -> MutexGuard<'_, State<K>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` under the lock, then wakes whom it asked for.
    fn update<T>(&self, change: impl FnOnce(&mut State<K>, Instant, &mut Wake) -> T) -> T {
        let mut wake = Wake::default();
        let answer = {
            let mut state = self.lock();
            change(&mut state, Instant::now(), &mut wake)
        };
        if wake.all_getters {
            self.ready.notify_waiters();
        }
        for _ in 0..wake.ready_keys {
            self.ready.notify_one();
        }
        if wake.drained {
            self.drained.notify_waiters();
        }
        answer
    }
}
