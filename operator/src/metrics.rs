//! The operator's Prometheus metrics. The operator's own carry closed label
//! sets (outcome, step); each pipeline's numbers come from
//! [`PipelineMetrics`], one series set per pipeline that exists.

use std::sync::Arc;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::pipeline_metrics::PipelineMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lower case by convention
pub enum Outcome {
    ok,
    error,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: Outcome,
}

/// The reconcile step an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are lower case by convention
pub enum Step {
    build,
    apply,
    status,
    credentials,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StepLabel {
    pub step: Step,
}

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub reconciles: Family<OutcomeLabel, Counter>,
    pub errors: Family<StepLabel, Counter>,
    pub duration: Histogram,
    pub invalid_specs: Counter,
    pub child_writes: Counter,
    pub leader: Gauge,
    pub lag_observers: Gauge,
    pub kafka_clients: Gauge,
    pub pipelines: Arc<PipelineMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pixelpipe_operator");
        let reconciles = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of PixelPipelines, by outcome",
            reconciles.clone(),
        );
        let errors = Family::<StepLabel, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconcile errors, by the step that failed",
            errors.clone(),
        );
        // 1 ms .. ~16 s.
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 15));
        registry.register(
            "reconcile_duration_seconds",
            "Time one reconcile took",
            duration.clone(),
        );
        let invalid_specs = Counter::default();
        registry.register(
            "invalid_specs",
            "Reconciles that found a spec the operator cannot run",
            invalid_specs.clone(),
        );
        let child_writes = Counter::default();
        registry.register(
            "child_writes",
            "Children created or changed by an apply",
            child_writes.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this process holds the leader Lease and reconciles",
            leader.clone(),
        );
        let lag_observers = Gauge::default();
        registry.register(
            "lag_observers",
            "Pipelines whose consumer lag this process watches",
            lag_observers.clone(),
        );
        let kafka_clients = Gauge::default();
        registry.register(
            "kafka_clients",
            "Kafka clients the lag observations share (a small pool per cluster and credentials)",
            kafka_clients.clone(),
        );
        let pipelines = Arc::new(PipelineMetrics::default());
        registry.register_collector(Box::new(pipelines.clone()));
        Self {
            pipelines,
            registry,
            lag_observers,
            kafka_clients,
            reconciles,
            errors,
            duration,
            invalid_specs,
            child_writes,
            leader,
        }
    }
}

impl Metrics {
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
