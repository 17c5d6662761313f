//! What stops more replicas from helping: pods that do not become Ready,
//! and a partner topic or brokers that limit delivery.

use crate::observation::Observation;
use crate::reason::Limit;
use crate::{Policy, Tuning};

use std::collections::VecDeque;

/// A scale-up made while the workers waited on acknowledgements, to be
/// judged once it settled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DeliveryCheck {
    pub at: f64,
    pub from: i32,
    pub to: i32,
    /// Events per second all pods completed before it.
    pub throughput: f64,
}

/// Observations of throughput kept at most: an hour at a 10 s interval, six
/// minutes at 1 s, longer than a pod start plus a judgement.
const MAX_SAMPLES: usize = 360;
/// Seconds a delivery step is judged over, at least. A broker throttling a
/// quota holds a client's responses back until its rate over the quota
/// window (11 one-second samples by default) is back under the quota, so
/// acknowledgements come in bursts up to tens of seconds apart (about 20 s
/// in the throttled-partner test), and shorter means mostly sample where
/// the bursts fell.
const MIN_JUDGED: f64 = 60.0;

/// Seconds a delivery step is judged over, and its baseline taken over.
pub(crate) fn judged(tuning: &Tuning) -> f64 {
    (3.0 * tuning.interval).max(MIN_JUDGED)
}

/// Events per second all Ready pods completed, observation by observation.
/// Acknowledgements from a throttled broker come in bursts, so a step is
/// judged by means over windows, never by one observation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Throughput {
    samples: VecDeque<Sample>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: f64,
    events_per_second: f64,
    /// Whether the workers waited on the brokers: only such samples show
    /// what delivery allows.
    delivery_bound: bool,
}

impl Throughput {
    pub fn record(&mut self, obs: &Observation) {
        if let Some(e) = obs.evidence {
            self.samples.push_back(Sample {
                at: obs.now,
                events_per_second: e.events_per_second * e.pods as f64,
                delivery_bound: e.waits_on_delivery(),
            });
        }
        while self.samples.len() > MAX_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// The mean over samples taken in `(from, to]`; 0 without any.
    pub fn mean(&self, from: f64, to: f64) -> f64 {
        self.mean_of(from, to, |_| true)
    }

    /// The mean over samples taken in `(from, to]` while delivery bound;
    /// 0 without any.
    pub fn delivery_bound_mean(&self, from: f64, to: f64) -> f64 {
        self.mean_of(from, to, |s| s.delivery_bound)
    }

    /// Whether the workers waited on the brokers in at least half the
    /// samples taken in `(from, to]`.
    pub fn mostly_delivery_bound(&self, from: f64, to: f64) -> bool {
        let inside = self.samples.iter().filter(|s| s.at > from && s.at <= to);
        let (n, bound) = inside.fold((0, 0), |(n, b), s| {
            (n + 1, b + usize::from(s.delivery_bound))
        });
        n > 0 && 2 * bound >= n
    }

    fn mean_of(&self, from: f64, to: f64, keep: impl Fn(&Sample) -> bool) -> f64 {
        let inside: Vec<f64> = self
            .samples
            .iter()
            .filter(|s| s.at > from && s.at <= to && keep(s))
            .map(|s| s.events_per_second)
            .collect();
        if inside.is_empty() {
            0.0
        } else {
            inside.iter().sum::<f64>() / inside.len() as f64
        }
    }
}

impl Policy {
    /// What, if anything, stops more replicas from helping: pods that do not
    /// become Ready, or a scale-up that did not raise throughput while the
    /// workers waited on acknowledgements.
    pub(crate) fn limit(&mut self, obs: &Observation, tuning: &Tuning) -> Option<Limit> {
        self.not_ready(obs, tuning)
            .or_else(|| self.delivery(obs, tuning))
    }

