//! The produce stage: partner messages and dead letters out, acknowledgements
//! in. A job's offsets are released for commit only when the broker has
//! acknowledged every one of its outputs. An output the broker refuses is sent
//! again within [`RetryPolicy`]'s bound, holding its job's in-flight slot.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::OwnedSemaphorePermit;

use crate::event::Rejection;
use crate::job::{InputMessage, Job, Outcome};
use crate::metrics::{DeadLabel, Metrics, PartnerLabel, ReasonLabel, TopicLabel};
use crate::offsets::{Claim, OffsetTracker};
use crate::pool::Work;
use crate::retry::{RetryPolicy, retriable};
use crate::routing::DropReason;
use crate::shutdown::Fatal;
use crate::time::now_ms;

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
            enqueue(&producer, record.as_base(output)).await;
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
/// while the producer's queue is full, which is backpressure; any other error
/// is a refusal, handled like a failed delivery.
async fn enqueue(producer: &OutputProducer, mut record: BaseRecord<'_, [u8], [u8], Box<Output>>) {
    let started = Instant::now();
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if started.elapsed() < QUEUE_FULL_PATIENCE =>
            {
                record = back;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((err, back)) => {
                let owned = OwnedRecord::from_record(&back);
                back.delivery_opaque.refused(&err, owned);
                return;
            }
        }
    }
}

pub type OutputProducer = ThreadedProducer<DeliveryContext>;

/// Creates the producer; its own thread polls for delivery reports.
pub fn create_producer(config: &ClientConfig) -> Result<OutputProducer, KafkaError> {
    config.create_with_context(DeliveryContext)
}

/// What acknowledgements update, shared by every job.
#[derive(Debug)]
pub struct AckShared {
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<Metrics>,
    pub fatal: Fatal,
    partner_messages: Vec<Counter>,
    dropped: Vec<Counter>,
    retry: RetryPolicy,
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

    fn resender(&self) -> Option<(Arc<OutputProducer>, tokio::runtime::Handle)> {
        let (producer, runtime) = self.resend.get()?;
        Some((producer.upgrade()?, runtime.clone()))
    }
}

/// What a finished job adds to the metrics.
#[derive(Debug, Default)]
struct Summary {
    delivered: u64,
    dropped: [u64; 3],
    dead: Vec<(&'static str, &'static str)>,
    per_partner: Vec<u64>,
    event_ms: Vec<i64>,
}

/// One job's outstanding acknowledgements.
#[derive(Debug)]
pub struct JobAck {
    job: u64,
    claims: Vec<Claim>,
    /// Outputs not yet acknowledged, plus one held until every output is sent.
    outstanding: AtomicUsize,
    failed: AtomicBool,
    /// Set once an output was refused and sent again (logged once per job).
    retrying: AtomicBool,
    summary: Mutex<Summary>,
    permit: Mutex<Option<OwnedSemaphorePermit>>,
    shared: Arc<AckShared>,
}

impl JobAck {
    fn new(
        job: u64,
        claims: Vec<Claim>,
        permit: OwnedSemaphorePermit,
        summary: Summary,
        shared: Arc<AckShared>,
    ) -> Self {
        Self {
            job,
            claims,
            outstanding: AtomicUsize::new(1),
            failed: AtomicBool::new(false),
            retrying: AtomicBool::new(false),
            summary: Mutex::new(summary),
            permit: Mutex::new(Some(permit)),
            shared,
        }
    }

    fn expect_one(&self) {
        self.outstanding.fetch_add(1, Ordering::AcqRel);
    }

