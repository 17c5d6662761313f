//! How big a pipeline runs and how it is resized: replica and pool bounds,
//! batching, input limits, the SLO and the autoscaler's settings.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Bounds on worker pods. Never more replicas than input partitions are used.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("replicas.min must not exceed replicas.max"))]
#[x_kube(validation = Rule::new("!has(self.initial) || self.initial <= self.max").message("replicas.initial must not exceed replicas.max"))]
#[serde(rename_all = "camelCase")]
pub struct ReplicasSpec {
    /// Fewest worker pods.
    #[schemars(range(min = 1))]
    pub min: i32,
    /// Most worker pods.
    #[schemars(range(min = 1))]
    pub max: i32,
    /// Pods to start with, at least `min` (the API server fills in 1 when it
    /// is omitted, which means `min`: the scale subresource needs a value
    /// here). `kubectl scale` sets it. With autoscaling Enabled the operator
    /// moves the count from here within min and max, and a change of it sets
    /// the count at once, held for a stabilization window unless the
    /// evidence calls for more; with DryRun or Disabled this is the count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1), extend("default" = 1))]
    pub initial: Option<i32>,
}

/// One stage's pool: its starting size and the bounds autoscaling keeps to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(validation = Rule::new("self.minWorkers <= self.workers && self.workers <= self.maxWorkers").message("workers must lie between minWorkers and maxWorkers"))]
#[serde(rename_all = "camelCase")]
pub struct StagePool {
    /// Workers to start with. With autoscaling Enabled the operator moves the
    /// size within minWorkers and maxWorkers; with DryRun or Disabled this is the size.
    #[serde(default = "default_workers")]
    #[schemars(range(min = 1, max = 256))]
    pub workers: i32,
    /// Fewest workers autoscaling may leave.
    #[serde(default = "default_min_workers")]
    #[schemars(range(min = 1, max = 256))]
    pub min_workers: i32,
    /// Most workers autoscaling may start.
    #[serde(default = "default_max_workers")]
    #[schemars(range(min = 1, max = 256))]
    pub max_workers: i32,
}

impl Default for StagePool {
    fn default() -> Self {
        Self {
            workers: default_workers(),
            min_workers: default_min_workers(),
            max_workers: default_max_workers(),
        }
    }
}

fn default_workers() -> i32 {
    2
}
fn default_min_workers() -> i32 {
    1
}
fn default_max_workers() -> i32 {
    32
}

/// Batching of events into jobs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// Events per batch job, at most.
    #[serde(default = "default_max_events")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_events: i32,
    /// Milliseconds a batch waits to fill after its first event.
    #[serde(default = "default_max_wait_ms")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_wait_ms: i32,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_wait_ms: default_max_wait_ms(),
        }
    }
}

fn default_max_events() -> i32 {
    250
}
fn default_max_wait_ms() -> i32 {
    50
}

/// What a worker accepts from the input topic.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Larger payloads are dead-lettered as `oversized`.
    #[serde(default = "default_max_event_bytes")]
    #[schemars(range(min = 1, max = 16777216))]
    pub max_event_bytes: u32,
    /// Events stamped further than this many seconds in the future are dead-lettered.
    #[serde(default = "default_future_skew")]
    #[schemars(range(min = 0, max = 86400))]
    pub max_future_skew_seconds: u32,
}

impl Default for LimitsSpec {
    fn default() -> Self {
        Self {
            max_event_bytes: default_max_event_bytes(),
            max_future_skew_seconds: default_future_skew(),
        }
    }
}

fn default_max_event_bytes() -> u32 {
    64 * 1024
}
fn default_future_skew() -> u32 {
    300
}

/// The service level objective.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SloSpec {
    /// The oldest unprocessed event must stay younger than this many seconds.
    #[serde(default = "default_max_event_age")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_event_age_seconds: i32,
}

impl Default for SloSpec {
    fn default() -> Self {
        Self {
            max_event_age_seconds: default_max_event_age(),
        }
    }
}

fn default_max_event_age() -> i32 {
    300
}

/// Whether and how the operator resizes the pipeline.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AutoscalingMode {
    /// Decide and apply.
    #[default]
    Enabled,
    /// Decide and report in the status, change nothing.
    DryRun,
    /// Keep the declared sizes.
    Disabled,
}

impl AutoscalingMode {
    /// Whether the operator applies what it decides (not only reports it).
    pub fn applies(self) -> bool {
        self == AutoscalingMode::Enabled
    }
}

/// Autoscaling settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Enabled, DryRun or Disabled.
    #[serde(default)]
    pub mode: AutoscalingMode,
    /// Seconds between lag observations.
    #[serde(default = "default_observation_interval")]
    #[schemars(range(min = 1, max = 300))]
    pub observation_interval_seconds: i32,
    /// Seconds the recommendation must stay lower before scaling down.
    #[serde(default = "default_stabilization")]
    #[schemars(range(min = 0, max = 3600))]
    pub scale_down_stabilization_seconds: i32,
    /// Seconds a new worker pod takes to start consuming; with the rebalance
    /// pause and one interval it is the cooldown after a replica change.
    #[serde(default = "default_pod_start")]
    #[schemars(range(min = 0, max = 3600))]
    pub pod_start_seconds: i32,
    /// Seconds the consumer group pauses to rebalance when members change.
    #[serde(default = "default_rebalance")]
    #[schemars(range(min = 0, max = 600))]
    pub rebalance_seconds: i32,
    /// Seconds a partition may make no progress, with lag, while its owner
    /// is Ready and other partitions progress, before it counts as stuck:
    /// reported, and left out of what replicas are added for.
    #[serde(default = "default_stuck_after")]
    #[schemars(range(min = 5, max = 3600))]
    pub stuck_after_seconds: i32,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            mode: AutoscalingMode::default(),
            observation_interval_seconds: default_observation_interval(),
            scale_down_stabilization_seconds: default_stabilization(),
            pod_start_seconds: default_pod_start(),
            rebalance_seconds: default_rebalance(),
            stuck_after_seconds: default_stuck_after(),
        }
    }
}

fn default_observation_interval() -> i32 {
    10
}
fn default_stabilization() -> i32 {
    300
}
fn default_pod_start() -> i32 {
    60
}
fn default_rebalance() -> i32 {
    15
}
fn default_stuck_after() -> i32 {
    60
}
