//! What autoscaling remembers about one pipeline between observations.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use pixelpipe_crds::evidence::WorkerEvidence;
use pixelpipe_policy::reading::{Usage, usage};
use pixelpipe_policy::{Pods, Policy};

use crate::observer::{Cluster, History, Snapshot};
use crate::sizes::Sizes;

/// What a lag observer reads: brokers, topic and group.
pub type Source = (String, String, String);

/// Worker pods whose last report is kept at most (far more than a pipeline
/// runs: replicas never exceed partitions).
const MAX_PODS: usize = 4096;

/// One pipeline's autoscaling memory.
#[derive(Debug)]
pub struct State {
    /// The client pool of the pipeline's cluster and credentials; holding it
    /// keeps it open.
    pub cluster: Option<Arc<Cluster>>,
    /// What the observer reads; a change starts afresh.
    pub source: Source,
    /// Versions of the credentials the observer was built with.
    pub credentials: String,
    pub history: History,
    pub still: Stillness,
    pub reports: Reports,
    /// Since when (policy clock) fewer pods were Ready than asked for.
    pub short_since: Option<f64>,
    pub policy: Policy,
    /// The sizes this operator last applied: the controller's cache may not
    /// show its own status write yet, and deciding again from the older
    /// sizes would repeat the decision (and its Event).
    pub applied: Option<Sizes>,
    /// `spec.replicas.initial` as last seen (`None` before the first look):
    /// a change is a `kubectl scale`.
    pub initial: Option<Option<i32>>,
    /// The last decision that changed something, in words (for the status).
    pub last_decision: Option<String>,
    pub next_observation: Instant,
}

impl State {
    pub fn fresh(source: Source, now: Instant) -> Self {
        Self {
            cluster: None,
            source,
            credentials: String::new(),
            history: History::default(),
            still: Stillness::default(),
            reports: Reports::default(),
            short_since: None,
            policy: Policy::default(),
            applied: None,
            initial: None,
            last_decision: None,
            next_observation: now,
        }
    }
}

impl State {
    /// How long, at `now`, fewer pods have been Ready than asked for: pods
    /// that could not even be created (a quota, a webhook) have no age of
    /// their own, and a pod replaced by a new one restarts its age.
    pub fn short_for(&mut self, now: f64, pods: &Pods) -> f64 {
        if pods.ready >= pods.desired {
            self.short_since = None;
            return 0.0;
        }
        now - *self.short_since.get_or_insert(now)
    }
}

/// Since when each partition's committed offset has not moved while it had
/// lag.
#[derive(Debug, Clone, Default)]
pub struct Stillness {
    /// partition -> (committed offset, milliseconds since the epoch it was
    /// first seen there with lag)
    since: HashMap<i32, (i64, i64)>,
}

impl Stillness {
    pub fn update(&mut self, s: &Snapshot) {
        self.since
            .retain(|p, _| s.partitions.iter().any(|x| x.partition == *p));
        for p in &s.partitions {
            let entry = self
                .since
                .entry(p.partition)
                .or_insert((p.committed, s.at_ms));
            if entry.0 != p.committed || p.lag() == 0 {
                *entry = (p.committed, s.at_ms);
            }
        }
    }

    /// Seconds `partition` has been still at `at_ms`.
    pub fn still_for(&self, partition: i32, at_ms: i64) -> f64 {
        self.since
            .get(&partition)
            .map_or(0.0, |&(_, since)| (at_ms - since).max(0) as f64 / 1000.0)
    }
}

/// Reports kept per pod: enough for a window of three intervals.
const REPORTS_PER_POD: usize = 8;

/// Each pod's recent reports, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Reports {
    kept: HashMap<String, VecDeque<WorkerEvidence>>,
}

impl Reports {
    /// Each pod's usage over about `span` seconds (its oldest report within
    /// the span, or the oldest it has, to the new one), for the pods that
    /// reported before; remembers the new reports and forgets pods that did
    /// not answer. Acknowledgements and reads come in bursts, and one short
    /// interval would show the burst, not the rate.
    pub fn update(&mut self, fresh: &[(String, WorkerEvidence)], span: f64) -> Vec<Usage> {
        let mut kept = HashMap::with_capacity(fresh.len());
        let mut usages = Vec::new();
        for (pod, now) in fresh.iter().take(MAX_PODS) {
            let mut history = self.kept.remove(pod).unwrap_or_default();
            // A restart starts the history over.
            history.retain(|r| r.uptime_seconds < now.uptime_seconds);
            let from = history
                .iter()
                .find(|r| now.uptime_seconds - r.uptime_seconds <= span + 1e-6)
                .or(history.back());
            if let Some(u) = from.and_then(|before| usage(before, now)) {
                usages.push(u);
            }
            history.push_back(now.clone());
            while history.len() > REPORTS_PER_POD {
                history.pop_front();
            }
            kept.insert(pod.clone(), history);
        }
        self.kept = kept;
        usages
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::{Head, PartitionLag};

    fn snap(at_s: i64, committed: i64, log_end: i64) -> Snapshot {
        Snapshot {
            at_ms: at_s * 1000,
            partitions: vec![PartitionLag {
                partition: 0,
                log_end,
                committed,
                head: if log_end > committed {
                    Head::Unknown
                } else {
                    Head::CaughtUp
                },
            }],
        }
    }

    #[test]
    fn a_partition_is_still_from_when_its_offset_stopped_with_lag() {
        let mut s = Stillness::default();
        s.update(&snap(0, 10, 10));
        s.update(&snap(10, 20, 30));
        s.update(&snap(20, 20, 40));
        s.update(&snap(50, 20, 50));
        assert_eq!(s.still_for(0, 50_000), 40.0);
        s.update(&snap(60, 25, 50));
        assert_eq!(s.still_for(0, 60_000), 0.0, "it moved");
        assert_eq!(s.still_for(9, 60_000), 0.0, "unknown partition");
    }

    #[test]
    fn usage_needs_two_reports_of_the_same_pod_and_spans_the_window() {
        let mut r = Reports::default();
        let report = |t: f64, n: u64| WorkerEvidence {
            uptime_seconds: t,
            events_completed: n,
            cores: 2.0,
            ..WorkerEvidence::default()
        };
        assert!(
            r.update(&[("a".into(), report(10.0, 100))], 30.0)
                .is_empty()
        );
        let u = r.update(
            &[
                ("a".into(), report(20.0, 1100)),
                ("b".into(), report(5.0, 0)),
            ],
            30.0,
        );
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].events_per_second, 100.0);
        // Over the span: from t=10 (100 events) to t=40 (4100).
        let u = r.update(&[("a".into(), report(40.0, 4100))], 30.0);
        assert_eq!(u[0].events_per_second, 4000.0 / 30.0);
        assert!(
            !r.kept.contains_key("b"),
            "a pod that did not answer is forgotten"
        );
        // Restarted: nothing to difference against.
        assert!(r.update(&[("a".into(), report(1.0, 5))], 30.0).is_empty());
    }
}
