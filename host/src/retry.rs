//! Backoff: the one retry schedule of every wait on the cluster, built on
//! `backon`.
//!
//! Two schedules, both exponential and never giving up:
//! - [`waiting`]: for waiting on the cluster to serve something (a watched
//!   kind, the `WasmController` definitions): 250 ms doubling to 10 s;
//! - [`Backoff::informer`]: for an informer's failed list or watch: 200 ms
//!   doubling to 30 s, each delay drawn at random from its upper half so
//!   that informers that failed together do not retry together.
//!
//! Delays are slept with `tokio::time::sleep`, so that tests in virtual
//! time control them.

use std::future::Future;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder, Retryable};

/// The first delay of [`waiting`].
pub const WAITING_FIRST: Duration = Duration::from_millis(250);
/// The longest delay of [`waiting`].
pub const WAITING_MAX: Duration = Duration::from_secs(10);
/// The first delay of [`Backoff::informer`], before jitter.
pub const INFORMER_FIRST: Duration = Duration::from_millis(200);
/// The longest delay of [`Backoff::informer`], before jitter.
pub const INFORMER_MAX: Duration = Duration::from_secs(30);

/// The schedule of waits on the cluster: 250 ms doubling to 10 s, forever.
pub fn waiting() -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_min_delay(WAITING_FIRST)
        .with_max_delay(WAITING_MAX)
        .without_max_times()
}

/// Calls `attempt` until it succeeds or fails with an error `retry` does
/// not accept, sleeping the [`waiting`] schedule between attempts.
/// `notify` is told each accepted error and the delay before the next
/// attempt.
///
/// # Errors
///
/// The first error `retry` refuses.
pub async fn retry_while<T, E, Fut>(
    attempt: impl FnMut() -> Fut,
    retry: impl FnMut(&E) -> bool,
    notify: impl FnMut(&E, Duration),
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    attempt
        .retry(waiting())
        .sleep(tokio::time::sleep)
        .when(retry)
        .notify(notify)
        .await
}

/// An exponential backoff that can start over, for loops that retry by
/// themselves (an informer's list and watch).
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    delays: ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// An informer's schedule: 200 ms doubling to 30 s, each delay drawn
    /// from its upper half (100-200 ms first, 15-30 s at most).
    pub fn informer() -> Self {
        // backon's jitter adds up to the delay itself, so the schedule is
        // built on half the delays.
        let builder = ExponentialBuilder::new()
            .with_min_delay(INFORMER_FIRST / 2)
            .with_max_delay(INFORMER_MAX / 2)
            .without_max_times()
            .with_jitter();
        Self {
            delays: builder.build(),
            builder,
            max: INFORMER_MAX,
        }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        // The schedules have no limit on attempts, so the iterator does not
        // end; the longest delay is the sensible answer if it ever did.
        self.delays.next().unwrap_or(self.max)
    }

    /// Starts over from the first delay (after a success).
    pub fn reset(&mut self) {
        self.delays = self.builder.build();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[test]
    fn waiting_doubles_from_250_ms_to_10_s() {
        let delays: Vec<Duration> = waiting().build().take(8).collect();
        let millis: Vec<u128> = delays.iter().map(Duration::as_millis).collect();
        assert_eq!(millis, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
    }

    #[test]
    fn informer_delays_stay_in_the_upper_half_and_reset() {
        let mut backoff = Backoff::informer();
        let mut base = INFORMER_FIRST;
        for _ in 0..12 {
            let delay = backoff.next_delay();
            assert!(
                delay >= base / 2 && delay <= base,
                "{delay:?} outside {:?}..={base:?}",
                base / 2
            );
            base = (base * 2).min(INFORMER_MAX);
        }
        backoff.reset();
        assert!(backoff.next_delay() <= INFORMER_FIRST);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_while_sleeps_the_schedule_and_stops_on_a_refused_error() {
        let attempts = Arc::new(AtomicU32::new(0));
        let started = tokio::time::Instant::now();
        let mut told = Vec::new();
        let result: Result<(), &str> = retry_while(
            || {
                let attempts = Arc::clone(&attempts);
                async move {
                    match attempts.fetch_add(1, Ordering::SeqCst) {
                        0..=2 => Err("not yet"),
                        _ => Err("give up"),
                    }
                }
            },
            |error| *error == "not yet",
            |_, delay| told.push(delay),
        )
        .await;
        assert_eq!(result, Err("give up"));
        assert_eq!(attempts.load(Ordering::SeqCst), 4);
        assert_eq!(
            told,
            [
                Duration::from_millis(250),
                Duration::from_millis(500),
                Duration::from_millis(1000)
            ]
        );
        assert_eq!(started.elapsed(), Duration::from_millis(1750));
    }
}
