//! The Events the operator records on a PixelPipeline: which one a step
//! calls for (pure), and publishing it.

use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder};
use pixelpipe_crds::reasons::{ConditionType, EventReason, condition_status, find_condition};
use pixelpipe_crds::{PixelPipeline, PixelPipelineStatus};

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
/// and a Warning when partitions turn unhealthy or scaling ineffective (or
/// for a new reason).
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
    let warnings = [
        (
            ConditionType::PartitionsHealthy,
            EventReason::PartitionsUnhealthy,
        ),
        (
            ConditionType::ScalingEffective,
            EventReason::ScalingIneffective,
        ),
    ]
    .into_iter()
    .filter_map(|(type_, reason)| turned_false(pp, next, type_, reason));
    scaling(pp, step).into_iter().chain(warnings).collect()
}

/// A Warning when condition `type_` is False in `next` and was not, or was
/// for another reason.
fn turned_false(
    pp: &PixelPipeline,
    next: &PixelPipelineStatus,
    type_: ConditionType,
    reason: EventReason,
) -> Option<Event> {
    let now = find_condition(&next.conditions, type_)?;
    if now.status != condition_status(false) {
        return None;
    }
    let before = pp
        .status
        .as_ref()
        .and_then(|s| find_condition(&s.conditions, type_));
    let same = before.is_some_and(|b| b.status == now.status && b.reason == now.reason);
    (!same).then(|| warning(reason, "Observe", now.message.clone()))
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

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("é".repeat(600), 1000).len(), 1000);
        assert_eq!(truncate("ab".into(), 1000), "ab");
        assert_eq!(truncate("aé".into(), 2), "a");
    }
}
