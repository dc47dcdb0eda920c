//! The workqueue's behaviour, in tokio's virtual time.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::{QueueConfig, QueueConfigError, QueueMetrics, Workqueue};

fn ms(millis: u64) -> Duration {
    Duration::from_millis(millis)
}

fn queue() -> Workqueue<&'static str> {
    Workqueue::default()
}

/// The next key if one is ready now, without waiting.
async fn try_get<K>(queue: &Workqueue<K>) -> Option<K>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
{
    tokio::time::timeout(Duration::ZERO, queue.get())
        .await
        .ok()
        .flatten()
}

/// A task waiting for the next key; it answers the key and how long it
/// waited.
fn spawn_getter(queue: &Workqueue<&'static str>) -> JoinHandle<(Option<&'static str>, Duration)> {
    let queue = queue.clone();
    let start = Instant::now();
    tokio::spawn(async move {
        let key = queue.get().await;
        (key, start.elapsed())
    })
}

/// Lets every other task run until it waits.
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// How long a test waits for something that should happen before it calls
/// it stuck: virtual time under `start_paused` (a stuck test fails at once),
/// real time in the multi-threaded test.
const STUCK: Duration = Duration::from_secs(60);

/// A spawned task's answer; a panic in it, or a task still waiting after
/// [`STUCK`], fails the test.
async fn join<T>(handle: JoinHandle<T>) -> T {
    match tokio::time::timeout(STUCK, handle).await {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => panic!("task failed: {error}"),
        Err(_) => panic!("task still waiting after {STUCK:?}"),
    }
}

