//! Prometheus metrics. Labels are closed sets (stages, reasons, configured
//! partners), never per-event or per-partition values.

use std::fmt::Write as _;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use pixelpipe_crds::Stage;
use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::event::DeadReason;
use crate::liveness::{Liveness, Progress};
use crate::routing::DropReason;

/// A stage label; a stage is a closed set.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct StageLabel {
    pub stage: Stage,
}

impl EncodeLabelSet for StageLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        ("stage", self.stage.as_str()).encode(encoder.encode_label())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

/// The stage that dead-lettered a message, and why.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct DeadLabel {
    pub stage: Stage,
    pub reason: &'static str,
}

impl EncodeLabelSet for DeadLabel {
    fn encode(&self, encoder: &mut LabelSetEncoder<'_>) -> Result<(), std::fmt::Error> {
        ("stage", self.stage.as_str()).encode(encoder.encode_label())?;
        ("reason", self.reason).encode(encoder.encode_label())
    }
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

type StageHistograms = Family<StageLabel, Histogram, fn() -> Histogram>;

/// A counter of seconds.
pub type Seconds = Counter<f64, AtomicU64>;

/// A gauge of seconds.
pub type SecondsGauge = Gauge<f64, AtomicU64>;

/// Every metric the worker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub events_in: Counter,
    pub events_delivered: Counter,
    pub events_completed: Counter,
    pub events_dropped: Family<ReasonLabel, Counter>,
    pub events_dead_lettered: Family<DeadLabel, Counter>,
    pub partner_messages: Family<PartnerLabel, Counter>,
    pub partner_refused: Family<PartnerReasonLabel, Counter>,
    pub delivery_failures: Counter,
    pub delivery_retries: Family<TopicLabel, Counter>,
    pub outputs_retrying: Gauge,
    pub commits: Family<OutcomeLabel, Counter>,
    pub consumer_errors: Counter,
    pub batch_duration: StageHistograms,
    pub stage_busy: Family<StageLabel, Seconds>,
    pub stage_jobs: Family<StageLabel, Counter>,
    pub intake_paced: Seconds,
    pub event_age: Histogram,
    pub queue_depth: Family<StageLabel, Gauge>,
    pub pool_workers: Family<StageLabel, Gauge>,
    pub pool_busy: Family<StageLabel, Gauge>,
    pub jobs_in_flight: Gauge,
    pub jobs_in_stages: Gauge,
    pub unacknowledged_output_bytes: Gauge,
    pub uncommitted_runs: Gauge,
    /// What liveness is judged on; exported as the two gauges below.
    pub progress: Progress,
    pub pending_events: Gauge,
    pub seconds_since_progress: SecondsGauge,
}

fn batch_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// Registers `metric` under `name` and hands back the registered handle.
fn add<M: Metric + Clone>(r: &mut Registry, name: &str, help: &str, metric: M) -> M {
    r.register(name, help, metric.clone());
    metric
}

