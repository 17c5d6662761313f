//! Records into librdkafka and delivery reports back. Nothing waits on a
//! single delivery: each record carries its job's [`JobAck`], and the report
//! settles it. A record the broker refuses is sent again after a backoff,
//! within [`RetryPolicy`](crate::retry::RetryPolicy)'s bound, while its job
//! keeps its in-flight slot.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};

use super::ack::JobAck;
use crate::metrics::TopicLabel;
use crate::occupancy::Occupancy;
use crate::retry::retriable;

/// How long a send may wait for room in the producer's queue before the job
/// counts as failed.
const QUEUE_FULL_PATIENCE: Duration = Duration::from_secs(120);

/// Routes librdkafka delivery reports to their job.
#[derive(Debug)]
pub struct DeliveryContext;

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = Box<Output>;

    fn delivery(&self, result: &DeliveryResult<'_>, output: Box<Output>) {
        // A refusal is progress too: the attempt ended, and the retry policy
        // bounds how often that may repeat before the worker stops itself.
        output.ack.shared.metrics.progress.moved();
        match result {
            Ok(_) => output.delivered(),
            Err((err, msg)) => output.refused(err, OwnedRecord::from_message(msg)),
        }
    }
}

/// One output record in librdkafka's hands: its job, and how many times it
/// was refused before.
#[derive(Debug)]
pub struct Output {
    ack: Arc<JobAck>,
    refusals: u32,
}

impl Output {
    /// A new output of `ack`'s job.
    pub(super) fn of(ack: &Arc<JobAck>) -> Box<Self> {
        ack.expect_one();
        Box::new(Self {
            ack: ack.clone(),
            refusals: 0,
        })
    }

    fn delivered(self) {
        if self.refusals > 0 {
            self.ack.shared.metrics.outputs_retrying.dec();
        }
        self.ack.settle();
    }

    /// Sends `record` again after a backoff, or fails the job when the error
    /// cannot pass or the attempts are spent.
    fn refused(self, err: &KafkaError, record: OwnedRecord) {
        let shared = self.ack.shared.clone();
        let m = &shared.metrics;
        m.delivery_failures.inc();
        let refusals = self.refusals + 1;
        let backoff = if retriable(err) {
            shared.retry.backoff(refusals)
        } else {
            None
        };
        let resend = backoff.and_then(|wait| Some((wait, shared.resender()?)));
        let Some((wait, (producer, runtime))) = resend else {
            if self.refusals > 0 {
                m.outputs_retrying.dec();
            }
            self.ack.fail(err, &record.topic, refusals);
            return;
        };
        if self.refusals == 0 {
            m.outputs_retrying.inc();
        }
        m.delivery_retries
            .get_or_create(&TopicLabel {
                topic: record.topic.clone(),
            })
            .inc();
        if !self.ack.retrying.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                job = self.ack.job,
                topic = %record.topic,
                error = %err,
                attempt = refusals,
                ?wait,
                "output refused; sending it again (the job holds its slot, so intake slows)"
            );
        }
        let output = Box::new(Output {
            ack: self.ack,
            refusals,
        });
        runtime.spawn(async move {
            tokio::time::sleep(wait).await;
            enqueue(&producer, record.as_base(output), None).await;
        });
    }
}

/// A refused record, owned, so it can be sent again.
#[derive(Debug)]
pub struct OwnedRecord {
    topic: String,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    headers: Option<OwnedHeaders>,
}

impl OwnedRecord {
    fn from_message(msg: &BorrowedMessage<'_>) -> Self {
        Self {
            topic: msg.topic().to_string(),
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().map(<[u8]>::to_vec),
            headers: msg.headers().map(|h| h.detach()),
        }
    }

    fn from_record(r: &BaseRecord<'_, [u8], [u8], Box<Output>>) -> Self {
        Self {
            topic: r.topic.to_string(),
            key: r.key.map(<[u8]>::to_vec),
            payload: r.payload.map(<[u8]>::to_vec),
            headers: r.headers.clone(),
        }
    }

    fn as_base(&self, output: Box<Output>) -> BaseRecord<'_, [u8], [u8], Box<Output>> {
        let mut r = BaseRecord::with_opaque_to(&self.topic, output);
        r.key = self.key.as_deref();
        r.payload = self.payload.as_deref();
        r.headers = self.headers.clone();
        r
    }
}

/// Hands one record to librdkafka without waiting for its delivery. Waits only
/// while the producer's queue is full, which is backpressure, counted in
/// `waiting` if given; any other error is a refusal, handled like a failed
/// delivery.
pub(super) async fn enqueue(
    producer: &OutputProducer,
    mut record: BaseRecord<'_, [u8], [u8], Box<Output>>,
    waiting: Option<&Occupancy>,
) {
    // Read the clock only once the queue is full: this runs for every output.
    let mut waiting_since: Option<Instant> = None;
    let result = loop {
        match producer.send(record) {
            Ok(()) => break Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if waiting_since.is_none_or(|t| t.elapsed() < QUEUE_FULL_PATIENCE) =>
            {
                record = back;
                if waiting_since.is_none() {
                    waiting_since = Some(Instant::now());
                    if let Some(w) = waiting {
                        w.enter();
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((err, back)) => break Err((err, back)),
        }
    };
    if waiting_since.is_some()
        && let Some(w) = waiting
    {
        w.leave();
    }
    if let Err((err, back)) = result {
        let owned = OwnedRecord::from_record(&back);
        back.delivery_opaque.refused(&err, owned);
    }
}

pub type OutputProducer = ThreadedProducer<DeliveryContext>;

/// Creates the producer; its own thread polls for delivery reports.
pub fn create_producer(config: &ClientConfig) -> Result<OutputProducer, KafkaError> {
    config.create_with_context(DeliveryContext)
}
