//! The autoscaling policy: from what the lag observer saw, decide the replica
//! count and the pool level so the oldest unprocessed event stays under the SLO
//! with margin, at the lowest cost. Pure: the operator and the simulator run
//! this same code, the simulator on simulated time.
//!
//! - Required rate = arrivals + backlog / the time left before the oldest event
//!   reaches `target_fraction` of the SLO.
//! - Capacity per replica is learned from what was processed while a backlog
//!   existed (the workers were saturated), never while a rebalance settles.
//! - Pools grow to their maximum before replicas (instant, no rebalance); then
//!   the fewest replicas whose capacity covers the required rate with
//!   headroom, counting that a replica with more partitions than another is
//!   the bottleneck (so counts that divide the partitions evenly are preferred),
//!   never more than the partitions.
//! - Scale up at once; scale down only to the highest recommendation of the
//!   stabilization window, and never while a change is still settling.

mod reason;

use std::collections::VecDeque;

pub use reason::{Reason, Why};

/// What the observer reports each interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    /// Seconds on any monotonic clock.
    pub now: f64,
    /// Unprocessed events over all partitions.
    pub lag: f64,
    /// Age of the oldest unprocessed event, seconds (0 without lag).
    pub oldest_age: f64,
    /// Events per second arriving (log-end growth over the interval).
    pub arrival_rate: f64,
    /// Events per second processed (committed growth over the interval).
    pub processing_rate: f64,
}

/// The bounds the spec sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// Input partitions: more replicas than this would idle.
    pub partitions: i32,
    pub slo_seconds: f64,
}

/// Tuning; the defaults hold across workloads (see docs/autoscaling.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Keep the oldest event under this fraction of the SLO.
    pub target_fraction: f64,
    /// Capacity to provision over the required rate.
    pub headroom: f64,
    /// Seconds a lower recommendation must persist before scaling down.
    pub scale_down_window: f64,
    /// Seconds a new replica takes to start, the group to rebalance and one
    /// interval to measure the result; no learning and no further non-urgent
    /// change until a change has settled.
    pub settle: f64,
    /// Seconds between observations.
    pub interval: f64,
}

/// The cooldown after a replica change: the pod starts, the group
/// rebalances, and one interval measures the result.
pub fn settle(pod_start: f64, rebalance: f64, interval: f64) -> f64 {
    pod_start + rebalance + interval
}

impl Default for Tuning {
    /// The defaults of the CRD: 10 s interval, 300 s stabilization, 60 s pod
    /// start, 15 s rebalance.
    fn default() -> Self {
        Self {
            target_fraction: 0.5,
            headroom: 1.25,
            scale_down_window: 300.0,
            settle: settle(60.0, 15.0, 10.0),
            interval: 10.0,
        }
    }
}

/// What runs now: replicas, and the pool level from 0 (every stage at
/// minWorkers) to 1 (every stage at maxWorkers).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Current {
    pub replicas: i32,
    pub pool_level: f64,
}

pub use pixelpipe_crds::SloState;

/// The policy's verdict for one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub replicas: i32,
    pub pool_level: f64,
    pub slo: SloState,
    /// Whether anything changes.
    pub changed: bool,
    /// Why, in words through its `Display`: the status's and Events' text.
    pub reason: Reason,
}

/// Extra headroom a lower replica count must have before it is recommended.
const DOWN_MARGIN: f64 = 1.2;

/// Most recommendations remembered for the stabilization window (one per
/// observation; a 3600 s window at a 1 s interval fits).
const MAX_HISTORY: usize = 4096;

/// What the policy remembers between observations.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Events/s one replica processes with pools at their maximum.
    capacity: Option<f64>,
    last_change: Option<f64>,
    recommendations: VecDeque<(f64, i32)>,
}

/// What one observation says, before deciding.
#[derive(Debug, Clone, Copy)]
struct Reading {
    slo: SloState,
    settling: bool,
    saturated: bool,
    stalled: bool,
    required: f64,
    ceiling: i32,
}

impl Policy {
    /// The learned capacity per replica, events/s.
    pub fn capacity(&self) -> Option<f64> {
        self.capacity
    }