/// Waits for `future`, failing the test if it is still waiting after
/// [`STUCK`].
async fn finish<T>(future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STUCK, future).await {
        Ok(value) => value,
        Err(_) => panic!("still waiting after {STUCK:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn repeated_adds_queue_a_key_once() {
    let queue = queue();
    queue.add("a");
    queue.add("a");
    queue.add("b");
    queue.add("a");
    assert_eq!(queue.len(), 2);
    assert_eq!(queue.metrics().adds, 2);
    assert_eq!(try_get(&queue).await, Some("a"));
    assert_eq!(try_get(&queue).await, Some("b"));
    assert_eq!(try_get(&queue).await, None);
    assert!(queue.is_empty());
}

#[tokio::test(start_paused = true)]
async fn keys_come_out_oldest_first() {
    let queue = queue();
    for key in ["c", "a", "d", "b"] {
        queue.add(key);
    }
    let mut order = Vec::new();
    while let Some(key) = try_get(&queue).await {
        order.push(key);
    }
    assert_eq!(order, ["c", "a", "d", "b"]);
}

#[tokio::test(start_paused = true)]
async fn a_key_added_while_in_flight_comes_back_once_after_done() {
    let queue = queue();
    queue.add("a");
    assert_eq!(try_get(&queue).await, Some("a"));
    assert_eq!(queue.in_flight(), 1);
    queue.add("a");
    queue.add("a");
    // Not handed to another worker while the first holds it.
    assert_eq!(queue.len(), 0);
    assert_eq!(try_get(&queue).await, None);
    queue.done(&"a");
    assert_eq!(queue.in_flight(), 0);
    assert_eq!(queue.len(), 1);
    assert_eq!(try_get(&queue).await, Some("a"));
    assert_eq!(try_get(&queue).await, None);
    queue.done(&"a");
    assert_eq!((queue.len(), queue.in_flight()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_getter_gets_a_dirty_key_when_it_is_done() {
    let queue = queue();
    queue.add("a");
    assert_eq!(try_get(&queue).await, Some("a"));
    let getter = spawn_getter(&queue);
    settle().await;
    queue.add("a");
    settle().await;
    assert!(!getter.is_finished());
    tokio::time::advance(ms(30)).await;
    queue.done(&"a");
    assert_eq!(join(getter).await, (Some("a"), ms(30)));
}

#[tokio::test(start_paused = true)]
async fn done_for_a_key_not_in_flight_is_ignored() {
    let queue = queue();
    queue.add("a");
    // Queued, not in flight: done must not queue it a second time.
    queue.done(&"a");
    assert_eq!(queue.len(), 1);
    assert_eq!(try_get(&queue).await, Some("a"));
    queue.done(&"a");
    queue.done(&"a");
    assert_eq!(try_get(&queue).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_never_hold_one_key_at_once_and_see_every_change() {
    const KEYS: usize = 16;
    const WORKERS: usize = 8;
    const ADDERS: usize = 4;
    const ADDS_PER_ADDER: usize = 2_000;

    let queue = Workqueue::<usize>::default();
    // Bumped before each add: the change a worker must eventually see.
    let versions: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    // The newest version a worker saw while holding the key.
    let seen: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
    let holding = Arc::new(Mutex::new(HashSet::new()));
    let overlap = Arc::new(AtomicBool::new(false));

    let workers: Vec<JoinHandle<usize>> = (0..WORKERS)
        .map(|_| {
            let (queue, versions, seen) = (queue.clone(), versions.clone(), seen.clone());
            let (holding, overlap) = (holding.clone(), overlap.clone());
            tokio::spawn(async move {
                let mut processed = 0;
                while let Some(key) = queue.get().await {
                    let fresh = holding
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(key);
                    if !fresh {
                        overlap.store(true, Ordering::SeqCst);
                    }
                    seen[key].fetch_max(versions[key].load(Ordering::SeqCst), Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    holding
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&key);
                    queue.done(&key);
                    processed += 1;
                }
                processed
            })
        })
        .collect();
    let adders: Vec<JoinHandle<()>> = (0..ADDERS)
        .map(|adder| {
            let (queue, versions) = (queue.clone(), versions.clone());
            tokio::spawn(async move {
                for add in 0..ADDS_PER_ADDER {
                    let key = (adder * 7 + add * 3) % KEYS;
                    versions[key].fetch_add(1, Ordering::SeqCst);
                    queue.add(key);
                    if add % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for adder in adders {
        join(adder).await;
    }
    finish(queue.shutdown_with_drain()).await;
    let mut processed = 0;
    for worker in workers {
        processed += join(worker).await;
    }

    assert!(!overlap.load(Ordering::SeqCst), "two workers held one key");
    for key in 0..KEYS {
        assert_eq!(
            seen[key].load(Ordering::SeqCst),
            versions[key].load(Ordering::SeqCst),
            "key {key}: its last change was never processed"
        );
    }
    assert!(processed >= KEYS);
    assert!(processed <= ADDERS * ADDS_PER_ADDER);
    assert_eq!(queue.metrics().in_flight, 0);
}

#[tokio::test(start_paused = true)]
async fn add_after_adds_the_key_when_its_delay_has_passed() {
    let queue = queue();
    queue.add_after("a", ms(100));
    assert_eq!(queue.metrics().waiting, 1);
    tokio::time::advance(ms(99)).await;
    assert_eq!(queue.len(), 0);
    tokio::time::advance(ms(1)).await;
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.metrics().waiting, 0);
    assert_eq!(try_get(&queue).await, Some("a"));
}

#[tokio::test(start_paused = true)]
async fn a_waiting_getter_wakes_at_the_deadline() {
    let queue = queue();
    let start = Instant::now();
    queue.add_after("a", ms(250));
    assert_eq!(finish(queue.get()).await, Some("a"));
    assert_eq!(start.elapsed(), ms(250));
}

#[tokio::test(start_paused = true)]
async fn a_sleeping_getter_sees_a_new_earlier_deadline() {
    let queue = queue();
    queue.add_after("late", Duration::from_secs(10));
    let getter = spawn_getter(&queue);
    settle().await;
    queue.add_after("soon", ms(10));
    assert_eq!(join(getter).await, (Some("soon"), ms(10)));
}

#[tokio::test(start_paused = true)]
async fn adding_again_earlier_moves_the_key_earlier_and_it_fires_once() {
    let queue = queue();
    let start = Instant::now();
    queue.add_after("a", Duration::from_secs(1));
    queue.add_after("a", ms(200));
    assert_eq!(queue.metrics().waiting, 1);
    assert_eq!(finish(queue.get()).await, Some("a"));
    assert_eq!(start.elapsed(), ms(200));
    queue.done(&"a");
    // The superseded one-second deadline does not add it again.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(queue.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn adding_again_later_keeps_the_earlier_deadline() {
    let queue = queue();
    let start = Instant::now();
    queue.add_after("a", ms(200));
    queue.add_after("a", Duration::from_secs(1));
    assert_eq!(finish(queue.get()).await, Some("a"));
    assert_eq!(start.elapsed(), ms(200));
    queue.done(&"a");
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(queue.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn add_after_zero_adds_at_once_and_deduplicates() {
    let queue = queue();
    queue.add("a");
    queue.add_after("a", Duration::ZERO);
    assert_eq!(queue.len(), 1);
    assert_eq!(queue.metrics().waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn due_keys_join_the_queue_in_deadline_order() {
    let queue = queue();
    queue.add_after("second", ms(20));
    queue.add_after("first", ms(10));
    queue.add("now");
    tokio::time::advance(ms(30)).await;
    let mut order = Vec::new();
    while let Some(key) = try_get(&queue).await {
        order.push(key);
    }
    assert_eq!(order, ["now", "first", "second"]);
}

/// Fails `key` over and over; each time, how long it took to come back.
async fn failure_delays(
    queue: &Workqueue<&'static str>,
    key: &'static str,
    n: usize,
) -> Vec<Duration> {
    let mut delays = Vec::new();
    for _ in 0..n {
        let start = Instant::now();
        queue.add_rate_limited(key);
        assert_eq!(finish(queue.get()).await, Some(key));
        delays.push(start.elapsed());
        queue.done(&key);
    }
    delays
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_exponentially_and_forget_resets() {
    let queue = queue();
    let delays = failure_delays(&queue, "a", 6).await;
    assert_eq!(delays, [ms(5), ms(10), ms(20), ms(40), ms(80), ms(160)]);
    assert_eq!(queue.num_requeues(&"a"), 6);
    assert_eq!(queue.num_requeues(&"b"), 0);
    queue.forget(&"a");
    assert_eq!(queue.num_requeues(&"a"), 0);
    assert_eq!(failure_delays(&queue, "a", 2).await, [ms(5), ms(10)]);
    assert_eq!(queue.metrics().retries, 8);
}

#[tokio::test(start_paused = true)]
async fn backoff_stops_at_the_configured_max() -> Result<(), QueueConfigError> {
    let config = QueueConfig::default().base_delay(ms(10)).max_delay(ms(50));
    let queue = Workqueue::new(config)?;
    let delays = failure_delays(&queue, "a", 5).await;
    assert_eq!(delays, [ms(10), ms(20), ms(40), ms(50), ms(50)]);
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn the_bucket_lets_100_keys_through_then_one_per_100_ms() {
    let queue = Workqueue::<u32>::default();
    for key in 0..=100 {
        queue.add_rate_limited(key);
    }
    assert_eq!(queue.metrics().retries, 101);
    assert_eq!(queue.len(), 0);
    // The first hundred wait only their own first backoff.
    tokio::time::advance(ms(5)).await;
    assert_eq!(queue.len(), 100);
    for _ in 0..100 {
        let key = try_get(&queue).await;
        assert!(key.is_some_and(|key| key < 100), "{key:?}");
    }
    // The 101st waits for a token: 100 ms at 10 qps.
    tokio::time::advance(ms(94)).await;
    assert_eq!(queue.len(), 0);
    tokio::time::advance(ms(1)).await;
    assert_eq!(try_get(&queue).await, Some(100));
}

#[tokio::test(start_paused = true)]
async fn the_bucket_uses_the_configured_rate() -> Result<(), QueueConfigError> {
    let queue = Workqueue::new(QueueConfig::default().qps(2.0).burst(1))?;
    let start = Instant::now();
    queue.add_rate_limited("a");
    queue.add_rate_limited("b");
    assert_eq!(finish(queue.get()).await, Some("a"));
    assert_eq!(start.elapsed(), ms(5));
    assert_eq!(finish(queue.get()).await, Some("b"));
    assert_eq!(start.elapsed(), ms(500));
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn shutdown_wakes_every_waiting_getter_with_none() {
    let queue = queue();
    let getters: Vec<_> = (0..3).map(|_| spawn_getter(&queue)).collect();
    settle().await;
    assert!(getters.iter().all(|getter| !getter.is_finished()));
    tokio::time::advance(ms(7)).await;
    queue.shutdown();
    for getter in getters {
        assert_eq!(join(getter).await, (None, ms(7)));
    }
    assert!(queue.is_shutting_down());
}

#[tokio::test(start_paused = true)]
async fn shutdown_drops_queued_keys_and_ignores_new_ones() {
    let queue = queue();
    queue.add("queued");
    queue.add_after("waiting", ms(10));
    queue.shutdown();
    assert_eq!(finish(queue.get()).await, None);
    queue.add("new");
    queue.add_after("later", ms(10));
    queue.add_rate_limited("failed");
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(finish(queue.get()).await, None);
    let metrics = queue.metrics();
    assert_eq!((metrics.depth, metrics.waiting), (0, 0));
    assert_eq!((metrics.adds, metrics.retries), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn drain_hands_out_queued_and_dirty_keys_then_none() {
    let queue = queue();
    queue.add("a");
    queue.add("b");
    assert_eq!(try_get(&queue).await, Some("a"));
    queue.add("a");
    queue.add_after("waiting", ms(10));
    let drained = tokio::spawn(queue.shutdown_with_drain());
    assert!(queue.is_shutting_down());
    // Nothing new gets in.
    queue.add("new");
    queue.add_rate_limited("failed");
    assert_eq!(try_get(&queue).await, Some("b"));
    // "a" is in flight and dirty: a getter waits for it rather than stopping.
    let getter = spawn_getter(&queue);
    settle().await;
    assert!(!getter.is_finished());
    queue.done(&"a");
    assert_eq!(join(getter).await.0, Some("a"));
    assert_eq!(try_get(&queue).await, None);
    // Two keys still in flight: not drained yet.
    queue.done(&"b");
    settle().await;
    assert!(!drained.is_finished());
    tokio::time::advance(ms(20)).await;
    queue.done(&"a");
    join(drained).await;
    assert_eq!(finish(queue.get()).await, None);
    assert_eq!(
        queue.metrics(),
        QueueMetrics {
            adds: 3,
            ..QueueMetrics::default()
        }
    );
}

#[tokio::test(start_paused = true)]
async fn getters_waiting_in_a_drain_stop_when_the_last_key_is_taken() {
    let queue = queue();
    queue.add("a");
    assert_eq!(try_get(&queue).await, Some("a"));
    queue.add("a");
    let getters: Vec<_> = (0..3).map(|_| spawn_getter(&queue)).collect();
    settle().await;
    let drained = queue.shutdown_with_drain();
    settle().await;
    assert!(getters.iter().all(|getter| !getter.is_finished()));
    queue.done(&"a");
    let mut keys = Vec::new();
    for getter in getters {
        keys.push(join(getter).await.0);
    }
    keys.sort_unstable();
    assert_eq!(keys, [None, None, Some("a")]);
    queue.done(&"a");
    finish(drained).await;
}

#[tokio::test(start_paused = true)]
async fn drain_of_an_idle_queue_completes_at_once_and_drops_waiting_keys() {
    let queue = queue();
    queue.add_after("waiting", ms(10));
    finish(queue.shutdown_with_drain()).await;
    assert_eq!(queue.metrics().waiting, 0);
    tokio::time::advance(ms(20)).await;
    assert_eq!(finish(queue.get()).await, None);
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_a_drain_stops_handing_out_keys() {
    let queue = queue();
    queue.add("a");
    queue.add("b");
    assert_eq!(try_get(&queue).await, Some("a"));
    let drained = tokio::spawn(queue.shutdown_with_drain());
    queue.shutdown();
    assert_eq!(finish(queue.get()).await, None);
    settle().await;
    assert!(!drained.is_finished());
    queue.done(&"a");
    join(drained).await;
}

#[tokio::test(start_paused = true)]
async fn metrics_count_adds_retries_and_the_longest_running_key() {
    let queue = queue();
    queue.add("a");
    queue.add("a");
    queue.add("b");
    queue.add_rate_limited("c");
    queue.add_after("d", Duration::from_secs(60));
    let metrics = queue.metrics();
    assert_eq!(
        metrics,
        QueueMetrics {
            depth: 2,
            in_flight: 0,
            waiting: 2,
            adds: 2,
            retries: 1,
            longest_running: Duration::ZERO,
        }
    );
    assert_eq!(try_get(&queue).await, Some("a"));
    tokio::time::advance(Duration::from_secs(3)).await;
    assert_eq!(try_get(&queue).await, Some("b"));
    tokio::time::advance(Duration::from_secs(1)).await;
    let metrics = queue.metrics();
    // "c" became due and was queued meanwhile.
    assert_eq!(
        (metrics.depth, metrics.in_flight, metrics.waiting),
        (1, 2, 1)
    );
    assert_eq!(metrics.adds, 3);
    assert_eq!(metrics.longest_running, Duration::from_secs(4));
    queue.done(&"a");
    assert_eq!(queue.metrics().longest_running, Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn clones_share_one_queue() {
    let queue = queue();
    let clone = queue.clone();
    clone.add("a");
    assert_eq!(try_get(&queue).await, Some("a"));
    assert_eq!(clone.in_flight(), 1);
    clone.shutdown();
    assert!(queue.is_shutting_down());
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_get_takes_no_key() {
    let queue = queue();
    assert!(tokio::time::timeout(ms(10), queue.get()).await.is_err());
    queue.add("a");
    assert_eq!(queue.len(), 1);
    assert_eq!(finish(queue.get()).await, Some("a"));
}

#[tokio::test(start_paused = true)]
async fn delayed_keys_need_no_background_task() {
    let queue = queue();
    queue.add_after("a", ms(10));
    queue.add_rate_limited("b");
    assert_eq!(
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks(),
        0
    );
    assert_eq!(finish(queue.get()).await, Some("b"));
    assert_eq!(finish(queue.get()).await, Some("a"));
}

#[test]
fn new_refuses_an_invalid_config() {
    let refused = Workqueue::<u32>::new(QueueConfig::default().burst(0));
    assert_eq!(refused.err(), Some(QueueConfigError::Burst));
    assert!(Workqueue::<u32>::new(QueueConfig::default()).is_ok());
}

#[test]
fn futures_can_move_between_threads() {
    fn is_send<T: Send>(_: &T) {}
    fn is_send_static<T: Send + 'static>(_: T) {}
    let queue = Workqueue::<String>::default();
    is_send(&queue.get());
    is_send_static(queue.shutdown_with_drain());
    is_send_static(queue);
}
