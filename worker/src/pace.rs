//! An intake rate limit: at most N events per second enter the pipeline.
//!
//! Two uses: protecting a partner that enforces a rate limit, and giving a
//! worker process on a shared machine the capacity a CPU-limited pod would
//! have (the local demo runs several workers on two cores, where each would
//! otherwise take all the CPU it can get).

use std::time::Duration;

use tokio::time::Instant;

/// Spaces batches so the long-run rate stays at or under `per_second`, with at
/// most `burst` of unused time saved up from idle periods.
#[derive(Debug, Clone)]
pub struct Pacer {
    per_second: f64,
    burst: Duration,
    /// When the capacity used so far is paid off.
    free_at: Option<Instant>,
}

impl Pacer {
    /// `per_second` must be positive; a burst of a quarter second smooths
    /// batch-sized steps without letting an idle worker race ahead.
    pub fn new(per_second: f64) -> Self {
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst: Duration::from_millis(250),
            free_at: None,
        }
    }

    /// How long to wait at `now` before `events` more may enter.
    pub fn delay(&mut self, now: Instant, events: usize) -> Duration {
        let earliest = now.checked_sub(self.burst).unwrap_or(now);
        let start = self.free_at.map_or(earliest, |f| f.max(earliest));
        let cost = Duration::from_secs_f64(events as f64 / self.per_second);
        let paid = start + cost;
        self.free_at = Some(paid);
        paid.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_stream_is_held_to_the_rate() {
        let mut p = Pacer::new(1_000.0);
        let t0 = Instant::now();
        let mut now = t0;
        for _ in 0..100 {
            // Batches of 100 arrive as fast as they can; each waits its turn.
            now += p.delay(now, 100);
        }
        // 10,000 events at 1,000/s: 10 s, less the burst credit of the start.
        let took = now - t0;
        assert!(
            took >= Duration::from_millis(9_700) && took <= Duration::from_millis(10_000),
            "{took:?}"
        );
    }

    #[test]
    fn idle_time_is_saved_only_up_to_the_burst() {
        let mut p = Pacer::new(1_000.0);
        let t0 = Instant::now();
        assert_eq!(p.delay(t0, 100), Duration::ZERO);
        // A minute idle earns 250 ms, not 60 s: 250 events pass at once,
        // the next 100 wait 100 ms.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(p.delay(later, 250), Duration::ZERO);
        let wait = p.delay(later, 100);
        assert!(
            wait >= Duration::from_millis(99) && wait <= Duration::from_millis(101),
            "{wait:?}"
        );
    }
}