    pub fn decide(
        &mut self,
        s: &Signals,
        current: Current,
        limits: &Limits,
        tuning: &Tuning,
    ) -> Decision {
        let r = self.read(s, current, limits, tuning);
        if current.pool_level < 1.0 && (r.saturated || r.slo != SloState::Met) {
            self.remember(s.now, current.replicas, tuning);
            return Decision {
                replicas: current.replicas,
                pool_level: 1.0,
                slo: r.slo,
                changed: true,
                reason: reason(s, limits, Why::PoolsFirst { backlog: s.lag }, false),
            };
        }
        let wanted = self.wanted(current, limits, tuning, &r);
        self.remember(s.now, wanted, tuning);
        let stabilized = self
            .recommendations
            .iter()
            .map(|&(_, n)| n)
            .max()
            .unwrap_or(wanted);
        let (replicas, why) = self.choose(s, current, limits, tuning, &r, wanted, stabilized);
        // The spec's bounds win over everything, including sizes from before they changed.
        let replicas = replicas.clamp(limits.min_replicas.max(1), r.ceiling);
        let shrink = self.shrink_pools(s, current, limits, tuning, &r, replicas, stabilized);
        let pool_level = if shrink { 0.5 } else { current.pool_level };
        if replicas != current.replicas {
            self.last_change = Some(s.now);
        }
        Decision {
            replicas,
            pool_level,
            slo: r.slo,
            changed: replicas != current.replicas || pool_level != current.pool_level,
            reason: reason(s, limits, why, shrink),
        }
    }

    /// The SLO state, whether a change settles, whether the workers ran flat
    /// out, and what rate the backlog needs; learns capacity on the way.
    fn read(&mut self, s: &Signals, current: Current, limits: &Limits, tuning: &Tuning) -> Reading {
        let ceiling = limits
            .max_replicas
            .min(limits.partitions)
            .max(limits.min_replicas)
            .max(1);
        let slo = if s.oldest_age > limits.slo_seconds {
            SloState::Breached
        } else if s.oldest_age > tuning.target_fraction * limits.slo_seconds {
            SloState::AtRisk
        } else {
            SloState::Met
        };
        let settling = self.last_change.is_some_and(|t| s.now - t < tuning.settle);
        // Behind: a backlog of more than an interval's arrivals, or arrivals
        // clearly outrunning processing with a backlog building. Either way the
        // workers ran flat out, so what they processed is their capacity.
        let saturated = s.lag > (tuning.interval * s.arrival_rate).max(1.0)
            || (s.arrival_rate > 1.2 * s.processing_rate && s.lag > 5.0 * s.arrival_rate);
        if !settling && current.replicas > 0 && s.processing_rate > 0.0 && current.pool_level >= 1.0
        {
            self.learn(s, current, limits, saturated);
        }
        let target_age = tuning.target_fraction * limits.slo_seconds;
        let time_left = (target_age - s.oldest_age).max(tuning.interval);
        Reading {
            slo,
            settling,
            saturated,
            stalled: s.lag > 0.0 && s.processing_rate <= 0.0 && !settling,
            required: s.arrival_rate + s.lag / time_left,
            ceiling,
        }
    }

    fn learn(&mut self, s: &Signals, current: Current, limits: &Limits, saturated: bool) {
        let observed = s.processing_rate / effective_replicas(current.replicas, limits.partitions);
        self.capacity = Some(match self.capacity {
            // What was processed, replicas could do: the capacity is at least that.
            Some(c) if observed >= c => observed,
            // Lower while saturated: the workers may have slowed (a slow
            // partner, a noisy neighbour); an interval only partly
            // saturated also reads low, so the estimate follows slowly.
            Some(c) if saturated => 0.7 * c + 0.3 * observed,
            Some(c) => c,
            None => observed,
        });
    }

