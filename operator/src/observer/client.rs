//! One Kafka client of a cluster's pool, and how it reads one pipeline's
//! snapshot: the group's committed offsets (read from outside the group),
//! each partition's start and end in two batched requests, and the record at
//! each lagging partition's committed offset. The cluster's topics and their
//! partitions come from one request for them all, which the pool caches.
//! Blocking (librdkafka); the pool runs it on a blocking thread.
//!
//! - The end is the **last stable offset**: the client reads as a
//!   `read_committed` consumer, so records of open transactions are not lag
//!   yet, and `ListOffsets` honours the isolation level.
//! - **Transaction markers are not events.** A worker that processed every
//!   event commits the offset of the commit marker after them; the record
//!   read at the committed offset is the first real event after it, or the
//!   end of the partition, and lag counts from there.
//! - **An unreadable head is unknown**, never 0: the policy does not scale
//!   down on it and the status says so.
//! - The age is "now" minus the record's timestamp: its `CreateTime` (set by
//!   the storefront's producer) unless the topic is configured with
//!   `message.timestamp.type=LogAppendTime`, when it is the broker's append
//!   time. Either way one late or replayed event is only the head's age; the
//!   policy plans with the backlog's drain time too (`planning_age`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use pixelpipe_runtime::KafkaSettings;
use pixelpipe_runtime::group_offsets::committed_offsets;
use pixelpipe_runtime::kafka::{ReadsToEnd, ToEndConsumer};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::snapshot::{Head, PartitionLag, Snapshot, now_ms};

const TIMEOUT: Duration = Duration::from_secs(5);

/// How long the group's offsets may take. librdkafka 2.12 aborts the process
/// when a coordinator request's admin timeout passes before the coordinator
/// was found (librdkafka PR #5397, unreleased): so the group's offsets are
/// asked for only once the cluster has just answered, and given longer than
/// a coordinator takes to move to another broker.
const GROUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The group the pool's clients name to be allowed to assign partitions. They
/// never join it nor commit; the pipelines' own groups are read from outside.
const OWN_GROUP: &str = "pixelpipe-operator.lag-observer";

/// One librdkafka client: one set of threads and broker connections.
pub(super) struct Client {
    consumer: ToEndConsumer,
}

impl Client {
    pub fn new(kafka: &KafkaSettings) -> Result<Self, KafkaError> {
        let config = kafka.client("pixelpipe-operator", |c| {
            c.set("group.id", OWN_GROUP)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                // What the workers can read: the last stable offset is the end.
                .set("isolation.level", "read_committed")
                // The end of a partition tells "only markers left" from "slow".
                .set("enable.partition.eof", "true")
                // A broker answers one request per connection at a time: a
                // fetch waiting for data at a partition's end (500 ms by
                // default) would hold up the next snapshot's requests.
                .set("fetch.wait.max.ms", "10")
                // One message per partition is all it reads.
                .set("fetch.max.bytes", "1048576")
                .set("max.partition.fetch.bytes", "65536")
                .set("queued.max.messages.kbytes", "1024");
        });
        Ok(Self {
            consumer: config.create_with_context(ReadsToEnd)?,
        })
    }

    /// `group`'s progress through `topic`, whose `partitions` are known, now.
    pub fn snapshot(
        &self,
        topic: &str,
        partitions: &[i32],
        group: &str,
    ) -> Result<Snapshot, KafkaError> {
        let at_ms = now_ms();
        // The ends first: a cluster that does not answer fails here, before
        // the group's offsets are asked for (see `GROUP_TIMEOUT`).
        let starts = self.offsets(topic, partitions, Offset::Beginning)?;
        let ends = self.offsets(topic, partitions, Offset::End)?;
        let committed: HashMap<i32, i64> =
            committed_offsets(self.consumer.client(), group, topic, GROUP_TIMEOUT)?
                .into_iter()
                .collect();
        let mut out: Vec<PartitionLag> = partitions
            .iter()
            .map(|p| {
                let (start, end) = (starts.get(p).copied(), ends.get(p).copied());
                let log_end = end.unwrap_or_default();
                let committed = committed.get(p).copied().max(start).unwrap_or_default();
                let head = if log_end > committed {
                    Head::Unknown
                } else {
                    Head::CaughtUp
                };
                PartitionLag {
                    partition: *p,
                    log_end,
                    committed,
                    head,
                }
            })
            .collect();
        self.read_heads(topic, &mut out)?;
        Ok(Snapshot {
            at_ms,
            partitions: out,
        })
    }

    /// Every topic of the cluster and its partitions, in one request.
    pub fn topics(&self) -> Result<HashMap<String, Vec<i32>>, KafkaError> {
        let metadata = self.consumer.fetch_metadata(None, TIMEOUT)?;
        Ok(metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .map(|t| {
                let partitions = t.partitions().iter().map(|p| p.id()).collect();
                (t.name().to_string(), partitions)
            })
            .collect())
    }

    /// Each partition's first (`Beginning`) or last stable (`End`) offset, in
    /// one request per partition leader.
    fn offsets(
        &self,
        topic: &str,
        partitions: &[i32],
        which: Offset,
    ) -> Result<HashMap<i32, i64>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            // ListOffsets takes -2 and -1, Beginning's and End's raw values,
            // as "earliest" and "latest".
            tpl.add_partition_offset(topic, p, which)?;
        }
        let answer = self.consumer.offsets_for_times(tpl, TIMEOUT)?;
        answer
            .elements_for_topic(topic)
            .iter()
            .map(|e| {
                e.error()?;
                match e.offset() {
                    Offset::Offset(o) => Ok((e.partition(), o)),
                    _ => Err(KafkaError::OffsetFetch(RDKafkaErrorCode::NoOffset)),
                }
            })
            .collect()
    }

    /// Reads the first record at or after each lagging partition's committed
    /// offset. The consumer is left unassigned whatever happens.
    fn read_heads(&self, topic: &str, parts: &mut [PartitionLag]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for p in parts.iter().filter(|p| p.head == Head::Unknown) {
            tpl.add_partition_offset(topic, p.partition, Offset::Offset(p.committed))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        let read = self
            .consumer
            .assign(&tpl)
            .and_then(|()| self.poll_heads(topic, parts, tpl.count()));
        let unassigned = self.consumer.unassign();
        read.and(unassigned)
    }

    fn poll_heads(
        &self,
        topic: &str,
        parts: &mut [PartitionLag],
        mut missing: usize,
    ) -> Result<(), KafkaError> {
        let deadline = Instant::now() + TIMEOUT;
        while missing > 0 && Instant::now() < deadline {
            let (partition, head) = match self.consumer.poll(Duration::from_millis(200)) {
                None => continue,
                // The client served other pipelines before: librdkafka drops
                // what an earlier assignment fetched, and this makes sure.
                Some(Ok(m)) if m.topic() != topic => continue,
                Some(Ok(m)) => (
                    m.partition(),
                    Head::Event {
                        offset: m.offset(),
                        // A record without a timestamp (a pre-0.10
                        // producer) counts as written now.
                        timestamp_ms: m.timestamp().to_millis().unwrap_or_else(now_ms),
                    },
                ),
                Some(Err(KafkaError::PartitionEOF(p))) => (p, Head::CaughtUp),
                Some(Err(e)) => return Err(e),
            };
            if let Some(p) = parts
                .iter_mut()
                .find(|p| p.partition == partition && p.head == Head::Unknown)
            {
                p.head = head;
                missing -= 1;
            }
        }
        Ok(())
    }
}
