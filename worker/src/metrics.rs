//! Prometheus metrics. Labels are closed sets (stages, reasons, configured
//! partners), never per-event or per-partition values.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::event::DeadReason;
use crate::routing::DropReason;

/// The pipeline's stages, in order.
pub const STAGES: [&str; 4] = ["parse", "validate", "augment", "produce"];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabel {
    pub stage: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeadLabel {
    pub stage: &'static str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartnerLabel {
    pub partner: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabel {
    pub topic: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartnerReasonLabel {
    pub partner: String,
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Every metric the worker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_in: Counter,
    pub events_delivered: Counter,
    pub events_dropped: Family<ReasonLabel, Counter>,
    pub events_dead_lettered: Family<DeadLabel, Counter>,
    pub partner_messages: Family<PartnerLabel, Counter>,
    pub partner_refused: Family<PartnerReasonLabel, Counter>,
    pub delivery_failures: Counter,
    pub delivery_retries: Family<TopicLabel, Counter>,
    pub outputs_retrying: Gauge,
    pub commits: Family<OutcomeLabel, Counter>,
    pub consumer_errors: Counter,
    pub batch_duration: Family<StageLabel, Histogram, fn() -> Histogram>,
    pub event_age: Histogram,
    pub queue_depth: Family<StageLabel, Gauge>,
    pub pool_workers: Family<StageLabel, Gauge>,
    pub pool_busy: Family<StageLabel, Gauge>,
    pub jobs_in_flight: Gauge,
    pub uncommitted_runs: Gauge,
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

impl Metrics {
    pub fn new(partners: &[String]) -> Self {
        let mut registry = Registry::with_prefix("pixelpipe");
        let m = Self {
            events_in: Counter::default(),
            events_delivered: Counter::default(),
            events_dropped: Family::default(),
            events_dead_lettered: Family::default(),
            partner_messages: Family::default(),
            partner_refused: Family::default(),
            delivery_failures: Counter::default(),
            delivery_retries: Family::default(),
            outputs_retrying: Gauge::default(),
            commits: Family::default(),
            consumer_errors: Counter::default(),
            batch_duration: Family::new_with_constructor(batch_histogram),
            event_age: Histogram::new([
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                600.0,
            ]),
            queue_depth: Family::default(),
            pool_workers: Family::default(),
            pool_busy: Family::default(),
            jobs_in_flight: Gauge::default(),
            uncommitted_runs: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("events_in", "Input messages consumed", m.events_in.clone());
        registry.register(
            "events_delivered",
            "Events delivered to at least one partner, acknowledged by the broker",
            m.events_delivered.clone(),
        );
        registry.register(
            "events_dropped",
            "Valid events that reached no partner, by reason",
            m.events_dropped.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Messages written to the dead-letter topic, by stage and reason",
            m.events_dead_lettered.clone(),
        );
        registry.register(
            "partner_messages",
            "Messages acknowledged on a partner topic",
            m.partner_messages.clone(),
        );
        registry.register(
            "partner_refused",
            "Events a partner wanted but may not receive, by reason",
            m.partner_refused.clone(),
        );
        registry.register(
            "delivery_failures",
            "Output sends the broker refused (each is retried within a bound, or its input is never committed)",
            m.delivery_failures.clone(),
        );
        registry.register(
            "delivery_retries",
            "Refused outputs sent again, by topic",
            m.delivery_retries.clone(),
        );
        registry.register(
            "outputs_retrying",
            "Outputs refused at least once and not yet acknowledged; the worker is not ready while any are",
            m.outputs_retrying.clone(),
        );
        registry.register("commits", "Offset commits by outcome", m.commits.clone());
        registry.register(
            "consumer_errors",
            "Errors from the Kafka consumer",
            m.consumer_errors.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Time a stage spends on one batch job",
            m.batch_duration.clone(),
        );
        registry.register(
            "event_age_at_delivery_seconds",
            "Event age (now minus event timestamp) when its outputs were acknowledged",
            m.event_age.clone(),
        );
        registry.register(
            "queue_depth",
            "Jobs waiting in a stage's input channel",
            m.queue_depth.clone(),
        );
        registry.register(
            "pool_workers",
            "Workers in a stage's pool",
            m.pool_workers.clone(),
        );
        registry.register(
            "pool_busy",
            "Workers in a stage's pool processing a job",
            m.pool_busy.clone(),
        );
        registry.register(
            "jobs_in_flight",
            "Batch jobs consumed whose outputs are not all acknowledged",
            m.jobs_in_flight.clone(),
        );
        registry.register(
            "uncommitted_runs",
            "Per-partition offset runs waiting for their outputs before a commit",
            m.uncommitted_runs.clone(),
        );
        // Pre-create every label value so dashboards see zeros, not gaps.
        for stage in STAGES {
            let _ = m.batch_duration.get_or_create(&StageLabel { stage });
        }
        for r in DropReason::ALL {
            let _ = m
                .events_dropped
                .get_or_create(&ReasonLabel { reason: r.code() });
        }
        for r in DeadReason::ALL {
            let stage = if matches!(r, DeadReason::UnknownEvent | DeadReason::InvalidField) {
                "validate"
            } else {
                "parse"
            };
            let _ = m.events_dead_lettered.get_or_create(&DeadLabel {
                stage,
                reason: r.code(),
            });
        }
        for p in partners {
            let _ = m
                .partner_messages
                .get_or_create(&PartnerLabel { partner: p.clone() });
        }
        Self { registry, ..m }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
