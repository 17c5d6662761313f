//! KEDA's Kafka scaler through the HPA, as both document their defaults: the
//! baseline Pixelpipe is judged against.
//!
//! - The metric is the total lag over the partitions. KEDA's metrics server
//!   asks the scaler on every HPA sync (`useCachedMetrics: false`, the
//!   default), so the HPA sees a fresh lag every 15 s; with
//!   `useCachedMetrics: true` it sees the value of the last polling, every
//!   `pollingInterval` (30 s).
//! - The target is `AverageValue = lagThreshold`: desired =
//!   ceil(lag / threshold), unchanged when within 10 % of the current count
//!   (the HPA's tolerance), capped at the partitions (`allowIdleConsumers:
//!   false`), at least 1 (`minReplicaCount: 1`; 0 would add a cold start).
//! - Scale-up: no stabilization, at most max(+100 %, +4 pods) per 15 s.
//! - Scale-down: the highest recommendation of the last 300 s, at most
//!   -100 % per 15 s.

use std::collections::VecDeque;

/// Seconds between HPA syncs.
pub const SYNC: usize = 15;
/// KEDA's `pollingInterval`: how often a cached metric is refreshed.
pub const POLLING: usize = 30;
/// The HPA's scale-down stabilization window, seconds.
const DOWN_WINDOW: usize = 300;
/// The HPA's tolerance around the target ratio.
const TOLERANCE: f64 = 0.1;

/// One HPA driven by KEDA's Kafka scaler.
#[derive(Debug, Clone)]
pub struct Hpa {
    pub threshold: f64,
    /// `useCachedMetrics: true`.
    pub cached: bool,
    metric: f64,
    recommendations: VecDeque<(usize, i32)>,
}

impl Hpa {
    pub fn new(threshold: f64, cached: bool) -> Self {
        Self {
            threshold,
            cached,
            metric: 0.0,
            recommendations: VecDeque::new(),
        }
    }

    /// Called every second with the lag now; returns the replica count at a
    /// sync, `None` between syncs.
    pub fn tick(&mut self, t: usize, lag: f64, current: i32, ceiling: i32) -> Option<i32> {
        if !self.cached || t.is_multiple_of(POLLING) {
            self.metric = lag;
        }
        t.is_multiple_of(SYNC)
            .then(|| self.sync(t, current, ceiling))
    }

    /// One HPA sync.
    pub fn sync(&mut self, t: usize, current: i32, ceiling: i32) -> i32 {
        let current = current.max(1);
        let ratio = self.metric / (f64::from(current) * self.threshold);
        let raw = if (ratio - 1.0).abs() <= TOLERANCE {
            current
        } else {
            (self.metric / self.threshold).ceil() as i32
        }
        .clamp(1, ceiling);
        self.recommendations.push_back((t, raw));
        while self
            .recommendations
            .front()
            .is_some_and(|&(s, _)| t - s > DOWN_WINDOW)
        {
            self.recommendations.pop_front();
        }
        let stabilized = self
            .recommendations
            .iter()
            .map(|&(_, n)| n)
            .max()
            .unwrap_or(raw);
        if raw > current {
            raw.min((current * 2).max(current + 4)).min(ceiling)
        } else {
            stabilized.min(current)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_step_limits_window_and_floor() {
        let mut hpa = Hpa::new(1_000.0, false);
        hpa.metric = 10_500.0;
        assert_eq!(hpa.sync(0, 10, 96), 10, "within 10 %: no change");
        hpa.metric = 100_000.0;
        assert_eq!(hpa.sync(15, 10, 96), 20, "+100 % at most");
        assert_eq!(hpa.sync(30, 2, 96), 6, "or +4 pods");
        assert_eq!(hpa.sync(45, 20, 24), 24, "capped at the partitions");
        hpa.metric = 1_000.0;
        assert_eq!(
            hpa.sync(60, 24, 24),
            24,
            "a high recommendation 15 s ago holds"
        );
        for t in (75..=360).step_by(15) {
            hpa.sync(t, 24, 24);
        }
        assert_eq!(
            hpa.sync(375, 24, 24),
            1,
            "the window passed: down to the lag's count"
        );
        hpa.metric = 0.0;
        assert_eq!(hpa.sync(390, 1, 24), 1, "never below one");
    }

    #[test]
    fn a_fresh_metric_every_sync_and_a_cached_one_every_poll() {
        let mut fresh = Hpa::new(1_000.0, false);
        let mut cached = Hpa::new(1_000.0, true);
        fresh.tick(0, 0.0, 1, 24);
        cached.tick(0, 0.0, 1, 24);
        // The lag jumps at 10 s: the next sync (15 s) sees it fresh; the
        // cached metric waits for the poll at 30 s.
        assert_eq!(fresh.tick(15, 8_000.0, 1, 24), Some(5));
        assert_eq!(cached.tick(15, 8_000.0, 1, 24), Some(1));
        assert_eq!(cached.tick(30, 8_000.0, 1, 24), Some(5));
        assert_eq!(fresh.tick(16, 8_000.0, 5, 24), None, "between syncs");
    }
}