    /// Pods not Ready well past their start, remembered until a pod started
    /// since becomes Ready: replacing them would only start more that do not
    /// become Ready either. Meanwhile scale-ups go one pod at a time.
    pub(crate) fn not_ready(&mut self, obs: &Observation, tuning: &Tuning) -> Option<Limit> {
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
    pub(crate) fn delivery(&mut self, obs: &Observation, tuning: &Tuning) -> Option<Limit> {
        let delivery = obs.waits_on_delivery();
        // Judged once the new pods could have started, over the window
        // since: the observation at hand may fall between two bursts of
        // acknowledgements and read another bottleneck.
        let settled = tuning.settle();
        if let Some(check) = self.delivery_check
            && obs.now - check.at >= settled + judged(tuning)
        {
            self.delivery_check = None;
            let since = check.at + settled;
            let now = self.throughput.mean(since, obs.now);
            let added = f64::from(check.to - check.from) / f64::from(check.from.max(1));
            if self.throughput.mostly_delivery_bound(since, obs.now)
                && now <= check.throughput * (1.0 + 0.5 * added)
            {
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
}

/// Whether the workers wait on the brokers: now, or in most observations
/// of the last window a step is judged over (between two bursts of
/// acknowledgements an observation can read another bottleneck, and a
/// step up made then would not be one judged step).
pub(crate) fn delivery_bound(throughput: &Throughput, obs: &Observation, tuning: &Tuning) -> bool {
    obs.waits_on_delivery() || throughput.mostly_delivery_bound(obs.now - judged(tuning), obs.now)
}

/// The throughput a delivery step is judged against: the mean over as long
/// before it as it is judged over after, of the samples bound by delivery.
/// Samples from before the limit was reached (pods idle while the load
/// had not started) would pull it down and make any step look like it
/// helped.
pub(crate) fn baseline(throughput: &Throughput, now: f64, tuning: &Tuning) -> f64 {
    throughput.delivery_bound_mean(now - judged(tuning) - 1e-9, now)
}

/// Whether the pods not Ready are all still within a pod start (with two
/// intervals of grace): they are not judged yet.
pub(crate) fn starting(obs: &Observation, tuning: &Tuning) -> bool {
    obs.pods.unready_for <= tuning.settle() + 2.0 * tuning.interval
}

#[cfg(test)]
mod tests {
    use crate::observation::{Bottleneck, Evidence, Observation, PartitionView, Pods, StageLoad};
    use crate::reason::Limit;
    use crate::{Current, Limits, Policy, Tuning};
    use pixelpipe_crds::PerStage;

    /// Six partitions 300 events/s behind a throttled broker that takes
    /// `total` events/s from the workers whatever their number; nothing
    /// committed unless `committing`.
    fn throttled(now: f64, replicas: i32, total: f64, committing: bool) -> Observation {
        let partition = |partition| PartitionView {
            partition,
            lag: 3_000.0 + 40.0 * now,
            head_age: Some(40.0 + now),
            committed: 0,
            arrival_rate: 50.0,
            progress_rate: if committing { total / 6.0 } else { 0.0 },
            still_for: 0.0,
            owned: true,
            in_flight: 0.0,
        };
        Observation {
            now,
            partitions: (0..6).map(partition).collect(),
            pods: Pods {
                desired: replicas,
                ready: replicas,
                unready_for: 0.0,
            },
            evidence: Some(Evidence {
                pods: replicas as usize,
                events_per_second: total / f64::from(replicas),
                utilization: 1.0,
                bottleneck: Bottleneck::Delivery,
                stages: PerStage::splat(StageLoad::default()),
                cores: 2.0,
            }),
        }
    }

    /// What a driven policy did.
    struct Run {
        /// Each change: `(t, from, to)`.
        steps: Vec<(i32, i32, i32)>,
        /// The last count.
        replicas: i32,
        /// The limit decided each second.
        limit: Vec<Option<Limit>>,
    }

    /// A policy from one replica driven for `seconds` on `observe(t,
    /// replicas)`, with short delays (1 s interval, 20 s window) and up to
    /// six replicas.
    fn drive(seconds: i32, mut observe: impl FnMut(i32, i32) -> Observation) -> Run {
        let tuning = Tuning {
            interval: 1.0,
            pod_start: 2.0,
            rebalance: 3.0,
            scale_down_window: 20.0,
            ..Tuning::default()
        };
        let limits = Limits {
            min_replicas: 1,
            max_replicas: 6,
            slo_seconds: 60.0,
            pools: PerStage::splat((1, 4)),
        };
        let mut policy = Policy::default();
        let mut replicas = 1;
        let mut steps = Vec::new();
        let mut limit = Vec::new();
        for t in 0..=seconds {
            let current = Current {
                replicas,
                pools: PerStage::splat(1),
            };
            let d = policy.decide(&observe(t, replicas), current, &limits, &tuning);
            if d.replicas != replicas {
                steps.push((t, replicas, d.replicas));
            }
            replicas = d.replicas;
            limit.push(d.limit);
        }
        Run {
            steps,
            replicas,
            limit,
        }
    }

    #[test]
    fn a_step_that_does_not_raise_throughput_caps_and_a_stall_still_trims() {
        // Acknowledgements come in bursts: none committed once the step is
        // made, until after it is judged.
        let Run {
            steps,
            replicas,
            limit,
        } = drive(150, |t, replicas| {
            throttled(f64::from(t), replicas, 90.0, t < 5)
        });
        for (t, l) in limit.iter().enumerate().skip(130) {
            assert_eq!(*l, Some(Limit::Delivery { replicas: 1 }), "at {t}");
        }
        // One step up, judged over 60 s once it settled, then back to where
        // it was: not one step per interval to the maximum.
        assert_eq!(steps.first().map(|s| (s.1, s.2)), Some((1, 2)), "{steps:?}");
        assert_eq!(replicas, 1, "{steps:?}");
        assert!(steps.len() == 2 && steps[1].0 >= 65, "{steps:?}");
    }

    /// The same throttled broker, but from the tenth second every third
    /// observation falls between two bursts of acknowledgements and reads
    /// CPU as the bottleneck. Steps are still one at a time and judged, and
    /// the cap found, whichever observation the judgement falls on.
    #[test]
    fn observations_between_acknowledgement_bursts_do_not_escape_the_judgement() {
        for phase in 0..3 {
            let Run {
                steps, replicas, ..
            } = drive(150, |t, replicas| {
                let mut obs = throttled(f64::from(t), replicas, 90.0, t < 5);
                if t >= 10 && (t + phase) % 3 == 0 {
                    obs.evidence = obs.evidence.map(|e| Evidence {
                        utilization: 0.4,
                        bottleneck: Bottleneck::Cpu,
                        ..e
                    });
                }
                obs
            });
            assert!(steps.iter().all(|s| s.2 <= 2), "phase {phase}: {steps:?}");
            assert_eq!(replicas, 1, "phase {phase}: {steps:?}");
        }
    }

    /// The same throttled broker, reached 30 s after the pods became Ready:
    /// before, they idled (no events, no lag). The step up is judged against
    /// the throughput while delivery bound, not a mean that the idle start
    /// pulls down, which would make any step look like it helped (seen in
    /// the throttled-partner test on a slow CI machine).
    #[test]
    fn a_step_is_judged_against_delivery_bound_throughput_not_an_idle_start() {
        let Run {
            steps, replicas, ..
        } = drive(180, |t, replicas| {
            let mut obs = throttled(f64::from(t) - 30.0, replicas, 90.0, t < 35);
            obs.now = f64::from(t);
            if t < 30 {
                for p in &mut obs.partitions {
                    p.lag = 0.0;
                    p.head_age = None;
                }
                obs.evidence = obs.evidence.map(|e| Evidence {
                    events_per_second: 0.0,
                    utilization: 0.0,
                    bottleneck: Bottleneck::Cpu,
                    ..e
                });
            }
            obs
        });
        assert_eq!(steps.first().map(|s| (s.1, s.2)), Some((1, 2)), "{steps:?}");
        assert_eq!(replicas, 1, "{steps:?}");
        assert_eq!(steps.len(), 2, "{steps:?}");
    }
}
