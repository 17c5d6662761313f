//! One run: a traffic profile through the simulated system ([`crate::world`],
//! [`crate::flow`]), scaled by a static size, KEDA through the HPA
//! ([`crate::keda`]), or Pixelpipe's policy (the operator's own code,
//! `pixelpipe-policy`), told each interval only what the operator would see.

use pixelpipe_crds::PerStage;
use pixelpipe_policy::{
    Bottleneck, Current, Decision, Limit, Limits, Observation, Pods, Policy, Tuning,
    effective_replicas,
};

use crate::flow::{Flow, Meter};
use crate::keda::Hpa;
use crate::profile::Profile;
use crate::world::World;

/// Who sizes the group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scaler {
    Static(i32),
    /// KEDA's Kafka scaler with this lag threshold (messages); `cached` is
    /// `useCachedMetrics: true`.
    Keda {
        threshold: f64,
        cached: bool,
    },
    Pixelpipe(Tuning),
}

impl Scaler {
    pub fn label(&self) -> String {
        match self {
            Scaler::Static(n) => format!("static {n}"),
            Scaler::Keda { threshold, cached } => format!(
                "keda {}{}",
                pixelpipe_policy::count(*threshold),
                if *cached { " cached" } else { "" }
            ),
            Scaler::Pixelpipe(_) => "pixelpipe".to_string(),
        }
    }
}

/// One point of the time series, every 10 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub age: f64,
    pub arrivals: f64,
    pub replicas: i32,
    /// What Pixelpipe named as the cause scaling left out, if anything.
    pub cause: Option<Cause>,
}

/// A cause the policy names in a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Stuck,
    Hot,
    NotReady,
    Delivery,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub max_age: f64,
    pub seconds_over: u64,
    pub replica_seconds: f64,
    pub scale_actions: u32,
    pub series: Vec<Sample>,
    /// Pixelpipe's last reasons for changes, for the report.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
struct Pod {
    created: f64,
    ready_at: f64,
}

/// Replicas that cover `rate` with 25 % headroom: where every policy starts,
/// and the static size for a profile's peak.
pub fn sized_for(rate: f64, world: &World) -> i32 {
    let ceiling = world.partitions.min(world.max_replicas).max(1);
    (1..=ceiling)
        .find(|&n| effective_replicas(n, world.partitions) * world.replica_capacity >= 1.25 * rate)
        .unwrap_or(ceiling)
}

/// The floor: the sum over seconds of the fewest replicas that could carry
/// that second's arrivals, `ceil(arrivals / capacity)`, capped at the partitions.
pub fn floor(profile: &Profile, world: &World) -> f64 {
    profile
        .rates
        .iter()
        .enumerate()
        .map(|(t, &r)| world.floor_at(t as f64, r))
        .sum()
}

/// The run's moving parts.
struct Run<'a> {
    world: &'a World,
    flow: Flow,
    pods: Vec<Pod>,
    members: i32,
    pause_until: f64,
    meter: Meter,
    out: Outcome,
}

pub fn simulate(profile: &Profile, world: &World, scaler: Scaler) -> Outcome {
    let ceiling = world.partitions.min(world.max_replicas).max(1);
    let start = match scaler {
        Scaler::Static(n) => n.clamp(1, ceiling),
        _ => sized_for(profile.rates.first().copied().unwrap_or(0.0), world),
    };
    let mut run = Run {
        world,
        flow: Flow::new(world.partitions, profile.rates.len()),
        pods: vec![
            Pod {
                created: 0.0,
                ready_at: 0.0
            };
            start as usize
        ],
        members: start,
        pause_until: 0.0,
        meter: Meter::default(),
        out: Outcome::default(),
    };
    let mut hpa = match scaler {
        Scaler::Keda { threshold, cached } => Some(Hpa::new(threshold, cached)),
        _ => None,
    };
    let mut pixelpipe = match scaler {
        Scaler::Pixelpipe(tuning) => Some((Policy::default(), tuning)),
        _ => None,
    };
    let mut cause = None;
    for (t, &rate) in profile.rates.iter().enumerate() {
        let age = run.second(t, rate);
        let desired = if let Some(hpa) = hpa.as_mut() {
            hpa.tick(t, run.flow.lag(), run.pods.len() as i32, ceiling)
        } else if let Some((policy, tuning)) = pixelpipe.as_mut() {
            let interval = tuning.interval.max(1.0) as usize;
            (t > 0 && t.is_multiple_of(interval)).then(|| {
                let d = run.decide(t, policy, tuning);
                cause = cause_of(&d);
                d.replicas
            })
        } else {
            None
        };
        if let Some(want) = desired {
            run.resize(t, want);
        }
        if t.is_multiple_of(10) {
            run.out.series.push(Sample {
                t: t as f64,
                age,
                arrivals: rate,
                replicas: run.pods.len() as i32,
                cause,
            });
        }
    }
    run.out
}

fn cause_of(d: &Decision) -> Option<Cause> {
    match &d.limit {
        Some(Limit::NotReady { .. }) => return Some(Cause::NotReady),
        Some(Limit::Delivery { .. }) => return Some(Cause::Delivery),
        None => {}
    }
    if !d.unhealthy.stuck.is_empty() {
        Some(Cause::Stuck)
    } else if !d.unhealthy.hot.is_empty() {
        Some(Cause::Hot)
    } else if d.bottleneck == Some(Bottleneck::Delivery) {
        Some(Cause::Delivery)
    } else {
        None
    }
}

