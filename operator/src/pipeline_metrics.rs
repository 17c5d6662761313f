//! Per-pipeline metrics: what the operator last saw and decided for each
//! PixelPipeline, labelled `namespace` and `pipeline`. Encoded at scrape time
//! from one bounded map, so a deleted pipeline's series go with it (the
//! reaper in `run.rs` forgets it) and cardinality follows the number of
//! pipelines, never the number of reconciles.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use pixelpipe_crds::{PartitionState, PerStage, PixelPipelineStatus, SloState};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::MAX_PIPELINES;
use crate::autoscale::Step;
use crate::sizes::Sizes;

type Key = (String, String);

/// Every partition state but Healthy.
const UNHEALTHY: [PartitionState; 4] = [
    PartitionState::Stuck,
    PartitionState::Hot,
    PartitionState::Recovering,
    PartitionState::Unknown,
];

/// Which way a scaling decision moved capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    Up,
    Down,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// One pipeline's numbers as of its last reconcile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineView {
    /// `None` until Kafka has been observed (autoscaling Disabled: never).
    pub oldest_age_seconds: Option<f64>,
    pub lag: Option<i64>,
    pub arrivals_per_second: Option<f64>,
    pub processed_per_second: Option<f64>,
    pub slo_seconds: f64,
    pub slo_state: Option<SloState>,
    /// 1 while the last observation of Kafka succeeded.
    pub lag_observed: Option<bool>,
    pub replicas_desired: i32,
    pub replicas_ready: i32,
    pub pools: Option<PerStage<i32>>,
    pub unhealthy_partitions: BTreeMap<&'static str, i64>,
    /// Changes applied (Enabled) or recommended (DryRun), by direction and
    /// the policy's rule; counted since this operator process started.
    pub decisions: BTreeMap<(Direction, &'static str), u64>,
    /// The change last counted, so a standing recommendation counts once.
    pub last_change: Option<Sizes>,
    pub observations: u64,
    pub observation_failures: u64,
}

impl PipelineView {
    /// The view after one reconcile: `status` as written, the Deployment's
    /// ready pods, and the autoscaling step (counters carried over from
    /// `self`).
    pub fn next(
        &self,
        status: &PixelPipelineStatus,
        slo_seconds: f64,
        ready: i32,
        step: Option<&Step>,
    ) -> Self {
        let mut next = PipelineView {
            slo_seconds,
            slo_state: status.slo_state,
            replicas_desired: status.replicas.unwrap_or_default(),
            replicas_ready: ready,
            pools: status.pools,
            unhealthy_partitions: unhealthy(status),
            decisions: self.decisions.clone(),
            last_change: self.last_change,
            observations: self.observations,
            observation_failures: self.observation_failures,
            ..PipelineView::default()
        };
        // Autoscaling Disabled: nothing observed, nothing to show.
        let Some(step) = step else {
            return next;
        };
        next.lag = status.lag;
        next.oldest_age_seconds = self.oldest_age_seconds;
        next.arrivals_per_second = self.arrivals_per_second;
        next.processed_per_second = self.processed_per_second;
        next.lag_observed = self.lag_observed;
        // Between observations a step repeats the last one: only an
        // observation moves what was observed.
        if step.observed {
            next.observations += 1;
            next.lag_observed = Some(step.kafka_error.is_none());
            if step.kafka_error.is_some() {
                next.observation_failures += 1;
            }
            if let Some(seen) = &step.seen {
                next.oldest_age_seconds = seen.oldest_age;
                next.arrivals_per_second = seen.rates.map(|r| r.0);
                next.processed_per_second = seen.rates.map(|r| r.1);
            }
        }
        // A change counts once: DryRun repeats its recommendation at every
        // observation while it stands.
        let change = step.apply.or(step.recommended);
        if change.is_some() && change != self.last_change {
            let direction = if step.up {
                Direction::Up
            } else {
                Direction::Down
            };
            let rule = step
                .decision
                .as_ref()
                .map_or("manual", |d| d.reason.why.kind());
            *next.decisions.entry((direction, rule)).or_default() += 1;
        }
        if change.is_some() {
            next.last_change = change;
        }
        next
    }
}

