//! How many replicas. The oldest event must stay under the target (a safety
//! fraction of the SLO); new replicas arrive only after a pod start and a
//! rebalance pause. So: keep what runs while waiting one more interval would
//! still leave the oldest event under the target when new replicas could
//! arrive (an overload the SLO can absorb is absorbed); otherwise add the
//! fewest replicas that carry the arrivals with a little headroom and drain
//! what piled up within the slack left. Remove replicas only when fewer would
//! still keep up with more headroom, for a whole stabilization window.

use crate::Tuning;

/// What the partitions more replicas can help ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Demand {
    /// Events per second arriving (a hot partition counted at one replica's
    /// capacity at most: no more can serve it).
    pub arrivals: f64,
    /// Events per second more a rising load adds per second.
    pub slope: f64,
    /// Events waiting.
    pub backlog: f64,
    /// Planning age of the oldest of them, seconds.
    pub age: f64,
}

/// What the replica rule sees besides the demand.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Setting {
    pub current: i32,
    pub min: i32,
    /// The most that can help: `replicas.max`, never more than partitions.
    pub ceiling: i32,
    pub partitions: i32,
    /// Events per second one replica processes.
    pub per_replica: f64,
    /// Oldest-event age to stay under, seconds.
    pub target: f64,
    /// The SLO, seconds.
    pub slo: f64,
}

