//! What the operator reports back in a `PixelPipeline`'s status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of a pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PixelPipelineStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded and SLO conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Worker pods the operator asks for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Workers per stage the workers should run now; workers follow this live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<PoolSizes>,
    /// Pools as `parse/validate/augment/produce`, for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_summary: Option<String>,
    /// Unprocessed events over all input partitions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<i64>,
    /// Age of the oldest unprocessed event, e.g. `42s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_event_age: Option<String>,
    /// Events per second arriving on the input topic, over the observation window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_rate: Option<i64>,
    /// Events per second the workers committed, over the observation window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processing_rate: Option<i64>,
    /// Met, AtRisk or Breached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_state: Option<String>,
    /// The last scaling decision and its reason, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
}

/// Workers per stage.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PoolSizes {
    /// Parse workers.
    pub parse: i32,
    /// Validate workers.
    pub validate: i32,
    /// Augment workers.
    pub augment: i32,
    /// Produce workers.
    pub produce: i32,
}
