//! The workqueue's settings (`queue:` in the controllers file) and their validation.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How a [`Workqueue`](super::Workqueue) retries failed keys: client-go's
/// `DefaultControllerRateLimiter`, the slower of a per-key exponential backoff
/// and an overall token bucket.
///
/// In the controllers file it is the `queue:` map of an entry; every field may
/// be left out, and an empty map gives client-go's defaults:
///
/// ```yaml
/// queue:
///   baseDelayMs: 5        # first retry after 5 ms, doubling per failure
///   maxDelayMs: 1000000   # ... up to 1000 s
///   qps: 10               # overall: 10 retries per second
///   burst: 100            # ... after a burst of 100
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct QueueConfig {
    /// The backoff after a key's first failure; it doubles with each further
    /// consecutive failure. Default: 5 ms. Serde form: `baseDelayMs`.
    #[serde(rename = "baseDelayMs", with = "millis")]
    #[schemars(with = "u64")]
    pub base_delay: Duration,
    /// The longest per-key backoff. Default: 1000 s. Serde form: `maxDelayMs`.
    #[serde(rename = "maxDelayMs", with = "millis")]
    #[schemars(with = "u64")]
    pub max_delay: Duration,
    /// The overall rate of rate-limited adds, in keys per second, once the
    /// burst is spent. Default: 10.
    pub qps: f64,
    /// How many rate-limited adds may go through at once before `qps`
    /// applies. Default: 100.
    pub burst: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(1000),
            qps: 10.0,
            burst: 100,
        }
    }
}

impl QueueConfig {
    /// Sets the backoff after a key's first failure. Default: 5 ms.
    #[must_use]
    pub fn base_delay(mut self, base_delay: Duration) -> Self {
        self.base_delay = base_delay;
        self
    }

    /// Sets the longest per-key backoff. Default: 1000 s.
    #[must_use]
    pub fn max_delay(mut self, max_delay: Duration) -> Self {
        self.max_delay = max_delay;
        self
    }

    /// Sets the overall rate of rate-limited adds per second. Default: 10.
    #[must_use]
    pub fn qps(mut self, qps: f64) -> Self {
        self.qps = qps;
        self
    }

    /// Sets how many rate-limited adds may go through at once. Default: 100.
    #[must_use]
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Checks the settings: `qps` is a finite number above 0, `burst` is at
    /// least 1, and `baseDelayMs` does not exceed `maxDelayMs`.
    ///
    /// # Errors
    ///
    /// The first rule broken, as a [`QueueConfigError`] that names the field.
    pub fn validate(&self) -> Result<(), QueueConfigError> {
        if !(self.qps.is_finite() && self.qps > 0.0) {
            return Err(QueueConfigError::Qps { qps: self.qps });
        }
        if self.burst == 0 {
            return Err(QueueConfigError::Burst);
        }
        if self.base_delay > self.max_delay {
            return Err(QueueConfigError::BaseDelayAboveMax {
                base_delay: self.base_delay,
                max_delay: self.max_delay,
            });
        }
        Ok(())
    }
}

/// A [`QueueConfig`] that cannot work; each variant names the field to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueConfigError {
    /// `qps` is zero, negative, infinite or not a number.
    #[error("qps must be a number greater than 0, got {qps}; the default is 10")]
    Qps {
        /// The rejected value.
        qps: f64,
    },
    /// `burst` is 0, which would refuse every rate-limited add.
    #[error("burst must be at least 1, got 0; the default is 100")]
    Burst,
    /// `baseDelayMs` is larger than `maxDelayMs`.
    #[error(
        "baseDelayMs ({} ms) must not exceed maxDelayMs ({} ms); raise maxDelayMs or lower baseDelayMs",
        base_delay.as_millis(),
        max_delay.as_millis()
    )]
    BaseDelayAboveMax {
        /// The rejected base delay.
        base_delay: Duration,
        /// The maximum it exceeds.
        max_delay: Duration,
    },
}

impl QueueConfigError {
    /// The offending field, as spelled in the controllers file (`qps`,
    /// `burst`, `baseDelayMs`).
    pub fn field(&self) -> &'static str {
        match self {
            Self::Qps { .. } => "qps",
            Self::Burst => "burst",
            Self::BaseDelayAboveMax { .. } => "baseDelayMs",
        }
    }
}

