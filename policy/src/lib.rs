//! The autoscaling policy: from what Kafka and the workers show, decide the
//! replica count and each stage's pool size so the oldest unprocessed event
//! stays under the SLO, at the lowest cost. Pure: the operator and the
//! simulator run this same code, the simulator on simulated time.
//!
//! - **Capacity is measured** ([`capacity`]): each Ready pod reports how busy
//!   its bottleneck resource is; its rate divided by that fraction is what it
//!   would do flat out (Flink's "true processing rate").
//! - **Partitions are judged one by one** ([`health`]): a stuck or hot
//!   partition is reported and left out of what replicas are added for.
//! - **The slack is spent** ([`replicas`]): replicas are added only when
//!   waiting one more interval would let the oldest event pass the target once
//!   new pods could arrive (pod start plus rebalance), then just enough to
//!   carry the arrivals and drain the backlog within what is left of the SLO;
//!   removed after a stabilization window.
//! - **Pools from each stage's busy time** ([`pools`]).

pub mod capacity;
pub mod health;
mod limit;
mod observation;
pub mod pools;
pub mod reading;
mod reason;
pub mod replicas;
mod scale;

use std::collections::{BTreeSet, VecDeque};

use pixelpipe_crds::{PerStage, SloState};

pub use capacity::Capacity;
pub use health::{Health, PartitionState};
pub use observation::{Bottleneck, Evidence, Observation, PartitionView, Pods, StageLoad};
pub use reason::{Limit, Reason, Unhealthy, Why};
pub use replicas::effective_replicas;

use limit::{DeliveryCheck, Throughput};
use replicas::{Demand, Setting};

/// The bounds the spec sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub slo_seconds: f64,
    /// Each stage's (minWorkers, maxWorkers).
    pub pools: PerStage<(i32, i32)>,
}

/// Tuning; the defaults hold across the acceptance matrix
/// (docs/autoscaling.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Keep the oldest event under this fraction of the SLO.
    pub target_fraction: f64,
    /// Capacity added over the arrivals when scaling up.
    pub up_margin: f64,
    /// How far below the arrivals a smaller count may carry: a backlog that
    /// grows this slowly stays within the SLO's slack for a window.
    pub down_tolerance: f64,
    /// Seconds a lower recommendation must persist before scaling down.
    pub scale_down_window: f64,
    /// Seconds a new pod takes to start consuming.
    pub pod_start: f64,
    /// Seconds consumption pauses when the group's members change.
    pub rebalance: f64,
    /// Seconds between observations.
    pub interval: f64,
    /// Seconds without progress that make a partition stuck.
    pub stuck_after: f64,
}

impl Default for Tuning {
    /// The defaults of the CRD: 10 s interval, 300 s stabilization, 60 s pod
    /// start, 15 s rebalance.
    fn default() -> Self {
        Self {
            target_fraction: 0.5,
            up_margin: 0.05,
            down_tolerance: 0.02,
            scale_down_window: 300.0,
            pod_start: 60.0,
            rebalance: 15.0,
            interval: 10.0,
            stuck_after: 60.0,
        }
    }
}

impl Tuning {
    /// Seconds after a replica change until it can be judged.
    pub fn settle(&self) -> f64 {
        replicas::lead_time(self)
    }
}

/// What runs now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Current {
    pub replicas: i32,
    pub pools: PerStage<i32>,
}

/// The policy's verdict for one observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub replicas: i32,
    pub pools: PerStage<i32>,
    pub slo: SloState,
    /// Events per second one replica processes, measured.
    pub per_replica: Option<f64>,
    /// Partitions scaling leaves out.
    pub unhealthy: Unhealthy,
    /// What stops more replicas from helping, if anything.
    pub limit: Option<Limit>,
    /// What limits the workers, from their evidence; `None` while they are
    /// too idle to tell.
    pub bottleneck: Option<Bottleneck>,
    /// Why, in words through its `Display`.
    pub reason: Reason,
}

/// Most recommendations remembered for the stabilization window (one per
/// observation; a 3600 s window at a 1 s interval fits).
const MAX_HISTORY: usize = 4096;
/// Seconds of arrivals the slope is taken over.
const SLOPE_WINDOW: f64 = 60.0;

