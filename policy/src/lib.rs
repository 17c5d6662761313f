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
mod observation;
pub mod pools;
pub mod reading;
mod reason;
pub mod replicas;

use std::collections::{BTreeSet, VecDeque};

use pixelpipe_crds::{PerStage, SloState};

pub use capacity::Capacity;
pub use health::{Health, PartitionState};
pub use observation::{Bottleneck, Evidence, Observation, PartitionView, Pods, StageLoad};
pub use reason::{Limit, Reason, Unhealthy, Why};
pub use replicas::effective_replicas;

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

/// A scale-up made while the workers waited on acknowledgements, to be
/// judged once it settled.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DeliveryCheck {
    at: f64,
    from: i32,
    to: i32,
    throughput: f64,
}

/// What the policy remembers between observations.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    capacity: Capacity,
    last_change: Option<f64>,
    recommendations: VecDeque<(f64, i32)>,
    arrivals: VecDeque<(f64, f64)>,
    delivery_check: Option<DeliveryCheck>,
    delivery_cap: Option<(i32, f64)>,
    /// Partitions stuck, or recovering from it, left out of scaling.
    quarantined: BTreeSet<i32>,
    /// Pods seen not becoming Ready, and how many were Ready then.
    not_ready: Option<(Limit, i32)>,
}

impl Policy {
    /// The measured capacity per replica, events/s.
    pub fn per_replica(&self) -> Option<f64> {
        self.capacity.per_replica()
    }

