//! The words of a PixelPipeline's status and Events that programs read:
//! condition types and Event reasons. One definition each, so the operator
//! that writes them and the tools and tests that read them cannot drift.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

/// The condition types of a PixelPipeline's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString)]
pub enum ConditionType {
    /// Every worker pod the operator asks for is available.
    Ready,
    /// A rollout of the workers is under way.
    Progressing,
    /// The spec cannot be run, or the children could not be written.
    Degraded,
    /// The consumer group's lag could be read from Kafka.
    LagObserved,
    /// The oldest unprocessed event is within the SLO's target.
    #[strum(serialize = "SLO")]
    Slo,
    /// No input partition is stuck or hot.
    PartitionsHealthy,
    /// More replicas would add capacity: no pods that fail to become Ready,
    /// no partner topic or brokers limiting delivery.
    ScalingEffective,
    /// Another autoscaler (a HorizontalPodAutoscaler) scales the workers or
    /// the pipeline; the message says what the operator leaves to it.
    ForeignScaler,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A condition's `status`.
pub fn condition_status(holds: bool) -> &'static str {
    if holds { "True" } else { "False" }
}

/// The condition of `type_` among `conditions`.
pub fn find_condition(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Whether the condition of `type_` is present and True.
pub fn condition_holds(conditions: &[Condition], type_: ConditionType) -> bool {
    find_condition(conditions, type_).is_some_and(|c| c.status == condition_status(true))
}

/// Reasons of the Events the operator records on a PixelPipeline.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::Display,
)]
pub enum EventReason {
    /// A child (Deployment, ConfigMap, ...) was created.
    Created,
    /// A child was changed.
    Updated,
    /// The spec cannot be run (Warning).
    InvalidSpec,
    /// A child could not be written (Warning).
    ApplyFailed,
    /// The autoscaler added capacity.
    ScaledUp,
    /// The autoscaler removed capacity.
    ScaledDown,
    /// DryRun: what the autoscaler would do.
    Recommendation,
    /// Kafka could not be read; nothing is scaled on stale data (Warning).
    KafkaUnreachable,
    /// A partition is stuck or hot; scaling leaves it out (Warning).
    PartitionsUnhealthy,
    /// More replicas would not help: pods not becoming Ready, or delivery
    /// limited by a partner topic or the brokers (Warning).
    ScalingIneffective,
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Scaling decisions, applied or recommended.
    pub fn is_scaling(self) -> bool {
        matches!(
            self,
            EventReason::ScaledUp | EventReason::ScaledDown | EventReason::Recommendation
        )
    }
}
