//! Events through the partitions, second by second: arrivals, processing by
//! the Ready replicas, commits, and what an observer of Kafka would see.
//!
//! Partition 0 is a lane of its own (it is the one a pathology makes stuck or
//! hot); the other partitions behave alike, so one lane stands for all of them.

use pixelpipe_policy::{Bottleneck, Evidence, PartitionView, StageLoad, effective_replicas};

use pixelpipe_crds::PerStage;

use crate::world::{COMMIT_EVERY, World};

/// One or more partitions that behave alike.
#[derive(Debug, Clone)]
struct Lane {
    partitions: usize,
    /// Per partition, cumulative at the end of each second.
    arrived: Vec<f64>,
    processed: Vec<f64>,
    committed: Vec<f64>,
    /// Oldest second whose arrivals are not all committed.
    head: usize,
    /// When the committed offset last moved.
    moved_at: f64,
}

impl Lane {
    fn new(partitions: usize, seconds: usize) -> Self {
        Self {
            partitions,
            arrived: Vec::with_capacity(seconds),
            processed: Vec::with_capacity(seconds),
            committed: Vec::with_capacity(seconds),
            head: 0,
            moved_at: 0.0,
        }
    }

    fn last(v: &[f64]) -> f64 {
        v.last().copied().unwrap_or(0.0)
    }

    fn available(&self, arriving: f64) -> f64 {
        Self::last(&self.arrived) + arriving - Self::last(&self.processed)
    }

    fn lag(&self) -> f64 {
        (Self::last(&self.arrived) - Self::last(&self.committed)).max(0.0)
    }

    /// Seconds since the oldest uncommitted event arrived.
    fn age(&mut self, t: usize) -> f64 {
        let committed = Self::last(&self.committed);
        while self.head < t && self.arrived[self.head] <= committed + 1e-6 {
            self.head += 1;
        }
        if self.lag() > 0.5 {
            (t - self.head) as f64
        } else {
            0.0
        }
    }

    fn rate(v: &[f64], window: usize) -> f64 {
        let n = v.len();
        if n < 2 {
            return 0.0;
        }
        let back = window.min(n - 1);
        (v[n - 1] - v[n - 1 - back]) / back as f64
    }
}

/// What one second did.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Second {
    pub processed: f64,
    /// Events/s the Ready replicas could have processed this second.
    pub capacity: f64,
    /// Whether the partner refused more than it took.
    pub partner_limited: bool,
}

/// The partitions and their offsets.
#[derive(Debug, Clone)]
pub struct Flow {
    lanes: [Lane; 2],
    partitions: i32,
    t: usize,
}

impl Flow {
    pub fn new(partitions: i32, seconds: usize) -> Self {
        let p = partitions.max(1) as usize;
        Self {
            lanes: [Lane::new(1, seconds), Lane::new(p - 1, seconds)],
            partitions: partitions.max(1),
            t: 0,
        }
    }

    /// One second: `rate` events/s arrive, `members` Ready replicas process
    /// (none while `paused`), and every 2 s the offsets are committed.
    pub fn step(&mut self, world: &World, rate: f64, members: i32, paused: bool) -> Second {
        let now = self.t as f64;
        let share = rate / f64::from(self.partitions);
        let arriving = [share + world.hot_extra_at(now), share];
        let c = world.capacity_at(now);
        let mut take = [0.0, 0.0];
        let mut second = Second::default();
        if members > 0 && !paused {
            second.capacity = c * f64::from(members.min(self.partitions));
            // The replica with the most partitions is the bottleneck: every
            // partition gets its share of that replica.
            let busiest = f64::from(self.partitions) / effective_replicas(members, self.partitions);
            let per_partition = c / busiest;
            take[1] = self.lanes[1].available(arriving[1]).min(per_partition);
            take[0] = if world.stuck_at(now) {
                0.0
            } else {
                // Partition 0's replica gives the rest of it to partition 0.
                let room = (c - (busiest - 1.0) * take[1]).max(per_partition);
                self.lanes[0].available(arriving[0]).min(room)
            };
            let total = take[0] + take[1] * self.lanes[1].partitions as f64;
            if let Some(limit) = world.partner_limit_at(now, rate)
                && total > limit
            {
                let f = limit / total;
                take = [take[0] * f, take[1] * f];
                second.partner_limited = true;
            }
        }
        let commit = self.t.is_multiple_of(COMMIT_EVERY);
        let delay = world.commit_delay_at(now).round() as usize;
        for (lane, (arrive, took)) in self.lanes.iter_mut().zip(arriving.into_iter().zip(take)) {
            lane.arrived.push(Lane::last(&lane.arrived) + arrive);
            lane.processed.push(Lane::last(&lane.processed) + took);
            let before = Lane::last(&lane.committed);
            let committed = if commit {
                let i = lane.processed.len().saturating_sub(1 + delay);
                lane.processed.get(i).copied().unwrap_or(0.0).max(before)
            } else {
                before
            };
            if committed > before + 1e-9 {
                lane.moved_at = now;
            }
            lane.committed.push(committed);
            second.processed += took * lane.partitions as f64;
        }
        self.t += 1;
        second
    }

