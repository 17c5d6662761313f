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
    /// backlog divided by the rate it arrives and drains at is how long the
    /// pipeline has really been behind. Events already read count as done:
    /// a slow commit makes the head old without leaving work behind it.
    pub fn planning_age(&self) -> Option<f64> {
        let head = self.head_age?;
        let rate = self.arrival_rate.max(self.progress_rate);
        if rate <= 0.0 {
            return Some(head);
        }
        Some(head.min(self.unread() / rate))
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
}

/// Below this the ratio of rate to utilization is mostly noise.
pub const MIN_UTILIZATION: f64 = 0.05;
