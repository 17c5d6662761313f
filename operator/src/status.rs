//! The status a reconcile writes, as a pure function of the pipeline and what
//! the reconcile saw. Fields this step does not own (the lag observer's) are
//! carried over unchanged.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use pixelpipe_crds::reasons::{ConditionType, condition_status};
use pixelpipe_crds::{PixelPipeline, PixelPipelineStatus, SloState, age_text};
use pixelpipe_policy::{Decision, Limit};

use crate::autoscale::Step;
use crate::conditions::{Observation, conditions, set};
use crate::sizes::Sizes;

/// The next status. `sizes` is `None` when nothing was applied (an invalid
/// spec): the sizes last reported stay.
pub fn next(
    pp: &PixelPipeline,
    obs: &Observation,
    sizes: Option<Sizes>,
    now: &Time,
) -> PixelPipelineStatus {
    let previous = pp.status.clone().unwrap_or_default();
    let pools = sizes.map(|s| s.pools).or(previous.pools);
    PixelPipelineStatus {
        observed_generation: pp.metadata.generation,
        conditions: conditions(obs, &previous.conditions, now),
        replicas: sizes.map(|s| s.replicas).or(previous.replicas),
        selector: Some(selector(pp)),
        pools,
        pool_summary: pools.as_ref().map(ToString::to_string),
        ..previous
    }
}

