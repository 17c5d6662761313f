//! The replica moves once capacity is measured: up when waiting would pass
//! the target, down after a window of lower recommendations, and trimmed to
//! what a limit lets help.

use crate::limit::{DeliveryCheck, baseline, delivery_bound, starting};
use crate::observation::Observation;
use crate::reason::{Limit, Why};
use crate::replicas::{self, Demand, Setting};
use crate::{Policy, Tuning};

impl Policy {
    /// Replicas a limit says are of no use: those past a delivery cap, and
    /// pods that do not become Ready beyond what the arrivals need.
    pub(crate) fn trim(
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
    pub(crate) fn down(
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
    pub(crate) fn up(
        &mut self,
        obs: &Observation,
        s: &Setting,
        tuning: &Tuning,
        demand: &Demand,
        up: i32,
        limit: Option<&Limit>,
    ) -> (i32, Why) {
        let capacity = s.capacity(s.current);
        let cap = limit.map(|l| match l {
            // Every pod Ready again: one more, to see whether it starts.
            Limit::NotReady { .. } if obs.pods.ready >= obs.pods.desired => s.current + 1,
            // That one is still starting: wait for it.
            Limit::NotReady { .. } if starting(obs, tuning) => s.current,
            l => keep(l, s, tuning, demand),
        });
        if let (Some(cap), Some(l)) = (cap, limit)
            && up > cap
        {
            self.remember(obs.now, cap, tuning);
            let why = Why::Capped {
                arrivals: demand.arrivals,
                capacity,
                limit: l.clone(),
            };
            return (cap.max(s.min), why);
        }
        let mut up = up;
        if delivery_bound(&self.throughput, obs, tuning) {
            // The last step is not judged yet: wait for it.
            if self.delivery_check.is_some() {
                self.remember(obs.now, s.current, tuning);
                let why = Why::Up {
                    arrivals: demand.arrivals,
                    capacity,
                    backlog: demand.backlog,
                    target: s.target,
                };
                return (s.current, why);
            }
            let step = (s.current + 1..=s.ceiling).find(|&n| s.capacity(n) >= 1.5 * capacity);
            up = up.min(step.unwrap_or(s.ceiling));
            self.delivery_check = Some(DeliveryCheck {
                at: obs.now,
                from: s.current,
                to: up,
                throughput: baseline(&self.throughput, obs.now, tuning),
            });
        }
        self.remember(obs.now, up, tuning);
        let why = Why::Up {
            arrivals: demand.arrivals,
            capacity,
            backlog: demand.backlog,
            target: s.target,
        };
        (up, why)
    }
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
