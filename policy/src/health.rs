//! Per-partition health: which partitions are stuck (no progress while their
//! owner is Ready and others progress), hot (more arrivals than one replica
//! can take: more replicas cannot help it) or have a head nobody could read.
//! Scaling plans only for the partitions more replicas can help.

use std::collections::BTreeSet;
use std::fmt;

use crate::observation::{Observation, PartitionView};

pub use pixelpipe_crds::PartitionState;

/// The partitions by state, from one observation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Health {
    pub stuck: Vec<PartitionView>,
    pub hot: Vec<PartitionView>,
    pub unknown: Vec<PartitionView>,
    pub recovering: Vec<PartitionView>,
}

impl Health {
    /// Judges each partition; `was_stuck` are those stuck or hot before,
    /// which count as recovering until their planning age is back under
    /// `target`: their backlog is one replica's to drain.
    pub fn classify(
        obs: &Observation,
        per_replica: Option<f64>,
        stuck_after: f64,
        was_stuck: &BTreeSet<i32>,
        target: f64,
    ) -> Self {
        let others_progress = |p: &PartitionView| {
            obs.partitions
                .iter()
                .any(|o| o.partition != p.partition && o.progress_rate > 0.0)
        };
        let mut h = Health::default();
        for p in &obs.partitions {
            let state = match state(p, per_replica, stuck_after, || others_progress(p)) {
                PartitionState::Healthy | PartitionState::Unknown
                    if was_stuck.contains(&p.partition)
                        && p.planning_age().is_none_or(|a| a > target) =>
                {
                    PartitionState::Recovering
                }
                s => s,
            };
            match state {
                PartitionState::Healthy => {}
                PartitionState::Stuck => h.stuck.push(*p),
                PartitionState::Hot => h.hot.push(*p),
                PartitionState::Unknown => h.unknown.push(*p),
                PartitionState::Recovering => h.recovering.push(*p),
            }
        }
        h
    }

    /// The partitions stuck, hot, or still recovering from either.
    pub fn quarantined(&self) -> BTreeSet<i32> {
        self.stuck
            .iter()
            .chain(&self.hot)
            .chain(&self.recovering)
            .map(|p| p.partition)
            .collect()
    }

    pub fn state_of(&self, partition: i32) -> PartitionState {
        let has = |v: &[PartitionView]| v.iter().any(|p| p.partition == partition);
        if has(&self.stuck) {
            PartitionState::Stuck
        } else if has(&self.recovering) {
            PartitionState::Recovering
        } else if has(&self.hot) {
            PartitionState::Hot
        } else if has(&self.unknown) {
            PartitionState::Unknown
        } else {
            PartitionState::Healthy
        }
    }
}

fn state(
    p: &PartitionView,
    per_replica: Option<f64>,
    stuck_after: f64,
    others_progress: impl FnOnce() -> bool,
) -> PartitionState {
    if p.lag > 0.0 && p.still_for >= stuck_after && p.owned && others_progress() {
        PartitionState::Stuck
    } else if per_replica.is_some_and(|c| p.arrival_rate > c) {
        PartitionState::Hot
    } else if p.lag > 0.0 && p.head_age.is_none() {
        PartitionState::Unknown
    } else {
        PartitionState::Healthy
    }
}

/// "partition 3 at offset 1200, partition 7 at offset 88"
#[derive(Debug)]
pub struct Offsets<'a>(pub &'a [PartitionView]);

impl fmt::Display for Offsets<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(
                f,
                "{sep}partition {} at offset {}",
                p.partition, p.committed
            )?;
        }
        Ok(())
    }
}

/// "partitions 3, 7"
#[derive(Debug)]
pub struct Numbers<'a>(pub &'a [PartitionView]);