impl Metrics {
    // One metric per line reads as the table it is.
    #[rustfmt::skip]
    pub fn new(partners: &[String]) -> Self {
        let mut r = Registry::with_prefix("pixelpipe");
        let age_buckets = [
            0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
        ];
        let m = Self {
            events_in: add(&mut r, "events_in", "Input messages consumed", Counter::default()),
            events_delivered: add(&mut r, "events_delivered", "Events delivered to at least one partner, acknowledged by the broker", Counter::default()),
            events_completed: add(&mut r, "events_completed", "Input messages whose job finished with every output acknowledged (delivered, dropped or dead-lettered)", Counter::default()),
            events_dropped: add(&mut r, "events_dropped", "Valid events that reached no partner, by reason", Family::default()),
            events_dead_lettered: add(&mut r, "events_dead_lettered", "Messages written to the dead-letter topic, by stage and reason", Family::default()),
            partner_messages: add(&mut r, "partner_messages", "Messages acknowledged on a partner topic", Family::default()),
            partner_refused: add(&mut r, "partner_refused", "Events a partner wanted but may not receive, by reason", Family::default()),
            delivery_failures: add(&mut r, "delivery_failures", "Output sends the broker refused (each is retried within a bound, or its input is never committed)", Counter::default()),
            delivery_retries: add(&mut r, "delivery_retries", "Refused outputs sent again, by topic", Family::default()),
            outputs_retrying: add(&mut r, "outputs_retrying", "Outputs refused at least once and not yet acknowledged; the worker is not ready while any are", Gauge::default()),
            commits: add(&mut r, "commits", "Synchronous offset commits (on revoke and at shutdown) by outcome; the periodic ones are asynchronous and librdkafka reports their outcome to no one", Family::default()),
            consumer_errors: add(&mut r, "consumer_errors", "Errors from the Kafka consumer", Counter::default()),
            batch_duration: add(&mut r, "batch_duration_seconds", "Time a stage spends on one batch job", Family::new_with_constructor(batch_histogram as fn() -> Histogram)),
            stage_busy: add(&mut r, "stage_busy_seconds", "Worker-seconds a stage's pool spent on jobs, counted as each job ends", Family::default()),
            stage_jobs: add(&mut r, "stage_jobs", "Jobs a stage's pool finished", Family::default()),
            intake_paced: add(&mut r, "intake_paced_seconds", "Seconds the source slept to stay under the intake limit", Seconds::default()),
            event_age: add(&mut r, "event_age_at_delivery_seconds", "Event age (now minus event timestamp) when its outputs were acknowledged", Histogram::new(age_buckets)),
            queue_depth: add(&mut r, "queue_depth", "Jobs waiting in a stage's input channel", Family::default()),
            pool_workers: add(&mut r, "pool_workers", "Workers in a stage's pool", Family::default()),
            pool_busy: add(&mut r, "pool_busy", "Workers in a stage's pool processing a job", Family::default()),
            jobs_in_flight: add(&mut r, "jobs_in_flight", "Batch jobs consumed whose outputs are not all acknowledged", Gauge::default()),
            jobs_in_stages: add(&mut r, "jobs_in_stages", "Batch jobs consumed whose outputs are not yet all handed to the producer; at most what the pools' sizes use", Gauge::default()),
            unacknowledged_output_bytes: add(&mut r, "unacknowledged_output_bytes", "Bytes of outputs handed to the producer and not yet acknowledged (in whole KiB per job; a job larger than the bound counts as the bound)", Gauge::default()),
            uncommitted_runs: add(&mut r, "uncommitted_runs", "Per-partition offset runs waiting for their outputs before a commit", Gauge::default()),
            progress: Progress::default(),
            pending_events: add(&mut r, "pending_events", "Events fetched into jobs and not yet finished (delivered, dropped, dead-lettered or given up on)", Gauge::default()),
            seconds_since_progress: add(&mut r, "seconds_since_progress", "Seconds pending events have gone without progress; 0 while none are pending. /healthz fails past the liveness bound", SecondsGauge::default()),
            registry: Registry::default(),
        };
        m.precreate(partners);
        Self { registry: r, ..m }
    }

    /// Every label value created up front, so dashboards see zeros, not gaps.
    fn precreate(&self, partners: &[String]) {
        for &stage in Stage::ALL {
            let _ = self.batch_duration.get_or_create(&StageLabel { stage });
            let _ = self.stage_busy.get_or_create(&StageLabel { stage });
            let _ = self.stage_jobs.get_or_create(&StageLabel { stage });
        }
        for r in DropReason::ALL {
            let _ = self
                .events_dropped
                .get_or_create(&ReasonLabel { reason: r.code() });
        }
        for r in DeadReason::ALL {
            let _ = self.events_dead_lettered.get_or_create(&DeadLabel {
                stage: r.stage(),
                reason: r.code(),
            });
        }
        for p in partners {
            let _ = self
                .partner_messages
                .get_or_create(&PartnerLabel { partner: p.clone() });
        }
    }

    /// Sets the progress gauges to what liveness sees at `now`.
    pub fn export_progress(&self, now: Instant) {
        let pending = self.progress.pending();
        self.pending_events
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
        // Judged against no bound: only the stall's length is wanted here.
        let last = self.progress.last_progress();
        let stalled = match Liveness::judge(pending, last, now, Duration::MAX) {
            Liveness::Progressing { stalled, .. } | Liveness::Wedged { stalled, .. } => stalled,
            Liveness::Idle | Liveness::Draining { .. } => Duration::ZERO,
        };
        self.seconds_since_progress.set(stalled.as_secs_f64());
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            // Only a broken label encoder fails; say so in the scrape itself.
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }
}
