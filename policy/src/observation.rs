//! What the policy is told each observation: per partition what Kafka shows,
//! the worker pods, and the evidence the Ready ones report about themselves.
//! The operator builds it from Kafka and the workers' `/evidence`; the
//! simulator builds it from its model. Neither tells the policy a capacity.

use pixelpipe_crds::{PerStage, Stage};

/// One observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Seconds on any monotonic clock.
    pub now: f64,
    pub partitions: Vec<PartitionView>,
    pub pods: Pods,
    /// What the Ready pods that answered report, averaged per pod; `None`
    /// when none answered.
    pub evidence: Option<Evidence>,
}

impl Observation {
    /// Whether the pods' evidence says they mostly waited for the brokers'
    /// acknowledgements (no evidence: no).
    pub fn waits_on_delivery(&self) -> bool {
        self.evidence
            .as_ref()
            .is_some_and(Evidence::waits_on_delivery)
    }
}

/// One input partition over the observation window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PartitionView {
    pub partition: i32,
    /// Unprocessed events: from the committed offset to the last stable
    /// offset, transaction markers not counted.
    pub lag: f64,
    /// Seconds since the record at the committed offset was written; `Some(0)`
    /// without lag, `None` when it could not be read (unknown, never 0).
    pub head_age: Option<f64>,
    /// The group's committed offset (for naming a stuck partition).
    pub committed: i64,
    /// Events per second arriving (log-end growth over the window).
    pub arrival_rate: f64,
    /// Events per second committed over the window.
    pub progress_rate: f64,
    /// Seconds the committed offset has not moved while there was lag.
    pub still_for: f64,
    /// Whether a Ready worker reports this partition assigned to it.
    pub owned: bool,
    /// Events a worker has read but not yet committed (its outputs are on
    /// their way): part of the lag, no longer work to do. 0 when unknown.
    pub in_flight: f64,
}

impl PartitionView {
    /// The age the policy plans with: the head's age, unless the backlog
    /// behind it is far younger. One late or replayed event at the head of a
    /// short backlog ages it by hours while the rest drains in a second; the
    /// backlog divided by the rate it arrives at is how long the pipeline has
    /// really been behind. Not the rate it drains at: commits come in bursts
    /// when a worker's CPU limit throttles it (a 35m worker committed 4,700
    /// events/s over one interval and none over the next), and one burst
    /// made a minute of backlog look like twenty seconds. Events already
    /// read count as done: a slow commit makes the head old without leaving
    /// work behind it.
    pub fn planning_age(&self) -> Option<f64> {
        let head = self.head_age?;
        if self.arrival_rate <= 0.0 {
            return Some(head);
        }
        Some(head.min(self.unread() / self.arrival_rate))
    }

    /// Lag not yet read by any worker: the work still to do.
    pub fn unread(&self) -> f64 {
        (self.lag - self.in_flight).max(0.0)
    }
}

/// The worker pods of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Pods {
    /// Pods that exist (the Deployment's replicas as the operator set them).
    pub desired: i32,
    /// Pods that are Ready.
    pub ready: i32,
    /// Seconds the longest-waiting pod has been not Ready: since it was
    /// created, or since it turned not Ready.
    pub unready_for: f64,
}

/// What limits a worker: the resource it uses most of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bottleneck {
    /// The CPU the pod may use.
    Cpu,
    /// A stage's pool: every worker busy.
    Pool(Stage),
    /// The intake limit (`--max-events-per-second`).
    Intake,
    /// Waiting for broker acknowledgements or producer queue space: a slow
    /// partner topic or brokers.
    Delivery,
}

impl std::fmt::Display for Bottleneck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bottleneck::Cpu => write!(f, "cpu"),
            Bottleneck::Pool(stage) => write!(f, "{stage} pool"),
            Bottleneck::Intake => write!(f, "intake"),
            Bottleneck::Delivery => write!(f, "delivery"),
        }
    }
}

/// One stage's load, per pod.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct StageLoad {
    /// Worker-seconds per second spent working (a pool of N can give N).
    pub busy: f64,
    pub workers: f64,
}

/// The evidence of the Ready pods, per pod.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evidence {
    /// Pods it comes from.
    pub pods: usize,
    /// Events per second each pod completed (every output acknowledged).
    pub events_per_second: f64,
    /// How busy the bottleneck resource was, 0..1.
    pub utilization: f64,
    pub bottleneck: Bottleneck,
    pub stages: PerStage<StageLoad>,
    /// CPU cores a pod may use.
    pub cores: f64,
}

impl Evidence {
    /// Flink's "true processing rate": what a pod would process with its
    /// bottleneck fully busy. `None` when it was too idle to tell.
    pub fn true_rate(&self) -> Option<f64> {
        (self.utilization >= MIN_UTILIZATION && self.events_per_second > 0.0)
            .then(|| self.events_per_second / self.utilization)
    }

    /// Whether the pods mostly waited for the brokers' acknowledgements.
    pub fn waits_on_delivery(&self) -> bool {
        self.bottleneck == Bottleneck::Delivery
    }
}

/// Below this the ratio of rate to utilization is mostly noise.
pub const MIN_UTILIZATION: f64 = 0.05;

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(lag: f64, head_age: f64, arrival_rate: f64, progress_rate: f64) -> PartitionView {
        PartitionView {
            partition: 0,
            lag,
            head_age: Some(head_age),
            committed: 0,
            arrival_rate,
            progress_rate,
            still_for: 0.0,
            owned: true,
            in_flight: 0.0,
        }
    }

    #[test]
    fn a_backlog_is_as_old_as_its_arrivals_say_whatever_one_burst_of_commits_drained() {
        // 60 s of arrivals waiting; one interval committed at four times
        // the arrival rate.
        assert_eq!(
            partition(60_000.0, 70.0, 1_000.0, 4_000.0).planning_age(),
            Some(60.0)
        );
        // One late event at the head of a second's backlog.
        assert_eq!(
            partition(1_000.0, 3_600.0, 1_000.0, 0.0).planning_age(),
            Some(1.0)
        );
        // Nothing arriving: the head says it.
        assert_eq!(
            partition(500.0, 42.0, 0.0, 100.0).planning_age(),
            Some(42.0)
        );
    }
}