    /// The replicas the required rate needs, before stabilization.
    fn wanted(&self, current: Current, limits: &Limits, tuning: &Tuning, r: &Reading) -> i32 {
        let wanted = match self.capacity {
            _ if r.stalled => current.replicas,
            Some(cap) if cap > 0.0 => {
                let up = needed(
                    r.required * tuning.headroom,
                    cap,
                    limits.partitions,
                    r.ceiling,
                );
                if up >= current.replicas {
                    up
                } else {
                    // Fewer replicas must also absorb the rebalance pause the
                    // change causes: more headroom down than up, so a scale-down
                    // is not undone by the backlog it creates.
                    let margin = r.required * tuning.headroom * DOWN_MARGIN;
                    needed(margin, cap, limits.partitions, r.ceiling).min(current.replicas)
                }
            }
            // Capacity unknown yet: grow while a backlog builds.
            _ if r.saturated => (current.replicas * 2).min(r.ceiling),
            _ => current.replicas,
        }
        .clamp(limits.min_replicas.max(1), r.ceiling);
        // Keeping up with the SLO met: the learned capacity may be only a lower
        // bound, so it justifies scaling down but never up.
        if r.saturated || r.slo != SloState::Met {
            wanted
        } else {
            wanted.min(current.replicas)
        }
    }

    /// The replica count and the rule that chose it.
    #[allow(clippy::too_many_arguments)]
    fn choose(
        &self,
        s: &Signals,
        current: Current,
        limits: &Limits,
        tuning: &Tuning,
        r: &Reading,
        wanted: i32,
        stabilized: i32,
    ) -> (i32, Why) {
        let capacity = self
            .capacity
            .map(|c| c * effective_replicas(current.replicas, limits.partitions));
        let urgent = r.slo != SloState::Met;
        if r.stalled {
            (current.replicas, Why::Stalled)
        } else if wanted > current.replicas
            && (!r.settling || urgent || wanted > current.replicas * 3 / 2)
        {
            let why = Why::Above {
                arrivals: s.arrival_rate,
                required: r.required,
                headroom: tuning.headroom,
                capacity,
            };
            (wanted, why)
        } else if stabilized < current.replicas && !r.settling && !r.saturated {
            let why = Why::WellBelow {
                required: r.required,
                capacity,
                window: tuning.scale_down_window,
            };
            (stabilized, why)
        } else {
            let why = Why::Within {
                arrivals: s.arrival_rate,
                capacity,
            };
            (current.replicas, why)
        }
    }

    /// Pools shrink only at the fewest replicas and light load, after a quiet window.
    #[allow(clippy::too_many_arguments)]
    fn shrink_pools(
        &self,
        s: &Signals,
        current: Current,
        limits: &Limits,
        tuning: &Tuning,
        r: &Reading,
        replicas: i32,
        stabilized: i32,
    ) -> bool {
        let light = self.capacity.is_some_and(|c| {
            r.required * tuning.headroom < 0.5 * c * effective_replicas(replicas, limits.partitions)
        });
        replicas == limits.min_replicas.max(1)
            && replicas == current.replicas
            && stabilized <= replicas
            && !r.saturated
            && !r.settling
            && light
            && current.pool_level >= 1.0
            && self.quiet_for(s.now, tuning.scale_down_window)
    }

    fn remember(&mut self, now: f64, n: i32, tuning: &Tuning) {
        self.recommendations.push_back((now, n));
        while self
            .recommendations
            .front()
            .is_some_and(|&(t, _)| now - t > tuning.scale_down_window)
            || self.recommendations.len() > MAX_HISTORY
        {
            self.recommendations.pop_front();
        }
    }

    fn quiet_for(&self, now: f64, window: f64) -> bool {
        self.last_change.is_none_or(|t| now - t >= window)
    }
}

fn reason(s: &Signals, limits: &Limits, why: Why, smaller_pools: bool) -> Reason {
    Reason {
        oldest_age: s.oldest_age,
        slo_seconds: limits.slo_seconds,
        why,
        smaller_pools,
    }
}

/// Replicas' worth of throughput `n` replicas give over `partitions` evenly
/// loaded partitions: the replica with the most partitions is the bottleneck.
pub fn effective_replicas(n: i32, partitions: i32) -> f64 {
    let n = n.max(1);
    let p = partitions.max(1);
    if n >= p {
        return f64::from(p);
    }
    let busiest = (p + n - 1) / n;
    f64::from(p) / f64::from(busiest)
}

