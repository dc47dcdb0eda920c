//! client-go's default controller rate limiter: per-key exponential backoff
//! under an overall token bucket.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

use super::QueueConfig;

/// Decides how long a failed key waits before it is queued again: the larger
/// of its own exponential backoff and the overall token bucket's delay, like
/// client-go's `DefaultControllerRateLimiter` (`MaxOf` an
/// `ItemExponentialFailureRateLimiter` and a `BucketRateLimiter`).
///
/// Pure bookkeeping: the caller passes the current time, so it is tested
/// without a clock.
#[derive(Debug)]
pub(super) struct RateLimiter<K> {
    backoff: ExponentialBackoff<K>,
    bucket: TokenBucket,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// A limiter with the given (validated) settings.
    pub(super) fn new(config: &QueueConfig) -> Self {
        Self {
            backoff: ExponentialBackoff {
                base: config.base_delay,
                max: config.max_delay,
                failures: HashMap::new(),
            },
            bucket: TokenBucket::new(config.qps, config.burst),
        }
    }

    /// Takes new (validated) settings, keeping every key's failure count
    /// and the tokens the bucket holds (capped at the new burst).
    pub(super) fn reconfigure(&mut self, config: &QueueConfig) {
        self.backoff.base = config.base_delay;
        self.backoff.max = config.max_delay;
        self.bucket.qps = config.qps;
        self.bucket.burst = f64::from(config.burst);
        self.bucket.tokens = self.bucket.tokens.min(self.bucket.burst);
    }

    /// Records one more failure of `key` at `now` and returns how long it
    /// waits. Both limiters count the request, as client-go's `MaxOf` does.
    pub(super) fn when(&mut self, key: &K, now: Instant) -> Duration {
        let backoff = self.backoff.when(key);
        let bucket = self.bucket.reserve(now);
        backoff.max(bucket)
    }

    /// Forgets `key`'s failures: its next backoff starts again from the base.
    pub(super) fn forget(&mut self, key: &K) {
        self.backoff.failures.remove(key);
    }

    /// How many failures of `key` have been recorded since it was last
    /// forgotten.
    pub(super) fn num_requeues(&self, key: &K) -> u32 {
        self.backoff.failures.get(key).copied().unwrap_or(0)
    }
}

/// Per-key backoff: `base * 2^failures`, capped at `max`.
#[derive(Debug)]
struct ExponentialBackoff<K> {
    base: Duration,
    max: Duration,
    failures: HashMap<K, u32>,
}

impl<K: Eq + Hash + Clone> ExponentialBackoff<K> {
    fn when(&mut self, key: &K) -> Duration {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        let exponent = *failures;
        *failures = failures.saturating_add(1);
        let max = self.max.as_nanos();
        let backoff = 1u128
            .checked_shl(exponent)
            .and_then(|factor| self.base.as_nanos().checked_mul(factor))
            .map_or(max, |nanos| nanos.min(max));
        duration_from_nanos(backoff)
    }
}

/// An overall token bucket, as golang.org/x/time/rate's `Limiter.Reserve`:
/// it starts full with `burst` tokens, refills at `qps` tokens per second up
/// to `burst`, and every request takes one token, going into debt when none
/// is left; the debt is the request's delay.
#[derive(Debug)]
struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    /// When `tokens` was last brought up to date; `None` until the first
    /// request, when the bucket is full.
    last: Option<Instant>,
}

impl TokenBucket {
    fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst);
        Self {
            qps,
            burst,
            tokens: burst,
            last: None,
        }
    }

    /// Takes one token at `now` and returns how long the request must wait
    /// for it.
    fn reserve(&mut self, now: Instant) -> Duration {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.qps;
            self.tokens = (self.tokens + refill).min(self.burst);
        }
        // Like x/time/rate, the clock never goes back.
        self.last = Some(self.last.map_or(now, |last| last.max(now)));
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            return Duration::ZERO;
        }
        let nanos = (-self.tokens / self.qps * 1e9).round();
        // Saturating float-to-int conversion: an absurd debt waits "forever".
        duration_from_nanos(nanos as u128)
    }
}

