//! The policy's view of one observation, from Kafka's snapshots over the
//! window, the worker pods and what the Ready ones report. Pure.

use std::collections::BTreeMap;

use pixelpipe_crds::evidence::WorkerEvidence;
use pixelpipe_policy::{Evidence, Observation, PartitionView, Pods};

use super::state::Stillness;
use crate::observer::{PartitionLag, Snapshot};
use crate::pods::WorkerPod;

/// What one observation is built from.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// Seconds on the policy's clock.
    pub now: f64,
    /// The window's first and last snapshots.
    pub first: &'a Snapshot,
    pub last: &'a Snapshot,
    pub still: &'a Stillness,
    pub pods: &'a [WorkerPod],
    /// The replicas the Deployment is asked for.
    pub desired: i32,
    /// The latest report of each Ready pod that answered.
    pub reports: &'a [(String, WorkerEvidence)],
    pub evidence: Option<Evidence>,
}

pub fn observation(i: &Inputs<'_>) -> Observation {
    let span = ((i.last.at_ms - i.first.at_ms) as f64 / 1000.0).max(1e-3);
    let assigned = assigned(i.reports);
    let partitions = i
        .last
        .partitions
        .iter()
        .map(|p| view(i, &assigned, p, i.first.partition(p.partition), span))
        .collect();
    Observation {
        now: i.now,
        partitions,
        pods: pods(i.pods, i.desired),
        evidence: i.evidence,
    }
}

/// The partitions Ready workers report assigned to them, each with the
/// furthest any of them has read (read, not yet committed).
fn assigned(reports: &[(String, WorkerEvidence)]) -> BTreeMap<i32, Option<i64>> {
    let mut assigned = BTreeMap::new();
    for x in reports.iter().flat_map(|(_, r)| &r.partitions) {
        let read: &mut Option<i64> = assigned.entry(x.partition).or_default();
        *read = (*read).max(x.read);
    }
    assigned
}

fn view(
    i: &Inputs<'_>,
    assigned: &BTreeMap<i32, Option<i64>>,
    p: &PartitionLag,
    before: Option<&PartitionLag>,
    span: f64,
) -> PartitionView {
    let rate = |now: i64, then: Option<i64>| then.map_or(0.0, |t| (now - t).max(0) as f64 / span);
    let lag = p.lag();
    let read = assigned.get(&p.partition).copied().flatten();
    PartitionView {
        partition: p.partition,
        lag: lag as f64,
        head_age: p.head_age(i.last.at_ms),
        committed: p.committed,
        arrival_rate: rate(p.log_end, before.map(|b| b.log_end)),
        progress_rate: rate(p.committed, before.map(|b| b.committed)),
        still_for: i.still.still_for(p.partition, i.last.at_ms),
        owned: assigned.contains_key(&p.partition),
        in_flight: read.map_or(0, |r| (r - p.committed).clamp(0, lag)) as f64,
    }
}

/// The pods as the policy counts them: Ready ones, and how long the
/// longest-waiting other one has been not Ready. Pods being deleted count
/// for neither.
pub fn pods(pods: &[WorkerPod], desired: i32) -> Pods {
    let live = pods.iter().filter(|p| !p.terminating);
    let ready = live.clone().filter(|p| p.ready).count();
    let unready_for = live
        .filter(|p| !p.ready)
        .map(|p| p.unchanged_for)
        .fold(0.0, f64::max);
    Pods {
        desired,
        ready: i32::try_from(ready).unwrap_or(i32::MAX),
        unready_for,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::Head;
    use crate::observer::tests::part;
    use pixelpipe_crds::evidence::PartitionProgress;

    fn pod(name: &str, ready: bool, unchanged_for: f64) -> WorkerPod {
        WorkerPod {
            name: name.into(),
            ip: Some("127.0.1.2".into()),
            ready,
            unchanged_for,
            terminating: false,
            failure: None,
        }
    }

    #[test]
    fn partitions_carry_their_rates_age_stillness_and_what_workers_read() {
        let first = Snapshot {
            at_ms: 0,
            partitions: vec![
                part(0, 1_000, 900, Head::Unknown),
                part(1, 50, 50, Head::CaughtUp),
            ],
        };
        let last = Snapshot {
            at_ms: 10_000,
            partitions: vec![
                part(
                    0,
                    2_000,
                    1_400,
                    Head::Event {
                        offset: 1_400,
                        timestamp_ms: 4_000,
                    },
                ),
                part(1, 80, 80, Head::CaughtUp),
            ],
        };
        let mut still = Stillness::default();
        still.update(&first);
        still.update(&last);
        let reports = vec![(
            "w-1".to_string(),
            WorkerEvidence {
                partitions: vec![PartitionProgress {
                    partition: 0,
                    read: Some(1_900),
                    done: Some(1_500),
                }],
                ..WorkerEvidence::default()
            },
        )];
        let pods = [pod("w-1", true, 100.0), pod("w-2", false, 40.0)];
        let obs = observation(&Inputs {
            now: 10.0,
            first: &first,
            last: &last,
            still: &still,
            pods: &pods,
            desired: 2,
            reports: &reports,
            evidence: None,
        });
        let p0 = obs.partitions[0];
        assert_eq!(
            (p0.lag, p0.head_age, p0.committed),
            (600.0, Some(6.0), 1_400)
        );
        assert_eq!((p0.arrival_rate, p0.progress_rate), (100.0, 50.0));
        assert_eq!((p0.owned, p0.in_flight), (true, 500.0));
        let p1 = obs.partitions[1];
        assert_eq!((p1.lag, p1.owned, p1.in_flight), (0.0, false, 0.0));
        assert_eq!(
            obs.pods,
            Pods {
                desired: 2,
                ready: 1,
                unready_for: 40.0
            }
        );
    }
}