    /// One output acknowledged (or, for the seal, all outputs sent).
    fn settle(&self) {
        if self.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.finish();
        }
    }

    /// An output is given up on: the job's input is never committed.
    fn fail(&self, err: &KafkaError, topic: &str, attempts: u32) {
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
            let s = std::mem::take(&mut *self.summary.lock().unwrap_or_else(|e| e.into_inner()));
            let m = &shared.metrics;
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
            let now = now_ms();
            for ms in s.event_ms {
                m.event_age.observe((now - ms).max(0) as f64 / 1000.0);
            }
        }
        shared.metrics.jobs_in_flight.dec();
        // Frees the job's in-flight slot: the source may read another batch.
        drop(self.permit.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// Header names on dead letters.
pub mod headers {
    pub const STAGE: &str = "pixelpipe.stage";
    pub const REASON: &str = "pixelpipe.reason";
    pub const DETAIL: &str = "pixelpipe.detail";
    pub const SOURCE_TOPIC: &str = "pixelpipe.source.topic";
    pub const SOURCE_PARTITION: &str = "pixelpipe.source.partition";
    pub const SOURCE_OFFSET: &str = "pixelpipe.source.offset";
}

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
    /// `config`'s partner topics and the dead-letter topic.
    pub fn new(
        producer: Arc<OutputProducer>,
        config: &crate::config::PipelineConfig,
        input_topic: &str,
        dead_letter_topic: &str,
        ack: AckShared,
    ) -> Self {
        let _ = ack
            .resend
            .set((Arc::downgrade(&producer), tokio::runtime::Handle::current()));
        Self {
            producer,
            partner_topics: config.partners.iter().map(|p| p.topic.clone()).collect(),
            dead_letter_topic: dead_letter_topic.to_string(),
            input_topic: input_topic.to_string(),
            shared: Arc::new(ack),
        }
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
            permit,
        } = job;
        let summary = summarize(&outcomes, self.partner_topics.len());
        let ack = Arc::new(JobAck::new(
            id,
            claims,
            permit,
            summary,
            self.shared.clone(),
        ));
        for (msg, outcome) in messages.iter().zip(&outcomes) {
            match outcome {
                Outcome::Ready {
                    payload, partners, ..
                } => {
                    for p in partners.iter() {
                        let mut record =
                            BaseRecord::with_opaque_to(&self.partner_topics[p], output(&ack))
                                .payload(payload.as_slice());
                        if let Some(key) = &msg.key {
                            record = record.key(key.as_slice());
                        }
                        enqueue(&self.producer, record).await;
                    }
                }
                Outcome::Dead { stage, rejection } => {
                    let record =
                        BaseRecord::with_opaque_to(&self.dead_letter_topic, output(&ack)).headers(
                            dead_letter_headers(&self.input_topic, msg, stage, rejection),
                        );
                    let record = match &msg.payload {
                        Some(p) => record.payload(p.as_slice()),
                        None => record,
                    };
                    let record = match &msg.key {
                        Some(k) => record.key(k.as_slice()),
                        None => record,
                    };
                    enqueue(&self.producer, record).await;
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
        ack.settle();
    }
}

/// A new output of `ack`'s job.
fn output(ack: &Arc<JobAck>) -> Box<Output> {
    ack.expect_one();
    Box::new(Output {
        ack: ack.clone(),
        refusals: 0,
    })
}

impl Produce {
    /// Waits for every queued message to be acknowledged or to fail.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(timeout)
    }
}

fn summarize(outcomes: &[Outcome], partners: usize) -> Summary {
    let mut s = Summary {
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
            Outcome::Dead { stage, rejection } => s.dead.push((stage, rejection.reason.code())),
            _ => {}
        }
    }
    s
}

fn dead_letter_headers(
    topic: &str,
    msg: &InputMessage,
    stage: &str,
    rejection: &Rejection,
) -> OwnedHeaders {
    let partition = msg.partition.to_string();
    let offset = msg.offset.to_string();
    let mut h = OwnedHeaders::new_with_capacity(6 + msg.headers.len());
    for (key, value) in &msg.headers {
        h = h.insert(Header {
            key,
            value: Some(value.as_slice()),
        });
    }
    for (key, value) in [
        (headers::STAGE, stage),
        (headers::REASON, rejection.reason.code()),
        (headers::DETAIL, rejection.detail.as_str()),
        (headers::SOURCE_TOPIC, topic),
        (headers::SOURCE_PARTITION, partition.as_str()),
        (headers::SOURCE_OFFSET, offset.as_str()),
    ] {
        h = h.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    h
}
