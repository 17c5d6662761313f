//! What the operator reports back in a `PixelPipeline`'s status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::stage::PerStage;

/// Observed state of a pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PixelPipelineStatus {
    /// The spec generation this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing, Degraded, LagObserved, SLO, PartitionsHealthy and
    /// ScalingEffective conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Worker pods the operator asks for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// The worker pods' label selector, e.g.
    /// `app.kubernetes.io/instance=storefront,...`: the scale subresource's
    /// (`kubectl get --subresource scale`, a HorizontalPodAutoscaler's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Workers per stage the workers should run now; workers follow this live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools: Option<PerStage<i32>>,
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
    pub slo_state: Option<SloState>,
    /// The last scaling decision and its reason, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_decision: Option<String>,
    /// Events per second one worker pod processes flat out, measured from
    /// the workers' own busy time (the rate over the busy fraction of what
    /// limits them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_per_replica: Option<i64>,
    /// What limits each worker pod, from their evidence: `cpu`, a stage's
    /// pool (`validate pool`), `intake` (the intake limit) or `delivery`
    /// (broker acknowledgements: a partner topic or the brokers); as last
    /// seen while they were busy enough to tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bottleneck: Option<String>,
    /// The input partitions that are not healthy, or the oldest ones, worst
    /// first; at most 16.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<PartitionStatus>,
}

/// One input partition as the autoscaler sees it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PartitionStatus {
    /// The partition's number.
    pub partition: i32,
    /// Healthy, Stuck, Hot, Recovering or Unknown.
    pub state: PartitionState,
    /// Unprocessed events: from the group's committed offset to the last
    /// stable offset.
    pub lag: i64,
    /// The group's committed offset.
    pub committed: i64,
    /// Age of the partition's oldest unprocessed event, e.g. `42s`;
    /// `unknown` when it could not be read.
    pub oldest_event_age: String,
}

/// What one input partition needs from the autoscaler.
#[derive(
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    JsonSchema,
    strum::IntoStaticStr,
)]
pub enum PartitionState {
    /// Processed like the others.
    #[default]
    Healthy,
    /// Lag, no progress while its owner is Ready and other partitions
    /// progress: more replicas do not help it, so scaling leaves it out.
    Stuck,
    /// More arrivals than one replica can take: more replicas do not help
    /// it past its own one.
    Hot,
    /// Was stuck or hot and moves again, still far behind: it drains with
    /// the replica it has.
    Recovering,
    /// Lag whose oldest event could not be read in time: its age is unknown.
    Unknown,
}

impl PartitionState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// Where the oldest unprocessed event stands against the SLO.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, strum::IntoStaticStr,
)]
pub enum SloState {
    /// Within the target: the safety fraction of the SLO.
    Met,
    /// Past the target, within the SLO.
    AtRisk,
    /// Past the SLO.
    Breached,
}

impl SloState {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// An event age as `status.oldestEventAge` shows it: "42s", "3m07s", "1h02m".
pub fn age_text(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// Seconds of an age in [`age_text`]'s form; `None` for anything else.
pub fn parse_age(text: &str) -> Option<f64> {
    let mut total = 0.0;
    let mut number = String::new();
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            number.push(ch);
            continue;
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        total += n * match ch {
            'h' => 3600.0,
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
    }
    number.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_well_and_parse_back() {
        assert_eq!(age_text(42.4), "42s");
        assert_eq!(age_text(187.0), "3m07s");
        assert_eq!(age_text(3_720.0), "1h02m");
        for s in [0.0, 42.0, 187.0, 3_720.0] {
            assert_eq!(parse_age(&age_text(s)), Some(s));
        }
        assert_eq!(parse_age("12"), None);
        assert_eq!(parse_age("3x"), None);
    }
}
