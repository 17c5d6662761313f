//! The Events the operator records on a PixelPipeline: which one a step
//! calls for (pure), and publishing it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use pixelpipe_crds::reasons::{ConditionType, EventReason, condition_status, find_condition};
use pixelpipe_crds::{PartitionState, PixelPipeline, PixelPipelineStatus};

use crate::autoscale::Step;

/// A Warning Event.
pub fn warning(reason: EventReason, action: &str, note: String) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.as_str().into(),
        note: Some(note),
        action: action.into(),
        secondary: None,
    }
}

/// The Events an autoscaling step calls for: one per scale action (Enabled),
/// one per new recommendation (DryRun), one when Kafka becomes unreachable,
/// and a Warning when partitions turn unhealthy (again when one more does)
/// or scaling ineffective (or for a new reason).
pub fn of_step(pp: &PixelPipeline, step: &Step, next: &PixelPipelineStatus) -> Vec<Event> {
    if step.kafka_error.is_some() {
        return turned_false(
            pp,
            next,
            ConditionType::LagObserved,
            EventReason::KafkaUnreachable,
        )
        .into_iter()
        .collect();
    }
    let ineffective = turned_false(
        pp,
        next,
        ConditionType::ScalingEffective,
        EventReason::ScalingIneffective,
    );
    scaling(pp, step)
        .into_iter()
        .chain(partitions_unhealthy(pp, next))
        .chain(ineffective)
        .collect()
}

/// A Warning when condition `type_` is False in `next` and was not, or was
/// for another reason.
fn turned_false(
    pp: &PixelPipeline,
    next: &PixelPipelineStatus,
    type_: ConditionType,
    reason: EventReason,
) -> Option<Event> {
    newly_false(pp, next, type_).map(|now| warning(reason, "Observe", now.message.clone()))
}

/// Condition `type_` of `next` when it is False and was not, or was for
/// another reason.
fn newly_false<'a>(
    pp: &PixelPipeline,
    next: &'a PixelPipelineStatus,
    type_: ConditionType,
) -> Option<&'a Condition> {
    let now = false_in(next, type_)?;
    let before = pp
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, type_));
    let same = before.is_some_and(|b| b.status == now.status && b.reason == now.reason);
    (!same).then_some(now)
}

fn false_in(status: &PixelPipelineStatus, type_: ConditionType) -> Option<&Condition> {
    find_condition(&status.conditions, type_).filter(|c| c.status == condition_status(false))
}

/// A Warning when partitions turn unhealthy, and again each time one more
/// does: the one that goes wrong after the first few is named in an Event
/// too, not only in the status. The recorder folds Events with the same
/// reason and action into one series that keeps the first note, so the
/// action names the partitions.
fn partitions_unhealthy(pp: &PixelPipeline, next: &PixelPipelineStatus) -> Option<Event> {
    let type_ = ConditionType::PartitionsHealthy;
    let condition = false_in(next, type_)?;
    let now = unhealthy(next);
    let before = pp.status.as_ref().map(unhealthy).unwrap_or_default();
    let one_more = now.iter().any(|p| !before.contains(p));
    if newly_false(pp, next, type_).is_none() && !one_more {
        return None;
    }
    let action = if now.is_empty() {
        "Observe".to_string()
    } else {
        let list: Vec<String> = now.iter().map(i32::to_string).collect();
        format!("Observe partitions {}", list.join(","))
    };
    // The Events API caps an action at 128 bytes.
    Some(warning(
        EventReason::PartitionsUnhealthy,
        &truncate(action, 128),
        condition.message.clone(),
    ))
}

/// The partitions stuck or hot in `status`, in order.
fn unhealthy(status: &PixelPipelineStatus) -> Vec<i32> {
    let mut partitions: Vec<i32> = status
        .partitions
        .iter()
        .filter(|p| matches!(p.state, PartitionState::Stuck | PartitionState::Hot))
        .map(|p| p.partition)
        .collect();
    partitions.sort_unstable();
    partitions
}

