//! The produce stage's work function: each job's partner messages and dead
//! letters into the producer, each carrying the job's acknowledgement.

use std::sync::Arc;

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::BaseRecord;

use super::ack::{AckShared, JobAck, summarize};
use super::dead_letter::dead_letter_headers;
use super::delivery::{Output, OutputProducer, enqueue};
use crate::event::Rejection;
use crate::job::{InputMessage, Job, Outcome};
use crate::pool::Work;
use crate::routing::PartnerSet;
use pixelpipe_crds::{PipelineFile, Stage};

/// The produce stage's work function.
pub struct Produce {
    pub producer: Arc<OutputProducer>,
    pub partner_topics: Vec<String>,
    pub dead_letter_topic: String,
    pub input_topic: String,
    pub shared: Arc<AckShared>,
}

impl std::fmt::Debug for Produce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Produce")
            .field("partner_topics", &self.partner_topics)
            .finish()
    }
}

impl Produce {
    /// The produce stage of a pipeline reading `input_topic` and writing to
    /// `file`'s partner topics and the dead-letter topic.
    pub fn new(
        producer: Arc<OutputProducer>,
        file: &PipelineFile,
        input_topic: &str,
        dead_letter_topic: &str,
        ack: AckShared,
    ) -> Self {
        ack.resend_with(&producer);
        Self {
            producer,
            partner_topics: file.partners.iter().map(|p| p.topic.clone()).collect(),
            dead_letter_topic: dead_letter_topic.to_string(),
            input_topic: input_topic.to_string(),
            shared: Arc::new(ack),
        }
    }

    /// One partner message per partner the event is for.
    async fn partner_messages(
        &self,
        ack: &Arc<JobAck>,
        msg: &InputMessage,
        payload: &[u8],
        partners: PartnerSet,
    ) {
        for p in partners.iter() {
            let mut record = BaseRecord::with_opaque_to(&self.partner_topics[p], Output::of(ack))
                .payload(payload);
            if let Some(key) = &msg.key {
                record = record.key(key.as_slice());
            }
            enqueue(&self.producer, record, Some(&self.shared.waits.queue)).await;
        }
    }

    /// The original record, with headers saying why it was rejected.
    async fn dead_letter(
        &self,
        ack: &Arc<JobAck>,
        msg: &InputMessage,
        stage: Stage,
        rejection: &Rejection,
    ) {
        let headers = dead_letter_headers(&self.input_topic, msg, stage, rejection);
        let mut record =
            BaseRecord::with_opaque_to(&self.dead_letter_topic, Output::of(ack)).headers(headers);
        if let Some(p) = &msg.payload {
            record = record.payload(p.as_slice());
        }
        if let Some(k) = &msg.key {
            record = record.key(k.as_slice());
        }
        enqueue(&self.producer, record, Some(&self.shared.waits.queue)).await;
    }
}

impl Work for Produce {
    type In = Job;
    type Out = ();

    async fn run(&self, job: Job) {
        let Job {
            id,
            messages,
            outcomes,
            claims,
            slot,
        } = job;
        let bytes = output_bytes(&messages, &outcomes);
        let (acknowledging, in_stages) = match slot.try_hand_over(bytes) {
            Ok(handed) => handed,
            Err(slot) => {
                // Waiting for acknowledgements to make room is waiting on
                // delivery, as a full producer queue is.
                let queue = &self.shared.waits.queue;
                queue.enter();
                let handed = slot.hand_over(bytes).await;
                queue.leave();
                handed
            }
        };
        let summary = summarize(&outcomes, self.partner_topics.len());
        let ack = Arc::new(JobAck::new(
            id,
            claims,
            acknowledging,
            summary,
            self.shared.clone(),
        ));
        for (msg, outcome) in messages.iter().zip(&outcomes) {
            match outcome {
                Outcome::Ready {
                    payload, partners, ..
                } => self.partner_messages(&ack, msg, payload, *partners).await,
                Outcome::Dead { stage, rejection } => {
                    self.dead_letter(&ack, msg, *stage, rejection).await
                }
                Outcome::Dropped(_) => {}
                Outcome::Raw | Outcome::Parsed(_) | Outcome::Validated(..) => {
                    // A stage left a message unfinished: a bug, never data. Fail the
                    // job so its input is read again instead of being skipped.
                    tracing::error!(job = id, "message reached produce unfinished");
                    ack.expect_one();
                    ack.fail(
                        &KafkaError::MessageProduction(RDKafkaErrorCode::Fail),
                        "(none)",
                        0,
                    );
                }
            }
        }
        ack.seal();
        // Everything is with the producer now: the next job may enter the
        // stages, and this one's events are freed before it does.
        drop((messages, outcomes, in_stages));
    }
}

/// The bytes of a job's outputs: each partner message and dead letter, with
/// its key (headers aside: the dead letters' are small, and rare).
fn output_bytes(messages: &[InputMessage], outcomes: &[Outcome]) -> usize {
    let key = |m: &InputMessage| m.key.as_ref().map_or(0, Vec::len);
    messages
        .iter()
        .zip(outcomes)
        .map(|(m, outcome)| match outcome {
            Outcome::Ready {
                payload, partners, ..
            } => (payload.len() + key(m)) * partners.len(),
            Outcome::Dead { .. } => m.payload.as_ref().map_or(0, Vec::len) + key(m),
            _ => 0,
        })
        .sum()
}
