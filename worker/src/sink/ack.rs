//! One job's outstanding acknowledgements, and what its completion releases:
//! its offsets for commit, its metrics, and its in-flight slot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use rdkafka::error::KafkaError;

use super::delivery::OutputProducer;
use crate::fatal::Fatal;
use crate::job::Outcome;
use crate::metrics::{DeadLabel, Metrics, PartnerLabel, ReasonLabel};
use crate::occupancy::Waits;
use crate::offsets::{Claim, OffsetTracker};
use crate::retry::RetryPolicy;
use crate::routing::DropReason;
use crate::slots::Acknowledging;
use pixelpipe_crds::Stage;

/// What acknowledgements update, shared by every job.
#[derive(Debug)]
pub struct AckShared {
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<Metrics>,
    pub fatal: Fatal,
    /// What jobs wait on, measured for the autoscaler.
    pub waits: Arc<Waits>,
    partner_messages: Vec<Counter>,
    dropped: Vec<Counter>,
    pub(super) retry: RetryPolicy,
    /// Where refused outputs are sent again from: the producer (weak, since the
    /// producer holds these acks) and the runtime. Unset, a refusal is final.
    resend: OnceLock<(Weak<OutputProducer>, tokio::runtime::Handle)>,
}

impl AckShared {
    pub fn new(
        tracker: Arc<OffsetTracker>,
        metrics: Arc<Metrics>,
        fatal: Fatal,
        partners: &[String],
    ) -> Self {
        let partner_messages = partners
            .iter()
            .map(|p| {
                metrics
                    .partner_messages
                    .get_or_create(&PartnerLabel { partner: p.clone() })
                    .clone()
            })
            .collect();
        let dropped = DropReason::ALL
            .iter()
            .map(|r| {
                metrics
                    .events_dropped
                    .get_or_create(&ReasonLabel { reason: r.code() })
                    .clone()
            })
            .collect();
        Self {
            tracker,
            metrics,
            fatal,
            waits: Arc::default(),
            partner_messages,
            dropped,
            retry: RetryPolicy::default(),
            resend: OnceLock::new(),
        }
    }

    /// Sends refused outputs again under `policy` instead of the default.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Refused outputs are sent again through `producer`, on this runtime.
    pub(super) fn resend_with(&self, producer: &Arc<OutputProducer>) {
        let _ = self
            .resend
            .set((Arc::downgrade(producer), tokio::runtime::Handle::current()));
    }

    pub(super) fn resender(&self) -> Option<(Arc<OutputProducer>, tokio::runtime::Handle)> {
        let (producer, runtime) = self.resend.get()?;
        Some((producer.upgrade()?, runtime.clone()))
    }
}

/// What a finished job adds to the metrics.
#[derive(Debug, Default)]
pub(super) struct Summary {
    /// Input messages in the job.
    events: u64,
    delivered: u64,
    dropped: [u64; 3],
    dead: Vec<(Stage, &'static str)>,
    per_partner: Vec<u64>,
    event_ms: Vec<i64>,
}

/// One job's outstanding acknowledgements.
#[derive(Debug)]
pub(super) struct JobAck {
    pub(super) job: u64,
    /// Input messages in the job: pending until it finishes, however it does.
    events: u64,
    claims: Vec<Claim>,
    /// Outputs not yet acknowledged, plus one held until every output is sent.
    outstanding: AtomicUsize,
    failed: AtomicBool,
    /// Set once an output was refused and sent again (logged once per job).
    pub(super) retrying: AtomicBool,
    summary: Mutex<Summary>,
    slots: Mutex<Option<Acknowledging>>,
    pub(super) shared: Arc<AckShared>,
}

impl JobAck {
    pub(super) fn new(
        job: u64,
        claims: Vec<Claim>,
        slots: Acknowledging,
        summary: Summary,
        shared: Arc<AckShared>,
    ) -> Self {
        Self {
            job,
            events: summary.events,
            claims,
            outstanding: AtomicUsize::new(1),
            failed: AtomicBool::new(false),
            retrying: AtomicBool::new(false),
            summary: Mutex::new(summary),
            slots: Mutex::new(Some(slots)),
            shared,
        }
    }

    pub(super) fn expect_one(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    /// Every output is sent: releases the hold taken at creation.
    pub(super) fn seal(&self) {
        self.shared.waits.acknowledgements.enter();
        self.settle();
    }

    /// One output acknowledged (or, for the seal, all outputs sent).
    pub(super) fn settle(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    /// An output is given up on: the job's input is never committed.
    pub(super) fn fail(&self, err: &KafkaError, topic: &str, attempts: u32) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            tracing::error!(job = self.job, %topic, error = %err, attempts, "output not acknowledged; input will not be committed");
        }
        self.settle();
    }

    fn finish(&self) {
        let shared = &self.shared;
        if self.failed.load(Ordering::Acquire) {
            shared.fatal.trigger(format!(
                "job {}: an output was not acknowledged by the broker",
                self.job
            ));
        } else {
            shared.tracker.complete(self.job, &self.claims);
            self.count();
        }
        // Only the seal's release can bring the count to zero, so the job
        // entered the wait above.
        shared.waits.acknowledgements.leave();
        shared.metrics.jobs_in_flight.dec();
        shared.metrics.progress.finished(self.events);
        // Frees the job's in-flight slot and its outputs' room: the source
        // may read another batch.
        drop(self.slots.lock().unwrap_or_else(|e| e.into_inner()).take());
    }

    /// Adds the finished job's summary to the metrics.
    fn count(&self) {
        let shared = &self.shared;
        let s = std::mem::take(&mut *self.summary.lock().unwrap_or_else(|e| e.into_inner()));
        {
            let m = &shared.metrics;
            m.events_completed.inc_by(s.events);
            m.events_delivered.inc_by(s.delivered);
            for (counter, n) in shared.dropped.iter().zip(s.dropped) {
                counter.inc_by(n);
            }
            for (stage, reason) in s.dead {
                m.events_dead_lettered
                    .get_or_create(&DeadLabel { stage, reason })
                    .inc();
            }
            for (counter, n) in shared.partner_messages.iter().zip(&s.per_partner) {
                counter.inc_by(*n);
            }
            let now = Timestamp::now().as_millisecond();
            for ms in s.event_ms {
                m.event_age.observe((now - ms).max(0) as f64 / 1000.0);
            }
        }
    }
}

pub(super) fn summarize(outcomes: &[Outcome], partners: usize) -> Summary {
    let mut s = Summary {
        events: outcomes.len() as u64,
        per_partner: vec![0; partners],
        ..Summary::default()
    };
    for o in outcomes {
        match o {
            Outcome::Ready {
                partners, event_ms, ..
            } => {
                s.delivered += 1;
                s.event_ms.push(*event_ms);
                for p in partners.iter() {
                    s.per_partner[p] += 1;
                }
            }
            Outcome::Dropped(r) => s.dropped[r.index()] += 1,
            Outcome::Dead { stage, rejection } => s.dead.push((*stage, rejection.reason.code())),
            _ => {}
        }
    }
    s
}
