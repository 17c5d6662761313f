//! The input side: consume, batch into jobs, commit what is safe, and hand
//! partitions over cleanly on rebalance.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_channel::Sender;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::job::{InputMessage, Job, Outcome};
use crate::metrics::{Metrics, OutcomeLabel};
use crate::offsets::OffsetTracker;
use crate::pace::Pacer;
use crate::settings::Batching;
use crate::slots::Slots;

/// Consumer callbacks: commit and forget partitions before they change hands.
#[derive(Debug)]
pub struct SourceContext {
    pub topic: String,
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<Metrics>,
    /// Exactly-once mode: offsets go with transactions, never committed here.
    pub transactions: Option<Arc<crate::transaction::Guard>>,
    /// Set at the first assignment (readiness: the group took this worker in).
    pub joined: Arc<AtomicBool>,
}

impl ClientContext for SourceContext {}

impl ConsumerContext for SourceContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions = self.partitions_of(tpl);
            let positions = self.tracker.revoke(&partitions);
            tracing::info!(?partitions, "partitions revoked");
            if let Some(guard) = &self.transactions {
                guard.revoked(&partitions);
                return;
            }
            if !positions.is_empty() {
                let result = consumer.commit(&to_tpl(&self.topic, &positions), CommitMode::Sync);
                self.count_commit(&result);
                if let Err(e) = result {
                    tracing::warn!(error = %e, "commit on revoke failed; those events will be read again");
                }
            }
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let partitions = self.partitions_of(tpl);
                self.tracker.assign(&partitions);
                self.joined.store(true, Ordering::Relaxed);
                tracing::info!(?partitions, "partitions assigned");
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl SourceContext {
    fn partitions_of(&self, tpl: &TopicPartitionList) -> Vec<i32> {
        tpl.elements()
            .iter()
            .filter(|e| e.topic() == self.topic)
            .map(|e| e.partition())
            .collect()
    }

    fn count_commit(&self, result: &KafkaResult<()>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .commits
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}

pub type InputConsumer = StreamConsumer<SourceContext>;

/// `(partition, next offset)` positions as a commit list.
pub fn to_tpl(topic: &str, positions: &[(i32, i64)]) -> TopicPartitionList {
    let mut tpl = TopicPartitionList::with_capacity(positions.len());
    for &(partition, next) in positions {
        // Adding a fresh partition with an absolute offset cannot fail.
        let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(next));
    }
    tpl
}

/// Commits every safe position synchronously: on shutdown and on fatal errors.
pub fn commit_all(
    consumer: &InputConsumer,
    topic: &str,
    tracker: &OffsetTracker,
) -> KafkaResult<usize> {
    let positions = tracker.all_committable();
    if positions.is_empty() {
        return Ok(0);
    }
    consumer.commit(&to_tpl(topic, &positions), CommitMode::Sync)?;
    Ok(positions.len())
}

/// Every this many commit intervals the committer sends every committable
/// position again, moved or not. The result of an asynchronous manual commit
/// reaches no one: `rd_kafka_commit` passes no reply queue, and rust-rdkafka's
/// event API sets no `offset_commit_cb`, so librdkafka only logs a failure
/// (COMMITFAIL, e.g. "Specified group generation id is not valid" in a
/// rebalance). Without the refresh, a partition that receives nothing more
/// keeps its stale committed offset: lag that never drains.
pub const REFRESH_EVERY: u32 = 5;

/// Commits whatever advanced, every `interval`, without waiting for the broker,
/// and every position every [`REFRESH_EVERY`] intervals.
///
/// A commit taken from the tracker just before a cooperative revoke may reach
/// the broker after the revoke's own synchronous commit. It can only carry an
/// equal or older position, so the worst case is events read twice, never lost.
pub async fn run_committer(
    consumer: Arc<InputConsumer>,
    topic: String,
    tracker: Arc<OffsetTracker>,
    metrics: Arc<Metrics>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut round = 0u32;
    loop {
        round = round.wrapping_add(1);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        metrics.uncommitted_runs.set(tracker.pending() as i64);
        let positions = if round.is_multiple_of(REFRESH_EVERY) {
            tracker.take_all()
        } else {
            tracker.take_commit()
        };
        if !positions.is_empty()
            && let Err(e) = consumer.commit(&to_tpl(&topic, &positions), CommitMode::Async)
        {
            tracing::warn!(error = %e, "could not queue an offset commit");
        }
    }
}

