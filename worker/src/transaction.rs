//! Exactly-once mode: partner messages, dead letters and the input offsets
//! they consume are committed in one Kafka transaction (read-process-write,
//! KIP-447), so read-committed consumers of the partner topics see each event
//! once, even across SIGKILLs.
//!
//! Why the pipeline stops at each commit: jobs finish out of order, so
//! outputs of a later job of a partition may be produced while an earlier job
//! is still in a stage. Committing then would put the later job's outputs in
//! the transaction without its offsets, and a crash would repeat them. So each
//! commit first takes every in-flight slot, which stops the source and waits
//! until every job that was read has been acknowledged; at that moment the
//! tracker's positions cover exactly what the transaction holds. That pause,
//! once per commit interval, is the mode's throughput cost
//! (docs/benchmarks.md).
//!
//! A partition revoked mid-transaction ends the process (exit 2): the open
//! transaction is abandoned, the broker aborts it (on the restart's
//! `init_transactions`, or after `transaction.timeout.ms`, 60 s), and the partition's
//! next owner reads from the last committed transaction.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use tokio_util::sync::CancellationToken;

use crate::fatal::Fatal;
use crate::metrics::{Metrics, OutcomeLabel};
use crate::offsets::OffsetTracker;
use crate::sink::OutputProducer;
use crate::slots::Slots;
use crate::source::{InputConsumer, to_tpl};

/// How long one transactional call may take before the worker gives up.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Shared with the consumer's rebalance callback.
#[derive(Debug, Default)]
pub struct Guard {
    pub fatal: Fatal,
    /// Set once the worker stops on purpose: a revoke then is the shutdown's own.
    pub closing: AtomicBool,
}

impl Guard {
    /// Partitions were taken away while a transaction may hold their outputs.
    pub fn revoked(&self, partitions: &[i32]) {
        if !self.closing.load(Ordering::Acquire) {
            self.fatal.trigger(format!(
                "partitions {partitions:?} revoked in exactly-once mode; abandoning the open transaction"
            ));
        }
    }
}

/// Makes the producer transactional and opens the first transaction. Fences
/// (and so aborts) any transaction a previous process with the same
/// transactional id left open.
pub fn start(producer: &OutputProducer) -> Result<(), KafkaError> {
    producer.init_transactions(TIMEOUT)?;
    producer.begin_transaction()
}

#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("the consumer has no group metadata")]
    NoGroup,
}

/// Commits the open transaction with `positions` as its consumed offsets and
/// opens the next one.
fn commit(
    producer: &OutputProducer,
    consumer: &InputConsumer,
    topic: &str,
    positions: &[(i32, i64)],
) -> Result<(), CommitError> {
    let group = consumer.group_metadata().ok_or(CommitError::NoGroup)?;
    producer.send_offsets_to_transaction(&to_tpl(topic, positions), &group, TIMEOUT)?;
    producer.commit_transaction(TIMEOUT)?;
    Ok(producer.begin_transaction()?)
}

/// What a transaction commit needs.
#[derive(Clone)]
pub struct Committer {
    pub producer: Arc<OutputProducer>,
    pub consumer: Arc<InputConsumer>,
    pub topic: String,
    pub tracker: Arc<OffsetTracker>,
    pub metrics: Arc<Metrics>,
    pub fatal: Fatal,
}

impl Committer {
    /// One commit, with every in-flight slot held (nothing in any stage).
    async fn commit_quiet(&self, positions: Vec<(i32, i64)>) -> bool {
        if positions.is_empty() {
            return true;
        }
        let me = self.clone();
        let result = tokio::task::spawn_blocking(move || {
            commit(&me.producer, &me.consumer, &me.topic, &positions)
        })
        .await;
        let outcome = match result {
            Ok(Ok(())) => "ok",
            Ok(Err(e)) => {
                self.fatal
                    .trigger(format!("committing the transaction failed: {e}"));
                "error"
            }
            Err(e) => {
                self.fatal
                    .trigger(format!("the transaction commit task failed: {e}"));
                "error"
            }
        };
        self.metrics
            .commits
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        outcome == "ok"
    }

    /// Every `interval`: stop intake, wait until every job read is
    /// acknowledged, commit, go on. Until `stop` or a failed commit.
    pub async fn run(self, slots: Slots, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let all = tokio::select! {
                _ = stop.cancelled() => return,
                p = slots.acquire_all() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            self.metrics
                .uncommitted_runs
                .set(self.tracker.pending() as i64);
            let ok = self.commit_quiet(self.tracker.take_commit()).await;
            drop(all);
            if !ok {
                return;
            }
        }
    }

    /// The shutdown's last commit, after the drain: what was acknowledged.
    pub async fn finish(&self) -> bool {
        self.commit_quiet(self.tracker.all_committable()).await
    }

    /// After a fatal error: nothing more is committed; the open transaction
    /// is aborted so read-committed consumers need not wait for its timeout.
    pub async fn abandon(&self) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || producer.abort_transaction(TIMEOUT)).await;
    }
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}