impl Setting {
    /// Events per second `n` replicas process: the replica with the most
    /// partitions is the bottleneck.
    pub fn capacity(&self, n: i32) -> f64 {
        self.per_replica * effective_replicas(n, self.partitions)
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

/// Seconds from deciding to add replicas until they process: pod start, the
/// rebalance pause, and one interval to see it.
pub fn lead_time(t: &Tuning) -> f64 {
    t.pod_start + t.rebalance + t.interval
}

/// The oldest event's planning age when replicas added at the next
/// observation (not this one) would arrive, if `current` keeps running.
pub fn age_if_we_wait(d: &Demand, s: &Setting, t: &Tuning) -> f64 {
    let wait = t.interval + lead_time(t);
    let arrivals = d.arrivals + d.slope * wait;
    if arrivals <= 0.0 {
        return d.age;
    }
    let growth = (1.0 - s.capacity(s.current) / arrivals).max(0.0);
    if growth == 0.0 && d.backlog > 0.0 {
        // Keeping up: the age falls as the backlog drains.
        return d.age;
    }
    d.age + growth * (wait - t.rebalance) + t.rebalance
}

/// Replicas to add now, or `None` when the SLO can absorb the wait.
pub fn scale_up(d: &Demand, s: &Setting, t: &Tuning) -> Option<i32> {
    let late = age_if_we_wait(d, s, t) > s.target;
    let short = s.capacity(s.current) < d.arrivals * (1.0 + t.up_margin);
    // Short of capacity with the age already past the target: no slack left.
    let spent = short && d.age > s.target;
    if !late && !spent {
        return None;
    }
    let lead = lead_time(t);
    let arrivals = d.arrivals + d.slope * lead;
    let now = s.capacity(s.current);
    let backlog = (d.backlog + arrivals * lead - now * (lead - t.rebalance).max(0.0)).max(0.0);
    let growth = (1.0 - now / arrivals.max(1e-9)).max(0.0);
    let age_then = d.age + growth * (lead - t.rebalance) + t.rebalance;
    // The age falls while the backlog drains, so the drain may take what is
    // left of the SLO: fewer replicas, held for less after it.
    let horizon = (s.slo - age_then).max(lead);
    let carry = arrivals * (1.0 + t.up_margin);
    let need = (s.current + 1..=s.ceiling)
        .find(|&n| {
            let spare = s.capacity(n) - arrivals;
            s.capacity(n) >= carry && spare > 0.0 && backlog / spare <= horizon
        })
        .unwrap_or(s.ceiling);
    (need > s.current).then_some(need)
}

/// The fewest replicas that carry the arrivals (within `down_tolerance`:
/// the next even count may be far above) and keep the oldest event under
/// half the target through the rebalance pause the change causes and a whole
/// window and lead time after it, the longest fewer replicas could run before
/// more could be back; `current` when none fewer do.
pub fn scale_down(d: &Demand, s: &Setting, t: &Tuning) -> i32 {
    let horizon = t.scale_down_window + lead_time(t);
    let fits = |n: i32| {
        let capacity = s.capacity(n);
        if capacity < d.arrivals * (1.0 - t.down_tolerance) {
            return false;
        }
        let growth = if d.arrivals > 0.0 {
            (1.0 - capacity / d.arrivals).max(0.0)
        } else {
            0.0
        };
        d.age + t.rebalance + growth * horizon <= 0.5 * s.target
    };
    (s.min..s.current).find(|&n| fits(n)).unwrap_or(s.current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuning() -> Tuning {
        Tuning {
            pod_start: 30.0,
            rebalance: 5.0,
            interval: 10.0,
            ..Tuning::default()
        }
    }

    fn setting(current: i32) -> Setting {
        Setting {
            current,
            min: 1,
            ceiling: 24,
            partitions: 24,
            per_replica: 1_000.0,
            target: 150.0,
            slo: 300.0,
        }
    }

    fn demand(arrivals: f64, backlog: f64, age: f64) -> Demand {
        Demand {
            arrivals,
            slope: 0.0,
            backlog,
            age,
        }
    }

    #[test]
    fn even_spreads_are_preferred() {
        assert_eq!(effective_replicas(4, 24), 4.0);
        assert_eq!(effective_replicas(5, 24), 24.0 / 5.0);
        assert_eq!(effective_replicas(7, 24), 6.0, "7 replicas work like 6");
        assert_eq!(effective_replicas(30, 24), 24.0);
    }

    #[test]
    fn a_small_overload_is_absorbed_while_the_slack_lasts() {
        let t = tuning();
        // 4 replicas carry 4k/s; 4.2k/s arrive: the age grows 0.05 s per second.
        let s = setting(4);
        assert_eq!(scale_up(&demand(4_200.0, 20_000.0, 5.0), &s, &t), None);
        // Much later the slack is spent: add the fewest that carry the
        // arrivals and drain the backlog within what is left of the SLO.
        let up = scale_up(&demand(4_200.0, 500_000.0, 146.0), &s, &t);
        assert_eq!(up, Some(8));
    }

    #[test]
    fn a_jump_waits_while_the_slack_lasts_then_is_met() {
        let t = tuning();
        // 4x the capacity: the age grows 0.75 s per second, 50 s until new
        // replicas could arrive if added at the next observation.
        assert_eq!(
            scale_up(&demand(16_000.0, 40_000.0, 10.0), &setting(4), &t),
            None
        );
        let up = scale_up(&demand(16_000.0, 1_320_000.0, 110.0), &setting(4), &t);
        // 16k/s and 1.9M behind when they arrive: more than 24 can give.
        assert_eq!(up, Some(24));
    }

    #[test]
    fn down_to_the_fewest_that_carry_the_arrivals() {
        let t = tuning();
        let s = setting(12);
        // 5k/s: 6 replicas (6k/s); 5 work like 4.8 (24 partitions), short.
        assert_eq!(scale_down(&demand(5_000.0, 0.0, 0.0), &s, &t), 6);
        // 6.05k/s: 6 are within the tolerance; the next even count is 8.
        assert_eq!(scale_down(&demand(6_050.0, 0.0, 0.0), &s, &t), 6);
        assert_eq!(scale_down(&demand(6_500.0, 0.0, 0.0), &s, &t), 8);
        // Already 70 s behind: the slow growth under 6 would pass half the
        // target within a window.
        assert_eq!(scale_down(&demand(6_050.0, 0.0, 70.0), &s, &t), 8);
        assert_eq!(scale_down(&demand(50_000.0, 0.0, 0.0), &s, &t), 12);
    }
}