/// The scale action's or recommendation's Event.
fn scaling(pp: &PixelPipeline, step: &Step) -> Option<Event> {
    let note = step.summary.clone()?;
    let reason = match (&step.apply, step.up) {
        (Some(_), true) => EventReason::ScaledUp,
        (Some(_), false) => EventReason::ScaledDown,
        (None, _) => {
            // DryRun: one Event per new recommendation, not per observation.
            let last = pp.status.as_ref().and_then(|s| s.last_decision.as_deref());
            if last == Some(note.as_str()) {
                return None;
            }
            EventReason::Recommendation
        }
    };
    // The recorder folds Events with the same reason and action into one
    // series that keeps the first note, so the sizes from and to go in the
    // action: each distinct change stays visible in `kubectl describe`, and
    // only a repeat of the same change is counted as one.
    let action = match (step.from, step.apply.or(step.recommended)) {
        (Some(from), Some(to)) => format!(
            "Scale from {} to {} replicas, pools {} to {}",
            from.replicas, to.replicas, from.pools, to.pools
        ),
        _ => "Scale".to_string(),
    };
    Some(Event {
        type_: EventType::Normal,
        reason: reason.as_str().into(),
        note: Some(note),
        action,
        secondary: None,
    })
}

/// Publishes `event` about `pp`; a failure is logged, not raised.
pub async fn publish(recorder: &Recorder, pp: &PixelPipeline, mut event: Event) {
    // The Events API caps notes at 1 kB.
    event.note = event.note.map(|n| truncate(n, 1000));
    if let Err(e) = recorder.publish(&event, &pp.object_ref(&())).await {
        tracing::warn!(error = %e, reason = %event.reason, "could not publish an Event");
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sizes::Sizes;
    use pixelpipe_crds::PerStage;

    #[test]
    fn different_changes_to_the_same_sizes_are_different_events() {
        // 2 -> 1 replicas after an earlier 1 -> 1 pool change to the same
        // sizes: the recorder must not fold the second into the first.
        let pp: PixelPipeline =
            pixelpipe_crds::yaml::from_str(include_str!("../../manifests/samples/storefront.yaml"))
                .expect("sample parses");
        let sizes = |replicas| Sizes {
            replicas,
            pools: PerStage::splat(1),
        };
        let action = |from: i32| {
            let step = Step {
                summary: Some("fewer replicas carry them".into()),
                from: Some(sizes(from)),
                apply: Some(sizes(1)),
                ..Step::default()
            };
            scaling(&pp, &step).map(|e| e.action)
        };
        assert_ne!(action(2), action(1));
        assert_eq!(
            action(2).as_deref(),
            Some("Scale from 2 to 1 replicas, pools 1/1/1/1 to 1/1/1/1")
        );
    }

    /// A status whose PartitionsHealthy condition is False (Stuck) with
    /// `stuck` partitions in that state.
    fn stuck(stuck: &[i32]) -> PixelPipelineStatus {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let names: Vec<String> = stuck
            .iter()
            .map(|p| format!("partition {p} at offset 0"))
            .collect();
        PixelPipelineStatus {
            conditions: vec![Condition {
                type_: ConditionType::PartitionsHealthy.as_str().into(),
                status: condition_status(false).into(),
                reason: "Stuck".into(),
                message: format!("stuck: {}", names.join(", ")),
                last_transition_time: Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
                observed_generation: None,
            }],
            partitions: stuck
                .iter()
                .map(|&partition| pixelpipe_crds::PartitionStatus {
                    partition,
                    state: PartitionState::Stuck,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn a_partition_stuck_after_the_first_ones_gets_its_own_warning() {
        let mut pp: PixelPipeline =
            pixelpipe_crds::yaml::from_str(include_str!("../../manifests/samples/storefront.yaml"))
                .expect("sample parses");
        let first = partitions_unhealthy(&pp, &stuck(&[2, 4])).expect("turned unhealthy");
        assert_eq!(first.action, "Observe partitions 2,4");
        pp.status = Some(stuck(&[2, 4]));
        assert!(
            partitions_unhealthy(&pp, &stuck(&[2, 4])).is_none(),
            "a repeat"
        );
        assert!(
            partitions_unhealthy(&pp, &stuck(&[4])).is_none(),
            "one fewer"
        );
        let more = partitions_unhealthy(&pp, &stuck(&[0, 2, 4])).expect("one more");
        assert_eq!(more.action, "Observe partitions 0,2,4");
        assert!(more.note.is_some_and(|n| n.contains("partition 0")));
        assert_eq!(more.reason, EventReason::PartitionsUnhealthy.as_str());
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("é".repeat(600), 1000).len(), 1000);
        assert_eq!(truncate("ab".into(), 1000), "ab");
        assert_eq!(truncate("aé".into(), 2), "a");
    }
}
