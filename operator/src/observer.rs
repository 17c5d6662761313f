//! The lag observer: straight from Kafka, per partition, the log-end offset,
//! the worker group's committed offset, and the timestamp of the message at the
//! committed offset, which is exactly the oldest unprocessed event of that
//! partition. Over a window of snapshots: arrival and processing rates (a
//! processing rate of zero with lag is a stall). Blocking (librdkafka); callers run it on a blocking thread.

use std::collections::VecDeque;
use std::time::Duration;

use pixelpipe_policy::Signals;
use pixelpipe_runtime::KafkaSettings;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

const TIMEOUT: Duration = Duration::from_secs(5);

/// One partition at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    pub log_end: i64,
    /// The group's committed offset; the log start when nothing was committed.
    pub committed: i64,
    /// Timestamp (ms) of the message at the committed offset, if lagging.
    pub oldest_ms: Option<i64>,
}

impl PartitionLag {
    pub fn lag(&self) -> i64 {
        (self.log_end - self.committed).max(0)
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

    fn log_end(&self) -> i64 {
        self.partitions.iter().map(|p| p.log_end).sum()
    }

    fn committed(&self) -> i64 {
        self.partitions.iter().map(|p| p.committed).sum()
    }

    /// Age in seconds of the oldest unprocessed event over all partitions.
    pub fn oldest_age(&self) -> f64 {
        self.partitions
            .iter()
            .filter(|p| p.lag() > 0)
            .filter_map(|p| p.oldest_ms)
            .min()
            .map_or(0.0, |ts| ((self.at_ms - ts) as f64 / 1000.0).max(0.0))
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

    /// The policy's signals from the window, `None` before two snapshots.
    pub fn signals(&self, now: f64) -> Option<Signals> {
        let first = self.snapshots.front()?;
        let last = self.snapshots.back()?;
        let span = (last.at_ms - first.at_ms) as f64 / 1000.0;
        if span <= 0.0 {
            return None;
        }
        Some(Signals {
            now,
            lag: last.lag() as f64,
            oldest_age: last.oldest_age(),
            arrival_rate: (last.log_end() - first.log_end()).max(0) as f64 / span,
            processing_rate: (last.committed() - first.committed()).max(0) as f64 / span,
        })
    }
}

/// Reads one pipeline's topic and group.
pub struct Observer {
    consumer: BaseConsumer,
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
                .set("enable.partition.eof", "false")
                .set("auto.offset.reset", "earliest")
                // One message per partition is all it reads.
                .set("fetch.max.bytes", "1048576")
                .set("max.partition.fetch.bytes", "65536")
                .set("queued.max.messages.kbytes", "1024");
        });
        Ok(Self {
            consumer: config.create()?,
            topic: topic.to_string(),
        })
    }

    pub fn snapshot(&self) -> Result<Snapshot, KafkaError> {
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
            out.push(PartitionLag {
                partition: p,
                log_end: high,
                committed,
                oldest_ms: None,
            });
        }
        self.read_oldest(&mut out)?;
        Ok(Snapshot {
            at_ms,
            partitions: out,
        })
    }

    /// Reads the message at each lagging partition's committed offset.
    fn read_oldest(&self, parts: &mut [PartitionLag]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for p in parts.iter().filter(|p| p.lag() > 0) {
            tpl.add_partition_offset(&self.topic, p.partition, Offset::Offset(p.committed))?;
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        self.consumer.assign(&tpl)?;
        let deadline = std::time::Instant::now() + TIMEOUT;
        let mut missing = tpl.count();
        while missing > 0 && std::time::Instant::now() < deadline {
            let Some(result) = self.consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let m = result?;
            if let Some(p) = parts
                .iter_mut()
                .find(|p| p.partition == m.partition() && p.oldest_ms.is_none())
            {
                p.oldest_ms = m.timestamp().to_millis();
                missing -= 1;
            }
        }
        self.consumer.unassign()?;
        Ok(())
    }
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(at_s: i64, parts: &[(i64, i64, Option<i64>)]) -> Snapshot {
        Snapshot {
            at_ms: at_s * 1000,
            partitions: parts
                .iter()
                .enumerate()
                .map(|(i, &(end, committed, oldest))| PartitionLag {
                    partition: i as i32,
                    log_end: end,
                    committed,
                    oldest_ms: oldest.map(|s| s * 1000),
                })
                .collect(),
        }
    }

    #[test]
    fn the_oldest_age_is_the_oldest_lagging_partitions_timestamp() {
        let s = snap(
            1_000,
            &[(100, 100, None), (50, 40, Some(958)), (70, 60, Some(990))],
        );
        assert_eq!(s.lag(), 20);
        assert_eq!(s.oldest_age(), 42.0);
        assert_eq!(
            snap(1_000, &[(5, 5, Some(1))]).oldest_age(),
            0.0,
            "no lag, no age"
        );
    }

    #[test]
    fn rates_come_from_the_window() {
        let mut h = History::default();
        let w = Duration::from_secs(30);
        h.push(snap(0, &[(1_000, 900, Some(0))]), w);
        assert!(h.signals(0.0).is_none());
        h.push(snap(10, &[(2_000, 1_900, Some(9))]), w);
        h.push(snap(20, &[(3_000, 2_400, Some(15))]), w);
        let s = h.signals(20.0).expect("signals");
        assert_eq!(
            (s.arrival_rate, s.processing_rate, s.lag),
            (100.0, 75.0, 600.0)
        );
        assert_eq!(s.oldest_age, 5.0);
        for t in [30, 40, 50, 60] {
            h.push(snap(t, &[(3_000 + t * 10, 2_400, Some(15))]), w);
        }
        let stalled = h.signals(60.0).expect("signals");
        assert_eq!(
            stalled.processing_rate, 0.0,
            "no commits over the window: a stall"
        );
        assert_eq!(
            h.snapshots.len(),
            4,
            "the window keeps 30 s and one before it"
        );
    }
}