/// What the policy remembers between observations.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    capacity: Capacity,
    last_change: Option<f64>,
    recommendations: VecDeque<(f64, i32)>,
    arrivals: VecDeque<(f64, f64)>,
    delivery_check: Option<DeliveryCheck>,
    throughput: Throughput,
    delivery_cap: Option<(i32, f64)>,
    /// Partitions stuck, or recovering from it, left out of scaling.
    quarantined: BTreeSet<i32>,
    /// Pods seen not becoming Ready, and how many were Ready then.
    not_ready: Option<(Limit, i32)>,
}

impl Policy {
    pub fn decide(
        &mut self,
        obs: &Observation,
        current: Current,
        limits: &Limits,
        tuning: &Tuning,
    ) -> Decision {
        self.capacity.observe(obs.now, obs.evidence.as_ref());
        self.throughput.record(obs);
        let per_replica = self.capacity.per_replica();
        let target = tuning.target_fraction * limits.slo_seconds;
        let health = Health::classify(
            obs,
            per_replica,
            tuning.stuck_after,
            &self.quarantined,
            target,
        );
        self.quarantined = health.quarantined();
        let demand = self.demand(obs, &health, per_replica);
        let oldest_age = true_oldest_age(obs);
        let slo = slo_state(oldest_age, limits, tuning);
        let limit = self.limit(obs, tuning);
        let (replicas, why) = match per_replica {
            Some(c) => {
                let s = Setting {
                    current: current.replicas,
                    min: limits.min_replicas.max(1),
                    ceiling: ceiling(obs, limits),
                    partitions: partitions(obs),
                    per_replica: c,
                    target: tuning.target_fraction * limits.slo_seconds,
                    slo: limits.slo_seconds,
                };
                self.replicas(obs, &s, tuning, &demand, limit.as_ref())
            }
            // Doubling only where more pods could start.
            None if limit.is_none() => (
                self.unmeasured(obs, current, limits, &demand),
                fallback_why(obs, &demand),
            ),
            None => (current.replicas, Why::Learning),
        };
        let replicas = replicas.clamp(limits.min_replicas.max(1), ceiling(obs, limits));
        if replicas != current.replicas {
            self.last_change = Some(obs.now);
        }
        let pools = match (obs.evidence.as_ref(), per_replica) {
            (Some(e), Some(c)) => pools::size_pools(e, c, current.pools, limits.pools),
            _ => current.pools,
        };
        Decision {
            replicas,
            pools,
            slo,
            per_replica,
            unhealthy: Unhealthy {
                stuck: health.stuck,
                hot: health.hot,
                recovering: health.recovering,
            },
            // Idle pods have no bottleneck worth naming.
            bottleneck: obs
                .evidence
                .filter(|e| e.true_rate().is_some())
                .map(|e| e.bottleneck),
            limit,
            reason: Reason {
                oldest_age,
                slo_seconds: limits.slo_seconds,
                why,
            },
        }
    }

    /// Arrivals, backlog and planning age over the partitions replicas can help.
    fn demand(&mut self, obs: &Observation, health: &Health, per_replica: Option<f64>) -> Demand {
        let mut d = Demand {
            arrivals: 0.0,
            slope: 0.0,
            backlog: 0.0,
            age: 0.0,
        };
        // Events read wait for acknowledgements too when delivery is the
        // limit: then they are work still to do, not done.
        let delivery = obs.waits_on_delivery();
        for p in &obs.partitions {
            let p = &if delivery {
                PartitionView {
                    in_flight: 0.0,
                    ..*p
                }
            } else {
                *p
            };
            match health.state_of(p.partition) {
                PartitionState::Stuck => {}
                // Its arrivals take capacity; its backlog drains with the
                // replica it has.
                PartitionState::Recovering => d.arrivals += p.arrival_rate,
                PartitionState::Hot => d.arrivals += per_replica.unwrap_or(p.arrival_rate),
                PartitionState::Healthy | PartitionState::Unknown => {
                    d.arrivals += p.arrival_rate;
                    d.backlog += p.unread();
                    let rate = p.arrival_rate.max(p.progress_rate).max(1e-9);
                    let age = p.planning_age().unwrap_or(p.lag / rate);
                    d.age = d.age.max(age);
                }
            }
        }
        d.slope = self.slope(obs.now, d.arrivals);
        d
    }