/// A duration of `nanos` nanoseconds, saturating at [`Duration::MAX`].
fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, subsec)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::{RateLimiter, TokenBucket};
    use crate::queue::QueueConfig;

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// A limiter whose bucket never limits, to see the backoff alone.
    fn backoff_only(config: QueueConfig) -> RateLimiter<&'static str> {
        RateLimiter::new(&config.qps(1e9).burst(u32::MAX))
    }

    #[test]
    fn backoff_doubles_from_the_base_and_stops_at_the_max() {
        let mut limiter = backoff_only(QueueConfig::default());
        let now = Instant::now();
        let delays: Vec<Duration> = (0..20).map(|_| limiter.when(&"a", now)).collect();
        let expected: Vec<Duration> = (0..20)
            .map(|failure| ms(5 << failure).min(Duration::from_secs(1000)))
            .collect();
        assert_eq!(delays, expected);
        assert_eq!(&delays[..4], &[ms(5), ms(10), ms(20), ms(40)]);
        // 5 ms * 2^18 = 1310.72 s > 1000 s: capped from the 19th failure on.
        assert_eq!(delays[17], ms(655_360));
        assert_eq!(delays[18], Duration::from_secs(1000));
        assert_eq!(limiter.num_requeues(&"a"), 20);
    }

    #[test]
    fn backoff_stays_at_the_max_however_many_failures() {
        let mut limiter = backoff_only(QueueConfig::default());
        let now = Instant::now();
        for _ in 0..300 {
            assert!(limiter.when(&"a", now) <= Duration::from_secs(1000));
        }
        assert_eq!(limiter.when(&"a", now), Duration::from_secs(1000));
        assert_eq!(limiter.num_requeues(&"a"), 301);
    }

    #[test]
    fn backoff_is_per_key_and_forget_resets_it() {
        let mut limiter = backoff_only(QueueConfig::default());
        let now = Instant::now();
        assert_eq!(limiter.when(&"a", now), ms(5));
        assert_eq!(limiter.when(&"a", now), ms(10));
        assert_eq!(limiter.when(&"b", now), ms(5));
        assert_eq!(limiter.num_requeues(&"a"), 2);
        limiter.forget(&"a");
        assert_eq!(limiter.num_requeues(&"a"), 0);
        assert_eq!(limiter.num_requeues(&"b"), 1);
        assert_eq!(limiter.when(&"a", now), ms(5));
        assert_eq!(limiter.when(&"b", now), ms(10));
    }

    #[test]
    fn backoff_uses_the_configured_numbers() {
        let config = QueueConfig::default()
            .base_delay(ms(100))
            .max_delay(ms(350));
        let mut limiter = backoff_only(config);
        let now = Instant::now();
        let delays: Vec<Duration> = (0..4).map(|_| limiter.when(&"a", now)).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(350), ms(350)]);
    }

    #[test]
    fn bucket_lets_a_burst_through_then_spaces_requests_at_qps() {
        let mut limiter = RateLimiter::new(&QueueConfig::default());
        let now = Instant::now();
        // The first 100 distinct keys wait only their own first backoff.
        for key in 0..100 {
            assert_eq!(limiter.when(&key, now), ms(5), "key {key}");
        }
        // Then the bucket is empty: one token every 100 ms at 10 qps.
        assert_eq!(limiter.when(&100, now), ms(100));
        assert_eq!(limiter.when(&101, now), ms(200));
        assert_eq!(limiter.when(&102, now), ms(300));
    }

    #[test]
    fn bucket_refills_at_qps_up_to_the_burst() {
        let mut bucket = TokenBucket::new(10.0, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(bucket.reserve(start), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(start), ms(100));
        // 150 ms later the debt of one token is paid and half a token earned.
        assert_eq!(bucket.reserve(start + ms(150)), ms(50));
        // A long pause refills the bucket to its burst, no more.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(later), Duration::ZERO);
        }
        assert_eq!(bucket.reserve(later), ms(100));
    }

    #[test]
    fn bucket_uses_the_configured_rate() {
        let mut bucket = TokenBucket::new(2.0, 1);
        let now = Instant::now();
        assert_eq!(bucket.reserve(now), Duration::ZERO);
        assert_eq!(bucket.reserve(now), ms(500));
        assert_eq!(bucket.reserve(now), ms(1000));
    }

    #[test]
    fn reconfiguring_keeps_failures_and_uses_the_new_numbers() {
        let mut limiter = backoff_only(QueueConfig::default().base_delay(ms(5)));
        assert_eq!(limiter.when(&"a", Instant::now()), ms(5));
        assert_eq!(limiter.when(&"a", Instant::now()), ms(10));
        limiter.reconfigure(
            &QueueConfig::default()
                .base_delay(ms(100))
                .qps(1e9)
                .burst(u32::MAX),
        );
        assert_eq!(limiter.num_requeues(&"a"), 2);
        assert_eq!(limiter.when(&"a", Instant::now()), ms(400));
    }

    #[test]
    fn the_slower_limiter_wins() {
        let config = QueueConfig::default().qps(1.0).burst(1);
        let mut limiter = RateLimiter::new(&config);
        let now = Instant::now();
        // Burst of one: the bucket allows the first at once, backoff says 5 ms.
        assert_eq!(limiter.when(&"a", now), ms(5));
        // Then the bucket's one second beats the backoff's 10 ms.
        assert_eq!(limiter.when(&"a", now), Duration::from_secs(1));
        assert_eq!(limiter.when(&"b", now), Duration::from_secs(2));
    }
}
