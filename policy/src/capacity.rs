//! Capacity per replica, measured: the Ready pods' true processing rate
//! (events per second divided by how busy their bottleneck was), followed
//! continuously, not only while the pipeline is behind, and smoothed so one
//! noisy interval does not move it far. Except for delivery: the CPU a pod
//! has does not change from one minute to the next, but a partner topic or
//! the brokers can slow down at any moment, and pods saturated waiting on
//! them show their capacity directly; that is followed within an interval
//! or two.

use crate::observation::{Bottleneck, Evidence};

/// Seconds over which a change in capacity is followed (exponential).
const TIME_CONSTANT: f64 = 60.0;
/// The least fraction of it for pods saturated on delivery.
const SATURATED: f64 = 0.1;

/// The estimate and when it was last fed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Capacity {
    estimate: Option<f64>,
    at: f64,
}

impl Capacity {
    /// Events per second one replica processes with its bottleneck busy.
    pub fn per_replica(&self) -> Option<f64> {
        self.estimate
    }

    /// Feeds one observation's evidence, if it says anything.
    pub fn observe(&mut self, now: f64, evidence: Option<&Evidence>) {
        let Some((e, sample)) = evidence.and_then(|e| Some((e, e.true_rate()?))) else {
            return;
        };
        self.estimate = Some(match self.estimate {
            None => sample,
            Some(c) => {
                let dt = (now - self.at).max(0.0);
                let tau = match e.bottleneck {
                    Bottleneck::Delivery => TIME_CONSTANT * (1.0 - e.utilization).max(SATURATED),
                    _ => TIME_CONSTANT,
                };
                let weight = 1.0 - (-dt / tau).exp();
                c + weight * (sample - c)
            }
        });
        self.at = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::{Bottleneck, StageLoad};
    use pixelpipe_crds::PerStage;

    fn evidence(rate: f64, utilization: f64) -> Evidence {
        on(Bottleneck::Cpu, rate, utilization)
    }

    fn on(bottleneck: Bottleneck, rate: f64, utilization: f64) -> Evidence {
        Evidence {
            pods: 2,
            events_per_second: rate,
            utilization,
            bottleneck,
            stages: PerStage::splat(StageLoad::default()),
            cores: 2.0,
        }
    }

    #[test]
    fn the_true_rate_is_the_rate_over_the_busy_fraction() {
        let mut c = Capacity::default();
        c.observe(0.0, Some(&evidence(2_000.0, 0.4)));
        assert_eq!(c.per_replica(), Some(5_000.0));
    }

    #[test]
    fn idle_intervals_teach_nothing_and_changes_are_followed_smoothly() {
        let mut c = Capacity::default();
        c.observe(0.0, Some(&evidence(2_000.0, 0.4)));
        c.observe(10.0, Some(&evidence(10.0, 0.001)));
        c.observe(20.0, None);
        assert_eq!(c.per_replica(), Some(5_000.0));
        // The capacity halves: within a minute or two the estimate follows.
        let mut t = 20.0;
        for _ in 0..6 {
            t += 10.0;
            c.observe(t, Some(&evidence(2_500.0, 1.0)));
        }
        let after_a_minute = c.per_replica().expect("known");
        assert!(
            after_a_minute < 3_500.0 && after_a_minute > 2_500.0,
            "{after_a_minute}"
        );
        // A partner slows down: pods saturated waiting on it show the new
        // capacity, followed within two intervals.
        for _ in 0..2 {
            t += 10.0;
            c.observe(t, Some(&on(Bottleneck::Delivery, 500.0, 1.0)));
        }
        assert!((c.per_replica().expect("known") - 500.0).abs() < 100.0);
    }
}