/// Consumes into batch jobs until `stop`. Backpressure: a job needs an in-flight
/// slot before its first message is read, and the send into the parse channel
/// waits while that channel is full; either way the consumer stops polling, and
/// librdkafka stops fetching once its small prefetch queue is full.
pub async fn run_source(
    consumer: Arc<InputConsumer>,
    tracker: Arc<OffsetTracker>,
    metrics: Arc<Metrics>,
    parse: Sender<Job>,
    slots: Slots,
    batching: Batching,
    stop: CancellationToken,
) {
    let mut next_id = 0u64;
    let mut pacer = batching.max_events_per_second.map(Pacer::new);
    'jobs: loop {
        // The first message comes before the slot: an idle source holds no
        // slot, so whoever takes them all (an exactly-once commit) never waits
        // for new input. A message read but never handed on is not committed,
        // so it is read again.
        let first = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            m = next_message(&consumer, &tracker, &metrics) => m,
        };
        let slot = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            p = slots.acquire() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (messages, mut stopping) =
            fill_batch(&consumer, &tracker, &metrics, batching, first, &stop).await;
        if let Some(pacer) = pacer.as_mut() {
            let wait = pacer.delay(Instant::now(), messages.len());
            metrics.intake_paced.inc_by(wait.as_secs_f64());
            tokio::select! {
                biased;
                // Stopping still hands these messages on, so they are committed.
                _ = stop.cancelled() => stopping = true,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if !messages.is_empty() {
            let id = next_id;
            next_id += 1;
            let claims = tracker.register(id, &Job::runs(&messages));
            metrics.events_in.inc_by(messages.len() as u64);
            metrics.progress.admitted(messages.len() as u64);
            metrics.jobs_in_flight.inc();
            let job = Job {
                id,
                outcomes: messages.iter().map(|_| Outcome::Raw).collect(),
                messages,
                claims,
                slot,
            };
            if parse.send(job).await.is_err() {
                break 'jobs;
            }
        }
        if stopping {
            break;
        }
    }
    tracing::info!("stopped fetching");
}

/// A batch begun with `first`, filled until it is full, its wait is over or
/// `stop` (then also true); without messages of partitions revoked meanwhile.
async fn fill_batch(
    consumer: &InputConsumer,
    tracker: &OffsetTracker,
    metrics: &Metrics,
    batching: Batching,
    first: (InputMessage, u64),
    stop: &CancellationToken,
) -> (Vec<InputMessage>, bool) {
    let mut batch: Vec<(InputMessage, u64)> = Vec::with_capacity(batching.max_events);
    batch.push(first);
    // One timer and one cancellation waiter for the whole batch: new ones
    // per message would be registered and dropped for every event.
    let deadline = tokio::time::sleep(batching.max_wait);
    let cancelled = stop.cancelled();
    tokio::pin!(deadline, cancelled);
    let mut stopping = false;
    while batch.len() < batching.max_events {
        tokio::select! {
            biased;
            _ = &mut cancelled => { stopping = true; break }
            _ = &mut deadline => break,
            m = next_message(consumer, tracker, metrics) => batch.push(m),
        }
    }
    // Messages read before their partition was revoked belong to the next
    // owner now: they are neither processed nor committed here.
    let messages = batch
        .into_iter()
        .filter(|(m, g)| tracker.generation(m.partition) == Some(*g))
        .map(|(m, _)| m)
        .collect();
    (messages, stopping)
}

/// The next message of a partition this worker holds, with its generation.
async fn next_message(
    consumer: &InputConsumer,
    tracker: &OffsetTracker,
    metrics: &Metrics,
) -> (InputMessage, u64) {
    loop {
        match consumer.recv().await {
            Ok(m) => {
                if let Some(generation) = tracker.generation(m.partition()) {
                    return (copy_message(&m), generation);
                }
            }
            Err(e) => {
                metrics.consumer_errors.inc();
                tracing::warn!(error = %e, "consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

fn copy_message(m: &BorrowedMessage<'_>) -> InputMessage {
    InputMessage {
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers: m
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