    /// Events per second more each second, over the last minute; never
    /// below zero (a falling load waits for the stabilization window).
    fn slope(&mut self, now: f64, arrivals: f64) -> f64 {
        self.arrivals.push_back((now, arrivals));
        while self
            .arrivals
            .front()
            .is_some_and(|&(t, _)| now - t > SLOPE_WINDOW)
        {
            self.arrivals.pop_front();
        }
        match (self.arrivals.front(), self.arrivals.back()) {
            (Some(&(t0, a0)), Some(&(t1, a1))) if t1 > t0 => ((a1 - a0) / (t1 - t0)).max(0.0),
            _ => 0.0,
        }
    }

    fn replicas(
        &mut self,
        obs: &Observation,
        s: &Setting,
        tuning: &Tuning,
        demand: &Demand,
        limit: Option<&Limit>,
    ) -> (i32, Why) {
        if stalled(obs) {
            // Nothing committed: hold, except where a limit already says
            // replicas are of no use (a throttled partner stalls them all).
            return self.trim(obs, s, tuning, demand, limit).unwrap_or_else(|| {
                self.remember(obs.now, s.current, tuning);
                (s.current, Why::Stalled)
            });
        }
        if let Some(up) = replicas::scale_up(demand, s, tuning) {
            return self.up(obs, s, tuning, demand, up, limit);
        }
        if let Some(trimmed) = self.trim(obs, s, tuning, demand, limit) {
            return trimmed;
        }
        self.down(obs, s, tuning, demand)
    }

    /// Without a capacity measurement: double while a backlog builds.
    fn unmeasured(
        &mut self,
        obs: &Observation,
        current: Current,
        limits: &Limits,
        demand: &Demand,
    ) -> i32 {
        let building = demand.backlog > demand.arrivals.max(1.0) * 10.0
            && obs.partitions.iter().map(|p| p.progress_rate).sum::<f64>() < demand.arrivals;
        if building {
            (current.replicas * 2).min(ceiling(obs, limits))
        } else {
            current.replicas
        }
    }

    /// Replicas set from outside (`kubectl scale`), remembered as a change
    /// and a recommendation: the count holds for a stabilization window
    /// unless the evidence calls for more.
    pub fn adopt(&mut self, now: f64, replicas: i32, tuning: &Tuning) {
        self.last_change = Some(now);
        self.remember(now, replicas, tuning);
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
}

fn fallback_why(obs: &Observation, demand: &Demand) -> Why {
    let progress: f64 = obs.partitions.iter().map(|p| p.progress_rate).sum();
    if demand.backlog > demand.arrivals.max(1.0) * 10.0 && progress < demand.arrivals {
        Why::Doubling {
            backlog: demand.backlog,
        }
    } else {
        Why::Learning
    }
}

fn partitions(obs: &Observation) -> i32 {
    i32::try_from(obs.partitions.len())
        .unwrap_or(i32::MAX)
        .max(1)
}

/// The most replicas that can help: `replicas.max`, never more than partitions.
fn ceiling(obs: &Observation, limits: &Limits) -> i32 {
    limits
        .max_replicas
        .min(partitions(obs))
        .max(limits.min_replicas)
        .max(1)
}

/// Lag everywhere that has lag, and nothing committed anywhere.
fn stalled(obs: &Observation) -> bool {
    let lagging = obs.partitions.iter().any(|p| p.lag > 0.0);
    lagging && obs.partitions.iter().all(|p| p.progress_rate <= 0.0) && obs.pods.ready > 0
}

/// The true oldest age over every partition (stuck and hot ones too); `None`
/// when a lagging partition's head could not be read.
fn true_oldest_age(obs: &Observation) -> Option<f64> {
    obs.partitions
        .iter()
        .filter(|p| p.lag > 0.0)
        .map(|p| p.head_age)
        .try_fold(0.0f64, |acc, a| a.map(|a| acc.max(a)))
}

fn slo_state(age: Option<f64>, limits: &Limits, tuning: &Tuning) -> SloState {
    match age {
        Some(a) if a > limits.slo_seconds => SloState::Breached,
        Some(a) if a > tuning.target_fraction * limits.slo_seconds => SloState::AtRisk,
        Some(_) => SloState::Met,
        None => SloState::AtRisk,
    }
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