/// The fewest replicas within `ceiling` whose capacity covers `rate`.
fn needed(rate: f64, per_replica: f64, partitions: i32, ceiling: i32) -> i32 {
    (1..=ceiling)
        .find(|&n| effective_replicas(n, partitions) * per_replica >= rate)
        .unwrap_or(ceiling)
}

/// 31400 -> "31.4k".
pub fn count(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1}M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.0}k", x / 1e3)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        min_replicas: 1,
        max_replicas: 48,
        partitions: 24,
        slo_seconds: 300.0,
    };

    fn signals(now: f64, lag: f64, age: f64, arrivals: f64, processed: f64) -> Signals {
        Signals {
            now,
            lag,
            oldest_age: age,
            arrival_rate: arrivals,
            processing_rate: processed,
        }
    }

    /// Drives the policy like the operator does, applying each decision.
    fn run(
        policy: &mut Policy,
        start: Current,
        obs: impl IntoIterator<Item = Signals>,
    ) -> Vec<Decision> {
        let mut current = start;
        obs.into_iter()
            .map(|s| {
                let d = policy.decide(&s, current, &LIMITS, &Tuning::default());
                current = Current {
                    replicas: d.replicas,
                    pool_level: d.pool_level,
                };
                d
            })
            .collect()
    }

    #[test]
    fn even_spreads_are_preferred() {
        assert_eq!(effective_replicas(4, 24), 4.0);
        assert_eq!(effective_replicas(5, 24), 24.0 / 5.0);
        assert_eq!(effective_replicas(7, 24), 6.0, "7 replicas work like 6");
        assert_eq!(effective_replicas(30, 24), 24.0);
        // 5.5 replicas' worth: 6 serves it, and 7 is never chosen over 6.
        assert_eq!(needed(5.5, 1.0, 24, 48), 6);
        assert_eq!(needed(6.5, 1.0, 24, 48), 8);
    }

    #[test]
    fn noisy_steady_load_does_not_flap() {
        let mut p = Policy::default();
        let obs = (0..360).map(|i| {
            // ±15 % noise around 40k/s, capacity 10k/s per replica at 4 replicas... learned at 6.
            let noise = [1.0, 1.15, 0.9, 1.05, 0.85, 1.1][i % 6];
            let rate = 40_000.0 * noise;
            signals(f64::from(i as u32) * 10.0, rate * 2.0, 2.0, rate, rate)
        });
        let decisions = run(
            &mut p,
            Current {
                replicas: 6,
                pool_level: 1.0,
            },
            obs,
        );
        let changes = decisions.iter().filter(|d| d.changed).count();
        assert!(
            changes <= 1,
            "{changes} changes under steady load: {:?}",
            decisions
                .iter()
                .filter(|d| d.changed)
                .map(|d| &d.reason)
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_backlog_grows_pools_first_then_replicas() {
        let mut p = Policy::default();
        let cur = Current {
            replicas: 2,
            pool_level: 0.5,
        };
        let d = p.decide(
            &signals(0.0, 600_000.0, 60.0, 10_000.0, 8_000.0),
            cur,
            &LIMITS,
            &Tuning::default(),
        );
        assert_eq!((d.replicas, d.pool_level), (2, 1.0), "{}", d.reason);
        assert!(
            d.reason.to_string().contains("pools to their maximum"),
            "{}",
            d.reason
        );
        // At full pools, 2 replicas process 9k/s: the backlog needs more.
        let cur = Current {
            replicas: 2,
            pool_level: 1.0,
        };
        let d = p.decide(
            &signals(10.0, 610_000.0, 70.0, 10_000.0, 9_000.0),
            cur,
            &LIMITS,
            &Tuning::default(),
        );
        // required = 10k + 610k / (150 - 70) = 17.6k/s, x1.25 = 22k/s, at 4.5k/s per replica -> 6.
        assert_eq!(d.replicas, 6, "{}", d.reason);
        assert!(
            d.reason.to_string().contains("above capacity 9.0k/s"),
            "{}",
            d.reason
        );
        assert_eq!(d.slo, SloState::Met);
    }

    #[test]
    fn replicas_respect_bounds_and_partitions() {
        let limits = Limits {
            max_replicas: 100,
            partitions: 12,
            ..LIMITS
        };
        let mut p = Policy::default();
        let cur = Current {
            replicas: 4,
            pool_level: 1.0,
        };
        let d = p.decide(
            &signals(0.0, 5e6, 200.0, 50_000.0, 4_000.0),
            cur,
            &limits,
            &Tuning::default(),
        );
        assert_eq!(d.replicas, 12, "capped at the partitions");
        assert_eq!(d.slo, SloState::AtRisk);
        let limits = Limits {
            max_replicas: 3,
            ..LIMITS
        };
        let mut p = Policy::default();
        let d = p.decide(
            &signals(0.0, 5e6, 400.0, 50_000.0, 4_000.0),
            cur,
            &limits,
            &Tuning::default(),
        );
        assert_eq!(
            d.replicas, 3,
            "capped at max, even scaling down from above it"
        );
        assert_eq!(d.slo, SloState::Breached);
        let limits = Limits {
            min_replicas: 3,
            ..LIMITS
        };
        let mut p = Policy::default();
        let cur = Current {
            replicas: 3,
            pool_level: 1.0,
        };
        for i in 0..100 {
            let d = p.decide(
                &signals(f64::from(i) * 10.0, 0.0, 0.0, 10.0, 10.0),
                cur,
                &limits,
                &Tuning::default(),
            );
            assert!(d.replicas >= 3);
        }
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window() {
        let mut p = Policy::default();
        let mut cur = Current {
            replicas: 8,
            pool_level: 1.0,
        };
        // Learn 5k/s per replica under a backlog, then the load drops to 5k/s.
        p.decide(
            &signals(0.0, 400_000.0, 30.0, 40_000.0, 40_000.0),
            cur,
            &LIMITS,
            &Tuning::default(),
        );
        let mut first_down = None;
        for i in 1..60 {
            let t = f64::from(i) * 10.0;
            let d = p.decide(
                &signals(t, 1_000.0, 0.5, 5_000.0, 5_000.0),
                cur,
                &LIMITS,
                &Tuning::default(),
            );
            if d.replicas < cur.replicas && first_down.is_none() {
                first_down = Some(t);
            }
            cur = Current {
                replicas: d.replicas,
                pool_level: d.pool_level,
            };
        }
        let t = first_down.expect("it scales down eventually");
        assert!(
            t >= 300.0,
            "scaled down after {t} s, inside the 300 s window"
        );
        assert_eq!(cur.replicas, 2, "5k/s x 1.25 needs 2 replicas of 5k/s");
    }

    #[test]
    fn a_stall_holds_sizes_and_says_so() {
        let mut p = Policy::default();
        let cur = Current {
            replicas: 4,
            pool_level: 1.0,
        };
        p.decide(
            &signals(0.0, 1_000.0, 1.0, 10_000.0, 10_000.0),
            cur,
            &LIMITS,
            &Tuning::default(),
        );
        let d = p.decide(
            &signals(100.0, 900_000.0, 90.0, 10_000.0, 0.0),
            cur,
            &LIMITS,
            &Tuning::default(),
        );
        assert_eq!(d.replicas, 4);
        assert!(d.reason.to_string().contains("stalled"), "{}", d.reason);
        assert_eq!(
            p.capacity(),
            Some(2_500.0),
            "a stall teaches nothing about capacity"
        );
    }

    #[test]
    fn reasons_read_as_sentences() {
        let mut p = Policy::default();
        let cur = Current {
            replicas: 2,
            pool_level: 1.0,
        };
        p.decide(
            &signals(0.0, 500_000.0, 60.0, 24_000.0, 24_000.0),
            cur,
            &LIMITS,
            &Tuning::default(),
        );
        let d = p.decide(
            &signals(100.0, 3_000_000.0, 212.0, 31_000.0, 24_000.0),
            cur,
            &LIMITS,
            &Tuning::default(),
        );
        assert!(
            d.reason
                .to_string()
                .starts_with("oldest event 212 s of 300 s SLO, arrivals 31k/s"),
            "{}",
            d.reason
        );
        assert!(
            d.reason.to_string().contains("above capacity 24k/s"),
            "{}",
            d.reason
        );
        assert!(d.replicas > 2);
    }
}
