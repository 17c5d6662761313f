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
    /// Ready, Progressing, Degraded and SLO conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Worker pods the operator asks for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
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
