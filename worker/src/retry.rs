//! When a partner or dead-letter output the broker refused is sent again, and
//! when the worker gives up on it.
//!
//! librdkafka already retries inside `message.timeout.ms`; this bound is on top
//! of it, for failures that outlast that window: a partner topic that does not
//! exist yet, a broker that stays down. While an output waits here its job
//! holds its in-flight slot, so the source stops reading (backpressure) instead
//! of buffering; when the attempts run out the worker stops without committing,
//! and the input is read again after the restart.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Past this many doublings every wait is the cap.
const MAX_DOUBLINGS: usize = 64;

/// Attempts and backoff for one output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Sends of one output, the first included.
    pub max_attempts: u32,
    pub first_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    /// About ten minutes of retries for a missing topic, where each attempt
    /// waits out librdkafka's 30 s metadata propagation window.
    fn default() -> Self {
        Self {
            max_attempts: 12,
            first_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before sending again after `failed` attempts, or `None` when
    /// the output has had all its attempts.
    pub fn backoff(&self, failed: u32) -> Option<Duration> {
        if failed == 0 || failed >= self.max_attempts {
            return None;
        }
        let doublings = usize::try_from(failed - 1).unwrap_or(usize::MAX);
        ExponentialBuilder::default()
            .with_min_delay(self.first_backoff)
            .with_max_delay(self.max_backoff)
            .without_max_times()
            .build()
            .nth(doublings.min(MAX_DOUBLINGS))
    }
}

/// Whether sending the same record again can succeed. A record the broker
/// refuses for what it is (too large, malformed) fails the same way every time.
pub fn retriable(err: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    match err.rdkafka_error_code() {
        Some(
            C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::InvalidTopic
            | C::UnsupportedForMessageFormat
            | C::InvalidArgument
            | C::Fatal,
        ) => false,
        Some(_) => true,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stops_after_the_last_attempt() {
        let p = RetryPolicy {
            max_attempts: 5,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        // Whole milliseconds: backon doubles in floating point.
        let waits: Vec<_> = (0..=5)
            .map(|n| p.backoff(n).map(|d| d.as_millis()))
            .collect();
        assert_eq!(
            waits,
            vec![None, Some(100), Some(200), Some(300), Some(300), None]
        );
    }

    #[test]
    fn a_huge_attempt_count_neither_overflows_nor_retries() {
        let p = RetryPolicy {
            max_attempts: u32::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(p.backoff(1_000), Some(p.max_backoff));
        assert_eq!(p.backoff(u32::MAX), None);
    }

    #[test]
    fn missing_topics_and_timeouts_are_retried_oversized_records_are_not() {
        let e = |c| KafkaError::MessageProduction(c);
        assert!(retriable(&e(RDKafkaErrorCode::UnknownTopic)));
        assert!(retriable(&e(RDKafkaErrorCode::UnknownTopicOrPartition)));
        assert!(retriable(&e(RDKafkaErrorCode::MessageTimedOut)));
        assert!(retriable(&e(RDKafkaErrorCode::AllBrokersDown)));
        assert!(!retriable(&e(RDKafkaErrorCode::MessageSizeTooLarge)));
        assert!(!retriable(&e(RDKafkaErrorCode::InvalidRecord)));
    }
}