impl Run<'_> {
    /// One second of flow; returns the oldest event's age.
    fn second(&mut self, t: usize, rate: f64) -> f64 {
        let now = t as f64;
        let ready = self.pods.iter().filter(|p| p.ready_at <= now).count() as i32;
        if ready != self.members {
            self.members = ready;
            self.pause_until = now + self.world.rebalance;
        }
        let paused = now < self.pause_until;
        let s = self.flow.step(self.world, rate, self.members, paused);
        self.meter.add(s, self.members);
        let age = self.flow.oldest_age();
        self.out.max_age = self.out.max_age.max(age);
        if age > self.world.slo {
            self.out.seconds_over += 1;
        }
        self.out.replica_seconds += self.pods.len() as f64;
        age
    }

    /// One observation for the policy, and its decision.
    fn decide(&mut self, t: usize, policy: &mut Policy, tuning: &Tuning) -> Decision {
        let now = t as f64;
        let window = (3.0 * tuning.interval) as usize;
        let unready_for = self
            .pods
            .iter()
            .filter(|p| p.ready_at > now)
            .map(|p| now - p.created)
            .fold(0.0, f64::max);
        // Deterministic noise on the workers' busy fractions.
        let noise = ((t as f64 * 12.9898).sin() * 43_758.545).fract();
        let obs = Observation {
            now,
            partitions: self
                .flow
                .partitions(tuning.interval as usize, window, self.members > 0),
            pods: Pods {
                desired: self.pods.len() as i32,
                ready: self.members,
                unready_for,
            },
            evidence: self
                .meter
                .evidence(self.world.delivery_bound_at(now), 2.0 * noise - 1.0),
        };
        self.meter = Meter::default();
        let current = Current {
            replicas: self.pods.len() as i32,
            pools: PerStage::splat(2),
        };
        let limits = Limits {
            min_replicas: 1,
            max_replicas: self.world.max_replicas,
            slo_seconds: self.world.slo,
            pools: PerStage::splat((1, 32)),
        };
        let d = policy.decide(&obs, current, &limits, tuning);
        if d.replicas != current.replicas {
            if self.out.reasons.len() == 64 {
                self.out.reasons.remove(0);
            }
            self.out.reasons.push(format!(
                "t={t}s {} (replicas {} -> {})",
                d.reason, current.replicas, d.replicas
            ));
        }
        d
    }

    /// Adds pods (Ready after the pod start, or never in that pathology) or
    /// removes them (those not Ready first, then the newest).
    fn resize(&mut self, t: usize, want: i32) {
        let now = t as f64;
        let have = self.pods.len() as i32;
        if want > have {
            let ready_at = if self.world.never_ready_at(now) {
                f64::INFINITY
            } else {
                now + self.world.pod_start
            };
            let pod = Pod {
                created: now,
                ready_at,
            };
            self.pods
                .extend(std::iter::repeat_n(pod, (want - have) as usize));
            self.out.scale_actions += 1;
        } else if want < have {
            self.pods.sort_by(|a, b| b.ready_at.total_cmp(&a.ready_at));
            self.pods.drain(..(have - want) as usize);
            self.out.scale_actions += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(capacity: f64) -> World {
        World {
            replica_capacity: capacity,
            partitions: 24,
            max_replicas: 24,
            pod_start: 60.0,
            rebalance: 15.0,
            slo: 300.0,
            commit_delay: 0.0,
            pathology: None,
        }
    }

    #[test]
    fn too_few_replicas_breach_and_enough_hold() {
        let p = Profile::builtin("steady").expect("steady");
        let w = world(5_000.0);
        let under = simulate(&p, &w, Scaler::Static(2));
        assert!(under.seconds_over > 0 && under.max_age > 300.0);
        let enough = simulate(&p, &w, Scaler::Static(4));
        assert_eq!(enough.seconds_over, 0);
        assert!(enough.max_age < 10.0, "{}", enough.max_age);
        assert_eq!(enough.replica_seconds, 4.0 * 7_200.0);
    }

    #[test]
    fn the_floor_counts_ceil_of_arrivals_over_capacity() {
        let p =
            Profile::from_csv("x", "seconds,events_per_second\n0,12000\n100,12000\n").expect("csv");
        assert_eq!(floor(&p, &world(5_000.0)), 300.0);
        assert_eq!(floor(&p, &world(500.0)), 2_400.0, "capped at 24 partitions");
    }

    #[test]
    fn keda_scales_with_lag_and_pixelpipe_holds_the_flash_sale() {
        let p = Profile::builtin("flash-sale").expect("flash");
        let w = world(5_000.0);
        let keda = simulate(
            &p,
            &w,
            Scaler::Keda {
                threshold: 10_000.0,
                cached: false,
            },
        );
        assert!(keda.scale_actions > 0);
        let pp = simulate(&p, &w, Scaler::Pixelpipe(Tuning::default()));
        assert_eq!(pp.seconds_over, 0, "{:?}", pp.reasons);
        let peak = pp.series.iter().map(|s| s.replicas).max().unwrap_or(0);
        assert!(
            peak >= 8,
            "36k/s at 5k/s per replica needs 8 or more, got {peak}"
        );
        let last = pp.series.last().map(|s| s.replicas).unwrap_or(0);
        assert!(last < peak, "scaled back down after the surge");
    }
}