    pub fn decide(
        &mut self,
        obs: &Observation,
        current: Current,
        limits: &Limits,
        tuning: &Tuning,
    ) -> Decision {
        self.capacity.observe(obs.now, obs.evidence.as_ref());
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
        let (replicas, why, limit) = match per_replica {
            Some(c) => self.replicas(obs, current, limits, tuning, &demand, c),
            None => (
                self.unmeasured(obs, current, limits, &demand),
                fallback_why(obs, &demand),
                None,
            ),
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
        for p in &obs.partitions {
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
        current: Current,
        limits: &Limits,
        tuning: &Tuning,
        demand: &Demand,
        per_replica: f64,
    ) -> (i32, Why, Option<Limit>) {
        let s = Setting {
            current: current.replicas,
            min: limits.min_replicas.max(1),
            ceiling: ceiling(obs, limits),
            partitions: partitions(obs),
            per_replica,
            target: tuning.target_fraction * limits.slo_seconds,
            slo: limits.slo_seconds,
        };
        let limit = self.limit(obs, tuning);
        if stalled(obs) {
            self.remember(obs.now, s.current, tuning);
            return (s.current, Why::Stalled, limit);
        }
        if let Some(up) = replicas::scale_up(demand, &s, tuning) {
            return self.up(obs, &s, tuning, demand, up, limit);
        }
        if let Some((n, why)) = self.trim(obs, &s, tuning, demand, limit.as_ref()) {
            return (n, why, limit);
        }
        let (n, why) = self.down(obs, &s, tuning, demand);
        (n, why, limit)
    }

    /// Replicas a limit says are of no use: those past a delivery cap, and
    /// pods that do not become Ready beyond what the arrivals need.
    fn trim(
        &mut self,
        obs: &Observation,
        s: &Setting,
        tuning: &Tuning,
        demand: &Demand,
        limit: Option<&Limit>,
    ) -> Option<(i32, Why)> {
        let limit = limit?;
        // A pod started since is given its full start before it is judged.
        if matches!(limit, Limit::NotReady { .. }) && starting(obs, tuning) {
            return None;
        }
        let keep = keep(limit, s, tuning, demand);
        if keep >= s.current {
            return None;
        }
        self.remember(obs.now, keep, tuning);
        let why = Why::Capped {
            arrivals: demand.arrivals,
            capacity: s.capacity(s.current),
            limit: limit.clone(),
        };
        Some((keep.max(s.min), why))
    }

    /// Fewer replicas once a whole window recommended fewer; otherwise the
    /// current count. Recommendations are recorded while a change settles
    /// too, so one window after the last high one is enough.
    fn down(
        &mut self,
        obs: &Observation,
        s: &Setting,
        tuning: &Tuning,
        demand: &Demand,
    ) -> (i32, Why) {
        let settling = self
            .last_change
            .is_some_and(|t| obs.now - t < tuning.settle());
        let candidate = if calm(obs, demand, tuning, s.target) {
            replicas::scale_down(demand, s, tuning)
        } else {
            s.current
        };
        self.remember(obs.now, candidate, tuning);
        let stabilized = self
            .recommendations
            .iter()
            .map(|&(_, n)| n)
            .max()
            .unwrap_or(candidate);
        let capacity = s.capacity(s.current);
        let why = if stabilized < s.current && !settling {
            let why = Why::Down {
                arrivals: demand.arrivals,
                capacity: s.capacity(stabilized),
                window: tuning.scale_down_window,
            };
            return (stabilized, why);
        } else if capacity < demand.arrivals {
            Why::Absorbing {
                arrivals: demand.arrivals,
                capacity,
                target: s.target,
            }
        } else {
            Why::Within {
                arrivals: demand.arrivals,
                capacity,
            }
        };
        (s.current, why)
    }

    /// A scale-up to `up`, unless a limit says more replicas cannot help.
    /// While the workers wait on acknowledgements, one step at a time (half
    /// again the capacity), each judged by whether throughput followed.
    fn up(
        &mut self,
        obs: &Observation,
        s: &Setting,
        tuning: &Tuning,
        demand: &Demand,
        up: i32,
        limit: Option<Limit>,
    ) -> (i32, Why, Option<Limit>) {
        let capacity = s.capacity(s.current);
        let cap = limit.as_ref().map(|l| match l {
            // Every pod Ready again: one more, to see whether it starts.
            Limit::NotReady { .. } if obs.pods.ready >= obs.pods.desired => s.current + 1,
            // That one is still starting: wait for it.
            Limit::NotReady { .. } if starting(obs, tuning) => s.current,
            l => keep(l, s, tuning, demand),
        });
        if let (Some(cap), Some(l)) = (cap, &limit)
            && up > cap
        {
            self.remember(obs.now, cap, tuning);
            let why = Why::Capped {
                arrivals: demand.arrivals,
                capacity,
                limit: l.clone(),
            };
            return (cap.max(s.min), why, limit);
        }
        let mut up = up;
        if let Some(e) = obs
            .evidence
            .filter(|e| e.bottleneck == Bottleneck::Delivery)
        {
            // The last step is not judged yet: wait for it.
            if self.delivery_check.is_some() {
                self.remember(obs.now, s.current, tuning);
                let why = Why::Up {
                    arrivals: demand.arrivals,
                    capacity,
                    backlog: demand.backlog,
                    target: s.target,
                };
                return (s.current, why, limit);
            }
            let step = (s.current + 1..=s.ceiling).find(|&n| s.capacity(n) >= 1.5 * capacity);
            up = up.min(step.unwrap_or(s.ceiling));
            self.delivery_check = Some(DeliveryCheck {
                at: obs.now,
                from: s.current,
                to: up,
                throughput: e.events_per_second * e.pods as f64,
            });
        }
        self.remember(obs.now, up, tuning);
        let why = Why::Up {
            arrivals: demand.arrivals,
            capacity,
            backlog: demand.backlog,
            target: s.target,
        };
        (up, why, limit)
    }

    /// What, if anything, stops more replicas from helping: pods that do not
    /// become Ready, or a scale-up that did not raise throughput while the
    /// workers waited on acknowledgements.
    fn limit(&mut self, obs: &Observation, tuning: &Tuning) -> Option<Limit> {
        self.not_ready(obs, tuning)
            .or_else(|| self.delivery(obs, tuning))
    }

    /// Pods not Ready well past their start, remembered until a pod started
    /// since becomes Ready: replacing them would only start more that do not
    /// become Ready either. Meanwhile scale-ups go one pod at a time.
    fn not_ready(&mut self, obs: &Observation, tuning: &Tuning) -> Option<Limit> {
        let p = obs.pods;
        if p.ready < p.desired && !starting(obs, tuning) {
            let limit = Limit::NotReady {
                ready: p.ready,
                desired: p.desired,
                seconds: p.unready_for,
            };
            self.not_ready = Some((limit.clone(), p.ready));
            return Some(limit);
        }
        match &self.not_ready {
            Some((limit, ready)) if p.ready <= *ready => Some(limit.clone()),
            _ => {
                self.not_ready = None;
                None
            }
        }
    }

    /// A scale-up made while the workers waited on acknowledgements that did
    /// not raise throughput caps the replicas where they were.
    fn delivery(&mut self, obs: &Observation, tuning: &Tuning) -> Option<Limit> {
        let delivery = obs
            .evidence
            .is_some_and(|e| e.bottleneck == Bottleneck::Delivery);
        if let Some(check) = self.delivery_check
            && obs.now - check.at >= tuning.settle() + tuning.interval
        {
            self.delivery_check = None;
            let now = obs
                .evidence
                .map_or(0.0, |e| e.events_per_second * e.pods as f64);
            let added = f64::from(check.to - check.from) / f64::from(check.from.max(1));
            if delivery && now < check.throughput * (1.0 + 0.5 * added) {
                self.delivery_cap = Some((check.from, obs.now));
            }
        }
        // The cap lifts once the workers have not waited on the brokers for
        // as long as a change takes to show: a recovered partner is used at
        // once, and a limit still there is found again by the next check.
        self.delivery_cap = match self.delivery_cap {
            Some((n, _)) if delivery => Some((n, obs.now)),
            Some((_, since)) if obs.now - since > tuning.settle() + tuning.interval => None,
            other => other,
        };
        self.delivery_cap
            .map(|(replicas, _)| Limit::Delivery { replicas })
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

/// Whether the pods not Ready are all still within a pod start (with two
/// intervals of grace): they are not judged yet.
fn starting(obs: &Observation, tuning: &Tuning) -> bool {
    obs.pods.unready_for <= tuning.settle() + 2.0 * tuning.interval
}

/// Lag everywhere that has lag, and nothing committed anywhere.
fn stalled(obs: &Observation) -> bool {
    let lagging = obs.partitions.iter().any(|p| p.lag > 0.0);
    lagging && obs.partitions.iter().all(|p| p.progress_rate <= 0.0) && obs.pods.ready > 0
}

/// The most replicas a limit lets help: under a delivery cap that count;
/// with pods that do not become Ready, the Ready ones or what the arrivals
/// need, whichever is more (pods that do not start drain no backlog).
fn keep(limit: &Limit, s: &Setting, tuning: &Tuning, demand: &Demand) -> i32 {
    match limit {
        Limit::Delivery { replicas } => *replicas,
        Limit::NotReady { ready, .. } => {
            let carry = demand.arrivals * (1.0 + tuning.up_margin);
            let need = (s.min..=s.ceiling).find(|&n| s.capacity(n) >= carry);
            need.unwrap_or(s.ceiling).max(*ready)
        }
    }
}

/// Nearly caught up, every head readable: a scale-down is safe to consider.
/// "Nearly": commits trail processing, so a healthy pipeline's oldest event
/// is a commit interval or two old, more when fetch to commit is slow.
fn calm(obs: &Observation, demand: &Demand, tuning: &Tuning, target: f64) -> bool {
    let heads_known = obs
        .partitions
        .iter()
        .all(|p| p.lag <= 0.0 || p.head_age.is_some());
    heads_known && demand.age <= (2.0 * tuning.interval).max(0.25 * target)
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
