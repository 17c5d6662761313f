//! What the runner changes: which pods start and stop for a Deployment, and
//! how long a crashing pod waits before it starts again.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::time::Instant;

/// What to change so `want` pods of template `hash` run: pods of another
/// template all go (a replace-all rollout: the workers commit on SIGTERM and
/// the group rebalances once), surplus pods go newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub start: usize,
    /// Indexes into the pods given, to stop.
    pub stop: Vec<usize>,
}

pub fn plan(want: usize, hash: &str, pods: &[&str]) -> Plan {
    let mut stop: Vec<usize> = (0..pods.len()).filter(|&i| pods[i] != hash).collect();
    let current: Vec<usize> = (0..pods.len()).filter(|&i| pods[i] == hash).collect();
    if current.len() > want {
        stop.extend(current[want..].iter().rev());
    }
    Plan {
        start: want.saturating_sub(current.len()),
        stop,
    }
}

/// Restart backoff after a pod exits on its own: 1 s doubling to 30 s, reset
/// by a pod that lived a minute (kubelet's CrashLoopBackOff, shortened).
#[derive(Debug, Clone, Default)]
pub(super) struct Backoff {
    failures: u32,
    pub(super) until: Option<Instant>,
}

impl Backoff {
    pub(super) fn exited(&mut self, lived: Duration, now: Instant) {
        self.failures = if lived > Duration::from_secs(60) {
            1
        } else {
            (self.failures + 1).min(6)
        };
        let max = Duration::from_secs(30);
        let delay = ExponentialBuilder::default()
            .with_min_delay(Duration::from_secs(1))
            .with_max_delay(max)
            .without_max_times()
            .build()
            .nth(self.failures as usize - 1)
            .unwrap_or(max);
        self.until = Some(now + delay);
    }

    pub(super) fn waiting(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| now < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_scale_up_down_and_roll() {
        assert_eq!(
            plan(3, "a", &["a"]),
            Plan {
                start: 2,
                stop: vec![]
            }
        );
        // Surplus goes newest first.
        assert_eq!(
            plan(1, "a", &["a", "a", "a"]),
            Plan {
                start: 0,
                stop: vec![2, 1]
            }
        );
        // A new template replaces every old pod.
        assert_eq!(
            plan(2, "b", &["a", "a"]),
            Plan {
                start: 2,
                stop: vec![0, 1]
            }
        );
        assert_eq!(
            plan(0, "a", &["a"]),
            Plan {
                start: 0,
                stop: vec![0]
            }
        );
    }

    #[test]
    fn backoff_doubles_to_thirty_seconds_and_resets_after_a_long_life() {
        let now = Instant::now();
        let mut b = Backoff::default();
        let mut delays = Vec::new();
        for _ in 0..8 {
            b.exited(Duration::from_secs(1), now);
            delays.push((b.until.expect("set") - now).as_secs());
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        b.exited(Duration::from_secs(120), now);
        assert_eq!((b.until.expect("set") - now).as_secs(), 1);
    }
}
