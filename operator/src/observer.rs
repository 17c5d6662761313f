//! The lag observer: straight from Kafka, per partition, the end offset, the
//! worker group's committed offset, and the record at the committed offset,
//! whose timestamp is exactly the age of the oldest unprocessed event of that
//! partition. Blocking (librdkafka); callers run it on a blocking thread.
//!
//! - The end is the **last stable offset**: the observer reads as a
//!   `read_committed` consumer, so records of open transactions are not lag
//!   yet, and `query_watermark_offsets` honours the isolation level.
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

use std::collections::VecDeque;
use std::time::Duration;

use pixelpipe_runtime::KafkaSettings;
use pixelpipe_runtime::kafka::{ReadsToEnd, ToEndConsumer};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(5);

/// What is at a partition's committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Nothing to process: at the end, or only transaction markers before it.
    CaughtUp,
    /// The first unprocessed event.
    Event { offset: i64, timestamp_ms: i64 },
    /// Lag, but its first record could not be read in time.
    Unknown,
}

/// One partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// The last stable offset.
    pub log_end: i64,
    /// The group's committed offset; the log start when nothing was committed.
    pub committed: i64,
    pub head: Head,
}

impl PartitionLag {
    /// Events still to process: from the first event at or after the
    /// committed offset to the end.
    pub fn lag(&self) -> i64 {
        match self.head {
            Head::CaughtUp => 0,
            Head::Event { offset, .. } => (self.log_end - offset.max(self.committed)).max(0),
            Head::Unknown => (self.log_end - self.committed).max(0),
        }
    }

    /// Seconds since the first unprocessed event was written at `at_ms`:
    /// `Some(0)` without lag, `None` when it could not be read.
    pub fn head_age(&self, at_ms: i64) -> Option<f64> {
        match self.head {
            _ if self.lag() == 0 => Some(0.0),
            Head::Event { timestamp_ms, .. } => {
                Some(((at_ms - timestamp_ms) as f64 / 1000.0).max(0.0))
            }
            Head::CaughtUp => Some(0.0),
            Head::Unknown => None,
        }
    }
}

/// Every partition of the input topic at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Milliseconds since the epoch when it was taken.
    pub at_ms: i64,
    pub partitions: Vec<PartitionLag>,
}

impl Snapshot {
    pub fn lag(&self) -> i64 {
        self.partitions.iter().map(PartitionLag::lag).sum()
    }

    /// Age in seconds of the oldest unprocessed event over all partitions;
    /// `None` when a lagging partition's head could not be read.
    pub fn oldest_age(&self) -> Option<f64> {
        self.partitions
            .iter()
            .map(|p| p.head_age(self.at_ms))
            .try_fold(0.0f64, |oldest, age| age.map(|a| oldest.max(a)))
    }

    pub fn partition(&self, partition: i32) -> Option<&PartitionLag> {
        self.partitions.iter().find(|p| p.partition == partition)
    }
}

/// Most snapshots kept; rates use the oldest within the window.
const MAX_SNAPSHOTS: usize = 64;

/// Snapshots over time, for rates.
#[derive(Debug, Clone, Default)]
pub struct History {
    snapshots: VecDeque<Snapshot>,
}

impl History {
    pub fn push(&mut self, s: Snapshot, window: Duration) {
        let horizon = s.at_ms - i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        self.snapshots.push_back(s);
        // Keep one snapshot at or before the horizon as the window's start.
        while self.snapshots.len() > 2 && self.snapshots.get(1).is_some_and(|n| n.at_ms <= horizon)
        {
            self.snapshots.pop_front();
        }
        while self.snapshots.len() > MAX_SNAPSHOTS {
            self.snapshots.pop_front();
        }
    }

    pub fn latest(&self) -> Option<&Snapshot> {
        self.snapshots.back()
    }

    /// The window's first and last snapshots, once they are apart in time.
    pub fn window(&self) -> Option<(&Snapshot, &Snapshot)> {
        let first = self.snapshots.front()?;
        let last = self.snapshots.back()?;
        (last.at_ms > first.at_ms).then_some((first, last))
    }
}

