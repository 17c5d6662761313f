//! The work functions of the CPU stages: parse, validate, augment. Each maps a
//! job's outcomes forward and leaves dead letters and drops in place.

use std::sync::Arc;

use crate::augment::partner_payload;
use crate::config::PipelineConfig;
use crate::event::decode;
use crate::job::{Job, Outcome};
use crate::metrics::{Metrics, PartnerReasonLabel};
use crate::pool::Work;
use crate::routing::{DropReason, Router};
use crate::time::now_ms;
use crate::validate::Validated;
use crate::validate::validate;
use prometheus_client::metrics::counter::Counter;

/// Bytes -> [`crate::event::Event`], or a dead letter.
#[derive(Debug)]
pub struct Parse {
    pub max_event_bytes: usize,
}

impl Work for Parse {
    type In = Job;
    type Out = Job;
    async fn run(&self, mut job: Job) -> Job {
        for (msg, outcome) in job.messages.iter().zip(job.outcomes.iter_mut()) {
            if matches!(outcome, Outcome::Raw) {
                *outcome = match decode(msg.payload.as_deref(), self.max_event_bytes) {
                    Ok(event) => Outcome::Parsed(Box::new(event)),
                    Err(rejection) => Outcome::Dead {
                        stage: "parse",
                        rejection,
                    },
                };
            }
        }
        job
    }
}

/// Semantic checks, consent and routing.
#[derive(Debug)]
pub struct Validate {
    pub config: Arc<PipelineConfig>,
    pub router: Arc<Router>,
    /// Per partner: refusals for consent, then for a regional rule.
    pub refused: Vec<[Counter; 2]>,
}

impl Validate {
    pub fn new(config: Arc<PipelineConfig>, metrics: &Metrics) -> Self {
        let refused = config
            .partners
            .iter()
            .map(|p| {
                [DropReason::NoConsent, DropReason::RegionOptOut].map(|r| {
                    metrics
                        .partner_refused
                        .get_or_create(&PartnerReasonLabel {
                            partner: p.name.clone(),
                            reason: r.code(),
                        })
                        .clone()
                })
            })
            .collect();
        Self {
            router: Arc::new(Router::new(&config)),
            config,
            refused,
        }
    }

    fn count_refusals(&self, v: &Validated) {
        for i in v.decision.refused_consent.iter() {
            self.refused[i][0].inc();
        }
        for i in v.decision.refused_region.iter() {
            self.refused[i][1].inc();
        }
    }
}

impl Work for Validate {
    type In = Job;
    type Out = Job;
    async fn run(&self, mut job: Job) -> Job {
        let now = now_ms();
        for outcome in job.outcomes.iter_mut() {
            *outcome = match std::mem::replace(outcome, Outcome::Raw) {
                Outcome::Parsed(event) => {
                    match validate(&event, &self.router, &self.config.limits, now) {
                        Ok(v) => {
                            self.count_refusals(&v);
                            match v.decision.drop_reason() {
                                None => Outcome::Validated(event, v),
                                Some(reason) => Outcome::Dropped(reason),
                            }
                        }
                        Err(rejection) => Outcome::Dead {
                            stage: "validate",
                            rejection,
                        },
                    }
                }
                other => other,
            };
        }
        job
    }
}

/// Server-side fields, hashing, URL stripping, serialization.
#[derive(Debug)]
pub struct Augment {
    pub config: Arc<PipelineConfig>,
}

impl Work for Augment {
    type In = Job;
    type Out = Job;
    async fn run(&self, mut job: Job) -> Job {
        let now = now_ms();
        for (msg, outcome) in job.messages.iter().zip(job.outcomes.iter_mut()) {
            *outcome = match std::mem::replace(outcome, Outcome::Raw) {
                Outcome::Validated(event, v) => Outcome::Ready {
                    payload: partner_payload(
                        &event,
                        v.event_ms,
                        msg.timestamp_ms.unwrap_or(now),
                        now,
                        &self.config.privacy,
                    ),
                    partners: v.decision.partners,
                    event_ms: v.event_ms,
                },
                other => other,
            };
        }
        job
    }
}