    /// Unprocessed events over all partitions.
    pub fn lag(&self) -> f64 {
        self.lanes
            .iter()
            .map(|l| l.lag() * l.partitions as f64)
            .sum()
    }

    /// The oldest unprocessed event's age over all partitions.
    pub fn oldest_age(&mut self) -> f64 {
        let t = self.t.saturating_sub(1);
        let ages = self
            .lanes
            .iter_mut()
            .filter(|l| l.partitions > 0)
            .map(|l| l.age(t));
        ages.fold(0.0, f64::max)
    }

    /// What an observer of Kafka sees, per partition: arrivals over the last
    /// `interval`, progress over `window` (commits come in steps).
    pub fn partitions(
        &mut self,
        interval: usize,
        window: usize,
        owned: bool,
    ) -> Vec<PartitionView> {
        let t = self.t.saturating_sub(1);
        let now = t as f64;
        let views: Vec<(usize, PartitionView)> = self
            .lanes
            .iter_mut()
            .map(|lane| {
                let lag = lane.lag();
                let view = PartitionView {
                    partition: 0,
                    lag,
                    head_age: Some(lane.age(t)),
                    committed: Lane::last(&lane.committed) as i64,
                    arrival_rate: Lane::rate(&lane.arrived, interval),
                    progress_rate: Lane::rate(&lane.committed, window),
                    still_for: if lag > 0.5 { now - lane.moved_at } else { 0.0 },
                    owned,
                    in_flight: (Lane::last(&lane.processed) - Lane::last(&lane.committed)).max(0.0),
                };
                (lane.partitions, view)
            })
            .collect();
        let mut out = Vec::with_capacity(self.partitions as usize);
        let mut number = 0;
        for (count, view) in views {
            for _ in 0..count {
                out.push(PartitionView {
                    partition: number,
                    ..view
                });
                number += 1;
            }
        }
        out
    }
}

/// What the workers report over an observation interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Meter {
    processed: f64,
    capacity: f64,
    member_seconds: f64,
    partner_limited: bool,
    seconds: f64,
}

impl Meter {
    pub fn add(&mut self, s: Second, members: i32) {
        self.processed += s.processed;
        self.capacity += s.capacity;
        self.member_seconds += f64::from(members);
        self.partner_limited |= s.partner_limited;
        self.seconds += 1.0;
    }

    /// The Ready pods' evidence, per pod, as `/evidence` would give it;
    /// `noise` in -1..1 scales the busy fraction by up to 5 %.
    pub fn evidence(&self, delivery_bound: bool, noise: f64) -> Option<Evidence> {
        if self.member_seconds <= 0.0 || self.capacity <= 0.0 {
            return None;
        }
        let pods = (self.member_seconds / self.seconds).round().max(1.0);
        let per_pod = self.processed / self.member_seconds;
        let busy = if self.partner_limited {
            1.0
        } else {
            (self.processed / self.capacity).min(1.0)
        };
        let utilization = (busy * (1.0 + 0.05 * noise)).clamp(0.0, 1.0);
        let bottleneck = if delivery_bound || self.partner_limited {
            Bottleneck::Delivery
        } else {
            Bottleneck::Cpu
        };
        Some(Evidence {
            pods: pods as usize,
            events_per_second: per_pod,
            utilization,
            bottleneck,
            stages: PerStage::from_fn(|_| StageLoad {
                busy: utilization * 0.4,
                workers: 2.0,
            }),
            cores: 2.0,
        })
    }
}
