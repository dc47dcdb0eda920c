//! What a guest may write to the host's log: lines cut to a length, a byte
//! budget per call, and a rate per guest shared by all its calls.

use std::borrow::Cow;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use super::limits::{LimitHits, Limits};

/// The log budget of one guest (all its instances).
#[derive(Debug)]
pub(crate) struct GuestLog {
    line_bytes: usize,
    per_call: u64,
    rate: Mutex<TokenBucket>,
}

/// Log lines per second, with bursts of twice as many.
#[derive(Debug)]
struct TokenBucket {
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn take(&mut self, now: Instant) -> bool {
        let capacity = self.per_second * 2.0;
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(capacity);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl GuestLog {
    pub(crate) fn new(limits: &Limits) -> Self {
        let per_second = f64::from(limits.log_lines_per_second);
        Self {
            line_bytes: usize::try_from(limits.max_log_line_bytes).unwrap_or(usize::MAX),
            per_call: limits.max_log_bytes_per_call,
            rate: Mutex::new(TokenBucket {
                per_second,
                tokens: per_second * 2.0,
                refilled: Instant::now(),
            }),
        }
    }

    /// The line to write for `message`, cut to the longest line, or `None`
    /// when the call's byte budget or the guest's rate is spent; `written`
    /// counts the call's bytes so far. Every cut and drop is counted.
    pub(crate) fn admit<'a>(
        &self,
        written: &mut u64,
        message: &'a str,
        hits: &LimitHits,
    ) -> Option<Cow<'a, str>> {
        if *written >= self.per_call
            || !self
                .rate
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(Instant::now())
        {
            LimitHits::bump(&hits.log_lines_dropped);
            return None;
        }
        let line = if message.len() > self.line_bytes {
            LimitHits::bump(&hits.log_lines_cut);
            let mut end = self.line_bytes;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            Cow::Owned(format!(
                "{}… ({} bytes cut by limits.maxLogLineBytes)",
                &message[..end],
                message.len() - end
            ))
        } else {
            Cow::Borrowed(message)
        };
        *written = written.saturating_add(line.len() as u64);
        Some(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(line_bytes: u32, per_call: u64, per_second: u32) -> GuestLog {
        GuestLog::new(
            &Limits::default()
                .max_log_line_bytes(line_bytes)
                .max_log_bytes_per_call(per_call)
                .log_lines_per_second(per_second),
        )
    }

    #[test]
    fn long_lines_are_cut_on_a_character_boundary_and_counted() {
        let hits = LimitHits::default();
        let log = log(5, 1024, 100);
        let mut written = 0;
        let line = log
            .admit(&mut written, "abcdé-more", &hits)
            .expect("admitted");
        assert_eq!(line, "abcd… (7 bytes cut by limits.maxLogLineBytes)");
        assert_eq!(hits.snapshot().log_lines_cut, 1);
        assert_eq!(written, line.len() as u64);
    }

    #[test]
    fn a_call_stops_logging_when_its_bytes_are_spent() {
        let hits = LimitHits::default();
        let log = log(100, 10, 100);
        let mut written = 0;
        assert!(log.admit(&mut written, "0123456789", &hits).is_some());
        assert!(log.admit(&mut written, "x", &hits).is_none());
        assert_eq!(hits.snapshot().log_lines_dropped, 1);
        // The next call has its own budget.
        let mut next = 0;
        assert!(log.admit(&mut next, "x", &hits).is_some());
    }

    #[test]
    fn the_rate_allows_a_burst_of_twice_the_lines_per_second() {
        let hits = LimitHits::default();
        let log = log(100, u64::MAX, 3);
        let admitted = (0..20)
            .filter(|_| log.admit(&mut 0, "line", &hits).is_some())
            .count();
        // Six at once, perhaps one more refilled while the loop ran.
        assert!((6..=7).contains(&admitted), "admitted {admitted}");
        assert_eq!(hits.snapshot().log_lines_dropped, 20 - admitted as u64);
    }
}