/// Serde form of a [`Duration`] as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        duration: &Duration,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let millis = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        serializer.serialize_u64(millis)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{QueueConfig, QueueConfigError};

    #[test]
    fn defaults_are_client_gos() {
        let config = QueueConfig::default();
        assert_eq!(config.base_delay, Duration::from_millis(5));
        assert_eq!(config.max_delay, Duration::from_secs(1000));
        assert!((config.qps - 10.0).abs() < f64::EPSILON);
        assert_eq!(config.burst, 100);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn an_empty_map_gives_the_defaults() -> Result<(), serde_json::Error> {
        let config: QueueConfig = serde_json::from_str("{}")?;
        assert_eq!(config, QueueConfig::default());
        Ok(())
    }

    #[test]
    fn fields_are_camel_case_and_durations_in_milliseconds() -> Result<(), serde_json::Error> {
        let config: QueueConfig = serde_json::from_str(
            r#"{"baseDelayMs": 50, "maxDelayMs": 60000, "qps": 2.5, "burst": 7}"#,
        )?;
        let expected = QueueConfig::default()
            .base_delay(Duration::from_millis(50))
            .max_delay(Duration::from_secs(60))
            .qps(2.5)
            .burst(7);
        assert_eq!(config, expected);
        // Only some fields: the others keep their defaults.
        let config: QueueConfig = serde_json::from_str(r#"{"qps": 3}"#)?;
        assert_eq!(config, QueueConfig::default().qps(3.0));
        Ok(())
    }

    #[test]
    fn serialises_to_the_same_form() -> Result<(), serde_json::Error> {
        let json = serde_json::to_value(QueueConfig::default())?;
        assert_eq!(
            json,
            serde_json::json!({"baseDelayMs": 5, "maxDelayMs": 1_000_000, "qps": 10.0, "burst": 100})
        );
        assert_eq!(
            serde_json::from_value::<QueueConfig>(json)?,
            QueueConfig::default()
        );
        Ok(())
    }

    #[test]
    fn unknown_and_snake_case_fields_are_refused() {
        for text in [
            r#"{"qpss": 3}"#,
            r#"{"base_delay_ms": 3}"#,
            r#"{"baseDelay": 3}"#,
        ] {
            let error = serde_json::from_str::<QueueConfig>(text)
                .err()
                .map(|error| error.to_string());
            assert!(
                error
                    .as_deref()
                    .is_some_and(|e| e.contains("unknown field")),
                "{text}: {error:?}"
            );
        }
    }

    #[test]
    fn invalid_qps_is_refused_naming_the_field() {
        for qps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let error = QueueConfig::default().qps(qps).validate().err();
            assert!(
                matches!(error, Some(QueueConfigError::Qps { .. })),
                "{qps}: {error:?}"
            );
            assert_eq!(error.as_ref().map(QueueConfigError::field), Some("qps"));
            assert!(error.is_some_and(|e| e.to_string().starts_with("qps must be")));
        }
        assert_eq!(QueueConfig::default().qps(0.001).validate(), Ok(()));
    }

    #[test]
    fn zero_burst_is_refused_naming_the_field() {
        let error = QueueConfig::default().burst(0).validate();
        assert_eq!(error, Err(QueueConfigError::Burst));
        assert_eq!(error.err().map(|e| e.field()), Some("burst"));
        assert_eq!(QueueConfig::default().burst(1).validate(), Ok(()));
    }

    #[test]
    fn base_delay_above_max_is_refused_naming_both_fields() {
        let error = QueueConfig::default()
            .base_delay(Duration::from_secs(2))
            .max_delay(Duration::from_secs(1))
            .validate();
        assert_eq!(
            error,
            Err(QueueConfigError::BaseDelayAboveMax {
                base_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(1),
            })
        );
        let message = error.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("baseDelayMs (2000 ms)"), "{message}");
        assert!(message.contains("maxDelayMs (1000 ms)"), "{message}");
        // Equal is fine: a constant backoff.
        let constant = QueueConfig::default()
            .base_delay(Duration::from_secs(1))
            .max_delay(Duration::from_secs(1));
        assert_eq!(constant.validate(), Ok(()));
    }
}
