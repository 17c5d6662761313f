//! The work functions of the CPU stages: parse, validate, augment. Each maps a
//! job's outcomes forward and leaves dead letters and drops in place.

use std::sync::Arc;

use jiff::Timestamp;
use pixelpipe_crds::{PipelineFile, PrivacySpec, Stage};
use prometheus_client::metrics::counter::Counter;

use crate::augment::{Payloads, Privacy};
use crate::event::{DeadReason, Event, Rejection, decode_in_place};
use crate::job::{InputMessage, Job, Outcome};
use crate::metrics::{Metrics, PartnerReasonLabel};
use crate::pool::Work;
use crate::routing::{DropReason, Router};
use crate::validate::{Validated, validate};

/// Bytes -> [`crate::event::Event`], or a dead letter.
#[derive(Debug)]
pub struct Parse {
    pub max_event_bytes: usize,
}

impl Work for Parse {
    type In = Job;
    type Out = Job;
    async fn run(&self, mut job: Job) -> Job {
        job.each(|msg, outcome| {
            if matches!(outcome, Outcome::Raw) {
                *outcome = match decode_in_place(&mut msg.payload, self.max_event_bytes) {
                    Ok(event) => Outcome::Parsed(Box::new(event)),
                    Err(rejection) => Outcome::Dead {
                        stage: Stage::Parse,
                        rejection,
                    },
                };
            }
        });
        job
    }
}

/// A decoded event's dead letter: its payload back in its message, which
/// the dead letter carries.
fn dead(msg: &mut InputMessage, event: Event, stage: Stage, rejection: Rejection) -> Outcome {
    msg.payload = Some(event.into_payload());
    Outcome::Dead { stage, rejection }
}

/// Semantic checks, consent and routing.
#[derive(Debug)]
pub struct Validate {
    pub config: Arc<PipelineFile>,
    pub router: Arc<Router>,
    /// Per partner: refusals for consent, then for a regional rule.
    pub refused: Vec<[Counter; 2]>,
}

impl Validate {
    pub fn new(config: Arc<PipelineFile>, metrics: &Metrics) -> Self {
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
        let now = Timestamp::now().as_millisecond();
        job.each(|msg, outcome| {
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
                        Err(rejection) => dead(msg, *event, Stage::Validate, rejection),
                    }
                }
                other => other,
            };
        });
        job
    }
}

/// Server-side fields, hashing, URL stripping, serialization.
#[derive(Debug)]
pub struct Augment {
    pub privacy: Privacy,
}

impl Augment {
    pub fn new(privacy: &PrivacySpec) -> Self {
        Self {
            privacy: Privacy::of(privacy),
        }
    }
}

impl Work for Augment {
    type In = Job;
    type Out = Job;
    async fn run(&self, mut job: Job) -> Job {
        let now = Timestamp::now().as_millisecond();
        let mut payloads = Payloads::new(&self.privacy, now);
        job.each(|msg, outcome| {
            *outcome = match std::mem::replace(outcome, Outcome::Raw) {
                Outcome::Validated(event, v) => {
                    let received = msg.timestamp_ms.unwrap_or(now);
                    let payload = match &mut payloads {
                        Ok(p) => p.write(&event, v.event_ms, received),
                        Err(e) => Err(e.clone()),
                    };
                    match payload {
                        Ok(payload) => Outcome::Ready {
                            payload,
                            partners: v.decision.partners,
                            event_ms: v.event_ms,
                        },
                        Err(e) => {
                            let rejection =
                                Rejection::new(DeadReason::Unserializable, e.to_string());
                            dead(msg, *event, Stage::Augment, rejection)
                        }
                    }
                }
                other => other,
            };
        });
        job
    }
}