/// The worker pods' labels as a selector string, the scale subresource's.
fn selector(pp: &PixelPipeline) -> String {
    crate::children::labels(pp)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Adds what an autoscaling step observed and decided to a status.
pub fn autoscaling(status: &mut PixelPipelineStatus, pp: &PixelPipeline, step: &Step, now: &Time) {
    let condition = |type_: ConditionType, ok: bool, reason: &str, message: String| Condition {
        type_: type_.as_str().to_string(),
        status: condition_status(ok).to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: pp.metadata.generation,
        last_transition_time: now.clone(),
    };
    // A decision's, or a change made by hand (`kubectl scale`); whatever
    // else this step found, since the status is applied whole.
    if let Some(last) = &step.last_decision {
        status.last_decision = Some(last.clone());
    }
    if let Some(error) = &step.kafka_error {
        set(
            &mut status.conditions,
            condition(
                ConditionType::LagObserved,
                false,
                "KafkaUnreachable",
                format!("{error}; no scaling on stale data"),
            ),
        );
        return;
    }
    if let Some(seen) = step.seen {
        set(
            &mut status.conditions,
            condition(
                ConditionType::LagObserved,
                true,
                "Observed",
                "lag read from Kafka".into(),
            ),
        );
        status.lag = Some(seen.lag);
        status.oldest_event_age = Some(seen.oldest_age.map_or_else(|| "unknown".into(), age_text));
        if let Some((arrivals, processing)) = seen.rates {
            status.arrival_rate = Some(arrivals.round() as i64);
            status.processing_rate = Some(processing.round() as i64);
        }
    }
    if let Some(d) = &step.decision {
        decision(status, d, step, &condition);
    }
}

/// The SLO, partition and scaling conditions, and the decision's fields.
fn decision(
    status: &mut PixelPipelineStatus,
    d: &Decision,
    step: &Step,
    condition: &dyn Fn(ConditionType, bool, &str, String) -> Condition,
) {
    status.slo_state = Some(d.slo);
    let slo_message = match d.reason.oldest_age {
        Some(age) => format!(
            "oldest event {age:.0} s of {:.0} s SLO",
            d.reason.slo_seconds
        ),
        None => format!(
            "oldest event unknown: a lagging partition's first event could not be read; SLO {:.0} s",
            d.reason.slo_seconds
        ),
    };
    let conditions = [
        condition(
            ConditionType::Slo,
            d.slo == SloState::Met,
            d.slo.as_str(),
            slo_message,
        ),
        partitions_condition(d, condition),
        scaling_condition(d, condition),
    ];
    for c in conditions {
        set(&mut status.conditions, c);
    }
    // Both stay as last measured while the workers are too idle to tell.
    if let Some(c) = d.per_replica {
        status.capacity_per_replica = Some(c.round() as i64);
    }
    if let Some(b) = d.bottleneck {
        status.bottleneck = Some(b.to_string());
    }
    status.partitions = step.partitions.clone();
}

fn partitions_condition(
    d: &Decision,
    condition: &dyn Fn(ConditionType, bool, &str, String) -> Condition,
) -> Condition {
    let u = &d.unhealthy;
    let reason = if !u.stuck.is_empty() {
        "Stuck"
    } else if !u.hot.is_empty() {
        "Hot"
    } else if !u.recovering.is_empty() {
        "Recovering"
    } else {
        "Healthy"
    };
    let message = if u.is_empty() {
        "no partition stuck or hot".to_string()
    } else {
        u.to_string()
    };
    condition(
        ConditionType::PartitionsHealthy,
        u.is_empty(),
        reason,
        message,
    )
}

fn scaling_condition(
    d: &Decision,
    condition: &dyn Fn(ConditionType, bool, &str, String) -> Condition,
) -> Condition {
    match &d.limit {
        None => condition(
            ConditionType::ScalingEffective,
            true,
            "Effective",
            "more replicas add capacity".into(),
        ),
        Some(limit) => {
            let reason = match limit {
                Limit::NotReady { .. } => "PodsNotReady",
                Limit::Delivery { .. } => "DeliveryLimited",
            };
            condition(
                ConditionType::ScalingEffective,
                false,
                reason,
                limit.to_string(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conditions::{Problem, Rollout};
    use k8s_openapi::jiff::Timestamp;
    use pixelpipe_crds::PerStage;

    fn sample() -> PixelPipeline {
        let mut pp: PixelPipeline =
            pixelpipe_crds::yaml::from_str(include_str!("../../manifests/samples/storefront.yaml"))
                .expect("sample parses");
        pp.metadata.generation = Some(7);
        pp
    }

    fn now() -> Time {
        Time(Timestamp::from_second(1_800_000_000).expect("time"))
    }

    #[test]
    fn the_status_reports_sizes_generation_and_keeps_the_lag_fields() {
        let mut pp = sample();
        pp.status = Some(PixelPipelineStatus {
            lag: Some(1234),
            oldest_event_age: Some("42s".into()),
            ..PixelPipelineStatus::default()
        });
        let pools = PerStage {
            parse: 1,
            validate: 2,
            augment: 3,
            produce: 4,
        };
        let obs = Observation {
            generation: Some(7),
            problem: None,
            rollout: Some(Rollout::default()),
            foreign: None,
            failing: Vec::new(),
        };
        let s = next(&pp, &obs, Some(Sizes { replicas: 3, pools }), &now());
        assert_eq!(s.observed_generation, Some(7));
        assert_eq!(s.replicas, Some(3));
        assert_eq!(s.pools, Some(pools));
        assert_eq!(s.pool_summary.as_deref(), Some("1/2/3/4"));
        assert_eq!(s.lag, Some(1234));
        assert_eq!(s.oldest_event_age.as_deref(), Some("42s"));
        assert_eq!(s.conditions.len(), 3);
    }

    #[test]
    fn the_last_decision_comes_from_the_step_even_when_kafka_is_unreachable() {
        // The cached pipeline may not show the last status write yet, and the
        // status is applied whole: the step's memory is what keeps it.
        let pp = sample();
        let mut status = PixelPipelineStatus::default();
        let step = Step {
            kafka_error: Some("cannot read lag".into()),
            last_decision: Some("replicas set by hand".into()),
            ..Step::default()
        };
        autoscaling(&mut status, &pp, &step, &now());
        assert_eq!(
            status.last_decision.as_deref(),
            Some("replicas set by hand")
        );
    }

    #[test]
    fn an_invalid_spec_keeps_the_last_sizes() {
        let mut pp = sample();
        let pools = PerStage {
            parse: 5,
            validate: 5,
            augment: 5,
            produce: 9,
        };
        pp.status = Some(PixelPipelineStatus {
            replicas: Some(4),
            pools: Some(pools),
            ..PixelPipelineStatus::default()
        });
        let obs = Observation {
            generation: Some(7),
            problem: Some(Problem::InvalidSpec("bad".into())),
            rollout: None,
            foreign: None,
            failing: Vec::new(),
        };
        let s = next(&pp, &obs, None, &now());
        assert_eq!((s.replicas, s.pools), (Some(4), Some(pools)));
        assert_eq!(s.pool_summary.as_deref(), Some("5/5/5/9"));
    }

    #[test]
    fn reconciling_twice_yields_the_same_status() {
        let pp = sample();
        let obs = Observation {
            generation: Some(7),
            problem: None,
            rollout: Some(Rollout::default()),
            foreign: None,
            failing: Vec::new(),
        };
        let sizes = crate::sizes::current(&pp);
        let first = next(&pp, &obs, Some(sizes), &now());
        let mut again = pp.clone();
        again.status = Some(first.clone());
        let later = Time(Timestamp::from_second(1_800_000_900).expect("time"));
        assert_eq!(next(&again, &obs, Some(sizes), &later), first);
    }
}