impl fmt::Display for Numbers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.0.len() == 1 {
            "partition"
        } else {
            "partitions"
        };
        write!(f, "{word} ")?;
        for (i, p) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{}", p.partition)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observation::Pods;

    fn view(partition: i32, lag: f64, progress: f64, still_for: f64) -> PartitionView {
        PartitionView {
            partition,
            lag,
            head_age: Some(if lag > 0.0 { 30.0 } else { 0.0 }),
            committed: 100 * i64::from(partition),
            arrival_rate: 100.0,
            progress_rate: progress,
            still_for,
            owned: true,
            in_flight: 0.0,
        }
    }

    fn obs(partitions: Vec<PartitionView>) -> Observation {
        Observation {
            now: 0.0,
            partitions,
            pods: Pods::default(),
            evidence: None,
        }
    }

    #[test]
    fn a_partition_is_stuck_only_while_others_progress() {
        let o = obs(vec![view(0, 500.0, 0.0, 90.0), view(1, 10.0, 100.0, 0.0)]);
        let h = Health::classify(&o, Some(1_000.0), 60.0, &BTreeSet::new(), 150.0);
        assert_eq!(h.state_of(0), PartitionState::Stuck);
        assert_eq!(h.state_of(1), PartitionState::Healthy);
        assert_eq!(Offsets(&h.stuck).to_string(), "partition 0 at offset 0");
        // Nothing progresses anywhere: a stall of the group, not one partition.
        let o = obs(vec![view(0, 500.0, 0.0, 90.0), view(1, 10.0, 0.0, 90.0)]);
        assert!(
            Health::classify(&o, Some(1_000.0), 60.0, &BTreeSet::new(), 150.0)
                .stuck
                .is_empty()
        );
        // Not yet long enough, or nobody Ready holds it (a rebalance).
        let o = obs(vec![view(0, 500.0, 0.0, 30.0), view(1, 10.0, 100.0, 0.0)]);
        assert!(
            Health::classify(&o, Some(1_000.0), 60.0, &BTreeSet::new(), 150.0)
                .stuck
                .is_empty()
        );
        let mut orphan = view(0, 500.0, 0.0, 90.0);
        orphan.owned = false;
        let o = obs(vec![orphan, view(1, 10.0, 100.0, 0.0)]);
        assert!(
            Health::classify(&o, Some(1_000.0), 60.0, &BTreeSet::new(), 150.0)
                .stuck
                .is_empty()
        );
    }

    #[test]
    fn a_stuck_partition_recovers_out_of_the_scalers_sight_until_caught_up() {
        let was = BTreeSet::from([0]);
        // Moving again, 600 s behind: recovering, not scaled for.
        let mut moving = view(0, 300_000.0, 800.0, 0.0);
        moving.head_age = Some(600.0);
        let o = obs(vec![moving, view(1, 10.0, 100.0, 0.0)]);
        let h = Health::classify(&o, Some(1_000.0), 60.0, &was, 150.0);
        assert_eq!(h.state_of(0), PartitionState::Recovering);
        assert_eq!(h.quarantined(), was);
        // Caught up: healthy again.
        let o = obs(vec![view(0, 10.0, 100.0, 0.0), view(1, 10.0, 100.0, 0.0)]);
        let h = Health::classify(&o, Some(1_000.0), 60.0, &was, 150.0);
        assert_eq!(h.state_of(0), PartitionState::Healthy);
        assert!(h.quarantined().is_empty());
    }

    #[test]
    fn hot_and_unknown_partitions() {
        let mut hot = view(0, 0.0, 900.0, 0.0);
        hot.arrival_rate = 1_500.0;
        let mut unreadable = view(1, 50.0, 100.0, 0.0);
        unreadable.head_age = None;
        let h = Health::classify(
            &obs(vec![hot, unreadable]),
            Some(1_000.0),
            60.0,
            &BTreeSet::new(),
            150.0,
        );
        assert_eq!(h.state_of(0), PartitionState::Hot);
        assert_eq!(h.state_of(1), PartitionState::Unknown);
        assert_eq!(Numbers(&h.hot).to_string(), "partition 0");
        // Capacity not yet known: nothing is hot.
        let h = Health::classify(&obs(vec![hot]), None, 60.0, &BTreeSet::new(), 150.0);
        assert!(h.hot.is_empty());
    }
}