/// Reads one pipeline's topic and group.
pub struct Observer {
    consumer: ToEndConsumer,
    topic: String,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl Observer {
    /// A client of the pipeline's group that never joins it nor commits:
    /// it only fetches the group's offsets and reads single messages.
    pub fn new(kafka: &KafkaSettings, topic: &str, group: &str) -> Result<Self, KafkaError> {
        let config = kafka.client("pixelpipe-operator", |c| {
            c.set("group.id", group)
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                // What the workers can read: the last stable offset is the end.
                .set("isolation.level", "read_committed")
                // The end of a partition tells "only markers left" from "slow".
                .set("enable.partition.eof", "true")
                .set("auto.offset.reset", "earliest")
                // One message per partition is all it reads.
                .set("fetch.max.bytes", "1048576")
                .set("max.partition.fetch.bytes", "65536")
                .set("queued.max.messages.kbytes", "1024");
        });
        Ok(Self {
            consumer: config.create_with_context(ReadsToEnd)?,
            topic: topic.to_string(),
        })
    }

    pub fn snapshot(&self) -> Result<Snapshot, KafkaError> {
        let partitions = self.partitions()?;
        let mut tpl = TopicPartitionList::new();
        for &p in &partitions {
            tpl.add_partition(&self.topic, p);
        }
        let committed = self.consumer.committed_offsets(tpl, TIMEOUT)?;
        let at_ms = now_ms();
        let mut out = Vec::with_capacity(partitions.len());
        for &p in &partitions {
            let (low, high) = self.consumer.fetch_watermarks(&self.topic, p, TIMEOUT)?;
            let committed = match committed.find_partition(&self.topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o.max(low),
                _ => low,
            };
            let head = if high > committed {
                Head::Unknown
            } else {
                Head::CaughtUp
            };
            out.push(PartitionLag {
                partition: p,
                log_end: high,
                committed,
                head,
            });
        }
        self.read_heads(&mut out)?;
        Ok(Snapshot {
            at_ms,
            partitions: out,
        })
    }

    fn partitions(&self) -> Result<Vec<i32>, KafkaError> {
        let metadata = self.consumer.fetch_metadata(Some(&self.topic), TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.topic)
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Err(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ));
        }
        Ok(partitions)
    }

    /// Reads the first record at or after each lagging partition's committed
    /// offset. The consumer is left unassigned whatever happens.
    fn read_heads(&self, parts: &mut [PartitionLag]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for p in parts.iter().filter(|p| p.head == Head::Unknown) {
            tpl.add_partition_offset(&self.topic, p.partition, Offset::Offset(p.committed))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer.assign(&tpl)?;
        let read = self.poll_heads(parts, tpl.count());
        let unassigned = self.consumer.unassign();
        read.and(unassigned)
    }

    fn poll_heads(&self, parts: &mut [PartitionLag], mut missing: usize) -> Result<(), KafkaError> {
        let deadline = std::time::Instant::now() + TIMEOUT;
        while missing > 0 && std::time::Instant::now() < deadline {
            let (partition, head) = match self.consumer.poll(Duration::from_millis(200)) {
                None => continue,
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

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn part(partition: i32, log_end: i64, committed: i64, head: Head) -> PartitionLag {
        PartitionLag {
            partition,
            log_end,
            committed,
            head,
        }
    }

    fn event(offset: i64, s: i64) -> Head {
        Head::Event {
            offset,
            timestamp_ms: s * 1000,
        }
    }

    #[test]
    fn the_oldest_age_is_the_oldest_lagging_partitions_timestamp() {
        let s = Snapshot {
            at_ms: 1_000_000,
            partitions: vec![
                part(0, 100, 100, Head::CaughtUp),
                part(1, 50, 40, event(40, 958)),
                part(2, 70, 60, event(60, 990)),
            ],
        };
        assert_eq!(s.lag(), 20);
        assert_eq!(s.oldest_age(), Some(42.0));
    }

    #[test]
    fn markers_are_not_lag_and_an_unread_head_is_unknown() {
        // The worker committed the offset of a commit marker; the end is past it.
        let marker_only = part(0, 101, 100, Head::CaughtUp);
        assert_eq!(
            (marker_only.lag(), marker_only.head_age(5_000)),
            (0, Some(0.0))
        );
        // Two markers, then events from 102.
        let after_markers = part(0, 110, 100, event(102, 4));
        assert_eq!(after_markers.lag(), 8);
        let unknown = part(0, 110, 100, Head::Unknown);
        assert_eq!((unknown.lag(), unknown.head_age(5_000)), (10, None));
        let s = Snapshot {
            at_ms: 5_000,
            partitions: vec![after_markers, unknown],
        };
        assert_eq!(s.oldest_age(), None, "unknown, never 0");
    }

    #[test]
    fn the_window_keeps_its_span_and_one_snapshot_before_it() {
        let mut h = History::default();
        let w = Duration::from_secs(30);
        let at = |s: i64| Snapshot {
            at_ms: s * 1000,
            partitions: vec![part(0, s, s, Head::CaughtUp)],
        };
        h.push(at(0), w);
        assert!(h.window().is_none());
        for t in [10, 20, 30, 40, 50, 60] {
            h.push(at(t), w);
        }
        let (first, last) = h.window().expect("window");
        assert_eq!((first.at_ms, last.at_ms), (30_000, 60_000));
        assert_eq!(h.snapshots.len(), 4);
    }
}