/// The partitions not healthy, counted by state.
fn unhealthy(status: &PixelPipelineStatus) -> BTreeMap<&'static str, i64> {
    let mut out = BTreeMap::new();
    for p in &status.partitions {
        if p.state != PartitionState::Healthy {
            *out.entry(p.state.into()).or_default() += 1;
        }
    }
    out
}

/// Every pipeline's view, encoded on each scrape.
#[derive(Debug, Default)]
pub struct PipelineMetrics {
    views: Mutex<HashMap<Key, PipelineView>>,
}

impl PipelineMetrics {
    /// Replaces `key`'s view with `f` of the previous one.
    pub fn update(&self, key: Key, f: impl FnOnce(&PipelineView) -> PipelineView) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        if views.len() >= MAX_PIPELINES && !views.contains_key(&key) {
            // Without a last-seen time, any one: the bound matters, not which.
            if let Some(k) = views.keys().next().cloned() {
                views.remove(&k);
            }
        }
        let next = f(views.get(&key).unwrap_or(&PipelineView::default()));
        views.insert(key, next);
    }

    /// Drops every pipeline `exists` says is gone.
    pub fn retain(&self, exists: impl Fn(&Key) -> bool) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        views.retain(|k, _| exists(k));
    }

    fn snapshot(&self) -> Vec<(Key, PipelineView)> {
        let views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = views.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// One pipeline's series of a family: labels beyond `namespace` and
/// `pipeline` (closed sets), and a value.
type Series = Vec<(Vec<(&'static str, &'static str)>, f64)>;

/// A family's only series, if the pipeline has a value.
fn single(value: Option<f64>) -> Series {
    value.map(|v| vec![(Vec::new(), v)]).unwrap_or_default()
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

#[derive(Clone, Copy)]
enum Kind {
    Gauge,
    Counter,
}

/// A metric family: name, help, kind, and each pipeline's series.
type FamilyDef = (
    &'static str,
    &'static str,
    Kind,
    fn(&PipelineView) -> Series,
);

/// Every family.
const FAMILIES: [FamilyDef; 14] = [
    (
        "pipeline_oldest_event_age_seconds",
        "Age of the oldest unprocessed event in the input topic",
        Kind::Gauge,
        |v| single(v.oldest_age_seconds),
    ),
    (
        "pipeline_lag_events",
        "Events in the input topic not yet committed by the pipeline's consumer group",
        Kind::Gauge,
        |v| single(v.lag.map(|l| l as f64)),
    ),
    (
        "pipeline_arrivals_per_second",
        "Events per second arriving in the input topic",
        Kind::Gauge,
        |v| single(v.arrivals_per_second),
    ),
    (
        "pipeline_processed_per_second",
        "Events per second the workers commit",
        Kind::Gauge,
        |v| single(v.processed_per_second),
    ),
    (
        "pipeline_slo_seconds",
        "The SLO: the oldest unprocessed event's age must stay under it",
        Kind::Gauge,
        |v| single(Some(v.slo_seconds)),
    ),
    (
        "pipeline_slo_state",
        "1 for the SLO's current state (Met, AtRisk, Breached), 0 for the others",
        Kind::Gauge,
        |v| {
            let Some(now) = v.slo_state else {
                return Vec::new();
            };
            [SloState::Met, SloState::AtRisk, SloState::Breached]
                .map(|s| (vec![("state", s.as_str())], flag(s == now)))
                .to_vec()
        },
    ),
    (
        "pipeline_lag_observed",
        "1 while the operator's last read of the pipeline's lag from Kafka succeeded",
        Kind::Gauge,
        |v| single(v.lag_observed.map(flag)),
    ),
    (
        "pipeline_replicas_desired",
        "Worker replicas the operator runs the pipeline at",
        Kind::Gauge,
        |v| single(Some(f64::from(v.replicas_desired))),
    ),
    (
        "pipeline_replicas_ready",
        "Worker pods available (the Deployment's availableReplicas)",
        Kind::Gauge,
        |v| single(Some(f64::from(v.replicas_ready))),
    ),
    (
        "pipeline_pool_workers",
        "Pool size per stage in each worker replica",
        Kind::Gauge,
        |v| {
            v.pools
                .iter()
                .flat_map(|p| {
                    p.iter()
                        .map(|(stage, n)| (vec![("stage", stage.as_str())], f64::from(*n)))
                })
                .collect()
        },
    ),
    // Every state, zeros included: a dashboard shows 0, not a gap.
    (
        "pipeline_partitions_unhealthy",
        "Input partitions not healthy, by state (Stuck, Hot, Recovering, Unknown)",
        Kind::Gauge,
        |v| {
            UNHEALTHY
                .map(|state| {
                    let state: &'static str = state.into();
                    let n = v.unhealthy_partitions.get(state).copied().unwrap_or(0);
                    (vec![("state", state)], n as f64)
                })
                .to_vec()
        },
    ),
    (
        "pipeline_scaling_decisions",
        "Scaling changes applied (Enabled) or recommended (DryRun), by direction and the policy's rule",
        Kind::Counter,
        |v| {
            v.decisions
                .iter()
                .map(|((d, rule), n)| (vec![("direction", d.as_str()), ("rule", *rule)], *n as f64))
                .collect()
        },
    ),
    (
        "pipeline_observations",
        "Observations of the pipeline's lag, successful or not",
        Kind::Counter,
        |v| single(Some(v.observations as f64)),
    ),
    (
        "pipeline_observation_failures",
        "Observations of the pipeline's lag that failed",
        Kind::Counter,
        |v| single(Some(v.observation_failures as f64)),
    ),
];

impl Collector for PipelineMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let all = self.snapshot();
        for (name, help, kind, series) in FAMILIES {
            let metric_type = match kind {
                Kind::Gauge => ConstGauge::new(0.0).metric_type(),
                Kind::Counter => ConstCounter::new(0u64).metric_type(),
            };
            let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
            for ((namespace, pipeline), view) in &all {
                for (extra, value) in series(view) {
                    let mut labels = vec![
                        ("namespace", namespace.as_str()),
                        ("pipeline", pipeline.as_str()),
                    ];
                    labels.extend(extra);
                    let family = metric.encode_family(&labels)?;
                    match kind {
                        Kind::Gauge => ConstGauge::new(value).encode(family)?,
                        // Whole counts kept as u64; the f64 is exact below 2^53.
                        Kind::Counter => ConstCounter::new(value as u64).encode(family)?,
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscale::Seen;
    use pixelpipe_crds::PartitionStatus;
    use prometheus_client::registry::Registry;

    fn status() -> PixelPipelineStatus {
        PixelPipelineStatus {
            replicas: Some(3),
            lag: Some(1200),
            slo_state: Some(SloState::AtRisk),
            pools: Some(PerStage::splat(4)),
            partitions: vec![
                PartitionStatus {
                    partition: 2,
                    state: PartitionState::Stuck,
                    ..PartitionStatus::default()
                },
                PartitionStatus {
                    partition: 5,
                    state: PartitionState::Stuck,
                    ..PartitionStatus::default()
                },
            ],
            ..PixelPipelineStatus::default()
        }
    }

    fn scraped(metrics: &PipelineMetrics) -> String {
        let mut registry = Registry::with_prefix("pixelpipe_operator");
        let shared = std::sync::Arc::new(PipelineMetrics::default());
        *shared.views.lock().expect("lock") = metrics.views.lock().expect("lock").clone();
        registry.register_collector(Box::new(shared));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).expect("encodes");
        out
    }

    #[test]
    fn a_view_takes_the_status_the_observation_and_counts_decisions_and_failures() {
        let up = Step {
            observed: true,
            seen: Some(Seen {
                lag: 1200,
                oldest_age: Some(42.0),
                rates: Some((900.0, 700.0)),
            }),
            apply: Some(Sizes {
                replicas: 3,
                pools: PerStage::splat(4),
            }),
            up: true,
            ..Step::default()
        };
        let v = PipelineView::default().next(&status(), 300.0, 2, Some(&up));
        assert_eq!(v.oldest_age_seconds, Some(42.0));
        assert_eq!(
            (v.arrivals_per_second, v.processed_per_second),
            (Some(900.0), Some(700.0))
        );
        assert_eq!((v.replicas_desired, v.replicas_ready), (3, 2));
        assert_eq!(v.unhealthy_partitions[&"Stuck"], 2);
        assert_eq!(v.decisions[&(Direction::Up, "manual")], 1);
        assert_eq!(v.lag_observed, Some(true));

        let failed = Step {
            observed: true,
            kafka_error: Some("cannot read lag".into()),
            ..Step::default()
        };
        let v = v.next(&status(), 300.0, 2, Some(&failed));
        assert_eq!(v.observation_failures, 1);
        assert_eq!(v.lag_observed, Some(false));
        assert_eq!(v.oldest_age_seconds, Some(42.0), "the last age seen stays");
        assert_eq!(
            v.decisions[&(Direction::Up, "manual")],
            1,
            "counters carry over"
        );
    }

    #[test]
    fn between_observations_nothing_observed_moves_and_a_standing_recommendation_counts_once() {
        let failed = Step {
            observed: true,
            kafka_error: Some("cannot read lag".into()),
            ..Step::default()
        };
        let v = PipelineView::default().next(&status(), 300.0, 1, Some(&failed));
        let between = Step::default();
        let v = v.next(&status(), 300.0, 1, Some(&between));
        assert_eq!(
            v.lag_observed,
            Some(false),
            "still failing until observed again"
        );
        assert_eq!((v.observations, v.observation_failures), (1, 1));

        let recommend = Step {
            observed: true,
            recommended: Some(Sizes {
                replicas: 4,
                pools: PerStage::splat(2),
            }),
            up: true,
            ..Step::default()
        };
        let v = v.next(&status(), 300.0, 1, Some(&recommend)).next(
            &status(),
            300.0,
            1,
            Some(&recommend),
        );
        assert_eq!(v.decisions[&(Direction::Up, "manual")], 1);

        let disabled = v.next(&status(), 300.0, 1, None);
        assert_eq!((disabled.lag, disabled.lag_observed), (None, None));
    }

    #[test]
    fn every_pipeline_is_scraped_with_its_labels_and_a_deleted_one_goes() {
        let metrics = PipelineMetrics::default();
        for (ns, name) in [("shop", "storefront"), ("ads", "clicks")] {
            let observed = Step {
                observed: true,
                ..Step::default()
            };
            metrics.update((ns.into(), name.into()), |last| {
                last.next(&status(), 300.0, 3, Some(&observed))
            });
        }
        let text = scraped(&metrics);
        for line in [
            r#"pixelpipe_operator_pipeline_lag_events{namespace="shop",pipeline="storefront"} 1200"#,
            r#"pixelpipe_operator_pipeline_replicas_desired{namespace="ads",pipeline="clicks"} 3"#,
            r#"pixelpipe_operator_pipeline_slo_state{namespace="shop",pipeline="storefront",state="AtRisk"} 1"#,
            r#"pixelpipe_operator_pipeline_slo_state{namespace="shop",pipeline="storefront",state="Met"} 0"#,
            r#"pixelpipe_operator_pipeline_pool_workers{namespace="shop",pipeline="storefront",stage="augment"} 4"#,
            r#"pixelpipe_operator_pipeline_partitions_unhealthy{namespace="ads",pipeline="clicks",state="Stuck"} 2"#,
            r#"pixelpipe_operator_pipeline_partitions_unhealthy{namespace="ads",pipeline="clicks",state="Hot"} 0"#,
            r#"pixelpipe_operator_pipeline_observation_failures_total{namespace="ads",pipeline="clicks"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        assert!(
            !text.contains("pipeline_oldest_event_age_seconds{"),
            "never observed: no age"
        );

        metrics.retain(|(ns, _)| ns == "shop");
        let text = scraped(&metrics);
        assert!(text.contains(r#"pipeline="storefront""#));
        assert!(
            !text.contains(r#"pipeline="clicks""#),
            "a deleted pipeline's series remain:\n{text}"
        );
    }
}
